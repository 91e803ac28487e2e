"""3D UNet training with (voxel-wise) weighted cross-entropy, and inference.

WCE (group models):  L = -mean_voxels sum_c w_c y_c log p_c
VWCE (final model):  L = -mean_voxels V * sum_c w_c y_c log p_c
with class weights w = (background 0.2, lesion 1.0) by default and V the
voxel weight map of stage 2. With V = 1 both are the same.

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
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from boxseg.atomic import atomic_write, write_text

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


def build_unet(features, spatial_dims: int = 3) -> torch.nn.Module:
    """A 3D (or 2D) UNet (MONAI) with one input channel and two output classes."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=2,
        channels=tuple(features),
        strides=(2,) * (len(features) - 1),
        num_res_units=1,
        norm="instance",
    )


IGNORE = 255


def weighted_cross_entropy(logits, target, class_weights, voxel_weight=None):
    """(V)WCE: mean over voxels of V * w_target * -log p_target.

    Voxels whose target is IGNORE (255) do not count: the mean is over labelled voxels.

    Args:
        logits: (B, 2, z, y, x).
        target: (B, z, y, x) int64 labels.
        class_weights: (background, lesion).
        voxel_weight: (B, z, y, x) or None (V = 1, plain WCE).
    """
    weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    loss = torch.nn.functional.cross_entropy(logits, target, weight=weights, reduction="none", ignore_index=IGNORE)
    if voxel_weight is not None:
        loss = loss * voxel_weight
    labelled = target != IGNORE
    if bool(labelled.all()):
        return loss.mean()
    return loss.sum() / labelled.sum().clamp_min(1)


def size_loss(logits, true_volume, tolerance: float):
    """Constrained-CNN size penalty: relu((1 - t) V - S)^2 + relu(S - (1 + t) V)^2, S = sum p_lesion,
    per patch, in units of the patch volume, averaged over the batch.

    Args:
        logits: (B, 2, z, y, x).
        true_volume: (B,) true lesion voxels in each patch.
    """
    n = float(np.prod(logits.shape[2:]))
    predicted = torch.softmax(logits, dim=1)[:, 1].flatten(1).sum(1)
    low, high = (1.0 - tolerance) * true_volume, (1.0 + tolerance) * true_volume
    penalty = torch.relu(low - predicted) ** 2 + torch.relu(predicted - high) ** 2
    return (penalty / (n * n)).mean()


def _random_patch(rng: np.random.Generator, volumes, patch_size, intensity_jitter: float = 0.0, foreground=None, foreground_fraction: float = 0.0):
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


def _atomic_torch_save(obj, path: Path):
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _lr_lambda(settings: TrainSettings):
    return lambda step: settings.decay_rate ** (step / settings.decay_steps)


def train(
    images,
    targets,
    settings: TrainSettings,
    model_path,
    loss_log_path,
    voxel_weights=None,
    size_targets=None,
    device: torch.device | str = "cpu",
    checkpoint_path=None,
    stop_after: int | None = None,
):
    """Train a 3D UNet and write the model and the per-epoch loss log.

    Args:
        images: list of (z, y, x) float arrays in [0, 1].
        targets: list of (z, y, x) binary arrays (pseudo-masks or fusion masks).
        settings: TrainSettings.
        voxel_weights: list of (z, y, x) weight maps for VWCE, or None for WCE.
        size_targets: list of (z, y, x) true lesion masks whose volume per patch the size loss
            uses (settings.size_loss_weight > 0), or None.
        checkpoint_path: resumable checkpoint; resumed from when present and written for these
            settings and this training data, else ignored (and replaced at the next checkpoint).
        stop_after: stop (without writing the model) after this many steps in total;
            used to test resumption.

    Returns:
        The trained model (on ``device``).
    """
    if not images or len(images) != len(targets):
        raise ValueError("need one target per image and at least one image")
    device = torch.device(device)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = build_unet(settings.features, settings.spatial_dims).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(settings))
    step, history, epoch_losses = 0, [], []
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    fingerprint = _fingerprint(settings, images, targets, voxel_weights, size_targets) if checkpoint_path else None
    state = None
    if checkpoint_path and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if state.get("fingerprint") != fingerprint:
            log.warning("%s was written for other settings or training data: training from step 0", checkpoint_path)
            state = None
    if state is not None:
        log.info("resuming from step %d of %d (%s)", int(state["step"]), settings.steps, checkpoint_path)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, history = int(state["step"]), [list(row) for row in state["history"]]
        epoch_losses = [float(v) for v in state["epoch_losses"]]
    use_size = settings.size_loss_weight > 0
    if use_size and size_targets is None:
        raise ValueError("size_loss_weight > 0 needs size targets (true lesion masks)")
    volumes = []
    for i, image in enumerate(images):
        v = [np.asarray(image, np.float32), np.asarray(targets[i], np.int64)]
        if voxel_weights is not None:
            v.append(np.asarray(voxel_weights[i], np.float32))
        if use_size:
            v.append(np.asarray(size_targets[i], np.float32))
        volumes.append(v)
    foreground = [np.argwhere(v[1] == 1) for v in volumes] if settings.foreground_fraction > 0 else [None] * len(volumes)
    model.train()
    end = settings.steps if stop_after is None else min(stop_after, settings.steps)
    progress = _Progress(step, settings.steps)
    while step < end:
        batch = []
        for _ in range(settings.batch_size):
            i = int(rng.integers(len(volumes)))
            batch.append(_random_patch(rng, volumes[i], settings.patch_size, settings.intensity_jitter, foreground[i], settings.foreground_fraction))
        x = torch.from_numpy(np.stack([b[0] for b in batch])[:, None]).to(device)
        y = torch.from_numpy(np.stack([b[1] for b in batch])).to(device)
        v = torch.from_numpy(np.stack([b[2] for b in batch])).to(device) if voxel_weights is not None else None
        if settings.spatial_dims == 2:  # (B, 1, 1, y, x) slices -> (B, 1, y, x)
            x, y = x[:, :, 0], y[:, 0]
            v = v[:, 0] if v is not None else None
        size = torch.tensor([float(b[-1].sum()) for b in batch], device=device) if use_size else None
        optimiser.zero_grad(set_to_none=True)
        logits = model(x)
        loss = weighted_cross_entropy(logits, y, settings.class_weights, v)
        if use_size:
            loss = loss + settings.size_loss_weight * size_loss(logits, size, settings.size_tolerance)
        loss.backward()
        optimiser.step()
        schedule.step()
        step += 1
        epoch_losses.append(loss.item())
        if step % settings.steps_per_epoch == 0 or step == settings.steps:
            history.append([step // settings.steps_per_epoch + (step % settings.steps_per_epoch > 0), step, float(np.mean(epoch_losses)), schedule.get_last_lr()[0]])
            epoch_losses = []
            progress.log(step, history[-1][2])
        if checkpoint_path and settings.checkpoint_every and (step % settings.checkpoint_every == 0) and step < settings.steps:
            _atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "schedule": schedule.state_dict(),
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "step": step,
                    "history": history,
                    "epoch_losses": epoch_losses,
                    "fingerprint": fingerprint,
                },
                checkpoint_path,
            )
    if step < settings.steps:
        return model
    save_model(model, settings, model_path)
    rows = ["epoch\tstep\tloss\tlearning_rate"] + [f"{int(e)}\t{int(s)}\t{l:.6f}\t{lr:.6g}" for e, s, l, lr in history]
    write_text("\n".join(rows) + "\n", loss_log_path)
    if checkpoint_path:
        checkpoint_path.unlink(missing_ok=True)
    return model


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


def _fingerprint(settings: TrainSettings, *arrays) -> str:
    """What a checkpoint must have been written for to be resumed: the settings and every
    training array (images, targets, weight maps, size targets), by content."""
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True, default=list).encode())
    for group in arrays:
        for array in group if group is not None else ():
            array = np.ascontiguousarray(array)
            digest.update(f"{array.shape}{array.dtype.str}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def save_model(model, settings: TrainSettings, path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_torch_save(
        {"state_dict": state, "features": list(settings.features), "patch_size": list(settings.patch_size), "spatial_dims": settings.spatial_dims},
        Path(path),
    )


def load_model(path, device="cpu"):
    """Load a model written by ``save_model`` (weights_only=True). Returns (model, patch_size).

    Raises:
        ValueError: the file is not such a model (naming the file and why).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = build_unet(state["features"], int(state.get("spatial_dims", 3)))
        model.load_state_dict(state["state_dict"])
        patch_size = tuple(state["patch_size"])
    except Exception as err:  # noqa: BLE001 (whatever torch makes of a foreign file)
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ValueError(f"{path}: not a model written by boxseg ({type(err).__name__}: {why})") from None
    return model.to(device).eval(), patch_size


def predict_probability(model, image, patch_size, device="cpu", overlap: float = 0.5, flip_tta: bool = False) -> np.ndarray:
    """Lesion probability (z, y, x) by Gaussian-weighted sliding-window inference (MONAI).

    With ``flip_tta`` the probabilities of the image and of its flips along each
    axis (the training augmentation) are averaged.
    """
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.asarray(image, np.float32)[None, None]).to(device)
    two_d = len(patch_size) == 3 and patch_size[0] == 1 and _is_2d(model)
    if two_d:  # axial slices as a batch of 2D images
        x, patch_size = x[0].permute(1, 0, 2, 3), tuple(patch_size[1:])
    flips = [()] + ([(d,) for d in range(2, x.dim())] if flip_tta else [])
    prob = 0.0
    with torch.no_grad():
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            logits = sliding_window_inference(xi, tuple(patch_size), 4, model, overlap=overlap, mode="gaussian")
            p = torch.softmax(logits, dim=1)
            prob = prob + (torch.flip(p, dims) if dims else p)
    prob = prob / len(flips)
    lesion = prob[:, 1] if two_d else prob[0, 1]
    return lesion.cpu().numpy().astype(np.float32)


def _is_2d(model) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
