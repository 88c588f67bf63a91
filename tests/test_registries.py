"""Adding a keyframe net, a dataset, an evaluation variant or a policy signal is one file plus one registry line: the
worked examples of CONTRIBUTING.md, run as written, then trained, evaluated, segmented and listed through `gsv`."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from gsvlib.cli import build_parser, main
from gsvlib.config import config_for
from gsvlib.data import DATASETS
from gsvlib.data.io import write_png
from gsvlib.models.gsvnet import CORRECTIONS, KEYFRAME_NETS
from gsvlib.segmenter import PROPAGATIONS, SIGNALS
from gsvlib.train import build_model

GUIDE = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


@pytest.fixture
def registered():
    """CONTRIBUTING.md's python blocks executed in order in one namespace; the registries restored afterwards."""
    saved = [(r, dict(r)) for r in (KEYFRAME_NETS, DATASETS, PROPAGATIONS, SIGNALS, CORRECTIONS)]
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) == 7  # net, its registration, dataset, its registration, variant, signal, correction
    namespace = {"__name__": "contributing_examples"}
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)
    yield namespace
    for registry, before in saved:
        registry.clear()
        registry.update(before)


@pytest.fixture
def clips(tmp_path):
    """A tiny dataset in the Clips layout: two clips per split of 4 frames, a square moving right."""
    root = tmp_path / "clips"
    for split in ("train", "val"):
        for c in range(2):
            for t in range(4):
                frame = np.full((64, 96, 3), 30, np.uint8)
                frame[16:48, 10 + 8 * t + 4 * c: 42 + 8 * t + 4 * c] = (220, 20, 60)
                write_png(root / split / f"clip{c}" / f"{t:03d}.png", frame)
            write_png(root / split / f"clip{c}" / "label.png", (frame[..., 1] == 20).astype(np.uint8))
    return root


def test_the_registered_examples_reach_every_command(registered, clips, tmp_path, capsys):
    assert KEYFRAME_NETS["tiny"] is registered["TinyNet"] and DATASETS["clips"] is registered["Clips"]
    parser = build_parser()
    assert parser.parse_args(["train", "--keyframe-net", "tiny", "--dataset", "clips"]).keyframe_net == "tiny"
    runs = tmp_path / "runs"
    common = ["--dataset", "clips", "--root", str(clips), "--keyframe-net", "tiny", "--batch-size", "2",
              "--iterations", "3"]
    assert main(["train", "--stage", "keyframe", "--split", "train", "--out", str(runs / "k"), *common]) == 0
    assert main(["train", "--stage", "gsv", "--split", "train", "--max-interval", "3", "--init",
                 str(runs / "k" / "checkpoint.pt"), "--out", str(runs / "g"), *common]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(runs / "g" / "checkpoint.pt"), "--dataset", "clips", "--root", str(clips),
                 "--intervals", "1", "2", "3", "--variants", "gsv", "blur", "image", "--image-scales", "1.0",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"gsv", "blur", "image", "written_by"} and report["blur"]["snippets"] == 2
    assert report["blur"]["intervals"]["1"] == report["gsv"]["intervals"]["1"]  # l = 1: the same keyframes
    policy = tmp_path / "policy.json"
    assert main(["eval", "--checkpoint", str(runs / "g" / "checkpoint.pt"), "--dataset", "clips", "--root", str(clips),
                 "--policy", "edges", "--max-interval", "3", "--factors", "1", "--out", str(policy)]) == 0
    schedules = json.loads(policy.read_text())
    assert schedules["frames"] == 8 and schedules["scored"] == 2  # 2 clips of 4 frames, each labelled at its last
    assert schedules["policies"]["edges"]["title"] == "share of cells on a class boundary"
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(4):
        shutil.copy(clips / "val" / "clip0" / f"{t:03d}.png", frames)
    assert main(["segment", str(frames), "--checkpoint", str(runs / "g" / "checkpoint.pt"), "--out",
                 str(tmp_path / "ov"), "--interval", "2"]) == 0
    timings = json.loads((tmp_path / "ov" / "timings.json").read_text())
    assert [t["keyframe"] for t in timings["per_frame"]] == [True, False, True, False]
    assert main(["info", "--classes", "2"]) == 0
    assert "| keyframe net N (tiny) |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no ResNet-18 backbone"):
        build_model(config_for("keyframe", keyframe_net="tiny", imagenet="r18.pth"), 2)


def test_a_bad_label_in_the_new_dataset_names_the_file(registered, clips):
    write_png(clips / "val" / "clip1" / "label.png", np.full((64, 96), 7, np.uint8))
    with pytest.raises(Exception, match=r"clip1/label.png holds values other than 0..1"):
        DATASETS["clips"](clips, "val")[1]
