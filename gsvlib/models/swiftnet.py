"""SwiftNet-R18, single scale (Orsic et al., CVPR 2019), the keyframe network N of GSVNet (sec. 4.1, "SN-R18").

ResNet-18 encoder; spatial pyramid pooling on the 1/32 features; three ladder-style upsampling modules that add a
1x1-projected lateral skip from stages 3, 2 and 1 and blend with a 3x3 conv; 128 features; logits at 1/4 scale.
Under the official conventions (:mod:`gsvlib.models.conventions`) it is the variant GSVNet's authors released: the
pyramid has 3 levels of 42 channels on grids of 8, 4 and 2 rows, and the logits conv has a bias.
"""
from __future__ import annotations

import torch
from torch import nn

from gsvlib.models.conventions import GSVKIT, Conventions
from gsvlib.models.layers import BNReLUConv, resize
from gsvlib.models.resnet import ResNet18


class SpatialPyramidPooling(nn.Module):
    """Bottleneck to ``c_mid``, average-pool on ``grids`` cells along the short side (``grid_rows``: along the height
    whatever the aspect, the official rule), project each level to ``c_level``, fuse to ``c_out``."""

    def __init__(self, c_in: int = 512, c_mid: int = 128, c_out: int = 128, grids=(1, 2, 4, 8),
                 c_level: int | None = None, grid_rows: bool = False):
        super().__init__()
        self.grids = grids
        self.grid_rows = grid_rows
        c_level = c_level or c_mid // len(grids)
        self.bottleneck = BNReLUConv(c_in, c_mid, 1)
        self.levels = nn.ModuleList(BNReLUConv(c_mid, c_level, 1) for _ in grids)
        self.fuse = BNReLUConv(c_mid + c_level * len(grids), c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck(x)  # (B, 128, H/32, W/32)
        h, w = x.shape[-2:]
        pooled = [x]
        for g, level in zip(self.grids, self.levels):
            rows = self.grid_rows or h <= w
            cells = (g, max(1, round(g * w / h))) if rows else (max(1, round(g * h / w)), g)
            pooled.append(resize(level(nn.functional.adaptive_avg_pool2d(x, cells)), (h, w)))
        return self.fuse(torch.cat(pooled, 1))  # (B, 128, H/32, W/32)


class Upsample(nn.Module):
    """Ladder upsampling module: upsample, add the 1x1-projected skip, blend with a 3x3 conv."""

    def __init__(self, c_skip: int, c: int = 128):
        super().__init__()
        self.skip = BNReLUConv(c_skip, c, 1)
        self.blend = BNReLUConv(c, c, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blend(resize(x, skip.shape[-2:]) + self.skip(skip))


class SwiftNet(nn.Module):
    """SwiftNet-R18: ImageNet-normalised frames (B, 3, H, W) -> logits (B, num_classes, H/4, W/4)."""

    title = "SwiftNet-R18"

    def __init__(self, num_classes: int = 19, features: int = 128, conventions: Conventions = GSVKIT):
        super().__init__()
        official = conventions.swiftnet == "official"
        self.backbone = ResNet18()
        self.spp = (SpatialPyramidPooling(512, features, features, (8, 4, 2), features // 3, grid_rows=True) if official
                    else SpatialPyramidPooling(512, features, features))
        self.up = nn.ModuleList(Upsample(c, features) for c in (256, 128, 64))
        self.logits = BNReLUConv(features, num_classes, 1, bias=official)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4, f8, f16, f32 = self.backbone(x)
        y = self.spp(f32)  # (B, 128, H/32, W/32)
        for up, skip in zip(self.up, (f16, f8, f4)):
            y = up(y, skip)  # 1/16, 1/8, 1/4
        return self.logits(y)  # (B, C, H/4, W/4)
