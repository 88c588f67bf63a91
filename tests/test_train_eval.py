"""Training, the evaluation protocol and the benchmark."""
import json

import numpy as np
import pytest
import torch

from gsvlib import GSVNet
from gsvlib.bench import average_flops, count_flops, time_stream
from gsvlib.config import config_for
from gsvlib.data import open_dataset
from gsvlib.data.synthetic import load_analysis
from gsvlib.data import DataSpec
from gsvlib.protocol import ConfusionMatrix, FrameScores, evaluate, protocol, run_offsets
from gsvlib.schedules import keyframe_schedules, stream
from gsvlib.stages import SMOOTHNESS, STAGES, cross_entropy
from gsvlib.segmenter import KeyframePolicy
from gsvlib.train import read_log, train


def test_miou_matches_a_hand_computed_confusion_matrix():
    target = torch.tensor([0, 0, 1, 1, 2, 255, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2, 0])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.mat.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows: truth; ignored pixels left out
    # IoU: class 0 = 1 / (2 + 2 - 1) = 1/3, class 1 = 2 / (2 + 3 - 2) = 2/3, class 2 = 0 / (1 + 0 - 0) = 0
    assert torch.allclose(cm.iou(), torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64))
    assert cm.miou() == pytest.approx(100 / 3)


def test_miou_skips_classes_absent_from_truth_and_prediction():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert cm.miou() == 100.0 and torch.isnan(cm.iou()[2:]).all()


def test_average_pools_offsets_and_minimum_is_the_farthest_offset():
    def cm(correct, wrong):
        m = ConfusionMatrix(2)
        m.mat = torch.tensor([[correct, wrong], [0, 10]])
        return m

    matrices = [cm(10, 0), cm(6, 4), cm(2, 8)]
    one_frame = torch.stack([m.mat for m in matrices])[None]  # (1 frame, 3 offsets, 2, 2)
    out = protocol(FrameScores(one_frame, ["f"], ("a", "b")), (1, 3))
    assert out["1"]["avg"] == out["1"]["min"] == 100.0
    pooled = ConfusionMatrix(2)
    pooled.mat = torch.tensor([[18, 12], [0, 30]])  # one matrix summed over offsets 0, 1, 2
    assert pooled.miou() == pytest.approx(100 * (18 / 30 + 30 / 42) / 2)
    assert out["3"]["avg"] == round(pooled.miou(), 2) and out["3"]["min"] == round(matrices[2].miou(), 2)


def test_protocol_puts_the_keyframe_exactly_at_annotated_minus_i(tiny_synth):
    model = GSVNet(num_classes=19).eval()
    seen = []
    original = model.segment_keyframe

    def spy(frame, scale):
        seen.append(frame)
        return original(frame, scale)

    model.segment_keyframe = spy
    from gsvlib.data import CityscapesSequences

    ds = {i: CityscapesSequences(tiny_synth, "val", offset=i)[0]["frames"] for i in range(5)}
    run_offsets(model, DataSpec("synthetic", tiny_synth, "val"), 5, key_scale=1.0, progress=False)
    assert len(seen) == 5  # one keyframe per offset, every other frame propagated
    for i, frame in enumerate(seen):
        keyframe = ds[i][0]  # frame 6 - i of the snippet
        assert torch.allclose(frame[0, :, :64, :128], keyframe, atol=1e-6)
        assert not torch.allclose(frame[0, :, :64, :128], ds[0][0], atol=1e-3) or i == 0


def test_evaluate_reports_every_interval_and_checks_class_count(tiny_synth):
    data = DataSpec("synthetic", tiny_synth, "val")
    res = evaluate(GSVNet(num_classes=19), data, intervals=(1, 3), progress=False)
    assert set(res["intervals"]) == {"1", "3"} and res["snippets"] == 1
    assert 0 <= res["intervals"]["3"]["min"] <= 100
    assert res["key_scale"] == 0.75  # the model's own keyframe scale when none is given
    with pytest.raises(ValueError, match="predicts 5 classes but synthetic has 19"):
        evaluate(GSVNet(num_classes=5), data, progress=False)
    with pytest.raises(ValueError, match="1..30"):
        evaluate(GSVNet(num_classes=19), data, intervals=(0, 2), progress=False)


@pytest.mark.slow
def test_resume_equals_uninterrupted_training(tiny_synth, tmp_path):
    kw = dict(root=str(tiny_synth), batch_size=2, checkpoint_every=2, seed=3)
    full = train(config_for("keyframe", out=str(tmp_path / "a"), iterations=4, **kw), progress=False)
    train(config_for("keyframe", out=str(tmp_path / "b"), iterations=2, **kw), progress=False)
    (tmp_path / "b" / "log.jsonl").open("a").write('{"iteration": 3, "loss": 99}\n')  # died after a checkpoint
    resumed = train(config_for("keyframe", out=str(tmp_path / "b"), iterations=4, **kw), resume=True, progress=False)
    assert len(full["losses"]) == 4 and len(resumed["losses"]) == 2
    assert resumed["losses"] == full["losses"][2:]
    assert [e["loss"] for e in read_log(tmp_path / "b")] == full["losses"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_loader_workers_and_their_resume_repeat_a_single_process_run(tiny_synth, tmp_path):
    """Batch k is drawn from (seed, k) alone: two workers reading ahead, and a resume with workers, give the run of
    one process exactly (stage propagation: random offsets and augmentation in every batch)."""
    kw = dict(root=str(tiny_synth), batch_size=2, checkpoint_every=2, seed=5)
    key = train(config_for("keyframe", out=str(tmp_path / "k"), iterations=1, **kw), progress=False)["checkpoint"]
    gsv = dict(init=key, iterations=4, **kw)
    alone = train(config_for("gsv", out=str(tmp_path / "a"), **gsv), progress=False)
    train(config_for("gsv", out=str(tmp_path / "b"), workers=2, **{**gsv, "iterations": 2}), progress=False)
    resumed = train(config_for("gsv", out=str(tmp_path / "b"), workers=2, **gsv), resume=True, progress=False)
    assert [e["loss"] for e in read_log(tmp_path / "b")] == alone["losses"] and len(resumed["losses"]) == 2
    assert [e["offset"] for e in read_log(tmp_path / "b")] == [e["offset"] for e in read_log(tmp_path / "a")]
    assert len({e["offset"] for e in read_log(tmp_path / "a")}) > 1  # the batches really differ in offset
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_torn_last_log_line_is_dropped_on_resume_and_a_damaged_log_names_its_line(tiny_synth, tmp_path):
    kw = dict(root=str(tiny_synth), batch_size=2, checkpoint_every=1, seed=3, out=str(tmp_path / "r"))
    train(config_for("keyframe", iterations=2, **kw), progress=False)
    log = tmp_path / "r" / "log.jsonl"
    log.open("a").write('{"iteration": 3, "lo')  # killed while writing a line
    with pytest.warns(UserWarning, match="torn last line 3"):
        train(config_for("keyframe", iterations=3, **kw), resume=True, progress=False)
    assert [e["iteration"] for e in read_log(tmp_path / "r")] == [1, 2, 3]
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="log.jsonl line 2 is not JSON"):
        read_log(tmp_path / "r")


def test_resume_cleans_temp_files_of_killed_writes_and_refuses_an_exported_weights_file(tiny_synth, tmp_path):
    from gsvlib.checkpoint import CheckpointError, export_weights

    kw = dict(root=str(tiny_synth), batch_size=2, out=str(tmp_path / "r"))
    train(config_for("keyframe", iterations=1, **kw), progress=False)
    leak = tmp_path / "r" / ".checkpoint.pt.x1y2.tmp"
    leak.write_bytes(b"half a checkpoint")
    train(config_for("keyframe", iterations=2, **kw), resume=True, progress=False)
    assert not leak.exists()
    export_weights(tmp_path / "r" / "checkpoint.pt", tmp_path / "w" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="weights file.*--init instead of --resume"):
        train(config_for("keyframe", iterations=3, root=str(tiny_synth), batch_size=2, out=str(tmp_path / "w")),
              resume=True, progress=False)


def test_resume_needs_no_init_file(tiny_synth, tmp_path):
    kw = dict(root=str(tiny_synth), batch_size=2, checkpoint_every=1)
    train(config_for("keyframe", iterations=1, out=str(tmp_path / "key"), **kw), progress=False)
    init = tmp_path / "key" / "checkpoint.pt"
    train(config_for("gsv", iterations=1, init=str(init), out=str(tmp_path / "gsv"), **kw), progress=False)
    moved = tmp_path / "elsewhere.pt"
    init.rename(moved)  # the init file moved away after the run started
    result = train(config_for("gsv", iterations=2, out=str(tmp_path / "gsv"), **kw), resume=True, progress=False)
    assert result["iteration"] == 2
    saved = torch.load(tmp_path / "gsv" / "checkpoint.pt", weights_only=True)["train_config"]
    assert saved["init"] == str(init)  # the run still records where it started from


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tiny_synth, tmp_path):
    import fcntl
    import os

    kw = dict(root=str(tiny_synth), batch_size=2, out=str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".lock").write_text("pid 999999 on a-dead-host")  # a stale lock file: its holder is gone
    train(config_for("keyframe", iterations=1, **kw), progress=False)
    with open(tmp_path / "r" / ".lock", "a+") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match=f"\\(a training run\\) is in use by pid {os.getpid()} on .*; wait for "
                                               "it to finish, or train into another folder"):
            train(config_for("keyframe", iterations=2, **kw), resume=True, progress=False)
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["iteration"] == 1


def test_out_must_be_empty_or_a_run_of_the_same_settings(tiny_synth, tmp_path):
    import json

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"something": "else"}')
    (other / "log.jsonl").write_text("mine\n")
    with pytest.raises(FileExistsError, match="holds no run of these settings"):
        train(config_for("keyframe", iterations=1, root=str(tiny_synth), batch_size=2, out=str(other)),
              progress=False)
    assert (other / "log.jsonl").read_text() == "mine\n"  # nothing was changed
    kw = dict(root=str(tiny_synth), batch_size=2, out=str(tmp_path / "r"), checkpoint_every=5)
    train(config_for("keyframe", iterations=1, **kw), progress=False)
    (tmp_path / "r" / "checkpoint.pt").unlink()  # as if it had stopped before its first checkpoint
    train(config_for("keyframe", iterations=1, **kw), progress=False)  # the same settings start again
    assert [e["iteration"] for e in read_log(tmp_path / "r")] == [1]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["iterations"] == 1


@pytest.mark.parametrize("setting, message", [({"lr": float("nan")}, "lr must be a finite number"),
                                              ({"lr": 0.0}, "lr must be > 0"),
                                              ({"momentum": 1.5}, "momentum must be in"),
                                              ({"crop": float("inf")}, "crop must be a finite number"),
                                              ({"scale_min": 2.0, "scale_max": 1.0}, "scale_min must be in")])
def test_nan_and_absurd_settings_are_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        config_for("gsv", **setting).check()


def test_existing_run_and_resume_with_other_settings_are_refused(tiny_synth, tmp_path):
    kw = dict(root=str(tiny_synth), batch_size=2, out=str(tmp_path / "r"))
    train(config_for("keyframe", iterations=1, **kw), progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(config_for("keyframe", iterations=1, **kw), progress=False)
    with pytest.raises(ValueError, match="lr: 0.001 -> 0.5"):
        train(config_for("keyframe", iterations=2, lr=0.5, **kw), resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(config_for("keyframe", iterations=1, root=str(tiny_synth), out=str(tmp_path / "none")), resume=True,
              progress=False)


@pytest.mark.slow
def test_a_few_iterations_reduce_the_loss_in_both_stages(tiny_synth, tmp_path):
    key = train(config_for("keyframe", root=str(tiny_synth), out=str(tmp_path / "k"), iterations=12, batch_size=4),
                progress=False)
    assert sum(key["losses"][-3:]) < 0.7 * sum(key["losses"][:3])
    gsv = train(config_for(recipe="short-adam", root=str(tiny_synth), out=str(tmp_path / "g"), iterations=12,
                           batch_size=4, init=key["checkpoint"]), progress=False)
    assert sum(gsv["losses"][-4:]) < sum(gsv["losses"][:4])
    ckpt = torch.load(gsv["checkpoint"], weights_only=True)
    k = torch.load(key["checkpoint"], weights_only=True)
    for name, v in k["model"].items():  # stage propagation leaves the keyframe net as trained in stage keyframe
        if name.startswith("keyframe_net."):
            assert torch.equal(ckpt["model"][name], v), name
    assert json.loads((tmp_path / "g" / "config.json").read_text())["init"] == key["checkpoint"]


def test_resume_from_another_working_directory(tiny_synth, tmp_path, monkeypatch):
    """Relative paths name the same run from anywhere: the notebooks resume the tour's runs from notebooks/."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    train(config_for("keyframe", root=str(tiny_synth), out="run", iterations=1, batch_size=2), progress=False)
    monkeypatch.chdir(tmp_path / "sub")
    again = train(config_for("keyframe", root=str(tiny_synth), out="../run", iterations=2, batch_size=2), resume=True,
                  progress=False)
    assert again["iteration"] == 2 and len(again["losses"]) == 1


def test_training_config_is_checked():
    with pytest.raises(ValueError, match="max_interval must be in 2..30"):
        config_for("gsv", max_interval=1).check()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="'cuda' was asked for but CUDA is not available"):
            config_for("gsv", device="cuda").check()


def test_flop_count_matches_a_hand_count_for_one_conv():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(1, 3, 10, 12)
    assert count_flops(conv, x) == 2 * 8 * 3 * 3 * 3 * 10 * 12  # 2 FLOPs per multiply-add
    assert average_flops({"keyframe": 100, "non-keyframe": 10}, 5) == (100 + 4 * 10) / 5


def test_benchmark_times_key_and_non_key_frames():
    import statistics

    r = time_stream(GSVNet(num_classes=4), (64, 96), interval=3, key_scale=1.0, intervals=2, progress=False)
    assert r.frame_is_key == [True, False, False] * 2 and len(r.frame_ms) == 6
    keys = [ms for ms, key in zip(r.frame_ms, r.frame_is_key) if key]
    others = [ms for ms, key in zip(r.frame_ms, r.frame_is_key) if not key]
    assert r.key_ms == statistics.median(keys) and r.nonkey_ms == statistics.median(others)  # medians per frame type
    assert r.fps == pytest.approx(1000 * 6 / sum(r.frame_ms))  # frames over the whole timed time
    assert r.key_scale == 1.0 and r.interval == 3
    with pytest.raises(ValueError, match="precision"):
        time_stream(GSVNet(num_classes=4), (64, 96), precision="int8")


def test_channels_last_model_gives_the_same_segmentation():
    from gsvlib import VideoSegmenter
    from gsvlib.models.layers import channels_last

    model = GSVNet(num_classes=4).eval()
    frame = torch.rand(3, 64, 96)
    plain = VideoSegmenter(model, 2, 1.0).step(frame).logits
    fast = channels_last(GSVNet(num_classes=4).eval())
    fast.load_state_dict(model.state_dict())
    assert fast.keyframe_net.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(VideoSegmenter(fast, 2, 1.0).step(frame).logits, plain, atol=1e-4)


def test_whole_videos_join_snippets_and_the_synthetic_ones_are_labelled_on_every_frame(tiny_synth):
    (video,) = open_dataset("synthetic", tiny_synth, "val").videos()
    assert len(video) == 8 and sorted(video.labels) == list(range(8))  # gtFine has frame 6 only; analysis has all
    truth = load_analysis(tiny_synth, "val", 2)["labels"]
    for t, (frame, label) in enumerate(video):
        assert frame.shape == (3, 64, 128) and torch.equal(label, torch.from_numpy(truth[t].astype(np.int64)))
    assert [sorted(v.labels) for v in open_dataset("synthetic", tiny_synth, "train").videos()] == [list(range(8))] * 2


def test_adaptive_keyframes_against_fixed_intervals_on_the_same_frames(tiny_synth):
    model = GSVNet(num_classes=19).eval()
    videos = open_dataset("synthetic", tiny_synth, "val").videos()
    out = keyframe_schedules(model, videos, 19, ["flow", "intra"], range(1, 5), (1.0, 3.0), key_scale=1.0,
                             progress=False)
    assert out["frames"] == out["scored"] == 8
    assert {l: p["keyframe_share"] for l, p in out["fixed"].items()} == {"1": 1.0, "2": 0.5, "3": 0.375, "4": 0.25}
    fixed1 = out["fixed"]["1"]
    assert fixed1["fps"] == pytest.approx(1000 / out["timing_ms"]["keyframe"], rel=0.01)
    for signal, policy in out["policies"].items():
        assert policy["median_reading"] > 0 and policy["max_interval"] == 4
        for p in policy["points"]:
            assert p["threshold"] == pytest.approx(p["factor"] * policy["median_reading"], rel=1e-4)
            assert 0.25 <= p["keyframe_share"] <= 1 and 0 <= p["forced"] <= 8 * p["keyframe_share"]
    # a threshold of one median reading fires on about every other frame: more keyframes than the bound alone gives
    assert out["policies"]["flow"]["points"][0]["keyframe_share"] > out["fixed"]["4"]["keyframe_share"]
    # l = 1 streams the keyframe net on every frame: the same score as a policy that refreshes every frame
    every = stream(model, videos, 19, 4, KeyframePolicy("flow", 1e-9), key_scale=1.0)
    assert every["keyframes"] == 8 and every["forced"] == 7 and every["miou"] == fixed1["miou"]
    # intervals: each point's mIoU inside its own; a policy against the fixed curve at its FPS, paired
    assert out["bootstrap"]["frames"] == 8 and all(p["ci"][0] <= p["miou"] <= p["ci"][1] for p in out["fixed"].values())
    for policy in out["policies"].values():
        for p in policy["points"]:
            d = p["vs_fixed"]
            if d is not None:  # inside the fixed curve's FPS range
                assert d["ci"][0] <= d["diff"] <= d["ci"][1] and d["excludes_zero"] == (d["ci"][0] > 0 or d["ci"][1] < 0)
    with pytest.raises(ValueError, match="predicts 5 classes but the videos have 19"):
        keyframe_schedules(GSVNet(num_classes=5), videos, 19, progress=False)


def test_stage_flow_learns_the_exact_flow_and_starts_stage_gsv(tiny_synth, keyframe_run, tmp_path):
    """Stage flow: the loss is the end-point error on the 1/8 grid over cells seen in both frames; its flow net is
    where stage propagation starts with --init-flow."""
    from gsvlib.config import TrainConfig
    from gsvlib.models.flow import flow_to_eighth
    from gsvlib.train import TrainBatches, training_data

    cfg = config_for("flow", root=str(tiny_synth), out=str(tmp_path / "f"), iterations=15, batch_size=4)
    batches = TrainBatches(training_data(cfg), cfg)
    frames, target, offset = batches[0]
    assert offset == 1 and frames.shape[1] == 2 and target.shape == (4, 3, *frames.shape[-2:])
    model = GSVNet(num_classes=19)
    model.flow_net = Zero()
    (_, total, cells), = STAGES["flow"].loss(model, frames, target, cfg, None)
    truth = flow_to_eighth(target[:, :2]).norm(dim=1)  # zero prediction: EPE = |truth| ...
    known = torch.nn.functional.avg_pool2d(target[:, 2:], 8)[:, 0] == 1  # ... on cells valid in every pixel
    assert cells == known.sum() > 0 and torch.allclose(total, truth[known].sum())
    flow = train(cfg, progress=False)
    assert sum(flow["losses"][-3:]) < sum(flow["losses"][:3])
    gsv = train(config_for(recipe="short-adam", root=str(tiny_synth), out=str(tmp_path / "g"), iterations=1,
                           batch_size=2, init=keyframe_run, init_flow=flow["checkpoint"], lr=1e-12), progress=False)
    trained = torch.load(flow["checkpoint"], weights_only=True)["model"]
    started = torch.load(gsv["checkpoint"], weights_only=True)["model"]
    conv = "flow_net.down.0.0.weight"
    assert torch.allclose(started[conv], trained[conv], atol=1e-8)  # one step at lr 1e-12 from the flow run's
    with pytest.raises(ValueError, match="exact flow, which dataset camvid does not have"):
        TrainConfig(stage="flow", dataset="camvid").check()
    with pytest.raises(ValueError, match="--init-flow is a starting point of stage propagation; stage keyframe takes --init"):
        config_for("keyframe", init_flow=flow["checkpoint"]).check()


class Zero(torch.nn.Module):
    """A flow net that predicts no motion."""

    def forward(self, current, previous):
        return torch.zeros_like(current[:, :2])


def test_flow_error_scores_the_flow_net_on_every_pair_of_the_split(tiny_synth, tmp_path, capsys):
    from gsvlib.cli import main
    from gsvlib.evaluate import EvalConfig, flow_error
    from gsvlib.models.flow import flow_to_eighth

    model = GSVNet(num_classes=19)
    model.flow_net = Zero()
    res = flow_error(model, DataSpec("synthetic", tiny_synth, "val"), progress=False)
    assert res["pairs"] == 7 and res["epe"] == pytest.approx(res["zero_flow_epe"]) and res["epe"] > 0
    snippet = load_analysis(tiny_synth, "val", 2)  # the one val snippet: a hand count of the zero-flow error
    flow = torch.from_numpy(snippet["flow"][1:]).permute(0, 3, 1, 2)
    known = torch.nn.functional.avg_pool2d(torch.from_numpy(snippet["valid"][1:]).float()[:, None], 8)[:, 0] == 1
    assert res["cells"] == known.sum() and res["zero_flow_epe"] == pytest.approx(
        flow_to_eighth(flow).norm(dim=1)[known].mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="only the synthetic set has"):
        EvalConfig("m.pt", "camvid", str(tiny_synth), variants=("flow",)).check()
    torch.save({"model": GSVNet(num_classes=19).state_dict(), "model_config": {"num_classes": 19}}, tmp_path / "m.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "m.pt"), "--root", str(tiny_synth), "--variants", "flow"]) == 0
    assert "flow net: end-point error" in capsys.readouterr().out


def test_frame_rate_jitter_takes_every_s_th_frame_and_keeps_the_other_draws(tiny_synth):
    from gsvlib.train import TrainBatches, training_data

    plain = config_for(recipe="short-adam", root=str(tiny_synth), max_interval=3, batch_size=4)
    jitter = config_for(recipe="short-adam", root=str(tiny_synth), max_interval=3, batch_size=4, max_frame_step=2)
    a, b = TrainBatches(training_data(plain), plain), TrainBatches(training_data(jitter), jitter)
    assert b.max_offset == a.max_offset == 2 and b.dataset.max_offset == 4  # room for 2 steps of 2 frames
    for k in range(6):
        (fa, la, oa), (fb, lb, ob) = a[k], b[k]
        assert oa == ob and fa.shape == fb.shape  # the offset is drawn as before, in sampled frames
    sample = b._sample(3, 2, 2)
    assert torch.equal(sample["frames"], b.dataset.sample(3, 4)["frames"][::2]) and len(sample["frames"]) == 3
    with pytest.raises(ValueError, match="max_frame_step must be in 1..8 for stage propagation and 1 for the other"):
        config_for("keyframe", max_frame_step=2).check()


def test_median_frequency_weights_match_a_hand_computation():
    """Class 0 covers 6 of the 8 labelled pixels of the one image it is in (f = 3/4), class 1 8 of 18 in three images
    (f = 4/9), class 2 4 of 6 (f = 2/3), class 3 none: median 2/3, weights 8/9, 3/2, 1 and 0. Ignored pixels count
    nowhere."""
    from gsvlib.data.balance import class_pixels, median_frequency, sqrt_median_frequency

    a = np.array([[0, 0, 0, 0, 255], [0, 0, 1, 1, 255]])
    b = np.array([[1, 1, 2, 2], [255, 255, 2, 2]])
    c = np.array([[1, 1], [1, 1]])
    pixels, image_pixels = class_pixels([a, b, c], 4)
    assert pixels.tolist() == [6, 8, 4, 0] and image_pixels.tolist() == [8, 18, 6, 0]
    assert np.allclose(median_frequency(pixels, image_pixels), [8 / 9, 3 / 2, 1, 0])
    assert np.allclose(sqrt_median_frequency(pixels, image_pixels), [(8 / 9) ** 0.5, 1.5 ** 0.5, 1, 0])
    with pytest.raises(ValueError, match="no labelled pixel"):
        median_frequency(np.zeros(3, np.int64), np.zeros(3, np.int64))


def test_class_weighted_loss_is_the_weighted_mean_and_trains(tiny_synth, tmp_path):
    """--class-weights: the loss terms give F.cross_entropy's weighted mean, the weights come from the training labels
    and are kept in the checkpoint; stage flow, which has no classes, refuses them."""
    from gsvlib.data.balance import class_pixels, median_frequency
    from gsvlib.train import balance_weights, training_data

    logits, labels = torch.randn(2, 4, 3, 5), torch.randint(0, 4, (2, 3, 5))
    labels[0, 0] = 255
    weight = torch.tensor([0.5, 2.0, 1.0, 4.0])
    total, count = cross_entropy(logits, labels, weight)
    assert torch.allclose(total / count, torch.nn.functional.cross_entropy(logits, labels, weight, ignore_index=255))
    cfg = config_for("keyframe", root=str(tiny_synth), out=str(tmp_path / "k"), iterations=2, batch_size=2,
                     class_weights="median-frequency")
    data = training_data(cfg)
    expected = median_frequency(*class_pixels([data.read_label(s.label) for s in data.items], 19))
    assert torch.allclose(balance_weights(cfg, data, progress=False), torch.tensor(expected, dtype=torch.float32))
    run = train(cfg, progress=False)
    assert np.allclose(torch.load(run["checkpoint"], weights_only=True)["class_weights"], expected)
    with pytest.raises(ValueError, match="stage flow has no classes"):
        config_for("flow", class_weights="median-frequency").check()


def test_the_photometric_loss_teaches_the_flow_net_from_unlabelled_frames(tiny_synth):
    """--photometric adds, for every step of a sample, the photometric and smoothness terms of its flow: with every
    label ignored, the flow net still gets a gradient, and without the option it gets none."""
    from gsvlib.models.flow import edge_aware_smoothness, photometric_error
    from gsvlib.train import TrainBatches, batch_loss, training_data

    cfg = config_for(recipe="short-adam", root=str(tiny_synth), batch_size=2, photometric=0.5)
    frames, labels, offset = TrainBatches(training_data(cfg), cfg)[3]
    model = GSVNet(num_classes=19)
    terms = STAGES["propagation"].loss(model, frames, torch.full_like(labels, 255), cfg, None)
    assert [w for w, _, _ in terms] == [1.0, 0.5, 0.5 * SMOOTHNESS] and terms[0][2] == 0
    with torch.no_grad():
        _, steps = model.unroll(frames)
        smalls = [model.small_frame(frames[:, t]) for t in range(offset + 1)]
    photo = [photometric_error(smalls[t + 1], smalls[t], s.flow) for t, s in enumerate(steps)]
    assert torch.isclose(terms[1][1].detach(), sum(p for p, _ in photo)) and terms[1][2] == sum(n for _, n in photo)
    assert torch.isclose(terms[2][1].detach(), sum(edge_aware_smoothness(s.flow, smalls[t + 1])[0]
                                                   for t, s in enumerate(steps)))
    batch_loss(terms).backward()
    assert model.flow_net.to_flow.weight.grad.abs().sum() > 0
    model.zero_grad()
    batch_loss(STAGES["propagation"].loss(model, frames, torch.full_like(labels, 255), config_for(recipe="short-adam"),
                                  None)).backward()
    assert model.flow_net.to_flow.weight.grad is None or model.flow_net.to_flow.weight.grad.abs().sum() == 0


@pytest.mark.slow
def test_the_synthetic_set_in_camvid_classes_pre_trains_a_whole_propagation(tiny_synth, keyframe_run, tmp_path):
    """Dataset synthetic-camvid: the same frames, labels through CITYSCAPES_TO_CAMVID (snippets and whole videos).
    A stage propagation run on it starts a CamVid run's flow net and GSV conv with --init-propagation."""
    from gsvlib.config import TrainConfig
    from gsvlib.data.labels import CAMVID, CITYSCAPES_TO_CAMVID

    city, camvid = open_dataset("synthetic", tiny_synth, "train"), open_dataset("synthetic-camvid", tiny_synth, "train")
    assert camvid.table == CAMVID and camvid.table.classes.index("pavement") == 4
    plain, mapped = city[0]["label"].numpy(), camvid[0]["label"].numpy()
    assert (mapped == CITYSCAPES_TO_CAMVID[plain]).all() and set(np.unique(mapped)) - {255} <= set(range(11))
    assert ((plain == 1) == (mapped == 4)).all()  # sidewalk is CamVid's pavement
    video, video_city = camvid.videos()[0], city.videos()[0]
    assert (video.labels[3]() == CITYSCAPES_TO_CAMVID[video_city.labels[3]()]).all()

    common = dict(dataset="synthetic-camvid", root=str(tiny_synth), batch_size=2)
    key = train(config_for("keyframe", out=str(tmp_path / "k"), iterations=1, **common), progress=False)
    synth = train(config_for(recipe="short-adam", out=str(tmp_path / "s"), iterations=3, init=key["checkpoint"],
                             **common), progress=False)
    started = train(config_for(recipe="short-adam", out=str(tmp_path / "c"), iterations=1, init=key["checkpoint"],
                               init_propagation=synth["checkpoint"], lr=1e-12, **common), progress=False)
    before = torch.load(synth["checkpoint"], weights_only=True)["model"]
    after = torch.load(started["checkpoint"], weights_only=True)["model"]
    for name in ("flow_net.down.0.0.weight", "correction.guiding_net.stem.0.weight", "correction.intra_net.net.2.weight"):
        assert torch.allclose(after[name], before[name], atol=1e-8), name
    with pytest.raises(ValueError, match="--init-flow and --init-propagation both give the flow_net; give one of them"):
        TrainConfig(init_flow="a.pt", init_propagation="b.pt").check()
    with pytest.raises(ValueError, match="--init-propagation is a starting point of stage propagation; stage keyframe takes"):
        TrainConfig(stage="keyframe", init_propagation="b.pt").check()
    with pytest.raises(Exception, match=r"its propagation \(GSV conv\): a run of the same classes"):  # 19 into 11
        train(config_for(recipe="short-adam", root=str(tiny_synth), out=str(tmp_path / "x"), iterations=1,
                         init=keyframe_run, init_propagation=synth["checkpoint"]), progress=False)
