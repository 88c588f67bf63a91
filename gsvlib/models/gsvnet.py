"""GSVNet (sec. 3.1-3.2, Fig. 1-2): keyframe net N, flow net O and propagation PF composed; and a streaming API.

Every frame I_t gets a 1/8 segmentation S_t (B, C, H/8, W/8). A keyframe is segmented by N (on the frame rescaled by
``key_scale``, logits resized to the 1/8 grid); each following non-keyframe is predicted by PF from S_{t-1}: flow on
the 1/8 frames, backward warping (eq. 1), guided spatially-varying convolution (eq. 2).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gsvlib.device import check_device
from gsvlib.models.bisenet import BiSeNet
from gsvlib.models.flow import FlowLight, FlowNetS
from gsvlib.models.gsv import GuidedSpatiallyVaryingConv
from gsvlib.models.layers import downscale8, resize
from gsvlib.models.resnet import normalize
from gsvlib.models.swiftnet import SwiftNet
from gsvlib.models.warp import warp

KEYFRAME_NETS = {"swiftnet": SwiftNet, "bisenet": BiSeNet}
PROPAGATIONS = ("gsv", "warp", "copy")  # full PF; warping only (no GSV conv); copy the previous segmentation
FLOW_NETS = {"light": FlowLight, "flownets": FlowNetS}


@dataclass
class GSVNetConfig:
    num_classes: int = 19
    keyframe_net: str = "swiftnet"  # "swiftnet" (SN-R18) or "bisenet" (BN-R18)
    flow_net: str = "light"  # "light" (the paper's) or "flownets" (the Ours-FlowNet ablation)
    kernel_size: int = 3  # K of the ideal-delay kernels: D = K*K - 1 shifts
    use_intra: bool = True  # False: the "without intra features" ablation
    learnable_delays: bool = False
    freeze_keyframe: bool = True  # N is pre-trained and frozen while PF trains (sec. 4.1)

    def __post_init__(self):
        for name, table in (("keyframe_net", KEYFRAME_NETS), ("flow_net", FLOW_NETS)):
            if getattr(self, name) not in table:
                raise ValueError(f"{name} must be one of {sorted(table)}, got {getattr(self, name)!r}")
        if not isinstance(self.num_classes, int) or not 2 <= self.num_classes <= 1024:
            raise ValueError(f"num_classes must be an integer in 2..1024, got {self.num_classes!r}")
        if not isinstance(self.kernel_size, int) or self.kernel_size not in (3, 5, 7, 9):
            raise ValueError(f"kernel_size K must be 3, 5, 7 or 9, got {self.kernel_size!r}")


class Propagation(NamedTuple):
    seg: torch.Tensor  # (B, C, H/8, W/8) S_t
    warped: torch.Tensor  # (B, C, H/8, W/8) S^-_t
    flow: torch.Tensor  # (B, 2, H/8, W/8) m_t
    kernels: torch.Tensor  # (B, D+2, H/8, W/8)
    edge: torch.Tensor  # (B, 1, H/8, W/8)
    intra: torch.Tensor | None  # (B, C, H/8, W/8)


def full_resolution_labels(seg: torch.Tensor, size) -> torch.Tensor:
    """The paper's final step: bilinear upsample of the 1/8 logits to ``size`` and argmax -> (B, H, W) int64.

    Channels-last keeps each pixel's C scores together, which halves the CPU time of this step at 2048x1024.
    """
    up = resize(seg.float().contiguous(memory_format=torch.channels_last), size)
    return up.argmax(1)


class GSVNet(nn.Module):
    """Frames are RGB in [0, 1]; the net normalises them itself. H and W must be divisible by 32 here
    (:class:`VideoSegmenter` pads any size)."""

    def __init__(self, config: GSVNetConfig | None = None, **overrides):
        super().__init__()
        self.config = config = GSVNetConfig(**{**(asdict(config) if config else {}), **overrides})
        self.keyframe_net = KEYFRAME_NETS[config.keyframe_net](config.num_classes)
        self.flow_net = FLOW_NETS[config.flow_net]()
        self.gsv = GuidedSpatiallyVaryingConv(config.num_classes, config.kernel_size, config.use_intra,
                                              config.learnable_delays)
        self.frozen: set[str] = set()
        self.freeze("keyframe_net", config.freeze_keyframe)

    def freeze(self, part: str, frozen: bool = True) -> None:
        """Freeze (or thaw) a sub-network, e.g. "keyframe_net" or "flow_net": no gradients, BN statistics fixed."""
        getattr(self, part).requires_grad_(not frozen)
        (self.frozen.add if frozen else self.frozen.discard)(part)
        self.train(self.training)

    @property
    def keyframe_frozen(self) -> bool:
        return "keyframe_net" in self.frozen

    def train(self, mode: bool = True):
        super().train(mode)
        for part in self.frozen:
            getattr(self, part).eval()  # frozen BN statistics too
        return self

    def segment_keyframe(self, frame: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """N on the frame rescaled by ``scale``: (B, 3, H, W) -> logits on the 1/8 grid (B, C, H/8, W/8)."""
        h, w = frame.shape[-2:]
        x = normalize(frame if scale == 1.0 else resize(frame, (round(h * scale), round(w * scale))))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.keyframe_frozen):
            logits = self.keyframe_net(x)
        return resize(logits, (h // 8, w // 8))

    def propagate(self, prev_seg: torch.Tensor, prev_lr: torch.Tensor, cur_lr: torch.Tensor) -> Propagation:
        """PF: S_{t-1} and the normalised 1/8 frames I_{t-1}, I_t (B, 3, H/8, W/8) -> S_t with its intermediates."""
        flow = self.flow_net(cur_lr, prev_lr)  # (B, 2, H/8, W/8) m_t, backward
        warped = warp(prev_seg, flow)  # eq. (1)
        seg, kernels, edge, intra = self.gsv(warped, cur_lr)  # eq. (2)
        return Propagation(seg, warped, flow, kernels, edge, intra)

    def unroll(self, clip: torch.Tensor, key_scale: float = 1.0) -> tuple[torch.Tensor, list[Propagation]]:
        """Clip (B, T, 3, H, W), frame 0 the keyframe -> S_0 and the :class:`Propagation` of each later frame."""
        if clip.dim() != 5 or clip.shape[2] != 3:
            raise ValueError(f"clip must be (B, T, 3, H, W), got {tuple(clip.shape)}")
        seg = self.segment_keyframe(clip[:, 0], key_scale)
        prev_lr, steps = normalize(downscale8(clip[:, 0])), []
        for t in range(1, clip.shape[1]):
            cur_lr = normalize(downscale8(clip[:, t]))
            steps.append(self.propagate(steps[-1].seg if steps else seg, prev_lr, cur_lr))
            prev_lr = cur_lr
        return seg, steps

    def forward(self, clip: torch.Tensor, key_scale: float = 1.0) -> torch.Tensor:
        """Clip (B, T, 3, H, W), frame 0 the keyframe -> S_{T-1} (B, C, H/8, W/8), propagated T-1 times."""
        key, steps = self.unroll(clip, key_scale)
        return steps[-1].seg if steps else key

    @torch.inference_mode()
    def trace(self, clip: torch.Tensor, key_scale: float = 1.0) -> tuple[torch.Tensor, list[Propagation]]:
        """:meth:`unroll` for one clip (T, 3, H, W) without gradients, to look inside PF (batch dimension kept)."""
        return self.unroll(clip.unsqueeze(0), key_scale)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part of the paper, trainable or not."""
        def count(module: nn.Module | None) -> int:
            return sum(p.numel() for p in module.parameters()) if module is not None else 0

        parts = {
            f"keyframe net N ({self.config.keyframe_net})": count(self.keyframe_net),
            "  of which ResNet-18 backbone": count(self.keyframe_net.backbone),
            f"flow net O ({self.config.flow_net})": count(self.flow_net),
            "intra-frame net phi": count(self.gsv.intra_net),
            "guiding net G": count(self.gsv.guiding_net),
            "ideal-delay kernels theta": self.gsv.theta.numel(),
        }
        parts["non-keyframe total (O + phi + G + theta)"] = count(self.flow_net) + count(self.gsv)
        return parts


class Step(NamedTuple):
    logits: torch.Tensor  # (B, C, ceil(H/8), ceil(W/8)) S_t, cropped to the frame
    is_keyframe: bool
    index: int  # frame index in the stream since the last reset
    labels: torch.Tensor | None  # (B, H, W) int64 full-resolution labels when asked for


class VideoSegmenter:
    """Streaming GSVNet: ``step(frame)`` segments the next frame of a video, a keyframe every ``interval`` frames.

    Frames are (3, H, W) or (B, 3, H, W) RGB tensors, float in [0, 1] or uint8, of any size: frames whose H or W is
    not divisible by 32 are padded (edge replicate) on the bottom/right inside, and every output is cropped back.
    ``key_scale`` rescales keyframes before N (0.75 is the paper's inference setting). On CUDA, ``amp_dtype``
    (torch.float16 or torch.bfloat16) runs the nets under autocast; on the CPU only bfloat16 is accepted.
    ``propagation`` selects the non-keyframe path: "gsv" (the paper's PF), or the baselines "warp" (eq. 1 alone, no
    GSV conv) and "copy" (repeat the previous segmentation).
    """

    def __init__(self, model: GSVNet, interval: int = 5, key_scale: float = 0.75, device: str | torch.device | None = None,
                 amp_dtype: torch.dtype | None = None, check_finite: bool = True, propagation: str = "gsv"):
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")
        self.propagation = propagation
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ValueError(f"interval l must be a positive integer (1 = every frame a keyframe), got {interval!r}")
        if not 0 < key_scale <= 2:
            raise ValueError(f"key_scale must be in (0, 2], got {key_scale}")
        self.device = check_device(device) if device is not None else next(model.parameters()).device
        allowed = (torch.float16, torch.bfloat16) if self.device.type == "cuda" else (torch.bfloat16,)
        if amp_dtype is not None and amp_dtype not in allowed:
            raise ValueError(f"amp_dtype on {self.device.type} must be None or one of {allowed}, got {amp_dtype}")
        self.model = model.to(self.device).eval()
        self.interval, self.key_scale, self.amp_dtype, self.check_finite = interval, key_scale, amp_dtype, check_finite
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next frame is a keyframe and may have a new size."""
        self.index, self._since_key, self._seg, self._prev_lr, self._size = 0, None, None, None, None

    def force_keyframe(self) -> None:
        """Make the next frame a keyframe (e.g. at a scene cut); the interval counts from there."""
        self._since_key = None

    def _prepare(self, frame: torch.Tensor) -> torch.Tensor:
        if not isinstance(frame, torch.Tensor):
            raise TypeError(f"frame must be a torch.Tensor (3, H, W) or (B, 3, H, W), got {type(frame).__name__}")
        given = tuple(frame.shape)
        if frame.dim() == 3:
            frame = frame.unsqueeze(0)
        if frame.dim() != 4 or frame.shape[1] != 3:
            raise ValueError(f"frame must be RGB (3, H, W) or (B, 3, H, W), got shape {given}; "
                             "for (H, W, 3) images use frame.permute(2, 0, 1)")
        if frame.shape[-1] < 8 or frame.shape[-2] < 8:
            raise ValueError(f"frame must be at least 8x8 pixels, got {tuple(frame.shape[-2:])}")
        size = (frame.shape[0], *frame.shape[-2:])
        if self._size is not None and size != self._size:
            raise ValueError(f"frame {self.index} has batch/size {size} but this stream started with {self._size}; "
                             "call reset() before a stream of another size")
        if frame.dtype != torch.uint8 and not frame.is_floating_point():
            raise TypeError(f"frame {self.index} has dtype {frame.dtype}; frames are uint8 (0..255) or floating point "
                            "in [0, 1]. For integer 0..255 values use frame.to(torch.uint8)")
        frame = frame.to(self.device)
        frame = frame.float() / 255 if frame.dtype == torch.uint8 else frame.float()
        if self.check_finite:
            lo, hi = (v.item() for v in torch.aminmax(frame))  # one pass; NaN propagates into both
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"frame {self.index} contains NaN or Inf values")
            if lo < -1e-3 or hi > 1 + 1e-3:  # a little slack for resampled frames
                raise ValueError(f"frame {self.index} holds values in [{lo:g}, {hi:g}]; floating-point frames are RGB "
                                 "in [0, 1]: divide 0..255 values by 255 (or pass them as uint8)")
        self._size = size
        h, w = frame.shape[-2:]
        return F.pad(frame, (0, -w % 32, 0, -h % 32), mode="replicate")  # (B, 3, H', W'), H', W' divisible by 32

    @torch.inference_mode()
    def step(self, frame: torch.Tensor, labels: bool = False) -> Step:
        """Segment the next frame; ``labels=True`` also returns full-resolution argmax labels (bilinear upsample)."""
        x = self._prepare(frame)
        h, w = self._size[1:]
        is_key = self._since_key is None or self._since_key + 1 >= self.interval
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            cur_lr = normalize(downscale8(x))  # (B, 3, H'/8, W'/8)
            if is_key:
                seg = self.model.segment_keyframe(x, self.key_scale)
            elif self.propagation == "gsv":
                seg = self.model.propagate(self._seg, self._prev_lr, cur_lr).seg
            elif self.propagation == "warp":
                seg = warp(self._seg, self.model.flow_net(cur_lr, self._prev_lr))  # eq. (1) alone
            else:
                seg = self._seg
        self._seg, self._prev_lr = seg, cur_lr
        self._since_key = 0 if is_key else self._since_key + 1
        out = Step(seg[..., : math.ceil(h / 8), : math.ceil(w / 8)].float(), is_key, self.index,
                   full_resolution_labels(seg, x.shape[-2:])[..., :h, :w] if labels else None)
        self.index += 1
        return out
