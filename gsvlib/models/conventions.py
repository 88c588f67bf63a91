"""Conventions: the places where the authors' released code computes GSVNet differently from gsvkit's reading of the
paper, one switch each. ``CONVENTIONS`` names the two sets; ``GSVNetConfig.conventions`` picks one.

- ``gsvkit`` (the default) is what this kit trains and reports.
- ``official`` computes what the official code (robert80203/GSVNet) computes, so that its released checkpoints, once
  converted (:mod:`gsvlib.official`), give its outputs. One fix is applied: the official warp calls ``grid_sample``
  without ``align_corners``, whose default changed in torch 1.3 so that zero flow no longer gives back the input; the
  official mode warps with ``align_corners=True``, the convention its sampling grid was written for.

Conv biases in front of a batch norm (the official flow, intra and guiding nets have them) are no switch: the
converter folds them into the norm's running mean (exact up to float rounding).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gsvlib.models.layers import downscale8, resize
from gsvlib.models.resnet import IMAGENET_MEAN, IMAGENET_STD, normalize


@dataclass(frozen=True)
class Conventions:
    # frames to the 1/8 grid of the flow and intra nets: "average" (8x8 mean, anti-aliased) or "bilinear"
    small_frames: str
    # bilinear resizes of GSVNet's own steps (keyframe input, logits to 1/8, output upsample), of FlowLight's output,
    # of the guiding net's decoder and inside BiSeNet's context path; SwiftNet's ladder is align_corners=False in both
    align_corners: bool
    flow_scale: float  # the flow net's output is multiplied by this to give 1/8-grid pixels
    warp_fill: str  # a backward sample outside the previous frame: "border" (nearest value) or "zeros"
    delay_padding: str  # the ideal-delay shifts at the frame border: "replicate" or "zeros"
    zero_tap: bool  # one more candidate that is all zeros (the official 9th ideal-delay kernel, never set)
    edge_map: str  # "sigmoid": sigmoid of the Laplacian, border replicated; "binary": Laplacian != 0, zero padding
    kernel_norm: str  # "softmax" of the guiding net's logits, or "relu-sum": BN + ReLU, divided by (sum + 1e-9)
    swiftnet: str  # "gsvkit": SPP 4 x 32 on grids 1, 2, 4, 8; "official": SPP 3 x 42 on grids 8, 4, 2, logits conv
    #                with a bias
    bisenet: str  # "gsvkit": FFM attention 256 -> 64 -> 256 with biases, head 3x3 to 256; "official" (TorchSeg's
    #               BiSeNet): FFM attention 256 -> 256 -> 256 without biases, head 3x3 to 64
    normalization: str  # "imagenet": ImageNet statistics on RGB in [0, 1] for every net; "official": the keyframe
    #                     net's own statistics (SwiftNet: Cityscapes statistics on 0..255), the flow and intra nets
    #                     seeing the same values in BGR order


CONVENTIONS: dict[str, Conventions] = {
    "gsvkit": Conventions(small_frames="average", align_corners=False, flow_scale=1.0, warp_fill="border",
                          delay_padding="replicate", zero_tap=False, edge_map="sigmoid", kernel_norm="softmax",
                          swiftnet="gsvkit", bisenet="gsvkit", normalization="imagenet"),
    "official": Conventions(small_frames="bilinear", align_corners=True, flow_scale=0.25,
                            warp_fill="zeros", delay_padding="zeros", zero_tap=True, edge_map="binary",
                            kernel_norm="relu-sum", swiftnet="official", bisenet="official", normalization="official"),
}
GSVKIT = CONVENTIONS["gsvkit"]

IMAGENET = (IMAGENET_MEAN, IMAGENET_STD, 1.0)  # RGB mean, std, and the value range they are for
CITYSCAPES_255 = ((73.15, 82.90, 72.3), (47.67, 48.49, 47.73), 255.0)  # SwiftNet's Cityscapes statistics, RGB
OFFICIAL_STATISTICS = {"swiftnet": CITYSCAPES_255, "bisenet": IMAGENET}


def normalized(frames: torch.Tensor, conventions: Conventions, keyframe_net: str) -> torch.Tensor:
    """RGB frames in [0, 1] (B, 3, H, W) -> what the keyframe net N takes: ``(frames * range - mean) / std``."""
    if conventions.normalization == "imagenet":
        return normalize(frames)
    mean, std, scale = OFFICIAL_STATISTICS.get(keyframe_net, IMAGENET)
    return normalize(frames, mean, std, scale)


def small_frames(frames: torch.Tensor, conventions: Conventions, keyframe_net: str) -> torch.Tensor:
    """RGB frames in [0, 1] (B, 3, H, W), H and W divisible by 8 -> the normalised 1/8 frames I_t (B, 3, H/8, W/8)
    that the flow and intra nets take (BGR under the official normalisation). The official code normalises before
    resizing; resizing first is the same up to float rounding."""
    h, w = frames.shape[-2:]
    x = downscale8(frames) if conventions.small_frames == "average" else resize(frames, (h // 8, w // 8),
                                                                                 align_corners=True)
    x = normalized(x, conventions, keyframe_net)
    return x if conventions.normalization == "imagenet" else x.flip(1)
