"""What agents reach for: alerts, undo for triage, counts, the mouse, copy/links/attachments,
the composer showing what it answers, the first run (issue 13, second list)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from textual import events

from replydesk.config import AlertSettings
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import ingest, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.dialogs import ChoiceDialog
from replydesk.workspace import Workspace
from support import Clock
from tui_support import FIXED, fixed_clock, make_config, settle

SIZE = (120, 36)


def app_for(workspace, clock=fixed_clock) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=clock)


def notes(app: ReplydeskApp) -> list[str]:
    return [n.message for n in app._notifications]


# ---- alerts -------------------------------------------------------------------------------------


async def test_a_conversation_reaching_warning_or_breach_alerts_once(make_workspace, db, monkeypatch) -> None:  # noqa: ANN001
    ws = make_workspace(alerts=AlertSettings(notify=True, bell=True, desktop="osc777", every=0))
    warn_at, due_at, conv_id, name = db.conn.execute(
        "SELECT c.sla_warn_at, c.sla_due_at, c.id, p.name FROM conversations c JOIN contacts p ON p.id = c.contact_id "
        "WHERE c.status='open' AND c.sla_state='ok' AND c.sla_warn_at > ? ORDER BY c.sla_warn_at LIMIT 1",
        (FIXED,)).fetchone()
    clock = Clock(FIXED)
    sent: list[str] = []
    monkeypatch.setattr("replydesk.tui.terminal.write_sequence", lambda app, seq: sent.append(seq))
    app = app_for(ws, clock)
    bells: list[int] = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]

    async def at(t: float) -> list[str]:
        """The notifications told when the clock reaches ``t`` (others crossing before are told first)."""
        clock.now = t - 0.5
        app._alert()
        await settle(pilot)
        before = len(notes(app))
        clock.now = t
        app._alert()
        await settle(pilot)
        return notes(app)[before:]

    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app._alert()
        await settle(pilot)
        assert not [m for m in notes(app) if "SLA" in m]  # the backlog does not alert at start
        told = await at(warn_at + 0.25)
        assert len(told) == 1 and name in told[0] and "close to breaching" in told[0]
        bells_then = len(bells)
        app._alert()
        await settle(pilot)
        assert len(bells) == bells_then  # once per state: nothing new
        told = await at(due_at + 0.25)
        assert len(told) == 1 and name in told[0] and "breached its SLA" in told[0]
        assert sent and all(s.startswith("\x1b]777;notify;replydesk;") and s.endswith("\x07") for s in sent)
        assert len(sent) == len(bells)  # each telling rings once and asks the desktop once
    assert conv_id


async def test_a_flood_of_breaches_is_one_notification_then_one_summary_with_nobody_left_out(
        make_workspace, db) -> None:  # noqa: ANN001
    """A big inbox crosses deadlines every second: the first alert is told at once, the ones within
    ``ui.alerts.every`` after it are gathered into one summary (the screen does not fill with toasts
    repainting under the agent's keys), and every conversation that crossed is counted in it."""
    ws = make_workspace(alerts=AlertSettings(notify=True, bell=True, every=30))
    times = sorted(t for (t,) in db.conn.execute(
        "SELECT sla_warn_at FROM conversations WHERE status='open' AND sla_state='ok' AND sla_warn_at > ? "
        "ORDER BY sla_warn_at LIMIT 4", (FIXED,)))
    assert len(times) == 4
    clock = Clock(FIXED)
    app = app_for(ws, clock)
    bells: list[int] = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]

    def sla_notes() -> list[str]:
        return [m for m in notes(app) if "SLA" in m or "breach" in m]

    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app._alert()
        clock.now = times[0] + 0.5
        app._alert()
        await settle(pilot)
        assert len(sla_notes()) == 1 and len(bells) == 1  # after a quiet spell: at once
        told_at = clock.now
        crossed_before = clock.now
        for t in times[1:]:  # more cross within the pacing interval: nothing new on screen yet
            clock.now = min(t + 0.5, told_at + 29)
            app._alert()
        await settle(pilot)
        assert len(sla_notes()) == 1 and len(bells) == 1
        clock.now = told_at + 30
        app._alert()
        await settle(pilot)
        crossed = [r for r in db.conn.execute(
            "SELECT p.name, c.sla_warn_at, c.sla_due_at FROM conversations c JOIN contacts p ON p.id = c.contact_id "
            "WHERE c.status IN ('open','pending') AND c.listening IS NULL AND ((c.sla_warn_at > ? AND c.sla_warn_at <= ?) OR "
            "(c.sla_due_at > ? AND c.sla_due_at <= ?))", (crossed_before, clock.now, crossed_before, clock.now))]
        later = sla_notes()[1:]
        assert len(later) == 1 and len(bells) == 2
        summary_text = later[0]
        if len(crossed) == 1:
            assert crossed[0][0] in summary_text
        else:
            counted = sum(int(w) for w in re.findall(r"(\d+) (?:conversations?|are|is)", summary_text))
            assert counted == len(crossed), summary_text
            assert any(name in summary_text for name, *_ in crossed)


def test_desktop_notifications_cannot_be_broken_by_customer_text() -> None:
    from replydesk.tui.terminal import desktop_notification

    evil = "Eve\x07\x1b]0;pwned\x07;ok\u2028x"
    seq = desktop_notification("osc9", "replydesk", evil, in_tmux=False)
    assert seq.count("\x07") == 1 and seq.count("\x1b") == 1 and seq.endswith("\x07")
    wrapped = desktop_notification("osc777", "t", evil, in_tmux=True)
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]777;notify;t;") and wrapped.endswith("\x07\x1b\\")


# ---- undo and bulk --------------------------------------------------------------------------------


async def test_u_undoes_triage_with_a_toast_that_says_what(workspace, db) -> None:  # noqa: ANN001
    first, second = queries.inbox_page(db, InboxFilter(), 0, 2)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")  # resolve the first
        await settle(pilot)
        assert queries.get_row(db, first.id).status == "resolved"
        await pilot.press("t")
        await settle(pilot)
        app.screen.query_one("Input").value = "refund"
        await pilot.press("enter")  # tag the second (now first)
        await settle(pilot)
        assert queries.get_row(db, second.id).tags == ("refund",)
        await pilot.press("u")
        await settle(pilot)
        assert queries.get_row(db, second.id).tags == ()
        assert any(m.startswith("Undone: Tagged refund (1 conversation)") for m in notes(app)), notes(app)
        await pilot.press("u")
        await settle(pilot)
        assert queries.get_row(db, first.id).status == "open"
        assert any(m.startswith("Undone: Resolved") for m in notes(app))
    kinds = [r[0] for r in db.conn.execute(
        "SELECT json_extract(data, '$.status') FROM events WHERE conversation_id=? AND kind='status' ORDER BY seq",
        (first.id,))]
    assert kinds == ["resolved", "open"]  # the log keeps the action and its undo


async def test_a_bulk_action_on_more_than_five_asks_first(workspace, db) -> None:  # noqa: ANN001
    rows = queries.inbox_page(db, InboxFilter(), 0, 7)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*["space"] * 7)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog) and "7 conversations" in app.screen.title_text
        await pilot.press("down", "enter")  # no
        await settle(pilot)
        assert all(queries.get_row(db, r.id).status == "open" for r in rows)
        await pilot.press("x")
        await settle(pilot)
        await pilot.press("enter")  # yes
        await settle(pilot)
        assert all(queries.get_row(db, r.id).status == "resolved" for r in rows)
        await pilot.press("u")
        await settle(pilot)
        assert all(queries.get_row(db, r.id).status == "open" for r in rows)


# ---- counts -------------------------------------------------------------------------------------


async def test_counts_move_and_act_beside_the_view_keys(make_workspace, db) -> None:  # noqa: ANN001
    """5j moves five rows and 3x resolves three, although 5 and 3 are view keys: the digit
    switched the view, and the count key after it takes the count and brings the view back."""
    ws = make_workspace(count_timeout=3600)  # whatever the machine's speed, the keys come "at once"
    rows = queries.inbox_page(db, InboxFilter(), 0, 10)
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5", "j")
        await settle(pilot)
        assert app.main.view_title == "Inbox" and app.inbox.cursor_id == rows[5].id
        await pilot.press("1", "2", "k")
        await settle(pilot)
        assert app.inbox.cursor_index == 0
        await pilot.press("3", "x")
        await settle(pilot)
        assert [queries.get_row(db, r.id).status for r in rows[:4]] == ["resolved"] * 3 + ["open"]
        assert app.main.view_title == "Inbox"
        await pilot.press("2", "r")  # not a count key: the digit was view 2, and r replies there
        await settle(pilot)
        assert app.main.view_title == "Breached" and app.composer.is_open


async def test_counts_off_digits_are_only_views(workspace) -> None:  # noqa: ANN001
    app = app_for(workspace)  # the test config turns counts off (count_timeout 0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2", "j")
        await settle(pilot)
        assert app.main.view_title == "Breached" and app.inbox.cursor_index == 1


# ---- mouse --------------------------------------------------------------------------------------


async def test_a_click_selects_a_row_and_the_wheel_scrolls_the_pane_under_it(workspace, db) -> None:  # noqa: ANN001
    rows = queries.inbox_page(db, InboxFilter(), 0, 6)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.click("#inbox", offset=(10, 4))
        await settle(pilot)
        assert app.inbox.cursor_id == rows[4].id
        top = app.inbox.scroll_offset.y
        await pilot._post_mouse_events([events.MouseScrollDown], "#inbox", offset=(10, 4))
        await settle(pilot)
        assert app.inbox.scroll_offset.y > top
        thread = app.thread_view
        await pilot.pause(0.1)
        await settle(pilot)
        thread.scroll_home(animate=False)
        await settle(pilot)
        before = thread.scroll_offset.y
        await pilot._post_mouse_events([events.MouseScrollDown], "#thread", offset=(5, 2))
        await settle(pilot)
        assert thread.scroll_offset.y > before or thread.max_scroll_y == 0


# ---- copy, links, attachments ---------------------------------------------------------------------


def fake_opener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``xdg-open`` on PATH that records what it was asked to open."""
    bin_dir, log = tmp_path / "bin", tmp_path / "opened.txt"
    bin_dir.mkdir()
    script = bin_dir / "xdg-open"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {log}\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def add_mail(db, text: str, meta: dict) -> str:  # noqa: ANN001
    msg = IncomingMessage(
        native_id="att-1", conversation_native_id="att", platform="email", kind="email",
        contact=Contact(native_id="att-person", name="Zoe Quinn", handle="zoe@example.com"),
        text=text, created_at=FIXED - 90000, author="Zoe Quinn", subject="Receipt", meta=meta,
    )
    ingest.ingest(db, "demo", [FetchResult(messages=[msg], cursor={}, stream="test")])
    return "demo:att"


async def wait_opened(pilot, log: Path) -> list[str]:  # noqa: ANN001
    for _ in range(200):  # bounded: each round waits for the app to be idle
        await settle(pilot)
        if log.exists() and log.read_text().strip():
            return log.read_text().split()
        await pilot.pause(0.02)
    return []


async def test_links_are_listed_in_full_and_opened_by_the_system_opener(workspace, db, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    log = fake_opener(tmp_path, monkeypatch)
    conv = add_mail(db, "Track: https://bank.example@evil.example/login (do not click)\n"
                        "Our page https://shop.example/orders/12. And javascript:alert(1)", {})
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.open_conversation(conv)
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        await pilot.press("L")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        shown = [preview for _, preview in app.screen.items]
        assert shown == ["evil.example — https://bank.example@evil.example/login",
                         "shop.example — https://shop.example/orders/12"]
        await pilot.press("down", "enter")
        opened = await wait_opened(pilot, log)
    assert opened == ["https://shop.example/orders/12"]


async def test_attachments_are_listed_and_opened_with_the_system_opener(workspace, db, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    log = fake_opener(tmp_path, monkeypatch)
    stored = workspace.data_dir / "attachments" / "receipt.pdf"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(b"%PDF-1.4")
    conv = add_mail(db, "Receipt attached.", {"attachments": [
        {"name": "receipt.pdf", "type": "application/pdf", "size": 2048, "path": "receipt.pdf"},
        {"name": "photo.jpg", "type": "image/jpeg", "size": 123456},
        {"name": "../../etc/passwd", "type": "text/plain", "size": 1, "path": "../../../etc/passwd"}]})
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.open_conversation(conv)
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        assert [p for _, p in app.screen.items] == [
            "receipt.pdf · application/pdf · 2.0 KB", "photo.jpg · image/jpeg · 120.6 KB",
            "../../etc/passwd · text/plain · 1 B"]
        await pilot.press("down", "down", "enter")  # a path outside the workspace is never opened
        await settle(pilot)
        assert any("not kept in the cache" in m for m in notes(app))
        await pilot.press("v")
        await settle(pilot)
        await pilot.press("enter")
        opened = await wait_opened(pilot, log)
    assert opened == [str(stored.resolve())]


async def test_yank_copies_through_osc52_only_when_asked(make_workspace, db) -> None:  # noqa: ANN001
    first = queries.inbox_page(db, InboxFilter(), 0, 1)[0]
    app = app_for(make_workspace())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("Y")
        await settle(pilot)
        assert app.clipboard == "" and any("Copying is off" in m and first.id in m for m in notes(app))
    app = app_for(make_workspace(clipboard="osc52"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("Y")
        await settle(pilot)
        assert app.clipboard == first.id
        await pilot.pause(0.1)
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert app.clipboard == app.thread_view.current_message().text


# ---- the composer shows what it answers -----------------------------------------------------------


async def test_the_composer_shows_the_answered_message_at_80x24_and_quotes_it(workspace, db) -> None:  # noqa: ANN001
    first = queries.inbox_page(db, InboxFilter(), 0, 1)[0]
    answered = [m for m in queries.thread(db, first.id).messages if m.direction == "in"][-1]
    app = app_for(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        screen = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "↳" in screen and answered.text.split()[0] in screen.split("↳", 1)[1].split("\n")[0]
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert app.composer.text.splitlines()[1] == "> " + answered.text.splitlines()[0]


async def test_a_new_customer_message_in_the_open_thread_is_announced(workspace, db) -> None:  # noqa: ANN001
    first = queries.inbox_page(db, InboxFilter(), 0, 1)[0]
    account, native = first.id.split(":", 1)
    thread = queries.thread(db, first.id)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        customer = next(m for m in thread.messages if m.direction == "in")
        msg = IncomingMessage(
            native_id="late-1", conversation_native_id=native, platform=first.platform, kind=first.kind,
            contact=Contact(native_id=db.conn.execute("SELECT native_id FROM contacts WHERE id=(SELECT contact_id "
                                                      "FROM conversations WHERE id=?)", (first.id,)).fetchone()[0],
                            name=first.customer, handle=first.handle),
            text="Any news? I need it by Friday.", created_at=FIXED - 1, author=customer.author)
        ingest.ingest(db, account, [FetchResult(messages=[msg], cursor={}, stream="test")])
        app.main.refresh_all()
        await settle(pilot)
        assert any("sent a new message in this conversation" in m for m in notes(app)), notes(app)
        assert app.composer.answering.text == "Any news? I need it by Friday."


# ---- first run ------------------------------------------------------------------------------------


async def test_an_empty_workspace_without_accounts_says_how_to_start(tmp_path) -> None:  # noqa: ANN001
    config = make_config().model_copy(update={"accounts": []})
    ws = Workspace(tmp_path / "empty", config, clock=fixed_clock)
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = " ".join(app.inbox.render_line(y).text.strip() for y in range(6))
        assert "no accounts yet" in text and "replydesk demo" in text, text
