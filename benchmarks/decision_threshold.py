#!/usr/bin/env python3
"""Test-case DSC of a finished run's final models at other decision thresholds.

usage: python benchmarks/decision_threshold.py RUN_DIR [--methods weak full]
       [--thresholds 0.3 0.5 0.7 0.9] [--config config.yaml [LAYER.yaml ...]] [--out T.tsv]

The infer rule maps each test case's probability (``probability_roi.nii.gz``) onto
the original grid and keeps the voxels above 0.5. This re-thresholds the saved
probabilities, post-processes each mask as infer does and scores its DSC on the
original grid as evaluate does, so the rows at 0.5 are the run's ``metrics.tsv``.
The thresholds are chosen on the test cases: the best one is an oracle figure that
shows a model's volume bias, not a result.

One row per method, threshold and post-processing: mean and median DSC over the
labelled test cases, the median predicted volume as a multiple of the reference's,
and with ``full`` among the methods, each method's mean DSC over full's at the same
threshold and post-processing.
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
from boxseg.geometry import to_original_grid
from boxseg.io import read_image, read_json, read_lesion
from boxseg.metrics import dice
from boxseg.postprocess import POSTPROCESSING, postprocess_mask


def case_scores(run_dir: Path, methods, thresholds, tumor_values) -> pd.DataFrame:
    """One row per labelled test case, method, threshold and post-processing."""
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
            for threshold in thresholds:
                for postprocess in POSTPROCESSING:
                    mask = postprocess_mask(probability > threshold, boxes, image, postprocess)
                    rows.append({"case": case, "method": method, "threshold": threshold, "postprocess": postprocess,
                                 "dsc": dice(mask, ref), "volume": mask.sum() / max(int(ref.sum()), 1)})
    return pd.DataFrame(rows)


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    keys = ["method", "threshold", "postprocess"]
    table = scores.groupby(keys, sort=True).agg(n=("dsc", "size"), dsc=("dsc", "mean"), dsc_median=("dsc", "median"),
                                                volume_median=("volume", "median")).reset_index()
    if "full" in set(table["method"]):
        full = table[table["method"] == "full"].set_index(["threshold", "postprocess"])["dsc"]
        ref = [full.get((t, p), 0.0) for t, p in zip(table["threshold"], table["postprocess"])]
        table["ratio_to_full"] = [d / f if f > 0 else np.nan for d, f in zip(table["dsc"], ref)]  # NaN: full at DSC 0
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--methods", nargs="+", default=["weak", "full"])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--config", nargs="+", default=[str(ROOT / "config.yaml")],
                    help="the run's config files, in the order it layered them (for dataset.tumor_values)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if not all(0 < t < 1 for t in args.thresholds):
        sys.exit("thresholds must lie strictly between 0 and 1")
    missing = [m for m in args.methods if not L.path(L.MODEL, args.run_dir, method=m).exists()]
    if missing:
        sys.exit(f"no final model of {', '.join(missing)} in {args.run_dir} ({L.MODEL})")
    tumor_values = merged(args.config)["dataset"]["tumor_values"]
    scores = case_scores(args.run_dir, args.methods, args.thresholds, tumor_values)
    if scores.empty:
        sys.exit(f"no labelled test cases in {L.path(L.CASES, args.run_dir)}")
    table = summarise(scores)
    report(table, args.out)


if __name__ == "__main__":
    main()
