"""Boxes on grids: a case's box records as a lesion-id map on their own grid, as
continuous voxel-edge bounds on another grid (the ROI), and bounds as a mask.

Bounds are (lo, hi) arrays (z, y, x) of voxel edges: voxel k spans [k - 0.5, k + 0.5]
on the grid, so its centre is inside the box when lo <= k + 0.5 <= hi.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from boxseg.geometry import index_to_physical, physical_to_index

Bounds = tuple[np.ndarray, np.ndarray]


def lesion_id_map(records: Sequence[dict], image: sitk.Image) -> np.ndarray:
    """(z, y, x) uint8 map of box lesion ids on the records' own (original) grid."""
    out = np.zeros(image.GetSize()[::-1], np.uint8)
    for r in records:
        lo, hi = r["index_lo"], r["index_hi"]
        out[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = r["lesion"]
    return out


def bounds_on_grid(records: Sequence[dict], original: sitk.Image, target: sitk.Image) -> list[Bounds]:
    """Continuous voxel-edge bounds (lo, hi) of each box on another grid (z, y, x).

    The eight voxel-edge corners of the box are mapped through physical space;
    for grids that share the direction (our ROIs) the result is exact.
    """
    out = []
    for r in records:
        lo = np.asarray(r["index_lo"], float) - 0.5
        hi = np.asarray(r["index_hi"], float) + 0.5
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
        target_idx = physical_to_index(target, index_to_physical(original, corners))
        # Voxel-edge bounds on the target: voxel k spans [k - 0.5, k + 0.5].
        out.append((target_idx.min(0) + 0.5, target_idx.max(0) + 0.5))
    return out


def bounds_on_roi(boxes: Sequence[dict], original: sitk.Image, roi: sitk.Image) -> list[tuple[Bounds, dict]]:
    """(bounds, record) of each box record that overlaps the ROI grid: its continuous
    voxel-edge bounds on that grid, clipped to it."""
    size = np.asarray(roi.GetSize()[::-1], float)
    out = []
    for record, (lo, hi) in zip(boxes, bounds_on_grid(boxes, original, roi), strict=True):
        lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
        if np.all(hi > lo):
            out.append(((lo, hi), record))
    return out


def bounds_mask(bounds: Iterable[Bounds], shape: Sequence[int]) -> np.ndarray:
    """(z, y, x) bool mask of voxels whose centres lie inside any box."""
    grids = np.meshgrid(*[np.arange(n) + 0.5 for n in shape], indexing="ij")
    mask = np.zeros(shape, bool)
    for lo, hi in bounds:
        inside = np.ones(shape, bool)
        for g, a, b in zip(grids, lo, hi):
            inside &= (g >= a) & (g <= b)
        mask |= inside
    return mask


def bounds_id_map(bounds: Sequence[Bounds], ids: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """(z, y, x) uint8 map of each box's id on the voxels whose centres lie inside it; where
    boxes overlap, the first box's."""
    out = np.zeros(shape, np.uint8)
    for box, box_id in zip(bounds, ids, strict=True):
        out[bounds_mask([box], shape) & (out == 0)] = box_id
    return out


def roi_bounds(records: Sequence[dict], geometry: dict, roi: sitk.Image) -> list[tuple[Bounds, dict]]:
    """``bounds_on_roi`` for a case whose original grid is known from its ROI geometry record
    (``layout.ROI_GEOMETRY``, written by preprocessing)."""
    from boxseg.io import reference_from_geometry

    return bounds_on_roi(records, reference_from_geometry(geometry["original"]), roi)
