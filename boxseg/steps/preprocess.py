"""Preprocessing step: a case's boxes (a user's, or drawn from its label by the research
protocol), then its region of interest, resampled, windowed and normalised."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from boxseg.boxes import USER_BOX_SOURCES, drawn_boxes
from boxseg.io import CaseError, array_like, write_image, write_json
from boxseg.postprocess import PLACEMENTS

log = logging.getLogger("boxseg")


Path = str | os.PathLike


def case_boxes(case: str, image: sitk.Image, label: sitk.Image | None, *, box_rows: Sequence[dict] | None = None,
               box_file: Path | None = None, margin_mm: float = 0.0, tumor_values: Sequence[int] = (1,), label_path: Path | None = None,
               protocol: str = "paper", box_seed: int = 0, box_table: Path | None = None) -> tuple[str, list[dict]]:
    """The case's boxes and where they came from.

    In order: rows of the box table (``box_rows``), the case's own box file (``.mrk.json``
    from 3D Slicer, or a box table), else boxes drawn from the lesions in the label by the
    research protocol (``protocol`` with ``margin_mm``, seeded by ``box_seed``), else none
    (a case to predict with an organ label). ``box_table``: the table's path, for errors.
    """
    from boxseg.boxes import box_rows as rows_of
    from boxseg.boxes import make_boxes, read_box_table, read_slicer_rois, records_from_rows

    if box_rows:
        return "table", records_from_rows(box_rows, image, case, box_table or "box table")
    if box_file:
        try:
            if str(box_file).endswith(".json"):
                rows = read_slicer_rois(box_file)
            else:
                rows = rows_of(read_box_table(box_file), case)
        except (ValueError, KeyError, OSError) as err:
            raise CaseError(case, box_file, f"unreadable box file: {str(err).removeprefix(f'{box_file}: ')}") from None
        if not rows:
            raise CaseError(case, box_file, "no box for this case in the file")
        return "file", records_from_rows(rows, image, case, box_file)
    if label is not None and tumor_values is not None and np.isin(sitk.GetArrayViewFromImage(label), tumor_values).any():
        return "label", make_boxes(case, image, label, label_path, margin_mm, tumor_values, protocol, box_seed)
    return "none", []


def preprocess_case(case: str, image_path: Path, label_path: Path | None, out_boxes: Path, out_image: Path, out_label: Path,
                    out_geometry: Path, *, box_rows: Sequence[dict] | None = None, box_table: Path | None = None,
                    box_file: Path | None = None, needs_boxes: bool = True, margin_mm: float, protocol: str = "paper",
                    box_seed: int = 0, slack_mm: float | None = 0.0, roi_from: str = "boxes", spacing_mm: Sequence[float],
                    roi_size_mm: Sequence[float], window_hu: Sequence[float], tumor_values: Sequence[int],
                    organ_values: Sequence[int]) -> None:
    """Preprocess step: the case's boxes, then the ROI around them or the lesion-bearing organ,
    resampled, windowed and normalised.

    Where the ROI goes (``placement``): boxes drawn by users place it, and so do boxes from
    a label (research mode) with ``roi_from`` "boxes", the user's path; with "organ", and for
    cases without boxes, the label's lesion-bearing organ places it (the paper's kidney ROI).
    The boxes record holds the boxes as drawn (nothing else of the label: ``boxes.drawn_boxes``),
    how they were drawn (``protocol``, ``margin_mm``, ``box_seed`` for boxes from a label) and
    ``slack_mm``, the one number a user states about how loose their readers draw (0: not told).
    """
    from boxseg.preprocess import load_case

    image, label = load_case(case, image_path, label_path or None)
    source, boxes = case_boxes(case, image, label, box_rows=box_rows, box_file=box_file, margin_mm=margin_mm,
                               tumor_values=tumor_values, label_path=label_path, protocol=protocol, box_seed=box_seed,
                               box_table=box_table)
    if needs_boxes and not boxes:
        what = label_path or "case sheet"
        raise CaseError(case, what, f"a training case needs boxes: no box given and no lesion voxels (label values {list(tumor_values)})")
    if not boxes and (label is None or not np.isin(sitk.GetArrayViewFromImage(label), list(tumor_values) + list(organ_values)).any()):
        raise CaseError(case, label_path or image_path, "no box and no organ label to place the region of interest")
    drawn = f"{protocol} protocol, margin {float(margin_mm):g} mm" if source == "label" else "as drawn"
    log.info("case %s: %d box(es) from %s (%s)", case, len(boxes), source, drawn)
    where = placement(source, roi_from)
    roi_image, roi_label, geometry = case_roi(case, image, label, where, boxes, spacing_mm=spacing_mm, roi_size_mm=roi_size_mm,
                                              window_hu=window_hu, tumor_values=tumor_values, organ_values=organ_values)
    write_image(roi_label, out_label)
    write_json(geometry, out_geometry)
    write_image(roi_image, out_image)
    research = source == "label"
    write_json({"case": case, "source": source, "protocol": protocol if research else None,
                "margin_mm": float(margin_mm) if research else 0.0, "box_seed": int(box_seed) if research else None,
                "slack_mm": float(slack_mm or 0.0), "placement": where, "boxes": drawn_boxes(boxes, case, out_boxes)}, out_boxes)


def placement(source: str, roi_from: str) -> str:
    """Where a case's ROI goes and how its mask is post-processed (``PLACEMENTS``): boxes a user
    drew always place it; boxes made from the label (``source`` "label") as ``roi_from``
    says; a case without boxes on its label's organ."""
    if roi_from not in PLACEMENTS:
        raise ValueError(f"unknown ROI placement {roi_from!r}: one of {', '.join(PLACEMENTS)}")
    if source in USER_BOX_SOURCES:
        return "boxes"
    return roi_from if source == "label" else "organ"


def case_roi(case: str, image: sitk.Image, label: sitk.Image | None, where: str, boxes: list[dict], *, spacing_mm: Sequence[float],
             roi_size_mm: Sequence[float], window_hu: Sequence[float], tumor_values: Sequence[int],
             organ_values: Sequence[int]) -> tuple[sitk.Image, sitk.Image, dict]:
    """The ROI image, its lesion label (empty without a label) and its geometry record: placed
    on the boxes (``where`` "boxes": the label is not read to place it) or on the label's
    lesion-bearing organ ("organ"), holding every box. The record says which (``placement``)
    and the ROI's size asked for (``roi_size_mm``), which a model trained on it records."""
    from boxseg.preprocess import crop_roi, lesion_on_grid

    roi_image, roi_label, geometry = crop_roi(case, image, label if where == "organ" else None, boxes,
                                              spacing_mm=spacing_mm, roi_size_mm=roi_size_mm, window_hu=window_hu,
                                              tumor_values=tumor_values, organ_values=organ_values)
    if roi_label is None and label is not None:
        roi_label = lesion_on_grid(label, roi_image, tumor_values)
    if roi_label is None:
        roi_label = array_like(np.zeros(roi_image.GetSize()[::-1], np.uint8), roi_image)
    geometry = {**geometry, "placement": where, "roi_size_mm": [float(v) for v in roi_size_mm]}
    return roi_image, roi_label, geometry


def box_map_case(case: str, roi_image_path: Path, boxes_json: Path, geometry_json: Path, out_map: Path) -> None:
    """A training case's boxes on its ROI grid as a uint8 map of lesion ids (0 outside every
    box; where boxes overlap, the first), for the losses that use the boxes' constraints."""
    from boxseg.boxes import bounds_id_map, read_boxes, roi_bounds
    from boxseg.io import read_array, read_json

    _, roi = read_array(roi_image_path, case)
    shape = roi.GetSize()[::-1]
    kept = roi_bounds(read_boxes(boxes_json, case)["boxes"], read_json(geometry_json), roi)
    if not kept:
        raise CaseError(case, boxes_json, "no box overlaps the region of interest")
    ids = bounds_id_map([b for b, _ in kept], [int(r["lesion"]) for _, r in kept], shape)
    write_image(array_like(ids, roi), out_map)
