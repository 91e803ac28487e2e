"""The settings of one training run (config.yaml ``group_training`` / ``final_training``,
completed by the method's recipe, ``methods``)."""

from __future__ import annotations

from dataclasses import dataclass

from boxseg.settings import from_section

NETWORKS = ("unet", "dynunet")
LR_SCHEDULES = ("exponential", "cosine", "poly")


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
        network: ``unet`` (MONAI UNet, one residual unit per level) or ``dynunet`` (MONAI
            DynUNet, nnU-Net's layout: two 3x3x3 convolutions per stage, strided downsampling,
            transposed-convolution upsampling); ``features`` are the channels per level either way.
        lr_schedule: ``exponential`` (``decay_rate`` every ``decay_steps``), ``cosine``
            (half a cosine from ``learning_rate`` to 0 at ``steps``) or ``poly``
            ((1 - step / steps) ** 0.9, nnU-Net's).
        ema_decay: > 0: the saved model is an exponential moving average of the weights
            (w_avg <- d w_avg + (1 - d) w after every step); 0: the last weights.
        rotate_deg: random rotation of each patch about each axis, uniform in +- this
            (MONAI ``Affine``; image linear, target and other arrays nearest); 2D: in-plane only.
        scale_range: random isotropic scaling of each patch, uniform in 1 +- this (with the rotation).
        gamma_range: random gamma of the image, exp(uniform(+- this)) (MONAI ``AdjustContrast``).
        noise_std: Gaussian noise of this standard deviation added to the image (image units).
        mixed_precision: forward and loss under autocast: bfloat16 on CPU (fast only where the
            CPU has AMX) and on CUDA where supported.
        validation_cases: this many training cases (seeded) are held out of training and
            scored every ``validate_every`` steps: DSC of the model's mask (probability > 0.5)
            against their targets, beside the DSC on as many training cases (``train_dsc``,
            ``val_dsc`` columns of the loss log). 0: none held out.
        validate_every: steps between validations (rounded up to whole epochs; 0: only at the end).
        empty_weight, tightness_weight, tightness_alpha, tightness_core, box_size_weight,
            box_size_band: the box losses' terms (``losses``: ``box_wce``, ``box_vwce``;
            ``boxes.constraints``): outside-the-boxes background weight (times the largest
            inside weight), the weight of the slice constraint, its smooth maximum's alpha
            and the central fraction of each box it asks, the weight of the size band and
            the band as fractions of the box's volume.
        disagreement_weight: ``box_vwce``'s weight factor of the voxels in a box where the
            fusion-mask target and the pseudo-mask disagree (1: trusted like the rest).

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
    network: str = "unet"
    lr_schedule: str = "exponential"
    ema_decay: float = 0.0
    rotate_deg: float = 0.0
    scale_range: float = 0.0
    gamma_range: float = 0.0
    noise_std: float = 0.0
    mixed_precision: bool = False
    validation_cases: int = 0
    validate_every: int = 0
    empty_weight: float = 1.0
    tightness_weight: float = 0.0
    tightness_alpha: float = 4.0
    tightness_core: float = 0.6
    box_size_weight: float = 0.0
    box_size_band: tuple = (0.2, 0.8)
    disagreement_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(v) for v in self.patch_size))
        object.__setattr__(self, "features", tuple(int(v) for v in self.features))
        object.__setattr__(self, "class_weights", tuple(float(v) for v in self.class_weights))
        object.__setattr__(self, "box_size_band", tuple(float(v) for v in self.box_size_band))
        if self.steps < 1 or self.batch_size < 1 or len(self.patch_size) != 3 or len(self.features) < 2:
            raise ValueError("steps and batch_size must be >= 1, patch_size 3 values, features >= 2 levels")
        if self.spatial_dims not in (2, 3) or (self.spatial_dims == 2 and self.patch_size[0] != 1):
            raise ValueError("spatial_dims must be 3, or 2 with patch_size (1, y, x)")
        factor = 2 ** (len(self.features) - 1)
        if any(p % factor for p in self.patch_size[3 - self.spatial_dims :]):
            raise ValueError(f"patch_size {self.patch_size} must be multiples of {factor} for {len(self.features)} levels")
        if self.network not in NETWORKS or self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"network must be one of {list(NETWORKS)} and lr_schedule one of {list(LR_SCHEDULES)}")
        if not 0 <= self.ema_decay < 1 or min(self.rotate_deg, self.scale_range, self.gamma_range, self.noise_std) < 0:
            raise ValueError("ema_decay must lie in [0, 1) and the augmentation ranges be >= 0")
        low, high = self.box_size_band
        if not 0 <= low <= high <= 1 or min(self.empty_weight, self.tightness_weight, self.box_size_weight) < 0 \
                or not 0 < self.tightness_core <= 1:
            raise ValueError("box_size_band must be 0 <= low <= high <= 1, tightness_core in (0, 1] and the box loss weights >= 0")
        if not 0 <= self.disagreement_weight <= 1:
            raise ValueError("disagreement_weight must lie in [0, 1]")
        if self.validation_cases < 0 or self.validate_every < 0:
            raise ValueError("validation_cases and validate_every must be >= 0")

    @property
    def augments(self) -> bool:
        """Whether patches get the spatial or intensity augmentation beyond flips and jitter."""
        return any((self.rotate_deg, self.scale_range, self.gamma_range, self.noise_std))

    @classmethod
    def from_dict(cls, values: dict) -> TrainSettings:
        return from_section(cls, values, "training setting")
