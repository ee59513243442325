"""The composer: a TextArea for a reply, private message or internal note, with a live length count.

Length is counted exactly as the platform will count it, against the account's real limit: the
facts come from storage (``replydesk.platforms.BOOK``, which the engine fills, a Mastodon instance's
own limit included), so a reply the composer lets through is not refused for its length later.
The composer never writes to the database itself; it posts ``Send``, ``Closed`` and debounced
``DraftChanged`` messages and the app's workers do the SQL.

Where the platform has a reply window (WhatsApp's 24 hours), the info line counts it down, and a
reply outside it is not sent: ``WindowClosed`` asks the screen to offer what the platform still
allows (the human-agent tag, a public answer), so nothing leaves only to be refused.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static, TextArea

from replydesk.platforms import BOOK, NO_LIMIT, Limit, PlatformFacts
from replydesk.safetext import one_line
from replydesk.storage.queries import InboxRow, MessageView
from replydesk.tui.format import cell, clock_time, graphemes, safe
from replydesk.tui.keymap import bindings
from replydesk.tui.palette import ROLE_CLASSES, Palette, follow_theme, role_css
from replydesk.tui.window_text import short, verdict_for
from replydesk.windows import Verdict

DRAFT_DEBOUNCE = 0.6
MODE_LABEL = {"public": "Reply", "private": "Private reply", "note": "Internal note", "edit": "Edit our reply"}
#: Modes that are never sent as a new reply: no draft is kept, no window applies.
UNSENT = ("note", "edit")


class ReplyArea(TextArea):
    """The composer's text area. Textual's TextArea drops keys whose character is not printable,
    and typed emoji sequences send their joiners (ZWJ, ZWNJ, tag characters: Unicode's format
    characters) as keys of their own, so a typed family emoji fell apart into four faces (a paste
    arrives whole and was kept). Format characters are inserted like any other typed character."""

    async def _on_key(self, event: events.Key) -> None:
        char = event.character
        if (not self.read_only and char and len(char) == 1 and not event.is_printable
                and unicodedata.category(char) == "Cf"):
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self._replace_via_keyboard(char, start, end)
            return
        await super()._on_key(event)


def quoted(m: MessageView, when: str) -> str:
    """A message as a quote at the top of a reply: an attribution line, then ``> `` lines."""
    body = "\n".join("> " + line if line else ">" for line in m.text.strip("\n").split("\n"))
    return f"{when}, {one_line(m.author or 'you')} wrote:\n{body}\n\n"


class Composer(Vertical):
    """Docked under the thread while open; hidden otherwise."""

    # Not priority bindings: send must queue behind the characters typed before it (a priority
    # binding ran at once and sent a reply missing its last keystrokes).
    BINDINGS = bindings("composer")

    COMPONENT_CLASSES = ROLE_CLASSES
    DEFAULT_CSS = """
    Composer {
        height: auto;
        border-top: solid $accent;
        background: $panel;
        display: none;
    }
    Composer.-open { display: block; }
    Composer > TextArea, Composer > TextArea:focus { height: 5; border: none; padding: 0 1; }
    Composer.-note > TextArea { background: $warning 10%; }
    Composer > #composer-info { height: 1; padding: 0 1; }
    Composer > #composer-answering { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    .-narrow Composer > #composer-answering { max-height: 1; }
    .-narrow Composer > TextArea, .-narrow Composer > TextArea:focus { height: 4; }
    """ + role_css("Composer")

    class Send(Message):
        def __init__(self, conv_id: str, text: str, mode: str, later: bool = False, editing: str | None = None) -> None:
            super().__init__()
            self.conv_id, self.text, self.mode, self.later = conv_id, text, mode, later
            self.editing = editing  # edit mode: the id of our reply the text replaces

    class Closed(Message):
        def __init__(self, conv_id: str, text: str, mode: str) -> None:
            super().__init__()
            self.conv_id, self.text, self.mode = conv_id, text, mode

    class DraftChanged(Message):
        def __init__(self, conv_id: str, text: str, private: bool) -> None:
            super().__init__()
            self.conv_id, self.text, self.private = conv_id, text, private

    class SavedReplyWanted(Message):
        """Ask the app for the saved-reply picker (it owns dialogs)."""

    class WindowClosed(Message):
        """Send was pressed outside the reply window: the screen offers the platform's choices."""

        def __init__(self, conv_id: str, text: str, mode: str, verdict: Verdict) -> None:
            super().__init__()
            self.conv_id, self.text, self.mode, self.verdict = conv_id, text, mode, verdict

    def __init__(self, clock: Callable[[], float] = time.time, tz: str | None = None, *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock, self.tz = clock, tz
        self.row: InboxRow | None = None
        self.answering: MessageView | None = None  # the customer's message this reply answers
        self.quote_from: MessageView | None = None  # what ctrl+g quotes
        self.mode = "public"
        self.editing: str | None = None  # edit mode: the id of our reply being edited
        self._draft_timer: Timer | None = None
        self._loading = False
        self.palette = Palette(self)
        #: Other agents replying to this conversation right now (a team's presence).
        self.also_replying: tuple[str, ...] = ()

    def on_mount(self) -> None:
        follow_theme(self, self.update_info)

    def compose(self) -> ComposeResult:
        yield Static(id="composer-info")
        yield Static(id="composer-answering")
        yield ReplyArea(id="composer-text", soft_wrap=True, tab_behavior="focus")

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    @property
    def text_area(self) -> TextArea:
        return self.query_one("#composer-text", TextArea)

    @property
    def text(self) -> str:
        return self.text_area.text

    @property
    def facts(self) -> PlatformFacts:
        """The platform facts of the conversation's account (its own limit where it has one)."""
        assert self.row is not None
        return BOOK.for_account(self.row.account, self.row.platform)

    def _can_reply_privately(self) -> bool:
        return self.row is not None and self.facts.can_reply_privately(self.row.kind)

    def open(self, row: InboxRow, mode: str, text: str = "", answering: MessageView | None = None,
             quote: MessageView | None = None, editing: str | None = None) -> None:
        """Show the composer for ``row``; ``private`` falls back to public where impossible.
        ``answering``: the message the reply answers, shown above the text (at 80x24 too);
        ``quote``: what ctrl+g quotes (the message selected in the thread; else ``answering``);
        ``editing``: edit mode on that reply of ours (``text`` is its current text)."""
        if mode == "private" and not BOOK.for_account(row.account, row.platform).can_reply_privately(row.kind):
            mode = "public"
        self.row, self.mode, self.editing = row, mode, editing if mode == "edit" else None
        self.answering = answering if mode not in UNSENT else None
        self.quote_from = quote if quote is not None else self.answering
        self._show_answering()
        self.set_class(mode == "note", "-note")
        self._loading = True
        self.text_area.load_text(text)
        self._loading = False
        self.add_class("-open")
        # Focus now, not on the next idle (what .focus() does): keys typed in the same burst as
        # the 'r' that opened us are already queued and must land here, not on the inbox.
        self.screen.set_focus(self.text_area)
        self.text_area.move_cursor(self.text_area.document.end)
        self.update_info()

    def load_draft(self, conv_id: str, text: str, private: bool) -> None:
        """Fill in a stored draft if the composer is still open on that conversation and empty."""
        if self.row is None or self.row.id != conv_id or self.mode in UNSENT or self.text.strip():
            return
        if private and self._can_reply_privately():
            self.mode = "private"
        self._loading = True
        self.text_area.load_text(text)
        self._loading = False
        self.text_area.move_cursor(self.text_area.document.end)
        self.update_info()

    def set_presence(self, items: list[object]) -> None:
        """Warn in the info line while another agent is replying here too."""
        names = tuple(str(getattr(p, "agent", "")) for p in items
                      if getattr(p, "activity", None) in ("replying", "noting"))
        if names != self.also_replying:
            self.also_replying = names
            self.update_info()

    def set_answering(self, message: MessageView | None) -> None:
        """A newer customer message arrived while composing: show that one."""
        if message is not None and self.is_open and self.mode not in UNSENT:
            self.answering = self.quote_from = message
            self._show_answering()

    def _show_answering(self) -> None:
        """The answered message: who and when, then its first lines, each flattened to one line."""
        m = self.answering
        target = self.query_one("#composer-answering", Static)
        if self.mode == "edit":
            target.update(Text("editing our reply on the platform: ctrl+s replaces its text there",
                               style="dim italic"))
            return
        if m is None or self.mode == "note":
            target.update(Text("(nothing from the customer to answer yet)" if self.mode != "note" else "",
                               style="dim italic"))
            return
        width = max(self.size.width - 2, 20)
        head = Text(no_wrap=True, overflow="ellipsis", end="")
        head.append("↳ ", style="bold")
        head.append(clock_time(m.created_at, self.clock(), self.tz) + " ")
        author = cell(m.author or "customer", 24, "bold")
        author.rstrip()
        head.append_text(author)
        head.append(": ")
        lines = [line for line in m.text.split("\n") if line.strip()]
        first = cell(lines[0] if lines else "", max(width - head.cell_len, 10))
        first.rstrip()
        head.append_text(first)
        out = [head]
        for line in lines[1:3]:
            out.append(cell("  " + line, width))
        target.update(Text("\n").join(out))

    def on_resize(self) -> None:
        if self.is_open:
            self._show_answering()

    def action_quote(self) -> None:
        """Insert the answered message as a quote where the cursor is (ctrl+g)."""
        m = self.quote_from
        if m is None or self.mode in UNSENT:
            self.notify("Nothing to quote: no message here.", severity="warning")
            return
        when = clock_time(m.created_at, self.clock(), self.tz)
        self.text_area.insert(quoted(m, when))
        self.text_area.focus()

    def close(self) -> None:
        if self._draft_timer is not None:
            self._draft_timer.stop()
            self._draft_timer = None
        self.remove_class("-open")
        # The focus leaves with us, now: a key typed right after escape is for the list, not for
        # a hidden text area (the screen's handler of Closed comes a message later).
        if self.screen.focused is not None and self in self.screen.focused.ancestors_with_self:
            inbox = self.screen.query("#inbox")
            self.screen.set_focus(inbox.first() if inbox else None)

    def insert(self, text: str) -> None:
        self.text_area.insert(text)
        self.text_area.focus()

    @property
    def limit_rule(self) -> Limit:
        """The limit this reply counts against (none for a note, which is never sent)."""
        if self.row is None or self.mode == "note":
            return NO_LIMIT
        return self.facts.limit(self.row.kind, self.mode == "private")

    def window(self) -> Verdict | None:
        """The reply window's word on this reply now (None: no window binds it)."""
        if self.row is None or self.mode in UNSENT:
            return None
        return verdict_for(self.row, self.mode, self.clock())

    @property
    def limit(self) -> int:
        return self.limit_rule.max

    def update_info(self) -> None:
        if self.row is None:
            return
        rule = self.limit_rule
        measure = rule.measure(self.text) if rule.max or rule.max_bytes else None
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        t.append(MODE_LABEL[self.mode], style=self.palette("warning", "bold") if self.mode == "note" else "bold")
        t.append(" to " if self.mode != "note" else " on ")
        t.append_text(safe(self.row.customer or self.row.handle or "?"))
        t.append(f" · {self.facts.label} · ", style="dim")
        verdict = self.window()
        if verdict is not None:  # before the count: on a narrow pane it must not be the part cut off
            note, role = short(verdict, self.clock())
            t.append(note, style=self.palette(role) if role else "")
            t.append(" · ", style="dim")
        if measure is not None and measure.limit:
            unit = " bytes" if measure.unit == "bytes" else ""
            t.append(f"{measure.used}/{measure.limit}{unit}", style=self.palette("error") if measure.over else "")
        else:
            t.append(f"{graphemes(self.text)} chars", style="dim")
        if self.also_replying and self.mode != "note":
            t.append("  ⚠ ", style=self.palette("warning", "bold"))
            t.append_text(safe(", ".join(self.also_replying), self.palette("warning", "bold")))
            t.append(" replying too", style=self.palette("warning", "bold"))
        if self.mode in UNSENT:
            t.append("  ctrl+s send · esc close", style="dim")
        else:
            t.append("  ctrl+s send · ctrl+l later · esc close · ctrl+g quote", style="dim")
        if self.mode not in UNSENT and self._can_reply_privately():
            t.append(" · ctrl+t public/private", style="dim")
        if self.mode not in UNSENT:
            t.append(" · ctrl+o saved reply", style="dim")
        self.query_one("#composer-info", Static).update(t)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        self.update_info()
        if self._loading or self.row is None or self.mode in UNSENT:
            return
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_DEBOUNCE, self._emit_draft)

    def _emit_draft(self) -> None:
        self._draft_timer = None
        if self.row is not None and self.mode not in UNSENT:
            self.post_message(self.DraftChanged(self.row.id, self.text, self.mode == "private"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.is_open

    def action_send_later(self) -> None:
        """Like send, but the app asks when: the reply waits in the outbox until then."""
        if self.mode in UNSENT:
            self.notify("Only a new reply can be scheduled.", severity="warning")
            return
        self.action_send(later=True)

    def action_send(self, later: bool = False) -> None:
        if self.row is None:
            return
        text = self.text
        if not text.strip():
            self.notify("Nothing to send: the message is empty.", severity="warning")
            return
        measure = self.limit_rule.measure(text)
        if measure.over:
            unit = " bytes" if measure.unit == "bytes" else ""
            self.notify(f"Too long for {self.facts.label}: {measure.used}/{measure.limit}{unit}.", severity="error")
            return
        verdict = self.window()
        if verdict is not None and not verdict.allowed and not later:  # a later time is checked when chosen
            self.post_message(self.WindowClosed(self.row.id, text, self.mode, verdict))
            return
        self.post_message(self.Send(self.row.id, text, self.mode, later, self.editing))

    def action_close(self) -> None:
        if self.row is not None:
            self.post_message(self.Closed(self.row.id, self.text, self.mode))
        self.close()

    def action_toggle_private(self) -> None:
        if self.row is None or self.mode in UNSENT:
            return
        if not self._can_reply_privately():
            self.notify(f"{self.facts.label} {self.row.kind}s have no private reply.", severity="warning")
            return
        self.mode = "public" if self.mode == "private" else "private"
        self.update_info()
        self._emit_draft()

    def action_saved_reply(self) -> None:
        if self.mode not in UNSENT:
            self.post_message(self.SavedReplyWanted())
