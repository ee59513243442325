"""What an SLA policy *means*, without the YAML validation: durations, intervals and the rules
every policy, target and calendar follows, for the SLA engine and the business calendars.

Why apart from ``slaconfig``: validating the ``sla:`` section needs pydantic (tens of ms to
import), and the commands that only read the cache (``replydesk show``, ``search``) must start in
a few ms. ``slaconfig``'s pydantic models and this module's frozen dataclasses share the rules
below as mixins, so the engine gives the same answers for both; the dataclasses are rebuilt from
the validated settings the workspace remembered (``SettingsData.from_json``), never from YAML.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
PAUSE_STATUSES: tuple[str, ...] = ("pending", "snoozed")
METRICS: tuple[str, ...] = ("first_reply", "next_reply", "resolution")
ALWAYS_OPEN = "24x7"
BUSINESS = "business"
DEFAULT_ESCALATED_FACTOR = 0.5
#: The built-in ``business`` calendar's hours (UTC, no holidays) unless the config defines it.
BUSINESS_HOURS: dict[str, list[str]] = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])", re.IGNORECASE)
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_duration(text: str | int) -> int:
    """``"30m"``, ``"4h"``, ``"1d"``, ``"1h30m"``, ``"90s"`` (or a bare number of seconds) -> seconds.

    Raises ValueError saying what is accepted, because this text comes straight from a user's YAML.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30m, 4h, 1d, 1h30m or 90s")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return text
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string such as 30m, 4h, 1d, 1h30m or 90s")
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    compact = raw.replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts).lower() != compact.lower():
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30m, 4h, 1d, 1h30m or 90s")
    units = [u.lower() for _, u in parts]
    if len(set(units)) != len(units):
        raise ValueError(f"invalid duration {text!r}: a unit appears twice")
    total = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts)
    return int(round(total))


def format_duration(seconds: float) -> str:
    """Seconds back to the compact form (``5400`` -> ``"1h30m"``), for messages and the UI."""
    sign = "-" if seconds < 0 else ""
    rest = int(round(abs(seconds)))
    out = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return sign + ("".join(out) or "0s")


def parse_interval(text: str) -> tuple[int, int]:
    """``"09:00-17:00"`` -> (540, 1020) minutes from local midnight.

    An end at or before the start means the interval crosses midnight (``"22:00-02:00"`` is open
    until 02:00 the next day); ``"00:00-24:00"`` is the whole day.
    """
    m = _INTERVAL.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"invalid opening interval {text!r}: expected HH:MM-HH:MM, e.g. 09:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"invalid opening interval {text!r}: times must be 00:00-23:59 (end may be 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"invalid opening interval {text!r}: start equals end (use 00:00-24:00 for all day)")
    return start, end


# ---- the rules, shared by the validated models (slaconfig) and the dataclasses below ---------------
# (No annotations here: pydantic and dataclasses each declare the fields on their own classes.)


class CalendarRules:
    """A calendar has ``timezone``, ``hours`` (weekday -> intervals as written) and ``holidays``."""

    def intervals(self) -> dict[int, list[tuple[int, int]]]:
        """Weekday index (0 = Monday) -> parsed (start, end) minutes as written."""
        return {WEEKDAYS.index(day): [parse_interval(t) for t in ivs] for day, ivs in self.hours.items()}


class TargetRules:
    """A target has ``target`` (seconds), ``calendar`` and ``warn_before`` (``"10m"``, ``"25%"``)."""

    def warn_seconds(self, target_seconds: float | None = None) -> float:
        """Seconds before the due time at which the metric turns to `warning` (0 = never warns).

        A percentage applies to ``target_seconds`` when given (the escalated, effective target).
        """
        base = self.target if target_seconds is None else target_seconds
        if self.warn_before is None:
            return 0.0
        if self.warn_before.endswith("%"):
            return base * float(self.warn_before[:-1]) / 100.0
        return float(parse_duration(self.warn_before))


class PolicyRules:
    """A policy has ``name``, ``match``, one target per metric, ``pause_when``, ``escalated_factor``
    and ``count_auto_replies``."""

    def target(self, metric: str) -> Any:
        return getattr(self, metric)

    def factor_for(self, escalated: bool) -> float:
        """Multiplier for targets: halved (by default) for escalated conversations.

        A policy that explicitly matches ``escalated: true`` wrote its targets for escalated
        conversations, so they are not halved again unless ``escalated_factor`` is set.
        """
        if not escalated:
            return 1.0
        if self.escalated_factor is not None:
            return self.escalated_factor
        return 1.0 if self.match.escalated is True else DEFAULT_ESCALATED_FACTOR

    def calendars_used(self) -> list[tuple[str, str]]:
        return [(m, t.calendar) for m in METRICS if (t := self.target(m)) is not None]


class SettingsRules:
    """Settings have ``calendars`` (name -> calendar) and ``policies`` (matched top to bottom)."""

    def business_default(self) -> Any:
        """The built-in ``business`` calendar, in the settings' own calendar type."""
        raise NotImplementedError

    def calendar_names(self) -> set[str]:
        return {ALWAYS_OPEN, BUSINESS, *self.calendars}

    def calendar(self, name: str) -> Any:
        """The spec for ``name``; None for the always-open ``24x7``. KeyError if unknown."""
        if name == ALWAYS_OPEN:
            return None
        if name in self.calendars:
            return self.calendars[name]
        if name == BUSINESS:
            return self.business_default()
        raise KeyError(name)


# ---- validated settings as plain data -----------------------------------------------------------------


@dataclass(frozen=True)
class CalendarData(CalendarRules):
    timezone: str = "UTC"
    hours: Mapping[str, Sequence[str]] = field(default_factory=dict)
    holidays: tuple[dt.date, ...] = ()


@dataclass(frozen=True)
class TargetData(TargetRules):
    target: int
    calendar: str = ALWAYS_OPEN
    warn_before: str | None = None


@dataclass(frozen=True)
class MatchData:
    platform: tuple[str, ...] | None = None
    kind: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    priority: tuple[str, ...] | None = None
    escalated: bool | None = None
    listening: bool | None = None


@dataclass(frozen=True)
class PolicyData(PolicyRules):
    name: str
    match: MatchData = field(default_factory=MatchData)
    first_reply: TargetData | None = None
    next_reply: TargetData | None = None
    resolution: TargetData | None = None
    pause_when: tuple[str, ...] = ()
    escalated_factor: float | None = None
    count_auto_replies: bool = False


def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@dataclass(frozen=True)
class SettingsData(SettingsRules):
    """The ``sla:`` settings as validated once by ``slaconfig.SlaSettings``, rebuilt without pydantic."""

    calendars: Mapping[str, CalendarData] = field(default_factory=dict)
    policies: tuple[PolicyData, ...] = ()
    #: A review's stars -> the priority it comes in with (JSON keys are strings: made numbers again).
    review_priority: Mapping[int, str] = field(default_factory=dict)

    def business_default(self) -> CalendarData:
        return CalendarData(timezone="UTC", hours=BUSINESS_HOURS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SettingsData:
        """From ``SlaSettings.model_dump(mode="json")``: the validated form, so nothing is checked here."""

        def target(t: Mapping[str, Any] | None) -> TargetData | None:
            if t is None:
                return None
            return TargetData(target=int(t["target"]), calendar=t.get("calendar", ALWAYS_OPEN),
                              warn_before=t.get("warn_before"))

        def policy(p: Mapping[str, Any]) -> PolicyData:
            m = p.get("match") or {}
            return PolicyData(
                name=p["name"],
                match=MatchData(platform=_names(m.get("platform")), kind=_names(m.get("kind")),
                                tags=_names(m.get("tags")), priority=_names(m.get("priority")),
                                escalated=m.get("escalated"), listening=m.get("listening")),
                first_reply=target(p.get("first_reply")), next_reply=target(p.get("next_reply")),
                resolution=target(p.get("resolution")), pause_when=tuple(p.get("pause_when") or ()),
                escalated_factor=p.get("escalated_factor"),
                count_auto_replies=bool(p.get("count_auto_replies", False)),
            )

        calendars = {
            name: CalendarData(timezone=c.get("timezone", "UTC"),
                               hours={day: tuple(ivs) for day, ivs in (c.get("hours") or {}).items()},
                               holidays=tuple(dt.date.fromisoformat(d) for d in c.get("holidays") or ()))
            for name, c in (data.get("calendars") or {}).items()
        }
        return cls(calendars=calendars, policies=tuple(policy(p) for p in data.get("policies") or ()),
                   review_priority={int(stars): level for stars, level in (data.get("review_priority") or {}).items()})
