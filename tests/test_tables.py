"""The paper's tables and claims (boxseg.tables) and the comparison with the fully supervised model
(boxseg.report), from per-case results, on hand-made figures."""

import numpy as np
import pandas as pd
import pytest

from boxseg.metrics import ratio_of_means
from boxseg.report import compare_to_full
from boxseg.tables import CLAIMS, TABLE1, claims_table, label_table, score_table


def _metrics(dsc: dict, hd: dict, dataset="d", margin=3.5, seeds=(0,)):
    """Per-case rows: dsc[(method, post)] and hd[(method, post)] are lists over the cases."""
    rows = []
    for seed in seeds:
        for (method, post), values in dsc.items():
            for i, v in enumerate(values):
                rows.append({"dataset": dataset, "margin_mm": margin, "seed": seed, "case": f"c{i}", "method": method,
                             "postprocess": post, "dsc": v + 0.01 * seed, "hd_mm": hd[(method, post)][i], "asd_mm": 1.0})
    return pd.DataFrame(rows)


def _labels(pm, fm, dataset="d", margin=3.5):
    return pd.DataFrame([{"dataset": dataset, "margin_mm": margin, "seed": 0, "case": f"t{i}", "box": 0.4,
                          "pseudo_mask": p, "fusion_mask": f} for i, (p, f) in enumerate(zip(pm, fm))])


def test_score_table_means_over_cases_then_over_seeds():
    dsc = {("weak_pm_wce", "none"): [0.2, 0.4, 0.6]}
    table = score_table(_metrics(dsc, {k: [10.0, 20.0, 30.0] for k in dsc}, seeds=(0, 1)), TABLE1)
    row = table.iloc[0]
    assert row["n_seeds"] == 2 and row["n_cases"] == 3
    assert row["dsc_mean"] == pytest.approx(0.405) and row["dsc_sd"] == pytest.approx(np.std([0.4, 0.41], ddof=1))
    assert row["hd_mean"] == pytest.approx(20.0)


def test_claims_are_judged_per_margin_with_their_figures_and_noise():
    dsc = {
        ("weak_fm_vwce", "none"): [0.50, 0.60, 0.70, 0.80],
        ("weak_fm_wce", "none"): [0.49, 0.58, 0.71, 0.78],  # VWCE ahead by 0.01 in the mean: within the noise
        ("weak_fm_vwce", "largest_component"): [0.52, 0.62, 0.72, 0.82],
        ("full", "none"): [0.60, 0.65, 0.70, 0.75],
        ("full", "largest_component"): [0.60, 0.66, 0.70, 0.76],
        ("sdi", "largest_component"): [0.30, 0.35, 0.40, 0.45],
        ("ccnn", "largest_component"): [0.70, 0.75, 0.80, 0.85],  # ahead of the method on every case
    }
    hd = {k: [20.0, 30.0, 40.0, 50.0] for k in dsc}
    hd[("weak_fm_vwce", "largest_component")] = [10.0, 20.0, 30.0, 40.0]
    hd[("full", "largest_component")] = [20.0, 31.0, 40.0, 50.0]  # the filter raises full's HD
    labels = _labels(pm=[0.8, 0.8, 0.8], fm=[0.7, 0.72, 0.74])
    claims = claims_table(_metrics(dsc, hd), labels, label_table(labels))
    per_margin = claims[claims["margin_mm"] == 3.5].set_index("claim")
    assert set(per_margin.index) == set(CLAIMS)

    fusion = per_margin.loc["fusion_above_pseudo_masks"]
    assert fusion["held"] == "no" and fusion["difference"] == pytest.approx(-0.08) and fusion["beyond_noise"] == "yes"
    assert fusion["se"] == pytest.approx(np.std([-0.1, -0.08, -0.06], ddof=1) / np.sqrt(3))

    vwce = per_margin.loc["vwce_at_least_wce"]
    assert vwce["held"] == "yes" and vwce["difference"] == pytest.approx(0.01) and vwce["beyond_noise"] == "no"

    hd_claim = per_margin.loc["filter_lowers_hd"]  # lower for the method, not for full: not for every model
    assert hd_claim["held"] == "no" and hd_claim["value"] == pytest.approx(25.0) and hd_claim["reference"] == pytest.approx(35.0)
    assert "lower for 1 of 2 models" in hd_claim["detail"]

    baselines = per_margin.loc["beats_baselines"]
    assert baselines["held"] == "no" and baselines["reference"] == pytest.approx(0.775)  # the better baseline
    assert baselines["beyond_noise"] == "yes"  # behind on every case, by 0.105 in the mean (se 0.032)

    ratio = per_margin.loc["weak_within_4pct_of_full"]
    assert ratio["value"] == pytest.approx(0.67 / 0.68) and ratio["held"] == "yes"  # 0.985 >= 0.96

    overall = claims[claims["margin_mm"].isna()].set_index("claim")
    assert overall.loc["vwce_at_least_wce", "detail"] == "at 3.5 mm yes (within noise)"
    assert list(claims["claim"].iloc[:2]) == ["fusion_above_pseudo_masks"] * 2  # the paper's order, overall row first


def test_claims_over_margins_say_how_many_held_and_use_the_one_fully_supervised_run():
    dsc0 = {("weak_fm_vwce", "largest_component"): [0.50, 0.60], ("weak_fm_vwce", "none"): [0.5, 0.6]}
    dsc35 = {**dsc0, ("full", "largest_component"): [0.80, 0.90], ("full", "none"): [0.8, 0.9]}
    dsc7 = {("weak_fm_vwce", "largest_component"): [0.85, 0.85], ("weak_fm_vwce", "none"): [0.85, 0.85]}
    metrics = pd.concat([_metrics(d, {k: [5.0, 6.0] for k in d}, margin=m) for d, m in ((dsc0, 0.0), (dsc35, 3.5), (dsc7, 7.0))])
    claims = claims_table(metrics, pd.DataFrame(), pd.DataFrame())
    ratio = claims[claims["claim"] == "weak_within_4pct_of_full"]
    assert ratio["held"].tolist() == ["1 of 3", "no", "no", "yes"]
    assert ratio["margin_mm"].iloc[1:].tolist() == [0.0, 3.5, 7.0]
    assert "its run at 3.5 mm" in ratio["detail"].iloc[1]  # the 0 mm run has no fully supervised model of its own
    assert ratio["value"].iloc[3] == pytest.approx(0.85 / 0.85)
    assert set(claims["claim"]) == {"weak_within_4pct_of_full", "filter_lowers_hd"}  # nothing else can be judged


def test_ratio_of_means_pairs_the_cases_and_gives_the_delta_method_standard_error():
    a = pd.Series([1.0, 2.0, 3.0, 4.0, 9.0], index=list("pqrsx"))
    b = pd.Series([2.0, 2.0, 4.0, 4.0], index=list("pqrs"))  # x has no partner: left out
    ratio, se, n = ratio_of_means(a, b)
    assert n == 4 and ratio == pytest.approx(10 / 12)
    d = np.array([1, 2, 3, 4]) - ratio * np.array([2, 2, 4, 4])
    assert se == pytest.approx(d.std(ddof=1) / np.sqrt(4) / 3.0)
    assert np.isnan(ratio_of_means(a, b * 0)[0])  # a reference of DSC 0 has no ratio


def test_each_method_is_compared_with_the_fully_supervised_one_on_the_same_cases():
    rows = [{"method": m, "postprocess": p, "case": f"c{i}", "dsc": v}
            for m, p, values in (("full", "none", [0.8, 0.8, 0.6, 0.6]), ("weak", "none", [0.79, 0.79, 0.59, 0.59]),
                                 ("full", "largest_component", [0.8, 0.8, 0.6, 0.6]),
                                 ("weak", "largest_component", [0.4, 0.8, 0.2, 0.6]))
            for i, v in enumerate(values)]
    table = compare_to_full(pd.DataFrame(rows)).set_index("postprocess")
    assert list(table["method"]) == ["weak", "weak"] and (table["n"] == 4).all()
    tight, loose = table.loc["none"], table.loc["largest_component"]
    assert tight["ratio"] == pytest.approx(2.76 / 2.8) and tight["within_4pct"] == "yes" and tight["beyond_noise"] == "yes"
    assert loose["ratio"] == pytest.approx(2.0 / 2.8) and loose["within_4pct"] == "no" and loose["beyond_noise"] == "no"
    assert compare_to_full(pd.DataFrame([r for r in rows if r["method"] != "full"])).empty  # nothing to compare with
    zero = compare_to_full(pd.DataFrame([{**r, "dsc": 0.0} if r["method"] == "full" else r for r in rows]))
    assert zero["ratio"].isna().all() and (zero["within_4pct"].fillna("") == "").all()  # no ratio to a DSC of 0
    assert table["minus_weak"].isna().all()  # weak against itself: nothing


def test_an_ablation_row_carries_its_paired_difference_from_the_papers_method():
    """With ``weak`` in the run, every other method's row gives its mean paired DSC difference
    from it on the cases both have, and that difference's standard error."""
    values = {"full": [0.8, 0.7, 0.6, 0.5], "weak": [0.5, 0.4, 0.3, 0.2], "weak_box_tight": [0.6, 0.4, 0.5, 0.2]}
    rows = [{"method": m, "postprocess": "none", "case": f"c{i}", "dsc": v} for m, vs in values.items() for i, v in enumerate(vs)]
    rows = [r for r in rows if not (r["method"] == "weak" and r["case"] == "c3")]  # weak lacks a case: 3 pairs
    table = compare_to_full(pd.DataFrame(rows)).set_index("method")
    tight = table.loc["weak_box_tight"]
    differences = np.array([0.1, 0.0, 0.2])
    assert tight["minus_weak"] == pytest.approx(differences.mean())
    assert tight["minus_weak_se"] == pytest.approx(differences.std(ddof=1) / np.sqrt(3))
    assert np.isnan(table.loc["weak", "minus_weak"]) and tight["n"] == 4


def test_the_overviews_score_table_has_one_row_per_method_and_post_processing():
    from boxseg.overview import score_table

    summary = pd.DataFrame([
        {"method": m, "postprocess": p, "score": s, "mean": 0.5, "sd": 0.1, "median": 0.4, "n": 3, "n_undefined": 0}
        for m in ("weak", "full") for p in ("largest_component", "none") for s in ("dsc", "hd95_mm", "asd_mm", "box_dsc")])
    table = score_table(summary)
    assert list(zip(table["method"], table["post-processing"])) == [("weak", "largest_component"), ("weak", "none"),
                                                                     ("full", "largest_component"), ("full", "none")]
    assert table.loc[0, "dsc"] == "0.500 ± 0.100 (0.400)" and (table["test cases"] == 3).all()
