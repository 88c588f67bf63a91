"""Training (sec. 4.1, "Implementation Details"): one loop for both stages, resumable.

- stage "keyframe": the keyframe net N (SwiftNet-R18 or BiSeNet-R18) on labelled frames, from ImageNet weights in
  torchvision format (``imagenet``) or from scratch.
- stage "gsv": GSVNet end-to-end with N frozen (loaded from ``init``), the paper's recipe as defaults: SGD, momentum
  0.9, lr 0.002 decayed x0.992 every 100 iterations, batch 8, weight decay 5e-4, crops of 3/4 of the input, keyframe
  intervals 1..5 (a sample propagates 1..4 steps from its keyframe; interval 1 has no non-keyframe to train on),
  cross-entropy on the last frame, optional distillation from N.

Every random choice of iteration k (batch indices, keyframe offset, augmentation) is drawn from a generator seeded
by (seed, k). A run resumed from its checkpoint therefore repeats exactly the iterations an uninterrupted run would.
Checkpoints are written atomically every ``checkpoint_every`` iterations; the metrics log is JSON lines.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import socket
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gsvlib.checkpoint import (CheckpointError, load_state_dict_checked, read_checkpoint, save_atomic,
                               write_json_atomic, write_text_atomic)
from gsvlib.data import RandomScaleCropFlip, open_dataset
from gsvlib.device import check_device
from gsvlib.models.gsvnet import GSVNet, GSVNetConfig
from gsvlib.models.layers import resize
from gsvlib.models.resnet import load_torchvision_weights, normalize

STAGES = ("keyframe", "gsv")
PATHS = ("root", "out", "init", "imagenet")  # TrainConfig fields that name files or folders


@dataclass
class TrainConfig:
    stage: str = "gsv"  # "keyframe" or "gsv"
    dataset: str = "synthetic"  # "synthetic", "cityscapes" or "camvid"
    root: str = "data/synthetic"
    split: str = "train"
    span: tuple[float, float] = (0.0, 1.0)  # CamVid: the fraction (a, b) of each sequence in time that is used
    out: str = "runs/gsv"
    keyframe_net: str = "swiftnet"
    flow_net: str = "light"
    use_intra: bool = True  # False: the paper's "without intra features" ablation
    train_flow: bool = True  # False: keep the flow net frozen
    init: str | None = None  # gsvkit checkpoint to start from (stage gsv: its keyframe net is used)
    imagenet: str | None = None  # torchvision-format ResNet-18 weights for the keyframe backbone
    iterations: int = 2000
    batch_size: int = 8
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay: float = 0.992  # lr x lr_decay every lr_decay_every iterations
    lr_decay_every: int = 100
    crop: float = 0.75
    scale_min: float = 0.5
    scale_max: float = 1.5
    max_interval: int = 5  # keyframe intervals up to max_interval: offsets 1..max_interval-1 are trained
    key_scale: float = 1.0  # keyframe input scale while training
    distill: float = 0.0  # weight of the KL term towards N's prediction on the last frame
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast on CUDA
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self):
        self.span = tuple(float(v) for v in self.span)  # a list from JSON or argparse compares equal to the tuple

    def check(self) -> None:
        if not (len(self.span) == 2 and 0 <= self.span[0] < self.span[1] <= 1):
            raise ValueError(f"span must be fractions (a, b) with 0 <= a < b <= 1, got {self.span}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not (2 if self.stage == "gsv" else 1) <= self.max_interval <= 30:
            raise ValueError(f"max_interval must be in 2..30 for stage gsv (interval 1 has no non-keyframe to train; a "
                             f"Cityscapes snippet has 30 frames), got {self.max_interval}")
        for name in ("iterations", "batch_size", "checkpoint_every", "lr_decay_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "momentum", "weight_decay", "lr_decay", "crop", "scale_min", "scale_max", "key_scale",
                     "distill"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        ranges = {"lr": (self.lr > 0, "> 0"), "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
                  "weight_decay": (self.weight_decay >= 0, ">= 0"), "lr_decay": (0 < self.lr_decay <= 1, "in (0, 1]"),
                  "crop": (0 < self.crop <= 1, "in (0, 1]"), "key_scale": (0 < self.key_scale <= 2, "in (0, 2]"),
                  "scale_min": (0 < self.scale_min <= self.scale_max, f"in (0, scale_max = {self.scale_max}]"),
                  "distill": (self.distill >= 0, ">= 0")}
        for name, (ok, allowed) in ranges.items():
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)}")
        check_device(self.device)
        if self.amp and not self.device.startswith("cuda"):
            raise ValueError("amp (bfloat16 autocast) is for CUDA devices; drop --amp on the CPU")


# Stage "keyframe" trains a whole network from scratch, for which Adam converges far faster than the paper's SGD
# recipe (which fine-tunes only PF); these replace TrainConfig's defaults unless given explicitly.
KEYFRAME_DEFAULTS = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "lr_decay": 0.95, "max_interval": 1}


def config_for(stage: str, **given) -> TrainConfig:
    """A TrainConfig with the stage's defaults, overridden by ``given`` (None values count as not given)."""
    values = {**(KEYFRAME_DEFAULTS if stage == "keyframe" else {}), **{k: v for k, v in given.items() if v is not None}}
    return TrainConfig(stage=stage, **values)


FLAGS = {"use_intra": "--no-intra", "train_flow": "--freeze-flow", "amp": "--amp"}  # fields set by a bare flag


def train_command(config: dict, cwd: str | Path | None = None) -> str:
    """The ``gsv train`` command line that gives a run with this (saved) config: its fields that differ from the
    stage's defaults, with paths relative to ``cwd`` (default: the working directory)."""
    cfg = asdict(TrainConfig(**config))
    defaults = asdict(config_for(cfg["stage"]))
    cwd = Path(cwd or Path.cwd()).resolve()
    args = ["gsv train", f"--stage {cfg['stage']}"]
    for k, v in cfg.items():
        if k == "stage" or v == defaults[k]:
            continue
        if k in FLAGS:
            args.append(FLAGS[k])
            continue
        if k in PATHS:
            v = os.path.relpath(v, cwd)
        args.append(f"--{k.replace('_', '-')} " + (" ".join(f"{x:g}" for x in v) if k == "span" else str(v)))
    return " ".join(args)


def _collate(samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = {tuple(s["frames"].shape) for s in samples}
    if len(sizes) > 1:
        raise ValueError(f"samples of one batch differ in size {sorted(sizes)}; the dataset's frames must share a size "
                         "(or use --batch-size 1)")
    return torch.stack([s["frames"] for s in samples]), torch.stack([s["label"] for s in samples])


def build_model(cfg: TrainConfig, num_classes: int) -> GSVNet:
    model = GSVNet(GSVNetConfig(num_classes, cfg.keyframe_net, cfg.flow_net, use_intra=cfg.use_intra,
                                freeze_keyframe=cfg.stage == "gsv"))
    if cfg.imagenet:
        load_torchvision_weights(model.keyframe_net.backbone, cfg.imagenet)
    if cfg.init:
        init = read_checkpoint(cfg.init)
        state = init.get("model") if isinstance(init, dict) else None
        if state is None:
            raise CheckpointError(f"{cfg.init} is not a gsvkit checkpoint (no 'model' entry); train one with "
                                  "`gsv train --stage keyframe`")
        if cfg.stage == "gsv":  # only N comes from the keyframe stage
            state = {k.removeprefix("keyframe_net."): v for k, v in state.items() if k.startswith("keyframe_net.")}
            load_state_dict_checked(model.keyframe_net, state, cfg.init, hint="its keyframe net")
        else:
            load_state_dict_checked(model, state, cfg.init)
    if cfg.stage == "gsv" and not cfg.train_flow:
        model.freeze("flow_net")
    return model


def trainable(model: GSVNet, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    part = model.keyframe_net if cfg.stage == "keyframe" else model
    return [p for p in part.parameters() if p.requires_grad]


def loss_fn(model: GSVNet, frames: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Cross-entropy (255 ignored) of the last frame's prediction, upsampled to the label size (+ distillation)."""
    if cfg.stage == "keyframe":
        logits = model.keyframe_net(normalize(frames[:, -1]))  # (B, C, H/s, W/s)
        return F.cross_entropy(resize(logits, labels.shape[-2:]), labels, ignore_index=255)
    seg = model(frames, key_scale=cfg.key_scale)  # (B, C, H/8, W/8)
    loss = F.cross_entropy(resize(seg, labels.shape[-2:]), labels, ignore_index=255)
    if cfg.distill > 0:
        with torch.no_grad():
            teacher = model.segment_keyframe(frames[:, -1], cfg.key_scale).softmax(1)
        kl = F.kl_div(seg.log_softmax(1), teacher, reduction="none").sum(1).mean()
        loss = loss + cfg.distill * kl
    return loss


STARTING_POINTS = ("init", "imagenet")  # read when a run starts, never when it resumes
LOCK = ".lock"  # held by the process training in a run folder


def _differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """The settings in which ``cfg`` differs from a run's saved config, as "name: old -> new"."""
    try:
        saved = asdict(TrainConfig(**saved))  # fields newer than the run take their defaults
    except TypeError as e:
        return [f"the saved settings are not a TrainConfig ({e})"]
    return [f"{k}: {saved[k]!r} -> {v!r}" for k, v in asdict(cfg).items()
            if k not in ("out", "iterations", "checkpoint_every", "device", *STARTING_POINTS) and saved[k] != v]


def _check_resume(out: Path, cfg: TrainConfig, resume: bool) -> dict | None:
    ckpt_path = out / "checkpoint.pt"
    if not resume:
        if ckpt_path.exists():
            raise FileExistsError(f"{out} already holds a run ({ckpt_path}); pass --resume to continue it, or choose "
                                  "another --out (nothing was changed)")
        others = sorted(p.name for p in out.iterdir() if p.name != LOCK and not p.name.endswith(".tmp"))
        config = out / "config.json"
        restart = set(others) <= {"config.json", "log.jsonl"} and config.is_file() and \
            not _differences(json.loads(config.read_text()), cfg)  # stopped before its first checkpoint
        if others and not restart:
            raise FileExistsError(f"{out} is not empty and holds no run of these settings ({', '.join(others[:5])}); "
                                  "choose an empty or new --out (nothing was changed)")
        return None
    if not ckpt_path.exists():
        raise FileNotFoundError(f"nothing to resume: {ckpt_path} does not exist; run without --resume to start")
    ckpt = read_checkpoint(ckpt_path)
    if "optimizer" not in ckpt or "iteration" not in ckpt:
        raise CheckpointError(f"{ckpt_path} is a weights file (no optimizer state, e.g. from `gsv export`), not a "
                              "training run to resume: start a new run from it with --init instead of --resume")
    differ = _differences(ckpt.get("train_config", {}), cfg)
    if differ:
        raise ValueError(f"--resume with other settings than the run in {out}: " + "; ".join(differ))
    return ckpt


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_log: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) training; returns {"losses": [...], "iteration": n, "checkpoint": path, "seconds": s}."""
    cfg.check()
    # absolute paths, so that the same run reached from another working directory is recognised on --resume
    cfg = replace(cfg, **{k: str(Path(v).expanduser().resolve()) for k in PATHS if (v := getattr(cfg, k))})
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        return _run(cfg, out, resume, progress, on_log)


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold an exclusive lock on the run folder ``out`` (its file LOCK) while the block runs; a second process is
    refused, naming the holder. The operating system drops the lock when its holder dies: a stale lock never blocks."""
    with open(out / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RuntimeError(f"{out} is in use by another training run ({holder}); wait for it to finish or choose "
                               "another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        yield


def _run(cfg: TrainConfig, out: Path, resume: bool, progress: bool, on_log) -> dict:
    ckpt = _check_resume(out, cfg, resume)
    if ckpt is not None:  # the run's own checkpoint holds everything: its starting points need not exist any more
        cfg = replace(cfg, **{k: ckpt.get("train_config", {}).get(k) for k in STARTING_POINTS})
    transform = RandomScaleCropFlip((cfg.scale_min, cfg.scale_max), cfg.crop, rng=random.Random())
    max_offset = cfg.max_interval - 1 if cfg.stage == "gsv" else 0
    dataset = open_dataset(cfg.dataset, cfg.root, cfg.split, cfg.span, offset=None, max_offset=max_offset,
                           transform=transform)
    torch.manual_seed(cfg.seed)
    start_from = replace(cfg, init=None, imagenet=None) if ckpt is not None else cfg
    model = build_model(start_from, dataset.table.num_classes).to(cfg.device)
    params = trainable(model, cfg)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: cfg.lr_decay ** (it // cfg.lr_decay_every))
    start = 0
    if ckpt is not None:
        load_state_dict_checked(model, ckpt["model"], str(out / "checkpoint.pt"))
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start = ckpt["iteration"]
    for stale in out.glob(".*.tmp"):  # temporary files of atomic writes cut short by a kill
        stale.unlink()
    if start < cfg.iterations:  # a finished run asked for no more iterations stays as it is
        write_json_atomic(out / "config.json", asdict(cfg))
    log_path = out / "log.jsonl"
    kept = [e for e in (parse_log(log_path) if log_path.exists() and resume else [])
            if e["iteration"] <= start]  # drop iterations after the checkpoint: they are redone
    write_text_atomic(log_path, "".join(json.dumps(e) + "\n" for e in kept))
    elapsed = kept[-1]["seconds"] if kept else 0.0  # the log's clock runs on across resumes

    def save(iteration: int) -> None:
        save_atomic({"model": model.state_dict(), "model_config": asdict(model.config), "train_config": asdict(cfg),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "iteration": iteration,
                     "classes": list(dataset.table.classes), "dataset": cfg.dataset}, out / "checkpoint.pt")

    losses, t0 = [], time.perf_counter()
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=f"train {cfg.stage}",
               disable=not progress)
    with log_path.open("a") as log:
        for it in bar:
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)
            dataset.offset = int(torch.randint(min(1, max_offset), max_offset + 1, (1,), generator=g))
            transform.rng.seed(int(torch.randint(2**31, (1,), generator=g)))
            idx = torch.randint(len(dataset), (cfg.batch_size,), generator=g).tolist()
            frames, labels = _collate([dataset[i] for i in idx])
            frames, labels = frames.to(cfg.device), labels.to(cfg.device)
            model.train()
            with torch.autocast("cuda", torch.bfloat16, enabled=cfg.amp):
                loss = loss_fn(model, frames, labels, cfg)
            if not math.isfinite(loss.item()):
                saved = (out / "checkpoint.pt").is_file()
                state = f"{out / 'checkpoint.pt'} (the last checkpoint) is intact. " if saved else \
                    "No checkpoint had been written yet. "
                raise FloatingPointError(f"loss became {loss.item()} at iteration {it + 1}. {state}Train again into a "
                                         "new --out with a lower --lr (--resume keeps the run's settings)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            entry = {"iteration": it + 1, "loss": round(loss.item(), 5), "lr": opt.param_groups[0]["lr"],
                     "offset": dataset.offset, "seconds": round(elapsed + time.perf_counter() - t0, 2)}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            losses.append(entry["loss"])
            bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{entry['lr']:.2e}")
            if on_log is not None:
                on_log(entry)
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
                save(it + 1)
    return {"losses": losses, "iteration": max(start, cfg.iterations), "checkpoint": str(out / "checkpoint.pt"),
            "seconds": round(time.perf_counter() - t0, 1)}


def read_log(run: str | Path) -> list[dict]:
    """The metrics log of a run folder as a list of dicts."""
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run} a `gsv train` run folder?")
    return parse_log(path)


def parse_log(path: Path) -> list[dict]:
    """The JSON lines of ``path``. A torn final line (what a kill during a write leaves) is dropped with a warning;
    a bad line anywhere else is an error that names the file and the line."""
    lines = [(n, l) for n, l in enumerate(path.read_text().splitlines(), 1) if l.strip()]
    entries = []
    for n, line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n == lines[-1][0]:
                warnings.warn(f"{path}: dropping its torn last line {n} (an interrupted write); the run resumes "
                              "from its checkpoint", stacklevel=2)
                break
            raise ValueError(f"{path} line {n} is not JSON ({e}); the log is damaged: move it away to resume "
                             "without it") from None
    return entries

