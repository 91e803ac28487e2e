"""The ``results/`` layout of a run, named once.

Every file the workflow writes is a template here, relative to the run directory, with
Snakemake-style wildcards (``{case}``, ``{method}``, ``{k}``). The rules build their inputs
and outputs from these names; the report, the tables, the experiment driver and the
benchmarks find a run's files with ``path``.
"""

from __future__ import annotations

import os
from pathlib import Path

RESULTS = "results"

# The dataset and the preprocessing
PHANTOM_IMAGE = "results/data/{case}/imaging.nii.gz"
PHANTOM_LABEL = "results/data/{case}/segmentation.nii.gz"
CASES = "results/cases.tsv"
BOXES = "results/boxes/{case}.json"
ROI_IMAGE = "results/roi/{case}/image.nii.gz"
ROI_LABEL = "results/roi/{case}/label.nii.gz"
ROI_GEOMETRY = "results/roi/{case}/geometry.json"
ROI_BOX_MAP = "results/roi/{case}/boxes.nii.gz"

# Stage 1 and stage 2
PSEUDO_MASK = "results/pseudomasks/{case}.nii.gz"
GROUP_TRAINING_SET = "results/group/model_{k}/training_set.tsv"
GROUP_MODEL = "results/group/model_{k}/model.pt"
GROUP_LOSS = "results/group/model_{k}/loss.tsv"
GROUP_CHECKPOINT = "results/group/model_{k}/checkpoint.pt"
GROUP_PREDICTION = "results/group/predictions/{case}/model_{k}.nii.gz"
FUSION_MASK = "results/fusion/{case}/fusion.nii.gz"
FUSION_WEIGHT = "results/fusion/{case}/weight.nii.gz"

# Baselines' training labels
SCRIBBLES = "results/baselines/ccnn/{case}.nii.gz"
SDI_LABELS = "results/baselines/sdi/{case}/labels.nii.gz"
SDI_BOXES = "results/baselines/sdi/{case}/boxes.json"

# Stage 3: the final model of each method, and its predictions
TRAINING_SET = "results/models/{method}/training_set.tsv"
MODEL = "results/models/{method}/model.pt"
LOSS = "results/models/{method}/loss.tsv"
CHECKPOINT = "results/models/{method}/checkpoint.pt"
PROBABILITY_ROI = "results/predictions/{method}/{case}/probability_roi.nii.gz"
MASK_RAW = "results/predictions/{method}/{case}/mask_raw.nii.gz"
MASK = "results/predictions/{method}/{case}/mask.nii.gz"
PROBABILITY = "results/predictions/{method}/{case}/probability.nii.gz"
LESIONS = "results/predictions/{method}/{case}/lesions.nii.gz"
LESION_TABLE = "results/predictions/{method}/{case}/lesions.tsv"
BOX_MARKUPS = "results/predictions/{method}/{case}/boxes.mrk.json"
DICOM_SEG = "results/predictions/{method}/{case}/mask.seg.dcm"

# Evaluation and the report
CASE_METRICS = "results/metrics/{method}/{case}.tsv"
CASE_METRICS_OTHER_ROI = "results/metrics_other_roi/{method}/{case}.tsv"  # the ROI placed the other way
CASE_OVERLAY = "results/figures/cases/{method}/{case}.png"
METRICS = "results/metrics.tsv"
METRICS_OTHER_ROI = "results/metrics_other_roi.tsv"
SUMMARY = "results/summary.tsv"
COMPARISON = "results/comparison.tsv"
LABEL_QUALITY = "results/label_quality.tsv"
LOSS_FIGURE = "results/figures/training_loss.png"
REPORT = "results/report.html"
OVERVIEW = "results/overview.html"
OVERVIEW_RST = "results/overview.rst"  # the report's front page once the run is done (Snakefile)
TRAIN_GROUP_BENCHMARK = "results/benchmarks/train_group/{k}.tsv"
TRAIN_FINAL_BENCHMARK = "results/benchmarks/train_final/{method}.tsv"
PSEUDO_MASK_BENCHMARK = "results/benchmarks/pseudo_mask/{case}.tsv"

# The per-case training files a method's final model can read (``methods.Method.inputs``).
TRAINING_FILES = {
    "label": ROI_LABEL,
    "pseudo_mask": PSEUDO_MASK,
    "fusion_mask": FUSION_MASK,
    "fusion_weight": FUSION_WEIGHT,
    "scribbles": SCRIBBLES,
    "sdi_labels": SDI_LABELS,
    "sdi_boxes": SDI_BOXES,
    "box_map": ROI_BOX_MAP,
}


def roi_geometry_of(roi_image: str | os.PathLike) -> Path:
    """The geometry record beside a case's ROI image (``ROI_GEOMETRY`` beside ``ROI_IMAGE``)."""
    return Path(roi_image).with_name(Path(ROI_GEOMETRY).name)


def path(template: str, run_dir: str | os.PathLike = ".", **wildcards: object) -> Path:
    """A file of the run in ``run_dir``: ``template`` with its wildcards filled in.

    Example:
        >>> path(MASK, "runs/kits", method="weak", case="case_00001")
        PosixPath('runs/kits/results/predictions/weak/case_00001/mask.nii.gz')
    """
    return Path(run_dir) / template.format(**wildcards)
