#!/usr/bin/env python3
"""Pseudo-mask quality and speed: box, inscribed ellipsoid, DenseCRF and our ConvCRF.

usage: python benchmarks/crf_bench.py --kits KITS_DIR --ibsi IBSI_DIR --out FILE.tsv
       [--margins 0 3.5 7] [--max-cases N] [--threads 2]

KITS_DIR: KiTS layout (case_*/imaging.nii.gz, segmentation.nii.gz; tumor = 2, kidney = 1).
IBSI_DIR: STS_xxx/CT_image.nii.gz, CT_mask.nii.gz (tumor = 1).

Each case is cropped with the workflow's own preprocessing (ROI of the config's
spacing around the lesion, HU window, [0, 1]); boxes come from the reference
label with each margin. Every method sees the same ROI and boxes and is scored
by DSC on the ROI grid. ``densecrf`` is pydensecrf2's DenseCRF (permutohedral
lattice) with the same box-prior unary, the best of a small parameter grid
(chosen on the same data, per dataset and margin: favourable to it);
``convcrf`` runs with config.yaml's defaults. sec_per_case times the CRF call
alone (for densecrf: one grid point). Writes one row per (dataset, margin_mm,
method) and prints the table.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boxseg.convcrf import CRFParams, box_prior, boxes_prior, pseudo_mask_from_boxes  # noqa: E402
from boxseg.metrics import dice  # noqa: E402
from boxseg.preprocess import box_bounds_on_roi, crop_roi, load_case, make_boxes, roi_box_mask  # noqa: E402

DENSECRF_GRID = {"theta_position_mm": [3.0, 8.0], "theta_intensity": [0.05, 0.15], "weight": [3.0, 10.0]}


def find_cases(kits_dir, ibsi_dir):
    cases = []
    if kits_dir:
        for d in sorted(Path(kits_dir).glob("case_*")):
            if (d / "imaging.nii.gz").exists():
                cases.append(("kits19", d.name, d / "imaging.nii.gz", d / "segmentation.nii.gz", (2,)))
    if ibsi_dir:
        for d in sorted(Path(ibsi_dir).glob("STS_*")):
            if (d / "CT_image.nii.gz").exists():
                cases.append(("ibsi", d.name, d / "CT_image.nii.gz", d / "CT_mask.nii.gz", (1,)))
    return cases


def prepare(case, image_path, label_path, tumor, margin_mm, prep):
    image, label = load_case(case, image_path, label_path)
    boxes = make_boxes(case, image, label, label_path, margin_mm, tumor)
    # ROI: the lesion boxes plus 24 mm on each side, at the workflow's spacing (the CRF only needs the boxes' surroundings).
    lo = np.min([b["index_lo"] for b in boxes], 0)
    hi = np.max([b["index_hi"] for b in boxes], 0)
    extent_mm = (hi - lo + 1) * np.asarray(image.GetSpacing()[::-1]) + 48.0
    roi, roi_label, _ = crop_roi(case, image, label, boxes, spacing_mm=prep["spacing_mm"], roi_size_mm=extent_mm,
                                 window_hu=prep["window_hu"], tumor_values=tumor, organ_values=())
    bounds = box_bounds_on_roi(boxes, image, roi)
    spacing = tuple(float(s) for s in roi.GetSpacing()[::-1])
    return sitk.GetArrayFromImage(roi).astype(np.float32), sitk.GetArrayFromImage(roi_label) > 0, bounds, spacing


def ellipsoid_mask(shape, bounds):
    out = np.zeros(shape, bool)
    for lo, hi in bounds:
        out |= box_prior(shape, lo, hi, 1e-3)[0] > 0.5
    return out


def densecrf(image, bounds, spacing, prior_softness, theta_position_mm, theta_intensity, weight, iterations=5):
    """DenseCRF with the ConvCRF's own box prior as unary (same ``prior_softness``)."""
    import pydensecrf.densecrf as dcrf

    prior = np.clip(boxes_prior(image.shape, bounds, prior_softness)[0], 1e-5, 1 - 1e-5)
    unary = -np.log(np.stack([1 - prior, prior]).reshape(2, -1)).astype(np.float32)
    crf = dcrf.DenseCRF(image.size, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) * s for n, s in zip(image.shape, spacing)], indexing="ij")
    feats = np.stack([g / theta_position_mm for g in grids] + [image / theta_intensity]).reshape(4, -1)
    crf.addPairwiseEnergy(np.ascontiguousarray(feats.astype(np.float32)), compat=weight)
    smooth = np.stack([g / 2.0 for g in grids]).reshape(3, -1)
    crf.addPairwiseEnergy(np.ascontiguousarray(smooth.astype(np.float32)), compat=1.0)
    q = np.array(crf.inference(iterations)).reshape(2, *image.shape)
    inside = roi_box_mask(bounds, image.shape)
    return (q[1] > q[0]) & inside


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kits")
    ap.add_argument("--ibsi")
    ap.add_argument("--out", required=True)
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 3.5, 7.0])
    ap.add_argument("--max-cases", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--crf", nargs="*", default=[], metavar="KEY=VALUE", help="override ConvCRF settings (exploration)")
    ap.add_argument("--no-densecrf", action="store_true", help="skip the DenseCRF grid")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    overrides = {k: float(v) if "." in v else int(v) for k, v in (o.split("=") for o in args.crf)}
    params = CRFParams.from_dict({**config["crf"], **overrides})
    cases = find_cases(args.kits, args.ibsi)
    if args.max_cases:
        cases = [c for ds in ("kits19", "ibsi") for c in [x for x in cases if x[0] == ds][: args.max_cases]]
    if not cases:
        sys.exit("no cases found: give --kits and/or --ibsi directories")
    grid = [] if args.no_densecrf else [dict(zip(DENSECRF_GRID, v)) for v in itertools.product(*DENSECRF_GRID.values())]
    rows = []
    for dataset, case, image_path, label_path, tumor in cases:
        for margin in args.margins:
            image, ref, bounds, spacing = prepare(case, image_path, label_path, tumor, margin, config["preprocess"])
            r = {"dataset": dataset, "case": case, "margin_mm": margin}
            rows.append({**r, "method": "box", "dsc": dice(roi_box_mask(bounds, image.shape), ref), "sec": 0.0})
            rows.append({**r, "method": "ellipsoid", "dsc": dice(ellipsoid_mask(image.shape, bounds), ref), "sec": 0.0})
            t = time.perf_counter()
            conv = pseudo_mask_from_boxes(image, bounds, spacing, params, device="cpu") > 0.5
            rows.append({**r, "method": "convcrf", "dsc": dice(conv, ref), "sec": time.perf_counter() - t})
            for i, g in enumerate(grid):
                t = time.perf_counter()
                dense = densecrf(image, bounds, spacing, params.prior_softness, **g)
                rows.append({**r, "method": f"densecrf#{i}", "dsc": dice(dense, ref), "sec": time.perf_counter() - t})
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
