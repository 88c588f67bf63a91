"""The package's layers: every module imports only from the layers below it, no gsvlib import hides inside a
function, and the runtime needs only the base dependencies."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gsvlib"
# bottom to top, as in CONTRIBUTING.md; modules of one subpackage (models/, data/) may import each other
LAYERS = [("device", "files", "distributed", "progress", "bootstrap"), ("models",), ("data",), ("stages",), ("config",),
          ("checkpoint",), ("segmenter", "pictures", "official"), ("video", "deploy"), ("protocol",), ("schedules",),
          ("train", "evaluate", "bench"),
          ("experiments",), ("reports",), ("viz",), ("tour",), ("notebook", "cli"),
          ("entry",)]
EXTRAS = ("plotly", "ipywidgets", "IPython", "matplotlib", "kaleido", "jupyterlab", "papermill", "nbformat", "onnx",
          "onnxruntime", "onnxscript")


def layer(module: str) -> int:
    """Layer of a module path relative to gsvlib, e.g. "models.gsvnet" -> 1."""
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if name not in ("__init__", "__main__"):
            yield name.removesuffix(".__init__"), ast.parse(path.read_text())


def gsvlib_imports(tree: ast.AST):
    """(imported module relative to gsvlib, line, inside a function?) of every gsvlib import in ``tree``."""
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gsvlib."):
            yield node.module.removeprefix("gsvlib."), node.lineno, id(node) in nested
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gsvlib."):
                    yield alias.name.removeprefix("gsvlib."), node.lineno, id(node) in nested


def test_every_module_is_in_a_layer():
    for name, _ in modules():
        assert layer(name) is not None, name


def test_imports_go_down_the_layers_and_never_hide_in_functions():
    wrong = []
    for name, tree in modules():
        for target, line, in_function in gsvlib_imports(tree):
            top = name.split(".")[0]
            same_package = (PACKAGE / top).is_dir() and target.split(".")[0] == top
            if in_function:
                wrong.append(f"gsvlib/{name}.py:{line} imports gsvlib.{target} inside a function")
            elif not same_package and layer(target) >= layer(name):
                wrong.append(f"gsvlib/{name}.py:{line} imports gsvlib.{target}, which is not in a lower layer")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_catches_an_upward_import():
    tree = ast.parse("from gsvlib.train import train\ndef f():\n    from gsvlib.files import remove\n")
    found = list(gsvlib_imports(tree))
    assert found == [("train", 1, False), ("files", 3, True)] and layer("train") > layer("segmenter")


@pytest.mark.slow
def test_the_runtime_and_the_cli_run_without_the_notebook_extras(tmp_path, tiny_synth):
    """With plotly, Jupyter and matplotlib made unimportable: import the runtime, print `gsv info`, segment frames."""
    frames = next((tiny_synth / "leftImg8bit_sequence" / "val").rglob("*.png")).parent
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, Block())
import gsvlib.segmenter, gsvlib.video, gsvlib.cli
import torch
from gsvlib import GSVNet
from gsvlib.files import save_atomic
from dataclasses import asdict
model = GSVNet(num_classes=19)
save_atomic({{"model": model.state_dict(), "model_config": asdict(model.config), "dataset": "synthetic"}}, "m.pt")
assert gsvlib.cli.main(["info"]) == 0
assert gsvlib.cli.main(["segment", {str(frames)!r}, "--checkpoint", "m.pt", "--out", "ov", "--max-frames", "3"]) == 0
print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] in {EXTRAS!r}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded: []" in done.stdout and len(list((tmp_path / "ov").glob("*.png"))) == 3


def test_every_progress_bar_is_rate_limited():
    """Bars come from gsvlib.progress (at most one redraw a second), in the package and in the notebooks: a long
    notebook cell with tqdm's default rate overflows the kernel's output queue before nbval reads it."""
    direct = [f"gsvlib/{name}.py" for name, tree in modules() if name != "progress"
              for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
              and any(m.startswith("tqdm") for m in ([node.module or ""] if isinstance(node, ast.ImportFrom)
                                                     else [a.name for a in node.names]))]
    notebooks = [p.name for p in sorted((PACKAGE.parent / "notebooks").glob("*.ipynb")) if "import tqdm" in p.read_text()
                 or "from tqdm" in p.read_text()]
    assert not direct and not notebooks, direct + notebooks


def test_a_progress_bar_redraws_at_most_once_a_second(capsys):
    import time

    from gsvlib.progress import progress_bar

    for _ in progress_bar(range(30), file=sys.stderr, ascii=True):  # 1.5 s; tqdm's default rate draws ~15 times
        time.sleep(0.05)
    redraws = capsys.readouterr().err.count("\r")
    assert 2 <= redraws <= 5, redraws  # the first draw, one a second, the final one


@pytest.mark.slow
def test_tqdms_own_environment_variable_sets_the_redraw_limit():
    """`make test` runs nbval with TQDM_MININTERVAL=10: a bar of 3 s then draws only its first and final frames."""
    script = """
import sys, time
from gsvlib.progress import progress_bar
for _ in progress_bar(range(30), file=sys.stderr, ascii=True):
    time.sleep(0.1)
"""
    env = {**os.environ, "TQDM_MININTERVAL": "10"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, env=env)  # bytes: keep \r
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count(b"\r") == 2, done.stderr  # the first draw and the final one


def test_the_docs_agree_on_the_held_out_frames_and_the_notebook_list():
    """Every text that names the held-out frames of CamVid's 15 Hz val/ run (51 frames) gives the ones the span and
    the protocol's 4 frames before each make: held out from round(0.65 x 51), scored 4 later; the README's layout names
    the first and the last notebook."""
    from gsvlib.data.camvid import HELD_OUT

    first = round(HELD_OUT[0] * 51)
    root = PACKAGE.parent
    texts = [*root.glob("*.md"), *root.glob("docs/*.md"), *root.glob("data/*.md"), *root.glob("notebooks/*.ipynb"),
             *root.rglob("experiments/**/*.toml"), *PACKAGE.rglob("*.py")]
    scored, held = set(), set()
    for path in texts:
        text = " ".join(path.read_text().replace('\\n",\n    "', " ").split())  # notebook lines joined
        scored |= {(path.name, m) for m in re.findall(r"scor\w* (?:here )?(?:on )?frames (\d+-\d+)", text)}
        held |= {(path.name, m) for m in re.findall(r"frames (\d+-\d+) (?:are|were) held", text)}
    assert scored and held
    assert {m for _, m in scored} == {f"{first + 4}-50"}, scored
    assert {m for _, m in held} == {f"{first}-50"}, held
    notebooks = sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))
    layout = next(line for line in (root / "README.md").read_text().splitlines() if line.startswith("notebooks/"))
    assert notebooks[0] in layout and notebooks[-1] in layout
