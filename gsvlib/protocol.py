"""The paper's evaluation protocol (sec. 4.1, "Accuracy Metrics").

For a keyframe interval l, every snippet is scored at its annotated frame a with the keyframe at a - i, for
i = 0..l-1, propagating recursively from the keyframe. The **average** mIoU pools one confusion matrix over the l
offsets (as the official code does); the **minimum** mIoU is that of the farthest offset, i = l-1. Predictions are
scored at full label resolution: bilinear upsampling of the 1/8 output, then argmax.

The offset-i result does not depend on l, so offsets 0..max(l)-1 are run once and combined per l. Every offset uses
the same snippets: those that have frames for the largest offset. The same code scores the baselines: image-only
(every frame a keyframe, at any input scale) and every propagation registered in
:data:`gsvlib.segmenter.PROPAGATIONS` ("warp": no GSV conv, "copy": the previous segmentation). The per-frame
confusion matrices are kept, so that any mIoU and any paired difference can be resampled again
(:mod:`gsvlib.bootstrap`). Adaptive keyframes need another protocol: :mod:`gsvlib.schedules`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from gsvlib.bootstrap import iou_of, miou_interval, miou_of, paired_difference, settings
from gsvlib.data import IGNORE, DataSpec
from gsvlib.device import PRECISIONS
from gsvlib.models.gsvnet import GSVNet
from gsvlib.progress import progress_bar
from gsvlib.segmenter import PAPER, PROPAGATIONS, VideoSegmenter


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
                propagation: str = PAPER, device: str = "cpu", progress: bool = True,
                precision: str = "fp32", runtime: str = "eager", runtime_options: dict | None = None) -> FrameScores:
    """The confusion matrix of each scored frame at each offset i = 0..offsets-1 (keyframe at a - i, frame a
    scored), on the frames of ``data`` (a span of CamVid's sequences: snippets never reach outside it). Each snippet
    is read once, at the largest offset; offset i streams its last i + 1 frames. ``key_scale`` defaults to the
    model's; ``precision`` names the autocast of the nets (:data:`gsvlib.device.PRECISIONS`), ``runtime`` the runtime
    that runs them (:data:`gsvlib.segmenter.RUNTIMES`, built with ``runtime_options``)."""
    spec, data = data, data.open(offset=offsets - 1)
    num_classes = data.table.num_classes
    if model.config.num_classes != num_classes:
        raise ValueError(f"the model predicts {model.config.num_classes} classes but {spec.dataset} has {num_classes}")
    matrices = torch.zeros(len(data), offsets, num_classes, num_classes, dtype=torch.int64)  # (N, offsets, C, C)
    names = []
    segmenter = VideoSegmenter(model, interval=offsets + 1, key_scale=key_scale, device=device,
                               amp_dtype=PRECISIONS[precision], propagation=propagation, runtime=runtime,
                               runtime_options=runtime_options)
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
             propagation: str = PAPER, device: str = "cpu", progress: bool = True, precision: str = "fp32",
             runtime: str = "eager", runtime_options: dict | None = None) -> dict:
    """The protocol for l in ``intervals`` on ``data`` (keyframes at ``key_scale``, default the model's; run by
    ``runtime`` as in :func:`run_offsets`):
    {"intervals": {"1": {"avg", "min", "avg_ci", "min_ci", "per_class_avg"}, ...}, "key_scale", "snippets",
    "bootstrap": how the intervals were made, "frames": the per-frame matrices, ...}."""
    intervals = sorted(set(intervals))
    if not intervals or intervals[0] < 1 or intervals[-1] > 30:
        raise ValueError(f"keyframe intervals must lie in 1..30, got {intervals}")
    model = model.eval()
    key_scale = model.config.key_scale if key_scale is None else key_scale
    scores = run_offsets(model, data, intervals[-1], key_scale, propagation, device, progress, precision, runtime,
                         runtime_options)
    return {"dataset": data.dataset, "split": data.split, "span": list(data.span), "key_scale": key_scale,
            "propagation": propagation, "precision": precision, **({} if runtime == "eager" else {"runtime": runtime}),
            "snippets": len(scores.names),
            "intervals": protocol(scores, intervals), "bootstrap": settings(len(scores.names), "frame"),
            "frames": scores.record()}


def evaluate_image_only(model: GSVNet, data: DataSpec, scale: float = 1.0, device: str = "cpu",
                        progress: bool = True, precision: str = "fp32", runtime: str = "eager",
                        runtime_options: dict | None = None) -> dict:
    """The keyframe net alone on every annotated frame at input ``scale`` (run by ``runtime`` as in
    :func:`run_offsets`): {"scale", "miou", "ci", "per_class", "frames" (their count), "scored" (the per-frame
    matrices)}."""
    scores = run_offsets(model.eval(), data, 1, scale, PAPER, device, progress, precision, runtime, runtime_options)
    cm = scores.pooled()
    return {"scale": scale, **({} if runtime == "eager" else {"runtime": runtime}), "miou": round(cm.miou(), 2),
            "ci": miou_interval(scores.per_frame()),
            "per_class": cm.per_class(scores.classes), "frames": len(scores.names), "scored": scores.record()}


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


def differences(report: dict, base: str = PAPER) -> dict:
    """The propagation ``base`` (GSVNet by default) against every other variant of a report scored on the same
    frames, as paired bootstrap differences (:func:`gsvlib.bootstrap.paired_difference`): {"gsv - warp": {"3":
    {"avg": {...}, "min": {...}}, ...}, "gsv - image x0.75": {"3": {"avg": {...}}, ...}, ...}. Image-only has no
    offsets: the base's average at each l is set against it on the frames both scored."""
    names, scored = _scored(report[base]["frames"])  # (N, offsets, C, C)
    ls = list(report[base]["intervals"])
    out = {f"{base} - {v}": protocol_difference(report[base], report[v]) for v in PROPAGATIONS
           if v != base and v in report}
    out[f"{base} - keyframe net on every frame"] = {
        l: {"avg": paired_difference(at_interval(scored, int(l), "avg"), scored[:, 0])}
        for l in ls if l != "1"}  # the cost of propagation at l
    for scale, image in report.get("image", {}).items():
        image_names, matrices = _scored(image["scored"])
        common = [n for n in names if n in image_names]
        if not common:
            continue
        mine = scored[[names.index(n) for n in common]]  # (N', offsets, C, C)
        theirs = matrices[[image_names.index(n) for n in common], 0]  # (N', C, C)
        out[f"{base} - image x{scale}"] = {l: {"avg": paired_difference(at_interval(mine, int(l), "avg"), theirs)}
                                           for l in ls}
    return out
