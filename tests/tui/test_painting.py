"""What the panes paint, line by line: the list's own scroll bar, the thread's wrapping and its
reading highlight, and the garbage-collection pacing that keeps long pauses out of keypresses."""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any

from rich.text import Text

from replydesk.storage.db import Database
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.inbox import PAGE
from replydesk.tui.pacing import EVERY, FROZEN_LIMIT, QUIET_FOR, GcPacer
from tui_support import fixed_clock, settle

SIZE = (120, 36)


def thumb_lines(app: ReplydeskApp) -> list[int]:
    inbox = app.inbox
    thumb = inbox.get_component_rich_style("inbox--thumb", partial=True).bgcolor
    return [y for y in range(inbox.size.height) if list(inbox.render_line(y))[-1].style.bgcolor == thumb]


async def test_list_shows_its_position_in_the_last_column(workspace) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        inbox = app.inbox
        assert inbox.total > inbox.size.height  # the demo has more rows than fit
        top = thumb_lines(app)
        assert top and top[0] == 0 and len(top) < inbox.size.height
        await pilot.press("G")
        await settle(pilot)
        bottom = thumb_lines(app)
        assert bottom and bottom[-1] == inbox.size.height - 1 and len(bottom) == len(top)
        # every line is still exactly the list's width, the bar included
        assert all(inbox.render_line(y).cell_length == inbox.scrollable_content_region.width
                   for y in range(inbox.size.height))


async def test_thread_wraps_to_the_pane_and_highlights_while_reading(workspace) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        view = app.thread_view
        view._set_text(Text("word " * 400))  # one long paragraph
        width = view.scrollable_content_region.width
        lines = [view.render_line(y) for y in range(view.size.height)]
        assert all(line.cell_length == width for line in lines)
        assert sum(line.text.count("word") for line in lines) > 40  # wrapped, not cut at one line
        idle = list(view.render_line(0))[0].style.bgcolor
        await pilot.press("enter")
        await settle(pilot)
        assert app.main.reading and list(view.render_line(0))[0].style.bgcolor != idle
        await pilot.press("escape")
        await settle(pilot)
        assert list(view.render_line(0))[0].style.bgcolor == idle


async def test_a_page_move_paints_rows_rendered_ahead(workspace, monkeypatch) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("pagedown")  # to the last line on screen
        await settle(pilot)
        await pilot.pause(0.4)  # idle: the next screen is rendered ahead
        built: list[Any] = []
        real = app.inbox.row_segments
        monkeypatch.setattr(app.inbox, "row_segments", lambda row, *a, **k: built.append(row) or real(row, *a, **k))
        inbox = app.inbox
        top = int(inbox.scroll_offset.y)
        await pilot.press("pagedown")  # a whole new screen
        await pilot.pause()
        new_top, height = int(inbox.scroll_offset.y), inbox.size.height
        assert new_top >= top + height - 2
        on_screen = {inbox._cached_row(i).id for i in range(new_top, new_top + height)}
        # Built on the spot: the cursor row and the few lines the scroll thumb moved to, not the screen.
        assert len([row for row in built if row.id in on_screen]) < height // 4


async def test_a_background_change_repaints_only_the_changed_row(workspace, db, monkeypatch) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        inbox = app.inbox
        third = inbox._cached_row(2)
        full, lines = [], []
        monkeypatch.setattr(inbox, "refresh", lambda *a, **k: full.append(a))
        monkeypatch.setattr(inbox, "refresh_line", lambda y: lines.append(y))
        db.conn.execute("UPDATE conversations SET assignee='zoe' WHERE id=?", (third.id,))  # another writer
        inbox.reload()
        await settle(pilot)
        # The app's data probe (four times a second) notices the write too and reloads once more: wait
        # until it has (its last seen version is the database's), so that reload cannot land later.
        for _ in range(200):
            if app.store._version == app.store.read(Database.data_version):
                break
            await pilot.pause(0.01)
        await settle(pilot)
        # The idle read-ahead of the last screen (for G) may or may not have run by now; make it
        # run, so the test does not depend on how the timers interleaved: an off-screen page that
        # arrives must not repaint the screen.
        inbox._pages.pop((inbox.total - 1) // PAGE, None)
        for _ in range(600):  # until the page is in (a cap of 30 s: a read-ahead in flight may race it)
            inbox._row(inbox.total - 1)
            await settle(pilot)
            if inbox._cached_row(inbox.total - 1) is not None:
                break
            await pilot.pause(0.05)
        assert inbox._cached_row(inbox.total - 1) is not None
        assert inbox._cached_row(2).assignee == "zoe"
        assert lines == [2] and full == []


async def test_console_shortens_the_gil_switch_interval_while_it_runs(workspace) -> None:  # noqa: ANN001
    before = sys.getswitchinterval()
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert sys.getswitchinterval() == 0.001
    assert sys.getswitchinterval() == before


def test_full_collections_wait_for_a_quiet_moment() -> None:
    now = [1000.0]
    pacer = GcPacer(clock=lambda: now[0])
    try:
        pacer.started()
        assert gc.get_freeze_count() > 0
        now[0] += EVERY + 1
        pacer.input()  # someone is typing
        assert not pacer.tick()
        now[0] += QUIET_FOR - 1
        assert not pacer.tick()
        now[0] += 2
        assert pacer.tick() and pacer.collections == 1
        assert not pacer.tick()  # and not again for a while
        now[0] += EVERY
        assert pacer.tick() and pacer.collections == 2
    finally:
        gc.unfreeze()


def test_what_survives_a_second_is_frozen_so_full_collections_stay_short() -> None:
    """At 10M messages, reading ahead left 40-70k objects a full collection walked (30-65 ms of a
    key's step, three times in thirty keys): each tick freezes what lives on, so the oldest
    generation holds only what the last second made."""
    now = [1000.0]
    pacer = GcPacer(clock=lambda: now[0])
    try:
        pacer.started()
        pacer.input()  # typing: no full collection now
        kept = [[n] for n in range(20_000)]  # what reading ahead keeps (tracked objects)
        gc.collect(1)  # they survived the young collections that ran meanwhile
        frozen = gc.get_freeze_count()
        now[0] += 1
        assert not pacer.tick()
        assert gc.get_freeze_count() >= frozen + len(kept)  # out of the collector's walk...
        assert len(gc.get_objects(generation=2)) < 1_000  # ...so a full collection has little to walk
        kept.clear()
        node = _Node()  # one that lives past a tick is frozen, and once it dies...
        ref = weakref.ref(node)
        now[0] += 1
        pacer.tick()
        del node
        now[0] += 1
        pacer.tick()
        assert ref() is not None  # ...it waits for the next quiet full collection
        now[0] += EVERY + QUIET_FOR
        assert pacer.tick() and ref() is None
    finally:
        gc.unfreeze()


def test_much_frozen_brings_the_full_collection_forward() -> None:
    """Freezing each second keeps what dies later (a strip painted) until a full collection: one
    comes at the first quiet moment once many were frozen, not only every few minutes."""
    now = [1000.0]
    pacer = GcPacer(clock=lambda: now[0])
    try:
        pacer.started()
        painted = [_Node() for _ in range(FROZEN_LIMIT + 1000)]  # each a cycle, as a strip is
        gc.collect(1)
        now[0] += 1
        pacer.input()
        assert not pacer.tick()  # frozen now; a key was just pressed
        one = weakref.ref(painted[0])
        del painted  # dropped, but frozen: nothing frees them yet
        assert one() is not None
        now[0] += QUIET_FOR
        assert pacer.tick() and pacer.collections == 1  # long before EVERY
        assert one() is None
    finally:
        gc.unfreeze()


class _Node:
    """An object in a cycle (it refers to itself): only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


def test_wrapped_message_keeps_its_gutter() -> None:
    from rich.console import Console

    from replydesk.tui.thread import wrap_with_gutter

    text = Text("14:05  ← Ann\n  " + "word " * 30 + "\n  ┃ " + "note " * 20)
    lines = [line.plain for line in wrap_with_gutter(text, Console(width=200), 40)]
    body = [line for line in lines if "word" in line]
    note = [line for line in lines if "note" in line]
    assert len(body) > 2 and all(line.startswith("  word") for line in body)
    assert len(note) > 1 and all(line.startswith("  ┃ note") for line in note)
    assert all(len(line) <= 40 for line in lines)


async def test_the_customers_other_conversations_stay_one_row_each_at_any_width(workspace) -> None:  # noqa: ANN001
    """Those rows are cut to the pane's width when the transcript is built: a pane that changes
    width (the terminal, or the first layout) builds it again instead of wrapping the old rows."""
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        view = app.thread_view
        history = view.thread.history
        assert len(history) > 3  # the demo's first customer wrote more than three times
        for size in [(120, 36), (100, 30), (160, 48)]:
            await pilot.resize_terminal(*size)
            await settle(pilot)
            lines = [strip.text for strip in view._lines]
            start = next(n for n, line in enumerate(lines) if line.startswith("Also from this customer"))
            rows = lines[start + 1:start + 5]
            assert rows[3].startswith("  … and"), (size, rows)  # three rows, one line each
            assert all(len(line.rstrip()) <= view._wrapped_at for line in rows)
