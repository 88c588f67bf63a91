"""Reports: markdown tables rendered from result files, the tour's page among them.

``gsv tables FOLDER`` renders every result file under FOLDER that ``gsv run`` wrote (:mod:`gsvlib.experiments`).
A result records its provenance only (its experiment's name, the evaluation and its settings, the checkpoint); the
presentation is joined when rendering: the row's text and order and the experiment's description from the experiment
file, the table's title, layout, note and targets from the nearest tables.toml. A title edited there shows on the next
``gsv tables``, with no run. A result whose experiment file now gives its evaluation other settings is refused (it is
no longer that experiment's result), and so are two results that claim one row. The layouts:

    image              one row per experiment: the keyframe net alone by input scale
    intervals          one table per experiment: the protocol (average / minimum mIoU) of each variant by l, the
                       cost of propagation at l = 3 and the table's targets
    keyframe-training  one row per experiment: mIoU by scale on the evaluations the table names (e.g. val, test) and
                       the IoU of the table's classes
    ablation           one row per experiment: GSVNet and warp-only at l = 3 and 5, the targets' values, those met
    flow-error         one line per experiment: the flow net's end-point error against exact flow
    schedules          one table per experiment: adaptive keyframes against fixed intervals at the same FPS
    throughput         one table per benchmark: FPS, keyframe and non-keyframe ms, GFLOPs
    tour               the page of `make tour`: the first row's model by every measure (protocol of every variant,
                       image-only, benchmark, parameters), the other rows' propagations against it, the time each
                       step took, and the plots the tour draws beside the page
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Callable

from gsvlib.bench import throughput_table
from gsvlib.evaluate import EvalConfig
from gsvlib.bootstrap import excludes_zero, paired_difference
from gsvlib.protocol import at_interval, differences, protocol_difference, recorded_matrices
from gsvlib.experiments import Experiment, load, recorded_settings, tables_of
from gsvlib.files import TABLES_MARK, check_file_output, write_text_atomic
from gsvlib.segmenter import PROPAGATIONS
from gsvlib.stages import stage_named


class ResultsError(ValueError):
    """A results folder or file that cannot be rendered; the message names the file and the fix."""


def read_results(folder: str | Path, experiments: str | Path | None = None) -> tuple[list[dict], list[Path]]:
    """Every result file under ``folder`` that belongs in a table, joined with its presentation (:func:`presented`),
    and the JSON files left out because they are no experiment's result or their evaluation names no table.
    ``experiments``: the folder of experiment files (default: an ``experiments`` folder beside ``folder`` or above
    it). An unreadable file, or one that no longer fits its experiment file, is an error that names it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"{folder} does not exist: run the experiments first (`gsv run experiments/...`, or "
                           "`make camvid`)")
    results, left_out = [], []
    for path in sorted(folder.rglob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultsError(f"{path} is not valid JSON ({e}); run its experiment again (`gsv run`) to write it "
                               "anew, or move it out of the folder") from None
        meta = report.get("experiment") if isinstance(report, dict) else None
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in ("name", "evaluation")):
            left_out.append(path)
            continue
        joined = presented(path, meta, experiments)
        if not joined:
            left_out.append(path)
        results += [{**report, "experiment": placed} for placed in joined]
    if not results:
        raise ResultsError(f"{folder} holds no result files of experiments (JSON with an experiment block whose "
                           "evaluation names a table); `gsv run` writes them")
    return results, left_out


def experiment_of(path: Path, meta: dict, experiments: str | Path | None = None) -> Experiment:
    """The experiment file of the result ``path`` (its ``experiment`` block ``meta``): <experiments>/<name>.toml, with
    ``experiments`` given or found beside the result's folder or above it, else the file the result records."""
    folders = [Path(experiments)] if experiments is not None else [p / "experiments" for p in path.parents]
    tried = [f / f"{meta['name']}.toml" for f in folders]
    recorded = meta.get("experiment_file")
    found = next((f for f in (*tried, *([Path(recorded)] if recorded else [])) if f.is_file()), None)
    if found is None:
        raise ResultsError(f"{path} is a result of experiment {meta['name']!r}, whose file is not at "
                           f"{tried[0] if experiments is not None else 'experiments/' + meta['name'] + '.toml'} "
                           f"beside or above it{f' nor at {recorded}' if recorded else ''}: give the folder of "
                           "experiment files (`gsv tables --experiments DIR`), or move the result out")
    return load(found)


def presented(path: Path, meta: dict, experiments: str | Path | None = None) -> list[dict]:
    """The ``experiment`` block ``meta`` of the result ``path`` with what its experiment file now says about showing
    it, once per table it goes in: the experiment's description and legend, the row's text and order, and the table's
    settings (tables.toml); [] when the evaluation names no table. A result whose evaluation the file no longer has,
    or now gives other settings, is refused: it is not that evaluation's result any more."""
    exp = experiment_of(path, meta, experiments)
    spec = exp.evaluation(meta["evaluation"])
    if spec is None:
        raise ResultsError(f"{path} is evaluation {meta['evaluation']!r} of experiment {meta['name']}, which "
                           f"{exp.path} no longer has: move the result out, or restore the evaluation")
    recorded = recorded_settings(meta.get("spec") or {})  # an earlier version's also held its table and row
    now = recorded_settings(spec)
    if recorded != now:
        differ = "; ".join(f"{k}: {recorded.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(recorded) | set(now))
                           if recorded.get(k) != now.get(k))
        raise ResultsError(f"{path} was written for other settings of evaluation {meta['evaluation']!r} than "
                           f"{exp.path} now gives ({differ}): run `gsv run {exp.path}` to evaluate it anew, or undo "
                           "the change")
    joined = []
    for table in tables_of(exp, spec):
        if table.get("layout") not in LAYOUT_RENDERERS:
            raise ResultsError(f"{table['source']}: table {table['id']}: layout must be one of "
                               f"{list(LAYOUT_RENDERERS)}, got {table.get('layout')!r}")
        row, order = spec.get("row", exp.report.get("row", exp.description)), exp.report.get("order")
        joined.append({**meta, "description": exp.description, "legend": exp.legend, "table": table,
                       "row": row.get(table["id"], exp.description) if isinstance(row, dict) else row,
                       "order": order.get(table["id"]) if isinstance(order, dict) else order, "file": path})
    return joined


def render(results: list[dict], only: list[str] | None = None) -> str:
    """The markdown of result files (:func:`read_results`): their tables (``only`` those named) in the order of their
    ``order``, each in its layout, rows in the order their experiments give (then by name)."""
    tables = {r["experiment"]["table"]["id"]: r["experiment"]["table"] for r in results}
    missing = sorted(set(only or []) - set(tables))
    if missing:
        raise ResultsError(f"no result goes in the tables {missing}; the results render the tables {sorted(tables)}")
    lines = [f"{TABLES_MARK} from result files: change the experiment files (experiments/) and run "
             "`gsv run` and `gsv tables` again, rather than this page. -->", ""]
    for spec in sorted(tables.values(), key=lambda t: _order(t.get("order"))):
        if only is None or spec["id"] in only:
            lines += LAYOUT_RENDERERS[spec["layout"]](spec, table_rows(results, spec["id"]))
    return "\n".join(lines)


def table_rows(results: list[dict], table: str) -> list[tuple[dict, dict]]:
    """The rows of ``table`` (:func:`_by_experiment`), in the order their experiments give, then by name."""
    rows = [r for r in results if r["experiment"]["table"]["id"] == table]
    rows.sort(key=lambda r: (_order(r["experiment"]["order"]), r["experiment"]["name"]))
    return _by_experiment(rows)


def _order(value) -> float:
    return math.inf if value is None else float(value)


def _by_experiment(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(experiment block, {evaluation name: report}) per experiment, in the rows' order. The repetitions of an
    evaluation under other seeds (``gsv run --seeds``) go with its report, as ``seeds`` {seed: report}."""
    out: dict[str, tuple[dict, dict]] = {}
    for r in rows:
        meta = r["experiment"]
        if "seed" not in meta:
            reports = out.setdefault(meta["name"], ({**meta, "seeds": {}}, {}))[1]
            _claim(reports, meta["evaluation"], r, f"evaluation {meta['evaluation']!r} of {meta['name']}")
    for r in rows:
        meta = r["experiment"]
        if "seed" in meta:
            if meta["evaluation"] not in out.get(meta["name"], ({}, {}))[1]:
                raise ResultsError(f"{meta['file']} repeats experiment {meta['name']} under seed {meta['seed']}, but "
                                   "the experiment's own result is missing: run it (`gsv run`) or move the file")
            seeds = out[meta["name"]][0]["seeds"].setdefault(meta["evaluation"], {})
            _claim(seeds, meta["seed"], r, f"evaluation {meta['evaluation']!r} of {meta['name']} under seed "
                                           f"{meta['seed']}")
    texts: dict[str, dict] = {}
    for meta, reports in out.values():
        _claim(texts, meta["row"], _first(reports), f"the row {meta['row']!r} of table {meta['table']['id']}")
    return list(out.values())


def _claim(place: dict, key, result: dict, what: str) -> None:
    """Put ``result`` at ``place[key]``, refusing a second result there: two files claim one row."""
    if key in place:
        raise ResultsError(f"{place[key]['experiment']['file']} and {result['experiment']['file']} are both "
                           f"{what}: a row shows one result; move one of them out of the folder")
    place[key] = result



def spread(values: list[float], sign: str = "") -> str:
    """Values of one quantity across seeds: "68.4 sd 0.3 (68.1 to 68.8)"; "" for none."""
    if not values:
        return ""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{statistics.mean(values):{sign}.1f} sd {sd:.1f} ({min(values):{sign}.1f} to "
            f"{max(values):{sign}.1f})")


def seed_reports(meta: dict, reports: dict) -> list[dict]:
    """The repetitions under other seeds of the evaluation that a table row shows (its first), in seed order."""
    seeds = (meta.get("seeds") or {}).get(next(iter(reports)), {})
    return [seeds[k] for k in sorted(seeds)]


def runs_by_seed(meta: dict, reports: dict) -> dict:
    """Every run of a row's first evaluation by its training seed: the experiment's own result under the seed it
    trained with, then its repetitions (``gsv run --seeds``); a repetition under the own result's seed is the same
    run again, and counts once. An own result that records no seed (exported weights) stands alone, or not at all
    where repetitions exist (it is one of them, or another draw: either way not a seed of its own)."""
    own, repeated = _first(reports), seed_reports(meta, reports)
    seed = ((own.get("experiment") or {}).get("trained") or {}).get("seed")
    runs = {} if seed is None and repeated else {"?" if seed is None else seed: own}
    for rep in repeated:
        runs.setdefault(rep["experiment"]["seed"], rep)
    return runs


SEEDS_TEXT = ("{n} runs of the same experiment under seeds {seeds}, with the same keyframe net and starting points; "
              "mean, sample sd and range across them")


def seed_line(meta: dict, reports: dict, ls: tuple[str, ...] = ("3", "5"), preamble: bool = True,
              spec: dict | None = None) -> str:
    """One sentence on the spread across seeds of a protocol row: the baseline's average mIoU at ``ls`` and its
    margin over the propagation it is compared with (:func:`compared`; ``preamble``: led by what the runs are); ""
    when the row was not repeated."""
    if not seed_reports(meta, reports):
        return ""
    by_seed = runs_by_seed(meta, reports)
    runs = list(by_seed.values())
    base, against = compared(runs[0], spec)
    seeds = ", ".join(map(str, by_seed))
    title = PROPAGATIONS[base].title
    parts = [f"{title} l={l} avg {spread([r[base]['intervals'][l]['avg'] for r in runs])}" for l in ls
             if all(l in r[base]["intervals"] for r in runs)]
    margins = {l: [r[base]["intervals"][l]["avg"] - r[against]["intervals"][l]["avg"] for r in runs] for l in ls
               if against and all(against in r and l in r[base]["intervals"] for r in runs)}
    parts += [f"{title} - {PROPAGATIONS[against].title} l={l} avg {spread(m, '+')}" for l, m in margins.items()]
    lead = f"Trained again ({SEEDS_TEXT.format(n=len(runs), seeds=seeds)}): " if preamble else f"seeds {seeds}: "
    return lead + "; ".join(parts) + "."


def write_tables(folder: str | Path, out: str | Path | None = None, experiments: str | Path | None = None,
                 only: list[str] | None = None) -> tuple[str, Path, list[Path]]:
    """Render ``folder``'s results, joined with their experiment files under ``experiments`` (:func:`read_results`),
    into ``out`` (default ``folder/results.md``), ``only`` the tables named (default all): (markdown, where it went,
    the JSON files left out)."""
    out = Path(out) if out is not None else Path(folder) / "results.md"
    check_file_output(out, kind="tables")
    results, left_out = read_results(folder, experiments)
    text = render(results, only)
    write_text_atomic(out, text)
    return text, out, left_out


def interval_table(methods: dict[str, dict], ls: list[str], flat: dict[str, float] | None = None) -> list[str]:
    """Markdown table of the protocol: one row per method ({"l": {"avg", "min"}} by interval), "avg / min" per l;
    ``flat`` rows repeat one mIoU in every column (a method without keyframe interval, e.g. image-only)."""
    lines = ["| method | " + " | ".join(f"l={l}" for l in ls) + " |", "|---|" + "---:|" * len(ls)]
    for name, iv in methods.items():
        lines.append(f"| {name} | " + " | ".join(f"{with_ci(iv[l]['avg'], iv[l].get('avg_ci'))} / "
                                                 f"{with_ci(iv[l]['min'], iv[l].get('min_ci'))}" for l in ls) + " |")
    for name, miou in (flat or {}).items():
        lines.append(f"| {name} | " + " | ".join(f"{miou:.1f}" for _ in ls) + " |")
    return lines


def with_ci(value: float, ci: list | None, sign: str = "") -> str:
    """A value with its 95 % bootstrap interval as "63.7±1.1" (± the interval's larger side), or alone where the
    report has none."""
    return f"{value:{sign}.1f}" + (f"±{max(value - ci[0], ci[1] - value):.1f}" if ci else "")


def difference_text(d: dict) -> str:
    """A paired difference {"diff", "ci"} as a sentence's words: its interval, and "no difference shown" where the
    interval contains 0."""
    verdict = "" if excludes_zero(d["ci"]) else " (contains 0: no difference shown)"
    return f"{d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}]{verdict}"


def paired_lines(gsv: dict, note: str = "") -> list[str]:
    """The paired differences a GSVNet protocol report holds (``differences``), one line per pair: the average
    mIoU's difference at each l with its interval; [] for a report from before they were kept."""
    if not gsv.get("differences"):
        return []
    b = gsv["bootstrap"]
    lines = ["", f"Paired differences of the average mIoU, points [{b['level']:.0%} interval] ({b['resamples']} "
                 f"bootstrap resamples of the {b['frames']} {b['unit']}s, seed {b['seed']}; ± in the tables: the "
                 f"larger side of each mIoU's interval).{' ' + note if note else ''}", ""]
    return lines + [f"- {_pair_title(pair)}: " + "; ".join(f"l={l} {difference_text(d['avg'])}" for l, d in by_l.items())
                    for pair, by_l in gsv["differences"].items()]


def _pair_title(pair: str) -> str:
    """"gsv - warp" as a reader reads it: "GSVNet - warp only"."""
    return " - ".join(PROPAGATIONS[p].title if p in PROPAGATIONS else p for p in pair.split(" - "))


def cost_of_propagation(prop: dict, l: str = "3", base: str | None = None) -> dict:
    """Average mIoU at interval ``l`` of each propagation, the keyframe net's on the same frames (l = 1), and ``gap``:
    how much ``base`` (the result's baseline, :func:`compared`) loses against running the keyframe net on every frame
    (negative: it gains)."""
    base = base or compared(prop)[0]
    avg = {v: prop[v]["intervals"][l]["avg"] for v in PROPAGATIONS if v in prop}
    keyframe = prop[base]["intervals"]["1"]["avg"]
    return {"keyframe": keyframe, **avg, "gap": round(keyframe - avg[base], 2)}


def target_value(target: dict, rep: dict) -> float:
    """The value of a table's target in a protocol report: ``value`` minus ``minus``, each [variant, l, "avg" or
    "min"], e.g. GSVNet at l = 3 minus warp-only at l = 3."""
    def pick(ref):
        variant, l, stat = ref
        return rep[variant]["intervals"][str(l)][stat]

    return pick(target["value"]) - (pick(target["minus"]) if target.get("minus") else 0.0)


def _scores(target: dict, rep: dict) -> bool:
    """Whether ``rep`` scored every variant ``target`` reads."""
    return all(ref[0] in rep for ref in (target["value"], target.get("minus")) if ref)


def target_met(target: dict, rep: dict) -> bool:
    """Met when the value is at least ``least`` (the figures carry 2 decimals: a bound reached exactly is met) and,
    for a target with ``interval_above``, its paired interval lies above that bound."""
    if "interval_above" in target:
        ci = target_interval(target, rep)
        if ci is None or ci[0] <= target["interval_above"]:
            return False
    return target_value(target, rep) >= target["least"] - 1e-9


def target_interval(target: dict, rep: dict) -> list[float] | None:
    """The paired bootstrap interval of a target that is a difference of two variants (``minus``) on the same
    frames, from the per-frame matrices of ``rep``; None where the report has none (written before they were kept)."""
    if not target.get("minus") or not all("frames" in rep[ref[0]] for ref in (target["value"], target["minus"])):
        return None

    def frames(ref):
        variant, l, stat = ref
        return at_interval(recorded_matrices(rep[variant]["frames"]), l, stat)

    return paired_difference(frames(target["value"]), frames(target["minus"]))["ci"]


def target_lines(targets: list[dict], rep: dict) -> str:
    """Each target with its value in ``rep`` (and its interval where the report has per-frame matrices) and whether
    it is met."""
    return "; ".join(f"{t['text']} {with_ci(target_value(t, rep), target_interval(t, rep), '+')} (target >= "
                     f"{t['least']:+.1f}: {'met' if target_met(t, rep) else 'missed'})" for t in targets)


def targets_met(targets: list[dict], rep: dict) -> str:
    """The numbers of the targets that a protocol report meets, e.g. "1, 3", or "none"."""
    return ", ".join(str(i) for i, t in enumerate(targets, 1) if target_met(t, rep)) or "none"


def fixed_at(schedules: dict, fps: float) -> float | None:
    """The mIoU of the fixed-interval curve at ``fps``, interpolated linearly between its neighbouring l (None
    outside the curve's range)."""
    curve = sorted((p["fps"], p["miou"]) for p in schedules["fixed"].values())
    for (f0, m0), (f1, m1) in zip(curve, curve[1:]):
        if f0 <= fps <= f1:
            return m0 if f1 == f0 else m0 + (m1 - m0) * (fps - f0) / (f1 - f0)
    return None


def schedule_markdown(schedules: dict) -> str:
    """The adaptive-keyframe comparison of :func:`gsvlib.schedules.keyframe_schedules` as a markdown table: each fixed
    l and each policy point with its keyframe share, mIoU, modelled FPS and, for a policy, the gain over the fixed
    intervals at the same FPS."""
    t = schedules["timing_ms"]
    lines = [f"{schedules['scored']} scored frames of {schedules['frames']} streamed, keyframe scale "
             f"{schedules['key_scale']:g}; FPS modelled from this run's median step times (keyframe "
             f"{t['keyframe']:.0f} ms, non-keyframe {t['non-keyframe']:.0f} ms, labels included; a forced keyframe "
             "costs both).", "",
             "| keyframes | threshold | keyframe share | mIoU | FPS | mIoU vs fixed l at that FPS |",
             "|---|---:|---:|---:|---:|---:|"]
    for l, p in schedules["fixed"].items():
        lines.append(f"| fixed l={l} |  | {p['keyframe_share']:.2f} | {with_ci(p['miou'], p.get('ci'))} | "
                     f"{p['fps']:.1f} |  |")
    for signal, policy in schedules["policies"].items():
        for p in policy["points"]:
            if p.get("vs_fixed"):
                gain = difference_text(p["vs_fixed"])
            else:  # a report from before the intervals: the point values alone
                ref = fixed_at(schedules, p["fps"])
                gain = f"{p['miou'] - ref:+.1f}" if ref is not None else "n/a"
            lines.append(f"| {signal}, l <= {policy['max_interval']} | {p['threshold']:.3g} ({p['factor']:g} x "
                         f"median) | {p['keyframe_share']:.2f} | {with_ci(p['miou'], p.get('ci'))} | {p['fps']:.1f} | "
                         f"{gain} |")
    if schedules.get("bootstrap"):
        b = schedules["bootstrap"]
        lines += ["", f"± and [brackets]: {b['level']:.0%} intervals from {b['resamples']} bootstrap resamples of the "
                      f"{b['frames']} scored frames (seed {b['seed']}), the same resamples for every row, so a "
                      "policy's difference from the fixed curve is paired."]
    return "\n".join(lines) + "\n"


def _heading(spec: dict, details: str) -> list[str]:
    """A table's heading, its details in brackets, and its note as a paragraph under it."""
    return [f"### {spec['title']} ({details})", "", *([spec["note"], ""] if spec.get("note") else [])]


def _first(reports: dict) -> dict:
    return next(iter(reports.values()))


def compared(result: dict, spec: dict | None = None) -> tuple[str, str | None]:
    """The two propagations a protocol result's table sets side by side: the result's baseline (EvalConfig.baseline,
    GSVNet unless the experiment says otherwise) and the table's ``against`` (default: the first other registered
    propagation the result scored); None where it scored no other."""
    base = ((result.get("experiment") or {}).get("config") or {}).get("baseline") or EvalConfig.baseline
    against = (spec or {}).get("against") or next((v for v in PROPAGATIONS if v != base and v in result), None)
    return base, against


def image_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """The keyframe net alone: one row per experiment, mIoU by input scale."""
    first = _first(rows[0][1])["image"]
    scales = list(first)
    frames = _first(first).get("frames", "?")
    classes = len(_first(first).get("per_class", {})) or "?"
    lines = _heading(spec, f"{frames} frames, mIoU %, {classes} classes")
    lines += [f"| {spec.get('column', 'experiment')} | " + " | ".join(f"input x{s}" for s in scales) + " |",
              "|---|" + "---:|" * len(scales)]
    for meta, reports in rows:
        image = _first(reports)["image"]
        lines.append(f"| {meta['row']} | " + " | ".join(with_ci(image[s]["miou"], image[s].get("ci")) for s in scales)
                     + " |")
    return lines + [""]


def intervals_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """The protocol by l for each experiment: every propagation of its report against the keyframe net on every
    frame (l = 1), the cost of propagation at l = 3 and the table's targets."""
    lines = []
    for meta, reports in rows:
        prop = _first(reports)
        base, _ = compared(prop, spec)
        g = prop[base]
        a, b = g.get("span", (0, 1))
        lines += _heading(spec, f"fraction {a:.3g} to {b:g} of the {g['split']}/ run in time, {g['snippets']} scored "
                                f"frames; keyframe input x{g['key_scale']}; mIoU % average / minimum")
        methods = {PROPAGATIONS[v].title: prop[v]["intervals"] for v in PROPAGATIONS if v in prop}
        keyframe = {"keyframe net on every frame": g["intervals"]["1"]["avg"]}
        lines += interval_table(methods, list(g["intervals"]), keyframe)
        if "3" in g["intervals"]:
            c = cost_of_propagation(prop, base=base)
            others = ", ".join(f"{PROPAGATIONS[v].title} {c[v]:.1f}" for v in PROPAGATIONS if v in c and v != base)
            lines += ["", f"At l=3: {PROPAGATIONS[base].title} {c[base]:.1f} against {c['keyframe']:.1f} for its "
                          f"keyframe net on every frame (a loss of {c['gap']:.1f}; negative: a gain); {others}."]
        lines += paired_lines(g, "The frames are consecutive frames of one run, not independent draws: these "
                                 "intervals measure how much the result rests on single frames, and understate what "
                                 "another run or video would give.")
        if spec.get("targets") and "5" in g["intervals"] and all(_scores(t, prop) for t in spec["targets"]):
            lines += ["", f"Targets: {target_lines(spec['targets'], prop)}."]
        if seed_line(meta, reports, spec=spec):
            lines += ["", seed_line(meta, reports, spec=spec)]
        lines.append("")
    return lines


def keyframe_training_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """Keyframe nets trained otherwise: one row per experiment, mIoU by input scale on each evaluation the table
    names (``columns``, e.g. val and test) and the IoU of the table's ``classes`` on the last of them at ``scale``."""
    columns, classes, scale = spec["columns"], spec.get("classes", []), spec.get("scale", "0.75")
    for meta, reports in rows:
        missing = [c for c in columns if c not in reports]
        if missing:
            raise ResultsError(f"{meta['file'].parent}: experiment {meta['name']} has no {missing} results for table "
                               f"{spec['id']} (it has {sorted(reports)}); run it again with `gsv run`")
    first = rows[0][1]
    scales = list(first[columns[-1]]["image"])
    frames = " and ".join(f"{_first(first[c]['image']).get('frames', '?')} frames of {c}/" for c in columns)
    lines = _heading(spec, f"mIoU % at input x{' / '.join(scales)} on {frames}; IoU % of "
                           f"{', '.join(classes) or 'no class'} on {columns[-1]}/ at x{scale}")
    lines += [f"| {spec.get('column', 'experiment')} | " + " | ".join(f"{c}/" for c in columns) + " | "
              + " | ".join(classes) + " |", "|---|" + "---:|" * (len(columns) + len(classes))]
    for meta, reports in rows:
        miou = [" / ".join(f"{reports[c]['image'][s]['miou']:.1f}" for s in scales) for c in columns]
        per_class = reports[columns[-1]]["image"][scale]["per_class"]
        lines.append(f"| {meta['row']} | " + " | ".join(miou) + " | "
                     + " | ".join(f"{per_class[c]:.1f}" for c in classes) + " |")
    return lines + [""]


def ablation_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """Propagations trained otherwise: one row per experiment with its baseline (GSVNet) and the propagation it is
    compared with (:func:`compared`: warp-only unless the table says ``against``) at l = 3 and 5, the values of the
    table's targets that have a ``column``, and the targets met."""
    targets = spec.get("targets") or []
    base, against = compared(_first(rows[0][1]), spec)
    if against is None:
        raise ResultsError(f"{spec['source']}: table {spec['id']} sets {base} beside another propagation, but "
                           f"{rows[0][0]['file']} scored no other: add one to its [[eval]] variants, or give the table "
                           "an `against` it scored")
    g = _first(rows[0][1])[base]
    a, b = g.get("span", (0, 1))
    margins = [t for t in targets if t.get("column")]
    lines = _heading(spec, f"fraction {a:.3g} to {b:g} of the {g['split']}/ run, {g['snippets']} scored frames; "
                           f"keyframe input x{g.get('key_scale', '?')}; keyframe net on every frame "
                           f"{g['intervals']['1']['avg']:.1f}; mIoU % average / minimum")
    other = PROPAGATIONS[against].title
    lines += [f"| {spec.get('column', 'experiment')} | l=3 | l=5 | {other}, l=3 | {other}, l=5 |"
              + "".join(f" {t['column']} |" for t in margins)
              + (" targets met |" if targets else ""), "|---|" + "---:|" * (4 + len(margins) + bool(targets))]
    for meta, reports in rows:
        rep = _first(reports)
        cells = [f"{iv[l]['avg']:.1f} / {iv[l]['min']:.1f}" for iv in (rep[base]["intervals"], rep[against]["intervals"])
                 for l in ("3", "5")]
        cells += [with_ci(target_value(t, rep), target_interval(t, rep), "+") for t in margins] + ([targets_met(targets, rep)] if targets else [])
        lines.append(f"| {meta['row']} | " + " | ".join(cells) + " |")
    repeated = [(meta, reports) for meta, reports in rows if seed_line(meta, reports, spec=spec)]
    if repeated:
        lines += ["", "Rows trained again (each: runs of the same experiment under the seeds named, with the same "
                      "keyframe net and starting points; mean, sample sd and range across them):", ""]
        lines += [f"- {meta['row']}, {seed_line(meta, reports, preamble=False, spec=spec)}" for meta, reports in repeated]
    if spec.get("kept_of"):
        lines += kept_lines(spec, rows, base, against)
    if targets:
        lines += ["", "Targets: " + "; ".join(f"{i} {t['text']} >= {t['least']:+.1f}"
                                              for i, t in enumerate(targets, 1)) + "."]
    return lines + [""]


def kept_lines(spec: dict, rows: list[tuple[dict, dict]], base: str, against: str) -> list[str]:
    """How much of the lead of ``base`` over ``against`` that the table's ``kept_of`` experiment holds each other row
    keeps, at l = 3 and 5, each lead the mean over a row's runs (:func:`runs_by_seed`); nothing where that experiment
    has no result among the rows."""
    def leads(meta, reports):
        runs = runs_by_seed(meta, reports).values()
        return {l: statistics.mean(r[base]["intervals"][l]["avg"] - r[against]["intervals"][l]["avg"] for r in runs)
                for l in ("3", "5")}

    reference = next(((m, r) for m, r in rows if m["name"] == spec["kept_of"]), None)
    if reference is None:  # rendered from results without it (a folder of one's own runs): nothing to measure against
        return []
    ref = leads(*reference)
    other = PROPAGATIONS[against].title
    lines = ["", f"Of {reference[0]['row']}'s lead over {other} ({ref['3']:+.2f} at l=3, {ref['5']:+.2f} at l=5, mean "
                 "over its runs), each row keeps:", ""]
    for meta, reports in rows:
        if meta is reference[0]:
            continue
        mine = leads(meta, reports)
        lines.append(f"- {meta['row']}: " + ", ".join(
            f"{100 * mine[l] / ref[l]:.0f} % at l={l} ({mine[l]:+.2f})" if ref[l] > 0 else f"{mine[l]:+.2f} at l={l}"
            for l in ("3", "5")))
    return lines


def seeds_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """Recipes x seeds: one row per run (the experiment's own result, then its repetitions under other seeds), with
    the baseline's average mIoU at l = 3 and 5, each of the table's targets as a paired difference with its interval
    [low, high], and the targets the run meets; then a line per recipe with the targets every seed meets."""
    targets = spec.get("targets") or []
    g = _first(rows[0][1])[compared(_first(rows[0][1]), spec)[0]]
    a, b = g.get("span", (0, 1))
    lines = _heading(spec, f"fraction {a:.3g} to {b:g} of the {g['split']}/ run, {g['snippets']} scored frames; "
                           f"keyframe input x{g.get('key_scale', '?')}; average mIoU %")
    lines += [f"| {spec.get('column', 'experiment')} | seed | keyframe net | l=3 | l=5 |"
              + "".join(f" {i}. {t['text']} |" for i, t in enumerate(targets, 1)) + " targets met |",
              "|---|---:|---:|---:|---:|" + "---:|" * (len(targets) + 1)]
    every = []
    for meta, reports in rows:
        runs = runs_by_seed(meta, reports)
        base = compared(_first(reports), spec)[0]
        for seed, rep in runs.items():
            iv = rep[base]["intervals"]
            cells = [str(seed), f"{iv['1']['avg']:.1f}", f"{iv['3']['avg']:.1f}", f"{iv['5']['avg']:.1f}"]
            for t in targets:
                ci = target_interval(t, rep)
                cells.append(f"{target_value(t, rep):+.1f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""))
            lines.append(f"| {meta['row']} | " + " | ".join(cells) + f" | {targets_met(targets, rep)} |")
        met = [i for i, t in enumerate(targets, 1) if all(target_met(t, rep) for rep in runs.values())]
        every.append(f"- {meta['row']} ({len(runs)} run{'s' * (len(runs) > 1)}): "
                     + (", ".join(map(str, met)) if met else "none"))
    lines += ["", "Targets met by every seed of a recipe:", "", *every]
    if targets:
        lines += ["", "Targets: " + "; ".join(
            f"{i} {t['text']} >= {t['least']:+.1f}" + (f", interval above {t['interval_above']:+.1f}"
                                                       if "interval_above" in t else "")
            for i, t in enumerate(targets, 1)) + "."]
    return lines + [""]


def pareto_points(protocol: dict, image: dict, bench: dict) -> list[dict]:
    """The accuracy against throughput of a propagation's protocol report (``protocol``: GSVNet's, by l) and of the
    keyframe net alone at each input scale (``image``), priced by one benchmark run (``bench``): {"name", "label",
    "fps", "miou", "ci"} per point, for :func:`pareto_layout` and :func:`gsvlib.viz.accuracy_throughput`."""
    gsv = [{"name": "GSVNet", "label": f"l={l}", "fps": bench["gsvnet"][l]["fps"], "miou": iv["avg"],
            "ci": iv.get("avg_ci")} for l, iv in protocol["intervals"].items() if l in bench["gsvnet"]]
    alone = [{"name": "image-only", "label": f"x{s}", "fps": bench["image_only"][s]["fps"], "miou": r["miou"],
              "ci": r.get("ci")} for s, r in image.items() if s in bench["image_only"]]
    return gsv + alone


def pareto_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """GSVNet by l against the keyframe net alone by input scale, each point's mIoU on the same frames and its FPS
    from one benchmark run (:func:`pareto_points`); per scale, whether GSVNet at equal or higher FPS scores higher."""
    meta, reports = rows[0]
    result = next((r for r in reports.values() if _protocol_of({"": r})), None)
    image = next((r["image"] for r in reports.values() if "image" in r), None)
    bench = next((r for r in reports.values() if "gsvnet" in r), None)
    if result is None or image is None or bench is None:
        raise ResultsError(f"table {spec['id']} sets a protocol, an image-only evaluation and a benchmark side by side; "
                           f"{meta['name']} gave {sorted(reports)}: add the missing one to the table")
    g = result[compared(result, spec)[0]]
    points = pareto_points(g, image, bench)
    h, w = bench["size"]
    lines = _heading(spec, f"{w}x{h}, {bench['device']}, {bench['precision']} {bench.get('backend', 'eager')}, one "
                           f"benchmark run; mIoU on the {g['snippets']} frames of {g['split']}/ that the protocol "
                           f"scores, GSVNet's keyframes at x{g.get('key_scale', '?')}")
    lines += ["| method | FPS | average mIoU % |", "|---|---:|---:|"]
    lines += [f"| {p['name']} {p['label']} | {p['fps']:.1f} | {with_ci(p['miou'], p['ci'])} |" for p in points]
    beaten = 0
    lines += ["", "At each input scale of the keyframe net alone, the best GSVNet point at equal or higher FPS:", ""]
    for alone in (p for p in points if p["name"] == "image-only"):
        faster = [p for p in points if p["name"] == "GSVNet" and p["fps"] >= alone["fps"]]
        best = max(faster, key=lambda p: p["miou"], default=None)
        if best is None:
            lines.append(f"- image-only {alone['label']} ({alone['fps']:.1f} FPS, {alone['miou']:.1f}): no GSVNet point "
                         "is as fast")
            continue
        beaten += best["miou"] > alone["miou"]
        lines.append(f"- image-only {alone['label']} ({alone['fps']:.1f} FPS, {alone['miou']:.1f}): GSVNet "
                     f"{best['label']} ({best['fps']:.1f} FPS) scores {best['miou']:.1f}, "
                     f"{best['miou'] - alone['miou']:+.2f}: " + ("beaten" if best["miou"] > alone["miou"] else
                                                                  "not beaten"))
    scales = sum(p["name"] == "image-only" for p in points)
    return lines + ["", f"GSVNet beats the keyframe net alone at equal or higher FPS at {beaten} of its {scales} input "
                        "scales.", ""]


PRECISION_TOLERANCE = 0.5  # mIoU points from eager fp32 within which a runtime counts as accurate


def precision_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """Each runtime (EvalConfig.runtime) against eager fp32 on the same frames: the keyframe net alone (an image-only
    evaluation) and GSVNet at l = 3 and 5 (a protocol), each with its paired difference; then which runtimes stay
    within ``tolerance`` (default PRECISION_TOLERANCE) of fp32 on every figure."""
    runtimes: dict[str, dict] = {}
    splits = {}  # kind -> the split it scored
    for meta, reports in rows:
        for result in reports.values():
            config = result["experiment"].get("config") or {}
            runtime = config.get("runtime", "eager")
            kind = "image" if "image" in result else "protocol"
            splits[kind] = config.get("split", "?")
            if kind in runtimes.setdefault(runtime, {}):
                raise ResultsError(f"table {spec['id']} holds two {kind} evaluations of runtime {runtime} ({meta['name']})")
            runtimes[runtime][kind] = result["image"] if kind == "image" else result[compared(result)[0]]
    base = runtimes.pop("eager", None)
    if base is None or set(base) != {"image", "protocol"} or any(set(r) != set(base) for r in runtimes.values()):
        raise ResultsError(f"table {spec['id']} sets each runtime's image-only and protocol evaluations beside eager "
                           f"fp32's; it has {({k: sorted(v) for k, v in {'eager': base or {}, **runtimes}.items()})}")
    scale = next(iter(base["image"]))
    image, g = base["image"][scale], base["protocol"]
    tolerance = spec.get("tolerance", PRECISION_TOLERANCE)
    lines = _heading(spec, f"the keyframe net alone on the {image['frames']} frames of {splits['image']}/ "
                           f"at x{scale}; GSVNet on the {g['snippets']} frames of {g['split']}/ that the protocol scores,"
                           f" keyframes at x{g['key_scale']}; mIoU %, paired differences [95 % interval]")
    lines += ["| runtime | keyframe net alone | - eager fp32 | GSVNet l=3 | - eager fp32 | GSVNet l=5 | - eager fp32 |",
              "|---|---:|---:|---:|---:|---:|---:|",
              f"| eager fp32 | {with_ci(image['miou'], image.get('ci'))} | | "
              f"{with_ci(g['intervals']['3']['avg'], g['intervals']['3'].get('avg_ci'))} | | "
              f"{with_ci(g['intervals']['5']['avg'], g['intervals']['5'].get('avg_ci'))} | |"]
    accurate = []
    for runtime, r in runtimes.items():
        other = r["image"][scale]
        diffs = [paired_difference(recorded_matrices(other["scored"])[:, 0], recorded_matrices(image["scored"])[:, 0]),
                 *(protocol_difference(r["protocol"], g)[l]["avg"] for l in ("3", "5"))]
        values = [other["miou"], r["protocol"]["intervals"]["3"]["avg"], r["protocol"]["intervals"]["5"]["avg"]]
        lines.append(f"| {runtime} | " + " | ".join(f"{v:.1f} | {d['diff']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]"
                                                   for v, d in zip(values, diffs)) + " |")
        if all(abs(d["diff"]) <= tolerance for d in diffs):
            accurate.append(runtime)
    return lines + ["", f"Within {tolerance} of eager fp32 on every figure: {', '.join(accurate) or 'none'}.", ""]


def flow_error_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """The flow net's end-point error: one line per experiment (no heading: a note under the table before it)."""
    lines = []
    for meta, reports in rows:
        f = _first(reports)["flow"]
        lines += [f"{meta['row']}: end-point error {f['epe']:.2f} px of the 1/8 grid on its {f['pairs']} validation "
                  f"pairs (predicting no motion: {f['zero_flow_epe']:.2f}).", ""]
    return lines


def schedules_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """Adaptive keyframes against fixed intervals: one table per experiment (:func:`schedule_markdown`)."""
    lines = []
    for meta, reports in rows:
        lines += [f"### {spec['title']} ({meta['row']})", "", schedule_markdown(_first(reports))]
    return lines


def throughput_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """Throughput: one table per benchmark, smaller inputs first."""
    benches = sorted((b for _, reports in rows for b in reports.values()), key=lambda b: b["size"][0] * b["size"][1])
    lines = []
    for b in benches:
        lines += [f"### {spec['title']} at {b['size'][1]}x{b['size'][0]} (W x H), batch 1, {b['precision']}, "
                  f"{b['device']}, torch {b['torch']}, keyframe input x{b['key_scale']}", "", *throughput_table(b), ""]
    return lines


ANOTHER_CPU = (
    "On another CPU these numbers move: its vector kernels (AVX2, AVX-512) add floats in another order, and training "
    "drifts from there. The reference report (figures/results.md) was made on a 2-core AVX2 CPU, where a fresh `make "
    "tour` reproduces every digit (again on 2026-12-06, 750 s); on an AVX-512 CPU the keyframe net came out at 68.4 "
    "instead of 69.4. Expect a run elsewhere to differ by about what another seed moves: GSVNet's average mIoU has sd "
    "1.3 at l=3 and 1.7 at l=5 across seeds 0-2, while its lead over warping moves by 0.3 or less "
    "(docs/results/synthetic.md).")


def tour_report(rows: list[tuple[dict, dict]]) -> dict:
    """The numbers of the tour's page from its table's rows (:func:`_by_experiment`): the first row is the model
    shown (its protocol, image-only and benchmark results), each other row a propagation trained otherwise (its
    protocol). The plots (:func:`gsvlib.tour.report_figures`) read the same dict."""
    (meta, reports), others = rows[0], rows[1:]
    protocol = _protocol_of(reports)
    if not protocol:
        raise ResultsError(f"table {meta['table']['id']}: its first row, {meta['name']}, has no protocol result (an "
                           f"[[eval]] of propagations) among {sorted(reports)}: run `gsv run` on its experiment file")
    config = next(r["experiment"]["config"] for r in reports.values() if _protocol_of({"": r}))  # the protocol's
    base = config["baseline"]
    image = next((r["image"] for r in reports.values() if "image" in r), {})
    bench = next((r for r in reports.values() if "gsvnet" in r), None)
    title = PROPAGATIONS[base].title
    variants = {f"{title} ({m['legend'] or m['name']})": _protocol_of(r)[base] for m, r in others}
    accuracy = {title: protocol[base], **variants,
                **{PROPAGATIONS[v].title: protocol[v] for v in PROPAGATIONS if v != base and v in protocol}}
    pairs = {**differences({**protocol, "image": image}, base),
             **{f"{base} - {name}": protocol_difference(protocol[base], other) for name, other in variants.items()}}
    starts = (meta.get("trained") or {}).get("starts", {})
    training = {**{f"train {stage_named(record['stage'])} ({start} of {meta['name']})": record for start, record in starts.items()},
                **{f"train {m['name']}": m.get("trained") or {} for m, _ in rows}}
    seconds = {step: record.get("seconds") for step, record in training.items()}
    seconds["evaluate"] = _total([r.get("seconds") for _, rs in rows for r in rs.values() if r is not bench])
    seconds["benchmark"] = None if bench is None else bench.get("seconds")
    return {"model": meta, "config": config, "accuracy": accuracy, "image_only": image, "benchmark": bench, "differences": pairs,
            "training": training, "seconds": seconds}


def _protocol_of(reports: dict) -> dict:
    """The protocol reports by variant ({"gsv": {"intervals": ...}, "warp": ...}) in a row's result files."""
    return {k: v for r in reports.values() for k, v in r.items() if isinstance(v, dict) and "intervals" in v}


def _total(values: list) -> float | None:
    """The sum of seconds, None when one is unknown (a result from before they were recorded)."""
    return None if any(v is None for v in values) else round(sum(values), 1)


def tour_layout(spec: dict, rows: list[tuple[dict, dict]]) -> list[str]:
    """The tour's page (:func:`tour_report`): accuracy of every method by l, the minimum mIoU of each way of training
    the propagation (the paper's Table 4), paired differences, throughput and FLOPs, parameters, the time each step
    took, and links to the plots the tour draws beside the page."""
    r = tour_report(rows)
    acc, img, b, cfg = r["accuracy"], r["image_only"], r["benchmark"], r["config"]
    trained = r["model"].get("trained") or {}
    ls = [str(l) for l in cfg["intervals"]]
    protocol = next(iter(acc.values()))
    lines = [f"## {spec['title']}", ""]
    runs = [f"stage {stage_named(record['stage'])} trained for {record['iterations']} iterations (batch {record['batch_size']}, "
            f"seed {record['seed']})" for record in (*trained.get("starts", {}).values(), trained) if record]
    lines += [f"On {cfg['dataset']}: {'; '.join(runs)}." if runs else "", spec.get("note", ""),
              f"Keyframes at {cfg['key_scale']} scale. Scored at full resolution on the annotated frame of each of the "
              f"{protocol['snippets']} {cfg['split']} snippets, keyframe at 20-i for i = 0..l-1. avg: one confusion "
              "matrix pooled over the l offsets; min: offset l-1.",
              "", "### Accuracy (mIoU %, average / minimum over the keyframe interval)", "",
              *interval_table({name: res["intervals"] for name, res in acc.items()}, ls,
                              {f"image-only, input x{scale}": res["miou"] for scale, res in img.items()}),
              "", ANOTHER_CPU]
    trained_as = {m["legend"] or m["name"]: reports for m, reports in rows}
    lines += ["", "### How the propagation was trained (the paper's Table 4: minimum mIoU %)", "",
              "| propagation trained with | " + " | ".join(f"l={l}" for l in ls) + " |", "|---|" + "---:|" * len(ls)]
    for label, reports in trained_as.items():
        iv = _protocol_of(reports)[cfg["baseline"]]["intervals"]
        lines.append(f"| {label} | " + " | ".join(with_ci(iv[l]["min"], iv[l].get("min_ci")) for l in ls) + " |")
    lines += paired_lines({**protocol, "differences": r["differences"]})
    if b is not None:
        lines += ["", f"### Throughput and FLOPs ({b['size'][0]}x{b['size'][1]} input, batch 1, {b['precision']}, "
                      f"{b['device']}, torch {b['torch']}, {b.get('backend', 'eager')})", "", *throughput_table(b),
                  "", f"Per frame: keyframe {b['gflops']['keyframe']:.1f} GFLOPs, non-keyframe "
                      f"{b['gflops']['non-keyframe']:.2f} GFLOPs.", "", "### Parameters", "", "| part | parameters |",
                  "|---|---:|", *(f"| {k.strip()} | {v:,} |" for k, v in b["params"])]
    lines += ["", "### Time each step took", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {step} | {'-' if t is None else f'{t:.1f}'} |" for step, t in r["seconds"].items()]
    lines += [f"\n![{name.replace('_', ' ')}]({name}.png)" for name in spec.get("plots", [])]
    return lines + [""]


LAYOUT_RENDERERS: dict[str, Callable[[dict, list], list[str]]] = {
    "image": image_layout, "intervals": intervals_layout, "keyframe-training": keyframe_training_layout,
    "ablation": ablation_layout, "flow-error": flow_error_layout, "schedules": schedules_layout,
    "throughput": throughput_layout, "tour": tour_layout, "seeds": seeds_layout,
    "pareto": pareto_layout, "precision": precision_layout}
