"""ResNet-18 backbone shared by the keyframe networks (sec. 4.1: "Both SN-R18 and BN-R18 adopt the ResNet-18 backbone").

The module names follow torchvision's ``resnet18`` exactly, so an ImageNet checkpoint saved in torchvision format loads
with ``strict=True`` (:func:`gsvlib.checkpoint.load_torchvision_weights`) without torchvision being installed.
``forward`` returns the four stage features instead of ImageNet logits.
"""
from __future__ import annotations

import torch
from torch import nn

# ImageNet statistics of torchvision's ResNet-18; frames enter the keyframe nets normalised with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(frames: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale: float = 1.0) -> torch.Tensor:
    """RGB frames in [0, 1], (B, 3, H, W) -> ``(frames * scale - mean) / std`` per channel: ImageNet-normalised by
    default (other statistics: :mod:`gsvlib.models.conventions`)."""
    mean = frames.new_tensor(mean).view(1, 3, 1, 1)
    std = frames.new_tensor(std).view(1, 3, 1, 1)
    return ((frames * scale if scale != 1 else frames) - mean) / std


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 returning the stage features (B,64,H/4,W/4), (B,128,H/8,W/8), (B,256,H/16,W/16), (B,512,H/32,W/32).

    ``with_fc=True`` keeps torchvision's 1000-way classifier so the state_dict keys equal torchvision's; the keyframe
    nets build it with ``with_fc=False`` because segmentation never uses it.
    """

    stage_channels = (64, 128, 256, 512)

    def __init__(self, with_fc: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, c_out in enumerate(self.stage_channels, start=1):
            stride = 1 if i == 1 else 2
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)))
            c_in = c_out
        if with_fc:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats
