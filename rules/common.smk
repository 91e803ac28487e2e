from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from boxseg.dataset import (
    assign_groups,
    check_sheet,
    kits_sheet,
    read_sheet,
    synthetic_sheet,
)
from boxseg.boxes import box_rows_by_case, read_box_table
from boxseg.io import CASE_ID_PATTERN, check_model_file

validate(config, schema="../schemas/config.schema.yaml")
_window = config["preprocess"]["window_hu"]
if not _window[0] < _window[1]:
    raise ValueError(
        f"preprocess.window_hu {_window}: the lower bound must be below the upper (e.g. [-200, 500]); "
        "otherwise every image would be blank"
    )

DATASET = config["dataset"]
if config.get("dataset_dir"):
    DATASET["dir"] = config["dataset_dir"]
if config.get("sheet"):
    DATASET["sheet"] = config["sheet"]
if config.get("boxes_table"):
    config["boxes"]["table"] = config["boxes_table"]


def build_sheet():
    if DATASET["source"] == "synthetic":
        return synthetic_sheet(DATASET["synthetic_train"], DATASET["synthetic_test"])
    if DATASET["source"] == "sheet":
        if not DATASET.get("sheet"):
            raise ValueError(
                "dataset.source 'sheet' needs dataset.sheet or --config sheet=PATH"
            )
        return read_sheet(DATASET["sheet"])
    if not DATASET.get("dir"):
        raise ValueError(
            "dataset.source 'kits' needs dataset.dir or --config dataset_dir=PATH"
        )
    return kits_sheet(
        DATASET["dir"],
        DATASET.get("test_cases", []),
        DATASET.get("test_fraction", 0.25),
        DATASET.get("split_seed", 0),
        DATASET.get("image_name", "imaging.nii.gz"),
        DATASET.get("label_name", "segmentation.nii.gz"),
    )


def build_cases():
    """The dataset's sheet plus the cases of --config predict_sheet=PATH (split 'predict')."""
    sheet = build_sheet()
    if config.get("predict_sheet"):
        sheet = pd.concat(
            [sheet, read_sheet(config["predict_sheet"], default_split="predict")],
            ignore_index=True,
        )
    return sheet


def sheet_name():
    names = {
        "synthetic": "synthetic sheet",
        "sheet": DATASET.get("sheet"),
        "kits": DATASET.get("dir"),
    }
    name = str(names[DATASET["source"]])
    if config.get("predict_sheet"):
        name += f" + {config['predict_sheet']}"
    return name


BOX_TABLE = (
    read_box_table(config["boxes"]["table"]) if config["boxes"].get("table") else None
)
_SHEET = build_cases()
CASES = check_sheet(
    _SHEET,
    [] if BOX_TABLE is None else sorted(set(BOX_TABLE["case"])),
    sheet_name(),
)
validate(CASES, schema="../schemas/cases.schema.yaml")
if BOX_TABLE is not None:
    _unknown = sorted(set(BOX_TABLE["case"]) - set(CASES["case"]))
    if _unknown:
        raise ValueError(
            f"box table {config['boxes']['table']} names case(s) not in the case sheet: {_unknown[:10]}"
        )
BOX_ROWS = {} if BOX_TABLE is None else box_rows_by_case(BOX_TABLE)
SPLIT = dict(zip(CASES["case"], CASES["split"]))
TRAIN = sorted(c for c, s in SPLIT.items() if s == "train")
TEST = sorted(c for c, s in SPLIT.items() if s == "test")
PREDICT = sorted(c for c, s in SPLIT.items() if s == "predict")
K = config["groups"]["k"]
MODEL = config.get("model")  # a trained final model to use instead of training one
if MODEL:
    check_model_file(MODEL)
# with a trained model, a sheet of cases to predict needs no training cases
GROUP_OF = (
    {} if MODEL and not TRAIN else assign_groups(TRAIN, K, config["groups"]["seed"])
)
TUMOR = DATASET["tumor_values"]
ORGAN = DATASET["organ_values"]
METHODS = config["methods"]


wildcard_constraints:
    case=CASE_ID_PATTERN,
    k=r"\d+",
    method="|".join(METHODS),


IMAGE = dict(zip(CASES["case"], CASES["image"]))
LABEL = dict(zip(CASES["case"], CASES["label"]))
BOX_FILE = dict(zip(CASES["case"], CASES["boxes"]))
EVALUATED = [c for c in TEST if LABEL[c]]  # test cases with a reference label
UNLABELLED = [c for c in TEST if not LABEL[c]] + PREDICT
if K == 0 and {"weak_fm_wce", "weak_fm_vwce"} & set(METHODS):
    raise ValueError("methods weak_fm_wce and weak_fm_vwce need groups.k > 0")
if {"full", "ccnn", "sdi"} & set(METHODS):
    _no_label = [c for c in TRAIN if not LABEL[c]]
    if _no_label:
        raise ValueError(
            f"methods 'full', 'ccnn' and 'sdi' use labels, but training case(s) have none: {_no_label[:10]}"
        )


def settings(section):
    """A config section as params, keys sorted: reruns follow values, not key order.
    An optional section a user's config leaves out (``pseudo_mask_crf``) is empty."""
    return dict(sorted((config.get(section) or {}).items()))


def available(path):
    """``path`` as an input if it exists or the workflow makes it (``results/``, the
    synthetic data); a user's file that is missing is no input, so only the job that
    reads it fails (with one line), not the whole run at DAG build."""
    return path if path.startswith("results/") or Path(path).exists() else []


def image_of(wildcards):
    return available(IMAGE[wildcards.case])


def label_of(wildcards):
    return available(LABEL[wildcards.case])


def case_files(wildcards):
    """A case's image, and its label and box file where the sheet gives them."""
    files = {"image": IMAGE[wildcards.case]}
    if LABEL[wildcards.case]:
        files["label"] = LABEL[wildcards.case]
    if BOX_FILE[wildcards.case]:
        files["box_file"] = BOX_FILE[wildcards.case]
    return files


def case_inputs(wildcards):
    """The case's files that are ``available``; the job reads their paths from its params,
    so a missing one fails it with one line."""
    return {k: v for k, v in case_files(wildcards).items() if available(v)}


def final_settings(wildcards):
    """final_training settings; the Constrained-CNN baseline adds its size loss, SDI is 2D."""
    values = settings("final_training")
    if wildcards.method == "ccnn":
        ccnn = config["baselines"]["ccnn"]
        values.update(
            size_loss_weight=ccnn["size_loss_weight"],
            size_tolerance=ccnn["size_tolerance"],
        )
    if wildcards.method == "sdi":
        values.update(
            spatial_dims=2, patch_size=config["baselines"]["sdi"]["patch_size"]
        )
    return dict(sorted(values.items()))


def model_of(wildcards):
    return MODEL or f"results/models/{wildcards.method}/model.pt"


def group_cases(k):
    return sorted(c for c, g in GROUP_OF.items() if g == int(k))


def final_targets():
    targets = ["results/cases.tsv"]
    if EVALUATED:
        targets += [
            "results/metrics.tsv",
            "results/summary.tsv",
            expand(
                "results/figures/cases/{method}/{case}.png",
                method=METHODS,
                case=EVALUATED,
            ),
        ]
    targets += expand(
        "results/predictions/{method}/{case}/mask.nii.gz",
        method=METHODS,
        case=UNLABELLED,
    )
    if not MODEL:
        targets.append("results/figures/training_loss.png")
        if any(m.startswith("weak") for m in METHODS) and all(LABEL[c] for c in TRAIN):
            targets.append("results/label_quality.tsv")
    return targets


def final_training_inputs(wildcards):
    """The targets (and VWCE weight maps) the final model of a method trains on.

    weak: fusion masks with VWCE or WCE per final.loss (K > 0), pseudo-masks with WCE (K = 0);
    weak_pm_wce: pseudo-masks, WCE (the paper's K = 0); weak_fm_wce: fusion masks, WCE;
    weak_fm_vwce: fusion masks and weight maps, VWCE; full: the true masks, WCE;
    ccnn: Constrained-CNN scribbles (partial CE) with the true lesion volume (size loss);
    sdi: SDI labels from 2D slice boxes, a 2D UNet trained in recursive rounds.
    """
    method = wildcards.method
    inputs = {"images": expand("results/roi/{case}/image.nii.gz", case=TRAIN)}
    if method == "full":
        inputs["targets"] = expand("results/roi/{case}/label.nii.gz", case=TRAIN)
    elif method == "sdi":
        inputs["targets"] = expand(
            "results/baselines/sdi/{case}/labels.nii.gz", case=TRAIN
        )
        inputs["boxes"] = expand("results/baselines/sdi/{case}/boxes.json", case=TRAIN)
    elif method == "ccnn":
        inputs["targets"] = expand("results/baselines/ccnn/{case}.nii.gz", case=TRAIN)
        inputs["sizes"] = expand("results/roi/{case}/label.nii.gz", case=TRAIN)
    elif method == "weak_pm_wce" or (method == "weak" and K == 0):
        inputs["targets"] = expand("results/pseudomasks/{case}.nii.gz", case=TRAIN)
    else:
        inputs["targets"] = expand("results/fusion/{case}/fusion.nii.gz", case=TRAIN)
        if method == "weak_fm_vwce" or (
            method == "weak" and config["final"]["loss"] == "vwce"
        ):
            inputs["weights"] = expand(
                "results/fusion/{case}/weight.nii.gz", case=TRAIN
            )
    return inputs
