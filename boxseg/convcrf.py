"""3D convolutional CRF (Teichmann and Cipolla 2018): the engine that stage 1 (``stage1``)
and stage 2's fusion (``refine_mask``) run.

Binary labels (background, lesion) with a Potts pairwise term made of two
truncated Gaussian kernels:

* appearance: exp(-|dp|^2 / 2 theta_a^2 - |dI|^2 / 2 theta_i^2)
* smoothness: exp(-|dp|^2 / 2 theta_s^2)

with dp the physical offset in mm (anisotropic spacing honoured) and dI the
intensity difference. Kernels are zero beyond a local window, so one
mean-field message is a sum over window offsets; we accumulate it offset by
offset, which keeps memory linear in the number of voxels.

The unary combines a spatial prior with a GrabCut-style intensity model
re-estimated from the current solution (``refine``). The prior comes from the
caller: a box's (``boxes.prior``) in stage 1, the union of masks in stage 2.
Settings: ``crf_params.CRFParams``.

Tensors are (batch, 1, z, y, x); spacings are (z, y, x) in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import numpy as np
import torch

from boxseg.crf_params import CRFParams


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


def pairwise_message(q: torch.Tensor | None, image: torch.Tensor, valid: torch.Tensor, spacing_mm: Sequence[float],
                     params: CRFParams, norm: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
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
    def fit(image: torch.Tensor, spacing_mm: Sequence[float], params: CRFParams) -> bool:
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


def mean_field(unary_logit: torch.Tensor, image: torch.Tensor, allowed: torch.Tensor, spacing_mm: Sequence[float],
               params: CRFParams, kernels: dict | None = None) -> torch.Tensor:
    """Mean-field inference of the binary Potts CRF.

    Args:
        unary_logit: (B, 1, z, y, x) log-odds of lesion from the unary term.
        image: (B, 1, z, y, x) intensities.
        allowed: (B, 1, z, y, x) bool, False where the label is clamped to background.
        spacing_mm: voxel spacing (z, y, x).
        kernels: where the message kernels are kept between calls on the same image,
            ``allowed``, spacing and kernel settings (by message grid factor); None: not kept.

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
        messages = _kept(kernels, f, lambda: _messages(image[region], spacing_mm, params, core))
        q_c = _mean_field_on_core(unary_logit[region], allowed_f[region], q[region], core, messages, params)
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
    messages = _kept(kernels, f, lambda: _messages(image, spacing_mm, params, (..., *(slice(0, n) for n in image.shape[-3:]))))
    norm_full = _upsample(messages.norm, q.shape[-3:], f) * scale
    for _ in range(params.iterations):
        message = messages(torch.nn.functional.avg_pool3d(q, **pool))
        q = torch.sigmoid(unary_logit + 2.0 * _upsample(message, q.shape[-3:], f) * scale - norm_full) * allowed_f
    return q


def _kept(kernels: dict | None, key, make):
    """``kernels[key]``, made by ``make`` the first time; ``make()`` when nothing is kept."""
    if kernels is None:
        return make()
    if key not in kernels:
        kernels[key] = make()
    return kernels[key]


def _mean_field_on_core(unary, allowed_f, q, core, messages, params: CRFParams):
    """Mean field on ``core`` (the bounding box of the allowed voxels) with ``messages``
    (``_messages``, whose normaliser covers the whole region: its sources are every voxel
    within the window)."""
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


def intensity_log_ratio(image: torch.Tensor, fg_weight: torch.Tensor, bg_weight: torch.Tensor,
                        bins: int) -> torch.Tensor:
    """log p(I | lesion) - log p(I | background), from weighted histograms of ``image`` in [0, 1]."""
    flat = image.reshape(-1).clamp(0.0, 1.0)
    log_fg = _log_histogram(flat, fg_weight.reshape(-1), bins)
    log_bg = _log_histogram(flat, bg_weight.reshape(-1), bins)
    index = torch.clamp((flat * bins).long(), 0, bins - 1)
    return (log_fg - log_bg)[index].view_as(image).clamp(-4.0, 4.0)


def refine(image: torch.Tensor, prior: torch.Tensor, allowed: torch.Tensor, sample_bg: torch.Tensor,
           spacing_mm: Sequence[float], params: CRFParams, kernels: dict | None = None) -> torch.Tensor:
    """GrabCut-style rounds of (intensity model, mean field) from a spatial prior.

    Args:
        image: (z, y, x) tensor, intensities in [0, 1].
        prior: (z, y, x) prior probability of lesion.
        allowed: (z, y, x) bool; outside it the label is background.
        sample_bg: (z, y, x) bool; where background intensities are sampled besides (1 - q) inside.
        kernels: kept message kernels (``mean_field``): a dict shared by the calls on one
            image and ``allowed`` (stage 1's solutions of one box), or None.

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
        q = mean_field(unary[None, None], image[None, None], allowed[None, None], spacing_mm, params, kernels)[0, 0]
    return q


def _crop_around(mask: np.ndarray, pad):
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _shell(inside: np.ndarray, spacing_mm, shell_mm: float):
    """The voxels outside ``inside`` within ``shell_mm`` of it (centre to centre). For a
    box (``inside`` a solid block) the distance is separable along the axes and is
    computed so; otherwise by the Euclidean distance transform. The same voxels either way."""
    idx = np.argwhere(inside)
    lo, hi = idx.min(0), idx.max(0)
    if int(np.prod(hi - lo + 1)) == len(idx):
        squared = 0.0
        for axis, (n, a, b, s) in enumerate(zip(inside.shape, lo, hi, spacing_mm)):
            x = np.arange(n)
            d = ((x - np.clip(x, a, b)) * float(s)) ** 2
            squared = squared + d.reshape([-1 if i == axis else 1 for i in range(inside.ndim)])
        dist = np.sqrt(squared)
    else:
        from scipy import ndimage as ndi

        dist = ndi.distance_transform_edt(~inside, sampling=spacing_mm)
    return (~inside) & (dist <= shell_mm)


def _select_device(device):
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def refine_region(image: np.ndarray, prior: np.ndarray, allowed: np.ndarray, spacing_mm: Sequence[float],
                  params: CRFParams, device: torch.device | str | None,
                  not_background: np.ndarray | None = None) -> np.ndarray:
    """Refine on the bounding region of ``allowed`` plus a background shell (less
    ``not_background``: other boxes, whose lesions are no background sample)."""
    region, shell = refinement_region(allowed, spacing_mm, params, not_background)
    out = np.zeros(image.shape, np.float32)
    out[region] = refine_crop(image[region], prior[region], allowed[region], shell, spacing_mm, params, device)
    return out


def refinement_region(allowed: np.ndarray, spacing_mm: Sequence[float], params: CRFParams,
                      not_background: np.ndarray | None = None) -> tuple[tuple[slice, ...], np.ndarray]:
    """Where ``refine_region`` works: the bounding region of ``allowed`` padded by the
    background shell and the kernel window, and the shell on it (voxels within
    ``shell_mm`` of ``allowed``, outside it and outside ``not_background``). Computed once,
    it serves every solution on the same ``allowed`` (stage 1's rounds on one box)."""
    pad = [int(np.ceil(params.shell_mm / s)) + params.window_radius_vox for s in spacing_mm]
    region = _crop_around(allowed, pad)
    shell = _shell(allowed[region], spacing_mm, params.shell_mm)
    if not_background is not None:
        shell &= ~not_background[region]
    return region, shell


def refine_crop(image: np.ndarray, prior: np.ndarray, allowed: np.ndarray, shell: np.ndarray, spacing_mm: Sequence[float],
                params: CRFParams, device: torch.device | str | None, kernels: dict | None = None) -> np.ndarray:
    """``refine`` on arrays already cut to a ``refinement_region`` (numpy in, numpy out);
    ``kernels``: a dict kept across the calls on the same arrays (``mean_field``)."""
    dev = _select_device(device)
    to = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)
    with torch.no_grad():
        q = refine(to(image), to(prior), to(allowed, torch.bool), to(shell, torch.bool), spacing_mm, params, kernels)
    return q.cpu().numpy().astype(np.float32, copy=False)


def refine_mask(image: np.ndarray, mask: np.ndarray, allowed: np.ndarray, spacing_mm: tuple[float, float, float],
                params: CRFParams | None = None, confidence: float = 0.8,
                device: torch.device | str | None = None) -> np.ndarray:
    """Stage 2 fusion: ConvCRF of a binary mask (e.g. PM or P1 or ... or PK).

    The mask gives the prior (``confidence`` inside, 1 - ``confidence`` outside);
    voxels outside ``allowed`` (the boxes) stay background.
    """
    params = params or CRFParams()
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, bool)
    allowed = np.asarray(allowed, bool)
    if not (mask & allowed).any():
        return np.zeros(image.shape, np.float32)
    prior = np.where(mask, confidence, 1.0 - confidence).astype(np.float32)
    return refine_region(image, prior, allowed, spacing_mm, params, device)
