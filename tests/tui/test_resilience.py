"""A worker that fails unexpectedly is reported in the status bar; the console stays up and recovers.

The failures are real SQLite errors raised from the storage function a worker calls (as a locked,
full or damaged database raises them), not a stubbed widget.
"""

from __future__ import annotations

import sqlite3

import pytest

from replydesk.storage import queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from tui_support import fixed_clock, settle

SIZE = (160, 40)


def status_line(app: ReplydeskApp) -> str:
    """The status bar as it reaches the terminal (the second line from the bottom)."""
    return [strip.text for strip in app.screen._compositor.render_strips()][-2]


class Breakable:
    """Wraps a storage function: raises SQLite's error while ``broken``, else calls through."""

    def __init__(self, real, message: str = "disk I/O error") -> None:  # noqa: ANN001
        self.real, self.message, self.broken, self.calls = real, message, True, 0

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        self.calls += 1
        if self.broken:
            raise sqlite3.OperationalError(self.message)
        return self.real(*args, **kwargs)


async def test_a_thread_read_that_fails_is_shown_and_the_console_stays_up(workspace, db,  # noqa: ANN001
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    rows = queries.inbox_page(db, InboxFilter(), 0, 3)
    thread = Breakable(queries.thread)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        monkeypatch.setattr(queries, "thread", thread)
        await pilot.press("j")
        await pilot.pause(0.1)  # the debounced thread read
        await settle(pilot)
        assert thread.calls >= 1 and app.is_running
        assert "reading the thread failed: disk I/O error" in status_line(app)
        thread.broken = False
        await pilot.press("j")  # the keys still work
        assert app.inbox.cursor_id == rows[2].id
        await pilot.pause(0.1)
        await settle(pilot)
        assert "failed" not in status_line(app)  # the next good read clears the note
        assert app.thread_view.thread is not None and app.thread_view.thread.conversation.id == rows[2].id
    assert app.return_code in (None, 0)


async def test_an_inbox_reload_that_fails_does_not_freeze_the_list(workspace, db,  # noqa: ANN001
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from replydesk.storage import actions

    count = Breakable(queries.inbox_count, "database is locked")
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = app.inbox.total
        monkeypatch.setattr(queries, "inbox_count", count)
        app.inbox.reload()
        await settle(pilot)
        assert app.is_running and "reading the inbox failed: database is locked by another process" in status_line(app)
        count.broken = False
        actions.resolve(db, [app.inbox.cursor_id])  # someone else resolves the selected one
        app.inbox.reload()
        await settle(pilot)
        assert app.inbox.total == before - 1  # the list reloads again
        assert "failed" not in status_line(app)
