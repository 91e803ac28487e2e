#!/usr/bin/env python3
"""Training recipes side by side on a run's training cases, scored on held-out training cases.

usage: python benchmarks/recipe_bench.py RUN_DIR --config configs/kits19.yaml --steps 6000 \\
           --variant base --variant dice_ce:loss=dice_ce --variant cosine:lr_schedule=cosine ...

RUN_DIR is a workflow run whose preprocessing is done (its ``results/cases.tsv`` and the
training cases' ROI images and labels; with ``--targets pseudo_mask`` also its pseudo-masks).
Each variant trains a model on the training cases' ROI labels (the fully supervised model)
or on their pseudo-masks (the box-supervised K = 0 recipe) with ``final_training`` of the config files
(layered as --configfile layers them) and the variant's KEY=VALUE overrides, holding out
``--validation`` training cases (``validation_cases``, seeded): the test cases are never
read. ``loss=NAME`` picks the loss (``losses.LOSSES``). One row per variant: the held-out
DSC against the model's own targets at the end (``val_dsc``), what the last quarter of
training added to it, the DSC on as many training cases, the held-out DSC against the
reference labels (``val_dsc_reference``: evaluation only, the model never reads them when it
trains on pseudo-masks), seconds per step and wall time. Every variant sees the same cases
and seed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from boxseg import layout as L
from boxseg.bench import merged, report
from boxseg.device import configure_torch
from boxseg.io import read_array
from boxseg.training import TrainSettings, mean_dsc, train, validation_split


def parse_variant(text: str) -> tuple[str, str, dict]:
    """``NAME[:KEY=VALUE,KEY=VALUE...]`` -> (name, loss, setting overrides)."""
    name, _, spec = text.partition(":")
    overrides = {}
    for item in filter(None, spec.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: expected NAME:KEY=VALUE,...")
        overrides[key] = yaml.safe_load(value)
    return name, str(overrides.pop("loss", "wce")), overrides


def training_data(run_dir: Path, targets: str = "label") -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The run's training cases: ids, ROI images, the training targets (``label``: the ROI
    lesion labels; ``pseudo_mask``: the stage-1 pseudo-masks) and the ROI lesion labels."""
    cases = pd.read_csv(L.path(L.CASES, run_dir), sep="\t", dtype=str)
    train_cases = sorted(cases.loc[cases["split"] == "train", "case"])
    if not train_cases:
        raise SystemExit(f"no training cases in {L.path(L.CASES, run_dir)}")
    images = [read_array(L.path(L.ROI_IMAGE, run_dir, case=c), c)[0] for c in train_cases]
    labels = [(read_array(L.path(L.ROI_LABEL, run_dir, case=c), c, np.uint8)[0] > 0).astype(np.int64) for c in train_cases]
    if targets == "label":
        return train_cases, images, labels, labels
    masks = [(read_array(L.path(L.PSEUDO_MASK, run_dir, case=c), c, np.uint8)[0] > 0).astype(np.int64) for c in train_cases]
    return train_cases, images, masks, labels


def run_variant(images: list, targets: list, labels: list, base: dict, name: str, loss: str, overrides: dict, steps: int,
                validation: int, threads: int) -> dict:
    """Train one variant and read its held-out DSC curve from the loss log."""
    values = {**base, "steps": steps, "checkpoint_every": 0, "validation_cases": validation,
              "validate_every": max(steps // 8, 1), **overrides}
    if "decay_steps" in base and "decay_steps" not in overrides:  # the exponential schedule keeps its shape
        values["decay_steps"] = max(1, round(base["decay_steps"] * steps / base["steps"]))
    settings = TrainSettings.from_dict(values)
    configure_torch(threads, settings.seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = train(images, targets, settings, Path(tmp) / "m.pt", Path(tmp) / "loss.tsv", loss=loss)
        seconds = time.perf_counter() - start
        held = validation_split(len(images), settings)[1]
        reference = mean_dsc(model, [images[i] for i in held], [labels[i] for i in held], settings, torch.device("cpu"))
        log = pd.read_csv(Path(tmp) / "loss.tsv", sep="\t").dropna(subset=["val_dsc"])
    quarter = log[log["step"] <= 0.75 * steps]
    return {"variant": name, "loss": loss, "overrides": ",".join(f"{k}={v}" for k, v in overrides.items()) or "-",
            "steps": steps, "val_dsc": float(log["val_dsc"].iloc[-1]), "train_dsc": float(log["train_dsc"].iloc[-1]),
            "last_quarter_gain": float(log["val_dsc"].iloc[-1] - quarter["val_dsc"].iloc[-1]) if len(quarter) else float("nan"),
            "val_dsc_reference": reference,
            "s_per_step": seconds / steps, "minutes": seconds / 60}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--config", nargs="+", required=True, help="the run's config files, in the order it layered them")
    ap.add_argument("--variant", action="append", required=True, help="NAME[:KEY=VALUE,...], e.g. dice:loss=dice_ce")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--validation", type=int, default=9, help="training cases held out (default 9)")
    ap.add_argument("--targets", choices=["label", "pseudo_mask"], default="label",
                    help="train on the reference labels (full) or the run's pseudo-masks (weak, K = 0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="append the rows to this TSV as each variant finishes")
    args = ap.parse_args(argv)
    base = merged(args.config)["final_training"]
    cases, images, targets, labels = training_data(args.run_dir, args.targets)
    print(f"{len(cases)} training cases, {args.validation} held out; {args.steps} steps per variant; targets: {args.targets}",
          flush=True)
    rows = []
    for text in args.variant:
        name, loss, overrides = parse_variant(text)
        rows.append(run_variant(images, targets, labels, base, name, loss, overrides, args.steps, args.validation, args.threads))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
        if args.out:
            pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False, float_format="%.4f")
    report(pd.DataFrame(rows), None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
