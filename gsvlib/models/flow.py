"""Optical flow networks O (sec. 3.3): the lightweight flow net run on 1/8-downscaled frames, and FlowNetS.

Both take the current and previous frames already downscaled to 1/8, (B, 3, H/8, W/8) each, and return the backward
flow m_t (B, 2, H/8, W/8) in pixels of the 1/8 grid: channel 0 is x (right), channel 1 is y (down), and pixel p of
frame t was at p + m_t(p) in frame t-1 (the convention of :func:`gsvlib.models.warp.warp`). Under the official
conventions FlowLight's output is 4 times that; GSVNet scales it (:mod:`gsvlib.models.conventions`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gsvlib.models.conventions import GSVKIT, Conventions
from gsvlib.models.layers import ConvBNReLU, downscale8, resize
from gsvlib.models.warp import out_of_frame, warp


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class FlowLight(nn.Module):
    """The paper's lightweight flow network (a hierarchical feature-fusion block, supplementary material).

    Two stride-2 3x3 convs on the concatenated 1/8 frames (-> 1/32), four 3x3 convs with dilation 1, 2, 4, 8 whose
    outputs are summed cumulatively, a 1x1 merge of the four sums with a residual connection, and a 3x3 conv to the
    2 flow channels, upsampled bilinearly back to the 1/8 grid.
    """

    title = "FlowLight"

    def __init__(self, channels: int = 32, conventions: Conventions = GSVKIT):
        super().__init__()
        self.align_corners = conventions.align_corners  # of the upsampling back to the 1/8 grid
        c = 2 * channels
        self.down = nn.Sequential(ConvBNReLU(6, channels, 3, 2, act=_leaky()), ConvBNReLU(channels, c, 3, 2, act=_leaky()))
        self.dilated = nn.ModuleList(ConvBNReLU(c, c, 3, dilation=d, act=_leaky()) for d in (1, 2, 4, 8))
        self.merge = ConvBNReLU(4 * c, c, 1, act=_leaky())
        self.to_flow = nn.Conv2d(c, 2, 3, padding=1)

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        x = self.down(torch.cat((current, previous), 1))  # (B, 64, H/32, W/32)
        sums, acc = [], 0
        for conv in self.dilated:
            acc = conv(x) + acc  # hierarchical fusion: d=1, d=1+2, d=1+2+4, d=1+2+4+8
            sums.append(acc)
        x = self.merge(torch.cat(sums, 1)) + x
        return resize(self.to_flow(x), current.shape[-2:], align_corners=self.align_corners)  # (B, 2, H/8, W/8)


class FlowNetS(nn.Module):
    """FlowNetS (Dosovitskiy et al., ICCV 2015) with batch norm, for the paper's "Ours-FlowNet" ablation (Fig. 3).

    Six stride-2 encoder levels and a refinement decoder that predicts flow at every level; the finest prediction
    (1/4 of its input) is upsampled bilinearly to the 1/8 grid it was given.
    """

    title = "FlowNetS"
    encoder_spec = ((6, 64, 7, 2), (64, 128, 5, 2), (128, 256, 5, 2), (256, 256, 3, 1), (256, 512, 3, 2),
                    (512, 512, 3, 1), (512, 512, 3, 2), (512, 512, 3, 1), (512, 1024, 3, 2), (1024, 1024, 3, 1))
    skip_layers = (1, 3, 5, 7)  # outputs of conv2, conv3_1, conv4_1, conv5_1 feed the decoder

    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleList(ConvBNReLU(i, o, k, s, act=_leaky()) for i, o, k, s in self.encoder_spec)
        skips = [self.encoder_spec[i][1] for i in self.skip_layers][::-1]  # 512, 512, 256, 128
        self.predict = nn.ModuleList([nn.Conv2d(1024, 2, 3, padding=1)])
        self.deconv = nn.ModuleList()
        self.up_flow = nn.ModuleList()
        c_in = 1024
        for c_skip, c_out in zip(skips, (512, 256, 128, 64)):
            self.deconv.append(nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), _leaky()))
            self.up_flow.append(nn.ConvTranspose2d(2, 2, 4, 2, 1))
            c_in = c_skip + c_out + 2
            self.predict.append(nn.Conv2d(c_in, 2, 3, padding=1))

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        x, skips = torch.cat((previous, current), 1), []
        for i, conv in enumerate(self.encoder):
            x = conv(x)
            if i in self.skip_layers:
                skips.append(x)
        flow = self.predict[0](x)  # (B, 2, H/512, W/512) of the full frame
        for deconv, up_flow, predict, skip in zip(self.deconv, self.up_flow, self.predict[1:], skips[::-1]):
            size = skip.shape[-2:]
            x = torch.cat((skip, deconv(x)[..., :size[0], :size[1]], up_flow(flow)[..., :size[0], :size[1]]), 1)
            flow = predict(x)
        return resize(flow, current.shape[-2:])  # (B, 2, H/8, W/8)


def flow_to_eighth(flow: torch.Tensor) -> torch.Tensor:
    """Full-resolution flow (B, 2, H, W) in pixels -> the 1/8 grid (B, 2, H/8, W/8) in 1/8-grid pixels."""
    return downscale8(flow) / 8


def endpoint_error(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-pixel end-point error |pred - truth| of flows (B, 2, H, W) -> (B, H, W)."""
    return (pred - truth).norm(dim=1)


def eighth_grid_error(pred: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1/8-grid flow (B, 2, H/8, W/8) against the exact full-resolution flow (B, 2, H, W), known where ``valid``
    (B, H, W): (the end-point errors summed over the cells whose every pixel is valid, how many cells those are)."""
    known = -F.max_pool2d(-valid[:, None].float(), 8)[:, 0] > 0.5  # (B, H/8, W/8): dis-occluded cells left out
    epe = endpoint_error(pred, flow_to_eighth(flow))[known]
    return epe.sum(), known.sum()


def photometric_error(current: torch.Tensor, previous: torch.Tensor, flow: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """How well the backward flow m_t explains frame t from frame t-1, on frames without labels or true flow:
    |I_t(p) - I_{t-1}(p + m_t(p))| averaged over the channels of the 1/8 frames (B, 3, h, w), summed over the pixels
    whose sample lies inside I_{t-1} -> (that sum, how many pixels it holds)."""
    inside = ~out_of_frame(flow)  # (B, h, w)
    error = (current - warp(previous, flow)).abs().mean(1)  # (B, h, w)
    return error[inside].sum(), inside.sum()


def edge_aware_smoothness(flow: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first differences of the flow (B, 2, h, w) between neighbouring pixels, each damped by exp(-|the image's
    difference there|) (B, 3, h, w) so that the flow may jump at edges -> (their sum, how many differences)."""
    def damped(d_flow: torch.Tensor, d_image: torch.Tensor) -> torch.Tensor:
        return d_flow.abs().sum(1) * torch.exp(-d_image.abs().mean(1))  # (B, h', w')

    dx = damped(flow.diff(dim=-1), image.diff(dim=-1))  # (B, h, w-1)
    dy = damped(flow.diff(dim=-2), image.diff(dim=-2))  # (B, h-1, w)
    return dx.sum() + dy.sum(), torch.tensor(dx.numel() + dy.numel(), device=flow.device)
