"""Research mode: boxes drawn from the true lesion by a simulated reader.

The one place that reads the true lesion to make boxes. ``paper``: every face
``margin_mm`` out; ``annotator``: each face its own random margin (``face_margins``).
What it writes is a box record and nothing more (``records.drawn_boxes``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from boxseg.boxes.records import box_records
from boxseg.io import CaseError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def lesion_boxes(label: np.ndarray, tumor_values: Sequence[int] = (1,),
                 min_voxels: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tight box of each connected lesion (26-connectivity): (lo, hi) inclusive index
    arrays (z, y, x), largest lesion first."""
    tumor = np.isin(label, tumor_values)
    components, _ = ndi.label(tumor, structure=np.ones((3, 3, 3)))
    boxes = []
    for i, sl in enumerate(ndi.find_objects(components), start=1):
        size = int((components[sl] == i).sum())
        if size >= min_voxels:
            boxes.append((size, np.array([s.start for s in sl]), np.array([s.stop - 1 for s in sl])))
    boxes.sort(key=lambda b: -b[0])
    return [(lo, hi) for _, lo, hi in boxes]


def enlarge_boxes(boxes: Sequence[tuple[np.ndarray, np.ndarray]], shape: Sequence[int], spacing_mm: Sequence[float],
                  margin_mm: float | Sequence[tuple[ArrayLike, ArrayLike]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes (lo, hi inclusive) enlarged and clipped to a grid of ``shape``.

    ``margin_mm`` is one number for every face of every box, or one (lower, upper) pair of
    per-axis (z, y, x) mm per box (``face_margins``); each margin is rounded to whole voxels
    per axis."""
    spacing = np.asarray(spacing_mm, float)
    margins = margin_mm if np.ndim(margin_mm) else [(np.full(3, float(margin_mm)),) * 2] * len(boxes)
    if len(margins) != len(boxes):
        raise ValueError(f"enlarge_boxes: {len(margins)} margins for {len(boxes)} boxes")
    top = np.asarray(shape) - 1
    out = []
    for (lo, hi), (m_lo, m_hi) in zip(boxes, margins):
        d_lo = np.round(np.asarray(m_lo, float) / spacing).astype(int)
        d_hi = np.round(np.asarray(m_hi, float) / spacing).astype(int)
        out.append((np.maximum(lo - d_lo, 0), np.minimum(hi + d_hi, top)))
    return out


BOX_PROTOCOLS = ("paper", "annotator")


def face_margins(protocol: str, margin_mm: float, n_boxes: int, rng: np.random.Generator) -> list:
    """How far a simulated reader draws each face of ``n_boxes`` boxes outside the lesion:
    per box a (lower, upper) pair of per-axis (z, y, x) mm.

    ``paper``: every face exactly ``margin_mm`` out (the paper's protocol). ``annotator``:
    each face its own amount, uniform in [0, 2 margin_mm] and independent (mean
    ``margin_mm``), as readers draw by hand.
    """
    if protocol == "paper":
        return [(np.full(3, float(margin_mm)), np.full(3, float(margin_mm))) for _ in range(n_boxes)]
    if protocol == "annotator":
        return [tuple(rng.uniform(0.0, 2.0 * float(margin_mm), size=(2, 3))) for _ in range(n_boxes)]
    raise ValueError(f"box protocol must be one of {list(BOX_PROTOCOLS)}, got {protocol!r}")


def protocol_rng(seed: int, case: str) -> np.random.Generator:
    """The simulated reader's random state for one case: the same boxes for a case whatever
    else the run holds, and other boxes for another seed."""
    import zlib

    return np.random.default_rng([int(seed), zlib.crc32(case.encode())])


def boxes_from_label(label: np.ndarray, spacing_mm: Sequence[float], margin_mm: float,
                     tumor_values: Sequence[int] = (1,), min_voxels: int = 1, protocol: str = "paper",
                     rng: np.random.Generator | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """One box per connected lesion (26-connectivity), drawn by ``protocol`` (``face_margins``)
    with ``margin_mm`` and clipped.

    Args:
        label: (z, y, x) label map.
        spacing_mm: (z, y, x) voxel spacing.
        margin_mm: the protocol's margin (rounded to whole voxels per axis).
        tumor_values: label values that count as lesion.
        protocol: ``paper`` or ``annotator``; ``rng`` draws the annotator's faces.

    Returns:
        List of (lo, hi) inclusive index arrays, largest lesion first.
    """
    tight = lesion_boxes(label, tumor_values, min_voxels)
    margins = face_margins(protocol, margin_mm, len(tight), rng if rng is not None else np.random.default_rng(0))
    return enlarge_boxes(tight, label.shape, spacing_mm, margins)


def make_boxes(case: str, image: sitk.Image, label: sitk.Image, label_path: str | os.PathLike | None, margin_mm: float,
               tumor_values: Sequence[int], protocol: str = "paper", seed: int = 0) -> list[dict]:
    """Box records drawn from a label map (research mode) by a simulated reader: ``protocol``
    ``paper`` (every face ``margin_mm`` out) or ``annotator`` (each face its own random
    margin, seeded by ``seed`` and the case; ``boxes.face_margins``). The records carry only
    what a drawn box carries: nothing of the label but the box itself."""
    array = sitk.GetArrayViewFromImage(label)
    boxes = boxes_from_label(array, image.GetSpacing()[::-1], margin_mm, tumor_values,
                             protocol=protocol, rng=protocol_rng(seed, case))
    if not boxes:
        raise CaseError(case, label_path, f"no lesion voxels (label values {list(tumor_values)}) to draw a box from")
    return box_records(boxes, image)
