"""Paired bootstrap intervals of mIoU over frames.

An mIoU is computed from one confusion matrix summed over the scored frames, so a frame is the unit of resampling:
a resample draws N of the N frames with replacement, sums their matrices and computes the mIoU again. The 95 %
interval is the 2.5th and 97.5th percentile of those mIoUs (the lower and the upper of the neighbouring values, so
an interval never claims more than the resamples show). A difference between two variants scored on the same frames
is resampled with the same draws for both (paired): what the frames have in common cancels, which makes the interval
much narrower than two separate intervals suggest. Draws come from a seeded generator: the same inputs give the same
interval on every machine.
"""
from __future__ import annotations

import torch

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def iou_of(matrices: torch.Tensor) -> torch.Tensor:
    """(..., C) IoU in [0, 1] of each class of each confusion matrix (..., C, C) (rows: ground truth); NaN for a
    class absent from both ground truth and prediction."""
    m = matrices.double()
    tp = m.diagonal(dim1=-2, dim2=-1)  # (..., C)
    union = m.sum(-2) + m.sum(-1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def miou_of(matrices: torch.Tensor) -> torch.Tensor:
    """Mean IoU in percent of each confusion matrix (..., C, C), over the classes that occur in its ground truth or
    prediction."""
    return iou_of(matrices).nanmean(-1) * 100


def draws(frames: int, resamples: int = RESAMPLES, seed: int = SEED) -> torch.Tensor:
    """(resamples, frames) how often each frame is drawn in each resample: ``frames`` draws with replacement."""
    if frames < 1:
        raise ValueError("a bootstrap needs at least one scored frame")
    picks = torch.randint(frames, (resamples, frames), generator=torch.Generator().manual_seed(seed))
    ones = torch.ones(resamples, frames, dtype=torch.float64)
    return torch.zeros(resamples, frames, dtype=torch.float64).scatter_add_(1, picks, ones)


def resampled(per_frame: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(R, C, C) each resample's confusion matrix: the frames' (N, C, C) summed with the counts ``weights`` (R, N)."""
    return torch.einsum("rn,ncd->rcd", weights, per_frame.double())


def resampled_miou(per_frame: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(R,) mIoU of each resample (:func:`resampled`)."""
    return miou_of(resampled(per_frame, weights))


def percentile_interval(values: torch.Tensor, level: float = LEVEL) -> list[float]:
    """The percentile interval [lo, hi] of resampled values at ``level``, rounded to 2 decimals."""
    tail = (1 - level) / 2
    lo = torch.quantile(values, tail, interpolation="lower")
    hi = torch.quantile(values, 1 - tail, interpolation="higher")
    return [round(float(lo), 2), round(float(hi), 2)]


def excludes_zero(ci: list[float]) -> bool:
    """Whether an interval [lo, hi] of a difference lies wholly on one side of 0: a difference shown."""
    return ci[0] > 0 or ci[1] < 0


def class_intervals(per_frame: torch.Tensor, resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = LEVEL) -> list[list[float] | None]:
    """The bootstrap interval of each class's IoU from the frames' confusion matrices (N, C, C); None for a class
    that no frame holds or predicts."""
    ious = iou_of(resampled(per_frame, draws(len(per_frame), resamples, seed))) * 100  # (R, C), NaN: absent there
    kept = [column[~column.isnan()] for column in ious.T]
    return [percentile_interval(v, level) if len(v) else None for v in kept]


def miou_interval(per_frame: torch.Tensor, resamples: int = RESAMPLES, seed: int = SEED,
                  level: float = LEVEL) -> list[float]:
    """The bootstrap interval of the mIoU of the frames' confusion matrices (N, C, C)."""
    return percentile_interval(resampled_miou(per_frame, draws(len(per_frame), resamples, seed)), level)


def paired_difference(a: torch.Tensor, b: torch.Tensor, resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = LEVEL) -> dict:
    """mIoU(a) - mIoU(b) for two variants' confusion matrices (N, C, C) of the same N frames, in the same order:
    {"diff", "ci": [lo, hi], "frames", "excludes_zero"}; both resampled with the same draws."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a paired difference needs the same frames: {a.shape[0]} against {b.shape[0]}")
    weights = draws(len(a), resamples, seed)
    diff = float(miou_of(a.sum(0)) - miou_of(b.sum(0)))
    ci = percentile_interval(resampled_miou(a, weights) - resampled_miou(b, weights), level)
    return {"diff": round(diff, 2), "ci": ci, "frames": len(a), "excludes_zero": excludes_zero(ci)}


def settings(frames: int, unit: str, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict:
    """How the intervals of a report were made, recorded beside them."""
    return {"unit": unit, "frames": frames, "resamples": resamples, "seed": seed, "level": level,
            "method": "paired percentile bootstrap over frames, mIoU from summed confusion matrices"}
