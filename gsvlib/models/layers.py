"""Small conv blocks shared by the keyframe nets and the propagation network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU, the post-activation block of BiSeNet and the GSV sub-networks."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, dilation: int = 1, act: nn.Module | None = None):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, stride, dilation * (k // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
            act if act is not None else nn.ReLU(inplace=True),
        )


class BNReLUConv(nn.Sequential):
    """BatchNorm -> ReLU -> Conv, SwiftNet's pre-activation block."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, bias: bool = False):
        super().__init__(nn.BatchNorm2d(c_in), nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias))


def downscale8(x):
    """(B, C, H, W), H and W divisible by 8 -> (B, C, H/8, W/8) by 8x8 averaging (anti-aliased): the 1/8 grid."""
    return F.avg_pool2d(x, 8)


def resize(x, size, mode: str = "bilinear", align_corners: bool = False):
    """Resize (B, C, h, w) to ``size`` = (H, W); bilinear with align_corners=False, the kit's convention (True: the
    official code's, :mod:`gsvlib.models.conventions`)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=align_corners if mode == "bilinear" else None)


def channels_last(model: nn.Module) -> nn.Module:
    """Channels-last weights for the 2-D convs (their outputs follow); the ideal-delay kernels are a 5-D conv3d
    weight and stay as they are."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.to(memory_format=torch.channels_last)
    return model
