"""Times people type: ``1h``, ``30m``, ``tomorrow 9:00``, ``monday``, ``2026-12-01T09:00``, ``17:30``."""

from __future__ import annotations

import datetime as dt
import re

from replydesk.slaspec import parse_duration

_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_CLOCK = re.compile(r"^(\d{1,2})(?::(\d{2}))?$")


def _clock(text: str) -> tuple[int, int]:
    m = _CLOCK.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59:
        raise ValueError(f"not a time of day: {text!r} (use HH:MM)")
    return int(m.group(1)), int(m.group(2) or 0)


def parse_when(text: str, now: float, tz: dt.tzinfo | None = None) -> float:
    """An absolute epoch time from a relative duration, a day word with an optional time, or ISO 8601.

    Day words and bare times use the local time zone (``tz``); a bare time already past means tomorrow.
    """
    text = text.strip().lower()
    if not text:
        raise ValueError("empty time")
    local_now = dt.datetime.fromtimestamp(now, tz) if tz else dt.datetime.fromtimestamp(now).astimezone()
    words = text.split()
    day: dt.date | None = None
    if words[0] in ("today", "tomorrow", *_DAYS):
        word = words.pop(0)
        if word == "today":
            day = local_now.date()
        elif word == "tomorrow":
            day = local_now.date() + dt.timedelta(days=1)
        else:
            ahead = (_DAYS.index(word) - local_now.weekday()) % 7 or 7
            day = local_now.date() + dt.timedelta(days=ahead)
        hour, minute = _clock(words[0]) if words else (9, 0)
        target = dt.datetime.combine(day, dt.time(hour, minute), local_now.tzinfo)
        return target.timestamp()
    if _CLOCK.match(text):
        hour, minute = _clock(text)
        target = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= local_now:
            target += dt.timedelta(days=1)
        return target.timestamp()
    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        value = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read the time {text!r}: use a duration (2h), 'tomorrow 9:00', a weekday, HH:MM or ISO 8601"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=local_now.tzinfo)
    return value.timestamp()
