"""What a box says about the mask inside it, as differentiable penalties on a prediction.

A box drawn around a lesion says three things a pseudo-mask does not (Kervadec et al.
2020; Wang and Xia 2021):

* emptiness: outside every box there is no lesion;
* tightness: every line through the box along an axis crosses the lesion, since the
  lesion touches every face of its tight box (``tightness_penalty``: a smooth maximum
  of the lesion probability along each line, pushed towards 1);
* size: the lesion fills a band of the box's volume (``size_penalty``), a band set from
  the box alone, never from the true lesion.

They act on a training patch and its box map (``lesion id`` per voxel on the ROI grid,
0 outside every box; ``layout.ROI_BOX_MAP``). A box cut by the patch's border along an
axis gives no line along that axis (the lesion may lie beyond the cut) and no size
term. Tensors are (B, z, y, x) lesion probabilities and box maps.
"""

from __future__ import annotations

import torch


def smooth_max(p: torch.Tensor, mask: torch.Tensor, dim: int, alpha: float) -> torch.Tensor:
    """The alpha-softmax of ``p`` over the voxels of ``mask`` along ``dim``: sum p e^(alpha p) /
    sum e^(alpha p); alpha -> infinity gives the maximum, 0 the mean."""
    inside = mask > 0
    logits = torch.where(inside, alpha * p, torch.full_like(p, -torch.inf))
    peak = logits.amax(dim, keepdim=True).clamp_min(-1e30)  # a line without voxels: no inf - inf
    weights = torch.exp(logits - peak)  # stable: the largest term is 1
    return (p * weights).sum(dim) / weights.sum(dim).clamp_min(1e-12)


def _cut_axes(box: torch.Tensor) -> list[bool]:
    """Per axis of a (z, y, x) box mask: whether it touches the patch's first or last slice."""
    return [bool(box.select(a, 0).any() or box.select(a, box.shape[a] - 1).any()) for a in range(box.dim())]


def tightness_penalty(p: torch.Tensor, box_map: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """Mean over the lines through every box (along each axis it is whole in the patch) of
    -log(smooth max of p along the line); 0 when no box gives a line."""
    terms = []
    for b in range(p.shape[0]):
        for lesion in torch.unique(box_map[b]):
            if lesion == 0:
                continue
            box = box_map[b] == lesion
            for axis, cut in enumerate(_cut_axes(box)):
                if cut:
                    continue
                lines = box.any(axis)
                if lines.any():
                    peak = smooth_max(p[b], box.to(p.dtype), axis, alpha)[lines]
                    terms.append(-torch.log(peak.clamp_min(1e-6)))
    return torch.cat(terms).mean() if terms else p.sum() * 0.0


def size_penalty(p: torch.Tensor, box_map: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    """Mean over the boxes whole in the patch of relu(lo V - S)^2 + relu(S - hi V)^2 / V^2, S the
    predicted lesion volume in the box and V the box's volume; 0 when no box is whole."""
    low, high = band
    terms = []
    for b in range(p.shape[0]):
        for lesion in torch.unique(box_map[b]):
            box = box_map[b] == lesion
            if lesion == 0 or any(_cut_axes(box)):
                continue
            volume = box.sum().to(p.dtype)
            predicted = p[b][box].sum()
            terms.append((torch.relu(low * volume - predicted) ** 2 + torch.relu(predicted - high * volume) ** 2) / volume**2)
    return torch.stack(terms).mean() if terms else p.sum() * 0.0


def emptiness_weight(voxel_weight: torch.Tensor | None, box_map: torch.Tensor, target: torch.Tensor,
                     class_weights: tuple[float, float], empty_weight: float) -> torch.Tensor:
    """Per-voxel cross-entropy weights that make outside-the-boxes background at full weight:
    inside the boxes the class weight times V (1 without V); outside, ``empty_weight`` times
    the largest weight any voxel inside may have (the lesion class weight times max V), so a
    group model's false positive there (which lowers V) cannot lower it."""
    w = torch.as_tensor(class_weights, dtype=torch.float32, device=target.device)[target.clamp(0, 1)]
    inside_weight = w if voxel_weight is None else w * voxel_weight
    full = class_weights[1] * (voxel_weight.max() if voxel_weight is not None else 1.0)
    return torch.where(box_map > 0, inside_weight, torch.as_tensor(empty_weight * full, dtype=w.dtype, device=w.device))
