"""Case sheets: which cases exist, where their files are, and their split.

A case sheet is a table with columns ``case``, ``image``, ``label`` (may be
empty), ``boxes`` (a box file, may be empty) and ``split``: ``train`` (weak
labels: boxes), ``test`` (predicted, and evaluated when it has a label) or
``predict`` (predicted only). Case ids are validated before they become file
names.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from boxseg.io import read_table, validate_case_id

SHEET_COLUMNS = ["case", "image", "label", "boxes", "split"]
REQUIRED_COLUMNS = ["case", "image", "split"]
SPLITS = ("train", "test", "predict")


def synthetic_sheet(n_train: int, n_test: int) -> pd.DataFrame:
    """Sheet of the embedded phantom set (KiTS layout where the workflow writes it,
    ``layout.PHANTOM_IMAGE``); the last ``n_test`` cases are test."""
    from boxseg import layout

    rows = []
    for i in range(n_train + n_test):
        case = f"case_{i:05d}"
        rows.append(
            {
                "case": case,
                "image": layout.PHANTOM_IMAGE.format(case=case),
                "label": layout.PHANTOM_LABEL.format(case=case),
                "boxes": "",
                "split": "train" if i < n_train else "test",
            }
        )
    return pd.DataFrame(rows, columns=SHEET_COLUMNS)


SPLIT_KEYS = ("test_cases", "test_fraction", "split_seed", "test_every")  # the dataset section's keys for the split


def split_settings(dataset: dict) -> dict:
    """The split's settings from a config's ``dataset`` section (``test_split``'s keywords)."""
    return {key: dataset[key] for key in SPLIT_KEYS if dataset.get(key) is not None}


def test_split(cases: Collection[str], test_cases: Collection[str] = (), test_fraction: float = 0.25,
               split_seed: int = 0, test_every: int = 0) -> set[str]:
    """The test cases among ``cases`` (names of a dataset directory's cases): ``test_cases`` when
    given; else with ``test_every`` N every N-th case in sorted order (the N-th, 2N-th, ...:
    the same cases on any copy of the dataset, and a split on any other); else a seeded
    random ``test_fraction`` of them."""
    if test_cases:
        return set(test_cases) & set(cases)
    if test_every:
        if test_every < 2:
            raise ValueError(f"test_every must be 0 (off) or at least 2, got {test_every}: every case a test case leaves none to train on")
        return set(sorted(cases)[test_every - 1 :: test_every])
    rng = np.random.default_rng(split_seed)
    n_test = max(1, round(test_fraction * len(cases)))
    return set(rng.choice(sorted(cases), size=n_test, replace=False).tolist())


def kits_sheet(dataset_dir: str | os.PathLike, test_cases: Collection[str] = (), test_fraction: float = 0.25,
               split_seed: int = 0, image_name: str = "imaging.nii.gz",
               label_name: str = "segmentation.nii.gz", test_every: int = 0) -> pd.DataFrame:
    """Sheet of a directory with one folder per case, e.g. KiTS19/21/23 layout
    ``case_*/imaging.nii.gz`` and ``segmentation.nii.gz`` (or IBSI ``STS_*/CT_image.nii.gz``
    and ``CT_mask.nii.gz`` with other file names).

    Test cases: ``test_split`` (``test_cases``, else every ``test_every``-th, else a seeded
    random ``test_fraction``).
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory {root} does not exist")
    cases = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / image_name).exists())
    if not cases:
        raise FileNotFoundError(f"no case directories with {image_name} under {root}")
    unknown = sorted(set(test_cases) - set(cases))
    if unknown:
        raise ValueError(f"test_cases not found under {root}: {unknown}")
    test = test_split(cases, test_cases, test_fraction, split_seed, test_every)
    rows = [
        {"case": c, "image": str(root / c / image_name), "label": str(root / c / label_name), "boxes": "",
         "split": "test" if c in test else "train"}
        for c in cases
    ]
    return pd.DataFrame(rows, columns=SHEET_COLUMNS)


def read_sheet(path: str | os.PathLike, default_split: str | None = None) -> pd.DataFrame:
    """A user's case sheet (TSV or CSV): columns case, image, split and optionally label and
    boxes; relative paths are taken relative to the sheet's directory. ``default_split``
    fills a missing split column (a sheet of cases to predict)."""
    path = Path(path)
    sheet = read_table(path, "case sheet", dtype=str, keep_default_na=False)
    if default_split and "split" not in sheet.columns:
        sheet["split"] = default_split
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    if missing:
        raise ValueError(f"case sheet {path} lacks column(s) {missing}")
    for column in ("image", "label", "boxes"):
        if column not in sheet.columns:
            sheet[column] = ""
        sheet[column] = [v if not v or Path(v).is_absolute() else str(path.parent / v) for v in sheet[column]]
    return sheet[SHEET_COLUMNS]


def check_sheet(sheet: pd.DataFrame, box_table_cases: Iterable[str] = (), source: str = "case sheet") -> pd.DataFrame:
    """Validate case ids (file-name safe, unique), splits, and that every training case has a
    label or boxes; returns the sheet indexed by case. Errors name ``source`` (the sheet file)."""
    sheet = sheet.copy()
    for column in SHEET_COLUMNS:
        if column not in sheet.columns:
            sheet[column] = ""
    for case in sheet["case"]:
        try:
            validate_case_id(str(case))
        except ValueError as err:
            raise ValueError(f"case {case}: {source}: {err}") from None
    duplicated = sheet["case"][sheet["case"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"case {min(duplicated)}: {source}: duplicate case id(s) {sorted(set(duplicated))}")
    folded = sheet["case"].str.casefold()
    clash = sorted(sheet["case"][folded.duplicated(keep=False)])
    if clash:  # one file on a case-insensitive file system (macOS, Windows)
        raise ValueError(f"case {clash[0]}: {source}: case ids {clash} differ only in upper and lower case")
    bad = sorted(set(sheet["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{source}: split must be one of {list(SPLITS)}, got {bad}")
    with_boxes = set(box_table_cases)
    unlabelled = [r.case for r in sheet.itertuples() if r.split == "train" and not r.label and not r.boxes and r.case not in with_boxes]
    if unlabelled:
        raise ValueError(f"case {unlabelled[0]}: {source}: training case(s) without a label or boxes: {unlabelled[:10]}")
    return sheet[SHEET_COLUMNS].set_index("case", drop=False)


def assign_groups(train_cases: Iterable[str], k: int, seed: int) -> dict[str, int]:
    """Split training cases into ``k`` disjoint subsets of (nearly) equal size, seeded."""
    cases = sorted(train_cases)
    if k <= 0:
        return {}
    if len(cases) < k:
        raise ValueError(f"{len(cases)} training case(s) cannot form {k} groups")
    order = np.random.default_rng(seed).permutation(len(cases))
    return {cases[j]: int(i % k) for i, j in enumerate(order)}
