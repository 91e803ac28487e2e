"""Box records: what a drawn box says, and all the method may read of it.

A box record is a dict ``{"lesion": int, "index_lo": [z, y, x], "index_hi": [z, y, x],
"corners_lps_mm": [[x, y, z], [x, y, z]]}``: inclusive voxel indices on the case's
original image grid, and the physical (LPS) centres of the two corner voxels. That is
all a box drawn by a reader says, and all a record may carry (``drawn_boxes``), whether
a user drew it or research mode drew it from the true lesion (``protocol``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from boxseg.geometry import index_to_physical, physical_to_index

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def box_records(boxes: Sequence[tuple[ArrayLike, ArrayLike]], image: sitk.Image) -> list[dict]:
    """Box index bounds on ``image``'s grid -> JSON-able records."""
    records = []
    for i, (lo, hi) in enumerate(boxes, start=1):
        corners = index_to_physical(image, np.array([lo, hi], float))
        records.append(
            {
                "lesion": i,
                "index_lo": [int(v) for v in lo],
                "index_hi": [int(v) for v in hi],
                "corners_lps_mm": np.round(corners, 4).tolist(),
            }
        )
    return records


# What a drawn box carries, and all that stage 1 and later steps may read of a box: the
# lesion id and the box itself. Anything a label could add (tight box, per-face slack,
# volume, centre) is refused where boxes enter the method (``drawn_boxes``).
DRAWN_BOX_KEYS = ("lesion", "index_lo", "index_hi", "corners_lps_mm")


def drawn_boxes(records: Sequence[dict], case: str, source: str | os.PathLike) -> list[dict]:
    """``records`` checked to carry only what a drawn box carries (``DRAWN_BOX_KEYS``):
    the information rule, enforced where boxes reach the method (stage 1, fusion and
    inference, through ``pipeline.read_boxes``) and where research mode writes them. A
    label-derived field is an error naming the case, the file and the field."""
    from boxseg.io import CaseError

    for r in records:
        extra = sorted(set(r) - set(DRAWN_BOX_KEYS))
        if extra:
            raise CaseError(case, source, f"box {r.get('lesion')} carries {extra}, which a drawn box does not: "
                            "nothing derived from the true lesion may reach the method")
    return list(records)


def lesion_id(value: Any) -> int | str:
    """A box row's ``lesion`` as the int it names, or as it was written when it names none
    (checked per case, ``records_from_rows``, so one bad row fails its case only)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(number):
        return ""  # an empty cell
    return int(number) if np.isfinite(number) and number == int(number) else str(value)


MAX_LESION_ID = 255  # lesion ids label uint8 box maps


def check_lesion_ids(rows: Sequence[dict], case: str, source: str | os.PathLike) -> None:
    """Each box of a case needs its own lesion id, a whole number from 1 to 255: 0 is
    background, and two boxes under one id would be one lesion to the component filter."""
    from boxseg.io import CaseError

    seen = {}
    for i, row in enumerate(rows, start=1):
        where = f"box {i} of {len(rows)}"
        lesion = row["lesion"]
        if not isinstance(lesion, int) or not 1 <= lesion <= MAX_LESION_ID:
            raise CaseError(case, source, f"{where}: lesion {lesion!r} is not a whole number from 1 to {MAX_LESION_ID}")
        if lesion in seen:
            raise CaseError(case, source, f"{where}: lesion {lesion} is already the id of {seen[lesion]}: give each box its own id")
        seen[lesion] = where


def records_from_rows(rows: Sequence[dict], image: sitk.Image, case: str, source: str | os.PathLike) -> list[dict]:
    """User box rows -> box records on the image grid, clipped to it.

    Physical boxes (any direction cosines, oblique included) are mapped corner by corner to
    continuous indices and take the voxels whose centres lie in the hull; index boxes are
    inclusive. A box entirely outside the image is an error naming the case and the file.
    """
    from boxseg.io import CaseError

    check_lesion_ids(rows, case, source)
    size = np.asarray(image.GetSize()[::-1])
    boxes = []
    for row in rows:
        lo_xyz, hi_xyz = np.asarray(row["min"], float), np.asarray(row["max"], float)
        lo_xyz, hi_xyz = np.minimum(lo_xyz, hi_xyz), np.maximum(lo_xyz, hi_xyz)
        system = row["coordinates"]
        if system == "index":
            lo, hi = np.ceil(lo_xyz[::-1] - 1e-6), np.floor(hi_xyz[::-1] + 1e-6)
        elif system in ("lps_mm", "ras_mm"):
            corners = np.array(np.meshgrid(*zip(lo_xyz, hi_xyz), indexing="ij")).reshape(3, -1).T
            if system == "ras_mm":
                corners = corners * np.array([-1.0, -1.0, 1.0])
            idx = physical_to_index(image, corners)
            lo, hi = np.ceil(idx.min(0) - 1e-4), np.floor(idx.max(0) + 1e-4)
        else:
            raise CaseError(case, source, f"box {row['lesion']}: unknown coordinates {system!r}")
        if np.any(hi < lo):
            raise CaseError(case, source, f"box {row['lesion']} holds no voxel centre")
        if np.any(hi < 0) or np.any(lo > size - 1):
            raise CaseError(case, source, f"box {row['lesion']} lies outside the image (index {lo.astype(int).tolist()}..{hi.astype(int).tolist()} z y x, image size {size.tolist()})")
        boxes.append((np.clip(lo, 0, size - 1).astype(int), np.clip(hi, 0, size - 1).astype(int)))
    records = box_records(boxes, image)
    for record, row in zip(records, rows):
        record["lesion"] = int(row["lesion"])
    return records


# Where a case's boxes came from: drawn by a user (a box table, the case's box file), drawn
# from its label by the research protocol (``label``), or none (a case placed by its organ).
USER_BOX_SOURCES = ("table", "file")


def read_boxes(boxes_json: str | os.PathLike, case: str) -> dict:
    """A case's boxes record (``layout.BOXES``: case, source, protocol, margin_mm, box_seed,
    slack_mm, boxes) as the method may read it: its boxes checked to carry only what a
    drawn box carries (``drawn_boxes``)."""
    from boxseg.io import read_json

    record = read_json(boxes_json)
    record["boxes"] = drawn_boxes(record["boxes"], case, boxes_json)
    return record
