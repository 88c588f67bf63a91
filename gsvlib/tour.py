"""The main job (``make tour`` / ``gsv tour``) on the built-in synthetic set, end to end on a CPU.

The tour is ``gsv run`` over the experiment files of ``experiments/synthetic`` and ``gsv tables`` over what they
wrote: generate the synthetic street video; train the keyframe net (stage 1) and GSVNet's propagation, with and
without intra features (stage 2); run the paper's protocol for l = 1..5 with every registered propagation and the
image-only baselines; benchmark key and non-key frames at 1024x2048; render the page (results.md, table ``tour`` of
experiments/synthetic/tables.toml) and draw its plots. Results go to ``figures`` (default runs/tour/report: a
user's run never touches the reference results committed in figures/synthetic). Every step is skipped when it is
done with the same settings, and interrupted training resumes, so a second run takes seconds.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from gsvlib.config import config_for
from gsvlib.data.synthetic import SynthConfig, generate
from gsvlib.experiments import Experiment, Runner, collect
from gsvlib.reports import read_results, render, table_rows, tour_report, write_tables
from gsvlib.train import read_log

try:  # plotly comes with the notebooks extra; without it the tour writes its tables and skips the plots
    from gsvlib.viz import accuracy_throughput, export, loss_curves, miou_by_interval
except ModuleNotFoundError as missing:
    PLOTS_NEED = missing.name
else:
    PLOTS_NEED = None

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments" / "synthetic"  # the tour's experiment files
TABLE = "tour"  # the tour's page: a table of experiments/synthetic/tables.toml
MODEL = "gsv"  # the experiment file of the model the tour shows: the first row of its page


@dataclass
class TourConfig:
    """Where the tour works, and the settings it changes from its experiment files (None: the file's)."""

    data: str = "data/synthetic"
    runs: str = "runs"  # run folders: RUNS/synthetic/<experiment>
    figures: str = "runs/tour/report"  # result files
    page: str | None = None  # the page, with its plots beside it (default FIGURES/results.md)
    experiments: str = str(EXPERIMENTS)
    synth: SynthConfig = field(default_factory=SynthConfig)
    keyframe_iterations: int | None = None  # of the experiments of stage keyframe
    gsv_iterations: int | None = None  # of the experiments of stage propagation (GSVNet's propagation)
    batch_size: int | None = None
    seed: int | None = None
    bench_size: tuple[int, int] | None = None
    bench_repeats: int | None = None


QUICK = dict(synth=SynthConfig(snippets=2, val_snippets=1, size=(64, 128), frames=8, annotated=6),
             keyframe_iterations=3, gsv_iterations=3, batch_size=2, bench_size=(128, 256), bench_repeats=1)


def experiments(cfg: TourConfig) -> list[Experiment]:
    """The tour's experiment files (:data:`EXPERIMENTS`, or ``cfg.experiments``)."""
    if not Path(cfg.experiments).is_dir():
        raise FileNotFoundError(f"the tour's experiment files are not at {cfg.experiments}: run the tour from a clone "
                                "of gsvkit (they are experiments/synthetic there), or give --experiments")
    return collect([cfg.experiments])


def runner(cfg: TourConfig, progress: bool = True, say=print, wait=None) -> Runner:
    """The :class:`~gsvlib.experiments.Runner` of the tour: its experiment files on ``cfg.data``, run folders under
    ``cfg.runs``, results into ``cfg.figures``, with the settings ``cfg`` changes; ``wait`` as the Runner's."""
    iterations = {stage: n for stage, n in (("keyframe", cfg.keyframe_iterations), ("propagation", cfg.gsv_iterations))
                  if n is not None}
    settings, stages = {}, set()
    for exp in experiments(cfg):
        if exp.train is not None:
            stages.add(stage := config_for(recipe=exp.train.get("recipe"), stage=exp.train.get("stage")).stage)
            if stage in iterations:
                settings[exp.name] = {"iterations": iterations[stage]}
    unused = sorted(set(iterations) - stages)
    if unused:
        raise ValueError(f"the tour's iterations for stages {unused} would change nothing: no experiment of "
                         f"{cfg.experiments} trains them (stages there: {sorted(stages)})")
    overrides = {k: v for k, v in (("batch_size", cfg.batch_size), ("seed", cfg.seed)) if v is not None}
    changes = {k: v for k, v in (("size", cfg.bench_size), ("intervals_timed", cfg.bench_repeats)) if v is not None}
    return Runner({"synthetic": cfg.data}, runs=cfg.runs, progress=progress, say=say, overrides=overrides,
                  settings=settings, results=cfg.figures, changes=changes, wait=wait)


def key_scale(cfg: TourConfig) -> float | None:
    """The input scale of the keyframes in the tour's protocol (its model's first [[eval]]; None: the model's)."""
    model = next(exp for exp in experiments(cfg) if exp.path.stem == MODEL)
    return next((e["key_scale"] for e in model.evals if "key_scale" in e), None)


def prepare(cfg: TourConfig, progress: bool = True, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """The synthetic set and the tour's trained runs (``names``: only those experiment files, and what they start
    from), made where missing and resumed where shorter than asked; returns their checkpoints by experiment file
    ("keyframe", "gsv", "no-intra"). The notebooks start from here: a run that another process is training (``make
    tour`` beside a notebook) is waited for, saying so, and not refused."""
    generate(cfg.data, cfg.synth, progress=progress)
    run = runner(cfg, progress, say=lambda *_: None, wait=print)
    exps = [exp for exp in experiments(cfg) if names is None or exp.path.stem in names]
    run.claim(exps)
    return {exp.path.stem: run.trained(exp) for exp in exps}


def measure(cfg: TourConfig, progress: bool = True, say=print) -> list[Path]:
    """Every experiment of the tour carried out (trained where missing, evaluated and benchmarked where not done):
    the result files, in ``cfg.figures``."""
    generate(cfg.data, cfg.synth, progress=progress)
    run, exps = runner(cfg, progress, say), experiments(cfg)
    run.prepare(exps)
    return [path for exp in exps for path in run.run(exp)]


def page(cfg: TourConfig) -> tuple[str, dict]:
    """The tour's page (markdown) rendered from its results in ``cfg.figures``, and its numbers
    (:func:`gsvlib.reports.tour_report`)."""
    results, _ = read_results(cfg.figures, Path(cfg.experiments).parent)
    return render(results, [TABLE]), tour_report(table_rows(results, TABLE))


def run_tour(cfg: TourConfig = TourConfig(), progress: bool = True) -> dict:
    """Every step of the tour: :func:`measure`, then the page (every table of the tour's results; ``cfg.page``,
    default FIGURES/results.md) and its plots beside it; returns the page's numbers, where the page went and the
    seconds this call took."""
    t0 = time.perf_counter()
    measure(cfg, progress)
    _, out, _ = write_tables(cfg.figures, cfg.page, Path(cfg.experiments).parent)
    _, report = page(cfg)
    if PLOTS_NEED:
        warnings.warn(f"the plots were not drawn: they need {PLOTS_NEED} (pip install 'gsvlib[notebooks]')",
                      stacklevel=2)
    else:
        for name, fig in report_figures(report).items():
            export(fig, out.parent / f"{name}.png")
    return {**report, "page": out, "seconds": round(time.perf_counter() - t0, 1)}


def report_figures(report: dict) -> dict:
    """The page's plots: mIoU over l, accuracy vs throughput (Fig. 3), and the training loss of each run whose log
    is still beside its checkpoint."""
    acc, image_only, bench = report["accuracy"], report["image_only"], report["benchmark"] or {}
    name, model = next(iter(acc.items()))
    points = [{"name": name, "fps": b["fps"], "label": f"l={l}", "miou": model["intervals"][l]["avg"],
               "ci": model["intervals"][l].get("avg_ci")}
              for l, b in bench.get("gsvnet", {}).items() if l in model["intervals"]]
    points += [{"name": "image-only", "fps": b["fps"], "label": f"x{s}", "miou": image_only[s]["miou"],
                "ci": image_only[s].get("ci")} for s, b in bench.get("image_only", {}).items() if s in image_only]
    logs = {step.removeprefix("train "): Path(record["checkpoint"]).parent for step, record in report["training"].items()
            if record.get("checkpoint") and (Path(record["checkpoint"]).parent / "log.jsonl").is_file()}
    return {"miou_by_interval": miou_by_interval(acc, image_only), "accuracy_throughput": accuracy_throughput(points),
            "training_loss": loss_curves({n: read_log(folder) for n, folder in logs.items()})}
