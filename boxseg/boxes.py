"""Bounding boxes: from labels with a margin, as records, and on other grids.

A box record is a dict ``{"lesion": int, "index_lo": [z, y, x], "index_hi": [z, y, x],
"corners_lps_mm": [[x, y, z], [x, y, z]]}``: inclusive voxel indices on the
case's original image grid, and the physical (LPS) centres of the two
corner voxels.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from boxseg.geometry import index_to_physical, physical_to_index


def boxes_from_label(label: np.ndarray, spacing_mm, margin_mm: float, tumor_values=(1,), min_voxels: int = 1):
    """One box per connected lesion (26-connectivity), enlarged by ``margin_mm`` and clipped.

    Args:
        label: (z, y, x) label map.
        spacing_mm: (z, y, x) voxel spacing.
        margin_mm: margin added on every face (rounded to whole voxels per axis).
        tumor_values: label values that count as lesion.

    Returns:
        List of (lo, hi) inclusive index arrays, largest lesion first.
    """
    tumor = np.isin(label, tumor_values)
    components, n = ndi.label(tumor, structure=np.ones((3, 3, 3)))
    margin_vox = np.round(float(margin_mm) / np.asarray(spacing_mm, float)).astype(int)
    boxes = []
    for i, sl in enumerate(ndi.find_objects(components), start=1):
        size = int((components[sl] == i).sum())
        if size < min_voxels:
            continue
        lo = np.array([s.start for s in sl]) - margin_vox
        hi = np.array([s.stop - 1 for s in sl]) + margin_vox
        boxes.append((size, np.maximum(lo, 0), np.minimum(hi, np.asarray(label.shape) - 1)))
    boxes.sort(key=lambda b: -b[0])
    return [(lo, hi) for _, lo, hi in boxes]


def box_records(boxes, image: sitk.Image):
    """Box index bounds on ``image``'s grid -> JSON-able records."""
    records = []
    for i, (lo, hi) in enumerate(boxes, start=1):
        corners = index_to_physical(image, np.array([lo, hi], float))
        records.append(
            {
                "lesion": i,
                "index_lo": [int(v) for v in lo],
                "index_hi": [int(v) for v in hi],
                "corners_lps_mm": np.round(corners, 4).tolist(),
            }
        )
    return records


def box_mask(records, image: sitk.Image) -> np.ndarray:
    """(z, y, x) uint8 map of box lesion ids on the records' own (original) grid."""
    out = np.zeros(image.GetSize()[::-1], np.uint8)
    for r in records:
        lo, hi = r["index_lo"], r["index_hi"]
        out[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = r["lesion"]
    return out


def boxes_on_grid(records, original: sitk.Image, target: sitk.Image):
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
