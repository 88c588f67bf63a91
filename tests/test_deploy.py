"""ONNX Runtime as a deployment path: the exported graphs stream the same labels as PyTorch over a CamVid clip."""
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from gsvlib.bench import PARTS
from gsvlib.checkpoint import load_model
from gsvlib.cli import main
from gsvlib.segmenter import VideoSegmenter

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out; `make test` runs them

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "camvid_swiftnet_gsvnet.pt"
CAMVID = ROOT.parent / "shared" / "camvid"
MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
if MISSING and os.environ.get("CI") != "true":  # CI installs the onnx extra: there a missing package is an error
    pytest.skip(f"the onnx extra is not installed ({', '.join(MISSING)}): pip install '.[onnx]'",
                allow_module_level=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    assert main(["export-onnx", "--checkpoint", str(WEIGHTS), "--size", "352x480", "--out", str(folder)]) == 0
    return folder


def clip() -> torch.Tensor:
    """(T, 3, 352, 480): CamVid's held-out 15 Hz frames where present, else a moving random texture."""
    if CAMVID.is_dir():
        from gsvlib.notebook import open_footage

        return open_footage("camvid", CAMVID, WEIGHTS, progress=False).frames[:12]
    base = torch.rand(3, 352, 480 + 4 * 11)  # 12 frames, each 4 px further
    return torch.stack([base[..., 4 * t: 4 * t + 480] for t in range(12)])


def test_onnx_runtime_streams_the_pytorch_labels(exported):
    from gsvlib.deploy import GRAPHS, OnnxRuntime

    assert all((exported / f"{g}.onnx").is_file() for g in GRAPHS)
    model = load_model(WEIGHTS)[0]
    torch_seg, onnx_seg = VideoSegmenter(model, interval=4), VideoSegmenter(OnnxRuntime(exported), interval=4)
    assert torch_seg.key_scale == onnx_seg.key_scale == 0.5  # the weights' own scale, fixed in the graphs
    agree, total = 0, 0
    for frame in clip():
        a, b = torch_seg.step(frame, labels=True), onnx_seg.step(frame, labels=True)
        assert a.is_keyframe == b.is_keyframe and b.labels.dtype == torch.uint8
        torch.testing.assert_close(b.logits, a.logits, atol=1e-2, rtol=1e-3)
        agree += int((a.labels == b.labels).sum())
        total += a.labels.numel()
    assert agree / total >= 0.999


def test_the_labels_graph_gives_the_labels_of_the_pytorch_output_step(exported):
    """labels.onnx (the literal upsampling, for deployments without PyTorch) against the step OnnxRuntime runs on the
    CPU, on the logits of real frames."""
    from gsvlib.deploy import OnnxRuntime
    from gsvlib.models import full_resolution_labels

    runtime = OnnxRuntime(exported)
    with torch.inference_mode():
        seg = load_model(WEIGHTS)[0].segment_keyframe(clip()[:1], 0.5)  # (1, 11, 44, 60)
    graph = runtime._run("labels", seg)
    assert graph.dtype == torch.uint8 and graph.shape == (1, 352, 480)
    assert (graph == full_resolution_labels(seg, (352, 480))).float().mean() >= 0.9999


def test_onnx_errors_say_what_to_do(exported, tmp_path, capsys):
    from gsvlib.deploy import OnnxRuntime

    with pytest.raises(ValueError, match=r"pads to 352x480, got batch 1 of 384x512; export again"):
        VideoSegmenter(OnnxRuntime(exported)).step(torch.rand(3, 370, 500))
    with pytest.raises(ValueError, match="keyframe scale is fixed at 0.5"):
        VideoSegmenter(OnnxRuntime(exported), key_scale=0.75)
    with pytest.raises(FileNotFoundError, match="gsv export-onnx"):
        OnnxRuntime(tmp_path)
    assert main(["export-onnx", "--checkpoint", str(WEIGHTS), "--size", "360x480", "--out", str(tmp_path / "x")]) == 2
    assert "384x480 for 360x480 frames" in capsys.readouterr().err
    frames = tmp_path / "frames"
    frames.mkdir()
    from gsvlib.data.io import write_png

    for i, frame in enumerate(clip()[:3]):
        write_png(frames / f"{i}.png", (frame.permute(1, 2, 0) * 255).round().byte().numpy())
    assert main(["segment", str(frames), "--onnx", str(exported), "--out", str(tmp_path / "ov"), "--interval", "2",
                 "--fps", "15"]) == 0
    assert len(list((tmp_path / "ov").glob("*.png"))) == 3
    capsys.readouterr()
    assert main(["segment", str(frames), "--checkpoint", str(WEIGHTS), "--out", str(tmp_path / "ov8"), "--int8"]) == 2
    assert "--int8 runs the int8 keyframe graph of an --onnx folder" in capsys.readouterr().err
    assert main(["export-onnx", "--checkpoint", str(WEIGHTS), "--size", "352x480", "--out", str(tmp_path / "y"),
                 "--int8", "camvid"]) == 2
    assert "--int8 takes DATASET=ROOT" in capsys.readouterr().err


def test_bench_times_the_onnx_backend_and_the_parts_of_a_non_keyframe(tmp_path, capsys):
    assert main(["bench", "--size", "64x96", "--interval", "2", "--intervals-timed", "1", "--classes", "5",
                 "--backend", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "FPS (onnx)" in out and "parts of a frame, eager fp32 (median ms): keyframe net N" in out
    path = tmp_path / "bench.json"
    assert main(["bench", "--size", "64x96", "--intervals-timed", "1", "--intervals", "1", "2", "--image-scales", "0.5",
                 "--classes", "5", "--backend", "onnx", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["backend"] == "onnx" and set(report["parts"]) == set(PARTS)
    assert report["gsvnet"]["2"]["nonkey_ms"] > 0 and report["image_only"]["0.5"]["fps"] > 0


def test_one_bench_run_over_backends_and_precisions_skips_what_cannot_run(tmp_path, capsys):
    path = tmp_path / "matrix.json"
    assert main(["bench", "--size", "64x96", "--intervals-timed", "1", "--intervals", "1", "2", "--image-scales",
                 "0.75", "--classes", "5", "--backend", "eager", "onnx", "--precision", "fp32", "bf16", "fp16",
                 "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert [(r["backend"], r["precision"]) for r in report["runs"]] == [("eager", "fp32"), ("eager", "bf16"),
                                                                       ("onnx", "fp32")]
    assert {(s["backend"], s["precision"]) for s in report["skipped"]} == {("eager", "fp16"), ("onnx", "bf16"),
                                                                          ("onnx", "fp16")}
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["onnxruntime"] and env["threads"] == torch.get_num_threads()
    table = capsys.readouterr().out
    eager = report["runs"][0]["gsvnet"]["2"]
    assert f"| eager | fp32 | {eager['key_ms']:.0f} | {eager['nonkey_ms']:.0f} | " in table
    assert "| onnx | fp32 |" in table and "Not run: eager fp16 (on CPU it runs fp32, bf16 only" in table
    ratio = report["runs"][2]["gsvnet"]["2"]["fps"] / report["runs"][2]["image_only"]["0.75"]["fps"]
    assert f"| {ratio:.2f}x |" in table


def test_onnx_graphs_of_an_official_model_run_its_conventions(tmp_path):
    """onnx.json records the conventions, so the segmenter feeds the graphs BGR, Cityscapes-normalised 1/8 frames."""
    from gsvlib.deploy import OnnxRuntime, export_onnx
    from gsvlib.models import GSVNet

    torch.manual_seed(0)
    model = GSVNet(num_classes=5, conventions="official").eval()
    meta = export_onnx(model, tmp_path, (64, 128))
    assert meta["conventions"] == "official"
    torch_seg, onnx_seg = VideoSegmenter(model, interval=3), VideoSegmenter(OnnxRuntime(tmp_path), interval=3)
    for frame in torch.rand(4, 3, 64, 128):
        a, b = torch_seg.step(frame, labels=True), onnx_seg.step(frame, labels=True)
        torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=1e-4)


def test_the_onnx_runtime_exports_the_model_for_each_frame_size_it_meets():
    """VideoSegmenter(model, runtime="onnx"): graphs exported on the first keyframe of each size, then the same
    labels as PyTorch."""
    from gsvlib.deploy import ExportingOnnxRuntime
    from gsvlib.models import GSVNet

    torch.manual_seed(0)
    model = GSVNet(num_classes=5).eval()
    torch_seg, onnx_seg = VideoSegmenter(model, interval=2), VideoSegmenter(model, interval=2, runtime="onnx")
    assert isinstance(onnx_seg.runtime, ExportingOnnxRuntime)
    for size in ((64, 96), (64, 96), (96, 64)):  # a second size exports again
        frame = torch.rand(3, *size)
        if size != (64, 96) or torch_seg.index == 0:
            torch_seg.reset()
            onnx_seg.reset()
        a, b = torch_seg.step(frame, labels=True), onnx_seg.step(frame, labels=True)
        torch.testing.assert_close(b.logits, a.logits, atol=1e-4, rtol=1e-4)
    assert len(onnx_seg.runtime._graphs) == 2
    with pytest.raises(ValueError, match="ONNX graphs do not output"):
        from gsvlib.segmenter import KeyframePolicy

        VideoSegmenter(model, runtime="onnx", policy=KeyframePolicy("flow", 2.0))


@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"needs CamVid at {CAMVID} (see ../shared/README.md)")
def test_int8_keyframes_label_camvid_as_fp32_does(exported, tmp_path):
    """gsv export-onnx --int8: the keyframe graph quantized with calibration frames of CamVid train/, streamed over
    held-out 15 Hz frames at l = 1 and 3 beside eager fp32: labels agree on at least 99 % of pixels (99.6 and 99.7
    measured)."""
    from gsvlib.data import open_dataset
    from gsvlib.deploy import INT8_KEYFRAME, OnnxRuntime

    folder = tmp_path / "onnx"
    assert main(["export-onnx", "--checkpoint", str(WEIGHTS), "--size", "384x480", "--out", str(folder),
                 "--int8", f"camvid={CAMVID}", "--calibration-frames", "8"]) == 0
    assert json.loads((folder / "onnx.json").read_text())["int8"]["calibration"] == "camvid train, 8 frames"
    model = load_model(WEIGHTS)[0]
    val = open_dataset("camvid", CAMVID, "val")
    for l in (1, 3):
        fp32, int8 = VideoSegmenter(model, interval=l), VideoSegmenter(OnnxRuntime(folder, int8=True), interval=l)
        assert int8.runtime.name == "onnx-int8"
        agree, total = 0, 0
        for k in range(37, 49):
            frame = val[k]["frames"][-1]
            a, b = fp32.step(frame, labels=True), int8.step(frame, labels=True)
            agree += int((a.labels == b.labels).sum())
            total += a.labels.numel()
        assert 0.99 <= agree / total < 1  # quantized: close, not the same
    with pytest.raises(FileNotFoundError, match=f"{INT8_KEYFRAME} does not exist.*--int8"):
        OnnxRuntime(exported, int8=True)


def test_the_int8_runtime_quantizes_on_the_first_keyframe_and_refuses_frames_of_another_size(tmp_path):
    """VideoSegmenter(model, runtime="onnx-int8"): calibrated on synthetic street frames at the stream's size, labels
    close to eager fp32's (95 % measured on these small frames); calibration frames of the wrong size are refused."""
    from gsvlib.deploy import export_onnx, street_calibration

    model = load_model(WEIGHTS)[0]
    frames = street_calibration((96, 128), 4)
    fp32, int8 = VideoSegmenter(model, interval=2), VideoSegmenter(model, interval=2, runtime="onnx-int8")
    agree = sum(int((fp32.step(f, labels=True).labels == int8.step(f, labels=True).labels).sum()) for f in frames)
    assert agree / (4 * 96 * 128) >= 0.9
    with pytest.raises(ValueError, match="calibration frame 0 is 128x96, which pads to 128x96, not the exported 160x96"):
        export_onnx(model, tmp_path / "x", (96, 160), calibration=frames)
    assert not (tmp_path / "x").exists()


def test_eval_runs_the_protocol_on_int8_keyframes_calibrated_on_another_split(tiny_synth, tmp_path, capsys):
    from gsvlib.evaluate import EvalConfig
    from gsvlib.models import GSVNet

    torch.manual_seed(0)
    torch.save({"model": GSVNet(num_classes=19).state_dict(), "model_config": {"num_classes": 19}}, tmp_path / "m.pt")
    out = tmp_path / "int8.json"
    assert main(["eval", "--checkpoint", str(tmp_path / "m.pt"), "--root", str(tiny_synth), "--variants", "gsv",
                 "image", "--image-scales", "0.75", "--intervals", "1", "2", "--runtime", "onnx-int8",
                 "--calibration-frames", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["gsv"]["runtime"] == report["image"]["0.75"]["runtime"] == "onnx-int8"
    with pytest.raises(ValueError, match="must not be the split evaluated"):
        EvalConfig(str(tmp_path / "m.pt"), root=str(tiny_synth), runtime="onnx-int8", calibrate="val").check()
    with pytest.raises(ValueError, match="--precision and --runtime apply to the protocol"):
        EvalConfig(str(tmp_path / "m.pt"), root=str(tiny_synth), runtime="onnx", policy=("flow",)).check()
