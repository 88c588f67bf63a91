"""Issue 6's pipeline end to end on a tiny CamVid-layout folder: train on one part of a 15 Hz run in time, evaluate on
the rest, export fp16 weights with a manifest, render the tables; and the pieces it rests on."""
import argparse
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from gsvlib.reports import camvid_markdown, cost_of_propagation, fixed_at, read_results, schedule_markdown
from gsvlib.checkpoint import load_model
from gsvlib.cli import build_parser, main
from gsvlib.data import open_dataset
from gsvlib.data.io import write_png
from gsvlib.config import RECIPES, config_for, config_from_options, train_command


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    """A moving bright square over a road: 8 frames of a 15 Hz val run, 2 train and 2 test frames, 32x48."""
    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)

    def frame(split: str, name: str, x: int) -> None:
        img = (rng.random((32, 48, 3)) * 40).astype(np.uint8)
        label = np.full((32, 48), 3, np.uint8)  # road
        img[8:20, x:x + 12] = 220
        label[8:20, x:x + 12] = 8  # car
        label[:2] = 11  # void
        write_png(root / split / f"{name}.png", img)
        write_png(root / f"{split}annot" / f"{name}.png", label)

    for i in range(8):
        frame("val", f"0016E5_{7959 + 2 * i:05d}", 2 + 4 * i)
    for split, seq in (("train", "0001TP"), ("test", "Seq05VD")):
        for i in range(2):
            frame(split, f"{seq}_f{30 * i:05d}", 6 + 20 * i)
    return root


def test_span_reaches_training_and_is_refused_for_other_layouts(camvid, tiny_synth):
    assert len(open_dataset("camvid", camvid, "val", span=(0, 0.5), offset=0)) == 4
    with pytest.raises(ValueError, match="span cuts long sequences in time"):
        open_dataset("synthetic", tiny_synth, "val", span=(0, 0.5))
    with pytest.raises(ValueError, match="span must be fractions"):
        config_for("gsv", span=(0.5, 0.2)).check()
    assert config_for("gsv", span=[0, 0.5]).span == (0.0, 0.5)  # lists (argparse, JSON) become the tuple


def test_train_command_gives_back_the_same_config(tmp_path):
    cfg = config_for("gsv", dataset="camvid", root=str(tmp_path / "cv"), split="val", span=(0, 0.667), use_intra=False,
                     train_flow=False, crop=0.5, momentum=0.8, init=str(tmp_path / "k.pt"), out=str(tmp_path / "o"))
    line = train_command(asdict(cfg), cwd=tmp_path)
    assert "--no-intra" in line and "--freeze-flow" in line and "--span 0 0.667" in line and "--root cv" in line
    again = config_from_options(build_parser().parse_args(line.split()[1:]))
    for k in ("root", "init", "out"):
        setattr(again, k, str(tmp_path / getattr(again, k)))
    assert asdict(again) == asdict(cfg)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_is_rebuilt_exactly_by_its_command(recipe, tmp_path):
    cfg = config_for(recipe=recipe, out=str(tmp_path / "o"), root=str(tmp_path / "d"), workers=2)
    line = train_command(asdict(cfg), cwd=tmp_path)
    again = config_from_options(build_parser().parse_args(line.split()[1:]))
    for k in ("root", "out"):
        setattr(again, k, str(tmp_path / getattr(again, k)))
    assert asdict(again) == asdict(cfg)
    assert asdict(config_from_options(build_parser().parse_args(["train", "--recipe", recipe]))) == \
        asdict(config_for(recipe=recipe))


def test_a_recipe_of_the_other_stage_is_refused():
    with pytest.raises(ValueError, match="recipe camvid-keyframe trains stage keyframe"):
        config_for("gsv", "camvid-keyframe")
    assert config_for(recipe="camvid-keyframe", lr=0.01).lr == 0.01  # an option given overrides the recipe


def test_the_cost_of_propagation_compares_l3_with_the_keyframe_net_copy_and_warp():
    def prop(key, gsv, warp, copy):
        return {v: {"intervals": {"1": {"avg": key}, "3": {"avg": x}}} for v, x in
                (("gsv", gsv), ("warp", warp), ("copy", copy))}

    assert cost_of_propagation(prop(60.0, 58.5, 57.0, 55.0)) == {"keyframe": 60.0, "gsv": 58.5, "warp": 57.0,
                                                                 "copy": 55.0, "gap": 1.5}
    assert cost_of_propagation(prop(60.0, 61.0, 57.0, 55.0))["gap"] == -1.0


def test_camvid_pipeline_through_the_cli(camvid, tmp_path, capsys):
    runs, out, weights = tmp_path / "runs", tmp_path / "results", tmp_path / "weights"
    common = ["--dataset", "camvid", "--root", str(camvid), "--batch-size", "2", "--iterations", "2"]
    assert main(["train", "--stage", "keyframe", "--split", "train", "--out", str(runs / "key"), *common]) == 0
    assert main(["train", "--stage", "gsv", "--split", "val", "--span", "0", "0.5", "--max-interval", "3", "--init",
                 str(runs / "key/checkpoint.pt"), "--out", str(runs / "gsv"), *common]) == 0
    assert main(["export", "--checkpoint", str(runs / "gsv/checkpoint.pt"), "--out", str(weights / "w.pt"),
                 "--manifest", str(weights / "manifest.json")]) == 0
    w = str(weights / "w.pt")
    ev = ["--dataset", "camvid", "--root", str(camvid)]
    assert main(["eval", "--checkpoint", w, *ev, "--split", "test", "--variants", "image", "--out",
                 str(out / "image_swiftnet.json")]) == 0
    assert main(["eval", "--checkpoint", w, *ev, "--split", "val", "--span", "0.5", "1", "--intervals", "1", "2", "3",
                 "--variants", "gsv", "warp", "copy", "--out", str(out / "propagation.json")]) == 0
    assert main(["tables", str(out)]) == 0

    prop = json.loads((out / "propagation.json").read_text())
    assert prop["gsv"]["snippets"] == 2  # frames 7 and 8 of the held-out half have 2 frames before them in it
    assert prop["gsv"]["span"] == [0.5, 1.0]
    text = (out / "results.md").read_text()
    assert "| SwiftNet-R18 |" in text and "| GSVNet |" in text and "At l=3: GSVNet" in text
    assert text == camvid_markdown(read_results(out))

    entry = json.loads((weights / "manifest.json").read_text())["w.pt"]
    assert entry["dataset"] == "camvid" and entry["iterations"] == 2 and entry["classes"][0] == "sky"
    assert entry["command"].startswith("gsv train --stage gsv --dataset camvid") and "--span 0 0.5" in entry["command"]
    assert entry["bytes"] < 0.55 * (runs / "gsv/checkpoint.pt").stat().st_size  # fp16 and no optimizer state


def test_exported_fp16_weights_segment_like_the_checkpoint(tmp_path):
    from gsvlib import GSVNet
    from gsvlib.checkpoint import export_weights
    from gsvlib.files import save_atomic

    model = GSVNet(num_classes=5).eval()
    save_atomic({"model": model.state_dict(), "model_config": asdict(model.config)}, tmp_path / "c.pt")
    entry = export_weights(tmp_path / "c.pt", tmp_path / "h.pt")
    half, _ = load_model(tmp_path / "h.pt")
    assert entry["command"] is None and all(p.dtype == torch.float32 for p in half.parameters())
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model.segment_keyframe(x, 1.0), half.segment_keyframe(x, 1.0)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99 and (a - b).abs().max() < 0.05


def test_tables_of_a_missing_or_broken_folder(tmp_path, capsys):
    assert main(["tables", str(tmp_path / "nowhere")]) == 2
    assert "run `make camvid`" in capsys.readouterr().err
    (tmp_path / "propagation.json").write_text("{")
    assert main(["tables", str(tmp_path)]) == 2
    assert "propagation.json is not valid JSON" in capsys.readouterr().err


def test_momentum_and_augmentation_flags_reach_the_config():
    args = build_parser().parse_args(["train", "--momentum", "0.5", "--crop", "0.5", "--scale-min", "0.4",
                                      "--scale-max", "0.9", "--key-scale", "0.75", "--lr-decay-every", "10"])
    assert isinstance(args, argparse.Namespace)
    assert (args.momentum, args.crop, args.scale_min, args.scale_max, args.key_scale, args.lr_decay_every) == (
        0.5, 0.5, 0.4, 0.9, 0.75, 10)


def test_json_the_project_writes_and_commits_is_strict(tmp_path):
    """NaN (a per-class IoU of an absent class, the non-keyframe time at l = 1) is written as null: strict parsers
    reject bare NaN."""
    import math
    import subprocess
    from pathlib import Path

    from gsvlib.bench import throughput_table
    from gsvlib.files import write_json_atomic

    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"not JSON: {c}")))

    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": math.nan, "b": [math.inf, 1.5], "c": {"d": -math.inf}})
    assert strict(path.read_text()) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    bench = {"gsvnet": {"1": {"fps": 1.0, "key_ms": 10.0, "nonkey_ms": None, "gflops_avg": 1.0}}, "image_only": {}}
    assert "| GSVNet l=1 | 1.00 | 10 | - | 1.0 |" in throughput_table(bench)
    root = Path(__file__).resolve().parents[1]
    committed = subprocess.run(["git", "ls-files", "*.json"], cwd=root, capture_output=True, text=True).stdout.split()
    for name in committed:
        strict((root / name).read_text())


def test_the_schedule_table_compares_a_policy_with_the_fixed_curve_at_its_fps():
    point = lambda fps, miou, share: {"fps": fps, "miou": miou, "keyframe_share": share, "forced": 0}
    schedules = {"frames": 20, "scored": 10, "key_scale": 0.75, "timing_ms": {"keyframe": 100.0, "non-keyframe": 10.0},
                 "fixed": {"1": point(10.0, 60.0, 1.0), "2": point(18.0, 58.0, 0.5), "4": point(30.0, 50.0, 0.25)},
                 "policies": {"flow": {"title": "t", "median_reading": 1.0, "max_interval": 4, "points": [
                     {**point(24.0, 56.0, 0.35), "factor": 2.0, "threshold": 2.0},
                     {**point(40.0, 49.0, 0.2), "factor": 6.0, "threshold": 6.0}]}}}
    assert fixed_at(schedules, 24.0) == pytest.approx(54.0)  # halfway from (18, 58) to (30, 50)
    assert fixed_at(schedules, 40.0) is None
    table = schedule_markdown(schedules)
    assert "| fixed l=2 |  | 0.50 | 58.0 | 18.0 |  |" in table
    assert "| flow, l <= 4 | 2 (2 x median) | 0.35 | 56.0 | 24.0 | +2.0 |" in table
    assert "| 49.0 | 40.0 | n/a |" in table and "10 scored frames of 20 streamed" in table


def test_the_ablation_table_reads_the_margins_over_warp_only(tmp_path):
    from gsvlib.reports import ABLATION, write_tables

    def report(gsv, warp):  # (avg, min) at l = 1, 3, 5
        return {v: {"span": [0.65, 1.0], "snippets": 14, "intervals": {l: {"avg": a, "min": m} for l, (a, m) in
                                                                         zip(("1", "3", "5"), x)}}
                for v, x in (("gsv", gsv), ("warp", warp), ("copy", warp))}

    folder = tmp_path / "results" / "ablation"
    folder.mkdir(parents=True)
    (folder / "base.json").write_text(json.dumps(report([(60, 60), (57, 55), (55, 50)], [(60, 60), (56, 53), (52, 44)])))
    (folder / "distill.json").write_text(json.dumps(report([(60, 60), (58.5, 57), (57, 54)], [(60, 60), (56, 53), (52, 45)])))
    (folder.parent / "flow_error.json").write_text(json.dumps({"flow": {"epe": 0.314, "zero_flow_epe": 1.24, "pairs": 116}}))
    text = write_tables(tmp_path / "results")
    # targets: 1 GSVNet within 2.0 of the keyframe net at l=3 (avg), 2 >= +2.0 over warp at l=3 (avg), 3 >= +5.0 over
    # warp at l=5 (min)
    assert (f"| {ABLATION['base'].description} | 57.0 / 55.0 | 55.0 / 50.0 | 56.0 / 53.0 | 52.0 / 44.0 | +1.0 | +6.0 "
            "| 3 |") in text
    assert (f"| {ABLATION['distill'].description} | 58.5 / 57.0 | 57.0 / 54.0 | 56.0 / 53.0 | 52.0 / 45.0 | +2.5 | "
            "+9.0 | 1, 2, 3 |") in text
    assert "keyframe net on every frame 60.0" in text
    assert "fraction 0.65 to 1 of the val/ run, 14 scored frames" in text and "error 0.31 px" in text
    assert ABLATION["flowinit"].description not in text  # rows without a file are left out


def test_the_targets_are_met_at_their_bounds_and_missed_below():
    from gsvlib.reports import target_lines, targets_met

    def prop(key, gsv3, warp3, gsv5, warp5):  # l=3 averages, l=5 minimums
        return {"gsv": {"intervals": {"1": {"avg": key}, "3": {"avg": gsv3}, "5": {"min": gsv5}}},
                "warp": {"intervals": {"3": {"avg": warp3}, "5": {"min": warp5}}}}

    assert targets_met(prop(60.0, 58.0, 56.0, 55.0, 50.0)) == "1, 2, 3"  # each exactly at its bound
    assert targets_met(prop(60.0, 57.9, 56.0, 55.0, 50.1)) == "none"
    assert targets_met(prop(60.0, 61.0, 59.5, 52.0, 49.0)) == "1"
    assert target_lines(prop(60.0, 61.0, 59.5, 52.0, 49.0)) == (
        "GSVNet - keyframe net, l=3 avg +1.0 (target >= -2.0: met); GSVNet - warp only, l=3 avg +1.5 (target >= +2.0: "
        "missed); GSVNet - warp only, l=5 min +3.0 (target >= +5.0: missed)")


def test_the_rows_on_the_2000_iteration_net_get_their_own_table_and_the_targets_of_the_committed_weights(tmp_path):
    from gsvlib.reports import ABLATION

    def variant(avg):  # (avg, min) equal, by l = 1..5
        return {"span": [0.65, 1.0], "snippets": 14, "key_scale": 0.5,
                "intervals": {str(l): {"avg": a, "min": a} for l, a in enumerate(avg, 1)}}

    folder = tmp_path / "results"
    (folder / "ablation-2000").mkdir(parents=True)
    met = {"gsv": variant([70, 70, 69, 68, 67]), "warp": variant([70, 69, 67, 64, 61]), "copy": variant([70] * 5)}
    (folder / "ablation-2000" / "synthprop.json").write_text(json.dumps(met))
    (folder / "propagation.json").write_text(json.dumps(met))
    text = camvid_markdown(read_results(folder))
    assert "### What each source of supervision adds" not in text  # no ablation/ folder
    section = text[text.index("### The same rows on SwiftNet-R18 after 2000 iterations"):]
    assert (f"| {ABLATION['synthprop'].description} | 69.0 / 69.0 | 67.0 / 67.0 | 67.0 / 67.0 | 61.0 / 61.0 | +2.0 | "
            "+6.0 | 1, 2, 3 |") in section
    committed = text[text.index("### Propagation on the 15 Hz val/ run"):text.index("### The same rows")]
    assert "At l=3: GSVNet 69.0 against 70.0" in committed
    assert "GSVNet - warp only, l=3 avg +2.0 (target >= +2.0: met)" in committed
    assert "GSVNet - warp only, l=5 min +6.0 (target >= +5.0: met)" in committed


def test_the_keyframe_training_table_has_a_row_per_run_in_registry_order(tmp_path):
    from gsvlib.reports import KEYFRAME_TRAINING, THIN_CLASSES, write_tables

    def image(frames, miou, pole):
        per_class = {c: pole if c == "pole" else 10.0 for c in THIN_CLASSES}
        return {"image": {s: {"frames": frames, "miou": miou + d, "per_class": per_class}
                          for s, d in (("0.5", 1), ("0.75", 0), ("1.0", -1))}}

    folder = tmp_path / "results"
    runs = {"longer": (60, 50, 12.0), "balance/median-frequency": (50, 40, 9.5), "balance/none": (55, 45, 4.8),
            "balance/sqrt-median-frequency": (58, 48, 10.0)}
    for sub, (val, test, pole) in runs.items():
        (folder / sub).mkdir(parents=True)
        (folder / sub / "val_swiftnet.json").write_text(json.dumps(image(28, val, 0.0)))
        (folder / sub / "test_swiftnet.json").write_text(json.dumps(image(233, test, pole)))
    text = write_tables(folder)
    assert "on 28 frames of val/ and 233 of test/" in text
    assert "| none | 56.0 / 55.0 / 54.0 | 46.0 / 45.0 / 44.0 | 4.8 | 10.0 | 10.0 | 10.0 | 10.0 |" in text
    assert "| median-frequency | 51.0 / 50.0 / 49.0 | 41.0 / 40.0 / 39.0 | 9.5 | 10.0 |" in text
    assert f"| {KEYFRAME_TRAINING['longer']} | 61.0 / 60.0 / 59.0 | 51.0 / 50.0 / 49.0 | 12.0 |" in text
    rows = [line.split(" |")[0] for line in text.splitlines() if line.startswith("| ") and "/ 5" in line]
    assert rows == ["| none", "| median-frequency", "| sqrt-median-frequency", f"| {KEYFRAME_TRAINING['longer']}"]
