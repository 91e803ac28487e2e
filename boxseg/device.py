"""Torch device and thread set-up for one job, and GPU claiming.

Snakemake counts ``gpu`` resources but assigns no device ids, so with
``--resources gpu=N`` N jobs may run at once and each must pick a different
device. A job claims the first free device by taking an exclusive lock on
``{lock_dir}/gpu{i}.lock`` (released by the kernel when the job ends, even
if it is killed), then sets ``CUDA_VISIBLE_DEVICES`` before CUDA starts. When a
scheduler (SLURM) has already set ``CUDA_VISIBLE_DEVICES``, that choice stands.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_LOCK_DIR = "/tmp/boxseg-gpu-locks"
_held_locks: list = []  # open lock files, kept for the life of the process


def configure_torch(threads: int, seed: int | None = None) -> None:
    """Use exactly ``threads`` CPU threads (jobs run side by side) and deterministic kernels."""
    import torch

    torch.set_num_threads(max(int(threads), 1))
    try:
        torch.set_num_interop_threads(max(int(threads), 1))
    except RuntimeError:  # already set in this process
        pass
    torch.use_deterministic_algorithms(True, warn_only=True)
    if seed is not None:
        torch.manual_seed(int(seed))


def claim_gpu(n_devices: int, lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR, timeout_s: float = 0.0,
              environ: MutableMapping[str, str] | None = None) -> int | None:
    """Claim a free GPU id among ``range(n_devices)``; returns the id or None.

    Sets ``CUDA_VISIBLE_DEVICES`` in ``environ`` (default ``os.environ``) to the
    claimed id. If ``CUDA_VISIBLE_DEVICES`` is already set, nothing is claimed and
    None is returned. With every device busy it retries until ``timeout_s``.
    """
    environ = os.environ if environ is None else environ
    if environ.get("CUDA_VISIBLE_DEVICES", "") != "" or n_devices <= 0:
        return None
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for device_id in range(n_devices):
            handle = open(lock_dir / f"gpu{device_id}.lock", "a")  # noqa: SIM115 (held while the GPU is in use)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held_locks.append(handle)
            environ["CUDA_VISIBLE_DEVICES"] = str(device_id)
            return device_id
        if time.monotonic() >= deadline:
            raise RuntimeError(f"all {n_devices} GPU(s) are claimed by other jobs (locks in {lock_dir})")
        time.sleep(1.0)


def inference_claims_gpu(device: str, dev_dir: str | os.PathLike = "/dev") -> bool:
    """Whether a per-case inference job should claim a GPU (declare the ``gpu`` resource):
    for an explicit cuda ``device``, or "auto" on a host with an NVIDIA device node (checked
    without starting CUDA, so the workflow's DAG build stays fast). Elsewhere such jobs run
    side by side on the CPU cores instead of one at a time under ``--resources gpu=1``."""
    if device == "cpu":
        return False
    return device.startswith("cuda") or any(Path(dev_dir).glob("nvidia[0-9]*"))


def _visible_gpu_count() -> int:
    """GPUs on the machine, counted without starting CUDA in this process."""
    import torch

    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except RuntimeError:
        return 0


def select_device(name: str = "auto", lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR, claim: bool = True) -> torch.device:
    """``auto``: CUDA when present, else CPU; or an explicit torch device string.

    With ``claim`` (rules that declare ``gpu=1``) a free device is claimed first;
    without it (small ConvCRF jobs that share a device) the default device is used.
    """
    import torch

    if name == "auto":
        n = _visible_gpu_count()
        if n == 0:
            return torch.device("cpu")
        if claim:
            claim_gpu(n, lock_dir, timeout_s=3600.0)
        return torch.device("cuda:0")  # with a claim, the one device now visible to this process
    return torch.device(name)
