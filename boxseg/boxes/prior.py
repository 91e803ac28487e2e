"""Stage 1's box prior: what a box says about where its lesion lies, before the CRF.

A lesion inside a box touches every face and is roughly convex: the prior is high on
the inscribed ellipsoid and 0 outside the box (``box_prior``). A box drawn with slack
has its ellipsoid inscribed in the box moved in by it (``shrink_box``), and how loose
a box is can be estimated from a first solution (``estimate_box_slack``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from boxseg.boxes.grid import Bounds

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from boxseg.crf_params import CRFParams


def box_prior(shape: Sequence[int], box_lo: ArrayLike, box_hi: ArrayLike, softness: float,
              inner: Bounds | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Prior lesion probability of a box on a grid of ``shape`` (z, y, x).

    ``box_lo``/``box_hi`` are continuous voxel-edge bounds. A lesion inside a box
    touches every face and is roughly convex, so its likeliest extent is the
    inscribed ellipsoid: the prior is 1/2 on the ellipsoid surface, rises
    toward the centre and falls toward the corners; it is 0 outside the box.
    ``inner`` (lo, hi): inscribe the ellipsoid in this box instead (a box drawn with
    slack; ``shrink_box``); the prior still falls smoothly to the box's faces.
    """
    lo, hi = np.asarray(box_lo, float), np.asarray(box_hi, float)
    e_lo, e_hi = (lo, hi) if inner is None else (np.asarray(inner[0], float), np.asarray(inner[1], float))
    centre, half = (e_lo + e_hi) / 2.0 - 0.5, np.maximum((e_hi - e_lo) / 2.0, 0.5)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    r = np.sqrt(sum(((g - c) / h) ** 2 for g, c, h in zip(grids, centre, half)))
    inside = box_inside(shape, lo, hi)
    with np.errstate(over="ignore"):  # exp overflow -> inf -> prior 0, as intended for hard edges
        prior = 1.0 / (1.0 + np.exp(-(1.0 - r) / max(softness, 1e-3)))
    return np.where(inside, prior, 0.0).astype(np.float32), inside


def box_inside(shape: Sequence[int], box_lo: ArrayLike, box_hi: ArrayLike) -> np.ndarray:
    """The voxels of a grid of ``shape`` whose centres lie inside a box of continuous
    voxel-edge bounds (``box_prior``'s ``inside``)."""
    along = [(np.arange(n) >= a - 0.5 + 1e-6) & (np.arange(n) <= b - 0.5 - 1e-6)
             for n, a, b in zip(shape, np.asarray(box_lo, float), np.asarray(box_hi, float))]
    return along[0][:, None, None] & along[1][None, :, None] & along[2][None, None, :]


def shrink_box(lo: ArrayLike, hi: ArrayLike, spacing_mm: Sequence[float],
               slack_mm: float | Sequence[ArrayLike]) -> Bounds:
    """The box moved in by its slack (per axis in voxels of ``spacing_mm``), never below one
    voxel, nor past its centre: where a box drawn with that much slack says the lesion's own
    extent is.

    ``slack_mm`` is one number for every face, or a pair (lower faces, upper faces) of
    per-axis (z, y, x) mm: the slack of each face (known only to a benchmark's oracle).
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if np.ndim(slack_mm) == 0:
        s_lo = s_hi = np.full(lo.shape, float(slack_mm))
    else:
        s_lo, s_hi = (np.asarray(s, float) for s in slack_mm)
    spacing = np.asarray(spacing_mm, float)
    d_lo, d_hi = np.maximum(s_lo / spacing, 0.0), np.maximum(s_hi / spacing, 0.0)
    if not (d_lo.any() or d_hi.any()):
        return lo, hi
    room = np.maximum(hi - lo - 1.0, 0.0)
    scale = np.minimum(1.0, room / np.maximum(d_lo + d_hi, 1e-9))  # both faces give way alike
    return lo + d_lo * scale, hi - d_hi * scale


def per_box_slack(slack_mm: float | Sequence[float | Sequence[ArrayLike]], n_boxes: int) -> list:
    """``slack_mm`` for each of ``n_boxes`` boxes: one number for all, or a list with one entry
    per box (each a number or a (lower, upper) pair of per-axis mm; ``shrink_box``)."""
    if np.ndim(slack_mm) == 0:
        return [float(slack_mm)] * n_boxes
    slack = list(slack_mm)
    if len(slack) != n_boxes:
        raise ValueError(f"slack_mm: {len(slack)} entries for {n_boxes} boxes")
    return slack


def boxes_prior(shape: Sequence[int], boxes: Sequence[Bounds], softness: float,
                spacing_mm: Sequence[float] | None = None,
                slack_mm: float | Sequence[float | Sequence[ArrayLike]] = 0.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Prior of several boxes (voxel-wise maximum of ``box_prior``) and each box's inside mask.

    With a slack (``slack_mm``, as in ``per_box_slack``) each ellipsoid is inscribed in its
    box moved in by it (``shrink_box``; ``spacing_mm`` needed), while the inside mask
    (where the label may be lesion) stays the whole box.
    """
    prior = np.zeros(shape, np.float32)
    insides = []
    for (lo, hi), slack in zip(boxes, per_box_slack(slack_mm, len(boxes))):
        p, inside = box_prior(shape, lo, hi, softness, shrink_box(lo, hi, spacing_mm, slack))
        prior = np.maximum(prior, p)
        insides.append(inside)
    return prior, insides


def estimate_box_slack(mask: np.ndarray, box: Bounds, inner_box: Bounds, spacing_mm: Sequence[float],
                       params: CRFParams) -> Bounds:
    """How loose a box is, from a solution ``mask``: the box's inner bounds moved in to where
    the largest connected component of ``mask`` inside the box lies.

    A lesion touches every face of its tight box, so the gap between a face and the
    solution is how loose that face was drawn. Along each axis the solution's extent is
    where its cross-section exceeds ``slack_profile_fraction`` of its largest, so that a
    thin leak into the tissue beside the lesion does not hide a gap. Each gap less
    ``slack_deadband_mm``, raised to the box's ``slack_share``-th largest gap (when set),
    moves its face in, never less far than ``inner_box`` already does (the stated slack).
    ``box``, ``inner_box``: continuous voxel-edge bounds (lo, hi). Returns the new inner bounds.

    Example:
        >>> inner = estimate_box_slack(prob > 0.5, (lo, hi), (lo, hi), (2.0, 2.0, 2.0), params)
    """
    from boxseg.postprocess import largest_component

    lo, hi = (np.asarray(b, float) for b in box)
    in_lo, in_hi = (np.asarray(b, float) for b in inner_box)
    region = tuple(slice(int(max(np.floor(a), 0)), int(np.ceil(b))) for a, b in zip(lo, hi))
    largest = largest_component(mask[region], structure=np.ones((3, 3, 3)))  # 26-connected
    if not largest.any():
        return in_lo, in_hi
    ext_lo, ext_hi = np.zeros(3), np.zeros(3)
    for axis in range(3):
        profile = largest.sum(axis=tuple(a for a in range(3) if a != axis))
        held = np.nonzero(profile > params.slack_profile_fraction * profile.max())[0]
        ext_lo[axis] = region[axis].start + held.min()
        ext_hi[axis] = region[axis].start + held.max() + 1.0
    spacing = np.asarray(spacing_mm, float)
    gaps = np.stack([np.maximum(ext_lo - lo, 0.0), np.maximum(hi - ext_hi, 0.0)]) * spacing  # mm: (lower, upper) x (z, y, x)
    gaps = np.maximum(gaps - params.slack_deadband_mm, 0.0)
    if params.slack_share:
        gaps = np.maximum(gaps, np.sort(gaps.ravel())[-min(int(params.slack_share), gaps.size)])
    new_lo = np.maximum(in_lo, lo + gaps[0] / spacing)
    new_hi = np.minimum(in_hi, hi - gaps[1] / spacing)
    return new_lo, np.maximum(new_hi, new_lo + 1.0)
