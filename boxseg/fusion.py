"""Stage 2 equations: fusion union and voxel weight map (docs/method.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def fusion_union(pseudo_mask: np.ndarray, predictions: Iterable[np.ndarray]) -> np.ndarray:
    """PM_m OR P_m1 OR ... OR P_mK (the input of the fusion ConvCRF)."""
    union = np.asarray(pseudo_mask, bool).copy()
    for p in predictions:
        union |= np.asarray(p, bool)
    return union


def weight_map(pseudo_mask: np.ndarray, predictions: Sequence[np.ndarray]) -> np.ndarray:
    """V_m = PM_m + P_m1 + ... + P_mK, with V_m = 0 set to K + 1 (confident background)."""
    k = len(predictions)
    v = np.asarray(pseudo_mask, bool).astype(np.int32)
    for p in predictions:
        v += np.asarray(p, bool)
    v[v == 0] = k + 1
    return v
