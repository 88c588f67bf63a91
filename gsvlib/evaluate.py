"""``gsv eval``: what to score a checkpoint with, and the registry of ways to score it.

:class:`EvalConfig` says which checkpoint, which frames and which variants of :data:`VARIANTS`: the fixed-interval
protocol of each propagation (:mod:`gsvlib.protocol`), the keyframe net alone at several input scales, the flow net's
end-point error against exact flow; or, with ``policy``, adaptive keyframes against fixed intervals
(:mod:`gsvlib.schedules`), which :data:`SCHEDULES` runs through the same :class:`Variant` interface. Reports hold
paired differences between the propagations (``baseline`` minus each other variant).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import torch

from gsvlib.checkpoint import require_trained
from gsvlib.config import interval_arg, setting
from gsvlib.data import DATASETS, DataSpec, open_dataset
from gsvlib.data.camvid import SPANS
from gsvlib.data.synthetic import load_snippet, snippet_ids
from gsvlib.deploy import calibration_frames
from gsvlib.device import PRECISIONS, check_device
from gsvlib.models.flow import eighth_grid_error
from gsvlib.models.gsvnet import GSVNet
from gsvlib.progress import progress_bar
from gsvlib.protocol import differences, evaluate, evaluate_image_only
from gsvlib.schedules import THRESHOLD_FACTORS, keyframe_schedules
from gsvlib.segmenter import PAPER, PROPAGATIONS, RUNTIMES, SIGNALS


@dataclass
class EvalConfig:
    """``gsv eval``: which checkpoint, which frames (:attr:`data`), which variants of :data:`VARIANTS` at which
    keyframe intervals and scales, or adaptive keyframes (``policy``) instead of the protocol. The options of
    ``gsv eval`` and an experiment's ``[[eval]]`` tables are these fields."""

    checkpoint: str | None = setting(None, "a gsvkit checkpoint or weights file (gsv train, gsv export)", path=True)
    dataset: str = setting("synthetic", "dataset name", choices=lambda: sorted(DATASETS))
    root: str = setting("data/synthetic", "dataset folder (layouts in data/README.md)", path=True)
    split: str = setting("val", "dataset split")
    span: tuple[float, float] = setting((0.0, 1.0), "CamVid: evaluate fraction A..B of each sequence in time")
    variants: tuple[str, ...] = setting((PAPER,), "what to score: the propagations (gsv: GSVNet; warp: no GSV conv; "
                                        "copy: the previous segmentation) with the protocol; image: the keyframe net "
                                        "alone at --image-scales; flow: the flow net's end-point error against exact "
                                        "flow (the synthetic set)", choices=lambda: list(VARIANTS))
    intervals: tuple[int, ...] = setting((1, 2, 3, 4, 5), "keyframe intervals l of the protocol", type=interval_arg)
    baseline: str = setting(PAPER, "the propagation set against every other variant of the report in paired "
                                   "differences (BASELINE - warp, ...), one of --variants",
                            choices=lambda: list(PROPAGATIONS))
    key_scale: float | None = setting(None, "keyframe input scale (default: the checkpoint's own, the scale its "
                                            "propagation trained at, else 0.75)", type=float)
    image_scales: tuple[float, ...] = setting((0.5, 0.75, 1.0), "input scales of variant image")
    precision: str = setting("fp32", "autocast of the nets: bf16 (CPU or CUDA) or fp16 (CUDA); the protocol only",
                             choices=lambda: list(PRECISIONS))
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    runtime: str = setting("eager", "what runs the nets (gsv bench --backend): eager PyTorch, compiled, onnx (ONNX "
                                    "Runtime) or onnx-int8 (its keyframe graph quantized to int8); the protocol only",
                           choices=lambda: list(RUNTIMES))
    calibrate: str = setting("train", "onnx-int8: the split of --dataset whose frames calibrate the int8 keyframe "
                                      "graph (never the split evaluated)")
    calibration_frames: int = setting(32, "onnx-int8: how many frames of --calibrate, spread evenly over it")
    policy: tuple[str, ...] = setting((), "adaptive keyframes instead of the protocol: stream whole videos and "
                                          "compare keyframes forced by each SIGNAL with fixed l = 1..--max-interval, "
                                          "on the same frames", type=str, many=True, metavar="SIGNAL",
                                      choices=lambda: sorted(SIGNALS))
    max_interval: int = setting(8, "--policy: the longest fixed l, and the bound on every policy's interval",
                                type=interval_arg)
    factors: tuple[float, ...] = setting(THRESHOLD_FACTORS, "--policy: thresholds in units of the signal's median "
                                                            "reading per frame")
    out: str | None = setting(None, "write the results (JSON) here", path=True)

    def __post_init__(self):
        if isinstance(self.span, str):  # a named part of the 15 Hz run, as experiment files write it
            if self.span not in SPANS:
                raise ValueError(f"span must be two fractions or one of {sorted(SPANS)}, got {self.span!r}")
            self.span = SPANS[self.span]
        for name in ("span", "variants", "intervals", "image_scales", "policy", "factors"):
            setattr(self, name, tuple(getattr(self, name)))

    @property
    def data(self) -> DataSpec:
        return DataSpec(self.dataset, self.root, self.split, self.span)

    def runtime_options(self) -> dict:
        """What :attr:`runtime` is built with: for onnx-int8, the calibration frames of split :attr:`calibrate`."""
        if self.runtime != "onnx-int8":
            return {}
        frames = calibration_frames(open_dataset(self.dataset, self.root, self.calibrate), self.calibration_frames)
        return {"calibration": frames, "calibration_source": f"{self.dataset} {self.calibrate}, {len(frames)} frames"}

    def require(self, ckpt: dict) -> None:
        """Refuse a checkpoint (``ckpt``, as loaded) one of whose parts this evaluation runs was never trained."""
        parts = set(SCHEDULES.parts) if self.policy else {p for v in self.variants for p in VARIANTS[v].parts}
        require_trained(ckpt, self.checkpoint, parts, f"gsv eval --variants {' '.join(self.variants)}"
                        + (" --policy" if self.policy else ""))

    def check(self) -> None:
        if self.checkpoint is None:
            raise ValueError("give the checkpoint to evaluate (--checkpoint)")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        if not (len(self.span) == 2 and 0 <= self.span[0] < self.span[1] <= 1):
            raise ValueError(f"span must be fractions (a, b) with 0 <= a < b <= 1, got {self.span}")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"variants must be among {list(VARIANTS)}, got {list(self.variants)}")
        for v in self.variants:
            VARIANTS[v].check(self)
        if self.baseline not in PROPAGATIONS:
            raise ValueError(f"baseline must be one of the propagations {list(PROPAGATIONS)}, got {self.baseline!r}")
        if not self.intervals or not all(1 <= l <= 30 for l in self.intervals):
            raise ValueError(f"keyframe intervals must lie in 1..30, got {list(self.intervals)}")
        scales = [*self.image_scales, *([self.key_scale] if self.key_scale is not None else [])]
        if not all(isinstance(s, (int, float)) and 0 < s <= 2 for s in scales):
            raise ValueError(f"key_scale and image_scales must lie in (0, 2], got {scales}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        check_device(self.device)
        bad = [s for s in self.policy if s not in SIGNALS]
        if bad:
            raise ValueError(f"policy signals must be among {sorted(SIGNALS)}, got {bad}")
        if self.policy and (self.precision != "fp32" or self.runtime != "eager"):
            raise ValueError("--precision and --runtime apply to the protocol; --policy compares keyframe schedules "
                             "in eager fp32")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {self.runtime!r}")
        why = RUNTIMES[self.runtime].unsupported(self.precision, self.device)
        if why:
            raise ValueError(f"runtime {self.runtime} cannot run {self.precision} on {self.device}: {why}")
        if self.runtime == "onnx-int8" and (self.calibrate == self.split or self.calibration_frames < 1):
            raise ValueError(f"onnx-int8 calibrates on --calibrate {self.calibrate!r}, which must not be the split "
                             f"evaluated ({self.split!r}), with --calibration-frames >= 1 (got "
                             f"{self.calibration_frames})")
        if not self.factors or not all(math.isfinite(f) and f > 0 for f in self.factors):
            raise ValueError(f"factors must be positive numbers, got {list(self.factors)}")


@torch.inference_mode()
def flow_error(model: GSVNet, data: DataSpec, device: str = "cpu", progress: bool = True) -> dict:
    """The flow net O on every consecutive pair of a synthetic set's split (``data``) against the exact flow: mean
    end-point error in 1/8-grid pixels over the cells seen in both frames, and that of predicting no motion."""
    root, split = data.root, data.split
    model = model.eval().to(device)
    errors, zero, cells, pairs = 0.0, 0.0, 0, 0
    for seq in progress_bar(snippet_ids(root, split), desc=f"flow error: {split} snippets", disable=not progress):
        snippet = load_snippet(root, split, seq)
        frames = snippet["frames"].to(device)  # (T, 3, H, W)
        flow = torch.from_numpy(snippet["flow"][1:]).permute(0, 3, 1, 2).to(device)  # (T-1, 2, H, W) to frame t-1
        valid = torch.from_numpy(snippet["valid"][1:]).to(device)  # (T-1, H, W)
        small = model.small_frame(frames)  # (T, 3, H/8, W/8)
        pred = model.flow(small[1:], small[:-1])  # (T-1, 2, H/8, W/8)
        total, count = eighth_grid_error(pred, flow, valid)
        errors += total.item()
        zero += eighth_grid_error(torch.zeros_like(pred), flow, valid)[0].item()
        cells += count.item()
        pairs += len(pred)
    if cells == 0:
        raise ValueError(f"no cell of {root} ({split}) has known flow in both frames")
    return {"epe": errors / cells, "zero_flow_epe": zero / cells, "cells": cells, "pairs": pairs, "split": split}


class Variant(NamedTuple):
    """A way ``gsv eval`` scores a checkpoint: ``run(model, cfg, progress)`` -> its report, ``summary(report)`` ->
    one line for the terminal, ``check(cfg)`` -> None or a ValueError, and the parts of the model it runs
    (:data:`gsvlib.checkpoint.PARTS`; a checkpoint that never trained one of them is refused)."""

    title: str
    run: Callable[[GSVNet, EvalConfig, bool], dict]
    summary: Callable[[dict], str]
    parts: tuple[str, ...]
    check: Callable[[EvalConfig], None] = lambda cfg: None


def _protocol(model: GSVNet, cfg: EvalConfig, progress: bool, propagation: str) -> dict:
    return evaluate(model, cfg.data, cfg.intervals, cfg.key_scale, propagation, cfg.device, progress, cfg.precision,
                    cfg.runtime, cfg.runtime_options())


def _protocol_line(report: dict) -> str:
    line = f"{report['propagation']}: " + ", ".join(f"l={l} avg {v['avg']:.2f} {_ci(v.get('avg_ci'))} min "
                                                    f"{v['min']:.2f} {_ci(v.get('min_ci'))}"
                                                    for l, v in report["intervals"].items())
    for pair, by_l in report.get("differences", {}).items():
        line += f"\n  {pair}: " + ", ".join(f"l={l} avg {d['avg']['diff']:+.2f} {_ci(d['avg']['ci'])}"
                                            for l, d in by_l.items())
    return line


def _ci(ci: list | None) -> str:
    """A 95 % interval as printed: "[61.20, 65.90]"."""
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _image_only(model: GSVNet, cfg: EvalConfig, progress: bool) -> dict:
    options = cfg.runtime_options()
    return {str(s): evaluate_image_only(model, cfg.data, s, cfg.device, progress, cfg.precision, cfg.runtime, options)
            for s in cfg.image_scales}


def _flow(model: GSVNet, cfg: EvalConfig, progress: bool) -> dict:
    return flow_error(model, cfg.data, cfg.device, progress)


def _needs_exact_flow(cfg: EvalConfig) -> None:
    if not hasattr(DATASETS[cfg.dataset], "exact_flow"):
        raise ValueError(f"variant flow scores the flow net against exact flow, which only the synthetic set has; "
                         f"evaluate it with --dataset synthetic (got {cfg.dataset})")


_OTHER_VARIANTS = {
    "image": Variant("image-only", _image_only,
                     lambda r: "; ".join(f"image-only x{s}: mIoU {v['miou']:.2f} {_ci(v.get('ci'))}"
                                         for s, v in r.items()),
                     ("keyframe_net",)),
    "flow": Variant("flow error", _flow,
                    lambda r: f"flow net: end-point error {r['epe']:.3f} px of the 1/8 grid on {r['pairs']} pairs "
                              f"(predicting no motion: {r['zero_flow_epe']:.3f})", ("flow_net",), _needs_exact_flow),
}


class _Variants(Mapping):
    """The registry of evaluation variants: one per propagation of :data:`gsvlib.segmenter.PROPAGATIONS` (read at
    each look-up, so that a propagation registered there is a variant at once; "copy" runs no trained part), then
    "image" (the keyframe net alone) and "flow" (the flow net's end-point error)."""

    def __getitem__(self, name: str) -> Variant:
        if name in PROPAGATIONS:
            return Variant(PROPAGATIONS[name].title, partial(_protocol, propagation=name), _protocol_line,
                           ("keyframe_net", *PROPAGATIONS[name].uses))
        return _OTHER_VARIANTS[name]

    def __iter__(self):
        return iter([*PROPAGATIONS, *_OTHER_VARIANTS])

    def __len__(self) -> int:
        return len(PROPAGATIONS) + len(_OTHER_VARIANTS)


VARIANTS: Mapping[str, Variant] = _Variants()


def evaluate_variants(model: GSVNet, cfg: EvalConfig, progress: bool = True) -> dict:
    """The report of each variant of ``cfg`` by name, e.g. the protocol per propagation {"gsv": {...}, "warp":
    {...}} and, for "image", the image-only net per input scale."""
    cfg.check()
    report = {v: VARIANTS[v].run(model, cfg, progress) for v in cfg.variants}
    if cfg.baseline in report:
        report[cfg.baseline]["differences"] = differences(report, cfg.baseline)
    return report


def _schedules(model: GSVNet, cfg: EvalConfig, progress: bool) -> dict:
    data = cfg.data.open()
    return keyframe_schedules(model, data.videos(), data.table.num_classes, cfg.policy, range(1, cfg.max_interval + 1),
                              cfg.factors, cfg.key_scale, cfg.device, progress)


# Adaptive keyframes (``policy``): whole videos streamed, keyframes forced by each signal against fixed l; the policy
# reads PF's intermediates, so it runs every part of GSVNet.
SCHEDULES = Variant("keyframe schedules", _schedules,
                    lambda r: f"keyframe schedules on {r['scored']} scored frames of {r['frames']}",
                    ("keyframe_net", *PROPAGATIONS[PAPER].uses))


def run_eval(model: GSVNet, cfg: EvalConfig, progress: bool = True) -> dict:
    """What ``gsv eval --out`` writes: with ``cfg.policy``, :data:`SCHEDULES`' report (adaptive keyframes against fixed
    intervals on whole videos); otherwise :func:`evaluate_variants`."""
    cfg.check()
    return SCHEDULES.run(model, cfg, progress) if cfg.policy else evaluate_variants(model, cfg, progress)
