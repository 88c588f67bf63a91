"""Bootstrap intervals over frames, checked against an enumeration of every resample of a tiny case."""
import itertools

import pytest
import torch

from gsvlib.bootstrap import (class_intervals, draws, miou_interval, miou_of, paired_difference, percentile_interval,
                              resampled_miou)
from gsvlib.protocol import ConfusionMatrix


def frame(truth, pred, classes=2):
    cm = ConfusionMatrix(classes)
    cm.update(torch.tensor(pred), torch.tensor(truth))
    return cm.mat


# three frames of two classes: the first right, the second half right, the third wrong on class 1
FRAMES = torch.stack([frame([0, 0, 1, 1], [0, 0, 1, 1]), frame([0, 0, 1, 1], [0, 1, 1, 0]),
                      frame([0, 1, 1, 1], [0, 0, 0, 0])])


def enumerated(per_frame):
    """Every one of the N^N equally likely resamples, its mIoU computed by hand: IoU = tp / (row + column - tp)."""
    values = []
    for pick in itertools.product(range(len(per_frame)), repeat=len(per_frame)):
        m = sum(per_frame[i] for i in pick).double()
        ious = [m[c, c] / (m[c].sum() + m[:, c].sum() - m[c, c]) for c in range(m.shape[0])
                if m[c].sum() + m[:, c].sum() > 0]
        values.append(float(sum(ious) / len(ious)) * 100)
    return torch.tensor(values, dtype=torch.float64)


def test_miou_of_matches_the_confusion_matrix_class():
    for m in FRAMES:
        cm = ConfusionMatrix(2)
        cm.mat = m
        assert float(miou_of(m)) == pytest.approx(cm.miou())


def test_the_interval_is_that_of_every_resample_enumerated():
    """27 resamples of 3 frames, each as likely: the bootstrap's percentiles converge on theirs, and with a
    distribution of few values they are the same values."""
    exact = enumerated(FRAMES)
    assert len(exact) == 27 and len(set(exact.round(decimals=6).tolist())) > 3
    assert miou_interval(FRAMES, resamples=20000) == percentile_interval(exact)
    # the resampled distribution itself: each resample's mIoU is one of the enumerated ones
    values = resampled_miou(FRAMES, draws(3, 500))
    assert set(values.round(decimals=6).tolist()) <= set(exact.round(decimals=6).tolist())


def test_a_paired_difference_is_resampled_with_the_same_draws_for_both():
    """Two variants that differ on one frame only: every resample that leaves that frame out has difference 0, and
    the enumeration gives the exact interval."""
    other = FRAMES.clone()
    other[2] = frame([0, 1, 1, 1], [0, 1, 1, 1])  # variant b gets the third frame right
    exact_a, exact_b = enumerated(FRAMES), enumerated(other)
    d = paired_difference(FRAMES, other, resamples=20000)
    assert d["ci"] == percentile_interval(exact_a - exact_b) and d["ci"][1] == 0.0  # no resample where a beats b
    assert d["diff"] == round(float(miou_of(FRAMES.sum(0)) - miou_of(other.sum(0))), 2) < 0
    same = paired_difference(FRAMES, FRAMES)
    assert same["ci"] == [0.0, 0.0] and not same["excludes_zero"]


def test_intervals_are_seeded_and_need_frames():
    assert miou_interval(FRAMES, seed=3) == miou_interval(FRAMES, seed=3)
    with pytest.raises(ValueError, match="at least one scored frame"):
        miou_interval(FRAMES[:0])
    with pytest.raises(ValueError, match="the same frames"):
        paired_difference(FRAMES, FRAMES[:2])


def test_class_intervals_contain_each_class_iou_and_skip_absent_classes():
    three = torch.zeros(3, 3, 3, dtype=torch.int64)
    three[:, :2, :2] = FRAMES  # a third class that no frame holds or predicts
    cis = class_intervals(three)
    cm = ConfusionMatrix(3)
    cm.mat = three.sum(0)
    for ci, iou in zip(cis[:2], cm.iou()[:2] * 100):
        assert ci[0] <= float(iou) <= ci[1]
    assert cis[2] is None
