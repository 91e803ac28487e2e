import numpy as np
import pytest
import torch

from boxseg.losses import weighted_cross_entropy
from boxseg.network import load_model, predict_probability
from boxseg.training import TrainSettings, train
from tests.conftest import sphere

TINY = {"steps": 6, "batch_size": 2, "patch_size": (8, 16, 16), "features": (4, 8), "steps_per_epoch": 2, "checkpoint_every": 2, "seed": 3}


def _data(n=2):
    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(n):
        obj = sphere((12, 20, 20), (6, 10, 8 + 2 * i), 4.0)
        images.append((0.3 + 0.4 * obj + rng.normal(0, 0.05, obj.shape)).astype(np.float32))
        targets.append(obj.astype(np.uint8))
    return images, targets


class TestLoss:
    def test_vwce_equals_wce_when_v_is_one(self):
        torch.manual_seed(0)
        logits = torch.randn(2, 2, 4, 5, 6)
        target = torch.randint(0, 2, (2, 4, 5, 6))
        wce = weighted_cross_entropy(logits, target, (0.2, 1.0))
        vwce = weighted_cross_entropy(logits, target, (0.2, 1.0), torch.ones(2, 4, 5, 6))
        assert torch.equal(wce, vwce)

    def test_formula(self):
        logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]]).T.reshape(1, 2, 1, 1, 2)  # two voxels
        target = torch.tensor([1, 0]).reshape(1, 1, 1, 2)
        v = torch.tensor([3.0, 4.0]).reshape(1, 1, 1, 2)
        logp = torch.log_softmax(logits, 1).reshape(2, 2)
        expected = -(3.0 * 1.0 * logp[1, 0] + 4.0 * 0.2 * logp[0, 1]) / 2
        assert weighted_cross_entropy(logits, target, (0.2, 1.0), v).item() == pytest.approx(expected.item())


class TestTraining:
    def test_trains_saves_and_loads_weights_only(self, tmp_path, caplog):
        images, targets = _data()
        settings = TrainSettings(**{**TINY, "steps": 40, "learning_rate": 0.01})
        with caplog.at_level("INFO", logger="boxseg"):
            train(images, targets, settings, tmp_path / "m.pt", tmp_path / "loss.tsv")
        progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
        assert len(progress) == 20 and progress[-1].startswith("step 40/40, loss ") and "steps/s" in progress[0]
        assert progress[-1].endswith("0 min 00 s left")  # one line per epoch, the time left at the rate so far
        lines = (tmp_path / "loss.tsv").read_text().splitlines()
        assert lines[0] == "epoch\tstep\tloss\tlearning_rate" and len(lines) == 21
        first, last = float(lines[1].split("\t")[2]), float(lines[-1].split("\t")[2])
        assert last < first
        model, patch = load_model(tmp_path / "m.pt")
        prob = predict_probability(model, images[0], patch)
        assert prob.shape == images[0].shape and 0 <= prob.min() and prob.max() <= 1

    def test_resume_gives_the_same_weights(self, tmp_path):
        images, targets = _data()
        settings = TrainSettings(**TINY)
        torch.use_deterministic_algorithms(True)
        straight = train(images, targets, settings, tmp_path / "a.pt", tmp_path / "a.tsv")
        ckpt = tmp_path / "ckpt.pt"
        partial = train(images, targets, settings, tmp_path / "b.pt", tmp_path / "b.tsv", checkpoint_path=ckpt, stop_after=4)
        assert ckpt.exists() and not (tmp_path / "b.pt").exists()
        del partial
        resumed = train(images, targets, settings, tmp_path / "b.pt", tmp_path / "b.tsv", checkpoint_path=ckpt)
        for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
            assert torch.allclose(a, b, atol=1e-6), name
        assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()
        assert not ckpt.exists()

    @pytest.mark.parametrize("change", ["settings", "data"])
    def test_a_checkpoint_of_other_settings_or_data_is_not_resumed(self, tmp_path, change):
        # A job killed mid-way, then rerun after its hyperparameters or training labels changed,
        # must not continue the old run: it trains afresh, as a run without a checkpoint.
        images, targets = _data()
        settings = TrainSettings(**TINY)
        torch.use_deterministic_algorithms(True)
        ckpt = tmp_path / "ckpt.pt"
        train(images, targets, settings, tmp_path / "old.pt", tmp_path / "old.tsv", checkpoint_path=ckpt, stop_after=4)
        assert ckpt.exists()
        if change == "settings":
            settings = TrainSettings(**{**TINY, "learning_rate": 0.01})
        else:
            targets = [targets[0], np.roll(targets[1], 1, axis=2)]
        fresh = train(images, targets, settings, tmp_path / "a.pt", tmp_path / "a.tsv")
        rerun = train(images, targets, settings, tmp_path / "b.pt", tmp_path / "b.tsv", checkpoint_path=ckpt)
        for (name, a), (_, b) in zip(fresh.state_dict().items(), rerun.state_dict().items()):
            assert torch.equal(a, b), name
        assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()
        assert not ckpt.exists()

    def test_patch_size_must_fit_levels(self):
        with pytest.raises(ValueError, match="multiples of 4"):
            TrainSettings(patch_size=(10, 16, 16), features=(4, 8, 16))


TRAIN_SCRIPT = """
import sys, numpy as np, torch
from boxseg.device import configure_torch
from boxseg.training import TrainSettings, train
from tests.test_training import TINY, _data
configure_torch(1)
images, targets = _data()
settings = TrainSettings(**{**TINY, "steps": 400, "checkpoint_every": 5})
train(images, targets, settings, sys.argv[1], sys.argv[2], checkpoint_path=sys.argv[3] if len(sys.argv) > 3 else None)
"""


def test_sigterm_then_restart_gives_the_same_weights(tmp_path):
    """A real process killed with SIGTERM (as SLURM preemption does) and started again."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    run = lambda *a: subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, *map(str, a)], cwd=ROOT)
    assert run(tmp_path / "a.pt", tmp_path / "a.tsv").wait() == 0
    ckpt = tmp_path / "ckpt.pt"
    victim = run(tmp_path / "b.pt", tmp_path / "b.tsv", ckpt)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    victim.send_signal(signal.SIGTERM)
    assert victim.wait() != 0 and ckpt.exists() and not (tmp_path / "b.pt").exists()
    assert run(tmp_path / "b.pt", tmp_path / "b.tsv", ckpt).wait() == 0
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()


def test_foreground_sampling_puts_a_lesion_voxel_in_every_patch():
    from boxseg.sampling import random_patch

    rng = np.random.default_rng(0)
    image = np.zeros((40, 40, 40), np.float32)
    target = np.zeros((40, 40, 40), np.int64)
    target[30:32, 5:7, 33:35] = 1  # a tiny lesion in a corner
    foreground = np.argwhere(target > 0)
    hits = [random_patch(rng, [image, target], (12, 12, 12), 0.0, foreground, 1.0)[1].any() for _ in range(50)]
    assert all(hits)
    uniform = [random_patch(rng, [image, target], (12, 12, 12), 0.0, foreground, 0.0)[1].any() for _ in range(200)]
    assert sum(uniform) < 100


def test_dice_ce_is_dice_plus_cross_entropy():
    """The ``dice_ce`` loss: 1 - soft Dice of the lesion over the batch, plus plain cross-entropy."""
    from boxseg.losses import loss_function

    logits = torch.randn(2, 2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(2, 4, 5, 6, generator=torch.Generator().manual_seed(1)) > 0.7).long()
    p = torch.softmax(logits, 1)[:, 1]
    dice = (2 * (p * target).sum() + 1e-5) / (p.sum() + target.sum() + 1e-5)
    expected = 1 - dice + torch.nn.functional.cross_entropy(logits, target)
    value = loss_function("dice_ce")(logits, {"target": target}, TrainSettings())
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_loss_log_grows_as_training_goes(tmp_path):
    """One row per epoch appears while training runs; a resumed run starts from its history."""
    images, targets = _data()
    settings = TrainSettings(**TINY)
    ckpt = tmp_path / "ckpt.pt"
    train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv", checkpoint_path=ckpt, stop_after=4)
    lines = (tmp_path / "l.tsv").read_text().splitlines()
    assert lines[0].startswith("epoch\tstep") and [line.split("\t")[1] for line in lines[1:]] == ["2", "4"]
    train(images, targets, settings, tmp_path / "m.pt", tmp_path / "l.tsv", checkpoint_path=ckpt)
    assert [line.split("\t")[1] for line in (tmp_path / "l.tsv").read_text().splitlines()[1:]] == ["2", "4", "6"]


def test_the_same_weights_give_the_same_model_file(tmp_path):
    """model.pt holds no trace of the temporary file it was written through."""
    images, targets = _data()
    settings = TrainSettings(**{**TINY, "checkpoint_every": 0})
    for name in ("a", "b"):
        train(images, targets, settings, tmp_path / f"{name}.pt", tmp_path / f"{name}.tsv")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
