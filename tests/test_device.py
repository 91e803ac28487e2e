import subprocess
import sys

import pytest
import torch

from boxseg.device import claim_gpu, select_device

HOLD = """
import sys, time
from boxseg.device import claim_gpu
env = {}
print(claim_gpu(int(sys.argv[1]), sys.argv[2], environ=env), env.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep(float(sys.argv[3]))
"""


class TestGpuClaim:
    def test_parallel_jobs_get_distinct_devices(self, tmp_path):
        # Three "jobs" on a fake 3-GPU machine, all holding their claim at once.
        procs = [subprocess.Popen([sys.executable, "-c", HOLD, "3", str(tmp_path), "3"], stdout=subprocess.PIPE, text=True) for _ in range(3)]
        lines = [p.stdout.readline().split() for p in procs]
        for p in procs:
            p.wait()
        ids = sorted(int(a) for a, _ in lines)
        assert ids == [0, 1, 2]
        assert all(a == b for a, b in lines)  # CUDA_VISIBLE_DEVICES set to the claimed id

    def test_all_busy_raises_and_freed_on_exit(self, tmp_path):
        holder = subprocess.Popen([sys.executable, "-c", HOLD, "1", str(tmp_path), "2"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().split()[0] == "0"
        with pytest.raises(RuntimeError, match="all 1 GPU"):
            claim_gpu(1, tmp_path, timeout_s=0.0, environ={})
        holder.wait()
        env = {}
        assert claim_gpu(1, tmp_path, environ=env) == 0 and env["CUDA_VISIBLE_DEVICES"] == "0"

    def test_scheduler_choice_stands(self, tmp_path):
        env = {"CUDA_VISIBLE_DEVICES": "2"}
        assert claim_gpu(4, tmp_path, environ=env) is None and env["CUDA_VISIBLE_DEVICES"] == "2"

    def test_cpu_without_cuda(self):
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        assert select_device("auto").type == "cpu"


def test_inference_claims_a_gpu_only_where_it_can_use_one(tmp_path):
    """Per-case inference jobs declare the ``gpu`` resource on a host with an NVIDIA device
    (or an explicit cuda device); on a CPU host they run side by side instead."""
    from boxseg.device import inference_claims_gpu

    assert not inference_claims_gpu("auto", tmp_path) and not inference_claims_gpu("cpu", tmp_path)
    assert inference_claims_gpu("cuda:1", tmp_path)
    (tmp_path / "nvidiactl").touch()
    assert not inference_claims_gpu("auto", tmp_path)  # the control node alone is no GPU
    (tmp_path / "nvidia0").touch()
    assert inference_claims_gpu("auto", tmp_path) and not inference_claims_gpu("cpu", tmp_path)
