from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def sphere(shape, centre, radius_mm, spacing_mm=(1.0, 1.0, 1.0)):
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing_mm)) <= radius_mm**2


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


def preprocessed_phantom(tmp_path) -> Path:
    """A phantom case ``c1`` (``img.nii.gz``, ``seg.nii.gz``, ``boxes.json`` in ``tmp_path``)
    preprocessed into ``tmp_path / "roi"`` at 4 mm, as inference tests read it."""
    from boxseg.phantom import write_phantom_case
    from boxseg.steps.preprocess import preprocess_case

    write_phantom_case(3, tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz")
    roi = tmp_path / "roi"
    roi.mkdir()
    preprocess_case("c1", tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz", tmp_path / "boxes.json", roi / "image.nii.gz",
                    roi / "label.nii.gz", roi / "geometry.json", margin_mm=3.5, spacing_mm=(4, 4, 4), roi_size_mm=(64, 64, 64),
                    window_hu=(-200, 500), tumor_values=[2], organ_values=[1])
    return roi
