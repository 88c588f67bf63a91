"""What the Cityscapes and CamVid loaders share: a labelled frame with the frames before it, read and checked.

A sample for keyframe offset i is the i + 1 frames (a - i, ..., a) ending at an annotated frame a, as in the paper's
protocol (sec. 4.1): the keyframe is a - i and frame a is scored. ``offset=None`` with ``max_offset=m`` draws i from
0..m per sample (training on random keyframe intervals 1..m+1). Labelled frames with fewer than i frames before them
(the start of a video) are left out; a frame missing in between is an error, or skipped with a warning.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from gsvlib.data.io import DatasetError, read_label, read_rgb
from gsvlib.data.labels import LabelTable

MISSING = ("error", "skip")


@dataclass(frozen=True)
class Snippet:
    name: str  # e.g. "aachen_000000_000019"
    frames: tuple[Path, ...]  # every frame up to and including the annotated one, oldest first
    label: Path


@dataclass(frozen=True)
class Video:
    """A whole video to stream frame by frame: iterating it reads (frame (3, H, W) float in [0, 1], label (H, W) int64
    or None) in order; ``labels`` maps a frame's index to a reader of its label map (0..C-1, 255 = ignore)."""

    name: str
    frames: tuple[Path, ...]
    labels: dict[int, Callable[[], np.ndarray]]

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for i, path in enumerate(self.frames):
            rgb = read_rgb(path)
            label = self.labels[i]() if i in self.labels else None
            if label is not None and label.shape != rgb.shape[:2]:
                raise DatasetError(f"the label of {path} is {label.shape[1]}x{label.shape[0]} but the frame is "
                                   f"{rgb.shape[1]}x{rgb.shape[0]}")
            yield frames_to_tensor([rgb])[0], None if label is None else torch.from_numpy(label.astype(np.int64))


def frames_to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 frames -> (T, 3, H, W) float in [0, 1], what the model takes (it normalises itself)."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255)


class SnippetDataset(Dataset):
    """Base of the video datasets: ``items`` of :class:`Snippet`, a label mapping, optional joint transform.

    A dataset is a subclass registered in :data:`gsvlib.data.DATASETS`. It sets ``table`` (its :class:`LabelTable`),
    takes ``(root, split, offset=0, max_offset=4, transform=None, missing="error", span=(0.0, 1.0))``, lists its
    snippets (each labelled frame with the frames before it, oldest first) for this ``__init__``, and implements
    ``map_labels`` (the label file's values -> 0..C-1, 255 = ignore). ``span`` keeps a time slice of long sequences;
    a dataset of separate snippets refuses anything but (0, 1). ``layout`` names the folders its root holds (with
    ``{split}``), so that a root of another layout is recognised.
    """

    table: LabelTable
    layout: tuple[str, ...] = ()

    @classmethod
    def folders(cls, split: str) -> list[str]:
        return [f.format(split=split) for f in cls.layout]

    @classmethod
    def fits(cls, root: str | Path, split: str) -> bool:
        """Whether ``root`` has this dataset's layout for ``split``."""
        return bool(cls.layout) and all((Path(root) / f).is_dir() for f in cls.folders(split))

    def __init__(self, snippets: list[Snippet], offset: int | None = 0, max_offset: int = 4,
                 transform: Callable | None = None, missing: str = "error"):
        if missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
        if offset is not None and offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if offset is None and max_offset < 0:
            raise ValueError(f"max_offset must be >= 0, got {max_offset}")
        self.offset = offset
        self.max_offset = max_offset
        self.transform = transform
        need = offset if offset is not None else max_offset
        self.items = []
        for s in snippets:
            if len(s.frames) <= need:
                continue  # too close to the start of its video for this offset
            absent = [p for p in s.frames[-need - 1:] if not p.is_file()]
            if absent:
                if missing == "error":
                    raise DatasetError(f"snippet {s.name}: {absent[0]} is missing. Add the missing frames, use a "
                                       "smaller offset, or (from Python) pass missing='skip' to leave such "
                                       "snippets out with a warning")
                warnings.warn(f"skipping snippet {s.name}: {absent[0]} is missing", stacklevel=2)
                continue
            self.items.append(s)
        if not self.items:
            raise DatasetError(f"no usable snippets: none has the {need} frame(s) before its labelled frame that "
                               f"offset {need} needs")

    def map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        raise NotImplementedError

    def read_label(self, path: Path) -> np.ndarray:
        """The label file at ``path`` as (H, W) uint8 classes, 255 = ignore."""
        return self.map_labels(read_label(path), path)

    def videos(self) -> list[Video]:
        """The snippets joined into whole videos to stream (adaptive keyframes need them): snippets that start at the
        same frame are one video (a CamVid run), with every labelled frame of theirs; a Cityscapes snippet is a video
        of its own, labelled at its annotated frame."""
        groups: dict[Path, list[Snippet]] = {}
        for s in self.items:
            groups.setdefault(s.frames[0], []).append(s)
        out = []
        for group in groups.values():
            frames = max(group, key=lambda s: len(s.frames)).frames
            absent = next((p for p in frames if not p.is_file()), None)
            if absent is not None:
                raise DatasetError(f"{absent} is missing: streaming a whole video needs every frame from its first "
                                   f"one ({frames[0].name}); add the missing frames or evaluate with the protocol "
                                   "(gsv eval without --policy), which needs only the frames before each label")
            out.append(Video(group[0].name, frames, {len(s.frames) - 1: partial(self.read_label, s.label)
                                                     for s in group}))
        return out

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        offset = self.offset if self.offset is not None else random.randint(0, self.max_offset)
        sample = self.sample(index, offset)
        return self.transform(sample) if self.transform is not None else sample

    def sample(self, index: int, offset: int) -> dict:
        """Snippet ``index`` with keyframe offset ``offset`` (its last ``offset + 1`` frames), read and checked,
        untransformed: {"frames": (offset+1, 3, H, W) float in [0, 1], "label": (H, W) int64, "name", "offset"}."""
        s = self.items[index]
        paths = s.frames[len(s.frames) - 1 - offset:]
        frames = [read_rgb(p) for p in paths]
        for p, f in zip(paths, frames):
            if f.shape != frames[-1].shape:
                raise DatasetError(f"{p} is {f.shape[1]}x{f.shape[0]} but {paths[-1]} is "
                                   f"{frames[-1].shape[1]}x{frames[-1].shape[0]}: frames of one snippet must share a size")
        label = self.read_label(s.label)
        if label.shape != frames[-1].shape[:2]:
            raise DatasetError(f"{s.label} is {label.shape[1]}x{label.shape[0]} but its frame {paths[-1]} is "
                               f"{frames[-1].shape[1]}x{frames[-1].shape[0]}")
        return {"frames": frames_to_tensor(frames), "label": torch.from_numpy(label.astype(np.int64)), "name": s.name,
                "offset": offset}


def check_root(root: str | Path, *required: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder; see data/README.md for the layout")
    for sub in required:
        if not (root / sub).is_dir():
            raise DatasetError(f"{root / sub} is missing: expected layout described in data/README.md")
    return root
