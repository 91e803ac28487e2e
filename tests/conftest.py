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
