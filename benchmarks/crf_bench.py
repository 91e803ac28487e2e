#!/usr/bin/env python3
"""Pseudo-mask quality and speed: box, inscribed ellipsoid, DenseCRF and our ConvCRF.

usage: python benchmarks/crf_bench.py --kits KITS_DIR --ibsi IBSI_DIR --out FILE.tsv
       [--protocol paper|annotator] [--box-seed 0] [--slack MM] [--margins 0 3.5 7]
       [--max-cases N] [--threads 2] [--devices cpu cuda]
       [--save-rois ROIS.npz | --load-rois ROIS.npz]

KITS_DIR: KiTS layout (case_*/imaging.nii.gz, segmentation.nii.gz; tumor = 2, kidney = 1).
IBSI_DIR: STS_xxx/CT_image.nii.gz, CT_mask.nii.gz (tumor = 1).

Each case is cropped with the workflow's own preprocessing (ROI of the config's
spacing around the lesion, HU window, [0, 1]); boxes are drawn from the reference
label by the workflow's research protocol at each margin (``--protocol``: ``paper``,
every face exactly the margin out, the default; ``annotator``, each face uniform in
[0, 2 x margin], seeded by ``--box-seed`` and the case). Every method sees the same ROI
and boxes and is scored by DSC on the ROI grid. ``densecrf`` is pydensecrf2's DenseCRF
(permutohedral lattice) with the same box-prior unary, the best of a small parameter
grid (chosen on the same data, per dataset and margin: favourable to it);
``convcrf`` runs with config.yaml's stage-1 settings (``crf`` and ``pseudo_mask_crf``).
Both CRFs are told exactly what a user tells the workflow: the boxes and ``--slack``
(``boxes.slack_mm``, one number for every face; default 0, not told). ConvCRF's own
estimate of each box's looseness from the image (``estimate_slack``) is part of its
settings. ``convcrf_oracle`` is the ConvCRF told each face's true slack, measured from
the label: not a method (no user has it), only the bound of what knowing the slack
would give. sec_per_case times the CRF call alone (for densecrf: one grid point).
Writes one row per (dataset, margin_mm, method) and prints the table.

``--devices cpu cuda`` times the ConvCRF on each device in the same run (rows
``convcrf`` and ``convcrf_cuda``; CUDA is warmed up on the first ROI before timing).
``--save-rois`` writes the prepared ROIs, boxes and reference masks to one .npz and
stops; ``--load-rois`` reads them instead of the images, so the benchmark runs where
SimpleITK is not installed (a GPU machine).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

from boxseg.bench import find_cases, load_rois, prepared_rois, save_rois, stage1_settings
from boxseg.boxes.prior import box_prior, boxes_prior
from boxseg.convcrf import CRFParams
from boxseg.metrics import dice
from boxseg.stage1 import pseudo_mask_from_boxes

DENSECRF_GRID = {"theta_position_mm": [3.0, 8.0], "theta_intensity": [0.05, 0.15], "weight": [3.0, 10.0]}


def ellipsoid_mask(shape, bounds):
    out = np.zeros(shape, bool)
    for lo, hi in bounds:
        out |= box_prior(shape, lo, hi, 1e-3)[0] > 0.5
    return out


def densecrf(image, bounds, inside, spacing, prior_softness, theta_position_mm, theta_intensity, weight, iterations=5, slack_mm=0.0):
    """DenseCRF with the ConvCRF's own box prior as unary (same ``prior_softness``)."""
    import pydensecrf.densecrf as dcrf

    prior = np.clip(boxes_prior(image.shape, bounds, prior_softness, spacing, slack_mm)[0], 1e-5, 1 - 1e-5)
    unary = -np.log(np.stack([1 - prior, prior]).reshape(2, -1)).astype(np.float32)
    crf = dcrf.DenseCRF(image.size, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) * s for n, s in zip(image.shape, spacing)], indexing="ij")
    feats = np.stack([g / theta_position_mm for g in grids] + [image / theta_intensity]).reshape(4, -1)
    crf.addPairwiseEnergy(np.ascontiguousarray(feats.astype(np.float32)), compat=weight)
    smooth = np.stack([g / 2.0 for g in grids]).reshape(3, -1)
    crf.addPairwiseEnergy(np.ascontiguousarray(smooth.astype(np.float32)), compat=1.0)
    q = np.array(crf.inference(iterations)).reshape(2, *image.shape)
    return (q[1] > q[0]) & inside


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kits")
    ap.add_argument("--ibsi")
    ap.add_argument("--out", help="result table (required unless --save-rois)")
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 3.5, 7.0])
    ap.add_argument("--max-cases", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--crf", nargs="*", default=[], metavar="KEY=VALUE", help="override ConvCRF settings (exploration)")
    ap.add_argument("--protocol", choices=["paper", "annotator"], default="paper",
                    help="how research mode draws the boxes from the label (boxes.protocol)")
    ap.add_argument("--box-seed", type=int, default=0, help="the annotator protocol's seed (boxes.seed)")
    ap.add_argument("--slack", type=float, default=0.0, metavar="MM",
                    help="the slack a user states (boxes.slack_mm), told to ConvCRF and DenseCRF alike; 0 = not told")
    ap.add_argument("--no-oracle", action="store_true", help="skip the convcrf_oracle row")
    ap.add_argument("--no-densecrf", action="store_true", help="skip the DenseCRF grid")
    ap.add_argument("--devices", nargs="+", default=["cpu"], help="ConvCRF devices timed side by side (cpu, cuda)")
    ap.add_argument("--save-rois", metavar="NPZ", help="write the prepared ROIs and stop")
    ap.add_argument("--load-rois", metavar="NPZ", help="read prepared ROIs instead of --kits/--ibsi")
    args = ap.parse_args(argv)
    if not args.out and not args.save_rois:
        ap.error("--out is required")

    import torch

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.crf)}
    params = CRFParams.from_dict({**stage1_settings(config), **overrides})
    if args.load_rois:
        rois = list(load_rois(args.load_rois, args.margins, args.protocol))
        if args.max_cases:
            keep = {ds: sorted({r[1] for r in rois if r[0] == ds})[: args.max_cases] for ds in ("kits19", "ibsi")}
            rois = [r for r in rois if r[1] in keep[r[0]]]
        if not rois:
            sys.exit(f"no ROIs at margins {args.margins} in {args.load_rois}")
    else:
        cases = find_cases(args.kits, args.ibsi)
        if args.max_cases:
            cases = [c for ds in ("kits19", "ibsi") for c in [x for x in cases if x[0] == ds][: args.max_cases]]
        if not cases:
            sys.exit("no cases found: give --kits and/or --ibsi directories (or --load-rois)")
        rois = prepared_rois(cases, args.margins, config["preprocess"], args.protocol, args.box_seed)
        if args.save_rois:
            spacing = min(config["preprocess"]["spacing_mm"])
            n = save_rois(args.save_rois, rois, int(np.ceil(params.shell_mm / spacing)) + params.window_radius_vox + 1,
                          args.protocol, args.box_seed)
            print(f"wrote {n} ROIs to {args.save_rois}")
            return
    if "cuda" in args.devices and not torch.cuda.is_available():
        sys.exit("--devices cuda: no CUDA device here")
    warmed = set()
    grid = [] if args.no_densecrf else [dict(zip(DENSECRF_GRID, v)) for v in itertools.product(*DENSECRF_GRID.values())]
    rows = []
    slack = args.slack
    for dataset, case, margin, image, ref, bounds, spacing, inside, oracle in rois:
        r = {"dataset": dataset, "case": case, "margin_mm": margin}
        rows.append({**r, "method": "box", "dsc": dice(inside, ref), "sec": 0.0})
        rows.append({**r, "method": "ellipsoid", "dsc": dice(ellipsoid_mask(image.shape, bounds), ref), "sec": 0.0})
        for device in args.devices:
            if device != "cpu" and device not in warmed:  # context, kernels, allocator: outside the timing
                pseudo_mask_from_boxes(image, bounds, spacing, params, device=device)
                warmed.add(device)
            t = time.perf_counter()
            conv = pseudo_mask_from_boxes(image, bounds, spacing, params, device=device, slack_mm=slack) > 0.5  # returns on the host
            name = "convcrf" if device == "cpu" else f"convcrf_{device}"
            rows.append({**r, "method": name, "dsc": dice(conv, ref), "sec": time.perf_counter() - t})
        if not args.no_oracle:
            t = time.perf_counter()
            told = pseudo_mask_from_boxes(image, bounds, spacing, replace(params, estimate_slack=False), device="cpu", slack_mm=oracle) > 0.5
            rows.append({**r, "method": "convcrf_oracle", "dsc": dice(told, ref), "sec": time.perf_counter() - t})
        for i, g in enumerate(grid):
            t = time.perf_counter()
            dense = densecrf(image, bounds, inside, spacing, params.prior_softness, **g, slack_mm=slack)
            rows.append({**r, "method": f"densecrf#{i}", "dsc": dice(dense, ref), "sec": time.perf_counter() - t})
        if margin == args.margins[-1]:
            print(f"{dataset} {case}: done", file=sys.stderr, flush=True)
    per_case = pd.DataFrame(rows)
    table = (
        per_case.groupby(["dataset", "margin_mm", "method"])
        .agg(n_cases=("dsc", "size"), mean_dsc=("dsc", "mean"), sec_per_case=("sec", "mean"))
        .reset_index()
    )
    dense = table[table["method"].str.startswith("densecrf#")]
    best = dense.loc[dense.groupby(["dataset", "margin_mm"])["mean_dsc"].idxmax()].copy()
    best["grid_point"] = best["method"].str.split("#").str[1].astype(int).map(lambda i: str(grid[i]))
    best["method"] = "densecrf"
    final = pd.concat([table[~table["method"].str.startswith("densecrf#")], best], ignore_index=True)
    final = final.sort_values(["dataset", "margin_mm", "method"])[
        ["dataset", "margin_mm", "method", "n_cases", "mean_dsc", "sec_per_case"] + ["grid_point"]
    ]
    final.to_csv(args.out, sep="\t", index=False, float_format="%.4f")
    per_case.to_csv(Path(args.out).with_suffix(".cases.tsv"), sep="\t", index=False, float_format="%.4f")
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(final.to_string(index=False))


if __name__ == "__main__":
    main()
