"""Per-case preprocessing: ROI crop, resampling, HU window, boxes on the ROI grid."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from boxseg.geometry import (
    bounding_box,
    lesion_bearing_region,
    normalise_hu,
    resample,
    roi_centre,
    roi_reference,
)
from boxseg.io import CaseError, array_like, geometry_of, read_image, read_label


def load_case(case: str, image_path: str | os.PathLike,
              label_path: str | os.PathLike | None = None) -> tuple[sitk.Image, sitk.Image | None]:
    """Read a case's image (checked to look like CT, ``check_hu``) and, if given, its label
    (checked to share the grid)."""
    image = read_image(image_path, case)
    check_hu(image, case, image_path)
    label = read_label(label_path, image, case) if label_path else None
    return image, label


def check_hu(image: sitk.Image, case: str, path: str | os.PathLike) -> None:
    """A constant image is an error (nothing to see); one that does not look like CT in
    Hounsfield units (no voxel below 0 and most above 500: stored without its rescale
    intercept, e.g. HU + 1024 as unsigned) gets a warning in the log."""
    import logging

    array = sitk.GetArrayViewFromImage(image)
    lo, hi = float(array.min()), float(array.max())
    if lo == hi:
        raise CaseError(case, path, f"the image is constant ({lo:g} everywhere)")
    median = float(np.median(array[::4, ::4, ::4]))
    if lo >= 0 and median > 500:
        logging.getLogger("boxseg").warning(
            "case %s: %s: does not look like CT in Hounsfield units (minimum %g, median %g): if it was stored "
            "without its rescale intercept (e.g. HU + 1024), windows and results will be wrong", case, path, lo, median)


def crop_roi(
    case: str,
    image: sitk.Image,
    label: sitk.Image | None,
    boxes: Sequence[dict],
    *,
    spacing_mm: Sequence[float],
    roi_size_mm: Sequence[float],
    window_hu: Sequence[float],
    tumor_values: Sequence[int],
    organ_values: Sequence[int],
) -> tuple[sitk.Image, sitk.Image | None, dict]:
    """Crop and resample the region of interest around the lesion-bearing organ.

    The ROI is centred on the organ component (e.g. kidney) that holds the
    lesion when a label with organ values is given (the largest organ component
    when the label has no lesion), else on the boxes; it is shifted so that
    every box lies inside it.

    Returns:
        (roi_image [0, 1] float32, roi_label uint8 lesion mask or None, geometry dict)
    """
    region_lo = region_hi = None
    if label is not None:
        region = lesion_bearing_region(sitk.GetArrayViewFromImage(label), tumor_values, organ_values)
        bb = bounding_box(region)
        if bb is not None:
            region_lo, region_hi = bb
    if boxes:
        box_lo = np.min([b["index_lo"] for b in boxes], axis=0)
        box_hi = np.max([b["index_hi"] for b in boxes], axis=0)
    elif region_lo is not None:
        box_lo, box_hi = region_lo, region_hi
    else:
        raise ValueError(f"case {case}: no box and no organ or lesion label to place the region of interest")
    if region_lo is None:
        region_lo, region_hi = box_lo, box_hi
    centre = roi_centre(image, region_lo, region_hi, box_lo, box_hi, roi_size_mm, spacing_mm)
    reference = roi_reference(image, centre, roi_size_mm, spacing_mm)
    hu = resample(sitk.Cast(image, sitk.sitkFloat32), reference, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    roi_image = array_like(normalise_hu(sitk.GetArrayViewFromImage(hu), window_hu), reference)
    roi_label = lesion_on_grid(label, reference, tumor_values) if label is not None else None
    geometry = {
        "case": case,
        "original": geometry_of(image),
        "roi": geometry_of(reference),
        "roi_centre_lps_mm": [float(v) for v in centre],
        "window_hu": [float(v) for v in window_hu],
    }
    return roi_image, roi_label, geometry


def lesion_on_grid(label: sitk.Image, reference: sitk.Image, tumor_values: Sequence[int]) -> sitk.Image:
    """The label's lesion (``tumor_values``) as a uint8 mask resampled (nearest) onto ``reference``."""
    lesion = array_like(np.isin(sitk.GetArrayViewFromImage(label), tumor_values).astype(np.uint8), label)
    return resample(lesion, reference, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


