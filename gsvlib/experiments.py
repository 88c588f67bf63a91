"""Experiments as files: one TOML file under ``experiments/`` describes one experiment, and ``gsv run`` carries it out.

An experiment file holds (every key but ``description`` optional)::

    description = "what this experiment is, in one sentence"   # shown by `gsv tables` and `gsv run --list`
    legend = "short name for plots"
    modules = ["../../my_parts/residual.py"]  # Python files run first: they register parts of one's own
    checkpoint = "../gsvnet"          # instead of [train]: evaluate another experiment's model (or a file)

    [train]                           # a TrainConfig: `recipe` and any of its fields (gsv train --help)
    recipe = "camvid-gsv"
    init = "../swiftnet"              # a starting point: another experiment (its checkpoint) or a file
    out = "../../runs/camvid/gsvnet"  # default: RUNS/<experiment name> (gsv run --runs, default runs)

    [export]                          # a small fp16 weights file of the run, with a manifest entry
    out = "../../weights/w.pt"
    manifest = "../../weights/manifest.json"
    metrics = ["held-out"]            # evaluations recorded in the manifest entry

    [[eval]]                          # an EvalConfig (gsv eval --help) with a name and an `out` file
    name = "held-out"
    of = "weights"                    # evaluate the exported weights (default: the run's checkpoint)
    table = "propagation"             # this result's table and row, where they are not [report]'s
    split = "val"
    span = "held-out"
    variants = ["gsv", "warp", "copy"]
    out = "../../figures/camvid/propagation.json"

    [[bench]]                         # a BenchConfig (gsv bench --help) with a name and a `json` file

    [report]                          # where the results go in `gsv tables`
    table = "ablation"                # a table of tables.toml (in this folder or one above it)
    row = "the row's text (default: the description)"
    order = 3                         # the row's place in its table
    # a result in several tables may take its row and place per table: row = { ablation = "...", stills = "..." }

An experiment's name is its path under the ``experiments`` folder without ``.toml`` ("camvid/ablation/base");
other experiments are named by their path relative to the file that names them ("../swiftnet"). Every path in the
file (a starting point's file, an output, a folder) is read against the file's folder too, so that ``gsv run`` writes
the same files from any working directory. Datasets are read at
their default folders (``data/camvid``, ``data/synthetic``) unless ``gsv run --root camvid=PATH`` says otherwise.

``gsv run`` trains what is missing (resuming what was interrupted, first the experiments this one starts from),
skips what is done, exports, evaluates, and writes each result with an ``experiment`` block of provenance only: the
experiment's name and file, the evaluation's name and settings, the whole evaluation config, and the checkpoint with
its sha256. Nothing about presentation (description, table, row) goes into a result: ``gsv tables`` joins the
results with their experiment files and tables.toml when it renders (:mod:`gsvlib.reports`), so a title or a row's
text changes without a run.

A run and a result are known by their settings, not by their name alone:

- a run folder (``runs/<name>``) is used only while it holds a run of the experiment's resolved training settings
  from starting points of the same sha256; other settings are refused, naming the file and the folder and what
  differs (move the folder away, or give ``--runs``), never trained over nor silently taken for these settings;
- a result is done when its file records the same evaluation settings of a checkpoint with the same sha256;
- two experiment files of one name (``key.toml`` in two folders outside an ``experiments`` folder) are refused, since
  they would share a run folder; so are experiments that start from each other, and ``--use`` of a name that no
  experiment being run starts from.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from gsvlib.bench import BenchConfig, benchmark
from gsvlib.checkpoint import (CheckpointError, export_weights, load_model, read_checkpoint, read_manifest,
                               read_metrics, write_manifest_entry)
from gsvlib.config import PATHS, RECIPES, STARTING_POINTS, TrainConfig, check_starting_point, config_for, wrong_types
from gsvlib.data import DATASETS
from gsvlib.evaluate import VARIANTS, EvalConfig, run_eval
from gsvlib.files import check_file_output, lock_holder, marked, sha256, shown, write_json_atomic
from gsvlib.stages import STAGES
from gsvlib.train import FREE, LOCK, read_log, setting_differences, starting_points, train

TABLES = "tables.toml"  # the tables of a folder of experiments and of the folders below it
KEYS = {"description", "legend", "modules", "checkpoint", "train", "export", "eval", "bench", "report"}
PLACING = ("name", "of", "table", "row")  # keys of an [[eval]] or [[bench]] that say where it goes, not how it runs
PRESENTATION = ("table", "row")  # how a result is shown: never recorded in it, read from the file when rendering
FILES = (".pt", ".pth", ".tar")  # a starting point ending so is a checkpoint file; otherwise it names an experiment
WAIT_POLL_S = 2.0  # how often a runner that waits for another process's training looks whether it finished


class ExperimentError(ValueError):
    """An experiment file that cannot be read or does not fit what it names; the message names the file."""


@dataclass
class Experiment:
    path: Path  # the .toml file
    name: str  # its path under the experiments folder, without .toml
    description: str
    legend: str | None = None
    checkpoint: str | None = None  # another experiment, or a file, to evaluate instead of training
    train: dict | None = None  # TrainConfig fields and "recipe"
    export: dict | None = None  # {"out", "manifest", "metrics"}
    evals: list[dict] = field(default_factory=list)  # EvalConfig fields, "name", "of"
    benches: list[dict] = field(default_factory=list)  # BenchConfig fields, "name"
    report: dict = field(default_factory=dict)  # {"table", "row", "order"}

    def ref(self, text: str) -> Path | None:
        """The experiment file that ``text`` names ("../swiftnet"), or None when it names a file (".pt")."""
        if text.endswith(FILES):
            return None
        return (self.path.parent / f"{text}.toml").resolve()

    def starts(self) -> list[Path]:
        """The experiment files this one starts from (its [train] starting points, or the experiment it evaluates)."""
        texts = [self.checkpoint] if self.train is None else [self.train.get(n) for n in STARTING_POINTS]
        return [ref for t in texts if isinstance(t, str) and (ref := self.ref(t)) is not None]

    def evaluation(self, name: str) -> dict | None:
        """The [[eval]] or [[bench]] called ``name``."""
        return next((spec for spec in self.evals + self.benches if spec["name"] == name), None)


def _root_of(path: Path) -> Path:
    """The ``experiments`` folder above ``path`` (the file's own folder when there is none)."""
    return next((p for p in path.parents if p.name == "experiments"), path.parent)


def _fail(path: Path, message: str) -> ExperimentError:
    return ExperimentError(f"{path}: {message}")


def _known(path: Path, section: str, given: dict, allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise _fail(path, f"[{section}] has unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}")


def load(path: str | Path) -> Experiment:
    """Read and check one experiment file."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ExperimentError(f"experiment {path} does not exist (experiment files end in .toml)")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, f"is not valid TOML ({e})") from None
    _known(path, "top level", raw, KEYS)
    modules = raw.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise _fail(path, 'modules must be a list of Python files, e.g. modules = ["../../my_parts/residual.py"]')
    for module in modules:
        run_module(path.parent / module, path)
    if not isinstance(raw.get("description"), str) or not raw["description"].strip():
        raise _fail(path, 'needs a description = "..." (one sentence: it goes into every result)')
    if ("train" in raw) == ("checkpoint" in raw):
        raise _fail(path, "give either [train] (what to train) or checkpoint = ... (what to evaluate), not "
                          f"{'both' if 'train' in raw else 'neither'}")
    train_keys = {f.name for f in fields(TrainConfig)} | {"recipe"}
    eval_keys = {f.name for f in fields(EvalConfig)} | set(PLACING)
    bench_keys = {f.name for f in fields(BenchConfig)} | set(PLACING) - {"of"}
    _known(path, "train", raw.get("train", {}), train_keys)
    _known(path, "export", raw.get("export", {}), {"out", "manifest", "metrics"})
    _known(path, "report", raw.get("report", {}), {"table", "row", "order"})
    evals, benches = raw.get("eval", []), raw.get("bench", [])
    for section, items, keys, out in (("eval", evals, eval_keys, "out"), ("bench", benches, bench_keys, "json")):
        for item in items:
            _known(path, f"[{section}]", item, keys)
            if "name" not in item or out not in item:
                raise _fail(path, f"each [[{section}]] needs a name and an {out} file")
    names = [e["name"] for e in evals + benches]
    if len(set(names)) != len(names):
        raise _fail(path, f"evaluation names repeat: {names}")
    if "recipe" in raw.get("train", {}) and raw["train"]["recipe"] not in RECIPES:
        raise _fail(path, f"recipe must be one of {sorted(RECIPES)}, got {raw['train']['recipe']!r}")
    wrong = wrong_types(TrainConfig, raw.get("train", {}))
    if wrong:
        raise _fail(path, "[train] " + "; ".join(wrong))
    name = path.relative_to(_root_of(path)).with_suffix("").as_posix()
    if not name or any(part in (".", "..") for part in name.split("/")):
        raise _fail(path, f"its name {name!r} (the path without .toml) would put its run folder outside the runs "
                          "folder; rename the file")
    for e in evals:
        if e.get("of", "run") not in ("run", "weights"):
            raise _fail(path, f"[[eval]] {e['name']}: of must be run or weights, got {e['of']!r}")
        if e.get("of") == "weights" and "export" not in raw:
            raise _fail(path, f"[[eval]] {e['name']} evaluates the weights, but there is no [export]")
    unknown = sorted(set(raw.get("export", {}).get("metrics", [])) - set(names))
    if unknown:
        raise _fail(path, f"[export] metrics names evaluations that do not exist: {unknown}")

    def here(section: dict | None, keys: set[str]) -> dict | None:
        """``section`` with its paths read against the file's folder (an experiment that a starting point names
        stays a name)."""
        if section is None:
            return None
        return {k: str((path.parent / Path(v).expanduser()).resolve()) if k in keys and isinstance(v, str)
                and not (k in STARTING_POINTS and not v.endswith(FILES)) else v for k, v in section.items()}

    return Experiment(path, name, raw["description"].strip(),
                      raw.get("legend"), raw.get("checkpoint"), here(raw.get("train"), set(PATHS)),
                      here(raw.get("export"), {"out", "manifest"}), [here(e, _paths(EvalConfig)) for e in evals],
                      [here(b, _paths(BenchConfig)) for b in benches], raw.get("report", {}))


_RUN: set[Path] = set()  # the module files run so far: each registers its parts once


def run_module(file: Path, experiment: Path) -> None:
    """Run the Python file ``file`` (named in ``experiment``'s ``modules``) once: it registers parts of one's own, e.g.
    a correction in :data:`gsvlib.models.gsvnet.CORRECTIONS`, before the experiment's settings name them."""
    file = file.resolve()
    if file in _RUN:
        return
    if not file.is_file() or file.suffix != ".py":
        raise _fail(experiment, f"modules names {file}, which is not a Python file (.py) that exists")
    spec = importlib.util.spec_from_file_location(f"gsvkit_modules.{file.stem}_{len(_RUN)}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: say where it failed, not a traceback through the kit
        raise _fail(experiment, f"modules: running {file} failed: {type(e).__name__}: {e}") from e
    sys.modules[spec.name] = module
    _RUN.add(file)


def _paths(cls) -> set[str]:
    """The fields of a config that name files or folders."""
    return {f.name for f in fields(cls) if f.metadata.get("path")}


def collect(paths: list[str | Path]) -> list[Experiment]:
    """The experiments of ``paths``: files, and folders (their .toml files, not those of their sub-folders). Two files
    of one name are refused (:func:`same_names`)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.glob("*.toml") if f.name != TABLES)
            if not found:
                raise ExperimentError(f"{p} holds no experiment files (*.toml)")
            files += found
        else:
            files.append(p)
    experiments = list({e.path: e for e in map(load, files)}.values())  # a file given twice is one experiment
    same_names(experiments)
    return experiments


def same_names(experiments: list[Experiment]) -> None:
    """Refuse two experiment files of one name: they would share a run folder (RUNS/<name>) and their results would
    claim to be one experiment's."""
    seen: dict[str, Path] = {}
    for exp in experiments:
        other = seen.setdefault(exp.name, exp.path)
        if other != exp.path:
            raise ExperimentError(f"{other} and {exp.path} are both experiment {exp.name!r} (an experiment's name is "
                                  "its path under the experiments folder, or its file name outside one): they would "
                                  "share the run folder and results of that name. Rename one, or put both under an "
                                  "experiments/ folder (nothing was run)")


def closure(experiments: list[Experiment]) -> list[Experiment]:
    """``experiments`` and every experiment they start from, each once; an experiment that starts from itself
    through others is refused with the chain of files, and so are two files of one name."""
    found: dict[Path, Experiment] = {}

    def visit(exp: Experiment, chain: tuple[Path, ...]) -> None:
        if exp.path in chain:
            loop = " -> ".join(str(p) for p in (*chain[chain.index(exp.path):], exp.path))
            raise ExperimentError(f"experiments start from each other: {loop}; one of them must start from a "
                                  "checkpoint or an experiment outside the loop (nothing was run)")
        if exp.path in found:
            return
        for ref in exp.starts():
            if not ref.is_file():
                raise _fail(exp.path, f"names experiment {ref.stem!r}, but {ref} does not exist")
            visit(load(ref), (*chain, exp.path))
        found[exp.path] = exp

    for exp in experiments:
        visit(exp, ())
    same_names(list(found.values()))
    return list(found.values())


def tables_of(exp: Experiment, spec: dict) -> list[dict]:
    """The settings of the tables a result of ``exp`` goes in (``spec``, an [[eval]] or [[bench]], names them, else
    [report] does: one name or a list), each from the nearest tables.toml at or above the experiment's folder, with its
    targets resolved; [] when neither names a table."""
    names = spec.get("table", exp.report.get("table", []))
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(exp.path, f"table must be a table's name or a list of them, got {names!r}")
    return [table_of(exp, name) for name in names]


def table_of(exp: Experiment, name: str) -> dict:
    """The settings of table ``name`` for a result of ``exp``: from the nearest tables.toml at or above the
    experiment's folder that defines tables, with its targets resolved."""
    top = _root_of(exp.path)
    for folder in (exp.path.parent, *exp.path.parent.parents):
        if (folder / TABLES).is_file():
            try:
                tables = tomllib.loads((folder / TABLES).read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise _fail(folder / TABLES, f"is not valid TOML ({e})") from None
            if name not in tables.get("tables", {}):
                raise _fail(exp.path, f"names table {name!r}, which {folder / TABLES} does not define (it has "
                                      f"{sorted(tables.get('tables', {}))})")
            spec = {"id": name, **tables["tables"][name], "source": str(folder / TABLES)}
            if "targets" in spec:
                spec["targets"] = tables.get("targets", {}).get(spec["targets"])
                if spec["targets"] is None:
                    raise _fail(folder / TABLES, f"table {name} names targets that [targets] does not define")
            return spec
        if folder == top:
            break
    raise _fail(exp.path, f"names table {name!r}, but no {TABLES} lies in its folder or above it up to {top}")


class Runs:
    """The trained models of experiments: each run folder made sure of (trained, resumed, or found done with the
    same settings), and what each experiment starts from. ``roots`` maps dataset names to their folders;
    ``overrides`` sets training settings in every experiment (e.g. a few iterations to try a folder of experiments
    out); ``dry_run`` prints the plan and changes nothing. ``wait``: a run folder that another process is training
    is waited for (``wait`` is called with a line that says so), then taken as that process left it, instead of
    refused (a notebook waits for ``make tour``; ``gsv run`` refuses)."""

    def __init__(self, roots: dict[str, str] | None = None, runs: str | Path = "runs", progress: bool = True,
                 dry_run: bool = False, say=print, overrides: dict | None = None, seed: int | None = None,
                 use: dict[str, str] | None = None, settings: dict[str, dict] | None = None, wait=None):
        self.wait = wait
        self.seed = seed  # a repetition under this seed: its own run folder and result files, no export or bench
        self.use = dict(use or {})  # experiment name -> a checkpoint that stands in for its run as a starting point
        self.roots = dict(roots or {})
        self.overrides = dict(overrides or {})  # TrainConfig fields set in every experiment's [train] (quick runs)
        self.settings = {name: dict(values) for name, values in (settings or {}).items()}  # name -> over its [train]
        named = ((f"the settings of {name}", values) for name, values in self.settings.items())
        for what, values in (("--set", self.overrides), *named):
            unknown = sorted(set(values) - {f.name for f in fields(TrainConfig)})
            if unknown:
                raise ValueError(f"{what} names settings TrainConfig does not have: {unknown}")
            wrong = wrong_types(TrainConfig, values)
            if wrong:
                raise ValueError(f"{what} " + "; ".join(wrong))
        if seed is not None and seed < 0:
            raise ValueError(f"a seed is a whole number >= 0, got {seed}")
        unknown = sorted(set(self.roots) - set(DATASETS))
        if unknown:
            raise ValueError(f"--root names datasets that do not exist: {unknown} (datasets: {sorted(DATASETS)})")
        self.runs = Path(runs)
        self.progress = progress
        self.dry_run = dry_run
        self.say = say
        self._trained: dict[tuple, Path] = {}  # (experiment file, seeded) -> its checkpoint, once made sure of
        self._names: dict[str, Experiment] = {}  # experiment name -> the one file of that name this runner carries out
        self._fresh: set[Path] = set()  # checkpoints this runner trains (or would): what started from them is stale
        self._outs: dict[Path, str] = {}  # run folder -> the experiment that trains into it
        unknown = sorted(name for name, path in self.use.items() if not Path(path).is_file())
        if unknown:
            raise ValueError(f"--use names checkpoints that do not exist: {unknown}")

    def claim(self, experiments: list[Experiment]) -> list[Experiment]:
        """``experiments`` and what they start from (:func:`closure`: no loops), each name held by one file for the
        whole life of this runner; returns them."""
        every = closure(experiments)
        for exp in every:
            self._names.setdefault(exp.name, exp)
        same_names([*self._names.values(), *every])
        return every

    def root(self, dataset: str) -> str:
        """The folder of ``dataset``: given with --root (for it or a dataset read from the same folder), else its
        default."""
        default = DATASETS[dataset].default_root
        shared = [r for name, r in self.roots.items() if DATASETS[name].default_root == default]
        return self.roots.get(dataset) or (shared[0] if shared else default)

    def config(self, exp: Experiment, seeded: bool = True) -> TrainConfig:
        """The training config of ``exp``: its recipe, its fields, the dataset's folder, the run folder (with
        ``seed``, RUNS/<name>/seed-N under that seed; ``seeded=False`` for a starting point, which is shared)."""
        values = {**exp.train, **self.overrides, **self.settings.get(exp.name, {})}
        recipe = values.pop("recipe", None)
        for name in STARTING_POINTS:
            if isinstance(values.get(name), str) and exp.ref(values[name]) is not None:
                values[name] = str(self._checkpoint_of(exp, values[name]))
        if seeded and self.seed is not None:
            values["seed"], values["out"] = self.seed, str(self.runs / exp.name / f"seed-{self.seed}")
        values.setdefault("out", str(self.runs / exp.name))
        try:
            cfg = config_for(recipe=recipe, **values)
            cfg = config_for(recipe=recipe, **{**values, "root": values.get("root", self.root(cfg.dataset))})
            cfg.check()
        except (TypeError, ValueError) as e:
            raise _fail(exp.path, f"[train]: {e}") from None
        return cfg

    def _checkpoint_of(self, exp: Experiment, text: str) -> Path:
        """The checkpoint that ``text`` in ``exp`` names: another experiment's (trained first) or a file."""
        ref = exp.ref(text)
        if ref is None:
            return (exp.path.parent / text).resolve() if not Path(text).is_absolute() else Path(text)
        if not ref.is_file():
            raise _fail(exp.path, f"names experiment {text!r}, but {ref} does not exist")
        start = load(ref)
        if start.name in self.use:
            return Path(self.use[start.name]).resolve()
        return self.trained(start, seeded=False)

    def trained(self, exp: Experiment, seeded: bool = True) -> Path:
        """Make sure ``exp``'s model exists (training it, and what it starts from, where missing or interrupted);
        returns its checkpoint. Starting points are trained once, under their own seed (``seeded=False``)."""
        key = (exp.path, seeded and self.seed is not None)
        if key in self._trained:
            return self._trained[key]
        if exp.train is None:
            path = self._checkpoint_of(exp, exp.checkpoint)
        else:
            cfg = self.config(exp, seeded)
            owner = self._outs.setdefault(Path(cfg.out).resolve(), exp.name)
            if owner != exp.name:
                raise _fail(exp.path, f"trains into {shown(cfg.out)}, the run folder of experiment {owner} too (is "
                                      "`out` set for both, e.g. by --set out=...?); give each its own (nothing was "
                                      "run)")
            path = Path(cfg.out) / "checkpoint.pt"
            done = self._same_run(exp, cfg, path) if path.is_file() else 0
            if done < cfg.iterations and self.wait is not None and not self.dry_run:
                done = self._after_other_process(exp, cfg, path, done)
            if done < cfg.iterations:
                self._fresh.add(path.resolve())
            if done >= cfg.iterations:
                self.say(f"[{exp.name}] trained: {shown(path)} ({done} iterations)")
            elif self.dry_run:
                state = "resume" if path.is_file() else "train"
                self.say(f"[{exp.name}] would {state}: {cfg.stage} for {cfg.iterations} iterations into "
                         f"{shown(cfg.out)}")
            else:
                self._ready(cfg.dataset, cfg.root)
                if not path.is_file():
                    check_starting_point(exp.train.get("recipe"), cfg)
                self.say(f"[{exp.name}] {'resuming' if path.is_file() else 'training'} {cfg.stage} into "
                         f"{shown(cfg.out)}")
                train(cfg, resume=path.is_file(), progress=self.progress)
        self._trained[key] = path
        return path

    def _after_other_process(self, exp: Experiment, cfg: TrainConfig, path: Path, done: int) -> int:
        """The iterations in ``cfg.out`` once no other process trains there (``done`` when none does)."""
        lock = Path(cfg.out) / LOCK
        holder = lock_holder(lock)
        if holder is None or holder.startswith(f"pid {os.getpid()} "):  # this process's own lock: train says so
            return done
        self.wait(f"[{exp.name}] {shown(cfg.out)} is being trained by {holder} (e.g. `make tour`); waiting for it to "
                  "finish (interrupt to stop waiting)")
        start = time.monotonic()
        while lock_holder(lock) is not None:
            time.sleep(WAIT_POLL_S)
        self.wait(f"[{exp.name}] the other process finished after {time.monotonic() - start:.0f} s")
        return self._same_run(exp, cfg, path) if path.is_file() else 0

    def _same_run(self, exp: Experiment, cfg: TrainConfig, path: Path) -> int:
        """The iterations of the run in ``path``, after making sure it is a run of ``cfg``: the same settings (but
        for those with no effect on results, the data's folder and the iterations still to come) from starting points
        of the same sha256. Otherwise refused, naming the experiment file, the run folder and what differs."""
        ckpt = read_checkpoint(path)
        resolved = TrainConfig(**{**vars(cfg), **{k: str(Path(v).resolve()) for k in PATHS if (v := getattr(cfg, k))}})
        differ = setting_differences(ckpt.get("train_config", {}), resolved, (*FREE, "root"))
        fresh = {name: v for name in STARTING_POINTS if (v := getattr(resolved, name)) and Path(v) in self._fresh}
        differ += [f"{name}: {getattr(cfg, name)} is trained further by this command first" for name in fresh]
        saved = ckpt.get("starts")  # None: trained before starting points were recorded
        if saved is not None:
            now = {k: v for k, v in starting_points(resolved).items() if k not in fresh}
            differ += [f"{name}: a file of sha256 {saved.get(name, 'none')[:12]} -> {now.get(name, 'none')[:12]} "
                       f"({getattr(cfg, name)}; trained again or replaced since)"
                       for name in sorted(set(saved) | set(now))
                       if name not in fresh and saved.get(name) != now.get(name)]
        done = ckpt.get("iteration", 0)
        if done > cfg.iterations:
            differ.append(f"iterations: {done} -> {cfg.iterations} (a run is not cut back)")
        if differ:
            raise _fail(exp.path, f"its run folder {cfg.out} holds a run of other settings ({'; '.join(differ)}). A "
                                  "run is known by its settings: move that folder away (or give `gsv run --runs` "
                                  "another folder) to train these settings, or undo the change (nothing was run)")
        return done

    def _ready(self, dataset: str, root: str) -> None:
        """A built-in dataset (the synthetic set, with its default settings) is made where it is missing."""
        if hasattr(DATASETS[dataset], "generate"):
            DATASETS[dataset].generate(root, progress=self.progress)


class Runner(Runs):
    """Carries out experiments: the runs they need (:class:`Runs`), then their exports, evaluations and benchmarks
    where not done yet. ``results``: a folder that every result file goes into by its file name, instead of where
    the experiment file puts it (to run committed experiments without writing over their recorded results)."""

    def __init__(self, *args, results: str | Path | None = None, changes: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.results = None if results is None else Path(results).resolve()
        self.changes = dict(changes or {})  # settings over every [[eval]] and [[bench]] that has them, recorded
        unknown = sorted(set(self.changes) - {f.name for f in (*fields(EvalConfig), *fields(BenchConfig))})
        if unknown:
            raise ValueError(f"changes names settings that neither EvalConfig nor BenchConfig has: {unknown}")

    def changed(self, spec: dict, cls) -> dict:
        """The settings this runner changes in the evaluation ``spec`` (``cls`` EvalConfig) or benchmark
        (BenchConfig): those of ``changes`` that ``cls`` has and ``spec`` gives otherwise, as JSON stores them."""
        defaults = {f.name: getattr(cls, f.name, None) for f in fields(cls)}
        ours = json.loads(json.dumps({k: v for k, v in self.changes.items() if k in defaults}))
        theirs = json.loads(json.dumps({**defaults, **spec}))
        return {k: v for k, v in ours.items() if theirs[k] != v}

    def placed(self, exp: Experiment) -> Experiment:
        """``exp`` with its result files where this runner writes them."""
        if self.results is None:
            return exp
        return replace(exp, evals=[{**e, "out": str(self.results / Path(e["out"]).name)} for e in exp.evals],
                       benches=[{**b, "json": str(self.results / Path(b["json"]).name)} for b in exp.benches])

    def prepare(self, experiments: list[Experiment]) -> None:
        """Check, before anything runs, what ``experiments`` start from (:meth:`claim`), that each ``use`` name is
        one of their starting points (a name that no experiment starts from would be ignored), and, by a silent dry
        run of them all, every setting, every run folder and every evaluation: a refusal comes before any work."""
        if not self.dry_run:
            rehearsal = copy.copy(self)  # the same settings, its own record of what it would do
            rehearsal.dry_run = True
            rehearsal.say = lambda *_: None
            rehearsal._trained = {}
            rehearsal._fresh = set()
            rehearsal._names = dict(self._names)
            rehearsal._outs = {}
            rehearsal.prepare(experiments)
            for exp in experiments:
                rehearsal.run(exp)
        every = self.claim(experiments)
        writers: dict[Path, str] = {}
        for exp in map(self.placed, experiments):
            for spec in exp.evals + exp.benches:
                out = Path(spec.get("out", spec.get("json"))).resolve()
                other = writers.setdefault(out, f"{exp.name} ({spec['name']})")
                if other != f"{exp.name} ({spec['name']})":
                    raise _fail(exp.path, f"[[eval]] or [[bench]] {spec['name']} writes {shown(out)}, which {other} "
                                          "writes too: each would replace the other's result on every run; give "
                                          "each its own file (nothing was run)")
        starts = sorted({load(ref).name for exp in every for ref in exp.starts()})
        unknown = sorted(set(self.use) - set(starts))
        if unknown:
            raise ValueError(f"--use names {unknown}, which no experiment being run starts from; the starting points "
                             "it can stand in for: "
                             f"{', '.join(starts) or 'none (these experiments start from no other)'}")

    def run(self, exp: Experiment) -> list[Path]:
        """Carry out ``exp``; returns the result files it wrote or found done. Under ``seed`` only its training and
        its evaluations are repeated (of the run, where the file evaluates the exported weights), into result files
        beside the experiment's own (``<out>.seed-N.json``)."""
        exp = self.placed(exp)
        for spec in exp.evals + exp.benches:
            tables_of(exp, spec)  # a misnamed table fails before anything runs
        self.claim([exp])
        if self.seed is not None:
            if exp.train is None:
                self.say(f"[{exp.name}] trains nothing: no seeds to repeat")
                return []
            checkpoint = self.trained(exp)
            trains = STAGES[self.config(exp).stage].trains  # what a seed can change; a frozen part scores the same
            return [self._evaluate(exp, {**spec, "out": seed_file(spec["out"], self.seed)}, checkpoint)
                    for spec in exp.evals
                    if spec.get("policy") or any(set(VARIANTS[v].parts) & set(trains)
                                                 for v in spec.get("variants", EvalConfig.variants))]
        checkpoint = self.trained(exp)
        weights = self._export(exp, checkpoint)
        written = []
        for spec in exp.evals:
            source = weights if spec.get("of") == "weights" else checkpoint
            written.append(self._evaluate(exp, spec, source))
        for spec in exp.benches:
            written.append(self._bench(exp, spec, weights or checkpoint))
        if exp.export and exp.export.get("manifest") and not self.dry_run:
            self._manifest(exp, checkpoint, weights)
        return written

    def _export(self, exp: Experiment, checkpoint: Path) -> Path | None:
        if not exp.export:
            return None
        out = Path(exp.export["out"])
        self._writable(exp, out, "[export] out", "torch")  # before any work, as a manifest that is no manifest
        if exp.export.get("manifest"):
            try:
                read_manifest(exp.export["manifest"])
            except CheckpointError as e:
                raise _fail(exp.path, str(e)) from None
        if self.dry_run:
            self.say(f"[{exp.name}] would export {shown(checkpoint)} to {shown(out)} where it is older than the "
                     "checkpoint")
        elif not out.is_file() or out.stat().st_mtime < checkpoint.stat().st_mtime:
            export_weights(checkpoint, out)
            self.say(f"[{exp.name}] exported {shown(out)}")
        return out

    def _manifest(self, exp: Experiment, checkpoint: Path, weights: Path) -> None:
        metrics = {}
        for name in exp.export.get("metrics", []):
            spec = next(e for e in exp.evals if e["name"] == name)
            metrics[Path(spec["out"]).name] = read_metrics(spec["out"])
        write_manifest_entry(checkpoint, weights, exp.export["manifest"], {"metrics": metrics} if metrics else None)
        self.say(f"[{exp.name}] manifest entry of {weights.name} written to {shown(exp.export['manifest'])}")

    def eval_config(self, exp: Experiment, spec: dict, source: Path) -> EvalConfig:
        values = {**{k: v for k, v in spec.items() if k not in PLACING}, **self.changed(spec, EvalConfig)}
        values.setdefault("dataset", self._dataset(exp))
        values.setdefault("root", self.root(values["dataset"]))
        try:
            cfg = EvalConfig(**{**values, "checkpoint": str(source)})
            cfg.check()
        except (TypeError, ValueError) as e:
            raise _fail(exp.path, f"[[eval]] {spec['name']}: {e}") from None
        return cfg

    def _dataset(self, exp: Experiment) -> str:
        """The dataset an experiment's evaluations read by default: the one it trained on (or the experiment it
        evaluates did)."""
        if exp.train is not None:
            return config_for(recipe=exp.train.get("recipe"), **{k: v for k, v in exp.train.items()
                                                                 if k in ("stage", "dataset")}).dataset
        ref = exp.ref(exp.checkpoint)
        return self._dataset(load(ref)) if ref is not None else EvalConfig.dataset

    def _evaluate(self, exp: Experiment, spec: dict, source: Path) -> Path:
        cfg = self.eval_config(exp, spec, source)
        out = Path(spec["out"])
        self._writable(exp, out, f"[[eval]] {spec['name']}: out")
        if self.dry_run:
            self.say(f"[{exp.name}] would evaluate {spec['name']} ({', '.join(cfg.variants)}) into {shown(out)} "
                     "unless done")
            return out
        meta = {**provenance(exp, spec, source, sha256(source), cfg, self.changed(spec, EvalConfig)),
                **({"seed": self.seed} if self.seed is not None else {})}
        if _done(out, meta):
            self.say(f"[{exp.name}] {spec['name']}: done ({shown(out)})")
            return out
        self._ready(cfg.dataset, cfg.root)
        model, ckpt = load_model(source, cfg.device)
        cfg.require(ckpt)
        self.say(f"[{exp.name}] evaluating {spec['name']} on {cfg.data}")
        t0 = time.perf_counter()
        report = run_eval(model, cfg, self.progress)
        write_json_atomic(out, marked({**report, "seconds": round(time.perf_counter() - t0, 1), "experiment": meta}))
        return out

    @staticmethod
    def _writable(exp: Experiment, out: Path, what: str, kind: str = "json") -> None:
        """Refuse an output file the kit did not write (:func:`gsvlib.files.check_file_output`), naming the
        experiment file."""
        try:
            check_file_output(out, what, kind=kind)
        except OSError as e:
            raise _fail(exp.path, str(e)) from None

    def _bench(self, exp: Experiment, spec: dict, source: Path) -> Path:
        values = {**{k: v for k, v in spec.items() if k not in PLACING}, **self.changed(spec, BenchConfig)}
        try:
            cfg = BenchConfig(**{**values, "checkpoint": str(source)})
            cfg.check()
        except (TypeError, ValueError) as e:
            raise _fail(exp.path, f"[[bench]] {spec['name']}: {e}") from None
        out = Path(cfg.json)
        self._writable(exp, out, f"[[bench]] {spec['name']}: json")
        if self.dry_run:
            self.say(f"[{exp.name}] would benchmark {spec['name']} into {shown(out)} unless done")
            return out
        meta = provenance(exp, spec, source, sha256(source), changed=self.changed(spec, BenchConfig))
        if _done(out, meta):
            self.say(f"[{exp.name}] {spec['name']}: done ({shown(out)})")
            return out
        model, _ = load_model(source, cfg.device)
        self.say(f"[{exp.name}] benchmarking {spec['name']} at {cfg.size[0]}x{cfg.size[1]}")
        t0 = time.perf_counter()
        report = benchmark(model, cfg, cfg.backend[0], cfg.precision[0], self.progress)
        write_json_atomic(out, marked({**report, "seconds": round(time.perf_counter() - t0, 1), "experiment": meta}))
        return out



def seed_file(out: str | Path, seed: int) -> str:
    """Where the repetition of a result under ``seed`` goes: beside it, ``propagation.json`` -> ``propagation.seed-1.json``."""
    out = Path(out)
    return str(out.with_name(f"{out.stem}.seed-{seed}{out.suffix}"))


def recorded_settings(spec: dict) -> dict:
    """What a result records of its [[eval]] or [[bench]] ``spec``: its name and settings, as JSON stores them; not
    where it is written (out, json) nor how it is shown (:data:`PRESENTATION`)."""
    return json.loads(json.dumps({k: v for k, v in spec.items() if k not in ("json", *MACHINE_FIELDS, *PRESENTATION)}))


def provenance(exp: Experiment, spec: dict, source: Path | None, digest: str | None,
               cfg: EvalConfig | None = None, changed: dict | None = None) -> dict:
    """The ``experiment`` block of a result of ``exp``'s evaluation ``spec``: which experiment (its name and file) and
    which of its evaluations this is (``spec``: its settings as the file gives them; ``config``: the whole EvalConfig
    they made, less the machine's paths; ``changed``: the settings the command changed from the file's), what it
    evaluated (``source`` and its sha256) and how that was trained (:func:`training_of`). Nothing about how it is shown: :func:`gsvlib.reports.read_results` joins that from the
    experiment file when it renders."""
    config = None if cfg is None else {k: v for k, v in asdict(cfg).items() if k not in MACHINE_FIELDS}
    return {"name": exp.name, "experiment_file": shown(exp.path), "evaluation": spec["name"],
            "spec": recorded_settings(spec), "config": config,
            "checkpoint": None if source is None else shown(source), "checkpoint_sha256": digest,
            "trained": None if source is None else training_of(source),
            **({"changed": json.loads(json.dumps(changed))} if changed else {})}


def training_of(checkpoint: Path) -> dict | None:
    """How ``checkpoint`` was trained, as far as it says: stage, dataset, iterations, batch size, seed, the seconds
    its training took over all sessions (recorded in the checkpoint, or in the log beside it) and the same of each
    starting point that is still where it was; None for a file that records no training (exported weights)."""
    ckpt = read_checkpoint(checkpoint)
    cfg = ckpt.get("train_config")
    if not isinstance(cfg, dict):
        return None
    seconds = ckpt.get("seconds")
    if seconds is None and (checkpoint.parent / "log.jsonl").is_file():
        seconds = next(iter(read_log(checkpoint.parent)[-1:]), {}).get("seconds")
    starts = {name: training_of(Path(cfg[name])) for name in STARTING_POINTS
              if isinstance(cfg.get(name), str) and Path(cfg[name]).is_file()}
    return {"checkpoint": shown(checkpoint), "stage": cfg.get("stage"), "dataset": cfg.get("dataset"),
            "iterations": ckpt.get("iteration"),
            "batch_size": cfg.get("batch_size"), "seed": cfg.get("seed"), "seconds": seconds,
            "starts": {name: start for name, start in starts.items() if start is not None}}


MACHINE_FIELDS = ("checkpoint", "root", "out", "device")  # where things lie on one machine: not recorded in results


def reevaluate(result: dict, checkpoint: str | Path, roots: dict[str, str], device: str = "cpu",
               progress: bool = True) -> dict:
    """A recorded result (a ``gsv run`` evaluation) computed again for ``checkpoint`` with the evaluation it records,
    on the dataset folders ``roots`` (dataset name -> folder); the experiment block is kept, its checkpoint and
    sha256 replaced."""
    meta = result["experiment"]
    if not meta.get("config"):
        raise ExperimentError(f"{meta['name']} ({meta['evaluation']}): the result records no evaluation config; run "
                              "its experiment again with `gsv run`")
    dataset = meta["config"]["dataset"]
    cfg = EvalConfig(**meta["config"], checkpoint=str(checkpoint), device=device,
                     root=roots.get(dataset, DATASETS[dataset].default_root))
    cfg.check()
    model, ckpt = load_model(checkpoint, device)
    cfg.require(ckpt)
    digest = sha256(Path(checkpoint))
    return {**run_eval(model, cfg, progress),
            "experiment": {**meta, "checkpoint": shown(Path(checkpoint)), "checkpoint_sha256": digest}}


def _done(out: Path, meta: dict) -> bool:
    """Whether ``out`` already holds this evaluation of this checkpoint."""
    if not out.is_file():
        return False
    try:
        old = json.loads(out.read_text()).get("experiment", {})
    except (json.JSONDecodeError, AttributeError):
        return False
    if not isinstance(old, dict) or not isinstance(old.get("spec"), dict):
        return False
    # read through recorded_settings: a result of an earlier version also recorded its table and row
    return (recorded_settings(old["spec"]) == meta["spec"] and old.get("checkpoint_sha256") == meta["checkpoint_sha256"]
            and old.get("changed") == meta.get("changed"))


def plan_text(exp: Experiment) -> str:
    """One line of what ``exp`` is, for ``gsv run --list``."""
    what = (f"trains {exp.train.get('recipe', 'its stage default')}" if exp.train is not None else
            f"evaluates {exp.checkpoint}")
    evals = ", ".join(e["name"] for e in exp.evals + exp.benches) or "no evaluation"
    return f"{exp.name}: {exp.description} ({what}; {evals})"


