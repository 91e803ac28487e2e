"""Boxes drawn by users: box tables (LPS, RAS, voxel index) and 3D Slicer ROI markups."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from boxseg.boxes import box_records, box_rows, read_box_table, read_slicer_rois, records_from_rows
from boxseg.geometry import index_to_physical
from tests.test_geometry import _image, _oblique

DIRECTIONS = [None, np.diag([-1.0, -1.0, 1.0]).ravel().tolist(), _oblique()]
LO, HI = np.array([4, 10, 12]), np.array([9, 21, 30])  # z y x, inclusive


def _voxel_faces_lps(img, lo, hi):
    """The physical corners of a box's outer voxel faces (all eight), in LPS."""
    corners = np.array(np.meshgrid(*zip(lo - 0.5, hi + 0.5), indexing="ij")).reshape(3, -1).T
    return index_to_physical(img, corners)


@pytest.mark.parametrize("direction", DIRECTIONS)
class TestBoxTable:
    def test_index_rows_are_inclusive_ijk(self, direction):
        img = _image(direction)
        rows = [{"lesion": 3, "coordinates": "index", "min": LO[::-1].tolist(), "max": HI[::-1].tolist()}]
        (r,) = records_from_rows(rows, img, "c", "t.tsv")
        assert r["index_lo"] == LO.tolist() and r["index_hi"] == HI.tolist() and r["lesion"] == 3

    def test_own_records_round_trip_through_lps_and_ras(self, direction):
        img = _image(direction)
        (record,) = box_records([(LO, HI)], img)
        if direction is None or direction == DIRECTIONS[1]:  # axis-aligned: voxel-centre corners are exact
            a, b = np.array(record["corners_lps_mm"])
            for system, flip in (("lps_mm", [1, 1, 1]), ("ras_mm", [-1, -1, 1])):
                rows = [{"lesion": 1, "coordinates": system, "min": (a * flip).tolist(), "max": (b * flip).tolist()}]
                (r,) = records_from_rows(rows, img, "c", "t.tsv")
                assert r["index_lo"] == LO.tolist() and r["index_hi"] == HI.tolist()

    def test_physical_box_takes_the_voxels_whose_centres_lie_inside(self, direction):
        img = _image(direction)
        faces = _voxel_faces_lps(img, LO, HI)
        rows = [{"lesion": 1, "coordinates": "lps_mm", "min": faces.min(0).tolist(), "max": faces.max(0).tolist()}]
        (r,) = records_from_rows(rows, img, "c", "t.tsv")
        lo, hi = np.array(r["index_lo"]), np.array(r["index_hi"])
        assert np.all(lo <= LO) and np.all(hi >= HI)  # the LPS hull of an oblique box is larger
        if direction != DIRECTIONS[2]:
            assert lo.tolist() == LO.tolist() and hi.tolist() == HI.tolist()

    def test_partly_outside_is_clipped(self, direction):
        img = _image(direction)
        rows = [{"lesion": 1, "coordinates": "index", "min": [-5, -5, -5], "max": [10, 10, 10]}]
        (r,) = records_from_rows(rows, img, "c", "t.tsv")
        assert r["index_lo"] == [0, 0, 0] and r["index_hi"] == [10, 10, 10]


def test_read_box_table_validates(tmp_path):
    good = pd.DataFrame({"case": ["a", "a", "b"], "lesion": [1, 2, 1], "coordinates": ["index", "index", "lps_mm"],
                         "x_min": [1, 5, -3.5], "y_min": [1, 5, 2], "z_min": [1, 5, 0],
                         "x_max": [3, 8, 4], "y_max": [3, 8, 9], "z_max": [3, 8, 7]})
    good.to_csv(tmp_path / "boxes.tsv", sep="\t", index=False)
    table = read_box_table(tmp_path / "boxes.tsv")
    assert [r["lesion"] for r in box_rows(table, "a")] == [1, 2] and box_rows(table, "c") == []
    good.assign(coordinates="voxels").to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="coordinates must be one of"):
        read_box_table(tmp_path / "bad.tsv")
    good.drop(columns="z_max").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="z_max"):
        read_box_table(tmp_path / "short.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"box table .*empty.csv is not a CSV table"):
        read_box_table(tmp_path / "empty.csv")
    (tmp_path / "ragged.tsv").write_text("case\tlesion\na\t1\nb\t1\t2\t3\n")
    with pytest.raises(ValueError, match=r"box table .*ragged.tsv is not a TSV table"):
        read_box_table(tmp_path / "ragged.tsv")


def _slicer_roi(center, size, system="RAS", orientation=None, units="mm"):
    markup = {"type": "ROI", "coordinateSystem": system, "coordinateUnits": units, "roiType": "Box",
              "center": list(center), "size": list(size)}
    if orientation is not None:
        markup["orientation"] = list(np.asarray(orientation).ravel())
    return markup


class TestSlicerRoi:
    def test_ras_box_maps_to_the_same_voxels_as_lps(self, tmp_path):
        img = _image(np.diag([-1.0, -1.0, 1.0]).ravel().tolist())
        faces = _voxel_faces_lps(img, LO, HI)
        centre_lps, size = faces.mean(0), faces.max(0) - faces.min(0)
        centre_ras = centre_lps * [-1, -1, 1]
        doc = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
               "markups": [_slicer_roi(centre_ras, size, "RAS"), _slicer_roi(centre_lps, size, "LPS"),
                           {"type": "Fiducial", "controlPoints": [{"position": [0, 0, 0]}]}]}
        (tmp_path / "r.mrk.json").write_text(json.dumps(doc))
        rows = read_slicer_rois(tmp_path / "r.mrk.json")
        assert [r["lesion"] for r in rows] == [1, 2]  # the fiducial is not a box
        for r in records_from_rows(rows, img, "c", "r.mrk.json"):
            assert r["index_lo"] == LO.tolist() and r["index_hi"] == HI.tolist()

    def test_rotated_roi_and_micrometres(self, tmp_path):
        angle = np.deg2rad(90)
        rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        doc = {"markups": [_slicer_roi([1000, 2000, 3000], [4000, 2000, 6000], "LPS", rot, "um")]}
        (tmp_path / "r.mrk.json").write_text(json.dumps(doc))
        (row,) = read_slicer_rois(tmp_path / "r.mrk.json")
        # 90 degrees about z swaps the x and y extents; um -> mm
        assert np.allclose(row["min"], [0.0, 0.0, 0.0]) and np.allclose(row["max"], [2.0, 4.0, 6.0])

    def test_no_roi_is_an_error(self, tmp_path):
        (tmp_path / "r.mrk.json").write_text(json.dumps({"markups": []}))
        with pytest.raises(ValueError, match="no ROI markup"):
            read_slicer_rois(tmp_path / "r.mrk.json")


def test_real_ct_ras_round_trip(shared_dir, tmp_path):
    """Real abdominal CT stored RAS (3 mm): a Slicer ROI drawn around the left kidney in RAS
    selects the kidney's voxels, and the ROI crop maps back onto the CT's exact grid."""
    from boxseg.geometry import to_original_grid
    from boxseg.io import array_like, same_grid
    from boxseg.preprocess import crop_roi

    ct = sitk.ReadImage(str(shared_dir / "data/totalseg-example/ct.nii.gz"))
    kidney = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_dir / "data/totalseg-example/kidney_left.nii.gz"))) > 0
    idx = np.argwhere(kidney)
    faces_lps = _voxel_faces_lps(ct, idx.min(0), idx.max(0))
    centre_ras = faces_lps.mean(0) * [-1, -1, 1]
    doc = {"markups": [_slicer_roi(centre_ras, faces_lps.max(0) - faces_lps.min(0), "RAS")]}
    (tmp_path / "kidney.mrk.json").write_text(json.dumps(doc))
    (record,) = records_from_rows(read_slicer_rois(tmp_path / "kidney.mrk.json"), ct, "ts", "kidney.mrk.json")
    assert record["index_lo"] == idx.min(0).tolist() and record["index_hi"] == idx.max(0).tolist()
    label = array_like(kidney.astype(np.uint8), ct)
    roi, _, _ = crop_roi("ts", ct, None, [record], spacing_mm=(2.0, 2.0, 2.0), roi_size_mm=(160, 120, 120),
                         window_hu=(-200, 500), tumor_values=(1,), organ_values=())
    from boxseg.preprocess import lesion_on_grid

    back = to_original_grid(sitk.Cast(lesion_on_grid(label, roi, (1,)), sitk.sitkFloat32), ct) > 0.5
    assert same_grid(array_like(back.astype(np.uint8), ct), ct)
    dsc = 2 * (back & kidney).sum() / (back.sum() + kidney.sum())
    assert dsc > 0.9, dsc


@pytest.mark.parametrize("direction", [None, np.diag([-1.0, -1.0, 1.0]).ravel().tolist(), _oblique()])
def test_boxes_written_as_slicer_markups_read_back_as_the_same_boxes(tmp_path, direction):
    """The review file: each box as a Slicer ROI on the image's axes, its faces the corner
    voxels' outer edges, so Slicer shows the box's own voxels; read back, the same box."""
    import json

    from boxseg.boxes import read_slicer_rois, records_from_rows, slicer_markups

    image = _image(direction)
    records = [{"lesion": 1, "index_lo": [3, 5, 7], "index_hi": [10, 20, 30]},
               {"lesion": 4, "index_lo": [0, 0, 0], "index_hi": [2, 3, 4]}]
    path = tmp_path / "boxes.mrk.json"
    path.write_text(json.dumps(slicer_markups(records, image)))
    back = records_from_rows(read_slicer_rois(path), image, "c1", path)
    if direction is None or direction == np.diag([-1.0, -1.0, 1.0]).ravel().tolist():
        assert [(r["index_lo"], r["index_hi"]) for r in back] == [(r["index_lo"], r["index_hi"]) for r in records]
    else:  # oblique: Slicer's ROI is exact; the reader takes its axis-aligned hull, which holds the box
        for r, b in zip(records, back):
            assert all(bl <= rl for bl, rl in zip(b["index_lo"], r["index_lo"]))
            assert all(bh >= rh for bh, rh in zip(b["index_hi"], r["index_hi"]))
    roi = json.loads(path.read_text())["markups"][0]
    assert roi["type"] == "ROI" and roi["coordinateSystem"] == "LPS" and roi["orientation"] == list(image.GetDirection())
