"""Choosing the device: one check, so that asking for CUDA without it says so plainly."""
from __future__ import annotations

import torch


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or a RuntimeError when it names CUDA and CUDA is not available."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise RuntimeError(f"device {device!r} is not a device name; use 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available "
                           f"(torch {torch.__version__}); use --device cpu")
    return dev
