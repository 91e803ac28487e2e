#!/usr/bin/env python3
"""Sweep a small grid of ConvCRF settings and report pseudo-mask DSC where labels exist.

usage: python benchmarks/crf_sweep.py (--kits KITS_DIR --ibsi IBSI_DIR | --load-rois ROIS.npz)
       --grid KEY=V1,V2 [KEY=V1,V2 ...] --out SWEEP.tsv [--dev-cases 8] [--margins 0 3.5 7]
       [--protocol paper|annotator] [--slack MM] [--threads 2]

The same ROIs, boxes and told slack as ``crf_bench.py`` (default: the paper protocol,
slack 0, not told). Every point of the grid (the product of the listed values, over
config.yaml's ``crf`` and ``pseudo_mask_crf``) runs the stage-1 ConvCRF on every case
and margin. The dev cases that choose are the first ``--dev-cases`` of each dataset
(sorted by name) that are training cases in every documented config's split
(``DOCUMENTED_CONFIGS``: never a test case); every other case is held out and only
reported. One row per grid point: its settings, DSC per dataset and
margin on the dev cases, the dev mean over those cells and the held-out mean;
sorted best dev mean first. This is how the defaults in config.yaml were chosen
(docs/results.md, "How the ConvCRF's stage-1 settings were chosen").

Example:
    python benchmarks/crf_sweep.py --load-rois rois.npz --out sweep.tsv \\
        --grid window_shape=cube,manhattan prior_weight=1,3
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

from boxseg.bench import find_cases, load_rois, parse_grid, prepared_rois, report, stage1_settings
from boxseg.convcrf import CRFParams
from boxseg.dataset import split_settings, test_split
from boxseg.metrics import dice
from boxseg.stage1 import pseudo_mask_from_boxes

# The documented configs whose test cases never choose a setting, by benchmark dataset name.
DOCUMENTED_CONFIGS = {"kits19": ROOT / "configs/kits19.yaml", "ibsi": ROOT / "configs/ibsi.yaml"}


def dev_cases(names: dict, n: int) -> dict:
    """Per dataset, the first ``n`` of its case ``names`` (all the dataset's cases, sorted)
    that are training cases in its documented config's split."""
    out = {}
    for dataset, cases in names.items():
        split = yaml.safe_load(DOCUMENTED_CONFIGS[dataset].read_text())["dataset"]
        test = test_split(sorted(cases), **split_settings(split))
        out[dataset] = set([c for c in sorted(cases) if c not in test][:n])
    return out


def sweep(rois, base: dict, grid: dict, n_dev: int, slack: float, names: dict | None = None):
    """Rows (one per grid point) of dev and held-out DSC, best dev mean first. ``names``: every
    case of each dataset (for the configs' splits; default the ROIs' cases)."""
    rois = list(rois)
    names = names or {ds: sorted({r[1] for r in rois if r[0] == ds}) for ds in {r[0] for r in rois}}
    dev = dev_cases(names, n_dev)
    rows = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        params = CRFParams.from_dict({**base, **point})
        scores = []
        for dataset, case, margin, image, ref, bounds, spacing, _inside, _oracle in rois:
            mask = pseudo_mask_from_boxes(image, bounds, spacing, params, device="cpu", slack_mm=slack) > 0.5
            scores.append({"dataset": dataset, "margin_mm": margin, "dev": case in dev[dataset], "dsc": dice(mask, ref)})
        scores = pd.DataFrame(scores)
        cells = scores.groupby(["dev", "dataset", "margin_mm"])["dsc"].mean()
        row = {"point": " ".join(f"{k}={v}" for k, v in point.items())}
        if True in cells.index.get_level_values(0):
            row.update({f"dev_{ds}_{m:g}": v for (ds, m), v in cells.loc[True].items()})
            row["dev_mean"] = cells.loc[True].mean()
        row["held_mean"] = cells.loc[False].mean() if False in cells.index.get_level_values(0) else np.nan
        rows.append(row)
        print(f"{row['point']}: dev {row.get('dev_mean', np.nan):.3f}, held-out {row['held_mean']:.3f}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    return table.sort_values("dev_mean" if "dev_mean" in table else "held_mean", ascending=False).reset_index(drop=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kits")
    ap.add_argument("--ibsi")
    ap.add_argument("--load-rois", metavar="NPZ", help="ROIs written by crf_bench.py --save-rois")
    ap.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dev-cases", type=int, default=8,
                    help="cases per dataset that choose, training cases of the documented configs (the rest are held out)")
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 3.5, 7.0])
    ap.add_argument("--protocol", choices=["paper", "annotator"], default="paper")
    ap.add_argument("--box-seed", type=int, default=0)
    ap.add_argument("--slack", type=float, default=0.0, metavar="MM", help="the slack a user states (0 = not told)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    base = stage1_settings(config)
    grid = parse_grid(args.grid)
    CRFParams.from_dict({**base, **{k: v[0] for k, v in grid.items()}})  # unknown keys fail before any work
    names = None
    if args.load_rois:
        rois = list(load_rois(args.load_rois, args.margins, args.protocol))
    else:
        cases = find_cases(args.kits, args.ibsi)
        if not cases:
            sys.exit("no cases found: give --kits and/or --ibsi directories (or --load-rois)")
        names = {ds: sorted(c[1] for c in cases if c[0] == ds) for ds in {c[0] for c in cases}}
        rois = list(prepared_rois(cases, args.margins, config["preprocess"], args.protocol, args.box_seed))
    if not rois:
        sys.exit("no ROIs to sweep")
    table = sweep(rois, base, grid, args.dev_cases, args.slack, names)
    report(table, args.out)


if __name__ == "__main__":
    main()
