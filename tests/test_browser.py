"""The notebooks as a user meets them: JupyterLab in Chromium, every cell run, every slider moved, hover read.

papermill and nbval run the kernel side only; what JupyterLab shows (figures redrawn from a widget callback, output
sent to the Log console, a widget that fails to render) only a browser can see. For each notebook with a widget or
a live figure this test runs all cells in JupyterLab, checks that no cell shows an error, moves each slider with the
keyboard and drags it with the mouse, asserts that the figure's pixels change (within a few seconds of a key press,
and before a drag is released) and that the Log console stays empty; it prints how long each redraw took. It checks
that notebook 05's loss curve is one figure redrawn in place, and reads the hover text of notebook 04's kernel
inspector. Screenshots land in build/screenshots/ for people to look at.

It needs Debian's chromium and the playwright package (`make test` installs both in CI). Elsewhere it skips, saying
what is missing.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import time
from pathlib import Path

import pytest

from browser import CHROMIUM_FLAGS, JupyterLab, find_chromium, log_console_count, run_all_cells
from test_notebooks import ROOT, SMALL

BUILD = ROOT / "build"
SHOTS = BUILD / "screenshots"
WIDGET_NOTEBOOKS = ("01_data", "04_guided_dynamic_filtering", "05_training", "07_qualitative")
LIVE_ITERATIONS = 12  # notebook 05 here: its loss figure is redrawn every 2 of them
VIEWPORT = {"width": 1440, "height": 1000}  # JupyterLab's output area is then about 950 px wide beside the file browser
CHANGE_TIMEOUT_S = 10


def _requirements() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "no chromium on PATH (Debian: apt-get install chromium; `make test` does this as root)"
    return None


missing = _requirements()
if missing and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the browser test, but {missing}")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing is not None, reason=missing or "")]


@pytest.fixture(scope="module")
def lab_page():
    """A JupyterLab on the repository and a Chromium page; notebooks are opened from build/browser/."""
    from playwright.sync_api import sync_playwright

    BUILD.mkdir(exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with JupyterLab(ROOT, BUILD / "jupyterlab.log") as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        yield lab, page
        browser.close()


def _parameterized(name: str) -> str:
    """A copy of the notebook with the CI-sized parameters injected (not executed), beside the others it needs."""
    import nbformat
    import papermill as pm
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    src = ROOT / "notebooks" / f"{name}.ipynb"
    work = BUILD / "browser-work"
    small = SMALL | {"root": str(work / "data"), "runs": str(work / "runs"), "figures": str(work / "figures"),
                     "out": str(work / "nb05"), "iterations": LIVE_ITERATIONS}
    shutil.rmtree(work / "nb05", ignore_errors=True)  # 05 trains afresh: its figure must be redrawn as it goes
    names = set(pm.inspect_notebook(str(src)))
    book = parameterize_notebook(load_notebook_node(str(src)), {k: v for k, v in small.items() if k in names})
    out = BUILD / "browser" / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, out)
    return str(out.relative_to(ROOT))


def _page_text(page) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_text_contents())


def _figure_under(slider):
    box = slider.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
    figure = box.locator(".widget-output").first
    figure.scroll_into_view_if_needed()
    figure.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    return figure


def _until_changed(figure, before: bytes) -> float:
    start = time.monotonic()
    while time.monotonic() - start < CHANGE_TIMEOUT_S:
        if figure.screenshot() != before:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"the figure under the slider did not change within {CHANGE_TIMEOUT_S} s")


def _move_slider(page, slider, presses: int = 4) -> list[float]:
    """Press an arrow key on the slider's handle ``presses`` times, each after the figure settled; returns the seconds
    until its pixels changed after each press (a screenshot takes part of them: an upper bound). The page itself
    records when plotly finished drawing each new figure (``window.__drawnAfterKey``)."""
    figure = _figure_under(slider)
    handle = slider.locator(".noUi-handle").first
    maximum = int(handle.get_attribute("aria-valuemax").split(".")[0])
    seconds = []
    for _ in range(presses):
        value = int(_readout(page, slider))
        page.wait_for_timeout(300)  # the last redraw settles
        before = figure.screenshot()
        handle.focus()
        page.keyboard.press("ArrowLeft" if value >= maximum else "ArrowRight")
        seconds.append(_until_changed(figure, before))
    return seconds


def _readout(page, slider) -> str:
    """The slider's value as its readout shows it, once the widget has drawn it (a slider of a cell that ran last can
    still be empty for a moment on a busy machine)."""
    readout = slider.locator(".widget-readout")
    for _ in range(CHANGE_TIMEOUT_S * 10):
        text = readout.inner_text().strip()
        if text:
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"the slider's readout stayed empty for {CHANGE_TIMEOUT_S} s")


def _drag_follows(page, slider) -> None:
    """Drag the handle a third of the track with the button held: the figure must change before the release."""
    figure = _figure_under(slider)
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-target").first.bounding_box()
    start = handle.bounding_box()
    page.wait_for_timeout(300)
    before = figure.screenshot()
    x, y = start["x"] + start["width"] / 2, start["y"] + start["height"] / 2
    direction = -1 if x > track["x"] + track["width"] / 2 else 1
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(x + direction * k * track["width"] / 15, y)
        page.wait_for_timeout(100)
    try:
        _until_changed(figure, before)
    finally:
        page.mouse.up()


def _check_live_loss_curve(page) -> None:
    """05: the loss curve is one figure, redrawn in place while training: plotly drew more than once, one figure
    remains, and it holds every iteration."""
    plots = page.locator(".jp-OutputArea-output .js-plotly-plot", has_text="Training loss")
    assert plots.count() == 1, f"{plots.count()} loss figures: updates must replace the figure, not add one"
    drawn = page.evaluate("() => window.__plotsAdded")
    assert drawn >= 3, f"the loss figure was drawn {drawn} times: it was not redrawn during training"
    points = plots.first.evaluate("el => el.data[0].x.length")
    assert points == LIVE_ITERATIONS, points
    plots.first.scroll_into_view_if_needed()
    plots.first.screenshot(path=str(SHOTS / "05_loss_curve.png"))


def _check_figures_fit(page) -> None:
    widths = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output .main-svg:first-of-type')]
        .map(svg => [svg.getBoundingClientRect().width, svg.closest('.jp-OutputArea-output').clientWidth])""")
    assert widths, "no plotly figure was drawn"
    too_wide = [w for w in widths if w[0] > w[1] + 1]
    assert not too_wide, f"figures wider than the output area (figure px, area px): {too_wide}"


@pytest.mark.parametrize("name", WIDGET_NOTEBOOKS)
def test_notebook_works_live_in_jupyterlab(lab_page, name):
    lab, page = lab_page
    page.goto(lab.url(_parameterized(name)))
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    page.evaluate("""() => { window.__plotsAdded = 0;  // plotly figures drawn into the page, redraws included
        window.__keyAt = null; window.__drawnAfterKey = [];  // ms from a key press until a new figure was drawn
        document.addEventListener('keydown', () => { window.__keyAt = performance.now(); }, true);
        new MutationObserver(records => { for (const r of records) for (const n of r.addedNodes) {
            if (n.nodeType !== 1) continue;
            const plot = n.matches('.js-plotly-plot') ? n : n.querySelector('.js-plotly-plot');
            if (!plot) continue;
            window.__plotsAdded += 1;
            if (window.__keyAt !== null && plot.once) plot.once('plotly_afterplot', () => {
                window.__drawnAfterKey.push(performance.now() - window.__keyAt); window.__keyAt = null; });
        } }).observe(document.body, {childList: true, subtree: true}); }""")
    seconds = run_all_cells(page, timeout_s=600)
    page.wait_for_timeout(1000)  # let the last figures render
    text = _page_text(page)
    assert "Traceback (most recent call last)" not in text, text[-3000:]
    assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()
    _check_figures_fit(page)
    sliders = page.locator(".widget-slider")
    steps = []
    page.evaluate("() => { window.__keyAt = null; window.__drawnAfterKey = []; }")  # from here on: slider keys only
    for i in range(sliders.count()):
        steps += _move_slider(page, sliders.nth(i))
        _drag_follows(page, sliders.nth(i))
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
    assert log_console_count(page) == 0, "output went to JupyterLab's Log console instead of the notebook"
    if steps:
        drawn = page.evaluate("() => window.__drawnAfterKey")
        assert len(drawn) == len(steps), f"{len(steps)} key presses drew {len(drawn)} new figures"
        print(f"{name}: all cells in {seconds:.1f} s; a key press on the slider redrew the figure in "
              f"{statistics.median(steps):.2f} s by screenshots (median of {len(steps)}; slowest {max(steps):.2f} s), "
              f"plotly finished drawing it {statistics.median(drawn) / 1000:.2f} s after the press (median of "
              f"{len(drawn)}; slowest {max(drawn) / 1000:.2f} s); a drag redrew it before the release")
    else:
        print(f"{name}: all cells in {seconds:.1f} s")
    if name.startswith("04"):
        _check_kernel_hover(page)
    if name.startswith("05"):
        _check_live_loss_curve(page)


def _check_kernel_hover(page) -> None:
    """Hovering over the kernel inspector shows the pixel's whole kernel: 3x3 weights and the intra weight."""
    plot = page.locator(".js-plotly-plot", has_text="winning tap").first
    plot.scroll_into_view_if_needed()
    area = plot.locator(".nsewdrag").first
    box = area.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6)
    hover = plot.locator(".hoverlayer .hovertext")
    hover.first.wait_for(timeout=5_000)
    text = hover.first.text_content()
    page.screenshot(path=str(SHOTS / "04_kernel_hover.png"))
    kernel = text[text.rindex("kernel"):]  # after the trace's name, which says "kernel" too
    weights = re.findall(r"\d\.\d\d", kernel)
    assert "intra" in kernel and len(weights) == 10, text
    assert abs(sum(map(float, weights)) - 1) < 0.06, f"a kernel's weights sum to 1 (to rounding): {text}"


EQUATION_NOTEBOOKS = ("00_tour", "02_flow_and_warp", "03_ideal_delay_and_edges", "04_guided_dynamic_filtering")
RAW_MATH = re.compile(r"_\{|\^-\*|\^-_|\\hat|\\theta|\\odot|\\big")  # TeX or markdown-mangled math left as text


@pytest.mark.parametrize("name", EQUATION_NOTEBOOKS)
def test_the_equations_render_as_mathematics(lab_page, name):
    """The paper's equations are LaTeX, which JupyterLab typesets with MathJax: the rendered markdown shows math
    elements and no TeX source or markdown-mangled subscripts."""
    lab, page = lab_page
    copy = BUILD / "browser" / f"{name}.ipynb"  # a copy: JupyterLab may save what it opens
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes((ROOT / "notebooks" / f"{name}.ipynb").read_bytes())
    page.goto(lab.url(str(copy.relative_to(ROOT))))
    page.locator(".jp-Notebook .jp-MarkdownCell").first.wait_for(timeout=60_000)
    dialog = page.locator(".jp-Dialog")  # a kernel picker: the equations need none
    if dialog.count():
        page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelectorAll('.jp-RenderedMarkdown mjx-container').length > 0",
                           timeout=30_000)
    page.evaluate("""async () => {  // every markdown cell is laid out and typeset, also those below the fold
        const scroller = document.querySelector('.jp-WindowedPanel-outer') || document.querySelector('.jp-Notebook');
        for (let y = 0; y < scroller.scrollHeight; y += 400) { scroller.scrollTop = y;
            await new Promise(r => setTimeout(r, 150)); } }""")
    page.wait_for_timeout(1500)
    text = "\n".join(page.locator(".jp-MarkdownCell .jp-RenderedMarkdown").all_text_contents())
    maths = page.locator(".jp-RenderedMarkdown mjx-container").count()
    page.locator(".jp-RenderedMarkdown mjx-container").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / f"{name}_equations.png"))
    assert maths >= 3, f"{name}: {maths} typeset formulas"
    assert not RAW_MATH.search(text), RAW_MATH.search(text)
