"""Reports: the markdown tables of the tour (synthetic street video) and of the README's CamVid section.

Both print the paper's protocol with one table function; method names come from the registries (keyframe nets,
propagations). The CamVid tables are read from the files that `make camvid` writes, or from the same evaluations run
again on saved weights (notebook 06). A CamVid results folder holds ``gsv eval --out`` / ``gsv bench --json`` files
under fixed names:

    image_<net>.json     the keyframe net alone on test/ at input scales 0.5 / 0.75 / 1.0 (net: swiftnet, bisenet)
    propagation.json     the protocol on the held-out frames of the 15 Hz val/ run (``HELD_OUT``): gsv, warp, copy
    flow_error.json      the pre-trained flow net's end-point error on the synthetic set's exact flow
    bench_<H>x<W>.json   throughput of l = 1..5 and image-only baselines at one input size
    ablation/<row>.json  `make camvid-ablation`: the same protocol for propagations trained otherwise on the
                         committed keyframe net, per row of ``ABLATION``
    ablation-2000/<row>.json          the same rows on SwiftNet-R18 after its first 2000 iterations
    longer/{val,test}_swiftnet.json   the committed SwiftNet-R18 (recipe camvid-keyframe, then camvid-keyframe-more)
                                      alone on the propagation's training part of val/ (the choice of keyframe net
                                      and scale) and on test/
    selection/val_bisenet.json        BiSeNet-R18 alone on the same frames of val/ (its keyframe scale)
    balance/<rule>/{val,test}_swiftnet.json  SwiftNet-R18 after 2000 iterations with ``--class-weights <rule>`` (`make
                                      camvid-balance`), on the same frames as longer/
    crop/{val,test}_swiftnet.json     SwiftNet-R18 trained on larger crops, about the same pixels per batch (`make
                                      camvid-crop`)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, NamedTuple

from gsvlib.bench import throughput_table
from gsvlib.data.balance import CLASS_WEIGHTS
from gsvlib.data.camvid import HELD_OUT
from gsvlib.evaluate import IMAGE_ONLY, evaluate_variants
from gsvlib.files import write_text_atomic
from gsvlib.models.gsvnet import KEYFRAME_NETS, GSVNet
from gsvlib.segmenter import PROPAGATIONS


class AblationRow(NamedTuple):
    legend: str  # the name in plots
    description: str  # the first column of the table


# The rows of the propagation ablation (`make camvid-ablation`, files ablation/<name>.json): each adds one ingredient to
# the row it names or, without a name, to the row above it.
ABLATION = {
    "base": AblationRow("camvid-gsv recipe", "`camvid-gsv` recipe: FlowLight learns through the segmentation loss "
                                             "alone"),
    "flowinit": AblationRow("+ flow pre-training", "+ FlowLight pre-trained on the synthetic set's exact flow "
                                                   "(`--init-flow`): the committed weights' recipe"),
    "distill": AblationRow("+ distillation", "+ distillation from the keyframe net (`--distill 1`)"),
    "jitter": AblationRow("+ frame-rate jitter", "+ frame-rate jitter (`--max-frame-step 2`)"),
    "photometric": AblationRow("+ photometric loss", "flow pre-training row + a photometric and smoothness loss on "
                                                     "every frame pair (`--photometric 1`)"),
    "synthprop": AblationRow("+ synthetic pre-training", "flow pre-training row + the whole propagation pre-trained "
                                                         "on the synthetic set in CamVid's classes (recipe "
                                                         "`synthetic-gsv`, `--init-propagation`)"),
}


def read_results(folder: str | Path) -> dict:
    """{"image": {net: report}, "propagation": report or None, "bench": [report, ...], "ablation": {row: report},
    "flow_error": report or None, "keyframe_training": {row: {"val", "test"}}, "ablation_2000": {row: report}} from a
    results folder (the ablation rows from its ablation/ folder, those on the 2000-iteration SwiftNet-R18 from
    ablation-2000/)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: run `make camvid` (or the commands in the README) first")
    prop, flow = folder / "propagation.json", folder / "flow_error.json"
    return {"image": {p.stem.removeprefix("image_"): _load(p) for p in sorted(folder.glob("image_*.json"))},
            "propagation": _load(prop) if prop.is_file() else None,
            "bench": sorted((_load(p) for p in folder.glob("bench_*.json")), key=lambda b: b["size"][0] * b["size"][1]),
            "ablation": _rows(folder / "ablation"),
            "ablation_2000": _rows(folder / "ablation-2000"),
            "flow_error": _load(flow) if flow.is_file() else None, "keyframe_training": _keyframe_training(folder)}


def _rows(folder: Path) -> dict:
    """{row: report} for each row of :data:`ABLATION` with a file <row>.json in ``folder``."""
    return {row: _load(folder / f"{row}.json") for row in ABLATION if (folder / f"{row}.json").is_file()}


# The rows of the SwiftNet-R18 training table: a results sub-folder holding {val,test}_swiftnet.json -> the row's name.
KEYFRAME_TRAINING = {**{f"balance/{rule}": rule for rule in CLASS_WEIGHTS},
                     "longer": "sqrt-median-frequency, 2000 iterations more (4000 in all): the committed net",
                     "crop": "sqrt-median-frequency, crops of 3/4 at batch 4 (2000 iterations)"}


def _keyframe_training(folder: Path) -> dict:
    """{row name: {"val": report, "test": report}} for each row of :data:`KEYFRAME_TRAINING` with files."""
    return {name: {split: _load(folder / sub / f"{split}_swiftnet.json") for split in ("val", "test")}
            for sub, name in KEYFRAME_TRAINING.items() if (folder / sub / "test_swiftnet.json").is_file()}


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); write it again with the command in the README") from None


def regenerate(models: dict[str, GSVNet], root: str | Path, key_scale: float = 0.75,
               image_scales=(0.5, 0.75, 1.0), progress: bool = True) -> dict:
    """The evaluations behind the tables, run again: image-only on test/ for every model in ``models`` (net name ->
    model) and, for "gsvnet", the protocol on the held-out part of val/ (same layout as :func:`read_results`)."""
    image = {name: evaluate_variants(m, [IMAGE_ONLY], "camvid", root, "test", image_scales=image_scales,
                                     progress=progress) for name, m in models.items() if name in KEYFRAME_NETS}
    prop = None
    if "gsvnet" in models:
        prop = evaluate_variants(models["gsvnet"], list(PROPAGATIONS), "camvid", root, "val", HELD_OUT,
                                 key_scale=key_scale, progress=progress)
    return {"image": image, "propagation": prop, "bench": []}


def interval_table(methods: dict[str, dict], ls: list[str], flat: dict[str, float] | None = None) -> list[str]:
    """Markdown table of the protocol: one row per method ({"l": {"avg", "min"}} by interval), "avg / min" per l;
    ``flat`` rows repeat one mIoU in every column (a method without keyframe interval, e.g. image-only)."""
    lines = ["| method | " + " | ".join(f"l={l}" for l in ls) + " |", "|---|" + "---:|" * len(ls)]
    for name, iv in methods.items():
        lines.append(f"| {name} | " + " | ".join(f"{iv[l]['avg']:.1f} / {iv[l]['min']:.1f}" for l in ls) + " |")
    for name, miou in (flat or {}).items():
        lines.append(f"| {name} | " + " | ".join(f"{miou:.1f}" for _ in ls) + " |")
    return lines


def keyframe_title(net: str) -> str:
    return KEYFRAME_NETS[net].title if net in KEYFRAME_NETS else net


def cost_of_propagation(prop: dict, l: str = "3") -> dict:
    """Average mIoU at interval ``l`` of each propagation, the keyframe net's on the same frames (l = 1), and ``gap``:
    how much GSVNet loses against running the keyframe net on every frame (negative: it gains)."""
    avg = {v: prop[v]["intervals"][l]["avg"] for v in PROPAGATIONS if v in prop}
    keyframe = prop["gsv"]["intervals"]["1"]["avg"]
    return {"keyframe": keyframe, **avg, "gap": round(keyframe - avg["gsv"], 2)}


class Target(NamedTuple):
    text: str
    value: Callable[[dict], float]  # of a protocol report with gsv and warp
    least: float  # met when the value is at least this

    def met(self, rep: dict) -> bool:
        return self.value(rep) >= self.least - 1e-9  # the figures carry 2 decimals: a bound reached exactly is met


def _interval(rep: dict, variant: str, l: str, stat: str) -> float:
    return rep[variant]["intervals"][l][stat]


# What propagation should reach on real frames it never trained on (the README's CamVid section). The keyframe net on
# the same frames is GSVNet's l = 1.
TARGETS = (
    Target("GSVNet - keyframe net, l=3 avg",
           lambda r: _interval(r, "gsv", "3", "avg") - _interval(r, "gsv", "1", "avg"), -2.0),
    Target("GSVNet - warp only, l=3 avg",
           lambda r: _interval(r, "gsv", "3", "avg") - _interval(r, "warp", "3", "avg"), 2.0),
    Target("GSVNet - warp only, l=5 min",
           lambda r: _interval(r, "gsv", "5", "min") - _interval(r, "warp", "5", "min"), 5.0),
)


def target_lines(rep: dict) -> str:
    """Each of the :data:`TARGETS` with its value in ``rep`` and whether it is met."""
    return "; ".join(f"{t.text} {t.value(rep):+.1f} (target >= {t.least:+.1f}: "
                     f"{'met' if t.met(rep) else 'missed'})" for t in TARGETS)


def targets_met(rep: dict) -> str:
    """The numbers of the :data:`TARGETS` that a protocol report meets, e.g. "1, 3", or "none"."""
    return ", ".join(str(i) for i, t in enumerate(TARGETS, 1) if t.met(rep)) or "none"


def fixed_at(schedules: dict, fps: float) -> float | None:
    """The mIoU of the fixed-interval curve at ``fps``, interpolated linearly between its neighbouring l (None
    outside the curve's range)."""
    curve = sorted((p["fps"], p["miou"]) for p in schedules["fixed"].values())
    for (f0, m0), (f1, m1) in zip(curve, curve[1:]):
        if f0 <= fps <= f1:
            return m0 if f1 == f0 else m0 + (m1 - m0) * (fps - f0) / (f1 - f0)
    return None


def schedule_markdown(schedules: dict) -> str:
    """The adaptive-keyframe comparison of :func:`gsvlib.evaluate.keyframe_schedules` as a markdown table: each fixed
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
        lines.append(f"| fixed l={l} |  | {p['keyframe_share']:.2f} | {p['miou']:.1f} | {p['fps']:.1f} |  |")
    for signal, policy in schedules["policies"].items():
        for p in policy["points"]:
            ref = fixed_at(schedules, p["fps"])
            gain = f"{p['miou'] - ref:+.1f}" if ref is not None else "n/a"
            lines.append(f"| {signal}, l <= {policy['max_interval']} | {p['threshold']:.3g} ({p['factor']:g} x "
                         f"median) | {p['keyframe_share']:.2f} | {p['miou']:.1f} | {p['fps']:.1f} | {gain} |")
    return "\n".join(lines) + "\n"


def camvid_markdown(results: dict) -> str:
    """The CamVid tables: image-only by scale, propagation by l, throughput per input size."""
    lines = []
    if results["image"]:
        first = next(iter(results["image"].values()))["image"]
        scales, frames = list(first), next(iter(first.values())).get("frames", "?")
        lines += [f"### Keyframe nets, image-only (CamVid test/, {frames} frames, mIoU %, 11 classes)", "",
                  "| keyframe net | " + " | ".join(f"input x{s}" for s in scales) + " |", "|---|" + "---:|" * len(scales)]
        for net, rep in results["image"].items():
            lines.append(f"| {keyframe_title(net)} | " + " | ".join(f"{rep['image'][s]['miou']:.1f}" for s in scales) + " |")
        lines.append("")
    if results["propagation"]:
        lines += propagation_markdown(results["propagation"])
    lines += keyframe_training_markdown(results.get("keyframe_training") or {})
    lines += ablation_markdown(results.get("ablation") or {}, "What each source of supervision adds, on the committed "
                               "keyframe net", results.get("flow_error"))
    lines += ablation_markdown(results.get("ablation_2000") or {}, "The same rows on SwiftNet-R18 after 2000 "
                               "iterations, the earlier weights' keyframe net")
    for b in results["bench"]:
        lines += [f"### Throughput at {b['size'][1]}x{b['size'][0]} (W x H), batch 1, {b['precision']}, {b['device']}, "
                  f"torch {b['torch']}, keyframe input x{b['key_scale']}", "", *throughput_table(b), ""]
    return "\n".join(lines)


def propagation_markdown(prop: dict) -> list[str]:
    """The protocol on the held-out frames: GSVNet, warp-only and copy by l against the keyframe net, the cost of
    propagation at l = 3 and the :data:`TARGETS`."""
    g = prop["gsv"]
    ls = list(g["intervals"])
    a, b = g.get("span", (0, 1))
    lines = [f"### Propagation on the 15 Hz val/ run (held out: fraction {a:.3g} to {b:g} of it in time, "
             f"{g['snippets']} scored frames; keyframe at t, frame t+2k scored; keyframe input x{g['key_scale']}; "
             "mIoU % average / minimum)", ""]
    methods = {PROPAGATIONS[v].title: prop[v]["intervals"] for v in PROPAGATIONS if v in prop}
    lines += interval_table(methods, ls, {"keyframe net on every frame": g["intervals"]["1"]["avg"]})
    if "3" in g["intervals"]:
        c = cost_of_propagation(prop)
        others = ", ".join(f"{PROPAGATIONS[v].title} {c[v]:.1f}" for v in PROPAGATIONS if v in c and v != "gsv")
        lines += ["", f"At l=3: GSVNet {c['gsv']:.1f} against {c['keyframe']:.1f} for its keyframe net on every "
                      f"frame (a loss of {c['gap']:.1f}; negative: a gain); {others}."]
    if "5" in g["intervals"] and "warp" in prop:
        lines += ["", f"Targets: {target_lines(prop)}."]
    return lines + [""]


THIN_CLASSES = ("pole", "sign symbol", "fence", "pedestrian", "bicyclist")  # CamVid's classes below 25 IoU


def keyframe_training_markdown(rules: dict[str, dict], scale: str = "0.75") -> list[str]:
    """SwiftNet-R18 by class weighting (``--class-weights``), schedule and crop size: mIoU by input scale on val/'s
    training part and on test/, and the thin classes' IoU on test/ at ``scale``."""
    if not rules:
        return []
    first = next(iter(rules.values()))
    scales = list(first["test"]["image"])
    frames = {split: next(iter(first[split]["image"].values())).get("frames", "?") for split in ("val", "test")}
    lines = [f"### SwiftNet-R18 by class weighting, schedule and crop size (`make camvid-balance`, `make camvid`, "
             f"`make camvid-crop`; mIoU % at input x{' / '.join(scales)} on "
             f"{frames['val']} frames of val/ and {frames['test']} of test/, IoU % of the thin classes on test/ at "
             f"x{scale})", "",
             "| SwiftNet-R18 trained with | val/ | test/ | " + " | ".join(THIN_CLASSES) + " |",
             "|---|---:|---:|" + "---:|" * len(THIN_CLASSES)]
    for rule, rep in rules.items():
        miou = {split: " / ".join(f"{rep[split]['image'][s]['miou']:.1f}" for s in scales) for split in rep}
        thin = rep["test"]["image"][scale]["per_class"]
        lines.append(f"| {rule} | {miou['val']} | {miou['test']} | " +
                     " | ".join(f"{thin[c]:.1f}" for c in THIN_CLASSES) + " |")
    return lines + [""]


def ablation_markdown(rows: dict[str, dict], title: str, flow_error: dict | None = None) -> list[str]:
    """The propagation ablation: per row of :data:`ABLATION`, GSVNet and warp-only at l = 3 and 5, GSVNet's margins
    over warp-only (:data:`TARGETS` 2 and 3) and the targets it meets; the keyframe net on the same frames in the
    title."""
    if not rows:
        return []
    g = next(iter(rows.values()))["gsv"]
    a, b = g.get("span", (0, 1))
    lines = [f"### {title} (held out: fraction {a:.3g} to {b:g} of the val/ run, "
             f"{g['snippets']} scored frames; keyframe input x{g.get('key_scale', '?')}; keyframe net on every frame "
             f"{g['intervals']['1']['avg']:.1f}; mIoU % average / minimum)", "",
             "| propagation trained with | l=3 | l=5 | warp only, l=3 | warp only, l=5 | GSVNet - warp, l=3 avg "
             "| GSVNet - warp, l=5 min | targets met |", "|---|" + "---:|" * 7]
    for row, rep in rows.items():
        gsv, warp = rep["gsv"]["intervals"], rep["warp"]["intervals"]
        cells = [f"{iv[l]['avg']:.1f} / {iv[l]['min']:.1f}" for iv in (gsv, warp) for l in ("3", "5")]
        cells += [f"{t.value(rep):+.1f}" for t in TARGETS[1:]] + [targets_met(rep)]
        lines.append(f"| {ABLATION[row].description} | " + " | ".join(cells) + " |")
    lines += ["", "Targets: " + "; ".join(f"{i} {t.text} >= {t.least:+.1f}" for i, t in enumerate(TARGETS, 1)) + "."]
    if flow_error:
        lines += ["", f"FlowLight pre-trained on the synthetic set: end-point error {flow_error['flow']['epe']:.2f} "
                      f"px of the 1/8 grid on its {flow_error['flow']['pairs']} validation pairs (predicting no motion: "
                      f"{flow_error['flow']['zero_flow_epe']:.2f})."]
    return lines + [""]


def write_tables(folder: str | Path) -> str:
    """Render ``folder``'s results as ``folder/results.md``; returns the markdown."""
    text = camvid_markdown(read_results(folder))
    write_text_atomic(Path(folder) / "results.md", text)
    return text


def tour_markdown(r: dict) -> str:
    """The tour's report (``results.md``) from its ``results.json``."""
    cfg, acc, img, b = r["config"], r["accuracy"], r["image_only"], r["benchmark"]
    ls = [str(l) for l in cfg["intervals"]]
    s = cfg["synth"]
    lines = [
        "# Results of `make tour` (synthetic street video)", "",
        f"Data: {s['snippets']} training and {s['val_snippets']} validation snippets of {s['frames']} frames at "
        f"{s['size'][0]}x{s['size'][1]} (seed {s['seed']}). Keyframe net SwiftNet-R18 trained from scratch for "
        f"{cfg['keyframe_iterations']} iterations, propagation for {cfg['gsv_iterations']} (batch {cfg['batch_size']}; "
        "recipes `from-scratch` and `short-adam`: AdamW lr 1e-3 instead of the paper's SGD lr 0.002, which needs far "
        "more iterations than a CPU tour has).",
        f"Keyframes at {cfg['key_scale']} scale. Scored at full resolution on the annotated frame of each validation "
        "snippet, keyframe at 20-i for i = 0..l-1. avg: one confusion matrix pooled over the l offsets; min: offset l-1.",
        "", "## Accuracy (mIoU %, average / minimum over the keyframe interval)", "",
        *interval_table({name: res["intervals"] for name, res in acc.items()}, ls,
                        {f"image-only, input x{scale}": res["miou"] for scale, res in img.items()})]
    lines += ["", "## Intra features (the paper's Table 4: minimum mIoU %)", "",
              "| intra features | " + " | ".join(f"l={l}" for l in ls) + " |", "|---|" + "---:|" * len(ls)]
    for label, name in (("with", "GSVNet"), ("without", "GSVNet without intra")):
        lines.append(f"| {label} | " + " | ".join(f"{acc[name]['intervals'][l]['min']:.1f}" for l in ls) + " |")
    lines += ["", f"## Throughput and FLOPs ({b['size'][0]}x{b['size'][1]} input, batch 1, {b['precision']}, "
              f"{b['device']}, torch {b['torch']}, {b.get('backend', 'eager')})", "", *throughput_table(b)]
    lines += ["", f"Per frame: keyframe {b['gflops']['keyframe']:.1f} GFLOPs, non-keyframe "
              f"{b['gflops']['non-keyframe']:.2f} GFLOPs.", "", "## Parameters", "", "| part | parameters |",
              "|---|---:|"]
    lines += [f"| {k.strip()} | {v:,} |" for k, v in b["params"].items()]
    lines += ["", "## Time taken by this run", "", "| step | seconds | |", "|---|---:|---|"]
    lines += [f"| {step} | {t['seconds']:.1f} | {t['note']} |" for step, t in r["timings_s"].items()]
    lines += ["", "![mIoU by interval](miou_by_interval.png)", "", "![accuracy vs throughput](accuracy_throughput.png)",
              "", "![training loss](training_loss.png)", ""]
    return "\n".join(lines)
