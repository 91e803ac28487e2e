"""The information rule: nothing derived from the true lesion reaches the method, and what
stage 1 does instead (estimating each box's looseness from the image)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from boxseg.boxes.prior import estimate_box_slack
from boxseg.convcrf import CRFParams
from boxseg.io import CaseError
from boxseg.metrics import dice
from boxseg.stage1 import pseudo_mask_from_boxes
from boxseg.steps.preprocess import preprocess_case
from boxseg.steps.pseudo_mask import pseudo_mask_case
from tests.conftest import sphere

STAGE1 = CRFParams(window_shape="manhattan", prior_weight=3.0, weight_appearance=0.3, prior_softness=0.2,
                   intensity_weight=1.0, slack_profile_fraction=0.1, slack_deadband_mm=1.0, slack_share=2)


def _sphere_case(tmp_path, margin_mm):
    """A bright sphere (radius 9 mm) in plain tissue, its research-mode boxes and ROI."""
    lesion = sphere((24, 48, 48), (12, 24, 24), 9.0, (2.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    hu = np.where(lesion, 150, -20) + rng.normal(0, 15, lesion.shape)
    paths = {}
    for name, array in (("image", hu.astype(np.int16)), ("label", (lesion * 2).astype(np.uint8))):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 2.0))
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    out = {k: tmp_path / v for k, v in (("boxes", "boxes.json"), ("roi", "roi.nii.gz"), ("roi_label", "roi_label.nii.gz"),
                                        ("geometry", "geometry.json"))}
    preprocess_case("c1", paths["image"], paths["label"], out["boxes"], out["roi"], out["roi_label"], out["geometry"],
                    margin_mm=margin_mm, spacing_mm=(1, 1, 1), roi_size_mm=(64, 64, 64), window_hu=(-200, 500),
                    tumor_values=[2], organ_values=[1])
    return out


def test_a_label_derived_field_cannot_reach_the_prior(tmp_path):
    """Research mode writes only what a drawn box carries; a boxes record with anything more
    (here each face's true slack, as research mode once told stage 1) is refused."""
    out = _sphere_case(tmp_path, 6.0)
    record = json.loads(out["boxes"].read_text())
    assert record["source"] == "label" and record["slack_mm"] == 0.0
    assert set(record["boxes"][0]) == {"lesion", "index_lo", "index_hi", "corners_lps_mm"}
    pseudo_mask_case("c1", out["roi"], out["boxes"], out["geometry"], tmp_path / "pm.nii.gz", crf_params=STAGE1.to_dict())
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "pm.nii.gz"))).any()
    for leak in ({"slack_mm_lo": [6.0, 6.0, 6.0], "slack_mm_hi": [6.0, 6.0, 6.0]}, {"volume_ml": 3.1}, {"centre_lps_mm": [0, 0, 0]}):
        leaked = tmp_path / "leaked.json"
        leaked.write_text(json.dumps({**record, "boxes": [{**record["boxes"][0], **leak}]}))
        with pytest.raises(CaseError, match="which a drawn box does not") as err:
            pseudo_mask_case("c1", out["roi"], leaked, out["geometry"], tmp_path / "leak.nii.gz", crf_params=STAGE1.to_dict())
        assert "case c1" in str(err.value) and str(leaked) in str(err.value) and min(leak) in str(err.value)
        assert not (tmp_path / "leak.nii.gz").exists()


def test_the_slack_estimate_recovers_a_known_slack():
    """A 6 mm loose box around a sphere whose solution is the sphere itself: each face is moved
    in to within the deadband plus the profile's cut of the sphere's tips (one voxel)."""
    spacing = (2.0, 1.0, 1.0)
    obj = sphere((24, 48, 48), (12, 24, 24), 9.0, spacing)
    idx = np.argwhere(obj)
    t_lo, t_hi = idx.min(0).astype(float), idx.max(0) + 1.0
    box = (t_lo - [3, 6, 6], t_hi + [3, 6, 6])
    lo, hi = estimate_box_slack(obj, box, box, spacing, STAGE1)
    told = np.r_[lo - box[0], box[1] - hi] * np.tile(spacing, 2)  # mm each face was moved in
    assert np.all(np.abs(told - 6.0) <= 2.0 + 1e-6), told
    tight = estimate_box_slack(obj, (t_lo, t_hi), (t_lo, t_hi), spacing, STAGE1)  # a tight box stays (deadband)
    assert np.all(np.abs(np.r_[tight[0] - t_lo, t_hi - tight[1]]) <= 1.0 + 1e-6)
    inner = (box[0] + [1, 2, 2], box[1] - [1, 2, 2])  # never less than the stated slack moves the faces in
    assert np.all(estimate_box_slack(np.zeros_like(obj), box, inner, spacing, STAGE1)[0] == inner[0])


def test_estimating_the_slack_shrinks_a_loose_box_onto_its_lesion():
    """Told nothing, a 6 mm loose box: the estimate brings the pseudo-mask onto the lesion;
    a tight box keeps its mask."""
    spacing = (2.0, 1.0, 1.0)
    obj = sphere((24, 48, 48), (12, 24, 24), 9.0, spacing)
    image = np.where(obj, 0.55, 0.3).astype(np.float32) + np.random.default_rng(0).normal(0, 0.03, obj.shape).astype(np.float32)
    idx = np.argwhere(obj)
    t_lo, t_hi = idx.min(0).astype(float), idx.max(0) + 1.0
    scores = {}
    for name, box in (("tight", (t_lo, t_hi)), ("loose", (t_lo - [3, 6, 6], t_hi + [3, 6, 6]))):
        for rounds in (0, 2):
            mask = pseudo_mask_from_boxes(image, [box], spacing, replace(STAGE1, estimate_slack=rounds), device="cpu") > 0.5
            scores[name, rounds] = dice(mask, obj)
    assert scores["loose", 2] > scores["loose", 0] + 0.1, scores
    assert scores["tight", 2] > scores["tight", 0] - 0.01 and scores["tight", 2] > 0.95, scores


def test_quick_estimate_solutions_leave_the_last_solution_in_full():
    """``estimate_iterations``: the solutions that only serve the estimate run fewer
    iterations, the pseudo-mask never does. A tight box whose estimate moves no face gets
    exactly the solution it gets without the estimate; a loose box still shrinks onto its lesion."""
    spacing = (2.0, 1.0, 1.0)
    obj = sphere((24, 48, 48), (12, 24, 24), 9.0, spacing)
    image = np.where(obj, 0.55, 0.3).astype(np.float32) + np.random.default_rng(0).normal(0, 0.03, obj.shape).astype(np.float32)
    idx = np.argwhere(obj)
    tight = (idx.min(0).astype(float), idx.max(0) + 1.0)
    quick = replace(STAGE1, estimate_slack=2, estimate_iterations=1)
    assert estimate_box_slack(pseudo_mask_from_boxes(image, [tight], spacing, STAGE1, device="cpu") > 0.5, tight, tight, spacing,
                              STAGE1)[0].tolist() == tight[0].tolist()  # the estimate moves no face of this box
    assert np.array_equal(pseudo_mask_from_boxes(image, [tight], spacing, quick, device="cpu"),
                          pseudo_mask_from_boxes(image, [tight], spacing, STAGE1, device="cpu"))
    loose = (tight[0] - [3, 6, 6], tight[1] + [3, 6, 6])
    told_nothing = dice(pseudo_mask_from_boxes(image, [loose], spacing, STAGE1, device="cpu") > 0.5, obj)
    assert dice(pseudo_mask_from_boxes(image, [loose], spacing, quick, device="cpu") > 0.5, obj) > told_nothing + 0.1
