"""The customer card: one person across platforms, their conversations, VIP and the agent's note.

Platforms share no identity, so the card groups contacts the way ``storage.contacts`` does: those
an agent merged, else the same name or handle elsewhere. From here the agent opens any of the
customer's conversations (enter), marks them VIP (v), edits the note (n), merges another contact
in (m: search by name or handle, then pick) and splits a contact off again (s, on the contact
selected in the contacts table). Everything the card shows is customer text: one line, made
visible, never markup.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static

from replydesk.platforms import info
from replydesk.storage import contacts, queries
from replydesk.storage.actions import ActionError
from replydesk.storage.db import DATABASE_ERRORS, Database
from replydesk.tui.dialogs import ChoiceDialog, PromptDialog
from replydesk.tui.format import cell, clock_time, safe_line
from replydesk.tui.keybar import KeyBar
from replydesk.tui.keymap import bindings
from replydesk.tui.messages import CardLoaded, ContactsFound
from replydesk.tui.palette import ROLE_CLASSES, Palette, role_css
from replydesk.tui.store import Store
from replydesk.tui.workers import background


class CustomerCard(Screen[str | None]):
    """Dismissed with the id of a conversation to open, or None."""

    BINDINGS = bindings("card")
    COMPONENT_CLASSES = ROLE_CLASSES
    DEFAULT_CSS = """
    CustomerCard #card-head { height: auto; max-height: 6; padding: 0 1; background: $panel; }
    CustomerCard .card-label { height: 1; padding: 0 1; color: $text-muted; }
    CustomerCard #card-contacts { height: auto; max-height: 8; }
    CustomerCard #card-conversations { height: 1fr; }
    """ + role_css("CustomerCard")

    def __init__(self, store: Store, conv_id: str, clock: Callable[[], float], tz: str | None, agent: str) -> None:
        super().__init__()
        self.store, self.conv_id, self.clock, self.tz, self.agent = store, conv_id, clock, tz, agent
        self.card: contacts.Card | None = None
        self.conversations: list[queries.InboxRow] = []
        #: While the note field is open: the note as the agent last saw it (another agent's change
        #: to it is announced, never written into what they type).
        self._note_seen: str | None = None
        self.palette = Palette(self)

    def compose(self) -> ComposeResult:
        yield Static(id="card-head")
        yield Static("Contacts (s splits the selected one off · m merges another in)", classes="card-label")
        contacts_table: DataTable = DataTable(id="card-contacts", cursor_type="row")
        contacts_table.add_columns("platform", "account", "name", "handle", "")
        yield contacts_table
        yield Static("Conversations (enter opens)", classes="card-label")
        convs: DataTable = DataTable(id="card-conversations", cursor_type="row")
        convs.add_columns("platform", "status", "last", "SLA", "snippet")
        yield convs
        yield KeyBar()

    def on_mount(self) -> None:
        self._load()
        self.query_one("#card-conversations", DataTable).focus()

    # ---- data ---------------------------------------------------------------------------------------

    def data_changed(self) -> None:
        """The cache changed (the app's data-version probe): another agent's edit, a merge by the
        team, a new conversation of the customer: read the card again, off the UI thread."""
        self._load()

    @background("reading the customer card", group="card", exclusive=True)
    def _load(self) -> None:
        conv_id, typing = self.conv_id, self._note_seen is not None

        def read(db: Database) -> CardLoaded:
            contact = contacts.contact_of(db, conv_id)
            card = contacts.card(db, contact) if contact else None
            own = queries.get_row(db, conv_id)
            others = queries.history(db, conv_id, contact, limit=200) if contact else []
            rows = sorted([r for r in [own, *others] if r is not None], key=lambda r: -r.last_message_at)
            by = contacts.last_editor(db, card, "note") if card is not None and typing else None
            return CardLoaded(card, rows, note_by=by)

        self.post_message(self.store.read(read))

    def on_card_loaded(self, event: CardLoaded) -> None:
        self.card, self.conversations = event.card, event.conversations
        if self._note_seen is not None and event.card is not None and event.card.note != self._note_seen:
            self._note_seen = event.card.note  # said once per change
            theirs = safe_line(event.card.note).plain if event.card.note else "(no note)"
            who = safe_line(event.note_by).plain if event.note_by else "Another agent"
            self.notify(f"{who} changed the customer's note while you were editing "
                        f"it; now: {theirs[:120]}. What you typed stays: enter saves it over theirs, "
                        "escape keeps theirs.", title="Team", severity="warning", timeout=12, markup=False)
        self._paint()

    def _paint(self) -> None:
        card, now = self.card, self.clock()
        head = Text(no_wrap=False)
        if card is None:
            head.append("No customer is recorded for this conversation.", style="dim")
        else:
            names = list(dict.fromkeys(c.name or c.handle for c in card.contacts))
            if card.name:
                head.append_text(safe_line(card.name, "bold"))
                head.append("  (on the platforms: ", style="dim")
                head.append_text(safe_line(" / ".join(names), "dim"))
                head.append(")", style="dim")
            else:
                head.append_text(safe_line(" / ".join(names), "bold"))
            if card.vip:
                head.append("  ★ VIP", style=self.palette("special", "bold"))
            head.append(f"  · {len(card.contacts)} contact{'s' if len(card.contacts) != 1 else ''}"
                        f" on {len({c.platform for c in card.contacts})} platform(s)", style="dim")
            head.append("\nnote: ", style="dim")
            head.append_text(safe_line(card.note) if card.note else Text("(none; n adds one)", style="dim"))
        self.query_one("#card-head", Static).update(head)
        table = self.query_one("#card-contacts", DataTable)
        contact_row = table.cursor_row
        table.clear()
        for c in card.contacts if card else []:
            table.add_row(info(c.platform).label, cell(c.account, 14), cell(c.name, 24), cell(c.handle, 24),
                          "merged" if c.linked else "same name", key=c.id)
        if card and card.contacts:
            table.move_cursor(row=min(contact_row or 0, len(card.contacts) - 1))
        convs = self.query_one("#card-conversations", DataTable)
        conv_row = convs.cursor_row  # a repaint (after VIP, a note, a merge) keeps the place
        convs.clear()
        for r in self.conversations:
            mark = "▶ " if r.id == self.conv_id else ""
            convs.add_row(info(r.platform).short, r.status, clock_time(r.last_message_at, now, self.tz),
                          r.sla_state, cell(mark + (r.subject or r.snippet), 48), key=r.id)
        if self.conversations:
            convs.move_cursor(row=min(conv_row or 0, len(self.conversations) - 1))

    # ---- actions ------------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#card-conversations")
    def _open_row(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        convs = self.query_one("#card-conversations", DataTable)
        if self.conversations and convs.cursor_row is not None and convs.cursor_row < len(self.conversations):
            self.dismiss(self.conversations[convs.cursor_row].id)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_vip(self) -> None:
        if self.card is None:
            return
        ids, vip, agent = [c.id for c in self.card.contacts], not self.card.vip, self.agent
        self._write("VIP on" if vip else "VIP off", lambda db: contacts.set_vip(db, ids, vip, actor=agent))

    def action_name(self) -> None:
        if self.card is None:
            return
        person, agent = self.card.person, self.agent
        current = self.card.name or (self.card.contacts[0].name if self.card.contacts else "")

        def done(value: str | None) -> None:
            if value is not None:
                self._write("Name saved", lambda db: contacts.set_name(db, person, value.strip(), actor=agent))

        self.app.push_screen(PromptDialog("The customer's name (for the team)", value=current,
                                          hint="enter saves · empty: the platforms' names",
                                          max_length=contacts.MAX_CARD_TEXT), done)

    def action_note(self) -> None:
        if self.card is None:
            return
        person, agent = self.card.person, self.agent
        self._note_seen = self.card.note

        def done(value: str | None) -> None:
            self._note_seen = None
            if value is not None:
                self._write("Note saved", lambda db: contacts.set_note(db, person, value.strip(), actor=agent))

        self.app.push_screen(PromptDialog("Note about this customer", value=self.card.note,
                                          hint="enter saves · empty clears", max_length=contacts.MAX_CARD_TEXT), done)

    def action_merge(self) -> None:
        if self.card is None:
            return

        def done(value: str | None) -> None:
            if value and value.strip():
                self._find(value.strip())

        self.app.push_screen(PromptDialog("Merge with which contact?", placeholder="a name or handle",
                                          hint="the same person on another platform or account"), done)

    @background("finding contacts", group="card-find", exclusive=True)
    def _find(self, text: str) -> None:
        self.post_message(ContactsFound(self.store.read(lambda db: contacts.find(db, text))))

    def on_contacts_found(self, event: ContactsFound) -> None:
        mine = {c.id for c in self.card.contacts} if self.card else set()
        found = [c for c in event.contacts if c.id not in mine]
        items = [(str(n), f"{c.name} · {c.handle} · {info(c.platform).label} ({c.account})")
                 for n, c in enumerate(found, 1)]
        me = self.card.contacts[0].id if self.card and self.card.contacts else None

        def chosen(key: str | None) -> None:
            if key and me:
                other = found[int(key) - 1].id
                agent = self.agent
                self._write("Merged", lambda db: contacts.merge(db, me, other, actor=agent))

        self.app.push_screen(ChoiceDialog("Merge: pick the contact", items, empty="no other contact matches",
                                          wide=True), chosen)

    def action_split(self) -> None:
        if self.card is None or len(self.card.contacts) < 2:
            self.notify("Only one contact here: nothing to split.", severity="warning")
            return
        table = self.query_one("#card-contacts", DataTable)
        index = table.cursor_row if table.cursor_row is not None else 0
        contact = self.card.contacts[min(index, len(self.card.contacts) - 1)]
        agent = self.agent
        self._write(f"Split off {contact.name or contact.handle}", lambda db: contacts.split(db, contact.id, actor=agent))

    @background("changing the customer", group="card-write")
    def _write(self, label: str, fn: Callable[[Database], object]) -> None:
        try:
            self.store.write(fn)
        except (ActionError, *DATABASE_ERRORS) as exc:
            self.app.call_from_thread(self.notify, f"{label} failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, label, timeout=3)
        self.app.call_from_thread(self._load)
