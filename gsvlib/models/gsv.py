"""Guided spatially-varying convolution (sec. 3.4): corrects the warped segmentation S^-_t with per-pixel 1x1 kernels.

1. Ideal-delay kernels (3.4.1): D = K*K - 1 fixed unit impulses, applied as a 1xKxK 3-D convolution, line up each
   pixel's neighbours in S^-_t as candidates f^s_{t,d}; S^-_t itself (the identity) is kept as one more candidate.
2. Intra-frame net phi (3.4.2): 3 convs 3x3 without downscaling on the 1/8 current frame -> crude estimate f^i_t.
3. Guided dynamic filtering (3.4.3): the edge map E_t = sigmoid(argmax(S^-_t) (x) M) with M the 3x3 Laplacian, the
   guiding net Gamma_t = G(f^i_t, E_t) with D + 2 maps (shifts, identity, intra), normalised per pixel to unity gain
   (a softmax over the D + 2 maps), and the per-class chunk inner product of eq. (2).

The official code's variants of these steps are switches of :mod:`gsvlib.models.conventions`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gsvlib.models.conventions import GSVKIT, Conventions
from gsvlib.models.layers import ConvBNReLU, resize

LAPLACIAN = ((1.0, 1.0, 1.0), (1.0, -8.0, 1.0), (1.0, 1.0, 1.0))  # M


def ideal_delay_offsets(kernel_size: int = 3) -> list[tuple[int, int]]:
    """(dy, dx) of each ideal-delay kernel, row-major over the K x K window without its centre.

    Kernel d makes f^s_{t,d}(y, x) = S^-_t(y + dy, x + dx): it lines up the neighbour at offset (dy, dx).
    """
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size K must be odd and >= 3 (K=3 gives the 8 one-pixel shifts), got {kernel_size}")
    r = kernel_size // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]


def ideal_delay_kernels(kernel_size: int = 3) -> torch.Tensor:
    """theta_1..theta_D as a 3-D conv weight (D, 1, 1, K, K): a unit impulse at (r + dy, r + dx) in each."""
    r = kernel_size // 2
    offsets = ideal_delay_offsets(kernel_size)
    theta = torch.zeros(len(offsets), 1, 1, kernel_size, kernel_size)
    for d, (dy, dx) in enumerate(offsets):
        theta[d, 0, 0, r + dy, r + dx] = 1.0
    return theta


def edge_map(warped: torch.Tensor, kind: str = "sigmoid") -> torch.Tensor:
    """E_t from argmax_c(S^-_t) (x) M: (B, C, H, W) -> (B, 1, H, W); no gradient flows through it.

    The argmax keeps only the structure of the segmentation. ``kind="sigmoid"``: E = sigmoid(labels (x) M) with the
    frame border replicated, so that it is no edge; E is 0.5 inside regions and moves towards 0 or 1 across a class
    boundary. ``kind="binary"`` (the official code): E = 1 where labels (x) M != 0, with zero padding, so that the
    frame border is an edge too.
    """
    labels = warped.max(1, keepdim=True).indices.float()  # (B, 1, H, W); argmax's first maximum, 4x faster on a CPU
    m = torch.tensor(LAPLACIAN, device=warped.device).view(1, 1, 3, 3)
    if kind == "binary":
        return (F.conv2d(labels, m, padding=1) != 0).to(warped.dtype)
    return torch.sigmoid(F.conv2d(F.pad(labels, (1, 1, 1, 1), mode="replicate"), m)).to(warped.dtype)


class IntraNet(nn.Module):
    """phi: the 1/8 current frame (B, 3, H/8, W/8) -> crude segmentation f^i_t (B, C, H/8, W/8); 3 convs 3x3."""

    def __init__(self, num_classes: int, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(ConvBNReLU(3, channels, 3), ConvBNReLU(channels, channels, 3),
                                 nn.Conv2d(channels, num_classes, 3, padding=1))

    def forward(self, frame_small: torch.Tensor) -> torch.Tensor:
        return self.net(frame_small)


class GuidingNet(nn.Module):
    """G: guide input (B, c_in, H/8, W/8) -> kernel maps (B, D+2, H/8, W/8).

    A small encoder-decoder: a 3x3 conv, two stride-2 convs and two upsampling convs back, a residual connection
    at full (1/8) resolution, and a 3x3 conv to the D + 2 maps: logits for a softmax, or (``nonnegative_head``, the
    official code) a conv + BN + ReLU whose maps are normalised by their sum.
    """

    def __init__(self, c_in: int, c_out: int, channels: int = 32, nonnegative_head: bool = False,
                 align_corners: bool = False):
        super().__init__()
        c = channels
        self.align_corners = align_corners
        self.stem = ConvBNReLU(c_in, c, 3)
        self.down = nn.Sequential(ConvBNReLU(c, 2 * c, 3, 2), ConvBNReLU(2 * c, 4 * c, 3, 2))
        self.up1 = ConvBNReLU(4 * c, 2 * c, 3)
        self.up2 = ConvBNReLU(2 * c, c, 3)
        self.head = ConvBNReLU(c, c_out, 3) if nonnegative_head else nn.Conv2d(c, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 32, H/8, W/8)
        y = self.down(x)  # (B, 128, H/32, W/32)
        half = (math.ceil(x.shape[-2] / 2), math.ceil(x.shape[-1] / 2))
        y = self.up1(resize(y, half, align_corners=self.align_corners))  # (B, 64, H/16, W/16)
        y = self.up2(resize(y, x.shape[-2:], align_corners=self.align_corners))  # (B, 32, H/8, W/8)
        return self.head(x + y)


class GSVOutput(NamedTuple):
    """What a correction after warping returns (:data:`gsvlib.models.gsvnet.CORRECTIONS`); a correction other than
    the GSV conv gives None for what it does not compute."""

    seg: torch.Tensor  # (B, C, H/8, W/8) refined segmentation S_t
    kernels: torch.Tensor | None  # (B, D+2, H/8, W/8) normalised per-pixel kernel: D shifts, identity, (zero,) intra
    edge: torch.Tensor | None  # (B, 1, H/8, W/8) edge map E_t
    intra: torch.Tensor | None  # (B, C, H/8, W/8) crude intra-frame segmentation f^i_t, None without intra


class GuidedSpatiallyVaryingConv(nn.Module):
    """PF's correction step: (S^-_t, 1/8 current frame) -> S_t (sec. 3.4).

    ``use_intra=False`` is the paper's "without intra features" ablation (Table 4): no phi, the guiding net sees only
    E_t, and the kernel has D + 1 taps (shifts and identity). ``learnable_delays`` lets the ideal-delay kernels train.
    ``conventions`` switches the border padding of the shifts, the all-zero tap, the edge map, the kernel
    normalisation and the guiding net's upsampling (:mod:`gsvlib.models.conventions`).
    """

    def __init__(self, num_classes: int, kernel_size: int = 3, use_intra: bool = True, learnable_delays: bool = False,
                 channels: int = 32, conventions: Conventions = GSVKIT):
        super().__init__()
        self.offsets = ideal_delay_offsets(kernel_size)
        self.use_intra = use_intra
        self.conventions = conventions
        self.theta = nn.Parameter(ideal_delay_kernels(kernel_size), requires_grad=learnable_delays)  # (D, 1, 1, K, K)
        self.intra_net = IntraNet(num_classes, channels) if use_intra else None
        self.identity_tap = len(self.offsets)  # the tap index of S^-_t itself; a zero tap, then the intra estimate
        taps = len(self.offsets) + 1 + conventions.zero_tap + use_intra
        self.guiding_net = GuidingNet((num_classes if use_intra else 0) + 1, taps, channels,
                                      nonnegative_head=conventions.kernel_norm == "relu-sum",
                                      align_corners=conventions.align_corners)

    def candidates(self, warped: torch.Tensor) -> torch.Tensor:
        """f^s_{t,d} = S^-_t (x) theta_d for d = 1..D, then S^-_t itself (and an all-zero candidate under the
        official conventions): (B, C, H, W) -> (B, D+1, C, H, W)."""
        r = self.theta.shape[-1] // 2
        mode = "replicate" if self.conventions.delay_padding == "replicate" else "constant"
        x = F.pad(warped.unsqueeze(1), (r, r, r, r, 0, 0), mode=mode)  # (B, 1, C, H+2r, W+2r)
        shifted = F.conv3d(x, self.theta.to(warped.dtype))  # (B, D, C, H, W)
        zero = (torch.zeros_like(warped).unsqueeze(1),) if self.conventions.zero_tap else ()
        return torch.cat((shifted, warped.unsqueeze(1), *zero), 1)

    def mix(self, kernels: torch.Tensor, warped: torch.Tensor, intra: torch.Tensor | None) -> torch.Tensor:
        """Eq. (2) without the stack of candidates: S_t = sum_d Gamma_d * f_d, each shifted candidate read as a view of
        the padded S^-_t and added in place of the (B, D+2, C, H, W) stack that :meth:`candidates` builds (the same
        sum up to float rounding; learnable delays, which need not stay shifts, take the stack).
        kernels (B, D+2, H, W), warped and intra (B, C, H, W) -> (B, C, H, W)."""
        if self.theta.requires_grad:
            chunks = torch.cat((self.candidates(warped), *(() if intra is None else (intra.unsqueeze(1),))), 1)
            return (kernels.unsqueeze(2) * chunks).sum(1)
        r = self.theta.shape[-1] // 2
        h, w = warped.shape[-2:]
        mode = "replicate" if self.conventions.delay_padding == "replicate" else "constant"
        padded = F.pad(warped, (r, r, r, r), mode=mode)  # (B, C, H+2r, W+2r)
        k = kernels.unsqueeze(2)  # (B, D+2, 1, H, W)
        seg = k[:, self.identity_tap] * padded[..., r:r + h, r:r + w]  # S^-_t itself, read from the padded copy
        for d, (dy, dx) in enumerate(self.offsets):  # f^s_{t,d}(y, x) = S^-_t(y + dy, x + dx)
            seg = torch.addcmul(seg, k[:, d], padded[..., r + dy:r + dy + h, r + dx:r + dx + w])
        return seg if intra is None else torch.addcmul(seg, k[:, -1], intra)  # the zero tap adds nothing

    def normalized_kernels(self, maps: torch.Tensor) -> torch.Tensor:
        """Unity gain per pixel: the guiding net's (B, D+2, H, W) maps -> kernels that sum to 1 over the taps."""
        if self.conventions.kernel_norm == "softmax":
            return torch.softmax(maps.float(), 1)
        return maps.float() / (maps.float().sum(1, keepdim=True) + 1e-9)  # the maps are >= 0 (ReLU)

    def forward(self, warped: torch.Tensor, frame_small: torch.Tensor) -> GSVOutput:
        edge = edge_map(warped, self.conventions.edge_map)  # (B, 1, H/8, W/8)
        intra = self.intra_net(frame_small) if self.use_intra else None  # (B, C, H/8, W/8)
        guide_in = edge if intra is None else torch.cat((intra, edge), 1)
        kernels = self.normalized_kernels(self.guiding_net(guide_in)).to(warped.dtype)  # (B, D+2, H/8, W/8)
        seg = self.mix(kernels, warped, intra)  # eq. (2): per-class chunk inner product, (B, C, H/8, W/8)
        return GSVOutput(seg, kernels, edge, intra)
