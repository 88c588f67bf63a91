"""What a user owns is never destroyed: outputs that would replace an input or a user's files are refused, folders
are replaced whole and recoverably, and two writers of one output are kept apart."""
import fcntl
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from gsvlib import files
from gsvlib.cli import main
from gsvlib.data.io import write_png
from gsvlib.files import move_into_place, save_atomic
from gsvlib.models import GSVNet


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A stage-gsv checkpoint of an untrained 19-class GSVNet, as training writes it."""
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    model = GSVNet()
    save_atomic({"model": model.state_dict(), "model_config": asdict(model.config), "stage": "gsv",
                 "optimizer": {}, "iteration": 1}, path)
    return path


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "frames"
    for i in range(3):
        write_png(folder / f"{i:06d}.png", np.full((64, 96, 3), 60 * i, np.uint8))
    return folder


def segment(frames, checkpoint, out, *more):
    return main(["segment", str(frames), "--checkpoint", str(checkpoint), "--out", str(out), "--fps", "15", *more])


def test_segment_refuses_a_folder_holding_a_users_files(frames, checkpoint, tmp_path, capsys):
    (tmp_path / "mydocs").mkdir()
    (tmp_path / "mydocs" / "thesis.tex").write_text("years of work")
    assert segment(frames, checkpoint, tmp_path / "mydocs") == 2
    assert "holds files that gsv segment did not write (thesis.tex)" in capsys.readouterr().err
    assert (tmp_path / "mydocs" / "thesis.tex").read_text() == "years of work"
    assert segment(frames, checkpoint, tmp_path / "ov") == 0  # its own output it replaces
    assert segment(frames, checkpoint, tmp_path / "ov", "--interval", "1") == 0
    assert sorted(p.name for p in (tmp_path / "ov").iterdir())[-1] == "timings.json"
    assert not list(tmp_path.glob(".ov*"))  # no lock, partial or old folder left beside it


@pytest.mark.parametrize("case", ["same folder", "folder holding it", "same video"])
def test_segment_refuses_to_write_over_its_input(case, frames, checkpoint, tmp_path, capsys):
    if case == "same folder":
        source, out = frames, frames
    elif case == "folder holding it":
        source, out = frames, tmp_path
    else:
        source = out = tmp_path / "clip.mp4"
        assert segment(frames, checkpoint, source) == 0
    before = sorted((p.name, p.stat().st_size) for p in source.parent.rglob("*") if p.is_file())
    assert main(["segment", str(source), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_size) for p in source.parent.rglob("*") if p.is_file()) == before


def test_an_existing_file_is_not_replaced_by_an_output_folder(frames, checkpoint, tmp_path, capsys):
    mine = tmp_path / "Makefile_mine"
    mine.write_text("all:")
    assert segment(frames, checkpoint, mine) == 2
    assert main(["data", "synth", "--out", str(mine), "--snippets", "1", "--val-snippets", "1"]) == 2
    assert capsys.readouterr().err.count("is a file, which") == 2 and mine.read_text() == "all:"


def test_a_second_segment_into_the_same_output_is_refused_while_the_first_writes(frames, checkpoint, tmp_path,
                                                                                  capsys):
    with open(tmp_path / ".ov.lock", "a+") as held:  # another gsv segment is writing ov
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert segment(frames, checkpoint, tmp_path / "ov") == 2
    assert "--out " + str(tmp_path / "ov") + " is in use by" in capsys.readouterr().err
    assert not (tmp_path / "ov").exists()


def test_export_refuses_to_overwrite_the_checkpoint_or_a_file_that_is_no_manifest(checkpoint, tmp_path, capsys):
    before = checkpoint.read_bytes()
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(checkpoint)]) == 2
    assert "would replace the checkpoint" in capsys.readouterr().err and checkpoint.read_bytes() == before
    for text in ('["a list"]', "{not json", '{"w.pt": 3}'):
        notes = tmp_path / "notes.json"
        notes.write_text(text)
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt"), "--manifest",
                     str(notes)]) == 2
        assert "not a manifest" in capsys.readouterr().err and notes.read_text() == text
        assert not (tmp_path / "w.pt").exists()  # refused before anything was written
    manifest = tmp_path / "manifest.json"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt"), "--manifest",
                 str(manifest)]) == 0
    assert set(json.loads(manifest.read_text())) == {"w.pt"}


def test_synth_force_refuses_a_users_file_inside_the_sets_folders(tmp_path, capsys):
    args = ["data", "synth", "--out", str(tmp_path / "s"), "--snippets", "1", "--val-snippets", "1", "--size", "64x128"]
    assert main(args) == 0
    note = tmp_path / "s" / "gtFine" / "my_annotation_notes.txt"
    note.write_text("keep")
    assert main([*args, "--force"]) == 2
    assert "did not write (gtFine/my_annotation_notes.txt)" in capsys.readouterr().err and note.read_text() == "keep"


def test_lock_holder_names_who_holds_a_lock_and_none_once_it_is_let_go(tmp_path):
    import socket

    from gsvlib.files import lock_holder, locked

    lock = tmp_path / "run" / ".lock"
    assert lock_holder(lock) is None  # no file yet
    with locked(lock, "the run", "wait"):
        assert lock_holder(lock) == f"pid {os.getpid()} on {socket.gethostname()}"
        assert lock_holder(lock.parent / "other.lock") is None
    assert lock.exists() and lock_holder(lock) is None  # the file stays; nobody holds it


def test_train_refuses_a_users_lock_and_tmp_files_and_leaves_no_lock_when_it_refuses(tmp_path, tiny_synth, capsys):
    common = ["train", "--stage", "keyframe", "--root", str(tiny_synth), "--batch-size", "2", "--iterations", "1"]
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("my lock-in notes")
    (out / "draft.tmp").write_text("unsaved draft")
    assert main([*common, "--out", str(out)]) == 2
    assert "did not write (.lock, draft.tmp)" in capsys.readouterr().err
    assert (out / ".lock").read_text() == "my lock-in notes" and (out / "draft.tmp").read_text() == "unsaved draft"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main([*common, "--out", str(other)]) == 2
    assert "nothing was changed" in capsys.readouterr().err and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_a_folder_moved_aside_by_a_killed_replacement_comes_back(tmp_path, monkeypatch):
    """A process that dies between move_into_place's two renames leaves only .X.old; the next writer restores it
    before it does anything, and only its own finished result replaces it."""
    target, new = tmp_path / "out", tmp_path / ".out.partial"
    target.mkdir()
    (target / "a.png").write_text("old")
    new.mkdir()
    (new / "a.png").write_text("new")
    replace, calls = os.replace, []

    def dies_second_time(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", dies_second_time)
    with pytest.raises(KeyboardInterrupt):
        move_into_place(new, target)
    monkeypatch.setattr(files.os, "replace", replace)
    assert not target.exists() and (tmp_path / ".out.old" / "a.png").read_text() == "old"
    files.restore_interrupted(target)  # what every writer does first
    assert (target / "a.png").read_text() == "old" and not (tmp_path / ".out.old").exists()
    move_into_place(new, target)
    assert (target / "a.png").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow  # three ONNX exports
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs the onnx extra")
def test_export_onnx_cut_short_leaves_the_old_graphs_whole(tmp_path, monkeypatch):
    from gsvlib import deploy

    model = GSVNet(num_classes=3)
    deploy.export_onnx(model, tmp_path / "onnx", (64, 96))
    before = {p.name: p.read_bytes() for p in (tmp_path / "onnx").iterdir()}
    export, calls = torch.onnx.export, []

    def dies_on_the_second_graph(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return export(*args, **kwargs)

    monkeypatch.setattr(deploy.torch.onnx, "export", dies_on_the_second_graph)
    with pytest.raises(KeyboardInterrupt):
        deploy.export_onnx(model, tmp_path / "onnx", (96, 128))
    assert {p.name: p.read_bytes() for p in (tmp_path / "onnx").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]
    (tmp_path / "onnx" / "README.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write \\(README.txt\\)"):
        deploy.export_onnx(model, tmp_path / "onnx", (64, 96))


def test_16_bit_grayscale_frames_are_scaled_not_clipped_to_white(tmp_path):
    """PIL converts mode I;16 to RGB by clipping: a mid-grey 16-bit frame became pure white."""
    from PIL import Image

    from gsvlib.data.io import read_rgb

    gray = np.array([[0, 257 * 128, 65535]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = read_rgb(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 128, 255] and (rgb[..., 0] == rgb[..., 2]).all()


@pytest.mark.parametrize("value", [float("nan"), 1e6])
def test_export_refuses_weights_that_fp16_cannot_hold(checkpoint, tmp_path, capsys, value):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["model"]["correction.guiding_net.head.weight"][0, 0, 0, 0] = value
    save_atomic(ckpt, tmp_path / "diverged.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "diverged.pt"), "--out", str(tmp_path / "w.pt"),
                 "--manifest", str(tmp_path / "m.json")]) == 2
    assert "beyond fp16's range (+-65504) in correction.guiding_net.head.weight" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pt"]


def test_a_video_shorter_than_its_container_says_is_reported(frames, checkpoint, tmp_path, monkeypatch, capsys):
    """A truncated file decodes fewer frames than its metadata announce: the run says so instead of passing quietly."""
    from gsvlib import video

    read = video.read_frames
    monkeypatch.setattr(video, "read_frames", lambda source: (read(source)[0], 15.0, 30))
    assert segment(frames, checkpoint, tmp_path / "ov") == 0
    assert "announces 30 frames but only 3 could be decoded" in capsys.readouterr().err


def test_ctrl_c_and_a_model_config_of_the_wrong_type_end_in_a_message(checkpoint, tmp_path, monkeypatch, capsys):
    import gsvlib.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert main(["info"]) == 130 and "interrupted; files already complete are kept" in capsys.readouterr().err
    monkeypatch.undo()
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["model_config"]["use_intra"] = "no"
    save_atomic(ckpt, tmp_path / "typed.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "typed.pt"), "--variants", "image"]) == 2
    assert "invalid model_config: use_intra must be true or false, got 'no'" in capsys.readouterr().err


@pytest.mark.parametrize("option,value,message", [("--alpha", "5", "opacity, in [0, 1]"),
                                                  ("--fps", "-5", "a positive number"),
                                                  ("--fps", "inf", "a positive number")])
def test_segment_refuses_an_alpha_or_fps_it_cannot_use(frames, checkpoint, tmp_path, capsys, option, value, message):
    assert main(["segment", str(frames), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o.mp4"),
                 option, value]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("log", [b'{"iteration": 1, "loss": 1.0}\n{"loss": 2.0}\n{"iteration": 3}\n',
                                 b'{"iteration": 1}\n\xff\xfe\n{"iteration": 2}\n'])
def test_a_damaged_log_names_its_line_or_file(tmp_path, log):
    from gsvlib.train import parse_log

    (tmp_path / "log.jsonl").write_bytes(log)
    with pytest.raises(ValueError, match="log.jsonl (line 2 is no log entry|is not UTF-8).*move it away"):
        parse_log(tmp_path / "log.jsonl")


def test_a_full_disk_is_named_even_when_deleting_the_partial_file_frees_space(tmp_path, monkeypatch):
    """On a real tmpfs the partial file fills the disk; free space must be read before it is deleted."""
    import shutil

    def fills_the_disk(obj, f):
        f.write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    def usage(folder):  # no space while the partial file is there, plenty once it is gone
        free = 0 if list(tmp_path.glob(".*.tmp")) else 10 ** 9
        return shutil._ntuple_diskusage(10 ** 9, 10 ** 9 - free, free)

    monkeypatch.setattr(torch, "save", fills_the_disk)
    monkeypatch.setattr(shutil, "disk_usage", usage)
    with pytest.raises(OSError, match="no space left on device while writing .*w.pt"):
        save_atomic({"w": torch.zeros(2)}, tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_synth_leaves_nothing_beside_the_set(tmp_path, monkeypatch):
    from gsvlib.data import synthetic

    frames = synthetic.render_snippet

    def interrupted(*args):
        yield next(frames(*args))
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "render_snippet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(tmp_path / "s", synthetic.SynthConfig(snippets=1, val_snippets=1, size=(64, 128)),
                           progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # one ONNX export
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs the onnx extra")
def test_damaged_or_missing_onnx_files_name_the_file_and_the_fix(tmp_path):
    from gsvlib import deploy

    deploy.export_onnx(GSVNet(num_classes=3), tmp_path / "onnx", (64, 96))
    graph = tmp_path / "onnx" / "propagation.onnx"
    graph.write_bytes(graph.read_bytes()[:100])
    with pytest.raises(RuntimeError, match="propagation.onnx cannot be loaded by ONNX Runtime.*export the graphs"):
        deploy.OnnxRuntime(tmp_path / "onnx")
    graph.unlink()
    with pytest.raises(RuntimeError, match="propagation.onnx cannot be loaded"):
        deploy.OnnxRuntime(tmp_path / "onnx")
    for text in ("[1, 2]", "{broken"):
        (tmp_path / "onnx" / "onnx.json").write_text(text)
        with pytest.raises(RuntimeError, match="onnx.json is damaged"):
            deploy.OnnxRuntime(tmp_path / "onnx")


def test_a_run_checkpoint_with_a_crafted_iteration_is_refused_on_resume(tiny_synth, tmp_path, capsys):
    common = ["train", "--stage", "keyframe", "--out", str(tmp_path / "r"), "--root", str(tiny_synth),
              "--batch-size", "2", "--iterations", "2"]
    assert main([*common[:-1], "1"]) == 0
    ckpt = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    ckpt["iteration"] = "x"
    save_atomic(ckpt, tmp_path / "r" / "checkpoint.pt")
    assert main([*common, "--resume"]) == 2
    assert "is damaged: its iteration ('x')" in capsys.readouterr().err


def test_an_all_void_label_set_says_so_instead_of_scoring_nan(tiny_synth, checkpoint, tmp_path, capsys):
    import shutil

    from gsvlib.data.io import read_label

    root = tmp_path / "void"
    shutil.copytree(tiny_synth, root)
    for png in (root / "gtFine").rglob("*.png"):
        write_png(png, np.zeros_like(read_label(png)))  # labelId 0: unlabeled, ignored
    assert main(["eval", "--checkpoint", str(checkpoint), "--root", str(root), "--variants", "image",
                 "--image-scales", "1.0"]) == 2
    assert "every ground-truth pixel is void" in capsys.readouterr().err


def test_a_file_output_naming_a_folder_is_refused_before_any_work(checkpoint, tmp_path, capsys, monkeypatch):
    """Before: the benchmark (or evaluation) ran for minutes, then the write failed naming a temporary file."""
    import gsvlib.cli as cli

    monkeypatch.setattr(cli, "bench_matrix", lambda *a, **k: pytest.fail("the benchmark ran"))
    monkeypatch.setattr(cli, "benchmark", lambda *a, **k: pytest.fail("the benchmark ran"))
    (tmp_path / "dir").mkdir()
    for args in (["bench", "--size", "64x96", "--json", str(tmp_path / "dir")],
                 ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "dir")],
                 ["tables", str(tmp_path), "--out", str(tmp_path / "dir")]):
        assert main(args) == 2
        assert f"{tmp_path / 'dir'} is a folder; give the name of a file to write" in capsys.readouterr().err
    (tmp_path / "f.txt").write_text("mine")
    assert main(["train", "--stage", "keyframe", "--out", str(tmp_path / "f.txt")]) == 2
    assert "is a file; a run needs a folder" in capsys.readouterr().err and (tmp_path / "f.txt").read_text() == "mine"


def test_segment_refuses_max_frames_below_one(frames, checkpoint, tmp_path, capsys):
    assert segment(frames, checkpoint, tmp_path / "o", "--max-frames", "0") == 2
    assert "--max-frames) must be at least 1" in capsys.readouterr().err


def test_export_removes_what_a_killed_export_left(checkpoint, tmp_path):
    stale = tmp_path / ".w.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)  # a kill -9 while torch.save wrote
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_a_frame_of_another_size_in_a_folder_is_named(frames, checkpoint, tmp_path, capsys):
    write_png(frames / "000002.png", np.zeros((48, 96, 3), np.uint8))
    assert segment(frames, checkpoint, tmp_path / "o") == 2
    assert "000002.png is 96x48 but 000000.png and the frames before it are 96x64" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o*"))


def _export(checkpoint, out, manifest):
    return main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--manifest", str(manifest)])


def _entry_matches(out, manifest):
    return json.loads(manifest.read_text())[out.name]["sha256"] == files.sha256(out)


@pytest.mark.parametrize("dies", ["before the manifest", "after the manifest"])
def test_a_killed_export_is_finished_or_undone_so_weights_and_manifest_agree(checkpoint, tmp_path, monkeypatch,
                                                                              dies):
    out, manifest = tmp_path / "w.pt", tmp_path / "manifest.json"
    assert _export(checkpoint, out, manifest) == 0
    old = out.read_bytes()
    other = tmp_path / "other.pt"  # another run: new weights for the same file name
    torch.save({**torch.load(checkpoint, weights_only=False), "iteration": 7}, other)
    from gsvlib import checkpoint as module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies here: nothing after this line runs
    replace = os.replace

    def killed_at_the_last_rename(src, dst):
        return killed() if str(dst) == str(out) else replace(src, dst)
    if dies == "before the manifest":
        monkeypatch.setattr(module, "write_json_atomic", killed)
    else:
        monkeypatch.setattr(module.os, "replace", killed_at_the_last_rename)
    with pytest.raises(KeyboardInterrupt):
        module.export_weights(other, out, manifest)
    monkeypatch.undo()
    assert out.read_bytes() == old  # the weights in place are still the old ones
    # the next export (of anything, to this --out) settles the killed one first
    module.settle_export(out, manifest)
    assert _entry_matches(out, manifest) and sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "other.pt", "w.pt"]
    iterations = json.loads(manifest.read_text())["w.pt"]["iterations"]
    assert iterations == (1 if dies == "before the manifest" else 7)
    assert (out.read_bytes() == old) == (dies == "before the manifest")


def test_export_refuses_metrics_it_cannot_read_before_writing(checkpoint, tmp_path, capsys):
    (tmp_path / "list.json").write_text("[1]")
    for metrics, said in [("nosuch.json", "does not exist"), ("list.json", "is not the JSON object")]:
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt"), "--metrics",
                     str(tmp_path / metrics)]) == 2
        assert f"--metrics {tmp_path / metrics} {said}" in capsys.readouterr().err
    assert not (tmp_path / "w.pt").exists()


def test_a_refused_training_run_leaves_no_folder_behind(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--stage", "keyframe", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "run"),
                 "--iterations", "1"]) == 2
    assert "is missing: expected layout" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_file_outputs_replace_only_files_of_their_own_kind(checkpoint, frames, tmp_path, capsys):
    """A PNG named as --json, a user's notes as the tables page, a document as weights, a user's video as the overlay
    video: refused and kept. The kit's own earlier outputs are replaced as before."""
    picture = frames / "000000.png"
    before = picture.read_bytes()
    assert main(["bench", "--size", "64x64", "--json", str(picture)]) == 2
    assert "exists and is not a result the kit wrote" in capsys.readouterr().err and picture.read_bytes() == before
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    assert main(["tables", str(tmp_path), "--out", str(notes)]) == 2
    assert "is not a page written by `gsv tables`" in capsys.readouterr().err and notes.read_text() == "# my notes\n"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(notes)]) == 2
    assert "is not a checkpoint or weights file the kit wrote" in capsys.readouterr().err
    assert notes.read_text() == "# my notes\n"
    video = tmp_path / "holiday.gif"
    video.write_bytes(b"GIF89a, a user's video")
    assert segment(frames, checkpoint, video) == 2
    assert "without the holiday.timings.json" in capsys.readouterr().err
    video.with_suffix(".timings.json").write_text('{"frames": "my notes"}')  # a user's file of that name: no mark
    assert segment(frames, checkpoint, video) == 2
    assert "(with the kit's mark)" in capsys.readouterr().err
    assert video.read_bytes() == b"GIF89a, a user's video"
    video.unlink()
    video.with_suffix(".timings.json").unlink()
    for _ in range(2):  # its own video, timings beside it: replaced
        assert segment(frames, checkpoint, video) == 0
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt")]) == 0
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pt")]) == 0


def test_outputs_replace_only_files_that_carry_the_kits_mark(checkpoint, tiny_synth, tmp_path, capsys):
    """A user's JSON object, own torch.save file and notes named as outputs of gsv eval, gsv bench, gsv export and an
    experiment's [[eval]] out and [[bench]] json: refused before any work, and kept. What the kit wrote (marked, or
    written before the mark) is replaced."""
    settings = tmp_path / "settings.json"
    settings.write_text('{"theme": "dark"}')
    mine = tmp_path / "user_model.pt"
    torch.save({"weights": torch.ones(3)}, mine)
    mine_bytes = mine.read_bytes()
    assert main(["eval", "--checkpoint", str(checkpoint), "--root", str(tiny_synth), "--out", str(settings)]) == 2
    assert f"--out {settings} exists and is not a result the kit wrote" in capsys.readouterr().err
    assert main(["bench", "--size", "64x64", "--json", str(settings)]) == 2
    assert "is not a result the kit wrote" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(mine)]) == 2
    assert "is not a checkpoint or weights file the kit wrote" in capsys.readouterr().err
    assert settings.read_text() == '{"theme": "dark"}' and mine.read_bytes() == mine_bytes
    notes = tmp_path / "mynotes.txt"
    notes.write_text("my notes")
    experiment = tmp_path / "e.toml"
    for section, key in (("eval", "out"), ("bench", "json")):
        for target in (notes, settings):
            experiment.write_text(f'description = "d"\ncheckpoint = "{checkpoint}"\n[[{section}]]\nname = "v"\n'
                                  f'{key} = "{target.name}"\n')
            assert main(["run", str(experiment), "--root", f"synthetic={tiny_synth}"]) == 2
            assert f"[[{section}]] v: {key} {target} exists and is not a result the kit wrote" in \
                capsys.readouterr().err
    assert notes.read_text() == "my notes" and settings.read_text() == '{"theme": "dark"}'
    weights = tmp_path / "w.pt"
    for _ in range(2):  # the kit's own weights, marked: replaced
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(weights)]) == 0
    assert torch.load(weights, weights_only=True)["written_by"] == "gsvkit"
    assert files.OWN_FILES["torch"][0](checkpoint)  # a checkpoint written before the mark is recognised


def test_every_committed_result_and_figure_carries_the_mark_and_the_committed_weights_are_recognised():
    root = Path(__file__).resolve().parents[1]
    results = sorted((root / "figures").rglob("*.json"))
    assert results and all(json.loads(p.read_text()).get("written_by") == "gsvkit" for p in results)
    assert all(files.OWN_FILES["torch"][0](p) for p in (root / "weights").glob("*.pt"))
    assert all(files.OWN_FILES["png"][0](p) for p in (root / "figures").rglob("*.png"))


@pytest.mark.parametrize("command", ["segment", pytest.param("synth", marks=pytest.mark.slow),
                                     pytest.param("export-onnx", marks=pytest.mark.slow)])
def test_an_output_given_as_a_symlink_is_replaced_in_place_and_stays_a_link(command, frames, checkpoint, tmp_path):
    """Before: the work finished, then "Cannot call rmtree on a symbolic link", the link turned into a folder and
    .<name>.old left beside it."""
    if command == "export-onnx" and importlib.util.find_spec("onnx") is None:
        pytest.skip("needs the onnx extra")
    target, link = tmp_path / "real", tmp_path / "link"
    argv = {"segment": ["segment", str(frames), "--checkpoint", str(checkpoint), "--fps", "15"],
            "synth": ["data", "synth", "--snippets", "1", "--val-snippets", "1", "--size", "32x64", "--force"],
            "export-onnx": ["export-onnx", "--checkpoint", str(checkpoint), "--size", "64x96"]}[command]
    assert main([*argv, "--out", str(target)]) == 0  # the kit's output, at the real folder
    link.symlink_to(target, target_is_directory=True)
    for _ in range(2):  # over its own output, through the user's link
        assert main([*argv, "--out", str(link)]) == 0
        assert link.is_symlink() and target.is_dir() and not target.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no .old or .partial left


def test_a_file_size_limit_names_the_file_and_keeps_the_old_one(tmp_path):
    """A real RLIMIT_FSIZE (SIGXFSZ ignored, as a shell's `ulimit -f` leaves a process that ignores it): the write
    fails with errno 27 or torch's "unexpected pos"; the message names the file and the limit, the old file stays."""
    code = f"""
import resource, signal, torch
from pathlib import Path
from gsvlib.files import save_atomic, write_json_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
save_atomic({{"w": torch.zeros(4)}}, Path({str(tmp_path / "w.pt")!r}))
write_json_atomic(Path({str(tmp_path / "r.json")!r}), {{"a": 1}})
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
for write in (lambda: save_atomic({{"w": torch.zeros(100000)}}, Path({str(tmp_path / "w.pt")!r})),
              lambda: write_json_atomic(Path({str(tmp_path / "r.json")!r}), {{"a": [0] * 100000}})):
    try:
        write()
    except OSError as e:
        print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 2, out
    assert "while writing" in out[0] and "w.pt" in out[0] and "ulimit -f" in out[0]
    assert "file-size limit (ulimit -f) while writing" in out[1] and "r.json" in out[1]
    assert torch.load(tmp_path / "w.pt", weights_only=True)["w"].numel() == 4
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "w.pt"]


@pytest.mark.parametrize("setting,message", [
    ("iterations=2.5", "--set iterations = 2.5: iterations takes a whole number (default 2000)"),
    ("iterations=abc", "--set iterations = 'abc': iterations takes a whole number (default 2000)"),
    ("lr=true", "--set lr = True: lr takes a number (default 0.002)"),
])
def test_a_setting_of_the_wrong_type_is_named_before_any_work(setting, message, tmp_path, capsys):
    experiment = tmp_path / "e.toml"
    experiment.write_text('description = "d"\n[train]\nrecipe = "short-adam"\n')
    assert main(["run", str(experiment), "--runs", str(tmp_path / "runs"), "--set", setting]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "runs").exists()
    experiment.write_text('description = "d"\n[train]\nrecipe = "short-adam"\niterations = 2.5\n')
    assert main(["run", str(experiment), "--runs", str(tmp_path / "runs")]) == 2
    assert "e.toml: [train] iterations = 2.5: iterations takes a whole number" in capsys.readouterr().err


def test_negative_seeds_and_names_outside_the_runs_folder_are_refused(tmp_path, capsys):
    experiment = tmp_path / "e.toml"
    experiment.write_text('description = "d"\n[train]\nrecipe = "short-adam"\n')
    with pytest.raises(SystemExit):
        main(["run", str(experiment), "--seeds", "-1", "--dry-run"])
    assert "a seed is a whole number >= 0, got -1" in capsys.readouterr().err
    for name in ("...toml", "..toml"):
        (tmp_path / name).write_text('description = "d"\n[train]\nrecipe = "short-adam"\n')
        assert main(["run", str(tmp_path / name), "--runs", str(tmp_path / "runs"), "--dry-run"]) == 2
        assert "would put its run folder outside the runs folder; rename the file" in capsys.readouterr().err


def test_ctrl_c_while_the_command_starts_ends_in_one_line():
    """Ctrl-C in the first second or two of any command, while torch imports: one line and exit 130, no traceback.
    The interrupt is raised where torch is imported, as a press of Ctrl-C at that moment raises it."""
    code = ("import sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "from gsvlib.entry import main\n"
            "sys.exit(main())\n")
    done = subprocess.run([sys.executable, "-c", code, "info"], capture_output=True, text=True)
    assert done.returncode == 130 and done.stderr == "gsv: interrupted while starting; nothing was done\n"
    assert done.stdout == ""


def test_an_mp4_of_odd_sides_is_padded_by_one_pixel(checkpoint, tmp_path):
    """Before: ffmpeg's dump and "Broken pipe" for a 33x31 video (H.264's 4:2:0 colour needs even sides)."""
    import imageio.v3 as iio

    folder = tmp_path / "odd"
    for i in range(3):
        write_png(folder / f"{i:06d}.png", np.full((31, 33, 3), 50 * i, np.uint8))
    assert main(["segment", str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o.mp4"),
                 "--fps", "15", "--no-legend"]) == 0
    frames = iio.imread(tmp_path / "o.mp4")
    assert frames.shape[:3] == (3, 32, 34)  # one pixel more on each odd side


def _experiment(path, text):
    path.write_text('description = "d"\n' + text)
    return str(path)


def test_what_a_run_would_lose_or_redo_is_refused_before_any_training(checkpoint, tiny_synth, tmp_path, capsys):
    """Cases of a messy folder, each refused by `gsv run` before anything trains (before: after training, or never):
    a user's .pt as [export] out, a JSON list as the manifest, two experiments writing one result file (each would
    replace the other's on every run), `--set out=` putting two experiments into one run folder, a tables.toml that
    is not TOML, and a result path under a file."""
    train = '[train]\nrecipe = "from-scratch"\n'
    mine = tmp_path / "mine.pt"
    torch.save({"weights": torch.ones(2)}, mine)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    cases = {
        "export": (_experiment(tmp_path / "a.toml", f'{train}[export]\nout = "mine.pt"\n'),
                   "[export] out {} exists and is not a checkpoint or weights file the kit wrote".format(mine)),
        "manifest": (_experiment(tmp_path / "b.toml", f'{train}[export]\nout = "w.pt"\nmanifest = "list.json"\n'),
                     "is JSON but not a manifest"),
        "under a file": (_experiment(tmp_path / "c.toml", f'{train}[[eval]]\nname = "v"\nout = "notes.txt/r.json"\n'),
                         f"{notes} is a file, not a folder"),
    }
    for name, (path, message) in cases.items():
        assert main(["run", path, "--runs", str(tmp_path / "runs"), "--root", f"synthetic={tiny_synth}"]) == 2, name
        assert message in capsys.readouterr().err, name
    one = [_experiment(tmp_path / f"{n}.toml", f'{train}[[eval]]\nname = "v"\nout = "same.json"\n') for n in "de"]
    assert main(["run", *one, "--runs", str(tmp_path / "runs")]) == 2
    assert "writes too: each would replace the other's result on every run" in capsys.readouterr().err
    two = [_experiment(tmp_path / f"{n}.toml", train + ("lr = 0.01\n" if n == "g" else "")) for n in "fg"]
    assert main(["run", *two, "--set", f"out={tmp_path / 'shared'}", "--root", f"synthetic={tiny_synth}"]) == 2
    assert "the run folder of experiment f too (is `out` set for both" in capsys.readouterr().err
    (tmp_path / "tables.toml").write_text("[tables.x\n")
    table = _experiment(tmp_path / "h.toml", f'{train}[report]\ntable = "x"\n[[eval]]\nname = "v"\nout = "h.json"\n')
    assert main(["run", table, "--dry-run"]) == 2
    assert f"{tmp_path / 'tables.toml'}: is not valid TOML" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "shared").exists()  # nothing trained
    assert mine.exists() and listing.read_text() == "[1, 2]" and notes.read_text() == "mine"


def test_a_read_only_folder_is_named_with_the_file(tmp_path, monkeypatch):
    """As root the tests cannot make a folder read-only; the refusal is what mkstemp raises there."""
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match=r"cannot write .*r.json: its folder .* is read-only or not yours"):
        files.write_json_atomic(tmp_path / "r.json", {"a": 1})


def test_macos_metadata_files_in_a_frame_folder_are_no_frames(frames, checkpoint, tmp_path):
    """A folder of frames copied from a Mac holds `._000001.png` (AppleDouble metadata, not a PNG): before, the run
    stopped on an unreadable image."""
    (frames / "._000001.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X metadata")
    assert segment(frames, checkpoint, tmp_path / "ov") == 0
    assert len(list((tmp_path / "ov").glob("*.png"))) == 3


def test_a_file_output_given_as_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    """Before: the atomic rename replaced the user's link with a file."""
    target = tmp_path / "store" / "r.json"
    files.write_json_atomic(target, files.marked({"a": 1}))
    link = tmp_path / "r.json"
    link.symlink_to(target)
    files.check_file_output(link, kind="json")  # the target is the kit's: allowed
    files.write_json_atomic(link, files.marked({"a": 2}))
    assert link.is_symlink() and json.loads(target.read_text())["a"] == 2
