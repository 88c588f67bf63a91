"""Temporal segmentation warping (sec. 3.3, eq. 1): backward warping of the previous 1/8 segmentation by the flow.

Convention, used everywhere in gsvlib:
- ``flow`` is (B, 2, H, W) in pixels of the grid being warped; channel 0 is the x (column) displacement, channel 1
  the y (row) displacement.
- Backward: output pixel (x, y) takes the value of the input at (x + flow_x, y + flow_y), sampled bilinearly; pixel
  centres sit at integer coordinates (``align_corners=True``), so an integer flow is an exact shift.
- Samples that land outside the input are filled explicitly: ``fill="border"`` (default) repeats the nearest
  in-frame value, ``fill="zeros"`` writes 0 (for logits, an uninformative uniform score). :func:`out_of_frame` marks
  those pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FILLS = ("border", "zeros")  # grid_sample padding modes offered


def _sample_coords(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    return xs + flow[:, 0], ys + flow[:, 1]  # (B, H, W) each


def warp(seg: torch.Tensor, flow: torch.Tensor, fill: str = "border") -> torch.Tensor:
    """S^-_t(c, x, y) = S_{t-1}(c, x + m_x(x, y), y + m_y(x, y))  # eq. (1)

    seg: (B, C, H, W), flow: (B, 2, H, W) -> (B, C, H, W).
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if flow.shape[0] != seg.shape[0] or flow.shape[1] != 2 or flow.shape[-2:] != seg.shape[-2:]:
        raise ValueError(f"flow must be (B, 2, H, W) = ({seg.shape[0]}, 2, {seg.shape[2]}, {seg.shape[3]}) to warp "
                         f"a segmentation of shape {tuple(seg.shape)}, got {tuple(flow.shape)}")
    _, _, h, w = seg.shape
    x, y = _sample_coords(flow.float())
    grid = torch.stack((2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1), -1)  # (B, H, W, 2) in [-1, 1]
    return F.grid_sample(seg, grid.to(seg.dtype), mode="bilinear", padding_mode=fill, align_corners=True)


def out_of_frame(flow: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: pixels whose backward sample lies outside the previous frame (filled, not observed)."""
    _, _, h, w = flow.shape
    x, y = _sample_coords(flow)
    return (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
