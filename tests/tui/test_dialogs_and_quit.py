"""Dialogs paint their lines whole (item 10, in-process; tests/tui/test_tmux_console.py checks the
real terminal) and quitting with replies waiting asks first (item 6)."""

from __future__ import annotations

import re

from textual.containers import Vertical

from replydesk.storage import outbox, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.dialogs import ChoiceDialog, PromptDialog
from tui_support import FIXED, fixed_clock, settle

DEVANAGARI = re.compile("[\u0900-\u097f]")


def app_for(workspace) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)


async def test_no_row_shares_a_line_with_a_dialog(workspace) -> None:  # noqa: ANN001
    """What the terminal receives for each line the dialog covers: the dialog and blanks, never a
    row's text (an Indic row there shifted the border in the terminal)."""
    app = app_for(workspace)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        before = [strip.text for strip in app.screen._compositor.render_strips()]
        await pilot.press("slash")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PromptDialog)
        box = dialog.query(Vertical).first().region  # the box (inside its band)
        after = [strip.text for strip in dialog._compositor.render_strips()]
        assert any(DEVANAGARI.search(before[y]) for y in range(box.y, box.bottom)), "no Hindi row under it"
        for y in range(box.y, box.bottom):
            outside = after[y][: box.x] + after[y][box.right:]
            assert not outside.strip(), f"line {y} shows a row beside the dialog: {after[y]!r}"


async def test_quit_with_a_reply_in_its_undo_window_asks(make_workspace) -> None:  # noqa: ANN001
    ws = make_workspace(undo_seconds=30)
    db = ws.open_db()
    target = queries.inbox_page(db, InboxFilter(), 0, 1)[0]
    app = app_for(ws)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        for ch in "on its way":
            await pilot.press("space" if ch == " " else ch)
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        assert "1 reply is waiting to leave" in app.screen.title_text
        # This console runs no engine: it says so and offers quitting (they wait) or staying.
        assert [k for k, _ in app.screen.items] == ["quit", "stay"]
        await pilot.press("down", "enter")  # stay
        await settle(pilot)
        assert app.is_running and not isinstance(app.screen, ChoiceDialog)
        await pilot.press("q")
        await settle(pilot)
        await pilot.press("enter")  # quit: the reply waits for the next sync
        await settle(pilot)
    assert app.return_code == 0
    [item] = outbox.pending(db)
    assert (item.conversation_id, item.text, item.state) == (target.id, "on its way", "queued")
    db.close()


async def test_quit_with_only_a_scheduled_reply_says_when_it_leaves(workspace, db) -> None:  # noqa: ANN001
    target = queries.inbox_page(db, InboxFilter(), 0, 1)[0]
    outbox.queue_reply(db, target.id, "tomorrow's news", at=FIXED + 86400)
    app = app_for(workspace)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        assert "1 scheduled reply (the next at 12 Jun 10:30) leave" in app.screen.title_text
        await pilot.press("enter")
        await settle(pilot)
    assert app.return_code == 0


async def test_quit_with_nothing_waiting_quits_at_once(workspace) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await settle(pilot)
    assert app.return_code == 0
