"""The gsv command line, end to end on tiny synthetic data, and its errors."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gsvlib.cli import build_parser, main
from gsvlib.data.io import write_png
from gsvlib.video import STAGES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tiny_synth, tmp_path_factory):
    """Keyframe and GSV checkpoints from two iterations of each stage through the CLI."""
    runs = tmp_path_factory.mktemp("runs")
    common = ["--root", str(tiny_synth), "--batch-size", "2", "--iterations", "2"]
    assert main(["train", "--stage", "keyframe", "--out", str(runs / "key"), *common]) == 0
    assert main(["train", "--stage", "gsv", "--out", str(runs / "gsv"), "--init", str(runs / "key/checkpoint.pt"),
                 *common]) == 0
    return runs / "gsv" / "checkpoint.pt"


def test_info_prints_the_parameter_table(capsys):
    assert main(["info", "--classes", "11"]) == 0
    out = capsys.readouterr().out
    assert "| keyframe net N (swiftnet) |" in out and "non-keyframe total" in out


def test_data_synth_writes_the_cityscapes_layout(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["data", "synth", "--out", str(out), "--snippets", "1", "--val-snippets", "1", "--size",
                 "32x64"]) == 0
    assert len(list((out / "leftImg8bit_sequence/train/synth").glob("*.png"))) == 30
    assert len(list((out / "gtFine/val/synth").glob("*_gtFine_labelIds.png"))) == 1
    assert "1 train + 1 val snippets" in capsys.readouterr().out


def test_train_resume_and_eval(trained, tiny_synth, tmp_path, capsys):
    assert trained.is_file()
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(trained), "--root", str(tiny_synth), "--variants", "gsv", "warp", "copy",
                 "image", "--image-scales", "1.0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"gsv", "warp", "copy", "image", "written_by"} and set(res["gsv"]["intervals"]) == {"1", "2", "3", "4", "5"}
    # the same keyframe: every variant agrees at l = 1
    assert res["gsv"]["intervals"]["1"]["avg"] == res["copy"]["intervals"]["1"]["avg"]
    assert "gsv: l=1 avg" in capsys.readouterr().out


def test_eval_in_bf16_records_its_precision_and_fp16_needs_cuda(trained, tiny_synth, tmp_path, capsys):
    out = tmp_path / "bf16.json"
    assert main(["eval", "--checkpoint", str(trained), "--root", str(tiny_synth), "--intervals", "1", "3",
                 "--precision", "bf16", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["gsv"]
    assert res["precision"] == "bf16" and 0 <= res["intervals"]["3"]["min"] <= 100
    assert main(["eval", "--checkpoint", str(trained), "--root", str(tiny_synth), "--precision", "fp16"]) == 2
    assert "runtime eager cannot run fp16 on cpu: on CPU it runs fp32, bf16 only" in capsys.readouterr().err


def test_eval_policy_compares_adaptive_keyframes_with_fixed_intervals(trained, tiny_synth, tmp_path, capsys):
    out = tmp_path / "policy.json"
    assert main(["eval", "--checkpoint", str(trained), "--root", str(tiny_synth), "--policy", "kernel",
                 "--max-interval", "3", "--factors", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["fixed"]) == {"1", "2", "3"} and [p["factor"] for p in res["policies"]["kernel"]["points"]] == [2]
    printed = capsys.readouterr().out
    assert "| fixed l=3 |" in printed and "| kernel, l <= 3 |" in printed and "8 scored frames of 8 streamed" in printed


def test_bench_prints_key_and_non_key_timings(capsys, tmp_path):
    assert main(["bench", "--size", "64x96", "--interval", "3", "--intervals-timed", "1", "--classes", "5"]) == 0
    out = capsys.readouterr().out
    frames = [line.split()[2] for line in out.splitlines() if line.startswith("  frame ")]
    assert frames == ["keyframe", "non-keyframe", "non-keyframe"]  # one timed interval of l = 3, frame by frame
    assert "key scale 0.75" in out and "(median), ratio" in out and "GFLOPs: keyframe" in out
    path = tmp_path / "bench.json"
    assert main(["bench", "--size", "64x96", "--intervals-timed", "1", "--intervals", "1", "2", "--image-scales", "0.5",
                 "--classes", "5", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert set(report["gsvnet"]) == {"1", "2"} and report["gsvnet"]["2"]["nonkey_ms"] > 0
    roof, parts = report["roofline"], report["parts"]
    assert roof["matmul_gflop_s"]["fp32"] > 0 and roof["copy_gb_s"] > 0
    assert set(parts) == {"keyframe net N", "flow net O", "warp (eq. 1)", "GSV conv (eq. 2)", "labels (output step)",
                          "labels, literal (baseline)"}
    assert all(p["ms"] > 0 and 0 <= p["peak_share"] for p in parts.values())
    assert 0 < parts["labels (output step)"]["mixed_share"] < 1
    printed = capsys.readouterr().out
    assert "| part (eager fp32) | ms | GFLOPs | GFLOP/s | share of the fp32 matmul peak |" in printed
    assert "| keyframe net N |" in printed and "in FLOPs" in printed


def test_bench_writes_each_backend_as_it_finishes_and_skips_cuda_graphs_on_a_cpu(tmp_path, capsys, monkeypatch):
    """A matrix bench writes its JSON after every run (a run stopped by a time limit keeps what it measured); CUDA
    graphs and fp16 are skipped on a CPU, with the reason."""
    import gsvlib.cli as cli

    path, written, write = tmp_path / "m.json", [], cli.write_json_atomic
    monkeypatch.setattr(cli, "write_json_atomic", lambda p, r: written.append(len(r["runs"])) or write(p, r))
    assert main(["bench", "--size", "64x96", "--intervals-timed", "1", "--intervals", "2", "--image-scales", "0.75",
                 "--classes", "5", "--backend", "eager", "cuda-graphs", "--precision", "fp32", "bf16", "fp16",
                 "--host-frames", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert written == [1, 2, 2] and [(r["backend"], r["precision"]) for r in report["runs"]] == [("eager", "fp32"),
                                                                                                  ("eager", "bf16")]
    assert {(s["backend"], s["precision"]): s["reason"] for s in report["skipped"]}[("cuda-graphs", "fp32")] == \
        "it runs on CUDA only"
    assert all(r["host_frames"] for r in report["runs"]) and "key / non-key" in capsys.readouterr().out


def test_segment_a_frame_folder_and_an_mp4(trained, tmp_path, capsys):
    frames = tmp_path / "frames"
    for i in range(4):
        write_png(frames / f"f_{i}.png", np.full((40, 72, 3), 40 * i, np.uint8))
    assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(tmp_path / "ov"),
                 "--interval", "2"]) == 0
    assert len(list((tmp_path / "ov").glob("*.png"))) == 4
    timings = json.loads((tmp_path / "ov" / "timings.json").read_text())
    assert [t["keyframe"] for t in timings["per_frame"]] == [True, False, True, False]
    assert set(timings["stage_ms"]) == set(STAGES) and all(ms >= 0 for ms in timings["stage_ms"].values())
    assert timings["stage_ms"]["model"] == pytest.approx(sum(t["ms"] for t in timings["per_frame"]) / 4, abs=0.05)
    out = capsys.readouterr().out.strip().splitlines()
    assert "FPS on the eager path (cpu, keyframes at x" in out[-2]
    assert out[-1].startswith(f"end to end {timings['fps_end_to_end']:.1f} FPS") and "bound by" in out[-1]
    assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(tmp_path / "ov.mp4")]) == 0
    assert (tmp_path / "ov.mp4").stat().st_size > 0
    assert main(["segment", str(tmp_path / "ov.mp4"), "--checkpoint", str(trained), "--out", str(tmp_path / "ov2")]) == 0
    assert len(list((tmp_path / "ov2").glob("*.png"))) == 4


def test_segment_labels_writes_the_class_ids_the_segmenter_streams(trained, tmp_path, capsys):
    from PIL import Image

    from gsvlib.checkpoint import load_model
    from gsvlib.segmenter import VideoSegmenter

    frames = tmp_path / "frames"
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (40, 72, 3), dtype=np.uint8) for _ in range(4)]
    for i, picture in enumerate(pictures):
        write_png(frames / f"f_{i}.png", picture)
    out = tmp_path / "labels"
    assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(out), "--interval", "2",
                 "--labels"]) == 0
    model, _ = load_model(trained)
    seg = VideoSegmenter(model, 2)
    for i, picture in enumerate(pictures):
        written = Image.open(out / f"{i:06d}.png")
        expected = seg.step(torch.from_numpy(picture).permute(2, 0, 1), labels=True).labels[0].numpy()
        assert written.mode == "L" and np.array_equal(np.asarray(written), expected), i  # pixel for pixel
    assert json.loads((out / "timings.json").read_text())["written"] == "labels"
    assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(tmp_path / "l.mp4"),
                 "--labels"]) == 2
    assert f"--labels writes a folder of label PNGs, not a .mp4 video: give --out a folder (a path without a " \
           f"suffix), e.g. {tmp_path / 'l'}" in capsys.readouterr().err and not (tmp_path / "l.mp4").exists()


@pytest.mark.slow
def test_bench_end_to_end_times_the_segment_path_beside_the_model_alone(trained, tmp_path, capsys):
    frames = tmp_path / "frames"
    for i in range(5):
        write_png(frames / f"f_{i}.png", np.full((40, 72, 3), 40 * i, np.uint8))
    path = tmp_path / "e2e.json"
    assert main(["bench", "--end-to-end", str(frames), "--checkpoint", str(trained), "--interval", "2",
                 "--max-frames", "4", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["frames"] == 4 and report["size"] == [40, 72] and report["interval"] == 2
    rows = report["rows"]
    assert [r["output"] for r in rows] == ["model only", "folder", ".mp4", "labels"] and rows[0]["share"] == 1.0
    for row in rows[1:]:
        assert row["share"] == pytest.approx(row["fps"] / rows[0]["fps"], abs=2e-3)
        assert set(row["stage_ms"]) == set(STAGES) and row["bound_by"] in ("the model", "decoding",
                                                                           "drawing and encoding")
    table = capsys.readouterr().out
    assert f"| eager | fp32 | folder | {rows[1]['fps']:.1f} | {rows[1]['share']:.0%} |" in table
    assert "4 frames of frames, 72x40, l=2" in table


def test_segment_with_a_keyframe_policy(trained, tmp_path, capsys):
    frames = tmp_path / "frames"
    for i in range(4):
        write_png(frames / f"f_{i}.png", np.roll(np.arange(40 * 72 * 3, dtype=np.uint8).reshape(40, 72, 3), 4 * i, 1))
    out = tmp_path / "ov"
    assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(out), "--interval", "8",
                 "--policy", "flow:1e-9"]) == 0  # any motion at all passes this threshold
    timings = json.loads((out / "timings.json").read_text())["per_frame"]
    assert [(t["keyframe"], t["forced"]) for t in timings] == [(True, False)] + [(True, True)] * 3
    assert "4 keyframes (3 forced by the policy)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(out), "--policy", "motion:2"])
    assert "--policy takes SIGNAL:THRESHOLD, e.g. flow:2.5" in capsys.readouterr().err


@pytest.mark.slow
def test_tour_is_gsv_run_and_gsv_tables_over_the_synthetic_experiments(tmp_path, capsys):
    """The tour carries out experiments/synthetic (one run folder per experiment file, one result file per [[eval]]
    and [[bench]]) and renders its page with `gsv tables`: the same page from the same result files."""
    argv = ["tour", "--quick", "--data", str(tmp_path / "d"), "--runs", str(tmp_path / "r"), "--figures",
            str(tmp_path / "f")]
    assert main(argv) == 0
    md = (tmp_path / "f" / "results.md").read_text()
    assert "| GSVNet | " in md and "| GSVNet l=5 |" in md and "| image-only x0.5 |" in md
    assert "| train synthetic/gsv |" in md and "| train keyframe (init of synthetic/gsv) |" in md
    assert "| GSVNet (no intra features) |" in md and "GSVNet - GSVNet (no intra features): l=2" in md
    assert sorted(p.name for p in (tmp_path / "r" / "synthetic").iterdir()) == ["gsv", "keyframe", "no-intra"]
    assert sorted(p.name for p in (tmp_path / "f").glob("*.json")) == ["bench.json", "gsv.json", "image.json",
                                                                        "no-intra.json"]
    bench = json.loads((tmp_path / "f" / "bench.json").read_text())
    assert bench["size"] == [128, 256] and bench["experiment"]["changed"] == {"size": [128, 256], "intervals_timed": 1}
    assert bench["params"][0][0].startswith("keyframe net N")  # the paper's order, kept through the JSON file
    capsys.readouterr()
    assert main(argv) == 0  # a second run finds every step done
    out = capsys.readouterr().out
    assert "] training " not in out and out.count(": done (") == 4 and out.count("] trained: ") == 3
    assert main(["tables", str(tmp_path / "f"), "--out", str(tmp_path / "again.md"), "--experiments",
                 str(ROOT / "experiments")]) == 0
    assert (tmp_path / "again.md").read_text() == md
    assert "![training loss](training_loss.png)" in md  # the plots written beside it
    assert build_parser().parse_args(["tour"]).figures == "runs/tour/report"  # never the committed figures/
    assert all((tmp_path / "f" / p).stat().st_size > 1000
               for p in ("miou_by_interval.png", "accuracy_throughput.png", "training_loss.png"))


def test_the_committed_tour_page_is_gsv_tables_over_figures_synthetic(tmp_path):
    """figures/results.md, the tour's reference page, is what `gsv tables` renders from figures/synthetic."""
    assert main(["tables", str(ROOT / "figures" / "synthetic"), "--out", str(tmp_path / "page.md"),
                 "--experiments", str(ROOT / "experiments")]) == 0
    assert (tmp_path / "page.md").read_text() == (ROOT / "figures" / "results.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["eval", "--checkpoint", "missing.pt"], "missing.pt does not exist"),
    (["bench", "--interval", "31"], "interval must be in 1..30"),
    (["bench", "--interval", "0"], "interval must be in 1..30"),
    (["bench", "--size", "1024"], "size must be HxW"),
    (["train", "--recipe", "camvid-keyframe-more", "--out", "runs/x"], "give --init CHECKPOINT"),
])
def test_bad_arguments_give_clear_errors(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2 and message in capsys.readouterr().err


def test_a_keyframe_only_checkpoint_is_not_scored_as_gsvnet(trained, tiny_synth, capsys):
    key = str(trained.parents[1] / "key" / "checkpoint.pt")
    assert main(["eval", "--checkpoint", key, "--root", str(tiny_synth), "--variants", "gsv", "warp"]) == 2
    assert "its flow net and propagation (GSV conv) were never trained (it holds keyframe net)" in \
        capsys.readouterr().err
    assert main(["eval", "--checkpoint", key, "--root", str(tiny_synth), "--variants", "image",
                 "--image-scales", "1.0"]) == 0
    assert main(["eval", "--checkpoint", key, "--root", str(tiny_synth), "--variants", "copy", "--intervals",
                 "1", "2"]) == 0  # copying the previous segmentation runs no trained propagation


def test_foreign_checkpoint_lists_its_keys(tmp_path, capsys):
    torch.save({"state_dict": {}, "epoch": 3}, tmp_path / "foreign.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "foreign.pt")]) == 2
    assert "not a gsvkit checkpoint" in capsys.readouterr().err


def test_eval_on_a_dataset_without_labels(trained, tiny_synth, tmp_path, capsys):
    import shutil

    root = tmp_path / "nolabels"
    shutil.copytree(tiny_synth / "leftImg8bit_sequence", root / "leftImg8bit_sequence")
    (root / "gtFine" / "val").mkdir(parents=True)
    assert main(["eval", "--checkpoint", str(trained), "--root", str(root)]) == 2
    assert "no label files under" in capsys.readouterr().err


def test_cuda_without_cuda_and_undecodable_video(trained, tmp_path, capsys):
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda", "--size", "64x64"]) == 2
        assert "cuda" in capsys.readouterr().err.lower()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    assert main(["segment", str(bad), "--checkpoint", str(trained), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "broken.mp4 could not be decoded" in err and "extract its frames" in err
    assert "configuration:" not in err and len(err.splitlines()) == 1  # ffmpeg's last line, not its banner


def test_segment_writes_the_output_its_suffix_names_and_refuses_others(trained, tmp_path, capsys):
    import imageio.v3 as iio

    frames = tmp_path / "frames"
    for i in range(3):
        write_png(frames / f"f_{i}.png", np.full((64, 96, 3), 50 * i, np.uint8))
    for suffix in (".gif", ".webm", ".mp4"):
        out = tmp_path / f"seg{suffix}"
        assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(out)]) == 0, \
            capsys.readouterr().err
        pictures = list(iio.imiter(out))
        assert len(pictures) == 3 and pictures[0].shape[1] == 96 and pictures[0].shape[0] > 64  # the legend strip
        assert json.loads(out.with_suffix(".timings.json").read_text())["frames"] == 3
    assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(tmp_path / "bare"),
                 "--no-legend"]) == 0
    assert iio.imread(tmp_path / "bare" / "000000.png").shape == (64, 96, 3)
    assert main(["segment", str(frames), "--checkpoint", str(trained), "--out", str(tmp_path / "x.avi")]) == 2
    assert "cannot write .avi files" in capsys.readouterr().err and not list(tmp_path.glob("*x.avi*"))


def test_segment_warns_when_the_frame_rate_is_too_low_for_propagation(trained, tmp_path, capsys):
    import imageio.v2 as iio2

    frames = tmp_path / "frames"
    for i in range(3):
        write_png(frames / f"f_{i}.png", np.full((64, 96, 3), 50 * i, np.uint8))
    args = ["segment", str(frames), "--checkpoint", str(trained), "--out"]
    assert main([*args, str(tmp_path / "a"), "--fps", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "1 frames/s" in err and "--interval 1" in err
    assert main([*args, str(tmp_path / "b"), "--fps", "1", "--interval", "1"]) == 0  # no propagation: no warning
    assert main([*args, str(tmp_path / "c"), "--fps", "30"]) == 0
    assert "warning" not in capsys.readouterr().err
    slow = tmp_path / "slow.mp4"  # a container that says 2 frames/s
    with iio2.get_writer(slow, fps=2, macro_block_size=1) as writer:
        for i in range(3):
            writer.append_data(np.full((64, 96, 3), 50 * i, np.uint8))
    assert main(["segment", str(slow), "--checkpoint", str(trained), "--out", str(tmp_path / "d")]) == 0
    assert "2 frames/s" in capsys.readouterr().err


def test_bench_warns_when_repeats_disagree_or_the_cpu_is_busy(monkeypatch, capsys):
    from gsvlib import bench

    with pytest.warns(UserWarning, match=r"GSVNet l=5: the 2 timed keyframes took 100-130 ms, a spread of 30%"):
        bench._spread_warning([100.0, 130.0], "keyframe", "GSVNet l=5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bench._spread_warning([100.0, 110.0], "keyframe", "GSVNet l=5")  # within 20 %: quiet
        bench._spread_warning([100.0], "keyframe", "GSVNet l=5")
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert main(["bench", "--size", "64x96", "--interval", "2", "--intervals-timed", "1", "--classes", "5",
                 "--threads", "2"]) == 0
    assert "gsv bench: warning: the CPU is busy (load average 9.0 for 2 threads)" in capsys.readouterr().err


def test_span_takes_two_fractions_or_the_name_of_a_part_of_the_15_hz_run(capsys):
    from gsvlib.cli import build_parser
    from gsvlib.data.camvid import HELD_OUT, PROPAGATION_TRAIN

    parser = build_parser()
    assert parser.parse_args(["eval", "--checkpoint", "c.pt", "--span", "held-out"]).span == HELD_OUT
    assert parser.parse_args(["eval", "--checkpoint", "c.pt", "--span", "0.2", "0.4"]).span == (0.2, 0.4)
    assert parser.parse_args(["train", "--span", "propagation-train"]).span == PROPAGATION_TRAIN
    for bad in (["held"], ["0.2"], ["0.2", "x"], ["0", "0.5", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["eval", "--checkpoint", "c.pt", "--span", *bad])
        assert "--span takes two fractions A B or one of propagation-train, held-out" in capsys.readouterr().err


def test_paired_differences_set_any_propagation_against_the_others(trained, tiny_synth, tmp_path):
    """Before: only GSVNet minus each other variant; a new variant against warp was computed by hand."""
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(trained), "--root", str(tiny_synth), "--intervals", "1", "3",
                 "--variants", "gsv", "warp", "copy", "--baseline", "warp", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["warp"]["differences"]) == {"warp - gsv", "warp - copy", "warp - keyframe net on every frame"}
    assert "differences" not in report["gsv"]
    default = tmp_path / "default.json"
    assert main(["eval", "--checkpoint", str(trained), "--root", str(tiny_synth), "--intervals", "1", "3",
                 "--variants", "gsv", "warp", "--out", str(default)]) == 0
    gsv_minus_warp = json.loads(default.read_text())["gsv"]["differences"]["gsv - warp"]["3"]["avg"]["diff"]
    assert report["warp"]["differences"]["warp - gsv"]["3"]["avg"]["diff"] == pytest.approx(-gsv_minus_warp)


def test_the_tours_iteration_settings_reach_the_experiments_of_their_stage(tmp_path):
    """keyframe_iterations and gsv_iterations (the notebooks' parameters) set the iterations of the experiment files
    by the stage they train; one that no experiment would take is refused rather than silently ignored."""
    from gsvlib.tour import TourConfig, runner

    run = runner(TourConfig(keyframe_iterations=3, gsv_iterations=4), say=lambda *_: None)
    assert run.settings == {"synthetic/keyframe": {"iterations": 3}, "synthetic/gsv": {"iterations": 4},
                            "synthetic/no-intra": {"iterations": 4}}
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "keyframe.toml").write_text((ROOT / "experiments/synthetic/keyframe.toml").read_text())
    with pytest.raises(ValueError, match=r"iterations for stages \['propagation'\] would change nothing"):
        runner(TourConfig(experiments=str(tmp_path / "synthetic"), gsv_iterations=4))
