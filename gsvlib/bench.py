"""Throughput, FLOPs and parameters of the streaming segmenter (sec. 4.1, "Complexity Metrics"; Table 2).

Timing runs batch 1 from frame in to full-resolution labels out, after warm-up, with ``torch.cuda.synchronize`` on
GPU. FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts as 2 FLOPs, convs and matmuls only).
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from gsvlib.config import interval_arg, parse_size, setting
from gsvlib.deploy import RUNTIMES  # with "onnx" registered
from gsvlib.device import PRECISIONS, check_device
from gsvlib.models.gsvnet import FLOW_NETS, KEYFRAME_NETS, GSVNet, full_resolution_labels
from gsvlib.models.warp import warp
from gsvlib.progress import progress_bar
from gsvlib.segmenter import VideoSegmenter, padded_size

BACKENDS = tuple(RUNTIMES)  # eager, compiled, onnx


@dataclass
class BenchConfig:
    """``gsv bench``: what to time and how. The options of ``gsv bench`` are generated from these fields."""

    checkpoint: str | None = setting(None, "a gsvkit checkpoint (default: random weights, the same speed)", path=True)
    size: tuple[int, int] = setting((1024, 2048), "input HxW", type=parse_size, many=False, metavar="HxW")
    interval: int = setting(5, "keyframe interval l of the per-frame timing", type=interval_arg)
    intervals: tuple[int, ...] = setting((1, 2, 3, 4, 5), "the intervals l of the full benchmark (--json)",
                                         type=interval_arg)
    key_scale: float | None = setting(None, "keyframe input scale (default: the checkpoint's, else 0.75)", type=float)
    image_scales: tuple[float, ...] = setting((0.5, 0.75, 1.0), "input scales of the image-only baselines")
    backend: tuple[str, ...] = setting(("eager",), "eager PyTorch; compiled: torch.compile of the keyframe path, the "
                                       "non-keyframe path and the output step (compiled in the warm-up: about a "
                                       "minute on a CPU); onnx: exported and run by ONNX Runtime (the onnx extra). "
                                       "Several: the full benchmark of each, one table",
                                       choices=lambda: list(BACKENDS))
    precision: tuple[str, ...] = setting(("fp32",), "fp32, fp16 (CUDA) or bf16 autocast; several: one table over "
                                         "backends x precisions", choices=lambda: list(PRECISIONS))
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    intervals_timed: int = setting(2, "timed keyframe intervals after the warm-up")
    channels_last: bool = setting(False, "channels-last memory format", flag="--channels-last")
    threads: int = setting(0, "CPU threads (0: torch's choice)")
    keyframe_net: str = setting("swiftnet", "keyframe net N without --checkpoint", choices=lambda: list(KEYFRAME_NETS))
    flow_net: str = setting("light", "flow net O without --checkpoint", choices=lambda: list(FLOW_NETS))
    classes: int = setting(19, "classes without --checkpoint")
    json: str | None = setting(None, "write the full benchmark (l = --intervals, image-only at --image-scales) here",
                               path=True)

    def __post_init__(self):
        for name in ("size", "intervals", "image_scales", "backend", "precision"):
            setattr(self, name, tuple(getattr(self, name)))

    def check(self) -> None:
        check_device(self.device)
        for name, allowed in (("backend", BACKENDS), ("precision", PRECISIONS)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad or not getattr(self, name):
                raise ValueError(f"{name} must be among {list(allowed)}, got {list(getattr(self, name))}")
        if len(self.size) != 2 or min(self.size) < 32:
            raise ValueError(f"size must be HxW with both at least 32 pixels (the keyframe net's stride), got "
                             f"{'x'.join(map(str, self.size))}")
        if not 1 <= self.interval <= 30 or not self.intervals or not all(1 <= l <= 30 for l in self.intervals):
            raise ValueError(f"keyframe intervals must lie in 1..30, got {self.interval} and {list(self.intervals)}")
        scales = [*self.image_scales, *([self.key_scale] if self.key_scale is not None else [])]
        if not scales or not all(0 < s <= 2 for s in scales):
            raise ValueError(f"key_scale and image_scales must lie in (0, 2], got {scales}")
        if self.intervals_timed < 1:
            raise ValueError(f"intervals_timed must be >= 1 (the timed keyframe intervals), got {self.intervals_timed}")
        if self.threads < 0 or self.classes < 2:
            raise ValueError(f"threads must be >= 0 and classes >= 2, got {self.threads} and {self.classes}")



@dataclass
class BenchResult:
    size: tuple[int, int]  # (H, W) of the input frames
    interval: int
    key_scale: float
    precision: str
    device: str
    key_ms: float  # median over timed keyframes
    nonkey_ms: float  # median over timed non-keyframes (nan when interval == 1)
    fps: float  # timed frames / total time, over whole intervals
    frame_ms: list[float] = field(repr=False)
    frame_is_key: list[bool] = field(repr=False)

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SPREAD = 0.2  # repeats of one frame type that differ by more than this fraction get a warning


def busy_warning(device: str = "cpu") -> None:
    """Warn when the CPU is already loaded (1-minute load average above torch's thread count): timings taken now are
    slow and noisy."""
    load, threads = os.getloadavg()[0], torch.get_num_threads()
    if torch.device(device).type == "cpu" and load > threads:
        warnings.warn(f"the CPU is busy (load average {load:.1f} for {threads} threads): the timings will be slower "
                      "and noisier than on an idle machine", stacklevel=2)


def _spread_warning(ms: list[float], what: str, label: str) -> None:
    if len(ms) > 1 and max(ms) > (1 + SPREAD) * min(ms):
        warnings.warn(f"{label}: the {len(ms)} timed {what}s took {min(ms):.0f}-{max(ms):.0f} ms, a spread of "
                      f"{max(ms) / min(ms) - 1:.0%}: the machine may be busy; rerun, or time more intervals "
                      "(--intervals-timed)", stacklevel=3)


def time_stream(model: GSVNet, size=(1024, 2048), interval: int = 5, key_scale: float | None = None,
                intervals: int = 2, warmup: int | None = None, device: str = "cpu", precision: str = "fp32",
                progress: bool = True, label: str | None = None, backend: str = "eager") -> BenchResult:
    """Stream ``intervals`` whole keyframe intervals of random frames through a :class:`VideoSegmenter` and time
    every frame (in to labels out). ``warmup`` frames (default: one interval) run first and are not counted.
    ``label`` names the run in the progress bar and in a warning when repeats disagree by more than SPREAD.
    ``backend`` names the runtime (:data:`BACKENDS`): "eager", "compiled" (compiled during the warm-up) or "onnx"
    (exported during the warm-up, run by ONNX Runtime on the CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    reason = unsupported(backend, precision, device)
    if reason:
        raise ValueError(f"backend {backend} cannot run at {precision} on {device}: {reason}")
    seg = VideoSegmenter(model, interval, key_scale, device, PRECISIONS[precision], runtime=backend)
    frame = torch.rand(3, *size, device=seg.device)
    warmup = interval if warmup is None else warmup
    for _ in range(warmup):
        seg.step(frame, labels=True)
    seg.force_keyframe()
    _sync(seg.device)
    ms, keys = [], []
    label = label or f"GSVNet l={interval}"
    for _ in progress_bar(range(intervals * interval), desc=f"timing {label} at {size[0]}x{size[1]}",
                          disable=not progress):
        t0 = time.perf_counter()
        out = seg.step(frame, labels=True)
        _sync(seg.device)
        ms.append((time.perf_counter() - t0) * 1000)
        keys.append(out.is_keyframe)
    key_ms = [m for m, k in zip(ms, keys) if k]
    nonkey_ms = [m for m, k in zip(ms, keys) if not k]
    _spread_warning(key_ms, "keyframe", label)
    _spread_warning(nonkey_ms, "non-keyframe", label)
    return BenchResult(tuple(size), interval, seg.key_scale, precision, str(seg.device), statistics.median(key_ms),
                       statistics.median(nonkey_ms) if nonkey_ms else float("nan"), 1000 * len(ms) / sum(ms), ms, keys)


def nonkey_parts(model: GSVNet, size=(1024, 2048), repeats: int = 5) -> dict[str, float]:
    """Median ms of the parts of an eager non-keyframe at ``size``: the flow net, warping and the GSV conv, and the
    full-resolution labels (upsampling and argmax)."""
    model = model.eval()
    device = next(model.parameters()).device
    h, w = padded_size(size)
    small = model.small_frame(torch.rand(1, 3, h, w, device=device))  # (1, 3, H/8, W/8)
    seg = torch.randn(1, model.config.num_classes, h // 8, w // 8, device=device)
    flow = model.flow(small, small)
    return {"flow": round(time_call(model.flow, small, small, repeats=repeats), 1),
            "warp + GSV conv": round(time_call(lambda: model.gsv(warp(seg, flow, model.conventions.warp_fill), small),
                                              repeats=repeats), 1),
            "labels": round(time_call(full_resolution_labels, seg, (h, w), model.conventions.align_corners,
                                      repeats=repeats), 1)}


def count_flops(fn, *args) -> int:
    """FLOPs of one call ``fn(*args)`` as counted by torch.utils.flop_counter."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops()


def flops_per_frame(model: GSVNet, size=(1024, 2048), key_scale: float = 0.75) -> dict[str, int]:
    """FLOPs of a keyframe (N at ``key_scale``) and of a non-keyframe (O + warp + GSV conv) at frame size ``size``."""
    model = model.eval()
    device = next(model.parameters()).device
    frame = torch.rand(1, 3, size[0] // 32 * 32, size[1] // 32 * 32, device=device)
    small = model.small_frame(frame)  # (1, 3, H/8, W/8)
    seg = torch.randn(1, model.config.num_classes, *small.shape[-2:], device=device)
    return {"keyframe": count_flops(model.segment_keyframe, frame, key_scale),
            "non-keyframe": count_flops(model.propagate, seg, small, small)}


def average_flops(flops: dict[str, int], interval: int) -> float:
    """Average FLOPs per frame over a keyframe interval l: one keyframe and l - 1 non-keyframes."""
    return (flops["keyframe"] + (interval - 1) * flops["non-keyframe"]) / interval


def benchmark(model: GSVNet, cfg: BenchConfig, backend: str = "eager", precision: str = "fp32",
              progress: bool = True) -> dict:
    """Throughput of GSVNet for each interval l of ``cfg.intervals`` and of the image-only keyframe net at
    ``cfg.image_scales``, measured in one run on ``backend`` at ``precision``, with FLOPs (per keyframe, per
    non-keyframe, averaged over l) and parameters per part."""
    size, intervals, image_scales, device = cfg.size, cfg.intervals, cfg.image_scales, cfg.device
    key_scale = model.config.key_scale if cfg.key_scale is None else cfg.key_scale
    repeats = cfg.intervals_timed
    common = dict(device=device, precision=precision, progress=progress, backend=backend)
    gsv = {str(l): time_stream(model, size, l, key_scale, repeats, **common).as_dict() for l in intervals}
    image = {str(s): time_stream(model, size, 1, s, repeats, label=f"image-only x{s}", **common).as_dict()
             for s in image_scales}
    flops = flops_per_frame(model, size, key_scale)
    image_flops = {str(s): count_flops(model.segment_keyframe, torch.rand(1, 3, size[0] // 32 * 32, size[1] // 32 * 32,
                                       device=next(model.parameters()).device), s) for s in image_scales}
    for r in (*gsv.values(), *image.values()):
        r.pop("frame_ms")
        r.pop("frame_is_key")
    env = environment(device)
    return {
        "device": env["device"], "torch": env["torch"], "size": list(size), "key_scale": key_scale,
        "precision": precision,
        "backend": backend, "nonkey_parts_ms": nonkey_parts(model, size),
        "gsvnet": {l: {**r, "gflops_avg": round(average_flops(flops, int(l)) / 1e9, 2)} for l, r in gsv.items()},
        "image_only": {s: {**r, "gflops": round(f / 1e9, 2)} for (s, r), f in zip(image.items(), image_flops.values())},
        "gflops": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "params": model.parameter_counts(),
    }


def environment(device: str = "cpu") -> dict:
    """What a timing belongs to: the device by name, thread count, and the versions of torch and onnxruntime."""
    dev = torch.device(device)
    try:
        ort = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        ort = None
    name = (torch.cuda.get_device_name(dev) if dev.type == "cuda" else
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    return {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__, "onnxruntime": ort,
            "python": platform.python_version()}


def unsupported(backend: str, precision: str, device: str) -> str | None:
    """Why ``backend`` cannot run at ``precision`` on ``device`` here, or None when it can."""
    cuda = torch.device(device).type == "cuda"
    if backend == "onnx" and (cuda or precision != "fp32"):
        return "ONNX Runtime is timed on the CPU in fp32"
    if precision == "fp16" and not cuda:
        return "fp16 autocast needs CUDA (bf16 runs on the CPU)"
    return None


def bench_matrix(model: GSVNet, cfg: BenchConfig, progress: bool = True) -> dict:
    """:func:`benchmark` for every backend x precision of ``cfg`` that can run here, in one process, one after the
    other: {"environment", "runs": [benchmark reports], "skipped": [{"backend", "precision", "reason"}]}."""
    runs, skipped = [], []
    for backend in cfg.backend:
        for precision in cfg.precision:
            reason = unsupported(backend, precision, cfg.device)
            if reason:
                skipped.append({"backend": backend, "precision": precision, "reason": reason})
                continue
            runs.append(benchmark(model, cfg, backend, precision, progress))
    if not runs:
        raise ValueError("none of the backend/precision pairs can run here: " +
                         "; ".join(f"{s['backend']} {s['precision']}: {s['reason']}" for s in skipped))
    return {"environment": environment(cfg.device), "runs": runs, "skipped": skipped}


def matrix_table(m: dict) -> list[str]:
    """Markdown lines of a :func:`bench_matrix` report: one row per backend and precision, with the ratio of its
    GSVNet at the largest l to its image-only net at the keyframe scale, and of each row's FPS to the first row's."""
    env, first = m["environment"], m["runs"][0]
    l = max(first["gsvnet"], key=int)
    scales = list(first["image_only"])
    key = f"{first['key_scale']:g}"
    lines = [f"{first['size'][0]}x{first['size'][1]}, keyframe at x{key}, {env['device']}, torch {env['torch']}"
             + (f", onnxruntime {env['onnxruntime']}" if env["onnxruntime"] else "") + ". FPS from frame in to labels "
             f"out; keyframe and non-keyframe ms are medians at l={l}.", "",
             "| backend | precision | keyframe ms | non-keyframe ms | " + " | ".join(f"l={k}" for k in first["gsvnet"])
             + " | " + " | ".join(f"image x{s}" for s in scales) + f" | l={l} / image x{key} | l={l} vs first row |",
             "|---|---|" + "---:|" * (4 + len(first["gsvnet"]) + len(scales))]
    base = first["gsvnet"][l]["fps"]
    for r in m["runs"]:
        g = r["gsvnet"]
        image = r["image_only"].get(key)
        ratio = f"{g[l]['fps'] / image['fps']:.2f}x" if image else "n/a"
        lines.append(f"| {r['backend']} | {r['precision']} | {g[l]['key_ms']:.0f} | {g[l]['nonkey_ms']:.0f} | "
                     + " | ".join(f"{v['fps']:.2f}" for v in g.values()) + " | "
                     + " | ".join(f"{r['image_only'][s]['fps']:.2f}" for s in scales)
                     + f" | {ratio} | {g[l]['fps'] / base:.2f}x |")
    for s in m["skipped"]:
        lines.append(f"\nNot run: {s['backend']} {s['precision']} ({s['reason']}).")
    parts = first["nonkey_parts_ms"]
    lines.append("\nParts of an eager fp32 non-keyframe (median ms): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + ".")
    return lines


def throughput_table(b: dict) -> list[str]:
    """Markdown lines of a :func:`benchmark` report: FPS, key / non-key ms and GFLOPs for each l and image scale."""
    lines = ["Frame in to full-resolution labels out, median per frame type. GFLOPs from torch.utils.flop_counter "
             "(a multiply-add is 2 FLOPs; the paper counts multiply-adds).", "",
             "| method | FPS | keyframe ms | non-keyframe ms | GFLOPs / frame |", "|---|---:|---:|---:|---:|"]
    for l, g in b["gsvnet"].items():
        missing = g["nonkey_ms"] is None or g["nonkey_ms"] != g["nonkey_ms"]  # l = 1 has no non-keyframe
        nonkey = "-" if missing else f"{g['nonkey_ms']:.0f}"
        lines.append(f"| GSVNet l={l} | {g['fps']:.2f} | {g['key_ms']:.0f} | {nonkey} | {g['gflops_avg']:.1f} |")
    for scale, g in b["image_only"].items():
        lines.append(f"| image-only x{scale} | {g['fps']:.2f} | {g['key_ms']:.0f} | - | {g['gflops']:.1f} |")
    return lines


def time_call(fn, *args, repeats: int = 10) -> float:
    """Median milliseconds of ``fn(*args)`` over ``repeats`` calls after one warm-up call."""
    with torch.inference_mode():
        fn(*args)
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args)
            ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ms)
