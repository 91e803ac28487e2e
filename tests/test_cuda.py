"""The CUDA code paths, run where a GPU is present (skipped on CPU-only machines, CI among them).

`benchmarks/gpu_check.sh` runs this file on a GPU machine; `docs/benchmarks.md` gives the last result.
"""

import numpy as np
import pytest
import torch

from boxseg.device import select_device
from boxseg.network import load_model, predict_probability
from boxseg.stage1 import pseudo_mask_from_boxes
from boxseg.training import TrainSettings, train
from tests.test_convcrf import _loose_box, _toy
from tests.test_training import TINY, _data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_auto_selects_cuda(tmp_path):
    assert select_device("auto", tmp_path, claim=False).type == "cuda"


def test_convcrf_on_cuda_gives_the_cpu_mask():
    image, obj, spacing = _toy()
    boxes = [_loose_box(obj, np.array([2, 4, 4]))]
    cpu, cuda = (pseudo_mask_from_boxes(image, boxes, spacing, device=d, slack_mm=2.0) for d in ("cpu", "cuda"))
    assert isinstance(cuda, np.ndarray) and cuda.shape == image.shape  # returned on the host
    np.testing.assert_allclose(cuda, cpu, atol=1e-2)  # float32 sums in another order (and TF32 convolutions)
    assert np.mean((cuda > 0.5) != (cpu > 0.5)) <= 1e-3
    assert (cpu > 0.5)[obj].mean() > 0.9


def test_training_on_cuda_loads_on_the_cpu_and_predicts_the_same(tmp_path):
    images, targets = _data()
    settings = TrainSettings(**{**TINY, "steps": 40, "learning_rate": 0.01})
    model = train(images, targets, settings, tmp_path / "m.pt", tmp_path / "loss.tsv", device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    losses = [float(line.split("\t")[2]) for line in (tmp_path / "loss.tsv").read_text().splitlines()[1:]]
    assert losses[-1] < losses[0]
    on_cpu, patch = load_model(tmp_path / "m.pt")  # weights_only=True inside
    on_gpu, _ = load_model(tmp_path / "m.pt", device="cuda")
    p_cpu = predict_probability(on_cpu, images[0], patch)
    p_gpu = predict_probability(on_gpu, images[0], patch, device="cuda")
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-2)  # cuDNN may use TF32 convolutions
    assert np.mean((p_gpu > 0.5) != (p_cpu > 0.5)) <= 1e-3
