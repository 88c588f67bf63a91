"""Figures: plotly figures for the notebooks and the tour (colour codings as arrays are in :mod:`gsvlib.pictures`),
and one PNG export.

Figures are plotly (interactive in JupyterLab). :func:`export` writes PNGs with kaleido when a Chromium/Chrome is
installed (one browser process serves every figure), and otherwise draws the same traces with matplotlib.
"""
from __future__ import annotations

import base64
import io
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch
from PIL import Image
from plotly.subplots import make_subplots

from gsvlib.data.labels import LabelTable
from gsvlib.files import check_file_output, mark_png, output_path
from gsvlib.models.output import full_resolution_labels
from gsvlib.pictures import flow_to_rgb, gray, overlay, upsample_nearest, with_flow_key

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


OUTPUT_WIDTH = 940  # px: JupyterLab's output area is about 950 px wide at a common window size; figures fit in it


class Panel(NamedTuple):
    """A picture (H, W, 3) uint8 and, optionally, what hovering over it reads: a 2-D array of strings on a grid that
    divides the picture evenly (e.g. the 1/8 grid the model predicts on)."""
    image: np.ndarray
    hover: np.ndarray | None = None


def label_panel(labels: np.ndarray, table: LabelTable, frame: np.ndarray | None = None, stride: int = 8) -> Panel:
    """(H, W) labels -> their colours (blended over ``frame`` when given); hover names the class at each cell
    centre of the ``stride`` grid."""
    image = table.colorize(labels) if frame is None else overlay(frame, labels, table)
    names = np.array([*table.classes, *["void"] * (256 - table.num_classes)], dtype=object)
    return Panel(image, names[labels[stride // 2::stride, stride // 2::stride].astype(np.int64)])


def flow_panel(flow: np.ndarray, max_norm: float | None = None, factor: int = 8, stride: int = 1,
               key: bool = True) -> Panel:
    """A flow (h, w, 2) on the colour wheel, blown up ``factor`` times (8 for the 1/8 grid), with the wheel as a key
    in the corner (``key``); hover reads the vector (dx, dy) in pixels of the flow's own grid, at every ``stride``-th
    cell (8 for a full-resolution flow)."""
    cells = flow[stride // 2::stride, stride // 2::stride]
    hover = np.vectorize(lambda dx, dy: f"flow (dx, dy) = ({dx:+.2f}, {dy:+.2f}) px", otypes=[object])
    picture = upsample_nearest(flow_to_rgb(flow, max_norm), factor)
    return Panel(with_flow_key(picture) if key else picture, hover(cells[..., 0], cells[..., 1]))


def seg_panel(seg: torch.Tensor, size, table: LabelTable, frame: np.ndarray | None = None) -> Panel:
    """1/8 logits (1, C, h, w) -> the full-resolution labels (the paper's upsample + argmax) as a :class:`Panel`."""
    return label_panel(full_resolution_labels(seg, size)[0].cpu().numpy(), table, frame)


def pipeline_panels(prev_rgb: np.ndarray, rgb: np.ndarray, step, truth: np.ndarray, table: LabelTable,
                    prev_seg: torch.Tensor) -> dict[str, Panel]:
    """The stages of PF for one non-keyframe (Fig. 2) as panels at frame size, from a :class:`Propagation`; hover
    reads class names, flow vectors and edge values on the 1/8 grid."""
    h, w = rgb.shape[:2]
    f = h // step.seg.shape[-2]
    edge = step.edge[0, 0].cpu().numpy()
    panels = {
        "frame t-1": Panel(prev_rgb), "frame t": Panel(rgb),
        "S_t-1 (previous)": seg_panel(prev_seg, (h, w), table),
        "m_t (flow at 1/8)": flow_panel(step.flow[0].permute(1, 2, 0).cpu().numpy(), factor=f),
        "S⁻ₜ (warped, eq. 1)": seg_panel(step.warped, (h, w), table),
        "E_t (edge map)": Panel(upsample_nearest(gray(edge), f), np.char.mod("E %.3f", edge).astype(object)),
    }
    if step.intra is not None:
        panels["fⁱₜ (intra-frame net)"] = seg_panel(step.intra, (h, w), table)
    panels["S_t (output, eq. 2)"] = seg_panel(step.seg, (h, w), table)
    panels["ground truth"] = label_panel(truth, table)
    return panels


def palette_chart(table: LabelTable) -> go.Figure:
    """The classes of a label table as coloured bars, in label order."""
    fig = go.Figure(go.Bar(x=[f"{i} {n}" for i, n in enumerate(table.classes)], y=[1] * table.num_classes,
                           marker_color=[f"rgb{tuple(c)}" for c in table.colors], hoverinfo="x"))
    fig.update_layout(title=f"{table.name}: {table.num_classes} classes", height=300, width=760, yaxis_visible=False,
                      margin=dict(l=20, r=20, t=40, b=90))
    return fig


# --- figures ------------------------------------------------------------------------------------------------------------
def image_data_uri(image: np.ndarray) -> str:
    """(H, W, 3) uint8 -> a data URI: PNG, or JPEG (quality 90) where that is under half the PNG's size. An image
    travels to the browser ~10x smaller than as a list of pixels; a photograph ~5x smaller again as JPEG, which keeps
    a slider's redraw quick, while flat class colours stay exact as PNG."""
    image = np.ascontiguousarray(image)
    png, jpeg = io.BytesIO(), io.BytesIO()
    Image.fromarray(image).save(png, format="png")
    Image.fromarray(image).save(jpeg, format="jpeg", quality=90)
    kind, data = ("jpeg", jpeg) if jpeg.tell() < png.tell() / 2 else ("png", png)
    return f"data:image/{kind};base64," + base64.b64encode(data.getvalue()).decode()


def _decode_data_uri(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def _grid(n: int, cols: int, aspect: float, width: int, top: int = 30, bottom: int = 10) -> dict:
    """make_subplots spacing and layout height for ``n`` panels of ``aspect`` (w / h) in ``cols`` columns, so that
    the panels fill ``width`` px with a 30 px band for each row's titles and 8 px between columns; and the width in
    px of one panel."""
    rows = math.ceil(n / cols)
    inner = width - 20  # left and right margins of 10 px
    panel_w = (inner - 8 * (cols - 1)) / cols
    plot_h = rows * panel_w / aspect + (rows - 1) * 30
    return dict(rows=rows, height=round(plot_h + top + bottom), horizontal_spacing=8 / inner,
                vertical_spacing=30 / plot_h if rows > 1 else 0.0, panel_width=panel_w)


def image_grid(images: dict[str, np.ndarray | Panel], cols: int = 3, width: int = OUTPUT_WIDTH,
               legend: LabelTable | None = None, legend_ids=None) -> go.Figure:
    """Pictures in a grid with titles, ``width`` px wide. A :class:`Panel` with ``hover`` reads its strings under
    the mouse (class names, flow vectors); ``legend`` adds a key of that table's class colours, of the classes
    ``legend_ids`` (e.g. those a clip holds; default every class).

    A picture at least as wide as its panel is drawn by the browser as encoded (``zsmooth="fast"``, smoothed as it
    shrinks). With plotly's default, which keeps pixels square, a picture is repainted one canvas rectangle per
    pixel whenever the figure is exported, and JupyterLab's plotly renderer exports every figure it shows: 0.6 s of
    a slider step for six 352x480 panels. Smaller pictures, blown up, keep the default: square pixels, few of them."""
    names = list(images)
    panels = [p if isinstance(p, Panel) else Panel(p) for p in images.values()]
    h, w = panels[0].image.shape[:2]
    keyed = [] if legend is None else sorted(range(legend.num_classes) if legend_ids is None else
                                             {int(c) for c in legend_ids if 0 <= int(c) < legend.num_classes})
    bottom = 10 + (22 * math.ceil(len(keyed) / 10) if legend else 0)  # the legend's rows of ~10 classes
    g = _grid(len(names), cols, w / h, width, bottom=bottom)
    zsmooth = "fast" if w >= g["panel_width"] else False
    fig = make_subplots(g["rows"], cols, subplot_titles=names, horizontal_spacing=g["horizontal_spacing"],
                        vertical_spacing=g["vertical_spacing"])
    for k, (name, p) in enumerate(zip(names, panels)):
        row, col = k // cols + 1, k % cols + 1
        fig.add_trace(go.Image(source=image_data_uri(p.image), name=name, hoverinfo="skip", zsmooth=zsmooth), row, col)
        if p.hover is not None:  # an invisible heatmap on the hover grid carries the text
            gh, gw = p.hover.shape
            fig.add_trace(go.Heatmap(z=np.zeros((gh, gw)), x0=w / gw / 2 - 0.5, dx=w / gw, y0=h / gh / 2 - 0.5,
                                     dy=h / gh, text=p.hover, hovertemplate="%{text}<extra>" + name + "</extra>",
                                     opacity=0, showscale=False, name=name), row, col)
    for c in keyed:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=legend.classes[c], showlegend=True,
                                 marker=dict(color=f"rgb{tuple(legend.colors[c])}", size=10, symbol="square")))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(height=g["height"], width=width, margin=dict(l=10, r=10, t=30, b=bottom),
                      showlegend=legend is not None, legend=dict(orientation="h", y=0, yanchor="top", x=0,
                                                                 font=dict(size=10)),
                      plot_bgcolor="white")
    fig.update_annotations(font_size=12)
    return fig


def heatmap_grid(maps: dict[str, np.ndarray], cols: int = 3, zmin: float | None = 0.0, zmax: float | None = 1.0,
                 colorscale: str = "Viridis", width: int = OUTPUT_WIDTH, hover: np.ndarray | None = None,
                 colorbar_title: str = "") -> go.Figure:
    """Scalar maps (H, W) in a grid sharing one colour scale, ``width`` px wide with the colour bar. Hovering reads a
    pixel's value, or ``hover`` (H, W) strings when given (the same for every map, e.g. a pixel's whole kernel)."""
    names = list(maps)
    h, w = next(iter(maps.values())).shape
    g = _grid(len(names), cols, w / h, width - 70)  # 70 px for the colour bar
    fig = make_subplots(g["rows"], cols, subplot_titles=names, horizontal_spacing=g["horizontal_spacing"],
                        vertical_spacing=g["vertical_spacing"])
    for k, name in enumerate(names):
        template = ("%{text}" if hover is not None else "x %{x}, y %{y}: %{z:.3f}") + "<extra>" + name + "</extra>"
        fig.add_trace(go.Heatmap(z=maps[name], zmin=zmin, zmax=zmax, colorscale=colorscale, showscale=k == 0,
                                 colorbar=dict(title=colorbar_title, thickness=12), name=name, text=hover,
                                 hovertemplate=template), k // cols + 1, k % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor=None)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=g["height"], width=width, margin=dict(l=10, r=80, t=30, b=10))
    fig.update_annotations(font_size=12)
    return fig


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")  # one per method
GREYS = ("#555555", "#888888", "#bbbbbb")


def titled(title: str, subtitle: str | None = None) -> dict:
    """A figure's title with, on a smaller second line, what to read it by: plotly does not wrap titles, so a long one
    is cut at the figure's edge."""
    return dict(text=title + (f"<br><sup>{subtitle}</sup>" if subtitle else ""))


def line_chart(series: dict[str, tuple], title: str, xlabel: str, ylabel: str, log_y: bool = False,
               style: dict[str, dict] | None = None, text: dict[str, list[str]] | None = None,
               markers: bool = True, intervals: dict[str, list] | None = None,
               subtitle: str | None = None) -> go.Figure:
    """One line per ``name: (x, y)``. ``style`` gives a series its plotly line settings (color, dash) and, under
    "textposition", where its point labels ``text`` go; ``intervals`` its [lo, hi] per point, drawn as error bars;
    ``subtitle`` a second title line (:func:`titled`)."""
    fig = go.Figure()
    for name, (x, y) in series.items():
        labels = (text or {}).get(name)
        line = dict((style or {}).get(name, {}))
        position = line.pop("textposition", "top right")
        mode = "lines" + ("+markers" if markers else "") + ("+text" if labels else "")
        ci = (intervals or {}).get(name)
        error = None if not ci else dict(type="data", symmetric=False, array=[hi - v for v, (_, hi) in zip(y, ci)],
                                         arrayminus=[v - lo for v, (lo, _) in zip(y, ci)], thickness=1, width=3)
        fig.add_trace(go.Scatter(x=list(x), y=list(y), name=name, mode=mode, text=labels, textposition=position,
                                 line=line, marker=dict(color=line.get("color")), error_y=error))
    fig.update_layout(title=titled(title, subtitle), xaxis_title=xlabel, yaxis_title=ylabel, height=420, width=720,
                      yaxis_type="log" if log_y else None, margin=dict(l=60, r=20, t=70 if subtitle else 50, b=50))
    return fig


def miou_by_interval(results: dict, image_only: dict) -> go.Figure:
    """Average (solid) and minimum (dashed) mIoU over l, one colour per method; image-only levels in grey, dotted."""
    series, style, intervals = {}, {}, {}
    for color, (name, res) in zip(PALETTE, results.items()):
        ls = sorted(int(l) for l in res["intervals"])
        for stat, dash in (("avg", None), ("min", "dash")):
            series[f"{name} ({stat})"] = (ls, [res["intervals"][str(l)][stat] for l in ls])
            style[f"{name} ({stat})"] = dict(color=color, dash=dash)
            if all(f"{stat}_ci" in res["intervals"][str(l)] for l in ls):
                intervals[f"{name} ({stat})"] = [res["intervals"][str(l)][f"{stat}_ci"] for l in ls]
    for grey, (scale, r) in zip(GREYS, image_only.items()):
        series[f"image-only x{scale}"] = (ls, [r["miou"]] * len(ls))
        style[f"image-only x{scale}"] = dict(color=grey, dash="dot")
    fig = line_chart(series, "Accuracy over the keyframe interval", "keyframe interval l", "mIoU (%)", style=style,
                     intervals=intervals, subtitle="solid: average, dashed: minimum"
                     + ("; bars: 95% bootstrap intervals over frames" if intervals else ""))
    fig.update_xaxes(dtick=1)
    return fig


# A point label's box, as fractions of the plot's x and y ranges (a 720x420 figure with its legend: a plot area of
# about 420x300 px, 12 px text): its width per character, its height, and its gap to the point (the marker's radius).
LABEL_CHAR, LABEL_HEIGHT, LABEL_GAP = 0.017, 0.05, 0.01
LABEL_SIDES = ("top right", "bottom right", "top left", "bottom left")  # plotly's text positions, in order of choice


def _label_box(u: float, v: float, chars: int, side: str) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of a label of ``chars`` characters at ``side`` of the point (u, v), in plot fractions."""
    w = chars * LABEL_CHAR
    x0 = u + LABEL_GAP if side.endswith("right") else u - LABEL_GAP - w
    y0 = v + LABEL_GAP if side.startswith("top") else v - LABEL_GAP - LABEL_HEIGHT
    return x0, x0 + w, y0, y0 + LABEL_HEIGHT


def label_positions(series: dict[str, tuple], text: dict[str, list[str]], log_x: bool = False
                    ) -> dict[str, list[str]]:
    """Where each point's label ``text[name][i]`` goes, per curve ``name: (x, y)``. First choice: right of the point,
    clear of its vertical error bar, on the side its curve leaves free (above where the curve falls through the point,
    left to right; below where it rises), so that points close in x on one curve get labels stacked along the curve.
    A label whose box would cover one placed before it (a nearby point's, of this curve or another) takes the first
    free side of :data:`LABEL_SIDES`, or keeps its first choice when none is free."""
    series = {name: ([math.log10(v) if log_x else v for v in x], y) for name, (x, y) in series.items()}  # as drawn
    spans = [max(max(v) - min(v), 1e-9) for v in ([v for x, _ in series.values() for v in x],
                                                   [v for _, y in series.values() for v in y])]
    placed, out = [], {}
    for name, (x, y) in series.items():
        order = sorted(range(len(x)), key=lambda i: x[i])
        out[name] = [""] * len(x)
        for k, i in enumerate(order):
            before, after = order[max(k - 1, 0)], order[min(k + 1, len(x) - 1)]
            first = "bottom right" if y[after] > y[before] else "top right"
            u, v = x[i] / spans[0], y[i] / spans[1]
            boxes = {side: _label_box(u, v, len(text[name][i]), side) for side in LABEL_SIDES}
            free = [side for side in (first, *LABEL_SIDES) if not any(
                boxes[side][0] < b[1] and b[0] < boxes[side][1] and boxes[side][2] < b[3] and b[2] < boxes[side][3]
                for b in placed)]
            out[name][i] = (free or [first])[0]
            placed.append(boxes[out[name][i]])
    return out


def accuracy_throughput(points: list[dict], log_x: bool = False) -> go.Figure:
    """Fig. 3-style curves: points {name, fps, miou, label, ci (optional: [lo, hi])} grouped by name, each point
    labelled clear of its curve and error bar (:func:`label_positions`). A curve whose every point has an interval
    gets error bars. ``log_x``: FPS on a log axis, each tick labelled in full (1, 2, 5 per decade)."""
    series, text, style, cis = {}, {}, {}, {}
    for p in points:
        x, y = series.setdefault(p["name"], ([], []))
        x.append(p["fps"])
        y.append(p["miou"])
        text.setdefault(p["name"], []).append(p.get("label", ""))
        cis.setdefault(p["name"], []).append(p.get("ci"))
    for color, (name, where) in zip(PALETTE, label_positions(series, text, log_x).items()):
        style[name] = dict(color=color, textposition=where)
    intervals = {name: ci for name, ci in cis.items() if all(ci)}
    fig = line_chart(series, "Accuracy vs throughput", "throughput (frames/s, this machine)", "average mIoU (%)",
                     style=style, text=text, intervals=intervals,
                     subtitle="bars: 95% bootstrap intervals over frames" if intervals else None)
    ys = [p["miou"] for p in points]
    fig.update_yaxes(range=[min(ys) - 2, max(ys) + 2])  # room for the labels above and below
    if log_x:
        ticks = log_ticks(min(p["fps"] for p in points), max(p["fps"] for p in points))
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return fig


def schedule_chart(schedules: dict, title: str) -> go.Figure:
    """Adaptive keyframes against fixed l (:func:`gsvlib.schedules.keyframe_schedules`): mIoU over every scored
    frame against modelled FPS, one curve for the fixed intervals and one per policy signal."""
    points = [{"name": "fixed l", "fps": p["fps"], "miou": p["miou"], "label": f"l={l}", "ci": p.get("ci")}
              for l, p in schedules["fixed"].items()]
    points += [{"name": f"{signal} policy", "fps": p["fps"], "miou": p["miou"], "label": f"x{p['factor']:g}",
                "ci": p.get("ci")} for signal, policy in schedules["policies"].items() for p in policy["points"]]
    fig = accuracy_throughput(points)
    fig.update_layout(title=title, xaxis_title="frames per second (modelled from this run's step times)",
                      yaxis_title="mIoU over every scored frame (%)")
    return fig


LOG_MANTISSAS = ((1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9),
                 (1, 1.2, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9), tuple(x / 10 for x in range(10, 100)))


def log_ticks(lo: float, hi: float, least: int = 3) -> list[float]:
    """Tick values for a log axis over [lo, hi] > 0: 1, 2, 5 per decade, or finer mantissas until at least ``least``
    fall inside (a loss between 0.6 and 0.9 gets 0.6, 0.7, 0.8, 0.9, not a bare axis); a range too narrow for any
    of them gets its ends and middle to 4 digits."""
    lo, hi = min(lo, hi), max(lo, hi)
    decades = range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
    for mantissas in LOG_MANTISSAS:
        ticks = [round(m * 10.0 ** e, 12) for e in decades for m in mantissas if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= least:
            return ticks
    return sorted({float(f"{v:.4g}") for v in (lo, math.sqrt(lo * hi), hi)})


def trailing_mean(values: list[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    sums = np.cumsum([0.0, *values])
    return [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(i + 1, window) for i in range(len(values))]


def loss_curves(logs: dict[str, list[dict]], window: int = 20) -> go.Figure:
    """The training loss of each run, thin, and its trend (the mean of the last ``window`` iterations), thick, on a
    log axis whose tick labels read at any range of values (an empty log gives an empty chart)."""
    series, style = {}, {}
    for color, (n, log) in zip(PALETTE, logs.items()):
        x, y = [e["iteration"] for e in log], [e["loss"] for e in log]
        series[n], style[n] = (x, y), dict(color=color, width=1)
        series[f"{n}, mean of the last {window}"] = (x, trailing_mean(y, window))
        style[f"{n}, mean of the last {window}"] = dict(color=color, width=3)
    fig = line_chart(series, "Training loss", "iteration", "loss (log scale)", log_y=True, markers=False, style=style,
                     subtitle="thin: each iteration; thick: the trend")
    losses = [e["loss"] for log in logs.values() for e in log if e["loss"] > 0]
    if losses:
        ticks = log_ticks(min(losses), max(losses))
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return fig


def _bundle(fig: go.Figure) -> dict:
    """The figure as the mime bundle JupyterLab renders: made without displaying, so it prints nothing."""
    return pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())


def _show_in(out, bundle: dict) -> None:
    """Replace what the ``ipywidgets.Output`` ``out`` shows by one figure: its *state* changes, nothing is printed,
    so JupyterLab has nothing to send to its Log console and papermill/nbclient see widget state messages only
    (``interact`` instead captures output inside a callback, which JupyterLab logs and which can hang papermill,
    papermill #723). A plotly figure shown with ``display(..., display_id=...)`` cannot be replaced this way:
    plotly's display ignores the id, so every update adds a figure."""
    out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)


class LiveFigure:
    """A figure shown once and redrawn in place while a cell runs (e.g. a loss curve during training), in JupyterLab
    and Notebook 7 alike: ``live = LiveFigure(fig)`` displays it, ``live.update(fig)`` replaces it."""

    def __init__(self, fig: go.Figure):
        import ipywidgets as widgets
        from IPython.display import display

        self.out = widgets.Output()
        self.update(fig)
        display(self.out)

    def update(self, fig: go.Figure) -> None:
        _show_in(self.out, _bundle(fig))


def scrubber(make_figure, start: int, stop: int, value: int, description: str = "frame"):
    """A slider over ``start..stop`` that shows ``make_figure(value)`` (notebooks); returns the widget box.

    Every value's figure is drawn once, when the cell runs, so that a move of the slider only swaps the figure the
    browser shows: the slider follows a drag. The figures live in an ``ipywidgets.Output`` whose state the slider's
    callback replaces (:func:`_show_in`).
    """
    import ipywidgets as widgets
    from IPython.display import display

    bundles = {n: _bundle(make_figure(n)) for n in range(start, stop + 1)}
    slider = widgets.IntSlider(value=value, min=start, max=stop, description=description, continuous_update=True)
    out = widgets.Output()
    _show_in(out, bundles[value])
    slider.observe(lambda change: _show_in(out, bundles[change["new"]]), names="value")
    box = widgets.VBox([slider, out])
    display(box)
    return box


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
    """Write ``fig`` as a PNG carrying the kit's mark; returns the renderer used: "kaleido", or "matplotlib" when no
    browser is present. A PNG already at ``path`` that the kit did not write (no mark) is refused, before drawing."""
    path = output_path(Path(path))
    check_file_output(path, "the figure", kind="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    renderer = _draw(fig, path, scale)
    mark_png(path)
    return renderer


def _draw(fig: go.Figure, path: Path, scale: float) -> str:
    global _KALEIDO_SERVER
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


def _rgb(color: str) -> tuple[float, ...]:
    """Plotly's "rgb(r, g, b)" -> matplotlib's (r, g, b) in 0..1."""
    return tuple(int(v) / 255 for v in color[color.index("(") + 1:-1].split(","))


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
    used, keys = set(), []
    for trace in fig.data:
        if trace.type == "heatmap" and trace.opacity == 0:  # hover text only: nothing to draw
            continue
        if trace.type == "scatter" and all(x is None for x in trace.x):  # a legend key (image_grid's classes)
            keys.append(plt.Line2D([], [], linestyle="", marker="s", color=_rgb(trace.marker.color),
                                   label=trace.name))
            continue
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
        elif trace.type == "bar":  # per-bar "rgb(r,g,b)" colours (a palette chart), or one colour per trace
            colors = trace.marker.color
            ax.bar(list(trace.x), list(trace.y), label=trace.name, alpha=0.6 if colors is None else 1.0,
                   color=None if colors is None else [_rgb(c) for c in colors])
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
            ax.set_yticks([])
        elif trace.type == "scatter":
            style = {"dash": "--", "dot": ":"}.get(trace.line.dash, "-")
            ax.plot(trace.x, trace.y, style + ("o" if "markers" in (trace.mode or "") else ""), label=trace.name,
                    markersize=3, color=trace.line.color)
            if trace.error_y.array is not None:  # the 95% intervals of line_chart
                ax.errorbar(trace.x, trace.y, yerr=[trace.error_y.arrayminus, trace.error_y.array], fmt="none",
                            ecolor=trace.line.color, elinewidth=0.8, capsize=2)
            if trace.text is not None:
                where = trace.textposition
                for x, y, t, at in zip(trace.x, trace.y, trace.text, where if isinstance(where, tuple) else
                                       [where] * len(trace.x)):
                    below, left = str(at).startswith("bottom"), str(at).endswith("left")
                    ax.annotate(t, (x, y), fontsize=7, xytext=(-3 if left else 3, -3 if below else 3),
                                textcoords="offset points", va="top" if below else "bottom",
                                ha="right" if left else "left")
            ax.set_xlabel(fig.layout.xaxis.title.text or "")
            ax.set_ylabel(fig.layout.yaxis.title.text or "")
            if fig.layout.yaxis.type == "log":
                ax.set_yscale("log")
            if fig.layout.xaxis.type == "log":
                ax.set_xscale("log")
            if fig.layout.xaxis.tickvals:  # ticks the figure labels itself (log_ticks)
                ax.set_xticks(list(fig.layout.xaxis.tickvals), list(fig.layout.xaxis.ticktext))
                ax.minorticks_off()
            elif fig.layout.xaxis.dtick:
                ax.set_xticks(np.arange(min(trace.x), max(trace.x) + 1e-9, fig.layout.xaxis.dtick))
            ax.legend(fontsize=7)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k not in used:
            ax.axis("off")
        elif k < len(titles):
            ax.set_title(titles[k], fontsize=8)
    if fig.layout.title.text:  # a subtitle (:func:`titled`) on a second line
        mfig.suptitle(fig.layout.title.text.replace("<br>", "\n").replace("<sup>", "").replace("</sup>", ""))
    per_row = 6
    if keys:  # below the panels, as plotly draws it, in a band of 6 % of the height per row of keys
        mfig.legend(handles=keys, loc="lower center", ncol=min(len(keys), per_row), fontsize=7, frameon=False)
    mfig.tight_layout(rect=(0, 0.06 * math.ceil(len(keys) / per_row), 1, 1))
    mfig.savefig(path, dpi=100)
    plt.close(mfig)
