"""Pictures: colour overlays of segmentations, and the result plots of the tour (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gsvlib.data.labels import LabelTable


def overlay(frame: np.ndarray, labels: np.ndarray, table: LabelTable, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 frame and (H, W) labels -> (H, W, 3) uint8 blend of the frame and the label colours."""
    colors = table.colorize(labels).astype(np.float32)
    return (frame.astype(np.float32) * (1 - alpha) + colors * alpha).round().astype(np.uint8)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_miou_by_interval(results: dict, image_only: dict, path: str | Path) -> None:
    """Average (solid) and minimum (dashed) mIoU over keyframe intervals per variant; image-only as levels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, (name, res) in enumerate(results.items()):
        ls = sorted(int(l) for l in res["intervals"])
        color = f"C{i}"
        ax.plot(ls, [res["intervals"][str(l)]["avg"] for l in ls], "-o", color=color, label=f"{name} (avg)")
        ax.plot(ls, [res["intervals"][str(l)]["min"] for l in ls], "--s", color=color, alpha=0.7, label=f"{name} (min)")
    for j, (scale, r) in enumerate(sorted(image_only.items())):
        ax.axhline(r["miou"], color="gray", lw=1, ls=[":", "-.", "-"][j % 3], label=f"image-only x{scale}")
    ax.set(xlabel="keyframe interval l", ylabel="mIoU (%)", title="Accuracy over the keyframe interval")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_throughput(points: list[dict], path: str | Path) -> None:
    """Fig. 3-style curve: one point per (method, l) with keys name, fps, miou."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, name in enumerate(dict.fromkeys(p["name"] for p in points)):
        pts = [p for p in points if p["name"] == name]
        ax.plot([p["fps"] for p in pts], [p["miou"] for p in pts], "-o", color=f"C{i}", label=name)
        for p in pts:
            if "label" in p:
                ax.annotate(p["label"], (p["fps"], p["miou"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="throughput (frames/s, this machine)", ylabel="average mIoU (%)", title="Accuracy vs throughput")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loss(logs: dict[str, list[dict]], path: str | Path) -> None:
    """Training loss per iteration for each run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.5))
    for name, log in logs.items():
        ax.plot([e["iteration"] for e in log], [e["loss"] for e in log], label=name)
    ax.set(xlabel="iteration", ylabel="loss", yscale="log", title="Training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
