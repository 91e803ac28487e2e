"""One function per workflow step: read files, call the logic, write files atomically.

``workflow_scripts/`` call these; the tests call them too. Every output is
written only once it is complete, so a failed job leaves nothing behind that
looks done.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from boxseg.io import (
    CaseError,
    array_like,
    read_image,
    read_json,
    reference_from_geometry,
    write_image,
    write_json,
    write_text,
)

log = logging.getLogger("boxseg")


def _array(path, case="?", dtype=np.float32):
    image = read_image(path, case)
    return sitk.GetArrayFromImage(image).astype(dtype), image


def _spacing_zyx(image: sitk.Image):
    return tuple(float(s) for s in image.GetSpacing()[::-1])


def make_case_boxes(case, image_path, label_path, out_json, *, margin_mm, tumor_values):
    """Box step: boxes of the lesions in a label map, enlarged by ``margin_mm``."""
    from boxseg.preprocess import load_case, make_boxes

    image, label = load_case(case, image_path, label_path)
    records = make_boxes(case, image, label, label_path, margin_mm, tumor_values)
    log.info("case %s: %d box(es), margin %.2f mm", case, len(records), margin_mm)
    write_json({"case": case, "margin_mm": float(margin_mm), "boxes": records}, out_json)


def preprocess_case(
    case,
    image_path,
    label_path,
    boxes_json,
    out_image,
    out_label,
    out_geometry,
    *,
    spacing_mm,
    roi_size_mm,
    window_hu,
    tumor_values,
    organ_values,
):
    """Preprocess step: ROI around the lesion-bearing organ, resampled, windowed, normalised."""
    from boxseg.preprocess import crop_roi, load_case

    image, label = load_case(case, image_path, label_path)
    boxes = read_json(boxes_json)["boxes"]
    roi_image, roi_label, geometry = crop_roi(
        case,
        image,
        label,
        boxes,
        spacing_mm=spacing_mm,
        roi_size_mm=roi_size_mm,
        window_hu=window_hu,
        tumor_values=tumor_values,
        organ_values=organ_values,
    )
    if roi_label is None:
        roi_label = array_like(np.zeros(roi_image.GetSize()[::-1], np.uint8), roi_image)
    write_image(roi_label, out_label)
    write_json(geometry, out_geometry)
    write_image(roi_image, out_image)


def roi_boxes(boxes_json, geometry_json, roi_image: sitk.Image):
    """Box bounds (continuous voxel edges, z y x) on the ROI grid."""
    from boxseg.preprocess import box_bounds_on_roi

    original = reference_from_geometry(read_json(geometry_json)["original"])
    return box_bounds_on_roi(read_json(boxes_json)["boxes"], original, roi_image)


def pseudo_mask_case(case, roi_image_path, boxes_json, geometry_json, out_mask, *, crf_params, threads=1, device="auto"):
    """Stage 1: ConvCRF pseudo-mask from the case's boxes."""
    from boxseg.convcrf import CRFParams, pseudo_mask_from_boxes
    from boxseg.device import configure_torch, select_device
    from boxseg.postprocess import largest_component_per_region
    from boxseg.preprocess import roi_box_mask

    configure_torch(threads)
    image, roi = _array(roi_image_path, case)
    bounds = roi_boxes(boxes_json, geometry_json, roi)
    if not bounds:
        raise CaseError(case, boxes_json, "no box overlaps the region of interest")
    prob = pseudo_mask_from_boxes(image, bounds, _spacing_zyx(roi), CRFParams.from_dict(crf_params), select_device(device, claim=False))
    regions = np.zeros(image.shape, np.uint8)
    for i, b in enumerate(bounds, start=1):
        regions[roi_box_mask([b], image.shape) & (regions == 0)] = i
    mask = largest_component_per_region(prob > 0.5, regions)
    log.info("case %s: pseudo-mask %d voxels in %d box(es)", case, int(mask.sum()), len(bounds))
    write_image(array_like(mask.astype(np.uint8), roi), out_mask)


def _load_pairs(image_paths, target_paths, weight_paths=None):
    images = [_array(p)[0] for p in image_paths]
    targets = [(_array(p, dtype=np.float32)[0] > 0.5).astype(np.int64) for p in target_paths]
    weights = [_array(p)[0] for p in weight_paths] if weight_paths else None
    return images, targets, weights


def train_model(image_paths, target_paths, out_model, out_loss, *, settings, weight_paths=None, threads=1, device="auto", checkpoint=None):
    """Training step (group model with WCE, or final model with VWCE when weights are given)."""
    from boxseg.device import configure_torch, select_device
    from boxseg.training import TrainSettings, train

    settings = TrainSettings.from_dict(settings)
    configure_torch(threads, settings.seed)
    dev = select_device(device)
    images, targets, weights = _load_pairs(image_paths, target_paths, weight_paths)
    log.info("training on %d case(s), %s, device %s, %d thread(s)", len(images), "VWCE" if weights else "WCE", dev, threads)
    train(images, targets, settings, out_model, out_loss, voxel_weights=weights, device=dev, checkpoint_path=checkpoint)


def predict_roi(case, roi_image_path, model_paths, out_paths, *, threads=1, device="auto", threshold=0.5):
    """Binary predictions of each model on one case's ROI (group inference)."""
    from boxseg.device import configure_torch, select_device
    from boxseg.training import load_model, predict_probability

    configure_torch(threads)
    dev = select_device(device)
    image, roi = _array(roi_image_path, case)
    for model_path, out_path in zip(model_paths, out_paths):
        model, patch = load_model(model_path, dev)
        mask = predict_probability(model, image, patch, dev) > threshold
        write_image(array_like(mask.astype(np.uint8), roi), out_path)


def fuse_case(case, roi_image_path, pseudo_mask_path, prediction_paths, boxes_json, geometry_json, out_fusion, out_weight, *, crf_params, threads=1, device="auto"):
    """Stage 2 per case: FM = ConvCRF(PM or P1 or ... or PK), V = PM + sum Pk with V = 0 -> K + 1."""
    from boxseg.convcrf import CRFParams, refine_mask
    from boxseg.device import configure_torch, select_device
    from boxseg.fusion import fusion_union, weight_map
    from boxseg.preprocess import roi_box_mask

    configure_torch(threads)
    image, roi = _array(roi_image_path, case)
    pm = _array(pseudo_mask_path, case, np.uint8)[0] > 0
    preds = [_array(p, case, np.uint8)[0] > 0 for p in prediction_paths]
    allowed = roi_box_mask(roi_boxes(boxes_json, geometry_json, roi), image.shape)
    union = fusion_union(pm, preds)
    prob = refine_mask(image, union, allowed, _spacing_zyx(roi), CRFParams.from_dict(crf_params), device=select_device(device, claim=False))
    fusion = prob > 0.5
    weights = weight_map(pm, preds)
    log.info("case %s: PM %d, union %d, fusion %d voxels", case, int(pm.sum()), int(union.sum()), int(fusion.sum()))
    write_image(array_like(weights.astype(np.float32), roi), out_weight)
    write_image(array_like(fusion.astype(np.uint8), roi), out_fusion)


def predict_case(case, roi_image_path, image_path, model_path, out_probability, out_mask, *, postprocess="largest_component", flip_tta=False, threads=1, device="auto"):
    """Final inference: ROI probability, mapped back to the original grid, thresholded and post-processed."""
    from boxseg.device import configure_torch, select_device
    from boxseg.geometry import to_original_grid
    from boxseg.postprocess import largest_component
    from boxseg.training import load_model, predict_probability

    configure_torch(threads)
    dev = select_device(device)
    image, roi = _array(roi_image_path, case)
    original = read_image(image_path, case)
    model, patch = load_model(model_path, dev)
    prob_roi = array_like(predict_probability(model, image, patch, dev, flip_tta=flip_tta), roi)
    mask = to_original_grid(prob_roi, original) > 0.5
    if postprocess == "largest_component":
        mask = largest_component(mask)
    elif postprocess != "none":
        raise ValueError(f"unknown postprocess {postprocess!r}")
    write_image(prob_roi, out_probability)
    write_image(array_like(mask.astype(np.uint8), original), out_mask)


def evaluate_case(case, prediction_path, image_path, label_path, boxes_json, out_tsv, *, tumor_values):
    """Scores of the prediction and of the box itself against the reference lesion, on the original grid."""
    import pandas as pd

    from boxseg.boxes import box_mask
    from boxseg.io import read_label
    from boxseg.metrics import score

    image = read_image(image_path, case)
    ref = np.isin(sitk.GetArrayFromImage(read_label(label_path, image, case)), tumor_values)
    pred = sitk.GetArrayFromImage(read_label(prediction_path, image, case)) > 0
    box = box_mask(read_json(boxes_json)["boxes"], image) > 0
    spacing = _spacing_zyx(image)
    s = score(pred, ref, spacing)
    row = {"case": case, **s.as_dict(), "box_dsc": score(box, ref, spacing).dsc}
    write_text(pd.DataFrame([row]).to_csv(sep="\t", index=False, float_format="%.6g"), out_tsv)
