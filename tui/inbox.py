"""The smart inbox: a Line API list over pages read from SQLite, in urgency order.

Why not DataTable/OptionList: they hold every row as widgets/data and take seconds at 100k rows.
This list (toolong's pattern) knows only the row count (its virtual height), keeps a few pages of
rows and an LRU of rendered strips, and asks a thread worker for a page when an unloaded line is
painted. The cursor is a conversation id: when new mail arrives the list is re-counted and the
cursor's new index comes from ``position_of``, so the selection stays on the same conversation.
"""

from __future__ import annotations

import textwrap
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rich.color import Color, ColorTriplet
from rich.segment import Segment
from rich.style import Style
from textual import events, on
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import Worker, WorkerState

from replydesk.keys import BY_ID, COUNTED
from replydesk.platforms import info
from replydesk.storage import queries
from replydesk.storage.queries import InboxFilter, InboxRow
from replydesk.tui.contrast import readable_background
from replydesk.tui.format import LISTENING_SYMBOL, STATE_SYMBOL, countdown, fit, one_line, stars
from replydesk.tui.keymap import bindings
from replydesk.tui.messages import InboxReloaded, PageLoaded
from replydesk.tui.store import Store
from replydesk.tui.workers import background

PAGE = 100
MAX_PAGES = 40
NO_STYLE = Style()
#: How another agent's presence shows in a row: replying (or writing a note) and viewing.
PRESENCE_MARK = {"replying": "✎", "noting": "✎", "viewing": "◉"}
DIM = Style(dim=True)
NOT_DIM = Style(dim=False)


class InboxList(ScrollView, can_focus=True):
    """Conversations of the current view, most urgent first, one line each."""

    BINDINGS = bindings("inbox")

    COMPONENT_CLASSES = {
        "inbox--cursor", "inbox--cursor-blur", "inbox--unread", "inbox--read", "inbox--breached",
        "inbox--warning", "inbox--paused", "inbox--missed", "inbox--mark", "inbox--tags", "inbox--platform", "inbox--empty",
        "inbox--track", "inbox--thumb",
    }

    DEFAULT_CSS = """
    InboxList {
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 0;
        background: $surface;
    }
    InboxList > .inbox--track { background: $scrollbar-background; }
    InboxList > .inbox--thumb { background: $scrollbar; }
    InboxList > .inbox--cursor { background: $accent 60%; }
    InboxList > .inbox--cursor-blur { background: $accent 25%; }
    InboxList > .inbox--unread { text-style: bold; }
    InboxList > .inbox--read { color: $text-muted; }
    InboxList > .inbox--breached { color: $text-error; text-style: bold; }
    InboxList > .inbox--warning { color: $text-warning; }
    InboxList > .inbox--missed { color: $text-error; }
    InboxList > .inbox--paused { color: $text-muted; }
    InboxList > .inbox--mark { color: $text-secondary; text-style: bold; }
    InboxList > .inbox--tags { color: $text-accent; }
    InboxList > .inbox--platform { color: $text-primary; }
    InboxList > .inbox--empty { color: $text-muted; text-style: italic; }
    """

    class CursorMoved(Message):
        """The selected conversation changed (the thread and SLA pane follow it)."""

        def __init__(self, conv_id: str | None) -> None:
            super().__init__()
            self.conv_id = conv_id

    class Opened(Message):
        """Enter on a row: read the conversation."""

        def __init__(self, conv_id: str) -> None:
            super().__init__()
            self.conv_id = conv_id

    total: reactive[int] = reactive(0, layout=False, repaint=False)

    def __init__(self, store: Store, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.clock = clock
        self.filter = InboxFilter()
        self.generation = 0
        self.loaded = False
        self.cursor_index = 0
        self.cursor_id: str | None = None
        self._announced: str | None = None  # the conversation last posted in CursorMoved
        self.marked: set[str] = set()
        self._pages: OrderedDict[int, list[InboxRow]] = OrderedDict()
        self._stale: dict[int, list[InboxRow]] = {}
        self._wanted: set[int] = set()
        self._strips: LRUCache[tuple, Strip] = LRUCache(1024)
        self._painted: dict[int, tuple[str, str]] = {}
        self._reload_running = False
        self._reload_again = False
        self._base_style: Style | None = None
        self._cursor_styles: dict[str, Style] = {}
        self._prerender_pending = False
        self._composer_key_map: dict[str, tuple[Any, str]] | None = None
        self.reading_into: Any = None  # the thread view while reading (enter), else None
        self._direction = 1  # of the last move: the rows read ahead are those the cursor heads for
        self.count_prefix = ""  # digits typed so far (5j, 12k, 3x)
        self.count_timeout = 0.6  # ui.count_timeout: the key must follow the number within this
        self._count_saved: Any = None  # the screen's view before the first digit switched it
        self._count_at = 0.0  # when the last digit came (the key event's own time)
        self.empty_hint: Callable[[], str] = lambda: "nothing here: no conversations match this view"
        #: Others in a conversation (a team's presence): conversation id -> (mark, "name").
        self.presence: dict[str, tuple[str, str]] = {}
        #: Told at once when the cursor is on another conversation (the screen, which shows its thread
        #: and SLA pane); without one, a ``CursorMoved`` message is posted.
        self.cursor_listener: Callable[[str | None], None] | None = None

    # ---- data -----------------------------------------------------------------------------------

    def set_presence(self, others: dict[str, list[Any]]) -> None:
        """Show who else is in which conversation: ``✎`` replying (or writing a note), ``◉`` viewing,
        then the name, where the assignee column is; repaints only when it changed."""
        shown = {conv_id: (PRESENCE_MARK.get(items[0].activity, "◉"), items[0].agent)
                 for conv_id, items in others.items() if items}
        if shown != self.presence:
            self.presence = shown
            self.refresh()

    def set_filter(self, f: InboxFilter, *, keep_cursor: bool = False) -> None:
        """Show another view or search result; the cursor goes to the top unless told otherwise."""
        self.filter = f
        self.generation += 1
        self._pages.clear()
        self._stale.clear()
        self._painted.clear()
        if not keep_cursor:
            self.cursor_id = None
            self.cursor_index = 0
            self.scroll_to(y=0, animate=False)
        self.reload()

    def reload(self) -> None:
        """Re-count and re-read the visible pages (after a write by anyone)."""
        if self._reload_running:
            self._reload_again = True
            return
        self._reload_running = True
        top = int(self.scroll_offset.y)
        self._reload(self.generation, self.filter, self.cursor_id, self.cursor_index, top,
                     max(self.size.height, 1))

    @background("reading the inbox", group="inbox-reload")
    def _reload(self, generation: int, f: InboxFilter, cursor_id: str | None, cursor_index: int,
                top: int, height: int) -> None:
        def read(db: queries.Database) -> InboxReloaded:
            total = queries.inbox_count(db, f)
            index = queries.position_of(db, f, cursor_id) if cursor_id else None
            anchor = index if index is not None else min(cursor_index, max(total - 1, 0))
            # Keep the cursor's row on the same screen line, and read every page that will show.
            new_top = max(0, top + (anchor - cursor_index))
            first = min(new_top, anchor) // PAGE
            last = max(new_top + height, anchor) // PAGE
            rows: list[InboxRow] = []
            for page in range(first, last + 1):
                rows.extend(queries.inbox_page(db, f, page * PAGE, PAGE))
            return InboxReloaded(generation, total, index, first, rows, cursor_id, cursor_index)

        self.post_message(self.store.read(read))

    @on(InboxReloaded)
    def _on_reloaded(self, event: InboxReloaded) -> None:
        event.stop()
        self._reload_running = False
        if event.generation == self.generation:
            old_index, old_total = self.cursor_index, self.total
            top, height = int(self.scroll_offset.y), max(self.size.height, 1)
            before = [self._cached_row(i) for i in range(top, top + height)]
            self._stale = dict(self._pages)
            self._pages.clear()
            for n in range(0, max(len(event.rows), 1), PAGE):
                self._pages[event.page + n // PAGE] = event.rows[n : n + PAGE]
            self.total = event.total
            self.virtual_size = Size(self.size.width, event.total)
            index, lost = event.cursor_index, False
            if self.cursor_id == event.cursor_id and self.cursor_index != event.asked_index:
                # The user moved onto a row whose page is not read yet (its id is not known), so
                # the id is the old one: keep the place moved to; that page's read follows.
                index = self.cursor_index
            elif self.cursor_id != event.cursor_id:
                # The user moved (or a selection was asked for) while this read ran: the read
                # located an older cursor, so find the current one in what it read, or read again.
                index = self._index_in(event, self.cursor_id)
                if index is None:
                    self._reload_again = lost = True
                    index = self.cursor_index
            if index is not None:
                self.cursor_index = index
                if self.loaded and index != old_index:
                    self.scroll_to(y=self.scroll_offset.y + index - old_index, animate=False)
            else:
                self.cursor_index = min(self.cursor_index, max(event.total - 1, 0))
            was_loaded, self.loaded = self.loaded, True
            if not lost:
                self._sync_cursor_id()
            self._scroll_cursor_into_view()
            if was_loaded and self.cursor_index == old_index and self.total == old_total \
                    and int(self.scroll_offset.y) == top:
                # The usual case while syncing: the same screen with a few rows changed (or none).
                # Repaint those lines only; a full repaint would cost the next keypress its frame.
                # (Unchanged lines keep their painted countdowns, so the next tick skips them too.)
                for y, old_row in enumerate(before):
                    if self._cached_row(top + y) != old_row:
                        self.refresh_line(top + y)
            else:
                self._painted.clear()
                self.refresh()
        if self._reload_again:
            self._reload_again = False
            self.reload()

    def _cached_row(self, index: int) -> InboxRow | None:
        """The row at ``index`` if its page is in memory (no read is started)."""
        page, offset = divmod(index, PAGE)
        rows = self._pages.get(page)
        return rows[offset] if rows is not None and offset < len(rows) else None

    @staticmethod
    def _index_in(event: InboxReloaded, conv_id: str | None) -> int | None:
        for n, row in enumerate(event.rows):
            if row.id == conv_id:
                return event.page * PAGE + n
        return None

    def _row(self, index: int) -> InboxRow | None:
        page, offset = divmod(index, PAGE)
        rows = self._pages.get(page)
        if rows is None:
            if page not in self._wanted:
                self._wanted.add(page)
                self.call_later(self._load_page, self.generation, page)
            rows = self._stale.get(page)
        else:
            self._pages.move_to_end(page)
        if rows is None or offset >= len(rows):
            return None
        return rows[offset]

    def _load_page(self, generation: int, page: int) -> None:
        self._fetch_page(generation, self.filter, page)

    @background("reading the inbox", group="inbox-page")
    def _fetch_page(self, generation: int, f: InboxFilter, page: int) -> None:
        rows = self.store.read(lambda db: queries.inbox_page(db, f, page * PAGE, PAGE))
        self.post_message(PageLoaded(generation, page, rows))

    @on(PageLoaded)
    def _on_page(self, event: PageLoaded) -> None:
        event.stop()
        self._wanted.discard(event.page)
        if event.generation != self.generation:
            return
        self._pages[event.page] = event.rows
        while len(self._pages) > MAX_PAGES:
            self._pages.popitem(last=False)
        self._sync_cursor_id()
        # Repaint only the screen lines this page covers: most page loads are reads ahead for
        # screens not shown (g, G, page moves), and a full repaint would cost a keypress its frame.
        top, height = int(self.scroll_offset.y), max(self.size.height, 1)
        start, end = event.page * PAGE, event.page * PAGE + len(event.rows)
        for index in range(max(start, top), min(end, top + height)):
            self.refresh_line(index)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A read that failed (reported by ``tui.workers``) must not wedge the list: the next
        reload runs again, and pages are asked for again when painted."""
        if event.state is not WorkerState.ERROR:
            return
        if event.worker.group == "inbox-reload":
            self._reload_running = False
            if self._reload_again:
                self._reload_again = False
                self.reload()
        elif event.worker.group == "inbox-page":
            self._wanted.clear()

    def _sync_cursor_id(self) -> None:
        """Follow the row under the cursor, and tell the screen whenever the conversation it
        shows is no longer that one: compared with what was last announced, not with
        ``cursor_id``, because a selection asked for (``select_id``, ``!``) sets ``cursor_id``
        before the row is read, and an emptied view has no row at all."""
        row = self._row(self.cursor_index) if self.total else None
        new_id = row.id if row else (None if not self.total else self.cursor_id)
        if not self.total:
            new_id = None
        if new_id != self.cursor_id or row is not None or not self.total:
            self.cursor_id = new_id
            if (row is not None or not self.total) and new_id != self._announced:
                self._announced = new_id
                self._cursor_moved(new_id)

    def _cursor_moved(self, conv_id: str | None) -> None:
        """Tell the screen in this call, not by a message: a message posted here is handled after
        the key's frame is painted (it bubbles up node by node), so the thread and SLA pane of the
        new row came a frame after its highlight, 8-15 ms later, with a frame of the old thread."""
        if self.cursor_listener is not None:
            self.cursor_listener(conv_id)
        else:
            self.post_message(self.CursorMoved(conv_id))

    @property
    def current(self) -> InboxRow | None:
        """The row under the cursor, if its page is loaded."""
        return self._row(self.cursor_index) if self.total else None

    def ids_around(self, ahead: int, behind: int) -> tuple[list[str], list[str]]:
        """Conversations around the cursor, from the rows in memory (nothing is read): near, nearest
        first (``ahead`` rows the way the cursor last moved, ``behind`` the other way), and far
        (where the page keys, ``g`` and ``G`` would go)."""
        step, here = self._direction, self.cursor_index
        page = max(self.size.height - 1, 1)
        near = [here + step * n for n in range(1, ahead + 1)] + [here - step * n for n in range(1, behind + 1)]
        far = [here + page, here - page, 0, self.total - 1]

        def ids(indexes: list[int]) -> list[str]:
            rows = (self._cached_row(i) for i in indexes if 0 <= i < self.total and i != here)
            return [row.id for row in rows if row is not None]

        return ids(near), ids(far)

    def targets(self) -> list[str]:
        """Marked conversations, or the one under the cursor: what an action applies to."""
        if self.marked:
            return sorted(self.marked)
        return [self.cursor_id] if self.cursor_id else []

    # ---- movement -------------------------------------------------------------------------------

    def move_to(self, index: int) -> None:
        if not self.total:
            return
        index = max(0, min(index, self.total - 1))
        old = self.cursor_index
        if index != old:
            self._direction = 1 if index > old else -1
        self.cursor_index = index
        self.refresh_line(old)
        self.refresh_line(index)
        self._scroll_cursor_into_view()
        self._sync_cursor_id()

    def select_id(self, conv_id: str) -> None:
        """Put the cursor on ``conv_id`` (found by the next reload)."""
        self.cursor_id = conv_id
        self.reload()

    def _scroll_cursor_into_view(self) -> None:
        height = max(self.scrollable_content_region.height, 1)
        top = int(self.scroll_offset.y)
        if self.cursor_index < top:
            self.scroll_to(y=self.cursor_index, animate=False)
        elif self.cursor_index >= top + height:
            self.scroll_to(y=self.cursor_index - height + 1, animate=False)

    # While reading (enter), the movement keys scroll the thread instead: the list keeps the focus,
    # because a focus change makes Textual restyle and repaint the whole screen (30 ms against 8 ms
    # for restyling the thread alone, measured headless at 120x40).

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While reading, "open" has nothing to do: hide it from the key bar."""
        return None if action == "open" and self._reader() else True

    def read_into(self, view: Any) -> None:
        """Reading mode on (the thread ``view`` the movement keys scroll) or off (None)."""
        self.reading_into = view
        self.refresh_line(self.cursor_index)

    def _reader(self) -> Any:
        return self.reading_into

    def action_cursor_down(self, count: int = 1) -> None:
        if reader := self._reader():
            reader.scroll_to(y=reader.scroll_y + count, animate=False) if count > 1 else reader.scroll_down(
                animate=False)
        else:
            self.move_to(self.cursor_index + count)

    def action_cursor_up(self, count: int = 1) -> None:
        if reader := self._reader():
            reader.scroll_to(y=reader.scroll_y - count, animate=False) if count > 1 else reader.scroll_up(
                animate=False)
        else:
            self.move_to(self.cursor_index - count)

    def action_first(self) -> None:
        if reader := self._reader():
            reader.scroll_home(animate=False)
        else:
            self.move_to(0)

    def action_last(self, count: int | None = None) -> None:
        """G: the last row; with a count, that row (5G: the fifth), as in vim."""
        if reader := self._reader():
            reader.scroll_end(animate=False)
        elif count is not None:
            self.move_to(count - 1)
        else:
            self.move_to(self.total - 1)

    def action_page_down(self, count: int = 1) -> None:
        if reader := self._reader():
            for _ in range(count):
                reader.scroll_page_down(animate=False)
        else:
            self.move_to(self.cursor_index + count * max(self.size.height - 1, 1))

    def action_page_up(self, count: int = 1) -> None:
        if reader := self._reader():
            for _ in range(count):
                reader.scroll_page_up(animate=False)
        else:
            self.move_to(self.cursor_index - count * max(self.size.height - 1, 1))

    def action_open(self) -> None:
        if self.cursor_id and not self._reader():
            self.post_message(self.Opened(self.cursor_id))

    def action_mark(self, count: int = 1) -> None:
        """Toggle the bulk mark on the current row (``count`` rows) and step down, like mutt's
        tag-and-next."""
        for _ in range(count):
            if not self.cursor_id:
                return
            if self.cursor_id in self.marked:
                self.marked.discard(self.cursor_id)
            else:
                self.marked.add(self.cursor_id)
            self.refresh_line(self.cursor_index)
            if self.cursor_index >= self.total - 1:
                return
            self.move_to(self.cursor_index + 1)
            if self._row(self.cursor_index) is None:  # a page not read yet: its rows are unknown
                return

    def clear_marks(self) -> None:
        self.marked.clear()
        self.refresh()

    # ---- painting -------------------------------------------------------------------------------

    #: Actions that move focus into the composer; run at once so the keys after them follow.
    OPENS_COMPOSER = ("reply", "reply_private", "note")

    async def on_key(self, event: events.Key) -> None:
        """Keep a burst of typing together: "r" and the first words, typed at once or pasted
        over a slow SSH link, all arrive here before a binding would run. Open the composer on the
        spot (focus moves synchronously) and hand it the keys that follow, in order."""
        focused = self.screen.focused
        if focused is not None and focused is not self:
            event.stop()
            event.prevent_default()
            focused.post_message(events.Key(event.key, event.character))
            return
        if await self._count_key(event):
            return
        bound = self._composer_keys().get(event.key)
        if bound is not None:
            event.stop()
            event.prevent_default()
            node, action = bound
            getattr(node, f"action_{action}")()

    # Counts, as in vim: 5j, 12k, 3x. The digits 1-9 are also the view keys, so the first digit
    # switches the view at once, as it always did, and starts a count; if a key that takes a count
    # follows within ``count_timeout`` (ui.count_timeout), the digits were a count: the view the
    # user was on comes back (its rows, cursor and scroll as they were) and the key runs that many
    # times. Any other key, or one that comes later, ends the count: the digit was a view key.

    async def _count_key(self, event: events.Key) -> bool:
        """Handle ``event`` as part of a count; True when it was used up here."""
        key = event.key
        if self.count_prefix and event.time - self._count_at > self.count_timeout:
            self.count_prefix, self._count_saved = "", None  # too late: the digit was a view key
            self.screen.paint_status()  # type: ignore[attr-defined]
        if not self.count_timeout:
            return False
        if len(key) == 1 and key.isdigit() and (self.count_prefix or key != "0"):
            first = not self.count_prefix
            self._count_at = event.time
            self.count_prefix += key
            started = self._count_at
            # The status line's "count 5…" goes when the count can no longer come.
            self.set_timer(self.count_timeout, lambda: self._expire_count(started))
            event.stop()
            event.prevent_default()
            self.screen.paint_status()  # type: ignore[attr-defined]
            if first:
                self._count_saved = self.screen.view_state()  # type: ignore[attr-defined]
                # The view key's own binding runs here, now, not when the key has bubbled up to
                # the app: a key typed right after it ("5j" in one burst) is already queued here
                # and must find the view switched, to switch it back.
                active = self.screen.active_bindings.get(key)
                if active is not None:
                    await self.app.run_action(active.binding.action, active.node)
            return True
        if not self.count_prefix:
            return False
        count, saved = int(self.count_prefix), self._count_saved
        self.count_prefix, self._count_saved = "", None
        self.screen.paint_status()  # type: ignore[attr-defined]
        active = self.screen.active_bindings.get(key)
        spec = BY_ID.get(active.binding.id or "") if active is not None else None
        if spec is None or spec.id not in COUNTED:
            return False  # not a count: the digit was a view key, and this key does what it does
        event.stop()
        event.prevent_default()
        self.screen.restore_view_state(saved)  # type: ignore[attr-defined]
        node = active.node
        if node is self:
            getattr(self, f"action_{spec.action}")(count=count)
        else:
            self.screen.run_counted(spec.action, count)  # type: ignore[attr-defined]
        return True

    def _expire_count(self, started: float) -> None:
        if self.count_prefix and self._count_at == started:
            self.count_prefix, self._count_saved = "", None
            self.screen.paint_status()  # type: ignore[attr-defined]

    def save_state(self) -> tuple[Any, ...]:
        """What the list shows now, to come back to without a read (a count after a digit)."""
        return (self.filter, dict(self._pages), self.total, self.cursor_index, self.cursor_id,
                int(self.scroll_offset.y), self.loaded, self._announced)

    def restore_state(self, state: tuple[Any, ...]) -> None:
        (self.filter, pages, total, self.cursor_index, cursor_id, top, self.loaded, announced) = state
        self.generation += 1  # reads started for the other view are dropped when they land
        self._pages = OrderedDict(pages)
        self._stale.clear()
        self._painted.clear()
        self.cursor_id, self._announced = cursor_id, announced
        self.total = total
        self.virtual_size = Size(self.size.width, total)
        self.scroll_to(y=top, animate=False)
        self.refresh()
        if cursor_id is not None:
            self._cursor_moved(cursor_id)
        self.reload()

    def on_click(self, event: events.Click) -> None:
        """A click selects the row under the pointer; a double click opens it."""
        if not self.total:
            return
        index = int(self.scroll_offset.y) + event.y
        if 0 <= index < self.total:
            self.focus()
            self.move_to(index)
            if event.chain >= 2:
                self.action_open()

    def _composer_keys(self) -> dict[str, tuple[Any, str]]:
        """Keys that open the composer now, with the node whose action they run; kept until the
        bindings change, because computing the screen's active bindings on every key cost a good
        part of a frame."""
        if self._composer_key_map is None:
            self._composer_key_map = {
                key: (active.node, active.binding.action) for key, active in self.screen.active_bindings.items()
                if active.enabled and active.binding.action in self.OPENS_COMPOSER
            }
        return self._composer_key_map

    def _bindings_changed(self, _screen: object) -> None:
        self._composer_key_map = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.total)
        self._painted.clear()
        self._scroll_cursor_into_view()

    def on_focus(self) -> None:
        self.refresh_line(self.cursor_index)

    def on_blur(self) -> None:
        self.refresh_line(self.cursor_index)

    def tick(self) -> None:
        """The 1-second SLA tick: repaint only visible rows whose countdown text changed."""
        now = self.clock()
        top = int(self.scroll_offset.y)
        for y in range(self.size.height):
            index = top + y
            if index >= self.total:
                break
            row = self._row(index)
            if row is None:
                continue
            shown = countdown(row.sla_state, row.sla_due_at, row.sla_warn_at, now)
            if self._painted.get(index) != shown:
                self.refresh_line(index)

    def _style(self, name: str) -> Style:
        if name in ("inbox--cursor", "inbox--cursor-blur"):
            return self._cursor_style(name)
        return self.get_component_rich_style(name, partial=True)

    def _cursor_style(self, name: str) -> Style:
        """The selected row's background: the accent over the list's background as the CSS says
        (60% focused, 25% not), made a tone on which text can read (``contrast``); the text on it is
        then raised to AA by the app's contrast filter, tags and states included."""
        cached = self._cursor_styles.get(name)
        if cached is None:
            css = self.get_component_rich_style(name, partial=True)
            base = self._base().bgcolor
            if css.bgcolor is None or base is None or css.bgcolor.triplet is None or base.triplet is None:
                cached = css
            else:
                share = 0.6 if name == "inbox--cursor" else 0.25
                accent, under = css.bgcolor.triplet, base.triplet
                mixed = ColorTriplet(*(round(u + (a - u) * share) for a, u in zip(accent, under, strict=True)))
                cached = css + Style(bgcolor=Color.from_triplet(readable_background(mixed)), dim=False)
            self._cursor_styles[name] = cached
        return cached

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style = None
        self._cursor_styles.clear()
        self._strips.clear()

    def _base(self) -> Style:
        """The widget's own style (background), which every line carries; cached because
        ``rich_style`` walks the ancestors each time and a page move paints 40 lines."""
        if self._base_style is None:
            self._base_style = self.rich_style
        return self._base_style

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        index = int(self.scroll_offset.y) + y
        base = self._base()
        if not self.loaded or self.total == 0:
            msg = "loading…" if not self.loaded else self.empty_hint()
            lines = textwrap.wrap(msg, max(width - 2, 10)) or [""]
            if y < len(lines):  # the hint wraps: at 80 columns it is several lines
                return Strip([Segment(fit(lines[y], width), base + self._style("inbox--empty"))], width)
            return Strip.blank(width, base)
        if index >= self.total:
            return Strip.blank(width, base)
        row = self._row(index)
        if row is None:
            return Strip([Segment(fit("  …", width), base + self._style("inbox--empty"))], width)
        shown = countdown(row.sla_state, row.sla_due_at, row.sla_warn_at, self.clock())
        self._painted[index] = shown
        self._schedule_prerender()
        return self._strip(index, row, width, shown, base, self._thumb(y))

    def _thumb(self, y: int) -> bool | None:
        """The scroll position in the last column of line ``y``: None when everything fits,
        else whether the thumb is on this line.

        The list draws its own one-column scrollbar instead of Textual's widget: that one
        re-rendered its whole height on every scroll, 2-4 ms of a 16 ms frame; this is one cell
        in each cached row strip (the wheel still scrolls; the bar is not dragged)."""
        height = max(self.size.height, 1)
        if self.total <= height:
            return None
        size = max(1, round(height * height / self.total))
        start = round(self.scroll_offset.y / max(self.total - height, 1) * (height - size))
        return start <= y < start + size

    def _strip(self, index: int, row: InboxRow, width: int, shown: tuple[str, str], base: Style,
               thumb: bool | None) -> Strip:
        """The row's strip from the cache, rendered on a miss."""
        is_cursor = index == self.cursor_index
        active = is_cursor and self.has_focus and self.reading_into is None
        marked = row.id in self.marked
        here = self.presence.get(row.id)
        key = (row, width, is_cursor, active, marked, shown, thumb, here)
        strip = self._strips.get(key)
        if strip is None:
            cursor = None
            if is_cursor:
                cursor = self._style("inbox--cursor" if active else "inbox--cursor-blur")
            row_width = width if thumb is None else width - 1
            segments = self.row_segments(row, row_width, shown, base=base, cursor=cursor, marked=marked,
                                         here=here)
            if thumb is not None:
                segments.append(Segment(" ", base + self._style("inbox--thumb" if thumb else "inbox--track")))
            # ``width`` is in terminal cells (see format.term_len), so the strip is not re-measured.
            strip = Strip(segments, width)
            self._strips[key] = strip
        return strip

    # A page move paints a screenful of rows never seen: about 0.3 ms each, 12 ms for 40, most of a
    # frame. So while the list is idle, the screens above and below, and the first and the last
    # (g, G), are read and rendered ahead, a few rows per step, and those moves paint from the cache.
    PRERENDER_STEP = 8

    def _schedule_prerender(self) -> None:
        if not self._prerender_pending and self.loaded:
            self._prerender_pending = True
            self.set_timer(0.05, self._prerender)

    def _prerender(self) -> None:
        self._prerender_pending = False
        if not self.loaded or not self.total or not self.is_attached:
            return
        width = self.scrollable_content_region.width or self.size.width
        height = max(self.size.height, 1)
        top = int(self.scroll_offset.y)
        now, base, done = self.clock(), self._base(), 0
        thumb = False if self.total > height else None  # off screen now: most lines show the track
        ahead = range(top + height, min(top + 2 * height, self.total))
        behind = range(top - 1, max(top - height, 0) - 1, -1)
        first = range(0, min(height, self.total))  # g
        last = range(max(self.total - height, 0), self.total)  # G
        for index in (*ahead, *behind, *first, *last):
            row = self._cached_row(index)
            if row is None:
                self._row(index)  # read its page (if there is one) for a later step
                continue
            shown = countdown(row.sla_state, row.sla_due_at, row.sla_warn_at, now)
            key = (row, width, index == self.cursor_index, False, row.id in self.marked, shown, thumb,
                   self.presence.get(row.id))
            if key in self._strips:
                continue
            self._strip(index, row, width, shown, base, thumb)
            done += 1
            if done >= self.PRERENDER_STEP:
                self._prerender_pending = True
                self.set_timer(0.005, self._prerender)  # let a key in between steps
                return

    def row_segments(self, row: InboxRow, width: int, shown: tuple[str, str], *, base: Style,
                     cursor: Style | None, marked: bool, here: tuple[str, str] | None = None) -> list[Segment]:
        """One row as segments of exactly ``width`` cells; customer text only through ``fit``
        (made one line and visible by ``one_line``), never parsed as markup.

        Built as plain segments rather than a rich Text: a page move paints 40 new rows, and
        assembling and rendering Text cost about 0.5 ms a row."""
        cd_text, state = shown
        wide = width >= 90
        cust_w = 16 if wide else 14 if width >= 64 else 12
        tags_w = 14 if wide else 10 if width >= 64 else 0
        who_w = 8 if wide else 6 if width >= 64 else 0
        fixed = 1 + 1 + 4 + 1 + 1 + 8 + 1 + cust_w + 1 + (tags_w + 1 if tags_w else 0) + (who_w + 1 if who_w else 0)
        snip_w = max(width - fixed, 0)
        attention = row.needs_reply or row.unread
        style = self._style
        text_style = style("inbox--unread" if attention else "inbox--read")
        cd_style = {
            "breached": style("inbox--breached"), "warning": style("inbox--warning"),
            "paused": style("inbox--paused"), "missed": style("inbox--missed"),
        }.get(state, NO_STYLE)
        snippet = row.snippet
        if row.kind in ("email", "review") and row.subject:  # a review's subject is its location
            snippet = f"{row.subject} — {row.snippet}" if row.snippet else row.subject
        if row.rating:
            snippet = f"{stars(row.rating, compact=snip_w < 30)} {snippet}"
        symbol = STATE_SYMBOL.get(state, " ")
        if row.listening and not cd_text:  # a listening match has no clock: the query that found it
            symbol, cd_text, cd_style = LISTENING_SYMBOL, one_line(row.listening), style("inbox--paused")
        cells: list[tuple[str, Style]] = [
            ("●" if marked else here[0] if here else " ", style("inbox--mark")),
            ("•" if attention else " ", text_style),
            (fit(info(row.platform).short, 4), style("inbox--platform")),
            (" ", NO_STYLE),
            (symbol, cd_style),
            (fit(cd_text, 8, align="right"), cd_style),
            (" ", NO_STYLE),
            (fit(one_line(row.customer or row.handle or "?"), cust_w), text_style),
            (" ", NO_STYLE),
            (fit(one_line(snippet or ""), snip_w), DIM if not attention else NOT_DIM),
        ]
        if tags_w:
            cells += [(" ", NO_STYLE), (fit(one_line(" ".join("#" + t for t in row.tags)), tags_w),
                                        style("inbox--tags"))]
        if who_w:
            who = ("⇑" if row.escalated else "") + (row.assignee or "")
            if here:  # someone is in it right now: that matters more than who owns it
                who = here[0] + here[1]
            cells += [(" ", NO_STYLE), (fit(one_line(who), who_w), style("inbox--mark") if here else text_style)]
        if cursor is None:
            return [Segment(text, base + part) for text, part in cells]
        return [Segment(text, base + part + cursor) for text, part in cells]
