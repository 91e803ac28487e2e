"""The run's overview page (``layout.OVERVIEW``): what was achieved, first, in one self-contained
HTML file that the report shows and a browser opens on its own.

It holds the stages and what ran, the test scores as tables (each method with and without
the component filter), the weak / full comparison when both ran, the training labels'
quality, DSC against lesion volume, training and validation curves, pseudo-mask and
fusion-mask overlays of a few training cases and each test case's overlay.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from html import escape
from pathlib import Path

import pandas as pd

from boxseg import layout as L

STAGES = """CT + boxes --preprocess---> ROI, boxes record
stage 1    --pseudo_mask--> pseudo-masks PM                 (ConvCRF from the boxes)
stage 2    --train_group--> K group models                  (one per disjoint subset, WCE on PM)
           --fuse---------> fusion masks FM, weight maps V  (ConvCRF of PM or P1..PK)
stage 3    --train_final--> the final model of each method  (VWCE on FM and V, or the method's recipe)
           --infer--------> masks on each scan's own grid   (largest component)
           --evaluate-----> DSC, HD, HD95, ASD"""

SCORES = ["dsc", "hd95_mm", "asd_mm", "box_dsc"]


def score_table(summary: pd.DataFrame, scores: Sequence[str] = SCORES,
                cell: Callable[[pd.Series], str] = lambda s: f"{s['mean']:.3f} ± {s['sd']:.3f} ({s['median']:.3f})") -> pd.DataFrame:
    """``summary.tsv`` as one row per method, ROI placement and post-processing: each of
    ``scores`` as ``cell`` writes its summary row (default mean +- sd (median))."""
    rows = []
    for (method, roi, post), part in _groups(summary):
        row = {"method": method, "ROI on": roi, "post-processing": post, "test cases": int(part["n"].max())}
        for score in scores:
            s = part[part["score"] == score]
            if len(s):
                row[score] = cell(s.iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def _img(path: str | os.PathLike, width: str = "100%") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img src='data:image/png;base64,{data}' style='max-width:{width}'>"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="", border=0, classes="t")


def _figures(run_dir: Path, methods: Sequence[str], cases: pd.DataFrame) -> list[str]:
    """DSC against volume and the label overlays, drawn now; the rule's own figures embedded."""
    from boxseg.report import dsc_volume_figure, label_overlay_figure

    html = []
    with tempfile.TemporaryDirectory() as tmp:
        metrics_path = L.path(L.METRICS, run_dir)
        if metrics_path.exists():
            metrics = pd.read_csv(metrics_path, sep="\t").assign(dataset="test cases")
            dsc_volume_figure(metrics, Path(tmp) / "volume.png")
            html += ["<h2>DSC against lesion volume</h2>", _img(Path(tmp) / "volume.png", "60%")]
        if L.path(L.LOSS_FIGURE, run_dir).exists():
            html += [("<h2>Training</h2><p>Loss per epoch; with held-out training cases, their DSC beside it "
                     "(a curve still rising at the end: the model is under-trained).</p>"), _img(L.path(L.LOSS_FIGURE, run_dir))]
        train = list(cases.loc[cases["split"] == "train", "case"])[:3]
        labelled = [c for c in train if L.path(L.PSEUDO_MASK, run_dir, case=c).exists() and L.path(L.ROI_LABEL, run_dir, case=c).exists()]
        if labelled:
            label_overlay_figure(run_dir, labelled, Path(tmp) / "labels.png")
            html += ["<h2>Training labels</h2><p>Reference (green), pseudo-mask (red), fusion mask (blue).</p>",
                     _img(Path(tmp) / "labels.png")]
    overlays = [(m, c) for m in methods for c in cases.loc[cases["split"] == "test", "case"]
                if L.path(L.CASE_OVERLAY, run_dir, method=m, case=c).exists()]
    if overlays:
        html.append("<h2>Test cases</h2>")
        html += [f"<h3>{escape(c)}: {escape(m)}</h3>" + _img(L.path(L.CASE_OVERLAY, run_dir, method=m, case=c))
                 for m, c in overlays]
    return html


def overview_rst(run_dir: str | os.PathLike, out_rst: str | os.PathLike, *, what_ran: str) -> None:
    """The report's front page (its workflow description, ``layout.OVERVIEW_RST``): what the
    run achieved as tables (test scores, the comparison with ``full``, the training labels'
    mean quality) in reStructuredText; the figures are on the overview page."""
    from boxseg.atomic import write_text

    run_dir = Path(run_dir)
    figures = ("Figures (DSC against lesion volume, training curves, label and test-case overlays): the "
               "**Overview** category, ``results/overview.html``. The method: ConvCRF pseudo-masks from the "
               "boxes, K group models with fusion masks and voxel weight maps, a final 3D UNet with voxel-wise "
               "weighted cross-entropy, largest-component post-processing.")
    parts = ["**What this run achieved.** " + _rst_text(what_ran), "", figures, ""]
    scores = "Test scores, mean ± sd over the labelled test cases (all scores: the Evaluation category, summary.tsv)"
    quality = "Training labels (Table 3): mean DSC against the reference on the training cases"
    tables = [(L.SUMMARY, scores, _front_scores),
              (L.COMPARISON, "Against the fully supervised model (DSC ratio ± its standard error)", _front_comparison),
              (L.LABEL_QUALITY, quality,
               lambda q: q[q["case"].isin(["mean", "mean_unseen"])].rename(columns=lambda c: c.replace("group_model_", "P")))]
    for path, title, shape in tables:
        path = L.path(path, run_dir)
        if path.exists() and len(frame := pd.read_csv(path, sep="\t")):
            parts += _rst_table(shape(frame) if shape else frame, title)
    write_text("\n".join(parts) + "\n", out_rst)


def _front_scores(summary: pd.DataFrame) -> pd.DataFrame:
    """Per method, ROI placement and post-processing: DSC, HD95 and the box's DSC, mean ± sd."""
    table = score_table(summary, ("dsc", "hd95_mm", "box_dsc"), lambda s: _plus_minus(s["mean"], s["sd"]))
    table["post-processing"] = table["post-processing"].replace({"largest_component": "largest"})
    return table.rename(columns={"post-processing": "filter", "test cases": "n", "dsc": "DSC", "hd95_mm": "HD95 mm",
                                 "box_dsc": "box DSC"})


def _groups(summary: pd.DataFrame) -> Iterator[tuple[tuple[str, str, str], pd.DataFrame]]:
    """``summary.tsv`` by method, ROI placement (a second row's marked) and post-processing."""
    return iter(summary.assign(roi=_roi_labels(summary)).groupby(["method", "roi", "postprocess"], sort=False))


def _roi_labels(frame: pd.DataFrame) -> pd.Series:
    """Where each row's ROIs were placed; "(second row)" after the ROIs placed the other way
    (``scored`` other_roi); tables written before placements were recorded: the organ."""
    roi = frame["roi"] if "roi" in frame else pd.Series("organ", index=frame.index)
    if "scored" in frame:
        roi = roi.where(frame["scored"] != "other_roi", roi + " (second row)")
    return roi


def _front_comparison(comparison: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"method": comparison["method"], "ROI on": _roi_labels(comparison),
                         "filter": comparison["postprocess"].replace({"largest_component": "largest"}), "n": comparison["n"],
                         "DSC": comparison["dsc"], "full": comparison["dsc_full"],
                         "ratio": [_plus_minus(r, e) for r, e in zip(comparison["ratio"], comparison["ratio_se"])]})


def _plus_minus(value: float, error: float) -> str:
    """``value ± error`` to 3 decimals; the value alone where there is no error (one case)."""
    return f"{value:.3f} ± {error:.3f}" if pd.notna(error) else f"{value:.3f}"


def _rst_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("_", "\\_")


def _rst_table(frame: pd.DataFrame, title: str) -> list[str]:
    """A csv-table directive (docutils) of ``frame``, numbers to 3 decimals, empty cells for NaN."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            value = f"{value:.3f}" if pd.notna(value) else ""
        return '"' + str(value).replace('"', '""') + '"'

    lines = [f".. csv-table:: {title}", "   :header-rows: 1", ""]
    lines += ["   " + ", ".join(cell(v) for v in row) for row in [list(frame.columns), *frame.itertuples(index=False)]]
    return lines + [""]


def overview_page(run_dir: str | os.PathLike, out_html: str | os.PathLike, *, methods: Sequence[str], what_ran: str) -> None:
    """Write the overview page of the run in ``run_dir`` (``what_ran``: one line on the data and settings)."""
    from boxseg.atomic import write_text

    run_dir = Path(run_dir)
    cases = pd.read_csv(L.path(L.CASES, run_dir), sep="\t", dtype=str, keep_default_na=False)
    html = [("<html><head><meta charset='utf-8'><title>boxseg: overview</title><style>body{font-family:sans-serif;"
            "max-width:1100px;margin:2em auto}table.t{border-collapse:collapse}table.t td,table.t th{padding:2px 8px;"
            "border-bottom:1px solid #ccc;text-align:right}pre{background:#f4f4f4;padding:8px}</style></head><body>"),
            "<h1>boxseg: what this run achieved</h1>", f"<p>{escape(what_ran)}</p>", f"<pre>{escape(STAGES)}</pre>"]
    summary_path = L.path(L.SUMMARY, run_dir)
    if summary_path.exists():
        html += [("<h2>Test scores</h2><p>Mean ± sd (median) over the labelled test cases; HD95 and ASD in mm; "
                 "<i>box_dsc</i>: the DSC of the box itself. <i>ROI on</i>: where each test case's ROI was placed, on its "
                 "boxes as a user's boxes place it (the largest component kept per box) or on the organ in its label "
                 "(the paper's kidney crop; the largest component overall); the run's own placement first.</p>"), _table(score_table(pd.read_csv(summary_path, sep="\t")))]
    comparison_path = L.path(L.COMPARISON, run_dir)
    if comparison_path.exists() and len(comparison := pd.read_csv(comparison_path, sep="\t")):
        html += [("<h2>Against the fully supervised model</h2><p>Each method's mean test DSC as a fraction of "
                 "<i>full</i>'s on the same cases, with its standard error.</p>"), _table(comparison)]
    quality_path = L.path(L.LABEL_QUALITY, run_dir)
    if quality_path.exists():
        quality = pd.read_csv(quality_path, sep="\t")
        html += [("<h2>Training labels (Table 3)</h2><p>DSC against the reference on the training cases: the box, "
                 "the pseudo-mask, each group model and the fusion mask.</p>"),
                 _table(quality[quality["case"].isin(["mean", "mean_unseen"])])]
    html += _figures(run_dir, methods, cases)
    html.append("</body></html>")
    write_text("\n".join(html) + "\n", out_html)
