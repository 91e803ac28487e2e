"""What the benchmark scripts share (``benchmarks/``): the stage-1 benchmark's cases and
their prepared ROIs (boxes drawn as research mode draws them), saving and loading those
ROIs, parameter grids, config merging and printing a result table.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

if TYPE_CHECKING:
    from boxseg.boxes.grid import Bounds


def stage1_settings(config: dict) -> dict:
    """The workflow's stage-1 ConvCRF settings: ``crf`` with ``pseudo_mask_crf`` over it."""
    return {**config["crf"], **(config.get("pseudo_mask_crf") or {})}


def true_face_slack(drawn: Sequence[Bounds], tight: Sequence[Bounds],
                    spacing_mm: Sequence[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each face's true slack (per box a (lower, upper) pair of per-axis mm): how far the
    drawn box's faces lie outside the lesion's tight box, both as continuous voxel-edge
    bounds on the ROI grid. Benchmark only (the ``convcrf_oracle`` row): measured from
    the label, it is what no user has."""
    spacing = np.asarray(spacing_mm, float)
    return [(np.maximum(t_lo - lo, 0) * spacing, np.maximum(hi - t_hi, 0) * spacing)
            for (lo, hi), (t_lo, t_hi) in zip(drawn, tight, strict=True)]


def find_cases(kits_dir: str | os.PathLike | None,
               ibsi_dir: str | os.PathLike | None) -> list[tuple[str, str, Path, Path, tuple[int, ...]]]:
    cases = []
    if kits_dir:
        for d in sorted(Path(kits_dir).glob("case_*")):
            if (d / "imaging.nii.gz").exists():
                cases.append(("kits19", d.name, d / "imaging.nii.gz", d / "segmentation.nii.gz", (2,)))
    if ibsi_dir:
        for d in sorted(Path(ibsi_dir).glob("STS_*")):
            if (d / "CT_image.nii.gz").exists():
                cases.append(("ibsi", d.name, d / "CT_image.nii.gz", d / "CT_mask.nii.gz", (1,)))
    return cases


def prepare(
    case: str,
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    tumor: Sequence[int],
    margin_mm: float,
    prep: dict,
    protocol: str = "paper",
    box_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[Bounds], tuple[float, ...], np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """One case's ROI at one margin: (image, reference mask, box bounds, spacing, inside
    mask, each box's true face slack). The boxes are drawn as the workflow draws them in
    research mode; the tight boxes only measure the oracle's slack."""
    import SimpleITK as sitk

    from boxseg.boxes import bounds_mask, bounds_on_grid, bounds_on_roi, make_boxes
    from boxseg.preprocess import crop_roi, load_case

    image, label = load_case(case, image_path, label_path)
    boxes = make_boxes(case, image, label, label_path, margin_mm, tumor, protocol, box_seed)
    tight = make_boxes(case, image, label, label_path, 0.0, tumor)
    # ROI: the lesion boxes plus 24 mm on each side, at the workflow's spacing (the CRF only needs the boxes' surroundings).
    lo = np.min([b["index_lo"] for b in boxes], 0)
    hi = np.max([b["index_hi"] for b in boxes], 0)
    extent_mm = (hi - lo + 1) * np.asarray(image.GetSpacing()[::-1]) + 48.0
    roi, roi_label, _ = crop_roi(case, image, label, boxes, spacing_mm=prep["spacing_mm"], roi_size_mm=extent_mm,
                                 window_hu=prep["window_hu"], tumor_values=tumor, organ_values=())
    kept = bounds_on_roi(boxes, image, roi)
    tight_on_roi = dict(zip([id(b) for b in boxes], bounds_on_grid(tight, image, roi)))
    bounds = [b for b, _ in kept]
    spacing = tuple(float(s) for s in roi.GetSpacing()[::-1])
    oracle = true_face_slack(bounds, [tight_on_roi[id(r)] for _, r in kept], spacing)
    image = sitk.GetArrayFromImage(roi).astype(np.float32)
    return image, sitk.GetArrayFromImage(roi_label) > 0, bounds, spacing, bounds_mask(bounds, image.shape), oracle


def prepared_rois(cases: Iterable[tuple[str, str, str | os.PathLike, str | os.PathLike, Sequence[int]]],
                  margins: Sequence[float], prep: dict, protocol: str = "paper", box_seed: int = 0) -> Iterator[tuple]:
    """(dataset, case, margin, image, ref, bounds, spacing, inside, oracle) for every case and
    margin; ``oracle``: each box's true face slack (``true_face_slack``)."""
    for dataset, case, image_path, label_path, tumor in cases:
        for margin in margins:
            yield (dataset, case, margin, *prepare(case, image_path, label_path, tumor, margin, prep, protocol, box_seed))


def save_rois(path: str | os.PathLike, rois: Iterable[tuple], reach_vox: int, protocol: str = "paper",
              box_seed: int = 0) -> int:
    """One .npz for a machine without SimpleITK. To keep it small the image is stored as
    float16 and only on the boxes' bounding region plus ``reach_vox`` voxels (the ConvCRF
    reads nothing beyond its shell and window, so its result is unchanged); the rest of the
    ROI reads back as zeros, which DenseCRF then sees (its timing, not its DSC, is comparable)."""
    arrays, meta = {}, []
    for i, (dataset, case, margin, image, ref, bounds, spacing, inside, oracle) in enumerate(rois):
        idx = np.argwhere(inside)
        lo = np.maximum(idx.min(0) - reach_vox, 0)
        hi = np.minimum(idx.max(0) + reach_vox + 1, image.shape)
        arrays[f"image{i}"] = image[tuple(slice(a, b) for a, b in zip(lo, hi))].astype(np.float16)
        arrays[f"ref{i}"], arrays[f"inside{i}"] = np.packbits(ref), np.packbits(inside)
        meta.append({"dataset": dataset, "case": case, "margin": margin, "protocol": protocol, "box_seed": box_seed,
                     "spacing": list(spacing),
                     "shape": list(image.shape), "offset": lo.tolist(),
                     "bounds": [[list(map(float, lo)), list(map(float, hi))] for lo, hi in bounds],
                     "oracle": [[list(map(float, f)) for f in d] for d in oracle]})
    np.savez_compressed(path, meta=np.array(yaml.safe_dump(meta)), **arrays)
    return len(meta)


def load_rois(path: str | os.PathLike, margins: Sequence[float], protocol: str | None = None) -> Iterator[tuple]:
    """The ROIs ``save_rois`` wrote, at ``margins``; with ``protocol``, an error unless they
    were drawn by it."""
    data = np.load(path)
    for i, m in enumerate(yaml.safe_load(str(data["meta"]))):
        if m["margin"] not in margins:
            continue
        if protocol and m.get("protocol") != protocol:
            raise SystemExit(f"{path}: ROIs drawn by the {m.get('protocol')!r} protocol, not {protocol!r}: save them again with --protocol {protocol}")
        shape, n = tuple(m["shape"]), int(np.prod(m["shape"]))
        crop = data[f"image{i}"].astype(np.float32)
        image = np.zeros(shape, np.float32)
        image[tuple(slice(o, o + c) for o, c in zip(m["offset"], crop.shape))] = crop
        ref, inside = (np.unpackbits(data[f"{k}{i}"], count=n).reshape(shape).astype(bool) for k in ("ref", "inside"))
        bounds = [(np.asarray(lo), np.asarray(hi)) for lo, hi in m["bounds"]]
        if "oracle" not in m:
            raise SystemExit(f"{path}: ROIs saved before 2026-12-06 (no true face slack); save them again with --save-rois")
        oracle = [tuple(np.asarray(f) for f in d) for d in m["oracle"]]
        yield m["dataset"], m["case"], m["margin"], image, ref, bounds, tuple(m["spacing"]), inside, oracle


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """KEY=V1,V2 -> {KEY: [V1, V2]} with YAML-typed values."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid {item!r}: expected KEY=V1,V2")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def report(table: pd.DataFrame, out: str | os.PathLike | None = None) -> None:
    """Write the table as TSV to ``out`` (if given) and print it."""
    if out:
        table.to_csv(out, sep="\t", index=False, float_format="%.4f")
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def merged(paths: Iterable[str | os.PathLike]) -> dict:
    """Config files layered as Snakemake layers --configfile (the experiment driver's merge)."""
    import functools

    import yaml

    from boxseg.experiments import merge_config

    return functools.reduce(merge_config, (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {} for path in paths), {})
