"""Training (sec. 4.1, "Implementation Details"): one loop for both stages, resumable.

- stage "keyframe": the keyframe net N (SwiftNet-R18 or BiSeNet-R18) on labelled frames, from ImageNet weights in
  torchvision format (``imagenet``) or from scratch.
- stage "propagation" (earlier "gsv"): GSVNet end-to-end with N frozen (loaded from ``init``), the paper's recipe as
  defaults: SGD, momentum 0.9, lr 0.002 decayed x0.992 every 100 iterations, batch 8, weight decay 5e-4, crops of 3/4
  of the input, keyframe intervals 1..5 (a sample propagates 1..4 steps from its keyframe; interval 1 has no
  non-keyframe to train on), cross-entropy on the last frame, optional distillation from N and a photometric loss on
  every frame pair.
- either stage may weigh the cross-entropy per class (``class_weights``, :mod:`gsvlib.data.balance`).

Every random choice of iteration k (batch indices, keyframe offset, augmentation) is drawn from a generator seeded
by (seed, k): :class:`TrainBatches` maps k to its batch. A run resumed from its checkpoint therefore repeats exactly the
iterations an uninterrupted run would, and DataLoader workers (``workers``) can read batches ahead without changing
them. Checkpoints are written atomically every ``checkpoint_every`` iterations; the metrics log is JSON lines.
The settings and recipes are in :mod:`gsvlib.config`.

Started by torchrun with N processes (``gsv train --nproc N``), each rank builds its share of every global batch and
the gradients are summed over the ranks (:mod:`gsvlib.distributed`): the global batch, the schedule and the results
stay those of one process, and a run saved by N processes resumes on any number. Rank 0 alone writes.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
import warnings
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from gsvlib.checkpoint import (CheckpointError, load_state_dict_checked, load_torchvision_weights,
                               read_checkpoint, trained_parts)
from gsvlib.config import PATHS, STARTING_POINTS, TrainConfig
from gsvlib.data import RandomScaleCropFlip, SnippetDataset, open_dataset
from gsvlib.data.balance import CLASS_WEIGHTS, class_pixels
from gsvlib.data.stills import StillsInMotion, WithStills
from gsvlib.device import PRECISIONS
from gsvlib.distributed import Ranks, convert_sync_batchnorm, process_group, rank_device, sum_gradients, sum_over_ranks
from gsvlib.files import (LOCK_TEXT, locked, marked, save_atomic, sha256, temporary, write_json_atomic,
                          write_text_atomic)
from gsvlib.models.gsvnet import PART_TITLES, GSVNet, GSVNetConfig
from gsvlib.models.layers import channels_last
from gsvlib.progress import progress_bar
from gsvlib.stages import STAGES

BATCHES = 2  # how TrainBatches draws batch k from (seed, k); 2: one generator per sample, so that ranks can share it


def _collate(samples: list[dict], targets: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (B, T, 3, H, W), targets): "labels" (B, H, W), or "flow": the last frame's flow and where it is valid,
    (B, 3, H, W)."""
    sizes = {tuple(s["frames"].shape) for s in samples}
    if len(sizes) > 1:
        raise ValueError(f"samples of one batch differ in size {sorted(sizes)}; the dataset's frames must share a size "
                         "(or use --batch-size 1)")
    wanted = [torch.cat((s["flow"][-1], s["valid"][None].float())) if targets == "flow" else s["label"]
              for s in samples]
    return torch.stack([s["frames"] for s in samples]), torch.stack(wanted)


def _saved_model(path: str, stage: str) -> dict:
    """The model state of a gsvkit checkpoint that a run starts from."""
    ckpt = read_checkpoint(path)
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if state is None:
        raise CheckpointError(f"{path} is not a gsvkit checkpoint (no 'model' entry); train one with "
                              f"`gsv train --stage {stage}`")
    return state


def _part(state: dict, name: str) -> dict:
    """The entries of one sub-network ("keyframe_net", "flow_net") of a model state, without its prefix."""
    return {k.removeprefix(f"{name}."): v for k, v in state.items() if k.startswith(f"{name}.")}


def _trainer_of(parts: tuple[str, ...], default: str) -> str:
    """The stage that trains exactly ``parts``, else one that trains them among others, else ``default``."""
    fits = [name for name, s in STAGES.items() if set(s.trains) == set(parts)]
    fits += [name for name, s in STAGES.items() if set(parts) <= set(s.trains)]
    return fits[0] if fits else default


def trained_by(cfg: TrainConfig) -> set[str]:
    """The parts of GSVNet a fresh run of ``cfg`` leaves trained: those its stage trains, and the trained parts its
    starting points give it (read from their checkpoints). A part the stage needs (:attr:`Stage.needs`: the propagation
    stage's frozen keyframe net, and its flow net where it stays fixed) that no starting point gives trained is refused,
    naming the options that give it: however the stage is started (a recipe, --stage, ``gsv run``, Python)."""
    stage = STAGES[cfg.stage]
    parts = {p for p in stage.trains if p != "flow_net" or not stage.starts_propagation or cfg.train_flow}
    for name, gives in stage.provides.items():
        if getattr(cfg, name):
            parts |= set(gives) & trained_parts(read_checkpoint(getattr(cfg, name)))
    missing = [part for part in stage.needs(cfg) if part not in parts]
    if missing:
        give = [" or ".join("--" + n.replace("_", "-") for n, gives in stage.provides.items() if part in gives)
                for part in missing]
        raise ValueError(f"stage {cfg.stage} trains {stage.title} and needs a trained "
                         f"{' and a trained '.join(PART_TITLES[p] for p in missing)}, which no starting point gives: "
                         f"give {' and '.join(f'{g} CHECKPOINT' for g in give)} (a run that trained it)"
                         + (" or train the flow net too (leave --freeze-flow out)" if "flow_net" in missing else ""))
    return parts


def build_model(cfg: TrainConfig, num_classes: int) -> GSVNet:
    """The GSVNet a run trains, started from the run's starting points; the parts its stage does not train frozen."""
    stage = STAGES[cfg.stage]
    scale = {"key_scale": cfg.key_scale} if stage.starts_propagation else {}  # the scale PF learns to correct at
    model = GSVNet(GSVNetConfig(num_classes, cfg.keyframe_net, cfg.flow_net, use_intra=cfg.use_intra,
                                freeze_keyframe="keyframe_net" not in stage.trains, correction=cfg.correction, **scale))
    if cfg.imagenet:
        if model.keyframe_net.backbone is None:
            raise ValueError(f"keyframe net {cfg.keyframe_net} has no ResNet-18 backbone to load --imagenet into")
        load_torchvision_weights(model.keyframe_net.backbone, cfg.imagenet)
    for name, parts in stage.provides.items():  # each starting point gives the parts its stage declares
        path = getattr(cfg, name)
        if path:
            state = _saved_model(path, _trainer_of(parts, cfg.stage))
            for part in parts:
                load_state_dict_checked(getattr(model, part), _part(state, part), path,
                                        hint=f"its {PART_TITLES[part]}: a run of the same classes, nets and "
                                             "settings")
    if stage.starts_propagation and not cfg.train_flow:
        model.freeze("flow_net")
    return model


def trainable(model: GSVNet, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """The parameters a run updates: those of its stage's parts that are not frozen."""
    return [p for part in STAGES[cfg.stage].trains for p in getattr(model, part).parameters() if p.requires_grad]


def batch_loss(terms: list[tuple]) -> torch.Tensor:
    """This rank's share of the global batch's loss: each term's sum over the global count (counts summed over the
    ranks), weighted. Its gradient, summed over the ranks, is the gradient of the batch mean."""
    counts = sum_over_ranks(torch.stack([n for _, _, n in terms]).float())  # (terms,)
    return sum(w * total / n.clamp(min=1) for (w, total, _), n in zip(terms, counts))


def training_data(cfg: TrainConfig) -> SnippetDataset:
    """The snippets a run trains on: for stage propagation each reaches back up to max_interval - 1 frames, for stage
    keyframe only the labelled frame; with ``stills``, every labelled frame with frames rendered before it
    (:class:`~gsvlib.data.stills.StillsInMotion`); with ``stills_split``, those of that split joined to them for half
    of the samples (:class:`~gsvlib.data.stills.WithStills`)."""
    reach = STAGES[cfg.stage].reach(cfg)
    if cfg.stills:
        data = StillsInMotion(open_dataset(cfg.dataset, cfg.root, cfg.split, cfg.span, offset=0), reach, seed=cfg.seed)
    else:
        data = open_dataset(cfg.dataset, cfg.root, cfg.split, cfg.span, offset=None, max_offset=reach)
    if cfg.stills_split:
        stills = open_dataset(cfg.dataset, cfg.root, cfg.stills_split, offset=0)
        data = WithStills(data, StillsInMotion(stills, reach, seed=cfg.seed))
    return data


def balance_weights(cfg: TrainConfig, dataset: SnippetDataset, progress: bool = True) -> torch.Tensor | None:
    """The (C,) cross-entropy weights of rule ``cfg.class_weights`` (:data:`CLASS_WEIGHTS`) from every training
    label's pixel counts, or None for the plain mean."""
    rule = CLASS_WEIGHTS[cfg.class_weights]
    if rule is None:
        return None
    items = progress_bar(dataset.items, desc="count class pixels", disable=not progress)
    pixels = class_pixels((dataset.read_label(s.label) for s in items), dataset.table.num_classes)
    return torch.tensor(rule(*pixels), dtype=torch.float32)


class TrainBatches(Dataset):
    """Iteration k -> this rank's share of its batch: (frames (B/N, T, 3, H, W), labels (B/N, H, W), keyframe offset
    T-1). The offset, the sample indices, one augmentation seed and one frame step per sample are drawn from a
    generator seeded by (seed, k), so batch k is the same whichever process builds it and whenever; rank r of N takes
    the samples r, r + N, r + 2N, ... of it."""

    def __init__(self, dataset: SnippetDataset, cfg: TrainConfig, ranks: Ranks = Ranks()):
        if cfg.batch_size % ranks.world:
            raise ValueError(f"batch size {cfg.batch_size} does not split over {ranks.world} processes: the global "
                             f"batch stays the recipe's, so choose --nproc among its divisors or another --batch-size")
        self.dataset = dataset
        self.cfg = cfg
        self.ranks = ranks
        self.max_offset = dataset.max_offset // cfg.max_frame_step  # in sampled frames

    def __len__(self) -> int:
        return self.cfg.iterations

    def draw(self, iteration: int) -> dict:
        """What batch ``iteration`` is made of, for the whole global batch: {"offset": the keyframe offset in sampled
        frames, "indices": each sample's snippet (``dataset.items[i].name`` names it), "seeds": each sample's
        augmentation seed, "steps": each sample's frame step}, in that order from the generator seeded by (seed,
        iteration)."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + iteration)
        offset = int(torch.randint(min(1, self.max_offset), self.max_offset + 1, (1,), generator=g))
        indices = torch.randint(len(self.dataset), (cfg.batch_size,), generator=g).tolist()
        seeds = torch.randint(2**31, (cfg.batch_size,), generator=g).tolist()
        # drawn last, and only when asked for: with step 1 the batches stay what they were
        steps = (torch.randint(1, cfg.max_frame_step + 1, (cfg.batch_size,), generator=g).tolist()
                 if cfg.max_frame_step > 1 else [1] * cfg.batch_size)
        return {"offset": offset, "indices": indices, "seeds": seeds, "steps": steps}

    def __getitem__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        cfg = self.cfg
        drawn = self.draw(iteration)
        offset, indices, seeds, steps = drawn["offset"], drawn["indices"], drawn["seeds"], drawn["steps"]
        mine = range(self.ranks.rank, cfg.batch_size, self.ranks.world)
        frames, labels = _collate([self._augment(seeds[j], self._sample(indices[j], offset, steps[j])) for j in mine],
                                  STAGES[cfg.stage].targets)
        return frames, labels, offset

    def _sample(self, index: int, offset: int, step: int) -> dict:
        """Snippet ``index`` from ``offset`` sampled frames before its labelled one, ``step`` frames apart."""
        sample = self.dataset.sample(index, offset * step)
        if step > 1:
            sample = {**sample, "frames": sample["frames"][::step], "offset": offset}
        if STAGES[self.cfg.stage].targets == "flow":
            flow, valid = self.dataset.exact_flow(index)  # (2, H, W), (H, W)
            sample = {**sample, "flow": flow[None], "valid": valid}
        return sample

    def _augment(self, seed: int, sample: dict) -> dict:
        cfg = self.cfg
        return RandomScaleCropFlip((cfg.scale_min, cfg.scale_max), cfg.crop, rng=random.Random(seed))(sample)


def _threads(count: int, worker: int) -> None:
    """Give a DataLoader worker the training process's thread count: torch's bilinear resize rounds differently with
    another count (1 ulp), and the batches must not depend on who builds them. Workers are spawned, not forked: a
    forked child that changes its OpenMP thread count can deadlock."""
    torch.set_num_threads(count)


LOCK = ".lock"  # held by the process training in a run folder


FREE = ("out", "iterations", "checkpoint_every", "device", "workers", "channels_last",  # no effect on results
        *STARTING_POINTS)  # what a run starts from is known by its file's sha256 (``starts``), not its path


def setting_differences(saved: dict, cfg: TrainConfig, free: tuple[str, ...] = FREE) -> list[str]:
    """The settings in which ``cfg`` differs from a run's saved config, as "name: old -> new"."""
    try:
        saved = asdict(TrainConfig.from_saved(saved))
    except TypeError as e:
        return [f"the saved settings are not a TrainConfig ({e})"]
    return [f"{k}: {saved[k]!r} -> {v!r}" for k, v in asdict(cfg).items() if k not in free and saved[k] != v]


def starting_points(cfg: TrainConfig) -> dict[str, str]:
    """The sha256 of each file a fresh run of ``cfg`` starts from, by setting (``init``: ...): with the settings, what
    a run is known by."""
    return {name: sha256(getattr(cfg, name)) for name in STARTING_POINTS
            if getattr(cfg, name) is not None and Path(getattr(cfg, name)).is_file()}


class RunFolder:
    """A run folder (``--out``): config.json, log.jsonl (one JSON line per iteration) and checkpoint.pt. It owns the
    lock, the check of what the folder holds against the run asked for, and every write; under several processes
    only the main one (rank 0) locks and writes."""

    def __init__(self, out: Path, main: bool = True):
        self.out = out
        self.main = main
        self.checkpoint = out / "checkpoint.pt"
        self.log_path = out / "log.jsonl"
        self._log = None

    def ours(self, name: str) -> bool:
        """Whether the hidden file ``name`` is the folder's lock or a temporary file of one of its writes (which a
        resumed run deletes), not a user's."""
        if name == LOCK:
            lock = self.out / LOCK
            return lock.is_file() and lock.stat().st_size < 256 and LOCK_TEXT.fullmatch(
                lock.read_bytes().decode(errors="replace").strip()) is not None
        return any(temporary(p, name) for p in (self.checkpoint, self.log_path, self.out / "config.json"))

    def refuse_foreign(self) -> None:
        """Before the lock is taken: a ``.lock`` or ``*.tmp`` file that is not the kit's is the user's, which the lock
        would overwrite and a resumed run would delete; refuse instead."""
        if not self.main or not self.out.is_dir():
            return
        foreign = sorted(p.name for p in self.out.iterdir() if (p.name == LOCK or p.name.endswith(".tmp"))
                         and not self.ours(p.name))
        if foreign:
            raise FileExistsError(f"{self.out} holds files that gsv train did not write ({', '.join(foreign[:5])}); "
                                  "choose an empty or new --out, or move them (nothing was changed)")

    @contextlib.contextmanager
    def locked(self):
        """Hold an exclusive lock on the folder (its file LOCK) while the block runs; a second process is refused,
        naming the holder. The operating system drops the lock when its holder dies: a stale lock never blocks."""
        if not self.main:
            yield
            return
        with locked(self.out / LOCK, f"{self.out} (a training run)", "wait for it to finish, or train into another "
                    "folder (gsv train --out; in a notebook, its `runs` parameter)"):
            yield

    def saved(self, cfg: TrainConfig, resume: bool) -> dict | None:
        """The checkpoint to resume from (None: a fresh run), after checking that the folder holds what ``resume``
        says: nothing (or a run of these settings stopped before its first checkpoint), or a run of these settings."""
        if not resume:
            if self.checkpoint.exists():
                raise FileExistsError(f"{self.out} already holds a run ({self.checkpoint}); pass --resume to continue "
                                      "it, or choose another --out (nothing was changed)")
            others = sorted(p.name for p in self.out.iterdir() if not self.ours(p.name))
            config = self.out / "config.json"
            restart = set(others) <= {"config.json", "log.jsonl"} and config.is_file() and \
                not setting_differences(json.loads(config.read_text()), cfg)  # stopped before its first checkpoint
            if others and not restart:
                raise FileExistsError(f"{self.out} is not empty and holds no run of these settings "
                                      f"({', '.join(others[:5])}); choose an empty or new --out (nothing was changed)")
            return None
        if not self.checkpoint.exists():
            raise FileNotFoundError(f"nothing to resume: {self.checkpoint} does not exist; run without --resume to "
                                    "start")
        ckpt = read_checkpoint(self.checkpoint)
        if "optimizer" not in ckpt or "iteration" not in ckpt:
            raise CheckpointError(f"{self.checkpoint} is a weights file (no optimizer state, e.g. from `gsv export`), "
                                  "not a training run to resume: start a new run from it with --init instead of "
                                  "--resume")
        if not isinstance(ckpt["iteration"], int) or isinstance(ckpt["iteration"], bool) or ckpt["iteration"] < 0 \
                or not isinstance(ckpt.get("train_config", {}), dict):
            raise CheckpointError(f"{self.checkpoint} is damaged: its iteration ({ckpt['iteration']!r}) or its settings "
                                  "are not what gsv train writes; move the folder away and train again")
        differ = setting_differences(ckpt.get("train_config", {}), cfg)
        if differ:
            raise ValueError(f"--resume with other settings than the run in {self.out}: " + "; ".join(differ))
        return ckpt

    @contextlib.contextmanager
    def opened(self, cfg: TrainConfig, start: int, resume: bool):
        """Ready the folder for iterations ``start``.. of ``cfg``: temporary files of writes cut short removed, the
        config written, the log cut back to ``start`` (the iterations after the checkpoint are redone). Yields the
        seconds the log's clock had reached, and keeps the log open for :meth:`log` while the block runs."""
        kept = [e for e in (parse_log(self.log_path) if self.log_path.exists() and resume and self.main else [])
                if e["iteration"] <= start]
        if not self.main:
            yield 0.0
            return
        for stale in self.out.glob(".*.tmp"):  # temporary files of atomic writes cut short by a kill
            if self.ours(stale.name):
                stale.unlink()
        if start < cfg.iterations:  # a finished run asked for no more iterations stays as it is
            write_json_atomic(self.out / "config.json", asdict(cfg))
        write_text_atomic(self.log_path, "".join(json.dumps(e) + "\n" for e in kept))
        with self.log_path.open("a") as self._log:
            yield kept[-1]["seconds"] if kept else 0.0  # the log's clock runs on across resumes
        self._log = None

    def log(self, entry: dict) -> None:
        if self.main:
            self._log.write(json.dumps(entry) + "\n")
            self._log.flush()

    def save(self, state: dict) -> None:
        if self.main:
            save_atomic(state, self.checkpoint)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_log: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) training; returns {"losses": [...], "iteration": n, "checkpoint": path, "seconds": s}.
    Under torchrun, every process calls this: each trains its share of the batches, rank 0 writes."""
    cfg.check()
    # absolute paths, so that the same run reached from another working directory is recognised on --resume
    cfg = replace(cfg, **{k: str(Path(v).expanduser().resolve()) for k in PATHS if (v := getattr(cfg, k))})
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; a run needs a folder (nothing was changed)")
    if not (resume and (out / "checkpoint.pt").is_file()):
        trained_by(cfg)  # a fresh run is given what its stage needs trained: refused before anything is written
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)  # before the processes start: every rank reads it
    try:
        with process_group(cfg.device) as ranks:
            folder = RunFolder(out, ranks.main)
            folder.refuse_foreign()
            with folder.locked():
                return _run(replace(cfg, device=rank_device(cfg.device, ranks)), folder, resume,
                            progress and ranks.main, on_log, ranks)
    except BaseException:
        if created and not any(out.iterdir()):  # refused before it wrote anything (bad data, a setting): no trace
            out.rmdir()
        raise


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]):
    """The optimizer, the step-wise lr schedule (x lr_decay every lr_decay_every iterations) and the gradient scaler
    (fp16 only: its gradients would underflow)."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: cfg.lr_decay ** (it // cfg.lr_decay_every))
    return opt, sched, torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")


def _diverged(total: float, iteration: int, folder: RunFolder) -> FloatingPointError:
    state = (f"{folder.checkpoint} (the last checkpoint) is intact. " if folder.checkpoint.is_file() else
             "No checkpoint had been written yet. ")
    return FloatingPointError(f"loss became {total} at iteration {iteration}. {state}Train again into a new --out "
                              "with a lower --lr (--resume keeps the run's settings)")


def _run(cfg: TrainConfig, folder: RunFolder, resume: bool, progress: bool, on_log, ranks: Ranks) -> dict:
    stage = STAGES[cfg.stage]
    ckpt = folder.saved(cfg, resume)
    if ckpt is not None:  # the run's own checkpoint holds everything: its starting points need not exist any more
        cfg = replace(cfg, **{k: ckpt.get("train_config", {}).get(k) for k in STARTING_POINTS})
        if ckpt.get("batches", 1) != BATCHES and ranks.main:
            warnings.warn(f"{folder.out} was trained by an earlier gsvkit, which drew the samples of a batch in "
                          "another way; it resumes with the current way: as good a run, but not the one it would have "
                          "been uninterrupted", stacklevel=3)
    dataset = training_data(cfg)
    batches = TrainBatches(dataset, cfg, ranks)
    sum_over_ranks(torch.zeros(1, device=cfg.device))  # barrier: all ranks checked the folder before rank 0 writes
    torch.manual_seed(cfg.seed)
    # a resumed run's checkpoint holds what it started from: its starting points are not read again
    model = build_model(replace(cfg, **dict.fromkeys(STARTING_POINTS)) if ckpt is not None else cfg,
                        dataset.table.num_classes)
    trained = sorted(trained_parts(ckpt) if ckpt is not None else trained_by(cfg))
    starts = ckpt.get("starts") if ckpt is not None else starting_points(cfg)  # None: saved before they were kept
    if cfg.sync_bn:
        convert_sync_batchnorm(model)
    model = (channels_last(model) if cfg.channels_last else model).to(cfg.device)
    params = trainable(model, cfg)
    weight = balance_weights(cfg, dataset, progress)
    weight = None if weight is None else weight.to(cfg.device)
    opt, sched, scaler = _optimizer(cfg, params)
    start = 0
    if ckpt is not None:
        load_state_dict_checked(model, ckpt["model"], str(folder.checkpoint))
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        start = ckpt["iteration"]

    def state(iteration: int, seconds: float) -> dict:
        return marked({"model": model.state_dict(), "model_config": asdict(model.config), "train_config": asdict(cfg),
                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                       "iteration": iteration, "seconds": seconds, "batches": BATCHES, "trained": trained,
                       "starts": starts,
                       "class_weights": None if weight is None else weight.tolist(),
                       "classes": list(dataset.table.classes), "dataset": cfg.dataset})

    losses, t0 = [], time.perf_counter()
    bar = progress_bar(zip(range(start, cfg.iterations), loader(batches, start, cfg)), initial=start,
                       total=cfg.iterations, disable=not progress,
                       desc=f"train {cfg.stage} ({stage.describe(cfg)}) into {Path(cfg.out).name}"
                            + (f" on {ranks.world} processes" if ranks.world > 1 else ""))
    with folder.opened(cfg, start, resume) as elapsed:
        for it, (frames, targets, offset) in bar:
            model.train()
            with torch.autocast("cuda", PRECISIONS[cfg.precision], enabled=cfg.precision != "fp32"):
                loss = batch_loss(stage.loss(model, frames.to(cfg.device), targets.to(cfg.device), cfg, weight))
            total = sum_over_ranks(loss.detach().clone()).item()  # the global batch's loss, the same on every rank
            if not math.isfinite(total):
                raise _diverged(total, it + 1, folder)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            sum_gradients(params)
            scaler.step(opt)
            scaler.update()
            sched.step()
            entry = {"iteration": it + 1, "loss": round(total, 5), "lr": opt.param_groups[0]["lr"],
                     "offset": offset, "seconds": round(elapsed + time.perf_counter() - t0, 2)}
            losses.append(entry["loss"])
            folder.log(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{entry['lr']:.2e}")
            if on_log is not None and ranks.main:
                on_log(entry)
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
                folder.save(state(it + 1, entry["seconds"]))
    return {"losses": losses, "iteration": max(start, cfg.iterations), "checkpoint": str(folder.checkpoint),
            "seconds": round(time.perf_counter() - t0, 1)}


def loader(batches: TrainBatches, start: int, cfg: TrainConfig) -> DataLoader:
    """Iterations start..cfg.iterations-1 of ``batches``, read ahead by ``cfg.workers`` spawned processes."""
    return DataLoader(batches, batch_size=None, sampler=range(start, cfg.iterations), num_workers=cfg.workers,
                      worker_init_fn=partial(_threads, torch.get_num_threads()),
                      multiprocessing_context="spawn" if cfg.workers else None)


def loading_rate(cfg: TrainConfig, batches: int = 20) -> dict:
    """Data loading alone, as training reads it (this process's share, ``cfg.workers`` workers): samples per second
    over ``batches`` batches after the first (which pays for starting the workers), and that start."""
    if batches < 2:
        raise ValueError(f"time at least 2 batches (the first only starts the workers), got {batches}")
    dataset = training_data(cfg)
    t0 = time.perf_counter()
    it = iter(loader(TrainBatches(dataset, cfg), 0, replace(cfg, iterations=batches)))
    frames, _, _ = next(it)
    first = time.perf_counter()
    samples = sum(len(f) for f, _, _ in it)
    seconds = time.perf_counter() - first
    return {"samples_per_s": round(samples / seconds, 2), "batches": batches - 1, "workers": cfg.workers,
            "startup_s": round(first - t0, 2), "size": list(frames.shape[-2:])}


def read_log(run: str | Path) -> list[dict]:
    """The metrics log of a run folder as a list of dicts."""
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run} a `gsv train` run folder?")
    return parse_log(path)


def parse_log(path: Path) -> list[dict]:
    """The JSON lines of ``path``. A torn final line (what a kill during a write leaves) is dropped with a warning;
    a bad line anywhere else is an error that names the file and the line."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); the log is damaged: move it away to resume without "
                         "it") from None
    lines = [(n, l) for n, l in enumerate(text.splitlines(), 1) if l.strip()]
    entries = []
    for n, line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            if n == lines[-1][0]:
                warnings.warn(f"{path}: dropping its torn last line {n} (an interrupted write); the run resumes "
                              "from its checkpoint", stacklevel=2)
                break
            raise ValueError(f"{path} line {n} is not JSON ({e}); the log is damaged: move it away to resume "
                             "without it") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("iteration"), int):
            raise ValueError(f"{path} line {n} is no log entry (a JSON object with an integer 'iteration'); the log "
                             "is damaged: move it away to resume without it")
        entries.append(entry)
    return entries

