import numpy as np
import pytest
import SimpleITK as sitk

from boxseg.boxes import (
    DRAWN_BOX_KEYS,
    bounds_mask,
    bounds_on_grid,
    box_records,
    boxes_from_label,
    face_margins,
    lesion_id_map,
    make_boxes,
    records_from_rows,
)
from boxseg.geometry import index_to_physical, physical_to_index, resample, roi_reference, to_original_grid
from boxseg.io import array_like, same_grid
from boxseg.preprocess import crop_roi
from tests.conftest import sphere


def _image(direction=None, spacing=(0.8, 0.9, 2.5), size=(48, 40, 24)):
    img = sitk.Image(size, sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin((-10.0, 20.0, 5.0))
    if direction is not None:
        img.SetDirection(direction)
    return img


def _oblique():
    angle = np.deg2rad(20)
    rz = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    ras = np.diag([-1.0, -1.0, 1.0])
    return (ras @ rz).ravel().tolist()


@pytest.mark.parametrize("direction", [None, np.diag([-1.0, -1.0, 1.0]).ravel().tolist(), _oblique()])
class TestGeometry:
    def test_index_physical_round_trip(self, direction):
        img = _image(direction)
        idx = np.array([[3.0, 7.5, 11.25], [0, 0, 0]])
        assert np.allclose(physical_to_index(img, index_to_physical(img, idx)), idx)
        # agrees with SimpleITK (x, y, z order)
        assert np.allclose(index_to_physical(img, idx[:1])[0], img.TransformContinuousIndexToPhysicalPoint(idx[0, ::-1].tolist()))

    def test_roi_round_trip_restores_original_grid(self, direction):
        img = _image(direction)
        lesion = sphere(img.GetSize()[::-1], (12, 20, 24), 9.0, img.GetSpacing()[::-1])
        label = array_like(lesion.astype(np.uint8) * 2, img)
        hu = array_like(np.where(lesion, 100.0, -50.0).astype(np.float32), img)
        boxes = box_records(boxes_from_label(lesion.astype(np.uint8) * 2, img.GetSpacing()[::-1], 0.0, (2,)), img)
        roi, roi_label, geometry = crop_roi(
            "c1", hu, label, boxes, spacing_mm=(2.0, 2.0, 2.0), roi_size_mm=(40, 40, 40),
            window_hu=(-200, 500), tumor_values=(2,), organ_values=(1,),
        )
        assert roi.GetSize() == (20, 20, 20) and roi.GetDirection() == img.GetDirection()
        back = to_original_grid(sitk.Cast(roi_label, sitk.sitkFloat32), img) > 0.5
        back_image = array_like(back.astype(np.uint8), img)
        assert same_grid(back_image, img)
        inter = (back & lesion).sum()
        assert 2 * inter / (back.sum() + lesion.sum()) > 0.9
        assert geometry["original"]["size"] == list(img.GetSize())

    def test_box_on_roi_grid_covers_the_lesion(self, direction):
        img = _image(direction)
        lesion = sphere(img.GetSize()[::-1], (12, 20, 24), 6.0, img.GetSpacing()[::-1])
        records = box_records(boxes_from_label(lesion.astype(np.uint8), img.GetSpacing()[::-1], 2.0), img)
        centre = index_to_physical(img, np.array([[12.0, 20.0, 24.0]]))[0]
        roi = roi_reference(img, centre, (40, 40, 40), (1.0, 1.0, 1.0))
        bounds = bounds_on_grid(records, img, roi)
        on_roi = bounds_mask(bounds, roi.GetSize()[::-1])
        lesion_roi = sitk.GetArrayFromImage(resample(array_like(lesion.astype(np.uint8), img), roi, sitk.sitkNearestNeighbor))
        assert on_roi[lesion_roi > 0].all()
        extent_mm = (np.array(records[0]["index_hi"]) - records[0]["index_lo"] + 1) * img.GetSpacing()[::-1]
        assert on_roi.sum() == pytest.approx(np.prod(extent_mm), rel=0.15)  # 1 mm ROI voxels


class TestBoxes:
    def test_margin_in_mm_and_clipping(self):
        label = np.zeros((10, 20, 20), np.uint8)
        label[4:6, 8:12, 0:3] = 2
        (lo, hi), = boxes_from_label(label, (2.0, 1.0, 1.0), 3.5, (2,))
        assert lo.tolist() == [2, 4, 0] and hi.tolist() == [7, 15, 6]  # 3.5 mm: 2 voxels in z, 4 in y/x; clipped at 0

    def test_paper_protocol_draws_every_face_the_margin_out(self):
        """3.5 mm is 1 voxel of 2.5 mm and 4 of 1 mm; a face at the image's edge is clipped.
        The record carries what a drawn box carries and nothing of the label."""
        label = np.zeros((10, 20, 20), np.uint8)
        label[4:6, 8:12, 1:3] = 2
        img = array_like(label, _image(spacing=(1.0, 1.0, 2.5), size=(20, 20, 10)))
        (record,) = make_boxes("c1", img, img, "c1.nii.gz", 3.5, (2,), "paper")
        assert record["index_lo"] == [3, 4, 0] and record["index_hi"] == [6, 15, 6]
        assert set(record) == set(DRAWN_BOX_KEYS)
        row = {"lesion": 1, "coordinates": "index", "min": (0, 4, 3), "max": (6, 15, 6)}
        assert records_from_rows([row], img, "c1", "boxes.tsv") == [record]  # the same as a user's drawn box

    def test_annotator_protocol_draws_each_face_its_own_seeded_margin(self):
        """Each face uniform in [0, 2 margin], independent, the same for a case and seed."""
        rng = np.random.default_rng(5)
        margins = np.array(face_margins("annotator", 3.5, 400, rng))  # boxes x (lower, upper) x (z, y, x)
        assert margins.min() >= 0.0 and margins.max() <= 7.0 and abs(margins.mean() - 3.5) < 0.1
        assert abs(np.corrcoef(margins[:, 0, 0], margins[:, 1, 0])[0, 1]) < 0.15  # faces drawn independently
        assert np.array_equal(face_margins("paper", 3.5, 2, rng), [(np.full(3, 3.5), np.full(3, 3.5))] * 2)
        label = np.zeros((30, 40, 40), np.uint8)
        label[12:18, 15:25, 15:25] = 2
        img = array_like(label, _image(spacing=(1.0, 1.0, 2.0), size=(40, 40, 30)))
        drawn = {seed: make_boxes("c1", img, img, "c1.nii.gz", 7.0, (2,), "annotator", seed) for seed in (0, 0, 1)}
        again = make_boxes("c1", img, img, "c1.nii.gz", 7.0, (2,), "annotator", 0)
        assert again == drawn[0] and drawn[1] != drawn[0]
        other_case = make_boxes("c2", img, img, "c2.nii.gz", 7.0, (2,), "annotator", 0)
        assert other_case[0]["index_lo"] != drawn[0][0]["index_lo"] or other_case[0]["index_hi"] != drawn[0][0]["index_hi"]
        lo, hi = np.array(drawn[0][0]["index_lo"]), np.array(drawn[0][0]["index_hi"])
        reach = [7, 14, 14]  # 2 x 7 mm in voxels of 2, 1, 1 mm (z, y, x)
        assert (lo <= [12, 15, 15]).all() and (lo >= np.subtract([12, 15, 15], reach)).all()
        assert (hi >= [17, 24, 24]).all() and (hi <= np.add([17, 24, 24], reach)).all()
        with pytest.raises(ValueError, match="protocol must be one of"):
            face_margins("exact", 3.5, 1, rng)

    def test_one_box_per_lesion_and_mask(self):
        label = np.zeros((6, 10, 30), np.uint8)
        label[2:4, 2:4, 2:4] = 1
        label[2:5, 2:6, 20:26] = 1
        img = array_like(label, _image(size=(30, 10, 6)))
        boxes = boxes_from_label(label, (1.0, 1.0, 1.0), 0.0)
        assert len(boxes) == 2 and boxes[0][0][2] == 20  # largest first
        records = box_records(boxes, img)
        m = lesion_id_map(records, img)
        assert set(np.unique(m)) == {0, 1, 2} and (m == 1).sum() == 3 * 4 * 6
