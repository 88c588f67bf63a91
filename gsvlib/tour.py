"""The main job (``make tour`` / ``gsv tour``) on the built-in synthetic set, end to end on a CPU.

Generate the synthetic street video; train the keyframe net (stage 1) and GSVNet's propagation, with and without
intra features (stage 2); run the paper's protocol for l = 1..5 with every registered propagation and the image-only
baselines; benchmark key and non-key frames at 1024x2048; write results.md, results.json and the plots into
``figures`` (default runs/tour/report: a user's run never touches the reference figures committed in figures/).
Every step resumes or is skipped when its output is already there, so a second run is quick.
"""
from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gsvlib.bench import BenchConfig, benchmark
from gsvlib.checkpoint import load_model
from gsvlib.config import config_for
from gsvlib.data.synthetic import SynthConfig, generate
from gsvlib.data import DataSpec
from gsvlib.evaluate import EvalConfig, evaluate_variants
from gsvlib.protocol import evaluate, protocol_difference
from gsvlib.files import marked, write_json_atomic, write_text_atomic
from gsvlib.reports import tour_markdown
from gsvlib.segmenter import PROPAGATIONS
from gsvlib.train import read_log, train

try:  # plotly comes with the notebooks extra; without it the tour writes its tables and skips the plots
    from gsvlib.viz import accuracy_throughput, export, loss_curves, miou_by_interval
except ModuleNotFoundError as missing:
    PLOTS_NEED = missing.name
else:
    PLOTS_NEED = None


@dataclass
class TourConfig:
    data: str = "data/synthetic"
    runs: str = "runs/tour"
    figures: str = "runs/tour/report"
    synth: SynthConfig = field(default_factory=SynthConfig)
    keyframe_iterations: int = 250
    gsv_iterations: int = 150
    batch_size: int = 8
    bench_size: tuple[int, int] = (1024, 2048)
    bench_repeats: int = 2
    intervals: tuple[int, ...] = (1, 2, 3, 4, 5)
    image_scales: tuple[float, ...] = (0.5, 0.75, 1.0)
    key_scale: float = 0.75
    seed: int = 0


QUICK = dict(synth=SynthConfig(snippets=2, val_snippets=1, size=(64, 128), frames=8, annotated=6),
             keyframe_iterations=3, gsv_iterations=3, batch_size=2, bench_size=(128, 256), bench_repeats=1)
RUNS = {"keyframe": ("from-scratch", {}), "gsv": ("short-adam", {}),  # run folder -> (recipe, options over it)
        "gsv-no-intra": ("short-adam", {"use_intra": False})}


@contextlib.contextmanager
def _timed(clock: dict, step: str, note: str = ""):
    t = time.perf_counter()
    yield
    clock[step] = {"seconds": round(time.perf_counter() - t, 1), "note": note}


def _done_before(run: Path) -> tuple[int, float]:
    """(iterations, seconds over all sessions) of a run folder's log; (0, 0) when it has none."""
    log = read_log(run)[-1:] if (run / "log.jsonl").is_file() else []
    return (log[0]["iteration"], log[0]["seconds"]) if log else (0, 0.0)


def prepare(cfg: TourConfig, progress: bool = True, clock: dict | None = None) -> dict[str, Path]:
    """The synthetic set and the three trained runs (keyframe, gsv, gsv-no-intra), made where missing and resumed
    where shorter than asked; returns their checkpoint paths. The notebooks start from here. ``clock`` receives each
    step's seconds in this call and what was already done."""
    clock = {} if clock is None else clock
    runs = Path(cfg.runs)
    meta = Path(cfg.data) / "meta.json"
    made = json.loads(meta.read_text())["seconds"] if meta.is_file() else None
    with _timed(clock, "generate the synthetic set", f"skipped: made earlier in {made} s" if made else ""):
        generate(cfg.data, cfg.synth, progress=progress)
    paths = {}
    for name, (recipe, options) in RUNS.items():
        iterations = cfg.keyframe_iterations if name == "keyframe" else cfg.gsv_iterations
        done, seconds = _done_before(runs / name)
        note = (f"skipped: trained earlier in {seconds:.0f} s" if done >= iterations else
                f"resumed at iteration {done}" if done else "")
        init = {} if name == "keyframe" else {"init": str(paths["keyframe"])}
        config = config_for(recipe=recipe, out=str(runs / name), root=cfg.data, batch_size=cfg.batch_size,
                            seed=cfg.seed, checkpoint_every=50, iterations=iterations, **init, **options)
        with _timed(clock, f"train {name}", note):
            result = train(config, resume=(runs / name / "checkpoint.pt").exists(), progress=progress)
        paths[name] = Path(result["checkpoint"])
    return paths


def run_tour(cfg: TourConfig = TourConfig(), progress: bool = True) -> dict:
    """Every step of the tour; writes ``results.json``, ``results.md`` and the plots into ``cfg.figures``."""
    t0 = time.perf_counter()
    runs, figures = Path(cfg.runs), Path(cfg.figures)
    figures.mkdir(parents=True, exist_ok=True)
    clock = {}
    prepare(cfg, progress, clock)
    report = {"config": asdict(cfg), **measure(cfg, progress, clock)}
    clock["total"] = {"seconds": round(time.perf_counter() - t0, 1), "note": "this run"}
    report["timings_s"] = clock
    write_json_atomic(figures / "results.json", marked(report))
    write_text_atomic(figures / "results.md", tour_markdown(report))
    if PLOTS_NEED:
        warnings.warn(f"the plots were not drawn: they need {PLOTS_NEED} (pip install 'gsvlib[notebooks]')",
                      stacklevel=2)
        return report
    for name, fig in report_figures(report, runs).items():
        export(fig, figures / f"{name}.png")
    return report


def report_figures(report: dict, runs: str | Path) -> dict:
    """The report's plots: mIoU over l, accuracy vs throughput (Fig. 3), training loss."""
    results, image_only, bench = report["accuracy"], report["image_only"], report["benchmark"]
    gsvnet = PROPAGATIONS["gsv"].title
    points = [{"name": gsvnet, "fps": b["fps"], "label": f"l={l}", "miou": results[gsvnet]["intervals"][l]["avg"],
               "ci": results[gsvnet]["intervals"][l].get("avg_ci")}
              for l, b in bench["gsvnet"].items() if l in results[gsvnet]["intervals"]]
    points += [{"name": "image-only", "fps": b["fps"], "label": f"x{s}", "miou": image_only[s]["miou"],
                "ci": image_only[s].get("ci")} for s, b in bench["image_only"].items() if s in image_only]
    return {"miou_by_interval": miou_by_interval(results, image_only),
            "accuracy_throughput": accuracy_throughput(points),
            "training_loss": loss_curves({n: read_log(Path(runs) / n) for n in RUNS})}


def measure(cfg: TourConfig, progress: bool = True, clock: dict | None = None) -> dict:
    """The protocol for every registered propagation, GSVNet without intra features and the image-only net, and the
    benchmark, from the runs ``prepare`` made: the report's numbers. ``clock`` receives each step's seconds."""
    clock = {} if clock is None else clock
    runs = Path(cfg.runs)
    with _timed(clock, "evaluate"):
        model, _ = load_model(runs / "gsv" / "checkpoint.pt")
        no_intra, _ = load_model(runs / "gsv-no-intra" / "checkpoint.pt")
        ev = evaluate_variants(model, EvalConfig(str(runs / "gsv" / "checkpoint.pt"), "synthetic", cfg.data, "val",
                                                 variants=(*PROPAGATIONS, "image"), intervals=cfg.intervals,
                                                 key_scale=cfg.key_scale, image_scales=cfg.image_scales), progress)
        without = evaluate(no_intra, DataSpec("synthetic", cfg.data, "val"), cfg.intervals, cfg.key_scale,
                           progress=progress)
        ev["gsv"]["differences"]["gsv - GSVNet without intra"] = protocol_difference(ev["gsv"], without)
        results = {PROPAGATIONS["gsv"].title: ev["gsv"], f"{PROPAGATIONS['gsv'].title} without intra": without,
                   **{PROPAGATIONS[v].title: ev[v] for v in PROPAGATIONS if v != "gsv"}}
    with _timed(clock, "benchmark"):
        bench = benchmark(model, BenchConfig(size=cfg.bench_size, intervals=cfg.intervals, key_scale=cfg.key_scale,
                                             image_scales=cfg.image_scales, intervals_timed=cfg.bench_repeats),
                          progress=progress)
    return {"accuracy": results, "image_only": ev["image"], "benchmark": bench}
