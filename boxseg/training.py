"""Training a network on patches: settings, sampling, one step, checkpoints, the loop.

``train`` samples ``batch_size`` random patches per step (``sample_batch``), takes one
optimiser step on the named loss (``losses``; ``train_step``) and logs the loss per
epoch. The network and its file are ``network``'s.

Training is resumable: a checkpoint (model, optimiser, schedule, random
states, step, loss history) is written atomically every ``checkpoint_every``
steps and picked up when the job starts again, if it was written for the same
settings and training data (a fingerprint of both); otherwise training starts
afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from boxseg.atomic import write_text
from boxseg.losses import LOSS_INPUTS, LossFunction, loss_function
from boxseg.network import atomic_torch_save, build_unet, save_model

log = logging.getLogger("boxseg")


@dataclass(frozen=True)
class TrainSettings:
    """Settings of one training run (from config.yaml ``training``).

    Args:
        steps: optimiser steps.
        batch_size: patches per step.
        patch_size: (z, y, x) voxels of a random crop; multiples of 2**(levels - 1).
        features: channels per UNet level.
        learning_rate: initial Adam learning rate.
        decay_rate, decay_steps: lr = learning_rate * decay_rate ** (step / decay_steps).
        class_weights: (background, lesion) cross-entropy weights.
        seed: seed of weights, crops and flips.
        steps_per_epoch: steps per row of the loss log.
        checkpoint_every: steps between resumable checkpoints (0: never).
        intensity_jitter: random contrast (x 1 +- j) and brightness (+- j) change of each patch.
        foreground_fraction: share of patches centred (with a random offset inside the patch) on
            a random lesion voxel of the target; the rest are uniform random crops.
        size_loss_weight: weight of the Constrained-CNN size loss (needs size targets): the
            predicted lesion volume of a patch, sum of p_lesion, is pushed into
            [(1 - t) V, (1 + t) V] with V the true lesion volume in the patch;
            the penalty is squared and in units of the patch volume.
        size_tolerance: t above.
        spatial_dims: 3 (3D UNet) or 2 (a 2D UNet on axial slices; patch_size[0] must be 1).

    Targets may hold IGNORE (255) where a voxel is unlabelled: the cross-entropy is then the
    mean over labelled voxels (partial cross-entropy).
    """

    steps: int = 300
    batch_size: int = 2
    patch_size: tuple = (32, 32, 32)
    features: tuple = (8, 16, 32, 64)
    learning_rate: float = 1e-3
    decay_rate: float = 0.5
    decay_steps: int = 200
    class_weights: tuple = (0.2, 1.0)
    seed: int = 0
    steps_per_epoch: int = 25
    checkpoint_every: int = 50
    intensity_jitter: float = 0.1
    foreground_fraction: float = 0.0
    size_loss_weight: float = 0.0
    size_tolerance: float = 0.1
    spatial_dims: int = 3

    def __post_init__(self):
        object.__setattr__(self, "patch_size", tuple(int(v) for v in self.patch_size))
        object.__setattr__(self, "features", tuple(int(v) for v in self.features))
        object.__setattr__(self, "class_weights", tuple(float(v) for v in self.class_weights))
        if self.steps < 1 or self.batch_size < 1 or len(self.patch_size) != 3 or len(self.features) < 2:
            raise ValueError("steps and batch_size must be >= 1, patch_size 3 values, features >= 2 levels")
        if self.spatial_dims not in (2, 3) or (self.spatial_dims == 2 and self.patch_size[0] != 1):
            raise ValueError("spatial_dims must be 3, or 2 with patch_size (1, y, x)")
        factor = 2 ** (len(self.features) - 1)
        if any(p % factor for p in self.patch_size[3 - self.spatial_dims :]):
            raise ValueError(f"patch_size {self.patch_size} must be multiples of {factor} for {len(self.features)} levels")

    @classmethod
    def from_dict(cls, values: dict) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training setting(s): {sorted(unknown)}")
        return cls(**values)


def random_patch(rng: np.random.Generator, volumes: Sequence[np.ndarray], patch_size: Sequence[int], intensity_jitter: float = 0.0,
                 foreground: np.ndarray | None = None, foreground_fraction: float = 0.0) -> list[np.ndarray]:
    """The same random crop (zero-padded where the volume is smaller) and flips for each volume;
    the image (first volume) also gets a random contrast and brightness change of up to ``intensity_jitter``.

    With probability ``foreground_fraction`` the crop holds a random voxel of ``foreground``
    ((n, 3) lesion voxel indices of the target) at a random place inside the patch.
    """
    shape = np.asarray(volumes[0].shape)
    patch = np.asarray(patch_size)
    if foreground is not None and len(foreground) and foreground_fraction > 0 and rng.random() < foreground_fraction:
        voxel = foreground[int(rng.integers(len(foreground)))]
        start = [int(np.clip(v - rng.integers(0, p), 0, max(n - p, 0))) for v, p, n in zip(voxel, patch, shape)]
    else:
        start = [int(rng.integers(0, max(n - p, 0) + 1)) for n, p in zip(shape, patch)]
    flips = [bool(rng.random() < 0.5) for _ in range(3)]
    out = []
    for v in volumes:
        crop = v[tuple(slice(s, s + p) for s, p in zip(start, patch))]
        pad = [(0, p - n) for p, n in zip(patch, crop.shape)]
        crop = np.pad(crop, pad)
        for axis, flip in enumerate(flips):
            if flip:
                crop = np.flip(crop, axis)
        out.append(np.ascontiguousarray(crop))
    if intensity_jitter > 0:
        scale, shift = rng.uniform(1 - intensity_jitter, 1 + intensity_jitter), rng.uniform(-intensity_jitter, intensity_jitter)
        out[0] = (out[0] * scale + shift).astype(out[0].dtype)
    return out


# --- Sampling -------------------------------------------------------------------------------


class Cases:
    """The training cases as arrays: per case the image, the target and the loss's other
    per-voxel arrays (``names``: ``target`` first, then e.g. ``weight`` or ``size``), and
    the lesion voxels that foreground sampling centres patches on."""

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], extras: dict[str, Sequence[np.ndarray]],
                 foreground_fraction: float):
        self.names = ("target", *extras)
        self.volumes = []
        for i, image in enumerate(images):
            volume = [np.asarray(image, np.float32), np.asarray(targets[i], np.int64)]
            volume += [np.asarray(extras[name][i], np.float32) for name in extras]
            self.volumes.append(volume)
        self.foreground = [np.argwhere(v[1] == 1) if foreground_fraction > 0 else None for v in self.volumes]


def sample_batch(rng: np.random.Generator, cases: Cases, settings: TrainSettings, device: torch.device) -> tuple[torch.Tensor, dict]:
    """``batch_size`` random patches of random cases (``random_patch``): the image batch
    (B, 1, z, y, x), and each per-voxel array of the loss by name (B, z, y, x); for a 2D
    network, axial slices (B, 1, y, x) and (B, y, x)."""
    patches = []
    for _ in range(settings.batch_size):
        i = int(rng.integers(len(cases.volumes)))
        patches.append(random_patch(rng, cases.volumes[i], settings.patch_size, settings.intensity_jitter,
                                    cases.foreground[i], settings.foreground_fraction))
    x = torch.from_numpy(np.stack([p[0] for p in patches])[:, None]).to(device)
    batch = {name: torch.from_numpy(np.stack([p[j + 1] for p in patches])).to(device) for j, name in enumerate(cases.names)}
    if settings.spatial_dims == 2:  # (B, 1, 1, y, x) slices -> (B, 1, y, x)
        x, batch = x[:, :, 0], {name: value[:, 0] for name, value in batch.items()}
    return x, batch


# --- One step -------------------------------------------------------------------------------


def train_step(model: torch.nn.Module, optimiser: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
               x: torch.Tensor, batch: dict, loss: LossFunction, settings: TrainSettings) -> float:
    """One optimiser step on a batch; returns the batch's loss."""
    optimiser.zero_grad(set_to_none=True)
    value = loss(model(x), batch, settings)
    value.backward()
    optimiser.step()
    schedule.step()
    return value.item()


def _lr_lambda(settings: TrainSettings) -> Callable[[int], float]:
    return lambda step: settings.decay_rate ** (step / settings.decay_steps)


# --- Checkpoints ----------------------------------------------------------------------------


@dataclass
class Run:
    """What a training run holds between steps: the model, optimiser, schedule, random state,
    step and loss history; all of it goes into a checkpoint."""

    model: torch.nn.Module
    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    step: int = 0
    history: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)


def start_run(settings: TrainSettings, device: torch.device) -> Run:
    """A fresh run: seeded weights, Adam and the learning-rate schedule."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = build_unet(settings.features, settings.spatial_dims).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    return Run(model, optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(settings)), rng)


def resume(run: Run, checkpoint_path: Path | None, fingerprint: str | None, device: torch.device, steps: int) -> None:
    """Load ``checkpoint_path`` into ``run`` when it exists and was written for this
    fingerprint (the same settings and training data); else leave the run fresh."""
    if not (checkpoint_path and checkpoint_path.exists()):
        return
    state = torch.load(checkpoint_path, map_location=device, weights_only=True)
    if state.get("fingerprint") != fingerprint:
        log.warning("%s was written for other settings or training data: training from step 0", checkpoint_path)
        return
    log.info("resuming from step %d of %d (%s)", int(state["step"]), steps, checkpoint_path)
    run.model.load_state_dict(state["model"])
    run.optimiser.load_state_dict(state["optimiser"])
    run.schedule.load_state_dict(state["schedule"])
    run.rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    run.step, run.history = int(state["step"]), [list(row) for row in state["history"]]
    run.epoch_losses = [float(v) for v in state["epoch_losses"]]


def save_checkpoint(run: Run, checkpoint_path: Path, fingerprint: str) -> None:
    """Write the run's whole state atomically (``resume`` reads it)."""
    atomic_torch_save(
        {
            "model": run.model.state_dict(),
            "optimiser": run.optimiser.state_dict(),
            "schedule": run.schedule.state_dict(),
            "numpy_rng": run.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "step": run.step,
            "history": run.history,
            "epoch_losses": run.epoch_losses,
            "fingerprint": fingerprint,
        },
        checkpoint_path,
    )


def fingerprint(settings: TrainSettings, *arrays: Sequence[np.ndarray] | None, loss: str = "") -> str:
    """What a checkpoint must have been written for to be resumed: the settings, the loss and
    every training array (images, targets, weight maps, size targets), by content."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True, default=list).encode() + loss.encode())
    for group in arrays:
        for array in group if group is not None else ():
            array = np.ascontiguousarray(array)
            digest.update(f"{array.shape}{array.dtype.str}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


# --- The loop -------------------------------------------------------------------------------


def train(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    settings: TrainSettings,
    model_path: str | os.PathLike,
    loss_log_path: str | os.PathLike,
    *,
    loss: str = "wce",
    extras: dict[str, Sequence[np.ndarray]] | None = None,
    device: torch.device | str = "cpu",
    checkpoint_path: str | os.PathLike | None = None,
    stop_after: int | None = None,
) -> torch.nn.Module:
    """Train a network and write the model and the per-epoch loss log.

    Args:
        images: list of (z, y, x) float arrays in [0, 1].
        targets: list of (z, y, x) int arrays: 0, 1 or IGNORE (pseudo-masks, fusion masks, labels).
        settings: TrainSettings.
        loss: a name in ``losses.LOSSES`` (``wce``, ``vwce``, ``ccnn``, ...).
        extras: the per-voxel arrays the loss reads besides the target, by name
            (``losses.LOSS_INPUTS``: ``weight`` maps for VWCE, ``size`` true lesion masks for ccnn).
        checkpoint_path: resumable checkpoint; resumed from when present and written for these
            settings and this training data, else ignored (and replaced at the next checkpoint).
        stop_after: stop (without writing the model) after this many steps in total;
            used to test resumption.

    Returns:
        The trained model (on ``device``).
    """
    extras = dict(extras or {})
    _check_inputs(images, targets, loss, extras)
    device = torch.device(device)
    loss_fn = loss_function(loss)
    run = start_run(settings, device)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    job = fingerprint(settings, images, targets, *extras.values(), loss=loss) if checkpoint_path else None
    resume(run, checkpoint_path, job, device, settings.steps)
    cases = Cases(images, targets, extras, settings.foreground_fraction)
    run.model.train()
    end = settings.steps if stop_after is None else min(stop_after, settings.steps)
    progress = _Progress(run.step, settings.steps)
    while run.step < end:
        x, batch = sample_batch(run.rng, cases, settings, device)
        run.epoch_losses.append(train_step(run.model, run.optimiser, run.schedule, x, batch, loss_fn, settings))
        run.step += 1
        if run.step % settings.steps_per_epoch == 0 or run.step == settings.steps:
            epoch = run.step // settings.steps_per_epoch + (run.step % settings.steps_per_epoch > 0)
            run.history.append([epoch, run.step, float(np.mean(run.epoch_losses)), run.schedule.get_last_lr()[0]])
            run.epoch_losses = []
            progress.log(run.step, run.history[-1][2])
        if checkpoint_path and settings.checkpoint_every and run.step % settings.checkpoint_every == 0 and run.step < settings.steps:
            save_checkpoint(run, checkpoint_path, job)
    if run.step < settings.steps:
        return run.model
    save_model(run.model, settings, model_path)
    rows = ["epoch\tstep\tloss\tlearning_rate"] + [f"{int(e)}\t{int(s)}\t{l:.6f}\t{lr:.6g}" for e, s, l, lr in run.history]
    write_text("\n".join(rows) + "\n", loss_log_path)
    if checkpoint_path:
        checkpoint_path.unlink(missing_ok=True)
    return run.model


def _check_inputs(images: Sequence, targets: Sequence, loss: str, extras: dict) -> None:
    if not images or len(images) != len(targets):
        raise ValueError("need one target per image and at least one image")
    needed = set(LOSS_INPUTS.get(loss, ()))
    if set(extras) != needed:
        raise ValueError(f"loss {loss!r} reads {sorted(needed) or 'only the targets'}, got {sorted(extras) or 'no other arrays'}")
    if any(len(arrays) != len(images) for arrays in extras.values()):
        raise ValueError("need one array of each kind per image")


class _Progress:
    """One log line per epoch, so a long training job is not silent: step, loss, steps per
    second and the time left at that rate (from the steps this job has run)."""

    def __init__(self, first_step: int, steps: int):
        import time

        self.clock, self.first, self.steps, self.start = time.perf_counter, first_step, steps, time.perf_counter()

    def log(self, step: int, loss: float) -> None:
        rate = (step - self.first) / max(self.clock() - self.start, 1e-9)
        left = (self.steps - step) / rate if rate > 0 else float("nan")
        log.info("step %d/%d, loss %.4f, %.2f steps/s, %s left", step, self.steps, loss, rate, _duration(left))


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


