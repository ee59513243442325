"""Queued and scheduled replies in the thread: times as times, countdowns that tick, and u takes
back any reply still queued (issue item 7)."""

from __future__ import annotations

from replydesk.storage import outbox, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from support import Clock
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


def app_for(workspace, clock=fixed_clock) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=clock)


def notes(app: ReplydeskApp) -> list[str]:
    return [n.message for n in app._notifications]


def first_row(db) -> queries.InboxRow:  # noqa: ANN001
    return queries.inbox_page(db, InboxFilter(), 0, 1)[0]


async def test_a_scheduled_reply_shows_a_time_that_counts_down(workspace, db) -> None:  # noqa: ANN001
    """It said 'leaves in 1800s' and never moved."""
    row = first_row(db)
    outbox.queue_reply(db, row.id, "Your parcel left today", at=FIXED + 1800)
    outbox.queue_reply(db, row.id, "and one more thing", delay=5)
    clock = Clock(FIXED)
    app = app_for(workspace, clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        text = app.thread_view._text.plain
        assert "leaves at 11:00 (in 30m)" in text and "leaves in 5s" in text, text
        assert "1800s" not in text
        clock.advance(3)
        app.main.tick()
        await settle(pilot)
        text = app.thread_view._text.plain
        assert "leaves in 2s" in text and "leaves at 11:00 (in 29m)" in text


async def test_u_takes_back_a_reply_still_queued_after_its_window(workspace, db) -> None:  # noqa: ANN001
    """u said "nothing to undo" for a reply still queued (a scheduled one, or after a restart)."""
    row = first_row(db)
    key = outbox.queue_reply(db, row.id, "See you tomorrow", at=FIXED + 3600)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        assert app.composer.is_open and app.composer.text == "See you tomorrow"
        assert any("It was scheduled for 11:30" in m for m in notes(app)), notes(app)
    assert outbox.get(db, key).state == "cancelled"


async def test_u_on_a_queued_reply_selected_in_the_thread_takes_back_that_one(workspace, db) -> None:  # noqa: ANN001
    """From the thread: select a scheduled reply with [ and take it back with u, though it is
    not the newest."""
    row = first_row(db)
    older = outbox.queue_reply(db, row.id, "the first one", at=FIXED + 3600)
    newer = outbox.queue_reply(db, row.id, "the second one", at=FIXED + 7200)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        await pilot.press("left_square_bracket", "left_square_bracket")  # newest inbound, then back
        await settle(pilot)
        selected = app.thread_view.current_message()
        while selected is not None and selected.outbox_key not in (older, newer):
            await pilot.press("right_square_bracket")
            await settle(pilot)
            selected = app.thread_view.current_message()
        assert selected.outbox_key == older
        await pilot.press("u")
        await settle(pilot)
        assert app.composer.is_open and app.composer.text == "the first one"
    assert outbox.get(db, older).state == "cancelled" and outbox.get(db, newer).state == "queued"
