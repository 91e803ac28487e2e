from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from boxseg.dataset import (
    assign_groups,
    check_sheet,
    kits_sheet,
    read_sheet,
    split_settings,
    synthetic_sheet,
)
from boxseg import layout as L
from boxseg.boxes import box_rows_by_case, read_box_table
from boxseg.device import inference_claims_gpu
from boxseg.io import CASE_ID_PATTERN, check_model_file
from boxseg.methods import GROUP, resolve, rounds, training_settings

validate(config, schema="../schemas/config.schema.yaml")
_window = config["preprocess"]["window_hu"]
if not _window[0] < _window[1]:
    raise ValueError(
        f"preprocess.window_hu {_window}: the lower bound must be below the upper (e.g. [-200, 500]); "
        "otherwise every image would be blank"
    )
if (
    config["final"]["threshold"] == "calibrated"
    and not config.get("model")
    and not config["final_training"].get("validation_cases")
):
    raise ValueError(
        "final.threshold is 'calibrated' but final_training.validation_cases is 0: the threshold is chosen on "
        "held-out training cases, so hold some out (e.g. 5) or set a number (0.5)"
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
        image_name=DATASET.get("image_name", "imaging.nii.gz"),
        label_name=DATASET.get("label_name", "segmentation.nii.gz"),
        **split_settings(DATASET),
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
# the embedded phantom cases the workflow writes (dataset.source synthetic)
SYNTHETIC = [
    c
    for c, i in zip(CASES["case"], CASES["image"])
    if DATASET["source"] == "synthetic" and i == L.PHANTOM_IMAGE.format(case=c)
]
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
# per-case inference jobs claim a GPU only where they can use one (boxseg.device)
INFERENCE_GPU = int(inference_claims_gpu(config["device"]))
TUMOR = DATASET["tumor_values"]
ORGAN = DATASET["organ_values"]
METHODS = config["methods"]
# each configured method's recipe (boxseg.methods: 'weak' as groups.k and final.loss make it)
RECIPE = {
    m: resolve(m, K, config["final"]["loss"], config["final"].get("full_loss", "wce"))
    for m in METHODS
}
FROM_BOXES = any(r.from_boxes for r in RECIPE.values())


wildcard_constraints:
    case=CASE_ID_PATTERN,
    k=r"\d+",
    method="|".join(METHODS),


IMAGE = dict(zip(CASES["case"], CASES["image"]))
LABEL = dict(zip(CASES["case"], CASES["label"]))
BOX_FILE = dict(zip(CASES["case"], CASES["boxes"]))
EVALUATED = [c for c in TEST if LABEL[c]]  # test cases with a reference label
UNLABELLED = [c for c in TEST if not LABEL[c]] + PREDICT
# research-mode test cases (boxes made from the label): also scored with the ROI placed the other way
OTHER_ROI_CASES = [
    c
    for c in EVALUATED
    if not BOX_FILE[c] and c not in BOX_ROWS and config["evaluation"]["other_roi"]
]
_needs_groups = [m for m, r in RECIPE.items() if r.needs_groups]
if K == 0 and _needs_groups:
    raise ValueError(
        f"method(s) {_needs_groups} train on fusion masks and need groups.k > 0"
    )
_needs_labels = [m for m, r in RECIPE.items() if r.needs_labels]
if _needs_labels:
    _no_label = [c for c in TRAIN if not LABEL[c]]
    if _no_label:
        raise ValueError(
            f"method(s) {_needs_labels} use labels, but training case(s) have none: {_no_label[:10]}"
        )


def settings(section):
    """A config section as params, keys sorted: reruns follow values, not key order.
    An optional section a user's config leaves out (``pseudo_mask_crf``) is empty."""
    return dict(sorted((config.get(section) or {}).items()))


def available(path):
    """``path`` as an input if it exists or the workflow makes it (``results/``, the
    synthetic data); a user's file that is missing is no input, so only the job that
    reads it fails (with one line), not the whole run at DAG build."""
    return path if path.startswith(f"{L.RESULTS}/") or Path(path).exists() else []


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
    """final_training settings as the method's recipe completes them (boxseg.methods)."""
    return training_settings(
        RECIPE[wildcards.method], settings("final_training"), config
    )


def model_of(wildcards):
    return MODEL or L.MODEL.format(method=wildcards.method)


def group_cases(k):
    return sorted(c for c, g in GROUP_OF.items() if g == int(k))


def dicom_cases(cases):
    """The cases read from a DICOM series (a directory): their masks also go out as DICOM SEG."""
    return [c for c in cases if Path(IMAGE[c]).is_dir()]


def label_quality_wanted():
    """The training labels' quality table: for the box-supervised methods, when every
    training case has a reference label (research mode)."""
    return not MODEL and FROM_BOXES and all(LABEL[c] for c in TRAIN)


def what_ran():
    """One line for the overview page: the cases, the methods and how boxes were made."""
    boxes = config["boxes"]
    return (
        f"{len(TRAIN)} training and {len(EVALUATED)} labelled test cases ({sheet_name()}); "
        f"methods {', '.join(METHODS)}; K = {K}; research-mode boxes: {boxes['protocol']} protocol, "
        f"margin {boxes['margin_mm']} mm; stated slack {boxes.get('slack_mm') or 0} mm; "
        f"ROIs on the {config['preprocess']['roi_from']}; decision threshold "
        f"{config['final']['threshold']}"
        + (
            " (each model's own, chosen on its held-out training cases)"
            if config["final"]["threshold"] == "calibrated"
            else ""
        )
        + "."
    )


def final_targets():
    targets = [L.CASES]
    if EVALUATED:
        targets += [
            L.METRICS,
            L.SUMMARY,
            L.OVERVIEW,
            L.OVERVIEW_RST,
            expand(L.CASE_OVERLAY, method=METHODS, case=EVALUATED),
        ]
    targets += expand(L.MASK, method=METHODS, case=UNLABELLED)
    targets += expand(
        L.DICOM_SEG, method=METHODS, case=dicom_cases(EVALUATED + UNLABELLED)
    )
    if not MODEL:
        targets.append(L.LOSS_FIGURE)
        if label_quality_wanted():
            targets.append(L.LABEL_QUALITY)
    return targets


def training_inputs(recipe, cases):
    """The files a model of ``recipe`` (boxseg.methods) trains on, keyed by training-set
    column + "s" (images, targets, weights, ...: Snakemake reserves "size"): the cases'
    ROI images, their targets and the other per-case files its loss reads."""
    inputs = {"images": expand(L.ROI_IMAGE, case=cases)}
    for column, name in recipe.inputs.items():
        inputs[f"{column}s"] = expand(L.TRAINING_FILES[name], case=cases)
    return inputs


def final_training_inputs(wildcards):
    """The files the final model of a method trains on (all training cases)."""
    return training_inputs(RECIPE[wildcards.method], TRAIN)
