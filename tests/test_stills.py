"""Stills set in motion: the clip ends on the still, its flow is the exact motion of the scene, what the still does not
show is marked and never labelled."""
import math

import numpy as np
import pytest

from gsvlib.data.labels import CITYSCAPES, IGNORE
from gsvlib.data.stills import FAR, Motion, depth_proxy, focal, render_clip

SKY, ROAD, CAR = (CITYSCAPES.classes.index(c) for c in ("sky", "road", "car"))


def street(h=63, w=96, car=True):
    """Sky above row 32, road from it down (the horizon at the principal point, row 31), a car standing on the road;
    an image whose colour varies in every pixel."""
    label = np.full((h, w), SKY, np.uint8)
    label[32:] = ROAD
    if car:
        label[36:48, 40:60] = CAR  # stands on the road at row 48
    v, u = np.mgrid[0:h, 0:w]
    image = np.stack([u * 2 % 256, v * 4 % 256, (u + v) % 256], -1).astype(np.uint8)
    return image, label


def test_the_depth_of_a_still_comes_from_its_labels():
    image, label = street()
    depth = depth_proxy(label, CITYSCAPES, height=1.5, fov=60.0)
    f = focal(96, 60.0)
    assert (depth[label == SKY] == FAR).all()
    assert math.isclose(depth[40, 10], f * 1.5 / (40 - 31))  # the ground plane seen from 1.5 m, horizon row 31
    assert (np.diff(depth[32:, 10]) < 0).all()  # nearer further down
    assert np.allclose(depth[36:48, 40:60], depth[48, 10])  # the car stands where it meets the road


def test_the_clip_ends_on_the_still_and_marks_what_it_does_not_show():
    image, label = street()
    clip = render_clip(image, label, depth_proxy(label, CITYSCAPES), Motion(frames=4), seed=3)
    assert clip["frames"].shape == (4, 63, 96, 3) and clip["flow"].shape == (3, 2, 63, 96)
    assert (clip["frames"][-1] == image).all() and (clip["labels"][-1] == label).all() and clip["seen"][-1].all()
    first = clip["seen"][0]
    assert 0.3 < first.mean() < 1  # the camera was behind the still: its border is unseen
    assert (clip["labels"][0][~first] == IGNORE).all() and (clip["labels"][0][first] != IGNORE).all()
    assert ((clip["labels"][0] == CAR).sum() < (label == CAR).sum())  # farther away, the car is smaller
    again = render_clip(image, label, depth_proxy(label, CITYSCAPES), Motion(frames=4), seed=3)
    assert all((again[k] == clip[k]).all() for k in clip)  # seeded: the same clip
    with pytest.raises(ValueError, match="at least 2 frames"):
        Motion(frames=1)


def test_the_flow_is_the_exact_motion_of_the_ground_and_carries_labels_and_colours():
    image, label = street(car=False)
    d, height, f, cy = 0.5, 1.5, focal(96, 60.0), 31
    clip = render_clip(image, label, depth_proxy(label, CITYSCAPES, height=height),
                       Motion(frames=3, forward=d, pan=0, roll=0, height=height), seed=0)
    flow, valid = clip["flow"][0], clip["valid"][0]
    ys, xs = np.nonzero(valid & (clip["labels"][0] == ROAD))
    assert len(ys) > 500
    depth = f * height / (ys - cy)  # each pixel's ground depth in frame 0 (pixel centres: within half a pixel)
    expected_y = cy + f * height / (depth - d) - ys  # the camera moved d forward between frames
    expected_x = (xs - 47.5) * depth / (depth - d) - (xs - 47.5)
    assert np.abs(flow[1][ys, xs] - expected_y).max() < 1.0 and np.abs(flow[0][ys, xs] - expected_x).max() < 1.0
    to = np.round(np.stack([ys + flow[1][ys, xs], xs + flow[0][ys, xs]])).astype(int)
    assert (clip["labels"][1][to[0], to[1]] == clip["labels"][0][ys, xs]).all()  # the labels move with the flow
    assert (clip["frames"][1][to[0], to[1]] == clip["frames"][0][ys, xs]).all()  # so do the colours, exactly


def test_any_dataset_of_the_registry_trains_the_propagation_on_its_stills_set_in_motion(tiny_synth, keyframe_run,
                                                                                        tmp_path):
    """--stills: each sample is a labelled frame of the dataset and frames rendered before it, not the recorded ones;
    the labelled frame and its label are the dataset's own, and a sample is the same clip in every run."""
    import torch

    from gsvlib.checkpoint import read_checkpoint
    from gsvlib.config import config_for
    from gsvlib.data import open_dataset
    from gsvlib.data.stills import StillsInMotion
    from gsvlib.train import train, training_data

    cfg = config_for(recipe="short-adam", root=str(tiny_synth), stills=True, batch_size=2, iterations=2,
                     init=keyframe_run, out=str(tmp_path / "run"))
    data, plain = training_data(cfg), open_dataset("synthetic", tiny_synth, "train", offset=0)
    assert isinstance(data, StillsInMotion) and len(data) == len(plain) and data.max_offset == 4
    clip, still = data.sample(1, 3), plain.sample(1, 0)
    assert clip["frames"].shape == (4, *still["frames"].shape[1:]) and torch.equal(clip["label"], still["label"])
    assert torch.equal(clip["frames"][-1], still["frames"][0])  # the labelled frame is the dataset's own
    recorded = open_dataset("synthetic", tiny_synth, "train", offset=3).sample(1, 3)["frames"]
    assert not torch.equal(clip["frames"][0], recorded[0])  # rendered, not the frame recorded 3 before
    assert torch.equal(training_data(cfg).sample(1, 3)["frames"], clip["frames"])  # the same clip in every run
    assert torch.equal(data.sample(1, 2)["frames"], clip["frames"][1:])  # one clip per still: offset k, its last k + 1
    train(cfg, progress=False)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_config"]["stills"] is True
    with pytest.raises(ValueError, match="--stills and --stills-split render frames before each labelled one"):
        config_for("keyframe", stills=True).check()


def test_stills_join_a_video_for_half_of_the_samples(tiny_synth, keyframe_run, tmp_path):
    """--stills-split SPLIT: the run's recorded clips at even indices, SPLIT's stills set in motion at odd ones, each
    half of the samples whatever their counts; a run trains on both."""
    import torch

    from gsvlib.checkpoint import read_checkpoint
    from gsvlib.config import config_for
    from gsvlib.data import open_dataset
    from gsvlib.data.stills import WithStills
    from gsvlib.train import train, training_data

    cfg = config_for(recipe="short-adam", root=str(tiny_synth), stills_split="val", batch_size=2,
                     iterations=2, init=keyframe_run, out=str(tmp_path / "run"))
    data = training_data(cfg)
    video = open_dataset("synthetic", tiny_synth, "train", offset=None, max_offset=4)
    stills = open_dataset("synthetic", tiny_synth, "val", offset=0)
    assert isinstance(data, WithStills) and len(data) == 2 * max(len(video), len(stills))
    assert torch.equal(data.sample(2, 3)["frames"], video.sample(1, 3)["frames"])  # even: the recorded clip
    drawn, k = data.sample(3, 3), 1 % len(stills)  # odd: still 3 // 2 set in motion
    assert torch.equal(drawn["frames"][-1], stills.sample(k, 0)["frames"][0]) and "set in motion" in drawn["name"]
    assert not torch.equal(drawn["frames"][0], open_dataset("synthetic", tiny_synth, "val", offset=3).sample(k, 3)[
        "frames"][0])
    train(cfg, progress=False)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["train_config"]["stills_split"] == "val"


def test_clips_written_to_disk_read_back_in_the_synthetic_layout_with_exact_backward_flow(tiny_synth, tmp_path, capsys):
    """`gsv data stills`: frames, labels, backward flow and validity as the synthetic set stores them; carrying frame
    t-1's labels along the stored flow gives frame t's labels wherever the flow is valid; a folder of someone else's
    files is refused and left as it was."""
    import json

    from gsvlib.cli import main
    from gsvlib.data.synthetic import load_snippet

    out = tmp_path / "clips"
    assert main(["data", "stills", "--root", str(tiny_synth), "--split", "val", "--count", "1", "--frames", "4",
                 "--out", str(out)]) == 0
    assert "1 of the" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["clips"] == 1 and meta["frames"] == 4 and len(meta["sources"]) == 1
    clip = load_snippet(out, "val", 0)
    labels, flow, valid = clip["labels"], clip["flow"], clip["valid"]
    assert clip["rgb"].shape[0] == labels.shape[0] == 4 and not valid[0].any() and valid[1:].mean() > 0.5
    h, w = labels.shape[1:]
    vv, uu = np.mgrid[0:h, 0:w]
    for t in range(1, 4):
        u = np.clip(np.round(uu + flow[t, ..., 0]), 0, w - 1).astype(int)
        v = np.clip(np.round(vv + flow[t, ..., 1]), 0, h - 1).astype(int)
        assert (labels[t - 1][v, u] == labels[t])[valid[t]].mean() > 0.999  # float16 storage rounds a few
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["data", "stills", "--root", str(tiny_synth), "--split", "val", "--out", str(tmp_path / "mine")]) == 2
    assert "did not write (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
