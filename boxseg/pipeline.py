"""One function per workflow step: read files, call the logic, write files atomically.

``workflow_scripts/`` call these; the tests call them too. Every output is
written only once it is complete, so a failed job leaves nothing behind that
looks done.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import SimpleITK as sitk

from boxseg.boxes import drawn_boxes
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


USER_BOX_SOURCES = ("table", "file")


def case_boxes(case, image, label, *, box_rows=None, box_file=None, margin_mm=0.0, tumor_values=(1,), label_path=None,
               protocol="paper", box_seed=0, box_table=None):
    """The case's boxes and where they came from.

    In order: rows of the box table (``box_rows``), the case's own box file (``.mrk.json``
    from 3D Slicer, or a box table), else boxes drawn from the lesions in the label by the
    research protocol (``protocol`` with ``margin_mm``, seeded by ``box_seed``), else none
    (a case to predict with an organ label). ``box_table``: the table's path, for errors.
    """
    from boxseg.boxes import box_rows as rows_of
    from boxseg.boxes import read_box_table, read_slicer_rois, records_from_rows
    from boxseg.preprocess import make_boxes

    if box_rows:
        return "table", records_from_rows(box_rows, image, case, box_table or "box table")
    if box_file:
        try:
            if str(box_file).endswith(".json"):
                rows = read_slicer_rois(box_file)
            else:
                rows = rows_of(read_box_table(box_file), case)
        except (ValueError, KeyError, OSError) as err:
            raise CaseError(case, box_file, f"unreadable box file: {str(err).removeprefix(f'{box_file}: ')}") from None
        if not rows:
            raise CaseError(case, box_file, "no box for this case in the file")
        return "file", records_from_rows(rows, image, case, box_file)
    if label is not None and tumor_values is not None and np.isin(sitk.GetArrayViewFromImage(label), tumor_values).any():
        return "label", make_boxes(case, image, label, label_path, margin_mm, tumor_values, protocol, box_seed)
    return "none", []


def preprocess_case(
    case,
    image_path,
    label_path,
    out_boxes,
    out_image,
    out_label,
    out_geometry,
    *,
    box_rows=None,
    box_table=None,
    box_file=None,
    needs_boxes=True,
    margin_mm,
    protocol="paper",
    box_seed=0,
    slack_mm=0.0,
    spacing_mm,
    roi_size_mm,
    window_hu,
    tumor_values,
    organ_values,
):
    """Preprocess step: the case's boxes, then the ROI around them or the lesion-bearing organ,
    resampled, windowed and normalised.

    Boxes drawn by users place the ROI on their own; boxes from a label (research mode) and
    cases without boxes use the label's lesion-bearing organ, as the paper's kidney ROI.
    The boxes record holds the boxes as drawn (nothing else of the label: ``boxes.drawn_boxes``),
    how they were drawn (``protocol``, ``margin_mm``, ``box_seed`` for boxes from a label) and
    ``slack_mm``, the one number a user states about how loose their readers draw (0: not told).
    """
    from boxseg.preprocess import crop_roi, lesion_on_grid, load_case

    image, label = load_case(case, image_path, label_path or None)
    source, boxes = case_boxes(case, image, label, box_rows=box_rows, box_file=box_file, margin_mm=margin_mm,
                               tumor_values=tumor_values, label_path=label_path, protocol=protocol, box_seed=box_seed,
                               box_table=box_table)
    if needs_boxes and not boxes:
        what = label_path or "case sheet"
        raise CaseError(case, what, f"a training case needs boxes: no box given and no lesion voxels (label values {list(tumor_values)})")
    if not boxes and (label is None or not np.isin(sitk.GetArrayViewFromImage(label), list(tumor_values) + list(organ_values)).any()):
        raise CaseError(case, label_path or image_path, "no box and no organ label to place the region of interest")
    drawn = f"{protocol} protocol, margin {float(margin_mm):g} mm" if source == "label" else "as drawn"
    log.info("case %s: %d box(es) from %s (%s)", case, len(boxes), source, drawn)
    roi_image, roi_label, geometry = crop_roi(
        case,
        image,
        label if source not in USER_BOX_SOURCES else None,
        boxes,
        spacing_mm=spacing_mm,
        roi_size_mm=roi_size_mm,
        window_hu=window_hu,
        tumor_values=tumor_values,
        organ_values=organ_values,
    )
    if roi_label is None and label is not None:
        roi_label = lesion_on_grid(label, roi_image, tumor_values)
    if roi_label is None:
        roi_label = array_like(np.zeros(roi_image.GetSize()[::-1], np.uint8), roi_image)
    write_image(roi_label, out_label)
    write_json(geometry, out_geometry)
    write_image(roi_image, out_image)
    research = source == "label"
    write_json({"case": case, "source": source, "protocol": protocol if research else None,
                "margin_mm": float(margin_mm) if research else 0.0, "box_seed": int(box_seed) if research else None,
                "slack_mm": float(slack_mm or 0.0), "boxes": drawn_boxes(boxes, case, out_boxes)}, out_boxes)


def read_boxes(boxes_json, case: str) -> dict:
    """A case's boxes record (``results/boxes/{case}.json``) as the method may read it: its
    boxes checked to carry only what a drawn box carries (``boxes.drawn_boxes``)."""
    record = read_json(boxes_json)
    record["boxes"] = drawn_boxes(record["boxes"], case, boxes_json)
    return record


def roi_box_records(boxes: dict, geometry_json, roi_image: sitk.Image):
    """(bounds, box record) on the ROI grid of each box of a case's boxes record (the contents
    of ``results/boxes/{case}.json``) that overlaps it; bounds are continuous voxel edges, z y x."""
    from boxseg.preprocess import boxes_on_roi

    original = reference_from_geometry(read_json(geometry_json)["original"])
    return boxes_on_roi(boxes["boxes"], original, roi_image)


def roi_boxes(boxes: dict, geometry_json, roi_image: sitk.Image):
    """Box bounds (continuous voxel edges, z y x) on the ROI grid of a case's boxes record."""
    return [bounds for bounds, _ in roi_box_records(boxes, geometry_json, roi_image)]


def pseudo_mask_case(case, roi_image_path, boxes_json, geometry_json, out_mask, *, crf_params, threads=1, device="auto"):
    """Stage 1: ConvCRF pseudo-mask from the case's boxes and the slack the user stated
    (``slack_mm``, one number; 0 = not told)."""
    from boxseg.convcrf import CRFParams, pseudo_mask_from_boxes
    from boxseg.device import configure_torch, select_device
    from boxseg.postprocess import largest_component_per_region
    from boxseg.preprocess import roi_box_mask

    configure_torch(threads)
    image, roi = _array(roi_image_path, case)
    record = read_boxes(boxes_json, case)
    kept = roi_box_records(record, geometry_json, roi)
    if not kept:
        raise CaseError(case, boxes_json, "no box overlaps the region of interest")
    bounds = [b for b, _ in kept]
    slack = float(record.get("slack_mm") or 0.0)
    prob = pseudo_mask_from_boxes(image, bounds, _spacing_zyx(roi), CRFParams.from_dict(crf_params), select_device(device, claim=False), slack_mm=slack)
    regions = np.zeros(image.shape, np.uint8)
    for i, b in enumerate(bounds, start=1):
        regions[roi_box_mask([b], image.shape) & (regions == 0)] = i
    mask = largest_component_per_region(prob > 0.5, regions)
    log.info("case %s: pseudo-mask %d voxels in %d box(es), stated slack %g mm", case, int(mask.sum()), len(bounds), slack)
    write_image(array_like(mask.astype(np.uint8), roi), out_mask)


def _load_pairs(image_paths, target_paths, weight_paths=None):
    from boxseg.training import IGNORE

    images = [_array(p)[0] for p in image_paths]
    targets = []
    for p in target_paths:
        t = _array(p, dtype=np.float32)[0]
        targets.append(np.where(t == IGNORE, IGNORE, t > 0.5).astype(np.int64))  # IGNORE: unlabelled
    weights = [_array(p)[0] for p in weight_paths] if weight_paths else None
    return images, targets, weights


def _digest(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_training_set(image_paths, target_paths, out_tsv, weight_paths=None, size_paths=None, box_paths=None):
    """A model's training set: one row per case with its files and their content digests.

    Training jobs read this one file instead of listing every case file as an input: the
    digests make it change whenever any file's content changes (so training reruns), and
    a job with thousands of inputs stays out of the DAG's hot path (see benchmarks/dag_bench.py).
    """
    import pandas as pd

    table = pd.DataFrame({"image": [str(p) for p in image_paths], "target": [str(p) for p in target_paths]})
    if weight_paths:
        table["weight"] = [str(p) for p in weight_paths]
    if size_paths:
        table["size"] = [str(p) for p in size_paths]
    if box_paths:
        table["box"] = [str(p) for p in box_paths]
    for column in list(table.columns):
        table[f"{column}_sha256"] = [_digest(p) for p in table[column]]
    write_text(table.to_csv(sep="\t", index=False), out_tsv)


def train_model(training_set, out_model, out_loss, *, settings, threads=1, device="auto", checkpoint=None, rounds=1):
    """Training step on a training set table: a group model (WCE), a final model (VWCE when it
    has weights; partial CE + size loss when it has sizes) or, when it has 2D boxes, the SDI
    baseline trained in ``rounds`` recursive rounds."""
    import pandas as pd

    from boxseg.device import configure_torch, select_device
    from boxseg.training import TrainSettings, train

    table = pd.read_csv(training_set, sep="\t", dtype=str)
    settings = TrainSettings.from_dict(settings)
    configure_torch(threads, settings.seed)
    dev = select_device(device)
    weights = list(table["weight"]) if "weight" in table else None
    images, targets, weights = _load_pairs(list(table["image"]), list(table["target"]), weights)
    sizes = [_array(p, dtype=np.uint8)[0] > 0 for p in table["size"]] if "size" in table else None
    if "box" in table:
        boxes = [[tuple(b) for b in read_json(p)["boxes"]] for p in table["box"]]
        log.info("SDI: %d case(s), %d round(s), 2D, device %s, %d thread(s)", len(images), rounds, dev, threads)
        return _train_sdi(images, targets, boxes, settings, rounds, out_model, out_loss, dev, checkpoint)
    loss = "partial CE + size loss" if sizes is not None else "VWCE" if weights else "WCE"
    log.info("training on %d case(s), %s, device %s, %d thread(s)", len(images), loss, dev, threads)
    train(images, targets, settings, out_model, out_loss, voxel_weights=weights, size_targets=sizes, device=dev, checkpoint_path=checkpoint)


def _train_sdi(images, initial, boxes, settings, rounds, out_model, out_loss, device, checkpoint):
    """Recursive SDI training: round r trains a fresh 2D UNet (steps / rounds steps) on the
    current labels, then relabels the training slices for round r + 1. Finished rounds are
    kept beside the checkpoint with a fingerprint of the job (settings, rounds, images, initial
    labels, boxes), so a restarted job resumes at the round it was in, and only when nothing
    it trains on has changed; otherwise the kept rounds are dropped and it starts again."""
    from dataclasses import replace
    from pathlib import Path

    import pandas as pd

    from boxseg.baselines import sdi_relabel
    from boxseg.training import _fingerprint, load_model, predict_probability, train

    labels = [t.copy() for t in initial]
    steps = max(1, settings.steps // rounds)
    base = Path(checkpoint) if checkpoint else Path(out_model).with_suffix(".ckpt")
    kept = base.with_name(f"{base.name}.rounds")
    fingerprint = _fingerprint(settings, images, initial, [np.asarray(b, np.int64) for b in boxes], [np.asarray([rounds])])
    def round_files():  # every file of this job's rounds: models, loss logs, checkpoints, the fingerprint
        return sorted(base.parent.glob(f"{base.name}.round*"))

    if not kept.exists() or kept.read_text() != fingerprint:
        stale = [p for p in round_files() if p != kept]
        if stale:
            log.warning("%s: kept SDI rounds were written for other settings or training data: training from round 0", base)
        for p in stale:
            p.unlink()
        write_text(fingerprint, kept)
    logs = []
    for r in range(rounds):
        round_model, round_loss = base.with_name(f"{base.name}.round{r}.pt"), base.with_name(f"{base.name}.round{r}.tsv")
        if not round_model.exists():
            train(images, labels, replace(settings, steps=steps, decay_steps=max(1, settings.decay_steps // rounds), seed=settings.seed + r),
                  round_model, round_loss, device=device, checkpoint_path=base.with_name(f"{base.name}.round{r}"))
        log_r = pd.read_csv(round_loss, sep="\t")
        logs.append(log_r.assign(step=log_r["step"] + r * steps, epoch=log_r["epoch"] + sum(len(x) for x in logs), round=r))
        if r + 1 < rounds:
            model, patch = load_model(round_model, device)
            labels = [sdi_relabel(predict_probability(model, image, patch, device), b, t).astype(np.int64)
                      for image, b, t in zip(images, boxes, initial)]
            log.info("SDI round %d: relabelled %d lesion voxels", r + 1, int(sum((lab == 1).sum() for lab in labels)))
    os.replace(round_model, out_model)
    write_text(pd.concat(logs, ignore_index=True).to_csv(sep="\t", index=False, float_format="%.6g"), out_loss)
    for p in round_files():
        p.unlink()


def fuse_case(case, roi_image_path, pseudo_mask_path, model_paths, boxes_json, geometry_json, out_predictions, out_fusion, out_weight, *, crf_params, threads=1, device="auto", threshold=0.5):
    """Stage 2 per case: group models' masks P1..PK, FM = ConvCRF(PM or P1 or ... or PK),
    V = PM + sum Pk with V = 0 -> K + 1."""
    from boxseg.convcrf import CRFParams, refine_mask
    from boxseg.device import configure_torch, select_device
    from boxseg.fusion import fusion_union, weight_map
    from boxseg.preprocess import roi_box_mask
    from boxseg.training import load_model, predict_probability

    configure_torch(threads)
    dev = select_device(device)
    image, roi = _array(roi_image_path, case)
    pm = _array(pseudo_mask_path, case, np.uint8)[0] > 0
    preds = []
    for model_path, out_path in zip(model_paths, out_predictions):
        model, patch = load_model(model_path, dev)
        preds.append(predict_probability(model, image, patch, dev) > threshold)
        write_image(array_like(preds[-1].astype(np.uint8), roi), out_path)
    allowed = roi_box_mask(roi_boxes(read_boxes(boxes_json, case), geometry_json, roi), image.shape)
    union = fusion_union(pm, preds)
    prob = refine_mask(image, union, allowed, _spacing_zyx(roi), CRFParams.from_dict(crf_params), device=dev)
    fusion = prob > 0.5
    weights = weight_map(pm, preds)
    log.info("case %s: PM %d, group models %s, union %d, fusion %d voxels", case, int(pm.sum()), [int(p.sum()) for p in preds], int(union.sum()), int(fusion.sum()))
    write_image(array_like(weights.astype(np.float32), roi), out_weight)
    write_image(array_like(fusion.astype(np.uint8), roi), out_fusion)


POSTPROCESSING = ("none", "largest_component")


def postprocess_mask(mask, boxes: dict, original: sitk.Image, postprocess: str):
    """``largest_component`` keeps the largest 18-connected component inside each box drawn
    by a user (every lesion kept), or the largest component overall when the case's boxes
    come from its label (research mode: test labels only evaluate) or it has none."""
    from boxseg.boxes import box_mask
    from boxseg.postprocess import largest_component, largest_component_per_region

    if postprocess == "none":
        return mask
    if postprocess != "largest_component":
        raise ValueError(f"unknown postprocess {postprocess!r}")
    if boxes["source"] in USER_BOX_SOURCES:
        return largest_component_per_region(mask, box_mask(boxes["boxes"], original))
    return largest_component(mask)


def predict_case(case, roi_image_path, image_path, model_path, boxes_json, out_probability, out_raw, out_mask, *, postprocess="largest_component", flip_tta=False, threads=1, device="auto"):
    """Final inference: ROI probability, mapped back to the original grid and thresholded
    (``out_raw``), then post-processed (``out_mask``, see ``postprocess_mask``)."""
    from boxseg.device import configure_torch, select_device
    from boxseg.geometry import to_original_grid
    from boxseg.training import load_model, predict_probability

    configure_torch(threads)
    dev = select_device(device)
    image, roi = _array(roi_image_path, case)
    original = read_image(image_path, case)
    boxes = read_boxes(boxes_json, case)
    try:
        model, patch = load_model(model_path, dev)
    except ValueError as err:
        raise CaseError(case, model_path, str(err).removeprefix(f"{model_path}: ")) from None
    prob_roi = array_like(predict_probability(model, image, patch, dev, flip_tta=flip_tta), roi)
    raw = to_original_grid(prob_roi, original) > 0.5
    mask = postprocess_mask(raw, boxes, original, postprocess)
    log.info("case %s: %d voxels, %d after %s (boxes from %s)", case, int(raw.sum()), int(mask.sum()), postprocess, boxes["source"])
    write_image(prob_roi, out_probability)
    write_image(array_like(raw.astype(np.uint8), original), out_raw)
    write_image(array_like(mask.astype(np.uint8), original), out_mask)


def evaluate_case(case, raw_prediction_path, image_path, label_path, boxes_json, out_tsv, *, tumor_values, method="weak"):
    """Scores against the reference lesion on the original grid, one row per post-processing
    (none, largest_component), and the DSC of the box itself."""
    import pandas as pd

    from boxseg.boxes import box_mask
    from boxseg.io import read_label, read_lesion
    from boxseg.metrics import score

    image = read_image(image_path, case)
    ref = read_lesion(label_path, image, tumor_values, case)
    raw = sitk.GetArrayFromImage(read_label(raw_prediction_path, image, case)) > 0
    boxes = read_json(boxes_json)
    spacing = _spacing_zyx(image)
    box_dsc = score(box_mask(boxes["boxes"], image) > 0, ref, spacing).dsc if boxes["boxes"] else float("nan")
    rows = []
    for postprocess in POSTPROCESSING:
        s = score(postprocess_mask(raw, boxes, image, postprocess), ref, spacing)
        rows.append({"case": case, "method": method, "postprocess": postprocess, **s.as_dict(), "box_dsc": box_dsc})
    write_text(pd.DataFrame(rows).to_csv(sep="\t", index=False, float_format="%.6g"), out_tsv)


def label_quality(cases, roi_labels, boxes_jsons, geometry_jsons, pseudo_masks, out_tsv, *, fusion_masks=None, group_predictions=None,
                  group_of=None):
    """Training-label quality (docs/method.md, "What the paper reports": Table 3): DSC against the reference lesion on the ROI grid
    of each training case's box, pseudo-mask PM, group-model masks P1..PK and fusion mask FM.

    One row per case, then ``mean`` (every training case) and, with ``group_of`` (case -> the
    group whose model trained on it), ``mean_unseen``: each group model's mean over the training
    cases it did not see (its other columns empty). The fusion masks OR every group model's mask
    on every case, so ``mean`` is what enters them; ``mean_unseen`` is how the models generalise.
    """
    import pandas as pd

    from boxseg.metrics import dice
    from boxseg.preprocess import roi_box_mask

    rows = []
    for i, case in enumerate(cases):
        ref, roi = _array(roi_labels[i], case, np.uint8)
        ref = ref > 0
        row = {"case": case}
        row["box"] = dice(roi_box_mask(roi_boxes(read_json(boxes_jsons[i]), geometry_jsons[i], roi), ref.shape), ref)
        row["pseudo_mask"] = dice(_array(pseudo_masks[i], case, np.uint8)[0] > 0, ref)
        for k, path in enumerate((group_predictions or {}).get(case, [])):
            row[f"group_model_{k}"] = dice(_array(path, case, np.uint8)[0] > 0, ref)
        if fusion_masks:
            row["fusion_mask"] = dice(_array(fusion_masks[i], case, np.uint8)[0] > 0, ref)
        rows.append(row)
    table = pd.DataFrame(rows)
    summary = [table.drop(columns="case").mean().to_frame().T.assign(case="mean")]
    log.info("label quality (mean DSC): %s", summary[0].drop(columns="case").round(3).to_dict("records")[0])
    if group_predictions and group_of:
        unseen = {f"group_model_{k}": table.loc[[group_of[c] != k for c in table["case"]], f"group_model_{k}"].mean()
                  for k in range(len(group_predictions[cases[0]]))}
        summary.append(pd.DataFrame([{"case": "mean_unseen", **unseen}]))
        log.info("group models on the training cases each did not see (mean DSC): %s", {k: round(float(v), 3) for k, v in unseen.items()})
    table = pd.concat([table, *summary], ignore_index=True)
    write_text(table.to_csv(sep="\t", index=False, float_format="%.4f"), out_tsv)


def scribbles_case(case, roi_label_path, out_path, *, erosion_mm):
    """Constrained-CNN baseline labels of a training case: its lesion eroded per axial slice."""
    from boxseg.baselines import scribbles_from_label

    label, roi = _array(roi_label_path, case, np.uint8)
    if not label.any():
        raise CaseError(case, roi_label_path, "no lesion voxels to draw scribbles from")
    scribbles = scribbles_from_label(label > 0, _spacing_zyx(roi), erosion_mm)
    log.info("case %s: %d scribble voxels of %d lesion voxels", case, int((scribbles == 1).sum()), int(label.sum()))
    write_image(array_like(scribbles, roi), out_path)


def sdi_labels_case(case, roi_image_path, roi_label_path, out_labels, out_boxes, *, margin_mm, crf_params, inner_fraction, threads=1, device="auto"):
    """SDI baseline labels of a training case: 2D boxes per axial slice of its lesion
    (enlarged by ``margin_mm``) and the initial labels (box core and GrabCut agreeing)."""
    from boxseg.baselines import sdi_initial_labels, slice_boxes
    from boxseg.convcrf import CRFParams
    from boxseg.device import configure_torch, select_device

    configure_torch(threads)
    image, roi = _array(roi_image_path, case)
    label = _array(roi_label_path, case, np.uint8)[0] > 0
    if not label.any():
        raise CaseError(case, roi_label_path, "no lesion voxels to draw 2D boxes from")
    boxes = slice_boxes(label, _spacing_zyx(roi), margin_mm)
    labels = sdi_initial_labels(image, boxes, _spacing_zyx(roi), CRFParams.from_dict(crf_params), inner_fraction,
                                select_device(device, claim=False))
    log.info("case %s: %d slice boxes, %d initial lesion voxels (%d lesion voxels)", case, len(boxes), int((labels == 1).sum()), int(label.sum()))
    write_image(array_like(labels, roi), out_labels)
    write_json({"case": case, "margin_mm": float(margin_mm), "boxes": [list(b) for b in boxes]}, out_boxes)
