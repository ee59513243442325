"""Business-calendar arithmetic (replydesk.bizcal): exact instants, table-driven.

Expected values are written as local wall times or UTC instants computed by hand in the comments,
so a wrong DST or midnight rule fails loudly.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import zoneinfo

import pytest

from replydesk.bizcal import AlwaysOpen, BusinessCalendar, build_calendars
from replydesk.slaconfig import CalendarSpec, SlaSettings

WEEKDAYS_9_17 = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def cal(
    tz: str = "Europe/Athens", hours: dict | None = None, holidays: tuple[str, ...] = ()
) -> BusinessCalendar:
    spec = CalendarSpec(timezone=tz, hours=hours or WEEKDAYS_9_17, holidays=list(holidays))
    return BusinessCalendar(spec, "test")


def local(tz: str, text: str) -> float:
    """'2026-01-09 16:30' in zone tz -> epoch seconds."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz)).timestamp()


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def show(tz: str, ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


ATH = "Europe/Athens"
NY = "America/New_York"
SPLIT = {"mon": ["09:00-13:00", "14:00-18:00"], "tue": ["09:00-18:00"], "sat": ["10:00-14:00"]}
NIGHT = {"fri": ["22:00-02:00"]}  # Friday 22:00 to Saturday 02:00
NIGHT_SAT = {"sat": ["22:00-06:00"]}  # across the Sunday-morning DST switch


# (id, calendar kwargs, start local, business seconds, expected local)
ADD_CASES = [
    ("issue example: Fri 16:30 +1h -> Mon 09:30", {}, "2026-01-09 16:30", 3600, "2026-01-12 09:30"),
    (
        "issue example with Monday holiday -> Tue 09:30",
        {"holidays": ("2026-01-12",)},
        "2026-01-09 16:30",
        3600,
        "2026-01-13 09:30",
    ),
    ("before opening counts from opening", {}, "2026-01-12 07:00", 3600, "2026-01-12 10:00"),
    ("reaching the target at closing stays at closing", {}, "2026-01-12 16:00", 3600, "2026-01-12 17:00"),
    ("zero seconds is the start itself, even when closed", {}, "2026-01-10 12:00", 0, "2026-01-10 12:00"),
    ("4 business hours over a weekend", {}, "2026-01-09 15:00", 4 * 3600, "2026-01-12 11:00"),
    ("two full weeks of business time", {}, "2026-01-12 09:00", 80 * 3600, "2026-01-23 17:00"),
    ("split shift skips lunch", {"hours": SPLIT}, "2026-01-12 12:30", 3600, "2026-01-12 14:30"),
    (
        "split shift: Mon 17:30 +1h -> Tue 09:30",
        {"hours": SPLIT},
        "2026-01-12 17:30",
        3600,
        "2026-01-13 09:30",
    ),
    # Tue 17:00-18:00 (1h) then Saturday 10:00 + 1h.
    ("split shift to Saturday", {"hours": SPLIT}, "2026-01-13 17:00", 2 * 3600, "2026-01-17 11:00"),
    ("overnight interval crosses midnight", {"hours": NIGHT}, "2026-01-09 23:30", 3600, "2026-01-10 00:30"),
    # 23:30-24:00 (30m) + Sat 00:00-02:00 (2h) = 2.5h, then 30m of next Friday's shift.
    ("overnight interval to next week", {"hours": NIGHT}, "2026-01-09 23:30", 3 * 3600, "2026-01-16 22:30"),
    # 01:00-02:00 (1h), then 30m of next Friday's shift.
    ("start inside the after-midnight tail", {"hours": NIGHT}, "2026-01-10 01:00", 5400, "2026-01-16 22:30"),
    # A holiday closes its whole date, including the tail of the previous night's shift.
    (
        "holiday cuts the overnight tail",
        {"hours": NIGHT, "holidays": ("2026-01-10",)},
        "2026-01-09 23:30",
        3600,
        "2026-01-16 22:30",
    ),
    (
        "holiday on the shift's own date",
        {"hours": NIGHT, "holidays": ("2026-01-09",)},
        "2026-01-09 21:00",
        3600,
        "2026-01-10 01:00",
    ),
    ("negative walks backwards over the weekend", {}, "2026-01-12 09:30", -3600, "2026-01-09 16:30"),
]


@pytest.mark.parametrize(
    ("kwargs", "start", "seconds", "expected"), [c[1:] for c in ADD_CASES], ids=[c[0] for c in ADD_CASES]
)
def test_add(kwargs: dict, start: str, seconds: int, expected: str) -> None:
    c = cal(**kwargs)
    assert show(ATH, c.add(local(ATH, start), seconds)) == expected


# (id, tz, hours, start, seconds, expected UTC instant) -- DST handled through the zone.
DST_ADD_CASES = [
    # Athens springs forward Sun 2026-03-29 03:00 -> 04:00. Sat 22:00 EET = 20:00Z; 6 real hours later
    # is 02:00Z = 05:00 EEST (the night shift lost an hour, so 22:00 + 6 business hours is 05:00).
    ("Athens spring forward", ATH, NIGHT_SAT, "2026-03-28 22:00", 6 * 3600, "2026-03-29 02:00"),
    # Athens falls back Sun 2026-10-25 04:00 -> 03:00. Sat 22:00 EEST = 19:00Z; +6h = 01:00Z (the
    # second 03:00 local, EET).
    ("Athens fall back", ATH, NIGHT_SAT, "2026-10-24 22:00", 6 * 3600, "2026-10-25 01:00"),
    # Friday before the switch is EST (UTC-5): 16:30 = 21:30Z; Monday 09:30 is EDT (UTC-4) = 13:30Z.
    (
        "New York weekday hours across spring forward",
        NY,
        WEEKDAYS_9_17,
        "2026-03-06 16:30",
        3600,
        "2026-03-09 13:30",
    ),
    # New York springs forward Sun 2026-03-08 02:00 -> 03:00. Sat 22:00 EST = 03:00Z; +6h = 09:00Z = 05:00 EDT.
    ("New York spring forward night shift", NY, NIGHT_SAT, "2026-03-07 22:00", 6 * 3600, "2026-03-08 09:00"),
    # New York falls back Sun 2026-11-01 02:00 -> 01:00. Sat 22:00 EDT = 02:00Z; +6h = 08:00Z = 03:00 EST.
    ("New York fall back night shift", NY, NIGHT_SAT, "2026-10-31 22:00", 6 * 3600, "2026-11-01 08:00"),
    # Friday 16:30 EDT = 20:30Z; Monday after fall back 09:30 EST = 14:30Z.
    (
        "New York weekday hours across fall back",
        NY,
        WEEKDAYS_9_17,
        "2026-10-30 16:30",
        3600,
        "2026-11-02 14:30",
    ),
]


@pytest.mark.parametrize(
    ("tz", "hours", "start", "seconds", "expected_utc"),
    [c[1:] for c in DST_ADD_CASES],
    ids=[c[0] for c in DST_ADD_CASES],
)
def test_add_across_dst(tz: str, hours: dict, start: str, seconds: int, expected_utc: str) -> None:
    c = cal(tz, hours)
    assert c.add(local(tz, start), seconds) == utc(expected_utc)


ALL_DAY = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}

# (id, tz, hours, holidays, a local, b local, expected business seconds)
BETWEEN_CASES = [
    (
        "Fri 16:30 to Mon 09:30 is one hour",
        ATH,
        WEEKDAYS_9_17,
        (),
        "2026-01-09 16:30",
        "2026-01-12 09:30",
        3600,
    ),
    ("a full week is 40 hours", ATH, WEEKDAYS_9_17, (), "2026-01-12 00:00", "2026-01-19 00:00", 40 * 3600),
    (
        "a holiday removes its 8 hours",
        ATH,
        WEEKDAYS_9_17,
        ("2026-01-14",),
        "2026-01-12 00:00",
        "2026-01-19 00:00",
        32 * 3600,
    ),
    ("split shift day", ATH, SPLIT, (), "2026-01-12 08:00", "2026-01-12 20:00", 8 * 3600),
    ("inside the lunch break", ATH, SPLIT, (), "2026-01-12 13:10", "2026-01-12 13:50", 0),
    ("overnight shift", ATH, NIGHT, (), "2026-01-09 00:00", "2026-01-11 00:00", 4 * 3600),
    (
        "Athens spring-forward Sunday has 23 hours",
        ATH,
        ALL_DAY,
        (),
        "2026-03-29 00:00",
        "2026-03-30 00:00",
        23 * 3600,
    ),
    (
        "Athens fall-back Sunday has 25 hours",
        ATH,
        ALL_DAY,
        (),
        "2026-10-25 00:00",
        "2026-10-26 00:00",
        25 * 3600,
    ),
    (
        "Athens night shift loses an hour",
        ATH,
        NIGHT_SAT,
        (),
        "2026-03-28 12:00",
        "2026-03-29 12:00",
        7 * 3600,
    ),
    (
        "New York spring-forward Sunday has 23 hours",
        NY,
        ALL_DAY,
        (),
        "2026-03-08 00:00",
        "2026-03-09 00:00",
        23 * 3600,
    ),
    (
        "New York fall-back night shift gains an hour",
        NY,
        NIGHT_SAT,
        (),
        "2026-10-31 12:00",
        "2026-11-01 12:00",
        9 * 3600,
    ),
    # 02:30 does not exist on 2026-03-08 in New York: the interval starts when clocks jump (03:00 EDT).
    (
        "interval starting in the DST gap",
        NY,
        {"sun": ["02:30-05:00"]},
        (),
        "2026-03-08 00:00",
        "2026-03-09 00:00",
        2 * 3600,
    ),
    ("reversed bounds are negative", ATH, WEEKDAYS_9_17, (), "2026-01-12 09:30", "2026-01-09 16:30", -3600),
]


@pytest.mark.parametrize(
    ("tz", "hours", "holidays", "a", "b", "expected"),
    [c[1:] for c in BETWEEN_CASES],
    ids=[c[0] for c in BETWEEN_CASES],
)
def test_between(tz: str, hours: dict, holidays: tuple[str, ...], a: str, b: str, expected: float) -> None:
    c = cal(tz, hours, holidays)
    assert c.between(local(tz, a), local(tz, b)) == expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-01-12 08:59", False),
        ("2026-01-12 09:00", True),
        ("2026-01-12 13:30", False),
        ("2026-01-12 17:59", True),
        ("2026-01-12 18:00", False),
        ("2026-01-17 12:00", True),
        ("2026-01-18 12:00", False),
    ],
)
def test_is_open_split_shift(when: str, expected: bool) -> None:
    assert cal(hours=SPLIT).is_open(local(ATH, when)) is expected


def test_add_and_between_are_inverse() -> None:
    """Randomised round trips over DST-switching zones with split and overnight shifts."""
    rng = random.Random(5)
    hours = {
        "mon": ["08:00-12:00", "13:00-17:30"],
        "wed": ["22:00-03:00"],
        "sat": ["01:30-04:00"],
        "sun": ["09:00-10:00"],
    }
    for tz in (ATH, NY):
        c = cal(tz, hours, ("2026-03-30", "2026-11-02"))
        for _ in range(300):
            a = utc("2026-01-01 00:00") + rng.random() * 365 * 86400
            seconds = rng.randint(1, 60 * 3600)
            due = c.add(a, seconds)
            assert c.between(a, due) == pytest.approx(seconds)
            assert c.add(due, -seconds) <= due
            assert c.between(c.add(due, -seconds), due) == pytest.approx(seconds)


def test_always_open() -> None:
    c = AlwaysOpen()
    assert c.add(100.0, 50) == 150.0
    assert c.between(150.0, 100.0) == -50.0
    assert c.is_open(0.0)


def test_build_calendars_has_builtins() -> None:
    cals = build_calendars(SlaSettings())
    assert isinstance(cals["24x7"], AlwaysOpen)
    business = cals["business"]
    # Built-in business calendar: Mon-Fri 09:00-17:00 UTC.
    assert business.add(utc("2026-01-09 16:30"), 3600) == utc("2026-01-12 09:30")


def test_fast_enough_for_sync_batches() -> None:
    """Interval walking, not minute stepping: 5000 four-hour additions well under a second."""
    c = cal(hours=SPLIT, holidays=("2026-01-19",))
    start = utc("2026-01-01 00:00")
    # Caps against an algorithm gone minute-by-minute (hundreds of times slower), not a speed test:
    # about 0.1 s and 0.01 s on a quiet machine; the figures belong to the bench.
    t0 = time.perf_counter()
    for i in range(5000):
        c.add(start + i * 977.0, 4 * 3600)
    assert time.perf_counter() - t0 < 30.0
    # A year of business time is still a day-by-day walk, not a minute-by-minute one.
    t0 = time.perf_counter()
    c.add(start, 500 * 3600)
    assert time.perf_counter() - t0 < 10.0


def test_calendar_without_open_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one open interval"):
        CalendarSpec(timezone=ATH, hours={"mon": []})
