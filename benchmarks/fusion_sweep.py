#!/usr/bin/env python3
"""Fusion-mask DSC of a finished run's training cases, by group-mask threshold and fusion ConvCRF settings.

usage: python benchmarks/fusion_sweep.py RUN_DIR [--thresholds T ...]
       [--grid KEY=V1,V2 ...] [--config config.yaml [LAYER.yaml ...]] [--dev-cases 8]
       [--out SWEEP.tsv] [--threads 2]

RUN_DIR is a working directory in which the workflow ran with K >= 1 and labelled
training cases (research mode): its ``results/`` holds each training case's ROI image
and label, box record, pseudo-mask and the group models. The group models predict
every training case again (their probabilities); each point (threshold x grid point,
the grid over the layered configs' ``crf`` with ``fusion_crf`` over it, as the fuse rule uses them)
fuses them as the workflow does, FM = ConvCRF(PM or P1 ... or PK) with Pk = probability
> threshold. At the run's own threshold (``fusion``, default 0.5) and settings it
reproduces the run's fusion masks (``results/label_quality.tsv``). The group models train with class
weights (0.2 for background by default), which shifts their decisions toward lesion:
with weights w0, w1 the unweighted posterior's 0.5 lies at w1 / (w0 + w1) (0.833).
Without ``--thresholds`` the sweep tries these two: the run's own threshold and that
point of the layered configs' ``group_training.class_weights``.

One row per point: mean DSC against the reference of the union and of FM on the
first ``--dev-cases`` training cases (sorted by name), on the others and on all, the
pseudo-masks' for comparison, and FM's median volume as a multiple of the reference's
in the smallest and the largest third of the lesions.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

from boxseg import layout as L
from boxseg.bench import merged, parse_grid, report
from boxseg.boxes import bounds_mask, roi_bounds
from boxseg.convcrf import refine_mask
from boxseg.crf_params import CRFParams
from boxseg.fusion import fusion_union
from boxseg.io import read_array, read_json, spacing_zyx
from boxseg.metrics import dice
from boxseg.network import load_model, predict_probability


def default_thresholds(config: dict) -> list[float]:
    """The run's fusion threshold and the point where the group models' class weights
    put the unweighted posterior's 0.5, w1 / (w0 + w1); one value where they agree."""
    w0, w1 = config["group_training"]["class_weights"]
    own = (config.get("fusion") or {}).get("threshold", 0.5)
    points = {round(float(own), 3)}
    if w0 > 0 and w1 > 0:  # 0 < point < 1, as the workflow's threshold must be
        points.add(round(w1 / (w0 + w1), 3))
    return sorted(points)


def training_cases(run_dir: Path):
    """(case, ROI image, reference, pseudo-mask, box region, spacing) of each
    training case of the run, sorted by name."""
    cases = pd.read_csv(L.path(L.CASES, run_dir), sep="\t", dtype=str)
    for case in sorted(cases.loc[cases["split"] == "train", "case"]):
        image, roi = read_array(L.path(L.ROI_IMAGE, run_dir, case=case), case)
        label = L.path(L.ROI_LABEL, run_dir, case=case)
        if not label.exists():
            raise SystemExit(f"{case}: no reference label at {label} (the sweep needs research mode)")
        reference = read_array(label, case, np.uint8)[0] > 0
        pseudo_mask = read_array(L.path(L.PSEUDO_MASK, run_dir, case=case), case, np.uint8)[0] > 0
        records = read_json(L.path(L.BOXES, run_dir, case=case))["boxes"]
        bounds = [b for b, _ in roi_bounds(records, read_json(L.path(L.ROI_GEOMETRY, run_dir, case=case)), roi)]
        yield case, image, reference, pseudo_mask, bounds_mask(bounds, image.shape), spacing_zyx(roi)


def group_probabilities(run_dir: Path, images, device="cpu"):
    paths = [L.path(L.GROUP_MODEL, run_dir, k=k) for k in range(len(list(run_dir.glob(L.GROUP_MODEL.format(k="*")))))]
    if not paths:
        raise SystemExit(f"no group models in {run_dir} ({L.GROUP_MODEL}; the run needs K >= 1)")
    models = [load_model(path, device) for path in paths]
    return [[predict_probability(model, image, patch, device) for model, patch in models] for image in images]


def sweep(cases, probabilities, thresholds, base: dict, grid: dict, dev_cases: int):
    volumes = np.array([c[2].sum() for c in cases], float)
    small = volumes <= np.quantile(volumes, 1 / 3)
    large = volumes >= np.quantile(volumes, 2 / 3)
    dev = np.arange(len(cases)) < dev_cases
    pm = np.array([dice(c[3], c[2]) for c in cases])
    rows = []
    for threshold, values in itertools.product(thresholds, itertools.product(*grid.values())):
        point = dict(zip(grid, values))
        params = CRFParams.from_dict({**base, **point})
        union_dsc, fm_dsc, fm_ratio = [], [], []
        for (case, image, reference, pseudo_mask, allowed, spacing), probs in zip(cases, probabilities):
            union = fusion_union(pseudo_mask, [p > threshold for p in probs])
            fusion = refine_mask(image, union, allowed, spacing, params, device="cpu") > 0.5
            union_dsc.append(dice(union & allowed, reference))
            fm_dsc.append(dice(fusion, reference))
            fm_ratio.append(fusion.sum() / max(reference.sum(), 1))
        union_dsc, fm_dsc, fm_ratio = map(np.array, (union_dsc, fm_dsc, fm_ratio))
        row = {"threshold": threshold, **point}
        for name, scores in (("union", union_dsc), ("fm", fm_dsc), ("pm", pm)):
            row.update({f"{name}_dev": scores[dev].mean() if dev.any() else np.nan,
                        f"{name}_held_out": scores[~dev].mean() if (~dev).any() else np.nan,
                        f"{name}_all": scores.mean()})
        row["fm_volume_small"] = float(np.median(fm_ratio[small]))
        row["fm_volume_large"] = float(np.median(fm_ratio[large]))
        rows.append(row)
        print(f"threshold {threshold} {point}: FM dev {row['fm_dev']:.3f}, all {row['fm_all']:.3f} "
              f"(PM {row['pm_all']:.3f})", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--thresholds", type=float, nargs="+",
                    help="default: the run's fusion threshold and w1 / (w0 + w1) of its group class weights")
    ap.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2")
    ap.add_argument("--config", nargs="+", default=[str(ROOT / "config.yaml")],
                    help="the run's config files, in the order it layered them")
    ap.add_argument("--dev-cases", type=int, default=8)
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    config = merged(args.config)
    base = {**config["crf"], **(config.get("fusion_crf") or {})}  # as the fuse rule merges them
    grid = parse_grid(args.grid)
    CRFParams.from_dict({**base, **{k: v[0] for k, v in grid.items()}})  # unknown keys fail before any work
    cases = list(training_cases(args.run_dir))
    if not cases:
        sys.exit(f"no training cases in {args.run_dir / 'results' / 'cases.tsv'}")
    thresholds = args.thresholds or default_thresholds(config)
    table = sweep(cases, group_probabilities(args.run_dir, [c[1] for c in cases]), thresholds, base, grid, args.dev_cases)
    report(table, args.out)


if __name__ == "__main__":
    main()
