"""Reading and writing checkpoints and result files: atomic writes and key checks that say what went wrong."""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the permissions open() would
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never a half-written one
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)) and _disk_full(e, path.parent):  # torch says "unexpected pos"
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path} ({str(e).strip()[:80]}); free "
                          "some space and run again: the file already there was not changed") from e
        raise


def _disk_full(error: BaseException, folder: Path) -> bool:
    return getattr(error, "errno", None) == errno.ENOSPC or shutil.disk_usage(folder).free < 1 << 20


def remove(path: Path) -> None:
    """Delete a file or a folder tree, if it is there."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def move_into_place(new: Path, target: Path) -> None:
    """Replace ``target`` (a file or a folder) with ``new``, written beside it. A file is replaced atomically; a
    folder is moved aside first, so that ``target`` is the old or the new one whenever the process stops."""
    if new.is_dir():
        old = target.parent / f".{target.name}.old"
        remove(old)
        if target.exists():
            os.replace(target, old)
        os.replace(new, target)
        remove(old)
    else:
        os.replace(new, target)


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def write_text_atomic(path: str | Path, text: str) -> None:
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def finite_json(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats replaced by None (null), which the JSON standard and strict parsers
    require."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Strict JSON (no NaN or Infinity: those become null), written atomically."""
    write_text_atomic(path, json.dumps(finite_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file onto the CPU (tensors and plain containers only)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the checkpoint file, e.g. {path / 'checkpoint.pt'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (or train one with `gsv train`)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        # torch's own message may suggest weights_only=False, which would run code from the file: never quote that
        detail = "it holds objects other than tensors" if "weights_only" in str(e) else str(e).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: {detail}); "
                              "the file is truncated or not a PyTorch checkpoint") from e


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


def _model_config(given, path):
    """A checkpoint's model_config checked before anything is built from it: known keys, sane values."""
    from dataclasses import fields

    from gsvlib.models.gsvnet import GSVNetConfig

    known = {f.name for f in fields(GSVNetConfig)}
    if not isinstance(given, dict) or set(given) - known:
        extra = sorted(set(given) - known) if isinstance(given, dict) else type(given).__name__
        raise CheckpointError(f"{path} has a model_config gsvkit does not know ({extra}); was it written by another "
                              "program or a newer gsvkit?")
    try:
        return GSVNetConfig(**given)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid model_config: {e}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Build the GSVNet a ``gsv train`` checkpoint describes and load its weights; returns (model, checkpoint)."""
    from gsvlib.device import check_device
    from gsvlib.models.gsvnet import GSVNet, GSVNetConfig

    device = check_device(device)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a gsvkit checkpoint (expected keys 'model' and 'model_config', found "
                              f"{keys}); for ImageNet ResNet-18 weights use `gsv train --imagenet`")
    model = GSVNet(_model_config(ckpt["model_config"], path))
    load_state_dict_checked(model, ckpt["model"], str(path))
    broken = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(f"{path} holds NaN or infinite weights in {_listing(broken)}: the run diverged before "
                              "this checkpoint was written; train again with a lower --lr")
    return model.to(device), ckpt


def require_propagation(ckpt: dict, path: str | Path) -> None:
    """Refuse to run GSVNet's propagation from a checkpoint of stage ``keyframe``, whose propagation is untrained."""
    if ckpt.get("train_config", {}).get("stage") == "keyframe":
        raise CheckpointError(f"{path} holds a keyframe net only (stage keyframe): its propagation was never trained. "
                              f"Train it with `gsv train --stage gsv --init {path}`, or use --variants image "
                              "(gsv segment: --interval 1) to run the keyframe net alone")


def export_weights(checkpoint: str | Path, out: str | Path, manifest: str | Path | None = None,
                   extra: dict | None = None) -> dict:
    """Write a ``gsv train`` checkpoint's model as a half-precision file that :func:`load_model` reads (float tensors
    to fp16: half the size, no optimizer state) and, with ``manifest``, add or replace its entry in that JSON file:
    {file: {bytes, sha256, dataset, classes, model_config, iterations, command, **extra}}."""
    import hashlib

    from gsvlib.train import train_command

    ckpt = read_checkpoint(checkpoint)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{checkpoint} is not a gsvkit checkpoint (expected keys 'model' and 'model_config')")
    state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    keep = {k: ckpt[k] for k in ("model_config", "train_config", "iteration", "classes", "dataset") if k in ckpt}
    save_atomic({"model": state, **keep}, out)
    out = Path(out)
    entry = {"bytes": out.stat().st_size, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
             "dataset": ckpt.get("dataset"), "classes": ckpt.get("classes"), "model_config": ckpt["model_config"],
             "iterations": ckpt.get("iteration"),
             "command": train_command(ckpt["train_config"]) if "train_config" in ckpt else None, **(extra or {})}
    if manifest is not None:
        manifest = Path(manifest)
        entries = json.loads(manifest.read_text()) if manifest.is_file() else {}
        entries[out.name] = entry
        write_json_atomic(manifest, entries)
    return entry
