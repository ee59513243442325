"""The Listening view: its own saved view (key 7), matches marked with their query, no clock, and
hostile text in matched posts shown as safely as anywhere else; the inbox never shows them."""

from __future__ import annotations

import re

import pytest

from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import ingest, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.bars import HeaderBar
from replydesk.tui.format import LISTENING_SYMBOL, term_len
from replydesk.tui.sla_pane import SlaPane
from tui_support import FIXED, SHARED, fixed_clock, hostile_cases, settle

CASES = hostile_cases()
pytestmark = pytest.mark.skipif(not CASES, reason=f"hostile samples not found in {SHARED} (../shared absent)")
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def matches() -> FetchResult:
    return FetchResult([IncomingMessage(
        native_id=f"heard-{n}", conversation_native_id=f"heard-{n}", platform="mastodon", kind="mention",
        contact=Contact(native_id=f"fan-{n}", name=case["text"], handle="@" + case["text"][:30]),
        text="Duka la Amani " + case["text"], created_at=FIXED - 900 - n, author=case["text"])
        for n, case in enumerate(CASES)], {"sources": {}}, "listen:brand", listening="brand")


async def test_matches_wait_in_the_listening_view_and_render_safely(workspace, db) -> None:  # noqa: ANN001
    inbox_total = queries.inbox_count(db, InboxFilter())
    ingest.ingest(db, "demo", [matches()])
    assert queries.inbox_count(db, InboxFilter()) == inbox_total
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert app.inbox.total == inbox_total  # the inbox: none of them
        header = app.screen.query_one(HeaderBar)._shown.plain
        assert f"{LISTENING_SYMBOL} listening {len(CASES)}" in header
        await pilot.press("7")
        await settle(pilot)
        assert app.screen.view_title == "Listening" and app.inbox.total == len(CASES)
        width = app.inbox.scrollable_content_region.width
        for y in range(min(app.inbox.size.height, len(CASES))):
            line = app.inbox.render_line(y).text
            assert term_len(line) == width, line
            assert f"{LISTENING_SYMBOL}brand" in line.replace(" ", ""), line  # the query stands for the clock
        for index in range(len(CASES)):
            app.inbox.move_to(index)
            await settle(pilot)
            await pilot.pause(0.06)  # the thread read is debounced
            await settle(pilot)
            for strip in app.screen._compositor.render_strips():
                bad = FORBIDDEN.findall(strip.text)
                assert not bad, f"control/bidi char {bad!r} reached the screen: {strip.text!r}"
        pane = app.screen.query_one(SlaPane).render_sla(app.inbox.current, None, FIXED).plain
        assert pane.startswith("Listening found by brand · no SLA clock")
        await pilot.press("1")
        await settle(pilot)
        assert app.inbox.total == inbox_total
