"""GSVNet (sec. 3.1-3.2, Fig. 1-2): keyframe net N, flow net O and propagation PF composed.

Every frame I_t gets a 1/8 segmentation S_t (B, C, H/8, W/8). A keyframe is segmented by N (on the frame rescaled by
``key_scale``, logits resized to the 1/8 grid); each following non-keyframe is predicted by PF from S_{t-1}: flow on
the 1/8 frames, backward warping (eq. 1), guided spatially-varying convolution (eq. 2). The streaming runtime that
decides which frame is which lives in :mod:`gsvlib.segmenter`.

The registries ``KEYFRAME_NETS`` and ``FLOW_NETS`` are the single list of the nets gsvkit can build: the CLI's choices,
``gsv info`` and the reports read them. A net is a ``nn.Module`` class registered under a short name:

- a **keyframe net** is built as ``cls(num_classes)``; ``forward`` takes ImageNet-normalised frames (B, 3, H, W) with
  H and W divisible by 32 and returns logits (B, num_classes, h, w) on a grid of its choice (GSVNet resizes them
  bilinearly to the 1/8 grid). Its attribute ``backbone`` is the :class:`~gsvlib.models.resnet.ResNet18` that
  ImageNet weights in torchvision format load into (``gsv train --imagenet``), or None for a net without one.
- a **flow net** is built as ``cls()``; ``forward(current, previous)`` takes the normalised 1/8 frames (B, 3, h, w)
  and returns the backward flow (B, 2, h, w) in pixels of that grid (the convention of :func:`warp`).

Both carry a class attribute ``title``, the name tables print. A net with a variant for the official code's
conventions (:mod:`gsvlib.models.conventions`) takes a keyword argument ``conventions``; a net without one is built
under the default conventions only.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn

from gsvlib.models.bisenet import BiSeNet
from gsvlib.models.conventions import CONVENTIONS, Conventions, normalized, small_frames
from gsvlib.models.flow import FlowLight, FlowNetS
from gsvlib.models.gsv import GSVOutput, GuidedSpatiallyVaryingConv
from gsvlib.models.layers import resize
from gsvlib.models.swiftnet import SwiftNet
from gsvlib.models.warp import warp

KEYFRAME_NETS: dict[str, type[nn.Module]] = {"swiftnet": SwiftNet, "bisenet": BiSeNet}
# GSVNet's sub-networks, by attribute: what a training stage trains, a starting point gives and a checkpoint records
# as trained (``correction``: what corrects the warped segmentation, the GSV conv unless the config names another)
PARTS = ("keyframe_net", "flow_net", "correction")
PART_TITLES = {"keyframe_net": "keyframe net", "flow_net": "flow net", "correction": "propagation (GSV conv)"}
EARLIER_PARTS = {"gsv": "correction"}  # a part's name in files written before it was renamed -> its name now
FLOW_NETS: dict[str, type[nn.Module]] = {"light": FlowLight, "flownets": FlowNetS}


@dataclass
class GSVNetConfig:
    num_classes: int = 19
    keyframe_net: str = "swiftnet"  # a name in KEYFRAME_NETS: "swiftnet" (SN-R18) or "bisenet" (BN-R18)
    flow_net: str = "light"  # a name in FLOW_NETS: "light" (the paper's) or "flownets" (the Ours-FlowNet ablation)
    kernel_size: int = 3  # K of the ideal-delay kernels: D = K*K - 1 shifts
    use_intra: bool = True  # False: the "without intra features" ablation
    learnable_delays: bool = False
    freeze_keyframe: bool = True  # N is pre-trained and frozen while PF trains (sec. 4.1)
    conventions: str = "gsvkit"  # a name in CONVENTIONS: "gsvkit", or "official" to run the authors' released weights
    key_scale: float = 0.75  # keyframes are segmented at this input scale (sec. 4.1); a propagation run records its own
    correction: str = "gsv"  # a name in CORRECTIONS: what corrects the warped S^-_t ("gsv": the paper's GSV conv)

    def __post_init__(self):
        for name, table in (("keyframe_net", KEYFRAME_NETS), ("flow_net", FLOW_NETS), ("conventions", CONVENTIONS)):
            if getattr(self, name) not in table:
                raise ValueError(f"{name} must be one of {sorted(table)}, got {getattr(self, name)!r}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {self.correction!r}: a correction "
                             "of one's own is registered by the module that defines it (CONTRIBUTING.md, a "
                             "correction of your own); import that module first (an experiment file's `modules`)")
        if self.correction != "gsv" and self.conventions != "gsvkit":
            raise ValueError("the official conventions describe the authors' GSV conv; use correction 'gsv'")
        for name, table in (("keyframe_net", KEYFRAME_NETS), ("flow_net", FLOW_NETS)):
            net = table[getattr(self, name)]
            if self.conventions != "gsvkit" and "conventions" not in inspect.signature(net).parameters:
                raise ValueError(f"{name} {getattr(self, name)!r} ({net.title}) has no variant for the "
                                 f"{self.conventions!r} conventions; the official code's released weights use "
                                 f"{'swiftnet or bisenet' if name == 'keyframe_net' else 'light'}")
        if not isinstance(self.num_classes, int) or not 2 <= self.num_classes <= 1024:
            raise ValueError(f"num_classes must be an integer in 2..1024, got {self.num_classes!r}")
        if not isinstance(self.kernel_size, int) or self.kernel_size not in (3, 5, 7, 9):
            raise ValueError(f"kernel_size K must be 3, 5, 7 or 9, got {self.kernel_size!r}")
        for name in ("use_intra", "learnable_delays", "freeze_keyframe"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.key_scale, (int, float)) or not 0 < self.key_scale <= 2:
            raise ValueError(f"key_scale must be a number in (0, 2], got {self.key_scale!r}")


class Propagation(NamedTuple):
    seg: torch.Tensor  # (B, C, H/8, W/8) S_t
    warped: torch.Tensor  # (B, C, H/8, W/8) S^-_t
    flow: torch.Tensor  # (B, 2, H/8, W/8) m_t
    kernels: torch.Tensor | None  # (B, D+2, H/8, W/8); None for a correction without per-pixel kernels
    edge: torch.Tensor | None  # (B, 1, H/8, W/8)
    intra: torch.Tensor | None  # (B, C, H/8, W/8)


class NoCorrection(nn.Module):
    """Correction "none": S_t is the warped S^-_t (eq. 1 alone), for training the flow net through warping only."""

    def forward(self, warped: torch.Tensor, frame_small: torch.Tensor) -> GSVOutput:
        return GSVOutput(warped, None, None, None)


# The correction after warping, the second half of PF: name -> builder(config, conventions) -> an nn.Module whose
# forward(warped (B, C, H/8, W/8), frame_small (B, 3, H/8, W/8)) returns a GSVOutput. The model's part "correction"
# holds it.
# A correction of one's own is one more entry, added by the module that defines it (CONTRIBUTING.md).
CORRECTIONS: dict[str, Callable[["GSVNetConfig", Conventions], nn.Module]] = {
    "gsv": lambda config, conventions: GuidedSpatiallyVaryingConv(config.num_classes, config.kernel_size,
                                                                  config.use_intra, config.learnable_delays,
                                                                  conventions=conventions),
    "none": lambda config, conventions: NoCorrection(),
}


def _build(net: type[nn.Module], conventions: Conventions, *args) -> nn.Module:
    """``net(*args)``, with the conventions for a net that has variants (checked by GSVNetConfig)."""
    if "conventions" in inspect.signature(net).parameters:
        return net(*args, conventions=conventions)
    return net(*args)


def current_names(state: dict, prefix: str = "") -> dict:
    """``state`` (a GSVNet state dict, its keys under ``prefix``) with the parts named as now, in place: one written
    before a part was renamed (``gsv.*`` keys, :data:`EARLIER_PARTS`) loads as it is."""
    for key in [k for k in state if k.startswith(prefix)]:
        part, dot, rest = key.removeprefix(prefix).partition(".")
        if part in EARLIER_PARTS and dot:
            state[f"{prefix}{EARLIER_PARTS[part]}.{rest}"] = state.pop(key)
    return state


class GSVNet(nn.Module):
    """Frames are RGB in [0, 1]; the net normalises them itself. H and W must be divisible by 32 here
    (:class:`gsvlib.segmenter.VideoSegmenter` pads any size)."""

    def __init__(self, config: GSVNetConfig | None = None, **overrides):
        super().__init__()
        self.config = config = GSVNetConfig(**{**(asdict(config) if config else {}), **overrides})
        self.conventions = conventions = CONVENTIONS[config.conventions]
        self.keyframe_net = _build(KEYFRAME_NETS[config.keyframe_net], conventions, config.num_classes)
        self.flow_net = _build(FLOW_NETS[config.flow_net], conventions)
        self.correction = CORRECTIONS[config.correction](config, conventions)  # the GSV conv, or another correction
        self.frozen: set[str] = set()
        self.freeze("keyframe_net", config.freeze_keyframe)
        self.register_load_state_dict_pre_hook(lambda module, state, prefix, *rest: current_names(state, prefix))

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

    def normalize(self, frame: torch.Tensor) -> torch.Tensor:
        """RGB frames in [0, 1] (B, 3, H, W) -> the normalised input of the keyframe net N."""
        return normalized(frame, self.conventions, self.config.keyframe_net)

    def small_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """RGB frames in [0, 1] (B, 3, H, W) -> the normalised 1/8 frames I_t (B, 3, H/8, W/8) of O and phi."""
        return small_frames(frame, self.conventions, self.config.keyframe_net)

    def segment_keyframe(self, frame: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """N on the frame rescaled by ``scale``: (B, 3, H, W) -> logits on the 1/8 grid (B, C, H/8, W/8)."""
        h, w = frame.shape[-2:]
        corners = self.conventions.align_corners
        x = frame if scale == 1.0 else resize(frame, (round(h * scale), round(w * scale)), align_corners=corners)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.keyframe_frozen):
            logits = self.keyframe_net(self.normalize(x))
        return resize(logits, (h // 8, w // 8), align_corners=corners)

    def flow(self, cur_small: torch.Tensor, prev_small: torch.Tensor) -> torch.Tensor:
        """O: the backward flow m_t (B, 2, H/8, W/8) in 1/8-grid pixels from the normalised 1/8 frames I_t, I_{t-1}."""
        flow = self.flow_net(cur_small, prev_small)
        return flow * self.conventions.flow_scale if self.conventions.flow_scale != 1 else flow

    def warp_previous(self, prev_seg: torch.Tensor, prev_small: torch.Tensor,
                      cur_small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """O and eq. (1): S_{t-1} warped to frame t, and the flow m_t (B, 2, H/8, W/8) that moved it."""
        flow = self.flow(cur_small, prev_small)
        return warp(prev_seg, flow, self.conventions.warp_fill), flow

    def propagate(self, prev_seg: torch.Tensor, prev_small: torch.Tensor, cur_small: torch.Tensor) -> Propagation:
        """PF: S_{t-1} and the normalised 1/8 frames I_{t-1}, I_t (B, 3, H/8, W/8) -> S_t with its intermediates."""
        warped, flow = self.warp_previous(prev_seg, prev_small, cur_small)  # eq. (1)
        seg, kernels, edge, intra = self.correction(warped, cur_small)  # eq. (2)
        return Propagation(seg, warped, flow, kernels, edge, intra)

    def unroll(self, clip: torch.Tensor, key_scale: float = 1.0) -> tuple[torch.Tensor, list[Propagation]]:
        """Clip (B, T, 3, H, W), frame 0 the keyframe -> S_0 and the :class:`Propagation` of each later frame."""
        if clip.dim() != 5 or clip.shape[2] != 3:
            raise ValueError(f"clip must be (B, T, 3, H, W), got {tuple(clip.shape)}")
        seg = self.segment_keyframe(clip[:, 0], key_scale)
        prev_small = self.small_frame(clip[:, 0])  # (B, 3, H/8, W/8)
        steps = []
        for t in range(1, clip.shape[1]):
            cur_small = self.small_frame(clip[:, t])
            steps.append(self.propagate(steps[-1].seg if steps else seg, prev_small, cur_small))
            prev_small = cur_small
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
        }
        if isinstance(self.correction, GuidedSpatiallyVaryingConv):
            parts.update({"intra-frame net phi": count(self.correction.intra_net),
                          "guiding net G": count(self.correction.guiding_net),
                          "ideal-delay kernels theta": self.correction.theta.numel()})
            parts["non-keyframe total (O + phi + G + theta)"] = count(self.flow_net) + count(self.correction)
        else:
            parts[f"correction ({self.config.correction})"] = count(self.correction)
            parts["non-keyframe total (O + correction)"] = count(self.flow_net) + count(self.correction)
        return parts
