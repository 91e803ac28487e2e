"""The decision threshold of a final model, chosen on training cases held out of its training.

A model's lesion probability is cut at 0.5 unless told otherwise. A model whose masks are
systematically too large or too small (a volume bias) is better cut elsewhere, and where
is learnt from cases the model did not train on: the ``validation_cases`` held out of the
final training (``training.validation_split``), scored against the targets the method
has for them (labels for ``full``, fusion or pseudo-masks for the weak methods; never a
test case and, for a weak method, never a true lesion). The threshold that gives the best
mean DSC on them, where leaving each case out in turn confirms it (``calibrate``), is
recorded in the model file (``network.save_model``) and used at inference with
``final.threshold: calibrated``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The thresholds tried: 0.05, 0.10, ..., 0.95.
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def threshold_table(probabilities: Sequence[np.ndarray], targets: Sequence[np.ndarray], ignore: int | None = None,
                    thresholds: Sequence[float] = THRESHOLDS) -> list[dict]:
    """For each threshold: the cases' mean DSC and their median predicted / target volume
    (voxels labelled ``ignore`` in a target left out of both)."""
    return _table(*_case_scores(probabilities, targets, ignore, thresholds), thresholds)


def _case_scores(probabilities, targets, ignore, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds x cases) DSC and predicted / target volume (NaN where a target is empty)."""
    from boxseg.metrics import dice

    if not probabilities or len(probabilities) != len(targets):
        raise ValueError("need one target per probability map and at least one of each")
    dsc = np.zeros((len(thresholds), len(probabilities)))
    ratio = np.full((len(thresholds), len(probabilities)), np.nan)  # NaN: an empty target has no volume ratio
    for j, (p, target) in enumerate(zip(probabilities, targets)):
        target = np.asarray(target)
        known = target != ignore if ignore is not None else np.ones(target.shape, bool)
        truth = (target == 1) & known
        for i, t in enumerate(thresholds):
            mask = (np.asarray(p) > t) & known
            dsc[i, j] = dice(mask, truth)
            if truth.any():
                ratio[i, j] = mask.sum() / truth.sum()
    return dsc, ratio


def _table(dsc: np.ndarray, ratio: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    return [{"threshold": float(t), "mean_dsc": float(dsc[i].mean()),
             "volume_ratio": float(np.nanmedian(ratio[i])) if np.isfinite(ratio[i]).any() else float("nan")}
            for i, t in enumerate(thresholds)]


def choose_threshold(table: list[dict]) -> float:
    """The threshold with the best mean DSC in a ``threshold_table``; among equals, the one
    nearest 0.5 (no evidence, no move)."""
    best = max(row["mean_dsc"] for row in table)
    return min((row["threshold"] for row in table if row["mean_dsc"] >= best - 1e-9), key=lambda t: (abs(t - 0.5), t))


def calibrate(probabilities: Sequence[np.ndarray], targets: Sequence[np.ndarray], ignore: int | None = None) -> dict:
    """The calibration record a model carries: the ``threshold`` it is cut at, the number of
    ``cases`` it was chosen on, the mean DSC there at 0.5 and at the threshold, and the
    median volume ratio at each.

    The best threshold on all the cases (``best``) is kept only where the choice survives
    leaving each case out in turn: each case scored at the threshold the others choose
    must beat 0.5 on average (``loo_dsc`` against ``dsc_at_half``; this checks the way of
    choosing, not the one value); otherwise the threshold is 0.5 and ``confirmed`` is
    false. A DSC-best threshold on a few cases can fit their noise. With one case there is
    nothing to leave out: its best threshold is kept (``confirmed`` None).
    """
    dsc, ratio = _case_scores(probabilities, targets, ignore, THRESHOLDS)
    table = _table(dsc, ratio, THRESHOLDS)
    best = choose_threshold(table)
    n, half = len(probabilities), THRESHOLDS.index(0.5)
    record = {"best": best, "cases": n, "dsc_at_half": table[half]["mean_dsc"], "volume_ratio_at_half": table[half]["volume_ratio"],
              "confirmed": None}
    threshold = best
    if n > 1:
        left_out = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            left_out.append(dsc[THRESHOLDS.index(choose_threshold(_table(dsc[:, others], ratio[:, others], THRESHOLDS))), i])
        record["loo_dsc"] = float(np.mean(left_out))
        record["confirmed"] = best == 0.5 or record["loo_dsc"] > record["dsc_at_half"]
        threshold = best if record["confirmed"] else 0.5
    at = table[THRESHOLDS.index(threshold)]
    return {"threshold": threshold, **record, "dsc": at["mean_dsc"], "volume_ratio": at["volume_ratio"]}


def describe(record: dict) -> str:
    """One line on a ``calibrate`` record, for logs and benchmarks."""
    check = {True: "confirmed", False: "not confirmed, 0.5 kept", None: "one case, not checked"}[record["confirmed"]]
    left_out = f"{record['loo_dsc']:.3f} against {record['dsc_at_half']:.3f} at 0.5, " if "loo_dsc" in record else ""
    return (f"threshold {record['threshold']:.2f} on {record['cases']} held-out case(s) (best {record['best']:.2f}, "
            f"leaving each out: {left_out}{check}): DSC {record['dsc']:.3f} ({record['dsc_at_half']:.3f} at 0.5), "
            f"median volume {record['volume_ratio']:.2f}x the target's ({record['volume_ratio_at_half']:.2f}x at 0.5)")


def resolve_threshold(setting: float | str, calibration: dict | None) -> float:
    """The threshold inference uses: ``setting`` when it is a number; with ``calibrated``,
    the model's recorded one.

    Raises:
        ValueError: ``calibrated`` for a model that records none (trained without held-out cases).
    """
    if setting != "calibrated":
        value = float(setting)
        if not 0.0 < value < 1.0:
            raise ValueError(f"final.threshold must lie in (0, 1) or be 'calibrated', got {setting!r}")
        return value
    if not calibration or "threshold" not in calibration:
        raise ValueError("final.threshold is 'calibrated' but the model records no calibrated threshold "
                         "(train it with final_training.validation_cases > 0)")
    return float(calibration["threshold"])
