"""Boxes drawn by users: a box table (TSV or CSV) or 3D Slicer ROI markups (``.mrk.json``),
read into rows that ``records.records_from_rows`` places on a case's image grid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from boxseg.boxes.records import lesion_id

if TYPE_CHECKING:
    import pandas as pd
    import SimpleITK as sitk


BOX_TABLE_COLUMNS = ["case", "lesion", "coordinates", "x_min", "y_min", "z_min", "x_max", "y_max", "z_max"]


COORDINATE_SYSTEMS = ("lps_mm", "ras_mm", "index")


def read_box_table(path: str | os.PathLike) -> pd.DataFrame:
    """A box table (TSV or CSV), one row per lesion box.

    Columns: ``case``, ``lesion`` (an integer per box), ``coordinates`` and the two corners
    ``x_min y_min z_min x_max y_max z_max``. ``coordinates`` says what the corners are:
    ``lps_mm`` or ``ras_mm`` (physical, the box's faces; voxels whose centres lie inside are in
    the box) or ``index`` (inclusive 0-based voxel indices i, j, k as ITK and Slicer count them).
    """
    from pathlib import Path

    from boxseg.io import read_table

    path = Path(path)
    table = read_table(path, "box table", dtype={"case": str})
    missing = [c for c in BOX_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"box table {path} lacks column(s) {missing}")
    bad = sorted(set(table["coordinates"]) - set(COORDINATE_SYSTEMS))
    if bad:
        raise ValueError(f"box table {path}: coordinates must be one of {list(COORDINATE_SYSTEMS)}, got {bad}")
    corners = table[BOX_TABLE_COLUMNS[3:]]
    if corners.isna().any().any() or not all(np.issubdtype(t, np.number) for t in corners.dtypes):
        raise ValueError(f"box table {path}: corner columns must all be numbers")
    return table[BOX_TABLE_COLUMNS]


def box_rows_by_case(table: pd.DataFrame) -> dict[str, list[dict]]:
    """Every case's rows as plain dicts (JSON-able, so they can be a rule's params), in one pass."""
    out = {}
    for r in table.itertuples():
        out.setdefault(str(r.case), []).append(
            {"lesion": lesion_id(r.lesion), "coordinates": str(r.coordinates),
             "min": [float(r.x_min), float(r.y_min), float(r.z_min)],
             "max": [float(r.x_max), float(r.y_max), float(r.z_max)]}
        )
    return out


def box_rows(table: pd.DataFrame, case: str) -> list[dict]:
    """The rows of one case (see ``box_rows_by_case``)."""
    return box_rows_by_case(table[table["case"] == case]).get(case, [])


def read_slicer_rois(path: str | os.PathLike) -> list[dict]:
    """Boxes of the ROI markups in a 3D Slicer ``.mrk.json`` file, as table-like rows in LPS mm.

    Each ROI's eight corners are ``center +- size/2`` along its orientation axes (columns of
    the 3x3 ``orientation``), in the file's ``coordinateSystem`` (LPS or RAS) and units
    (mm or um); the row holds the axis-aligned LPS hull of those corners. ROIs without a
    center and size use the hull of their control points.
    """
    import json

    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list) or not all(isinstance(m, dict) for m in markups):
        raise ValueError(f"{path}: not a 3D Slicer markups file (no list of markups)")
    rows = []
    for markup in markups:
        if markup.get("type") != "ROI":
            continue
        name = markup.get("name", len(rows) + 1)
        system = markup.get("coordinateSystem", "LPS")
        if system not in ("LPS", "RAS"):
            raise ValueError(f"{path}: coordinateSystem {system!r} is neither LPS nor RAS")
        units = markup.get("coordinateUnits", "mm")
        units = units[0] if isinstance(units, list) and units else units
        scale = {"mm": 1.0, "um": 1e-3}.get(units) if isinstance(units, str) else None
        if scale is None:
            raise ValueError(f"{path}: coordinateUnits {units!r} is neither mm nor um")
        if "center" in markup and "size" in markup:
            center, size = _triple(markup["center"]), _triple(markup["size"])
            axes = _numbers(markup.get("orientation", np.eye(3).ravel()), 9)
            if center is None or size is None or axes is None or (size < 0).any():
                raise ValueError(f"{path}: ROI {name!r}: center and size must be three finite numbers each "
                                 f"(size >= 0) and orientation nine, got center {markup['center']!r}, size {markup['size']!r}")
            half = size / 2.0
            signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
            points = center + (signs * half) @ axes.reshape(3, 3).T
        else:
            found = [_triple(p.get("position")) for p in markup.get("controlPoints", []) if isinstance(p, dict)]
            points = np.array([p for p in found if p is not None], float)
            if len(points) < 2:
                raise ValueError(f"{path}: ROI {name!r} has neither center and size nor two control points")
        points = points * scale
        if system == "RAS":
            points = points * np.array([-1.0, -1.0, 1.0])
        rows.append({"lesion": len(rows) + 1, "coordinates": "lps_mm",
                     "min": points.min(0).tolist(), "max": points.max(0).tolist()})
    if not rows:
        raise ValueError(f"{path}: no ROI markup in the file")
    return rows


def _numbers(value, n: int):
    """``value`` as n finite floats, or None."""
    try:
        array = np.asarray(value, float).ravel()
    except (TypeError, ValueError):
        return None
    return array if array.size == n and np.isfinite(array).all() else None


def _triple(value):
    return _numbers(value, 3)


def slicer_markups(records: Sequence[dict], image: sitk.Image) -> dict:
    """A case's box records as a 3D Slicer markups document (one ROI per box, LPS mm): the
    box's faces are its corner voxels' outer edges, its axes the image's, so Slicer shows
    exactly the voxels the box holds and ``read_slicer_rois`` reads the same box back."""
    from boxseg.geometry import index_to_physical

    spacing = np.asarray(image.GetSpacing(), float)
    markups = []
    for record in records:
        lo, hi = np.asarray(record["index_lo"], float), np.asarray(record["index_hi"], float)
        centre = index_to_physical(image, ((lo + hi) / 2.0)[None])[0]
        size = (hi - lo + 1.0)[::-1] * spacing  # x, y, z along the image's axes
        markups.append({"type": "ROI", "name": f"lesion {record['lesion']}", "coordinateSystem": "LPS",
                        "coordinateUnits": "mm", "roiType": "Box", "center": np.round(centre, 4).tolist(),
                        "orientation": list(image.GetDirection()), "size": np.round(size, 4).tolist(),
                        "controlPoints": []})
    return {"@schema": "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
                       "markups-schema-v1.0.3.json#", "markups": markups}
