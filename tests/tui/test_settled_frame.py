"""A key lands in one frame: moving onto a conversation read ahead paints its highlight, its thread
and its SLA pane together (no frame shows the previous conversation's thread), without a layout of
the screen, and the conversations around the cursor stay wrapped ahead even after they left the
wrapped ones."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.geometry import Region
from textual.screen import Screen

from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import ingest, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui import thread as thread_module
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.main_screen import MainScreen
from replydesk.tui.sla_pane import SlaPane
from replydesk.tui.thread import ThreadView
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


def _showing(app: ReplydeskApp) -> tuple[str | None, str | None, str | None]:
    """(cursor, thread, SLA pane): the conversation each shows now."""
    thread = app.thread_view.thread
    args = app.main.query_one(SlaPane)._args
    row = args[0] if args else None
    return app.inbox.cursor_id, thread.conversation.id if thread else None, row.id if row else None


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each frame the main screen paints: what the panes show then, and which of them it repaints."""
    seen: list[dict[str, Any]] = []
    original = Screen._compositor_refresh

    def refresh(self: Screen) -> None:
        if isinstance(self, MainScreen):
            dirty = list(self._compositor._dirty_regions)

            def painted(region: Region) -> bool:
                return any(region.overlaps(d) for d in dirty)

            app = self.app
            seen.append({"showing": _showing(app), "thread": painted(app.thread_view.region),
                         "sla": painted(self.query_one(SlaPane).region), "inbox": painted(app.inbox.region)})
        original(self)

    monkeypatch.setattr(Screen, "_compositor_refresh", refresh)
    return seen


async def test_the_frame_of_the_highlight_shows_the_rows_thread_and_sla(workspace, db, frames) -> None:  # noqa: ANN001
    rows = queries.inbox_page(db, InboxFilter(), 0, 6)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # the first thread, and those around it read ahead
        for row in [*rows[1:5], rows[3]]:  # down, then back up
            frames.clear()
            await pilot.press("j" if row is not rows[3] or app.inbox.cursor_id == rows[2].id else "k")
            await settle(pilot)
            assert app.inbox.cursor_id == row.id
            first = frames[0]  # the key's first frame: the highlight moved...
            assert first["inbox"]
            # ...and the thread and SLA pane of that row are in it, not a frame later.
            assert first["showing"] == (row.id, row.id, row.id), first
            assert first["thread"] and first["sla"], first


async def test_moving_the_cursor_keeps_the_sla_pane_in_place(workspace, db, monkeypatch) -> None:  # noqa: ANN001
    """The SLA pane grew and shrank with each conversation's lines (2 to 5), and every change of
    its height re-laid out the whole screen and moved the thread under it."""
    layouts: list[bool] = []
    original = Screen._refresh_layout

    def refresh_layout(self: Screen, size: Any = None, scroll: bool = False) -> None:
        layouts.append(scroll)
        original(self, size, scroll)

    monkeypatch.setattr(Screen, "_refresh_layout", refresh_layout)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.main.query_one(SlaPane)
        place, lines = (pane.region, app.thread_view.region), set()
        layouts.clear()
        for _ in range(12):
            await pilot.press("j")
            await settle(pilot)
            assert _showing(app)[2] == app.inbox.cursor_id
            lines.add(pane.render().plain.count("\n") + 1)
            assert (pane.region, app.thread_view.region) == place
        assert len(lines) > 1  # the conversations passed need different numbers of lines...
        assert max(lines) <= 5 and [s for s in layouts if not s] == []  # ...and none was a layout


async def test_the_rows_around_the_cursor_are_wrapped_again_once_dropped(workspace, db) -> None:  # noqa: ANN001
    """Rows read long ago stay in the read cache, but their wrapped transcripts may have been dropped
    (the wrapped ones are fewer): moving near them wraps them again while idle, so showing one
    is no render in the key's frame."""
    rows = queries.inbox_page(db, InboxFilter(), 0, 8)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.thread_view
        assert all(app.store.threads.get(r.id) is not None for r in rows[1:5])  # read ahead
        view._prepared.clear()  # as when two dozen others were wrapped since
        await pilot.press("j")
        await settle(pilot)
        for _ in range(100):  # a bound, not a duration: each round waits for the app to go idle
            near, _ = app.inbox.ids_around(ThreadView.AHEAD, ThreadView.BEHIND)
            if all(view._prepared.get(c) is not None for c in near):
                break
            await pilot.pause(0.01)
            await settle(pilot)
        near, _ = app.inbox.ids_around(ThreadView.AHEAD, ThreadView.BEHIND)
        assert near and all(view._prepared.get(c) is not None for c in near)
        rendered: list[str] = []
        original = view.render_parts

        def render_parts(thread: Any) -> list[Text]:
            rendered.append(thread.conversation.id if thread else "")
            return original(thread)

        view.render_parts = render_parts  # type: ignore[method-assign]
        app.inbox.move_to(app.inbox.cursor_index + 1)  # what the key does, in this call
        assert view.thread.conversation.id == rows[2].id and rendered == []  # shown as wrapped ahead


async def test_the_thread_shows_its_position_in_the_last_column(workspace) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.thread_view
        view._set_text(Text("\n".join(f"line {n}" for n in range(300))))
        thumb = view.get_component_rich_style("thread--thumb", partial=True).bgcolor
        track = view.get_component_rich_style("thread--track", partial=True).bgcolor
        assert thumb != track

        def bar() -> list[bool]:
            return [list(view.render_line(y))[-1].style.bgcolor == thumb for y in range(view.size.height)]

        view.scroll_home(animate=False, immediate=True)
        top = bar()
        assert top[0] and not top[-1] and 0 < sum(top) < view.size.height
        view.scroll_end(animate=False, immediate=True)
        bottom = bar()
        assert bottom[-1] and not bottom[0] and sum(bottom) == sum(top)
        width = view.scrollable_content_region.width
        assert all(view.render_line(y).cell_length == width for y in range(view.size.height))
        assert "line 299" in view.render_line(view.size.height - 1).text  # the text is not under the bar


def _long_message(db: Any, conv_id: str, lines: int) -> None:
    """A customer pastes a long log into ``conv_id`` (the sync engine's write)."""
    conv = queries.get_row(db, conv_id)
    who = Contact(native_id="paste", name=conv.customer or "x", handle=conv.handle or "@x")
    body = "\n".join(f"log line {n}: the printer says E{n:04d} and stops" for n in range(lines))
    ingest.ingest(db, "demo", [FetchResult([IncomingMessage(
        "paste-1", conv_id.split(":", 1)[1], conv.platform, conv.kind, who, body, FIXED - 1,
    )], None, "test")])


def _plain(lines: list[Any]) -> list[str]:
    return [line.text for line in lines]


async def test_a_long_transcript_is_wrapped_ahead_in_slices_a_key_can_come_between(workspace, db, monkeypatch) -> None:  # noqa: ANN001
    """A transcript wrapped ahead in one step of the event loop held a key behind it (50-90 ms for
    a long one at 10M conversations): it is wrapped a bounded slice at a time, resumed where it
    stopped, and comes out as the transcript the key would have wrapped itself."""
    target = queries.inbox_page(db, InboxFilter(), 0, 3)[1].id
    _long_message(db, target, 120)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.thread_view
        read = app.store.threads.get(target)
        assert read is not None and read.thread is not None  # read ahead
        monkeypatch.setattr(ThreadView, "SLICE", 0.0)  # each slice: one step (a message, a source line)
        steps: list[int] = []  # source lines wrapped in each step of the event loop
        original_one, original_line = ThreadView._prepare_one, thread_module.wrap_line

        def prepare_one(self: ThreadView) -> None:
            steps.append(0)
            original_one(self)

        def wrap_line(*args: Any) -> Any:
            steps[-1] += 1
            return original_line(*args)

        monkeypatch.setattr(ThreadView, "_prepare_one", prepare_one)
        monkeypatch.setattr(thread_module, "wrap_line", wrap_line)
        view._prepared.clear()
        view._prepare_soon([target])
        for _ in range(2000):  # a bound, not a duration: each round lets one slice run
            if view._prepared.get(target) is not None:
                break
            await pilot.pause(0.001)
        prepared = view._prepared.get(target)
        assert prepared is not None
        assert max(steps) == 1 and sum(steps) > 120  # each source line in a step of its own
        view.unfolded, view.selected, view.presence = False, None, ()
        direct = view._wrapped_for_pane(view.render_parts(read.thread))
        assert _plain(prepared.lines) == _plain(direct[0]) and prepared.part_lines == direct[1]
        assert any("log line 119" in line for line in _plain(prepared.lines))


async def test_showing_a_transcript_half_wrapped_ahead_finishes_it(workspace, db, monkeypatch) -> None:  # noqa: ANN001
    """The key lands on the conversation being wrapped ahead: the slices done are kept, the rest
    is wrapped in the key's step, and the pane shows the whole transcript."""
    target = queries.inbox_page(db, InboxFilter(), 0, 3)[1].id
    _long_message(db, target, 120)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.thread_view
        monkeypatch.setattr(ThreadView, "SLICE", 0.0)
        monkeypatch.setattr(ThreadView, "GAP", 60.0)  # no second slice before the key
        view._prepared.clear()
        view._job, view._to_prepare = None, [target]
        view._prepare_one()  # the first slice (the header rendered); the next would come after the key
        job = view._job
        assert job is not None and job.conv_id == target and view._prepared.get(target) is None  # half done
        rendered: list[str] = []
        original = view.render_parts

        def render_parts(thread: Any) -> list[Text]:
            rendered.append(thread.conversation.id if thread else "")
            return original(thread)

        view.render_parts = render_parts  # type: ignore[method-assign]
        app.inbox.move_to(queries.position_of(db, app.inbox.filter, target))  # what the key does
        assert view.thread is not None and view.thread.conversation.id == target
        assert rendered == [] and view._job is None  # finished from where it stopped, not rendered again
        assert "log line 119" in "\n".join(_plain(view._lines))
        assert _plain(view._lines) == _plain(view._wrapped_for_pane(original(view.thread))[0])


async def test_the_screenful_a_conversation_opens_on_is_painted_ahead(workspace, db) -> None:  # noqa: ANN001
    """The frame that shows a conversation wrapped ahead builds none of the thread pane's lines
    (they were painted while idle, 10-13 KB of output in that frame), and they are the lines a
    paint of its own would have made."""
    rows = queries.inbox_page(db, InboxFilter(), 0, 4)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.thread_view
        for _ in range(100):  # a bound, not a duration: wrapping ahead runs in timed slices
            if view._prepared.get(rows[1].id) is not None and view._job is None and not view._preparing:
                break
            await pilot.pause(0.01)
            await settle(pilot)
        assert view._prepared.get(rows[1].id) is not None  # wrapped ahead
        painted: list[int] = []
        original = view._paint

        def paint(lines: Any, wrapped_at: int, index: int, base: Any, *args: Any) -> Any:
            # The shown one's, as the frame paints it (not those wrapped ahead meanwhile, nor the
            # other highlight painted while idle for enter).
            if lines is view._lines and base == view._base(view.reading or view.has_focus):
                painted.append(index)
            return original(lines, wrapped_at, index, base, *args)

        view._paint = paint  # type: ignore[method-assign]
        await pilot.press("j")
        assert view.thread is not None and view.thread.conversation.id == rows[1].id
        screen = [view.render_line(y) for y in range(view.size.height)]  # what the frame painted
        assert painted == []
        view._painted.clear()
        fresh = [view.render_line(y) for y in range(view.size.height)]
        assert len(painted) == view.size.height  # (now each line was painted on its own)
        assert [list(s) for s in screen] == [list(s) for s in fresh]
