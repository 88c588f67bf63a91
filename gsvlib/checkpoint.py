"""Checkpoints: reading them with checks that say what went wrong, building the model one describes, loading
torchvision-format ImageNet weights, and exporting a training run as a small weights file with a manifest entry."""
from __future__ import annotations

import os
import json
import re
from dataclasses import fields
from pathlib import Path

import torch
from torch import nn

from gsvlib.config import train_command
from gsvlib.device import check_device
from gsvlib.files import (MARK, check_file_output, marked, refuse_overlap, save_atomic, sha256, temporary,
                          write_json_atomic)
from gsvlib.models.gsvnet import EARLIER_PARTS, PART_TITLES, PARTS, GSVNet, GSVNetConfig, current_names
from gsvlib.models.resnet import ResNet18
from gsvlib.stages import STAGES, stage_named


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


def read_checkpoint(path: str | Path, allowed_globals=()) -> dict:
    """Load a checkpoint file onto the CPU: tensors and plain containers only, and the types in ``allowed_globals``
    (``torch.serialization.safe_globals`` entries, e.g. the argparse options an official GSVNet checkpoint holds)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the checkpoint file, e.g. {path / 'checkpoint.pt'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (or train one with `gsv train`)")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return upgraded(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # torch raises several types for truncated or foreign files
        # torch's own message may suggest weights_only=False, which would run code from the file: never quote that
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        detail = (f"it holds objects other than tensors{f', e.g. {refused[1]}' if refused else ''}"
                  if "weights_only" in str(e) else str(e).splitlines()[0])
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: {detail}); "
                              "the file is truncated or not a PyTorch checkpoint") from e


def upgraded(ckpt):
    """A gsvkit checkpoint as one written now would hold it: parts named as now in its model state and its record of
    trained parts (:data:`gsvlib.models.gsvnet.EARLIER_PARTS`), its stage named as now
    (:data:`gsvlib.stages.EARLIER_STAGES`). Anything else is returned unchanged."""
    if isinstance(ckpt, dict):
        if isinstance(ckpt.get("model"), dict):
            current_names(ckpt["model"])
        if isinstance(ckpt.get("trained"), list):
            ckpt["trained"] = sorted(EARLIER_PARTS.get(p, p) for p in ckpt["trained"])
        for record in (ckpt, ckpt.get("train_config")):  # "stage": official conversions; train_config: gsvkit runs
            if isinstance(record, dict) and isinstance(record.get("stage"), str):
                record["stage"] = stage_named(record["stage"])
    return ckpt


def _listing(keys: list[str], most: int = 12) -> str:
    shown = ", ".join(keys[:most])
    return shown + (f", ... ({len(keys) - most} more)" if len(keys) > most else "")


def load_state_dict_checked(module: nn.Module, state: dict, source: str, hint: str = "") -> None:
    """``module.load_state_dict(state, strict=True)`` with an error that lists missing, unexpected and mis-shaped keys."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, expected a state_dict (a dict of tensors)")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: model {tuple(own[k].shape)} vs checkpoint {tuple(state[k].shape)}"
              for k in sorted(set(own) & set(state)) if tuple(own[k].shape) != tuple(getattr(state[k], "shape", ()))]
    if missing or unexpected or shapes:
        lines = [f"{source} does not match {type(module).__name__}" + (f" ({hint})" if hint else "") + ":"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): {_listing(shapes, 5)}")
        lines.append("  Was it saved from a different model, number of classes, or keyframe net?")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state, strict=True)


def _model_config(ckpt: dict, path):
    """A checkpoint's model_config checked before anything is built from it: known keys, sane values. A checkpoint
    written before the model recorded its keyframe scale takes the scale its stage propagation run trained at."""
    given = ckpt["model_config"]
    known = {f.name for f in fields(GSVNetConfig)}
    if not isinstance(given, dict) or set(given) - known:
        extra = sorted(set(given) - known) if isinstance(given, dict) else type(given).__name__
        raise CheckpointError(f"{path} has a model_config gsvkit does not know ({extra}); was it written by another "
                              "program or a newer gsvkit?")
    run = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
    if "key_scale" not in given and stage_named(run.get("stage", "")) == "propagation" and "key_scale" in run:
        given = {**given, "key_scale": run["key_scale"]}
    try:
        return GSVNetConfig(**given)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid model_config: {e}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Build the GSVNet a ``gsv train`` checkpoint describes and load its weights; returns (model, checkpoint).
    ``model.config.key_scale`` is the keyframe scale the model runs at by default (its training scale)."""
    device = check_device(device)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a gsvkit checkpoint (expected keys 'model' and 'model_config', found "
                              f"{keys}); for ImageNet ResNet-18 weights use `gsv train --imagenet`")
    model = GSVNet(_model_config(ckpt, path))
    load_state_dict_checked(model, ckpt["model"], str(path))
    broken = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite weights in {_listing(broken)}: the run diverged before "
                              "this checkpoint was written; train again with a lower --lr")
    return model.to(device), ckpt


def load_torchvision_weights(backbone: ResNet18, weights: str | Path | dict) -> None:
    """Load an ImageNet ResNet-18 checkpoint in torchvision format (a path or a state_dict) into ``backbone``.

    The checkpoint must hold exactly torchvision's ``resnet18`` keys (checked against ``ResNet18(with_fc=True)``);
    the classifier ``fc.*`` is dropped when ``backbone`` has none.
    """
    source = str(weights) if isinstance(weights, (str, Path)) else "the given state_dict"
    state = read_checkpoint(weights) if isinstance(weights, (str, Path)) else weights
    # Validate names and shapes against torchvision's full layout, then load what this backbone has.
    load_state_dict_checked(ResNet18(with_fc=True), state, source, hint="a torchvision resnet18 state_dict")
    if not hasattr(backbone, "fc"):
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    backbone.load_state_dict(state, strict=True)


_TRAIN_PART = {
    "keyframe_net": "train it with `gsv train --stage keyframe`, then start the propagation from it with --init",
    "flow_net": "train it with `gsv train --stage flow` and start the propagation from it with --init-flow, or let "
                "stage propagation train it (without --freeze-flow)",
    "correction": "train the propagation with `gsv train --stage propagation --init {path}`, or run the keyframe net "
                  "alone (gsv eval --variants image, gsv segment --interval 1)",
}


def trained_parts(ckpt: dict) -> set[str]:
    """The parts of GSVNet (:data:`PARTS`) whose weights in ``ckpt`` were trained, not left as built. Checkpoints
    record them (``"trained"``); for one written before they did, they follow from its stage and starting points."""
    if isinstance(ckpt.get("trained"), list):
        return set(ckpt["trained"])
    run = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
    stage = ckpt.get("stage", run.get("stage"))  # "stage": files converted from the official code
    if stage in STAGES and not STAGES[stage].starts_propagation:  # keyframe, flow: what the stage trains
        return set(STAGES[stage].trains)
    flow = run.get("train_flow", True) or run.get("init_flow") or run.get("init_propagation") or not run
    return {"correction", *(["flow_net"] if flow else []), *(["keyframe_net"] if run.get("init") or not run else [])}


def require_trained(ckpt: dict, path: str | Path, parts, purpose: str) -> None:
    """Refuse ``ckpt`` (read from ``path``) for ``purpose`` when one of ``parts`` was never trained: an untrained part
    runs as random weights and its output would pass for GSVNet's."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:  # a part this check does not know would pass unchecked: a variant or stage names it wrongly
        raise ValueError(f"{purpose} names parts {unknown} that a checkpoint does not record; the parts are {PARTS}")
    missing = [p for p in PARTS if p in set(parts) - trained_parts(ckpt)]
    if missing:
        held = ", ".join(PART_TITLES[p] for p in PARTS if p in trained_parts(ckpt)) or "no trained part"
        raise CheckpointError(f"{path}: its {' and '.join(PART_TITLES[p] for p in missing)} "
                              f"{'was' if len(missing) == 1 else 'were'} never trained (it holds {held})"
                              f", and {purpose} runs {'it' if len(missing) == 1 else 'them'}: "
                              + _TRAIN_PART[missing[0]].format(path=path))


def export_weights(checkpoint: str | Path, out: str | Path, manifest: str | Path | None = None,
                   extra: dict | None = None) -> dict:
    """Write a ``gsv train`` checkpoint's model as a half-precision file that :func:`load_model` reads (float tensors
    to fp16: half the size, no optimizer state) and, with ``manifest``, its entry there (:func:`write_manifest_entry`).
    Returns the entry."""
    refuse_overlap(out, {"the checkpoint": checkpoint, "the manifest": manifest})
    check_file_output(out, kind="torch")
    if manifest is not None:
        refuse_overlap(manifest, {"the checkpoint": checkpoint}, "--manifest")
        read_manifest(manifest)  # a file that is not a manifest is refused before anything is written
    ckpt = _gsvkit_checkpoint(checkpoint)
    fp16_max = torch.finfo(torch.float16).max
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() and
           not (torch.isfinite(v).all() and v.abs().amax() <= fp16_max)]
    if bad:
        raise CheckpointError(f"{checkpoint} holds NaN, infinite or values beyond fp16's range (+-{fp16_max:g}) in "
                              f"{', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}: fp16 weights would be broken; "
                              "export a checkpoint of a run that did not diverge (nothing was written)")
    state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    keep = {k: ckpt[k] for k in ("model_config", "train_config", "iteration", "classes", "dataset") if k in ckpt}
    keep["trained"] = sorted(trained_parts(ckpt))
    out = Path(out)
    settle_export(out, manifest)
    if manifest is None:
        save_atomic(marked({"model": state, **keep}), out)
        return write_manifest_entry(checkpoint, out)
    # With a manifest the weights and their entry change together: the new weights wait beside --out while the
    # manifest (the commit point) is rewritten, then take their place; settle_export finishes or undoes a killed one.
    pending = _pending(out)
    save_atomic(marked({"model": state, **keep}), pending)
    entry = write_manifest_entry(checkpoint, pending, manifest, extra, name=out.name)
    os.replace(pending, out)
    return entry


def _pending(out: Path) -> Path:
    return out.parent / f".{out.name}.pending"


def settle_export(out: Path, manifest: str | Path | None) -> None:
    """Clean up after an export that was killed: remove its temporary files, and finish its last step (weights
    waiting beside ``out`` whose sha256 the manifest already records take their place) or undo it (weights the
    manifest does not record are deleted, so the old weights and entry stay together)."""
    for stale in out.parent.glob(".*.tmp"):
        if temporary(out, stale.name):  # left by an export that was killed while writing
            stale.unlink()
    pending = _pending(out)
    if not pending.exists():
        return
    recorded = read_manifest(manifest).get(out.name, {}).get("sha256") if manifest is not None else None
    if recorded is not None and recorded == sha256(pending):
        os.replace(pending, out)
    else:
        pending.unlink()


def read_manifest(path: str | Path) -> dict:
    """The entries of a weights manifest (file name -> entry), {} where there is no file yet; a file that is not one
    (not JSON, or not an object of objects) is an error that names it."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"--manifest {path} is not JSON ({e}), so not a manifest (an object mapping weights "
                              "files to their entries); name a manifest or a new file (nothing was changed)") from None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise CheckpointError(f"--manifest {path} is JSON but not a manifest (an object mapping weights files to "
                              "their entries); name a manifest or a new file (nothing was changed)")
    return entries


def read_metrics(path: str | Path) -> dict:
    """A ``gsv eval --out`` file to record in a manifest entry (its ``experiment`` block left out); a missing file
    or one that is not a JSON object is an error that names it."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"--metrics {path} does not exist: give files that `gsv eval --out` wrote "
                              "(nothing was written)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        report = e
    if not isinstance(report, dict):
        raise CheckpointError(f"--metrics {path} is not the JSON object `gsv eval --out` writes; evaluate again "
                              "(nothing was written)")
    return {k: v for k, v in report.items() if k != "experiment" and k not in MARK}


def _gsvkit_checkpoint(path: str | Path) -> dict:
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{path} is not a gsvkit checkpoint (expected keys 'model' and 'model_config')")
    return ckpt


def write_manifest_entry(checkpoint: str | Path, weights: str | Path, manifest: str | Path | None = None,
                         extra: dict | None = None, name: str | None = None) -> dict:
    """The manifest entry of a weights file exported from ``checkpoint``: {bytes, sha256, dataset, classes,
    model_config, iterations, command, **extra}; with ``manifest``, added to (or replaced in) that JSON file, which
    maps file names (``name``, by default the weights file's) to entries. Returns the entry."""
    ckpt = _gsvkit_checkpoint(checkpoint)
    weights = Path(weights)
    entry = {"bytes": weights.stat().st_size, "sha256": sha256(weights),
             "dataset": ckpt.get("dataset"), "classes": ckpt.get("classes"), "model_config": ckpt["model_config"],
             "iterations": ckpt.get("iteration"),
             "command": train_command(ckpt["train_config"]) if "train_config" in ckpt else None, **(extra or {})}
    if manifest is not None:
        entries = read_manifest(manifest)
        entries[name or weights.name] = entry
        write_json_atomic(manifest, entries)
    return entry
