"""Throughput, FLOPs and parameters of the streaming segmenter (sec. 4.1, "Complexity Metrics"; Table 2).

Timing runs batch 1 from frame in to full-resolution labels out, after warm-up, with ``torch.cuda.synchronize`` on
GPU, on a frame of the synthetic street video (the output step's cost depends on how many cells border another
class, so noise would time a case no footage has). FLOPs come from ``torch.utils.flop_counter`` (a multiply-add
counts as 2 FLOPs, convs and matmuls only). A roofline measured in the same run, the attainable GFLOP/s of a large
matmul and the bandwidth of a large copy, says how far each part of a frame is from what the machine can do.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from gsvlib.config import interval_arg, parse_size, setting
from gsvlib.data.labels import LabelTable
from gsvlib.data.synthetic import render_snippet
from gsvlib.device import PRECISIONS, check_device
from gsvlib.models.gsvnet import FLOW_NETS, KEYFRAME_NETS, GSVNet
from gsvlib.models.output import dense_labels, full_resolution_labels, mixed_share
from gsvlib.models.warp import warp
from gsvlib.progress import progress_bar
from gsvlib.segmenter import RUNTIMES, VideoSegmenter, padded_size
from gsvlib.video import read_frames, segment_video

BACKENDS = tuple(RUNTIMES)  # eager, compiled, cuda-graphs, onnx, onnx-int8


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
    backend: tuple[str, ...] = setting(("eager",), "eager PyTorch; compiled: torch.compile of the keyframe path and "
                                       "the non-keyframe path (compiled in the warm-up: about a minute on a CPU); "
                                       "cuda-graphs: compiled and captured as CUDA graphs (CUDA); onnx: exported and "
                                       "run by ONNX Runtime (the onnx extra); onnx-int8: the same with the keyframe "
                                       "graph quantized to int8 (calibrated on synthetic frames). Several: the full "
                                       "benchmark of each, one table",
                                       choices=lambda: list(BACKENDS))
    precision: tuple[str, ...] = setting(("fp32",), "fp32, fp16 (CUDA) or bf16 autocast; several: one table over "
                                         "backends x precisions", choices=lambda: list(PRECISIONS))
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    intervals_timed: int = setting(2, "timed keyframe intervals after the warm-up")
    channels_last: bool = setting(False, "channels-last memory format", flag="--channels-last")
    host_frames: bool = setting(False, "frames start in host memory: each frame's time includes its copy to --device "
                                "(a GPU's real input path)", flag="--host-frames")
    threads: int = setting(0, "CPU threads (0: torch's choice)")
    keyframe_net: str = setting("swiftnet", "keyframe net N without --checkpoint", choices=lambda: list(KEYFRAME_NETS))
    flow_net: str = setting("light", "flow net O without --checkpoint", choices=lambda: list(FLOW_NETS))
    classes: int = setting(19, "classes without --checkpoint")
    json: str | None = setting(None, "write the full benchmark (l = --intervals, image-only at --image-scales) here",
                               path=True)
    end_to_end: str | None = setting(None, "a video file or folder of frames: time gsv segment's path on it (to a "
                                     "folder of PNGs and to .mp4, at --interval) beside the model alone on the same "
                                     "frames, in one run; --size is the video's own", path=True, metavar="VIDEO")
    max_frames: int = setting(60, "--end-to-end: the frames of VIDEO timed, from its start")

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
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 (the frames of --end-to-end's video), got {self.max_frames}")
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
    warmup_s: float  # the warm-up before timing: where the compiled and onnx runtimes compile or export
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
                progress: bool = True, label: str | None = None, backend: str = "eager", host_frames: bool = False,
                runtime=None) -> BenchResult:
    """Stream ``intervals`` whole keyframe intervals of the street frame (:func:`street_frame`, uint8) through a
    :class:`VideoSegmenter` and time every frame (in to labels out). ``warmup`` frames (default: one interval) run
    first and are not counted. ``label`` names the run in the progress bar and in a warning when repeats disagree by
    more than SPREAD. ``backend`` names the runtime (:data:`BACKENDS`): "eager", "compiled" (compiled during the
    warm-up), "cuda-graphs" (CUDA) or "onnx" (exported during the warm-up, run by ONNX Runtime on the CPU);
    ``runtime``, one built before (:data:`RUNTIMES`), is reused instead, with what it compiled.
    ``host_frames``: the frame starts in host memory, and each step's time includes its copy to ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    reason = RUNTIMES[backend].unsupported(precision, device)
    if reason:
        raise ValueError(f"backend {backend} cannot run at {precision} on {device}: {reason}")
    seg = VideoSegmenter(runtime or model, interval, key_scale, device, PRECISIONS[precision], runtime=backend)
    frame = street_frame(tuple(size)) if host_frames else street_frame(tuple(size)).to(seg.device)
    warmup = interval if warmup is None else warmup
    t0 = time.perf_counter()
    for _ in range(warmup):
        seg.step(frame, labels=True)
    seg.force_keyframe()
    _sync(seg.device)
    warmup_s = time.perf_counter() - t0
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
                       statistics.median(nonkey_ms) if nonkey_ms else float("nan"), 1000 * len(ms) / sum(ms),
                       round(warmup_s, 2), ms, keys)


PARTS = ("keyframe net N", "flow net O", "warp (eq. 1)", "GSV conv (eq. 2)", "labels (output step)",
         "labels, literal (baseline)")  # the parts of a frame part_timings times, in the order tables show them


@lru_cache(maxsize=4)
def street_frame(size: tuple[int, int]) -> torch.Tensor:
    """The first frame of synthetic street snippet 0 rendered at ``size`` (H, W): (3, H, W) uint8, the frame timed."""
    rgb = next(render_snippet(0, 0, size, frames=1))[0]  # (H, W, 3) uint8
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def native_precisions(device: str = "cpu") -> list[str]:
    """The matmul precisions the hardware computes natively: fp32, plus bf16 (CPUs with AVX512-BF16 or AMX; CUDA
    where supported) and fp16 (CUDA)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    return ["fp32"] + (["bf16"] if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else [])


def roofline(device: str = "cpu", n: int | None = None, copy_mb: int | None = None, repeats: int = 3) -> dict:
    """What this machine attains: GFLOP/s of an n x n x n matmul in each native precision and GB/s of a copy of
    ``copy_mb`` MB (read + write), best of ``repeats`` after one warm-up call. Defaults: 2048 and 256 MB on a CPU,
    8192 and 2048 MB on a GPU (large enough to leave launch overheads and caches behind)."""
    dev = check_device(device)
    gpu = dev.type == "cuda"
    n, copy_mb = n or (8192 if gpu else 2048), copy_mb or (2048 if gpu else 256)

    def best_ms(fn) -> float:
        fn()
        _sync(dev)
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            ms.append((time.perf_counter() - t0) * 1000)
        return min(ms)

    gflop_s = {}
    for precision in native_precisions(device):
        a, b = (torch.randn(n, n, device=dev, dtype=PRECISIONS[precision] or torch.float32) for _ in range(2))
        gflop_s[precision] = round(2 * n ** 3 / best_ms(lambda: a @ b) / 1e6, 1)
    src = torch.empty(copy_mb * 2 ** 20 // 4, device=dev)
    dst = torch.empty_like(src)
    copy_gb_s = round(2 * src.numel() * 4 / best_ms(lambda: dst.copy_(src)) / 1e6, 1)  # bytes read + written
    return {"matmul_gflop_s": gflop_s, "copy_gb_s": copy_gb_s, "matmul_size": n, "copy_mb": copy_mb}


def part_timings(model: GSVNet, size=(1024, 2048), key_scale: float = 0.75, repeats: int = 5,
                 peak_gflop_s: float | None = None) -> dict[str, dict]:
    """Each part of a frame, eager at fp32 on the street frame: median ms, GFLOPs (the output step's nominal 4 C
    multiply-adds per pixel of the literal upsampling), achieved GFLOP/s and, given ``peak_gflop_s``, its share of
    that peak. Parts: the keyframe net N, the flow net O, warping (eq. 1), the GSV conv (eq. 2) and the output step
    (labels; with the share of spans between cells of different classes, which is what it costs), and as a baseline
    the literal output step (:func:`~gsvlib.models.output.dense_labels`: upsample, then argmax)."""
    model = model.eval()
    device = next(model.parameters()).device
    h, w = padded_size(size)
    frame = torch.nn.functional.pad(street_frame(tuple(size)).float().div(255).to(device)[None],
                                    (0, w - size[1], 0, h - size[0]), mode="replicate")  # (1, 3, H', W')
    with torch.inference_mode():
        small = model.small_frame(frame)  # (1, 3, H/8, W/8)
        seg = model.segment_keyframe(frame, key_scale)  # (1, C, H/8, W/8)
        flow = model.flow(small, small)
        warped = warp(seg, flow, model.conventions.warp_fill)
    corners = model.conventions.align_corners
    calls = dict(zip(PARTS, ((model.segment_keyframe, frame, key_scale), (model.flow, small, small),
                             (warp, seg, flow, model.conventions.warp_fill), (model.correction, warped, small),
                             (full_resolution_labels, seg, (h, w), corners), (dense_labels, seg, (h, w), corners))))
    parts = {}
    for name, (fn, *args) in calls.items():
        ms = time_call(fn, *args, repeats=repeats, device=device)
        flops = 8 * seg.shape[1] * h * w if fn in (full_resolution_labels, dense_labels) else count_flops(fn, *args)
        parts[name] = {"ms": round(ms, 2), "gflops": round(flops / 1e9, 3), "gflop_s": round(flops / ms / 1e6, 1)}
        if peak_gflop_s:
            parts[name]["peak_share"] = round(flops / ms / 1e6 / peak_gflop_s, 3)
    parts["labels (output step)"]["mixed_share"] = round(mixed_share(seg, (h, w), corners), 3)
    return parts


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
    if precision != "fp32" and precision not in native_precisions(device):
        warnings.warn(f"{precision} is not native on this {'GPU' if 'cuda' in device else 'CPU'} (no AVX512-BF16 or "
                      f"AMX): autocast emulates it, and this benchmark can take many times longer than fp32",
                      stacklevel=2)
    key_scale = model.config.key_scale if cfg.key_scale is None else cfg.key_scale
    repeats = cfg.intervals_timed
    runtime = RUNTIMES[backend].build(model.to(check_device(device)).eval())  # compiled once for every l
    common = dict(device=device, precision=precision, progress=progress, backend=backend,
                  host_frames=cfg.host_frames, runtime=runtime)
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
    roof = roofline(device)
    return {
        "device": env["device"], "torch": env["torch"], "size": list(size), "key_scale": key_scale,
        "precision": precision, "backend": backend, "host_frames": cfg.host_frames, "roofline": roof,
        "parts": part_timings(model, size, key_scale, peak_gflop_s=roof["matmul_gflop_s"]["fp32"]),
        "gsvnet": {l: {**r, "gflops_avg": round(average_flops(flops, int(l)) / 1e9, 2)} for l, r in gsv.items()},
        "image_only": {s: {**r, "gflops": round(f / 1e9, 2)} for (s, r), f in zip(image.items(), image_flops.values())},
        "gflops": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "params": list(model.parameter_counts().items()),  # [part, count] pairs: a list keeps the paper's order
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


def bench_matrix(model: GSVNet, cfg: BenchConfig, progress: bool = True, done: Callable | None = None) -> dict:
    """:func:`benchmark` for every backend x precision of ``cfg`` that can run here, in one process, one after the
    other: {"environment", "runs": [benchmark reports], "skipped": [{"backend", "precision", "reason"}]}.
    ``done(report)`` is called with the report so far after each run (``gsv bench --json`` writes it: a run stopped
    by a time limit keeps what it measured)."""
    pairs, skipped = pairs_to_run(cfg)
    report = {"environment": environment(cfg.device), "runs": [], "skipped": skipped}
    for backend, precision in pairs:
        report["runs"].append(benchmark(model, cfg, backend, precision, progress))
        if done is not None:
            done(report)
    return report


def pairs_to_run(cfg: BenchConfig) -> tuple[list[tuple[str, str]], list[dict]]:
    """The backend x precision pairs of ``cfg`` that can run on its device, and those that cannot, with the reason; an
    error when none can."""
    reasons = {(b, p): RUNTIMES[b].unsupported(p, cfg.device) for b in cfg.backend for p in cfg.precision}
    skipped = [{"backend": b, "precision": p, "reason": why} for (b, p), why in reasons.items() if why]
    if len(skipped) == len(reasons):
        raise ValueError("none of the backend/precision pairs can run here: " +
                         "; ".join(f"{s['backend']} {s['precision']}: {s['reason']}" for s in skipped))
    return [pair for pair, why in reasons.items() if not why], skipped


# where gsv segment's path writes in the end-to-end benchmark: overlays to a folder of PNGs and to .mp4, and class ids
# to a folder of label PNGs (--labels), each output's name in the temporary folder
END_TO_END_OUTPUTS = {"folder": "overlays", ".mp4": "overlays.mp4", "labels": "labels"}


def _model_only(seg: VideoSegmenter, frames: list, progress: bool, label: str) -> float:
    """FPS of ``seg`` on ``frames`` held in memory: what gsv segment's model stage does per frame (a tensor from the
    array, the step, the labels as an array), and nothing else."""
    seg.reset()
    ms = []
    for frame in progress_bar(frames, desc=f"timing {label}, the model alone", disable=not progress, unit="frame"):
        t0 = time.perf_counter()
        seg.step(torch.tensor(frame).permute(2, 0, 1), labels=True).labels[0].cpu().numpy()
        ms.append((time.perf_counter() - t0) * 1000)
    return 1000 * len(ms) / sum(ms)


def end_to_end(model: GSVNet, video: str | Path, table: LabelTable, cfg: BenchConfig, progress: bool = True,
               done: Callable | None = None) -> dict:
    """gsv segment's whole path on the first ``cfg.max_frames`` frames of ``video`` (decode, model, overlay,
    encode; to a temporary folder of PNGs, a temporary .mp4 and a folder of label PNGs) timed beside the model alone
    on the same frames, held in memory, for each backend x precision of ``cfg`` that runs here, one after the other in
    one process.
    Each pair warms up on one keyframe interval first (where compiled and onnx runtimes compile or export). Returns
    {"environment", "video", "frames", "size", "interval", "rows": [...], "skipped": [...]}; each row has the
    backend, precision, output ("model only" or an output of END_TO_END_OUTPUTS), its FPS, its share of the model
    alone's FPS, and for the outputs the stage times (:data:`gsvlib.video.STAGES`) and what bounds them.
    ``done(report)`` is called after each pair."""
    frames = [f for _, f in zip(range(cfg.max_frames), read_frames(video)[0])]
    pairs, skipped = pairs_to_run(cfg)
    report = {"environment": environment(cfg.device), "video": str(video), "frames": len(frames),
              "size": list(frames[0].shape[:2]), "interval": cfg.interval, "rows": [], "skipped": skipped}
    for backend, precision in pairs:
        seg = VideoSegmenter(model, cfg.interval, cfg.key_scale, cfg.device, PRECISIONS[precision], runtime=backend)
        label = f"{backend} {precision} l={cfg.interval}"
        _model_only(seg, frames[:cfg.interval], False, label)  # the warm-up
        alone = _model_only(seg, frames, progress, label)
        row = {"backend": backend, "precision": precision, "key_scale": seg.key_scale}
        report["rows"].append({**row, "output": "model only", "fps": round(alone, 2), "share": 1.0})
        with tempfile.TemporaryDirectory(prefix="gsvkit-end-to-end-") as tmp:
            for output, name in END_TO_END_OUTPUTS.items():
                s = segment_video(seg, video, Path(tmp) / name, table, max_frames=cfg.max_frames, progress=progress,
                                  labels=output == "labels")
                report["rows"].append({**row, "output": output, "fps": s["fps_end_to_end"],
                                       "share": round(s["fps_end_to_end"] / alone, 3), "model_fps": s["fps"],
                                       "stage_ms": s["stage_ms"], "bound_by": s["bound_by"]})
        if done is not None:
            done(report)
    return report


def end_to_end_table(r: dict) -> list[str]:
    """Markdown lines of an :func:`end_to_end` report: per backend, precision and output, the end-to-end FPS, its share
    of the model alone's, and each stage's ms per frame."""
    env = r["environment"]
    lines = [f"{r['frames']} frames of {Path(r['video']).name}, {r['size'][1]}x{r['size'][0]}, l={r['interval']}, "
             f"{env['device']}, torch {env['torch']}" + (f", onnxruntime {env['onnxruntime']}" if env["onnxruntime"]
                                                           else "") + ". Stage times are ms per frame; decoding and "
             "overlay + encoding run in threads of their own beside the model.", "",
             "| backend | precision | output | FPS | of the model alone | model ms | decode ms | overlay ms | encode ms "
             "| model waited (in / out) ms | bound by |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in r["rows"]:
        ms = row.get("stage_ms")
        stages = (f"{1000 / row['model_fps']:.1f} | {ms['decode']:.1f} | {ms['overlay']:.1f} | {ms['encode']:.1f} | "
                  f"{ms['wait_input']:.1f} / {ms['wait_output']:.1f} | {row['bound_by']}") if ms else \
            f"{1000 / row['fps']:.1f} | - | - | - | - | -"
        lines.append(f"| {row['backend']} | {row['precision']} | {row['output']} | {row['fps']:.1f} | "
                     f"{row['share']:.0%} | {stages} |")
    for s in r["skipped"]:
        lines.append(f"\nNot run: {s['backend']} {s['precision']} ({s['reason']}).")
    return lines


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
             "| backend | precision | keyframe ms | non-keyframe ms | key / non-key | "
             + " | ".join(f"l={k}" for k in first["gsvnet"])
             + " | " + " | ".join(f"image x{s}" for s in scales) + f" | l={l} / image x{key} | l={l} vs first row |",
             "|---|---|" + "---:|" * (5 + len(first["gsvnet"]) + len(scales))]
    base = first["gsvnet"][l]["fps"]
    for r in m["runs"]:
        g = r["gsvnet"]
        image = r["image_only"].get(key)
        ratio = f"{g[l]['fps'] / image['fps']:.2f}x" if image else "n/a"
        lines.append(f"| {r['backend']} | {r['precision']} | {g[l]['key_ms']:.0f} | {g[l]['nonkey_ms']:.0f} | "
                     f"{g[l]['key_ms'] / g[l]['nonkey_ms']:.1f}x | "
                     + " | ".join(f"{v['fps']:.2f}" for v in g.values()) + " | "
                     + " | ".join(f"{r['image_only'][s]['fps']:.2f}" for s in scales)
                     + f" | {ratio} | {g[l]['fps'] / base:.2f}x |")
    for s in m["skipped"]:
        lines.append(f"\nNot run: {s['backend']} {s['precision']} ({s['reason']}).")
    return lines + ["", *roofline_lines(first)]


def roofline_lines(b: dict) -> list[str]:
    """Markdown lines of a :func:`benchmark` report's roofline: each part of a frame (eager fp32) in ms, GFLOPs,
    achieved GFLOP/s and share of the measured matmul peak, and the time ratio beside the FLOPs ratio."""
    roof, parts = b["roofline"], b["parts"]
    peaks = ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in roof["matmul_gflop_s"].items())
    l = max(b["gsvnet"], key=int)
    g = b["gsvnet"][l]
    lines = [f"Roofline measured in the same run: matmul {peaks} ({roof['matmul_size']}^3; other precisions are not "
             f"native here), copy {roof['copy_gb_s']:.1f} GB/s. Keyframe / non-keyframe at l={l} ({b['backend']} "
             f"{b['precision']}): {g['key_ms'] / g['nonkey_ms']:.1f}x in time, "
             f"{b['gflops']['keyframe'] / b['gflops']['non-keyframe']:.1f}x in FLOPs.", "",
             "| part (eager fp32) | ms | GFLOPs | GFLOP/s | share of the fp32 matmul peak |",
             "|---|---:|---:|---:|---:|"]
    for name in PARTS:
        p = parts[name]
        counted = p["gflops"] > 0  # grid_sample's arithmetic is not counted by the FLOP counter
        lines.append(f"| {name} | {p['ms']:.1f} | {p['gflops']:.2f} | {p['gflop_s']:.0f} | {p['peak_share']:.0%} |"
                     if counted else f"| {name} | {p['ms']:.1f} | - | - | - |")
    labels, literal = parts["labels (output step)"], parts["labels, literal (baseline)"]
    lines += ["", f"The output step's GFLOPs are the literal upsampling's (4 C multiply-adds per pixel); it computes "
              f"scores only in the {labels['mixed_share']:.0%} of spans between cells of different classes: "
              f"{labels['ms']:.1f} ms against {literal['ms']:.1f} ms for the literal upsample and argmax in this run."]
    return lines


def throughput_table(b: dict) -> list[str]:
    """Markdown lines of a :func:`benchmark` report: FPS, key / non-key ms and GFLOPs for each l and image scale, then
    its roofline (:func:`roofline_lines`)."""
    lines = ["Frame in to full-resolution labels out, median per frame type. GFLOPs from torch.utils.flop_counter "
             "(a multiply-add is 2 FLOPs; the paper counts multiply-adds).", "",
             "| method | FPS | keyframe ms | non-keyframe ms | GFLOPs / frame |", "|---|---:|---:|---:|---:|"]
    for l, g in b["gsvnet"].items():
        missing = g["nonkey_ms"] is None or g["nonkey_ms"] != g["nonkey_ms"]  # l = 1 has no non-keyframe
        nonkey = "-" if missing else f"{g['nonkey_ms']:.0f}"
        lines.append(f"| GSVNet l={l} | {g['fps']:.2f} | {g['key_ms']:.0f} | {nonkey} | {g['gflops_avg']:.1f} |")
    for scale, g in b["image_only"].items():
        lines.append(f"| image-only x{scale} | {g['fps']:.2f} | {g['key_ms']:.0f} | - | {g['gflops']:.1f} |")
    return lines + (["", *roofline_lines(b)] if "roofline" in b else [])  # benchmarks before the roofline lack it


def time_call(fn, *args, repeats: int = 10, device: str | torch.device = "cpu") -> float:
    """Median milliseconds of ``fn(*args)`` over ``repeats`` calls after one warm-up call (synchronised on CUDA)."""
    device = torch.device(device)
    with torch.inference_mode():
        fn(*args)
        ms = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn(*args)
            _sync(device)
            ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ms)
