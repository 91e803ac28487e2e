"""Stage 1: a pseudo-mask from a case's boxes by ConvCRF mean-field inference.

Each box is refined on its own (``pseudo_mask_from_boxes``): its prior
(``boxes.prior``), its own intensity model, message grid (``box_downsample``) and
background shell, and, unless told how loose it is, an estimate of its slack from a
first solution (``boxes.prior.estimate_box_slack``). The CRF engine is ``convcrf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from boxseg.boxes.grid import Bounds
from boxseg.boxes.prior import box_inside, box_prior, estimate_box_slack, per_box_slack, shrink_box
from boxseg.convcrf import refine_crop, refinement_region
from boxseg.crf_params import CRFParams


def box_downsample(box: Bounds, spacing_mm: Sequence[float], params: CRFParams) -> int:
    """The message grid's coarsening factor for one box (lo, hi) (``downsample_box_mm``):
    longer-range messages for larger lesions. On 8 + 8 dev cases a short reach served
    tight boxes of small lesions and a long one loose boxes of large lesions (docs/method.md)."""
    if params.downsample_box_mm <= 0:
        return params.downsample
    lo, hi = box
    side = float(np.min((np.asarray(hi) - np.asarray(lo)) * np.asarray(spacing_mm, float)))
    adaptive = min(params.downsample_max, 1 + int(side // params.downsample_box_mm))
    return max(params.downsample, adaptive)


def pseudo_mask_from_boxes(image: np.ndarray, boxes: Sequence, spacing_mm: Sequence[float],
                           params: CRFParams | None = None, device: torch.device | str | None = None,
                           slack_mm: float | Sequence = 0.0) -> np.ndarray:
    """Stage 1: lesion probability from one or more boxes.

    Args:
        image: (z, y, x) float array, intensities in [0, 1].
        boxes: list of (lo, hi) continuous voxel-edge bounds (z, y, x) on this grid.
        spacing_mm: voxel spacing (z, y, x).
        slack_mm: how far the boxes are known to lie outside their lesions: one number for
            every face of every box, or per box a number or a (lower, upper) pair of
            per-axis mm (each face's true slack: only benchmarks know it, crf_bench.py's oracle).
            The prior's ellipsoid is inscribed in each box moved in by it, and the
            message grid is chosen from that inner box. 0 = tight boxes. Too large a
            slack cuts lesions: state a lower bound.

    Returns:
        (z, y, x) float32 lesion probability; exactly 0 outside every box.

    Each box is refined on its own, one lesion each: its own intensity model, message
    grid (``box_downsample``) and background shell (less the other boxes); where boxes
    overlap, the larger probability wins. So a box around a fragment of a few voxels
    does not put a large lesion beside it on the fine grid.

    Example:
        >>> prob = pseudo_mask_from_boxes(img, [((4, 4, 4), (20, 20, 20))], (1.0, 1.0, 1.0))
        >>> mask = prob > 0.5
    """
    params = params or CRFParams()
    image = np.asarray(image, np.float32)
    bounds = [(np.asarray(lo, float), np.asarray(hi, float)) for lo, hi in boxes]
    inner = [shrink_box(lo, hi, spacing_mm, s) for (lo, hi), s in zip(bounds, per_box_slack(slack_mm, len(bounds)))]
    insides = [box_inside(image.shape, lo, hi) for lo, hi in bounds]
    covered = np.zeros(image.shape, np.int32)  # how many boxes hold each voxel
    for inside in insides:
        covered += inside
    prob = np.zeros(image.shape, np.float32)
    for box, inner_box, inside in zip(bounds, inner, insides):
        if inside.any():
            others = covered > inside  # inside another box
            prob = np.maximum(prob, _refine_box(image, box, inner_box, inside, others, spacing_mm, params, device))
    return prob


def _refine_box(image, box, inner_box, inside, others, spacing_mm, params: CRFParams, device):
    """Stage 1 for one box: its own intensity model and message grid; with ``estimate_slack``
    up to that many more solutions, each from the slack the one before shows
    (``estimate_box_slack``). Every solution works on the box's refinement region, cut once
    (``convcrf.refinement_region``), in that region's coordinates."""
    region, shell = refinement_region(inside, spacing_mm, params, others)
    offset = np.array([r.start for r in region], float)
    image, inside = image[region], inside[region]
    box = tuple(np.asarray(b, float) - offset for b in box)
    inner_box = tuple(np.asarray(b, float) - offset for b in inner_box)
    prior = box_prior(image.shape, *box, params.prior_softness, inner_box)[0]
    kernels = {}  # the message kernels, computed once per message grid for all of the box's solutions
    solve = lambda prior, run: refine_crop(image, prior, inside, shell, spacing_mm, run, device, kernels)
    run = replace(params, downsample=box_downsample(inner_box, spacing_mm, params))
    # Solutions that only serve the estimate may run fewer iterations; the last runs them all.
    quick = (params.estimate_iterations or params.iterations) if params.estimate_slack else params.iterations
    lo, hi = box
    for round_ in range(params.tighten_rounds + 1):
        if round_ > 0:
            prior = box_prior(image.shape, lo, hi, params.prior_softness)[0]
        first = round_ == params.tighten_rounds  # the estimate's first solution
        prob = solve(prior, replace(run, iterations=quick) if first else run)
        if not first:
            # A lesion touches every face of its tight box: re-centre the prior on the
            # extent of the current solution inside the box (never beyond the box).
            bb = np.argwhere((prob > 0.5) & inside)
            if len(bb):
                lo, hi = np.maximum(lo, bb.min(0)), np.minimum(hi, bb.max(0) + 1.0)
    final = quick == params.iterations
    inner = inner_box
    for round_ in range(int(params.estimate_slack)):
        estimate = estimate_box_slack(prob > 0.5, box, inner, spacing_mm, params)
        if all(np.allclose(a, b) for a, b in zip(estimate, inner)):
            break
        inner = estimate
        prior = box_prior(image.shape, *box, params.prior_softness, inner)[0]
        run = replace(params, downsample=box_downsample(inner, spacing_mm, params))
        final = round_ == params.estimate_slack - 1 or quick == params.iterations
        prob = solve(prior, run if final else replace(run, iterations=quick))
    if not final:  # the estimate settled on a quick solution: its prior solved in full
        prob = solve(prior, run)
    out = np.zeros(others.shape, np.float32)
    out[region] = prob
    return out
