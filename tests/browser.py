"""A JupyterLab server and a headless Chromium driven by Playwright, for tests that look at notebooks as a user does.

JupyterLab runs on 127.0.0.1 on a free port with its own temporary settings, workspaces and page config (the news
announcements plugin disabled, so no notification covers the page). Chromium is the system's (Debian's ``chromium``):
Playwright cannot download a browser of its own here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``with JupyterLab(root) as lab:`` serves ``root``; ``lab.url(path)`` opens a notebook with a fresh workspace."""

    def __init__(self, root: Path, log: Path):
        self.root, self.log, self.port, self.token = root, log, free_port(), "gsvkit-browser-test"

    def __enter__(self) -> "JupyterLab":
        self.tmp = Path(tempfile.mkdtemp(prefix="gsvkit-lab-"))
        config = self.tmp / "config"
        (config / "labconfig").mkdir(parents=True)
        (config / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime")}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}",
               f"--LabApp.user_settings_dir={self.tmp / 'settings'}",
               "--ServerApp.disable_check_xsrf=True", "--allow-root"]
        self.log_file = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status?token={self.token}", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"JupyterLab did not start; see {self.log}")

    def url(self, relative: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{relative}?reset&token={self.token}"

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_all_cells(page, timeout_s: float) -> float:
    """Run > Run All Cells, then wait until every code cell has an execution count; returns the seconds taken."""
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=120_000)  # kernel ready
    page.wait_for_timeout(2000)
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        raise RuntimeError(f"JupyterLab opened a dialog: {dialog.first.inner_text()!r}")
    start = time.monotonic()
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
    for _ in range(5):  # a menu opened while the notebook is still settling can close without running anything
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
                                   ".some(p => /\\[[*0-9]+\\]/.test(p.textContent))", timeout=5_000)
            break
        except Exception:
            page.keyboard.press("Escape")
    while time.monotonic() - start < timeout_s:
        failed = page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent)"
                               ".find(t => t.includes('Traceback (most recent call last)')) || ''")
        if failed:  # JupyterLab stops at a failing cell: the cells after it will never run
            raise RuntimeError(f"a cell failed after {time.monotonic() - start:.0f} s:\n{failed[-3000:]}")
        texts = prompts.all_text_contents()  # textContent: cells off screen are not laid out
        if texts and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts) and \
                page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count():
            return time.monotonic() - start
        time.sleep(1)
    raise TimeoutError(f"cells still running or unrun after {timeout_s} s: {prompts.all_text_contents()}")


def log_console_count(page) -> int:
    """Messages the Log console holds, read from its status-bar badge (absent or empty when there are none)."""
    badge = page.locator(".jp-LogConsoleStatusItem")
    if not badge.count():
        return 0
    digits = re.findall(r"\d+", badge.first.inner_text())
    return int(digits[0]) if digits else 0
