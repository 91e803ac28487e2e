import numpy as np
import pytest

from boxseg.metrics import dice, score
from tests.conftest import sphere


class TestMetrics:
    spacing = (2.5, 0.8, 1.2)  # z, y, x: anisotropic

    def test_shifted_cubes(self):
        a = np.zeros((20, 40, 40), bool)
        a[5:15, 10:30, 10:30] = True
        b = np.roll(a, 5, axis=2)  # 5 voxels along x = 6 mm
        s = score(a, b, self.spacing)
        assert s.dsc == pytest.approx(0.75)
        assert s.hd_mm == pytest.approx(5 * 1.2)
        assert s.volume_pred_ml == pytest.approx(10 * 20 * 20 * 2.5 * 0.8 * 1.2 / 1000)

    def test_shift_along_z_uses_z_spacing(self):
        a = np.zeros((20, 40, 40), bool)
        a[5:15, 10:30, 10:30] = True
        b = np.roll(a, 2, axis=0)
        assert score(a, b, self.spacing).hd_mm == pytest.approx(2 * 2.5)

    def test_concentric_spheres(self):
        spacing = (1.0, 0.5, 0.5)
        shape = (60, 120, 120)
        big = sphere(shape, (30, 60, 60), 25.0, spacing)
        small = sphere(shape, (30, 60, 60), 15.0, spacing)
        s = score(big, small, spacing)
        assert s.dsc == pytest.approx(2 * 15**3 / (25**3 + 15**3), abs=0.01)
        assert s.hd_mm == pytest.approx(10.0, abs=1.0)  # within one voxel
        assert s.asd_mm == pytest.approx(10.0, abs=1.0)

    def test_identical_masks(self):
        a = sphere((20, 30, 30), (10, 15, 15), 6.0, self.spacing)
        s = score(a, a, self.spacing)
        assert (s.dsc, s.hd_mm, s.hd95_mm, s.asd_mm) == (1.0, 0.0, 0.0, 0.0)

    def test_empty_conventions(self):
        empty = np.zeros((5, 5, 5), bool)
        full = empty.copy()
        full[1:3, 1:3, 1:3] = True
        assert score(empty, empty, self.spacing).dsc == 1.0
        s = score(empty, full, self.spacing)
        assert s.dsc == 0.0 and np.isnan(s.hd_mm) and np.isnan(s.asd_mm)
        assert dice(empty, full) == 0.0
