"""Inference step: a final model's mask of a case on its original grid, post-processed."""

from __future__ import annotations

import logging
import os

import numpy as np
import SimpleITK as sitk

from boxseg.boxes import read_boxes
from boxseg.io import CaseError, array_like, read_array, read_image, write_image
from boxseg.postprocess import postprocess_mask

log = logging.getLogger("boxseg")


def predict_case(case: str, roi_image_path: str | os.PathLike, image_path: str | os.PathLike, model_path: str | os.PathLike,
                 boxes_json: str | os.PathLike, out_probability: str | os.PathLike, out_raw: str | os.PathLike, out_mask: str | os.PathLike,
                 *, postprocess: str = "largest_component", flip_tta: bool = False, threshold: float | str = 0.5, threads: int = 1,
                 device: str = "auto", claim: bool = True, extra: dict | None = None) -> None:
    """Final inference: ROI probability, mapped back to the original grid and thresholded
    (``out_raw``; ``threshold`` a number or ``calibrated``, see ``decision_threshold``), then
    post-processed (``out_mask``, see ``postprocess_mask``).

    ``extra`` names further outputs a user opens in their tools, all on the original grid:
    ``probability`` (the lesion probability), ``lesions`` (the mask's lesions labelled 1..n,
    largest first) with ``lesion_table`` (their volumes and centres, TSV), and ``markups``
    (the case's boxes as 3D Slicer ROI markups, for review)."""
    from boxseg import layout
    from boxseg.geometry import to_original_grid
    from boxseg.io import read_json

    model = read_case_model(case, model_path)
    cut = decision_threshold(case, model_path, threshold, model)
    image, roi = read_array(roi_image_path, case)
    original = read_image(image_path, case)
    boxes = read_boxes(boxes_json, case)
    geometry = layout.roi_geometry_of(roi_image_path)
    prob_roi = roi_probability(case, model_path, image, roi, read_json(geometry) if geometry.exists() else None, model=model,
                               flip_tta=flip_tta, threads=threads, device=device, claim=claim)
    probability = to_original_grid(prob_roi, original)
    raw = probability > cut
    mask = postprocess_mask(raw, boxes, original, postprocess)
    log.info("case %s: %d voxels above %.2f, %d after %s (boxes from %s)", case, int(raw.sum()), cut, int(mask.sum()), postprocess,
             boxes["source"])
    write_image(prob_roi, out_probability)
    write_image(array_like(raw.astype(np.uint8), original), out_raw)
    if extra:
        _write_extra(extra, probability, mask, boxes, original)
    write_image(array_like(mask.astype(np.uint8), original), out_mask)


def _write_extra(extra: dict, probability: np.ndarray, mask: np.ndarray, boxes: dict, original: sitk.Image) -> None:
    import json

    import pandas as pd

    from boxseg.atomic import write_text
    from boxseg.boxes import slicer_markups
    from boxseg.postprocess import lesion_labels

    if "probability" in extra:
        write_image(array_like(probability.astype(np.float32), original), extra["probability"])
    if "lesions" in extra or "lesion_table" in extra:
        labels, rows = lesion_labels(mask, original)
        if "lesions" in extra:
            write_image(array_like(labels, original), extra["lesions"])
        if "lesion_table" in extra:
            columns = ["lesion", "voxels", "volume_ml", "centre_lps_mm"]
            write_text(pd.DataFrame(rows, columns=columns).to_csv(sep="\t", index=False), extra["lesion_table"])
    if "markups" in extra:
        write_text(json.dumps(slicer_markups(boxes["boxes"], original), indent=2) + "\n", extra["markups"])


def read_case_model(case: str, model_path: str | os.PathLike) -> dict:
    """A final model's record (``network.read_model``), read once per case; a file that is not
    one: a one-line error naming the case and the file."""
    from boxseg.network import read_model

    try:
        return read_model(model_path)
    except ValueError as err:
        raise CaseError(case, model_path, str(err).removeprefix(f"{model_path}: ")) from None


def roi_probability(case: str, model_path: str | os.PathLike, image: np.ndarray, roi: sitk.Image, geometry: dict | None, *,
                    model: dict | None = None, flip_tta: bool = False, threads: int = 1, device: str = "auto",
                    claim: bool = True, roi_as_trained: bool = True) -> sitk.Image:
    """A final model's lesion probability on a case's ROI grid (``image`` on ``roi``): the model
    (its record ``model``, or read from ``model_path``; ``read_case_model``) checked against
    the case's preprocessing (``geometry``, the ROI's record; None: not recorded, not checked),
    then sliding-window inference. ``claim``: claim a GPU (the rule declares one).
    ``roi_as_trained``: warn when the ROI was placed or sized otherwise than the training
    ROIs (False where that is the point: evaluation's other placement)."""
    from boxseg.device import configure_torch, select_device
    from boxseg.network import load_model, predict_probability

    configure_torch(threads)
    dev = select_device(device, claim=claim)
    model = model if model is not None else read_case_model(case, model_path)
    try:
        network, patch = load_model(model, dev)
    except ValueError as err:
        raise CaseError(case, model_path, str(err).removeprefix("model record: ")) from None
    if geometry is not None:
        _check_preprocessing(case, model_path, model, geometry, roi_as_trained)
    return array_like(predict_probability(network, image, patch, dev, flip_tta=flip_tta), roi)


def decision_threshold(case: str, model_path: str | os.PathLike, setting: float | str, model: dict | None = None) -> float:
    """The threshold a model's probability is cut at: ``setting`` (``final.threshold``) when
    it is a number, the model's own with ``calibrated`` (``calibration``; the model's record
    ``model``, or read from ``model_path``); a one-line error naming the case and the model
    when the model records none."""
    from boxseg.calibration import resolve_threshold
    from boxseg.network import model_calibration

    if setting == "calibrated" and model is None:
        model = read_case_model(case, model_path)
    try:
        return resolve_threshold(setting, model_calibration(model) if setting == "calibrated" else None)
    except ValueError as err:
        raise CaseError(case, model_path, str(err)) from None


def _check_preprocessing(case: str, model_path: str | os.PathLike, model: dict, geometry: dict, roi_as_trained: bool = True) -> None:
    """A one-line error when the case was preprocessed otherwise than the model's training
    images (another spacing or HU window: ``model=`` under another config); a warning when
    its ROI was placed or sized otherwise (the model still applies)."""
    from boxseg.network import model_preprocessing, preprocessing_mismatch, roi_difference

    trained = model_preprocessing(model)
    difference = roi_difference(trained, geometry) if roi_as_trained else ""
    if difference:
        log.warning("case %s: %s: %s", case, model_path, difference)
    mismatch = preprocessing_mismatch(trained, geometry)
    if mismatch:
        raise CaseError(case, model_path, f"the model was trained on other preprocessing ({mismatch}): set preprocess "
                        "as it was (spacing_mm, window_hu) to predict with it")


def dicom_seg_case(case: str, mask_path: str | os.PathLike, series_dir: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """The final mask of a case read from a DICOM series, as a DICOM SEG over that series."""
    from boxseg.dicom_seg import write_dicom_seg

    mask = read_array(mask_path, case, np.uint8)[0]
    write_dicom_seg(case, mask, series_dir, out_path)
