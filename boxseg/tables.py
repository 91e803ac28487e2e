"""The paper's tables from experiment runs (METHOD.md): one run directory per
(dataset, margin, seed), each a normal workflow run with several methods.

Table 1: margins x {K=0 WCE, K=3 WCE, K=3 VWCE, K=3 VWCE + largest component}, and fully
supervised with and without the component filter. Table 2: the baselines (SDI,
Constrained-CNN), each with and without the filter, beside ours. Table 3: DSC of boxes,
pseudo-masks and fusion masks on the training cases. Every cell is the mean over seeds
of the per-seed mean over cases, with the sd over seeds (NaN with one seed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


def collect(runs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-case metrics and per-run label quality of finished runs.

    Args:
        runs: iterable of dicts with dataset, margin_mm, seed and path (a run directory).
    """
    metrics, labels = [], []
    for run in runs:
        path = Path(run["path"])
        keys = {k: run[k] for k in ("dataset", "margin_mm", "seed")}
        if (path / "results/metrics.tsv").exists():
            metrics.append(pd.read_csv(path / "results/metrics.tsv", sep="\t").assign(**keys))
        if (path / "results/label_quality.tsv").exists():
            quality = pd.read_csv(path / "results/label_quality.tsv", sep="\t")
            labels.append(quality[~quality["case"].isin(LABEL_SUMMARY_ROWS)].assign(**keys))
    metrics = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame()
    labels = pd.concat(labels, ignore_index=True) if labels else pd.DataFrame()
    return metrics, labels


def _seed_stats(per_seed: pd.DataFrame, keys, columns) -> pd.DataFrame:
    """Mean and sd over seeds of per-seed means."""
    grouped = per_seed.groupby(keys, sort=False)
    out = grouped.size().rename("n_seeds").reset_index()
    for column in columns:
        stats = grouped[column].agg(["mean", lambda v: v.std(ddof=1) if len(v) > 1 else np.nan])
        stats.columns = [f"{column}_mean", f"{column}_sd"]
        out = out.merge(stats.reset_index(), on=keys)
    return out


def score_table(metrics: pd.DataFrame, rows) -> pd.DataFrame:
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


def write_tables(runs, out_dir, reference_margin_mm=None) -> dict:
    """Write table1.tsv, table2.tsv (at ``reference_margin_mm`` when given), table3.tsv and
    metrics_all.tsv under ``out_dir``."""
    from boxseg.io import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, labels = collect(runs)
    table2 = score_table(metrics, TABLE2)
    if reference_margin_mm is not None and not table2.empty:
        table2 = table2[table2["margin_mm"] == float(reference_margin_mm)].reset_index(drop=True)
    tables = {"table1": score_table(metrics, TABLE1), "table2": table2, "table3": label_table(labels)}
    for name, table in tables.items():
        write_text(table.to_csv(sep="\t", index=False, float_format="%.4f"), out_dir / f"{name}.tsv")
    write_text(metrics.to_csv(sep="\t", index=False, float_format="%.6g"), out_dir / "metrics_all.tsv")
    return {**tables, "metrics": metrics, "labels": labels}
