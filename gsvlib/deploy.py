"""Deployment with ONNX Runtime: GSVNet as three static-shape ONNX graphs, and a streaming segmenter that runs them.

    keyframe.onnx     frame (1, 3, H, W) RGB in [0, 1] -> S (1, C, H/8, W/8): N at the exported keyframe scale
    propagation.onnx  S_{t-1}, the normalised 1/8 frames I_{t-1}, I_t (1, 3, H/8, W/8) -> S_t: flow, eq. (1), eq. (2)
    labels.onnx       S (1, C, H/8, W/8) -> (1, H, W) uint8: bilinear upsampling and argmax (for deployments without
                      PyTorch; :class:`OnnxRuntime` on the CPU runs the faster PyTorch step instead)
    keyframe.int8.onnx  with calibration frames only: the keyframe graph statically quantized to int8 by ONNX Runtime
    onnx.json         size, keyframe scale, classes, dataset, propagation, conventions, keyframe net, torch version
                      (and, with the int8 graph, where its calibration frames came from)

:class:`OnnxRuntime` runs these graphs as a runtime of :class:`~gsvlib.segmenter.VideoSegmenter`
(``VideoSegmenter(OnnxRuntime(folder))``): the same frame checks, schedule, padding and
:class:`~gsvlib.segmenter.Step` as the torch paths. Importing this module also registers the runtime "onnx":
``VideoSegmenter(model, runtime="onnx")`` exports the model for the first frame's size into a temporary folder and
runs it there; runtime "onnx-int8" does the same with the keyframe graph quantized to int8, calibrated on frames of the
synthetic street at the stream's size (for deployment, calibrate on one's own training frames: ``gsv export-onnx
--int8``). Needs the ``onnx`` extra (``pip install ".[onnx]"``: onnx, onnxscript, onnxruntime).
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gsvlib.data.synthetic import render_snippet
from gsvlib.files import marked, move_into_place, output_path, refuse_foreign, remove, write_json_atomic
from gsvlib.models.conventions import CONVENTIONS, small_frames
from gsvlib.models.gsvnet import GSVNet
from gsvlib.models.output import full_resolution_labels
from gsvlib.segmenter import PAPER, PROPAGATIONS, padded_size

GRAPHS = ("keyframe", "propagation", "labels")
INT8_KEYFRAME = "keyframe.int8.onnx"
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
                propagation: str = PAPER, dataset: str | None = None,
                calibration: Sequence[torch.Tensor] | None = None, calibration_source: str | None = None) -> dict:
    """Write the three graphs for frames of ``size`` (H, W, multiples of 32) and onnx.json into the folder ``out``;
    each graph is checked with ``onnx.checker``. Given ``calibration`` frames ((3, h, w) float in [0, 1] or uint8,
    padding to ``size``; ``calibration_source`` says where they came from), the keyframe graph is also written
    quantized to int8 (:func:`quantize_keyframe`). The folder is written beside ``out`` and replaces it whole (an
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
    ours = {"onnx.json", INT8_KEYFRAME, *(f"{g}.onnx{data}" for g in GRAPHS for data in ("", ".data"))}
    refuse_foreign(final, lambda p: str(p) in ours, "gsv export-onnx")
    # written beside the folder and moved into place whole: a run cut short leaves the old graphs as they were
    out = final.parent / f".{final.name}.partial"
    remove(out)
    out.mkdir(parents=True)
    try:
        meta = _export_graphs(model, out, size, key_scale, propagation, dataset)
        if calibration is not None:
            meta["int8"] = quantize_keyframe(out, size, calibration, calibration_source)
            write_json_atomic(out / "onnx.json", marked(meta))
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


def padded_frames(frames: Sequence[torch.Tensor], size: tuple[int, int]) -> list:
    """(3, h, w) frames (float in [0, 1] or uint8) as the keyframe graph receives them: (1, 3, H, W) float32 arrays,
    padded on the bottom and right by edge replication to ``size`` as the segmenter pads them."""
    arrays = []
    for i, frame in enumerate(frames):
        if tuple(padded_size(tuple(frame.shape[-2:]))) != tuple(size):
            raise ValueError(f"calibration frame {i} is {frame.shape[-1]}x{frame.shape[-2]}, which pads to "
                             f"{'x'.join(map(str, padded_size(tuple(frame.shape[-2:]))[::-1]))}, not the exported "
                             f"{size[1]}x{size[0]}: calibrate on frames of the size the graphs will see")
        x = frame.float() / 255 if frame.dtype == torch.uint8 else frame.float()
        h, w = x.shape[-2:]
        arrays.append(F.pad(x[None], (0, size[1] - w, 0, size[0] - h), mode="replicate").numpy())
    return arrays


def street_calibration(size: tuple[int, int], count: int = 16) -> list[torch.Tensor]:
    """``count`` frames of the synthetic street video at ``size`` (the first frame of ``count`` snippets): calibration
    frames that the kit can always make, for speed measurements; accuracy wants frames of the data itself."""
    return [torch.from_numpy(next(render_snippet(seq, 0, size, frames=1))[0]).permute(2, 0, 1) for seq in range(count)]


def calibration_frames(data, count: int = 32) -> list[torch.Tensor]:
    """The labelled frames of ``count`` samples of ``data`` (a dataset of :func:`gsvlib.data.open_dataset`), spread
    evenly over it: calibration frames for :func:`quantize_keyframe`."""
    picks = np.linspace(0, len(data) - 1, min(count, len(data))).round().astype(int)
    return [data[int(i)]["frames"][-1] for i in picks]


def quantize_keyframe(folder: Path, size: tuple[int, int], frames: Sequence[torch.Tensor],
                      source: str | None = None) -> dict:
    """The keyframe graph in ``folder`` (exported for frames of ``size``) statically quantized by ONNX Runtime into
    ``folder/keyframe.int8.onnx``: weights int8 per output channel, activations uint8 with ranges from min-max
    calibration on ``frames``, as quantize/dequantize pairs (QDQ) that ONNX Runtime fuses into integer kernels. The
    7-bit weight range (``reduce_range``) avoids the saturation of AVX2 and AVX-512 CPUs without VNNI. Returns what
    onnx.json records."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    arrays = padded_frames(frames, size)
    if not arrays:
        raise ValueError("int8 quantization needs calibration frames; none were given")

    class Frames(CalibrationDataReader):
        def __init__(self):
            self._left = iter(arrays)

        def get_next(self):
            return next(({"frame": a} for a in self._left), None)

    prepared = folder / "keyframe.prepared.onnx"  # shapes inferred and graph optimised, as quantization expects
    quiet = logging.getLogger()  # the quantizer logs one warning per batch-norm weight that it leaves in float
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quant_pre_process(str(folder / "keyframe.onnx"), str(prepared))
        quantize_static(str(prepared), str(folder / INT8_KEYFRAME), Frames(), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    finally:
        quiet.setLevel(level)
        remove(prepared)
    return {"calibration": source or "frames given to export_onnx", "frames": len(arrays), "method": "minmax",
            "weights": "int8 per channel (7-bit range)", "activations": "uint8 per tensor"}


class OnnxRuntime:
    """The graphs :func:`export_onnx` wrote to ``folder``, run by ONNX Runtime (``providers``: default CPU; e.g.
    ("CUDAExecutionProvider", "CPUExecutionProvider")) as a :class:`~gsvlib.segmenter.VideoSegmenter` runtime:
    ``VideoSegmenter(OnnxRuntime(folder), interval)``; ``int8=True`` runs keyframe.int8.onnx for keyframes. The
    keyframe scale is the exported one; frames must pad to the exported size; batch 1."""

    fixed_scale = True

    def __init__(self, folder: str | Path, providers: tuple[str, ...] = ("CPUExecutionProvider",), int8: bool = False):
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
        if int8 and not (folder / INT8_KEYFRAME).is_file():
            raise FileNotFoundError(f"{folder / INT8_KEYFRAME} does not exist: export the graphs with "
                                    "`gsv export-onnx --int8 DATASET=ROOT` to quantize the keyframe graph")
        self.name = "onnx-int8" if int8 else "onnx"
        self.device = torch.device("cpu")
        self.key_scale = self.meta["key_scale"]
        self.propagation = self.meta["propagation"]
        self._sessions = {}
        files = {g: INT8_KEYFRAME if g == "keyframe" and int8 else f"{g}.onnx" for g in GRAPHS}
        # ONNX Runtime's threads spin between calls by default, taking the cores from torch's threads (the 1/8 frames,
        # the output step) and from gsv segment's decoder and writer: at 480x360, l = 5 on 2 cores, 28 FPS spinning
        # against 57 without.
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for g, file in files.items():
            try:
                self._sessions[g] = onnxruntime.InferenceSession(str(folder / file), options,
                                                                 providers=list(providers))
            except Exception as e:  # ONNX Runtime's own errors (missing, damaged, refused external data) share no base
                raise RuntimeError(f"{folder / file} cannot be loaded by ONNX Runtime ({str(e).strip()[:200]}); "
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

    def calibration(self, size: tuple[int, int]) -> tuple[Sequence[torch.Tensor] | None, str | None]:
        """The calibration frames of an export at ``size`` and where they came from: none, the graphs stay fp32."""
        return None, None

    def keyframe(self, frame: torch.Tensor, scale: float) -> torch.Tensor:
        key = (*frame.shape[-2:], scale)
        if key not in self._graphs:
            folder = Path(self._folder.name) / f"{key[0]}x{key[1]}_x{scale:g}"
            size = tuple(frame.shape[-2:])
            calibration, source = self.calibration(size)
            export_onnx(self.model, folder, size, scale, self.propagation, calibration=calibration,
                        calibration_source=source)
            self._graphs[key] = OnnxRuntime(folder, int8=calibration is not None)
        self._current = self._graphs[key]
        return self._current.keyframe(frame, scale)

    def propagate(self, seg: torch.Tensor, prev_small: torch.Tensor, cur_small: torch.Tensor) -> tuple:
        return self._current.propagate(seg, prev_small, cur_small)

    def labels(self, seg: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self._current.labels(seg, size)


class ExportingInt8OnnxRuntime(ExportingOnnxRuntime):
    """Runtime "onnx-int8": :class:`ExportingOnnxRuntime` with the keyframe graph quantized to int8
    (:func:`quantize_keyframe`), calibrated on ``calibration`` ((3, h, w) frames padding to the stream's size, from
    ``calibration_source``), by default on frames of the synthetic street at the stream's size
    (:func:`street_calibration`)."""

    name = "onnx-int8"

    def __init__(self, model: GSVNet, propagation: str = PAPER, measure: Callable | None = None,
                 calibration: Sequence[torch.Tensor] | None = None, calibration_source: str | None = None):
        super().__init__(model, propagation, measure)
        self._frames, self._source = calibration, calibration_source

    def calibration(self, size: tuple[int, int]) -> tuple[Sequence[torch.Tensor], str]:
        if self._frames is None:
            return street_calibration(size), "synthetic street frames"
        return self._frames, self._source or "frames given to the runtime"
