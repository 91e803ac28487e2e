"""Training a network on patches: one step, the learning-rate schedule, checkpoints,
validation and the loop.

``train`` samples ``batch_size`` random patches per step (``sampling``), takes one
optimiser step on the named loss (``losses``; ``train_step``) and appends one row per
epoch to the loss log as it goes (so ``tail -f`` and the report show a live run): the
mean loss, the learning rate and, with held-out training cases, their DSC every
``validate_every`` steps. Settings:
``train_settings``; the network and its file: ``network``.

Training is resumable: a checkpoint (model, optimiser, schedule, weight average, random
states, step, loss history) is written atomically every ``checkpoint_every`` steps and
picked up when the job starts again, if it was written for the same settings and
training data (a fingerprint of both); otherwise training starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from boxseg.atomic import write_text
from boxseg.losses import IGNORE, LOSS_INPUTS, LossFunction, loss_function
from boxseg.network import atomic_torch_save, build_network, predict_probability, save_model
from boxseg.sampling import Cases, sample_batch
from boxseg.train_settings import TrainSettings

__all__ = ["TrainSettings", "fingerprint", "train", "train_step"]

log = logging.getLogger("boxseg")


# --- One step -------------------------------------------------------------------------------


def train_step(run: Run, x: torch.Tensor, batch: dict, loss: LossFunction, settings: TrainSettings) -> float:
    """One optimiser step on a batch (under autocast with ``mixed_precision``), the schedule's
    step and the weight average's update; returns the batch's loss."""
    run.optimiser.zero_grad(set_to_none=True)
    with _autocast(settings, x.device):
        value = loss(run.model(x), batch, settings)
    value.backward()
    run.optimiser.step()
    run.schedule.step()
    if run.average is not None:
        run.average.update_parameters(run.model)
    return value.item()


def _autocast(settings: TrainSettings, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast with ``mixed_precision``; float32 on a GPU without bfloat16 (float16
    would need a gradient scaler to keep small gradients from vanishing)."""
    if not settings.mixed_precision or (device.type == "cuda" and not torch.cuda.is_bf16_supported()):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def lr_factor(settings: TrainSettings) -> Callable[[int], float]:
    """The learning rate at a step as a fraction of ``learning_rate`` (``lr_schedule``)."""
    if settings.lr_schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, settings.steps) / settings.steps))
    if settings.lr_schedule == "poly":
        return lambda step: (1.0 - min(step, settings.steps) / settings.steps) ** 0.9
    return lambda step: settings.decay_rate ** (step / settings.decay_steps)


# --- Checkpoints ----------------------------------------------------------------------------


@dataclass
class Run:
    """What a training run holds between steps: the model, optimiser, schedule, weight
    average, random state, step and loss history; all of it goes into a checkpoint."""

    model: torch.nn.Module
    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    average: torch.optim.swa_utils.AveragedModel | None = None
    step: int = 0
    history: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)

    @property
    def final(self) -> torch.nn.Module:
        """The model to save and validate: the weight average when there is one."""
        return self.average.module if self.average is not None else self.model


def start_run(settings: TrainSettings, device: torch.device) -> Run:
    """A fresh run: seeded weights, Adam, the learning-rate schedule and the weight average."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = build_network(settings.network, settings.features, settings.spatial_dims).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    average = None
    if settings.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay), use_buffers=True)
    return Run(model, optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor(settings)), rng, average)


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
    if run.average is not None:
        run.average.load_state_dict(state["average"])
    run.rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"].cpu())  # loaded onto the run's device; the CPU generator's state is CPU-only
    run.step, run.history = int(state["step"]), [list(row) for row in state["history"]]
    run.epoch_losses = [float(v) for v in state["epoch_losses"]]


def save_checkpoint(run: Run, checkpoint_path: Path, fingerprint: str) -> None:
    """Write the run's whole state atomically (``resume`` reads it)."""
    state = {
        "model": run.model.state_dict(),
        "optimiser": run.optimiser.state_dict(),
        "schedule": run.schedule.state_dict(),
        "numpy_rng": run.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "step": run.step,
        "history": run.history,
        "epoch_losses": run.epoch_losses,
        "fingerprint": fingerprint,
    }
    if run.average is not None:
        state["average"] = run.average.state_dict()
    atomic_torch_save(state, checkpoint_path)


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


# --- Validation -----------------------------------------------------------------------------


def validation_split(n_cases: int, settings: TrainSettings) -> tuple[list[int], list[int]]:
    """(training, held-out) case indices: ``validation_cases`` of ``n_cases`` drawn by the
    run's seed from a generator of their own (the sampling draws stay those of a run
    without validation), at least one case left to train on."""
    held = min(settings.validation_cases, n_cases - 1)
    if held <= 0:
        return list(range(n_cases)), []
    chosen = set(np.random.default_rng([settings.seed, 7]).choice(n_cases, held, replace=False).tolist())
    return [i for i in range(n_cases) if i not in chosen], sorted(chosen)


def predict_cases(model: torch.nn.Module, images: Sequence[np.ndarray], settings: TrainSettings,
                  device: torch.device) -> list[np.ndarray]:
    """The model's lesion probability of each image (evaluation mode, back to training after)."""
    model.eval()
    with torch.no_grad():
        probabilities = [predict_probability(model, image, settings.patch_size, device) for image in images]
    model.train()
    return probabilities


def mean_dsc(model: torch.nn.Module, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], settings: TrainSettings,
             device: torch.device) -> float:
    """Mean DSC of the model's masks (probability > 0.5) against the targets (IGNORE voxels
    left out) over the cases; a case with an empty target and an empty mask scores 1."""
    return _dsc_at_half(predict_cases(model, images, settings, device), targets)


def _dsc_at_half(probabilities: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    from boxseg.calibration import threshold_table

    return threshold_table(probabilities, targets, IGNORE, thresholds=(0.5,))[0]["mean_dsc"]


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
    preprocessing: dict | None = None,
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
        preprocessing: what the images' preprocessing was (``spacing_mm``, ``window_hu``, and
            where their ROIs were placed and their size, ``placement``, ``roi_size_mm``), saved
            with the model so that inference can check a case against it.

    Returns:
        The trained model (on ``device``; the weight average with ``ema_decay``).
    """
    extras = dict(extras or {})
    _check_inputs(images, targets, loss, extras)
    device = torch.device(device)
    loss_fn = loss_function(loss)
    run = start_run(settings, device)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    job = fingerprint(settings, images, targets, *extras.values(), loss=loss) if checkpoint_path else None
    resume(run, checkpoint_path, job, device, settings.steps)
    fit, held = validation_split(len(images), settings)
    cases = Cases([images[i] for i in fit], [targets[i] for i in fit], {k: [v[i] for i in fit] for k, v in extras.items()},
                  settings.foreground_fraction)
    validate = _Validation(images, targets, fit, held, settings, device) if held else None
    write_text(_loss_log(run.history, bool(held)), loss_log_path)  # the log grows by one row per epoch from here
    run.model.train()
    end = settings.steps if stop_after is None else min(stop_after, settings.steps)
    progress = _Progress(run.step, settings.steps)
    while run.step < end:
        x, batch = sample_batch(run.rng, cases, settings, device)
        run.epoch_losses.append(train_step(run, x, batch, loss_fn, settings))
        run.step += 1
        if run.step % settings.steps_per_epoch == 0 or run.step == settings.steps:
            _end_epoch(run, settings, progress, validate, loss_log_path)
        if checkpoint_path and settings.checkpoint_every and run.step % settings.checkpoint_every == 0 and run.step < settings.steps:
            save_checkpoint(run, checkpoint_path, job)
    if run.step == settings.steps:  # stopped early (stop_after): no model, the checkpoint stays
        # the last epoch's validation predicted the held-out cases with this very model (a job always runs the last
        # step itself: no checkpoint is written there); should it not have, predict them now
        if validate is not None and len(validate.held_probabilities) != len(validate.held_targets):
            validate(run.final)
        calibration = held_out_calibration(validate.held_probabilities, validate.held_targets) if validate else None
        _finish(run, settings, model_path, loss_log_path, bool(held), checkpoint_path, preprocessing, calibration)
    return run.final


def held_out_calibration(probabilities: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict:
    """The decision threshold chosen on the held-out cases' probabilities against their
    targets (``calibration.calibrate``)."""
    from boxseg.calibration import calibrate, describe

    record = calibrate(list(probabilities), list(targets), ignore=IGNORE)
    log.info("decision %s", describe(record))
    return record


def _finish(run: Run, settings: TrainSettings, model_path: str | os.PathLike, loss_log_path: str | os.PathLike,
            validated: bool, checkpoint_path: Path | None, preprocessing: dict | None, calibration: dict | None = None) -> None:
    """Write the model (with its held-out calibration, if any) and the whole loss log; drop the checkpoint."""
    save_model(run.final, settings, model_path, preprocessing, calibration)
    write_text(_loss_log(run.history, validated), loss_log_path)
    if checkpoint_path:
        checkpoint_path.unlink(missing_ok=True)


class _Validation:
    """Scores a model on the held-out training cases and on as many cases it trains on (mean
    DSC at 0.5); keeps the held-out cases' probabilities from its last call, which at the end
    of training are the final model's (the calibration reads them instead of predicting the
    cases again)."""

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], fit: list[int], held: list[int],
                 settings: TrainSettings, device: torch.device):
        self.seen = [images[i] for i in fit[: len(held)]], [targets[i] for i in fit[: len(held)]]
        self.held_images, self.held_targets = [images[i] for i in held], [targets[i] for i in held]
        self.settings, self.device = settings, device
        self.held_probabilities: list[np.ndarray] = []

    def __call__(self, model: torch.nn.Module) -> tuple[float, float]:
        self.held_probabilities = predict_cases(model, self.held_images, self.settings, self.device)
        return mean_dsc(model, *self.seen, self.settings, self.device), _dsc_at_half(self.held_probabilities, self.held_targets)


def _end_epoch(run: Run, settings: TrainSettings, progress: _Progress, validate: _Validation | None,
               loss_log_path: str | os.PathLike) -> None:
    """One row of the loss log, appended to it: epoch, step, mean loss, learning rate and, at
    validation steps (every ``validate_every``, and the last), the train and validation DSC."""
    epoch = run.step // settings.steps_per_epoch + (run.step % settings.steps_per_epoch > 0)
    row = [epoch, run.step, float(np.mean(run.epoch_losses)), run.schedule.get_last_lr()[0]]
    if validate is not None:
        every = max(settings.validate_every, settings.steps_per_epoch) if settings.validate_every else settings.steps
        due = run.step == settings.steps or run.step // every > (run.step - settings.steps_per_epoch) // every
        row += list(validate(run.final)) if due else [float("nan"), float("nan")]
        if due:
            log.info("step %d: DSC %.3f on training cases, %.3f on held-out ones", run.step, row[4], row[5])
    run.history.append(row)
    with open(loss_log_path, "a") as log_file:
        log_file.write(_loss_row(row) + "\n")
    run.epoch_losses = []
    progress.log(run.step, row[2])


def _loss_row(row: list) -> str:
    e, s, l, lr, *dsc = row
    return f"{int(e)}\t{int(s)}\t{l:.6f}\t{lr:.6g}" + "".join(f"\t{d:.4f}" if np.isfinite(d) else "\t" for d in dsc)


def _loss_log(history: list, validated: bool) -> str:
    header = "epoch\tstep\tloss\tlearning_rate" + ("\ttrain_dsc\tval_dsc" if validated else "")
    return "\n".join([header, *map(_loss_row, history)]) + "\n"


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


