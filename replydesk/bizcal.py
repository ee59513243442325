"""Business-time arithmetic on epoch seconds: add business seconds, count them between instants.

Why interval walking: the SLA engine evaluates thousands of conversations per sync batch, so we
never step minute by minute. Each local date is turned once into a short sorted list of open
intervals in UTC epoch seconds (cached per date), and both operations walk those intervals.

Local wall times become instants through the calendar's zone (zoneinfo), so DST is exact: an open
interval on a DST-change day is an hour shorter or longer in real time. A wall time that does not
exist (inside the spring-forward gap) is clamped to the instant the clocks jump; an ambiguous one
(the autumn repeat) is its first occurrence. Holidays close their whole local date.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from typing import TYPE_CHECKING

from replydesk.slaspec import ALWAYS_OPEN

if TYPE_CHECKING:  # validated models or their plain-data twins (slaspec): the same rules
    from replydesk.slaconfig import CalendarSpec, SlaSettings

_DAY = dt.timedelta(days=1)
# A calendar with open hours but (say) years of listed holidays must not spin forever.
_MAX_EMPTY_DAYS = 3660


class AlwaysOpen:
    """The built-in ``24x7`` calendar: business time is calendar time."""

    name = ALWAYS_OPEN

    def add(self, start: float, seconds: float) -> float:
        """The instant ``seconds`` business seconds after ``start`` (negative walks back)."""
        return start + seconds

    def between(self, a: float, b: float) -> float:
        """Business seconds from ``a`` to ``b`` (negative when ``b`` is before ``a``)."""
        return b - a

    def is_open(self, at: float) -> bool:
        return True

    def open_intervals(self, a: float, b: float) -> Iterator[tuple[float, float]]:
        if b > a:
            yield (a, b)


class BusinessCalendar:
    """A weekly schedule in one time zone, with holidays; see the module docstring for DST rules."""

    def __init__(self, spec: CalendarSpec, name: str = "") -> None:
        self.name = name
        self.zone = zoneinfo.ZoneInfo(spec.timezone)
        self.holidays = frozenset(spec.holidays)
        # Per weekday, the open minutes that fall on that local date: its own intervals clipped at
        # midnight plus the after-midnight tails of the previous weekday's overnight intervals.
        per_day: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        for wd, intervals in spec.intervals().items():
            for start, end in intervals:
                if end > start:
                    per_day[wd].append((start, end))
                else:
                    per_day[wd].append((start, 1440))
                    if end > 0:
                        per_day[(wd + 1) % 7].append((0, end))
        self._weekly: tuple[tuple[tuple[int, int], ...], ...] = tuple(
            tuple(_merge(sorted(day))) for day in per_day
        )
        self._days: dict[dt.date, tuple[tuple[float, float], ...]] = {}

    # -- local time ---------------------------------------------------------------------------

    def _local_date(self, at: float) -> dt.date:
        return dt.datetime.fromtimestamp(at, self.zone).date()

    def _instant(self, day: dt.date, minute: int) -> float:
        """Epoch seconds of local wall time ``minute`` minutes after midnight of ``day``."""
        if minute >= 1440:
            day, minute = day + _DAY, minute - 1440
        naive = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60)
        ts = naive.replace(tzinfo=self.zone).timestamp()  # fold=0: first occurrence when repeated
        if dt.datetime.fromtimestamp(ts, self.zone).replace(tzinfo=None) == naive:
            return ts
        # In a spring-forward gap: find the instant the clocks jumped (lies between both readings).
        lo = naive.replace(tzinfo=self.zone, fold=1).timestamp()
        hi = ts
        lo, hi = min(lo, hi), max(lo, hi)
        base = dt.datetime.fromtimestamp(lo, self.zone).utcoffset()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if dt.datetime.fromtimestamp(mid, self.zone).utcoffset() == base:
                lo = mid
            else:
                hi = mid
        return float(hi)

    def day_intervals(self, day: dt.date) -> tuple[tuple[float, float], ...]:
        """Open intervals of one local date as sorted, disjoint (start, end) epoch seconds."""
        cached = self._days.get(day)
        if cached is not None:
            return cached
        if day in self.holidays:
            out: tuple[tuple[float, float], ...] = ()
        else:
            spans = [(self._instant(day, s), self._instant(day, e)) for s, e in self._weekly[day.weekday()]]
            out = tuple(_merge([(s, e) for s, e in spans if e > s]))
        if len(self._days) > 4096:  # bounded: a long-running sync keeps moving forward in time
            self._days.clear()
        self._days[day] = out
        return out

    def _forward(self, at: float) -> Iterator[tuple[float, float]]:
        """Open intervals ending after ``at``, in order, from ``at``'s local date onwards (clipped)."""
        day = self._local_date(at)
        empty = 0
        while True:
            found = False
            for s, e in self.day_intervals(day):
                if e > at:
                    found = True
                    yield (max(s, at), e)
            empty = 0 if found else empty + 1
            if empty > _MAX_EMPTY_DAYS:
                raise ValueError(f"calendar {self.name!r} has no open time for ten years after {day}")
            day += _DAY

    def _backward(self, at: float) -> Iterator[tuple[float, float]]:
        """Open intervals starting before ``at``, latest first (clipped)."""
        day = self._local_date(at)
        empty = 0
        while True:
            found = False
            for s, e in reversed(self.day_intervals(day)):
                if s < at:
                    found = True
                    yield (s, min(e, at))
            empty = 0 if found else empty + 1
            if empty > _MAX_EMPTY_DAYS:
                raise ValueError(f"calendar {self.name!r} has no open time for ten years before {day}")
            day -= _DAY

    # -- the operations the SLA engine needs --------------------------------------------------

    def add(self, start: float, seconds: float) -> float:
        """The earliest instant at which ``seconds`` business seconds have passed since ``start``.

        Reaching the amount exactly at closing time returns the closing instant, not the next
        opening. Negative ``seconds`` walk backwards (the latest instant that far before).
        """
        if seconds == 0:
            return start
        if seconds > 0:
            left = seconds
            for s, e in self._forward(start):
                span = e - s
                if span >= left:
                    return s + left
                left -= span
        left = -seconds
        for s, e in self._backward(start):
            span = e - s
            if span >= left:
                return e - left
            left -= span
        raise AssertionError("unreachable")  # pragma: no cover

    def between(self, a: float, b: float) -> float:
        """Business seconds in [a, b); negative when ``b`` is before ``a``."""
        if b < a:
            return -self.between(b, a)
        return sum(e - s for s, e in self.open_intervals(a, b))

    def open_intervals(self, a: float, b: float) -> Iterator[tuple[float, float]]:
        """Open intervals clipped to [a, b), in order."""
        if b <= a:
            return
        day, last = self._local_date(a), self._local_date(b)
        while day <= last:
            for s, e in self.day_intervals(day):
                lo, hi = max(s, a), min(e, b)
                if hi > lo:
                    yield (lo, hi)
            day += _DAY

    def is_open(self, at: float) -> bool:
        return any(s <= at < e for s, e in self.day_intervals(self._local_date(at)))


Calendar = AlwaysOpen | BusinessCalendar


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted spans with overlaps and touching ends joined (overlapping shifts are allowed)."""
    out: list[tuple[float, float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def calendar_from_spec(spec: CalendarSpec | None, name: str = "") -> Calendar:
    """None (the 24x7 calendar) -> AlwaysOpen, otherwise a BusinessCalendar."""
    return AlwaysOpen() if spec is None else BusinessCalendar(spec, name)


def build_calendars(settings: SlaSettings) -> dict[str, Calendar]:
    """Every calendar a settings object can name, built once (they cache per-date intervals)."""
    return {name: calendar_from_spec(settings.calendar(name), name) for name in settings.calendar_names()}
