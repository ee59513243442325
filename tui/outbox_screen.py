"""The outbox in the console: every reply that has not left, with what the user can do about it.

Queued (leaving after the undo window or at a scheduled time), sending, failed and unknown
replies, oldest first, like ``replydesk outbox``. ``e``/enter takes a reply back into the
composer to edit it (it is re-queued when sent), ``d`` discards, ``n`` sends a queued or scheduled
one now, ``r`` retries a failed or unknown one, ``c`` records an unknown one as posted after the
user checked the platform. Reads and writes run in workers; the list re-reads every two seconds
and its countdowns move every second.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static

from replydesk.storage import outbox
from replydesk.storage.actions import ActionError
from replydesk.storage.db import DATABASE_ERRORS, Database
from replydesk.storage.outbox_list import OutboxEntry, waiting
from replydesk.tui.format import cell, leaves, safe_line
from replydesk.tui.keybar import KeyBar
from replydesk.tui.keymap import bindings
from replydesk.tui.messages import OutboxLoaded
from replydesk.tui.palette import ROLE_CLASSES, Palette, role_css
from replydesk.tui.store import Store
from replydesk.tui.workers import background

STATE_ROLE = {"queued": "warning", "sending": "warning", "failed": "error", "unknown": "error"}


class OutboxScreen(Screen[tuple[str, str] | None]):
    """Replies waiting to leave or for a decision; dismissed with ``("edit", "KEY CONV")`` or None."""

    BINDINGS = bindings("outbox")
    COMPONENT_CLASSES = ROLE_CLASSES
    DEFAULT_CSS = """
    OutboxScreen #outbox-title { height: 1; padding: 0 1; background: $panel; }
    OutboxScreen DataTable { height: 1fr; }
    OutboxScreen #outbox-detail { height: auto; max-height: 4; padding: 0 1; background: $panel; }
    """ + role_css("OutboxScreen")

    def __init__(self, store: Store, clock: Callable[[], float], tz: str | None, conv_id: str | None) -> None:
        super().__init__()
        self.store, self.clock, self.tz, self.conv_id = store, clock, tz, conv_id
        self.entries: list[OutboxEntry] = []
        self.palette = Palette(self)
        self._first = True

    def compose(self) -> ComposeResult:
        yield Static(Text("Outbox", style="bold"), id="outbox-title")
        table: DataTable = DataTable(id="outbox-table", cursor_type="row", zebra_stripes=False)
        table.add_columns("state", "leaves", "to", "reply", "problem")
        yield table
        yield Static(id="outbox-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        self._load()
        self.set_interval(1.0, self._paint)
        self.set_interval(2.0, self._load)

    @background("reading the outbox", group="outbox", exclusive=True)
    def _load(self) -> None:
        self.post_message(OutboxLoaded(self.store.read(waiting)))

    def on_outbox_loaded(self, event: OutboxLoaded) -> None:
        if [e.item for e in event.entries] == [e.item for e in self.entries] and not self._first:
            return
        self.entries = event.entries
        self._paint()
        if self._first and self.conv_id:  # open on the selected conversation's first reply
            self._first = False
            for n, e in enumerate(self.entries):
                if e.item.conversation_id == self.conv_id:
                    self.query_one(DataTable).move_cursor(row=n)
                    break
        self._first = False

    def _paint(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        now = self.clock()
        for e in self.entries:
            i = e.item
            role = STATE_ROLE.get(i.state)
            state = Text(i.state.upper() if i.state in ("failed", "unknown") else i.state,
                         style=self.palette(role) if role else "")
            when = leaves(i.not_before, now, self.tz) if i.state == "queued" and i.not_before > now else (
                "now" if i.state == "queued" else "")
            to = cell(f"{e.customer} · {e.platform}", 28)
            table.add_row(state, when, to, cell(i.text, 40), cell(i.last_error or "", 30), key=i.key)
        title = f"Outbox · {len(self.entries)} repl{'y' if len(self.entries) == 1 else 'ies'} not gone yet"
        self.query_one("#outbox-title", Static).update(Text(title, style="bold"))
        if self.entries:
            table.move_cursor(row=min(row, len(self.entries) - 1))
        self._detail()

    @on(DataTable.RowHighlighted)
    def _detail(self) -> None:
        entry = self._current()
        detail = self.query_one("#outbox-detail", Static)
        if entry is None:
            detail.update(Text("Nothing waiting: every reply has left. escape goes back.", style="dim"))
            return
        t = Text(no_wrap=False)
        t.append(f"{entry.item.conversation_id} · key {entry.item.key}\n", style="dim")
        t.append_text(safe_line(entry.item.text[:400]))
        if entry.item.last_error:
            t.append("\nreason: ", style=self.palette("error"))
            t.append_text(safe_line(entry.item.last_error))
        detail.update(t)

    def _current(self) -> OutboxEntry | None:
        table = self.query_one(DataTable)
        if not self.entries or table.cursor_row is None or table.cursor_row >= len(self.entries):
            return None
        return self.entries[table.cursor_row]

    # ---- actions ------------------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_edit()

    def action_edit(self) -> None:
        entry = self._current()
        if entry is None:
            return
        if entry.item.state == "sending":
            self.notify("It is being sent right now; it can no longer be edited.", severity="warning")
            return
        self.dismiss(("edit", f"{entry.item.key} {entry.item.conversation_id}"))

    def action_discard(self) -> None:
        self._act("Discarded", lambda db, key: outbox.cancel(db, key))

    def action_retry(self) -> None:
        entry = self._current()
        if entry is not None and entry.item.state not in ("failed", "unknown"):
            self.notify("Only a failed or unknown reply is retried (n sends a queued one now).", severity="warning")
            return
        self._act("Queued again", lambda db, key: outbox.retry(db, key))

    def action_send_now(self) -> None:
        entry = self._current()
        if entry is not None and entry.item.state != "queued":
            self.notify("Only a queued reply can be sent now (r retries a failed one).", severity="warning")
            return
        self._act("Leaves now", lambda db, key: outbox.retry(db, key))

    def action_confirm(self) -> None:
        self._act("Recorded as sent", lambda db, key: outbox.confirm_sent(db, key))

    def action_close(self) -> None:
        self.dismiss(None)

    def _act(self, label: str, fn: Callable[[Database, str], object]) -> None:
        entry = self._current()
        if entry is None:
            self.notify("Nothing selected.", severity="warning")
            return
        self._write(label, entry.item.key, fn)

    @background("changing the outbox", group="outbox-write")
    def _write(self, label: str, key: str, fn: Callable[[Database, str], object]) -> None:
        try:
            self.store.write(lambda db: fn(db, key))
        except (ActionError, *DATABASE_ERRORS) as exc:
            self.app.call_from_thread(self.notify, f"{label} failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"{label}: reply {key[:8]}", timeout=3)
        self.app.call_from_thread(self._load)
