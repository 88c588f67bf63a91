"""Deployment with ONNX Runtime: GSVNet as three static-shape ONNX graphs, and a streaming segmenter that runs them.

    keyframe.onnx     frame (1, 3, H, W) RGB in [0, 1] -> S (1, C, H/8, W/8): N at the exported keyframe scale
    propagation.onnx  S_{t-1}, the normalised 1/8 frames I_{t-1}, I_t (1, 3, H/8, W/8) -> S_t: flow, eq. (1), eq. (2)
    labels.onnx       S (1, C, H/8, W/8) -> (1, H, W) uint8: bilinear upsampling and argmax (for deployments without
                      PyTorch; :class:`OnnxRuntime` on the CPU runs the faster PyTorch step instead)
    onnx.json         size, keyframe scale, classes, dataset, propagation, conventions, keyframe net, torch version

:class:`OnnxRuntime` runs these graphs as a runtime of :class:`~gsvlib.segmenter.VideoSegmenter`
(``VideoSegmenter(OnnxRuntime(folder))``): the same frame checks, schedule, padding and
:class:`~gsvlib.segmenter.Step` as the torch paths. Importing this module also registers the runtime "onnx":
``VideoSegmenter(model, runtime="onnx")`` exports the model for the first frame's size into a temporary folder and
runs it there. Needs the ``onnx`` extra (``pip install ".[onnx]"``: onnx, onnxscript, onnxruntime).
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gsvlib.files import marked, move_into_place, output_path, refuse_foreign, remove, write_json_atomic
from gsvlib.models.conventions import CONVENTIONS, small_frames
from gsvlib.models.gsvnet import GSVNet
from gsvlib.models.output import full_resolution_labels
from gsvlib.segmenter import PAPER, PROPAGATIONS, padded_size

GRAPHS = ("keyframe", "propagation", "labels")
OPSET = 18


class _Keyframe(nn.Module):
    def __init__(self, model: GSVNet, key_scale: float):
        super().__init__()
        self.model = model
        self.key_scale = key_scale

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.model.segment_keyframe(frame, self.key_scale)  # (1, C, H/8, W/8)


class _Propagation(nn.Module):
    def __init__(self, model: GSVNet, propagation: str):
        super().__init__()
        self.model = model
        self.propagation = propagation

    def forward(self, seg: torch.Tensor, prev_small: torch.Tensor, cur_small: torch.Tensor) -> torch.Tensor:
        return PROPAGATIONS[self.propagation].step(self.model, seg, prev_small, cur_small)  # (1, C, H/8, W/8)


class _Labels(nn.Module):
    def __init__(self, size: tuple[int, int], align_corners: bool):
        super().__init__()
        self.size = size
        self.align_corners = align_corners

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        return full_resolution_labels(seg, self.size, self.align_corners)  # (1, H, W) uint8


@contextlib.contextmanager
def _exporter_quiet():
    """The exporter's notes that concern neither these graphs nor the user: torchvision's ops being absent (none is
    used) and deprecations inside torch."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        registration.setLevel(level)


def export_onnx(model: GSVNet, out: str | Path, size: tuple[int, int], key_scale: float = 0.75,
                propagation: str = PAPER, dataset: str | None = None) -> dict:
    """Write the three graphs for frames of ``size`` (H, W, multiples of 32) and onnx.json into the folder ``out``;
    each graph is checked with ``onnx.checker``. The folder is written beside ``out`` and replaces it whole (an
    existing ``out`` may hold only such graphs). Returns the metadata."""
    h, w = size
    if padded_size(size) != (h, w):
        ph, pw = padded_size(size)
        raise ValueError(f"size {h}x{w}: the graphs take frames padded to multiples of 32, e.g. {ph}x{pw} for {h}x{w} "
                         "frames (the segmenter pads them)")
    if propagation not in PROPAGATIONS:
        raise ValueError(f"propagation must be one of {sorted(PROPAGATIONS)}, got {propagation!r}")
    model = model.eval().cpu()
    final = output_path(Path(out))  # through a symlink: its target is replaced, the link stays
    ours = {"onnx.json", *(f"{g}.onnx{data}" for g in GRAPHS for data in ("", ".data"))}  # graphs, external weights
    refuse_foreign(final, lambda p: str(p) in ours, "gsv export-onnx")
    # written beside the folder and moved into place whole: a run cut short leaves the old graphs as they were
    out = final.parent / f".{final.name}.partial"
    remove(out)
    out.mkdir(parents=True)
    try:
        meta = _export_graphs(model, out, size, key_scale, propagation, dataset)
    except BaseException:
        remove(out)
        raise
    move_into_place(out, final)
    return meta


def _export_graphs(model: GSVNet, out: Path, size: tuple[int, int], key_scale: float, propagation: str,
                   dataset: str | None) -> dict:
    import onnx  # the onnx extra: needed here only

    h, w = size
    c = model.config.num_classes
    frame = torch.rand(1, 3, h, w)
    seg = torch.randn(1, c, h // 8, w // 8)
    prev_small, cur_small = torch.randn(2, 1, 3, h // 8, w // 8)  # two tensors: one passed twice would be tied
    graphs = {"keyframe": (_Keyframe(model, key_scale), (frame,), ["frame"], ["seg"]),
              "propagation": (_Propagation(model, propagation), (seg, prev_small, cur_small),
                              ["seg", "prev_small", "cur_small"], ["seg_out"]),
              "labels": (_Labels((h, w), model.conventions.align_corners), (seg,), ["seg"], ["labels"])}
    for name, (module, args, inputs, outputs) in graphs.items():
        path = out / f"{name}.onnx"
        with _exporter_quiet():
            torch.onnx.export(module.eval(), args, path, dynamo=True, opset_version=OPSET, input_names=inputs,
                              output_names=outputs, verbose=False)
        onnx.checker.check_model(path)
    meta = {"size": [h, w], "key_scale": key_scale, "num_classes": c, "dataset": dataset,
            "propagation": propagation, "conventions": model.config.conventions,
            "keyframe_net": model.config.keyframe_net, "opset": OPSET, "torch": torch.__version__}
    write_json_atomic(out / "onnx.json", marked(meta))
    return meta


class OnnxRuntime:
    """The graphs :func:`export_onnx` wrote to ``folder``, run by ONNX Runtime (``providers``: default CPU; e.g.
    ("CUDAExecutionProvider", "CPUExecutionProvider")) as a :class:`~gsvlib.segmenter.VideoSegmenter` runtime:
    ``VideoSegmenter(OnnxRuntime(folder), interval)``. The keyframe scale is the exported one; frames must pad to the
    exported size; batch 1."""

    fixed_scale = True
    name = "onnx"

    def __init__(self, folder: str | Path, providers: tuple[str, ...] = ("CPUExecutionProvider",)):
        import onnxruntime  # the onnx extra: needed here only

        folder = Path(folder)
        meta_path = folder / "onnx.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} does not exist: write the graphs with `gsv export-onnx`")
        try:
            self.meta = json.loads(meta_path.read_text())
        except ValueError as e:  # not UTF-8, or not JSON
            self.meta = {"error": str(e)}
        if not isinstance(self.meta, dict) or not {"size", "key_scale", "propagation"} <= set(self.meta):
            raise RuntimeError(f"{meta_path} is damaged (not the JSON object `gsv export-onnx` writes); export the "
                               "graphs again with `gsv export-onnx`")
        self.device = torch.device("cpu")
        self.key_scale = self.meta["key_scale"]
        self.propagation = self.meta["propagation"]
        self._sessions = {}
        for g in GRAPHS:
            try:
                self._sessions[g] = onnxruntime.InferenceSession(str(folder / f"{g}.onnx"), providers=list(providers))
            except Exception as e:  # ONNX Runtime's own errors (missing, damaged, refused external data) share no base
                raise RuntimeError(f"{folder / f'{g}.onnx'} cannot be loaded by ONNX Runtime ({str(e).strip()[:200]}); "
                                   "export the graphs again with `gsv export-onnx`") from None
        # graphs exported before the conventions were recorded are gsvkit's
        conventions = CONVENTIONS[self.meta.get("conventions", "gsvkit")]
        self.small = partial(small_frames, conventions=conventions,
                             keyframe_net=self.meta.get("keyframe_net", "swiftnet"))
        self._align_corners = conventions.align_corners
        self._cpu = list(providers) == ["CPUExecutionProvider"]

    def keyframe(self, frame: torch.Tensor, scale: float) -> torch.Tensor:
        """The keyframe graph (its scale was fixed at export) on a padded frame (1, 3, H, W) of the exported size."""
        size = tuple(self.meta["size"])
        if frame.shape[0] != 1 or tuple(frame.shape[-2:]) != size:
            raise ValueError(f"these graphs take one frame that pads to {size[0]}x{size[1]}, got batch "
                             f"{frame.shape[0]} of {frame.shape[-2]}x{frame.shape[-1]}; export again with "
                             "`gsv export-onnx --size`")
        return self._run("keyframe", frame)  # (1, C, H/8, W/8)

    def propagate(self, seg: torch.Tensor, prev_small: torch.Tensor, cur_small: torch.Tensor) -> tuple:
        return self._run("propagation", seg, prev_small, cur_small), None  # no policy signal: PF's inside is fused

    def labels(self, seg: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The labels graph; on the CPU the same output step in PyTorch, which computes scores only between cells of
        different classes (3-10x faster than the graph's literal upsampling)."""
        if self._cpu:
            return full_resolution_labels(seg, size, self._align_corners)  # (1, H, W) uint8
        return self._run("labels", seg)

    def _run(self, graph: str, *tensors: torch.Tensor) -> torch.Tensor:
        session = self._sessions[graph]
        feed = {i.name: t.float().numpy() for i, t in zip(session.get_inputs(), tensors)}
        return torch.from_numpy(session.run(None, feed)[0])


class ExportingOnnxRuntime:
    """Runtime "onnx" of :data:`~gsvlib.segmenter.RUNTIMES`: ``model`` exported by :func:`export_onnx` for the size
    of the frames it meets (into a temporary folder that lives as long as this object), then run by
    :class:`OnnxRuntime`. The export (seconds to a minute) happens on the first frame of each size."""

    fixed_scale = False  # the scale is fixed per export: each keyframe scale gets its own graphs
    name = "onnx"

    def __init__(self, model: GSVNet, propagation: str = PAPER, measure: Callable | None = None):
        if measure is not None:
            raise ValueError("a keyframe policy reads PF's intermediates, which the ONNX graphs do not output")
        self.model = model.cpu()
        self.propagation = propagation
        self.device = torch.device("cpu")
        self.key_scale = model.config.key_scale
        self.small = model.small_frame
        self._folder = tempfile.TemporaryDirectory(prefix="gsvkit-onnx-")
        self._graphs: dict[tuple, OnnxRuntime] = {}
        self._current: OnnxRuntime | None = None

    def keyframe(self, frame: torch.Tensor, scale: float) -> torch.Tensor:
        key = (*frame.shape[-2:], scale)
        if key not in self._graphs:
            folder = Path(self._folder.name) / f"{key[0]}x{key[1]}_x{scale:g}"
            export_onnx(self.model, folder, tuple(frame.shape[-2:]), scale, self.propagation)
            self._graphs[key] = OnnxRuntime(folder)
        self._current = self._graphs[key]
        return self._current.keyframe(frame, scale)

    def propagate(self, seg: torch.Tensor, prev_small: torch.Tensor, cur_small: torch.Tensor) -> tuple:
        return self._current.propagate(seg, prev_small, cur_small)

    def labels(self, seg: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self._current.labels(seg, size)

