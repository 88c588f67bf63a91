"""The output step without (B, C, H, W) scores (gsvlib.models.output) against F.interpolate + argmax."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gsvlib.models import output
from gsvlib.models.output import full_resolution_labels, source_axis

ROOT = Path(__file__).resolve().parents[1]


def reference(seg, size, align_corners=False):
    return F.interpolate(seg, size=size, mode="bilinear", align_corners=align_corners).argmax(1)


def smooth_logits(b, c, h, w, seed=0):
    """Logits that vary like a segmentation's: regions, so that a few spans in ten are mixed."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(b, c, max(h // 6, 2), max(w // 6, 2), generator=g) * 4, size=(h, w),
                         mode="bilinear", align_corners=False)


def camvid_logits():
    """The committed CamVid model's 1/8 logits for four held-out frames (None without CamVid or the weights)."""
    from gsvlib.checkpoint import load_model
    from gsvlib.notebook import open_footage

    root, weights = ROOT.parent / "shared" / "camvid", ROOT / "weights" / "camvid_swiftnet_gsvnet.pt"
    if not (root.is_dir() and weights.is_file()):
        return None
    footage = open_footage("camvid", root, weights, progress=False)
    with torch.inference_mode():
        return load_model(weights)[0].eval().segment_keyframe(footage.frames[:4], 0.5)  # (4, 11, 44, 60)


@pytest.fixture
def no_dense(monkeypatch):
    """Fail if the literal step runs: the test exercises the step without scores."""
    def refuse(*args):
        raise AssertionError("the literal (dense) output step ran")
    monkeypatch.setattr(output, "dense_labels", refuse)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(88, 120), (87, 121), (1024, 2048), (40, 50), (11, 13)])
def test_labels_equal_the_literal_step_at_any_size(no_dense, size, align_corners):
    """Upsampling by 8 (the segmenter's case), odd sizes, other scales and downsampling, both corner conventions,
    a batch of 2: the same labels as F.interpolate + argmax, pixel for pixel (the same float arithmetic)."""
    seg = smooth_logits(2, 19, 11, 15)
    labels = full_resolution_labels(seg, size, align_corners)
    assert labels.dtype == torch.uint8 and labels.shape == (2, *size)
    assert torch.equal(labels.long(), reference(seg, size, align_corners))


def test_labels_equal_the_literal_step_on_camvid_logits(no_dense):
    seg = camvid_logits()
    if seg is None:
        pytest.skip("needs ../shared/camvid and weights/camvid_swiftnet_gsvnet.pt")
    for size in ((seg.shape[-2] * 8, seg.shape[-1] * 8), (360, 480), (1024, 2048)):
        assert torch.equal(full_resolution_labels(seg, size).long(), reference(seg, size))


def test_a_class_that_wins_at_no_corner_wins_between_them(no_dense):
    """Corners of classes 0 and 1 whose midpoint belongs to class 2: the candidates, not the corner labels, decide."""
    seg = torch.zeros(1, 3, 1, 2)
    seg[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.9])
    seg[0, :, 0, 1] = torch.tensor([0.0, 1.0, 0.9])
    labels = full_resolution_labels(seg, (8, 16))
    assert set(labels.unique().tolist()) == {0, 1, 2}
    assert torch.equal(labels.long(), reference(seg, (8, 16)))


def test_many_classes_give_int16_labels(no_dense):
    seg = smooth_logits(1, 300, 9, 10)
    labels = full_resolution_labels(seg, (72, 80))
    assert labels.dtype == torch.int16 and torch.equal(labels.long(), reference(seg, (72, 80)))


def test_noise_takes_the_literal_step_and_gives_its_labels(monkeypatch):
    """Logits of noise mix almost every span: there the literal step is as fast, and is used."""
    calls = []
    dense = output.dense_labels
    monkeypatch.setattr(output, "dense_labels", lambda *a: calls.append(a) or dense(*a))
    seg = torch.randn(1, 19, 12, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(full_resolution_labels(seg, (96, 128)).long(), reference(seg, (96, 128))) and calls


def test_source_axis_groups_every_pixel_once_between_its_two_cells():
    """Each output pixel lies in exactly one span, between the span's two cells, with torch's weight."""
    for n_out, n_in, corners in ((96, 12, False), (13, 5, False), (5, 13, False), (96, 12, True)):
        axis = source_axis(n_out, n_in, corners, torch.device("cpu"))
        listed = axis.pixels[axis.pixels < n_out]
        assert sorted(listed.tolist()) == list(range(n_out))
        for span in range(n_in + 1):
            for k, p in enumerate(axis.pixels[span].tolist()):
                if p < n_out:
                    assert axis.first[span] <= axis.cell[p] <= axis.second[span]
                    assert 0 <= axis.weight[span, k] <= 1
