"""The console in a team and the collision check: what the user sees, on the real parts.

Solo: a customer who writes while a reply is being written stops the send with a question. Team:
ben's console (a pilot app whose own engine is the team's local engine) sees "ana is replying…"
in the thread and a mark in the list once ana's console announces it (ana here is headless: her
local engine and her presence file, as her console would leave them), and ben's send after ana's
reply reached his cache is stopped with what changed. Real PostgreSQL, real engines, real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replydesk import presence
from replydesk.config import Config
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import ingest, outbox, queries
from replydesk.storage.db import open_database
from replydesk.team import TeamSync
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.dialogs import ChoiceDialog
from replydesk.workspace import Workspace
from team_support import engine_ana_ben, engine_config, join_engine_ana_ben
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


async def until(pilot: Any, what: str, check: Any, timeout: float = 30.0) -> float:
    """Wait for a condition on screen (never for a duration); returns how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        await settle(pilot)
        if check():
            return time.monotonic() - started
        await pilot.pause(0.02)
    raise AssertionError(f"never happened: {what}")


async def type_text(pilot: Any, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


async def test_a_customer_writing_during_a_reply_stops_the_send_with_what_changed(workspace, db) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        row = app.inbox.current
        await until(pilot, "the thread", lambda: app.thread_view.thread is not None
                    and app.thread_view.thread.conversation.id == row.id)
        await pilot.press("r")
        await type_text(pilot, "On its way")
        conv = queries.thread(db, row.id)
        native = row.id.split(":", 1)[1]
        first_in = next(m for m in conv.messages if m.direction == "in")
        ingest.ingest(db, row.account, [FetchResult(messages=[IncomingMessage(
            native_id="late-1", conversation_native_id=native, platform=row.platform, kind=row.kind,
            contact=Contact(native_id="late-contact", name=row.customer, handle=row.handle),
            text="Actually I found it, cancel please", created_at=FIXED, author=first_in.author)], cursor={},
            stream="test")])
        await pilot.press("ctrl+s")
        await until(pilot, "the question", lambda: isinstance(app.screen, ChoiceDialog))
        assert "wrote: “Actually I found it, cancel please”" in app.screen.title_text
        assert outbox.pending(db) == []  # nothing queued while the user decides
        await pilot.press("down", "enter")  # back to the draft: text intact, the new message now seen
        await settle(pilot)
        assert app.composer.is_open and app.composer.text_area.text == "On its way"
        await pilot.press("ctrl+s")  # nothing new since: it goes
        await settle(pilot)
    assert [i.text for i in outbox.pending(db)] == ["On its way"]


@pytest.fixture
def team_dirs(pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    team = engine_ana_ben(pg_server, monkeypatch)
    return join_engine_ana_ben(team, tmp_path, engine_config(tmp_path / "platform", backlog=6))


@pytest.fixture
def ana_online(team_dirs: dict[str, Path]) -> Iterator[Path]:
    """Ana's local engine running, as her console would run it (she has no screen in this test)."""
    db = open_database(team_dirs["ana"])
    engine = TeamSync(team_dirs["ana"], db)
    thread = threading.Thread(target=engine.run_blocking, daemon=True)
    thread.start()
    try:
        yield team_dirs["ana"]
    finally:
        presence.announce(team_dirs["ana"], None, None)
        engine.stop()
        thread.join(10)
        db.close()


@pytest.mark.server
@pytest.mark.timeout(120)
async def test_ben_sees_ana_replying_and_his_send_after_her_reply_is_stopped(team_dirs, ana_online) -> None:  # noqa: ANN001
    app = ReplydeskApp(Workspace(team_dirs["ben"], Config()))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, "ben's inbox", lambda: app.inbox.current is not None)
        conv_id = app.inbox.current.id
        await until(pilot, "the thread", lambda: app.thread_view.thread is not None)
        assert app.workspace.config.ui.agent == "ben"  # "me" is the agent the workspace joined as

        with presence.WRITING:
            presence.announce(ana_online, conv_id, "replying")  # ana opened the composer
        took = await until(pilot, "ana's presence in ben's thread",
                           lambda: "ana is replying…" in app.thread_view._text.plain)
        print(f"presence reached ben's screen in {took:.3f} s")
        assert app.inbox.presence.get(conv_id) == ("✎", "ana")

        await pilot.press("r")
        await type_text(pilot, "We are on it")
        assert "ana replying too" in str(app.composer.query_one("#composer-info").render())
        db = open_database(ana_online)
        try:
            outbox.queue_reply(db, conv_id, "Your parcel left today", actor="ana")
        finally:
            db.close()
        ben = open_database(team_dirs["ben"])
        try:
            await until(pilot, "ana's reply in ben's cache", lambda: any(
                m.author == "ana" and m.direction == "out" for m in queries.thread(ben, conv_id).messages))
        finally:
            ben.close()
        await pilot.press("ctrl+s")
        await until(pilot, "the collision question", lambda: isinstance(app.screen, ChoiceDialog))
        assert "ana replied: “Your parcel left today”" in app.screen.title_text
        await pilot.press("escape")  # not now: back to the draft
        await settle(pilot)
        assert app.composer.is_open and app.composer.text_area.text == "We are on it"
        ben = open_database(team_dirs["ben"])
        try:
            assert [i.text for i in outbox.pending(ben, ("queued", "sending", "sent"))] == ["Your parcel left today"]
        finally:
            ben.close()
