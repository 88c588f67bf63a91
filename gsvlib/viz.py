"""Pictures: plotly figures for the notebooks and the tour, colour codings, and one PNG export.

Figures are plotly (interactive in JupyterLab). :func:`export` writes PNGs with kaleido when a Chromium/Chrome is
installed (one browser process serves every figure), and otherwise draws the same traces with matplotlib.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image
from plotly.subplots import make_subplots

from gsvlib.data.labels import LabelTable

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


# --- colour codings ---------------------------------------------------------------------------------------------------
def overlay(frame: np.ndarray, labels: np.ndarray, table: LabelTable, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 frame and (H, W) labels -> (H, W, 3) uint8 blend of the frame and the label colours."""
    colors = table.colorize(labels).astype(np.float32)
    return (frame.astype(np.float32) * (1 - alpha) + colors * alpha).round().astype(np.uint8)


def flow_to_rgb(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """(H, W, 2) flow (x, y) -> (H, W, 3) uint8 on the usual colour wheel: hue = direction, saturation = magnitude."""
    fx, fy = flow[..., 0], flow[..., 1]
    mag = np.hypot(fx, fy)
    max_norm = max_norm or max(float(mag.max()), 1e-6)
    hue = (np.arctan2(-fy, -fx) / np.pi + 1) / 2  # in [0, 1]
    sat = np.clip(mag / max_norm, 0, 1)
    h6 = hue * 6
    i = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = 1 - sat, 1 - sat * f, 1 - sat * (1 - f)
    v = np.ones_like(sat)
    rgb = np.choose(i[None], [np.stack(c) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return (np.moveaxis(rgb, 0, -1) * 255).round().astype(np.uint8)


def error_overlay(frame: np.ndarray, pred: np.ndarray, truth: np.ndarray, ignore: int = 255) -> np.ndarray:
    """Frame dimmed, wrong pixels red (ignored pixels left dim)."""
    out = (frame.astype(np.float32) * 0.45).astype(np.uint8)
    wrong = (pred != truth) & (truth != ignore)
    out[wrong] = (255, 40, 40)
    return out


def labels_rgb(seg: torch.Tensor, size, table: LabelTable) -> np.ndarray:
    """1/8 logits (1, C, h, w) -> (H, W, 3) colours of the full-resolution labels (the paper's upsample + argmax)."""
    from gsvlib.models.gsvnet import full_resolution_labels

    return table.colorize(full_resolution_labels(seg, size)[0].cpu().numpy())


def upsample_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Blow up a 1/8-grid picture (h, w[, 3]) to (h * factor, w * factor[, 3]) with visible cells."""
    return image.repeat(factor, 0).repeat(factor, 1)


def gray(values: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """(H, W) floats -> (H, W, 3) uint8 grey levels between ``lo`` (black) and ``hi`` (white)."""
    v = np.clip((np.asarray(values, dtype=np.float32) - lo) / (hi - lo), 0, 1)
    return np.repeat((v * 255).round().astype(np.uint8)[..., None], 3, -1)


def pipeline_panels(prev_rgb: np.ndarray, rgb: np.ndarray, step, truth: np.ndarray, table: LabelTable,
                    prev_seg: torch.Tensor) -> dict[str, np.ndarray]:
    """The stages of PF for one non-keyframe (Fig. 2) as pictures at frame size, from a :class:`Propagation`."""
    h, w = rgb.shape[:2]
    f = h // step.seg.shape[-2]
    flow = step.flow[0].permute(1, 2, 0).cpu().numpy()
    panels = {
        "frame t-1": prev_rgb, "frame t": rgb,
        "S_{t-1} (previous segmentation)": labels_rgb(prev_seg, (h, w), table),
        "m_t (flow at 1/8)": upsample_nearest(flow_to_rgb(flow), f),
        "S^-_t (warped, eq. 1)": labels_rgb(step.warped, (h, w), table),
        "E_t (edge map)": upsample_nearest(gray(step.edge[0, 0].cpu().numpy()), f),
    }
    if step.intra is not None:
        panels["f^i_t (intra-frame net)"] = labels_rgb(step.intra, (h, w), table)
    panels["S_t (output, eq. 2)"] = labels_rgb(step.seg, (h, w), table)
    panels["ground truth"] = table.colorize(truth)
    return panels


def palette_chart(table: LabelTable) -> go.Figure:
    """The classes of a label table as coloured bars, in label order."""
    fig = go.Figure(go.Bar(x=[f"{i} {n}" for i, n in enumerate(table.classes)], y=[1] * table.num_classes,
                           marker_color=[f"rgb{tuple(c)}" for c in table.colors], hoverinfo="x"))
    fig.update_layout(title=f"{table.name}: {table.num_classes} classes", height=300, width=760, yaxis_visible=False,
                      margin=dict(l=20, r=20, t=40, b=90))
    return fig


# --- figures ------------------------------------------------------------------------------------------------------------
def png_data_uri(image: np.ndarray) -> str:
    """(H, W, 3) uint8 -> a PNG data URI: an image travels to the browser ~10x smaller than as a list of pixels."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _decode_data_uri(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def image_grid(images: dict[str, np.ndarray], cols: int = 3, height: int = 220) -> go.Figure:
    """RGB images (H, W, 3) uint8 in a grid with titles (sent as PNGs; use :func:`heatmap_grid` to hover values)."""
    names = list(images)
    rows = -(-len(names) // cols)
    fig = make_subplots(rows, cols, subplot_titles=names, horizontal_spacing=0.02, vertical_spacing=0.08)
    for k, name in enumerate(names):
        fig.add_trace(go.Image(source=png_data_uri(images[name]), name=name), k // cols + 1, k % cols + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    h, w = next(iter(images.values())).shape[:2]
    fig.update_layout(height=rows * height + 40, width=cols * height * w / h + 40, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def heatmap_grid(maps: dict[str, np.ndarray], cols: int = 3, zmin: float | None = 0.0, zmax: float | None = 1.0,
                 colorscale: str = "Viridis", height: int = 200) -> go.Figure:
    """Scalar maps (H, W) in a grid sharing one colour scale; hovering reads a pixel's value."""
    names = list(maps)
    rows = -(-len(names) // cols)
    fig = make_subplots(rows, cols, subplot_titles=names, horizontal_spacing=0.03, vertical_spacing=0.1)
    for k, name in enumerate(names):
        fig.add_trace(go.Heatmap(z=maps[name], zmin=zmin, zmax=zmax, colorscale=colorscale, showscale=k == 0,
                                 name=name, hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra>" + name + "</extra>"),
                      k // cols + 1, k % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor=None)
    fig.update_xaxes(showticklabels=False)
    h, w = next(iter(maps.values())).shape
    fig.update_layout(height=rows * height + 40, width=cols * height * w / h + 80, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def line_chart(series: dict[str, tuple], title: str, xlabel: str, ylabel: str, log_y: bool = False,
               dashed: tuple[str, ...] = (), text: dict[str, list[str]] | None = None) -> go.Figure:
    """One line per ``name: (x, y)``; names in ``dashed`` are drawn dashed; ``text`` labels points."""
    fig = go.Figure()
    for name, (x, y) in series.items():
        labels = (text or {}).get(name)
        fig.add_trace(go.Scatter(x=list(x), y=list(y), name=name, mode="lines+markers" + ("+text" if labels else ""),
                                 text=labels, textposition="top right",
                                 line=dict(dash="dash" if name in dashed else "solid")))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=420, width=720,
                      yaxis_type="log" if log_y else None, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def miou_by_interval(results: dict, image_only: dict) -> go.Figure:
    """Average (solid) and minimum (dashed) mIoU over l per method; image-only levels as flat dotted lines."""
    series, dashed = {}, []
    for name, res in results.items():
        ls = sorted(int(l) for l in res["intervals"])
        series[f"{name} (avg)"] = (ls, [res["intervals"][str(l)]["avg"] for l in ls])
        series[f"{name} (min)"] = (ls, [res["intervals"][str(l)]["min"] for l in ls])
        dashed.append(f"{name} (min)")
    for scale, r in image_only.items():
        series[f"image-only x{scale}"] = (ls, [r["miou"]] * len(ls))
        dashed.append(f"image-only x{scale}")
    fig = line_chart(series, "Accuracy over the keyframe interval", "keyframe interval l", "mIoU (%)",
                     dashed=tuple(dashed))
    fig.update_xaxes(dtick=1)
    return fig


def accuracy_throughput(points: list[dict]) -> go.Figure:
    """Fig. 3-style curves: points {name, fps, miou, label} grouped by name."""
    series, text = {}, {}
    for p in points:
        x, y = series.setdefault(p["name"], ([], []))
        x.append(p["fps"])
        y.append(p["miou"])
        text.setdefault(p["name"], []).append(p.get("label", ""))
    return line_chart(series, "Accuracy vs throughput", "throughput (frames/s, this machine)", "average mIoU (%)",
                      text=text)


def loss_curves(logs: dict[str, list[dict]]) -> go.Figure:
    return line_chart({n: ([e["iteration"] for e in log], [e["loss"] for e in log]) for n, log in logs.items()},
                      "Training loss", "iteration", "loss", log_y=True)


def scrubber(make_figure, start: int, stop: int, value: int, description: str = "frame"):
    """A slider over ``start..stop`` that redraws ``make_figure(value)`` in place (notebooks).

    The figure is a display updated by the slider's observer, not the output widget of ``ipywidgets.interact``:
    papermill/nbclient can hang on an ``interact`` cell that shows a plotly figure (papermill issue 723).
    """
    import ipywidgets as widgets
    from IPython.display import display

    slider = widgets.IntSlider(value=value, min=start, max=stop, description=description, continuous_update=False)
    handle = display(make_figure(value), display_id=True)
    slider.observe(lambda change: handle.update(make_figure(change["new"])), names="value")
    display(slider)
    return slider


# --- export -------------------------------------------------------------------------------------------------------------
def find_browser() -> str | None:
    """Path of a Chromium/Chrome that kaleido can drive, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


_KALEIDO_SERVER = False


def export(fig: go.Figure, path: str | Path, scale: float = 1.0) -> str:
    """Write ``fig`` as a PNG; returns the renderer used: "kaleido", or "matplotlib" when no browser is present."""
    global _KALEIDO_SERVER
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    browser = find_browser()
    if browser:
        try:
            import kaleido

            os.environ.setdefault("BROWSER_PATH", browser)
            if not _KALEIDO_SERVER:  # one browser process for all figures of this Python process
                kaleido.start_sync_server(silence_warnings=True)
                _KALEIDO_SERVER = True
            with warnings.catch_warnings():  # plotly notes that per-call options go unused with a server
                warnings.simplefilter("ignore", UserWarning)
                fig.write_image(path, format="png", scale=scale)
            return "kaleido"
        except Exception:  # a browser that will not start: fall back rather than lose the figure
            pass
    _matplotlib_export(fig, path)
    return "matplotlib"


def _matplotlib_export(fig: go.Figure, path: Path) -> None:
    """Draw the image, heatmap and scatter traces of ``fig`` with matplotlib, one axes per plotly subplot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = getattr(fig, "_grid_ref", None) or [[None]]
    rows, cols = len(grid), len(grid[0])
    width, height = (fig.layout.width or 700) / 100, (fig.layout.height or 450) / 100
    mfig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    titles = [a.text for a in fig.layout.annotations] if rows * cols > 1 else []
    used = set()
    for trace in fig.data:
        axis = trace.xaxis or "x"
        k = int(axis[1:] or 1) - 1
        ax = axes[k // cols][k % cols]
        used.add(k)
        if trace.type == "image":
            ax.imshow(_decode_data_uri(trace.source) if trace.source else np.asarray(trace.z, dtype=np.uint8))
            ax.axis("off")
        elif trace.type == "heatmap":
            im = ax.imshow(np.asarray(trace.z, dtype=float), vmin=trace.zmin, vmax=trace.zmax, cmap="viridis")
            ax.axis("off")
            if trace.showscale:
                mfig.colorbar(im, ax=ax, fraction=0.04)
        elif trace.type == "bar":
            ax.bar(list(trace.x), list(trace.y), color=[tuple(int(v) / 255 for v in c[4:-1].split(","))
                                                        for c in trace.marker.color])
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
            ax.set_yticks([])
        elif trace.type == "scatter":
            style = "--" if trace.line.dash == "dash" else "-"
            ax.plot(trace.x, trace.y, style + ("o" if "markers" in (trace.mode or "") else ""), label=trace.name,
                    markersize=3)
            if trace.text is not None:
                for x, y, t in zip(trace.x, trace.y, trace.text):
                    ax.annotate(t, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(fig.layout.xaxis.title.text or "")
            ax.set_ylabel(fig.layout.yaxis.title.text or "")
            if fig.layout.yaxis.type == "log":
                ax.set_yscale("log")
            ax.legend(fontsize=7)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k not in used:
            ax.axis("off")
        elif k < len(titles):
            ax.set_title(titles[k], fontsize=8)
    if fig.layout.title.text:
        mfig.suptitle(fig.layout.title.text)
    mfig.tight_layout()
    mfig.savefig(path, dpi=100)
    plt.close(mfig)
