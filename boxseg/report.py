"""Tables and figures for the report: metric summary, overlays, loss curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from boxseg.io import read_image, read_label, write_text

SCORES = ["dsc", "hd_mm", "hd95_mm", "asd_mm", "box_dsc"]


def summarise_metrics(metric_paths, out_metrics, out_summary) -> pd.DataFrame:
    """Concatenate per-case metric rows; per method and post-processing, the mean, sd, median and
    count of finite values."""
    table = pd.concat([pd.read_csv(p, sep="\t") for p in metric_paths], ignore_index=True)
    table = table.sort_values(["method", "postprocess", "case"], kind="stable")
    rows = []
    for (method, postprocess), part in table.groupby(["method", "postprocess"], sort=False):
        for name in SCORES:
            values = part[name].astype(float)
            finite = values[np.isfinite(values)]
            rows.append(
                {
                    "method": method,
                    "postprocess": postprocess,
                    "score": name,
                    "mean": finite.mean(),
                    "sd": finite.std(ddof=1) if len(finite) > 1 else np.nan,
                    "median": finite.median(),
                    "n": len(finite),
                    "n_undefined": int(len(values) - len(finite)),
                }
            )
    summary = pd.DataFrame(rows)
    write_text(table.to_csv(sep="\t", index=False, float_format="%.6g"), out_metrics)
    write_text(summary.to_csv(sep="\t", index=False, float_format="%.6g"), out_summary)
    return summary


def _savefig(fig, path):
    import os

    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)


def overlay_figure(case, image_path, label_path, prediction_path, metrics_path, out_png, *, tumor_values, window_hu, postprocess=None):
    """Axial slice through the lesion centre with reference (green) and prediction (red) contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = read_image(image_path, case)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    ref = np.isin(sitk.GetArrayFromImage(read_label(label_path, image, case)), tumor_values)
    pred = sitk.GetArrayFromImage(read_label(prediction_path, image, case)) > 0
    where = np.argwhere(ref if ref.any() else pred)
    z = int(np.round(where[:, 0].mean())) if len(where) else hu.shape[0] // 2
    scores = pd.read_csv(metrics_path, sep="\t")
    if postprocess is not None and "postprocess" in scores:
        scores = scores[scores["postprocess"] == postprocess]
    scores = scores.iloc[0]
    sy, sx = image.GetSpacing()[1], image.GetSpacing()[0]
    fig, ax = plt.subplots(figsize=(5, 5 * hu.shape[1] * sy / (hu.shape[2] * sx)))
    ax.imshow(np.clip(hu[z], *window_hu), cmap="gray", aspect=sy / sx)
    if ref[z].any():
        ax.contour(ref[z], [0.5], colors="lime", linewidths=1.2)
    if pred[z].any():
        ax.contour(pred[z], [0.5], colors="red", linewidths=1.2)
    ax.set_title(f"{case} ({scores.get('method', '')}) slice {z}: DSC {scores['dsc']:.3f} (box {scores['box_dsc']:.3f})", fontsize=9)
    ax.axis("off")
    _savefig(fig, out_png)
    plt.close(fig)


def loss_figure(group_logs, final_logs, out_png):
    """Loss per epoch of every group model and of each method's final model (``{method: path}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, path in enumerate(group_logs):
        t = pd.read_csv(path, sep="\t")
        ax.plot(t["step"], t["loss"], label=f"group model {k} (WCE)", alpha=0.7)
    for i, (method, path) in enumerate(final_logs.items()):
        t = pd.read_csv(path, sep="\t")
        ax.plot(t["step"], t["loss"], label=f"final model: {method}", color=f"C{7 + i}" if i else "black", linewidth=2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean per epoch)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    _savefig(fig, out_png)
    plt.close(fig)
