"""Training (sec. 4.1, "Implementation Details"): one loop for both stages, resumable.

- stage "keyframe": the keyframe net N (SwiftNet-R18 or BiSeNet-R18) on labelled frames, from ImageNet weights in
  torchvision format (``imagenet``) or from scratch.
- stage "gsv": GSVNet end-to-end with N frozen (loaded from ``init``), the paper's recipe as defaults: SGD, momentum
  0.9, lr 0.002 decayed x0.992 every 100 iterations, batch 8, weight decay 5e-4, crops of 3/4 of the input, keyframe
  intervals 1..5 (a sample propagates 1..4 steps from its keyframe; interval 1 has no non-keyframe to train on),
  cross-entropy on the last frame, optional distillation from N.

Every random choice of iteration k (batch indices, keyframe offset, augmentation) is drawn from a generator seeded
by (seed, k): :class:`TrainBatches` maps k to its batch. A run resumed from its checkpoint therefore repeats exactly the
iterations an uninterrupted run would, and DataLoader workers (``workers``) can read batches ahead without changing
them. Checkpoints are written atomically every ``checkpoint_every`` iterations; the metrics log is JSON lines.
The settings and recipes are in :mod:`gsvlib.config`.
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
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gsvlib.checkpoint import CheckpointError, load_state_dict_checked, load_torchvision_weights, read_checkpoint
from gsvlib.config import PATHS, STARTING_POINTS, TrainConfig
from gsvlib.data import RandomScaleCropFlip, SnippetDataset, open_dataset
from gsvlib.files import save_atomic, write_json_atomic, write_text_atomic
from gsvlib.models.gsvnet import GSVNet, GSVNetConfig
from gsvlib.models.layers import resize
from gsvlib.models.resnet import normalize

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
        if model.keyframe_net.backbone is None:
            raise ValueError(f"keyframe net {cfg.keyframe_net} has no ResNet-18 backbone to load --imagenet into")
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


class TrainBatches(Dataset):
    """Iteration k -> its batch: (frames (B, T, 3, H, W), labels (B, H, W), keyframe offset T-1). The offset, the
    augmentation and the sample indices are drawn from a generator seeded by (seed, k), so batch k is the same
    whichever process builds it and whenever."""

    def __init__(self, dataset: SnippetDataset, cfg: TrainConfig):
        self.dataset = dataset
        self.cfg = cfg
        self.max_offset = cfg.max_interval - 1 if cfg.stage == "gsv" else 0

    def __len__(self) -> int:
        return self.cfg.iterations

    def __getitem__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + iteration)
        offset = int(torch.randint(min(1, self.max_offset), self.max_offset + 1, (1,), generator=g))
        rng = random.Random(int(torch.randint(2**31, (1,), generator=g)))
        transform = RandomScaleCropFlip((cfg.scale_min, cfg.scale_max), cfg.crop, rng=rng)
        indices = torch.randint(len(self.dataset), (cfg.batch_size,), generator=g).tolist()
        frames, labels = _collate([transform(self.dataset.sample(i, offset)) for i in indices])
        return frames, labels, offset


def _threads(count: int, worker: int) -> None:
    """Give a DataLoader worker the training process's thread count: torch's bilinear resize rounds differently with
    another count (1 ulp), and the batches must not depend on who builds them. Workers are spawned, not forked: a
    forked child that changes its OpenMP thread count can deadlock."""
    torch.set_num_threads(count)


LOCK = ".lock"  # held by the process training in a run folder


def _differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """The settings in which ``cfg`` differs from a run's saved config, as "name: old -> new"."""
    try:
        saved = asdict(TrainConfig(**saved))  # fields newer than the run take their defaults
    except TypeError as e:
        return [f"the saved settings are not a TrainConfig ({e})"]
    free = ("out", "iterations", "checkpoint_every", "device", "workers", *STARTING_POINTS)  # no effect on results
    return [f"{k}: {saved[k]!r} -> {v!r}" for k, v in asdict(cfg).items() if k not in free and saved[k] != v]


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
    max_offset = cfg.max_interval - 1 if cfg.stage == "gsv" else 0
    dataset = open_dataset(cfg.dataset, cfg.root, cfg.split, cfg.span, offset=None, max_offset=max_offset)
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
    batches = DataLoader(TrainBatches(dataset, cfg), batch_size=None, sampler=range(start, cfg.iterations),
                         num_workers=cfg.workers, worker_init_fn=partial(_threads, torch.get_num_threads()),
                         multiprocessing_context="spawn" if cfg.workers else None)
    bar = tqdm(zip(range(start, cfg.iterations), batches), initial=start, total=cfg.iterations,
               desc=f"train {cfg.stage} ({cfg.keyframe_net if cfg.stage == 'keyframe' else 'propagation'})",
               disable=not progress)
    with log_path.open("a") as log:
        for it, (frames, labels, offset) in bar:
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
                     "offset": offset, "seconds": round(elapsed + time.perf_counter() - t0, 2)}
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

