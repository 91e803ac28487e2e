"""The training recipe's parts (#48): the network choice, schedules, the weight average, MONAI
augmentation, mixed precision and the validation split."""

import json

import numpy as np
import pytest
import torch

from boxseg.network import load_model, predict_probability
from boxseg.sampling import augment
from boxseg.training import TrainSettings, lr_factor, train, validation_split
from tests.conftest import sphere
from tests.test_training import TINY, _data

RECIPE = {"network": "dynunet", "lr_schedule": "cosine", "ema_decay": 0.9, "rotate_deg": 20.0, "scale_range": 0.1,
          "gamma_range": 0.3, "noise_std": 0.02, "validation_cases": 1, "validate_every": 4}


def test_a_dynunet_model_reloads_without_the_config(tmp_path):
    images, targets = _data(3)
    settings = TrainSettings(**{**TINY, **RECIPE, "features": (4, 8, 16), "patch_size": (8, 16, 16)})
    model = train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv", loss="dice_ce")
    loaded, patch = load_model(tmp_path / "m.pt")  # nothing but the file: its network and sizes are in it
    assert type(loaded).__name__ == "DynUNet" and patch == settings.patch_size
    model.eval()
    with torch.no_grad():
        assert np.allclose(predict_probability(loaded, images[0], patch), predict_probability(model, images[0], patch), atol=1e-6)


def test_the_loss_log_holds_train_and_held_out_dsc_at_validation_steps(tmp_path):
    images, targets = _data(3)
    settings = TrainSettings(**{**TINY, "steps": 8, **{k: RECIPE[k] for k in ("validation_cases", "validate_every")}})
    train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv")
    rows = [line.split("\t") for line in (tmp_path / "l.tsv").read_text().splitlines()]
    assert rows[0] == ["epoch", "step", "loss", "learning_rate", "train_dsc", "val_dsc"]
    scored = {int(r[1]) for r in rows[1:] if r[5]}
    assert scored == {4, 8} and all(0 <= float(r[5]) <= 1 for r in rows[1:] if r[5])


def test_the_validation_split_is_seeded_disjoint_and_leaves_training_cases():
    settings = TrainSettings(validation_cases=3, seed=5)
    fit, held = validation_split(10, settings)
    assert len(held) == 3 and not set(fit) & set(held) and sorted(fit + held) == list(range(10))
    assert validation_split(10, settings) == (fit, held) and validation_split(10, TrainSettings(validation_cases=3, seed=6)) != (fit, held)
    fit, held = validation_split(2, TrainSettings(validation_cases=5))
    assert len(fit) == 1 and len(held) == 1  # at least one case left to train on
    assert validation_split(4, TrainSettings()) == ([0, 1, 2, 3], [])


def test_augmentation_keeps_image_and_target_aligned():
    """A known shape survives a rotation and scaling: the image's bright voxels and the
    target are moved alike (image linear, target nearest)."""
    lesion = np.zeros((24, 24, 24), bool)
    lesion[6:18, 9:15, 4:20] = True  # an elongated box: any rotation moves it
    image = lesion.astype(np.float32)
    settings = TrainSettings(patch_size=(24, 24, 24), rotate_deg=30.0, scale_range=0.1)
    rng = np.random.default_rng(0)
    moved_image, moved_target = augment(rng, [image, lesion.astype(np.int64)], settings)
    assert moved_target.dtype == np.int64 and set(np.unique(moved_target)) <= {0, 1}
    moved = moved_target == 1
    assert (moved != lesion).sum() > 0.1 * lesion.sum()  # it did move
    overlap = 2 * ((moved_image > 0.5) & moved).sum() / ((moved_image > 0.5).sum() + moved.sum())
    assert overlap > 0.95


def test_augmentation_off_draws_nothing():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    out = augment(rng, [np.ones((4, 4, 4), np.float32)], TrainSettings())
    assert rng.bit_generator.state == state and np.array_equal(out[0], np.ones((4, 4, 4)))


@pytest.mark.parametrize("schedule, end", [("cosine", 0.0), ("poly", 0.0), ("exponential", 0.5 ** (300 / 200))])
def test_learning_rate_schedules(schedule, end):
    factor = lr_factor(TrainSettings(lr_schedule=schedule))
    assert factor(0) == 1.0 and factor(300) == pytest.approx(end)


def test_resume_with_the_whole_recipe_gives_the_same_weights(tmp_path):
    images, targets = _data(3)
    settings = TrainSettings(**{**TINY, **RECIPE, "network": "unet"})
    torch.use_deterministic_algorithms(True)
    straight = train(images, targets, settings, tmp_path / "a.pt", tmp_path / "a.tsv")
    ckpt = tmp_path / "ckpt.pt"
    train(images, targets, settings, tmp_path / "b.pt", tmp_path / "b.tsv", checkpoint_path=ckpt, stop_after=4)
    resumed = train(images, targets, settings, tmp_path / "b.pt", tmp_path / "b.tsv", checkpoint_path=ckpt)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()


def test_mixed_precision_trains_and_saves_float32_weights(tmp_path):
    images, targets = _data(2)
    settings = TrainSettings(**{**TINY, "mixed_precision": True, "checkpoint_every": 0})
    train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv")
    losses = [float(line.split("\t")[2]) for line in (tmp_path / "l.tsv").read_text().splitlines()[1:]]
    assert all(np.isfinite(losses))
    model, _ = load_model(tmp_path / "m.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_sphere_is_learnt_with_dice_ce(tmp_path):
    rng = np.random.default_rng(1)
    images, targets = [], []
    for i in range(3):
        lesion = sphere((16, 24, 24), (8, 12, 10 + 2 * i), 5.0)
        images.append((0.3 + 0.4 * lesion + rng.normal(0, 0.03, lesion.shape)).astype(np.float32))
        targets.append(lesion.astype(np.int64))
    settings = TrainSettings(steps=80, batch_size=2, patch_size=(16, 16, 16), features=(4, 8), learning_rate=0.01,
                             lr_schedule="cosine", steps_per_epoch=20, checkpoint_every=0, intensity_jitter=0.0, seed=0)
    model = train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv", loss="dice_ce")
    model.eval()
    prob = predict_probability(model, images[0], settings.patch_size)
    inter = ((prob > 0.5) & (targets[0] == 1)).sum()
    assert 2 * inter / ((prob > 0.5).sum() + targets[0].sum()) > 0.8


def test_a_model_records_its_preprocessing_and_inference_checks_it(tmp_path):
    """``model=`` under another config: a case preprocessed with another spacing or HU window
    than the model's training images fails with one line naming the model and the difference."""
    from boxseg.io import CaseError
    from boxseg.network import model_preprocessing, save_model
    from boxseg.steps.infer import predict_case
    from boxseg.training import start_run
    from tests.conftest import preprocessed_phantom

    roi = preprocessed_phantom(tmp_path)
    settings = TrainSettings(**TINY)
    model = start_run(settings, torch.device("cpu")).model
    outputs = [tmp_path / f"{name}.nii.gz" for name in ("prob", "raw", "mask")]
    for window, fails in (([-200.0, 500.0], False), ([-100.0, 300.0], True)):
        save_model(model, settings, tmp_path / "m.pt", {"spacing_mm": [4.0, 4.0, 4.0], "window_hu": window})
        assert model_preprocessing(tmp_path / "m.pt")["window_hu"] == window
        run = lambda: predict_case("c1", roi / "image.nii.gz", tmp_path / "img.nii.gz", tmp_path / "m.pt",
                                   tmp_path / "boxes.json", *outputs, device="cpu")
        if fails:
            with pytest.raises(CaseError, match=r"window_hu \[-100.0, 300.0\] at training, \[-200.0, 500.0\] here"):
                run()
        else:
            run()
            assert outputs[2].exists()


def test_a_model_records_where_its_rois_were_placed_and_inference_warns_on_others(tmp_path, caplog):
    """Training records the ROIs' placement and size from their geometry record; a case whose
    ROI was placed or sized otherwise is still predicted, with a warning naming both."""
    from boxseg.io import read_json
    from boxseg.network import model_preprocessing, save_model
    from boxseg.steps.infer import predict_case
    from boxseg.steps.train import _preprocessing
    from boxseg.training import start_run
    from tests.conftest import preprocessed_phantom

    roi = preprocessed_phantom(tmp_path)
    geometry = read_json(roi / "geometry.json")
    assert geometry["placement"] == "boxes" and geometry["roi_size_mm"] == [64.0, 64.0, 64.0]
    recorded = _preprocessing([str(roi / "image.nii.gz")])
    assert recorded == {"spacing_mm": [4.0, 4.0, 4.0], "window_hu": [-200.0, 500.0], "placement": ["boxes"],
                        "roi_size_mm": [64.0, 64.0, 64.0]}
    organ = tmp_path / "organ"  # a second training case whose ROI the organ placed: both placements recorded
    organ.mkdir()
    (organ / "geometry.json").write_text(json.dumps({**geometry, "placement": "organ"}))
    assert _preprocessing([str(roi / "image.nii.gz"), str(organ / "image.nii.gz")])["placement"] == ["boxes", "organ"]
    settings = TrainSettings(**TINY)
    model = start_run(settings, torch.device("cpu")).model
    outputs = [tmp_path / f"{name}.nii.gz" for name in ("prob", "raw", "mask")]
    for trained, warned in ((recorded, False), ({**recorded, "placement": ["boxes", "organ"]}, False),
                            ({**recorded, "placement": ["organ"], "roi_size_mm": [96.0, 80.0, 80.0]}, True)):
        save_model(model, settings, tmp_path / "m.pt", trained)
        assert model_preprocessing(tmp_path / "m.pt") == trained
        caplog.clear()
        with caplog.at_level("WARNING", logger="boxseg"):
            predict_case("c1", roi / "image.nii.gz", tmp_path / "img.nii.gz", tmp_path / "m.pt", tmp_path / "boxes.json",
                         *outputs, device="cpu")
        assert outputs[2].exists()
        message = "ROIs placed on the organ at training, on the boxes here; roi_size_mm [96.0, 80.0, 80.0] at training"
        assert (message in caplog.text) == warned
        assert any(r.levelname == "WARNING" for r in caplog.records) == warned


def test_box_losses_see_where_a_patch_holds_the_roi():
    """With a box map, every patch carries ``valid``: 1 on the ROI, 0 where it was padded or
    rotated in, so the box losses can tell a cut box from a whole one."""
    from boxseg.sampling import Cases, sample_batch

    image = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    target = np.zeros((20, 20, 20), np.int64)
    box_map = np.zeros((20, 20, 20), np.float32)
    box_map[5:15, 5:15, 5:15] = 1
    cases = Cases([image], [target], {"box_map": [box_map]}, 0.0)
    assert cases.names == ("target", "box_map", "valid")
    settings = TrainSettings(batch_size=1, patch_size=(24, 24, 24), features=(4, 8), rotate_deg=30.0)
    _, batch = sample_batch(np.random.default_rng(1), cases, settings, torch.device("cpu"))
    valid = batch["valid"][0]
    assert valid.shape == (24, 24, 24) and (valid == 0).any() and (valid == 1).any()  # padded beyond 20 voxels, rotated
