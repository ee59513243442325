"""What the panes paint, line by line: the list's own scroll bar, the thread's wrapping and its
reading highlight, and the garbage-collection pacing that keeps long pauses out of keypresses."""

from __future__ import annotations

import gc

from rich.text import Text

from tui.app import ReplydeskApp
from tui.pacing import EVERY, QUIET_FOR, GcPacer
from tui_support import fixed_clock, settle

SIZE = (120, 36)


def thumb_lines(app: ReplydeskApp) -> list[int]:
    inbox = app.inbox
    thumb = inbox.get_component_rich_style("inbox--thumb", partial=True).bgcolor
    return [y for y in range(inbox.size.height) if inbox.render_line(y)._segments[-1].style.bgcolor == thumb]


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
        idle = view.render_line(0)._segments[0].style.bgcolor
        await pilot.press("enter")
        await settle(pilot)
        assert app.reading and view.render_line(0)._segments[0].style.bgcolor != idle
        await pilot.press("escape")
        await settle(pilot)
        assert view.render_line(0)._segments[0].style.bgcolor == idle


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


def test_wrapped_message_keeps_its_gutter() -> None:
    from rich.console import Console

    from tui.thread import wrap_with_gutter

    text = Text("14:05  ← Ann\n  " + "word " * 30 + "\n  ┃ " + "note " * 20)
    lines = [line.plain for line in wrap_with_gutter(text, Console(width=200), 40)]
    body = [line for line in lines if "word" in line]
    note = [line for line in lines if "note" in line]
    assert len(body) > 2 and all(line.startswith("  word") for line in body)
    assert len(note) > 1 and all(line.startswith("  ┃ note") for line in note)
    assert all(len(line) <= 40 for line in lines)
