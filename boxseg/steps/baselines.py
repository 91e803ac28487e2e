"""Baseline steps: the Constrained-CNN's scribbles and SDI's 2D boxes and initial labels."""

from __future__ import annotations

import logging
import os

import numpy as np

from boxseg.io import CaseError, array_like, read_array, spacing_zyx, write_image, write_json

log = logging.getLogger("boxseg")


def scribbles_case(case: str, roi_label_path: str | os.PathLike, out_path: str | os.PathLike, *, erosion_mm: float) -> None:
    """Constrained-CNN baseline labels of a training case: its lesion eroded per axial slice."""
    from boxseg.baselines import scribbles_from_label

    label, roi = read_array(roi_label_path, case, np.uint8)
    if not label.any():
        raise CaseError(case, roi_label_path, "no lesion voxels to draw scribbles from")
    scribbles = scribbles_from_label(label > 0, spacing_zyx(roi), erosion_mm)
    log.info("case %s: %d scribble voxels of %d lesion voxels", case, int((scribbles == 1).sum()), int(label.sum()))
    write_image(array_like(scribbles, roi), out_path)


def sdi_labels_case(case: str, roi_image_path: str | os.PathLike, roi_label_path: str | os.PathLike, out_labels: str | os.PathLike,
                    out_boxes: str | os.PathLike, *, margin_mm: float, crf_params: dict, inner_fraction: float, threads: int = 1,
                    device: str = "auto") -> None:
    """SDI baseline labels of a training case: 2D boxes per axial slice of its lesion
    (enlarged by ``margin_mm``) and the initial labels (box core and GrabCut agreeing)."""
    from boxseg.baselines import sdi_initial_labels, slice_boxes
    from boxseg.crf_params import CRFParams
    from boxseg.device import configure_torch, select_device

    configure_torch(threads)
    image, roi = read_array(roi_image_path, case)
    label = read_array(roi_label_path, case, np.uint8)[0] > 0
    if not label.any():
        raise CaseError(case, roi_label_path, "no lesion voxels to draw 2D boxes from")
    boxes = slice_boxes(label, spacing_zyx(roi), margin_mm)
    labels = sdi_initial_labels(image, boxes, spacing_zyx(roi), CRFParams.from_dict(crf_params), inner_fraction,
                                select_device(device, claim=False))
    log.info("case %s: %d slice boxes, %d initial lesion voxels (%d lesion voxels)", case, len(boxes), int((labels == 1).sum()),
             int(label.sum()))
    write_image(array_like(labels, roi), out_labels)
    write_json({"case": case, "margin_mm": float(margin_mm), "boxes": [list(b) for b in boxes]}, out_boxes)
