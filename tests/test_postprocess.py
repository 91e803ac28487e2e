import numpy as np
import pytest

from boxseg.postprocess import largest_component, largest_component_per_region


class TestLargestComponent:
    def test_edge_neighbours_connect_corner_neighbours_do_not(self):
        mask = np.zeros((5, 5, 5), bool)
        mask[1, 1, 1] = mask[1, 2, 2] = True  # share an edge: 18-connected
        mask[2, 3, 3] = True  # touches (1, 2, 2) only at a corner: 26- but not 18-connected
        mask[4, 0, 4] = True
        out = largest_component(mask)
        assert out[1, 1, 1] and out[1, 2, 2]
        assert not out[2, 3, 3] and not out[4, 0, 4]

    def test_keeps_largest(self):
        mask = np.zeros((10, 10, 10), bool)
        mask[0:2, 0:2, 0:2] = True
        mask[5:9, 5:9, 5:9] = True
        out = largest_component(mask)
        assert out.sum() == 64 and out[6, 6, 6]

    def test_empty_stays_empty(self):
        assert not largest_component(np.zeros((3, 3, 3), bool)).any()

    def test_per_region(self):
        mask = np.zeros((4, 4, 12), bool)
        mask[1, 1, 0:3] = True
        mask[1, 3, 4] = True
        mask[1, 1, 8:10] = True
        regions = np.zeros(mask.shape, np.uint8)
        regions[..., :6], regions[..., 6:] = 1, 2
        out = largest_component_per_region(mask, regions)
        assert out[1, 1, 0:3].all() and out[1, 1, 8:10].all() and not out[1, 3, 4]


def test_lesion_labels_number_lesions_largest_first_with_their_volumes():
    import SimpleITK as sitk

    from boxseg.postprocess import lesion_labels

    mask = np.zeros((10, 12, 14), bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[5:9, 5:10, 5:12] = True  # 140 voxels
    image = sitk.Image([14, 12, 10], sitk.sitkUInt8)
    image.SetSpacing((1.0, 1.0, 2.0))
    labels, rows = lesion_labels(mask, image)
    assert [r["voxels"] for r in rows] == [140, 8] and rows[0]["volume_ml"] == pytest.approx(0.28)
    assert (labels[mask] > 0).all() and (labels[~mask] == 0).all() and labels[6, 6, 6] == 1 and labels[1, 1, 1] == 2
