"""The console's keys come before background work in the same process.

CPython runs one thread at a time: while the console paints a key, the sync engine's ingest in its
thread (Python building rows, the SLA engine) takes the interpreter back every millisecond (the
console's switch interval). Background loops call :func:`step_aside` between items: while a key is
in flight it waits, without holding the interpreter, until that key's frame is painted (at most
``MAX_WAIT``: a frame that never comes does not stop the engine). Measured alternately at 1M: the
keys while syncing did not move beyond the noise (p95 22.5 against 20.7 ms: the ingest's Python
outside these loops still shares the interpreter), the ingest beside the console ran at 0.76x its
bare rate against 0.63x. No Textual here: the console says when a key arrives and is painted.
"""

from __future__ import annotations

import threading

#: Seconds a background step waits at most for one key's frame.
MAX_WAIT = 0.05

_painted = threading.Event()
_painted.set()


def key_arrived() -> None:
    """A key is being handled on the UI thread: background steps wait for its frame."""
    _painted.clear()


def key_painted() -> None:
    """The key's frame is on the screen (or the console is leaving): background work goes on."""
    _painted.set()


def step_aside() -> None:
    """Between two items of background work: wait while a key is in flight (a few ns otherwise)."""
    if not _painted.is_set():
        _painted.wait(MAX_WAIT)
