"""Results on real street video (CamVid): the tables of the README's CamVid section from the files that `make camvid`
writes, or from the same evaluations run again on saved weights (notebook 06).

A results folder holds ``gsv eval --out`` / ``gsv bench --json`` files under fixed names:

    image_<net>.json     the keyframe net alone on test/ at input scales 0.5 / 0.75 / 1.0 (net: swiftnet, bisenet)
    propagation.json     the protocol on the held-out last third of the 15 Hz val/ run: gsv, warp, copy
    bench_<H>x<W>.json   throughput of l = 1..5 and image-only baselines at one input size
"""
from __future__ import annotations

import json
from pathlib import Path

from gsvlib.bench import throughput_table
from gsvlib.checkpoint import write_text_atomic
from gsvlib.evaluate import evaluate_variants
from gsvlib.models.gsvnet import GSVNet

NETS = {"swiftnet": "SwiftNet-R18", "bisenet": "BiSeNet-R18"}
HELD_OUT = (2 / 3, 1.0)  # the last third of each val/ sequence in time; propagation trains on the first two thirds
TARGET_GAP = 2.0  # GSVNet at l = 3 within this many mIoU points of its keyframe net on the same frames


def read_results(folder: str | Path) -> dict:
    """{"image": {net: report}, "propagation": report or None, "bench": [report, ...]} from a results folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: run `make camvid` (or the commands in the README) first")
    prop = folder / "propagation.json"
    return {"image": {p.stem.removeprefix("image_"): _load(p) for p in sorted(folder.glob("image_*.json"))},
            "propagation": _load(prop) if prop.is_file() else None,
            "bench": sorted((_load(p) for p in folder.glob("bench_*.json")), key=lambda b: b["size"][0] * b["size"][1])}


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); write it again with the command in the README") from None


def regenerate(models: dict[str, GSVNet], root: str | Path, key_scale: float = 0.75,
               image_scales=(0.5, 0.75, 1.0), progress: bool = True) -> dict:
    """The evaluations behind the tables, run again: image-only on test/ for every model in ``models`` (net name ->
    model) and, for "gsvnet", the protocol on the held-out part of val/ (same layout as :func:`read_results`)."""
    image = {name: evaluate_variants(m, ["image"], "camvid", root, "test", image_scales=image_scales,
                                     progress=progress) for name, m in models.items() if name in NETS}
    prop = None
    if "gsvnet" in models:
        prop = evaluate_variants(models["gsvnet"], ["gsv", "warp", "copy"], "camvid", root, "val", HELD_OUT,
                                 key_scale=key_scale, progress=progress)
    return {"image": image, "propagation": prop, "bench": []}


def target(prop: dict, l: str = "3") -> dict:
    """The issue's target: GSVNet at l within TARGET_GAP of its keyframe net (l = 1, the same frames) and above
    copy-previous and warp-only."""
    avg = {v: prop[v]["intervals"][l]["avg"] for v in ("gsv", "warp", "copy")}
    keyframe = prop["gsv"]["intervals"]["1"]["avg"]
    gap = round(keyframe - avg["gsv"], 2)
    return {"keyframe": keyframe, **avg, "gap": gap,
            "met": gap <= TARGET_GAP and avg["gsv"] > avg["copy"] and avg["gsv"] > avg["warp"]}


def camvid_markdown(results: dict) -> str:
    """The CamVid tables: image-only by scale, propagation by l, throughput per input size."""
    lines = []
    if results["image"]:
        first = next(iter(results["image"].values()))["image"]
        scales, frames = list(first), next(iter(first.values())).get("frames", "?")
        lines += [f"### Keyframe nets, image-only (CamVid test/, {frames} frames, mIoU %, 11 classes)", "",
                  "| keyframe net | " + " | ".join(f"input x{s}" for s in scales) + " |", "|---|" + "---:|" * len(scales)]
        for net, rep in results["image"].items():
            lines.append(f"| {NETS.get(net, net)} | " + " | ".join(f"{rep['image'][s]['miou']:.1f}" for s in scales) + " |")
        lines.append("")
    prop = results["propagation"]
    if prop:
        g = prop["gsv"]
        ls = list(g["intervals"])
        a, b = g.get("span", (0, 1))
        lines += [f"### Propagation on the 15 Hz val/ run (held out: fraction {a:.3g} to {b:g} of it in time, "
                  f"{g['snippets']} scored frames; keyframe at t, frame t+2k scored; keyframe input x{g['key_scale']}; "
                  "mIoU % average / minimum)", "",
                  "| method | " + " | ".join(f"l={l}" for l in ls) + " |", "|---|" + "---:|" * len(ls)]
        names = {"gsv": "GSVNet", "warp": "warp only", "copy": "copy previous"}
        for v, name in names.items():
            iv = prop[v]["intervals"]
            lines.append(f"| {name} | " + " | ".join(f"{iv[l]['avg']:.1f} / {iv[l]['min']:.1f}" for l in ls) + " |")
        lines.append(f"| keyframe net on every frame | " + " | ".join(f"{g['intervals']['1']['avg']:.1f}" for _ in ls)
                     + " |")
        if "3" in g["intervals"]:
            t = target(prop)
            lines += ["", f"Target (l=3): GSVNet {t['gsv']:.1f} vs its keyframe net {t['keyframe']:.1f} "
                          f"(gap {t['gap']:.1f}, target <= {TARGET_GAP}), copy {t['copy']:.1f}, warp {t['warp']:.1f}: "
                          + ("met." if t["met"] else "missed.")]
        lines.append("")
    for b in results["bench"]:
        lines += [f"### Throughput at {b['size'][1]}x{b['size'][0]} (W x H), batch 1, {b['precision']}, {b['device']}, "
                  f"torch {b['torch']}, keyframe input x{b['key_scale']}", "", *throughput_table(b), ""]
    return "\n".join(lines)


def write_tables(folder: str | Path) -> str:
    """Render ``folder``'s results as ``folder/results.md``; returns the markdown."""
    text = camvid_markdown(read_results(folder))
    write_text_atomic(Path(folder) / "results.md", text)
    return text
