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
from typing import Iterable

import torch

from gsvlib.data import IGNORE, open_dataset
from gsvlib.device import PRECISIONS
from gsvlib.data.synthetic import load_snippet, snippet_ids
from gsvlib.models.flow import eighth_grid_error
from gsvlib.models.gsvnet import GSVNet
from gsvlib.progress import progress_bar
from gsvlib.segmenter import PROPAGATIONS, SIGNALS, KeyframePolicy, VideoSegmenter


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
        tp = self.mat.diag().double()
        union = self.mat.sum(0).double() + self.mat.sum(1).double() - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def per_class(self, classes) -> dict[str, float]:
        """IoU in percent by class name."""
        return {c: round(float(v) * 100, 2) for c, v in zip(classes, self.iou())}

    def miou(self) -> float:
        """Mean IoU in percent over the classes that occur (in ground truth or prediction)."""
        return float(self.iou().nanmean() * 100)


def run_offsets(model: GSVNet, dataset: str, root, split: str, offsets: int, key_scale: float = 0.75,
                propagation: str = "gsv", device: str = "cpu", progress: bool = True,
                span: tuple[float, float] = (0.0, 1.0),
                precision: str = "fp32") -> tuple[list[ConfusionMatrix], int, tuple[str, ...]]:
    """Confusion matrix of each offset i = 0..offsets-1 (keyframe at a - i, frame a scored), the snippet count and
    the class names. Each snippet is read once, at the largest offset; offset i streams its last i + 1 frames.
    ``span`` keeps a time slice of CamVid's sequences (snippets never reach outside it); ``precision`` names the
    autocast of the nets (:data:`gsvlib.device.PRECISIONS`)."""
    data = open_dataset(dataset, root, split, span, offset=offsets - 1)
    num_classes = data.table.num_classes
    if model.config.num_classes != num_classes:
        raise ValueError(f"the model predicts {model.config.num_classes} classes but {dataset} has {num_classes}")
    matrices = [ConfusionMatrix(num_classes) for _ in range(offsets)]
    segmenter = VideoSegmenter(model, interval=offsets + 1, key_scale=key_scale, device=device,
                               amp_dtype=PRECISIONS[precision], propagation=propagation)
    what = (f"image-only x{key_scale:g}" if offsets == 1 else
            f"{PROPAGATIONS[propagation].title}, offsets 0-{offsets - 1}")
    for k in progress_bar(range(len(data)), desc=f"{what}: {split} snippets", disable=not progress, leave=False):
        sample = data[k]  # frames a - (offsets-1) .. a
        for i, matrix in enumerate(matrices):
            segmenter.reset()
            for frame in sample["frames"][-i - 1:]:  # the keyframe a - i, then the frames up to a
                out = segmenter.step(frame, labels=True)
            matrix.update(out.labels[0], sample["label"])
    return matrices, len(data), data.table.classes


def protocol(matrices: list[ConfusionMatrix], intervals, classes) -> dict:
    """Average and minimum mIoU per keyframe interval l from the per-offset confusion matrices."""
    out = {}
    for l in intervals:
        pooled = sum(matrices[1:l], matrices[0])
        out[str(l)] = {"avg": round(pooled.miou(), 2), "min": round(matrices[l - 1].miou(), 2),
                       "per_class_avg": pooled.per_class(classes)}
    return out


def evaluate(model: GSVNet, dataset: str, root, split: str = "val", intervals=(1, 2, 3, 4, 5), key_scale: float = 0.75,
             propagation: str = "gsv", device: str = "cpu", progress: bool = True,
             span: tuple[float, float] = (0.0, 1.0), precision: str = "fp32") -> dict:
    """The protocol for l in ``intervals``: {"intervals": {"1": {"avg", "min", "per_class_avg"}, ...}, ...}."""
    intervals = sorted(set(intervals))
    if not intervals or intervals[0] < 1 or intervals[-1] > 30:
        raise ValueError(f"keyframe intervals must lie in 1..30, got {intervals}")
    model = model.eval()
    matrices, snippets, classes = run_offsets(model, dataset, root, split, intervals[-1], key_scale, propagation,
                                              device, progress, span, precision)
    return {"dataset": dataset, "split": split, "span": list(span), "key_scale": key_scale, "propagation": propagation,
            "precision": precision, "snippets": snippets, "intervals": protocol(matrices, intervals, classes)}


def evaluate_image_only(model: GSVNet, dataset: str, root, split: str = "val", scale: float = 1.0,
                        device: str = "cpu", progress: bool = True, span: tuple[float, float] = (0.0, 1.0),
                        precision: str = "fp32") -> dict:
    """The keyframe net alone on every annotated frame at input ``scale``: {"scale", "miou", "per_class", "frames"}."""
    (cm,), frames, classes = run_offsets(model.eval(), dataset, root, split, 1, scale, "gsv", device, progress, span,
                                         precision)
    return {"scale": scale, "miou": round(cm.miou(), 2), "per_class": cm.per_class(classes), "frames": frames}


IMAGE_ONLY = "image"  # the evaluation variant that runs the keyframe net alone
FLOW_ERROR = "flow"  # the variant that scores the flow net O against exact flow (the synthetic set)


def known_variants() -> list[str]:
    """What ``gsv eval --variants`` accepts: the registered propagations, image-only and the flow error."""
    return [*PROPAGATIONS, IMAGE_ONLY, FLOW_ERROR]


@torch.inference_mode()
def flow_error(model: GSVNet, root, split: str = "val", device: str = "cpu", progress: bool = True) -> dict:
    """The flow net O on every consecutive pair of the synthetic set's ``split`` against the exact flow: mean
    end-point error in 1/8-grid pixels over the cells seen in both frames, and that of predicting no motion."""
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


def evaluate_variants(model: GSVNet, variants, dataset: str, root, split: str = "val",
                      span: tuple[float, float] = (0.0, 1.0), intervals=(1, 2, 3, 4, 5), key_scale: float = 0.75,
                      image_scales=(0.5, 0.75, 1.0), device: str = "cpu", progress: bool = True,
                      precision: str = "fp32") -> dict:
    """What ``gsv eval --out`` writes: the protocol per propagation variant ("gsv", "warp", "copy") and, for
    "image", the image-only net per input scale: {"gsv": {...}, "image": {"0.5": {...}, ...}}."""
    bad = [v for v in variants if v not in known_variants()]
    if bad:
        raise ValueError(f"variants must be among {known_variants()}, got {bad}")
    common = dict(dataset=dataset, root=root, split=split, span=span, device=device, progress=progress,
                  precision=precision)
    if FLOW_ERROR in variants and dataset != "synthetic":
        raise ValueError(f"variant {FLOW_ERROR} scores the flow net against exact flow, which only the synthetic set "
                         f"has; evaluate it with --dataset synthetic")
    report = {}
    for variant in variants:
        if variant == IMAGE_ONLY:
            report[IMAGE_ONLY] = {str(s): evaluate_image_only(model, scale=s, **common) for s in image_scales}
        elif variant == FLOW_ERROR:
            report[FLOW_ERROR] = flow_error(model, root, split, device, progress)
        else:
            report[variant] = evaluate(model, intervals=intervals, key_scale=key_scale, propagation=variant, **common)
    return report


THRESHOLD_FACTORS = (1.0, 2.0, 3.0, 4.0, 6.0)  # policy thresholds in units of the signal's median reading per frame

Videos = Iterable[Iterable[tuple[torch.Tensor, "torch.Tensor | None"]]]  # re-iterable; each video yields (frame, label)


def stream(model: GSVNet, videos: Videos, num_classes: int, interval: int, policy: KeyframePolicy | None = None,
           key_scale: float = 0.75, device: str = "cpu") -> dict:
    """Stream every video from its first frame (a keyframe every ``interval``, earlier where ``policy`` says) and
    score each labelled frame: {"miou", "frames", "keyframes", "forced", "scored", "readings", "step_ms"}.
    ``readings`` are the policy signal of each propagated frame; ``step_ms`` the time of each step by kind."""
    segmenter = VideoSegmenter(model, interval, key_scale, device=device, policy=policy)
    matrix = ConfusionMatrix(num_classes)
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
                matrix.update(out.labels[0], label)
                counts["scored"] += 1
    if not counts["frames"]:
        raise ValueError("no frames to stream: the videos are empty")
    if not counts["scored"]:
        raise ValueError("none of the streamed frames has a label, so nothing can be scored")
    return {"miou": round(matrix.miou(), 2), **counts, "readings": readings, "step_ms": times}


def keyframe_schedules(model: GSVNet, videos: Videos, num_classes: int, signals=None,
                       intervals=range(1, 9), factors=THRESHOLD_FACTORS, key_scale: float = 0.75, device: str = "cpu",
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

    def point(r: dict, **extra) -> dict:
        cost = (r["keyframes"] * key_ms + (r["frames"] - r["keyframes"] + r["forced"]) * nonkey_ms) / r["frames"]
        return {**extra, "miou": r["miou"], "keyframe_share": round(r["keyframes"] / r["frames"], 4),
                "forced": r["forced"], "fps": round(1000 / cost, 2)}

    return {"frames": results[runs[0][0]]["frames"], "scored": results[runs[0][0]]["scored"], "key_scale": key_scale,
            "timing_ms": {"keyframe": round(key_ms, 2), "non-keyframe": round(nonkey_ms, 2)},
            "fixed": {str(l): point(results[f"l={l}"]) for l in intervals},
            "policies": {s: {"title": SIGNALS[s].title, "median_reading": round(medians[s], 6), "max_interval": longest,
                             "points": [point(results[f"{s} x{f:g}"], factor=f, threshold=round(f * medians[s], 6))
                                        for f in factors]}
                         for s in signals}}
