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
``IGNORE``. Training: ``boxseg.training`` with ``size_loss_weight > 0``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from boxseg.training import IGNORE  # the training loss's "unlabelled" target value


def scribbles_from_label(lesion: np.ndarray, spacing_mm, erosion_mm: float = 3.0) -> np.ndarray:
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


def slice_boxes(lesion: np.ndarray, spacing_mm, margin_mm: float) -> list:
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


def box_map(shape, boxes) -> np.ndarray:
    """(z, y, x) int32 map: the index + 1 of the 2D box covering each voxel (later boxes win), 0 outside."""
    out = np.zeros(shape, np.int32)
    for i, (z, y0, x0, y1, x1) in enumerate(boxes, start=1):
        out[z, y0 : y1 + 1, x0 : x1 + 1] = i
    return out


def sdi_initial_labels(image: np.ndarray, boxes, spacing_mm, crf_params=None, inner_fraction: float = 0.5, device=None) -> np.ndarray:
    """SDI labels: lesion where the box's central region (``inner_fraction`` of its height and
    width) and the slice's GrabCut-style ConvCRF segmentation agree, IGNORE elsewhere in the
    box, background outside every box."""
    from boxseg.convcrf import CRFParams, pseudo_mask_from_boxes

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


def sdi_relabel(probability: np.ndarray, boxes, initial: np.ndarray, min_fraction: float = 0.1) -> np.ndarray:
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
