"""The thread follows the cursor without waiting: conversations around the cursor are read ahead,
moving onto one shows it at once (no read, no frame of the previous conversation), a held key
reads each conversation it passes once, and nothing read before a write is shown as current."""

from __future__ import annotations

from collections import Counter

import pytest

from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import ingest, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.store import Store, ThreadCache, ThreadRead
from replydesk.tui.thread import ThreadView
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every conversation the console reads for the thread pane, in order."""
    seen: list[str] = []
    original = Store.read_thread

    def read_thread(self: Store, conv_id: str, now: float) -> ThreadRead:
        seen.append(conv_id)
        return original(self, conv_id, now)

    monkeypatch.setattr(Store, "read_thread", read_thread)
    return seen


def shown(app: ReplydeskApp) -> str | None:
    thread = app.thread_view.thread
    return thread.conversation.id if thread is not None else None


async def test_moving_onto_a_conversation_read_ahead_shows_it_in_the_same_step(workspace, db, reads) -> None:  # noqa: ANN001
    rows = queries.inbox_page(db, InboxFilter(), 0, 6)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # the first thread, and those around it read ahead
        assert shown(app) == rows[0].id and {r.id for r in rows[1:5]} <= set(reads)
        for row in rows[1:4]:
            before = len(reads)
            await pilot.press("j")  # the key's handlers ran; no worker has been waited for
            assert app.inbox.cursor_id == row.id
            assert shown(app) == row.id and app.query_one("SlaPane")._args[0].id == row.id
            assert row.id not in reads[before:]  # shown from what was read ahead, not read now
            await settle(pilot)


async def test_a_held_key_reads_each_conversation_once(workspace, db, reads) -> None:  # noqa: ANN001
    rows = queries.inbox_page(db, InboxFilter(), 0, 40)
    total = queries.inbox_count(db, InboxFilter())
    last = queries.inbox_page(db, InboxFilter(), total - 1, 1)[0]
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        reads.clear()
        await pilot.press(*["j"] * 20)  # back to back, as a held key repeats
        await settle(pilot)
        assert app.inbox.cursor_id == rows[20].id and shown(app) == rows[20].id
        assert [c for c, n in Counter(reads).items() if n > 1] == []  # nothing read twice
        near, _ = app.inbox.ids_around(ThreadView.AHEAD, ThreadView.BEHIND)
        assert set(near) <= set(reads)  # where it stopped, what is around is read...
        for _ in range(200):  # (a bound, not a duration: each round waits for the app to go idle)
            if last.id in reads:
                break
            await pilot.pause(0.02)
            await settle(pilot)
        before = len(reads)
        await pilot.press("G")  # ...and, once the cursor rested, the ends of the list too
        assert shown(app) == last.id and last.id not in reads[before:]


async def test_a_far_jump_reads_the_conversation_at_once(workspace, db, reads) -> None:  # noqa: ANN001
    total = queries.inbox_count(db, InboxFilter())
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("G")
        await settle(pilot)
        last = queries.inbox_page(db, InboxFilter(), total - 1, 1)[0]
        assert app.inbox.cursor_id == last.id and shown(app) == last.id


async def test_a_conversation_read_ahead_before_new_mail_shows_the_new_mail(workspace, db) -> None:  # noqa: ANN001
    rows = queries.inbox_page(db, InboxFilter(), 0, 3)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.store.threads.get(rows[1].id) is not None  # read ahead
        conv = queries.get_row(db, rows[1].id)
        native = rows[1].id.split(":", 1)[1]
        who = Contact(native_id="late", name=conv.customer or "x", handle=conv.handle or "@x")
        ingest.ingest(db, "demo", [FetchResult([IncomingMessage(
            "late-1", native, conv.platform, conv.kind, who, "One more thing: the lid is cracked too.", FIXED - 1,
        )], None, "test")])  # the sync engine's write, from another connection
        app._poll()  # the console's once-a-second look at the database
        await settle(pilot)
        app.inbox.move_to(app.inbox.cursor_index + 1)  # onto it (its place may have changed)
        await settle(pilot)
        assert shown(app) == app.inbox.cursor_id
        texts = [m.text for m in app.thread_view.thread.messages]
        if app.inbox.cursor_id == rows[1].id:
            assert "One more thing: the lid is cracked too." in texts


def test_the_cache_tells_reads_made_before_a_write() -> None:
    cache = ThreadCache()
    read = ThreadRead("demo:c1", None, None, FIXED)
    cache.put(read, cache.generation)
    assert cache.fresh("demo:c1", FIXED + 5)
    assert not cache.fresh("demo:c1", FIXED + 120)  # another minute: the SLA figures moved on
    started = cache.generation
    cache.written()  # a write lands while a read is on its way...
    cache.put(ThreadRead("demo:c2", None, None, FIXED), started)
    assert not cache.fresh("demo:c2", FIXED) and not cache.fresh("demo:c1", FIXED)  # ...so neither counts
    assert cache.fresh("demo:c1", FIXED, written_since=True)  # still worth showing until it is read again
    assert cache.get("demo:c1") is read


async def test_mail_that_came_before_the_cursor_is_shown_not_announced(workspace, db) -> None:  # noqa: ANN001
    """A conversation read ahead, then written to, is shown from that read and read again: the
    message the second read adds was there before the cursor came, so it is no 'new message'."""
    target = queries.inbox_page(db, InboxFilter(), 0, 3)[1].id
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        conv = queries.get_row(db, target)
        who = Contact(native_id="late", name=conv.customer or "x", handle=conv.handle or "@x")
        ingest.ingest(db, "demo", [FetchResult([IncomingMessage(
            "late-1", target.split(":", 1)[1], conv.platform, conv.kind, who, "Also: the lid is cracked.", FIXED - 1,
        )], None, "test")])  # the sync engine's write, from another connection
        app._poll()
        await settle(pilot)
        assert app.store.threads.get(target) is not None  # read ahead before the write...
        assert not app.store.threads.fresh(target, fixed_clock())  # ...so to be read again
        app.inbox.move_to(queries.position_of(db, app.inbox.filter, target))
        await settle(pilot)
        assert shown(app) == target
        assert "Also: the lid is cracked." in [m.text for m in app.thread_view.thread.messages]
        assert not [n.message for n in app._notifications if "new message" in n.message]
