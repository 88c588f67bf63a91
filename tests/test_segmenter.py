"""The streaming API: keyframe schedule, reset, padding, precision, and errors on bad input."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gsvlib import GSVNet, VideoSegmenter
from gsvlib.segmenter import SIGNALS, KeyframePolicy

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


@pytest.mark.slow
def test_bfloat16_autocast_streams_the_fp32_labels_on_the_street():
    """bf16 on the CPU (emulated where the CPU has no native bf16, as here): the committed weights stream the labels
    of eager fp32 on at least 99 % of the pixels of synthetic street frames (99.7 % measured)."""
    from gsvlib.checkpoint import load_model
    from gsvlib.deploy import street_calibration

    model = load_model(ROOT / "weights" / "camvid_swiftnet_gsvnet.pt")[0]
    fp32, bf16 = VideoSegmenter(model, interval=3), VideoSegmenter(model, interval=3, amp_dtype=torch.bfloat16)
    frames = street_calibration((96, 128), 6)
    agree = sum(int((fp32.step(f, labels=True).labels == bf16.step(f, labels=True).labels).sum()) for f in frames)
    assert agree / (6 * 96 * 128) >= 0.99


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

    from gsvlib.data.io import DatasetError, write_png
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
        with pytest.raises(DatasetError, match="1.png is 64x64 but 0.png and the frames before it are 32x32"):
            segment_video(seg, bad, out, CAMVID, progress=False)
        after = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_bytes()
        assert after == before
        timings = out / "timings.json" if out.is_dir() else out.with_suffix(".timings.json")
        assert json.loads(timings.read_text())["frames"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "overlays", "overlays.mp4",
                                                          "overlays.timings.json"]  # no partial files left


def test_frames_are_read_ahead_in_order_and_a_read_error_arrives_after_the_frames_before_it():
    import threading

    from gsvlib.data.io import DatasetError
    from gsvlib.video import read_ahead

    def frames():
        yield from range(5)
        raise DatasetError("clip/5.png could not be read")

    got = []
    with pytest.raises(DatasetError, match="clip/5.png"):
        for item in read_ahead(frames(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]

    def endless():
        n = 0
        while True:
            yield n
            n += 1

    ahead = read_ahead(endless(), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()  # what a break out of the loop does: the decoding thread stops
    assert not any(t.name == "gsv-decode" for t in threading.enumerate())


def test_pictures_are_written_behind_in_order_and_a_write_error_is_raised_not_lost():
    from gsvlib.video import WriteBehind

    written = []
    behind = WriteBehind(written.append, depth=2)
    for i in range(6):
        behind.put(i)
    behind.close()
    assert written == list(range(6))

    def fail(item):
        if item == 2:
            raise OSError("disk full writing frame 2")
        written.append(item)

    written.clear()
    behind = WriteBehind(fail, depth=1)
    with pytest.raises(OSError, match="disk full writing frame 2"):
        for i in range(6):
            behind.put(i)
        behind.close()
    assert written == [0, 1]


def test_a_failed_write_leaves_the_earlier_output_and_the_summary_has_the_wall_clock_rate(small_model, tmp_path,
                                                                                         monkeypatch):
    import numpy as np

    import gsvlib.video as video
    from gsvlib.data.io import write_png
    from gsvlib.data.labels import CAMVID

    clip = tmp_path / "clip"
    for i in range(4):
        write_png(clip / f"{i}.png", np.full((32, 32, 3), 40 * i, np.uint8))
    seg = VideoSegmenter(small_model, interval=2)
    out = tmp_path / "overlays"
    summary = video.segment_video(seg, clip, out, CAMVID, progress=False)
    assert summary["frames"] == 4 and 0 < summary["fps_end_to_end"] <= summary["fps"]
    before = sorted(p.name for p in out.iterdir())
    real = video.write_png

    def flaky(path, picture):
        if path.name == "000002.png":
            raise OSError(f"{path}: no space left on device")
        real(path, picture)

    monkeypatch.setattr(video, "write_png", flaky)
    with pytest.raises(OSError, match="000002.png: no space left"):
        video.segment_video(seg, clip, out, CAMVID, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip", "overlays"]


def ties(seg, size):
    """(B, H, W) True where the two best upsampled scores are within float rounding of each other."""
    top2 = torch.nn.functional.interpolate(seg.float(), size=size, mode="bilinear", align_corners=False).topk(2, 1)
    return (top2.values[:, 0] - top2.values[:, 1]) <= 1e-5 * top2.values[:, 0].abs().clamp(min=1)


@pytest.mark.slow  # torch.compile
def test_the_compiled_output_step_gives_the_eager_labels_on_real_logits():
    """The one output step, compiled (upsample and argmax fused) and eager, against F.interpolate and argmax on the
    committed CamVid model's logits for real frames at the full 352x480 (random logits where CamVid is absent):
    equal everywhere but at ties."""
    import math

    from gsvlib.checkpoint import load_model
    from gsvlib.models import full_resolution_labels
    from gsvlib.notebook import open_footage

    root, weights = ROOT.parent / "shared" / "camvid", ROOT / "weights" / "camvid_swiftnet_gsvnet.pt"
    if root.is_dir() and weights.is_file():
        footage = open_footage("camvid", root, weights, progress=False)
        model = load_model(weights)[0].eval()
        with torch.inference_mode():
            seg = model.segment_keyframe(footage.frames[:4], 0.75)  # (4, 11, 44, 60)
    else:
        seg = torch.randn(4, 11, 44, 60)
    size = (seg.shape[-2] * 8, seg.shape[-1] * 8)
    fused = torch.compile(full_resolution_labels, dynamic=False)(seg, size)
    eager = full_resolution_labels(seg, size)
    reference = torch.nn.functional.interpolate(seg, size=size, mode="bilinear", align_corners=False).argmax(1)
    assert fused.dtype == eager.dtype == torch.uint8 and fused.shape == (4, *size)
    for labels in (fused, eager):
        differ = labels != reference
        assert not (differ & ~ties(seg, size)).any()
        assert differ.float().mean() < 1e-4 and math.isfinite(seg.sum().item())


@pytest.mark.slow  # torch.compile
def test_a_compiled_segmenter_streams_the_eager_labels(small_model):
    frames = [torch.rand(3, 64, 96) for _ in range(3)]
    eager = VideoSegmenter(small_model, interval=2, key_scale=1.0)
    compiled = VideoSegmenter(small_model, interval=2, key_scale=1.0, runtime="compiled")
    for frame in frames:
        a, b = eager.step(frame, labels=True), compiled.step(frame, labels=True)
        assert a.is_keyframe == b.is_keyframe
        torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=1e-4)
        assert not ((a.labels != b.labels) & ~ties(a.logits, (64, 96))).any()


def stream_steps(seg, frames):
    seg.reset()
    return [seg.step(f) for f in frames]


@pytest.fixture
def moving_frames():
    """Six frames of a textured scene sliding right by 8 px a frame, so the flow net sees motion."""
    base = torch.rand(3, 64, 128)
    return [torch.roll(base, 8 * t, dims=2) for t in range(6)]


def test_a_policy_that_never_fires_reads_every_non_keyframe_and_changes_nothing(small_model, moving_frames):
    plain = stream_steps(VideoSegmenter(small_model, interval=3, key_scale=1.0), moving_frames)
    policy = KeyframePolicy("flow", math.inf)
    read = stream_steps(VideoSegmenter(small_model, interval=3, key_scale=1.0, policy=policy), moving_frames)
    assert [s.is_keyframe for s in read] == [s.is_keyframe for s in plain] == [True, False, False] * 2
    assert all(torch.equal(a.logits, b.logits) for a, b in zip(plain, read))
    assert [s.signal is None for s in read] == [s.is_keyframe for s in read] and not any(s.forced for s in read)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_each_signal_reads_what_its_title_says_from_the_propagation(small_model, moving_frames, signal):
    seg = VideoSegmenter(small_model, interval=8, key_scale=1.0, policy=KeyframePolicy(signal, math.inf))
    seg.step(moving_frames[0])
    prev_seg, prev_small = seg._seg, seg._prev_small
    reading = seg.step(moving_frames[1]).signal
    with torch.inference_mode():
        p = small_model.propagate(prev_seg, prev_small, seg._prev_small)
    by_hand = {"flow": torch.sqrt(p.flow[:, 0] ** 2 + p.flow[:, 1] ** 2).mean(),  # mean |m_t|
               "kernel": 1 - p.kernels[:, 8].mean(),  # K = 3: taps 0..7 are the shifts, 8 the identity, 9 intra
               "intra": (p.intra.argmax(1) != p.seg.argmax(1)).float().mean()}[signal]
    assert reading == pytest.approx(float(by_hand), rel=1e-5)
    assert reading > 0


def test_the_policy_refreshes_once_the_summed_signal_passes_the_threshold(small_model, moving_frames):
    """Readings r1, r2, ... summed from the keyframe: with a threshold between r1 and r1 + r2, frame 2 is propagated,
    then segmented again as a keyframe, and the count starts again from there; the interval still bounds it."""
    never = stream_steps(VideoSegmenter(small_model, interval=8, key_scale=1.0,
                                        policy=KeyframePolicy("flow", math.inf)), moving_frames)
    r1, r2 = never[1].signal, never[2].signal
    seg = VideoSegmenter(small_model, interval=8, key_scale=1.0, policy=KeyframePolicy("flow", r1 + r2 / 2))
    steps = stream_steps(seg, moving_frames)
    assert [s.is_keyframe for s in steps[:3]] == [True, False, True] and [s.forced for s in steps[:3]] == [
        False, False, True]
    assert steps[2].signal == pytest.approx(r2, rel=1e-5)
    key = stream_steps(VideoSegmenter(small_model, interval=1, key_scale=1.0), moving_frames)
    assert torch.equal(steps[2].logits, key[2].logits)  # a forced keyframe is the keyframe net's output
    assert steps[3].signal is not None and not steps[3].is_keyframe  # counting restarted at frame 2
    bounded = stream_steps(VideoSegmenter(small_model, interval=2, key_scale=1.0,
                                          policy=KeyframePolicy("flow", 1e9)), moving_frames)
    assert [s.is_keyframe for s in bounded] == [True, False] * 3


@pytest.mark.parametrize("make, message", [
    (lambda m: KeyframePolicy("motion", 1.0), "signal must be one of"),
    (lambda m: KeyframePolicy("flow", 0), "threshold must be a positive number"),
    (lambda m: KeyframePolicy("flow", math.nan), "threshold must be a positive number"),
    (lambda m: VideoSegmenter(m, policy=KeyframePolicy("flow", 1.0), propagation="warp"), "cannot run with 'warp'"),
    (lambda m: VideoSegmenter(GSVNet(num_classes=5, use_intra=False), policy=KeyframePolicy("intra", 1.0)),
     "needs a model with the intra-frame net"),
])
def test_policy_misuse_is_refused_with_the_fix(small_model, make, message):
    with pytest.raises(ValueError, match=message):
        make(small_model)


def test_cuda_graphs_are_refused_on_a_cpu_with_what_to_use(small_model):
    with pytest.raises(ValueError, match="runtime 'cuda-graphs' cannot run fp32 on cpu: it runs on CUDA only; use "
                                         "'eager' or 'compiled' or 'onnx'"):
        VideoSegmenter(small_model, runtime="cuda-graphs")



def test_every_runtime_is_known_without_importing_its_module_and_declares_where_it_runs(small_model):
    """The README's `VideoSegmenter(model, runtime="onnx")` in a fresh interpreter: the registry names every runtime,
    and building one imports its module then, not before."""
    code = ("import sys; from gsvlib.segmenter import RUNTIMES, VideoSegmenter; from gsvlib import GSVNet; "
            "before = 'gsvlib.deploy' in sys.modules; seg = VideoSegmenter(GSVNet(num_classes=5), runtime='onnx'); "
            "print(sorted(RUNTIMES), before, type(seg.runtime).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("] ")[1].strip() == "False ExportingOnnxRuntime"
    assert out.startswith("['compiled', 'cuda-graphs', 'eager', 'onnx', 'onnx-int8']")
    from gsvlib.segmenter import RUNTIMES

    assert RUNTIMES["onnx"].unsupported("bf16", "cpu") == "on CPU it runs fp32 only"
    assert RUNTIMES["eager"].unsupported("bf16", "cpu") is None
    with pytest.raises(ValueError, match="runtime 'onnx' cannot run bf16 on cpu: on CPU it runs fp32 only; use "
                                         "'eager' or 'compiled'"):
        VideoSegmenter(small_model, runtime="onnx", amp_dtype=torch.bfloat16)
