"""Where tensors live and how many CPU threads work on them."""

from __future__ import annotations

import torch

from .guard import TrainingError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(name: str) -> torch.device:
    """'auto' takes a CUDA GPU, else Apple's MPS, else the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA GPU is available here (try --device auto)")
    if name == "mps" and not _mps_available():
        raise TrainingError("--device mps: Apple's MPS backend is not available here")
    return torch.device(name)


def use_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
