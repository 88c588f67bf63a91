"""Adaptive keyframes against fixed intervals (``gsv eval --policy``), on the same frames with the same keyframe net.

A policy decides where the keyframes fall, so the fixed-interval protocol (:mod:`gsvlib.protocol`) cannot score it:
whole videos are streamed from their first frame and every labelled frame is scored, for fixed l and for each
policy threshold alike. FPS is modelled from the run's median step times, and each policy point is set against the
fixed curve at the same FPS with a paired bootstrap interval.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Iterable

import torch

from gsvlib.bootstrap import draws, excludes_zero, miou_of, percentile_interval, resampled_miou, settings
from gsvlib.models.gsvnet import GSVNet
from gsvlib.progress import progress_bar
from gsvlib.protocol import ConfusionMatrix
from gsvlib.segmenter import SIGNALS, KeyframePolicy, VideoSegmenter

THRESHOLD_FACTORS = (1.0, 2.0, 3.0, 4.0, 6.0)  # policy thresholds in units of the signal's median reading per frame


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
                       device: str = "cpu", progress: bool = True, label: str = "keyframe schedules") -> dict:
    """Adaptive keyframes against fixed intervals on the same frames: mIoU against the keyframe share and the FPS.

    Fixed l for each of ``intervals``; for each of ``signals`` (default: every registered one), policies whose
    threshold is ``factor`` x the median reading of that signal per frame (measured on a run at the largest l that
    never forces), each bounded by the largest l; ``label`` names the progress bar. FPS is modelled from the median step times of this run, so that every point is priced alike: a keyframe costs
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
    bar = progress_bar(total=len(runs) + len(signals) * len(factors), desc=label, disable=not progress)
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
