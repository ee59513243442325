"""Timed waits for worker threads that end early when told to stop.

``threading.Event.wait(timeout)`` turns the timeout into an absolute deadline on a clock the C
library reads; a clock-faking preload (the test suite runs once a month ahead under one) pushes that
deadline out by its offset, and the wait never ends. Short relative sleeps do not depend on it.
"""

from __future__ import annotations

import threading
import time

SLICE = 0.05  # seconds: how soon a stop request ends the wait


def pause(stop: threading.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop`` is set; returns whether it was set."""
    deadline = time.monotonic() + max(0.0, seconds)
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(SLICE, left))
    return True
