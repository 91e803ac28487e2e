"""The paper's tables from experiment runs (docs/method.md): one run directory per
(dataset, margin, seed), each a normal workflow run with several methods.

Table 1: margins x {K=0 WCE, K=3 WCE, K=3 VWCE, K=3 VWCE + largest component}, and fully
supervised with and without the component filter. Table 2: the baselines (SDI,
Constrained-CNN), each with and without the filter, beside ours. Table 3: DSC of boxes,
pseudo-masks and fusion masks on the training cases. Every cell is the mean over seeds
of the per-seed mean over cases, with the sd over seeds (NaN with one seed). Claims: the
paper's five claims checked against these means, per dataset and margin.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from boxseg import layout as L
from boxseg.metrics import NEAR_FULL, beyond_noise, paired_se, ratio_of_means

TABLE1 = [
    ("weak_pm_wce", "none", "K=0 (pseudo-masks only), WCE"),
    ("weak_fm_wce", "none", "K=3, WCE"),
    ("weak_fm_vwce", "none", "K=3, VWCE"),
    ("weak_fm_vwce", "largest_component", "K=3, VWCE + largest component"),
    ("full", "none", "fully supervised 3D UNet"),
    ("full", "largest_component", "fully supervised + largest component"),
]
TABLE2 = [
    ("ccnn", "none", "Constrained-CNN"),
    ("ccnn", "largest_component", "Constrained-CNN + largest component"),
    ("sdi", "none", "SDI"),
    ("sdi", "largest_component", "SDI + largest component"),
    ("weak_fm_vwce", "largest_component", "ours: K=3, VWCE + largest component"),
]
SCORES = {"dsc": "dsc", "hd_mm": "hd", "asd_mm": "asd"}
LABELS = {"box": "boxes", "pseudo_mask": "pseudo_masks", "fusion_mask": "fusion_masks"}
LABEL_SUMMARY_ROWS = ("mean", "mean_unseen")  # label_quality.tsv's rows after the cases


def collect(runs: Iterable[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-case metrics and per-run label quality of finished runs.

    Args:
        runs: iterable of dicts with dataset, margin_mm, seed and path (a run directory).
    """
    metrics, labels = [], []
    for run in runs:
        path = Path(run["path"])
        keys = {k: run[k] for k in ("dataset", "margin_mm", "seed")}
        if L.path(L.METRICS, path).exists():
            metrics.append(pd.read_csv(L.path(L.METRICS, path), sep="\t").assign(**keys))
        if L.path(L.LABEL_QUALITY, path).exists():
            quality = pd.read_csv(L.path(L.LABEL_QUALITY, path), sep="\t")
            labels.append(quality[~quality["case"].isin(LABEL_SUMMARY_ROWS)].assign(**keys))
    metrics = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame()
    labels = pd.concat(labels, ignore_index=True) if labels else pd.DataFrame()
    return metrics, labels


def _seed_stats(per_seed: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean and sd over seeds of per-seed means."""
    grouped = per_seed.groupby(keys, sort=False)
    out = grouped.size().rename("n_seeds").reset_index()
    for column in columns:
        stats = grouped[column].agg(["mean", lambda v: v.std(ddof=1) if len(v) > 1 else np.nan])
        stats.columns = [f"{column}_mean", f"{column}_sd"]
        out = out.merge(stats.reset_index(), on=keys)
    return out


def score_table(metrics: pd.DataFrame, rows: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """DSC, HD and ASD (mm) per dataset, margin and setting: mean +- sd over seeds."""
    if metrics.empty:
        return pd.DataFrame()
    parts = []
    for method, post, setting in rows:
        part = metrics[(metrics["method"] == method) & (metrics["postprocess"] == post)]
        if part.empty:
            continue
        per_seed = part.groupby(["dataset", "margin_mm", "seed"]).agg(
            n_cases=("case", "nunique"), **{v: (k, lambda x: np.nanmean(x.astype(float))) for k, v in SCORES.items()}
        ).reset_index()
        stats = _seed_stats(per_seed, ["dataset", "margin_mm"], list(SCORES.values()))
        stats = stats.merge(per_seed.groupby(["dataset", "margin_mm"])["n_cases"].max().reset_index(), on=["dataset", "margin_mm"])
        parts.append(stats.assign(setting=setting, method=method, postprocess=post))
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    order = {s: i for i, (_, _, s) in enumerate(rows)}
    table = table.sort_values(["dataset", "margin_mm", "setting"], key=lambda c: c.map(order) if c.name == "setting" else c)
    first = ["dataset", "margin_mm", "setting", "method", "postprocess", "n_seeds", "n_cases"]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def label_table(labels: pd.DataFrame) -> pd.DataFrame:
    """Table 3: DSC of boxes, pseudo-masks and fusion masks on the training cases."""
    if labels.empty:
        return pd.DataFrame()
    columns = [c for c in LABELS if c in labels]
    per_seed = labels.groupby(["dataset", "margin_mm", "seed"])[columns].mean().reset_index()
    per_seed = per_seed.rename(columns=LABELS)
    table = _seed_stats(per_seed, ["dataset", "margin_mm"], [LABELS[c] for c in columns])
    n = labels.groupby(["dataset", "margin_mm", "seed"])["case"].nunique().groupby(["dataset", "margin_mm"]).max()
    return table.merge(n.rename("n_cases").reset_index(), on=["dataset", "margin_mm"]).sort_values(["dataset", "margin_mm"]).reset_index(drop=True)


CLAIMS = {
    "fusion_above_pseudo_masks": "group training lifts the training labels above the pseudo-masks (DSC of fusion masks > pseudo-masks)",
    "vwce_at_least_wce": "VWCE >= WCE (K=3 final models, test DSC, no filter)",
    "filter_lowers_hd": "the largest-component filter lowers HD, for every model",
    "beats_baselines": "the method (K=3, VWCE + filter) beats SDI and Constrained-CNN (each + filter), test DSC",
    "weak_within_4pct_of_full": "the method (K=3, VWCE + filter) within 4 % of fully supervised (+ filter), test DSC (the paper: at 0 and 3.5 mm)",
}
OURS = ("weak_fm_vwce", "largest_component")


def _per_case(frame: pd.DataFrame, column: str, **where: Any) -> pd.Series:
    """One score per (seed, case) of the rows matching ``where``."""
    part = frame
    for key, value in where.items():
        part = part[part[key] == value]
    return part.set_index(["seed", "case"])[column].astype(float)


_CLAIM_COLUMNS = [
    "dataset",
    "claim",
    "margin_mm",
    "held",
    "value",
    "reference",
    "difference",
    "se",
    "beyond_noise",
    "detail",
]


def _claim_row(
    dataset: str, claim: str, margin: float, held: bool, value: float, reference: float, se: float, detail: str
) -> list:
    """One row of the claims table: the claim at one margin, with its difference and noise."""
    difference = value - reference
    return [
        dataset,
        claim,
        margin,
        "yes" if held else "no",
        value,
        reference,
        difference,
        se,
        beyond_noise(difference, se),
        detail,
    ]


def _fusion_claims(labels: pd.DataFrame, table3: pd.DataFrame) -> list[list]:
    """Fusion masks above pseudo-masks (training cases), per dataset and margin of table 3."""
    rows = []
    for r in table3.itertuples() if {"pseudo_masks_mean", "fusion_masks_mean"} <= set(table3.columns) else []:
        if np.isfinite(r.fusion_masks_mean) and np.isfinite(r.pseudo_masks_mean):
            where = {"frame": labels, "dataset": r.dataset, "margin_mm": r.margin_mm}
            se = paired_se(_per_case(column="fusion_mask", **where), _per_case(column="pseudo_mask", **where))
            rows.append(
                _claim_row(
                    r.dataset,
                    "fusion_above_pseudo_masks",
                    r.margin_mm,
                    r.fusion_masks_mean > r.pseudo_masks_mean,
                    r.fusion_masks_mean,
                    r.pseudo_masks_mean,
                    se,
                    "fusion masks vs pseudo-masks, training cases",
                )
            )
    return rows


@dataclass
class _Margin:
    """One dataset at one margin: its score-table rows (``score``: every run's, keyed by
    dataset, margin, method and post-processing) and its per-case scores."""

    metrics: pd.DataFrame
    score: dict[tuple, Any]
    dataset: str
    margin: float

    def get(self, method: str, post: str) -> Any:
        """The score-table row of ``method`` with ``post``, or None."""
        return self.score.get((self.dataset, self.margin, method, post))

    def cases(self, method: str, post: str, column: str = "dsc") -> pd.Series:
        """Per (seed, case) scores of ``method`` with ``post``."""
        return _per_case(
            self.metrics, column, dataset=self.dataset, margin_mm=self.margin, method=method, postprocess=post
        )


def _vwce_claim(at: _Margin) -> list[list]:
    """VWCE at least WCE (K=3 final models, test DSC, no filter)."""
    vwce, wce = at.get("weak_fm_vwce", "none"), at.get("weak_fm_wce", "none")
    if vwce is None or wce is None:
        return []
    return [
        _claim_row(
            at.dataset,
            "vwce_at_least_wce",
            at.margin,
            vwce.dsc_mean >= wce.dsc_mean,
            vwce.dsc_mean,
            wce.dsc_mean,
            paired_se(at.cases("weak_fm_vwce", "none"), at.cases("weak_fm_wce", "none")),
            "K=3 VWCE vs K=3 WCE",
        )
    ]


def _filter_hd_claim(at: _Margin, pairs: list[tuple[str, str]]) -> list[list]:
    """The largest-component filter lowers HD, for every model run with and without it."""
    get = at.get
    hd = [
        (m, get(m, "none").hd_mean, get(m, "largest_component").hd_mean)
        for m, p in pairs
        if p == "none" and get(m, "none") is not None and get(m, "largest_component") is not None
    ]
    hd = [(m, a, b) for m, a, b in hd if np.isfinite(a) and np.isfinite(b)]
    if not hd:
        return []
    first = next((h for h in hd if h[0] == OURS[0]), hd[0])
    lower = sum(b < a for _, a, b in hd)
    se = paired_se(at.cases(first[0], "largest_component", "hd_mm"), at.cases(first[0], "none", "hd_mm"))
    return [
        _claim_row(
            at.dataset,
            "filter_lowers_hd",
            at.margin,
            lower == len(hd),
            first[2],
            first[1],
            se,
            f"lower for {lower} of {len(hd)} models (value: {first[0]}); "
            + ", ".join(f"{m} {a:.1f} -> {b:.1f} mm" for m, a, b in hd),
        )
    ]


def _baselines_claim(at: _Margin) -> list[list]:
    """The method (+ filter) beats SDI and Constrained-CNN (each + filter), test DSC."""
    ours = at.get(*OURS)
    baselines = [
        (m, at.get(m, "largest_component")) for m in ("sdi", "ccnn") if at.get(m, "largest_component") is not None
    ]
    if ours is None or not baselines:
        return []
    best, best_row = max(baselines, key=lambda b: b[1].dsc_mean)
    return [
        _claim_row(
            at.dataset,
            "beats_baselines",
            at.margin,
            all(ours.dsc_mean > b.dsc_mean for _, b in baselines),
            ours.dsc_mean,
            best_row.dsc_mean,
            paired_se(at.cases(*OURS), at.cases(best, "largest_component")),
            "the method vs " + ", ".join(f"{m} {b.dsc_mean:.3f}" for m, b in baselines),
        )
    ]


def _near_full_claim(at: _Margin) -> list[list]:
    """The method (+ filter) within 4 % of fully supervised (+ filter), test DSC."""
    ours = at.get(*OURS)
    full, margin = at.get("full", "largest_component"), at.margin
    if full is None:  # fully supervised training does not use the boxes: the dataset's run of it, at any margin
        others = sorted(
            (m, r)
            for (d, m, me, p), r in at.score.items()
            if d == at.dataset and (me, p) == ("full", "largest_component")
        )
        full, margin = (others[0][1], others[0][0]) if others else (None, None)
    if ours is None or full is None or not (full.dsc_mean > 0):
        return []
    full_cases = _per_case(
        at.metrics, "dsc", dataset=at.dataset, margin_mm=margin, method="full", postprocess="largest_component"
    )
    ratio = ours.dsc_mean / full.dsc_mean
    return [
        _claim_row(
            at.dataset,
            "weak_within_4pct_of_full",
            at.margin,
            ratio >= NEAR_FULL,
            ratio,
            NEAR_FULL,
            ratio_of_means(at.cases(*OURS), full_cases)[1],
            f"the method {ours.dsc_mean:.3f} / fully supervised {full.dsc_mean:.3f} (its run at {margin:g} mm)",
        )
    ]


def _with_overall_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table with one row per dataset and claim over the margins, sorted."""
    overall = []
    for (dataset, claim), part in table.groupby(["dataset", "claim"], sort=False):
        held = int((part["held"] == "yes").sum())
        verdict = "yes" if held == len(part) else "no" if held == 0 else f"{held} of {len(part)}"
        at = [
            f"{m:g} mm {h}" + (" (within noise)" if n == "no" else "")
            for m, h, n in zip(part["margin_mm"], part["held"], part["beyond_noise"])
        ]
        overall.append([dataset, claim, np.nan, verdict, np.nan, np.nan, np.nan, np.nan, "", "at " + ", ".join(at)])
    table = pd.concat([pd.DataFrame(overall, columns=_CLAIM_COLUMNS), table], ignore_index=True) if overall else table
    order = {c: i for i, c in enumerate(CLAIMS)}
    return table.sort_values(
        ["dataset", "claim", "margin_mm"], key=lambda c: c.map(order) if c.name == "claim" else c, na_position="first"
    ).reset_index(drop=True)


def claims_table(metrics: pd.DataFrame, labels: pd.DataFrame, table3: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims on these runs: one row per dataset, claim and margin (held: yes / no), after
    one row per dataset and claim over the margins (margin_mm empty; held: yes, no or "k of n").

    ``value`` is the figure the claim is about and ``reference`` what it is compared with (means
    over seeds, as in the tables), ``difference`` value - reference, and ``se`` the standard
    error of that difference over the cases (paired: the same cases and seeds on both sides).
    ``beyond_noise`` says whether the difference is at least twice its standard error: with a
    few test cases, a claim that holds or fails within the noise is not settled either way.
    """
    pairs = (
        []
        if metrics.empty
        else list(metrics[["method", "postprocess"]].drop_duplicates().itertuples(index=False, name=None))
    )
    scores = score_table(metrics, [(m, p, f"{m} {p}") for m, p in pairs]) if pairs else pd.DataFrame()
    score = {} if scores.empty else {(r.dataset, r.margin_mm, r.method, r.postprocess): r for r in scores.itertuples()}
    rows = _fusion_claims(labels, table3)
    for dataset, margin in sorted({(d, m) for d, m, *_ in score}):
        at = _Margin(metrics, score, dataset, margin)
        rows += _vwce_claim(at) + _filter_hd_claim(at, pairs) + _baselines_claim(at) + _near_full_claim(at)
    return _with_overall_rows(pd.DataFrame(rows, columns=_CLAIM_COLUMNS))


def write_tables(runs: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike,
                 reference_margin_mm: float | None = None) -> dict[str, pd.DataFrame]:
    """Write table1.tsv, table2.tsv (at ``reference_margin_mm`` when given), table3.tsv,
    claims.tsv and metrics_all.tsv under ``out_dir``."""
    from boxseg.io import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, labels = collect(runs)
    table2 = score_table(metrics, TABLE2)
    if reference_margin_mm is not None and not table2.empty:
        table2 = table2[table2["margin_mm"] == float(reference_margin_mm)].reset_index(drop=True)
    tables = {"table1": score_table(metrics, TABLE1), "table2": table2, "table3": label_table(labels)}
    tables["claims"] = claims_table(metrics, labels, tables["table3"])
    for name, table in tables.items():
        write_text(table.to_csv(sep="\t", index=False, float_format="%.4f"), out_dir / f"{name}.tsv")
    write_text(metrics.to_csv(sep="\t", index=False, float_format="%.6g"), out_dir / "metrics_all.tsv")
    return {**tables, "metrics": metrics, "labels": labels}
