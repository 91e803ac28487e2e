"""Evaluation steps: a test case's scores, and the training labels' quality (Table 3)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import fields

import numpy as np
import SimpleITK as sitk

from boxseg.atomic import write_text
from boxseg.boxes import bounds_mask, roi_bounds
from boxseg.io import read_array, read_image, read_json, spacing_zyx
from boxseg.metrics import SegmentationScores
from boxseg.postprocess import PLACEMENTS, POSTPROCESSING, placement_of, postprocess_mask

log = logging.getLogger("boxseg")


def evaluate_case(case: str, raw_prediction_path: str | os.PathLike, image_path: str | os.PathLike, label_path: str | os.PathLike,
                  boxes_json: str | os.PathLike, out_tsv: str | os.PathLike, *, tumor_values: Sequence[int], method: str = "weak") -> None:
    """Scores against the reference lesion on the original grid, one row per post-processing
    (none, largest_component), and the DSC of the box itself; ``roi`` names where the
    case's ROI was placed (``postprocess.PLACEMENTS``)."""
    from boxseg.io import read_label

    image = read_image(image_path, case)
    raw = sitk.GetArrayFromImage(read_label(raw_prediction_path, image, case)) > 0
    boxes = read_json(boxes_json)
    _write_scores(case, raw, image, label_path, boxes, out_tsv, tumor_values=tumor_values, method=method,
                  where=placement_of(boxes))


def evaluate_other_roi(case: str, image_path: str | os.PathLike, label_path: str | os.PathLike, boxes_json: str | os.PathLike,
                       model_path: str | os.PathLike, out_tsv: str | os.PathLike, *, preprocess: dict, tumor_values: Sequence[int],
                       organ_values: Sequence[int], method: str = "weak", flip_tta: bool = False, threshold: float | str = 0.5,
                       threads: int = 1, device: str = "auto", claim: bool = True) -> None:
    """The second evaluation row of a research-mode test case: the same model and boxes with
    the ROI placed the other way (``postprocess.PLACEMENTS``; on the organ where the run
    places it on the boxes, and the other way round) and that placement's post-processing,
    so the user's path and the paper's kidney crop are both scored in one run. A case whose
    boxes were not made from its label (no lesion in it) has no second row: its file holds
    only the header. The mask is cut at the run's ``threshold`` (``steps.infer.decision_threshold``).
    ``claim``: claim a GPU (the rule declares one)."""
    from boxseg.boxes import read_boxes
    from boxseg.geometry import to_original_grid
    from boxseg.preprocess import load_case
    from boxseg.steps.infer import decision_threshold, read_case_model, roi_probability
    from boxseg.steps.preprocess import case_roi

    boxes = read_boxes(boxes_json, case)
    if boxes["source"] != "label" or not boxes["boxes"]:
        log.info("case %s: boxes from %s, no second placement to score", case, boxes["source"])
        write_text("\t".join(METRIC_COLUMNS) + "\n", out_tsv)
        return
    where = next(p for p in PLACEMENTS if p != placement_of(boxes))
    image, label = load_case(case, image_path, label_path)
    roi, _, geometry = case_roi(case, image, label, where, boxes["boxes"], spacing_mm=preprocess["spacing_mm"],
                                roi_size_mm=preprocess["roi_size_mm"], window_hu=preprocess["window_hu"],
                                tumor_values=tumor_values, organ_values=organ_values)
    model = read_case_model(case, model_path)
    probability = roi_probability(case, model_path, sitk.GetArrayFromImage(roi), roi, geometry, model=model, flip_tta=flip_tta,
                                  threads=threads, device=device, claim=claim, roi_as_trained=False)
    raw = to_original_grid(probability, image) > decision_threshold(case, model_path, threshold, model)
    _write_scores(case, raw, image, label_path, boxes, out_tsv, tumor_values=tumor_values, method=method, where=where)


METRIC_COLUMNS = ["case", "method", "roi", "postprocess", *(f.name for f in fields(SegmentationScores)), "box_dsc"]  # a metrics file's


def _write_scores(case: str, raw: np.ndarray, image: sitk.Image, label_path: str | os.PathLike, boxes: dict,
                  out_tsv: str | os.PathLike, *, tumor_values: Sequence[int], method: str, where: str) -> None:
    import pandas as pd

    from boxseg.boxes import lesion_id_map
    from boxseg.io import read_lesion
    from boxseg.metrics import score

    ref = read_lesion(label_path, image, tumor_values, case)
    spacing = spacing_zyx(image)
    box_dsc = score(lesion_id_map(boxes["boxes"], image) > 0, ref, spacing).dsc if boxes["boxes"] else float("nan")
    rows = []
    for postprocess in POSTPROCESSING:
        s = score(postprocess_mask(raw, boxes, image, postprocess, where), ref, spacing)
        rows.append({"case": case, "method": method, "roi": where, "postprocess": postprocess, **s.as_dict(), "box_dsc": box_dsc})
    write_text(pd.DataFrame(rows).to_csv(sep="\t", index=False, float_format="%.6g"), out_tsv)


def label_quality(cases: Sequence[str], roi_labels: Sequence[str], boxes_jsons: Sequence[str], geometry_jsons: Sequence[str],
                  pseudo_masks: Sequence[str], out_tsv: str | os.PathLike, *, fusion_masks: Sequence[str] | None = None,
                  group_predictions: dict[str, list[str]] | None = None, group_of: dict[str, int] | None = None) -> None:
    """Training-label quality (docs/method.md, "What the paper reports": Table 3): DSC against the reference lesion on the ROI grid
    of each training case's box, pseudo-mask PM, group-model masks P1..PK and fusion mask FM.

    One row per case, then ``mean`` (every training case) and, with ``group_of`` (case -> the
    group whose model trained on it), ``mean_unseen``: each group model's mean over the training
    cases it did not see (its other columns empty). The fusion masks OR every group model's mask
    on every case, so ``mean`` is what enters them; ``mean_unseen`` is how the models generalise.
    """
    import pandas as pd

    from boxseg.metrics import dice

    rows = []
    for i, case in enumerate(cases):
        ref, roi = read_array(roi_labels[i], case, np.uint8)
        ref = ref > 0
        row = {"case": case}
        bounds = [b for b, _ in roi_bounds(read_json(boxes_jsons[i])["boxes"], read_json(geometry_jsons[i]), roi)]
        row["box"] = dice(bounds_mask(bounds, ref.shape), ref)
        row["pseudo_mask"] = dice(read_array(pseudo_masks[i], case, np.uint8)[0] > 0, ref)
        for k, path in enumerate((group_predictions or {}).get(case, [])):
            row[f"group_model_{k}"] = dice(read_array(path, case, np.uint8)[0] > 0, ref)
        if fusion_masks:
            row["fusion_mask"] = dice(read_array(fusion_masks[i], case, np.uint8)[0] > 0, ref)
        rows.append(row)
    table = pd.DataFrame(rows)
    summary = [table.drop(columns="case").mean().to_frame().T.assign(case="mean")]
    log.info("label quality (mean DSC): %s", summary[0].drop(columns="case").round(3).to_dict("records")[0])
    if group_predictions and group_of:
        unseen = {f"group_model_{k}": table.loc[[group_of[c] != k for c in table["case"]], f"group_model_{k}"].mean()
                  for k in range(len(group_predictions[cases[0]]))}
        summary.append(pd.DataFrame([{"case": "mean_unseen", **unseen}]))
        log.info("group models on the training cases each did not see (mean DSC): %s",
                 {k: round(float(v), 3) for k, v in unseen.items()})
    table = pd.concat([table, *summary], ignore_index=True)
    write_text(table.to_csv(sep="\t", index=False, float_format="%.4f"), out_tsv)
