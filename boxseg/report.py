"""Tables and figures for the report: metric summary, overlays, loss curves."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import SimpleITK as sitk

from boxseg import layout as L
from boxseg.io import read_image, read_json, read_label, read_lesion, write_text
from boxseg.metrics import NEAR_FULL, beyond_noise, paired_se, ratio_of_means

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SCORES = ["dsc", "hd_mm", "hd95_mm", "asd_mm", "box_dsc"]


def summarise_metrics(
    metric_paths: Iterable[str | os.PathLike],
    out_metrics: str | os.PathLike,
    out_summary: str | os.PathLike,
    out_comparison: str | os.PathLike | None = None,
    *,
    other_roi_paths: Iterable[str | os.PathLike] = (),
    out_other_roi: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Concatenate per-case metric rows (``out_metrics``); per method, ROI placement (``roi``)
    and post-processing, the mean, sd, median and count of finite values; with
    ``out_comparison``, each method against the fully supervised one (``compare_to_full``).

    ``other_roi_paths``: the test cases' second rows (``steps.evaluate.evaluate_other_roi``,
    the ROI placed the other way), concatenated into ``out_other_roi`` and summarised and
    compared after the run's own rows; column ``scored`` says which (``run``, ``other_roi``),
    as a run with user boxes and research-mode cases can hold one placement in both."""
    table = _metric_rows(metric_paths)
    tables = {"run": table}
    if out_other_roi is not None:
        tables["other_roi"] = _metric_rows(other_roi_paths)
        write_text(tables["other_roi"].to_csv(sep="\t", index=False, float_format="%.6g"), out_other_roi)
    write_text(table.to_csv(sep="\t", index=False, float_format="%.6g"), out_metrics)
    summary = pd.concat([_scored(_summary(t), k) for k, t in tables.items() if len(t)], ignore_index=True)
    write_text(summary.to_csv(sep="\t", index=False, float_format="%.6g"), out_summary)
    if out_comparison is not None:
        comparison = pd.concat([_scored(compare_to_full(t), k) for k, t in tables.items() if len(t)], ignore_index=True)
        write_text(comparison.to_csv(sep="\t", index=False, float_format="%.6g"), out_comparison)
    return summary


def _metric_rows(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Per-case metric files as one table sorted by method, ROI placement, post-processing and
    case (files written before the placement was recorded: research mode's, on the organ)."""
    frames = [_with_roi(pd.read_csv(p, sep="\t")) for p in paths]
    frames = [f for f in frames if len(f)]  # a case without a second row: the header only
    if not frames:
        return pd.DataFrame(columns=["case", "method", "roi", "postprocess", *SCORES])
    return pd.concat(frames, ignore_index=True).sort_values(["method", "roi", "postprocess", "case"], kind="stable")


def _summary(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (method, roi, postprocess), part in table.groupby(["method", "roi", "postprocess"], sort=False):
        for name in SCORES:
            values = part[name].astype(float)
            finite = values[np.isfinite(values)]
            rows.append({"method": method, "roi": roi, "postprocess": postprocess, "score": name, "mean": finite.mean(),
                         "sd": finite.std(ddof=1) if len(finite) > 1 else np.nan, "median": finite.median(),
                         "n": len(finite), "n_undefined": int(len(values) - len(finite))})
    return pd.DataFrame(rows, columns=["method", "roi", "postprocess", "score", "mean", "sd", "median", "n", "n_undefined"])


def _scored(frame: pd.DataFrame, scored: str) -> pd.DataFrame:
    frame.insert(2, "scored", scored)
    return frame


def _with_roi(frame: pd.DataFrame) -> pd.DataFrame:
    if "roi" not in frame:
        frame.insert(2, "roi", "organ")
    return frame


COMPARISON_COLUMNS = ["method", "roi", "postprocess", "n", "dsc", "dsc_full", "ratio", "ratio_se", "within_4pct", "beyond_noise",
                      "minus_weak", "minus_weak_se"]


def compare_to_full(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's mean test DSC as a fraction of the fully supervised model's (``full``) on
    the same cases, ROI placement and post-processing, with the ratio's standard error over
    the cases; ``within_4pct``: ratio >= ``NEAR_FULL`` (0.96); ``beyond_noise``: the ratio is at
    least two standard errors from it. ``minus_weak``: the mean paired DSC difference from
    ``weak`` (the configured box-supervised method: the paper's, or ``weak_box`` with
    ``final.loss: box_vwce``) on the cases both have, with its standard error (an ablation's
    rows against their common base); empty for ``weak`` itself or without it. No rows without
    a ``full`` method."""
    table = _with_roi(table.copy())
    rows = []

    def dsc_of(method: str, roi: str, post: str) -> pd.Series:
        part = table[(table["method"] == method) & (table["roi"] == roi) & (table["postprocess"] == post)]
        return part.set_index("case")["dsc"].astype(float)

    for (method, roi, post), part in table.groupby(["method", "roi", "postprocess"], sort=False):
        reference = dsc_of("full", roi, post)
        if method == "full" or reference.empty:
            continue
        mine = part.set_index("case")["dsc"].astype(float)
        ratio, se, n = ratio_of_means(mine, reference)
        if not n:
            continue
        within = "" if not np.isfinite(ratio) else "yes" if ratio >= NEAR_FULL else "no"
        weak = dsc_of("weak", roi, post) if method != "weak" else pd.Series(dtype=float)
        difference = (mine - weak).dropna()
        minus_weak = (float(difference.mean()), paired_se(mine, weak)) if len(difference) else (np.nan, np.nan)
        rows.append([method, roi, post, n, mine.mean(), reference.mean(), ratio, se, within, beyond_noise(ratio - NEAR_FULL, se),
                     *minus_weak])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _savefig(fig: Figure, path: str | os.PathLike) -> None:
    """Write the figure atomically and release it."""
    from boxseg.atomic import atomic_write

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight"))
    finally:
        _plt().close(fig)


def overlay_figure(
    case: str,
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    prediction_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    tumor_values: Sequence[int],
    window_hu: Sequence[float],
    postprocess: str | None = None,
    boxes_path: str | os.PathLike | None = None,
) -> None:
    """Axial, coronal and sagittal slices through the lesion centre with the reference
    (green), the prediction (red) and the case's boxes (yellow, dashed), and a legend."""
    from matplotlib.lines import Line2D

    plt = _plt()
    image = read_image(image_path, case)
    hu = np.clip(sitk.GetArrayFromImage(image).astype(np.float32), *window_hu)
    ref = read_lesion(label_path, image, tumor_values, case)
    pred = sitk.GetArrayFromImage(read_label(prediction_path, image, case)) > 0
    boxes = np.zeros(ref.shape, bool)
    if boxes_path is not None:
        from boxseg.boxes import lesion_id_map

        boxes = lesion_id_map(read_json(boxes_path)["boxes"], image) > 0
    where = np.argwhere(ref if ref.any() else pred)
    z, y, x = (np.round(where.mean(0)).astype(int) if len(where) else np.asarray(ref.shape) // 2).tolist()
    scores = pd.read_csv(metrics_path, sep="\t")
    if postprocess is not None and "postprocess" in scores:
        scores = scores[scores["postprocess"] == postprocess]
    scores = scores.iloc[0]
    sx, sy, sz = image.GetSpacing()
    planes = [("axial", np.s_[z, :, :], sy / sx, "upper"), ("coronal", np.s_[:, y, :], sz / sx, "lower"),
              ("sagittal", np.s_[:, :, x], sz / sy, "lower")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, (name, cut, aspect, origin) in zip(axes, planes):
        ax.imshow(hu[cut], cmap="gray", aspect=aspect, origin=origin)
        for mask, colour, style in ((ref, "lime", "solid"), (pred, "red", "solid"), (boxes, "yellow", "dashed")):
            if mask[cut].any():
                ax.contour(mask[cut], [0.5], colors=colour, linewidths=1.2, linestyles=style, origin=origin)
        ax.set_title(f"{name} through the lesion centre", fontsize=9)
        ax.axis("off")
    handles = [Line2D([], [], color="lime", label="reference"), Line2D([], [], color="red", label="prediction"),
               Line2D([], [], color="yellow", linestyle="--", label="box")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"{case} ({scores.get('method', '')}, {postprocess or 'as written'}): DSC {scores['dsc']:.3f}, "
                 f"HD95 {scores.get('hd95_mm', float('nan')):.1f} mm (the box alone: DSC {scores['box_dsc']:.3f})", fontsize=10)
    _savefig(fig, out_png)


def loss_figure(
    group_logs: Iterable[str | os.PathLike], final_logs: Mapping[str, str | os.PathLike], out_png: str | os.PathLike
) -> None:
    """Loss per epoch of every group model and of each method's final model (``{method: path}``)."""
    curves = [(path, f"group model {k} (WCE)", {"alpha": 0.7}) for k, path in enumerate(group_logs)]
    curves += [(path, f"final model: {method}", {"color": f"C{7 + i}" if i else "black", "linewidth": 2})
               for i, (method, path) in enumerate(final_logs.items())]
    _loss_plot(curves, out_png)


def _loss_plot(curves: Iterable[tuple[str | os.PathLike, str, dict]], out_png: str | os.PathLike) -> None:
    """Loss logs (path, label, plot style) on one log-scale axis; where a log holds the DSC on
    held-out training cases (``val_dsc``), a second panel beside it shows that DSC (solid)
    and the DSC on as many training cases (dashed)."""
    plt = _plt()
    tables = [(pd.read_csv(path, sep="\t"), label, style) for path, label, style in curves]
    validated = [(t.dropna(subset=["val_dsc"]), label, style) for t, label, style in tables if "val_dsc" in t]
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=(12 if validated else 6, 4), squeeze=False)
    ax = axes[0][0]
    for t, label, style in tables:
        ax.plot(t["step"], t["loss"], label=label, **style)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean per epoch)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    if validated:
        dsc = axes[0][1]
        for t, label, style in validated:
            line = dsc.plot(t["step"], t["val_dsc"], marker="o", label=f"{label}: held-out cases", **style)[0]
            dsc.plot(t["step"], t["train_dsc"], linestyle="--", color=line.get_color(), label=f"{label}: training cases")
        dsc.set_xlabel("step")
        dsc.set_ylabel("DSC against the model's own targets")
        dsc.set_ylim(0, 1)
        dsc.legend(fontsize=7)
    _savefig(fig, out_png)


# --- Experiment figures (the paper's Figs 7-13) ---------------------------------------------


def _plt() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dsc_volume_figure(
    metrics: pd.DataFrame, out_png: str | os.PathLike, postprocess: str = "largest_component"
) -> None:
    """Per-case DSC against reference lesion volume, one panel per dataset, one colour per method."""
    plt = _plt()
    data = metrics[metrics["postprocess"] == postprocess]
    datasets = sorted(data["dataset"].unique())
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(6 * max(len(datasets), 1), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = data[data["dataset"] == dataset]
        for i, (method, rows) in enumerate(part.groupby("method")):
            ax.scatter(rows["volume_ref_ml"], rows["dsc"], s=12, alpha=0.7, color=f"C{i}", label=method)
        volumes = part["volume_ref_ml"][part["volume_ref_ml"] > 0]
        if len(volumes) and volumes.max() > 10 * volumes.min():  # log only where volumes span a decade
            ax.set_xscale("log")
        ax.set_xlabel("reference lesion volume (ml)")
        ax.set_ylabel(f"DSC ({postprocess})")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
    _savefig(fig, out_png)


def final_loss_figure(run_dir: str | os.PathLike, methods: Iterable[str], out_png: str | os.PathLike) -> None:
    """Training loss per epoch of each method's final model in one run (paper Fig 13)."""
    paths = [(L.path(L.LOSS, run_dir, method=m), m) for m in methods]
    _loss_plot([(p, m, {"color": f"C{i}"}) for i, (p, m) in enumerate(paths) if p.exists()], out_png)


def _centre_slice(mask: np.ndarray) -> int:
    """The axial slice through the mask's centre (the middle slice when it is empty)."""
    where = np.argwhere(mask)
    return int(np.round(where[:, 0].mean())) if len(where) else mask.shape[0] // 2


def _contour(ax: Axes, mask2d: np.ndarray, colour: str, width: float = 1.0) -> None:
    """The 0.5 contour of a 2D mask, when it has any voxel."""
    if mask2d.any():
        ax.contour(mask2d, [0.5], colors=colour, linewidths=width)


def label_overlay_figure(run_dir: str | os.PathLike, cases: Sequence[str], out_png: str | os.PathLike) -> None:
    """Pseudo-mask (red) and fusion mask (blue) against the reference (green) on training ROIs (Fig 12)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(L.path(L.ROI_IMAGE, run_dir, case=case))))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(L.path(L.ROI_LABEL, run_dir, case=case)))) > 0
        z = _centre_slice(ref)
        ax.imshow(image[z], cmap="gray")
        masks = ((L.path(L.PSEUDO_MASK, run_dir, case=case), "red"), (L.path(L.FUSION_MASK, run_dir, case=case), "dodgerblue"))
        for path, colour in masks:
            if path.exists():
                _contour(ax, sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[z], colour)
        _contour(ax, ref[z], "lime")
        ax.set_title(f"{case}: reference green, PM red, FM blue", fontsize=8)
        ax.axis("off")
    _savefig(fig, out_png)


def variant_overlay_figure(
    run_dir: str | os.PathLike,
    case: str,
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    methods: Sequence[str],
    out_png: str | os.PathLike,
    *,
    tumor_values: Sequence[int],
    window_hu: Sequence[float],
    postprocess: str = "largest_component",
) -> None:
    """One test case, the mask of each method (red) against the reference (green) (Figs 7, 9)."""
    from boxseg.postprocess import postprocess_mask

    plt = _plt()
    image = read_image(image_path, case)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    ref = read_lesion(label_path, image, tumor_values, case)
    z = _centre_slice(ref)
    metrics_path = L.path(L.METRICS, run_dir)
    metrics = pd.read_csv(metrics_path, sep="\t") if metrics_path.exists() else pd.DataFrame()
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 4), squeeze=False)
    boxes = read_json(L.path(L.BOXES, run_dir, case=case))
    for ax, method in zip(axes[0], methods):
        path = L.path(L.MASK_RAW, run_dir, method=method, case=case)
        ax.imshow(np.clip(hu[z], *window_hu), cmap="gray")
        _contour(ax, ref[z], "lime")
        title = method
        if path.exists():  # the post-processing the scores used (mask.nii.gz has the configured one)
            raw = sitk.GetArrayFromImage(read_label(path, image, case)) > 0
            _contour(ax, postprocess_mask(raw, boxes, image, postprocess)[z], "red")
            row = metrics[(metrics.get("case") == case) & (metrics.get("method") == method) & (metrics.get("postprocess") == postprocess)] if not metrics.empty else metrics
            if len(row):
                title += f": DSC {row['dsc'].iloc[0]:.3f}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    _savefig(fig, out_png)
