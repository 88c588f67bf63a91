"""Cityscapes video snippets in the official layout (the paper's main benchmark, sec. 4.1).

    ROOT/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png     30-frame snippets
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png               the annotated frame(s)

Labels are mapped from the 34 labelIds to the 19 trainIds (255 = ignore) with the official table. The annotated frame
of each snippet is read from the gtFine file name (the 20th frame in the official release, not assumed).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gsvlib.data.io import DatasetError
from gsvlib.data.labels import CITYSCAPES, CITYSCAPES_ID_TO_TRAINID
from gsvlib.data.snippets import Snippet, SnippetDataset, check_root

LABEL_RE = re.compile(r"^(?P<city>.+)_(?P<seq>\d+)_(?P<frame>\d+)_gtFine_labelIds\.png$")


def cityscapes_snippets(root: Path, split: str) -> list[Snippet]:
    labels = sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
    if not labels:
        raise DatasetError(f"no label files under {root / 'gtFine' / split}: expected "
                           f"gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png (the images alone cannot "
                           "be evaluated or trained on)")
    snippets = []
    for label in labels:
        m = LABEL_RE.match(label.name)
        if m is None:
            raise DatasetError(f"{label} does not follow <city>_<seq>_<frame>_gtFine_labelIds.png")
        city, seq, frame = m["city"], m["seq"], m["frame"]
        folder = root / "leftImg8bit_sequence" / split / label.parent.name
        frames = tuple(folder / f"{city}_{seq}_{f:0{len(frame)}d}_leftImg8bit.png" for f in range(int(frame) + 1))
        snippets.append(Snippet(f"{city}_{seq}_{frame}", frames, label))
    return snippets


class CityscapesSequences(SnippetDataset):
    """Samples {"frames": (i+1, 3, H, W) float in [0, 1], "label": (H, W) int64 trainIds, "name", "offset"}."""

    default_root = "data/cityscapes"  # where data/README.md places it
    table = CITYSCAPES
    layout = ("leftImg8bit_sequence/{split}", "gtFine/{split}")  # the folders a root holds, per split

    def __init__(self, root: str | Path, split: str = "val", offset: int | None = 0, max_offset: int = 4,
                 transform=None, missing: str = "error", span: tuple[float, float] = (0.0, 1.0)):
        if tuple(span) != (0.0, 1.0):
            raise ValueError(f"span cuts long sequences in time; Cityscapes-layout data comes in separate 30-frame "
                             f"snippets, so leave span at (0, 1) (got {tuple(span)})")
        self.root = check_root(root, *self.folders(split))
        super().__init__(cityscapes_snippets(self.root, split), offset, max_offset, transform, missing)

    def map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        train = CITYSCAPES_ID_TO_TRAINID[raw]
        if (train < 0).any():
            bad = sorted(set(np.unique(raw[train < 0]).tolist()))
            raise DatasetError(f"{path} holds label ids {bad} outside the Cityscapes labelIds 0..33; is it a "
                               "*_gtFine_labelIds.png (not trainIds, colour or instanceIds)?")
        return train.astype(np.uint8)
