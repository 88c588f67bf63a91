"""The authors' released checkpoints (robert80203/GSVNet) as gsvkit checkpoints: ``gsv convert-official``.

The official code saves three kinds of file, told apart here by their keys:

- **GSVNet** (its trainer's ``save_state``): a dict with ``state_dict``, the propagation wrapped in ``End2End`` (keys
  ``grm.ideal_dk.filter_copy_s``, ``grm.intra_net.intra_net.*``, ``grm.guide.*``), ``state_dict_of``, the flow net's
  own keys (FlowLight: ``conv1``, ``conv2``, ``conv_dilate_1..4``, ``conv_merge``, ``toflow``), ``optimizer``,
  ``epoch``, ``args`` and the best mIoUs.
- **SwiftNet-R18**: SwiftNet's ``SemsegModel`` state (``backbone.*`` with the pyramid ``backbone.spp.spp.*`` and the
  ladder ``backbone.upsample.*``, ``logits.*``), bare or under ``state_dict`` / ``model``.
- **BiSeNet-R18**: TorchSeg's BiSeNet state (``context_path.*``, ``spatial_path.*``, ``global_context``, ``arms``,
  ``refines``, ``ffm``, ``heads``).

A GSVNet file holds the propagation only; the keyframe net it was trained with comes in its own file, so a full
model is converted from both (``gsv convert-official GSVNET.pth SWIFTNET.pth --out W.pt``). A keyframe file alone
gives a keyframe-only checkpoint, which ``gsv eval --variants image`` runs.

What the conversion does besides renaming: conv biases in front of a batch norm are folded into its running mean
(``BN(conv(x) + b) = BN'(conv(x))`` with ``mean' = mean - b``: exact up to float rounding); the guiding net's 11 output
maps are reordered from the official tap order (identity, 8 shifts, zero, intra) to gsvkit's (8 shifts, identity,
zero, intra); the official 9th ideal-delay kernel must be all zeros (it is never set); unused tensors (SwiftNet's
``img_mean``/``img_std`` buffers, which its forward never reads, and BiSeNet's two auxiliary training heads) are
dropped. Every other key must map, and every gsvkit key must be filled: errors name the keys that did not.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from gsvlib.checkpoint import CheckpointError, load_state_dict_checked, read_checkpoint
from gsvlib.data import DATASETS
from gsvlib.files import marked, save_atomic, sha256
from gsvlib.models.gsvnet import GSVNet, GSVNetConfig

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# the objects besides tensors that an official GSVNet checkpoint holds: its argparse options and numpy mIoUs
OFFICIAL_GLOBALS = [argparse.Namespace, np.dtype, np._core.multiarray.scalar, type(np.dtype(np.float64)),
                    type(np.dtype(np.float32)), (np._core.multiarray.scalar, "numpy.core.multiarray.scalar")]
OFFICIAL_TAPS = 11  # identity, 8 shifts, the zero kernel, intra
# gsvkit tap j takes official tap TAP_ORDER[j]: the 8 shifts, the identity, the zero kernel, intra
TAP_ORDER = [1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 10]


def _strip_module(state: dict) -> dict:
    """Keys without the ``module.`` prefix that DataParallel and DistributedDataParallel add."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def identify(ckpt, path) -> tuple[str, dict]:
    """What an official file holds: ("gsvnet", {"grm": ..., "flow": ...}), ("swiftnet", state) or ("bisenet", state)."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) and any(
            k.removeprefix("module.").startswith("grm.") for k in ckpt["state_dict"]):
        if not isinstance(ckpt.get("state_dict_of"), dict):
            raise CheckpointError(f"{path} is an official GSVNet checkpoint without 'state_dict_of' (the flow net's "
                                  "weights); convert a checkpoint saved by the official trainer's save_state")
        return "gsvnet", {"grm": _strip_module(ckpt["state_dict"]), "flow": _strip_module(ckpt["state_dict_of"])}
    state = ckpt
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if isinstance(state, dict):
        state = _strip_module(state)
        if any(k.startswith("backbone.spp.") for k in state):
            return "swiftnet", state
        if any(k.startswith(("context_path.", "spatial_path.")) for k in state):
            return "bisenet", state
    keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
    raise CheckpointError(f"{path} is not an official GSVNet, SwiftNet or BiSeNet checkpoint (found {keys}); "
                          "gsvkit's own checkpoints load as they are")


class _Mapping:
    """Renames an official state dict into gsvkit's, remembering which official keys were used."""

    def __init__(self, state: dict, source: str, prefix: str, dropped: tuple[str, ...] = ()):
        self.state, self.source, self.prefix = state, source, prefix
        self.dropped = dropped  # key prefixes of official tensors that gsvkit has no use for
        self.out: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()
        self.missing: list[str] = []

    def take(self, key: str) -> torch.Tensor | None:
        if key not in self.state:
            self.missing.append(key)
            return None
        self.used.add(key)
        return self.state[key]

    def put(self, key: str, value: torch.Tensor | None) -> None:
        if value is not None:
            self.out[self.prefix + key] = value

    def conv(self, src: str, dst: str) -> None:
        self.put(f"{dst}.weight", self.take(f"{src}.weight"))
        if f"{src}.bias" in self.state:
            self.put(f"{dst}.bias", self.take(f"{src}.bias"))

    def bn(self, src: str, dst: str, conv_bias: torch.Tensor | None = None) -> None:
        for name in BN:
            value = self.take(f"{src}.{name}")
            if name == "running_mean" and conv_bias is not None and value is not None:
                value = value - conv_bias  # the bias of the conv in front, folded in
            self.put(f"{dst}.{name}", value)

    def conv_bn(self, conv: str, bn: str, dst_conv: str, dst_bn: str) -> None:
        """A conv followed by a batch norm; a conv bias is folded into the norm."""
        self.put(f"{dst_conv}.weight", self.take(f"{conv}.weight"))
        bias = self.take(f"{conv}.bias") if f"{conv}.bias" in self.state else None
        self.bn(bn, dst_bn, bias)

    def rest(self) -> list[str]:
        """Official keys that nothing took and that are not known to be unused."""
        return sorted(k for k in self.state if k not in self.used and not k.startswith(self.dropped))


def _resnet(m: _Mapping, src: str, dst: str) -> None:
    """A ResNet-18 whose keys follow torchvision's (both official keyframe nets), under ``src`` -> ``dst``."""
    m.conv_bn(f"{src}conv1", f"{src}bn1", f"{dst}conv1", f"{dst}bn1")
    for stage in range(1, 5):
        for block in range(2):
            b = f"layer{stage}.{block}."
            m.conv_bn(f"{src}{b}conv1", f"{src}{b}bn1", f"{dst}{b}conv1", f"{dst}{b}bn1")
            m.conv_bn(f"{src}{b}conv2", f"{src}{b}bn2", f"{dst}{b}conv2", f"{dst}{b}bn2")
            if f"{src}{b}downsample.0.weight" in m.state:
                m.conv_bn(f"{src}{b}downsample.0", f"{src}{b}downsample.1", f"{dst}{b}downsample.0",
                          f"{dst}{b}downsample.1")


def _bn_relu_conv(m: _Mapping, src: str, dst: str) -> None:
    """SwiftNet's _BNReluConv (norm, relu, conv) -> gsvkit's BNReLUConv (0: BN, 2: conv)."""
    m.bn(f"{src}.norm", f"{dst}.0")
    m.conv(f"{src}.conv", f"{dst}.2")


def map_swiftnet(state: dict, source: str) -> _Mapping:
    # normalisation happens outside the net: its img_mean/img_std buffers are never read
    m = _Mapping(state, source, "keyframe_net.", ("backbone.img_mean", "backbone.img_std", "backbone.img_scale"))
    _resnet(m, "backbone.", "backbone.")
    spp = "backbone.spp.spp."
    _bn_relu_conv(m, f"{spp}spp_bn", "spp.bottleneck")
    levels = sorted(int(k[len(spp) + 3:].split(".")[0]) for k in state
                    if k.startswith(f"{spp}spp") and k[len(spp) + 3:].split(".")[0].isdigit())
    for i in sorted(set(levels)):
        _bn_relu_conv(m, f"{spp}spp{i}", f"spp.levels.{i}")
    _bn_relu_conv(m, f"{spp}spp_fuse", "spp.fuse")
    for i in range(3):
        _bn_relu_conv(m, f"backbone.upsample.{i}.bottleneck", f"up.{i}.skip")
        _bn_relu_conv(m, f"backbone.upsample.{i}.blend_conv", f"up.{i}.blend")
    _bn_relu_conv(m, "logits", "logits")
    return m


def map_bisenet(state: dict, source: str) -> _Mapping:
    m = _Mapping(state, source, "keyframe_net.", ("heads.0.", "heads.1."))  # the auxiliary training heads
    _resnet(m, "context_path.", "backbone.")
    for i, name in enumerate(("conv_7x7", "conv_3x3_1", "conv_3x3_2", "conv_1x1")):
        m.conv_bn(f"spatial_path.{name}.conv", f"spatial_path.{name}.bn", f"spatial_path.{i}.0", f"spatial_path.{i}.1")
    m.conv_bn("global_context.1.conv", "global_context.1.bn", "context_path.global_context.1.0",
              "context_path.global_context.1.1")
    for i, arm in enumerate(("arm32", "arm16")):
        m.conv_bn(f"arms.{i}.conv_3x3.conv", f"arms.{i}.conv_3x3.bn", f"context_path.{arm}.conv.0",
                  f"context_path.{arm}.conv.1")
        m.conv_bn(f"arms.{i}.channel_attention.1.conv", f"arms.{i}.channel_attention.1.bn",
                  f"context_path.{arm}.attention.1", f"context_path.{arm}.attention.2")
    for i, head in enumerate(("head32", "head16")):
        m.conv_bn(f"refines.{i}.conv", f"refines.{i}.bn", f"context_path.{head}.0", f"context_path.{head}.1")
    m.conv_bn("ffm.conv_1x1.conv", "ffm.conv_1x1.bn", "ffm.conv.0", "ffm.conv.1")
    m.conv("ffm.channel_attention.1.conv", "ffm.attention.1")
    m.conv("ffm.channel_attention.2.conv", "ffm.attention.3")
    m.conv_bn("heads.2.conv_3x3.conv", "heads.2.conv_3x3.bn", "head.0.0", "head.0.1")
    m.conv("heads.2.conv_1x1", "head.1")
    return m


def map_flowlight(state: dict, source: str) -> _Mapping:
    m = _Mapping(state, source, "flow_net.")
    if any(k.startswith("conv3") or k.startswith("predict_flow") for k in state):
        raise CheckpointError(f"{source}: the flow net is the official FlowNetS, whose layout (no batch norm, "
                              "deconvolutions without padding) gsvkit's FlowNetS does not share; only FlowLight "
                              "('light') checkpoints convert")
    m.conv_bn("conv1.0", "conv1.1", "down.0.0", "down.0.1")
    m.conv_bn("conv2.0", "conv2.1", "down.1.0", "down.1.1")
    for i in range(4):
        m.conv_bn(f"conv_dilate_{i + 1}.0", f"conv_dilate_{i + 1}.1", f"dilated.{i}.0", f"dilated.{i}.1")
    m.conv_bn("conv_merge.0", "conv_merge.1", "merge.0", "merge.1")
    m.conv("toflow", "to_flow")
    return m


def map_propagation(state: dict, source: str) -> _Mapping:
    """The End2End-wrapped GuidedSpatiallyVaryingConv -> gsvkit's ``correction.*``."""
    m = _Mapping(state, source, "correction.")
    delays = m.take("grm.ideal_dk.filter_copy_s")  # (9, 1, 1, 3, 3)
    if delays is not None:
        if tuple(delays.shape) != (9, 1, 1, 3, 3):
            raise CheckpointError(f"{source}: grm.ideal_dk.filter_copy_s has shape {tuple(delays.shape)}, expected "
                                  "(9, 1, 1, 3, 3): 3x3 ideal-delay kernels (K = 3) are the only ones released")
        if delays[8].abs().max() != 0:
            raise CheckpointError(f"{source}: the 9th ideal-delay kernel (grm.ideal_dk.filter_copy_s[8]) is not zero, "
                                  "so it was trained; gsvkit's zero tap is fixed and cannot hold it")
        m.put("theta", delays[:8].clone())
    intra = "grm.intra_net.intra_net."
    m.conv_bn(f"{intra}0", f"{intra}1", "intra_net.net.0.0", "intra_net.net.0.1")
    m.conv_bn(f"{intra}3", f"{intra}4", "intra_net.net.1.0", "intra_net.net.1.1")
    m.conv(f"{intra}6", "intra_net.net.2")
    guide = "grm.guide."
    m.conv_bn(f"{guide}guide_conv.0", f"{guide}guide_conv.1", "guiding_net.stem.0", "guiding_net.stem.1")
    m.conv_bn(f"{guide}guide_conv_feat.0", f"{guide}guide_conv_feat.1", "guiding_net.down.0.0", "guiding_net.down.0.1")
    m.conv_bn(f"{guide}guide_conv_feat.3", f"{guide}guide_conv_feat.4", "guiding_net.down.1.0", "guiding_net.down.1.1")
    m.conv_bn(f"{guide}guide_deconv.1", f"{guide}guide_deconv.2", "guiding_net.up1.0", "guiding_net.up1.1")
    m.conv_bn(f"{guide}guide_deconv.5", f"{guide}guide_deconv.6", "guiding_net.up2.0", "guiding_net.up2.1")
    m.conv_bn(f"{guide}guide_decoder.0", f"{guide}guide_decoder.1", "guiding_net.head.0", "guiding_net.head.1")
    for key in [k for k in m.out if k.startswith("correction.guiding_net.head.")]:
        value = m.out[key]
        if value.dim() == 0:  # num_batches_tracked
            continue
        if value.shape[0] != OFFICIAL_TAPS:
            raise CheckpointError(f"{source}: the guiding net's head has {value.shape[0]} output maps, expected "
                                  f"{OFFICIAL_TAPS} (identity, 8 shifts, zero, intra)")
        m.out[key] = value[TAP_ORDER]
    return m


MAPPINGS = {"swiftnet": map_swiftnet, "bisenet": map_bisenet}


def _num_classes(kind: str, state: dict, source: str) -> int:
    key = {"swiftnet": "logits.conv.weight", "bisenet": "heads.2.conv_1x1.weight",
           "gsvnet": "grm.intra_net.intra_net.6.weight"}[kind]
    if key not in state:
        raise CheckpointError(f"{source} has no {key}, which gives the number of classes")
    return int(state[key].shape[0])


def convert_official(paths: list[str | Path], dataset: str = "cityscapes") -> dict:
    """Official checkpoint files (a GSVNet file and its keyframe net's file, or a keyframe net's file alone) -> a
    gsvkit checkpoint dict that :func:`gsvlib.checkpoint.load_model` reads, built under the official conventions and
    checked by loading it strictly."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    found: dict[str, tuple[str, dict]] = {}
    for path in paths:
        kind, state = identify(read_checkpoint(path, allowed_globals=OFFICIAL_GLOBALS), path)
        if kind in found or (kind != "gsvnet" and any(k != "gsvnet" for k in found)):
            raise CheckpointError(f"{path} is a second {kind if kind == 'gsvnet' else 'keyframe net'} checkpoint "
                                  f"(the first was {found.get(kind, next(iter(found.values())))[0]}); pass one GSVNet "
                                  "file and the keyframe net's file")
        found[kind] = (str(path), state)
    keyframe = next((k for k in found if k != "gsvnet"), None)
    if keyframe is None:
        raise CheckpointError(f"{found['gsvnet'][0]} holds GSVNet's propagation only; pass the SwiftNet or BiSeNet "
                              "checkpoint it was trained with too (the official README links both)")
    key_path, key_state = found[keyframe]
    num_classes = _num_classes(keyframe, key_state, key_path)
    mappings = [MAPPINGS[keyframe](key_state, key_path)]
    if "gsvnet" in found:
        gsv_path, gsv = found["gsvnet"]
        if _num_classes("gsvnet", gsv["grm"], gsv_path) != num_classes:
            raise CheckpointError(f"{gsv_path} propagates {_num_classes('gsvnet', gsv['grm'], gsv_path)} classes but "
                                  f"{key_path} segments {num_classes}: they were not trained together")
        mappings += [map_propagation(gsv["grm"], gsv_path), map_flowlight(gsv["flow"], f"{gsv_path} (state_dict_of)")]
    problems = []
    for m in mappings:
        if m.missing:
            problems.append(f"  {m.source}: keys the official layout has and this file lacks ({len(m.missing)}): "
                            f"{', '.join(m.missing[:12])}")
        unmapped = m.rest()
        if unmapped:
            problems.append(f"  {m.source}: keys that map to nothing in gsvkit ({len(unmapped)}): "
                            f"{', '.join(unmapped[:12])}")
    if problems:
        raise CheckpointError("the official checkpoint does not have the layout gsvkit converts:\n"
                              + "\n".join(problems))
    config = GSVNetConfig(num_classes=num_classes, keyframe_net=keyframe, conventions="official")
    model = GSVNet(config)
    state = {k: v for m in mappings for k, v in m.out.items()}
    if "gsvnet" not in found:  # keyframe only: the propagation stays as built (and is refused by require_trained)
        state.update({k: v for k, v in model.state_dict().items() if not k.startswith("keyframe_net.")})
    load_state_dict_checked(model, state, " + ".join(p for p, _ in found.values()),
                            hint="converted from the official layout")
    table = DATASETS[dataset].table
    if len(table.classes) != num_classes:
        raise CheckpointError(f"the checkpoint has {num_classes} classes but dataset {dataset} has "
                              f"{len(table.classes)}; pass --dataset with the dataset it was trained on")
    sources = {kind: {"file": Path(p).name, "sha256": sha256(p)}
               for kind, (p, _) in found.items()}
    return {"model": model.state_dict(), "model_config": asdict(config), "classes": list(table.classes),
            "dataset": dataset, "stage": "propagation" if "gsvnet" in found else "keyframe", "official": sources}


def write_converted(paths: list[str | Path], out: str | Path, dataset: str = "cityscapes") -> dict:
    """:func:`convert_official`, written atomically to ``out``; returns the checkpoint."""
    ckpt = convert_official(paths, dataset)
    save_atomic(marked(ckpt), out)
    return ckpt
