"""The thread view: one conversation's messages, delivery states, notes and the customer's history.

Built as one ``rich.text.Text`` from the loaded ``Thread`` (never markup), wrapped once into strips
and shown with the Line API: scrolling and the reading highlight repaint only cached lines, and a
new thread is no relayout of the screen (a ``Static`` in a scroll container cost 10-20 ms a key).
A thousand-line message scrolls, and a ``[@click=…]`` body is just text.

Moving onto a conversation shows it in the same frame as the list's highlight when it was read
ahead: while the cursor rests (and while a key is held), a worker reads the conversations around
it, those the cursor is heading for first (``follow``), and the transcripts are wrapped ahead on
the event loop; so reading down a list with ``j`` never shows the previous conversation for a
moment, and a burst of keys reads each conversation it passes once, none it skips.

A message shows its new words first: quoted history and signatures (``MessageView.spans``) fold
into one dim line each until the unfold key (``toggle_quoted``, z) shows them; quoted lines the
customer answered inline stay, dimmed, in order with the answers. Messages no person wrote
(bounces, auto-replies) carry an "automatic" mark with the reason. A long thread opens on its first
message and its newest ``NEWEST``; the middle is one line until the same key (or [ moving into it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from replydesk.platforms import info
from replydesk.storage.queries import ActionView, MessageView, Thread
from replydesk.tui.format import cell, clock_time, leaves, safe, safe_line, stars
from replydesk.tui.keymap import bindings
from replydesk.tui.messages import ThreadLoaded
from replydesk.tui.palette import ROLE_CLASSES, Palette, follow_theme, role_css
from replydesk.tui.workers import background

if TYPE_CHECKING:
    from replydesk.tui.store import Store, ThreadRead

#: Delivery state of our reply -> (label, colour role): the label says it without colour too.
DELIVERY = {
    "queued": ("queued", "warning"),
    "sending": ("sending…", "warning"),
    "sent": ("sent ✓", "success"),
    "failed": ("FAILED", "error"),
    "unknown": ("UNKNOWN — check the platform", "error"),
    "deleted": ("deleted on the platform", None),
}

#: What the platform reported after "sent" (``storage.receipts``).
RECEIPTS = {"delivered": ("delivered ✓✓", "success"), "read": ("read ✓✓", "accent")}

GUTTER = " ┃"
#: Columns right of the text: a margin, then the scroll bar (``ThreadView._thumb``).
RIGHT = 2
#: Inline-answer context longer than this shows only its last lines (the ones the answer is under).
CONTEXT_LINES = 6
FOLD_NAMES = {"quote": "quoted text", "signature": "signature"}


def body_pieces(m: MessageView, unfolded: bool) -> list[tuple[str, str]]:
    """A message body as (kind, text) pieces in order: ``new``, ``context`` (dim), ``folded`` (a
    one-line placeholder) or, unfolded, ``quote``/``signature`` (dim). Pure: tested on its own."""
    text, spans = m.text, sorted(m.spans)
    legacy = m.meta.get("quoted") if isinstance(m.meta, dict) else None
    if not spans and isinstance(legacy, str) and legacy:  # stored before spans existed
        spans = [(len(text) + 2, len(text) + 2 + len(legacy), "quote")]
        text = f"{text}\n\n{legacy}"
    pieces: list[tuple[str, str]] = []
    pos = 0
    hidden: list[tuple[str, str]] = []  # consecutive folded spans become one placeholder

    def flush_hidden() -> None:
        if hidden:
            names = " and ".join(dict.fromkeys(FOLD_NAMES[k] for k, _ in hidden))
            lines = sum(len(t.strip("\n").split("\n")) for _, t in hidden)
            pieces.append(("folded", f"{names} · {lines} line{'s' if lines != 1 else ''}"))
            hidden.clear()

    for start, end, kind in spans:
        start, end = max(start, pos), min(end, len(text))
        if start >= end:
            continue
        before = text[pos:start]
        if before.strip():
            flush_hidden()
            pieces.append(("new", before.strip("\n")))
        chunk = text[start:end]
        if kind == "context" or unfolded:
            flush_hidden()
            lines = chunk.strip("\n").split("\n")
            if kind == "context" and not unfolded and len(lines) > CONTEXT_LINES:
                hidden.append(("quote", "\n".join(lines[:-3])))
                flush_hidden()
                lines = lines[-3:]
            pieces.append((kind, "\n".join(lines)))
        else:
            hidden.append((kind, chunk))
        pos = end
    rest = text[pos:]
    if rest.strip() or not pieces and not hidden:
        flush_hidden()
        pieces.append(("new", rest.strip("\n")))
    flush_hidden()
    return pieces


#: The part of a message folded into the line before it (the middle of a long thread): no lines.
COLLAPSED = Text("")
#: Delivery states a folded middle still counts aloud: the agent must see them without unfolding.
NEEDS_USER = frozenset({"failed", "unknown"})


def wrap_with_gutter(text: Text, console: Console, width: int) -> list[Text]:
    """Wrap to ``width``; a line that starts with a gutter (message bodies are indented, notes
    carry a bar) keeps it on its continuation lines, so a long message reads as one block."""
    return [piece for line in text.split("\n", allow_blank=True) for piece in wrap_line(line, console, width)]


def wrap_line(line: Text, console: Console, width: int) -> list[Text]:
    """One source line of ``wrap_with_gutter`` (the unit a transcript wrapped ahead is sliced by)."""
    plain = line.plain
    indent = len(plain) - len(plain.lstrip(GUTTER))
    if 0 < indent <= width // 2 and cell_len(plain) > width:
        prefix = line[:indent]
        return [Text.assemble(prefix, piece, end="")
                for piece in line[indent:].wrap(console, width - indent, overflow="fold", no_wrap=False)]
    return list(line.wrap(console, width, overflow="fold", no_wrap=False))


def _strip(line: Text, console: Console, width: int) -> Strip:
    """One wrapped line as the strip painted, padded or cut to ``width``."""
    return Strip(list(line.render(console, end="")), line.cell_len).adjust_cell_length(width)


@dataclass(frozen=True)
class Prepared:
    """A transcript read ahead, rendered and wrapped while idle for the layout ``key`` it was made for."""

    thread: Thread
    key: tuple
    parts: list[Text]
    text: Text
    lines: list[Strip]
    part_lines: list[int]
    width: int
    countdowns: bool  # a queued reply's "leaves in" countdown is in it (``tick`` redraws it)
    edits: set[str]  # a review's later versions
    #: The screenful it opens on (its end), painted as ``ThreadView._line_strip`` would: the frame
    #: that shows it builds no strip of its own.
    painted: dict[tuple, Strip] = field(default_factory=dict)


@dataclass
class Preparing:
    """A transcript being wrapped ahead, a slice at a time (``ThreadView._prepare_one``): what is
    done so far, and the steps left (each one message rendered or one source line wrapped)."""

    conv_id: str
    thread: Thread
    key: tuple
    width: int
    steps: Iterator[None] | None = None
    parts: list[Text] = field(default_factory=list)
    lines: list[Strip] = field(default_factory=list)
    part_lines: list[int] = field(default_factory=list)
    painted: dict[tuple, Strip] = field(default_factory=dict)
    # What rendering notes of the thread (``render_parts`` keeps them on the view), between slices.
    countdowns: bool = False
    edits: set[str] = field(default_factory=set)
    platform: str = ""

    def prepared(self) -> Prepared:
        text = Text("").join(self.parts) if len(self.parts) > 1 else self.parts[0]
        return Prepared(self.thread, self.key, self.parts, text, self.lines, self.part_lines, self.width,
                        countdowns=self.countdowns, edits=self.edits, painted=self.painted)


class ThreadView(ScrollView, can_focus=True):
    """Scrollable transcript of the selected conversation."""

    BINDINGS = bindings("thread")

    COMPONENT_CLASSES = {"thread--reading", "thread--track", "thread--thumb"} | ROLE_CLASSES

    # The scroll bar is the last column of each painted line (``_thumb``), not Textual's widget:
    # that one re-rendered its whole height for every conversation shown, about 1.5 ms of the
    # frame a key paints (the wheel still scrolls; the bar is not dragged), as in the inbox.
    DEFAULT_CSS = """
    ThreadView {
        background: $surface;
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 0;
    }
    ThreadView > .thread--reading { background: $surface-lighten-1; }
    ThreadView > .thread--track { background: $scrollbar-background; }
    ThreadView > .thread--thumb { background: $scrollbar; }
    """ + role_css("ThreadView")

    PLACEHOLDER = Text("Select a conversation", style="dim italic")

    class NewMessages(Message):
        """Customer messages arrived in the conversation on screen (the screen announces them)."""

        def __init__(self, conv_id: str, count: int, author: str) -> None:
            super().__init__()
            self.conv_id, self.count, self.author = conv_id, count, author

    class OpenConversation(Message):
        """A click on an "Also from this customer" entry."""

        def __init__(self, conv_id: str) -> None:
            super().__init__()
            self.conv_id = conv_id

    def __init__(self, clock: Callable[[], float], tz: str | None = None, *, store: Store | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.tz = tz
        self.store = store
        # Reading ahead: the conversations wanted, the selected one first (replaced by the UI thread,
        # read by the worker), and whether the worker runs (under the lock, so none is lost).
        self._plan: tuple[str, ...] = ()
        self._ahead_lock = threading.Lock()
        self._ahead_running = False
        self._rest_timer: Timer | None = None
        self._catching_up: str | None = None  # shown from a read a write may have overtaken
        # Transcripts wrapped ahead, by conversation id.
        self._prepared: LRUCache[str, Prepared] = LRUCache(self.PREPARED)
        self._to_prepare: list[str] = []
        self._preparing = False
        self._job: Preparing | None = None  # the one being wrapped, a slice at a time
        self.thread: Thread | None = None
        self.unfolded = False  # quoted history and signatures shown (the unfold key), per conversation
        self.unfold_key = "z"  # shown in the fold placeholders; the app sets it from the keymap
        self.reading = False
        self.selected: int | None = None  # the message [ and ] moved to (None: the newest inbound)
        self._text: Text = self.PLACEHOLDER
        self._parts: list[Text] = [self.PLACEHOLDER]
        self._part_lines: list[int] = [0]  # wrapped line where each part starts
        self._lines: list[Strip] = []
        self._wrapped_at = -1
        self._rendered_at = -1  # the pane's width the transcript was built for (its row cells)
        self._base_style: dict[bool | str, Style] = {}  # lit or not, and the bar's two styles
        self._painted: LRUCache[tuple[int, Style, int], Strip] = LRUCache(512)
        self._countdowns = False  # a queued reply with a "leaves in" countdown is shown
        self.palette = Palette(self)
        self._edits: set[str] = set()  # ids of a review's later versions (the customer's edits)
        self._platform = ""  # the shown conversation's platform (the bounce hint is email's own)
        #: Other agents in this conversation now (a team's presence), shown under the header.
        self.presence: tuple[tuple[str, str], ...] = ()

    def on_mount(self) -> None:
        follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        """Another theme: the transcript was built with the old one's colours."""
        self._prepared.clear()  # and so were those wrapped ahead
        self._job = None
        if self.thread is not None:
            self._set_parts(self.render_parts(self.thread))

    # ---- content ----------------------------------------------------------------------------------

    def clear(self) -> None:
        self.thread = None
        self.selected = None
        self._set_parts([self.PLACEHOLDER])

    def show(self, thread: Thread | None, *, keep_scroll: bool = False) -> None:
        """Render ``thread``; scroll to the newest message unless the reader scrolled up in this one."""
        same = keep_scroll and self.thread is not None and thread is not None and (
            self.thread.conversation.id == thread.conversation.id
        )
        if same and thread == self.thread:
            self._catching_up = None
            return  # a refresh with nothing new (another conversation changed): no re-render
        if not same and (thread is None or self.thread is None
                         or thread.conversation.id != self.thread.conversation.id):
            self.unfolded = False  # another conversation opens folded
            self.selected = None
        if same and thread is not None and self.thread is not None:
            catching_up, self._catching_up = self._catching_up, None
            if catching_up != thread.conversation.id:
                self._announce(self.thread, thread)
        # Follow the conversation like a chat: stay pinned to the newest message if we were there.
        was_at_bottom = self.scroll_y >= self.max_scroll_y - 1
        self.thread = thread
        if thread is not None and self.selected is not None and self.selected >= len(thread.messages):
            self.selected = None
        if thread is not None:
            self._finish_job(thread)
        prepared = self._prepared.get(thread.conversation.id) if thread is not None else None
        if prepared is not None and prepared.thread == thread and prepared.key == self._layout_key():
            self._use(prepared)
        else:
            self._set_parts(self.render_parts(thread))
        if not same or was_at_bottom:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        self.set_timer(0.1, self._prepaint)

    def _announce(self, old: Thread, new: Thread) -> None:
        seen = {m.id for m in old.messages}
        fresh = [m for m in new.messages if m.direction == "in" and m.id not in seen and not m.automatic]
        if fresh:
            self.post_message(self.NewMessages(new.conversation.id, len(fresh), fresh[-1].author))

    def tick(self) -> None:
        """Once a second: a queued reply's "leaves in" countdown moves on (nothing else is redrawn)."""
        if self._countdowns and self.thread is not None:
            top = self.scroll_y
            self._set_parts(self.render_parts(self.thread))
            self.scroll_to(y=min(top, self.max_scroll_y), animate=False, immediate=True)

    def set_presence(self, items: list[object], *, repaint: bool = True) -> None:
        """Who else is here: "ana is replying…", "ben is viewing"; re-rendered only on a change."""
        shown = tuple((str(getattr(p, "agent", "")), str(getattr(p, "activity", ""))) for p in items)
        if shown == self.presence:
            return
        self.presence = shown
        if repaint and self.thread is not None:
            top = self.scroll_y
            self._set_parts(self.render_parts(self.thread))
            self.scroll_to(y=min(top, self.max_scroll_y), animate=False, immediate=True)

    def toggle_folds(self) -> None:
        """Show or hide quoted history, signatures and the middle of a long thread, keeping the place."""
        self.unfolded = not self.unfolded
        if self.thread is not None:
            top = self.scroll_y
            self._set_parts(self.render_parts(self.thread))
            self.scroll_to(y=min(top, self.max_scroll_y), animate=False, immediate=True)

    # ---- the message under the reader ---------------------------------------------------------------

    def current_message(self) -> MessageView | None:
        """The message [ and ] selected, else the customer's newest (else the newest of any)."""
        if self.thread is None or not self.thread.messages:
            return None
        msgs = self.thread.messages
        if self.selected is not None and 0 <= self.selected < len(msgs):
            return msgs[self.selected]
        return next((m for m in reversed(msgs) if m.direction == "in"), msgs[-1])

    def select_message(self, step: int) -> MessageView | None:
        """Move the selection ``step`` messages on (from the newest inbound when none is selected)
        and scroll its first line into view."""
        if self.thread is None or not self.thread.messages:
            return None
        msgs = self.thread.messages
        current = self.current_message()
        index = msgs.index(current) if current in msgs else len(msgs) - 1
        self.selected = max(0, min(index + step, len(msgs) - 1))
        if self.selected in self.hidden(len(msgs)):
            self.unfolded = True  # moving into the folded middle opens it
        self._set_parts(self.render_parts(self.thread))
        self.scroll_to(y=min(self._part_lines[self.selected + 1], self.max_scroll_y), animate=False,
                       immediate=True)
        return msgs[self.selected]

    def on_click(self, event: events.Click) -> None:
        conv_id = event.style.meta.get("open_conversation") if event.style else None
        if isinstance(conv_id, str):
            event.stop()
            self.post_message(self.OpenConversation(conv_id))

    def set_reading(self, on: bool) -> None:
        """Highlight the pane while the movement keys scroll it: a repaint of cached lines, not a
        CSS class (a class change restyles the widget and its children, several ms a key)."""
        if self.reading != on:
            self.reading = on
            self.refresh()

    def _set_text(self, text: Text) -> None:
        """Show ``text`` as the whole transcript (one part)."""
        self._set_parts([text])

    def _set_parts(self, parts: list[Text]) -> None:
        self._parts = parts
        self._text = Text("").join(parts) if len(parts) > 1 else parts[0]
        self._rendered_at = self.size.width
        self._wrap()
        self.refresh()

    def _text_width(self) -> int:
        return max(self.scrollable_content_region.width - 1 - RIGHT, 1)  # a margin each side, the bar

    def _wrap(self) -> None:
        """Wrap the text to the pane once; painting then only picks lines. Each part (the header,
        each message) is wrapped on its own, so where a message starts is known ([ and ])."""
        self._lines, self._part_lines, width = self._wrapped_for_pane(self._parts)
        self._wrapped_at = width
        self._painted.clear()
        self._set_virtual_size(Size(width + 1 + RIGHT, len(self._lines)))

    def _set_virtual_size(self, size: Size) -> None:
        """A new transcript's length, without a layout of the whole screen when the scroll bar
        stays as it is (shown or not): Textual lays out every widget on a ``virtual_size``
        change, 5-40 ms of the frame that shows the conversation, though this pane keeps its
        place and size. The scroll bar's own thumb is updated (Textual 8.2.8's ``_scroll_update``)."""
        height, overflow = self.container_size.height, self.styles.overflow_y
        toggles = overflow == "auto" and (size.height > height) != self.show_vertical_scrollbar
        if not height or overflow not in ("auto", "scroll") or toggles:
            self.virtual_size = size  # the bar comes or goes: the content's width changes, lay out
            return
        self.set_reactive(ThreadView.virtual_size, size)
        self._scroll_update(size)

    def _wrapped_for_pane(self, parts: list[Text]) -> tuple[list[Strip], list[int], int]:
        """The parts wrapped to the width they will have (the pane's, less the margins and the
        scroll bar column), so showing them never wraps them twice; with the line where each part
        starts."""
        full = self.container_size.width
        width = max(full - 1 - RIGHT, 1) if full else self._text_width()  # not laid out yet: a guess
        return *self._wrapped(parts, width), width

    def _wrapped(self, parts: list[Text], width: int) -> tuple[list[Strip], list[int]]:
        """Each part wrapped on its own (where a message starts is known: [ and ])."""
        console = self.app.console
        lines: list[Strip] = []
        starts: list[int] = []
        for part in parts:
            starts.append(len(lines))
            if part is COLLAPSED:
                continue
            lines.extend(_strip(line, console, width) for line in wrap_with_gutter(part, console, width))
        return lines, starts

    def _use(self, prepared: Prepared) -> None:
        """Show a transcript wrapped ahead: no render, no wrap in the frame that shows it."""
        self._parts, self._text, self._lines = prepared.parts, prepared.text, prepared.lines
        self._part_lines, self._wrapped_at, self._countdowns = prepared.part_lines, prepared.width, prepared.countdowns
        self._edits, self._platform = prepared.edits, prepared.thread.conversation.platform
        self._rendered_at = self.size.width  # part of the layout key
        self._painted.clear()
        for key, strip in prepared.painted.items():
            self._painted[key] = strip
        self._set_virtual_size(Size(self._wrapped_at + 1 + RIGHT, len(self._lines)))
        self.refresh()

    # ---- following the cursor, reading ahead -----------------------------------------------------

    #: How far ahead the worker reads: rows in the direction the cursor last moved, and behind it.
    AHEAD, BEHIND = 4, 2
    #: Seconds the cursor rests before the rows a page or the list's ends away are read too.
    RESTS = 0.2
    #: Transcripts kept wrapped ahead.
    PREPARED = 24

    def follow(self, conv_id: str, near: Sequence[str], far: Sequence[str] = ()) -> ThreadRead | None:
        """The cursor is on ``conv_id``: its read if one is cached (the caller shows it now),
        and the worker told to read it (when missing or possibly out of date) and ``near`` (the
        rows to read ahead, nearest first) as the cursor rests or moves on; ``far`` (a page away,
        the first, the last) once it has rested, so a held key does not read rows it never shows."""
        if self.store is None:
            return None
        self._plan = plan = tuple(dict.fromkeys((conv_id, *near)))
        if self._rest_timer is not None:
            self._rest_timer.stop()
        if far:
            self._rest_timer = self.set_timer(self.RESTS, lambda: self._read_also(plan, far))
        self._prepare_soon(plan[1:])  # those read long ago may have left the wrapped ones
        urgent = not self.store.threads.fresh(conv_id, self.clock())
        hit = self.store.threads.get(conv_id)
        # A read from before a write is shown now and read again: what the second read adds was
        # there before the cursor came, so it is no "new message" to announce.
        self._catching_up = conv_id if hit is not None and urgent else None
        with self._ahead_lock:
            if not self._ahead_running:
                self._ahead_running = True
                # Once this key's frame is painted, even for the selected one missing (this runs in
                # the key's handler): the worker's Python (rows, the SLA engine) would share the GIL
                # with the frame (at start-up, the first rows').
                self.app.call_after_refresh(self._read_ahead)
        return hit

    def _read_also(self, plan: tuple[str, ...], far: Sequence[str]) -> None:
        """The cursor rested on the plan's conversation: read the far rows as well."""
        if self._plan is plan:
            self._plan = tuple(dict.fromkeys((*plan, *far)))
            self._prepare_soon(self._plan[1:])
            with self._ahead_lock:
                if not self._ahead_running:
                    self._ahead_running = True
                    self._read_ahead()

    @background("reading the thread", group="thread-ahead")
    def _read_ahead(self) -> None:
        """Read, one at a time, the first conversation of the plan that is not fresh in the cache
        (the plan is looked at again after each read: the cursor may have moved on)."""
        assert self.store is not None
        while True:
            with self._ahead_lock:
                now, plan = self.clock(), self._plan
                todo = next((c for n, c in enumerate(plan)
                             if not self.store.threads.fresh(c, now, written_since=n > 0)), None)
                if todo is None or not self.is_attached:
                    self._ahead_running = False
                    return
            read = self.store.read_thread(todo, now)
            self.post_message(ThreadLoaded(read.conv_id, read.thread, read.sla, keep_scroll=True, mark=read.mark))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "thread-ahead" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            with self._ahead_lock:  # a failed read must not stop the reading ahead for good
                self._ahead_running = False

    def on_thread_loaded(self, event: ThreadLoaded) -> None:
        """A read arrived (it goes on to the screen, which shows the selected one): wrap the
        others' transcripts while idle, so moving onto them paints from the cache."""
        if event.thread is not None and (self.thread is None or event.conv_id != self.thread.conversation.id):
            if event.conv_id not in self._to_prepare:
                self._to_prepare.append(event.conv_id)
            self._prepare_soon(())

    def _prepare_soon(self, wanted: Sequence[str]) -> None:
        """Wrap ``wanted`` (those read already; nearest first) before the others waiting, while idle."""
        if wanted:
            self._to_prepare = list(dict.fromkeys((*wanted, *self._to_prepare)))[: self.PREPARED]
        if self._to_prepare and not self._preparing:
            self._preparing = True
            self.set_timer(self.GAP, self._prepare_one)

    def _layout_key(self, *, ahead: bool = False) -> tuple:
        """What a wrapped transcript depends on besides the thread: the pane's width, folds, the
        minute (times are shown relative to today), the message [ and ] selected, the styles, who else is in it (a team's
        presence; those wrapped ahead are wrapped without: ``ahead``, folded, none selected). Not the height: the SLA pane above
        grows and shrinks with each conversation, and the height only decides the scroll bar
        (``_wrapped_for_pane``; a wrong guess is wrapped again on the resize)."""
        unfolded, selected, presence = (False, None, ()) if ahead else (self.unfolded, self.selected, self.presence)
        return (self.container_size.width, self.size.width, unfolded, selected, int(self.clock() // 60),
                self._base(False), presence)

    #: Seconds of wrapping ahead in one step of the event loop: a key waits at most this (and one
    #: message rendered or one source line wrapped) behind it. A long transcript wrapped in one step
    #: held keys for 50-90 ms at 10M conversations.
    SLICE = 0.004
    #: Seconds between two slices: the loop's turn for a key and its frame.
    GAP = 0.005

    def _prepare_one(self) -> None:
        """Wrap ahead for one slice of time (resumable: a long transcript takes several), then let
        a key in before the next."""
        self._preparing = False
        if self.store is None or not self.is_attached:
            self._job = None
            return
        deadline = time.perf_counter() + self.SLICE
        while True:
            job = self._job
            if job is not None and (job.key != self._layout_key(ahead=True) or self._is_shown(job.conv_id)):
                self._job = job = None  # wrapped for another layout, or on screen now: of no use
            if job is None:
                job = self._job = self._next_job()
                if job is None:
                    return
            if self._advance(job, deadline):
                self._prepared[job.conv_id] = job.prepared()
                self._job = None
            if time.perf_counter() >= deadline:
                break
        if self._job is not None or self._to_prepare:
            self._preparing = True
            self.set_timer(self.GAP, self._prepare_one)

    def _is_shown(self, conv_id: str) -> bool:
        return self.thread is not None and conv_id == self.thread.conversation.id

    def _next_job(self) -> Preparing | None:
        """The nearest conversation read ahead and not wrapped for this layout yet (those wrapped
        already cost no slice)."""
        assert self.store is not None
        while self._to_prepare:
            conv_id = self._to_prepare.pop(0)
            read = self.store.threads.get(conv_id)
            if read is None or read.thread is None or self._is_shown(conv_id):
                continue
            key = self._layout_key(ahead=True)
            done = self._prepared.get(conv_id)
            if done is not None and done.thread == read.thread and done.key == key:
                continue
            job = Preparing(conv_id, read.thread, key, self._wrapped_for_pane([])[2])
            job.steps = self._prepare_steps(job.thread, job.width, job.parts, job.lines, job.part_lines, job.painted)
            return job
        return None

    def _prepare_steps(self, thread: Thread, width: int, parts: list[Text], lines: list[Strip],
                       part_lines: list[int], painted: dict[tuple, Strip]) -> Iterator[None]:
        """A job's work in small steps, into its lists: each message rendered, each source line
        wrapped, then the screenful it opens on painted. (Not given the job: the job holds this
        generator, and a cycle would keep its strips alive until a full collection.)"""
        for part in self._render_steps(thread):
            parts.append(part)
            yield
        console = self.app.console
        for part in parts:
            part_lines.append(len(lines))
            if part is COLLAPSED:
                continue
            for line in part.split("\n", allow_blank=True):
                lines.extend(_strip(piece, console, width) for piece in wrap_line(line, console, width))
                yield
        # Shown from a key in the list: at its end, not lit (the list has the focus).
        height = self.size.height
        top, base, full = max(len(lines) - self.container_size.height, 0), self._base(False), \
            self.scrollable_content_region.width
        for y in range(height):
            thumb = self._thumb(y, top, len(lines))
            painted[(top + y, base, full, thumb)] = self._paint(lines, width, top + y, base, full, thumb)

    def _advance(self, job: Preparing, deadline: float) -> bool:
        """Run the job's steps until ``deadline`` (one at least); whether it is done. Another
        conversation opens folded, no message selected, its presence not known here (shown on
        arrival); what rendering notes of the shown conversation is kept."""
        shown = self.unfolded, self.selected, self.presence, self._countdowns, self._edits, self._platform
        self.unfolded, self.selected, self.presence = False, None, ()
        self._countdowns, self._edits, self._platform = job.countdowns, job.edits, job.platform
        try:
            assert job.steps is not None
            return all(time.perf_counter() < deadline for _ in job.steps)  # a step, then the clock
        finally:
            job.countdowns, job.edits, job.platform = self._countdowns, self._edits, self._platform
            self.unfolded, self.selected, self.presence, self._countdowns, self._edits, self._platform = shown

    def _finish_job(self, thread: Thread) -> None:
        """``thread`` is to be shown and is being wrapped ahead: finish it now (the slices done are
        not done again), when it is wrapped for the layout it is shown in."""
        job = self._job
        if (job is not None and job.conv_id == thread.conversation.id and job.thread == thread
                and job.key == self._layout_key()):
            self._job = None
            self._advance(job, float("inf"))
            self._prepared[job.conv_id] = job.prepared()

    def on_resize(self) -> None:
        """Another width: the rows of the customer's other conversations are cut to the pane's
        width when the transcript is built, so it is built again; else it is wrapped again."""
        if self.thread is not None and self.size.width != self._rendered_at:
            self._set_parts(self.render_parts(self.thread))
        elif self._text_width() != self._wrapped_at:
            self._wrap()
            self.refresh()

    # ---- painting ---------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style.clear()
        self._painted.clear()
        self._prepared.clear()
        self._job = None

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def _base(self, lit: bool) -> Style:
        style = self._base_style.get(lit)
        if style is None:
            style = self.rich_style
            if lit:
                style += self.get_component_rich_style("thread--reading", partial=True)
            self._base_style[lit] = style
        return style

    def render_line(self, y: int) -> Strip:
        top = int(self.scroll_offset.y)
        return self._line_strip(top + y, self.reading or self.has_focus, self._thumb(y, top))

    def _thumb(self, y: int, top: int, total: int | None = None) -> bool:
        """Whether screen line ``y`` shows the scroll bar's thumb (none when everything fits)."""
        height, total = max(self.size.height, 1), len(self._lines) if total is None else total
        if total <= height:
            return False
        size = max(1, round(height * height / total))
        start = round(top / max(total - height, 1) * (height - size))
        return start <= y < start + size

    def _bar_style(self, thumb: bool) -> Style:
        name = "thread--thumb" if thumb else "thread--track"
        style = self._base_style.get(name)
        if style is None:
            style = self._base_style[name] = self.get_component_rich_style(name, partial=True)
        return style

    def _line_strip(self, index: int, lit: bool, thumb: bool) -> Strip:
        base = self._base(lit)
        width = self.scrollable_content_region.width
        key = (index, base, width, thumb)
        strip = self._painted.get(key)
        if strip is None:
            strip = self._painted[key] = self._paint(self._lines, self._wrapped_at, index, base, width, thumb)
        return strip

    def _paint(self, lines: list[Strip], wrapped_at: int, index: int, base: Style, width: int, thumb: bool) -> Strip:
        """Line ``index`` of ``lines`` (wrapped to ``wrapped_at``) as painted: margins, the
        highlight's ``base`` style and the scroll bar's cell, ``width`` cells in all."""
        bar = Segment(" ", base + self._bar_style(thumb))
        if index >= len(lines):
            return Strip([Segment(" " * max(width - 1, 0), base), bar], width)
        margin = Segment(" ")
        line = Strip([margin, *lines[index], margin], wrapped_at + 2)
        if line.cell_length != width - 1:  # wrapped for another width (a resize on its way)
            line = line.adjust_cell_length(max(width - 1, 0))
        return Strip([*Segment.apply_style(line, base), bar], width)

    def _prepaint(self) -> None:
        """While idle, render the visible lines in the other highlight too, so enter and escape
        paint from the cache."""
        if not self.is_attached:
            return
        top, lit = int(self.scroll_offset.y), not (self.reading or self.has_focus)
        for y in range(self.size.height):
            self._line_strip(top + y, lit, self._thumb(y, top))

    def render_thread(self, thread: Thread | None) -> Text:
        """The whole transcript as one Text (what ``render_parts`` shows, joined)."""
        return Text("").join(self.render_parts(thread))

    def render_parts(self, thread: Thread | None) -> list[Text]:
        """The header, then one Text per message. Header fields are customer-controlled and
        flattened to one line each (a multi-line name must not fill the pane); bodies keep lines."""
        if thread is None:
            return [Text("This conversation is no longer in the cache.", style="dim italic")]
        return list(self._render_steps(thread))

    def _render_steps(self, thread: Thread) -> Iterator[Text]:
        """``render_parts``, a part at a time (wrapping ahead renders a long thread in slices)."""
        c = thread.conversation
        now = self.clock()
        out = Text(no_wrap=False, overflow="fold")
        out.append_text(safe_line(c.customer or c.handle or "?", "bold"))
        if c.handle and c.handle != c.customer:
            out.append("  ")
            out.append_text(safe_line(c.handle, "dim"))
        out.append(f"  · {info(c.platform).label} {c.kind} · {c.status}", style="dim")
        if c.vip:
            out.append("  ★ VIP", style=self.palette("special", "bold"))
        if c.assignee:
            out.append("  · assigned ")
            out.append_text(safe_line(c.assignee))
        role = self.palette
        if c.escalated:
            out.append("  ⇑ escalated", style=role("special", "bold"))
            if thread.escalation_target:
                out.append(" → ")
                out.append_text(safe_line(thread.escalation_target))
        if c.priority not in ("normal", ""):
            out.append(f"  · priority {c.priority}", style="bold" if c.priority in ("high", "urgent") else "")
        if thread.snoozed_until:
            out.append(f"  · snoozed until {clock_time(thread.snoozed_until, now, self.tz)}", style="dim")
        for ticket in thread.tickets:  # the helpdesk's ticket an escalation made, with its status
            out.append("\nTicket: ", style="dim")
            out.append_text(safe_line(ticket.summary(), role("special", "bold")))
            if ticket.url:
                out.append("  ")
                out.append_text(safe_line(ticket.url, "dim"))
        if self.presence:
            out.append("\n")
            for i, (agent, doing) in enumerate(self.presence):
                out.append("  " if i else "")
                out.append("✎ " if doing in ("replying", "noting") else "◉ ", style=role("warning", "bold"))
                out.append_text(safe(agent, role("warning", "bold")))
                out.append({"replying": " is replying…", "noting": " is writing a note…"}.get(doing, " is viewing"),
                           style=role("warning"))
        if c.tags:
            out.append("\n")
            out.append_text(safe_line("  ".join("#" + t for t in c.tags), role("accent")))
        if c.subject:
            out.append("\nLocation: " if c.kind == "review" else "\nSubject: ", style="dim")
            out.append_text(safe_line(c.subject, "bold"))
        if thread.history:
            out.append("\n")
            out.append(f"Also from this customer ({len(thread.history)}):", style="bold")
            out.append("  c: customer card", style="dim")
            for h in thread.history[:3]:
                link = Style(meta={"open_conversation": h.id})
                out.append("\n  ", style=link)
                out.append_text(cell(info(h.platform).short, 5, Style(dim=True) + link))
                out.append_text(cell(h.status, 9, Style(dim=True) + link))
                out.append_text(cell(clock_time(h.last_message_at, now, self.tz), 13, Style(dim=True) + link))
                out.append_text(cell(h.snippet, max(self.size.width - 32, 10), link))
            if len(thread.history) > 3:
                out.append(f"\n  … and {len(thread.history) - 3} more (c shows them all)", style="dim")
        out.append("\n")
        # Actions (a ticket, an edit, a delete) stand in the transcript where they were asked for,
        # each in the part of the message before it (a part per message: [ and ] scroll to them).
        # A read mark shows only when it needs the user: it is routine otherwise.
        actions = sorted((a for a in thread.actions if a.action != "mark_read" or a.state in NEEDS_USER),
                         key=lambda a: a.created_at)
        taken = 0
        # A review's later versions are the customer's edits (each kept as it was written).
        versions = [m for m in thread.messages if c.kind == "review" and m.direction == "in" and not m.automatic]
        self._edits = {m.id for m in versions[1:]}
        self._platform = c.platform

        def add_actions(part: Text | None, until: float | None) -> None:
            """The actions before ``until`` into ``part`` (None: folded away with their message)."""
            nonlocal taken
            while taken < len(actions) and (until is None or actions[taken].created_at < until):
                if part is not None:
                    part.append("\n")
                    part.append_text(self.render_action(actions[taken], now))
                taken += 1

        messages = thread.messages
        add_actions(out, messages[0].created_at if messages else None)
        self._countdowns = False
        yield out
        hidden = self.hidden(len(messages))
        failed = 0
        if hidden:  # the middle of a long thread, folded: one line says how much, and what failed in it
            first, after = messages[hidden.start].created_at, messages[hidden.stop].created_at
            failed = (sum(m.direction == "out" and m.state in NEEDS_USER for m in messages[hidden.start:hidden.stop])
                      + sum(first <= a.created_at < after and a.state in NEEDS_USER for a in actions[taken:]))
        for index, m in enumerate(messages):
            until = messages[index + 1].created_at if index + 1 < len(messages) else None
            if index in hidden:
                add_actions(None, until)
                if index == hidden.start:
                    part = Text("\n")
                    part.append(f"  ⋯ {len(hidden)} earlier messages", style="dim")
                    if failed:
                        part.append(f" ({failed} not delivered)", style=role("error", "bold"))
                    part.append(f" · {self.unfold_key} shows them", style="dim")
                    yield part
                else:
                    yield COLLAPSED
                continue
            part = Text("\n")
            part.append_text(self.render_message(m, now, selected=index == self.selected))
            add_actions(part, until)
            yield part

    #: A long thread opens on its first message and its newest ones; the middle is one line until
    #: unfolded (the fold key, or [ moving into it). Wrapping 270 messages took 175-310 ms in the
    #: key that showed them; the folded thread wraps at most this many.
    NEWEST = 20
    FOLD_AT_LEAST = 5  # fewer hidden messages than this are not worth a fold

    def hidden(self, count: int) -> range:
        """The messages (by index) folded into one line: the middle of a long thread, unless unfolded."""
        if self.unfolded or count - 1 - self.NEWEST < self.FOLD_AT_LEAST:
            return range(0)
        return range(1, count - self.NEWEST)

    def render_action(self, a: ActionView, now: float) -> Text:
        """One outbox action: what it does, where it stands (the label says it without colour)."""
        role = self.palette
        t = Text()
        t.append(f"{clock_time(a.created_at, now, self.tz)}  ⚙ ", style="dim")
        t.append_text(safe(a.summary, "bold"))
        label, state_role = DELIVERY.get(a.state, (a.state, None))
        if a.state == "sent":
            label = "done ✓"
        t.append("  [", style="dim")
        t.append(label, style=role(state_role) if state_role else "dim")
        t.append("]", style="dim")
        url = a.result.get("url") if isinstance(a.result.get("url"), str) else ""
        if url:
            t.append("\n  ")
            t.append_text(safe(url, "dim"))
        if a.error:
            t.append("\n  reason: ", style=role("error", "not bold"))
            t.append_text(safe(a.error, role("error", "not bold")))
        if a.state in NEEDS_USER:
            t.append(f"\n  retry key: {a.key}", style="dim")
        return t

    def render_message(self, m: MessageView, now: float, *, selected: bool = False) -> Text:
        """One message: a header line (time, direction, author, delivery) and the indented body."""
        t = Text()
        role = self.palette
        when = clock_time(m.created_at, now, self.tz)
        body_style = ""
        rating = m.meta.get("rating") if isinstance(m.meta, dict) else None
        if selected:
            t.append("▶ ", style=role("accent", "bold"))
        if m.direction == "in":
            t.append(f"{when}  ← ", style="dim")
            t.append_text(safe_line(m.author or "customer", "dim bold" if m.automatic else "bold"))
            if stars(rating):  # the stars, and the number: both read without colour
                t.append(f"  {stars(rating)} {rating}/5", style=role("warning", "bold"))
            written = m.meta.get("written_at") if isinstance(m.meta, dict) else None
            if m.id in self._edits or (isinstance(written, int | float) and m.created_at - written > 60):
                t.append("  ✎ edited review", style="italic")
            if m.automatic:
                t.append("  ⚙ automatic", style=role("special", "bold"))
                t.append(" · ", style="dim")
                t.append_text(safe_line(m.automatic, role("special")))
            gutter = "  "
        elif m.direction == "note":
            t.append(f"{when}  ✎ internal note by ", style=role("warning", "italic"))
            t.append_text(safe_line(m.author or "me", role("warning", "italic")))
            gutter, body_style = "  ┃ ", "italic"
        else:
            t.append(f"{when}  → ", style="dim")
            t.append_text(safe_line(m.author or "me", role("accent", "bold")))
            if m.private:
                t.append("  (private)", style=role("special"))
            if isinstance(m.meta, dict) and m.meta.get("edited_at"):
                t.append("  (edited)", style="dim")
            bounced = m.state == "failed" and bool(m.meta.get("bounced_by"))
            if bounced:
                label, state_role = "NOT DELIVERED", "error"
            else:
                label, state_role = DELIVERY.get(m.state, (m.state, None))
                receipt = m.meta.get("receipt") if m.state == "sent" and isinstance(m.meta, dict) else None
                if receipt in RECEIPTS:  # the platform said it arrived, or was read (WhatsApp's ticks)
                    label, state_role = RECEIPTS[receipt]
            t.append("  [", style="dim")
            t.append(label, style=role(state_role) if state_role else "dim")
            if m.state == "queued" and m.not_before and m.not_before > now:
                t.append(f" · leaves {leaves(m.not_before, now, self.tz)}", style="dim")
                t.append(" · u takes it back, O: outbox", style="dim")
                self._countdowns = True
            t.append("]", style="dim")
            if m.error:
                t.append("\n  reason: ", style=role("error", "not bold"))
                t.append_text(safe_line(m.error, role("error", "not bold")))
            if bounced and self._platform == "email":
                t.append("\n  the receiving server returned it; check the address, then write again", style="dim")
            elif bounced:
                t.append("\n  the platform did not publish it; write it again (r)", style="dim")
            elif m.state in NEEDS_USER and m.outbox_key:
                t.append(f"\n  retry key: {m.outbox_key}", style="dim")
            gutter = "  "
        if m.direction == "in" and stars(rating) and not m.text.strip():
            t.append("\n" + "  ")
            t.append("(a rating without words)", style="dim italic")
            return t
        for kind, piece in body_pieces(m, self.unfolded):
            if kind == "folded":
                t.append("\n" + gutter)
                t.append(f"▸ {piece} ({self.unfold_key} shows)", style="dim italic")
                continue
            style = body_style if kind == "new" else "dim"
            for line in safe(piece, style).split("\n", allow_blank=True):
                t.append("\n" + gutter, style=role("warning") if m.direction == "note" else "")
                t.append_text(line)
        return t
