"""Experiments as files: CONTRIBUTING.md's worked example run as written, `gsv run` resuming and skipping, the checks
of an experiment file, and the committed results against the experiment files and docs/results/ they come from."""
import json
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from gsvlib.bench import BenchConfig
from gsvlib.checkpoint import read_checkpoint
from gsvlib.cli import main
from gsvlib.evaluate import EvalConfig
from gsvlib.experiments import ExperimentError, Runner, collect, load, provenance, seed_file
from gsvlib.files import sha256
from gsvlib.reports import read_results, render

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "CONTRIBUTING.md"


@pytest.fixture
def workdir(tmp_path):
    """A working directory with a copy of the committed experiments/ (runs and results land under it)."""
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def quick(tiny_synth) -> list[str]:
    return ["--root", f"synthetic={tiny_synth}", "--set", "iterations=2", "batch_size=2", "--eval-set", "size=[64,128]",
            "intervals_timed=1"]


@pytest.mark.slow
def test_the_contributing_example_adds_a_row_with_one_file(workdir, tiny_synth, capsys):
    (toml,) = [t for t in re.findall(r"```toml\n(.*?)```", GUIDE.read_text(), re.S) if "distill.toml" in t]
    path = workdir / toml.splitlines()[0].removeprefix("# ")
    assert not path.exists()  # the example adds a file the folder does not have
    path.write_text(toml)
    assert main(["run", "experiments/synthetic", *quick(tiny_synth)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("training keyframe into") == 1  # the three propagations start from one keyframe run
    assert main(["tables", "figures/synthetic"]) == 0
    table = (workdir / "figures/synthetic/results.md").read_text()
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    assert rows == ["| `short-adam` recipe", "| `short-adam` recipe without intra features",
                    "| `short-adam` recipe + distillation (`--distill 1`)"]  # in the order the files give
    result = json.loads((workdir / "figures/synthetic/distill.json").read_text())
    meta = result["experiment"]
    assert meta["name"] == "synthetic/distill" and meta["experiment_file"] == "experiments/synthetic/distill.toml"
    assert "description" not in meta and "table" not in meta and "row" not in meta  # provenance, not presentation
    assert meta["checkpoint_sha256"] == sha256(workdir / "runs/synthetic/distill/checkpoint.pt")
    assert meta["config"]["variants"] == ["gsv", "warp", "copy"] and result["gsv"]["key_scale"] == 1.0

    log = workdir / "runs/synthetic/distill/log.jsonl"
    before = log.read_text()
    assert main(["run", "experiments/synthetic", *quick(tiny_synth)]) == 0  # everything done: nothing runs
    again = capsys.readouterr().out
    assert "] training " not in again and again.count(": done (") == 5 and log.read_text() == before
    results = {p: p.read_bytes() for p in (workdir / "figures/synthetic").glob("*.json")}
    tables = workdir / "experiments/synthetic/tables.toml"
    tables.write_text(tables.read_text().replace('title = "GSVNet', 'title = "Retitled: GSVNet'))
    path.write_text(path.read_text().replace('row = "`short-adam` recipe + distillation', 'row = "distilled'))
    assert main(["run", "experiments/synthetic", *quick(tiny_synth)]) == 0  # presentation: nothing runs again
    assert capsys.readouterr().out.count(": done (") == 5 and log.read_text() == before
    assert {p: p.read_bytes() for p in (workdir / "figures/synthetic").glob("*.json")} == results
    assert main(["tables", "figures/synthetic"]) == 0  # ... and the next page shows the new title and row
    table = (workdir / "figures/synthetic/results.md").read_text()
    assert "### Retitled: GSVNet" in table and "| distilled (`--distill 1`) |" in table
    path.write_text(path.read_text().replace('name = "val"', 'name = "val"\nintervals = [1, 2]'))
    assert main(["tables", "figures/synthetic"]) == 2  # other settings: the recorded result is not this one's
    assert (f"figures/synthetic/distill.json was written for other settings of evaluation 'val' than {path} now "
            "gives (intervals: None -> [1, 2])") in capsys.readouterr().err
    path.write_text(path.read_text().replace('\nintervals = [1, 2]', ''))
    keyframe = workdir / "runs/synthetic/keyframe/checkpoint.pt"
    assert main(["run", str(path), "--root", f"synthetic={tiny_synth}", "--set", "iterations=3",
                 "batch_size=2"]) == 2  # the keyframe net would train further: the propagation's start changes
    refused = capsys.readouterr().err
    assert f"{path}: its run folder runs/synthetic/distill holds a run of other settings (init: " in refused
    assert "is trained further by this command first" in refused and log.read_text() == before
    assert read_checkpoint(keyframe)["iteration"] == 2  # refused before anything trained
    assert main(["run", str(path), "--root", f"synthetic={tiny_synth}", "--set", "iterations=3", "batch_size=2",
                 "--use", f"synthetic/keyframe={keyframe}"]) == 0  # the same start: the run resumes where it stopped
    longer = capsys.readouterr().out
    assert "resuming propagation into" in longer and "evaluating val" in longer
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == [1, 2, 3]


@pytest.mark.slow
def test_seeds_repeat_an_experiment_beside_its_own_result_and_tables_show_the_spread(workdir, tiny_synth, capsys):
    assert main(["run", "experiments/synthetic/gsv.toml", *quick(tiny_synth)]) == 0
    own = (workdir / "figures/synthetic/gsv.json").read_bytes()
    assert main(["run", "experiments/synthetic/gsv.toml", "--seeds", "1", "2", *quick(tiny_synth)]) == 0
    printed = capsys.readouterr().out
    assert "training keyframe into" in printed and printed.count("training keyframe into") == 1  # shared, once
    for seed in (1, 2):
        ckpt = read_checkpoint(workdir / f"runs/synthetic/gsv/seed-{seed}/checkpoint.pt")
        assert ckpt["train_config"]["seed"] == seed
        result = json.loads((workdir / f"figures/synthetic/gsv.seed-{seed}.json").read_text())
        assert result["experiment"]["seed"] == seed and "avg_ci" in result["gsv"]["intervals"]["3"]
    assert (workdir / "figures/synthetic/gsv.json").read_bytes() == own  # the experiment's own result stays
    weights_differ = [read_checkpoint(workdir / f"runs/synthetic/gsv/seed-{s}/checkpoint.pt")["model"]
                      ["correction.intra_net.net.0.0.weight"] for s in (1, 2)]
    assert not torch.equal(*weights_differ)
    assert main(["tables", "figures/synthetic"]) == 0
    table = (workdir / "figures/synthetic/results.md").read_text()
    assert table.count("| `short-adam` recipe |") == 1  # the seeds are no rows of their own
    # the own run (seed 0, as it trained) and the two repetitions
    assert re.search(r"`short-adam` recipe, seeds 0, 1, 2: GSVNet l=3 avg \d+\.\d sd \d+\.\d", table)
    (workdir / "figures/synthetic/gsv.json").unlink()
    assert main(["tables", "figures/synthetic"]) == 2
    assert "the experiment's own result is missing" in capsys.readouterr().err


def test_a_dry_run_says_what_would_run_and_changes_nothing(workdir, capsys):
    assert main(["run", "experiments/camvid", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "[camvid/swiftnet-2000] would train: keyframe for 2000 iterations into runs/camvid/swiftnet-2000" in plan
    assert "[camvid/gsvnet] would evaluate held-out (gsv, warp, copy) into figures/camvid/propagation.json" in plan
    assert not (workdir / "runs").exists() and not (workdir / "figures").exists()
    assert main(["run", "experiments/camvid/ablation", "--list"]) == 0
    assert "camvid/ablation/distill: Flow pre-training, plus distillation" in capsys.readouterr().out


@pytest.mark.parametrize("text,message", [
    ('[train]\nrecipe = "short-adam"\n', "needs a description"),
    ('description = "d"\n', "give either [train] (what to train) or checkpoint = ... (what to evaluate), not neither"),
    ('description = "d"\ncheckpoint = "x.pt"\n[train]\nrecipe = "short-adam"\n', "not both"),
    ('description = "d"\nsteps = 3\n[train]\n', "top level] has unknown keys ['steps']"),
    ('description = "d"\n[train]\nrecipe = "fast"\n', "recipe must be one of"),
    ('description = "d"\n[train]\nlearning_rate = 1\n', "[train] has unknown keys ['learning_rate']"),
    ('description = "d"\n[train]\n[[eval]]\nname = "v"\n', "each [[eval]] needs a name and an out file"),
    ('description = "d"\n[train]\n[[eval]]\nname = "v"\nof = "weights"\nout = "r.json"\n', "there is no [export]"),
    ('description = "d"\n[train]\n[export]\nout = "w.pt"\nmetrics = ["v"]\n', "metrics names evaluations that do not"),
    ('description = "d\n', "is not valid TOML"),
])
def test_a_bad_experiment_file_is_refused_with_its_name_and_the_fix(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ExperimentError, match=re.escape(message)) as e:
        load(path)
    assert str(path) in str(e.value)


def test_what_an_experiment_names_must_exist_and_fit(tmp_path, capsys):
    (tmp_path / "a.toml").write_text('description = "d"\n[train]\nrecipe = "short-adam"\ninit = "missing"\n')
    with pytest.raises(ExperimentError, match=r"names experiment 'missing', but .*missing.toml does not exist"):
        Runner(dry_run=True, say=lambda *_: None).run(load(tmp_path / "a.toml"))
    (tmp_path / "b.toml").write_text('description = "d"\n[train]\nrecipe = "short-adam"\n[report]\ntable = "t"\n'
                                     '[[eval]]\nname = "v"\nout = "r.json"\n')
    with pytest.raises(ExperimentError, match="names table 't', but no tables.toml lies in its folder"):
        Runner(dry_run=True, say=lambda *_: None).run(load(tmp_path / "b.toml"))
    (tmp_path / "c.toml").write_text('description = "d"\n[train]\nrecipe = "short-adam"\nlr = -1.0\n')
    with pytest.raises(ExperimentError, match=r"c.toml: \[train\]: lr must be > 0"):
        Runner(dry_run=True, say=lambda *_: None).run(load(tmp_path / "c.toml"))
    assert main(["run", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "a.toml"), "--root", "camvid"]) == 2
    assert "--root takes DATASET=FOLDER" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "a.toml"), "--set", "learning_rate=1"]) == 2
    assert "--set names settings TrainConfig does not have: ['learning_rate']" in capsys.readouterr().err


def camvid_experiments():
    return collect([ROOT / "experiments/camvid", *sorted(p for p in (ROOT / "experiments/camvid").iterdir()
                                                         if p.is_dir())])


EVAL_DEFAULTS = json.loads(json.dumps(asdict(EvalConfig())))


def test_every_committed_camvid_result_is_written_by_an_experiment_file_as_it_now_reads():
    """Each JSON under figures/camvid is the output of one experiment file's evaluation, and records that evaluation
    as the file now gives it (name, file, the evaluation's settings and config) and nothing about its presentation:
    editing a table's title or a row re-renders, editing an evaluation's settings without running it again fails
    here."""
    outs = {}
    for exp in camvid_experiments():
        for spec in exp.evals + exp.benches:
            outs[(ROOT / spec.get("out", spec.get("json"))).resolve()] = (exp, spec)
    committed = {p.resolve() for p in (ROOT / "figures/camvid").rglob("*.json") if ".seed-" not in p.name}
    assert committed == set(outs)
    for path in (ROOT / "figures/camvid").rglob("*.seed-*.json"):  # repetitions under other seeds (gsv run --seeds)
        seed = json.loads(path.read_text())["experiment"]["seed"]
        assert any(path.resolve() == Path(seed_file(out, seed)) for out in outs), path
    runner = Runner(dry_run=True, say=lambda *_: None)
    for path, (exp, spec) in outs.items():
        recorded = json.loads(path.read_text())["experiment"]
        cfg = runner.eval_config(exp, spec, ROOT / "weights/camvid_swiftnet_gsvnet.pt") if "out" in spec else None
        expected = json.loads(json.dumps(provenance(exp, spec, None, None, cfg)))  # as JSON stores it
        for key in ("name", "experiment_file", "evaluation", "spec", "config"):
            if key == "config" and recorded[key]:  # a result written before a field existed ran at its default
                later = {k: v for k, v in expected[key].items() if k not in recorded[key]}
                assert later == {k: v for k, v in EVAL_DEFAULTS.items() if k in later}, (path, later)
                assert {**recorded[key], **later} == expected[key], (path, key)
            else:
                assert recorded[key] == expected[key], (path, key)
        assert set(recorded) <= {*expected, "seed"}, path


def test_the_results_pages_are_what_gsv_tables_renders():
    results, _ = read_results(ROOT / "figures/camvid")
    assert (ROOT / "docs/results/camvid.md").read_text() == render(results)


def test_the_committed_weights_record_their_results_and_their_keyframe_scale():
    from gsvlib.checkpoint import load_model

    weights = ROOT / "weights/camvid_swiftnet_gsvnet.pt"
    model, _ = load_model(weights)
    assert model.config.key_scale == 0.5  # what gsv eval, segment, bench and export-onnx use unless told otherwise
    digest = sha256(weights)
    results = {r["experiment"]["evaluation"]: r for r in read_results(ROOT / "figures/camvid")[0]
               if r["experiment"]["name"] == "camvid/gsvnet" and "config" in r["experiment"]
               and "seed" not in r["experiment"]}  # the repetitions under other seeds evaluate their own runs
    assert all(r["experiment"]["checkpoint_sha256"] == digest for n, r in results.items() if n != "720x960"
               and n != "1024x2048")
    assert results["held-out"]["gsv"]["key_scale"] == 0.5


def keyframe_file(folder: Path, name: str, extra: str = "") -> Path:
    """An experiment that trains a keyframe net on the synthetic set."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'description = "a keyframe net"\n{extra}[train]\nrecipe = "from-scratch"\n')
    return path


@pytest.mark.slow
def test_a_runner_that_waits_takes_the_run_another_process_was_training_once_it_lets_go(tmp_path, tiny_synth):
    import subprocess
    import sys

    exp = load(keyframe_file(tmp_path, "key"))
    folder = tmp_path / "runs" / "key"
    folder.mkdir(parents=True)
    # another process holds the run folder; before letting go it leaves the files of a finished run there (or none)
    hold = ("import fcntl, shutil, sys, time\n"
            "f = open(sys.argv[1] + '/.lock', 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.truncate(0)\n"
            "f.write('pid 4242 on elsewhere')\n"
            "f.flush(); print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
            "for name in sys.argv[3:]: shutil.copy(name, sys.argv[1])\n")

    def other_process(seconds: float, *leaves: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", hold, str(folder), str(seconds), *map(str, leaves)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "held\n"
        return p

    def runner(runs: Path, **kw) -> Runner:
        return Runner({"synthetic": str(tiny_synth)}, runs=runs, progress=False, say=lambda *_: None,
                      overrides={"iterations": 1, "batch_size": 2}, **kw)

    other = other_process(60)
    with pytest.raises(RuntimeError, match="is in use by pid 4242 on elsewhere; wait for it to finish"):
        runner(tmp_path / "runs").trained(exp)  # gsv run refuses
    other.kill()
    other.wait()
    finished = runner(tmp_path / "elsewhere").trained(exp)  # the run the other process will leave behind
    said = []
    other = other_process(1, finished, finished.parent / "config.json", finished.parent / "log.jsonl")
    checkpoint = runner(tmp_path / "runs", wait=said.append).trained(exp)
    assert other.poll() == 0  # it had let go before the runner went on
    assert checkpoint.read_bytes() == finished.read_bytes()  # its run, taken as it was left: not trained again
    assert said[0] == f"[key] {folder} is being trained by pid 4242 on elsewhere (e.g. `make tour`); waiting for it " \
                      "to finish (interrupt to stop waiting)" and said[1].startswith("[key] the other process finished")
    for name in ("checkpoint.pt", "config.json", "log.jsonl"):
        (folder / name).unlink()
    other = other_process(1)  # it lets go of an empty folder: the runner trains the run itself
    assert read_checkpoint(runner(tmp_path / "runs", wait=said.append).trained(exp))["iteration"] == 1
    assert other.poll() == 0 and len(said) == 4


def test_two_files_of_one_name_are_refused_before_either_runs(tmp_path, capsys):
    a = keyframe_file(tmp_path / "a", "key")
    b = keyframe_file(tmp_path / "b", "key")
    b.write_text(b.read_text() + "lr = 0.01\n")
    assert main(["run", str(a), str(b), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{a} and {b} are both experiment 'key'" in err and "would share the run folder" in err
    # the same clash through a starting point: c starts from a/key, and b/key is run beside it
    (tmp_path / "a/c.toml").write_text('description = "p"\n[train]\nrecipe = "short-adam"\ninit = "key"\n')
    assert main(["run", str(tmp_path / "a/c.toml"), str(b), "--dry-run"]) == 2
    assert "are both experiment 'key'" in capsys.readouterr().err


def test_a_run_folder_of_other_settings_is_refused_naming_both(tmp_path, tiny_synth, capsys):
    path = keyframe_file(tmp_path, "key")
    args = ["run", str(path), "--runs", str(tmp_path / "runs"), "--root", f"synthetic={tiny_synth}", "--set",
            "iterations=2", "batch_size=2"]
    assert main(args) == 0
    checkpoint = tmp_path / "runs/key/checkpoint.pt"
    trained = checkpoint.read_bytes()
    path.write_text(path.read_text() + "lr = 0.01\n")  # an edited [train] setting is another run
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{path}: its run folder {tmp_path / 'runs/key'} holds a run of other settings (lr: 0.001 -> 0.01)" in err
    assert checkpoint.read_bytes() == trained
    assert main([*args[:-2], "iterations=1", "batch_size=2"]) == 2  # fewer iterations than the run has: refused too
    assert "iterations: 2 -> 1 (a run is not cut back)" in capsys.readouterr().err
    path.write_text(path.read_text().replace("lr = 0.01\n", ""))
    assert main([*args[:-2], "iterations=3", "batch_size=2"]) == 0  # more iterations: the same run goes on
    assert "resuming keyframe" in capsys.readouterr().out and read_checkpoint(checkpoint)["iteration"] == 3


def test_use_of_a_name_no_experiment_starts_from_is_refused_with_the_names_it_knows(tmp_path, capsys):
    keyframe_file(tmp_path, "key")
    (tmp_path / "prop.toml").write_text('description = "p"\n[train]\nrecipe = "short-adam"\ninit = "key"\n')
    stand_in = tmp_path / "w.pt"
    stand_in.write_bytes(b"PK\x03\x04")
    assert main(["run", str(tmp_path / "prop.toml"), "--use", f"kee={stand_in}", "--dry-run"]) == 2
    assert ("--use names ['kee'], which no experiment being run starts from; the starting points it can stand in "
            "for: key") in capsys.readouterr().err
    assert main(["run", str(tmp_path / "prop.toml"), "--use", f"key={stand_in}", "--dry-run"]) == 0
    assert "would train" in capsys.readouterr().out


def test_experiments_that_start_from_each_other_are_refused_naming_the_loop(tmp_path, capsys):
    for name, start in (("a", "b"), ("b", "a"), ("self", "self")):
        (tmp_path / f"{name}.toml").write_text(f'description = "d"\n[train]\nrecipe = "short-adam"\ninit = "{start}"\n')
    assert main(["run", str(tmp_path / "a.toml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"experiments start from each other: {tmp_path / 'a.toml'} -> {tmp_path / 'b.toml'} -> " in err
    assert main(["run", str(tmp_path / "self.toml"), "--dry-run"]) == 2
    assert f"{tmp_path / 'self.toml'} -> {tmp_path / 'self.toml'}" in capsys.readouterr().err


def test_every_path_in_an_experiment_file_is_read_against_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "exps" / "sub"
    folder.mkdir(parents=True)
    (folder / "key.pt").write_bytes(b"PK\x03\x04")
    (folder / "prop.toml").write_text('description = "p"\n[train]\nrecipe = "short-adam"\ninit = "key.pt"\n'
                                      'out = "../runs/prop"\n[[eval]]\nname = "v"\nout = "../../figures/v.json"\n'
                                      '[[bench]]\nname = "b"\njson = "b.json"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory plays no part
    exp = load(folder / "prop.toml")
    cfg = Runner(dry_run=True, say=lambda *_: None).config(exp)
    assert cfg.init == str(folder / "key.pt") and cfg.out == str(tmp_path / "exps/runs/prop")
    assert exp.evals[0]["out"] == str(tmp_path / "figures/v.json") and exp.benches[0]["json"] == str(folder / "b.json")
    assert exp.train["init"] == str(folder / "key.pt")
    (folder / "named.toml").write_text('description = "p"\n[train]\nrecipe = "short-adam"\ninit = "key"\n')
    assert load(folder / "named.toml").train["init"] == "key"  # an experiment's name stays a name


@pytest.mark.slow
def test_the_contributing_correction_of_ones_own_is_one_file_and_an_experiment(workdir, tiny_synth, monkeypatch):
    """CONTRIBUTING.md's residual-CNN correction, as written: a module outside the package registers it, the
    experiment file runs the module and names the correction, `gsv run` trains and scores it, `gsv tables` shows it."""
    from gsvlib.models.gsvnet import CORRECTIONS

    monkeypatch.setitem(CORRECTIONS, "residual", None)  # the module replaces it; the registry is as before afterwards
    text = GUIDE.read_text()
    (module,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "my_parts/residual.py" in b]
    (toml,) = [t for t in re.findall(r"```toml\n(.*?)```", text, re.S) if "residual.toml" in t]
    for block in (module, toml):
        path = workdir / block.splitlines()[0].removeprefix("# ")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block)
    assert main(["run", "experiments/synthetic/residual.toml", *quick(tiny_synth)]) == 0
    ckpt = read_checkpoint(workdir / "runs/synthetic/residual/checkpoint.pt")
    assert ckpt["model_config"]["correction"] == "residual" and "correction.net.0.weight" in ckpt["model"]
    assert ckpt["trained"] == ["correction", "flow_net", "keyframe_net"]
    result = json.loads((workdir / "figures/synthetic/residual.json").read_text())
    assert set(result["gsv"]["intervals"]) == {"1", "2", "3", "4", "5"} and "gsv - warp" in result["gsv"]["differences"]
    assert main(["tables", "figures/synthetic"]) == 0
    table = (workdir / "figures/synthetic/results.md").read_text()
    assert "| `short-adam` recipe, a residual CNN in place of the GSV conv |" in table


def test_results_go_where_asked_and_eval_settings_are_changed_only_where_they_differ(workdir, capsys):
    assert main(["run", "experiments/synthetic", "--dry-run", "--results", "elsewhere"]) == 0
    plan = capsys.readouterr().out
    assert "[synthetic/gsv] would evaluate val (gsv, warp, copy) into elsewhere/gsv.json unless done" in plan
    assert "would benchmark cpu into elsewhere/bench.json" in plan and "figures/" not in plan
    runner = Runner(changes={"size": [1024, 2048], "intervals_timed": 1, "split": "test"})
    bench = load(workdir / "experiments/synthetic/gsv.toml").benches[0]
    assert runner.changed(bench, BenchConfig) == {"intervals_timed": 1}  # its size is the file's already
    assert runner.changed({"name": "val"}, EvalConfig) == {"split": "test"}
    with pytest.raises(ValueError, match=r"neither EvalConfig nor BenchConfig has: \['iterations'\]"):
        Runner(changes={"iterations": 2})


def test_the_speed_page_shows_the_committed_end_to_end_and_precision_results_as_rendered():
    """docs/speed.md's end-to-end tables are end_to_end_table of the committed benchmark files, and its accuracy table
    is what `gsv tables` renders of the precision results: editing either by hand fails here."""
    from gsvlib.bench import end_to_end_table

    page = (ROOT / "docs/speed.md").read_text()
    for path in (ROOT / "figures/end_to_end_360x480.json", ROOT / "figures/end_to_end_1024x2048.json"):
        assert "\n".join(end_to_end_table(json.loads(path.read_text()))) in page, path
    results, _ = read_results(ROOT / "figures/camvid")
    table = render(results, ["precision"]).split("\n", 2)[2]  # less the generated-page mark
    assert table.strip() in page
