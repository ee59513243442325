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
(bounces, auto-replies) carry an "automatic" mark with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from replydesk.platforms import info
from replydesk.storage.queries import ActionView, MessageView, Thread
from replydesk.tui.format import cell, clock_time, safe
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


GUTTER = " ┃"
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


def wrap_with_gutter(text: Text, console: Console, width: int) -> list[Text]:
    """Wrap to ``width``; a line that starts with a gutter (message bodies are indented, notes
    carry a bar) keeps it on its continuation lines, so a long message reads as one block."""
    out: list[Text] = []
    for line in text.split("\n", allow_blank=True):
        plain = line.plain
        indent = len(plain) - len(plain.lstrip(GUTTER))
        if 0 < indent <= width // 2 and cell_len(plain) > width:
            prefix = line[:indent]
            for piece in line[indent:].wrap(console, width - indent, overflow="fold", no_wrap=False):
                out.append(Text.assemble(prefix, piece, end=""))
        else:
            out.extend(line.wrap(console, width, overflow="fold", no_wrap=False))
    return out


class ThreadView(ScrollView, can_focus=True):
    """Scrollable transcript of the selected conversation."""

    BINDINGS = [
        Binding("j,down", "scroll_down", "Scroll", id="thread.down", show=False),
        Binding("k,up", "scroll_up", "Scroll", id="thread.up", show=False),
        Binding("g,home", "scroll_home", "Top", id="thread.top", show=False),
        Binding("G,end", "scroll_end", "Bottom", id="thread.bottom", show=False),
    ]

    COMPONENT_CLASSES = {"thread--reading"} | ROLE_CLASSES

    DEFAULT_CSS = """
    ThreadView {
        background: $surface;
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
    }
    ThreadView > .thread--reading { background: $surface-lighten-1; }
    """ + role_css("ThreadView")

    PLACEHOLDER = Text("Select a conversation", style="dim italic")

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
        # Transcripts wrapped ahead: conversation id -> (thread, layout key, text, lines, width).
        self._prepared: LRUCache[str, tuple[Thread, tuple, Text, list[Strip], int]] = LRUCache(24)
        self._to_prepare: list[str] = []
        self._preparing = False
        self.thread: Thread | None = None
        self.unfolded = False  # quoted history and signatures shown (the unfold key), per conversation
        self.unfold_key = "z"  # shown in the fold placeholders; the app sets it from the keymap
        self.reading = False
        self._text: Text = self.PLACEHOLDER
        self._lines: list[Strip] = []
        self._wrapped_at = -1
        self._rendered_at = -1  # the pane's width the transcript was built for (its row cells)
        self._base_style: dict[bool, Style] = {}
        self._painted: LRUCache[tuple[int, Style, int], Strip] = LRUCache(512)
        self.palette = Palette(self)
        #: Other agents in this conversation now (a team's presence), shown under the header.
        self.presence: tuple[tuple[str, str], ...] = ()

    def on_mount(self) -> None:
        follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        """Another theme: the transcript was built with the old one's colours."""
        if self.thread is not None:
            self._set_text(self.render_thread(self.thread))

    # ---- content ----------------------------------------------------------------------------------

    def clear(self) -> None:
        self.thread = None
        self._set_text(self.PLACEHOLDER)

    def show(self, thread: Thread | None, *, keep_scroll: bool = False) -> None:
        """Render ``thread``; scroll to the newest message unless the reader scrolled up in this one."""
        same = keep_scroll and self.thread is not None and thread is not None and (
            self.thread.conversation.id == thread.conversation.id
        )
        if same and thread == self.thread:
            return  # a refresh with nothing new (another conversation changed): no re-render
        if not same and (thread is None or self.thread is None
                         or thread.conversation.id != self.thread.conversation.id):
            self.unfolded = False  # another conversation opens folded
        # Follow the conversation like a chat: stay pinned to the newest message if we were there.
        was_at_bottom = self.scroll_y >= self.max_scroll_y - 1
        self.thread = thread
        prepared = self._prepared.get(thread.conversation.id) if thread is not None else None
        if prepared is not None and prepared[0] == thread and prepared[1] == self._layout_key():
            _, _, self._text, self._lines, self._wrapped_at = prepared
            self._rendered_at = self.size.width  # part of the layout key
            self._painted.clear()
            self._set_virtual_size(Size(self._wrapped_at + 2, len(self._lines)))
            self.refresh()
        else:
            self._set_text(self.render_thread(thread))
        if not same or was_at_bottom:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        self.set_timer(0.1, self._prepaint)

    def set_presence(self, items: list[object], *, repaint: bool = True) -> None:
        """Who else is here: "ana is replying…", "ben is viewing"; re-rendered only on a change."""
        shown = tuple((str(getattr(p, "agent", "")), str(getattr(p, "activity", ""))) for p in items)
        if shown == self.presence:
            return
        self.presence = shown
        if repaint and self.thread is not None:
            top = self.scroll_y
            self._set_text(self.render_thread(self.thread))
            self.scroll_to(y=min(top, self.max_scroll_y), animate=False, immediate=True)

    def toggle_folds(self) -> None:
        """Show or hide quoted history and signatures in this conversation, keeping the place."""
        self.unfolded = not self.unfolded
        if self.thread is not None:
            top = self.scroll_y
            self._set_text(self.render_thread(self.thread))
            self.scroll_to(y=min(top, self.max_scroll_y), animate=False, immediate=True)

    def set_reading(self, on: bool) -> None:
        """Highlight the pane while the movement keys scroll it: a repaint of cached lines, not a
        CSS class (a class change restyles the widget and its children, several ms a key)."""
        if self.reading != on:
            self.reading = on
            self.refresh()

    def _set_text(self, text: Text) -> None:
        self._text = text
        self._rendered_at = self.size.width
        self._wrap()
        self.refresh()

    def _text_width(self) -> int:
        return max(self.scrollable_content_region.width - 2, 1)  # one column of margin each side

    def _wrap(self) -> None:
        """Wrap the text to the pane once; painting then only picks lines."""
        self._lines, width = self._wrapped_for_pane(self._text)
        self._wrapped_at = width
        self._painted.clear()
        self._set_virtual_size(Size(width + 2, len(self._lines)))

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

    def _wrapped_for_pane(self, text: Text) -> tuple[list[Strip], int]:
        """The text wrapped to the width it will have: the pane's, less the scroll bar when it is
        longer than the pane (Textual shows the bar then), so showing it never wraps it twice."""
        full, height = self.container_size.width, self.container_size.height
        if not full:  # not laid out yet
            return self._wrapped(text, self._text_width()), self._text_width()
        width = max(full - 2, 1)
        lines = self._wrapped(text, width)
        bar = self.styles.scrollbar_size_vertical
        if bar and self.styles.overflow_y in ("auto", "scroll") and (len(lines) > height or self.styles.overflow_y == "scroll"):
            width = max(full - bar - 2, 1)
            lines = self._wrapped(text, width)
        return lines, width

    def _wrapped(self, text: Text, width: int) -> list[Strip]:
        console = self.app.console
        return [
            Strip(list(line.render(console, end="")), line.cell_len).adjust_cell_length(width)
            for line in wrap_with_gutter(text, console, width)
        ]

    # ---- following the cursor, reading ahead -----------------------------------------------------

    #: How far ahead the worker reads: rows in the direction the cursor last moved, and behind it.
    AHEAD, BEHIND = 4, 2
    #: Seconds the cursor rests before the rows a page or the list's ends away are read too.
    RESTS = 0.2

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
        urgent = not self.store.threads.fresh(conv_id, self.clock())
        with self._ahead_lock:
            if not self._ahead_running:
                self._ahead_running = True
                # The selected one missing: read it now. Else read ahead once this key's frame is
                # painted: the worker's Python (rows, the SLA engine) would share the GIL with it.
                if urgent:
                    self._read_ahead()
                else:
                    self.app.call_after_refresh(self._read_ahead)
        return self.store.threads.get(conv_id)

    def _read_also(self, plan: tuple[str, ...], far: Sequence[str]) -> None:
        """The cursor rested on the plan's conversation: read the far rows as well."""
        if self._plan is plan:
            self._plan = tuple(dict.fromkeys((*plan, *far)))
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
            if not self._preparing:
                self._preparing = True
                self.set_timer(0.005, self._prepare_one)

    def _layout_key(self) -> tuple:
        """What a wrapped transcript depends on besides the thread: the pane's width, folds, the
        minute (times are shown relative to today), the styles, who else is in it (a team's
        presence; those wrapped ahead are wrapped without). Not the height: the SLA pane above
        grows and shrinks with each conversation, and the height only decides the scroll bar
        (``_wrapped_for_pane``; a wrong guess is wrapped again on the resize)."""
        return (self.container_size.width, self.size.width, self.unfolded, int(self.clock() // 60), self._base(False),
                self.presence)

    def _prepare_one(self) -> None:
        """Wrap one transcript read ahead, then let a key in before the next."""
        self._preparing = False
        if self.store is None or not self.is_attached:
            return
        while self._to_prepare:
            conv_id = self._to_prepare.pop(0)
            read = self.store.threads.get(conv_id)
            if read is None or read.thread is None or (self.thread is not None and conv_id == self.thread.conversation.id):
                continue
            # Another conversation opens folded; its presence is not known here (shown on arrival).
            was_unfolded, self.unfolded = self.unfolded, False
            was_presence, self.presence = self.presence, ()
            try:
                key = self._layout_key()
                done = self._prepared.get(conv_id)
                if done is None or done[0] != read.thread or done[1] != key:
                    text = self.render_thread(read.thread)
                    self._prepared[conv_id] = (read.thread, key, text, *self._wrapped_for_pane(text))
            finally:
                self.unfolded, self.presence = was_unfolded, was_presence
            if self._to_prepare:
                self._preparing = True
                self.set_timer(0.005, self._prepare_one)
            return

    def on_resize(self) -> None:
        """Another width: the rows of the customer's other conversations are cut to the pane's
        width when the transcript is built, so it is built again; else it is wrapped again."""
        if self.thread is not None and self.size.width != self._rendered_at:
            self._set_text(self.render_thread(self.thread))
        elif self._text_width() != self._wrapped_at:
            self._wrap()
            self.refresh()

    # ---- painting ---------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style.clear()
        self._painted.clear()
        self._prepared.clear()

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
        return self._line_strip(int(self.scroll_offset.y) + y, self.reading or self.has_focus)

    def _line_strip(self, index: int, lit: bool) -> Strip:
        base = self._base(lit)
        width = self.scrollable_content_region.width
        key = (index, base, width)
        strip = self._painted.get(key)
        if strip is None:
            if index >= len(self._lines):
                strip = Strip.blank(width, base)
            else:
                margin = Segment(" ")
                line = Strip([margin, *self._lines[index], margin], self._wrapped_at + 2)
                strip = line.adjust_cell_length(width).apply_style(base)
            self._painted[key] = strip
        return strip

    def _prepaint(self) -> None:
        """While idle, render the visible lines in the other highlight too, so enter and escape
        paint from the cache."""
        if not self.is_attached:
            return
        top, lit = int(self.scroll_offset.y), not (self.reading or self.has_focus)
        for index in range(top, top + self.size.height):
            self._line_strip(index, lit)

    def render_thread(self, thread: Thread | None) -> Text:
        if thread is None:
            return Text("This conversation is no longer in the cache.", style="dim italic")
        c = thread.conversation
        now = self.clock()
        out = Text(no_wrap=False, overflow="fold")
        out.append_text(safe(c.customer or c.handle or "?", "bold"))
        if c.handle and c.handle != c.customer:
            out.append("  ")
            out.append_text(safe(c.handle, "dim"))
        out.append(f"  · {info(c.platform).label} {c.kind} · {c.status}", style="dim")
        if c.assignee:
            out.append("  · assigned ")
            out.append_text(safe(c.assignee))
        role = self.palette
        if c.escalated:
            out.append("  ⇑ escalated", style=role("special", "bold"))
            if thread.escalation_target:
                out.append(" → ")
                out.append_text(safe(thread.escalation_target))
        if c.priority not in ("normal", ""):
            out.append(f"  · priority {c.priority}", style="bold" if c.priority in ("high", "urgent") else "")
        if thread.snoozed_until:
            out.append(f"  · snoozed until {clock_time(thread.snoozed_until, now, self.tz)}", style="dim")
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
            out.append_text(safe("  ".join("#" + t for t in c.tags), role("accent")))
        if c.subject:
            out.append("\nSubject: ", style="dim")
            out.append_text(safe(c.subject, "bold"))
        if thread.history:
            out.append("\n")
            out.append(f"Also from this customer ({len(thread.history)}):", style="bold")
            for h in thread.history[:3]:
                out.append("\n  ")
                out.append_text(cell(info(h.platform).short, 5, "dim"))
                out.append_text(cell(h.status, 9, "dim"))
                out.append_text(cell(clock_time(h.last_message_at, now, self.tz), 13, "dim"))
                out.append_text(cell(h.snippet, max(self.size.width - 32, 10)))
            if len(thread.history) > 3:
                out.append(f"\n  … and {len(thread.history) - 3} more", style="dim")
        out.append("\n")
        # Actions (a ticket, an edit, a delete) stand in the transcript where they were asked for.
        # A read mark shows only when it needs the user: it is routine otherwise.
        shown = [a for a in thread.actions if a.action != "mark_read" or a.state in ("failed", "unknown")]
        entries: list[tuple[float, int, MessageView | ActionView]] = [(m.created_at, 0, m) for m in thread.messages]
        entries += [(a.created_at, 1, a) for a in shown]
        for _, _, entry in sorted(entries, key=lambda e: (e[0], e[1])):
            out.append("\n")
            out.append_text(self.render_action(entry, now) if isinstance(entry, ActionView)
                            else self.render_message(entry, now))
        return out

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
        if a.state in ("failed", "unknown"):
            t.append(f"\n  retry key: {a.key}", style="dim")
        return t

    def render_message(self, m: MessageView, now: float) -> Text:
        """One message: a header line (time, direction, author, delivery) and the indented body."""
        t = Text()
        role = self.palette
        when = clock_time(m.created_at, now, self.tz)
        body_style = ""
        if m.direction == "in":
            t.append(f"{when}  ← ", style="dim")
            t.append_text(safe(m.author or "customer", "dim bold" if m.automatic else "bold"))
            if m.automatic:
                t.append("  ⚙ automatic", style=role("special", "bold"))
                t.append(" · ", style="dim")
                t.append_text(safe(m.automatic, role("special")))
            gutter = "  "
        elif m.direction == "note":
            t.append(f"{when}  ✎ internal note by ", style=role("warning", "italic"))
            t.append_text(safe(m.author or "me", role("warning", "italic")))
            gutter, body_style = "  ┃ ", "italic"
        else:
            t.append(f"{when}  → ", style="dim")
            t.append_text(safe(m.author or "me", role("accent", "bold")))
            if m.private:
                t.append("  (private)", style=role("special"))
            if isinstance(m.meta, dict) and m.meta.get("edited_at"):
                t.append("  (edited)", style="dim")
            bounced = m.state == "failed" and bool(m.meta.get("bounced_by"))
            if bounced:
                label, state_role = "NOT DELIVERED", "error"
            else:
                label, state_role = DELIVERY.get(m.state, (m.state, None))
            t.append("  [", style="dim")
            t.append(label, style=role(state_role) if state_role else "dim")
            if m.state == "queued" and m.not_before and m.not_before > now:
                t.append(f" · leaves in {int(m.not_before - now) + 1}s", style="dim")
            t.append("]", style="dim")
            if m.error:
                t.append("\n  reason: ", style=role("error", "not bold"))
                t.append_text(safe(m.error, role("error", "not bold")))
            if bounced:
                t.append("\n  the receiving server returned it; check the address, then write again", style="dim")
            elif m.state in ("failed", "unknown") and m.outbox_key:
                t.append(f"\n  retry key: {m.outbox_key}", style="dim")
            gutter = "  "
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
