"""BiSeNet-R18 (Yu et al., ECCV 2018), the alternative keyframe network N of GSVNet (sec. 4.1, "BN-R18").

Spatial path (three stride-2 convs, 1/8, 128 channels); context path on ResNet-18 stages 3 and 4 with attention
refinement modules and a global-context vector; feature fusion module; logits at 1/8 scale. The auxiliary training
heads of the original are left out: the inference path carries no training-only branch. Under the official
conventions (:mod:`gsvlib.models.conventions`) it is TorchSeg's BiSeNet, which GSVNet's authors used: the fusion
attention keeps 256 channels without biases, the head narrows to 64 channels, and the context path resizes with
align_corners=True.
"""
from __future__ import annotations

import torch
from torch import nn

from gsvlib.models.conventions import GSVKIT, Conventions
from gsvlib.models.layers import ConvBNReLU, resize
from gsvlib.models.resnet import ResNet18


class AttentionRefinement(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_out, 3)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_out, c_out, 1, bias=False),
                                       nn.BatchNorm2d(c_out), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * self.attention(x)


class ContextPath(nn.Module):
    """Stage-3 and stage-4 ResNet features -> context features on the 1/8 grid."""

    def __init__(self, c: int = 128, align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        self.global_context = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(512, c, 1))
        self.arm32 = AttentionRefinement(512, c)
        self.arm16 = AttentionRefinement(256, c)
        self.head32 = ConvBNReLU(c, c, 3)
        self.head16 = ConvBNReLU(c, c, 3)

    def forward(self, f16: torch.Tensor, f32: torch.Tensor, size8) -> torch.Tensor:
        y = self.arm32(f32) + self.global_context(f32)  # (B, 128, H/32, W/32), context broadcast
        y = self.head32(resize(y, f16.shape[-2:], align_corners=self.align_corners))  # (B, 128, H/16, W/16)
        y = self.head16(resize(self.arm16(f16) + y, size8, align_corners=self.align_corners))  # (B, 128, H/8, W/8)
        return y


class FeatureFusion(nn.Module):
    def __init__(self, c_in: int = 256, c_out: int = 256, reduction: int = 4, bias: bool = True):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_out, 1)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_out, c_out // reduction, 1, bias=bias),
                                       nn.ReLU(inplace=True), nn.Conv2d(c_out // reduction, c_out, 1, bias=bias),
                                       nn.Sigmoid())

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.conv(torch.cat((spatial, context), 1))
        return x + x * self.attention(x)


class BiSeNet(nn.Module):
    """BiSeNet-R18: ImageNet-normalised frames (B, 3, H, W) -> logits (B, num_classes, H/8, W/8)."""

    title = "BiSeNet-R18"

    def __init__(self, num_classes: int = 19, conventions: Conventions = GSVKIT):
        super().__init__()
        official = conventions.bisenet == "official"
        self.spatial_path = nn.Sequential(ConvBNReLU(3, 64, 7, 2), ConvBNReLU(64, 64, 3, 2), ConvBNReLU(64, 64, 3, 2),
                                          ConvBNReLU(64, 128, 1))
        self.backbone = ResNet18()
        self.context_path = ContextPath(128, align_corners=conventions.align_corners)
        self.ffm = FeatureFusion(256, 256, reduction=1, bias=False) if official else FeatureFusion(256, 256)
        c_head = 64 if official else 256
        self.head = nn.Sequential(ConvBNReLU(256, c_head, 3), nn.Conv2d(c_head, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = self.spatial_path(x)  # (B, 128, H/8, W/8)
        _, _, f16, f32 = self.backbone(x)
        context = self.context_path(f16, f32, spatial.shape[-2:])  # (B, 128, H/8, W/8)
        return self.head(self.ffm(spatial, context))  # (B, C, H/8, W/8)
