#!/usr/bin/env python3
"""Training-step and inference speed of the 3D UNet, per device, side by side.

usage: python benchmarks/train_bench.py [--config configs/kits19.yaml [configs/gpu.yaml]]
       [--block final_training] [--loss wce] [--devices cpu cuda] [--steps 40] [--threads 2] [--roi 64 64 64]

Runs the workflow's own ``boxseg.training.train`` (the job's code path: same
network, loss, sampling and optimiser, with ``configure_torch`` as in a job) on
phantom-like volumes of the config's ROI size, and MONAI sliding-window inference
(``predict_probability``) of one ROI. A short untimed run first builds the model
and warms up each device (CUDA context, kernels, cuDNN plans). Prints seconds per
training step and per inferred ROI, and each device's figures relative to the
first device's, and on CUDA the peak memory of the timed training.
The config files are layered as Snakemake layers them (``config.yaml`` first); the
timing holds no case out (``validation_cases`` 0).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from boxseg.bench import merged
from boxseg.device import configure_torch
from boxseg.network import build_network, predict_probability
from boxseg.training import TrainSettings, train


def volumes(shape, n, seed=0):
    """Smoothed-noise volumes in [0, 1] with one brighter ellipsoid each, and its mask."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    images, masks = [], []
    for _ in range(n):
        centre = [rng.uniform(0.3, 0.7) * s for s in shape]
        radius = [rng.uniform(0.08, 0.2) * s for s in shape]
        mask = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius)) <= 1.0
        image = 0.4 + 0.15 * mask + 0.05 * ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
        images.append(np.clip(image, 0, 1).astype(np.float32))
        masks.append(mask.astype(np.uint8))
    return images, masks


def settings_from(config_paths: list[str], block: str) -> dict:
    """The training block of ``config.yaml`` with the config files layered over it."""
    return merged([ROOT / "config.yaml", *config_paths])[block]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=[str(ROOT / "configs" / "kits19.yaml")])
    ap.add_argument("--block", default="final_training")
    ap.add_argument("--loss", default="wce", help="a loss of boxseg.losses that reads only the targets (wce, dice_ce)")
    ap.add_argument("--devices", nargs="+", default=["cpu"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--roi", type=int, nargs=3, default=[64, 64, 64], help="ROI voxels (z y x): 160 mm at 2.5 mm")
    args = ap.parse_args(argv)

    import torch

    values = settings_from(args.config, args.block)
    values.update(steps=args.steps, checkpoint_every=0, validation_cases=0)
    settings = TrainSettings.from_dict(values)
    images, masks = volumes(tuple(args.roi), 4)
    rows = []
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            sys.exit("--devices cuda: no CUDA device here")
        configure_torch(args.threads, settings.seed)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        with tempfile.TemporaryDirectory() as tmp:
            warm = TrainSettings.from_dict({**values, "steps": 3})
            train(images, masks, warm, Path(tmp) / "w.pt", Path(tmp) / "w.tsv", loss=args.loss, device=device)
            sync()
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            model = train(images, masks, settings, Path(tmp) / "m.pt", Path(tmp) / "m.tsv", loss=args.loss, device=device)
            sync()
            step_s = (time.perf_counter() - t) / settings.steps
            peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
        model.eval()
        predict_probability(model, images[0], settings.patch_size, device=device)  # warm-up
        t = time.perf_counter()
        for image in images:
            predict_probability(model, image, settings.patch_size, device=device)
        infer_s = (time.perf_counter() - t) / len(images)
        rows.append((device, step_s, infer_s, peak_gib))
    n_params = sum(p.numel() for p in build_network(settings.network, settings.features, settings.spatial_dims).parameters())
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    print(f"config {' + '.join(args.config)} [{args.block}]: {settings.network} {list(settings.features)} "
          f"({n_params / 1e6:.2f} M parameters), loss {args.loss}, mixed precision {settings.mixed_precision}, "
          f"batch {settings.batch_size} x {list(settings.patch_size)}, ROI {args.roi}, {settings.steps} timed steps, "
          f"{args.threads} CPU thread(s), torch {torch.__version__}, GPU: {name}")
    print("device\tsec_per_step\tsteps_per_min\tsec_per_roi_inference\tstep_speedup_vs_first\tinference_speedup_vs_first"
          "\tpeak_train_gib")
    for device, step_s, infer_s, peak in rows:
        print(f"{device}\t{step_s:.4f}\t{60 / step_s:.0f}\t{infer_s:.4f}\t{rows[0][1] / step_s:.1f}\t{rows[0][2] / infer_s:.1f}"
              f"\t{peak:.2f}")


if __name__ == "__main__":
    main()
