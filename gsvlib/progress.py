"""Progress bars: tqdm's widget in Jupyter, a text bar elsewhere, redrawn at most once a second.

The rate limit matters in notebooks. Each redraw of a widget bar is two messages on the kernel's output channel,
and a client that reads that channel only after a cell has finished (nbval, some papermill engines) leaves them
queued. Past ZeroMQ's queues the kernel drops messages, the last of them the "idle" status that tells the client the
cell is done: measured here with nbval's way of reading, a cell that sent 6,100 messages was read whole, one that
sent 16,000 lost all but 8,000, its "idle" among them. tqdm's default (up to 10 redraws a second) gets there in a
few minutes; one a second, about an hour. tqdm's own ``TQDM_MININTERVAL`` environment variable, where set,
replaces this limit: `make test` sets it to 10 s for nbval, whose CamVid cells run for minutes on 2 busy cores.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm

MIN_SECONDS_BETWEEN_REDRAWS = 1.0


def progress_bar(iterable=None, **options) -> tqdm:
    """``tqdm.auto.tqdm`` with the redraw limit of this module (``mininterval``, overridable here or by the
    ``TQDM_MININTERVAL`` environment variable, which tqdm reads when it is imported)."""
    if "TQDM_MININTERVAL" not in os.environ:
        options = {"mininterval": MIN_SECONDS_BETWEEN_REDRAWS, **options}
    return tqdm(iterable, **options)
