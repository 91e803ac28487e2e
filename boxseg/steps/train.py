"""Training steps: a model's training set (its files and their digests), and training a
group model or a method's final model on it by the method's recipe (``methods``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from boxseg.atomic import write_text
from boxseg.io import read_array, read_json

log = logging.getLogger("boxseg")


def _read_target(path: str) -> np.ndarray:
    """A target file as 0 / 1 / IGNORE (unlabelled, kept as it is)."""
    from boxseg.losses import IGNORE

    t = read_array(path, dtype=np.float32)[0]
    return np.where(t == IGNORE, IGNORE, t > 0.5).astype(np.int64)


# How each training-set column is read: the per-voxel arrays a loss takes (``losses.LOSS_INPUTS``).
_READERS = {
    "weight": lambda path: read_array(path)[0],
    "size": lambda path: read_array(path, dtype=np.uint8)[0] > 0,
    "box_map": lambda path: read_array(path, dtype=np.uint8)[0],
    "pseudo_mask": lambda path: read_array(path, dtype=np.uint8)[0] > 0,
}


def _digest(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_training_set(columns: dict[str, Sequence[str]], out_tsv: str | os.PathLike) -> None:
    """A model's training set: one row per case with its files (``columns``: ``image``,
    ``target`` and the method's other inputs, ``methods.Method.inputs``) and their content digests.

    Training jobs read this one file instead of listing every case file as an input: the
    digests make it change whenever any file's content changes (so training reruns), and
    a job with thousands of inputs stays out of the DAG's hot path (see benchmarks/dag_bench.py).
    """
    import pandas as pd

    table = pd.DataFrame({column: [str(p) for p in paths] for column, paths in columns.items() if paths})
    for column in list(table.columns):
        table[f"{column}_sha256"] = [_digest(p) for p in table[column]]
    write_text(table.to_csv(sep="\t", index=False), out_tsv)


def train_model(training_set: str | os.PathLike, out_model: str | os.PathLike, out_loss: str | os.PathLike, *, method: str,
                settings: dict, threads: int = 1, device: str = "auto", checkpoint: str | os.PathLike | None = None,
                rounds: int = 1) -> None:
    """Training step: the model of ``method`` (a name in ``methods.CATALOGUE``, or ``group``
    for a stage-2 group model) on a training set table, with the method's loss; SDI in
    ``rounds`` recursive rounds."""
    import pandas as pd

    from boxseg.device import configure_torch, select_device
    from boxseg.methods import CATALOGUE, GROUP
    from boxseg.training import TrainSettings, train

    recipe = GROUP if method == GROUP.name else CATALOGUE[method]
    table = pd.read_csv(training_set, sep="\t", dtype=str)
    settings = TrainSettings.from_dict(settings)
    configure_torch(threads, settings.seed)
    dev = select_device(device)
    images = [read_array(p)[0] for p in table["image"]]
    targets = [_read_target(p) for p in table["target"]]
    if recipe.rounds_from:
        from boxseg.baselines import train_sdi

        boxes = [[tuple(b) for b in read_json(p)["boxes"]] for p in table["box"]]
        log.info("%s: %d case(s), %d round(s), 2D, device %s, %d thread(s)", method, len(images), rounds, dev, threads)
        return train_sdi(images, targets, boxes, settings, rounds, out_model, out_loss, dev, checkpoint,
                         preprocessing=_preprocessing(table["image"]))
    extras = {name: [_READERS[name](p) for p in table[name]] for name in recipe.inputs if name not in ("target", "box")}
    log.info("%s: training on %d case(s), loss %s, device %s, %d thread(s)", method, len(images), recipe.loss, dev, threads)
    train(images, targets, settings, out_model, out_loss, loss=recipe.loss, extras=extras, device=dev, checkpoint_path=checkpoint,
          preprocessing=_preprocessing(table["image"]))
    return None


def _preprocessing(roi_images: Sequence[str]) -> dict | None:
    """The preprocessing of the training ROIs (the geometry record beside each, ``layout``):
    spacing and HU window (the first case's: one run's cases share them), which the model
    records so inference can check cases against it, the ROI size asked for, and every
    placement its cases' ROIs had (``placement``: a list; with ``roi_from: organ`` user
    boxes still place theirs), where the records have them."""
    from boxseg import layout

    records = [read_json(g) for g in map(layout.roi_geometry_of, roi_images) if g.exists()]
    if not records:
        return None
    first = records[0]
    out = {"spacing_mm": [float(s) for s in first["roi"]["spacing"][::-1]], "window_hu": [float(v) for v in first["window_hu"]]}
    if "roi_size_mm" in first:
        out["roi_size_mm"] = first["roi_size_mm"]
    if all("placement" in r for r in records):
        out["placement"] = sorted({r["placement"] for r in records})
    return out
