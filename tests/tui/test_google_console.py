"""Google reviews and helpdesk tickets in the console (the pilot, a real SQLite workspace): the stars
in the inbox row and the thread (also with NO_COLOR), a review's location, its edits and a
rating-only review in the thread, ``r`` on a replied review editing our reply, and an escalation's
ticket with its status in the thread and the SLA pane."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rich.segment import Segment
from textual.color import Color
from textual.filter import Monochrome

from google_fake import MAIN_ST, TITLES, FakeGoogle
from replydesk.config import demo_config
from replydesk.model import FetchResult
from replydesk.providers import oauth
from replydesk.providers.google import GoogleProvider
from replydesk.storage import ingest, outbox
from replydesk.tui.app import ReplydeskApp
from replydesk.workspace import Workspace
from support import Clock
from tui_support import select, settle

SIZE = (130, 40)
REVIEW = f"{MAIN_ST}/reviews/c1"


@pytest.fixture
def shop(tmp_path: Path, clock: Clock, file_keyring) -> tuple[Workspace, Clock]:
    """The demo shop, plus Google reviews the Google provider mapped from the documented payloads
    (stored on the demo account, whose facts hold Google's: one reply per review, edits allowed)."""
    ws = Workspace(tmp_path / "ws", demo_config(seed=7), clock=clock)
    db = ws.open_db()
    asyncio.run(ws.engine(db).run_once())
    fake = FakeGoogle(clock)
    fake.tokens.add("t")
    oauth.TokenStore("demo").save(oauth.TokenSet("t", None, clock.now + 3600, clock.now))
    fake.review(MAIN_ST, "c1", 2, "The espresso was cold and the table sticky.", written=clock.now - 5 * 3600)
    fake.review(MAIN_ST, "c2", 5, None, written=clock.now - 4 * 3600, anonymous=True)
    google = GoogleProvider("demo", {"client_id": "c", "locations": [MAIN_ST]}, lambda: None,
                            transport=fake.transport, clock=clock)
    first = asyncio.run(google.fetch({}))
    fake.edit(MAIN_ST, "c1", 3, "Edit: they replaced it with a hot one, thanks.", clock.now - 3600)
    later = asyncio.run(google.fetch({}))
    ingest.ingest(db, "demo", [FetchResult([m for r in [*first, *later] for m in r.messages], None, "reviews")])
    db.close()
    return ws, clock


def app_for(ws: Workspace, clock: Clock) -> ReplydeskApp:
    return ReplydeskApp(ws, start_engine=False, clock=clock)


async def test_the_stars_show_in_the_row_and_the_thread_without_colour(shop, monkeypatch) -> None:  # noqa: ANN001
    ws, clock = shop
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for(ws, clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.no_color
        await select(pilot, f"demo:{REVIEW}")
        row = app.inbox.current
        assert row.rating == 3  # the latest version's stars
        inbox, grey = app.inbox, Monochrome()
        background = Color.from_rich_color(inbox.rich_style.bgcolor)
        for width, shown in ((110, "★★★☆☆ Corner Coffee — Main St — Edit: they replaced"), (70, "3★ Corner Coffee")):
            segments = inbox.row_segments(row, width, ("", "ok"), base=inbox._base(), cursor=None, marked=False)
            plain = "".join(s.text for s in grey.apply([Segment(s.text, s.style) for s in segments], background))
            assert shown in plain, plain
        painted = [inbox.render_line(y).text for y in range(inbox.size.height)]
        # painted on screen: the list is narrow beside the thread, so the compact form
        assert any("Maria K." in line and "3★ Corner Coffee" in line for line in painted), painted
        text = app.thread_view.render_thread(app.thread_view.thread).plain
        assert f"Location: {TITLES[MAIN_ST]}" in text
        first, second = text.index("★★☆☆☆ 2/5"), text.index("★★★☆☆ 3/5  ✎ edited review")
        assert first < text.index("The espresso was cold") < second < text.index("Edit: they replaced it")
        await select(pilot, f"demo:{MAIN_ST}/reviews/c2")
        text = app.thread_view.render_thread(app.thread_view.thread).plain
        assert "★★★★★ 5/5" in text and "(a rating without words)" in text and "Anonymous reviewer" in text


async def test_r_on_a_replied_review_edits_our_reply(shop) -> None:  # noqa: ANN001
    ws, clock = shop
    db = ws.open_db()
    conv = f"demo:{REVIEW}"
    key = outbox.queue_reply(db, conv, "Sorry! Next one is on us.")
    outbox.mark_sending(db, key)
    outbox.mark_sent(db, key, f"{REVIEW}/reply", clock.now)
    app = app_for(ws, clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        await pilot.press("r")
        await settle(pilot)
        assert app.composer.is_open and app.composer.mode == "edit"
        assert app.composer.text == "Sorry! Next one is on us."
        await pilot.press("end", "space", "!")
        await pilot.press("ctrl+s")
        await settle(pilot)
    (edit,) = [i for i in outbox.pending(db) if i.action == "edit_reply"]
    assert edit.text == "Sorry! Next one is on us. !" and edit.payload["remote_id"] == f"{REVIEW}/reply"
    db.close()


async def test_the_ticket_and_its_status_show_in_the_thread_and_the_sla_pane(shop) -> None:  # noqa: ANN001
    ws, clock = shop
    db = ws.open_db()
    conv = f"demo:{REVIEW}"
    key = outbox.queue_ticket(db, conv, account="demo", target="zendesk")
    outbox.mark_sending(db, key)
    outbox.mark_done(db, key, "1234", clock.now, {"url": "https://shop.zendesk.com/agent/tickets/1234",
                                                  "label": "Zendesk", "status": "pending"})
    db.close()
    app = app_for(ws, clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        text = app.thread_view.render_thread(app.thread_view.thread).plain
        assert "Ticket: Zendesk #1234 · pending  https://shop.zendesk.com/agent/tickets/1234" in text
        sla = " ".join(str(app.main.query_one("#sla").render()).split())
        assert "Ticket Zendesk #1234 · pending" in sla
