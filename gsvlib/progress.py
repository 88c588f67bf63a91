"""Progress bars: tqdm's widget in Jupyter, a text bar elsewhere, redrawn at most once a second.

The rate limit matters in notebooks. Each redraw of a widget bar is one or two messages on the kernel's output
channel, and a client that reads that channel only after a cell has finished (nbval, some papermill engines) leaves
them queued; past ZeroMQ's high-water mark (1000 messages at each end) the kernel drops messages, the last of them
the "idle" status that tells the client the cell is done. tqdm's default (10 redraws a second) crosses that mark
in about a minute of running; one redraw a second takes over ten minutes.
"""
from __future__ import annotations

from tqdm.auto import tqdm

MIN_SECONDS_BETWEEN_REDRAWS = 1.0


def progress_bar(iterable=None, **options) -> tqdm:
    """``tqdm.auto.tqdm`` with the redraw limit of this module (``mininterval``, overridable)."""
    return tqdm(iterable, **{"mininterval": MIN_SECONDS_BETWEEN_REDRAWS, **options})
