"""A long thread opens on its first message and its newest ones, the middle folded into one line
that says how many messages it holds; the fold key or [ moving into it shows them all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import ingest
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.thread import ThreadView
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 40)
COUNT = 60


def add_long_thread(db) -> str:  # noqa: ANN001
    person = Contact(native_id="long-person", name="Lena Long", handle="lena@example.com")
    msgs = [IncomingMessage(
        native_id=f"long-{i}", conversation_native_id="long", platform="email", kind="email", contact=person,
        text=f"Message number {i:02d} about the order", created_at=FIXED - 90000 + i * 60, author="Lena Long",
        subject="A long story") for i in range(COUNT)]
    ingest.ingest(db, "demo", [FetchResult(messages=msgs, cursor={}, stream="test")])
    return "demo:long"


def transcript(view: ThreadView) -> str:
    return "\n".join(strip.text for strip in view._lines)


@asynccontextmanager
async def long_thread_open(workspace, db) -> AsyncIterator[tuple[Any, ThreadView]]:  # noqa: ANN001
    """The console with the long conversation open in the thread: (pilot, thread view)."""
    conv_id = add_long_thread(db)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.open_conversation(conv_id)
        for _ in range(100):  # bounded: each round waits for the app to be idle
            await settle(pilot)
            view = app.thread_view
            if view.thread is not None and view.thread.conversation.id == conv_id:
                yield pilot, view
                return
        raise AssertionError("the long conversation never opened")


async def test_a_long_thread_opens_folded_and_the_fold_key_shows_every_message(workspace, db) -> None:  # noqa: ANN001
    async with long_thread_open(workspace, db) as (pilot, view):
        shown = transcript(view)
        hidden = COUNT - 1 - ThreadView.NEWEST
        assert "Message number 00" in shown  # the first message: what the customer came with
        assert f"Message number {COUNT - 1:02d}" in shown and f"Message number {COUNT - ThreadView.NEWEST:02d}" in shown
        assert f"{hidden} earlier messages" in shown and "z shows them" in shown
        assert not any(f"Message number {i:02d}" in shown for i in range(1, COUNT - ThreadView.NEWEST))
        pilot.app.main.focus()
        await pilot.press("z")
        await settle(pilot)
        shown = transcript(view)
        assert all(f"Message number {i:02d}" in shown for i in range(COUNT))
        assert "earlier messages" not in shown


async def test_bracket_moving_into_the_folded_middle_unfolds_it(workspace, db) -> None:  # noqa: ANN001
    async with long_thread_open(workspace, db) as (pilot, view):
        for _ in range(ThreadView.NEWEST - 1):  # from the newest to the oldest shown: still folded
            view.select_message(-1)
        assert "earlier messages" in transcript(view)
        picked = view.select_message(-1)  # one more: into the middle
        await settle(pilot)
        shown = transcript(view)
        assert picked is not None and picked.text.endswith(f"{COUNT - ThreadView.NEWEST - 1:02d} about the order")
        assert "earlier messages" not in shown and "Message number 05" in shown


async def test_a_reply_that_failed_in_the_folded_middle_is_counted_on_the_fold_line(workspace, db) -> None:  # noqa: ANN001
    conv_id = add_long_thread(db)
    mid = db.conn.execute("SELECT id FROM messages WHERE conversation_id=? ORDER BY created_at LIMIT 1 OFFSET 10",
                          (conv_id,)).fetchone()[0]
    with db.transaction():  # our reply in the middle that the platform refused
        db.conn.execute("UPDATE messages SET direction='out', state='failed' WHERE id=?", (mid,))
    async with long_thread_open(workspace, db) as (_, view):
        fold = next(line for line in transcript(view).splitlines() if "earlier messages" in line)
        assert "1 not delivered" in fold


async def test_the_fold_hides_the_middles_actions_and_counts_the_failed_but_not_the_first_messages(
        workspace, db) -> None:  # noqa: ANN001
    """An action stands after the message before it: one after the first message stays in sight
    above the fold (and is not counted in it); a failed one among the folded messages is counted."""
    from replydesk.storage import outbox

    conv_id = add_long_thread(db)
    early, middle = (outbox.queue_action(db, conv_id, "mark_read") for _ in range(2))
    with db.transaction():  # both refused by the platform: a read mark then shows with its retry key
        for key, at in ((early, FIXED - 90000 + 30), (middle, FIXED - 90000 + 10 * 60 + 30)):
            db.conn.execute("UPDATE outbox SET state='failed', created_at=? WHERE key=?", (at, key))
    async with long_thread_open(workspace, db) as (_, view):
        shown = transcript(view)
        fold = next(line for line in shown.splitlines() if "earlier messages" in line)
        assert "1 not delivered" in fold
        assert early in shown and middle not in shown
