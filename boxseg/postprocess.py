"""Post-processing: largest 3D connected component (18-connectivity)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

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
