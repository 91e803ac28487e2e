"""Bounding boxes, in one place: records (what a drawn box says), the research
protocol that draws them from a label, users' box files, boxes on grids, and stage 1's
box prior. The names most steps need are importable from ``boxseg.boxes``.
"""

from boxseg.boxes.files import box_rows, box_rows_by_case, read_box_table, read_slicer_rois, slicer_markups
from boxseg.boxes.grid import (
    Bounds,
    bounds_id_map,
    bounds_mask,
    bounds_on_grid,
    bounds_on_roi,
    lesion_id_map,
    roi_bounds,
)
from boxseg.boxes.protocol import BOX_PROTOCOLS, boxes_from_label, face_margins, make_boxes, protocol_rng
from boxseg.boxes.records import (
    DRAWN_BOX_KEYS,
    USER_BOX_SOURCES,
    box_records,
    check_lesion_ids,
    drawn_boxes,
    read_boxes,
    records_from_rows,
)

__all__ = [
    "BOX_PROTOCOLS",
    "DRAWN_BOX_KEYS",
    "USER_BOX_SOURCES",
    "Bounds",
    "bounds_id_map",
    "bounds_mask",
    "bounds_on_grid",
    "bounds_on_roi",
    "box_records",
    "box_rows",
    "box_rows_by_case",
    "boxes_from_label",
    "check_lesion_ids",
    "drawn_boxes",
    "face_margins",
    "lesion_id_map",
    "make_boxes",
    "protocol_rng",
    "read_box_table",
    "read_boxes",
    "read_slicer_rois",
    "records_from_rows",
    "roi_bounds",
    "slicer_markups",
]
