"""Resampling, region-of-interest grids and mapping back to the original grid.

All geometry goes through SimpleITK so that spacing, origin and direction
(RAS, LPS or oblique) are honoured. Sizes and spacings in this module's
arguments are numpy order (z, y, x) unless a name says ``_xyz``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def direction_matrix(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.GetDirection(), float).reshape(3, 3)


def index_to_physical(image: sitk.Image, index_zyx: np.ndarray) -> np.ndarray:
    """Continuous (z, y, x) indices (N, 3) to physical points (N, 3) in x, y, z."""
    index_xyz = np.asarray(index_zyx, float)[..., ::-1]
    return np.asarray(image.GetOrigin()) + (index_xyz * np.asarray(image.GetSpacing())) @ direction_matrix(image).T


def physical_to_index(image: sitk.Image, points_xyz: np.ndarray) -> np.ndarray:
    """Physical points (N, 3) in x, y, z to continuous (z, y, x) indices (N, 3)."""
    rel = np.asarray(points_xyz, float) - np.asarray(image.GetOrigin())
    index_xyz = (rel @ np.linalg.inv(direction_matrix(image)).T) / np.asarray(image.GetSpacing())
    return index_xyz[..., ::-1]


def roi_reference(image: sitk.Image, centre_xyz: ArrayLike, roi_size_mm: Sequence[float],
                  spacing_mm: Sequence[float]) -> sitk.Image:
    """An empty grid of physical size ``roi_size_mm`` and ``spacing_mm`` (z, y, x),
    centred on ``centre_xyz``, with the image's direction (axis-aligned with it)."""
    spacing_xyz = np.asarray(spacing_mm, float)[::-1]
    size_xyz = np.maximum(np.round(np.asarray(roi_size_mm, float)[::-1] / spacing_xyz), 1).astype(int)
    origin = np.asarray(centre_xyz, float) - direction_matrix(image) @ ((size_xyz - 1) / 2.0 * spacing_xyz)
    reference = sitk.Image([int(n) for n in size_xyz], sitk.sitkUInt8)
    reference.SetSpacing(spacing_xyz.tolist())
    reference.SetOrigin(origin.tolist())
    reference.SetDirection(image.GetDirection())
    return reference


def resample(image: sitk.Image, reference: sitk.Image, interpolator: int = sitk.sitkLinear, default: float = 0.0,
             pixel: int | None = None) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid (identity transform)."""
    pixel = image.GetPixelID() if pixel is None else pixel
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, float(default), pixel)


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive (lo, hi) voxel indices of a non-empty mask, or None."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return None
    return idx.min(0), idx.max(0)


def lesion_bearing_region(label: np.ndarray, tumor_values: Sequence[int], kidney_values: Sequence[int]) -> np.ndarray:
    """The connected organ+lesion region that holds most lesion voxels (the tumor-bearing kidney).

    With no organ label, it is the lesion itself; with no lesion, the largest organ component.
    """
    tumor = np.isin(label, tumor_values)
    organ = np.isin(label, kidney_values) | tumor
    components, n = ndi.label(organ, structure=np.ones((3, 3, 3)))
    if n == 0:
        return tumor
    counts = np.bincount(components[tumor], minlength=n + 1)
    counts[0] = 0
    if counts.max() == 0:
        counts = np.bincount(components.ravel(), minlength=n + 1)
        counts[0] = 0
    return components == int(np.argmax(counts))


def roi_centre(image: sitk.Image, region_lo: ArrayLike, region_hi: ArrayLike, must_contain_lo: ArrayLike,
               must_contain_hi: ArrayLike, roi_size_mm: Sequence[float], spacing_mm: Sequence[float]) -> np.ndarray:
    """Physical centre of a ROI around a region (voxel-index bounds, z y x), shifted
    where needed so that the must-contain bounds lie inside the ROI."""
    centre_idx = (np.asarray(region_lo, float) + np.asarray(region_hi, float)) / 2.0
    centre = index_to_physical(image, centre_idx[None])[0]
    reference = roi_reference(image, centre, roi_size_mm, spacing_mm)
    corners = np.array(np.meshgrid(*zip(must_contain_lo, must_contain_hi), indexing="ij")).reshape(3, -1).T
    inside_idx = physical_to_index(reference, index_to_physical(image, corners))
    size = np.asarray(reference.GetSize())[::-1]
    lo, hi = inside_idx.min(0), inside_idx.max(0)
    shift = np.where(lo < 0, lo, 0.0) + np.where(hi > size - 1, hi - (size - 1), 0.0)
    shift = np.where((lo < 0) & (hi > size - 1), (lo + hi) / 2.0 - (size - 1) / 2.0, shift)
    return index_to_physical(reference, ((size - 1) / 2.0 + shift)[None])[0]


def normalise_hu(array_hu: np.ndarray, window_hu: Sequence[float]) -> np.ndarray:
    """Clip to ``window_hu`` = (low, high) and min-max scale to [0, 1]."""
    low, high = float(window_hu[0]), float(window_hu[1])
    return ((np.clip(array_hu.astype(np.float32), low, high) - low) / (high - low)).astype(np.float32)


def to_original_grid(probability_roi: sitk.Image, original: sitk.Image) -> np.ndarray:
    """Probability on the ROI grid -> (z, y, x) probability on the original grid (linear, 0 outside ROI)."""
    prob = sitk.Cast(probability_roi, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resample(prob, original, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
