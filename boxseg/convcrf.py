"""3D convolutional CRF (Teichmann and Cipolla 2018) for box-supervised masks.

Binary labels (background, lesion) with a Potts pairwise term made of two
truncated Gaussian kernels:

* appearance: exp(-|dp|^2 / 2 theta_a^2 - |dI|^2 / 2 theta_i^2)
* smoothness: exp(-|dp|^2 / 2 theta_s^2)

with dp the physical offset in mm (anisotropic spacing honoured) and dI the
intensity difference. Kernels are zero beyond a local window, so one
mean-field message is a sum over window offsets; we accumulate it offset by
offset, which keeps memory linear in the number of voxels.

The unary combines a spatial prior with a GrabCut-style intensity model
re-estimated from the current solution. For a box the spatial prior encodes
what a box says: voxels outside every box are background (clamped); inside,
the inscribed ellipsoid is likely lesion and the corners are not
(``box_prior``); a box known to be drawn with slack has its ellipsoid
inscribed in the box moved in by that slack (``shrink_box``), and how loose a
box is can be estimated from the image (``estimate_box_slack``): the gap
between each face and a first solution. The same refinement serves the fusion masks of stage 2,
with the union of masks as prior (``refine_mask``).

Tensors are (batch, 1, z, y, x); spacings are (z, y, x) in mm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache

import numpy as np
import torch

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
        known = {f.name for f in fields(cls)}
        unknown = set(values or {}) - known
        if unknown:
            raise ValueError(f"unknown ConvCRF parameter(s): {sorted(unknown)}")
        return cls(**(values or {}))

    def to_dict(self) -> dict:
        return asdict(self)


def _window(spacing_mm, params: CRFParams):
    """Window radius per axis, and the offsets (dz, dy, dx) with their squared physical
    lengths; computed once per spacing and parameters."""
    return _window_cached(tuple(float(v) for v in spacing_mm), params)


@lru_cache(maxsize=64)
def _window_cached(spacing_mm: tuple, params: CRFParams):
    theta = max(params.theta_appearance_mm, params.theta_smooth_mm)
    radius = [int(min(params.window_radius_vox, np.ceil(2.0 * theta / s))) for s in spacing_mm]
    power = {"manhattan": 1, "ball": 2}.get(params.window_shape)
    offsets = []
    for dz in range(-radius[0], radius[0] + 1):
        for dy in range(-radius[1], radius[1] + 1):
            for dx in range(-radius[2], radius[2] + 1):
                reach = sum((abs(d) / r) ** power for d, r in zip((dz, dy, dx), radius) if r) if power else 0.0
                if (dz, dy, dx) != (0, 0, 0) and reach <= 1.0 + 1e-9:
                    d2 = (dz * spacing_mm[0]) ** 2 + (dy * spacing_mm[1]) ** 2 + (dx * spacing_mm[2]) ** 2
                    offsets.append(((dz, dy, dx), d2))
    return tuple(radius), tuple(offsets)


@lru_cache(maxsize=4096)
def _pair_slices(offset, shape):
    """Index regions A and B = A + offset of every voxel pair (i, i + offset) inside the volume;
    both empty along an axis shorter than the offset (a box thinner than the window)."""
    a, b = [], []
    for d, n in zip(offset, shape):
        m = max(n - abs(d), 0)  # pairs along this axis (a negative stop would wrap around)
        a.append(slice(0, m) if d >= 0 else slice(n - m, n))
        b.append(slice(d, d + m) if d >= 0 else slice(0, m))
    return (..., *a), (..., *b)


def _pair_kernels(image: torch.Tensor, spacing_mm, params: CRFParams):
    """(o, A, B, kernel) for each pair of opposite window offsets (o, -o): the index
    regions of the voxel pairs (i, i + o) and the kernel on them, appearance plus
    smoothness (symmetric, so one evaluation serves both directions). Generated one
    pair at a time."""
    offsets = _window(spacing_mm, params)[1]
    inv_ta = 1.0 / (2.0 * max(params.theta_appearance_mm, 1e-6) ** 2)
    inv_ts = 1.0 / (2.0 * max(params.theta_smooth_mm, 1e-6) ** 2)
    shape = tuple(image.shape[-3:])
    # exp(log w_a - d^2/2ta^2 - (dI / sqrt(2) ti)^2): three tensor operations per pair
    scaled = image / (np.sqrt(2.0) * max(params.theta_intensity, 1e-6))
    log_wa = np.log(params.weight_appearance) if params.weight_appearance > 0 else -np.inf
    half = [(o, d2) for o, d2 in offsets if o > (0, 0, 0)]  # each -o is served by the same kernel
    # log w_a - d^2/2ta^2 of each pair, moved to the device once
    log_k = torch.tensor([log_wa - d2 * inv_ta for _, d2 in half], dtype=image.dtype, device=image.device)
    for i, (offset, d2) in enumerate(half):
        a, b = _pair_slices(offset, shape)
        diff = scaled[a] - scaled[b]
        kernel = torch.addcmul(log_k[i], diff, diff, value=-1.0).exp_()
        if params.weight_smooth > 0:  # the smoothness kernel is a constant per offset
            kernel.add_(params.weight_smooth * np.exp(-d2 * inv_ts))
        yield offset, a, b, kernel


def pairwise_message(q: torch.Tensor, image: torch.Tensor, valid: torch.Tensor, spacing_mm, params: CRFParams, norm=None):
    """Kernel-weighted sums over the window: (sum_j k_ij q_j, sum_j k_ij valid_j), j != i.

    The kernel is accumulated offset pair by offset pair (``_pair_kernels``), so
    nothing of size window^3 x voxels is built. ``norm`` depends on the image only: pass
    it back in to skip recomputing it (mean-field iterations). With ``q`` None only the
    normaliser is computed (the message is None).
    """
    want_message, want_norm = q is not None, norm is None
    qv = q * valid if want_message else None
    message = torch.zeros_like(image) if want_message else None
    if want_norm:
        norm = torch.zeros_like(image)
    for _, a, b, kernel in _pair_kernels(image, spacing_mm, params):
        if want_message:
            message[a].addcmul_(kernel, qv[b])
            message[b].addcmul_(kernel, qv[a])
        if want_norm:
            norm[a].addcmul_(kernel, valid[b])
            norm[b].addcmul_(kernel, valid[a])
    return message, norm


class _KeptKernels:
    """The kernels of every offset pair on ``image``, computed once and kept across
    mean-field iterations: the normaliser on ``core``, and messages on ``core`` as two
    fused multiply-adds per offset pair (views of the kernels on the core, views into
    persistent message and source buffers). The result equals ``pairwise_message``'s.
    """

    def __init__(self, image: torch.Tensor, spacing_mm, params: CRFParams, core):
        pairs = list(_pair_kernels(image, spacing_mm, params))
        norm = torch.zeros_like(image)
        for _, a, b, kernel in pairs:
            norm[a].add_(kernel)
            norm[b].add_(kernel)
        self.norm = norm[core]
        self.source, self.message = torch.zeros_like(self.norm), torch.zeros_like(self.norm)
        core_shape = tuple(self.norm.shape[-3:])
        self.plan = []
        for offset, _, _, kernel in pairs:
            # pairs (i, i + o) with both ends in the core: along each axis, kernel entries
            # [c0, c1 - |d|) of the region's pairs, whatever the sign of d
            on_core = kernel[(..., *[slice(c.start, c.stop - abs(d)) for c, d in zip(core[-3:], offset)])]
            a, b = _pair_slices(offset, core_shape)
            self.plan.append((on_core, self.message[a], self.message[b], self.source[a], self.source[b]))

    @staticmethod
    def fit(image: torch.Tensor, spacing_mm, params: CRFParams) -> bool:
        """Whether the kernels of ``image`` take at most ``kernel_cache_mb``."""
        pairs = (len(_window(spacing_mm, params)[1]) + 1) // 2
        return pairs * image.numel() * image.element_size() <= params.kernel_cache_mb * 2**20

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """sum_j k_ij q_j on the core (a buffer overwritten by the next call)."""
        self.source.copy_(q)
        self.message.zero_()
        for kernel, message_a, message_b, source_a, source_b in self.plan:
            message_a.addcmul_(kernel, source_b)
            message_b.addcmul_(kernel, source_a)
        return self.message


class _RecomputedKernels:
    """``_KeptKernels``' interface with the kernels recomputed at every message
    (``pairwise_message``): memory linear in voxels."""

    def __init__(self, image: torch.Tensor, spacing_mm, params: CRFParams, core):
        self.norm = pairwise_message(None, image, torch.ones_like(image), spacing_mm, params)[1][core]
        self.image, self.spacing_mm, self.params = image[core], spacing_mm, params
        self.valid = torch.ones_like(self.image)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return pairwise_message(q, self.image, self.valid, self.spacing_mm, self.params, self.norm)[0]


def _messages(image: torch.Tensor, spacing_mm, params: CRFParams, core):
    """Messages into ``core`` from the window on ``image``: kernels kept across iterations
    when they fit ``kernel_cache_mb``, else recomputed each time. Same result either way."""
    kind = _KeptKernels if _KeptKernels.fit(image, spacing_mm, params) else _RecomputedKernels
    return kind(image, spacing_mm, params, core)


def mean_field(unary_logit: torch.Tensor, image: torch.Tensor, allowed: torch.Tensor, spacing_mm, params: CRFParams):
    """Mean-field inference of the binary Potts CRF.

    Args:
        unary_logit: (B, 1, z, y, x) log-odds of lesion from the unary term.
        image: (B, 1, z, y, x) intensities.
        allowed: (B, 1, z, y, x) bool, False where the label is clamped to background.
        spacing_mm: voxel spacing (z, y, x).

    Returns:
        Lesion probability q, zero outside ``allowed``.

    q is 0 outside ``allowed``, so nothing beyond the bounding box of ``allowed`` plus
    one window matters: the normaliser is computed there (its sources are every voxel
    in the window), and the iterations run on the bounding box alone (a message into an
    allowed voxel comes from allowed voxels only). Elsewhere q is 0.
    """
    allowed_f = allowed.to(unary_logit.dtype)
    q = torch.sigmoid(unary_logit) * allowed_f
    f = int(params.downsample)
    if f == 1:
        region = _bounding_slices(allowed, pad=_window(spacing_mm, params)[0])
        core = _bounding_slices(allowed[region])
        q_c = _mean_field_on_core(unary_logit[region], image[region], allowed_f[region], q[region], core, spacing_mm, params)
        q = torch.zeros_like(q)
        q[region][core] = q_c
        return q
    # messages on a grid coarser by f (ConvCRF's "blur"), interpolated back
    pool = {"kernel_size": f, "stride": f, "ceil_mode": True}
    image = torch.nn.functional.avg_pool3d(image, **pool)
    spacing_mm = tuple(float(s) * f for s in spacing_mm)
    scale = float(f**3)  # a coarse voxel stands for f^3 voxels
    # the same physical window: radius r full-resolution voxels -> ceil(r / f) coarse ones
    params = replace(params, window_radius_vox=max(1, -(-params.window_radius_vox // f)))
    messages = _messages(image, spacing_mm, params, (..., *(slice(0, n) for n in image.shape[-3:])))
    norm_full = _upsample(messages.norm, q.shape[-3:], f) * scale
    for _ in range(params.iterations):
        message = messages(torch.nn.functional.avg_pool3d(q, **pool))
        q = torch.sigmoid(unary_logit + 2.0 * _upsample(message, q.shape[-3:], f) * scale - norm_full) * allowed_f
    return q


def _mean_field_on_core(unary, image, allowed_f, q, core, spacing_mm, params: CRFParams):
    """Mean field on ``core`` (the bounding box of the allowed voxels), the normaliser on
    the whole region (its sources are every voxel within the window)."""
    messages = _messages(image, spacing_mm, params, core)
    unary, allowed_f, q = unary[core], allowed_f[core], q[core]
    for _ in range(params.iterations):
        # Potts: E_fg - E_bg = sum k (1 - q_j) - sum k q_j = norm - 2 message
        q = torch.sigmoid(unary + 2.0 * messages(q) - messages.norm) * allowed_f
    return q


def _bounding_slices(mask: torch.Tensor, pad=(0, 0, 0)):
    """Slices of (..., z, y, x) covering every True voxel of any leading index, widened by
    ``pad`` voxels per axis and clipped to the volume (all of it when none is True)."""
    lead = tuple(slice(None) for _ in mask.shape[:-3])
    if not bool(mask.any()):
        return lead + tuple(slice(0, n) for n in mask.shape[-3:])
    idx = mask.reshape(-1, *mask.shape[-3:]).any(0).nonzero()
    lo, hi = idx.min(0).values.tolist(), idx.max(0).values.tolist()
    return lead + tuple(slice(max(a - p, 0), min(b + p + 1, n)) for a, b, p, n in zip(lo, hi, pad, mask.shape[-3:]))


def _upsample(x: torch.Tensor, shape, f: int) -> torch.Tensor:
    """Coarse (ceil-pooled) grid back to ``shape``: trilinear at the coarse cells' centres."""
    big = torch.nn.functional.interpolate(x, scale_factor=f, mode="trilinear", align_corners=False)
    return big[..., : shape[0], : shape[1], : shape[2]]


def _log_histogram(values: torch.Tensor, weights: torch.Tensor, bins: int):
    index = torch.clamp((values * bins).long(), 0, bins - 1)
    hist = torch.bincount(index, weights=weights, minlength=bins).to(values.dtype)
    hist = torch.nn.functional.conv1d(  # light smoothing keeps empty bins finite
        hist.view(1, 1, -1), torch.tensor([[[0.25, 0.5, 0.25]]], dtype=hist.dtype, device=hist.device), padding=1
    ).view(-1)
    return torch.log(hist / hist.sum().clamp_min(1e-8) + 1e-4)


def intensity_log_ratio(image, fg_weight, bg_weight, bins: int):
    """log p(I | lesion) - log p(I | background), from weighted histograms of ``image`` in [0, 1]."""
    flat = image.reshape(-1).clamp(0.0, 1.0)
    log_fg = _log_histogram(flat, fg_weight.reshape(-1), bins)
    log_bg = _log_histogram(flat, bg_weight.reshape(-1), bins)
    index = torch.clamp((flat * bins).long(), 0, bins - 1)
    return (log_fg - log_bg)[index].view_as(image).clamp(-4.0, 4.0)


def refine(image, prior, allowed, sample_bg, spacing_mm, params: CRFParams):
    """GrabCut-style rounds of (intensity model, mean field) from a spatial prior.

    Args:
        image: (z, y, x) tensor, intensities in [0, 1].
        prior: (z, y, x) prior probability of lesion.
        allowed: (z, y, x) bool; outside it the label is background.
        sample_bg: (z, y, x) bool; where background intensities are sampled besides (1 - q) inside.

    Returns:
        (z, y, x) lesion probability.
    """
    eps = 1e-4
    prior = prior.clamp(eps, 1 - eps)
    prior_logit = torch.log(prior) - torch.log1p(-prior)
    allowed_f = allowed.to(image.dtype)
    q = prior * allowed_f
    for round_ in range(params.rounds):
        # First round: lesion intensities from the confident core only (a loose box holds background).
        fg_w = (q**params.core_power if round_ == 0 else q) * allowed_f
        bg_w = (1.0 - q) * allowed_f + sample_bg.to(image.dtype)
        ratio = intensity_log_ratio(image, fg_w, bg_w, params.histogram_bins)
        unary = params.prior_weight * prior_logit + params.intensity_weight * ratio
        q = mean_field(unary[None, None], image[None, None], allowed[None, None], spacing_mm, params)[0, 0]
    return q


def _crop_around(mask: np.ndarray, pad):
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def box_prior(shape, box_lo, box_hi, softness: float, inner=None):
    """Prior lesion probability of a box on a grid of ``shape`` (z, y, x).

    ``box_lo``/``box_hi`` are continuous voxel-edge bounds. A lesion inside a box
    touches every face and is roughly convex, so its likeliest extent is the
    inscribed ellipsoid: the prior is 1/2 on the ellipsoid surface, rises
    toward the centre and falls toward the corners; it is 0 outside the box.
    ``inner`` (lo, hi): inscribe the ellipsoid in this box instead (a box drawn with
    slack; ``shrink_box``); the prior still falls smoothly to the box's faces.
    """
    lo, hi = np.asarray(box_lo, float), np.asarray(box_hi, float)
    e_lo, e_hi = (lo, hi) if inner is None else (np.asarray(inner[0], float), np.asarray(inner[1], float))
    centre, half = (e_lo + e_hi) / 2.0 - 0.5, np.maximum((e_hi - e_lo) / 2.0, 0.5)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    r = np.sqrt(sum(((g - c) / h) ** 2 for g, c, h in zip(grids, centre, half)))
    inside = np.ones(shape, bool)
    for g, a, b in zip(grids, lo, hi):
        inside &= (g >= a - 0.5 + 1e-6) & (g <= b - 0.5 - 1e-6)
    with np.errstate(over="ignore"):  # exp overflow -> inf -> prior 0, as intended for hard edges
        prior = 1.0 / (1.0 + np.exp(-(1.0 - r) / max(softness, 1e-3)))
    return np.where(inside, prior, 0.0).astype(np.float32), inside


def shrink_box(lo, hi, spacing_mm, slack_mm):
    """The box moved in by its slack (per axis in voxels of ``spacing_mm``), never below one
    voxel, nor past its centre: where a box drawn with that much slack says the lesion's own
    extent is.

    ``slack_mm`` is one number for every face, or a pair (lower faces, upper faces) of
    per-axis (z, y, x) mm: the slack of each face (known only to a benchmark's oracle).
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if np.ndim(slack_mm) == 0:
        s_lo = s_hi = np.full(lo.shape, float(slack_mm))
    else:
        s_lo, s_hi = (np.asarray(s, float) for s in slack_mm)
    spacing = np.asarray(spacing_mm, float)
    d_lo, d_hi = np.maximum(s_lo / spacing, 0.0), np.maximum(s_hi / spacing, 0.0)
    if not (d_lo.any() or d_hi.any()):
        return lo, hi
    room = np.maximum(hi - lo - 1.0, 0.0)
    scale = np.minimum(1.0, room / np.maximum(d_lo + d_hi, 1e-9))  # both faces give way alike
    return lo + d_lo * scale, hi - d_hi * scale


def per_box_slack(slack_mm, n_boxes: int) -> list:
    """``slack_mm`` for each of ``n_boxes`` boxes: one number for all, or a list with one entry
    per box (each a number or a (lower, upper) pair of per-axis mm; ``shrink_box``)."""
    if np.ndim(slack_mm) == 0:
        return [float(slack_mm)] * n_boxes
    slack = list(slack_mm)
    if len(slack) != n_boxes:
        raise ValueError(f"slack_mm: {len(slack)} entries for {n_boxes} boxes")
    return slack


def boxes_prior(shape, boxes, softness: float, spacing_mm=None, slack_mm=0.0):
    """Prior of several boxes (voxel-wise maximum of ``box_prior``) and each box's inside mask.

    With a slack (``slack_mm``, as in ``per_box_slack``) each ellipsoid is inscribed in its
    box moved in by it (``shrink_box``; ``spacing_mm`` needed), while the inside mask
    (where the label may be lesion) stays the whole box.
    """
    prior = np.zeros(shape, np.float32)
    insides = []
    for (lo, hi), slack in zip(boxes, per_box_slack(slack_mm, len(boxes))):
        p, inside = box_prior(shape, lo, hi, softness, shrink_box(lo, hi, spacing_mm, slack))
        prior = np.maximum(prior, p)
        insides.append(inside)
    return prior, insides


def _shell(inside: np.ndarray, spacing_mm, shell_mm: float):
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(~inside, sampling=spacing_mm)
    return (~inside) & (dist <= shell_mm)


def _select_device(device):
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _run_refine(image, prior, allowed, spacing_mm, params, device, not_background=None):
    """Refine on the bounding region of ``allowed`` plus a background shell (less
    ``not_background``: other boxes, whose lesions are no background sample)."""
    pad = [int(np.ceil(params.shell_mm / s)) + params.window_radius_vox for s in spacing_mm]
    region = _crop_around(allowed, pad)
    sub_allowed = allowed[region]
    shell = _shell(sub_allowed, spacing_mm, params.shell_mm)
    if not_background is not None:
        shell &= ~not_background[region]
    dev = _select_device(device)
    to = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)
    with torch.no_grad():
        q = refine(
            to(image[region]), to(prior[region]), to(sub_allowed, torch.bool), to(shell, torch.bool), spacing_mm, params
        )
    out = np.zeros(image.shape, np.float32)
    out[region] = q.cpu().numpy()
    return out


def box_downsample(box, spacing_mm, params: CRFParams) -> int:
    """The message grid's coarsening factor for one box (lo, hi) (``downsample_box_mm``):
    longer-range messages for larger lesions. On 8 + 8 dev cases a short reach served
    tight boxes of small lesions and a long one loose boxes of large lesions (docs/method.md)."""
    if params.downsample_box_mm <= 0:
        return params.downsample
    lo, hi = box
    side = float(np.min((np.asarray(hi) - np.asarray(lo)) * np.asarray(spacing_mm, float)))
    adaptive = min(params.downsample_max, 1 + int(side // params.downsample_box_mm))
    return max(params.downsample, adaptive)


def pseudo_mask_from_boxes(image, boxes, spacing_mm, params: CRFParams = CRFParams(), device=None, slack_mm=0.0):
    """Stage 1: lesion probability from one or more boxes.

    Args:
        image: (z, y, x) float array, intensities in [0, 1].
        boxes: list of (lo, hi) continuous voxel-edge bounds (z, y, x) on this grid.
        spacing_mm: voxel spacing (z, y, x).
        slack_mm: how far the boxes are known to lie outside their lesions: one number for
            every face of every box, or per box a number or a (lower, upper) pair of
            per-axis mm (each face's true slack: only benchmarks know it, crf_bench.py's oracle).
            The prior's ellipsoid is inscribed in each box moved in by it, and the
            message grid is chosen from that inner box. 0 = tight boxes. Too large a
            slack cuts lesions: state a lower bound.

    Returns:
        (z, y, x) float32 lesion probability; exactly 0 outside every box.

    Each box is refined on its own, one lesion each: its own intensity model, message
    grid (``box_downsample``) and background shell (less the other boxes); where boxes
    overlap, the larger probability wins. So a box around a fragment of a few voxels
    does not put a large lesion beside it on the fine grid.

    Example:
        >>> prob = pseudo_mask_from_boxes(img, [((4, 4, 4), (20, 20, 20))], (1.0, 1.0, 1.0))
        >>> mask = prob > 0.5
    """
    image = np.asarray(image, np.float32)
    bounds = [(np.asarray(lo, float), np.asarray(hi, float)) for lo, hi in boxes]
    inner = [shrink_box(lo, hi, spacing_mm, s) for (lo, hi), s in zip(bounds, per_box_slack(slack_mm, len(bounds)))]
    priors = [box_prior(image.shape, lo, hi, params.prior_softness, e) for (lo, hi), e in zip(bounds, inner)]
    covered = np.zeros(image.shape, np.int32)  # how many boxes hold each voxel
    for _, inside in priors:
        covered += inside
    prob = np.zeros(image.shape, np.float32)
    for box, inner_box, (prior, inside) in zip(bounds, inner, priors):
        if inside.any():
            others = covered > inside  # inside another box
            prob = np.maximum(prob, _refine_box(image, box, inner_box, prior, inside, others, spacing_mm, params, device))
    return prob


def _refine_box(image, box, inner_box, prior, inside, others, spacing_mm, params: CRFParams, device):
    """Stage 1 for one box: its own intensity model and message grid; with ``estimate_slack``
    up to that many more solutions, each from the slack the one before shows
    (``estimate_box_slack``)."""
    run = replace(params, downsample=box_downsample(inner_box, spacing_mm, params))
    lo, hi = box
    for round_ in range(params.tighten_rounds + 1):
        if round_ > 0:
            prior = box_prior(image.shape, lo, hi, params.prior_softness)[0]
        prob = _run_refine(image, prior, inside, spacing_mm, run, device, others)
        if round_ < params.tighten_rounds:
            # A lesion touches every face of its tight box: re-centre the prior on the
            # extent of the current solution inside the box (never beyond the box).
            bb = np.argwhere((prob > 0.5) & inside)
            if len(bb):
                lo, hi = np.maximum(lo, bb.min(0)), np.minimum(hi, bb.max(0) + 1.0)
    inner = inner_box
    for _ in range(int(params.estimate_slack)):
        estimate = estimate_box_slack(prob > 0.5, box, inner, spacing_mm, params)
        if all(np.allclose(a, b) for a, b in zip(estimate, inner)):
            break
        inner = estimate
        prior = box_prior(image.shape, *box, params.prior_softness, inner)[0]
        run = replace(params, downsample=box_downsample(inner, spacing_mm, params))
        prob = _run_refine(image, prior, inside, spacing_mm, run, device, others)
    return prob


def estimate_box_slack(mask: np.ndarray, box, inner_box, spacing_mm, params: CRFParams):
    """How loose a box is, from a solution ``mask``: the box's inner bounds moved in to where
    the largest connected component of ``mask`` inside the box lies.

    A lesion touches every face of its tight box, so the gap between a face and the
    solution is how loose that face was drawn. Along each axis the solution's extent is
    where its cross-section exceeds ``slack_profile_fraction`` of its largest, so that a
    thin leak into the tissue beside the lesion does not hide a gap. Each gap less
    ``slack_deadband_mm``, raised to the box's ``slack_share``-th largest gap (when set),
    moves its face in, never less far than ``inner_box`` already does (the stated slack).
    ``box``, ``inner_box``: continuous voxel-edge bounds (lo, hi). Returns the new inner bounds.

    Example:
        >>> inner = estimate_box_slack(prob > 0.5, (lo, hi), (lo, hi), (2.0, 2.0, 2.0), params)
    """
    from boxseg.postprocess import largest_component

    lo, hi = (np.asarray(b, float) for b in box)
    in_lo, in_hi = (np.asarray(b, float) for b in inner_box)
    region = tuple(slice(int(max(np.floor(a), 0)), int(np.ceil(b))) for a, b in zip(lo, hi))
    largest = largest_component(mask[region], structure=np.ones((3, 3, 3)))  # 26-connected
    if not largest.any():
        return in_lo, in_hi
    ext_lo, ext_hi = np.zeros(3), np.zeros(3)
    for axis in range(3):
        profile = largest.sum(axis=tuple(a for a in range(3) if a != axis))
        held = np.nonzero(profile > params.slack_profile_fraction * profile.max())[0]
        ext_lo[axis] = region[axis].start + held.min()
        ext_hi[axis] = region[axis].start + held.max() + 1.0
    spacing = np.asarray(spacing_mm, float)
    gaps = np.stack([np.maximum(ext_lo - lo, 0.0), np.maximum(hi - ext_hi, 0.0)]) * spacing  # mm: (lower, upper) x (z, y, x)
    gaps = np.maximum(gaps - params.slack_deadband_mm, 0.0)
    if params.slack_share:
        gaps = np.maximum(gaps, np.sort(gaps.ravel())[-min(int(params.slack_share), gaps.size)])
    new_lo = np.maximum(in_lo, lo + gaps[0] / spacing)
    new_hi = np.minimum(in_hi, hi - gaps[1] / spacing)
    return new_lo, np.maximum(new_hi, new_lo + 1.0)


def refine_mask(image, mask, allowed, spacing_mm, params: CRFParams = CRFParams(), confidence: float = 0.8, device=None):
    """Stage 2 fusion: ConvCRF of a binary mask (e.g. PM or P1 or ... or PK).

    The mask gives the prior (``confidence`` inside, 1 - ``confidence`` outside);
    voxels outside ``allowed`` (the boxes) stay background.
    """
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, bool)
    allowed = np.asarray(allowed, bool)
    if not (mask & allowed).any():
        return np.zeros(image.shape, np.float32)
    prior = np.where(mask, confidence, 1.0 - confidence).astype(np.float32)
    return _run_refine(image, prior, allowed, spacing_mm, params, device)
