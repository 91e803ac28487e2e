"""Post-processing: the largest 3D connected component (18-connectivity), and the policy
that applies it to a prediction (``postprocess_mask``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

if TYPE_CHECKING:
    import SimpleITK as sitk

CONNECTIVITY_18 = ndi.generate_binary_structure(3, 2)


def largest_component(mask: np.ndarray, structure: np.ndarray = CONNECTIVITY_18) -> np.ndarray:
    """Keep the largest connected component of a 3D binary mask (18-connected unless
    ``structure`` says otherwise; the first of equal ones; empty stays empty)."""
    mask = np.asarray(mask, bool)
    components, n = ndi.label(mask, structure=structure)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def largest_component_per_region(mask: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Largest 18-connected component inside each labelled region (one per lesion box)."""
    mask = np.asarray(mask, bool)
    out = np.zeros_like(mask)
    for region_id in np.unique(regions[regions > 0]):
        inside = regions == region_id
        out |= largest_component(mask & inside)
    return out


POSTPROCESSING = ("none", "largest_component")  # final.postprocess; evaluation scores both
PLACEMENTS = ("boxes", "organ")  # where a case's ROI goes (preprocess.roi_from), and so how its mask is filtered


def placement_of(boxes: dict) -> str:
    """A case's ``PLACEMENTS`` entry from its boxes record; records written before it was
    recorded: "boxes" for boxes a user drew, else "organ"."""
    from boxseg.boxes import USER_BOX_SOURCES

    return boxes.get("placement") or ("boxes" if boxes["source"] in USER_BOX_SOURCES else "organ")


def postprocess_mask(mask: np.ndarray, boxes: dict, original: sitk.Image, postprocess: str, where: str | None = None) -> np.ndarray:
    """``largest_component`` keeps the largest 18-connected component inside each box (every
    lesion kept) when the ROI was placed on the boxes (``where``, default the record's
    ``placement_of``: a user's path), and the largest component overall when it was placed
    on the organ (the paper's) or the case has no box."""
    from boxseg.boxes import lesion_id_map

    if postprocess == "none":
        return mask
    if postprocess != "largest_component":
        raise ValueError(f"unknown postprocess {postprocess!r}")
    if (where or placement_of(boxes)) == "boxes" and boxes["boxes"]:
        return largest_component_per_region(mask, lesion_id_map(boxes["boxes"], original))
    return largest_component(mask)


def lesion_labels(mask: np.ndarray, image: sitk.Image) -> tuple[np.ndarray, list[dict]]:
    """The mask's 18-connected lesions labelled 1..n, largest first, and one row per lesion:
    its label, voxels, volume in ml and centre (LPS mm) on ``image``'s grid."""
    from boxseg.geometry import index_to_physical

    components, n = ndi.label(np.asarray(mask, bool), structure=CONNECTIVITY_18)
    sizes = np.bincount(components.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    relabel = np.zeros(n + 1, np.uint16)
    relabel[order + 1] = np.arange(1, n + 1)
    labels = relabel[components]  # one pass, however many components
    centres = ndi.center_of_mass(np.ones(components.shape), components, order + 1) if n else []
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    rows = []
    for new, (old, centre) in enumerate(zip(order, centres), start=1):
        point = index_to_physical(image, np.asarray(centre, float)[None])[0]
        rows.append({"lesion": new, "voxels": int(sizes[old]), "volume_ml": round(float(sizes[old]) * voxel_ml, 4),
                     "centre_lps_mm": [round(float(c), 2) for c in point]})
    return labels, rows
