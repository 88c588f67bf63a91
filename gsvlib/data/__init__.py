"""Datasets: Cityscapes sequences, CamVid, the built-in synthetic street video; label tables and transforms."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gsvlib.data.camvid import CamVid
from gsvlib.data.cityscapes import CityscapesSequences
from gsvlib.data.io import DatasetError
from gsvlib.data.labels import CAMVID, CITYSCAPES, IGNORE, LabelTable
from gsvlib.data.snippets import SnippetDataset, Video
from gsvlib.data.synthetic import SyntheticStreet, SyntheticStreetCamVid
from gsvlib.data.transforms import RandomScaleCropFlip

# The registry of datasets (name -> a SnippetDataset subclass): the CLI's choices and every loader read it.
# "synthetic" is the built-in street video, written in the Cityscapes layout (read by the Cityscapes reader);
# "synthetic-camvid" is the same set with its labels in CamVid's classes.
DATASETS: dict[str, type[SnippetDataset]] = {"cityscapes": CityscapesSequences, "camvid": CamVid,
                                             "synthetic": SyntheticStreet, "synthetic-camvid": SyntheticStreetCamVid}


def open_dataset(name: str, root: str | Path, split: str, span: tuple[float, float] = (0.0, 1.0),
                 **kwargs) -> SnippetDataset:
    """The dataset ``name`` (a key of :data:`DATASETS`) at ``root``; ``span`` cuts long sequences in time (CamVid)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    if not DATASETS[name].fits(root, split):
        fits = [other for other, cls in DATASETS.items() if cls.fits(root, split)]
        if fits:
            raise DatasetError(f"{root} does not hold {name}'s folders for split {split!r} "
                               f"({', '.join(DATASETS[name].folders(split))}) but has the layout of "
                               f"{' or '.join(fits)}: pass --dataset {fits[0] if len(fits) == 1 else 'with one of them'}"
                               f" (or the root of {name} data)")
    return DATASETS[name](root, split, span=tuple(span), **kwargs)


@dataclass(frozen=True)
class DataSpec:
    """Which frames a command reads: dataset ``dataset`` (a key of :data:`DATASETS`) at ``root``, split ``split``,
    fraction ``span`` of each sequence in time. Made once from the options and passed along; :meth:`open` reads it."""

    dataset: str
    root: str | Path
    split: str = "val"
    span: tuple[float, float] = (0.0, 1.0)

    def open(self, **kwargs) -> SnippetDataset:
        return open_dataset(self.dataset, self.root, self.split, self.span, **kwargs)

    def __str__(self) -> str:
        a, b = self.span
        return f"{self.dataset} {self.split}/ at {self.root}" + ("" if (a, b) == (0, 1) else f", span {a:g}-{b:g}")


__all__ = ["DataSpec", "CamVid", "CityscapesSequences", "DatasetError", "CAMVID", "CITYSCAPES", "IGNORE", "LabelTable",
           "SnippetDataset", "SyntheticStreet", "SyntheticStreetCamVid", "Video", "RandomScaleCropFlip", "DATASETS",
           "open_dataset"]
