"""Weak labels of the baselines the paper compares against (docs/method.md, "What the paper reports").

SDI (Khoreva et al. 2017): 2D boxes on every axial slice of the lesion; the
initial labels are lesion where the box's inner region and a GrabCut-style
segmentation of the slice agree (our ConvCRF on the slice, with the box
prior), ignored where they disagree and background outside every box; a 2D
CNN learns from them and relabels the training slices for the next round
(its prediction inside each box, the initial labels where it finds almost
nothing; background outside), recursively.

Constrained-CNN (Kervadec et al. 2019): the network learns from a few labelled
lesion voxels ("scribbles", here the reference lesion eroded slice by slice)
with a partial cross-entropy, and a size loss keeps the predicted lesion
volume within [0.9 V, 1.1 V] of the true volume V. Unlabelled voxels carry
``IGNORE``. Training: the ``ccnn`` loss (``losses``); SDI's rounds: ``train_sdi``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from boxseg.losses import IGNORE  # the training loss's "unlabelled" target value

if TYPE_CHECKING:
    import torch

    from boxseg.crf_params import CRFParams
    from boxseg.train_settings import TrainSettings


def scribbles_from_label(lesion: np.ndarray, spacing_mm: Sequence[float], erosion_mm: float = 3.0) -> np.ndarray:
    """(z, y, x) uint8 targets: 1 on the lesion eroded per axial slice by ``erosion_mm``, IGNORE elsewhere.

    A slice whose lesion vanishes under the erosion keeps its innermost voxel, so every
    lesion slice has a scribble.
    """
    lesion = np.asarray(lesion, bool)
    out = np.full(lesion.shape, IGNORE, np.uint8)
    for z in np.flatnonzero(lesion.any(axis=(1, 2))):
        distance = ndi.distance_transform_edt(lesion[z], sampling=spacing_mm[1:])
        scribble = distance > erosion_mm
        if not scribble.any():
            scribble = distance == distance.max()
        out[z][scribble] = 1
    return out


def slice_boxes(lesion: np.ndarray, spacing_mm: Sequence[float],
                margin_mm: float) -> list[tuple[int, int, int, int, int]]:
    """2D boxes (z, y0, x0, y1, x1), inclusive, of each 8-connected lesion region on each
    axial slice, enlarged by ``margin_mm`` in-plane and clipped to the slice."""
    lesion = np.asarray(lesion, bool)
    margin = np.round(float(margin_mm) / np.asarray(spacing_mm[1:], float)).astype(int)
    boxes = []
    for z in np.flatnonzero(lesion.any(axis=(1, 2))):
        regions, _ = ndi.label(lesion[z], structure=np.ones((3, 3)))
        for sl in ndi.find_objects(regions):
            y0, x0 = np.maximum([sl[0].start - margin[0], sl[1].start - margin[1]], 0)
            y1 = min(sl[0].stop - 1 + margin[0], lesion.shape[1] - 1)
            x1 = min(sl[1].stop - 1 + margin[1], lesion.shape[2] - 1)
            boxes.append((int(z), int(y0), int(x0), int(y1), int(x1)))
    return boxes


def box_map(shape: Sequence[int], boxes: Sequence[Sequence[int]]) -> np.ndarray:
    """(z, y, x) int32 map: the index + 1 of the 2D box covering each voxel (later boxes win), 0 outside."""
    out = np.zeros(shape, np.int32)
    for i, (z, y0, x0, y1, x1) in enumerate(boxes, start=1):
        out[z, y0 : y1 + 1, x0 : x1 + 1] = i
    return out


def sdi_initial_labels(image: np.ndarray, boxes: Sequence[Sequence[int]], spacing_mm: Sequence[float],
                       crf_params: CRFParams | None = None, inner_fraction: float = 0.5,
                       device: torch.device | str | None = None) -> np.ndarray:
    """SDI labels: lesion where the box's central region (``inner_fraction`` of its height and
    width) and the slice's GrabCut-style ConvCRF segmentation agree, IGNORE elsewhere in the
    box, background outside every box."""
    from boxseg.convcrf import CRFParams
    from boxseg.stage1 import pseudo_mask_from_boxes

    params = crf_params or CRFParams()
    out = np.zeros(image.shape, np.uint8)
    in_box = np.zeros(image.shape, bool)
    lesion = np.zeros(image.shape, bool)
    for z, y0, x0, y1, x1 in boxes:
        in_box[z, y0 : y1 + 1, x0 : x1 + 1] = True
        grabcut = pseudo_mask_from_boxes(image[z : z + 1], [((0.0, y0, x0), (1.0, y1 + 1.0, x1 + 1.0))], spacing_mm, params, device)[0] > 0.5
        inner = np.zeros(image.shape[1:], bool)
        hy, hx = (y1 - y0 + 1) * (1 - inner_fraction) / 2, (x1 - x0 + 1) * (1 - inner_fraction) / 2
        inner[int(np.floor(y0 + hy)) : int(np.ceil(y1 + 1 - hy)), int(np.floor(x0 + hx)) : int(np.ceil(x1 + 1 - hx))] = True
        lesion[z] |= inner & grabcut
    out[in_box] = IGNORE
    out[lesion] = 1
    return out


def sdi_relabel(probability: np.ndarray, boxes: Sequence[Sequence[int]], initial: np.ndarray,
                min_fraction: float = 0.1) -> np.ndarray:
    """Next round's labels: the prediction (> 0.5) inside each 2D box, background outside every
    box; a box where the prediction covers less than ``min_fraction`` of it keeps its initial labels."""
    prediction = np.asarray(probability) > 0.5
    out = np.zeros(initial.shape, np.uint8)
    for z, y0, x0, y1, x1 in boxes:
        window = (z, slice(y0, y1 + 1), slice(x0, x1 + 1))
        if prediction[window].mean() < min_fraction:
            out[window] = np.maximum(out[window], initial[window])
        else:
            out[window] = np.maximum(out[window], prediction[window].astype(np.uint8))
    return out


def train_sdi(images: Sequence[np.ndarray], initial: Sequence[np.ndarray], boxes: Sequence[Sequence[tuple]],
              settings: TrainSettings, rounds: int, out_model: str | os.PathLike, out_loss: str | os.PathLike,
              device: torch.device | str, checkpoint: str | os.PathLike | None, preprocessing: dict | None = None) -> None:
    """Recursive SDI training: round r trains a fresh 2D UNet (steps / rounds steps) on the
    current labels, then relabels the training slices for round r + 1. Finished rounds are
    kept beside the checkpoint with a fingerprint of the job (settings, rounds, images, initial
    labels, boxes), so a restarted job resumes at the round it was in, and only when nothing
    it trains on has changed; otherwise the kept rounds are dropped and it starts again.
    ``preprocessing``: recorded in each round's model, so the last (the model) has it."""
    from dataclasses import replace
    from pathlib import Path

    import pandas as pd

    from boxseg.atomic import write_text
    from boxseg.network import load_model, predict_probability
    from boxseg.training import fingerprint, train

    labels = [t.copy() for t in initial]
    steps = max(1, settings.steps // rounds)
    base = Path(checkpoint) if checkpoint else Path(out_model).with_suffix(".ckpt")
    kept = base.with_name(f"{base.name}.rounds")
    job = fingerprint(settings, images, initial, [np.asarray(b, np.int64) for b in boxes], [np.asarray([rounds])])
    def round_files() -> list[Path]:  # every file of this job's rounds: models, loss logs, checkpoints, the fingerprint
        return sorted(base.parent.glob(f"{base.name}.round*"))

    if not kept.exists() or kept.read_text(encoding="utf-8") != job:
        stale = [p for p in round_files() if p != kept]
        if stale:
            logging.getLogger("boxseg").warning("%s: kept SDI rounds were written for other settings or training data: training from round 0", base)
        for p in stale:
            p.unlink()
        write_text(job, kept)
    logs = []
    for r in range(rounds):
        round_model, round_loss = base.with_name(f"{base.name}.round{r}.pt"), base.with_name(f"{base.name}.round{r}.tsv")
        if not round_model.exists():
            train(images, labels, replace(settings, steps=steps, decay_steps=max(1, settings.decay_steps // rounds), seed=settings.seed + r),
                  round_model, round_loss, device=device, checkpoint_path=base.with_name(f"{base.name}.round{r}"),
                  preprocessing=preprocessing)
        log_r = pd.read_csv(round_loss, sep="\t")
        logs.append(log_r.assign(step=log_r["step"] + r * steps, epoch=log_r["epoch"] + sum(len(x) for x in logs), round=r))
        if r + 1 < rounds:
            model, patch = load_model(round_model, device)
            labels = [sdi_relabel(predict_probability(model, image, patch, device), b, t).astype(np.int64)
                      for image, b, t in zip(images, boxes, initial)]
            logging.getLogger("boxseg").info("SDI round %d: relabelled %d lesion voxels", r + 1, int(sum((lab == 1).sum() for lab in labels)))
    os.replace(round_model, out_model)
    write_text(pd.concat(logs, ignore_index=True).to_csv(sep="\t", index=False, float_format="%.6g"), out_loss)
    for p in round_files():
        p.unlink()
