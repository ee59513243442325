"""Times people type: ``1h``, ``30m``, ``tomorrow 9:00``, ``monday``, ``2026-12-01T09:00``, ``17:30``.

One function (``parse_when``) for the CLI's ``reply --at``/``snooze --until`` and the console's
snooze and send-later choices, in one zone (``user_zone``: the configured ``ui.timezone``, else the
system's), with real zone rules: "tomorrow 9:00" the evening before a daylight-saving change is
9:00 on the new offset, not the old one an hour off. Relative durations (``2h``) are elapsed time.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from replydesk.slaspec import parse_duration

_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_CLOCK = re.compile(r"^(\d{1,2})(?::(\d{2}))?$")


def _clock(text: str) -> tuple[int, int]:
    m = _CLOCK.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59:
        raise ValueError(f"not a time of day: {text!r} (use HH:MM)")
    return int(m.group(1)), int(m.group(2) or 0)


@functools.lru_cache(maxsize=8)
def _system_zone(tz_env: str | None) -> dt.tzinfo:
    if tz_env:
        try:
            return ZoneInfo(tz_env.lstrip(":"))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        pass
    return dt.datetime.now().astimezone().tzinfo or dt.UTC  # a fixed offset: the last resort


def system_zone() -> dt.tzinfo:
    """The system's zone with its rules (``TZ``, else ``/etc/localtime``), not today's fixed offset."""
    return _system_zone(os.environ.get("TZ"))


def user_zone(name: str | dt.tzinfo | None = None) -> dt.tzinfo:
    """The zone times are typed and shown in: ``name`` (``ui.timezone``) or the system's."""
    if isinstance(name, dt.tzinfo):
        return name
    return ZoneInfo(name) if name else system_zone()


def parse_when(text: str, now: float, tz: str | dt.tzinfo | None = None) -> float:
    """An absolute epoch time from a relative duration, a day word with an optional time, or ISO 8601.

    Day words, bare times and ISO times without an offset are wall-clock times in ``tz`` (see
    ``user_zone``), DST-correct; a bare time already past means tomorrow.
    """
    text = text.strip().lower()
    if not text:
        raise ValueError("empty time")
    zone = user_zone(tz)
    local_now = dt.datetime.fromtimestamp(now, zone)
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
        if len(words) > 1:
            raise ValueError(f"cannot read the time {text!r}: use e.g. 'tomorrow 9:00'")
        hour, minute = _clock(words[0]) if words else (9, 0)
        target = dt.datetime.combine(day, dt.time(hour, minute), zone)
        return target.timestamp()
    if _CLOCK.match(text):
        hour, minute = _clock(text)
        target = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= local_now:  # the same wall-clock time tomorrow, on tomorrow's offset
            target = dt.datetime.combine(local_now.date() + dt.timedelta(days=1), dt.time(hour, minute), zone)
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
        value = value.replace(tzinfo=zone)
    return value.timestamp()
