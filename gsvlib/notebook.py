"""What every notebook starts with: one call that opens the footage it looks at and the model that segments it.

``open_footage("camvid", ...)`` gives the held-out end of CamVid's 15 Hz val/ run (``HELD_OUT``: every frame
labelled, five frames after the last one the propagation trained on) with the committed CamVid weights. Where that
data or those weights are missing it says so and falls back to the built-in synthetic street video with the model of
``make tour`` (generated and trained briefly, with progress bars, when missing). Both come as one :class:`Footage`,
so a notebook is written once.
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gsvlib.checkpoint import PARTS, load_model, require_trained
from gsvlib.data import CamVid
from gsvlib.data.camvid import HELD_OUT
from gsvlib.data.io import read_label, read_rgb
from gsvlib.data.labels import CITYSCAPES, LabelTable
from gsvlib.data.snippets import frames_to_tensor
from gsvlib.data.synthetic import SynthConfig, first_val_snippet, load_snippet, scored_labels
from gsvlib.models.gsvnet import GSVNet
from gsvlib.tour import MODEL, TourConfig, key_scale, prepare

FOOTAGE = ("camvid", "synthetic")
PARAMETERS_CELL = "# Parameters (papermill -p NAME VALUE)"  # the first line of every notebook's parameters cell


def check_parameters(namespace: dict) -> None:
    """Refuse papermill parameters whose type differs from their default's (``-p iterations ten``, ``-p height
    256.5``): the notebook would fail much later with a traceback far from the cause. The defaults are read from the
    parameters cell among the cells this kernel ran (IPython's ``In``); a whole number passes where a float is the
    default."""
    cells = [c for c in namespace.get("In", []) if c.startswith(PARAMETERS_CELL)]
    if not cells:
        return
    wrong = []
    for node in ast.parse(cells[-1]).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name, default = node.targets[0].id, ast.literal_eval(node.value)
        value = namespace.get(name)
        allowed = (int, float) if type(default) is float else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, allowed):
            wrong.append(f"{name} = {value!r} should be {_KIND[type(default)]} like its default {default!r}")
    if wrong:
        raise TypeError("notebook parameters of the wrong type: " + "; ".join(wrong) + " (papermill: -p NAME VALUE "
                        "reads numbers and True/False, -r NAME VALUE keeps text as it is)")


_KIND = {bool: "True or False", int: "a whole number", float: "a number", str: "text", list: "a list",
         dict: "a dict", type(None): "None"}


@dataclass
class Footage:
    """A labelled video clip and the trained GSVNet that segments it."""

    name: str  # what the pictures show, for titles
    dataset: str  # "camvid" or "synthetic"
    model: GSVNet
    table: LabelTable
    frames: torch.Tensor  # (T, 3, H, W) float in [0, 1], H and W divisible by 32
    labels: np.ndarray  # (T, H, W) uint8 ground truth of every frame, 255 = ignore
    key_scale: float  # the keyframe scale the model was evaluated with
    flow: np.ndarray | None = None  # (T, H, W, 2) exact backward flow (x, y) in pixels: synthetic only
    valid: np.ndarray | None = None  # (T, H, W) bool, False where dis-occluded: synthetic only

    @property
    def rgb(self) -> np.ndarray:
        """(T, H, W, 3) uint8 frames, for pictures."""
        return (self.frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()

    def __len__(self) -> int:
        return len(self.frames)

    def figure_dir(self, figures: str | Path) -> Path:
        """Where a notebook exports this footage's pictures: ``figures/camvid`` for real footage, else ``figures``."""
        return Path(figures) / "camvid" if self.dataset == "camvid" else Path(figures)


def open_footage(dataset: str = "camvid", camvid_root: str | Path = "../../shared/camvid",
                 camvid_weights: str | Path = "../weights/camvid_swiftnet_gsvnet.pt",
                 tour: TourConfig | None = None, progress: bool = True) -> Footage:
    """The clip a notebook studies: CamVid's held-out 15 Hz frames, or a synthetic validation snippet.

    ``dataset="camvid"`` falls back to the synthetic set (with a printed reason) when ``camvid_root`` or
    ``camvid_weights`` is missing. ``tour`` says where the synthetic set and its trained runs live (and their size).
    """
    if dataset not in FOOTAGE:
        raise ValueError(f"dataset must be one of {FOOTAGE}, got {dataset!r}")
    if dataset == "camvid":
        missing = [str(p) for p in (Path(camvid_root), Path(camvid_weights)) if not Path(p).exists()]
        if not missing:
            return _camvid(Path(camvid_root), Path(camvid_weights))
        print(f"CamVid footage unavailable ({', '.join(missing)} not found; see data/README.md): "
              "showing the synthetic street video instead")
    return _synthetic(tour or TourConfig(), progress)


def _gsvnet(weights: Path):
    """The model of ``weights``, refused unless every part of GSVNet in it was trained: the notebooks show it as
    GSVNet."""
    model, ckpt = load_model(weights)
    require_trained(ckpt, weights, PARTS, "a notebook showing GSVNet")
    return model


def _camvid(root: Path, weights: Path) -> Footage:
    model = _gsvnet(weights)
    dataset = CamVid(root, "val", span=HELD_OUT)
    held_out = dataset.items  # the labelled frames in time order, one per item
    frames = [read_rgb(s.frames[-1]) for s in held_out]
    labels = [dataset.map_labels(read_label(s.label), s.label) for s in held_out]
    h, w = frames[0].shape[:2]
    crop = (h // 32 * 32, w // 32 * 32)  # 360x480 -> 352x480: the bottom rows go, every pixel stays where it was
    seq = held_out[0].name.rpartition("_")[0]
    return Footage(f"CamVid {seq} {held_out[0].name.rpartition('_')[2]}-{held_out[-1].name.rpartition('_')[2]} "
                   "(held out, 15 Hz)", "camvid", model.eval(), CamVid.table,
                   frames_to_tensor([f[: crop[0], : crop[1]] for f in frames]),
                   np.stack([lab[: crop[0], : crop[1]] for lab in labels]), model.config.key_scale)


def _synthetic(tour: TourConfig, progress: bool) -> Footage:
    paths = prepare(tour, progress=progress)  # instant when `make tour` has run
    model = _gsvnet(paths[MODEL])
    seq = first_val_snippet(tour.data)
    snippet = load_snippet(tour.data, "val", seq)
    return Footage(f"synthetic street, validation snippet {seq}", "synthetic", model.eval(), CITYSCAPES,
                   snippet["frames"], scored_labels(snippet["labels"]), key_scale(tour) or model.config.key_scale,
                   snippet["flow"], snippet["valid"])


def tour_config(root: str, runs: str, figures: str, snippets: int, val_snippets: int, height: int, width: int,
                keyframe_iterations: int, gsv_iterations: int, batch_size: int, seed: int) -> TourConfig:
    """The :class:`TourConfig` of a notebook's papermill parameters (the synthetic set and its runs)."""
    return TourConfig(data=root, runs=runs, figures=figures,
                      synth=SynthConfig(snippets, val_snippets, (height, width), seed=seed),
                      keyframe_iterations=keyframe_iterations, gsv_iterations=gsv_iterations, batch_size=batch_size,
                      seed=seed)


@contextlib.contextmanager
def warnings_as_notes():
    """Warnings raised inside the block (a busy CPU under a benchmark, say) are printed after it as plain lines,
    "note: ...", instead of red text with a file path and line number."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):  # each once, in order
        print(f"note: {message}")


@contextlib.contextmanager
def stderr_of_children_to(path: str | Path):
    """Processes started inside the block (the kernels papermill starts) write their standard error to ``path``,
    not into the cell: a kernel's start-up log lines (e.g. "Kernel is running over TCP without encryption") would
    show as red boxes. A failing cell still raises in this process, with its traceback."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


TUTORIALS = Path(__file__).resolve().parent.parent / "notebooks"  # this clone's numbered notebooks, tracked by git


def strip_tracked_outputs(model: dict, path: str, contents_manager, **kwargs) -> None:
    """Jupyter's pre-save hook (`make install` configures it for this virtual environment): a numbered notebook of
    this clone's notebooks/ is saved as it is committed, without outputs or execution counts, its notebook metadata
    kept as the file on disk has it (JupyterLab would add the kernel's version), so that running the tutorials or
    autosaving them never shows as a change. Any other notebook is saved untouched; save a copy elsewhere to keep
    outputs."""
    if model.get("type") != "notebook":
        return
    os_path = (Path(contents_manager.root_dir) / path).resolve()
    if os_path.parent != TUTORIALS or not (os_path.name[:2].isdigit() and os_path.suffix == ".ipynb"):
        return
    book = model["content"]
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
    if os_path.is_file():
        book["metadata"] = json.loads(os_path.read_text()).get("metadata", book["metadata"])
