"""The thread view: one conversation's messages, delivery states, notes and the customer's history.

Built as one ``rich.text.Text`` from the loaded ``Thread`` (never markup), inside a scrolling
container, so a thousand-line message scrolls and a ``[@click=…]`` body is just text.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from replydesk.platforms import info
from storage.queries import MessageView, Thread
from tui.format import cell, clock_time, safe

DELIVERY = {
    "queued": ("queued", "yellow"),
    "sending": ("sending…", "yellow"),
    "sent": ("sent ✓", "green"),
    "failed": ("FAILED", "bold red"),
    "unknown": ("UNKNOWN — check the platform", "bold red"),
}


class ThreadView(VerticalScroll, can_focus=True):
    """Scrollable transcript of the selected conversation."""

    BINDINGS = [
        Binding("j,down", "scroll_down", "Scroll", id="thread.down", show=False),
        Binding("k,up", "scroll_up", "Scroll", id="thread.up", show=False),
        Binding("g,home", "scroll_home", "Top", id="thread.top", show=False),
        Binding("G,end", "scroll_end", "Bottom", id="thread.bottom", show=False),
    ]

    DEFAULT_CSS = """
    ThreadView {
        background: $surface;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    ThreadView:focus, ThreadView.-reading { background: $surface-lighten-1; }
    ThreadView > #thread-body { width: 1fr; }
    """

    def __init__(self, clock: Callable[[], float], tz: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.tz = tz
        self.thread: Thread | None = None

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        yield Static(Text("Select a conversation", style="dim italic"), id="thread-body")

    def clear(self) -> None:
        self.thread = None
        self.query_one("#thread-body", Static).update(Text("Select a conversation", style="dim italic"))

    def show(self, thread: Thread | None, *, keep_scroll: bool = False) -> None:
        """Render ``thread``; scroll to the newest message unless the reader scrolled up in this one."""
        same = keep_scroll and self.thread is not None and thread is not None and (
            self.thread.conversation.id == thread.conversation.id
        )
        if same and thread == self.thread:
            return  # a refresh with nothing new (another conversation changed): no re-render
        # Follow the conversation like a chat: stay pinned to the newest message if we were there.
        was_at_bottom = self.scroll_y >= self.max_scroll_y - 1
        self.thread = thread
        self.query_one("#thread-body", Static).update(self.render_thread(thread))
        if not same or was_at_bottom:
            self.call_after_refresh(self.scroll_end, animate=False)

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
        if c.escalated:
            out.append("  ⇑ escalated", style="bold magenta")
            if thread.escalation_target:
                out.append(" → ")
                out.append_text(safe(thread.escalation_target))
        if c.priority not in ("normal", ""):
            out.append(f"  · priority {c.priority}", style="bold" if c.priority in ("high", "urgent") else "")
        if thread.snoozed_until:
            out.append(f"  · snoozed until {clock_time(thread.snoozed_until, now, self.tz)}", style="dim")
        if c.tags:
            out.append("\n")
            out.append_text(safe("  ".join("#" + t for t in c.tags), "cyan"))
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
        for m in thread.messages:
            out.append("\n")
            out.append_text(self.render_message(m, now))
        return out

    def render_message(self, m: MessageView, now: float) -> Text:
        """One message: a header line (time, direction, author, delivery) and the indented body."""
        t = Text()
        when = clock_time(m.created_at, now, self.tz)
        body_style = ""
        if m.direction == "in":
            t.append(f"{when}  ← ", style="dim")
            t.append_text(safe(m.author or "customer", "bold"))
            gutter = "  "
        elif m.direction == "note":
            t.append(f"{when}  ✎ internal note by ", style="italic yellow")
            t.append_text(safe(m.author or "me", "italic yellow"))
            gutter, body_style = "  ┃ ", "italic"
        else:
            t.append(f"{when}  → ", style="dim")
            t.append_text(safe(m.author or "me", "bold cyan"))
            if m.private:
                t.append("  (private)", style="magenta")
            label, style = DELIVERY.get(m.state, (m.state, "dim"))
            t.append("  [", style="dim")
            t.append(label, style=style)
            if m.state == "queued" and m.not_before and m.not_before > now:
                t.append(f" · leaves in {int(m.not_before - now) + 1}s", style="dim")
            t.append("]", style="dim")
            if m.error:
                t.append("\n  reason: ", style="red")
                t.append_text(safe(m.error, "red"))
            if m.state in ("failed", "unknown") and m.outbox_key:
                t.append(f"\n  retry key: {m.outbox_key}", style="dim")
            gutter = "  "
        body = safe(m.text, body_style)
        for line in body.split("\n", allow_blank=True):
            t.append("\n" + gutter, style="yellow" if m.direction == "note" else "")
            t.append_text(line)
        return t
