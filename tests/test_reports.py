"""The CamVid pipeline end to end on a tiny CamVid-layout folder, as experiment files: train on one part of a 15 Hz run
in time, evaluate on the rest, export fp16 weights with a manifest, render the tables; and the pieces it rests on:
the tables of each layout, the targets, the recipes' command lines."""
import json
from pathlib import Path
from dataclasses import asdict

import numpy as np
import pytest
import torch

from gsvlib.experiments import Experiment, table_of
from gsvlib.reports import cost_of_propagation, fixed_at, read_results, render, schedule_markdown, write_tables
from gsvlib.checkpoint import load_model
from gsvlib.cli import build_parser, main
from gsvlib.data import open_dataset
from gsvlib.data.io import write_png
from gsvlib.config import RECIPES, config_for, config_from_options, train_command


ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.slow
def test_camvid_pipeline_as_experiment_files(camvid, tmp_path, capsys):
    folder = tmp_path / "experiments" / "cv"
    folder.mkdir(parents=True)
    (folder / "tables.toml").write_text((ROOT / "experiments/camvid/tables.toml").read_text())
    train = 'dataset = "camvid"\nbatch_size = 2\niterations = 2\n'
    (folder / "key.toml").write_text(f'description = "a keyframe net"\n[train]\nstage = "keyframe"\nsplit = "train"\n'
                                     f'{train}')
    (folder / "gsv.toml").write_text(f"""description = "the propagation on the first half of the run"
[train]
stage = "gsv"
split = "val"
span = [0, 0.5]
max_interval = 3
key_scale = 0.5
init = "key"
{train}
[export]
out = "{tmp_path}/weights/w.pt"
manifest = "{tmp_path}/weights/manifest.json"
metrics = ["test", "held-out"]

[[eval]]
name = "test"
of = "weights"
split = "test"
variants = ["image"]
out = "{tmp_path}/results/image_swiftnet.json"
table = "keyframe-nets"
row = "SwiftNet-R18"

[[eval]]
name = "held-out"
of = "weights"
split = "val"
span = [0.5, 1]
intervals = [1, 2, 3]
variants = ["gsv", "warp", "copy"]
out = "{tmp_path}/results/propagation.json"
table = "propagation"
""")
    assert main(["run", str(folder), "--root", f"camvid={camvid}", "--runs", str(tmp_path / "runs")]) == 0
    assert main(["tables", str(tmp_path / "results")]) == 0

    prop = json.loads((tmp_path / "results/propagation.json").read_text())
    assert prop["gsv"]["snippets"] == 2  # frames 7 and 8 of the held-out half have 2 frames before them in it
    assert prop["gsv"]["span"] == [0.5, 1.0] and prop["gsv"]["key_scale"] == 0.5  # the weights' own scale
    text = (tmp_path / "results/results.md").read_text()
    assert "| SwiftNet-R18 |" in text and "| GSVNet |" in text and "At l=3: GSVNet" in text
    assert text == render(read_results(tmp_path / "results")[0])
    assert set(prop["experiment"]) == {"name", "experiment_file", "evaluation", "spec", "config", "checkpoint",
                                       "checkpoint_sha256", "trained"}  # provenance only: title, row from the files
    trained = prop["experiment"]["trained"]  # how the weights were trained, and what they started from
    assert (trained["stage"], trained["iterations"], trained["starts"]["init"]["stage"]) == ("propagation", 2, "keyframe")
    assert prop["experiment"]["spec"] == {"name": "held-out", "of": "weights", "split": "val", "span": [0.5, 1],
                                          "intervals": [1, 2, 3], "variants": ["gsv", "warp", "copy"]}

    entry = json.loads((tmp_path / "weights/manifest.json").read_text())["w.pt"]
    assert entry["dataset"] == "camvid" and entry["iterations"] == 2 and entry["classes"][0] == "sky"
    assert entry["command"].startswith("gsv train --stage propagation --dataset camvid") and "--span 0 0.5" in entry["command"]
    assert entry["bytes"] < 0.55 * (tmp_path / "runs/cv/gsv/checkpoint.pt").stat().st_size  # fp16, no optimizer
    assert set(entry["metrics"]) == {"image_swiftnet.json", "propagation.json"}
    assert entry["metrics"]["propagation.json"]["gsv"] == prop["gsv"] and "experiment" not in entry["metrics"]


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


def test_tables_of_a_missing_broken_or_empty_folder(tmp_path, capsys):
    assert main(["tables", str(tmp_path / "nowhere")]) == 2
    assert "does not exist: run the experiments first" in capsys.readouterr().err
    (tmp_path / "notes.json").write_text(json.dumps({"a": 1}))
    assert main(["tables", str(tmp_path)]) == 2  # no result of an experiment: nothing to render, and no file written
    assert "holds no result files of experiments" in capsys.readouterr().err and not (tmp_path / "results.md").exists()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "propagation.json").write_text("{")
    assert main(["tables", str(tmp_path)]) == 2
    assert "sub/propagation.json is not valid JSON" in capsys.readouterr().err
    (tmp_path / "sub" / "propagation.json").write_text("")  # empty: a disk that filled up, a truncated copy
    assert main(["tables", str(tmp_path)]) == 2
    assert "sub/propagation.json is not valid JSON" in capsys.readouterr().err and not (tmp_path / "results.md").exists()


def test_momentum_and_augmentation_flags_reach_the_config():
    args = build_parser().parse_args(["train", "--momentum", "0.5", "--crop", "0.5", "--scale-min", "0.4",
                                      "--scale-max", "0.9", "--key-scale", "0.75", "--lr-decay-every", "10"])
    cfg = config_from_options(args)
    assert (cfg.momentum, cfg.crop, cfg.scale_min, cfg.scale_max, cfg.key_scale, cfg.lr_decay_every) == (
        0.5, 0.5, 0.4, 0.9, 0.75, 10)
    assert (cfg.lr, cfg.iterations) == (0.002, 2000)  # what was not given comes from the stage's recipe (paper)


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


def table(name: str) -> dict:
    """The settings of the committed CamVid table ``name``, as `gsv run` copies them into a result."""
    return table_of(Experiment(ROOT / "experiments/camvid/x.toml", "x", "x"), name)


def result(folder, name: str, report: dict, table_name: str, row: str, evaluation: str = "held-out", order=None):
    """A result file as `gsv run` writes it (the report and its provenance), and the experiment file that places it:
    experiments/<name>.toml beside ``folder``, with the committed CamVid tables."""
    path = folder / f"{name.replace('/', '_')}_{evaluation}.json"
    experiments = folder.parent / "experiments"
    (experiments / name).parent.mkdir(parents=True, exist_ok=True)
    (experiments / "tables.toml").write_text((ROOT / "experiments/camvid/tables.toml").read_text())
    toml = experiments / f"{name}.toml"
    head = (f'description = "{row}"\ncheckpoint = "w.pt"\n[report]\ntable = "{table_name}"\nrow = "{row}"\n'
            + (f"order = {order}\n" if order is not None else ""))
    toml.write_text((toml.read_text() if toml.is_file() else head) + f'[[eval]]\nname = "{evaluation}"\nout = "x"\n')
    meta = {"name": name, "evaluation": evaluation, "spec": {"name": evaluation}, "config": None,
            "checkpoint": None, "checkpoint_sha256": None}
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "experiment": meta}))
    return path


def test_the_ablation_table_reads_the_margins_over_warp_only(tmp_path):
    def report(gsv, warp):  # (avg, min) at l = 1, 3, 5
        return {v: {"span": [0.65, 1.0], "snippets": 14, "split": "val", "intervals": {
            l: {"avg": a, "min": m} for l, (a, m) in zip(("1", "3", "5"), x)}}
                for v, x in (("gsv", gsv), ("warp", warp), ("copy", warp))}

    folder = tmp_path / "results"
    result(folder, "ablation/distill", report([(60, 60), (58.5, 57), (57, 54)], [(60, 60), (56, 53), (52, 45)]),
           "ablation", "+ distillation", order=2)
    result(folder, "ablation/base", report([(60, 60), (57, 55), (55, 50)], [(60, 60), (56, 53), (52, 44)]),
           "ablation", "base recipe", order=1)
    result(folder, "flow", {"flow": {"epe": 0.314, "zero_flow_epe": 1.24, "pairs": 116}}, "flow", "FlowLight",
           evaluation="flow")
    text, _, _ = write_tables(folder)
    # targets: 1 GSVNet within 2.0 of the keyframe net at l=3 (avg), 2 >= +2.0 over warp at l=3 (avg), 3 >= +5.0 over
    # warp at l=5 (min)
    assert "| base recipe | 57.0 / 55.0 | 55.0 / 50.0 | 56.0 / 53.0 | 52.0 / 44.0 | +1.0 | +6.0 | 3 |" in text
    assert "| + distillation | 58.5 / 57.0 | 57.0 / 54.0 | 56.0 / 53.0 | 52.0 / 45.0 | +2.5 | +9.0 | 1, 2, 3 |" in text
    assert text.index("| base recipe") < text.index("| + distillation")  # the rows in the order their files give
    assert "keyframe net on every frame 60.0" in text and "GSVNet - warp, l=5 min | targets met |" in text
    assert "fraction 0.65 to 1 of the val/ run, 14 scored frames" in text
    assert "FlowLight: end-point error 0.31 px" in text and text.index("FlowLight") > text.index("| + distillation")


def test_the_targets_are_met_at_their_bounds_and_missed_below():
    from gsvlib.reports import target_lines, targets_met

    targets = table("propagation")["targets"]

    def prop(key, gsv3, warp3, gsv5, warp5):  # l=3 averages, l=5 minimums
        return {"gsv": {"intervals": {"1": {"avg": key}, "3": {"avg": gsv3}, "5": {"min": gsv5}}},
                "warp": {"intervals": {"3": {"avg": warp3}, "5": {"min": warp5}}}}

    assert targets_met(targets, prop(60.0, 58.0, 56.0, 55.0, 50.0)) == "1, 2, 3"  # each exactly at its bound
    assert targets_met(targets, prop(60.0, 57.9, 56.0, 55.0, 50.1)) == "none"
    assert targets_met(targets, prop(60.0, 61.0, 59.5, 52.0, 49.0)) == "1"
    assert target_lines(targets, prop(60.0, 61.0, 59.5, 52.0, 49.0)) == (
        "GSVNet - keyframe net, l=3 avg +1.0 (target >= -2.0: met); GSVNet - warp only, l=3 avg +1.5 (target >= +2.0: "
        "missed); GSVNet - warp only, l=5 min +3.0 (target >= +5.0: missed)")


def test_the_rows_on_the_2000_iteration_net_get_their_own_table_and_the_targets_of_the_committed_weights(tmp_path):
    def variant(avg):  # (avg, min) equal, by l = 1..5
        return {"span": [0.65, 1.0], "snippets": 14, "key_scale": 0.5, "split": "val",
                "intervals": {str(l): {"avg": a, "min": a} for l, a in enumerate(avg, 1)}}

    folder = tmp_path / "results"
    met = {"gsv": variant([70, 70, 69, 68, 67]), "warp": variant([70, 69, 67, 64, 61]), "copy": variant([70] * 5)}
    result(folder, "ablation-2000/synthprop", met, "ablation-2000", "+ synthetic pre-training")
    result(folder, "gsvnet", met, "propagation", "GSVNet")
    text = render(read_results(folder)[0])
    assert "### What each source of supervision adds" not in text  # no row of that table
    section = text[text.index("### The same rows on SwiftNet-R18 after 2000 iterations"):]
    row = "| + synthetic pre-training | 69.0 / 69.0 | 67.0 / 67.0 | 67.0 / 67.0 | 61.0 / 61.0 | +2.0 | +6.0 | 1, 2, 3 |"
    assert row in section
    committed = text[text.index("### Propagation on the held-out end"):text.index("### The same rows")]
    assert "At l=3: GSVNet 69.0 against 70.0" in committed
    assert "GSVNet - warp only, l=3 avg +2.0 (target >= +2.0: met)" in committed
    assert "GSVNet - warp only, l=5 min +6.0 (target >= +5.0: met)" in committed


def test_the_keyframe_training_table_has_a_row_per_run_with_both_evaluations(tmp_path):
    classes = table("keyframe-training")["classes"]

    def image(frames, miou, pole):
        per_class = {c: pole if c == "pole" else 10.0 for c in classes}
        return {"image": {s: {"frames": frames, "miou": miou + d, "per_class": per_class}
                          for s, d in (("0.5", 1), ("0.75", 0), ("1.0", -1))}}

    folder = tmp_path / "results"
    runs = {"longer": (60, 50, 12.0, 4), "median-frequency": (50, 40, 9.5, 2), "none": (55, 45, 4.8, 1),
            "sqrt-median-frequency": (58, 48, 10.0, 3)}
    for name, (val, test, pole, order) in runs.items():
        result(folder, name, image(28, val, 0.0), "keyframe-training", name, "val", order)
        result(folder, name, image(233, test, pole), "keyframe-training", name, "test", order)
    text, _, _ = write_tables(folder)
    assert "on 28 frames of val/ and 233 frames of test/" in text
    assert "| none | 56.0 / 55.0 / 54.0 | 46.0 / 45.0 / 44.0 | 4.8 | 10.0 | 10.0 | 10.0 | 10.0 |" in text
    assert "| median-frequency | 51.0 / 50.0 / 49.0 | 41.0 / 40.0 / 39.0 | 9.5 | 10.0 |" in text
    assert "| longer | 61.0 / 60.0 / 59.0 | 51.0 / 50.0 / 49.0 | 12.0 |" in text
    rows = [line.split(" |")[0] for line in text.splitlines() if line.startswith("| ") and "/ 5" in line]
    assert rows == ["| none", "| median-frequency", "| sqrt-median-frequency", "| longer"]
    (folder / "none_test.json").unlink()  # a row without one of its evaluations is an error that says what to run
    with pytest.raises(ValueError, match=r"experiment none has no \['test'\] results for table keyframe-training"):
        render(read_results(folder)[0])


def test_two_results_for_one_row_are_refused_with_both_files(tmp_path):
    report = {"flow": {"epe": 0.3, "zero_flow_epe": 1.2, "pairs": 10}}
    folder = tmp_path / "results"
    first = result(folder, "flow", report, "flow", "FlowLight", evaluation="flow")
    copy = folder / "copy.json"
    copy.write_text(first.read_text())  # the same evaluation of the same experiment, twice
    with pytest.raises(ValueError, match="are both evaluation 'flow' of flow: a row shows one result") as e:
        read_results(folder)[0] and render(read_results(folder)[0])
    assert str(first) in str(e.value) and str(copy) in str(e.value)
    copy.unlink()
    other = result(folder, "flow2", report, "flow", "FlowLight", evaluation="flow")  # another experiment, one row
    with pytest.raises(ValueError, match="are both the row 'FlowLight' of table flow") as e:
        render(read_results(folder)[0])
    assert str(first) in str(e.value) and str(other) in str(e.value)


def test_a_layout_is_checked_where_the_layouts_live(tmp_path):
    folder = tmp_path / "results"
    result(folder, "flow", {"flow": {"epe": 0.3, "zero_flow_epe": 1.2, "pairs": 10}}, "flow", "FlowLight", "flow")
    tables = tmp_path / "experiments/tables.toml"
    tables.write_text(tables.read_text().replace('layout = "flow-error"', 'layout = "flow-eror"'))
    with pytest.raises(ValueError, match=r"tables.toml: table flow: layout must be one of \[.*'flow-error'.*\], "
                                         "got 'flow-eror'"):
        read_results(folder)


def test_one_result_goes_in_each_table_it_names_and_tables_renders_those_asked(tmp_path, capsys):
    """The tour's protocol result is a row of its page and of the propagation table; `--tables` picks tables, so
    the committed pages are both renders of figures/synthetic."""
    results, _ = read_results(ROOT / "figures/synthetic", ROOT / "experiments")
    gsv = [r["experiment"]["table"]["id"] for r in results if r["experiment"]["file"].name == "gsv.json"]
    assert gsv == ["tour", "propagation"]
    assert main(["tables", str(ROOT / "figures/synthetic"), "--tables", "propagation", "--out",
                 str(tmp_path / "synthetic.md")]) == 0
    assert (tmp_path / "synthetic.md").read_text() == (ROOT / "docs/results/synthetic.md").read_text()
    assert main(["tables", str(ROOT / "figures/synthetic"), "--tables", "nope", "--out", str(tmp_path / "x.md")]) == 2
    assert "no result goes in the tables ['nope']; the results render the tables ['propagation', 'tour']" in \
        capsys.readouterr().err and not (tmp_path / "x.md").exists()


def test_the_tour_page_of_an_earlier_version_is_replaced_and_a_users_page_is_not(tmp_path, capsys):
    folder = ROOT / "figures/synthetic"
    (tmp_path / "old.md").write_text("# Results of `make tour` (synthetic street video)\n\n| method |\n")
    (tmp_path / "mine.md").write_text("# Results I wrote by hand\n")
    assert main(["tables", str(folder), "--out", str(tmp_path / "old.md"), "--experiments", str(ROOT / "experiments")]) == 0
    assert (tmp_path / "old.md").read_text() == (ROOT / "figures/results.md").read_text()
    assert main(["tables", str(folder), "--out", str(tmp_path / "mine.md")]) == 2
    assert "is not a page written by `gsv tables`" in capsys.readouterr().err
    assert (tmp_path / "mine.md").read_text() == "# Results I wrote by hand\n"


def test_a_table_compares_the_results_baseline_with_the_propagation_it_names(tmp_path):
    """No variant name is fixed in a layout: the rows compare each result's baseline with the table's `against`
    (default: the first other propagation scored)."""
    def report(baseline):  # (avg, min) at l = 1, 3, 5 of each variant
        rows = {"gsv": [(60, 60), (58, 57), (57, 54)], "warp": [(60, 60), (56, 53), (52, 45)],
                "copy": [(60, 60), (50, 45), (45, 40)]}
        return {v: {"span": [0, 1], "snippets": 4, "split": "val", "intervals": {
            l: {"avg": a, "min": m} for l, (a, m) in zip(("1", "3", "5"), x)}} for v, x in rows.items()}

    folder = tmp_path / "results"
    path = result(folder, "ablation/base", report("gsv"), "ablation", "base recipe")
    tables = tmp_path / "experiments/tables.toml"
    text, _, _ = write_tables(folder)
    assert "| base recipe | 58.0 / 57.0 | 57.0 / 54.0 | 56.0 / 53.0 | 52.0 / 45.0 |" in text  # against warp only
    tables.write_text(tables.read_text().replace('[tables.ablation]', '[tables.ablation]\nagainst = "copy"'))
    text, _, _ = write_tables(folder)
    assert "| l=3 | l=5 | copy previous, l=3 | copy previous, l=5 |" in text
    assert "| base recipe | 58.0 / 57.0 | 57.0 / 54.0 | 50.0 / 45.0 | 45.0 / 40.0 |" in text
    saved = json.loads(path.read_text())
    saved["experiment"]["config"] = {"baseline": "warp"}  # an experiment whose evaluation sets warp as the baseline
    path.write_text(json.dumps(saved))
    text, _, _ = write_tables(folder)
    assert "| base recipe | 56.0 / 53.0 | 52.0 / 45.0 | 50.0 / 45.0 | 45.0 / 40.0 |" in text


def test_the_stills_table_gives_every_recipe_and_seed_with_paired_intervals_and_the_targets_each_seed_meets(tmp_path):
    """Layout `seeds`: a row per run (the experiment's own result, then its seeds), each target a paired difference
    with its interval; a target with `interval_above` is missed when its interval reaches that bound, however large
    its value."""
    def matrices(hits):  # per frame, per offset l-1 = 0..4: a 2-class confusion matrix with `hit` of 10 right per class
        return {"shape": [len(hits), 5, 2, 2],
                "matrices": [[f"{h} {10 - h};{10 - h} {h}" if i else "10 0;0 10" for i in range(5)] for h in hits]}

    def report(key, gsv, warp, gsv_hits, warp_hits):  # avg mIoU at l = 1, 3, 5 and per-frame matrices
        return {v: {"span": [0.65, 1.0], "snippets": 6, "split": "val", "key_scale": 0.5, "frames": matrices(hits),
                    "intervals": {"1": {"avg": key, "min": key}, "3": {"avg": x[0], "min": x[0]},
                                  "5": {"avg": x[1], "min": x[1]}}}
                for v, x, hits in (("gsv", gsv, gsv_hits), ("warp", warp, warp_hits), ("copy", warp, warp_hits))}

    folder = tmp_path / "results"
    always = report(70.0, (69.5, 68.5), (67.0, 65.0), [10] * 6, [8] * 6)  # GSVNet ahead on every frame
    mixed = report(70.0, (69.5, 68.5), (67.0, 65.0), [10, 10, 10, 6, 6, 6], [8] * 6)  # as large a lead, not every frame
    path = result(folder, "stills/stills", always, "stills", "stills in motion")
    own = json.loads(path.read_text())
    own["experiment"]["trained"] = {"seed": 0}  # the seed the experiment's own run trained with
    path.write_text(json.dumps(own))
    seeded = json.loads(path.read_text())
    seeded.update(mixed)
    seeded["experiment"]["seed"] = 1
    del seeded["experiment"]["trained"]
    path.with_name(path.stem + ".seed-1.json").write_text(json.dumps(seeded))
    text, _, _ = write_tables(folder)
    lines = [line for line in text.splitlines() if line.startswith("| stills in motion |")]
    assert len(lines) == 2 and lines[0].startswith("| stills in motion | 0 | 70.0 | 69.5 | 68.5 | -0.5 [")
    assert "| +2.5 [+23.5, +23.5] | +3.5 [+27.6, +27.6] | 1, 2, 3, 4 |" in lines[0]  # every frame 100 against 66.7
    assert lines[1].startswith("| stills in motion | 1 |")
    assert lines[1].endswith("| 1, 2 |")  # its leads over warp have intervals that reach below 0
    assert "- stills in motion (2 runs): 1, 2" in text
    assert "4 GSVNet - warp only, l=5 avg >= +2.5, interval above +0.0." in text


def test_a_table_says_how_much_of_one_rows_lead_over_warping_each_other_row_keeps(tmp_path):
    def report(gsv3, gsv5):
        return {v: {"span": [0, 1], "snippets": 4, "split": "val", "intervals": {
            l: {"avg": a, "min": a} for l, a in zip(("1", "3", "5"), x)}}
            for v, x in (("gsv", (70, gsv3, gsv5)), ("warp", (70, 60, 50)), ("copy", (70, 50, 40)))}

    folder = tmp_path / "results"
    result(folder, "video", report(62, 54), "ablation", "video", order=1)
    result(folder, "stills", report(61, 53), "ablation", "stills", order=2)
    tables = tmp_path / "experiments/tables.toml"
    tables.write_text(tables.read_text().replace('[tables.ablation]', '[tables.ablation]\nkept_of = "video"'))
    text, _, _ = write_tables(folder)
    assert "Of video's lead over warp only (+2.00 at l=3, +4.00 at l=5, mean over its runs)" in text
    assert "- stills: 50 % at l=3 (+1.00), 75 % at l=5 (+3.00)" in text
    tables.write_text(tables.read_text().replace('kept_of = "video"', 'kept_of = "nothing"'))
    text, _, _ = write_tables(folder)  # results without the reference: the rows alone
    assert "each row keeps" not in text and "| stills |" in text


def test_the_pareto_table_says_at_which_input_scales_gsvnet_is_both_faster_and_better(tmp_path):
    folder = tmp_path / "results"
    protocol = {v: {"span": [0.65, 1.0], "snippets": 14, "split": "val", "key_scale": 0.5, "intervals": {
        l: {"avg": a, "min": a} for l, a in (("1", 70.0), ("2", 69.0), ("3", 68.0))}} for v in ("gsv", "warp")}
    image = {"image": {s: {"miou": m, "ci": None} for s, m in (("0.5", 70.0), ("0.75", 67.5), ("1.0", 66.0))}}
    bench = {"size": [360, 480], "device": "CPU", "precision": "fp32", "gsvnet": {
        l: {"fps": f} for l, f in (("1", 15.0), ("2", 25.0), ("3", 40.0))}, "image_only": {
        s: {"fps": f} for s, f in (("0.5", 19.0), ("0.75", 9.0), ("1.0", 4.0))}}
    for name, report in (("held-out", protocol), ("held-out-image", image), ("360x480", bench)):
        result(folder, "gsvnet", report, "pareto", "the committed weights", evaluation=name)
    text, _, _ = write_tables(folder)
    assert "| GSVNet l=3 | 40.0 | 68.0 |" in text and "| image-only x0.75 | 9.0 | 67.5 |" in text
    assert "- image-only x0.5 (19.0 FPS, 70.0): GSVNet l=2 (25.0 FPS) scores 69.0, -1.00: not beaten" in text
    assert "- image-only x0.75 (9.0 FPS, 67.5): GSVNet l=1 (15.0 FPS) scores 70.0, +2.50: beaten" in text
    assert "at 2 of its 3 input scales" in text
