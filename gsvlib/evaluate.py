"""The paper's evaluation protocol (sec. 4.1, "Accuracy Metrics").

For a keyframe interval l, every snippet is scored at its annotated frame a with the keyframe at a - i, for
i = 0..l-1, propagating recursively from the keyframe. The **average** mIoU pools one confusion matrix over the l
offsets (as the official code does); the **minimum** mIoU is that of the farthest offset, i = l-1. Predictions are
scored at full label resolution: bilinear upsampling of the 1/8 output, then argmax.

The offset-i result does not depend on l, so offsets 0..max(l)-1 are run once and combined per l. Every offset uses
the same snippets: those that have frames for the largest offset. The same code scores the baselines: image-only
(every frame a keyframe, at any input scale) and every propagation registered in
:data:`gsvlib.segmenter.PROPAGATIONS` ("warp": no GSV conv, "copy": the previous segmentation).

Adaptive keyframes (:func:`keyframe_schedules`) need another protocol, because a policy decides where the keyframes
fall: whole videos are streamed from their first frame and every labelled frame is scored, for fixed l and for each
policy threshold alike, on the same frames with the same keyframe net.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, NamedTuple

import torch

from gsvlib.bootstrap import (draws, excludes_zero, iou_of, miou_interval, miou_of, paired_difference,
                              percentile_interval, resampled_miou, settings)
from gsvlib.checkpoint import require_trained
from gsvlib.config import interval_arg, setting
from gsvlib.data import DATASETS, IGNORE, DataSpec
from gsvlib.data.camvid import SPANS
from gsvlib.data.synthetic import load_snippet, snippet_ids
from gsvlib.device import PRECISIONS, check_device
from gsvlib.models.flow import eighth_grid_error
from gsvlib.models.gsvnet import GSVNet
from gsvlib.progress import progress_bar
from gsvlib.segmenter import PROPAGATIONS, SIGNALS, KeyframePolicy, VideoSegmenter

THRESHOLD_FACTORS = (1.0, 2.0, 3.0, 4.0, 6.0)  # policy thresholds in units of the signal's median reading per frame


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
    variants: tuple[str, ...] = setting(("gsv",), "what to score: the propagations (gsv: GSVNet; warp: no GSV conv; "
                                        "copy: the previous segmentation) with the protocol; image: the keyframe net "
                                        "alone at --image-scales; flow: the flow net's end-point error against exact "
                                        "flow (the synthetic set)", choices=lambda: list(VARIANTS))
    intervals: tuple[int, ...] = setting((1, 2, 3, 4, 5), "keyframe intervals l of the protocol", type=interval_arg)
    key_scale: float | None = setting(None, "keyframe input scale (default: the checkpoint's own, the scale its "
                                            "propagation trained at, else 0.75)", type=float)
    image_scales: tuple[float, ...] = setting((0.5, 0.75, 1.0), "input scales of variant image")
    precision: str = setting("fp32", "autocast of the nets: bf16 (CPU or CUDA) or fp16 (CUDA); the protocol only",
                             choices=lambda: list(PRECISIONS))
    device: str = setting("cpu", "cpu, cuda or cuda:N")
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

    def require(self, ckpt: dict) -> None:
        """Refuse a checkpoint (``ckpt``, as loaded) one of whose parts this evaluation runs was never trained."""
        parts = {p for v in self.variants for p in VARIANTS[v].parts} | (set(PROPAGATIONS["gsv"].uses) if self.policy
                                                                         else set())
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
        if self.policy and self.precision != "fp32":
            raise ValueError("--precision applies to the protocol; --policy compares keyframe schedules in fp32")
        if not self.factors or not all(math.isfinite(f) and f > 0 for f in self.factors):
            raise ValueError(f"factors must be positive numbers, got {list(self.factors)}")


class ConfusionMatrix:
    """Rows: ground truth, columns: prediction; the ignore label (255) is left out."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target, pred = target.reshape(-1).cpu(), pred.reshape(-1).cpu()
        keep = target != IGNORE
        target, pred = target[keep], pred[keep]
        if target.numel() and int(target.max()) >= self.num_classes:
            raise ValueError(f"ground truth holds class {int(target.max())}, but there are {self.num_classes} classes")
        self.mat += torch.bincount(target * self.num_classes + pred, minlength=self.num_classes ** 2).view_as(self.mat)

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        out = ConfusionMatrix(self.num_classes)
        out.mat = self.mat + other.mat
        return out

    def iou(self) -> torch.Tensor:
        """(C,) IoU per class in [0, 1]; NaN for a class absent from both ground truth and prediction."""
        return iou_of(self.mat)

    def per_class(self, classes) -> dict[str, float]:
        """IoU in percent by class name."""
        return {c: round(float(v) * 100, 2) for c, v in zip(classes, self.iou())}

    def miou(self) -> float:
        """Mean IoU in percent over the classes that occur (in ground truth or prediction)."""
        return float(miou_of(self.mat))


class FrameScores(NamedTuple):
    """What the protocol scored, frame by frame: ``matrices`` (N, offsets, C, C) the confusion matrix of each scored
    frame at each offset (rows: ground truth), ``names`` the N frames, ``classes`` the C class names."""

    matrices: torch.Tensor
    names: list[str]
    classes: tuple[str, ...]

    def pooled(self, offsets: slice = slice(None)) -> ConfusionMatrix:
        cm = ConfusionMatrix(len(self.classes))
        cm.mat = self.matrices[:, offsets].sum((0, 1))
        return cm

    def per_frame(self, offsets: slice = slice(None)) -> torch.Tensor:
        """(N, C, C): each frame's matrices summed over ``offsets``, the unit the bootstrap resamples."""
        return self.matrices[:, offsets].sum(1)

    def record(self) -> dict:
        """The JSON form kept in a report, from which any mIoU and paired difference can be resampled again: per frame
        and offset one line of text, the matrix's rows separated by ";" and their counts by spaces."""
        return {"names": self.names, "shape": list(self.matrices.shape),
                "matrices": [[";".join(" ".join(map(str, row)) for row in m.tolist()) for m in frame]
                             for frame in self.matrices]}


def recorded_matrices(block: dict) -> torch.Tensor:
    """(N, offsets, C, C) the per-frame matrices of a report's ``frames`` block (:meth:`FrameScores.record`)."""
    rows = [[[list(map(int, row.split())) for row in m.split(";")] for m in frame] for frame in block["matrices"]]
    return torch.tensor(rows, dtype=torch.int64).reshape(block["shape"])


def run_offsets(model: GSVNet, data: DataSpec, offsets: int, key_scale: float | None = None,
                propagation: str = "gsv", device: str = "cpu", progress: bool = True,
                precision: str = "fp32") -> FrameScores:
    """The confusion matrix of each scored frame at each offset i = 0..offsets-1 (keyframe at a - i, frame a
    scored), on the frames of ``data`` (a span of CamVid's sequences: snippets never reach outside it). Each snippet
    is read once, at the largest offset; offset i streams its last i + 1 frames. ``key_scale`` defaults to the
    model's; ``precision`` names the autocast of the nets (:data:`gsvlib.device.PRECISIONS`)."""
    spec, data = data, data.open(offset=offsets - 1)
    num_classes = data.table.num_classes
    if model.config.num_classes != num_classes:
        raise ValueError(f"the model predicts {model.config.num_classes} classes but {spec.dataset} has {num_classes}")
    matrices = torch.zeros(len(data), offsets, num_classes, num_classes, dtype=torch.int64)  # (N, offsets, C, C)
    names = []
    segmenter = VideoSegmenter(model, interval=offsets + 1, key_scale=key_scale, device=device,
                               amp_dtype=PRECISIONS[precision], propagation=propagation)
    what = (f"image-only x{segmenter.key_scale:g}" if offsets == 1 else
            f"{PROPAGATIONS[propagation].title}, offsets 0-{offsets - 1}")
    for k in progress_bar(range(len(data)), desc=f"{what}: {spec.split} snippets", disable=not progress, leave=False):
        sample = data[k]  # frames a - (offsets-1) .. a
        names.append(sample["name"])
        for i in range(offsets):
            segmenter.reset()
            for frame in sample["frames"][-i - 1:]:  # the keyframe a - i, then the frames up to a
                out = segmenter.step(frame, labels=True)
            cm = ConfusionMatrix(num_classes)
            cm.update(out.labels[0], sample["label"])
            matrices[k, i] = cm.mat
    if not int(matrices[:, 0].sum()):
        raise ValueError(f"no pixel of the {len(data)} scored frames of {spec.dataset} {spec.split} under {spec.root} "
                         "is labelled: every ground-truth pixel is void (ignored), so no mIoU exists. Check the label "
                         "files and that --dataset names their layout")
    return FrameScores(matrices, names, data.table.classes)


def protocol(scores: FrameScores, intervals) -> dict:
    """Average and minimum mIoU per keyframe interval l from the frames' per-offset confusion matrices, each with its
    bootstrap interval over frames (:mod:`gsvlib.bootstrap`)."""
    out = {}
    for l in intervals:
        pooled = scores.pooled(slice(0, l))
        out[str(l)] = {"avg": round(pooled.miou(), 2), "min": round(scores.pooled(slice(l - 1, l)).miou(), 2),
                       "avg_ci": miou_interval(scores.per_frame(slice(0, l))),
                       "min_ci": miou_interval(scores.per_frame(slice(l - 1, l))),
                       "per_class_avg": pooled.per_class(scores.classes)}
    return out


def evaluate(model: GSVNet, data: DataSpec, intervals=(1, 2, 3, 4, 5), key_scale: float | None = None,
             propagation: str = "gsv", device: str = "cpu", progress: bool = True, precision: str = "fp32") -> dict:
    """The protocol for l in ``intervals`` on ``data`` (keyframes at ``key_scale``, default the model's):
    {"intervals": {"1": {"avg", "min", "avg_ci", "min_ci", "per_class_avg"}, ...}, "key_scale", "snippets",
    "bootstrap": how the intervals were made, "frames": the per-frame matrices, ...}."""
    intervals = sorted(set(intervals))
    if not intervals or intervals[0] < 1 or intervals[-1] > 30:
        raise ValueError(f"keyframe intervals must lie in 1..30, got {intervals}")
    model = model.eval()
    key_scale = model.config.key_scale if key_scale is None else key_scale
    scores = run_offsets(model, data, intervals[-1], key_scale, propagation, device, progress, precision)
    return {"dataset": data.dataset, "split": data.split, "span": list(data.span), "key_scale": key_scale,
            "propagation": propagation, "precision": precision, "snippets": len(scores.names),
            "intervals": protocol(scores, intervals), "bootstrap": settings(len(scores.names), "frame"),
            "frames": scores.record()}


def evaluate_image_only(model: GSVNet, data: DataSpec, scale: float = 1.0, device: str = "cpu",
                        progress: bool = True, precision: str = "fp32") -> dict:
    """The keyframe net alone on every annotated frame at input ``scale``: {"scale", "miou", "ci", "per_class",
    "frames" (their count), "scored" (the per-frame matrices)}."""
    scores = run_offsets(model.eval(), data, 1, scale, "gsv", device, progress, precision)
    cm = scores.pooled()
    return {"scale": scale, "miou": round(cm.miou(), 2), "ci": miou_interval(scores.per_frame()),
            "per_class": cm.per_class(scores.classes), "frames": len(scores.names), "scored": scores.record()}


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
    return evaluate(model, cfg.data, cfg.intervals, cfg.key_scale, propagation, cfg.device, progress, cfg.precision)


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
    return {str(s): evaluate_image_only(model, cfg.data, s, cfg.device, progress, cfg.precision)
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
    if "gsv" in report:
        report["gsv"]["differences"] = differences(report)
    return report


def _scored(block: dict) -> tuple[list[str], torch.Tensor]:
    return list(block["names"]), recorded_matrices(block)


def at_interval(matrices: torch.Tensor, l: int, stat: str) -> torch.Tensor:
    """(N, C, C) what the protocol's ``stat`` at interval ``l`` scores of per-frame matrices (N, offsets, C, C):
    "avg" sums offsets 0..l-1, "min" is offset l-1."""
    return matrices[:, :l].sum(1) if stat == "avg" else matrices[:, l - 1]


def protocol_difference(a: dict, b: dict) -> dict:
    """Protocol report ``a`` minus ``b``, scored on the same frames with the same keyframes (two propagations of one
    keyframe net), per l > 1 (at l = 1 both are the keyframe net): {"2": {"avg": {...}, "min": {...}}, ...} of
    :func:`gsvlib.bootstrap.paired_difference`."""
    (names, x), (other, y) = _scored(a["frames"]), _scored(b["frames"])
    if names != other:
        raise ValueError("a paired difference needs the same scored frames in both reports")
    return {l: {stat: paired_difference(at_interval(x, int(l), stat), at_interval(y, int(l), stat))
                for stat in ("avg", "min")} for l in a["intervals"] if l != "1"}


def differences(report: dict) -> dict:
    """GSVNet against every other variant of a report scored on the same frames, as paired bootstrap differences
    (:func:`gsvlib.bootstrap.paired_difference`): {"gsv - warp": {"3": {"avg": {...}, "min": {...}}, ...},
    "gsv - image x0.75": {"3": {"avg": {...}}, ...}, ...}. Image-only has no offsets: GSVNet's average at each l is
    set against it on the frames both scored."""
    names, gsv = _scored(report["gsv"]["frames"])  # (N, offsets, C, C)
    ls = list(report["gsv"]["intervals"])
    out = {f"gsv - {v}": protocol_difference(report["gsv"], report[v]) for v in PROPAGATIONS
           if v != "gsv" and v in report}
    out["gsv - keyframe net on every frame"] = {l: {"avg": paired_difference(at_interval(gsv, int(l), "avg"),
                                                                             gsv[:, 0])}
                                                for l in ls if l != "1"}  # the cost of propagation at l
    for scale, image in report.get("image", {}).items():
        image_names, matrices = _scored(image["scored"])
        common = [n for n in names if n in image_names]
        if not common:
            continue
        mine = torch.tensor([names.index(n) for n in common])
        theirs = matrices[[image_names.index(n) for n in common], 0]  # (N', C, C)
        out[f"gsv - image x{scale}"] = {l: {"avg": paired_difference(at_interval(gsv[mine], int(l), "avg"), theirs)}
                                        for l in ls}
    return out


def run_eval(model: GSVNet, cfg: EvalConfig, progress: bool = True) -> dict:
    """What ``gsv eval --out`` writes: with ``cfg.policy``, adaptive keyframes against fixed intervals on whole videos
    (:func:`keyframe_schedules`); otherwise :func:`evaluate_variants`."""
    cfg.check()
    if not cfg.policy:
        return evaluate_variants(model, cfg, progress)
    data = cfg.data.open()
    return keyframe_schedules(model, data.videos(), data.table.num_classes, cfg.policy, range(1, cfg.max_interval + 1),
                              cfg.factors, cfg.key_scale, cfg.device, progress)


Videos = Iterable[Iterable[tuple[torch.Tensor, "torch.Tensor | None"]]]  # re-iterable; each video yields (frame, label)


def stream(model: GSVNet, videos: Videos, num_classes: int, interval: int, policy: KeyframePolicy | None = None,
           key_scale: float | None = None, device: str = "cpu") -> dict:
    """Stream every video from its first frame (a keyframe every ``interval``, earlier where ``policy`` says) and
    score each labelled frame: {"miou", "frames", "keyframes", "forced", "scored", "readings", "step_ms", "per_frame"
    (scored, C, C): each scored frame's confusion matrix}.
    ``readings`` are the policy signal of each propagated frame; ``step_ms`` the time of each step by kind."""
    segmenter = VideoSegmenter(model, interval, key_scale, device=device, policy=policy)
    matrices = []  # (C, C) per scored frame, in the videos' order: the same frames for every interval and policy
    counts = {"frames": 0, "keyframes": 0, "forced": 0, "scored": 0}
    readings, times = [], {"keyframe": [], "non-keyframe": [], "forced": []}
    for video in videos:
        segmenter.reset()
        for frame, label in video:
            start = time.perf_counter()
            out = segmenter.step(frame, labels=True)  # labels on every frame, as a deployment makes them
            times["forced" if out.forced else "keyframe" if out.is_keyframe else "non-keyframe"].append(
                1000 * (time.perf_counter() - start))
            counts["frames"] += 1
            counts["keyframes"] += out.is_keyframe
            counts["forced"] += out.forced
            if out.signal is not None:
                readings.append(out.signal)
            if label is not None:
                cm = ConfusionMatrix(num_classes)
                cm.update(out.labels[0], label)
                matrices.append(cm.mat)
                counts["scored"] += 1
    if not counts["frames"]:
        raise ValueError("no frames to stream: the videos are empty")
    if not counts["scored"]:
        raise ValueError("none of the streamed frames has a label, so nothing can be scored")
    per_frame = torch.stack(matrices)  # (scored, C, C)
    return {"miou": round(float(miou_of(per_frame.sum(0))), 2), **counts, "readings": readings, "step_ms": times,
            "per_frame": per_frame}


def keyframe_schedules(model: GSVNet, videos: Videos, num_classes: int, signals=None,
                       intervals=range(1, 9), factors=THRESHOLD_FACTORS, key_scale: float | None = None,
                       device: str = "cpu",
                       progress: bool = True) -> dict:
    """Adaptive keyframes against fixed intervals on the same frames: mIoU against the keyframe share and the FPS.

    Fixed l for each of ``intervals``; for each of ``signals`` (default: every registered one), policies whose
    threshold is ``factor`` x the median reading of that signal per frame (measured on a run at the largest l that
    never forces), each bounded by the largest l. FPS is modelled from the median step times of this run, so that every point is priced alike: a keyframe costs
    its time, a non-keyframe its time, and a forced keyframe both (it was propagated first)."""
    intervals = sorted(set(intervals))
    if not intervals or intervals[0] < 1:
        raise ValueError(f"keyframe intervals must be positive, got {intervals}")
    if model.config.num_classes != num_classes:
        raise ValueError(f"the model predicts {model.config.num_classes} classes but the videos have {num_classes}")
    longest = intervals[-1]
    signals = list(SIGNALS if signals is None else signals)
    bad = [s for s in signals if s not in SIGNALS]
    if bad:
        raise ValueError(f"signals must be among {sorted(SIGNALS)}, got {bad}")
    model = model.eval()
    key_scale = model.config.key_scale if key_scale is None else key_scale
    runs = [(f"l={l}", l, None) for l in intervals] + [(f"{s} calibration", longest, KeyframePolicy(s, math.inf))
                                                       for s in signals]
    bar = progress_bar(total=len(runs) + len(signals) * len(factors), desc="keyframe schedules", disable=not progress)
    results = {}

    def run(name, interval, policy):
        bar.set_postfix_str(name)
        results[name] = stream(model, videos, num_classes, interval, policy, key_scale, device)
        bar.update()

    for name, interval, policy in runs:
        run(name, interval, policy)
    medians = {s: statistics.median(results[f"{s} calibration"]["readings"] or [math.nan]) for s in signals}
    for s in signals:
        if not medians[s] > 0:
            raise ValueError(f"the {s!r} signal read {medians[s]} on this footage (a median of 0 or no propagated "
                             "frame): it cannot set a threshold here")
        for f in factors:
            run(f"{s} x{f:g}", longest, KeyframePolicy(s, f * medians[s]))
    bar.close()
    all_ms = {kind: [ms for r in results.values() for ms in r["step_ms"][kind]]
              for kind in ("keyframe", "non-keyframe")}
    key_ms, nonkey_ms = (statistics.median(all_ms[k]) if all_ms[k] else math.nan for k in all_ms)

    weights = draws(len(results[runs[0][0]]["per_frame"]))  # one set of resamples of the frames for every run
    resampled = {name: resampled_miou(r["per_frame"], weights) for name, r in results.items()}  # (R,) each

    def fps(r: dict) -> float:
        cost = (r["keyframes"] * key_ms + (r["frames"] - r["keyframes"] + r["forced"]) * nonkey_ms) / r["frames"]
        return 1000 / cost

    fixed = sorted((fps(results[f"l={l}"]), f"l={l}") for l in intervals)

    def against_fixed(at: float, name: str) -> dict | None:
        """The policy's mIoU minus the fixed curve's at the same FPS (interpolated between neighbouring l), paired:
        every resample draws the same frames for both."""
        for (f0, a), (f1, b) in zip(fixed, fixed[1:]):
            if f0 <= at <= f1:
                w = 0.0 if f1 == f0 else (at - f0) / (f1 - f0)
                curve = lambda m: (1 - w) * m[a] + w * m[b]  # noqa: E731 - the same line for the point and resamples
                point_m = {k: float(miou_of(results[k]["per_frame"].sum(0))) for k in (a, b, name)}
                diff = point_m[name] - curve(point_m)
                ci = percentile_interval(resampled[name] - curve(resampled))
                return {"diff": round(diff, 2), "ci": ci, "excludes_zero": excludes_zero(ci)}
        return None

    def point(r: dict, name: str, **extra) -> dict:
        return {**extra, "miou": r["miou"], "ci": percentile_interval(resampled[name]),
                "keyframe_share": round(r["keyframes"] / r["frames"], 4), "forced": r["forced"],
                "fps": round(fps(r), 2)}

    return {"frames": results[runs[0][0]]["frames"], "scored": results[runs[0][0]]["scored"], "key_scale": key_scale,
            "timing_ms": {"keyframe": round(key_ms, 2), "non-keyframe": round(nonkey_ms, 2)},
            "fixed": {str(l): point(results[f"l={l}"], f"l={l}") for l in intervals},
            "policies": {s: {"title": SIGNALS[s].title, "median_reading": round(medians[s], 6), "max_interval": longest,
                             "points": [point(results[f"{s} x{f:g}"], f"{s} x{f:g}", factor=f,
                                              threshold=round(f * medians[s], 6),
                                              vs_fixed=against_fixed(fps(results[f"{s} x{f:g}"]), f"{s} x{f:g}"))
                                        for f in factors]}
                         for s in signals},
            "bootstrap": settings(len(results[runs[0][0]]["per_frame"]), "frame")}
