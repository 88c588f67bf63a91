"""Every notebook runs top to bottom under papermill with small parameters (CI-sized), and is committed clean.

The executed notebooks land in build/notebooks/, where `make test` then validates them with nbval (--nbval-lax:
cells marked NBVAL_CHECK_OUTPUT must reproduce their output exactly).
"""
import json
import re
import shutil
from pathlib import Path

import pytest

from gsvlib.notebook import PARAMETERS_CELL, check_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BUILD = ROOT / "build"
WORK = BUILD / "nb-work"  # data and runs of the CI-sized runs, shared by the notebooks in order
SMALL = dict(snippets=2, val_snippets=1, height=64, width=128, keyframe_iterations=3, gsv_iterations=3, batch_size=2,
             root=str(WORK / "data"), runs=str(WORK / "runs"),  # figures: the default, under runs/
             camvid_root=str(ROOT.parent / "shared" / "camvid"), camvid_weights=str(ROOT / "weights" /
             "camvid_swiftnet_gsvnet.pt"), camvid_results=str(ROOT / "figures" / "camvid"), camvid_bisenet="",
             camvid_again=["held-out"],  # the test/ scores at three scales take minutes more
             cost_height=256, cost_width=512, policy_factors=[1, 3], policy_max_interval=5,
             bench_height=64, bench_width=128, bench_repeats=1, iterations=4, log_every=2, out=str(WORK / "nb05"),
             sweep_out=str(WORK / "sweep"), values=[0.001, 0.003], scored_intervals=2, results=str(WORK / "results"))


@pytest.fixture(scope="module")
def clean_work():
    shutil.rmtree(WORK, ignore_errors=True)
    (BUILD / "notebooks").mkdir(parents=True, exist_ok=True)
    return WORK


def test_the_readme_lists_every_notebook_in_order_with_what_it_builds():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| \[`(\d\d_\w+)`\]\(notebooks/(\d\d_\w+)\.ipynb\) \| (.+) \|$", readme, re.M)
    assert [p.stem for p in NOTEBOOKS] == [name for name, _, _ in rows] == [link for _, link, _ in rows]
    assert [p.stem[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]  # numbered without gaps
    assert all(len(what) > 40 for _, _, what in rows)


def test_the_readme_tables_copied_from_generated_files_match_them():
    """A README table under `<!-- from FILE -->` is a copy of lines of FILE (written by `gsv tables` or the tour):
    it cannot drift from the numbers."""
    readme = (ROOT / "README.md").read_text()
    copies = re.findall(r"<!-- from (\S+) -->\n((?:\|.*\n)+)", readme)
    assert len(copies) == 2
    for source, table in copies:
        lines = (ROOT / source).read_text().splitlines()
        assert all(line in lines for line in table.splitlines()), source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs_and_has_parameters(path):
    book = json.loads(path.read_text())
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "strip outputs before committing"
    assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell is the papermill parameters cell"
    assert "assert " in "".join(code[-1]["source"]), "the last cell checks what the notebook showed"
    parameters = "".join(code[0]["source"])
    assert parameters.startswith(PARAMETERS_CELL)
    ns = {"In": ["", parameters]}
    exec(parameters, ns)  # every default is a literal, so the next cell can check a parameter's type against it
    check_parameters(ns)
    assert "check_parameters(globals())" in "".join(code[1]["source"])


def test_a_parameter_of_the_wrong_type_is_refused_naming_it():
    cell = f"{PARAMETERS_CELL}\nrecipe = 'paper'  # a comment\niterations = 60\nscale = 0.75\nlive = True\n"
    check_parameters({"In": ["", cell], "recipe": "x", "iterations": 3, "scale": 1, "live": False})  # 1 for 0.75
    for name, bad in [("iterations", "ten"), ("iterations", 2.5), ("iterations", True), ("scale", "1"),
                      ("live", 1), ("recipe", 0)]:
        ns = {"In": ["", cell], "recipe": "x", "iterations": 3, "scale": 1, "live": False, name: bad}
        with pytest.raises(TypeError, match=f"{name} = {re.escape(repr(bad))} should be .* like its default"):
            check_parameters(ns)
    check_parameters({"iterations": "ten"})  # no parameters cell ran (a notebook opened without one): nothing to check


def test_the_layer_table_gives_each_conv_and_batch_norm_its_settings():
    import torch.nn as nn

    from gsvlib.models.describe import layer_table

    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=2, dilation=2, bias=False), nn.BatchNorm2d(8, eps=1e-3),
                        nn.ReLU(), nn.Conv2d(8, 2, (1, 3), padding=(0, 1)))
    rows = layer_table(net).splitlines()[2:]
    assert rows == ["| `0` | conv | 3 -> 8 | 3 | 2 | 2 | 2 | 1 | no bias |",
                    "| `1` | batch norm | 8 | | | | | | eps 0.001, momentum 0.1 |",
                    "| `3` | conv | 8 -> 2 | 1x3 | 1 | 0x1 | 1 | 1 | bias |"]


def test_warnings_inside_the_block_are_printed_once_each_as_plain_notes(capsys):
    import warnings

    from gsvlib.notebook import warnings_as_notes

    with warnings_as_notes():
        for _ in range(2):
            warnings.warn("the CPU is busy")
        warnings.warn("another")
    assert capsys.readouterr().out == "note: the CPU is busy\nnote: another\n"


@pytest.mark.slow
def test_papermill_stops_at_a_wrong_typed_parameter_with_its_name(tmp_path):
    import papermill as pm

    path = ROOT / "notebooks" / "05_training.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match="iterations = 'ten' should be a whole number"):
        pm.execute_notebook(str(path), str(tmp_path / "05.ipynb"), parameters={"iterations": "ten"},
                            kernel_name="python3", cwd=str(path.parent), progress_bar=False, execution_timeout=120)


def git_status() -> str | None:
    """``git status`` of the repository (every untracked file listed), or None outside a git clone."""
    import subprocess

    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_with_small_parameters_and_leaves_the_repository_clean(path, clean_work):
    """Its figures go under runs/ by default (figures/ is refreshed on purpose, with `-p figures ../figures`)."""
    import papermill as pm

    names = set(pm.inspect_notebook(str(path)))
    params = {k: v for k, v in SMALL.items() if k in names}
    before = git_status()
    pm.execute_notebook(str(path), str(BUILD / "notebooks" / path.name), parameters=params, kernel_name="python3",
                        cwd=str(path.parent), progress_bar=False, execution_timeout=600)
    assert git_status() == before, "the notebook changed files git tracks or left untracked ones"
    executed = json.loads((BUILD / "notebooks" / path.name).read_text())
    stderr = [(k, "".join(o["text"])[:200]) for k, cell in enumerate(executed["cells"])
              for o in cell.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"cells that write to stderr (a red box in JupyterLab): {stderr}"


@pytest.mark.slow
def test_the_tour_runs_on_the_synthetic_fallback(clean_work):
    """Without CamVid (a user's fresh machine) the notebooks show the synthetic street video instead."""
    import papermill as pm

    path = ROOT / "notebooks" / "00_tour.ipynb"
    names = set(pm.inspect_notebook(str(path)))
    params = {k: v for k, v in SMALL.items() if k in names} | {"camvid_root": str(WORK / "no-camvid-here")}
    book = pm.execute_notebook(str(path), str(BUILD / "00_tour_synthetic.ipynb"), parameters=params,
                               kernel_name="python3", cwd=str(path.parent), progress_bar=False, execution_timeout=600)
    text = "".join(o.get("text", "") for c in book["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert "CamVid footage unavailable" in text and "synthetic street, validation snippet" in text


@pytest.mark.slow
def test_the_evaluation_notebook_works_on_a_checkpoint_without_records(tmp_path):
    """06 scores a CamVid checkpoint of one's own with the committed weights' evaluations and sets it beside their
    records in one table, each column named by its source."""
    import papermill as pm

    from gsvlib.cli import main

    camvid = Path(SMALL["camvid_root"])
    if not camvid.is_dir():
        pytest.skip(f"no CamVid at {camvid}")
    run = tmp_path / "run"
    assert main(["train", "--recipe", "camvid-gsv", "--root", str(camvid), "--init", SMALL["camvid_weights"],
                 "--iterations", "1", "--batch-size", "2", "--out", str(run)]) == 0
    path = ROOT / "notebooks" / "06_evaluation.ipynb"
    names = set(pm.inspect_notebook(str(path)))
    params = {k: v for k, v in SMALL.items() if k in names} | {"camvid_weights": str(run / "checkpoint.pt"),
                                                               "synthetic": False, "camvid_page": False}
    book = pm.execute_notebook(str(path), str(tmp_path / "06.ipynb"), parameters=params, kernel_name="python3",
                               cwd=str(path.parent), progress_bar=False, execution_timeout=600)
    outputs = [o for c in book["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    text = "".join(o.get("text", "") for o in outputs)
    shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "each beside the committed weights' record" in text
    assert "synthetic = False" in text  # the tour's runs were not prepared
    assert "| evaluation | score | your checkpoint (`checkpoint.pt`) | the committed weights (recorded) |" in shown
    assert "| held-out | gsv l=3, average / minimum mIoU |" in shown and "results page" not in shown


SCRUBBER_BOOK = """
import numpy as np
from gsvlib.data.labels import CAMVID
from gsvlib.viz import image_grid, label_panel, scrubber

def figure(n):
    return image_grid({"labels": label_panel(np.full((64, 96), n % 11, np.uint8), CAMVID)}, cols=1, legend=CAMVID)

box = scrubber(figure, 0, 4, 2)
box.children[0].value = 3  # the slider moves: the figure is redrawn from the callback
"""


@pytest.mark.slow
def test_a_scrubber_cell_runs_under_papermill_without_hanging(tmp_path):
    """papermill issue 723: an `interact` cell showing a plotly figure could hang papermill. The scrubber's
    callback only replaces widget state, so a cell that draws and moves it finishes, every time."""
    import nbformat
    import papermill as pm

    book = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})
    book.cells = [nbformat.v4.new_code_cell(SCRUBBER_BOOK)]
    path = tmp_path / "scrubber.ipynb"
    nbformat.write(book, path)
    for run in range(3):
        done = pm.execute_notebook(str(path), str(tmp_path / f"run{run}.ipynb"), kernel_name="python3",
                                   progress_bar=False, execution_timeout=120)
        outputs = done["cells"][0]["outputs"]
        assert [o["output_type"] for o in outputs] == ["display_data"]  # the widget box, nothing printed


def test_what_a_child_process_writes_to_stderr_goes_to_the_log_not_the_cell(tmp_path, capfd):
    import subprocess
    import sys

    from gsvlib.notebook import stderr_of_children_to

    with stderr_of_children_to(tmp_path / "kernel.log"):
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('start-up noise\\n')"], check=True)
    print("after", file=sys.stderr)
    assert (tmp_path / "kernel.log").read_text() == "start-up noise\n"
    assert capfd.readouterr().err == "after\n"


def test_the_committed_layer_page_is_what_gsv_info_layers_writes(capsys):
    from gsvlib.cli import main

    assert main(["info", "--layers", "--classes", "11"]) == 0
    page = capsys.readouterr().out
    assert (ROOT / "docs" / "layers.md").read_text() == page
    assert "| `spp` | pyramid pooling | | grids 1, 2, 4, 8 |" in page and "slope 0.1" in page
    assert "| `backbone.maxpool` | max pool | | 3 | 2 | 1 | 1 | | |" in page


@pytest.mark.slow  # a clone, and nbstripout started once per notebook: about a minute
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_running_the_notebooks_never_shows_as_a_change_after_make_install(tmp_path):
    """`make install` sets up the nbstripout filter that .gitattributes names (every committed notebook is what the
    filter makes of it; outputs saved into one never reach a diff or a commit) and Jupyter's pre-save hook, which
    saves the numbered notebooks without outputs and with their committed metadata, and any other untouched."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from traitlets.utils.importstring import import_item

    from gsvlib.notebook import strip_tracked_outputs

    pytest.importorskip("nbstripout")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["make", "-s", "-C", str(clone), "notebook-filter", f"PY={sys.executable}"], check=True,
                   capture_output=True)

    def git(*args):
        return subprocess.run(["git", *args], cwd=clone, capture_output=True, text=True, check=True).stdout

    git("add", "--renormalize", ".")  # read every file through the filter
    assert git("status", "--porcelain") == ""  # every committed notebook is what the filter makes of it
    path = clone / "notebooks" / "05_training.ipynb"
    committed = json.loads(path.read_text())
    run = json.loads(path.read_text())
    for cell in run["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [{"output_type": "stream", "name": "stdout", "text": "ran\n"}], 3
    run["metadata"]["language_info"] = {"name": "python", "version": "3.11.2"}
    path.write_text(json.dumps(run, indent=1))
    assert git("diff", "--stat") == ""  # git reads it through the filter: no output reaches a diff
    git("add", str(path))
    assert git("status", "--porcelain") == ""  # nor a commit

    config = json.loads((clone / ".venv/etc/jupyter/jupyter_server_config.d/gsvkit.json").read_text())
    hook = import_item(config["ContentsManager"]["pre_save_hook"])
    assert hook is strip_tracked_outputs
    model = {"type": "notebook", "content": json.loads(json.dumps(run))}
    hook(model=model, path="notebooks/05_training.ipynb", contents_manager=SimpleNamespace(root_dir=str(ROOT)))
    assert model["content"] == committed  # as committed: no outputs, no counts, the file's metadata
    mine = {"type": "notebook", "content": json.loads(json.dumps(run))}
    hook(model=mine, path="05_training.ipynb", contents_manager=SimpleNamespace(root_dir=str(tmp_path)))
    assert mine["content"] == run  # a notebook outside notebooks/: saved as it is
