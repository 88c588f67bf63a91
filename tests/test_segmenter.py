"""The streaming API: keyframe schedule, reset, padding, precision, and errors on bad input."""
from pathlib import Path

import pytest
import torch

from gsvlib import VideoSegmenter

ROOT = Path(__file__).resolve().parents[1]


def schedule(seg, n, frame):
    return [seg.step(frame).is_keyframe for _ in range(n)]


@pytest.mark.parametrize("interval", [1, 2, 3, 5])
def test_a_keyframe_every_l_frames(small_model, interval):
    seg = VideoSegmenter(small_model, interval=interval, key_scale=1.0)
    keys = schedule(seg, 11, torch.rand(3, 32, 32))
    assert keys == [i % interval == 0 for i in range(11)]


def test_force_keyframe_restarts_the_interval_and_reset_accepts_a_new_size(small_model):
    seg = VideoSegmenter(small_model, interval=3, key_scale=1.0)
    frame = torch.rand(3, 32, 32)
    assert schedule(seg, 2, frame) == [True, False]
    seg.force_keyframe()
    assert schedule(seg, 4, frame) == [True, False, False, True]
    seg.reset()
    assert seg.step(torch.rand(3, 40, 48)).is_keyframe and seg.index == 1


def test_non_keyframe_follows_the_previous_segmentation(small_model):
    """With a static scene, propagation starts from S_{t-1}: its warped estimate equals S_{t-1} under zero flow."""
    seg = VideoSegmenter(small_model, interval=4, key_scale=1.0)
    frame = torch.rand(3, 64, 64)
    key = seg.step(frame)
    with torch.inference_mode():
        prop = small_model.propagate(seg._seg, seg._prev_small, seg._prev_small)
    assert prop.warped.shape == key.logits.shape
    assert torch.allclose(seg.step(frame).logits, prop.seg, atol=1e-5)


def test_uint8_batch_and_odd_sizes_are_padded_and_cropped(small_model):
    seg = VideoSegmenter(small_model, interval=2, key_scale=1.0)
    frame = (torch.rand(2, 3, 50, 70) * 255).to(torch.uint8)
    out = [seg.step(frame, labels=True) for _ in range(2)]
    assert out[1].logits.shape == (2, 5, 7, 9) and out[1].labels.shape == (2, 50, 70)


def test_bfloat16_autocast_runs_on_cpu(small_model):
    seg = VideoSegmenter(small_model, interval=2, key_scale=1.0, amp_dtype=torch.bfloat16)
    out = [seg.step(torch.rand(3, 64, 64), labels=True) for _ in range(2)]
    assert out[1].logits.dtype == torch.float32 and torch.isfinite(out[1].logits).all()
    with pytest.raises(ValueError, match="amp_dtype"):
        VideoSegmenter(small_model, amp_dtype=torch.float16)  # fp16 autocast is CUDA-only


@pytest.mark.parametrize("interval", [0, -1, 2.5, True])
def test_non_positive_interval_is_rejected(small_model, interval):
    with pytest.raises(ValueError, match="interval l must be a positive integer"):
        VideoSegmenter(small_model, interval=interval)


@pytest.mark.parametrize("frame,message", [
    (torch.rand(32, 32), r"RGB \(3, H, W\) or \(B, 3, H, W\), got shape \(32, 32\)"),
    (torch.rand(1, 1, 3, 32, 32), "got shape"),
    (torch.rand(4, 32, 32), r"got shape \(4, 32, 32\)"),
    (torch.rand(32, 32, 3), "permute"),
])
def test_wrong_rank_or_channels_say_what_was_expected(small_model, frame, message):
    with pytest.raises(ValueError, match=message):
        VideoSegmenter(small_model).step(frame)


def test_mismatched_frame_size_within_a_stream(small_model):
    seg = VideoSegmenter(small_model, interval=2)
    seg.step(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"frame 1 has batch/size \(1, 32, 48\).*started with \(1, 32, 32\).*reset"):
        seg.step(torch.rand(3, 32, 48))


def test_nan_input_is_rejected(small_model):
    frame = torch.rand(3, 32, 32)
    frame[1, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="frame 0 contains NaN"):
        VideoSegmenter(small_model).step(frame)


def test_cuda_without_cuda_is_a_clear_error(small_model):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="'cuda' was asked for but CUDA is not available"):
        VideoSegmenter(small_model, device="cuda")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_frames_of_other_integer_types_are_refused_not_misread(small_model, dtype):
    seg = VideoSegmenter(small_model, interval=2)
    frame = torch.randint(0, 2 if dtype == torch.bool else 256, (3, 32, 32)).to(dtype)
    with pytest.raises(TypeError, match="uint8.*floating point"):
        seg.step(frame)


def test_floating_frames_in_0_255_are_refused_with_the_fix(small_model):
    seg = VideoSegmenter(small_model, interval=2)
    with pytest.raises(ValueError, match="divide 0..255 values by 255"):
        seg.step(torch.rand(3, 32, 32) * 255)


def test_uint8_and_unit_range_float_frames_give_the_same_labels(small_model):
    frame = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    a = VideoSegmenter(small_model, interval=2).step(frame, labels=True).labels
    b = VideoSegmenter(small_model, interval=2).step(frame.float() / 255, labels=True).labels
    assert torch.equal(a, b)


def test_a_failed_segment_run_leaves_the_earlier_output_as_it_was(small_model, tmp_path):
    import json

    import numpy as np

    from gsvlib.data.io import write_png
    from gsvlib.data.labels import CAMVID
    from gsvlib.video import segment_video

    good, bad = tmp_path / "good", tmp_path / "bad"
    for i in range(3):
        write_png(good / f"{i}.png", np.full((32, 32, 3), 40 * i, np.uint8))
        write_png(bad / f"{i}.png", np.zeros((64, 64, 3) if i == 1 else (32, 32, 3), np.uint8))  # frame 1 differs
    seg = VideoSegmenter(small_model, interval=2)
    for out in (tmp_path / "overlays", tmp_path / "overlays.mp4"):
        segment_video(seg, good, out, CAMVID, progress=False)
        before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_bytes()
        with pytest.raises(ValueError, match="this stream started with"):
            segment_video(seg, bad, out, CAMVID, progress=False)
        after = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_bytes()
        assert after == before
        timings = out / "timings.json" if out.is_dir() else out.with_suffix(".timings.json")
        assert json.loads(timings.read_text())["frames"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "overlays", "overlays.mp4",
                                                          "overlays.timings.json"]  # no partial files left


def ties(seg, size):
    """(B, H, W) True where the two best upsampled scores are within float rounding of each other."""
    top2 = torch.nn.functional.interpolate(seg.float(), size=size, mode="bilinear", align_corners=False).topk(2, 1)
    return (top2.values[:, 0] - top2.values[:, 1]) <= 1e-5 * top2.values[:, 0].abs().clamp(min=1)


def test_the_compiled_output_step_gives_the_eager_labels_on_real_logits():
    """The fused upsample + argmax under torch.compile against the eager step, on the committed CamVid model's logits
    for real frames at the full 352x480 (random logits where CamVid is absent): equal everywhere but at ties."""
    import math

    from gsvlib.checkpoint import load_model
    from gsvlib.notebook import open_footage
    from gsvlib.segmenter import eager_labels, upsample_argmax

    root, weights = ROOT.parent / "shared" / "camvid", ROOT / "weights" / "camvid_swiftnet_gsvnet.pt"
    if root.is_dir() and weights.is_file():
        footage = open_footage("camvid", root, weights, progress=False)
        model = load_model(weights)[0].eval()
        with torch.inference_mode():
            seg = model.segment_keyframe(footage.frames[:4], 0.75)  # (4, 11, 44, 60)
    else:
        seg = torch.randn(4, 11, 44, 60)
    size = (seg.shape[-2] * 8, seg.shape[-1] * 8)
    fused = torch.compile(upsample_argmax, dynamic=False)(seg, size)
    eager = eager_labels(seg, size)
    assert fused.dtype == eager.dtype == torch.uint8 and fused.shape == (4, *size)
    differ = fused != eager
    assert not (differ & ~ties(seg, size)).any()
    assert differ.float().mean() < 1e-4 and math.isfinite(seg.sum().item())


def test_a_compiled_segmenter_streams_the_eager_labels(small_model):
    frames = [torch.rand(3, 64, 96) for _ in range(3)]
    eager = VideoSegmenter(small_model, interval=2, key_scale=1.0)
    compiled = VideoSegmenter(small_model, interval=2, key_scale=1.0, compile=True)
    for frame in frames:
        a, b = eager.step(frame, labels=True), compiled.step(frame, labels=True)
        assert a.is_keyframe == b.is_keyframe
        torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=1e-4)
        assert not ((a.labels != b.labels) & ~ties(a.logits, (64, 96))).any()
