"""Stage 2 step: a training case's group-model masks, fusion mask and voxel weight map."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from boxseg.boxes import bounds_mask, read_boxes, roi_bounds
from boxseg.io import array_like, read_array, read_json, spacing_zyx, write_image

log = logging.getLogger("boxseg")


def fuse_case(case: str, roi_image_path: str | os.PathLike, pseudo_mask_path: str | os.PathLike, model_paths: Sequence[str | os.PathLike],
              boxes_json: str | os.PathLike, geometry_json: str | os.PathLike, out_predictions: Sequence[str | os.PathLike],
              out_fusion: str | os.PathLike, out_weight: str | os.PathLike, *, crf_params: dict, threads: int = 1, device: str = "auto", claim: bool = True,
              threshold: float = 0.5) -> None:
    """Stage 2 per case: group models' masks P1..PK, FM = ConvCRF(PM or P1 or ... or PK),
    V = PM + sum Pk with V = 0 -> K + 1."""
    from boxseg.convcrf import refine_mask
    from boxseg.crf_params import CRFParams
    from boxseg.device import configure_torch, select_device
    from boxseg.fusion import fusion_union, weight_map
    from boxseg.network import load_model, predict_probability

    configure_torch(threads)
    dev = select_device(device, claim=claim)
    image, roi = read_array(roi_image_path, case)
    pm = read_array(pseudo_mask_path, case, np.uint8)[0] > 0
    preds = []
    for model_path, out_path in zip(model_paths, out_predictions):
        model, patch = load_model(model_path, dev)
        preds.append(predict_probability(model, image, patch, dev) > threshold)
        write_image(array_like(preds[-1].astype(np.uint8), roi), out_path)
    bounds = [b for b, _ in roi_bounds(read_boxes(boxes_json, case)["boxes"], read_json(geometry_json), roi)]
    allowed = bounds_mask(bounds, image.shape)
    union = fusion_union(pm, preds)
    prob = refine_mask(image, union, allowed, spacing_zyx(roi), CRFParams.from_dict(crf_params), device=dev)
    fusion = prob > 0.5
    weights = weight_map(pm, preds)
    log.info("case %s: PM %d, group models %s, union %d, fusion %d voxels", case, int(pm.sum()), [int(p.sum()) for p in preds],
             int(union.sum()), int(fusion.sum()))
    write_image(array_like(weights.astype(np.float32), roi), out_weight)
    write_image(array_like(fusion.astype(np.uint8), roi), out_fusion)
