#!/usr/bin/env python3
"""Test-case DSC of a finished run's final models at other decision thresholds.

usage: python benchmarks/decision_threshold.py RUN_DIR [--methods weak full]
       [--thresholds 0.3 0.5 0.7 0.9] [--config config.yaml [LAYER.yaml ...]] [--calibrated] [--out T.tsv]

The infer rule maps each test case's probability (``probability_roi.nii.gz``) onto
the original grid and keeps the voxels above 0.5. This re-thresholds the saved
probabilities, post-processes each mask as infer does and scores its DSC on the
original grid as evaluate does, so the rows at 0.5 are the run's ``metrics.tsv``.
The fixed thresholds are chosen on the test cases: the best one is an oracle figure
that shows a model's volume bias, not a result.

Each method also gets a ``calibrated`` row: the threshold chosen on the training cases
held out of its final training (``final_training.validation_cases``) against the
targets it trained on (``boxseg.calibration``; what ``final.threshold: calibrated``
uses), read from the model file, or computed here for a model trained before models
recorded it or before the leave-one-out check (such a model's own inference used the
threshold it records, which may differ). That row is an honest figure: no test case chose it. The held-out cases'
leave-one-out check (``calibration.calibrate``: does a case scored at the threshold the
others chose beat 0.5?) is printed before the table.

One row per method, threshold and post-processing: mean and median DSC over the
labelled test cases, the median predicted volume as a multiple of the reference's,
and with ``full`` among the methods, each method's mean DSC over full's at the same
threshold and post-processing, with its standard error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

from boxseg import layout as L
from boxseg.bench import merged, report
from boxseg.calibration import describe
from boxseg.geometry import to_original_grid
from boxseg.io import read_image, read_json, read_lesion
from boxseg.metrics import dice
from boxseg.postprocess import POSTPROCESSING, postprocess_mask


def held_out(run_dir: Path, method: str, config: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A final model's held-out training cases as its training split them: their
    probabilities under the model and their targets."""
    from boxseg.io import read_array
    from boxseg.methods import resolve, training_settings
    from boxseg.network import load_model
    from boxseg.steps.train import _read_target
    from boxseg.training import TrainSettings, predict_cases, validation_split

    final = config["final"]
    recipe = resolve(method, config["groups"]["k"], final["loss"], final.get("full_loss", "wce"))
    settings = TrainSettings.from_dict(training_settings(recipe, config["final_training"], config))
    table = pd.read_csv(L.path(L.TRAINING_SET, run_dir, method=method), sep="\t", dtype=str)
    _, held = validation_split(len(table), settings)
    model, _ = load_model(L.path(L.MODEL, run_dir, method=method))
    probabilities = predict_cases(model, [read_array(run_dir / table["image"].iloc[i])[0] for i in held], settings, "cpu")
    return probabilities, [_read_target(str(run_dir / table["target"].iloc[i])) for i in held]


def calibration_of(run_dir: Path, method: str, config: dict) -> dict:
    """The method's calibration record (``calibration.calibrate``): the model's own, else (a
    model trained before models recorded it, or before the leave-one-out check) computed
    from its held-out cases as training does."""
    from boxseg.calibration import calibrate
    from boxseg.losses import IGNORE
    from boxseg.network import model_calibration

    record = model_calibration(L.path(L.MODEL, run_dir, method=method))
    if "confirmed" in record:
        return record
    probabilities, targets = held_out(run_dir, method, config)
    if not probabilities:
        sys.exit(f"{method}: its final training held out no cases (final_training.validation_cases): nothing to calibrate on")
    return calibrate(probabilities, targets, ignore=IGNORE)


def case_scores(run_dir: Path, methods, thresholds, tumor_values, calibrated: dict | None = None) -> pd.DataFrame:
    """One row per labelled test case, method, threshold and post-processing (``calibrated``:
    each method's own threshold besides, its rows marked ``chosen_on: held-out``)."""
    cases = pd.read_csv(L.path(L.CASES, run_dir), sep="\t", dtype=str, keep_default_na=False)
    test = cases[(cases["split"] == "test") & (cases["label"] != "")]
    rows = []
    for case, image_path, label_path in test[["case", "image", "label"]].itertuples(index=False):
        image = read_image(run_dir / image_path, case)
        ref = read_lesion(run_dir / label_path, image, tumor_values, case)
        boxes = read_json(L.path(L.BOXES, run_dir, case=case))
        for method in methods:
            path = L.path(L.PROBABILITY_ROI, run_dir, method=method, case=case)
            probability = to_original_grid(read_image(path, case), image)
            cuts = [(t, "test") for t in thresholds] + ([(calibrated[method]["threshold"], "held-out")] if calibrated else [])
            for threshold, chosen_on in cuts:
                for postprocess in POSTPROCESSING:
                    mask = postprocess_mask(probability > threshold, boxes, image, postprocess)
                    rows.append({"case": case, "method": method, "threshold": threshold, "chosen_on": chosen_on,
                                 "postprocess": postprocess, "dsc": dice(mask, ref), "volume": mask.sum() / max(int(ref.sum()), 1)})
    return pd.DataFrame(rows)


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per method, threshold and post-processing: the test cases' DSC and volume, and with
    ``full`` among the methods the ratio of mean DSC to full's at the same threshold (each
    method's own where chosen on held-out cases) with its standard error
    (``metrics.ratio_of_means``)."""
    from boxseg.metrics import ratio_of_means

    keys = ["method", "chosen_on", "threshold", "postprocess"]
    table = scores.groupby(keys, sort=True).agg(n=("dsc", "size"), dsc=("dsc", "mean"), dsc_median=("dsc", "median"),
                                                volume_median=("volume", "median")).reset_index()
    if "full" in set(table["method"]):
        cases = scores.set_index("case")
        full = cases[cases["method"] == "full"]
        ratios = []
        for method, chosen_on, threshold, postprocess in table[keys].itertuples(index=False):
            mine = cases[(cases["method"] == method) & (cases["chosen_on"] == chosen_on) & (cases["threshold"] == threshold)
                         & (cases["postprocess"] == postprocess)]["dsc"]
            reference = full[(full["chosen_on"] == chosen_on) & (full["postprocess"] == postprocess)
                             & ((full["threshold"] == threshold) | (chosen_on == "held-out"))]["dsc"]
            ratios.append(ratio_of_means(mine, reference)[:2])  # NaN: full at DSC 0
        table["ratio_to_full"], table["ratio_se"] = zip(*ratios)
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--methods", nargs="+", default=["weak", "full"])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--config", nargs="+", default=[str(ROOT / "config.yaml")],
                    help="the run's config files, in the order it layered them (for dataset.tumor_values)")
    ap.add_argument("--calibrated", action="store_true",
                    help="add each method's threshold chosen on its held-out training cases (needs the run's --config)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if not all(0 < t < 1 for t in args.thresholds):
        sys.exit("thresholds must lie strictly between 0 and 1")
    missing = [m for m in args.methods if not L.path(L.MODEL, args.run_dir, method=m).exists()]
    if missing:
        sys.exit(f"no final model of {', '.join(missing)} in {args.run_dir} ({L.MODEL})")
    config = merged(args.config)
    calibrated = None
    if args.calibrated:
        calibrated = {m: calibration_of(args.run_dir, m, config) for m in args.methods}
        for m, record in calibrated.items():
            print(f"{m}: {describe(record)}")
    scores = case_scores(args.run_dir, args.methods, args.thresholds, config["dataset"]["tumor_values"], calibrated)
    if scores.empty:
        sys.exit(f"no labelled test cases in {L.path(L.CASES, args.run_dir)}")
    table = summarise(scores)
    report(table, args.out)


if __name__ == "__main__":
    main()
