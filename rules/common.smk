import pandas as pd
from snakemake.utils import validate

from boxseg.dataset import (
    assign_groups,
    check_sheet,
    kits_sheet,
    read_sheet,
    synthetic_sheet,
)
from boxseg.io import CASE_ID_PATTERN

validate(config, schema="../schemas/config.schema.yaml")

DATASET = config["dataset"]
if config.get("dataset_dir"):
    DATASET["dir"] = config["dataset_dir"]
if config.get("sheet"):
    DATASET["sheet"] = config["sheet"]


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
    )


CASES = check_sheet(build_sheet())
validate(CASES, schema="../schemas/cases.schema.yaml")
TRAIN = sorted(CASES.query("split == 'train'")["case"])
TEST = sorted(CASES.query("split == 'test'")["case"])
K = config["groups"]["k"]
GROUP_OF = assign_groups(TRAIN, K, config["groups"]["seed"])
TUMOR = DATASET["tumor_values"]
ORGAN = DATASET["organ_values"]


wildcard_constraints:
    case=CASE_ID_PATTERN,
    k=r"\d+",


IMAGE = dict(zip(CASES["case"], CASES["image"]))
LABEL = dict(zip(CASES["case"], CASES["label"]))


def settings(section):
    """A config section as params, keys sorted: reruns follow values, not key order."""
    return dict(sorted(config[section].items()))


def image_of(wildcards):
    return IMAGE[wildcards.case]


def label_of(wildcards):
    return LABEL[wildcards.case]


def group_cases(k):
    return sorted(c for c, g in GROUP_OF.items() if g == int(k))


def final_targets():
    return [
        "results/cases.tsv",
        "results/metrics.tsv",
        "results/summary.tsv",
        expand("results/figures/cases/{case}.png", case=TEST),
        "results/figures/training_loss.png",
    ]


def final_training_inputs(wildcards):
    """Fusion masks and weight maps (K > 0), or pseudo-masks alone (K = 0)."""
    inputs = {"images": expand("results/roi/{case}/image.nii.gz", case=TRAIN)}
    if K > 0:
        inputs["targets"] = expand("results/fusion/{case}/fusion.nii.gz", case=TRAIN)
        if config["final"]["loss"] == "vwce":
            inputs["weights"] = expand(
                "results/fusion/{case}/weight.nii.gz", case=TRAIN
            )
    else:
        inputs["targets"] = expand("results/pseudomasks/{case}.nii.gz", case=TRAIN)
    return inputs
