"""The training losses, by name: each method of the catalogue (``methods``) names one.

WCE (group models, ``wce``):      L = -mean_voxels sum_c w_c y_c log p_c
VWCE (the final model, ``vwce``): L = -mean_voxels V * sum_c w_c y_c log p_c
with class weights w (``class_weights``, background 0.2 and lesion 1.0 by default) and V
the voxel weight map of stage 2; with V = 1 they are the same. ``ccnn``: partial
cross-entropy on scribbles plus the Constrained-CNN size penalty. ``dice_ce``: soft Dice
plus cross-entropy (MONAI ``DiceCELoss``), a choice for the fully supervised model.
``box_wce`` / ``box_vwce``: WCE / VWCE with the box's own constraints (emptiness,
tightness, size; ``boxes.constraints``); ``box_vwce`` also down-weights the voxels where
the fusion mask and the pseudo-mask disagree.

A loss is a function ``(logits, batch, settings) -> scalar tensor``; ``batch`` holds the
target and the per-voxel arrays the loss reads (``LOSS_INPUTS``). Adding a loss: a
function here, its entry in ``LOSSES`` (and ``LOSS_INPUTS`` if it reads more than the
target), a method naming it in ``methods`` and in the config schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from boxseg.train_settings import TrainSettings

IGNORE = 255


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weights: tuple[float, float],
                           voxel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """(V)WCE: mean over voxels of V * w_target * -log p_target.

    Voxels whose target is IGNORE (255) do not count: the mean is over labelled voxels.

    Args:
        logits: (B, 2, z, y, x).
        target: (B, z, y, x) int64 labels.
        class_weights: (background, lesion).
        voxel_weight: (B, z, y, x) or None (V = 1, plain WCE).
    """
    weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    loss = torch.nn.functional.cross_entropy(logits, target, weight=weights, reduction="none", ignore_index=IGNORE)
    if voxel_weight is not None:
        loss = loss * voxel_weight
    labelled = target != IGNORE
    if bool(labelled.all()):
        return loss.mean()
    return loss.sum() / labelled.sum().clamp_min(1)


def size_loss(logits: torch.Tensor, true_volume: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Constrained-CNN size penalty: relu((1 - t) V - S)^2 + relu(S - (1 + t) V)^2, S = sum p_lesion,
    per patch, in units of the patch volume, averaged over the batch.

    Args:
        logits: (B, 2, z, y, x).
        true_volume: (B,) true lesion voxels in each patch.
    """
    n = float(np.prod(logits.shape[2:]))
    predicted = torch.softmax(logits, dim=1)[:, 1].flatten(1).sum(1)
    low, high = (1.0 - tolerance) * true_volume, (1.0 + tolerance) * true_volume
    penalty = torch.relu(low - predicted) ** 2 + torch.relu(predicted - high) ** 2
    return (penalty / (n * n)).mean()


def _wce(logits: torch.Tensor, batch: dict, settings: TrainSettings) -> torch.Tensor:
    return weighted_cross_entropy(logits, batch["target"], settings.class_weights)


def _vwce(logits: torch.Tensor, batch: dict, settings: TrainSettings) -> torch.Tensor:
    return weighted_cross_entropy(logits, batch["target"], settings.class_weights, batch["weight"])


def _ccnn(logits: torch.Tensor, batch: dict, settings: TrainSettings) -> torch.Tensor:
    """Partial cross-entropy on the scribbles, plus the size penalty on the true lesion volume
    of each patch (the Constrained-CNN baseline's protocol gives it that volume)."""
    volume = batch["size"].flatten(1).sum(1)
    partial = weighted_cross_entropy(logits, batch["target"], settings.class_weights)
    return partial + settings.size_loss_weight * size_loss(logits, volume, settings.size_tolerance)


def _dice_ce(logits: torch.Tensor, batch: dict, settings: TrainSettings) -> torch.Tensor:
    """Soft Dice of the lesion over the whole batch plus unweighted cross-entropy (MONAI
    ``DiceCELoss``, nnU-Net's loss); ``class_weights`` are not used, and targets must be
    fully labelled (no IGNORE)."""
    from monai.losses import DiceCELoss

    loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    return loss(logits.float(), batch["target"].unsqueeze(1))


def _box(logits: torch.Tensor, batch: dict, settings: TrainSettings) -> torch.Tensor:
    """(V)WCE with the box's constraints (``boxes.constraints``): background outside every box
    at full weight (``empty_weight``), every slice across a box touching the lesion
    (``tightness_weight``) and the lesion filling a band of its box (``box_size_weight``);
    with the pseudo-mask beside the fusion-mask target (``box_vwce``), the voxels in a box
    where the two disagree weigh ``disagreement_weight`` times as much; voxels padded or
    rotated into the patch (``valid`` 0) weigh nothing."""
    from boxseg.boxes.constraints import disagreement_weight, emptiness_weight, size_penalty, tightness_penalty

    target, box_map, valid = batch["target"], batch["box_map"], batch.get("valid")
    weights = emptiness_weight(batch.get("weight"), box_map, target, settings.class_weights, settings.empty_weight, valid)
    if "pseudo_mask" in batch:
        weights = disagreement_weight(weights, target, batch["pseudo_mask"], box_map, settings.disagreement_weight)
    ce = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none", ignore_index=IGNORE)
    loss = (ce * weights).mean()
    p = torch.softmax(logits.float(), dim=1)[:, 1]
    if settings.tightness_weight:
        loss = loss + settings.tightness_weight * tightness_penalty(p, box_map, settings.tightness_alpha, settings.tightness_core,
                                                                   valid)
    if settings.box_size_weight:
        loss = loss + settings.box_size_weight * size_penalty(p, box_map, settings.box_size_band, valid)
    return loss


LossFunction = Callable[[torch.Tensor, dict, "TrainSettings"], torch.Tensor]
LOSSES: dict[str, LossFunction] = {"wce": _wce, "vwce": _vwce, "ccnn": _ccnn, "dice_ce": _dice_ce, "box_wce": _box,
                                   "box_vwce": _box}
# The per-case arrays a loss reads besides the image and the target (columns of a training set).
LOSS_INPUTS: dict[str, tuple[str, ...]] = {"vwce": ("weight",), "ccnn": ("size",), "box_wce": ("box_map",),
                                           "box_vwce": ("weight", "box_map", "pseudo_mask")}


def loss_function(name: str) -> LossFunction:
    """The loss called ``name`` (``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: one of {sorted(LOSSES)}")
    return LOSSES[name]
