"""Where research mode places a case's ROI (preprocess.roi_from): on the boxes, as a user's
boxes place it, or on the label's lesion-bearing organ (the paper's kidney crop); and the
post-processing that goes with each."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from boxseg.postprocess import placement_of, postprocess_mask
from boxseg.steps.preprocess import placement, preprocess_case


def _case(tmp_path, organ_x=(4, 60)):
    """A lesion (2) at one end of a long organ (1): the organ's centre lies far from the box's."""
    label = np.zeros((32, 32, 64), np.uint8)
    label[10:22, 10:22, organ_x[0]:organ_x[1]] = 1
    label[12:20, 12:20, 48:56] = 2
    hu = np.where(label > 0, 60, -40).astype(np.int16)
    paths = {}
    for name, array in (("image", hu), ("label", label)):
        image = sitk.GetImageFromArray(array)
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    return paths


def _preprocess(tmp_path, paths, roi_from):
    out = {k: tmp_path / f"{roi_from}_{k}" for k in ("boxes.json", "roi.nii.gz", "roi_label.nii.gz", "geometry.json")}
    preprocess_case("c1", paths["image"], paths["label"], *out.values(), margin_mm=2.0, roi_from=roi_from,
                    spacing_mm=(1, 1, 1), roi_size_mm=(24, 24, 24), window_hu=(-200, 500), tumor_values=[2], organ_values=[1])
    return {k.split(".")[0]: v for k, v in out.items()}


def test_boxes_place_the_roi_on_the_box_without_reading_the_label(tmp_path):
    paths = _case(tmp_path)
    on_boxes = _preprocess(tmp_path, paths, "boxes")
    geometry = json.loads(on_boxes["geometry"].read_text())
    record = json.loads(on_boxes["boxes"].read_text())
    assert record["placement"] == "boxes"
    box = record["boxes"][0]
    centre_xyz = (np.asarray(box["index_lo"]) + np.asarray(box["index_hi"]))[::-1] / 2.0  # index (z y x) -> LPS (unit grid)
    assert np.allclose(geometry["roi_centre_lps_mm"], centre_xyz, atol=0.5)
    # another organ in the label moves nothing: the label is not read to place the ROI
    other = tmp_path / "other"
    other.mkdir()
    moved = _preprocess(other, _case(other, organ_x=(40, 64)), "boxes")
    assert json.loads(moved["geometry"].read_text())["roi_centre_lps_mm"] == geometry["roi_centre_lps_mm"]
    on_organ = _preprocess(tmp_path, paths, "organ")
    organ_centre = json.loads(on_organ["geometry"].read_text())["roi_centre_lps_mm"]
    assert organ_centre[0] < geometry["roi_centre_lps_mm"][0] - 5  # towards the organ's centre (x 32), the box still inside
    assert json.loads(on_organ["boxes"].read_text())["placement"] == "organ"
    for out in (on_boxes, on_organ):  # the lesion is on both ROIs, whole
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(out["roi_label"]))).sum() == 8 * 8 * 8


def test_placement_follows_where_the_boxes_came_from():
    assert placement("label", "boxes") == "boxes" and placement("label", "organ") == "organ"
    assert placement("file", "organ") == "boxes" and placement("table", "organ") == "boxes"  # a user's boxes always
    assert placement("none", "boxes") == "organ"  # no box: the organ in the label places it
    with pytest.raises(ValueError, match="unknown ROI placement"):
        placement("label", "kidney")
    assert placement_of({"source": "label", "boxes": []}) == "organ"  # records written before placements were recorded
    assert placement_of({"source": "file", "boxes": []}) == "boxes"


def test_post_processing_per_box_on_the_users_path_and_overall_on_the_organ():
    image = sitk.GetImageFromArray(np.zeros((10, 10, 30), np.uint8))
    mask = np.zeros((10, 10, 30), bool)
    mask[2:8, 2:8, 2:8] = True  # a large lesion in box 1
    mask[4:6, 4:6, 20:22] = True  # a small one in box 2
    mask[4:5, 4:5, 26:27] = True  # a speck in box 2
    boxes = [{"lesion": 1, "index_lo": [1, 1, 1], "index_hi": [8, 8, 8]},
             {"lesion": 2, "index_lo": [1, 1, 18], "index_hi": [8, 8, 28]}]
    record = {"source": "label", "placement": "boxes", "boxes": boxes}
    kept = postprocess_mask(mask, record, image, "largest_component")
    assert kept.sum() == 216 + 8  # each box's largest component: both lesions, not the speck
    assert postprocess_mask(mask, record, image, "largest_component", "organ").sum() == 216  # the largest overall
    assert postprocess_mask(mask, {**record, "placement": "organ"}, image, "largest_component").sum() == 216


def test_a_test_case_without_boxes_from_its_label_gets_no_second_row(tmp_path):
    """A labelled test case with no lesion (its boxes: none) or a user's boxes has nothing to
    place the other way: its second-row file holds the header only, and the summary skips it."""
    import pandas as pd

    from boxseg.report import summarise_metrics
    from boxseg.steps.evaluate import METRIC_COLUMNS, evaluate_other_roi

    for source in ("none", "file"):
        boxes = tmp_path / f"{source}.json"
        boxes.write_text(json.dumps({"case": "c1", "source": source, "boxes": []}))
        out = tmp_path / f"{source}.tsv"
        evaluate_other_roi("c1", tmp_path / "absent.nii.gz", tmp_path / "absent.nii.gz", boxes, tmp_path / "absent.pt", out,
                           preprocess={}, tumor_values=[2], organ_values=[1])
        assert out.read_text().split() == METRIC_COLUMNS
    own = tmp_path / "own.tsv"
    pd.DataFrame([{**dict.fromkeys(METRIC_COLUMNS, 0.5), "case": "c1", "method": "weak", "roi": "boxes",
                   "postprocess": "none"}]).to_csv(own, sep="\t", index=False)
    summary = summarise_metrics([own], tmp_path / "m.tsv", tmp_path / "s.tsv", other_roi_paths=[tmp_path / "none.tsv"],
                                out_other_roi=tmp_path / "mo.tsv")
    assert set(summary["scored"]) == {"run"} and (summary["n"] == 1).all()
