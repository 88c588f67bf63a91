"""CamVid, 11 classes, in the layout of SegNet's release (used by most repositories; the paper's Table 3).

    ROOT/<split>/<seq>_<frame>.png        frames (train, val, test); may also hold unlabelled in-between frames
    ROOT/<split>annot/<seq>_<frame>.png   labels 0..10, 11 = void (-> 255, ignored)

Frames of one sequence (the name before the last "_") are ordered by frame number (digits of the part after it,
e.g. 0016E5_07959 -> 7959, Seq05VD_f00000 -> 0). A sample ends at a labelled frame and holds the ``offset`` frames
before it in that order. Where frames are missing in between (a step larger than the sequence's usual step between
consecutive frames), the snippet is an error or, with ``missing="skip"``, left out with a warning.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from gsvlib.data.io import DatasetError
from gsvlib.data.labels import CAMVID, CAMVID_VOID, IGNORE
from gsvlib.data.snippets import Snippet, SnippetDataset, check_root

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The 15 Hz val/ run split in time (fractions of each sequence): the propagation trains on frames 0-27, frames 28-32
# are a gap that nothing uses (so no scored frame has a training neighbour), frames 33-50 are held out (the protocol
# scores 37-50, each with the 4 frames before it).
PROPAGATION_TRAIN = (0.0, 0.55)
HELD_OUT = (0.65, 1.0)
SPANS = {"propagation-train": PROPAGATION_TRAIN, "held-out": HELD_OUT}  # their names for `--span`


def frame_number(path: Path) -> tuple[str, int]:
    seq, _, frame = path.stem.rpartition("_")
    digits = re.sub(r"\D", "", frame)
    if not seq or not digits:
        raise DatasetError(f"{path} is not named <sequence>_<frame number>.png")
    return seq, int(digits)


def camvid_snippets(root: Path, split: str, span: tuple[float, float] = (0.0, 1.0)) -> list[Snippet]:
    frame_dir, label_dir = root / split, root / f"{split}annot"
    frames = [p for p in sorted(frame_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    labels = {p.stem: p for p in sorted(label_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not frames:
        raise DatasetError(f"no frames in {frame_dir}: expected <seq>_<frame>.png images")
    if not labels:
        raise DatasetError(f"no labels in {label_dir}: expected one <seq>_<frame>.png label map per labelled frame")
    orphans = sorted(set(labels) - {p.stem for p in frames})
    if orphans:
        raise DatasetError(f"{label_dir / orphans[0]}.png has no frame {frame_dir / orphans[0]}.png "
                           f"({len(orphans)} label(s) without a frame)")
    sequences: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for p in frames:
        seq, n = frame_number(p)
        sequences[seq].append((n, p))
    snippets = []
    for seq, items in sorted(sequences.items()):
        items.sort()
        n = len(items)
        items = items[round(span[0] * n): round(span[1] * n)]  # a time slice: nothing before or after it is used
        if not items:
            continue
        numbers = [n for n, _ in items]
        step = Counter(b - a for a, b in zip(numbers, numbers[1:])).most_common(1)[0][0] if len(items) > 1 else 1
        by_number = dict(items)
        for n, p in items:
            if p.stem not in labels:
                continue
            # the frames before p at the sequence's step, back to its first frame; one missing in between gets the
            # name it should have, so that asking for it names the file
            frame = p.stem.rpartition("_")[2]
            prefix, width = re.sub(r"\d+$", "", frame), len(re.sub(r"\D", "", frame))
            run = [by_number.get(m, frame_dir / f"{seq}_{prefix}{m:0{width}d}{p.suffix}")
                   for m in range(n, numbers[0] - 1, -step)]
            snippets.append(Snippet(p.stem, tuple(run[::-1]), labels[p.stem]))
    return snippets


class CamVid(SnippetDataset):
    """Samples {"frames": (i+1, 3, H, W) float in [0, 1], "label": (H, W) int64 in 0..10 or 255, "name", "offset"}.

    ``split`` is "train", "val" or "test" (any folder name with its "<split>annot" twin works). In the SegNet release
    only val/ is video at a usable rate (15 Hz); train/ and test/ are 1 Hz, so use them with ``offset=0``.
    ``span=(a, b)`` keeps the frames from fraction a to b of each sequence in time, e.g. ``PROPAGATION_TRAIN`` to
    train and ``HELD_OUT`` to evaluate on one run: no snippet reaches across a cut.
    """

    default_root = "data/camvid"  # where data/README.md places it
    table = CAMVID
    layout = ("{split}", "{split}annot")  # the folders a root holds, per split

    def __init__(self, root: str | Path, split: str = "val", offset: int | None = 0, max_offset: int = 4,
                 transform=None, missing: str = "error", span: tuple[float, float] = (0.0, 1.0)):
        if not 0 <= span[0] < span[1] <= 1:
            raise ValueError(f"span must be fractions (a, b) with 0 <= a < b <= 1, got {span}")
        self.root = check_root(root, *self.folders(split))
        super().__init__(camvid_snippets(self.root, split, span), offset, max_offset, transform, missing)

    def map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.max(initial=0) > CAMVID_VOID:
            bad = sorted(v for v in np.unique(raw).tolist() if v > CAMVID_VOID)
            raise DatasetError(f"{path} holds label values {bad}; CamVid labels are 0..10 with 11 = void "
                               "(colour-coded labels must be converted to ids first)")
        return np.where(raw == CAMVID_VOID, IGNORE, raw).astype(np.uint8)
