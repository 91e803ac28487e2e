"""Segmentation metrics in mm: Dice, Hausdorff (max and 95th percentile), average surface distance.

Surface distances come from MONAI (boundary voxels, Euclidean distance
transform with the voxel spacing). Empty masks, by convention:

* both empty: DSC 1, distances 0;
* exactly one empty: DSC 0, distances NaN (no surface to measure from);
  summaries average the finite values and count the NaNs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SegmentationScores:
    dsc: float
    hd_mm: float
    hd95_mm: float
    asd_mm: float
    volume_pred_ml: float
    volume_ref_ml: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    total = pred.sum() + ref.sum()
    return 1.0 if total == 0 else float(2.0 * (pred & ref).sum() / total)


def surface_distances_mm(
    pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each boundary voxel of ``pred`` to ``ref``'s boundary, and back."""
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    edges_pred, edges_ref = get_mask_edges(
        np.asarray(pred, bool), np.asarray(ref, bool), crop=True
    )[:2]
    spacing = [float(s) for s in spacing_mm]
    pred_to_ref = np.asarray(get_surface_distance(edges_pred, edges_ref, "euclidean", spacing))
    ref_to_pred = np.asarray(get_surface_distance(edges_ref, edges_pred, "euclidean", spacing))
    return pred_to_ref, ref_to_pred


def score(pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float]) -> SegmentationScores:
    """All scores for one binary prediction against one binary reference.

    Args:
        pred, ref: (z, y, x) binary masks on the same grid.
        spacing_mm: (z, y, x) voxel spacing.
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    volumes = (float(pred.sum()) * voxel_ml, float(ref.sum()) * voxel_ml)
    if not pred.any() and not ref.any():
        return SegmentationScores(1.0, 0.0, 0.0, 0.0, *volumes)
    if not pred.any() or not ref.any():
        return SegmentationScores(0.0, np.nan, np.nan, np.nan, *volumes)
    a, b = surface_distances_mm(pred, ref, spacing_mm)
    both = np.concatenate([a, b])
    return SegmentationScores(
        dice(pred, ref),
        float(max(a.max(), b.max())),
        float(max(np.percentile(a, 95), np.percentile(b, 95))),
        float(both.mean()),
        *volumes,
    )


NEAR_FULL = 0.96  # "within 4 % of fully supervised": the weak / full DSC ratio at least this


def beyond_noise(difference: float, se: float) -> str:
    """"yes" when ``difference`` is at least two standard errors from 0, "no" when not, ""
    without a standard error (fewer than two cases)."""
    return "" if not np.isfinite(se) else "yes" if abs(difference) >= 2 * se else "no"


def paired_se(a: pd.Series, b: pd.Series, scale: float = 1.0) -> float:
    """Standard error of the mean of ``a - scale * b`` over the pairs both have (two pandas
    Series on the same index, e.g. (seed, case)); NaN with fewer than two pairs."""
    d = (a - scale * b).dropna()
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan


def ratio_of_means(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """mean(a) / mean(b) over the pairs both have, its standard error (delta method:
    sd(a - R b) / (sqrt(n) mean(b))) and the number of pairs."""
    both = a.to_frame("a").join(b.rename("b"), how="inner").dropna()
    n = len(both)
    if n == 0 or both["b"].mean() <= 0:
        return np.nan, np.nan, n
    ratio = float(both["a"].mean() / both["b"].mean())
    return ratio, paired_se(both["a"], both["b"], ratio) / float(both["b"].mean()), n
