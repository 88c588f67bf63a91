"""The streaming runtime: ``VideoSegmenter.step(frame)`` segments the next frame of a video, a keyframe every ``l``.

A keyframe is segmented by the keyframe net N; every other frame by a *propagation*, a function of the model, the
previous segmentation S_{t-1} and the normalised 1/8 frames I_{t-1}, I_t. ``PROPAGATIONS`` is the registry of them:
GSVNet's own (the paper's PF) and the baselines the evaluation compares it with. Registering a new one is one line,
and ``gsv eval --variants``, the reports and the tour pick it up.

A :class:`KeyframePolicy` makes the keyframes adaptive: after each GSVNet non-keyframe it reads a *signal* of how far
propagation has drifted from what PF computed anyway (:data:`SIGNALS`), sums it since the last keyframe, and
segments the frame again as a keyframe once the sum passes a threshold; the interval ``l`` stays the longest run.

Needs only the base dependencies (torch); nothing here draws.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from gsvlib.device import PRECISIONS, check_device
from gsvlib.models.gsvnet import GSVNet, Propagation
from gsvlib.models.output import full_resolution_labels


class Propagator(NamedTuple):
    """How a non-keyframe is predicted: ``step(model, prev_seg, prev_small, cur_small)`` -> S_t (B, C, H/8, W/8),
    and the trained parts of the model it runs besides the keyframe net (``uses``: names of
    :data:`gsvlib.checkpoint.PARTS`)."""

    title: str  # the name tables and plots print
    step: Callable[[GSVNet, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    uses: tuple[str, ...] = ()


PROPAGATIONS: dict[str, Propagator] = {
    "gsv": Propagator("GSVNet", lambda model, seg, prev, cur: model.propagate(seg, prev, cur).seg,  # eq. (1) + (2)
                      ("flow_net", "correction")),
    "warp": Propagator("warp only", lambda model, seg, prev, cur: model.warp_previous(seg, prev, cur)[0],  # eq. (1)
                       ("flow_net",)),
    "copy": Propagator("copy previous", lambda model, seg, prev, cur: seg),  # S_t = S_{t-1}
}
PAPER = "gsv"  # the paper's PF: the propagation every default names (segmenters, the protocol, a report's baseline)


class Signal(NamedTuple):
    """A reading of one non-keyframe's propagation: ``measure(model, propagation)`` -> (B,), larger = more drift."""

    title: str
    measure: Callable[[GSVNet, Propagation], torch.Tensor]


SIGNALS: dict[str, Signal] = {
    # how far the scene moved: mean |m_t| in pixels of the 1/8 grid
    "flow": Signal("mean flow magnitude (1/8-grid pixels)", lambda model, p: p.flow.norm(dim=1).mean((1, 2))),
    # how much the guiding net distrusts the warped S^-_t: the kernel mass on the shifts and the intra estimate
    "kernel": Signal("kernel mass off the identity tap",
                     lambda model, p: 1 - p.kernels[:, model.correction.identity_tap].mean((1, 2))),
    # how often the current frame's own crude estimate f^i_t disagrees with the propagated labels
    "intra": Signal("share of cells where the intra estimate disagrees with S_t",
                    lambda model, p: (p.intra.argmax(1) != p.seg.argmax(1)).float().mean((1, 2))),
}


@dataclass(frozen=True)
class KeyframePolicy:
    """Adaptive keyframes: a non-keyframe whose ``signal`` (a key of :data:`SIGNALS`), summed over the frames since
    the last keyframe, exceeds ``threshold`` is segmented again as a keyframe. ``threshold=inf`` never forces one
    (the signal is still read: what calibrating a threshold needs)."""

    signal: str
    threshold: float

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {sorted(SIGNALS)}, got {self.signal!r}")
        if not (isinstance(self.threshold, (int, float)) and self.threshold > 0) or math.isnan(self.threshold):
            raise ValueError(f"threshold must be a positive number (inf: never force a keyframe), got "
                             f"{self.threshold!r}")


def padded_size(size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) rounded up to multiples of 32: the size a frame is padded to before the nets see it."""
    return tuple(math.ceil(v / 32) * 32 for v in size)


def check_interval(interval) -> None:
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise ValueError(f"interval l must be a positive integer (1 = every frame a keyframe), got {interval!r}")


class Step(NamedTuple):
    logits: torch.Tensor  # (B, C, ceil(H/8), ceil(W/8)) S_t, cropped to the frame
    is_keyframe: bool
    index: int  # frame index in the stream since the last reset
    labels: torch.Tensor | None  # (B, H, W) full-resolution labels when asked for: uint8 (int16 above 256 classes)
    signal: float | None = None  # with a policy: this frame's signal reading (largest over the batch), if propagated
    forced: bool = False  # with a policy: the frame was propagated, then the policy made it a keyframe


class EagerRuntime:
    """How a :class:`VideoSegmenter` runs ``model``: PyTorch, op by op. The runtime interface: ``small(frame)`` (the
    normalised 1/8 frame I_t), ``keyframe(frame, scale)`` (N, -> S_t), ``propagate(seg, prev_small, cur_small)`` (->
    S_t and the policy signal's (B,) reading, or None without ``measure``), ``labels(seg, size)`` (the output step,
    :func:`full_resolution_labels`), and the attributes ``name``, ``device`` and ``key_scale`` (its default keyframe
    scale) and ``fixed_scale`` (True when the keyframe scale cannot change, as in exported graphs)."""

    fixed_scale = False
    name = "eager"

    def __init__(self, model: GSVNet, propagation: str = PAPER, measure: Callable | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.key_scale = model.config.key_scale
        self.measure = measure
        self._step = PROPAGATIONS[propagation].step
        self._corners = model.conventions.align_corners

    def small(self, frame: torch.Tensor) -> torch.Tensor:
        return self.model.small_frame(frame)  # (B, 3, H/8, W/8)

    def keyframe(self, frame: torch.Tensor, scale: float) -> torch.Tensor:
        return self.model.segment_keyframe(frame, scale)  # (B, C, H/8, W/8)

    def propagate(self, seg: torch.Tensor, prev_small: torch.Tensor, cur_small: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.measure is None:
            return self._step(self.model, seg, prev_small, cur_small), None
        p = self.model.propagate(seg, prev_small, cur_small)  # a policy reads PF's intermediates
        return p.seg, self.measure(self.model, p).float()

    def labels(self, seg: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return full_resolution_labels(seg, size, self._corners)  # (B, H, W)


class CompiledRuntime(EagerRuntime):
    """:class:`EagerRuntime` with the keyframe path and the non-keyframe path compiled by torch.compile (static shapes:
    one compile per frame size and keyframe scale, on the first keyframe and the first non-keyframe). The output step
    is compiled on CUDA, where inductor fuses the upsampling and the argmax; on the CPU the eager step, which computes
    scores only between cells of different classes, is 2-4x faster than the fused one. Labels equal the eager ones
    except where two classes tie to float rounding."""

    mode = "default"  # torch.compile's mode
    name = "compiled"

    def __init__(self, model: GSVNet, propagation: str = PAPER, measure: Callable | None = None):
        super().__init__(model, propagation, measure)
        self.keyframe = torch.compile(self.keyframe, dynamic=False, mode=self.mode)
        self.propagate = torch.compile(self.propagate, dynamic=False, mode=self.mode)
        if self.device.type != "cpu":
            self.labels = torch.compile(self.labels, dynamic=False, mode=self.mode)


def _replayed(fn: Callable) -> Callable:
    """``fn`` compiled into a CUDA graph, called as a step of its own, with its outputs copied out of the graph's
    memory (the next replay overwrites it; S_t must outlive the frame)."""
    def call(*args):
        torch.compiler.cudagraph_mark_step_begin()
        out = fn(*args)
        return tuple(o.clone() if isinstance(o, torch.Tensor) else o for o in out) if isinstance(out, tuple) \
            else out.clone()
    return call


class CudaGraphRuntime(CompiledRuntime):
    """CUDA only: :class:`CompiledRuntime` with each path captured as a CUDA graph (torch.compile's
    "reduce-overhead" mode): one launch per path per frame instead of one per kernel, which is what a non-keyframe's
    many small kernels need on a fast GPU."""

    mode = "reduce-overhead"
    name = "cuda-graphs"

    def __init__(self, model: GSVNet, propagation: str = PAPER, measure: Callable | None = None):
        super().__init__(model, propagation, measure)
        self.keyframe, self.propagate, self.labels = map(_replayed, (self.keyframe, self.propagate, self.labels))


class Runtime(NamedTuple):
    """A registered runtime: the class that runs a model (``where``, "module:Class", imported when first built, so
    that the registry knows every member without its module being imported first) and where it runs
    (``supports``: device type -> the precisions of :data:`gsvlib.device.PRECISIONS` it runs there)."""

    where: str
    supports: dict[str, tuple[str, ...]]

    def unsupported(self, precision: str, device: str | torch.device) -> str | None:
        """Why this runtime cannot run at ``precision`` on ``device``, or None when it can."""
        kind = torch.device(device).type
        if kind not in self.supports:
            return f"it runs on {' or '.join(d.upper() for d in self.supports)} only"
        if precision not in self.supports[kind]:
            return f"on {kind.upper()} it runs {', '.join(self.supports[kind])} only"
        return None

    def build(self, model: GSVNet, propagation: str = PAPER, measure: Callable | None = None, **options):
        """The runtime for ``model`` (on its device), running the non-keyframe path ``propagation``; ``options`` go to
        its class (e.g. the calibration frames of "onnx-int8")."""
        module, _, name = self.where.partition(":")
        return getattr(importlib.import_module(module), name)(model, propagation, measure, **options)


_TORCH = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")}  # autocast: fp16 on CUDA only
# The runtimes a VideoSegmenter can run a model with; `gsv bench --backend` and `gsv segment` read their names and
# what each supports from here. "onnx" (ONNX Runtime, exported on the first frame) needs the onnx extra; so does
# "onnx-int8", the same with the keyframe graph quantized to int8.
RUNTIMES: dict[str, Runtime] = {
    "eager": Runtime("gsvlib.segmenter:EagerRuntime", _TORCH),
    "compiled": Runtime("gsvlib.segmenter:CompiledRuntime", _TORCH),
    "cuda-graphs": Runtime("gsvlib.segmenter:CudaGraphRuntime", {"cuda": _TORCH["cuda"]}),
    "onnx": Runtime("gsvlib.deploy:ExportingOnnxRuntime", {"cpu": ("fp32",)}),
    "onnx-int8": Runtime("gsvlib.deploy:ExportingInt8OnnxRuntime", {"cpu": ("fp32",)}),  # fp32 around int8 keyframes
}


class VideoSegmenter:
    """Streaming GSVNet: ``step(frame)`` segments the next frame of a video, a keyframe every ``interval`` frames.

    ``model`` is a :class:`GSVNet`, run by the runtime named ``runtime`` (:data:`RUNTIMES`: "eager", "compiled",
    "cuda-graphs", "onnx", "onnx-int8"; built with ``runtime_options``, e.g. {"calibration": frames} for
    "onnx-int8"), or a runtime itself (e.g. ``gsvlib.deploy.OnnxRuntime(folder)``).
    Frames are (3, H, W) or (B, 3, H, W) RGB tensors, float in [0, 1] or uint8, of any size: frames whose H or W is
    not divisible by 32 are padded (edge replicate) on the bottom/right inside, and every output is cropped back.
    ``key_scale`` rescales keyframes before N; by default the model's own (``model.config.key_scale``: the scale its
    propagation trained at, else the paper's 0.75). On CUDA, ``amp_dtype`` (torch.float16 or torch.bfloat16) runs the
    nets under autocast; on the CPU only bfloat16 is accepted.
    ``propagation`` names the non-keyframe path in :data:`PROPAGATIONS`: "gsv" (the paper's PF), or the baselines
    "warp" (eq. 1 alone, no GSV conv) and "copy" (repeat the previous segmentation).
    ``policy`` (a :class:`KeyframePolicy`, "gsv" propagation only) forces a keyframe earlier than ``interval`` when
    its signal says propagation is drifting; ``interval`` still bounds every run of non-keyframes.
    """

    def __init__(self, model, interval: int = 5, key_scale: float | None = None,
                 device: str | torch.device | None = None, amp_dtype: torch.dtype | None = None,
                 check_finite: bool = True, propagation: str = PAPER, runtime: str = "eager",
                 policy: KeyframePolicy | None = None, runtime_options: dict | None = None):
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {sorted(PROPAGATIONS)}, got {propagation!r}")
        if policy is not None and propagation != PAPER:
            raise ValueError(f"a keyframe policy reads GSVNet's propagation; it cannot run with {propagation!r}")
        check_interval(interval)
        measure = SIGNALS[policy.signal].measure if policy is not None else None
        if isinstance(model, GSVNet):
            if policy is not None and policy.signal in ("kernel", "intra") and model.config.correction != "gsv":
                raise ValueError(f"the {policy.signal!r} signal reads the GSV conv, which correction "
                                 f"{model.config.correction!r} replaces; use 'flow'")
            if policy is not None and policy.signal == "intra" and not model.correction.use_intra:
                raise ValueError("the 'intra' signal needs a model with the intra-frame net (use_intra=True); use "
                                 "'flow' or 'kernel'")
            if runtime not in RUNTIMES:
                raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}")
            device = check_device(device) if device is not None else next(model.parameters()).device
            precision = next((name for name, dtype in PRECISIONS.items() if dtype == amp_dtype), None)
            why = precision and RUNTIMES[runtime].unsupported(precision, device)
            can = [name for name, r in RUNTIMES.items() if precision and not r.unsupported(precision, device)]
            if why and can:  # a precision no runtime runs here is refused below, for every kind of model
                raise ValueError(f"runtime {runtime!r} cannot run {precision} on {device}: {why}; use "
                                 f"{' or '.join(map(repr, can))}")
            self.runtime = RUNTIMES[runtime].build(model.to(device).eval(), propagation, measure,
                                                   **(runtime_options or {}))
        else:
            if policy is not None:
                raise ValueError("a keyframe policy reads PF's intermediates, which this runtime does not output: "
                                 "run the model itself (a GSVNet; gsv segment --checkpoint)")
            self.runtime = model
        self.device = self.runtime.device
        key_scale = self.runtime.key_scale if key_scale is None else key_scale
        if not 0 < key_scale <= 2:
            raise ValueError(f"key_scale must be in (0, 2], got {key_scale}")
        if self.runtime.fixed_scale and key_scale != self.runtime.key_scale:
            raise ValueError(f"this runtime's keyframe scale is fixed at {self.runtime.key_scale} (exported graphs); "
                             f"got key_scale {key_scale}")
        allowed = (torch.float16, torch.bfloat16) if self.device.type == "cuda" else (torch.bfloat16,)
        if amp_dtype is not None and amp_dtype not in allowed:
            raise ValueError(f"amp_dtype on {self.device.type} must be None or one of {allowed}, got {amp_dtype}")
        self.propagation = propagation
        self.interval = interval
        self.key_scale = key_scale
        self.amp_dtype = amp_dtype
        self.check_finite = check_finite
        self.policy = policy
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next frame is a keyframe and may have a new size."""
        self.index = 0
        self._since_key: int | None = None  # frames since the last keyframe; None: the next frame is one
        self._drift = 0.0  # the policy's signal summed since the last keyframe
        self._seg: torch.Tensor | None = None  # (B, C, H'/8, W'/8) S_{t-1}
        self._prev_small: torch.Tensor | None = None  # (B, 3, H'/8, W'/8) the normalised 1/8 frame I_{t-1}
        self._size: tuple[int, int, int] | None = None  # (B, H, W) of the stream's frames

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
        given_bytes = frame.dtype == torch.uint8
        frame = frame.float() / 255 if given_bytes else frame.float()
        if self.check_finite and not given_bytes:  # bytes are always finite and in range
            lo, hi = (v.item() for v in torch.aminmax(frame))  # one pass; NaN propagates into both
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"frame {self.index} contains NaN or Inf values")
            if lo < -1e-3 or hi > 1 + 1e-3:  # a little slack for resampled frames
                raise ValueError(f"frame {self.index} holds values in [{lo:g}, {hi:g}]; floating-point frames are RGB "
                                 "in [0, 1]: divide 0..255 values by 255 (or pass them as uint8)")
        self._size = size
        h, w = frame.shape[-2:]
        ph, pw = padded_size((h, w))
        if (ph, pw) == (h, w):
            return frame
        return F.pad(frame, (0, pw - w, 0, ph - h), mode="replicate")  # (B, 3, H', W'), H', W' divisible by 32

    @torch.inference_mode()
    def step(self, frame: torch.Tensor, labels: bool = False) -> Step:
        """Segment the next frame; ``labels=True`` also returns full-resolution argmax labels (bilinear upsample)."""
        x = self._prepare(frame)
        h, w = self._size[1:]
        is_key = self._since_key is None or self._since_key + 1 >= self.interval
        signal, forced = None, False
        run = self.runtime
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            cur_small = run.small(x)  # (B, 3, H'/8, W'/8)
            if not is_key:
                seg, reading = run.propagate(self._seg, self._prev_small, cur_small)  # (B, C, H'/8, W'/8)
                if reading is not None:
                    signal = reading.max().item()  # the batch refreshes together: its worst frame decides
                    self._drift += signal
                    forced = is_key = self._drift > self.policy.threshold
            if is_key:
                seg = run.keyframe(x, self.key_scale)
        self._seg = seg
        self._prev_small = cur_small
        self._since_key = 0 if is_key else self._since_key + 1
        self._drift = 0.0 if is_key else self._drift
        out = Step(seg[..., : math.ceil(h / 8), : math.ceil(w / 8)].float(), is_key, self.index,
                   run.labels(seg, tuple(x.shape[-2:]))[..., :h, :w] if labels else None, signal, forced)
        self.index += 1
        return out
