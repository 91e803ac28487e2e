"""Constrained-CNN baseline: scribbles, partial cross-entropy, size loss."""

import numpy as np
import pytest
import torch

from boxseg.baselines import IGNORE, scribbles_from_label
from boxseg.losses import size_loss, weighted_cross_entropy
from boxseg.metrics import dice
from boxseg.network import predict_probability
from boxseg.training import TrainSettings, train
from tests.conftest import sphere


def test_scribbles_are_inside_the_lesion_on_every_lesion_slice():
    lesion = sphere((12, 30, 30), (6, 15, 15), 5.0, (2.0, 1.0, 1.0))
    s = scribbles_from_label(lesion, (2.0, 1.0, 1.0), erosion_mm=2.0)
    assert set(np.unique(s)) == {1, IGNORE}
    assert lesion[s == 1].all()
    assert ((s == 1).any(axis=(1, 2)) == lesion.any(axis=(1, 2))).all()  # even the tiny top and bottom slices
    assert (s == 1).sum() < 0.5 * lesion.sum()


def test_partial_cross_entropy_counts_labelled_voxels_only():
    logits = torch.randn(1, 2, 4, 4, 4)
    target = torch.full((1, 4, 4, 4), IGNORE, dtype=torch.int64)
    target[0, 1, 1, 1], target[0, 2, 2, 2] = 1, 0
    loss = weighted_cross_entropy(logits, target, (1.0, 1.0))
    logp = torch.log_softmax(logits, 1)
    expected = -(logp[0, 1, 1, 1, 1] + logp[0, 0, 2, 2, 2]) / 2
    assert torch.isclose(loss, expected)


def test_size_loss_is_zero_inside_the_bounds_and_grows_outside():
    logits = torch.zeros(1, 2, 4, 4, 4)  # p = 0.5 everywhere: S = 32
    assert size_loss(logits, torch.tensor([32.0]), 0.1).item() == 0.0
    small, large = size_loss(logits, torch.tensor([20.0]), 0.1), size_loss(logits, torch.tensor([10.0]), 0.1)
    assert 0 < small.item() < large.item()
    assert np.isclose(large.item(), (32 - 11) ** 2 / 64**2)


def test_constrained_cnn_learns_a_sphere_from_scribbles_and_size(tmp_path):
    rng = np.random.default_rng(0)
    images, targets, sizes = [], [], []
    for i in range(3):
        lesion = sphere((16, 24, 24), (8, 12 + 2 * i, 12 - 2 * i), 5.0)
        images.append((0.3 + 0.4 * lesion + rng.normal(0, 0.03, lesion.shape)).astype(np.float32))
        targets.append(scribbles_from_label(lesion, (1.0, 1.0, 1.0), erosion_mm=2.0).astype(np.int64))
        sizes.append(lesion)
    settings = TrainSettings(steps=120, batch_size=2, patch_size=(16, 16, 16), features=(4, 8), learning_rate=0.01,
                             decay_rate=0.5, decay_steps=100, class_weights=(1.0, 1.0), seed=0, steps_per_epoch=20,
                             checkpoint_every=0, intensity_jitter=0.0, size_loss_weight=50.0)
    model = train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv", loss="ccnn", extras={"size": sizes})
    model.eval()
    prob = predict_probability(model, images[0], settings.patch_size)
    assert dice(prob > 0.5, sizes[0]) > 0.6  # far more than the scribbles alone (they are < half the lesion)


class TestSDI:
    def _case(self):
        rng = np.random.default_rng(2)
        lesion = sphere((10, 32, 32), (5, 16, 16), 6.0, (2.0, 1.0, 1.0))
        image = (0.3 + 0.3 * lesion + rng.normal(0, 0.02, lesion.shape)).astype(np.float32)
        return image, lesion

    def test_slice_boxes_cover_each_lesion_slice_with_the_margin(self):
        from boxseg.baselines import box_map, slice_boxes

        _, lesion = self._case()
        boxes = slice_boxes(lesion, (2.0, 1.0, 1.0), margin_mm=2.0)
        assert sorted({b[0] for b in boxes}) == list(np.flatnonzero(lesion.any(axis=(1, 2))))
        covered = box_map(lesion.shape, boxes) > 0
        assert covered[lesion].all() and covered.sum() > lesion.sum()

    def test_initial_labels_core_agreeing_with_grabcut_ignore_in_box_background_outside(self):
        from boxseg.baselines import box_map, sdi_initial_labels, slice_boxes

        image, lesion = self._case()
        boxes = slice_boxes(lesion, (2.0, 1.0, 1.0), margin_mm=2.0)
        labels = sdi_initial_labels(image, boxes, (2.0, 1.0, 1.0), device="cpu")
        inside = box_map(lesion.shape, boxes) > 0
        assert (labels[~inside] == 0).all() and set(np.unique(labels[inside])) == {1, IGNORE}
        assert lesion[labels == 1].mean() > 0.95  # the core is lesion

    def test_relabel_takes_the_prediction_inside_boxes_or_falls_back(self):
        from boxseg.baselines import sdi_relabel

        initial = np.zeros((1, 10, 10), np.uint8)
        initial[0, 2:8, 2:8] = IGNORE
        initial[0, 4:6, 4:6] = 1
        boxes = [(0, 2, 2, 7, 7)]
        prob = np.zeros((1, 10, 10), np.float32)
        prob[0, 3:7, 3:7] = 0.9
        prob[0, 0, 0] = 0.9  # outside the box: dropped
        out = sdi_relabel(prob, boxes, initial)
        assert out[0, 3:7, 3:7].all() and out.sum() == 16
        assert np.array_equal(sdi_relabel(np.zeros_like(prob), boxes, initial), initial)

    def test_two_d_network_trains_and_predicts_every_slice(self, tmp_path):
        image, lesion = self._case()
        settings = TrainSettings(steps=30, batch_size=4, patch_size=(1, 16, 16), features=(4, 8), learning_rate=0.01,
                                 decay_rate=0.5, decay_steps=30, class_weights=(0.2, 1.0), seed=0, steps_per_epoch=10,
                                 checkpoint_every=0, intensity_jitter=0.0, spatial_dims=2)
        train([image], [lesion.astype(np.int64)], settings, tmp_path / "m.pt", tmp_path / "l.tsv")
        from boxseg.network import load_model

        model, patch = load_model(tmp_path / "m.pt")
        prob = predict_probability(model, image, patch, flip_tta=True)
        assert prob.shape == image.shape and dice(prob > 0.5, lesion) > 0.5

    @pytest.mark.parametrize("change", ["none", "settings", "data"])
    def test_kept_rounds_are_reused_only_for_the_same_settings_and_data(self, tmp_path, monkeypatch, change):
        """An SDI job killed after round 0 keeps that round's model; its rerun reuses it only
        when nothing it trains on changed, and then ends exactly as a run from scratch."""
        from dataclasses import replace

        from boxseg import baselines, network, training
        from boxseg.baselines import sdi_initial_labels, slice_boxes

        image, lesion = self._case()
        spacing = (2.0, 1.0, 1.0)
        boxes = slice_boxes(lesion, spacing, margin_mm=2.0)
        initial = sdi_initial_labels(image, boxes, spacing, device="cpu").astype(np.int64)
        settings = TrainSettings(steps=16, batch_size=2, patch_size=(1, 16, 16), features=(4, 8), learning_rate=0.01,
                                 decay_rate=0.5, decay_steps=16, class_weights=(0.2, 1.0), seed=0, steps_per_epoch=4,
                                 checkpoint_every=4, intensity_jitter=0.0, spatial_dims=2)
        killed_settings = replace(settings, learning_rate=0.05) if change == "settings" else settings
        killed_initial = np.where(lesion & (initial == IGNORE), 1, initial) if change == "data" else initial
        assert change != "data" or not np.array_equal(killed_initial, initial)

        preprocessing = {"spacing_mm": [2.0, 1.0, 1.0], "window_hu": [-200.0, 500.0], "placement": ["boxes"]}

        def run(directory, settings, initial):
            directory.mkdir(exist_ok=True)
            baselines.train_sdi([image], [initial], [boxes], settings, 2, directory / "m.pt", directory / "l.tsv", "cpu", directory / "ckpt.pt",
                                preprocessing=preprocessing)
            return network.load_model(directory / "m.pt")[0].state_dict()

        class Killed(Exception):
            pass

        def kill(*args, **kwargs):
            raise Killed

        with monkeypatch.context() as patch:  # killed between round 0 and round 1
            patch.setattr(baselines, "sdi_relabel", kill)
            with pytest.raises(Killed):
                run(tmp_path / "rerun", killed_settings, killed_initial)
        assert (tmp_path / "rerun" / "ckpt.pt.round0.pt").exists()
        calls = []
        real_train = training.train
        monkeypatch.setattr(training, "train", lambda *a, **k: calls.append(a[0]) or real_train(*a, **k))
        rerun = run(tmp_path / "rerun", settings, initial)
        assert len(calls) == (1 if change == "none" else 2)  # round 0 reused only when unchanged
        monkeypatch.setattr(training, "train", real_train)
        fresh = run(tmp_path / "fresh", settings, initial)
        assert rerun.keys() == fresh.keys() and all(torch.equal(rerun[k], fresh[k]) for k in fresh)
        assert network.model_preprocessing(tmp_path / "fresh" / "m.pt") == preprocessing  # the last round's model keeps it
        assert sorted(p.name for p in (tmp_path / "rerun").iterdir()) == ["l.tsv", "m.pt"]
