"""Torch device and thread set-up for one job."""

from __future__ import annotations

import torch


def configure_torch(threads: int, seed: int | None = None) -> None:
    """Use exactly ``threads`` CPU threads (jobs run side by side) and deterministic kernels."""
    torch.set_num_threads(max(int(threads), 1))
    try:
        torch.set_num_interop_threads(max(int(threads), 1))
    except RuntimeError:  # already set in this process
        pass
    torch.use_deterministic_algorithms(True, warn_only=True)
    if seed is not None:
        torch.manual_seed(int(seed))


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; or an explicit torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
