"""Bounding boxes: from labels with a margin, as records, and on other grids.

A box record is a dict ``{"lesion": int, "index_lo": [z, y, x], "index_hi": [z, y, x],
"corners_lps_mm": [[x, y, z], [x, y, z]]}``: inclusive voxel indices on the
case's original image grid, and the physical (LPS) centres of the two
corner voxels. That is all a box drawn by a reader says, and all a record may
carry (``drawn_boxes``), whether a user drew it or research mode drew it from
the true lesion (``boxes_from_label`` by a ``face_margins`` protocol).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from boxseg.geometry import index_to_physical, physical_to_index

if TYPE_CHECKING:
    import pandas as pd


def lesion_boxes(label: np.ndarray, tumor_values=(1,), min_voxels: int = 1):
    """The tight box of each connected lesion (26-connectivity): (lo, hi) inclusive index
    arrays (z, y, x), largest lesion first."""
    tumor = np.isin(label, tumor_values)
    components, _ = ndi.label(tumor, structure=np.ones((3, 3, 3)))
    boxes = []
    for i, sl in enumerate(ndi.find_objects(components), start=1):
        size = int((components[sl] == i).sum())
        if size >= min_voxels:
            boxes.append((size, np.array([s.start for s in sl]), np.array([s.stop - 1 for s in sl])))
    boxes.sort(key=lambda b: -b[0])
    return [(lo, hi) for _, lo, hi in boxes]


def enlarge_boxes(boxes, shape, spacing_mm, margin_mm):
    """Boxes (lo, hi inclusive) enlarged and clipped to a grid of ``shape``.

    ``margin_mm`` is one number for every face of every box, or one (lower, upper) pair of
    per-axis (z, y, x) mm per box (``face_margins``); each margin is rounded to whole voxels
    per axis."""
    spacing = np.asarray(spacing_mm, float)
    margins = margin_mm if np.ndim(margin_mm) else [(np.full(3, float(margin_mm)),) * 2] * len(boxes)
    if len(margins) != len(boxes):
        raise ValueError(f"enlarge_boxes: {len(margins)} margins for {len(boxes)} boxes")
    top = np.asarray(shape) - 1
    out = []
    for (lo, hi), (m_lo, m_hi) in zip(boxes, margins):
        d_lo = np.round(np.asarray(m_lo, float) / spacing).astype(int)
        d_hi = np.round(np.asarray(m_hi, float) / spacing).astype(int)
        out.append((np.maximum(lo - d_lo, 0), np.minimum(hi + d_hi, top)))
    return out


# --- Research mode: boxes drawn from the true lesion by a simulated reader ------------------

BOX_PROTOCOLS = ("paper", "annotator")


def face_margins(protocol: str, margin_mm: float, n_boxes: int, rng: np.random.Generator) -> list:
    """How far a simulated reader draws each face of ``n_boxes`` boxes outside the lesion:
    per box a (lower, upper) pair of per-axis (z, y, x) mm.

    ``paper``: every face exactly ``margin_mm`` out (the paper's protocol). ``annotator``:
    each face its own amount, uniform in [0, 2 margin_mm] and independent (mean
    ``margin_mm``), as readers draw by hand.
    """
    if protocol == "paper":
        return [(np.full(3, float(margin_mm)), np.full(3, float(margin_mm))) for _ in range(n_boxes)]
    if protocol == "annotator":
        return [tuple(rng.uniform(0.0, 2.0 * float(margin_mm), size=(2, 3))) for _ in range(n_boxes)]
    raise ValueError(f"box protocol must be one of {list(BOX_PROTOCOLS)}, got {protocol!r}")


def protocol_rng(seed: int, case: str) -> np.random.Generator:
    """The simulated reader's random state for one case: the same boxes for a case whatever
    else the run holds, and other boxes for another seed."""
    import zlib

    return np.random.default_rng([int(seed), zlib.crc32(case.encode())])


def boxes_from_label(label: np.ndarray, spacing_mm, margin_mm: float, tumor_values=(1,), min_voxels: int = 1,
                     protocol: str = "paper", rng: np.random.Generator | None = None):
    """One box per connected lesion (26-connectivity), drawn by ``protocol`` (``face_margins``)
    with ``margin_mm`` and clipped.

    Args:
        label: (z, y, x) label map.
        spacing_mm: (z, y, x) voxel spacing.
        margin_mm: the protocol's margin (rounded to whole voxels per axis).
        tumor_values: label values that count as lesion.
        protocol: ``paper`` or ``annotator``; ``rng`` draws the annotator's faces.

    Returns:
        List of (lo, hi) inclusive index arrays, largest lesion first.
    """
    tight = lesion_boxes(label, tumor_values, min_voxels)
    margins = face_margins(protocol, margin_mm, len(tight), rng if rng is not None else np.random.default_rng(0))
    return enlarge_boxes(tight, label.shape, spacing_mm, margins)


def box_records(boxes, image: sitk.Image):
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


def drawn_boxes(records, case: str, source) -> list:
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


def box_mask(records, image: sitk.Image) -> np.ndarray:
    """(z, y, x) uint8 map of box lesion ids on the records' own (original) grid."""
    out = np.zeros(image.GetSize()[::-1], np.uint8)
    for r in records:
        lo, hi = r["index_lo"], r["index_hi"]
        out[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = r["lesion"]
    return out


def boxes_on_grid(records, original: sitk.Image, target: sitk.Image):
    """Continuous voxel-edge bounds (lo, hi) of each box on another grid (z, y, x).

    The eight voxel-edge corners of the box are mapped through physical space;
    for grids that share the direction (our ROIs) the result is exact.
    """
    out = []
    for r in records:
        lo = np.asarray(r["index_lo"], float) - 0.5
        hi = np.asarray(r["index_hi"], float) + 0.5
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
        target_idx = physical_to_index(target, index_to_physical(original, corners))
        # Voxel-edge bounds on the target: voxel k spans [k - 0.5, k + 0.5].
        out.append((target_idx.min(0) + 0.5, target_idx.max(0) + 0.5))
    return out


# --- Boxes drawn by users: a table (boxes.tsv) or 3D Slicer ROI markups (.mrk.json) ---------

BOX_TABLE_COLUMNS = ["case", "lesion", "coordinates", "x_min", "y_min", "z_min", "x_max", "y_max", "z_max"]
COORDINATE_SYSTEMS = ("lps_mm", "ras_mm", "index")


def read_box_table(path) -> pd.DataFrame:
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


def _lesion_id(value):
    """A box row's ``lesion`` as the int it names, or as it was written when it names none
    (checked per case, ``records_from_rows``, so one bad row fails its case only)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(number):
        return ""  # an empty cell
    return int(number) if np.isfinite(number) and number == int(number) else str(value)


def box_rows_by_case(table) -> dict:
    """Every case's rows as plain dicts (JSON-able, so they can be a rule's params), in one pass."""
    out = {}
    for r in table.itertuples():
        out.setdefault(str(r.case), []).append(
            {"lesion": _lesion_id(r.lesion), "coordinates": str(r.coordinates),
             "min": [float(r.x_min), float(r.y_min), float(r.z_min)],
             "max": [float(r.x_max), float(r.y_max), float(r.z_max)]}
        )
    return out


MAX_LESION_ID = 255  # lesion ids label uint8 box maps


def check_lesion_ids(rows, case: str, source) -> None:
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


def box_rows(table, case: str) -> list:
    """The rows of one case (see ``box_rows_by_case``)."""
    return box_rows_by_case(table[table["case"] == case]).get(case, [])


def read_slicer_rois(path) -> list:
    """Boxes of the ROI markups in a 3D Slicer ``.mrk.json`` file, as table-like rows in LPS mm.

    Each ROI's eight corners are ``center +- size/2`` along its orientation axes (columns of
    the 3x3 ``orientation``), in the file's ``coordinateSystem`` (LPS or RAS) and units
    (mm or um); the row holds the axis-aligned LPS hull of those corners. ROIs without a
    center and size use the hull of their control points.
    """
    import json

    with open(path) as f:
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


def records_from_rows(rows, image: sitk.Image, case: str, source):
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
