"""Untrained parts never pass as GSVNet: checkpoints record which parts were trained, and every entry point that
runs a part requires it."""
import warnings
from pathlib import Path

import pytest
import torch

from gsvlib.checkpoint import PARTS, CheckpointError, read_checkpoint, trained_parts
from gsvlib.cli import main
from gsvlib.config import config_for
from gsvlib.train import train


@pytest.fixture(scope="module")
def runs(tiny_synth, tmp_path_factory):
    """Two-iteration runs of each stage: keyframe; flow; gsv from both (--init, --init-flow)."""
    out = tmp_path_factory.mktemp("parts")
    common = ["--root", str(tiny_synth), "--batch-size", "2", "--iterations", "2"]
    assert main(["train", "--stage", "keyframe", "--out", str(out / "key"), *common]) == 0
    assert main(["train", "--stage", "flow", "--out", str(out / "flow"), *common]) == 0
    assert main(["train", "--stage", "gsv", "--out", str(out / "gsv"), "--init", str(out / "key/checkpoint.pt"),
                 "--init-flow", str(out / "flow/checkpoint.pt"), *common]) == 0
    return out


def test_checkpoints_record_the_parts_they_trained(runs, tmp_path):
    parts = {name: read_checkpoint(runs / name / "checkpoint.pt")["trained"] for name in ("key", "flow", "gsv")}
    assert parts == {"key": ["keyframe_net"], "flow": ["flow_net"], "gsv": sorted(PARTS)}
    assert main(["export", "--checkpoint", str(runs / "flow" / "checkpoint.pt"), "--out", str(tmp_path / "f.pt")]) == 0
    assert read_checkpoint(tmp_path / "f.pt")["trained"] == ["flow_net"]


def test_checkpoints_from_before_the_record_derive_it_from_stage_and_starting_points():
    assert trained_parts({"train_config": {"stage": "keyframe"}}) == {"keyframe_net"}
    assert trained_parts({"train_config": {"stage": "gsv", "init": "k.pt"}}) == set(PARTS)
    assert trained_parts({"train_config": {"stage": "gsv", "train_flow": False}}) == {"correction"}
    assert trained_parts({"stage": "gsv", "model": {}}) == set(PARTS)  # converted from the official code


@pytest.mark.parametrize("command", [["eval", "--variants", "gsv"], ["eval", "--variants", "image"],
                                     ["segment", "--interval", "1"], ["segment", "--interval", "3"]])
def test_a_flow_stage_checkpoint_is_neither_scored_nor_run_as_gsvnet(runs, tiny_synth, tmp_path, capsys, command):
    """Its keyframe net and GSV conv are random: every path that runs a keyframe is refused, naming what to train."""
    ckpt = str(runs / "flow" / "checkpoint.pt")
    source = next((tiny_synth / "leftImg8bit_sequence" / "val").rglob("*.png")).parent
    if command[0] == "eval":
        args = ["eval", "--checkpoint", ckpt, "--root", str(tiny_synth), *command[1:]]
    else:
        args = ["segment", str(source), "--checkpoint", ckpt, "--out", str(tmp_path / "o"), *command[1:]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "keyframe net" in err and "never trained (it holds flow net)" in err and "--stage keyframe" in err
    assert not (tmp_path / "o").exists()


def test_a_keyframe_only_checkpoint_is_scored_by_the_variants_that_need_no_propagation(runs, tiny_synth, tmp_path,
                                                                                        capsys):
    common = ["eval", "--checkpoint", str(runs / "key" / "checkpoint.pt"), "--root", str(tiny_synth), "--intervals",
              "2", "--out", str(tmp_path / "e.json")]
    assert main([*common, "--variants", "copy", "image"]) == 0  # copy repeats the keyframe's output: no flow, no conv
    assert main([*common, "--variants", "copy", "warp"]) == 2
    assert "flow net" in capsys.readouterr().err


def test_stage_gsv_without_a_trained_keyframe_net_is_refused_however_it_is_started(tiny_synth, runs, tmp_path,
                                                                                    capsys):
    """Before: `gsv train --stage propagation` with no --init trained the propagation on a random frozen keyframe net (and
    with --freeze-flow, on a random frozen flow net) with a warning; the stage's needs now hold however it starts."""
    common = ["train", "--out", str(tmp_path / "g"), "--root", str(tiny_synth), "--batch-size", "2", "--iterations", "1"]
    for how in (["--stage", "gsv"], ["--recipe", "short-adam"], ["--recipe", "paper"]):
        assert main([*common, *how]) == 2
        err = capsys.readouterr().err
        assert "stage propagation trains GSVNet's propagation with N frozen and needs a trained keyframe net" in err
        assert "give --init CHECKPOINT" in err and not (tmp_path / "g").exists()
    assert main([*common, "--stage", "gsv", "--init", str(runs / "key/checkpoint.pt"), "--freeze-flow"]) == 2
    assert "needs a trained flow net, which no starting point gives: give --init-flow or --init-propagation" in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match="needs a trained keyframe net"):
        train(config_for(recipe="short-adam", root=str(tiny_synth), out=str(tmp_path / "g"), iterations=1),
              progress=False)
    assert main([*common, "--stage", "gsv", "--init", str(runs / "flow/checkpoint.pt")]) == 2  # O alone: N untrained
    assert "needs a trained keyframe net" in capsys.readouterr().err and not (tmp_path / "g").exists()
    assert main([*common, "--stage", "gsv", "--init", str(runs / "key/checkpoint.pt"), "--freeze-flow",
                 "--init-flow", str(runs / "flow/checkpoint.pt")]) == 0
    assert read_checkpoint(tmp_path / "g" / "checkpoint.pt")["trained"] == sorted(PARTS)


def test_a_notebook_refuses_keyframe_only_weights_as_gsvnet(runs, tmp_path):
    from gsvlib.notebook import _gsvnet

    with pytest.raises(CheckpointError, match="never trained.*a notebook showing GSVNet runs them"):
        _gsvnet(runs / "key" / "checkpoint.pt")
    assert _gsvnet(runs / "gsv" / "checkpoint.pt") is not None


def test_resume_keeps_what_the_run_started_from(runs, tiny_synth, tmp_path):
    """--init-flow is read when a run starts, never when it resumes: the run's checkpoint holds it."""
    import shutil

    flow = tmp_path / "flow.pt"
    shutil.copy(runs / "flow" / "checkpoint.pt", flow)
    common = ["train", "--stage", "gsv", "--out", str(tmp_path / "g"), "--root", str(tiny_synth), "--batch-size", "2",
              "--init", str(runs / "key" / "checkpoint.pt"), "--init-flow", str(flow)]
    assert main([*common, "--iterations", "1"]) == 0
    first = read_checkpoint(tmp_path / "g" / "checkpoint.pt")["model"]["flow_net.to_flow.bias"].clone()
    torch.save({"model": {}}, flow)  # the starting point changes (or goes) after the run started
    with warnings.catch_warnings():
        assert main([*common, "--iterations", "2", "--resume"]) == 0
    resumed = read_checkpoint(tmp_path / "g" / "checkpoint.pt")
    assert resumed["iteration"] == 2 and resumed["trained"] == sorted(PARTS)
    assert resumed["model"]["flow_net.to_flow.bias"].shape == first.shape


def test_a_part_the_record_does_not_know_is_refused_not_passed_unchecked():
    """Before: require_trained checked only the parts of PARTS, so a variant naming another part ran it untrained."""
    from gsvlib.checkpoint import require_trained

    with pytest.raises(ValueError, match=r"names parts \['residual'\] that a checkpoint does not record"):
        require_trained({"trained": ["keyframe_net"]}, "c.pt", ("keyframe_net", "residual"), "a variant")
    require_trained({"trained": ["keyframe_net"]}, "c.pt", ("keyframe_net",), "a variant")


def test_what_a_starting_point_gives_is_the_stages_own_declaration(runs, tiny_synth, monkeypatch):
    """A stage that takes the keyframe net and the flow net from --init: the run loads both and records both as given
    (before: which parts a starting point gave was spelt out in train.py for the built-in stages)."""
    from dataclasses import replace

    from gsvlib.config import config_for
    from gsvlib.stages import STAGES
    from gsvlib.train import build_model, trained_by

    monkeypatch.setitem(STAGES, "gsv-from-one", STAGES["propagation"]._replace(provides={"init": ("keyframe_net", "flow_net")}))
    init = read_checkpoint(runs / "gsv" / "checkpoint.pt")
    cfg = replace(config_for("gsv", root=str(tiny_synth), init=str(runs / "gsv" / "checkpoint.pt"), train_flow=False),
                  stage="gsv-from-one")
    model = build_model(cfg, init["model_config"]["num_classes"])
    for name, value in model.state_dict().items():
        if name.startswith(("keyframe_net.", "flow_net.")):
            assert torch.equal(value, init["model"][name]), name
    assert trained_by(cfg) == {"keyframe_net", "flow_net", "correction"}  # the frozen flow net counts: init gave it trained
    with pytest.raises(ValueError, match="--init-flow is a starting point of stage propagation; stage gsv-from-one takes --init"):
        replace(config_for("gsv"), stage="gsv-from-one", init_flow="f.pt").check()


def test_a_file_written_before_the_part_was_renamed_loads_with_its_parts_named_as_now(tmp_path):
    """The correction after warping was part "gsv" (state keys gsv.*, "trained": [..., "gsv", ...]); it is part
    "correction" now. The committed weights were written before: they load, and say what they trained, as they did."""
    from gsvlib.checkpoint import load_model
    from gsvlib.models.gsvnet import GSVNet

    weights = Path(__file__).resolve().parents[1] / "weights" / "camvid_swiftnet_gsvnet.pt"
    raw = torch.load(weights, weights_only=True)
    assert any(k.startswith("gsv.") for k in raw["model"])  # as written
    model, ckpt = load_model(weights)
    assert trained_parts(ckpt) == set(PARTS) and not any(k.startswith("gsv.") for k in ckpt["model"])
    old = {"trained": ["flow_net", "gsv", "keyframe_net"], "model": {"gsv.theta": raw["model"]["gsv.theta"]}}
    torch.save(old, tmp_path / "old.pt")
    assert read_checkpoint(tmp_path / "old.pt")["trained"] == ["correction", "flow_net", "keyframe_net"]
    theta = next(v for k, v in raw["model"].items() if k == "gsv.theta").float()
    assert torch.equal(model.correction.theta, theta)
    direct = GSVNet(**{**ckpt["model_config"], "num_classes": model.config.num_classes})
    direct.load_state_dict({k: v.float() for k, v in raw["model"].items()})  # torch's own load takes the old names too
    assert torch.equal(direct.correction.theta, theta)


def test_stage_gsv_is_the_propagation_stages_earlier_name_and_its_runs_resume(runs, tiny_synth, tmp_path):
    """Stage `propagation` was stage `gsv`: the old name is still taken, and a run folder written under it (stage
    "gsv" in its settings, part "gsv" in its checkpoint) resumes as the same run."""
    import json
    import shutil

    assert config_for("gsv").stage == "propagation" and config_for(recipe="short-adam").stage == "propagation"
    old = tmp_path / "old"
    shutil.copytree(runs / "gsv", old)
    ckpt = torch.load(old / "checkpoint.pt", weights_only=True)
    ckpt["train_config"]["stage"] = "gsv"
    ckpt["trained"] = ["flow_net", "gsv", "keyframe_net"]
    ckpt["model"] = {k.replace("correction.", "gsv.", 1): v for k, v in ckpt["model"].items()}
    torch.save(ckpt, old / "checkpoint.pt")
    saved = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**saved, "stage": "gsv"}))
    common = ["--root", str(tiny_synth), "--batch-size", "2", "--init", str(runs / "key/checkpoint.pt"),
              "--init-flow", str(runs / "flow/checkpoint.pt")]
    assert main(["train", "--stage", "gsv", "--out", str(old), "--iterations", "3", "--resume", *common]) == 0
    resumed = read_checkpoint(old / "checkpoint.pt")
    assert resumed["iteration"] == 3 and resumed["train_config"]["stage"] == "propagation"
    assert resumed["trained"] == sorted(PARTS) and any(k.startswith("correction.") for k in resumed["model"])
