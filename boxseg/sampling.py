"""Training patches: random crops with flips and intensity jitter (``random_patch``), the
optional spatial and intensity augmentation (``augment``, MONAI transforms), and batches
of them (``sample_batch``). Every random draw comes from the run's one generator, so a
resumed run samples what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from boxseg.train_settings import TrainSettings


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


class Cases:
    """The training cases as arrays: per case the image, the target and the loss's other
    per-voxel arrays (``names``: ``target`` first, then e.g. ``weight`` or ``size``), and
    the lesion voxels that foreground sampling centres patches on."""

    def __init__(self, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], extras: dict[str, Sequence[np.ndarray]],
                 foreground_fraction: float):
        # the box losses also get where a patch holds the ROI (``valid``: 0 where padded or rotated in)
        valid = "box_map" in extras
        self.names = ("target", *extras, *(("valid",) if valid else ()))
        self.volumes = []
        for i, image in enumerate(images):
            volume = [np.asarray(image, np.float32), np.asarray(targets[i], np.int64)]
            volume += [np.asarray(extras[name][i], np.float32) for name in extras]
            if valid:
                volume.append(np.ones(np.shape(image), np.float32))
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
    if settings.augments:
        patches = [augment(rng, p, settings) for p in patches]
    x = torch.from_numpy(np.stack([p[0] for p in patches])[:, None]).to(device)
    batch = {name: torch.from_numpy(np.stack([p[j + 1] for p in patches])).to(device) for j, name in enumerate(cases.names)}
    if settings.spatial_dims == 2:  # (B, 1, 1, y, x) slices -> (B, 1, y, x)
        x, batch = x[:, :, 0], {name: value[:, 0] for name, value in batch.items()}
    return x, batch


def augment(rng: np.random.Generator, arrays: Sequence[np.ndarray], settings: TrainSettings) -> list[np.ndarray]:
    """One patch's arrays (image first, then target and the loss's other arrays) rotated and
    scaled alike (MONAI ``Affine``: the image linear, the others nearest, zeros outside),
    then the image's gamma and noise. Draws nothing for an augmentation that is off."""
    from monai.transforms import AdjustContrast, Affine

    out = [np.asarray(a) for a in arrays]
    if settings.rotate_deg or settings.scale_range:
        three_d = settings.spatial_dims == 3
        limit = np.deg2rad(settings.rotate_deg)
        angles = rng.uniform(-limit, limit, 3 if three_d else 1) if limit else np.zeros(3 if three_d else 1)
        scale = 1.0 + rng.uniform(-settings.scale_range, settings.scale_range) if settings.scale_range else 1.0
        out = [_affine(a, angles, scale, three_d, "bilinear" if i == 0 else "nearest", Affine) for i, a in enumerate(out)]
    if settings.gamma_range:
        gamma = float(np.exp(rng.uniform(-settings.gamma_range, settings.gamma_range)))
        image = torch.from_numpy(np.ascontiguousarray(out[0], np.float32))[None]
        out[0] = np.asarray(AdjustContrast(gamma)(image))[0].astype(np.float32)
    if settings.noise_std:
        out[0] = (out[0] + rng.normal(0.0, settings.noise_std, out[0].shape)).astype(np.float32)
    return out


def _affine(array: np.ndarray, angles: np.ndarray, scale: float, three_d: bool, mode: str, affine: type) -> np.ndarray:
    """``array`` (z, y, x) rotated by ``angles`` (about each axis; 2D: the axial plane) and
    scaled about its centre, on its own grid."""
    data = torch.from_numpy(np.ascontiguousarray(array, np.float32))
    data = data[None] if three_d else data[:1]  # (1, z, y, x), or a 2D patch (1, y, x) from (1, y, x)
    transform = affine(rotate_params=list(angles) if three_d else float(angles[0]), scale_params=[scale] * (3 if three_d else 2), padding_mode="zeros",
                       mode=mode, image_only=True)
    moved = np.asarray(transform(data))
    moved = moved[0] if three_d else moved
    return np.rint(moved).astype(array.dtype) if mode == "nearest" else moved.astype(array.dtype)
