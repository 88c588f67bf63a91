"""The output step of every frame (sec. 3.1): the 1/8 segmentation S_t (B, C, h, w) is upsampled bilinearly to the
frame size and its argmax gives the labels (B, H, W).

Done literally, the step writes and reads (B, C, H, W) scores: 19 x 2M floats at 2048x1024, which on a CPU costs more
than the whole propagation. It need not. Bilinear upsampling makes each output pixel a convex combination of the four
cells around it, so where those four cells share their argmax class c, c wins at every pixel between them (its
margin over any class k is a convex combination of positive margins). Only the pixels between cells of different
classes need scores, and there only the candidates: classes whose largest corner score reaches the largest of the
classes' smallest corner scores (any other class loses to that class everywhere in the cell). On CamVid footage
about one span between cell centres in ten is mixed, and most mixed spans have two candidates.

:func:`full_resolution_labels` does that on the CPU in eager mode, with the same float arithmetic as torch's kernel,
so its labels equal those of ``F.interpolate(seg, size, mode="bilinear").argmax(1)``. Wherever it is traced
(torch.compile fuses the literal step into one pass; ONNX graphs keep static shapes) and on CUDA, where bandwidth is
plentiful, it takes the literal step.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from gsvlib.models.layers import resize

MIXED_SHARE = 0.5  # above this share of mixed cells (noise, not footage) the literal step is as fast; it is used


def label_dtype(num_classes: int) -> torch.dtype:
    """The dtype of full-resolution labels: uint8, or int16 above 256 classes."""
    return torch.uint8 if num_classes <= 256 else torch.int16


def dense_labels(seg: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """The literal output step: upsample (B, C, h, w) to (B, C, H, W) scores, then argmax -> (B, H, W) labels.
    Channels-last keeps each pixel's C scores together (half the CPU time of the default layout)."""
    up = resize(seg.float().contiguous(memory_format=torch.channels_last), size, align_corners=align_corners)
    return up.argmax(1).to(label_dtype(seg.shape[1]))


class Axis(NamedTuple):
    """Bilinear source positions along one axis (n_out output pixels from n_in cells), as torch computes them, grouped
    by the n_in + 1 spans between cell centres: span k lies between cells k - 1 and k (span 0 before the first
    centre, span n_in after the last, each with its one cell twice)."""

    cell: torch.Tensor  # (n_out,) the cell each output pixel interpolates from (its nearest on the left/top)
    first: torch.Tensor  # (n_in + 1,) each span's cells: max(k - 1, 0)
    second: torch.Tensor  # (n_in + 1,) and min(k, n_in - 1)
    pixels: torch.Tensor  # (n_in + 1, K) the output pixels of each span, padded with n_out (no pixel)
    weight: torch.Tensor  # (n_in + 1, K) their weight lambda_1 on the second cell


def source_axis(n_out: int, n_in: int, align_corners: bool, device: torch.device) -> Axis:
    """torch's bilinear indexing (``area_pixel_compute_source_index`` in float32) for one axis, grouped by span."""
    dst = torch.arange(n_out, device=device, dtype=torch.float32)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = (dst + 0.5) * torch.tensor(n_in / n_out, dtype=torch.float32) - 0.5
    before = src < 0  # pixels before the first centre: torch clamps them onto it
    src = src.clamp_(min=0)
    cell = src.long().clamp_(max=n_in - 1)  # (n_out,)
    lam = (src - cell).clamp_(0, 1)
    span = torch.where(before, 0, cell + 1)  # non-decreasing: spans are contiguous runs of pixels
    counts = torch.bincount(span, minlength=n_in + 1)
    k = torch.arange(int(counts.max()), device=device)
    start = counts.cumsum(0) - counts
    pixels = torch.where(k < counts[:, None], start[:, None] + k, n_out)  # (n_in + 1, K)
    edges = torch.arange(n_in + 1, device=device)
    return Axis(cell, (edges - 1).clamp_(min=0), edges.clamp(max=n_in - 1), pixels,
                torch.cat((lam, lam.new_zeros(1)))[pixels])


def _bilinear(corners: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
    """Scores inside spans from their corners (M, 4, K) (x00, x01, x10, x11) and the weights on the second row
    (M, Ky) and column (M, Kx) -> (M, Ky, Kx, K), in the order of torch's separable CPU kernel (the same floats)."""
    wx, wy = wx[:, :, None], wy[:, :, None, None]
    top = (1 - wx) * corners[:, None, 0] + wx * corners[:, None, 1]  # (M, Kx, K)
    bottom = (1 - wx) * corners[:, None, 2] + wx * corners[:, None, 3]
    return (1 - wy) * top[:, None] + wy * bottom[:, None]  # (M, Ky, Kx, K)


def _candidates(corners: torch.Tensor, candidate: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` candidate classes of each span in increasing order (padded by repeating the first, which keeps
    argmax's first-maximum rule) and their corner scores: (M, k) ids, (M, 4, k) scores."""
    c = candidate.shape[1]
    order = torch.arange(c, device=candidate.device)
    ids = torch.where(candidate, order, c + order).sort(1).values[:, :k]  # (M, k), non-candidates last
    ids = torch.where(ids < c, ids, ids[:, :1])
    return ids, corners.gather(2, ids[:, None, :].expand(-1, 4, -1))


def _mixed(low: torch.Tensor, rows: Axis, cols: Axis) -> torch.Tensor:
    """(B, h + 1, w + 1) True for the spans whose four corner cells do not all share one label; low: (B, h, w)."""
    corner = [low[:, r][:, :, c] for r in (rows.first, rows.second) for c in (cols.first, cols.second)]
    return (corner[0] != corner[1]) | (corner[0] != corner[2]) | (corner[0] != corner[3])


def mixed_share(seg: torch.Tensor, size, align_corners: bool = False) -> float:
    """The share of spans between cells of different classes when (B, C, h, w) is upsampled to ``size``: what the
    output step costs on the CPU (about 0.1 on CamVid footage, 0.2-0.4 for an untrained net, 1 for noise)."""
    h, w = seg.shape[-2:]
    rows, cols = (source_axis(n_out, n_in, align_corners, seg.device) for n_out, n_in in zip(size, (h, w)))
    return _mixed(seg.argmax(1), rows, cols).float().mean().item()


def full_resolution_labels(seg: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """The paper's final step, the one output step of every path (eager, compiled, ONNX, evaluation): bilinear
    upsampling of the 1/8 logits (B, C, h, w) to ``size`` = (H, W) and argmax -> (B, H, W) labels in
    :func:`label_dtype`, without the (B, C, H, W) scores on the CPU (see the module's docstring). The 1/8 grid
    covers the frame the nets saw: for a frame padded up to multiples of 32 (:class:`gsvlib.segmenter.VideoSegmenter`
    pads a 360x480 CamVid frame to 384x480 at its bottom and right), pass the padded size and crop the labels back to
    the frame's own, ``[..., :H, :W]``; upsampling straight to the unpadded size would stretch the grid over it."""
    size = (int(size[0]), int(size[1]))
    if seg.device.type != "cpu" or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return dense_labels(seg, size, align_corners)
    b_, c_, h, w = seg.shape
    (H, W), device = size, seg.device
    scores = seg.float().permute(0, 2, 3, 1).contiguous()  # (B, h, w, C)
    low = scores.argmax(-1)  # (B, h, w)
    rows, cols = source_axis(H, h, align_corners, device), source_axis(W, w, align_corners, device)
    mixed = _mixed(low, rows, cols)  # (B, h + 1, w + 1)
    b, i, j = mixed.nonzero(as_tuple=True)  # (M,) each: the spans between cells of different classes
    if len(b) > MIXED_SHARE * mixed.numel():
        return dense_labels(seg, size, align_corners)
    out = torch.empty(b_ * H * W + 1, dtype=label_dtype(c_), device=device)  # the last entry takes padded pixels
    labels = out[:-1].view(b_, H, W)
    labels.copy_(low.to(out.dtype).index_select(2, cols.cell).index_select(1, rows.cell))  # right outside mixed spans
    i0, i1, j0, j1 = rows.first[i], rows.second[i], cols.first[j], cols.second[j]
    corners = torch.stack((scores[b, i0, j0], scores[b, i0, j1], scores[b, i1, j0], scores[b, i1, j1]), 1)  # (M, 4, C)
    candidate = corners.amax(1) >= corners.amin(1).amax(1, keepdim=True)  # (M, C)
    count = candidate.sum(1)
    for group in (count == 2, count > 2):  # most mixed spans have two candidates: two scores per pixel
        if not group.any():
            continue
        gb, gi, gj = b[group], i[group], j[group]
        ids, values = _candidates(corners[group], candidate[group], int(count[group].max()))
        up = _bilinear(values, rows.weight[gi], cols.weight[gj]).flatten(1, 2)  # (M, Ky*Kx, k)
        pick = (up[..., 1] > up[..., 0]).long() if up.shape[-1] == 2 else up.argmax(-1)  # argmax: first maximum
        r, c = rows.pixels[gi][:, :, None], cols.pixels[gj][:, None, :]  # (M, Ky, 1), (M, 1, Kx)
        at = torch.where((r < H) & (c < W), (gb[:, None, None] * H + r) * W + c, b_ * H * W)  # (M, Ky, Kx)
        out[at.flatten()] = ids.gather(1, pick).flatten().to(out.dtype)
    return labels
