"""Logging that can neither flood the disk nor leak a secret.

A hostile platform once turned one response into a 403 MB log (a line per malformed item). The
``FloodGuard`` filter lets an identical message through once per ``window`` and at most ``burst``
lines per ``window`` from one logger; what it holds back is counted and said in the next line that
passes ("… 5,999,950 similar lines suppressed"). The ``MaskingFormatter`` runs every formatted
record, traceback included, through ``secrets.mask``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from replydesk import secrets


class FloodGuard(logging.Filter):
    """Deduplicate and rate-limit log records (per logger), counting what was dropped."""

    def __init__(self, window: float = 60.0, burst: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.burst, self.clock = window, burst, clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._spent: dict[str, tuple[float, int]] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        try:
            key = (record.name, record.getMessage()[:300])
        except Exception:  # a broken format: let logging itself report it
            return True
        last = self._seen.get(key)
        if last is not None and now - last < self.window and record.levelno < logging.ERROR:
            self.suppressed += 1
            return False
        start, count = self._spent.get(record.name, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count >= self.burst and record.levelno < logging.CRITICAL:
            self.suppressed += 1
            return False
        self._spent[record.name] = (start, count + 1)
        self._seen[key] = now
        self._seen.move_to_end(key)
        while len(self._seen) > 1000:
            self._seen.popitem(last=False)
        if self.suppressed:
            record.msg = f"{record.msg} (… {self.suppressed:,} similar line(s) suppressed before this one)"
            self.suppressed = 0
        return True


class MaskingFormatter(logging.Formatter):
    """Every known secret masked in the whole formatted record (message and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return secrets.mask(super().format(record))


def install(handler: logging.Handler) -> None:
    """Guard and mask ``handler`` (idempotent)."""
    if not any(isinstance(f, FloodGuard) for f in handler.filters):
        handler.addFilter(FloodGuard())
    if not isinstance(handler.formatter, MaskingFormatter):
        fmt = handler.formatter._fmt if handler.formatter is not None else None  # noqa: SLF001
        handler.setFormatter(MaskingFormatter(fmt))
