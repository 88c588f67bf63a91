"""Datasets in their exact official layouts, written as tiny PNG fixtures; the synthetic generator; transforms."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gsvlib.data import CamVid, CityscapesSequences, DatasetError, RandomScaleCropFlip, open_dataset
from gsvlib.data.io import encode_png, read_rgb, write_png
from gsvlib.data.labels import CITYSCAPES_LABELS, IGNORE
from gsvlib.data.synthetic import SynthConfig, generate, load_analysis, render_snippet

SHARED_CAMVID = Path(__file__).resolve().parents[2] / "shared" / "camvid"


def frame_png(path: Path, value: int, size=(8, 12)):
    """A frame whose red channel encodes ``value`` (to check ordering)."""
    img = np.zeros((*size, 3), np.uint8)
    img[..., 0] = value
    write_png(path, img)


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / "cityscapes"
    for f in range(15, 20):  # frames 15..19 of snippet 000007; 19 is annotated
        frame_png(root / f"leftImg8bit_sequence/val/aachen/aachen_000007_{f:06d}_leftImg8bit.png", f)
    label = np.arange(8 * 12, dtype=np.uint8).reshape(8, 12) % 34  # every labelId 0..33 appears
    write_png(root / "gtFine/val/aachen/aachen_000007_000019_gtFine_labelIds.png", label)
    return root


def test_read_rgb_gives_rgb_bytes_whatever_the_png_stores(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack((rgb, np.full((6, 5), 9, np.uint8)))).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(rgb).quantize(4).save(tmp_path / "palette.png")
    assert np.array_equal(read_rgb(tmp_path / "rgb.png"), rgb) and np.array_equal(read_rgb(tmp_path / "rgba.png"), rgb)
    assert np.array_equal(read_rgb(tmp_path / "grey.png"), np.repeat(rgb[..., :1], 3, axis=-1))
    palette = read_rgb(tmp_path / "palette.png")
    assert palette.shape == (6, 5, 3) and palette.dtype == np.uint8
    assert np.array_equal(palette, np.asarray(Image.open(tmp_path / "palette.png").convert("RGB")))


def test_png_encoder_round_trips_through_pillow_at_every_shape_it_takes(tmp_path):

    rng = np.random.default_rng(0)
    street = render_snippet(0, 0, (37, 53), frames=1)
    for array in (next(street)[0], rng.integers(0, 256, (5, 7), dtype=np.uint8),
                  rng.integers(0, 256, (9, 4, 4), dtype=np.uint8), np.full((1, 1, 3), 255, np.uint8)):
        write_png(tmp_path / "x.png", array)
        back = Image.open(tmp_path / "x.png")
        assert back.mode == {1: "L", 3: "RGB", 4: "RGBA"}[1 if array.ndim == 2 else array.shape[-1]]
        assert np.array_equal(np.asarray(back), array)
    assert np.array_equal(read_rgb(tmp_path / "x.png"), np.full((1, 1, 3), 255, np.uint8))
    for bad in (np.zeros((4, 4), np.uint16), np.zeros((4, 4, 2), np.uint8), np.zeros(4, np.uint8)):
        with pytest.raises(ValueError, match="uint8"):
            encode_png(bad)


def test_cityscapes_discovers_snippet_and_orders_frames_for_offsets_0_to_4(cityscapes_root):
    for i in range(5):
        ds = CityscapesSequences(cityscapes_root, "val", offset=i)
        assert len(ds) == 1
        s = ds[0]
        assert s["name"] == "aachen_000007_000019" and s["offset"] == i
        assert s["frames"].shape == (i + 1, 3, 8, 12)
        values = (s["frames"][:, 0, 0, 0] * 255).round().long().tolist()
        assert values == list(range(19 - i, 20))  # keyframe 20-i first, annotated frame last


def test_cityscapes_maps_every_label_id_to_its_train_id(cityscapes_root):
    label = CityscapesSequences(cityscapes_root, "val")[0]["label"].numpy()
    ids = np.arange(8 * 12).reshape(8, 12) % 34
    table = {i: t for i, _, t, _ in CITYSCAPES_LABELS}
    assert all(label[y, x] == table[ids[y, x]] for y in range(8) for x in range(12))
    assert table[7] == 0 and table[26] == 13 and table[33] == 18 and table[0] == IGNORE
    assert sorted(set(label.ravel()) - {IGNORE}) == list(range(19))


def test_cityscapes_annotated_frame_is_read_from_the_label_name(tmp_path):
    root = tmp_path / "cs"
    for f in range(3, 6):
        frame_png(root / f"leftImg8bit_sequence/train/bonn/bonn_000001_{f:06d}_leftImg8bit.png", f)
    write_png(root / "gtFine/train/bonn/bonn_000001_000005_gtFine_labelIds.png", np.full((8, 12), 7, np.uint8))
    s = CityscapesSequences(root, "train", offset=2)[0]
    assert (s["frames"][:, 0, 0, 0] * 255).round().long().tolist() == [3, 4, 5]


def test_cityscapes_random_offset_for_training(cityscapes_root):
    ds = CityscapesSequences(cityscapes_root, "val", offset=None, max_offset=4)
    assert {ds[0]["offset"] for _ in range(40)} == {0, 1, 2, 3, 4}


def test_label_ids_outside_the_table_name_the_file(cityscapes_root):
    path = cityscapes_root / "gtFine/val/aachen/aachen_000007_000019_gtFine_labelIds.png"
    write_png(path, np.full((8, 12), 40, np.uint8))
    with pytest.raises(DatasetError, match=r"aachen_000007_000019_gtFine_labelIds.png holds label ids \[40\]"):
        CityscapesSequences(cityscapes_root, "val")[0]


def test_missing_root_and_images_without_labels(tmp_path, cityscapes_root):
    with pytest.raises(DatasetError, match="does not exist"):
        CityscapesSequences(tmp_path / "nowhere", "val")
    (cityscapes_root / "gtFine/val/aachen/aachen_000007_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match="no label files under .*gtFine/val"):
        CityscapesSequences(cityscapes_root, "val")


def test_missing_in_between_frame_is_an_error_or_skipped_with_a_warning(cityscapes_root):
    missing = cityscapes_root / "leftImg8bit_sequence/val/aachen/aachen_000007_000017_leftImg8bit.png"
    missing.unlink()
    assert len(CityscapesSequences(cityscapes_root, "val", offset=1)) == 1  # frames 18, 19 still there
    with pytest.raises(DatasetError, match="aachen_000007_000017_leftImg8bit.png is missing.*missing='skip'"):
        CityscapesSequences(cityscapes_root, "val", offset=2)
    with pytest.warns(UserWarning, match="skipping snippet aachen_000007_000019"), \
            pytest.raises(DatasetError, match="no usable snippets"):
        CityscapesSequences(cityscapes_root, "val", offset=2, missing="skip")


def test_truncated_png_and_frames_of_different_sizes(cityscapes_root):
    frame = cityscapes_root / "leftImg8bit_sequence/val/aachen/aachen_000007_000018_leftImg8bit.png"
    frame.write_bytes(frame.read_bytes()[:40])
    with pytest.raises(DatasetError, match="aachen_000007_000018_leftImg8bit.png could not be read"):
        CityscapesSequences(cityscapes_root, "val", offset=1)[0]
    frame_png(frame, 18, size=(8, 16))
    with pytest.raises(DatasetError, match="000018_leftImg8bit.png is 16x8 but .*000019_leftImg8bit.png is 12x8"):
        CityscapesSequences(cityscapes_root, "val", offset=1)[0]


@pytest.fixture
def camvid_root(tmp_path):
    root = tmp_path / "camvid"
    for n in (7959, 7961, 7963, 7965, 7967):  # 15 Hz video: every other source frame
        frame_png(root / f"val/0016E5_{n:05d}.png", n % 256)
        write_png(root / f"valannot/0016E5_{n:05d}.png", np.array([[0, 3, 10, 11]] * 8, np.uint8).repeat(3, 1))
    for n in (0, 30):
        frame_png(root / f"train/Seq05VD_f{n:05d}.png", n)
        write_png(root / f"trainannot/Seq05VD_f{n:05d}.png", np.full((8, 12), 4, np.uint8))
    return root


def test_camvid_orders_frames_and_maps_void_to_ignore(camvid_root):
    ds = CamVid(camvid_root, "val", offset=2)
    assert [s.name for s in ds.items] == ["0016E5_07963", "0016E5_07965", "0016E5_07967"]  # the first two lack 2
    s = ds[0]
    assert (s["frames"][:, 0, 0, 0] * 255).round().long().tolist() == [n % 256 for n in (7959, 7961, 7963)]
    assert s["label"][0, ::3].tolist() == [0, 3, 10, IGNORE]
    assert len(CamVid(camvid_root, "train")) == 2  # 1 Hz split, image-only


def test_camvid_gap_in_a_sequence_is_reported(camvid_root):
    (camvid_root / "val/0016E5_07961.png").unlink()
    (camvid_root / "valannot/0016E5_07961.png").unlink()
    with pytest.raises(DatasetError, match="snippet 0016E5_07963: .*val/0016E5_07961.png is missing"):
        CamVid(camvid_root, "val", offset=2)
    with pytest.warns(UserWarning, match="0016E5_07961.png is missing"):
        assert [s.name for s in CamVid(camvid_root, "val", offset=2, missing="skip").items] == ["0016E5_07967"]


def test_camvid_span_cuts_a_run_in_time_without_snippets_crossing_the_cut(camvid_root):
    first = CamVid(camvid_root, "val", offset=0, span=(0, 0.6))  # frames 7959, 7961, 7963
    last = CamVid(camvid_root, "val", offset=1, span=(0.6, 1.0))  # frames 7965, 7967
    assert [s.name for s in first.items] == ["0016E5_07959", "0016E5_07961", "0016E5_07963"]
    assert [s.name for s in last.items] == ["0016E5_07967"]  # 7965 would need 7963, across the cut
    assert all("07963" not in p.name for s in last.items for p in s.frames)
    with pytest.raises(ValueError, match="span"):
        CamVid(camvid_root, "val", span=(0.5, 0.5))


def test_camvid_bad_labels_and_layout(camvid_root):
    write_png(camvid_root / "valannot/0016E5_07959.png", np.full((8, 12), 12, np.uint8))
    with pytest.raises(DatasetError, match=r"0016E5_07959.png holds label values \[12\]"):
        CamVid(camvid_root, "val")[0]
    with pytest.raises(DatasetError, match="testannot is missing"):
        (camvid_root / "test").mkdir()
        CamVid(camvid_root, "test")


@pytest.mark.skipif(not SHARED_CAMVID.is_dir(), reason=f"CamVid not present at {SHARED_CAMVID} (only on CI and "
                                                         "developer machines; see data/README.md)")
def test_shared_camvid_loads_with_expected_counts():
    assert [len(CamVid(SHARED_CAMVID, split)) for split in ("train", "val", "test")] == [367, 51, 233]
    video = CamVid(SHARED_CAMVID, "val", offset=4)
    assert len(video) == 47  # every labelled 15 Hz frame with 4 before it
    s = video[0]
    assert s["frames"].shape == (5, 3, 360, 480) and s["label"].shape == (360, 480)
    assert set(s["label"].unique().tolist()) <= set(range(11)) | {IGNORE}
    train, held_out = CamVid(SHARED_CAMVID, "val", span=(0, 2 / 3)), CamVid(SHARED_CAMVID, "val", offset=4, span=(2 / 3, 1))
    assert len(train) == 34 and len(held_out) == 13  # 51 frames: 34 | 17, of which 13 have 4 frames before them


def test_transform_keeps_frames_labels_and_flow_aligned():
    frames = torch.zeros(3, 3, 64, 96)
    label = torch.zeros(64, 96, dtype=torch.long)
    frames[:, 1, 20:30, 60:76] = 1.0  # a green marker ...
    label[20:30, 60:76] = 5  # ... and its label
    flow = torch.zeros(3, 2, 64, 96)
    flow[:, 0], flow[:, 1] = 4.0, -2.0
    t = RandomScaleCropFlip(rng=__import__("random").Random(0))
    for _ in range(20):
        out = t({"frames": frames, "label": label, "flow": flow, "valid": label == 5})  # flow known on the marker
        assert out["frames"].shape[-2:] == out["label"].shape == out["valid"].shape == (48, 72)
        marker = out["frames"][-1, 1] > 0.5
        labelled = out["label"] == 5
        assert torch.equal(out["valid"], labelled)  # resized, cropped, padded (not valid) and flipped alike
        if labelled.sum() > 4:
            iou = (marker & labelled).sum() / (marker | labelled).sum()
            assert iou > 0.8
        inside = out["label"] != IGNORE
        fx = out["flow"][0, 0][inside]
        assert torch.allclose(fx.abs(), fx.abs()[0].expand_as(fx), atol=1e-4)  # one scale for the whole sample
        assert ((fx > 0).all() or (fx < 0).all()) and (out["flow"][0, 1][inside] < 0).all()  # flip negates x only


def test_synthetic_is_deterministic_per_seed():
    a = list(render_snippet(3, 0, (64, 128), 3))
    b = list(render_snippet(3, 0, (64, 128), 3))
    c = list(render_snippet(4, 0, (64, 128), 3))
    assert all(np.array_equal(x, y) for fa, fb in zip(a, b) for x, y in zip(fa, fb))
    assert not np.array_equal(a[1][0], c[1][0])


def test_synthetic_flow_is_exact_outside_dis_occlusions():
    frames = list(render_snippet(0, 1, (128, 256), 8))
    h, w = 128, 256
    vv, uu = np.mgrid[0:h, 0:w]
    for (_, prev, _, _), (rgb, labels, flow, valid) in zip(frames, frames[1:]):
        assert valid.mean() > 0.9 and np.abs(flow).max() > 1  # the camera moves
        u = np.clip(np.round(uu + flow[..., 0]), 0, w - 1).astype(int)
        v = np.clip(np.round(vv + flow[..., 1]), 0, h - 1).astype(int)
        assert (prev[v, u] == labels)[valid].mean() > 0.99


def test_generated_set_loads_with_the_cityscapes_loader(tmp_path):
    cfg = SynthConfig(snippets=1, val_snippets=1, size=(64, 128), frames=6, annotated=5, seed=1)
    meta = generate(tmp_path / "synth", cfg, progress=False)
    assert meta["seconds"] > 0 and generate(tmp_path / "synth", cfg, progress=False) == meta  # second call: no-op
    for split in ("train", "val"):
        ds = CityscapesSequences(tmp_path / "synth", split, offset=4)
        assert len(ds) == (2 if split == "train" else 1)  # train: every frame with 4 before it is labelled
        s = ds[len(ds) - 1]
        assert s["frames"].shape == (5, 3, 64, 128)
        seq = 0 if split == "train" else 1
        ana = load_analysis(tmp_path / "synth", split, seq)
        assert ana["flow"].shape == (6, 64, 128, 2) and not ana["valid"][0].any()
        assert np.array_equal(s["label"].numpy(), ana["labels"][5])  # labelIds PNG maps back to the trainIds
    with pytest.raises(DatasetError, match="other settings"):
        generate(tmp_path / "synth", SynthConfig(snippets=2, size=(64, 128), frames=6, annotated=5), progress=False)
    with pytest.raises(ValueError, match="divisible by 8"):
        generate(tmp_path / "x", SynthConfig(size=(60, 128)), progress=False)


def test_force_regenerates_exactly_the_requested_set_and_refuses_a_foreign_folder(tmp_path):
    from gsvlib.data.synthetic import SynthConfig, generate

    small = dict(size=(32, 64), frames=3, annotated=2)
    generate(tmp_path / "s", SynthConfig(snippets=3, val_snippets=2, **small), progress=False)
    meta = generate(tmp_path / "s", SynthConfig(snippets=1, val_snippets=1, **small), force=True, progress=False)
    assert meta["snippets"] == 1
    train = {p.name.split("_")[1] for p in (tmp_path / "s" / "leftImg8bit_sequence" / "train" / "synth").iterdir()}
    val = {p.name.split("_")[1] for p in (tmp_path / "s" / "leftImg8bit_sequence" / "val" / "synth").iterdir()}
    assert train == {"000000"} and val == {"000001"}  # no snippet of the old, larger set is left: no train/val leak
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing left beside it
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds files that gsv data synth did not write \\(notes.txt\\)"):
        generate(tmp_path / "mine", SynthConfig(snippets=1, val_snippets=1, **small), progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_whole_videos_of_a_camvid_run_and_of_a_cityscapes_snippet(camvid_root, cityscapes_root):
    (run,) = CamVid(camvid_root, "val").videos()
    assert [p.name for p in run.frames] == [f"0016E5_{n:05d}.png" for n in (7959, 7961, 7963, 7965, 7967)]
    read = list(run)
    assert [int(round(f[0, 0, 0].item() * 255)) for f, _ in read] == [n % 256 for n in (7959, 7961, 7963, 7965, 7967)]
    assert all(label[0, ::3].tolist() == [0, 3, 10, IGNORE] for _, label in read)
    (tail,) = CamVid(camvid_root, "val", span=(0.6, 1.0)).videos()
    assert [p.name for p in tail.frames] == ["0016E5_07965.png", "0016E5_07967.png"] and sorted(tail.labels) == [0, 1]
    with pytest.raises(DatasetError, match="aachen_000007_000000_leftImg8bit.png is missing: streaming a whole video"):
        CityscapesSequences(cityscapes_root, "val").videos()  # the fixture holds frames 15..19 only
    for f in range(15):
        frame_png(cityscapes_root / f"leftImg8bit_sequence/val/aachen/aachen_000007_{f:06d}_leftImg8bit.png", f)
    (snippet,) = CityscapesSequences(cityscapes_root, "val").videos()
    assert len(snippet) == 20 and list(snippet.labels) == [19]
    assert [label is None for _, label in snippet] == [True] * 19 + [False]


def test_a_root_of_another_layout_is_named_with_the_dataset_it_fits(tmp_path):
    for folder in ("val", "valannot"):
        (tmp_path / folder).mkdir()
    with pytest.raises(DatasetError, match=r"has the layout of camvid: pass --dataset camvid"):
        open_dataset("synthetic", tmp_path, "val")
    with pytest.raises(DatasetError, match=r"leftImg8bit_sequence/val is missing"):  # fits nothing: the folder named
        open_dataset("cityscapes", tmp_path / "val", "val")
