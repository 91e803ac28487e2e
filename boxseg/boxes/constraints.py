"""What a box says about the mask inside it, as differentiable penalties on a prediction.

A box drawn around a lesion says three things a pseudo-mask does not (Kervadec et al.
2020; Wang and Xia 2021):

* emptiness: outside every box there is no lesion;
* tightness: every slice through the box across an axis touches the lesion, since the
  lesion touches every face of its tight box (``tightness_penalty``: a smooth maximum of
  the lesion probability over each slice, pushed towards 1; in 3D a line through the box
  may miss a round lesion, a slice may not). A drawn box is looser than the lesion, so only
  the slices in the box's central ``core`` fraction along each axis are asked;
* size: the lesion fills a band of the box's volume (``size_penalty``), a band set from
  the box alone, never from the true lesion.

They act on a training patch and its box map (lesion id per voxel on the ROI grid, 0
outside every box; ``layout.ROI_BOX_MAP``), and on its ``valid`` map: 1 where the patch
holds the ROI, 0 where it was padded or rotated in. A box that reaches the patch's border
or an invalid voxel is cut: across an axis it is cut along, a slice may have lost the
lesion to the cut, so only the slices across axes it is whole along are asked, and a cut
box has no size term. Invalid voxels weigh nothing. Tensors are (B, z, y, x).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def smooth_max(p: torch.Tensor, mask: torch.Tensor, dim: int, alpha: float) -> torch.Tensor:
    """The alpha-softmax of ``p`` over the voxels of ``mask`` along ``dim``: sum p e^(alpha p) /
    sum e^(alpha p); alpha -> infinity gives the maximum, 0 the mean."""
    inside = mask > 0
    logits = torch.where(inside, alpha * p, torch.full_like(p, -torch.inf))
    peak = logits.amax(dim, keepdim=True).clamp_min(-1e30)  # a line without voxels: no inf - inf
    weights = torch.exp(logits - peak)  # stable: the largest term is 1
    return (p * weights).sum(dim) / weights.sum(dim).clamp_min(1e-12)


def _cut_axes(box: torch.Tensor, invalid: torch.Tensor | None) -> list[bool]:
    """Per axis of a (z, y, x) box mask: whether it reaches the patch's first or last slice
    along it, or (every axis) an invalid voxel next to it."""
    if invalid is not None and bool((_grow(box) & invalid).any()):
        return [True] * box.dim()
    return [bool(box.select(a, 0).any() or box.select(a, box.shape[a] - 1).any()) for a in range(box.dim())]


def _grow(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` and its face neighbours."""
    grown = mask.clone()
    for axis in range(mask.dim()):
        grown |= torch.roll(mask, 1, axis) | torch.roll(mask, -1, axis)
    return grown


def _boxes(box_map: torch.Tensor, valid: torch.Tensor | None) -> Iterator[tuple[int, torch.Tensor, list[bool]]]:
    """(patch, box mask, cut per axis) of every box in the batch (``_cut_axes``)."""
    for b in range(box_map.shape[0]):
        invalid = None if valid is None else valid[b] <= 0
        for lesion in torch.unique(box_map[b]):
            if lesion != 0:
                box = box_map[b] == lesion
                yield b, box, _cut_axes(box, invalid)


def _core(box: torch.Tensor, axis: int, core: float) -> torch.Tensor:
    """The box's slices across ``axis`` in its central ``core`` fraction along it."""
    present = box.any(dim=tuple(a for a in range(box.dim()) if a != axis))
    index = torch.nonzero(present).flatten()
    lo, hi = int(index.min()), int(index.max()) + 1
    trim = int((hi - lo) * (1.0 - core) / 2.0)
    keep = torch.zeros_like(present)
    keep[lo + trim : max(hi - trim, lo + trim + 1)] = True
    shape = [1] * box.dim()
    shape[axis] = -1
    return box & keep.view(shape)


def tightness_penalty(p: torch.Tensor, box_map: torch.Tensor, alpha: float = 4.0, core: float = 0.6,
                      valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the slices through every box (its ``core`` along each axis the box is whole
    across) of -log(smooth max of p over the slice); 0 when no box gives a slice."""
    terms = []
    for b, box, cut in _boxes(box_map, valid):
        for axis in range(box.dim()):
            if any(cut[other] for other in range(box.dim()) if other != axis):
                continue  # a slice across this axis may have lost the lesion to a cut
            region = _core(box, axis, core)
            others = tuple(a for a in range(box.dim()) if a != axis)
            slices = region.any(dim=others)
            if slices.any():
                peak = _smooth_max_over(p[b], region.to(p.dtype), others, alpha)[slices]
                terms.append(-torch.log(peak.clamp_min(1e-6)))
    return torch.cat(terms).mean() if terms else p.sum() * 0.0


def _smooth_max_over(p: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...], alpha: float) -> torch.Tensor:
    """``smooth_max`` over several dimensions (moved last and flattened)."""
    keep = [d for d in range(p.dim()) if d not in dims]
    order = keep + list(dims)
    flat_p = p.permute(order).flatten(len(keep))
    flat_mask = mask.permute(order).flatten(len(keep))
    return smooth_max(flat_p, flat_mask, -1, alpha)


def size_penalty(p: torch.Tensor, box_map: torch.Tensor, band: tuple[float, float],
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the boxes whole in the patch of relu(lo V - S)^2 + relu(S - hi V)^2 / V^2, S the
    predicted lesion volume in the box and V the box's volume; 0 when no box is whole."""
    low, high = band
    terms = []
    for b, box, cut in _boxes(box_map, valid):
        if not any(cut):
            volume = box.sum().to(p.dtype)
            predicted = p[b][box].sum()
            terms.append((torch.relu(low * volume - predicted) ** 2 + torch.relu(predicted - high * volume) ** 2) / volume**2)
    return torch.stack(terms).mean() if terms else p.sum() * 0.0


def emptiness_weight(voxel_weight: torch.Tensor | None, box_map: torch.Tensor, target: torch.Tensor,
                     class_weights: tuple[float, float], empty_weight: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-voxel cross-entropy weights that make outside-the-boxes background at full weight:
    inside the boxes the class weight times V (1 without V); outside, ``empty_weight`` times
    the largest weight any voxel inside may have (the lesion class weight times max V), so a
    group model's false positive there (which lowers V) cannot lower it. ``empty_weight`` 0
    turns the term off: outside as inside, the class weight times V ((V)WCE's weights, the
    ablation without emptiness). Invalid voxels: 0."""
    w = torch.as_tensor(class_weights, dtype=torch.float32, device=target.device)[target.clamp(0, 1)]
    weights = w if voxel_weight is None else w * voxel_weight
    if empty_weight:
        full = class_weights[1] * (voxel_weight.max() if voxel_weight is not None else 1.0)
        weights = torch.where(box_map > 0, weights, torch.as_tensor(empty_weight * full, dtype=w.dtype, device=w.device))
    return weights if valid is None else weights * (valid > 0)


def disagreement_weight(weights: torch.Tensor, target: torch.Tensor, pseudo_mask: torch.Tensor, box_map: torch.Tensor,
                        factor: float) -> torch.Tensor:
    """``weights`` times ``factor`` inside the boxes where the target (the fusion mask) and the
    pseudo-mask disagree: a voxel the two label differently is a guess, not a label. Outside
    every box the box decides (background, ``emptiness_weight``) and nothing changes; IGNORE
    targets keep their weight (the loss leaves them out)."""
    if factor == 1.0:
        return weights
    disagree = (box_map > 0) & (target <= 1) & ((target == 1) != (pseudo_mask > 0.5))
    return torch.where(disagree, weights * factor, weights)
