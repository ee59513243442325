"""Local times typed by a person mean the same instant in the CLI and the console, in the zone the
user configured (or the system's), DST-correct around both changes of a year in two zones.

2026's changes: Europe/Athens +02 -> +03 on 29 March (03:00 -> 04:00), back on 25 October
(04:00 -> 03:00); America/New_York -05 -> -04 on 8 March (02:00 -> 03:00), back on 1 November
(02:00 -> 01:00). Each case starts at an evening or a night next to a change and types a time that
lies on the other side of it.
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from replydesk.cli import main
from replydesk.config import Config, UiSettings
from replydesk.storage import outbox, queries
from replydesk.timeparse import parse_when
from replydesk.tui.format import snooze_until
from replydesk.workspace import Workspace
from support import Clock, make_workspace, sync_once

CHANGES = {
    "Europe/Athens": ("2026-03-29", "2026-10-25"),
    "America/New_York": ("2026-03-08", "2026-11-01"),
}
#: (hours before the change day's midnight, what is typed, the local wall time expected, days later)
CASES = [
    (4, "tomorrow 9:00", (9, 0), 1),
    (4, "tomorrow", (9, 0), 1),
    (4, "tomorrow 17:30", (17, 30), 1),
    (4, "09:30", (9, 30), 1),  # a bare time already past today: tomorrow, on tomorrow's offset
    (-1, "23:00", (23, 0), 0),  # an hour past midnight on the change day, later the same day
    (4, "{day} 08:15", (8, 15), 1),  # the weekday of the change day
    (4, "{date}T10:00", (10, 0), 1),  # ISO without an offset: local
]


def local(zone: str, date: str, hour: int = 0) -> float:
    y, m, d = map(int, date.split("-"))
    return dt.datetime(y, m, d, hour, tzinfo=ZoneInfo(zone)).timestamp()


def expect(zone: str, day: str, days_later: int, hhmm: tuple[int, int], now: float) -> float:
    start = dt.datetime.fromtimestamp(now, ZoneInfo(zone)).date() + dt.timedelta(days=days_later)
    return dt.datetime.combine(start, dt.time(*hhmm), ZoneInfo(zone)).timestamp()


def cases() -> list[tuple[str, str, int, str, tuple[int, int], int]]:
    out = []
    for zone, days in CHANGES.items():
        for day in days:
            for before, typed, hhmm, later in CASES:
                out.append((zone, day, before, typed, hhmm, later))
    return out


@pytest.fixture
def system_zone(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Set the system's zone (TZ) for one test, as a user's machine has it."""

    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def _typed(typed: str, day: str) -> str:
    weekday = dt.date.fromisoformat(day).strftime("%A").lower()
    return typed.format(day=weekday, date=day)


@pytest.mark.parametrize(("zone", "day", "before", "typed", "hhmm", "later"), cases())
def test_typed_times_are_wall_clock_times_across_the_change(system_zone, zone, day, before, typed, hhmm,
                                                            later) -> None:  # noqa: ANN001
    system_zone(zone)  # the CLI's default zone is the system's
    now = local(zone, day) - before * 3600
    if before < 0:
        later = 0
    want = expect(zone, day, later, hhmm, now)
    text = _typed(typed, day)
    assert parse_when(text, now) == want, (zone, day, text)  # the system's zone, its rules
    assert parse_when(text, now, zone) == want  # the configured zone
    # the console reads the same text the same way (its presets: "tomorrow" is tomorrow 9:00)
    assert snooze_until(text, now, ZoneInfo(zone)) == want
    assert dt.datetime.fromtimestamp(want, ZoneInfo(zone)).strftime("%H:%M") == f"{hhmm[0]:02d}:{hhmm[1]:02d}"


def test_durations_are_elapsed_time_across_the_change(system_zone) -> None:  # noqa: ANN001
    system_zone("Europe/Athens")
    now = local("Europe/Athens", "2026-03-29", 2)  # 02:00, an hour before the clocks jump
    assert parse_when("2h", now) == now + 7200  # 05:00 on the new offset: two real hours later
    assert snooze_until("2h", now, ZoneInfo("Europe/Athens")) == now + 7200


def test_the_console_and_the_cli_use_the_configured_zone(tmp_path, clock: Clock) -> None:  # noqa: ANN001
    from replydesk.tui.app import _workspace_tz

    config = Config(ui=UiSettings(timezone="America/New_York"))
    ws = Workspace(tmp_path, config)
    assert _workspace_tz(ws) == ZoneInfo("America/New_York")
    assert _workspace_tz(Workspace(tmp_path, Config())) is not None  # the system's, never a fixed UTC


def test_reply_at_and_snooze_until_from_the_cli_use_the_configured_zone(tmp_path, clock: Clock,
                                                                        capsys) -> None:  # noqa: ANN001
    ws = make_workspace(tmp_path / "ws", clock)
    sync_once(ws, clock)
    config = tmp_path / "config.yaml"
    config.write_text("ui:\n  timezone: Europe/Athens\n", encoding="utf-8")
    args = ["--data-dir", str(ws.data_dir), "--config", str(config)]
    assert main(["reply", "c1", "--text", "later", "--at", "tomorrow 9:00", "--json", *args]) == 0
    capsys.readouterr()
    assert main(["snooze", "c2", "--until", "tomorrow 9:00", *args]) == 0
    db = ws.open_db()
    try:
        (item,) = outbox.pending(db)
        athens = ZoneInfo("Europe/Athens")
        snoozed = queries.thread(db, queries.resolve_conversation(db, "c2")).snoozed_until
        for at in (item.not_before, snoozed):
            when = dt.datetime.fromtimestamp(at, athens)
            assert when.strftime("%H:%M") == "09:00"
            assert when.date() == dt.datetime.now(athens).date() + dt.timedelta(days=1)
    finally:
        db.close()


def test_an_unknown_zone_is_a_config_error(tmp_path, capsys) -> None:  # noqa: ANN001
    config = tmp_path / "config.yaml"
    config.write_text("ui:\n  timezone: Mars/Olympus\n", encoding="utf-8")
    assert main(["--config", str(config), "config", "check"]) == 2
    assert f"{config}:2: ui.timezone: unknown time zone 'Mars/Olympus'" in capsys.readouterr().err
