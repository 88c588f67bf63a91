"""Datasets: Cityscapes sequences, CamVid, the built-in synthetic street video; label tables and transforms."""
from __future__ import annotations

from pathlib import Path

from gsvlib.data.camvid import CamVid
from gsvlib.data.cityscapes import CityscapesSequences
from gsvlib.data.io import DatasetError
from gsvlib.data.labels import CAMVID, CITYSCAPES, IGNORE, TABLES, LabelTable
from gsvlib.data.snippets import SnippetDataset
from gsvlib.data.transforms import RandomScaleCropFlip

DATASETS = {"cityscapes": CityscapesSequences, "camvid": CamVid, "synthetic": CityscapesSequences}


def open_dataset(name: str, root: str | Path, split: str, span: tuple[float, float] = (0.0, 1.0),
                 **kwargs) -> SnippetDataset:
    """The dataset ``name`` ("cityscapes", "camvid" or "synthetic", which uses the Cityscapes layout) at ``root``;
    ``span`` cuts CamVid's sequences in time (see :class:`CamVid`)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    if name == "camvid":
        return CamVid(root, split, span=tuple(span), **kwargs)
    if tuple(span) != (0.0, 1.0):
        raise ValueError(f"span cuts the sequences of a CamVid-layout run in time; {name} comes in separate snippets, "
                         f"so leave span at (0, 1) (got {tuple(span)})")
    return DATASETS[name](root, split, **kwargs)


__all__ = ["CamVid", "CityscapesSequences", "DatasetError", "CAMVID", "CITYSCAPES", "IGNORE", "TABLES", "LabelTable",
           "SnippetDataset", "RandomScaleCropFlip", "DATASETS", "open_dataset"]
