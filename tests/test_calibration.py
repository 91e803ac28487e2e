"""The decision threshold chosen on held-out training cases (#49): the choice on hand-made
probabilities, the record a trained model carries, and inference with ``calibrated``."""

import numpy as np
import pytest
import torch

from boxseg.calibration import THRESHOLDS, calibrate, choose_threshold, resolve_threshold, threshold_table
from boxseg.losses import IGNORE


def _cube(shape=(12, 12, 12)):
    target = np.zeros(shape, np.int64)
    target[3:9, 3:9, 3:9] = 1
    return target


def test_a_shy_model_gets_a_lower_threshold_and_its_volume_back():
    """Lesion voxels at 0.3, background at 0.02: nothing survives 0.5; the threshold nearest
    0.5 among those that separate the two is 0.25, where the volume is the target's."""
    target = _cube()
    probability = np.where(target == 1, 0.3, 0.02).astype(np.float32)
    record = calibrate([probability], [target])
    assert record["threshold"] == 0.25 and record["dsc"] == 1.0
    assert record["dsc_at_half"] == 0.0 and record["volume_ratio_at_half"] == 0.0 and record["volume_ratio"] == 1.0


def test_an_over_segmenting_model_gets_a_higher_threshold():
    target = _cube()
    probability = np.full(target.shape, 0.01, np.float32)
    probability[2:10, 2:10, 2:10] = 0.57  # a rim around the lesion that 0.5 keeps
    probability[target == 1] = 0.9
    record = calibrate([probability], [target])
    assert record["threshold"] == 0.6 and record["volume_ratio_at_half"] > 2  # the nearest to 0.5 of 0.6 ... 0.85


def test_without_evidence_the_threshold_stays_at_a_half():
    target = _cube()
    assert calibrate([target.astype(np.float32)], [target])["threshold"] == 0.5  # 0 / 1: every threshold ties


def test_unlabelled_voxels_do_not_vote():
    target = _cube()
    probability = np.where(target == 1, 0.7, 0.02).astype(np.float32)
    target_with_ignore = target.copy()
    probability[0] = 0.9  # a slab the model calls lesion ...
    target_with_ignore[0] = IGNORE  # ... that nobody labelled
    assert calibrate([probability], [target_with_ignore], ignore=IGNORE)["dsc_at_half"] == 1.0
    counted = calibrate([probability], [target])  # counted as background, it costs DSC at 0.5
    assert counted["dsc_at_half"] < 1.0 and counted["volume_ratio_at_half"] > 1.5


def test_the_table_covers_every_threshold_and_ties_go_to_the_middle():
    target = _cube()
    table = threshold_table([target.astype(np.float32)], [target])
    assert [row["threshold"] for row in table] == list(THRESHOLDS)
    assert choose_threshold([{"threshold": 0.3, "mean_dsc": 0.8}, {"threshold": 0.6, "mean_dsc": 0.8},
                             {"threshold": 0.9, "mean_dsc": 0.7}]) == 0.6


def test_the_setting_resolves_to_a_number_or_the_models_own():
    assert resolve_threshold(0.4, None) == 0.4
    assert resolve_threshold("calibrated", {"threshold": 0.35}) == 0.35
    with pytest.raises(ValueError, match="records no calibrated threshold"):
        resolve_threshold("calibrated", {})
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        resolve_threshold(1.0, None)


def test_a_model_trained_with_held_out_cases_records_its_threshold_and_inference_uses_it(tmp_path, monkeypatch):
    """Training with ``validation_cases`` writes the calibration into the model file;
    ``threshold: calibrated`` cuts there, and a model without one is refused in one line."""
    from boxseg.geometry import to_original_grid
    from boxseg.io import CaseError, read_array, read_image
    from boxseg.network import model_calibration, save_model
    from boxseg.steps.infer import predict_case
    from boxseg.training import TrainSettings, predict_cases, start_run, train, validation_split
    from tests.conftest import preprocessed_phantom
    from tests.test_training import TINY, _data

    images, targets = _data(3)
    settings = TrainSettings(**{**TINY, "steps": 4, "validation_cases": 1})
    import boxseg.training

    predicted = []  # the cases each prediction pass was given
    monkeypatch.setattr(boxseg.training, "predict_cases", lambda model, cases, *rest: predicted.append(len(cases))
                        or predict_cases(model, cases, *rest))
    trained = train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv")
    assert predicted == [1, 1]  # validated once, at the end: the held-out case and one training case, each once
    record = model_calibration(tmp_path / "m.pt")
    assert record["threshold"] in THRESHOLDS and record["cases"] == 1 and 0 <= record["dsc"] <= 1
    assert record["dsc"] >= record["dsc_at_half"]
    # the record is the final model's on its held-out case, as the log's last validation row
    held = validation_split(len(images), settings)[1]
    assert record == calibrate(predict_cases(trained, [images[i] for i in held], settings, torch.device("cpu")),
                               [targets[i] for i in held])
    last_row = (tmp_path / "l.tsv").read_text().splitlines()[-1].split("\t")
    assert float(last_row[-1]) == pytest.approx(record["dsc_at_half"], abs=1e-4)

    roi = preprocessed_phantom(tmp_path)
    model = start_run(TrainSettings(**TINY), torch.device("cpu")).model
    outputs = [tmp_path / f"{name}.nii.gz" for name in ("prob", "raw", "mask")]
    for threshold in (0.2, 0.3):
        save_model(model, TrainSettings(**TINY), tmp_path / "c.pt", calibration={"threshold": threshold})
        predict_case("c1", roi / "image.nii.gz", tmp_path / "img.nii.gz", tmp_path / "c.pt", tmp_path / "boxes.json", *outputs,
                     postprocess="none", threshold="calibrated", device="cpu")
        probability = to_original_grid(read_image(outputs[0]), read_image(tmp_path / "img.nii.gz"))
        assert np.array_equal(read_array(outputs[1], dtype=np.uint8)[0] > 0, probability > threshold)
    save_model(model, TrainSettings(**TINY), tmp_path / "plain.pt")
    with pytest.raises(CaseError, match="c1.*plain.pt.*records no calibrated threshold"):
        predict_case("c1", roi / "image.nii.gz", tmp_path / "img.nii.gz", tmp_path / "plain.pt", tmp_path / "boxes.json", *outputs,
                     threshold="calibrated", device="cpu")


def test_a_threshold_that_leaving_one_case_out_does_not_confirm_is_not_kept():
    """One shy case (lesion at 0.3) and one over-segmenting case (lesion 0.9 in a 0.3 rim):
    together 0.25 is best (the shy case's lesion back, the other's rim taken in), but each
    case scored at the threshold the other chooses is worse than at 0.5, so 0.5 stays."""
    target = _cube()
    shy = np.where(target == 1, 0.3, 0.02).astype(np.float32)
    greedy = np.full(target.shape, 0.01, np.float32)
    greedy[1:11, 1:11, 1:11] = 0.3
    greedy[target == 1] = 0.9
    record = calibrate([shy, greedy], [target, target])
    assert record["best"] == 0.25 and record["confirmed"] is False and record["threshold"] == 0.5
    assert record["loo_dsc"] < record["dsc_at_half"] == pytest.approx(0.5) and record["dsc"] == record["dsc_at_half"]


def test_a_threshold_every_case_agrees_on_is_confirmed():
    target = _cube()
    shy = [np.where(target == 1, p, 0.02).astype(np.float32) for p in (0.3, 0.28)]
    record = calibrate(shy, [target, target])
    assert record["confirmed"] is True and record["threshold"] == record["best"] == 0.25
    assert record["loo_dsc"] == 1.0 and record["dsc_at_half"] == 0.0
    assert calibrate(shy[:1], [target])["confirmed"] is None  # one case: nothing to leave out


def test_a_resumed_run_calibrates_on_its_final_model(tmp_path):
    """Validated every 2 steps, stopped after 3 and resumed from the checkpoint: the record is
    the final model's on the held-out case, not an earlier validation's."""
    from boxseg.network import model_calibration
    from boxseg.training import TrainSettings, predict_cases, train, validation_split
    from tests.test_training import TINY, _data

    images, targets = _data(3)
    settings = TrainSettings(**{**TINY, "steps": 6, "validation_cases": 1, "validate_every": 2})
    args = (images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv")
    train(*args, checkpoint_path=tmp_path / "c.pt", stop_after=3)
    assert not (tmp_path / "m.pt").exists() and (tmp_path / "c.pt").exists()
    trained = train(*args, checkpoint_path=tmp_path / "c.pt")
    held = validation_split(len(images), settings)[1]
    record = model_calibration(tmp_path / "m.pt")
    assert record == calibrate(predict_cases(trained, [images[i] for i in held], settings, torch.device("cpu")),
                               [targets[i] for i in held])
