"""Stage 1 step: a case's pseudo-mask from its boxes (``stage1``)."""

from __future__ import annotations

import logging
import os

import numpy as np

from boxseg.boxes import bounds_id_map, read_boxes, roi_bounds
from boxseg.io import CaseError, array_like, read_array, read_json, spacing_zyx, write_image

log = logging.getLogger("boxseg")


def pseudo_mask_case(case: str, roi_image_path: str | os.PathLike, boxes_json: str | os.PathLike, geometry_json: str | os.PathLike,
                     out_mask: str | os.PathLike, *, crf_params: dict, threads: int = 1, device: str = "auto") -> None:
    """Stage 1: ConvCRF pseudo-mask from the case's boxes and the slack the user stated
    (``slack_mm``, one number; 0 = not told); the largest component in each box."""
    from boxseg.crf_params import CRFParams
    from boxseg.device import configure_torch, select_device
    from boxseg.postprocess import largest_component_per_region
    from boxseg.stage1 import pseudo_mask_from_boxes

    configure_torch(threads)
    image, roi = read_array(roi_image_path, case)
    record = read_boxes(boxes_json, case)
    kept = roi_bounds(record["boxes"], read_json(geometry_json), roi)
    if not kept:
        raise CaseError(case, boxes_json, "no box overlaps the region of interest")
    bounds = [b for b, _ in kept]
    slack = float(record.get("slack_mm") or 0.0)
    prob = pseudo_mask_from_boxes(image, bounds, spacing_zyx(roi), CRFParams.from_dict(crf_params), select_device(device, claim=False),
                                  slack_mm=slack)
    regions = bounds_id_map(bounds, range(1, len(bounds) + 1), image.shape)
    mask = largest_component_per_region(prob > 0.5, regions)
    log.info("case %s: pseudo-mask %d voxels in %d box(es), stated slack %g mm", case, int(mask.sum()), len(bounds), slack)
    write_image(array_like(mask.astype(np.uint8), roi), out_mask)
