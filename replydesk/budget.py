"""How often a metered account polls: as often as its own interval allows, as seldom as its budget needs.

The engine asks ``poll_interval`` after every poll of an account whose options are
``MeteredOptions`` (X). The rule, from what a poll has cost on average this month:

- the budget left, spread over the time left in the month, buys ``remaining / cost_per_poll`` polls;
  polls are spaced so that they last (never closer than the account's own interval);
- in the account's quiet hours, at least ``quiet_poll_interval`` apart;
- once the budget is spent, no polling until the month ends (the status bar says so; replies are
  still sent, and the note says what each costs).

A poll never re-reads what we hold (the providers page only to the stored newest id), so fewer polls
cost less only by what re-reading a page head costs; the budget mostly follows the customers, which
is why the pace and the warning matter more than the interval.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

from replydesk.options import MeteredOptions
from replydesk.storage.spend import SpendSummary


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def in_quiet_hours(spec: str | None, zone: str, at: float) -> bool:
    """Whether ``at`` falls in ``spec`` (``22:00-07:00``, may cross midnight) in ``zone``."""
    if not spec:
        return False
    start_text, _, end_text = spec.replace(" ", "").partition("-")
    start = int(start_text[:-3]) * 60 + int(start_text[-2:])
    end = int(end_text[:-3]) * 60 + int(end_text[-2:])
    local = dt.datetime.fromtimestamp(at, _zone(zone))
    minute = local.hour * 60 + local.minute
    if start == end:
        return False
    return start <= minute < end if start < end else (minute >= start or minute < end)


def poll_interval(base: float, options: MeteredOptions, spend: SpendSummary) -> tuple[float, str]:
    """Seconds until the next poll, and why, in a few words for the status bar."""
    now = spend.now
    if spend.exhausted:
        return max(1.0, spend.end - now + 1.0), "budget spent: polling paused"
    interval, why = base, ""
    cost = spend.cost_per_poll
    remaining = spend.remaining
    if cost and remaining is not None and remaining > 0:
        affordable = (spend.end - now) * cost / remaining  # spacing that makes the rest last
        if affordable > interval:
            interval, why = affordable, "budget"
    if in_quiet_hours(options.quiet_hours, options.timezone, now) and options.quiet_poll_interval > interval:
        interval, why = options.quiet_poll_interval, "quiet hours"
    return interval, why


def describe(seconds: float) -> str:
    """``45s``, ``2m``, ``1h 30m``: an interval for the status bar."""
    seconds = int(round(seconds))
    if seconds < 60 or (seconds < 90 and seconds % 60):
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24}d"
    return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
