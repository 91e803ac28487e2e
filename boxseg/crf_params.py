"""The ConvCRF's settings (config.yaml ``crf``, ``pseudo_mask_crf`` and ``fusion_crf``),
shared by the engine (``convcrf``), stage 1 (``stage1``), the box prior and the baselines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from boxseg.settings import from_section

WINDOW_SHAPES = ("cube", "manhattan", "ball")


@dataclass(frozen=True)
class CRFParams:
    """ConvCRF settings (defaults chosen on the dev data; see docs/results.md).

    Args:
        iterations: mean-field iterations per refinement round.
        rounds: GrabCut-style rounds (intensity model re-estimated each round).
        window_radius_vox: maximum kernel half-width in voxels per axis.
        window_shape: which offsets within that half-width the kernels reach: ``cube``
            (every offset), ``manhattan`` (|dz|/rz + |dy|/ry + |dx|/rx <= 1: the paper's
            Manhattan-distance truncation) or ``ball`` (the same sum of squares <= 1).
        theta_appearance_mm: spatial width of the appearance kernel.
        theta_intensity: intensity width of the appearance kernel, in image units.
        theta_smooth_mm: width of the smoothness kernel.
        weight_appearance: weight of the appearance kernel.
        weight_smooth: weight of the smoothness kernel.
        prior_weight: weight of the spatial prior's log-odds in the unary.
        intensity_weight: weight of the intensity log-likelihood ratio.
        prior_softness: width of the box prior's fall-off at the ellipsoid surface.
        histogram_bins: bins of the intensity histograms.
        shell_mm: thickness of the shell outside the box sampled as background.
        core_power: the first intensity model weighs voxels by prior ** core_power (the box core).
        tighten_rounds: times the box prior is re-fitted to the extent of the current solution
            (clamped to it: an under-segmented first solution cannot grow back).
        estimate_slack: rounds of estimating how loose each box is from the image
            (``estimate_box_slack``), 0 = off: each round measures how far every face lies
            outside the current solution and solves again with the prior's ellipsoid
            inscribed in the box moved in by that much (the prior still falls softly to the
            faces, so a face moved in too far can grow back). Stage 1 only.
        estimate_iterations: mean-field iterations of the solutions that only serve the
            estimate (all but the last with ``estimate_slack``); 0 = ``iterations``. The
            last solution always runs ``iterations``.
        slack_profile_fraction: a face's gap is measured to where the solution's
            cross-section first exceeds this fraction of its largest (0: any voxel).
        slack_deadband_mm: taken off every measured gap (a tight box's solution stops about
            a voxel short of some faces).
        slack_share: >0: every face of a box is moved in at least as far as the k-th
            largest gap of its six (readers draw a box about as loose on every side, and a
            face where the lesion's neighbour looks like it shows no gap).
        downsample: messages are computed on a grid coarser by this factor per axis (average
            pooled image and q, spacing scaled) and interpolated back, as ConvCRF's "blur";
            the unary stays at full resolution. 1 = exact.
        downsample_box_mm: scale-adaptive messages for box pseudo-masks: the factor grows
            with the lesion, f = max(downsample, min(downsample_max, 1 + floor(s /
            downsample_box_mm))), s the shortest side in mm of the box (each box is refined
            on its own, ``pseudo_mask_from_boxes``), so a larger box gets blurred, somewhat
            longer-range messages on a coarser grid (the same physical window rounded up to
            whole coarse voxels, each averaging f^3 voxels). 0 = off (always ``downsample``).
            Not used by ``refine_mask`` (no boxes there).
        downsample_max: the largest factor ``downsample_box_mm`` may choose.
        kernel_cache_mb: the kernels of the window's offset pairs are kept across mean-field
            iterations when they take at most this many MiB (half the window times the voxels
            of the boxes' bounding region, on the message grid), else recomputed each
            iteration; the same result either way. 0 = never kept: memory strictly linear in voxels.
    """

    iterations: int = 5
    rounds: int = 1
    window_radius_vox: int = 3
    window_shape: str = "cube"
    theta_appearance_mm: float = 6.0
    theta_intensity: float = 0.03
    theta_smooth_mm: float = 2.0
    weight_appearance: float = 3.0
    weight_smooth: float = 0.5
    prior_weight: float = 1.0
    intensity_weight: float = 0.5
    prior_softness: float = 0.4
    histogram_bins: int = 32
    shell_mm: float = 8.0
    core_power: float = 4.0
    tighten_rounds: int = 0
    estimate_slack: int = 0
    estimate_iterations: int = 0
    slack_profile_fraction: float = 0.0
    slack_deadband_mm: float = 0.0
    slack_share: int = 0
    downsample: int = 1
    downsample_box_mm: float = 40.0
    downsample_max: int = 3
    kernel_cache_mb: float = 512.0

    def __post_init__(self):
        if self.window_shape not in WINDOW_SHAPES:
            raise ValueError(f"CRFParams.window_shape must be one of {WINDOW_SHAPES}, got {self.window_shape!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "window_shape" and (not np.isfinite(value) or value < 0):
                raise ValueError(f"CRFParams.{f.name} must be finite and >= 0, got {value}")
        if self.iterations < 1 or self.rounds < 1 or self.histogram_bins < 2 or self.downsample < 1 or self.downsample_max < 1:
            raise ValueError("iterations, rounds, downsample and downsample_max must be >= 1 and histogram_bins >= 2")

    @classmethod
    def from_dict(cls, values: dict | None) -> CRFParams:
        return from_section(cls, values, "ConvCRF parameter")

    def to_dict(self) -> dict:
        return asdict(self)
