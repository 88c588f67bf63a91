"""The figure helpers: panels that read under the mouse, figures that fit the notebook, a slider that redraws."""
import numpy as np
import pytest

from gsvlib.data.labels import CAMVID, CITYSCAPES
from gsvlib.pictures import legend_strip
from gsvlib.viz import OUTPUT_WIDTH, Panel, flow_panel, heatmap_grid, image_grid, label_panel, scrubber


def test_label_panel_hover_names_the_class_at_each_cell_centre():
    labels = np.zeros((16, 24), np.uint8)
    labels[:8, 8:16] = 3  # road in the top middle cell
    labels[8:, :] = 255  # void below
    panel = label_panel(labels, CAMVID)
    assert panel.image.shape == (16, 24, 3)
    assert panel.hover.tolist() == [["sky", "road", "sky"], ["void", "void", "void"]]


def test_flow_panel_hover_reads_each_vector():
    flow = np.zeros((2, 3, 2), np.float32)
    flow[1, 2] = (1.5, -0.25)
    panel = flow_panel(flow, factor=8)
    assert panel.image.shape == (16, 24, 3)
    assert panel.hover[1, 2] == "flow (dx, dy) = (+1.50, -0.25) px"
    assert flow_panel(np.zeros((16, 24, 2)), factor=1, stride=8).hover.shape == (2, 3)
    big = flow_panel(np.zeros((12, 16, 2), np.float32), factor=8)  # 96x128: the colour wheel sits bottom right
    wheel = big.image[96 - 25:95, 128 - 25:127]
    assert len(np.unique(wheel.reshape(-1, 3), axis=0)) > 50 and (big.image[:60, :80] == 255).all()
    assert (flow_panel(np.zeros((12, 16, 2), np.float32), factor=8, key=False).image == 255).all()


def test_legend_strip_names_every_class_within_the_width():
    strip = legend_strip(CITYSCAPES, 480)
    assert strip.shape[1] == 480 and 2 * 20 <= strip.shape[0] <= 6 * 20  # a few rows of swatches
    for color in CITYSCAPES.colors:  # every swatch is drawn
        assert (strip.reshape(-1, 3) == color).all(1).any(), color


def test_image_grid_fits_the_output_area_and_carries_hover_and_legend():
    panels = {"a": label_panel(np.zeros((64, 96), np.uint8), CAMVID), "b": Panel(np.zeros((64, 96, 3), np.uint8))}
    fig = image_grid(panels, cols=2, legend=CAMVID)
    assert fig.layout.width <= 950
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 1 and heat[0].text[0][0] == "sky" and heat[0].opacity == 0  # only "a" has hover
    assert [t.name for t in fig.data if t.type == "scatter"] == list(CAMVID.classes)
    images = [t for t in fig.data if t.type == "image"]
    assert all(t.hoverinfo == "skip" for t in images)  # no raw RGBA values on hover
    assert all(t.zsmooth is False for t in images)  # blown up 4.7x: square pixels


def test_image_grid_draws_pictures_wider_than_their_panel_as_encoded():
    """Repainting a 352x480 picture pixel by pixel took 0.6 s of each slider step in JupyterLab (docs/notebooks.md)."""
    big = Panel(np.zeros((352, 480, 3), np.uint8))
    assert [t.zsmooth for t in image_grid({"a": big, "b": big, "c": big}, cols=3).data] == ["fast"] * 3
    assert [t.zsmooth for t in image_grid({"a": big}, cols=1).data] == [False]  # 920 px wide: blown up


def test_heatmap_grid_hover_can_carry_text_per_pixel():
    fig = heatmap_grid({"m": np.zeros((2, 3))}, cols=1, hover=np.full((2, 3), "kernel", dtype=object))
    assert fig.layout.width == OUTPUT_WIDTH and fig.data[0].text[1][2] == "kernel"


def test_scrubber_redraws_by_replacing_the_output_widget_state(capsys):
    pytest.importorskip("ipywidgets")
    drawn = []

    def figure(n):
        drawn.append(n)
        return image_grid({f"frame {n}": Panel(np.full((8, 8, 3), n, np.uint8))}, cols=1)

    box = scrubber(figure, 0, 4, 2)
    slider, out = box.children
    assert drawn == [0, 1, 2, 3, 4]  # every figure drawn when the cell runs: a move only swaps them
    assert slider.continuous_update  # the figure follows a drag, not only its release
    first = out.outputs
    capsys.readouterr()
    slider.value = 4
    assert drawn == [0, 1, 2, 3, 4]
    assert out.outputs != first and len(out.outputs) == 1
    title = out.outputs[0]["data"]["application/vnd.plotly.v1+json"]["layout"]["annotations"][0]["text"]
    assert title == "frame 4"
    assert capsys.readouterr().out == ""  # the callback displays nothing: no output for JupyterLab's Log console


def test_a_live_figure_replaces_its_one_figure_at_each_update(capsys):
    pytest.importorskip("ipywidgets")
    from gsvlib.viz import LiveFigure, loss_curves

    log = []
    live = LiveFigure(loss_curves({"gsv": log}))
    capsys.readouterr()
    for i in range(1, 4):
        log.append({"iteration": i, "loss": 1.0 / i})
        live.update(loss_curves({"gsv": log}))
    assert len(live.out.outputs) == 1  # one figure, replaced, never a second one
    shown = live.out.outputs[0]["data"]["application/vnd.plotly.v1+json"]["data"][0]
    assert shown["x"] == [1, 2, 3]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("lo, hi", [(0.6, 0.9), (0.31, 0.33), (0.02, 3.0), (1.5, 2.9), (0.3, 0.301)])
def test_a_log_axis_labels_at_least_three_ticks_and_not_too_many(lo, hi):
    from gsvlib.viz import log_ticks, loss_curves

    ticks = log_ticks(lo, hi)
    assert 3 <= len(ticks) <= 12 and ticks == sorted(ticks)
    assert all(lo * 0.999 <= t <= hi * 1.001 for t in ticks)  # inside the range (to the 4 digits of a label)
    fig = loss_curves({"run": [{"iteration": 1, "loss": lo}, {"iteration": 2, "loss": hi}]})
    assert list(fig.layout.yaxis.tickvals) == ticks


def test_the_matplotlib_fallback_draws_grouped_bars_without_per_bar_colours(tmp_path):
    """Without a browser for kaleido, export draws with matplotlib: grouped bars (one colour per trace, as notebook
    08's per-class chart) and palette bars (a colour per bar) both come out as a PNG."""
    import plotly.graph_objects as go

    from gsvlib.viz import _matplotlib_export

    grouped = go.Figure([go.Bar(name=m, x=["road", "car"], y=[80.0 + i, 60.0 - i]) for i, m in enumerate("ab")])
    palette = go.Figure(go.Bar(x=["road", "car"], y=[1, 1], marker_color=["rgb(128,64,128)", "rgb(0,0,142)"]))
    for name, fig in (("grouped", grouped), ("palette", palette)):
        _matplotlib_export(fig, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_matplotlib_fallback_draws_each_curve_in_its_colour_with_its_error_bars(tmp_path):
    from PIL import Image

    from gsvlib.viz import _matplotlib_export, accuracy_throughput

    points = [{"name": "image-only", "fps": 1.0, "miou": 60.0, "label": "x1"}]  # PALETTE[0], matplotlib's first too
    points += [{"name": "GSVNet", "fps": f, "miou": m, "label": f"l={l}", "ci": [m - 8, m + 8]}
               for l, (f, m) in enumerate(((2.0, 70.0), (5.0, 60.0), (40.0, 50.0)), 1)]
    _matplotlib_export(accuracy_throughput(points, log_x=True), tmp_path / "curve.png")
    png = np.asarray(Image.open(tmp_path / "curve.png").convert("RGB")).astype(int)  # (H, W, 3)
    red = np.abs(png - (0xD6, 0x27, 0x28)).sum(-1) < 40  # PALETTE[1]: GSVNet's colour in plotly
    rows = np.flatnonzero(red.any(1))
    assert red.sum() > 300 and rows.max() - rows.min() > 0.5 * png.shape[0]  # its line and its bars, +-8 points


def test_the_matplotlib_fallback_draws_label_pictures_under_their_hover_grid_and_the_legend_beside_them(tmp_path):
    """Label panels carry an invisible heatmap for their hover text and the classes as legend-only traces: the
    fallback must draw neither over the pictures (plotly draws the heatmap transparent, the legend below)."""
    from PIL import Image

    from gsvlib.viz import _matplotlib_export

    labels = np.kron(np.arange(4, dtype=np.uint8).reshape(2, 2), np.ones((64, 96), np.uint8))  # (128, 192), 4 classes
    panel = label_panel(labels, CAMVID)
    _matplotlib_export(image_grid({"left": panel, "right": panel}, cols=2, legend=CAMVID, legend_ids=range(4)),
                       tmp_path / "grid.png")
    png = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)  # (H, W, 3)
    halves = png[:, : png.shape[1] // 2], png[:, png.shape[1] // 2:]
    for c in range(4):
        near = [(np.abs(h - CAMVID.colors[c]).sum(-1) < 12).sum() for h in halves]  # pixels of class c's colour
        assert min(near) > 500, (CAMVID.classes[c], near)  # drawn in both panels, not hidden under the heatmap
        assert abs(near[0] - near[1]) < 0.05 * max(near), (CAMVID.classes[c], near)  # the legend covers neither


def test_a_legend_keys_only_the_classes_asked_for():
    picture = np.zeros((32, 48, 3), np.uint8)
    names = [t.name for t in image_grid({"a": picture}, legend=CITYSCAPES, legend_ids=[0, 2, 255]).data if t.name != "a"]
    assert names == [CITYSCAPES.classes[0], CITYSCAPES.classes[2]]  # 255 (ignore) is no class
    everything = [t for t in image_grid({"a": picture}, legend=CITYSCAPES).data if t.name != "a"]
    assert len(everything) == CITYSCAPES.num_classes


def test_photographs_travel_as_jpeg_and_flat_colours_as_exact_png():
    from gsvlib.viz import _decode_data_uri, image_data_uri

    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(128, 30, (64, 96, 3)).cumsum(1) / 8, 0, 255).astype(np.uint8)  # smooth noisy texture
    labels = label_panel(np.kron(np.arange(6, dtype=np.uint8).reshape(2, 3), np.ones((32, 32), np.uint8)), CAMVID).image
    assert image_data_uri(photo).startswith("data:image/jpeg;base64,")
    assert image_data_uri(labels).startswith("data:image/png;base64,")
    assert np.array_equal(_decode_data_uri(image_data_uri(labels)), labels)  # class colours exact
    assert _decode_data_uri(image_data_uri(photo)).shape == photo.shape


def test_a_figure_replaces_only_a_png_the_kit_wrote(tmp_path, monkeypatch):
    """A user's picture where a notebook (papermill -p figures DIR) or `make figures` exports one of the same name: refused
    and kept. The kit's own PNGs carry a tEXt mark and are replaced; the mark leaves the picture as it was."""
    import plotly.graph_objects as go
    from PIL import Image

    from gsvlib import viz
    from gsvlib.data.io import write_png
    from gsvlib.files import OWN_FILES, mark_png

    monkeypatch.setattr(viz, "find_browser", lambda: None)  # the matplotlib path: no browser needed
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    mine = tmp_path / "03_edges_and_errors.png"
    write_png(mine, np.full((8, 8, 3), 7, np.uint8))
    before = mine.read_bytes()
    with pytest.raises(FileExistsError, match="is not a figure the kit wrote"):
        viz.export(fig, mine)
    assert mine.read_bytes() == before
    ours = tmp_path / "ours.png"
    for _ in range(2):
        viz.export(fig, ours)
        assert OWN_FILES["png"][0](ours)
    assert Image.open(ours).text.get("Comment") == "written by gsvkit"
    picture = np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "p.png", picture)
    assert not OWN_FILES["png"][0](tmp_path / "p.png")
    mark_png(tmp_path / "p.png")
    assert OWN_FILES["png"][0](tmp_path / "p.png") and np.array_equal(np.asarray(Image.open(tmp_path / "p.png")), picture)


def test_the_loss_trend_is_the_mean_of_the_last_iterations_beside_each_raw_curve():
    from gsvlib.viz import loss_curves, trailing_mean

    assert trailing_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    fig = loss_curves({"gsv": [{"iteration": i, "loss": l} for i, l in enumerate([0.8, 0.2, 0.6, 0.4], 1)]}, window=4)
    raw, trend = fig.data
    assert list(raw.y) == [0.8, 0.2, 0.6, 0.4] and list(trend.y) == pytest.approx([0.8, 0.5, 1.6 / 3, 0.5])
    assert trend.line.color == raw.line.color and trend.line.width > raw.line.width


def test_point_labels_sit_right_of_their_error_bars_on_the_side_their_curve_leaves_free():
    from gsvlib.viz import accuracy_throughput, label_positions

    # a curve that rises to a peak (above it lies free), then falls through two points close in x (GSVNet's l = 3..5)
    rising_then_falling = ([4.0, 9.5, 19.0, 29.0, 30.0], [60.6, 69.5, 69.9, 66.0, 62.3])
    assert label_positions({"a": rising_then_falling}, {"a": ["l=1"] * 5}) == {
        "a": ["bottom right", "bottom right", "top right", "top right", "top right"]}
    assert label_positions({"a": ([30.0, 16.0], [60.3, 69.9])}, {"a": ["p", "q"]}) == {"a": ["top right"] * 2}
    assert label_positions({"a": ([5.0], [60.0])}, {"a": ["p"]}) == {"a": ["top right"]}
    points = [{"name": "GSVNet", "fps": f, "miou": m, "label": f"l={l}"} for l, (f, m) in
              enumerate(((16.0, 69.9), (29.0, 67.0), (30.0, 65.3)), 1)]
    assert accuracy_throughput(points).data[0].textposition == ("top right",) * 3


def test_a_label_moves_off_a_label_placed_before_it():
    from gsvlib.viz import label_positions

    # GSVNet at l = 1 runs the keyframe net at the scale of one image-only point: both points coincide
    series = {"GSVNet": ([0.95, 1.7, 3.1], [69.4, 65.7, 60.4]), "image-only": ([0.45, 0.93, 2.5], [70.2, 69.4, 64.9])}
    text = {"GSVNet": ["l=1", "l=2", "l=3"], "image-only": ["x1.0", "x0.75", "x0.5"]}
    assert label_positions(series, text, log_x=True) == {
        "GSVNet": ["top right"] * 3,  # placed first, each where its curve falls
        "image-only": ["top right", "bottom right", "top right"]}  # x0.75: below, clear of l=1's label
    # the 480x360 points: l=1 and l=2 far enough apart for their short labels; x0.5 below them, clear of both
    series = {"GSVNet": ([16.0, 22.0, 38.0], [69.88, 69.85, 68.6]), "image-only": ([4.5, 9.5, 19.0], [66.6, 69.5, 69.9])}
    text = {"GSVNet": ["l=1", "l=2", "l=3"], "image-only": ["x1.0", "x0.75", "x0.5"]}
    assert label_positions(series, text, log_x=True) == {"GSVNet": ["top right"] * 3, "image-only": ["bottom right"] * 3}
    # a longer label at the same spot as a placed one has to move
    crowded = label_positions({"a": ([10.0, 10.2, 100.0], [50.0, 50.0, 40.0])}, {"a": ["a long label", "b", "c"]})
    assert crowded == {"a": ["top right", "bottom right", "top right"]}


def test_the_accuracy_throughput_plot_labels_every_log_tick_in_full():
    from gsvlib.viz import accuracy_throughput

    points = [{"name": "GSVNet", "fps": f, "miou": m, "label": f"l={l}"} for l, (f, m) in
              enumerate(((0.6, 70.0), (4.0, 68.0), (43.0, 65.0)), 1)]
    fig = accuracy_throughput(points, log_x=True)
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.ticktext) == ["1", "2", "5", "10", "20"]
