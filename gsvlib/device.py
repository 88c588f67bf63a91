"""Choosing the device and the precision: one check, so that asking for CUDA without it says so plainly, and one
table of the autocast precisions that inference, training and the benchmark offer."""
from __future__ import annotations

import torch

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}  # name -> autocast dtype (None: off)


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
