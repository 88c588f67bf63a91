"""Training settings, one source for each: ``TrainConfig`` (every setting, its default and its help text), the named
recipes, and the ``gsv train`` options, which are generated from the fields (so the command rebuilt from a saved run,
:func:`train_command`, gives back the same config by construction).

A recipe is a named set of settings (optimizer, schedule, augmentation, data) that the Makefile, the tour and the
notebooks refer to by name: ``gsv train --recipe camvid-keyframe``. Each stage has a default recipe, used when none
is named; options given explicitly override the recipe.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, NamedTuple

from gsvlib.data import DATASETS
from gsvlib.data.balance import CLASS_WEIGHTS
from gsvlib.data.camvid import PROPAGATION_TRAIN, SPANS
from gsvlib.device import PRECISIONS, check_device
from gsvlib.models.gsvnet import CORRECTIONS, FLOW_NETS, KEYFRAME_NETS
from gsvlib.stages import EARLIER_STAGES, STAGES, stage_named


def setting(default: Any, help: str, flag: str | None = None, choices: Callable[[], list[str]] | None = None,
            path: bool = False, type: Callable[[str], Any] | None = None, metavar: str | None = None,
            many: bool | None = None):
    """A config field with its command-line option: ``help`` text; ``flag``, the bare option that sets a bool to the
    opposite of its default; ``choices``, a function listing the allowed values (read from a registry when the parser
    is built); ``path``, a file or folder (stored absolute, printed relative); ``type``, the parser of one value
    (default: the type of the default, or of its first element); ``many``, whether the option takes one or more
    values (default: whether the default is a tuple)."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "path": path,
                                            "type": type, "metavar": metavar,
                                            "many": isinstance(default, tuple) if many is None else many})


@dataclass
class TrainConfig:
    stage: str = setting("propagation", "what to train: " + "; ".join(f"{k}: {s.title}" for k, s in STAGES.items()),
                         choices=lambda: [*STAGES, *EARLIER_STAGES])
    dataset: str = setting("synthetic", "dataset name", choices=lambda: sorted(DATASETS))
    root: str = setting("data/synthetic", "dataset folder (layouts in data/README.md)", path=True)
    split: str = setting("train", "dataset split to train on")
    span: tuple[float, float] = setting((0.0, 1.0), "use fraction A..B of each sequence in time (CamVid), e.g. "
                                                    "0 0.55, leaving the rest for `gsv eval --span`")
    out: str = setting("runs/gsv", "run folder: config.json, log.jsonl, checkpoint.pt", path=True)
    keyframe_net: str = setting("swiftnet", "keyframe net N", choices=lambda: list(KEYFRAME_NETS))
    flow_net: str = setting("light", "flow net O (flownets: the paper's Ours-FlowNet ablation)",
                            choices=lambda: list(FLOW_NETS))
    use_intra: bool = setting(True, "ablation: no intra-frame features (the paper's Table 4)", flag="--no-intra")
    correction: str = setting("gsv", "the correction after warping: gsv (the paper's GSV conv), none (warping "
                                     "alone), or one a module registers in gsvlib.models.gsvnet.CORRECTIONS",
                              choices=lambda: list(CORRECTIONS))
    stills: bool = setting(False, "set the labelled frames of --dataset in motion (gsvlib.data.stills): each sample is "
                                  "a labelled image with frames rendered before it under a known camera motion, not "
                                  "the frames recorded before it (stage propagation)", flag="--stills")
    stills_split: str = setting("", "also train on the labelled frames of this split of --dataset set in motion, as "
                                    "--stills does, for half of the samples: e.g. the 15 Hz run of CamVid val/ and "
                                    "the stills of train/ (stage propagation)")
    train_flow: bool = setting(True, "keep the flow net fixed while the rest of the propagation trains",
                               flag="--freeze-flow")
    init: str | None = setting(None, "gsvkit checkpoint to start from (stage propagation: its keyframe net is used)",
                               path=True)
    init_flow: str | None = setting(None, "stage propagation: start the flow net O from this checkpoint's (e.g. a stage "
                                          "flow run on the synthetic set)", path=True)
    init_propagation: str | None = setting(None, "stage propagation: start the whole propagation (O and the GSV conv) "
                                                 "from this checkpoint's, e.g. a stage propagation run on --dataset "
                                                 "synthetic-camvid", path=True)
    imagenet: str | None = setting(None, "ImageNet ResNet-18 weights in torchvision format for N's backbone",
                                   path=True)
    iterations: int = setting(2000, "total training iterations (a resumed run continues up to this)")
    batch_size: int = setting(8, "samples per iteration")
    optimizer: str = setting("sgd", "sgd (momentum) or adam (AdamW)", choices=lambda: ["sgd", "adam"])
    lr: float = setting(0.002, "learning rate")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(5e-4, "weight decay")
    lr_decay: float = setting(0.992, "the learning rate is multiplied by this every --lr-decay-every iterations")
    lr_decay_every: int = setting(100, "iterations between learning-rate decays")
    crop: float = setting(0.75, "random crop size as a fraction of the (scaled) input")
    scale_min: float = setting(0.5, "random scale range, low end")
    scale_max: float = setting(1.5, "random scale range, high end")
    max_interval: int = setting(5, "train keyframe intervals up to this: samples propagate 1..max_interval-1 steps")
    max_frame_step: int = setting(1, "frame-rate jitter (stage propagation): each sample takes every s-th frame, s "
                                     "drawn from 1..N (2: half the frame rate, twice the motion between frames)")
    key_scale: float = setting(1.0, "keyframe input scale while training (stage propagation)")
    class_weights: str = setting("none", "weigh the cross-entropy per class (stages keyframe and propagation): "
                                 "median-frequency gives thin classes more weight (SegNet's CamVid recipe)",
                                 choices=lambda: list(CLASS_WEIGHTS))
    distill: float = setting(0.0, "weight of a KL term towards N's prediction on the last frame (stage propagation)")
    photometric: float = setting(0.0, "weight of a photometric loss on every frame pair of a sample (stage "
                                      "propagation): each frame against the one before it warped by O's flow, plus an "
                                      "edge-aware smoothness term; unlabelled frames teach the flow net too")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    precision: str = setting("fp32", "mixed precision on CUDA: bf16 autocast, or fp16 autocast with a gradient scaler",
                             choices=lambda: list(PRECISIONS))
    channels_last: bool = setting(False, "channels-last memory format for the convs (CUDA: faster "
                                         "with mixed precision)", flag="--channels-last")
    sync_bn: bool = setting(False, "batch norm of the trained parts with the statistics of the global batch over "
                                   "all processes (several processes only; one process is unchanged)",
                            flag="--sync-bn")
    seed: int = setting(0, "seed of every random choice (batches, offsets, augmentation)")
    checkpoint_every: int = setting(50, "iterations between checkpoints")
    workers: int = setting(0, "DataLoader worker processes reading batches ahead (0: in the training process); "
                              "the results do not depend on it")

    def __post_init__(self):
        self.span = tuple(float(v) for v in self.span)  # a list from JSON or argparse compares equal to the tuple
        self.stage = stage_named(self.stage)  # "gsv", the propagation stage's earlier name, reads as "propagation"

    def check(self) -> None:
        if not (len(self.span) == 2 and 0 <= self.span[0] < self.span[1] <= 1):
            raise ValueError(f"span must be fractions (a, b) with 0 <= a < b <= 1, got {self.span}")
        for f in fields(self):
            allowed = f.metadata["choices"]() if f.metadata["choices"] else None
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise ValueError(f"{f.name} must be one of {allowed}, got {getattr(self, f.name)!r}")
        if not 1 <= self.max_interval <= 30:
            raise ValueError(f"max_interval must be in 1..30 (a Cityscapes snippet has 30 frames), got "
                             f"{self.max_interval}")
        if not 1 <= self.max_frame_step <= 8:
            raise ValueError(f"max_frame_step must be in 1..8 for stage propagation and 1 for the other stages, got "
                             f"{self.max_frame_step}")
        provides = STAGES[self.stage].provides  # starting point -> the parts it gives this stage
        for name in STARTING_POINTS:
            if getattr(self, name) is not None and name != "imagenet" and name not in provides:
                takes = [s for s, stage in STAGES.items() if name in stage.provides]
                raise ValueError(f"{_option(name)} is a starting point of stage {' or '.join(takes)}; stage "
                                 f"{self.stage} takes {' or '.join(map(_option, provides))}")
        given = [name for name in provides if getattr(self, name) is not None]
        for i, a in enumerate(given):
            for b in given[i + 1:]:
                both = sorted(set(provides[a]) & set(provides[b]))
                if both:
                    raise ValueError(f"{_option(a)} and {_option(b)} both give the {' and '.join(both)}; give one of "
                                     "them")
        STAGES[self.stage].check(self)
        for name in ("iterations", "batch_size", "checkpoint_every", "lr_decay_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("lr", "momentum", "weight_decay", "lr_decay", "crop", "scale_min", "scale_max", "key_scale",
                     "distill", "photometric"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        ranges = {"lr": (self.lr > 0, "> 0"), "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
                  "weight_decay": (self.weight_decay >= 0, ">= 0"), "lr_decay": (0 < self.lr_decay <= 1, "in (0, 1]"),
                  "crop": (0 < self.crop <= 1, "in (0, 1]"), "key_scale": (0 < self.key_scale <= 2, "in (0, 2]"),
                  "scale_min": (0 < self.scale_min <= self.scale_max, f"in (0, scale_max = {self.scale_max}]"),
                  "distill": (self.distill >= 0, ">= 0"), "photometric": (self.photometric >= 0, ">= 0")}
        for name, (ok, allowed) in ranges.items():
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)}")
        check_device(self.device)
        if self.precision != "fp32" and not self.device.startswith("cuda"):
            raise ValueError(f"precision {self.precision} (autocast) is for CUDA devices; use fp32 on the CPU")

    @classmethod
    def from_saved(cls, saved: dict) -> "TrainConfig":
        """The config of a saved run (config.json, a checkpoint's train_config), written by this or an earlier
        version: fields newer than the run take their defaults, and the older ``amp`` flag becomes ``precision``."""
        saved = dict(saved)
        if "amp" in saved:
            saved["precision"] = "bf16" if saved.pop("amp") else "fp32"
        return cls(**saved)


PATHS = tuple(f.name for f in fields(TrainConfig) if f.metadata["path"])  # stored absolute, printed relative
STARTING_POINTS = ("init", "init_flow", "init_propagation", "imagenet")  # read when a run starts, never when it resumes


class Recipe(NamedTuple):
    description: str
    values: dict  # TrainConfig fields; "stage" always among them
    needs: str | None = None  # the starting point (a STARTING_POINTS field) that a fresh run must be given


# Stage keyframe trains a whole network from scratch (no ImageNet weights here), for which AdamW converges far faster
# than the paper's SGD recipe, which fine-tunes only the propagation for many thousands of iterations.
_FROM_SCRATCH = dict(stage="keyframe", optimizer="adam", lr=1e-3, weight_decay=1e-4, lr_decay=0.95, max_interval=1)
# In a few hundred iterations the paper's SGD (lr 0.002) barely moves a flow net trained from scratch: in the tour's
# 150 iterations GSVNet l=5 reaches 54.5 avg mIoU (below warp-only's 56.1) with it and 58.9 (warp-only 57.5) with this.
_SHORT_ADAM = dict(stage="propagation", optimizer="adam", lr=1e-3, weight_decay=1e-4)

_CAMVID_KEYFRAME = {**_FROM_SCRATCH, "dataset": "camvid", "root": "data/camvid", "split": "train", "crop": 0.5,
                    "scale_min": 0.5, "scale_max": 1.0, "lr_decay": 0.93, "iterations": 2000, "checkpoint_every": 100}

_CAMVID_GSV = {**_SHORT_ADAM, "dataset": "camvid", "root": "data/camvid", "split": "val", "span": PROPAGATION_TRAIN,
               "key_scale": 0.5, "iterations": 800, "checkpoint_every": 100}

RECIPES: dict[str, Recipe] = {
    "paper": Recipe("GSVNet's propagation, the paper's recipe (sec. 4.1): SGD momentum 0.9, lr 0.002 x0.992 every "
                    "100 iterations, batch 8, weight decay 5e-4, crops of 3/4, intervals 1..5",
                    dict(stage="propagation")),
    "from-scratch": Recipe("a keyframe net from scratch: AdamW lr 1e-3 x0.95 every 100 iterations, weight decay 1e-4",
                           _FROM_SCRATCH),
    "short-adam": Recipe("GSVNet's propagation in a few hundred iterations (the tour, notebook 05): AdamW lr 1e-3, "
                         "weight decay 1e-4", _SHORT_ADAM),
    "camvid-keyframe": Recipe("a keyframe net on CamVid train/ from scratch: crops of 1/2, scales 0.5-1, lr x0.93 "
                              "every 100 of 2000 iterations",
                              _CAMVID_KEYFRAME),
    "camvid-keyframe-more": Recipe("2000 iterations more of camvid-keyframe from a net it trained (--init): the lr "
                                   "goes on from where it ended (1e-3 x 0.93^20, rounded), new crops (seed 1)",
                                   {**_CAMVID_KEYFRAME, "lr": 2.34e-4, "seed": 1}, needs="init"),
    "camvid-gsv": Recipe("GSVNet's propagation on frames 0-27 of CamVid's 15 Hz val/ run (frames 33-50 are held "
                         "out, 37-50 scored): AdamW lr 1e-3, keyframes at 0.5 (the committed SwiftNet-R18's scale on "
                         "those frames), 800 iterations; start the flow net from stage flow with --init-flow",
                         _CAMVID_GSV),
    "camvid-stills": Recipe("GSVNet's propagation on CamVid train/'s 367 labelled stills set in motion "
                            "(gsvlib.data.stills), none of the 15 Hz run: its frames 0-27 stay free to choose on and "
                            "37-50 to report; otherwise camvid-gsv",
                            {**_CAMVID_GSV, "split": "train", "span": (0.0, 1.0), "stills": True}),
    "camvid-stills-video": Recipe("camvid-gsv (frames 0-27 of the 15 Hz run) with CamVid train/'s stills set in motion "
                                  "for half of the samples",
                                  {**_CAMVID_GSV, "stills_split": "train"}),
    "synthetic-gsv": Recipe("GSVNet's propagation on the synthetic set in CamVid's classes, on a CamVid keyframe net "
                            "(--init) and the flow net of stage flow (--init-flow): what --init-propagation starts "
                            "camvid-gsv from; AdamW lr 1e-3, keyframes at 0.5 (as in camvid-gsv), 600 iterations",
                            {**_SHORT_ADAM, "dataset": "synthetic-camvid", "root": "data/synthetic", "split": "train",
                             "key_scale": 0.5, "iterations": 600, "checkpoint_every": 100}),
    "synthetic-flow": Recipe("the flow net alone on the synthetic set's exact flow: end-point error on the 1/8 grid, "
                             "dis-occluded cells left out; AdamW lr 1e-3 x0.9 every 100 of 600 iterations (2 min on 2 cores)",
                             {"stage": "flow", "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "lr_decay": 0.9,
                              "max_interval": 2, "iterations": 600, "checkpoint_every": 100}),
    "cityscapes-keyframe": Recipe("SwiftNet-R18 or BiSeNet-R18 on Cityscapes train from ImageNet weights (give "
                                  "--imagenet), SwiftNet's schedule in steps: Adam lr 4e-4 x0.9 every 4000 of 60000 "
                                  "iterations, scales 0.5-2, crops of 3/8 (768 px wide)",
                                  {"stage": "keyframe", "dataset": "cityscapes", "root": "data/cityscapes",
                                   "split": "train", "optimizer": "adam", "lr": 4e-4, "weight_decay": 1e-4,
                                   "lr_decay": 0.9, "lr_decay_every": 4000, "scale_min": 0.5, "scale_max": 2.0,
                                   "crop": 0.375, "max_interval": 1, "iterations": 60000, "checkpoint_every": 1000}),
    "cityscapes-gsv": Recipe("GSVNet's propagation on Cityscapes train with the paper's recipe (SGD lr 0.002 x0.992 "
                             "every 100 iterations, batch 8, crops of 3/4, intervals 1..5), keyframes at 0.75 as at "
                             "inference; 40000 iterations (the paper gives no count)",
                             {"stage": "propagation", "dataset": "cityscapes", "root": "data/cityscapes",
                              "split": "train", "key_scale": 0.75, "iterations": 40000, "checkpoint_every": 1000}),
}


def config_for(stage: str | None = None, recipe: str | None = None, **given) -> TrainConfig:
    """The TrainConfig of ``recipe`` (default: the stage's, see STAGES), overridden by ``given`` (None values count
    as not given)."""
    if recipe is not None and recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    stage = None if stage is None else stage_named(stage)
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
    values = RECIPES[recipe or STAGES[stage or TrainConfig.stage].recipe].values
    if stage is not None and stage != values["stage"]:
        raise ValueError(f"recipe {recipe} trains stage {values['stage']}, not {stage}: leave --stage out")
    return TrainConfig(**{**values, **{k: v for k, v in given.items() if v is not None}})


def check_starting_point(recipe: str | None, cfg: TrainConfig) -> None:
    """A fresh run of a recipe that continues another run must be given that run (:attr:`Recipe.needs`); without a
    recipe, the stage's default recipe's needs hold."""
    needs = RECIPES[recipe or STAGES[cfg.stage].recipe].needs
    if needs and getattr(cfg, needs) is None:
        raise ValueError(f"recipe {recipe} continues a trained net: give {_option(needs)} CHECKPOINT (e.g. the "
                         f"checkpoint.pt of a camvid-keyframe run), or --resume to continue this run")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls, note: Callable[[Any], str] = lambda f: "") -> None:
    """One option per field of the config dataclass ``cls`` (fields made with :func:`setting`). Every option defaults
    to None (not given), so that what lies under the options (a recipe, a checkpoint's own values, the field's
    default) applies; the help shows the field's default and ``note(field)``."""
    for f in fields(cls):
        meta = f.metadata
        if meta["flag"]:
            parser.add_argument(meta["flag"], dest=f.name, action="store_const", const=not f.default,
                                help=meta["help"])
            continue
        shown = f"default {_shown(f.default)}{note(f)}"
        if f.name == "span":
            parser.add_argument(_option(f.name), action=SpanOption, nargs="+", metavar="SPAN",
                                help=f"{meta['help']} (SPAN: A B), or a named part of the 15 Hz run (SPAN: NAME): "
                                     f"{SpanOption.names()} ({shown})")
            continue
        many = meta["many"]
        one = f.default[0] if many and f.default else f.default
        kind = meta["type"] or (type(one) if one is not None else str)
        parser.add_argument(_option(f.name), type=kind, nargs="+" if many else None, metavar=meta["metavar"],
                            choices=meta["choices"]() if meta["choices"] else None, help=f"{meta['help']} ({shown})")


def _shown(value: Any) -> str:
    """A default as the command line writes it: (1, 2) -> "1 2", (1024, 2048) sizes -> "1024x2048"."""
    if isinstance(value, (tuple, list)):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    return str(value)


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The ``gsv train`` options: --recipe and one option per TrainConfig field, each overriding the recipe; the help
    shows TrainConfig's default and, where it differs, the keyframe stage's."""
    parser.add_argument("--recipe", choices=list(RECIPES), help="named settings that the options below override: "
                        + "; ".join(f"{n}: {r.description}" for n, r in RECIPES.items())
                        + " (default: " + ", ".join(f"{s.recipe} for stage {k}" for k, s in STAGES.items()) + ")")
    keyframe = asdict(config_for("keyframe"))
    add_options(parser, TrainConfig, lambda f: f", stage keyframe {keyframe[f.name]}"
                if keyframe[f.name] != f.default and f.name != "stage" else "")


def given_options(args: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` given on the command line (not None), as the config wants them (tuples for lists)."""
    return {f.name: tuple(v) if isinstance(v, list) else v for f in fields(cls)
            if (v := getattr(args, f.name, None)) is not None}


def parse_size(text: str) -> tuple[int, int]:
    """'1024x2048' (H x W) -> (1024, 2048)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 1024x2048, got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def seed_arg(text: str) -> int:
    """A seed: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is a whole number >= 0, got {value}")
    return value


def wrong_types(cls, values: dict) -> list[str]:
    """The entries of ``values`` whose type does not fit their field of the config dataclass ``cls`` (the type of its
    default), as "name = value: what it takes (default ...)"; a whole number fits a float field."""
    kinds = {bool: (bool, "true or false"), int: (int, "a whole number"), float: ((int, float), "a number"),
             str: (str, "text"), tuple: ((list, tuple), "a list")}
    wrong = []
    for f in fields(cls):
        if f.name not in values or f.default is None:  # a field without default type (a path) takes text or None
            continue
        allowed, words = kinds.get(type(f.default), (object, ""))
        value = values[f.name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and type(f.default) is not bool):
            wrong.append(f"{f.name} = {value!r}: {f.name} takes {words} (default {_shown(f.default)})")
    return wrong


def interval_arg(text: str) -> int:
    """A keyframe interval: an integer in 1..30."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"interval must be an integer in 1..30, got {text!r}") from None
    if not 1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"interval must be in 1..30 (a Cityscapes snippet has 30 frames), got {value}")
    return value


class SpanOption(argparse.Action):
    """``--span A B`` (fractions of each sequence in time) or ``--span NAME``, a named part of CamVid's 15 Hz run
    (:data:`gsvlib.data.camvid.SPANS`), stored as the tuple (A, B)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) == 1 and values[0] in SPANS:
            span = SPANS[values[0]]
        else:
            try:
                span = tuple(float(v) for v in values)
            except ValueError:
                span = ()
            if len(span) != 2:
                parser.error(f"{option_string} takes two fractions A B or one of {', '.join(SPANS)}, got "
                             f"{' '.join(values)!r}")
        setattr(namespace, self.dest, span)

    @staticmethod
    def names() -> str:
        """The named spans for a help text: "propagation-train (0 0.55), held-out (0.65 1)"."""
        return ", ".join(f"{k} ({a:g} {b:g})" for k, (a, b) in SPANS.items())


def train_command(config: dict, cwd: str | Path | None = None) -> str:
    """The ``gsv train`` command line that gives a run with this (saved) config: its fields that differ from the
    stage's default recipe, with paths relative to ``cwd`` (default: the working directory)."""
    cfg = asdict(TrainConfig.from_saved(config))
    defaults = asdict(config_for(cfg["stage"]))
    cwd = Path(cwd or Path.cwd()).resolve()
    args = ["gsv train", f"--stage {cfg['stage']}"]
    for f in fields(TrainConfig):
        value = cfg[f.name]
        if f.name == "stage" or value == defaults[f.name]:
            continue
        if f.metadata["flag"]:
            args.append(f.metadata["flag"])
        elif f.name == "span":
            args.append(f"{_option(f.name)} " + " ".join(f"{x:g}" for x in value))
        else:
            args.append(f"{_option(f.name)} {os.path.relpath(value, cwd) if f.metadata['path'] else value}")
    return " ".join(args)


def config_from_options(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed ``gsv train`` options."""
    given = given_options(args, TrainConfig)
    given.pop("stage", None)
    return config_for(args.stage, args.recipe, **given)
