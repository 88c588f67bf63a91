"""Experiments as files: CONTRIBUTING.md's worked example run as written, `gsv run` resuming and skipping, the checks
of an experiment file, and the committed results against the experiment files and docs/results/ they come from."""
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from gsvlib.checkpoint import read_checkpoint
from gsvlib.cli import main
from gsvlib.experiments import ExperimentError, Runner, collect, experiment_block, load, seed_file
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
    return ["--root", f"synthetic={tiny_synth}", "--set", "iterations=2", "batch_size=2"]


def test_the_contributing_example_adds_a_row_with_one_file(workdir, tiny_synth, capsys):
    (toml,) = re.findall(r"```toml\n(.*?)```", GUIDE.read_text(), re.S)
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
    assert meta["name"] == "synthetic/distill" and meta["description"].startswith("GSVNet's propagation with distil")
    assert meta["checkpoint_sha256"] == sha256(workdir / "runs/synthetic/distill/checkpoint.pt")
    assert meta["config"]["variants"] == ["gsv", "warp", "copy"] and result["gsv"]["key_scale"] == 1.0

    log = workdir / "runs/synthetic/distill/log.jsonl"
    before = log.read_text()
    assert main(["run", "experiments/synthetic", *quick(tiny_synth)]) == 0  # everything done: nothing runs
    again = capsys.readouterr().out
    assert "training" not in again and again.count(": done (") == 3 and log.read_text() == before
    assert main(["run", str(path), "--root", f"synthetic={tiny_synth}", "--set", "iterations=3",
                 "batch_size=2"]) == 0  # longer: the run resumes where it stopped, then scores the new checkpoint
    longer = capsys.readouterr().out
    assert "resuming gsv into" in longer and "evaluating val" in longer
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == [1, 2, 3]


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
                      ["gsv.intra_net.net.0.0.weight"] for s in (1, 2)]
    assert not torch.equal(*weights_differ)
    assert main(["tables", "figures/synthetic"]) == 0
    table = (workdir / "figures/synthetic/results.md").read_text()
    assert table.count("| `short-adam` recipe |") == 1  # the seeds are no rows of their own
    assert re.search(r"`short-adam` recipe, seeds 1, 2: GSVNet l=3 avg \d+\.\d sd \d+\.\d", table)
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


def test_every_committed_camvid_result_is_written_by_an_experiment_file_as_it_now_reads():
    """Each JSON under figures/camvid is the output of one experiment file's evaluation, and records that evaluation
    as the file now gives it (name, description, row, table settings, the evaluation): editing a file's table or
    row without writing its results again fails here."""
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
        expected = experiment_block(exp, spec, {k: v for k, v in spec.items() if k not in ("out", "json")}, None,
                                    None, cfg)
        for key in ("name", "description", "legend", "evaluation", "spec", "config", "table", "row", "order"):
            assert recorded[key] == json.loads(json.dumps(expected[key])), (path, key)  # as JSON stores it


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
