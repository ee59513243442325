"""The main screen: the inbox, the selected thread with its SLA pane and composer, and every inbox action.

The app (``tui.app``) owns what outlives a screen (the engine, the store, timers, pacing, following
the config); this screen owns the user's work on the inbox: moving, reading, replying, triage,
views and search. Threading rule (DESIGN §5): no SQL on the UI thread. Every read and write runs
in a ``background`` worker through the ``Store`` and comes back as a message from
``tui.messages``; only the handlers touch widgets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.keys import format_key
from textual.screen import Screen
from textual.timer import Timer

from replydesk import presence
from replydesk.config import UiSettings
from replydesk.safetext import one_line
from replydesk.storage import actions, activity, outbox, queries, slastate
from replydesk.storage.actions import ActionError
from replydesk.storage.db import DATABASE_ERRORS, Database
from replydesk.storage.queries import InboxFilter
from replydesk.storage.search import search
from replydesk.tui.bars import HeaderBar, StatusBar
from replydesk.tui.commands import ReplydeskCommands
from replydesk.tui.composer import Composer
from replydesk.tui.dialogs import ChoiceDialog, EscalateDialog, PromptDialog, SnoozeDialog
from replydesk.tui.format import clock_time, fill_template
from replydesk.tui.help import HelpScreen, binding_rows
from replydesk.tui.inbox import InboxList
from replydesk.tui.keybar import KeyBar
from replydesk.tui.messages import (
    ActionDone,
    ActivityLoaded,
    Collision,
    DraftLoaded,
    HeaderLoaded,
    ReplyCancelled,
    ReplyOutsideWindow,
    ReplyQueued,
    ReplyToRobot,
    TagsLoaded,
    ThreadLoaded,
    UrgentFound,
    ViewApplied,
)
from replydesk.tui.sla_pane import SlaPane
from replydesk.tui.store import Store
from replydesk.tui.thread import ThreadView
from replydesk.tui.triage import triage_write
from replydesk.tui.window_text import dialog_items
from replydesk.tui.workers import background
from replydesk.windows import Verdict

#: Errors an action can end with that the user should read rather than a traceback.
EXPECTED = (ActionError, *DATABASE_ERRORS, ValueError)
SEARCH_HELP = ("words · from:NAME · tag:TAG · platform:x · kind:review · assignee:me · is:breached|open|resolved… "
               "· is:listening")
CONTEXT_NAMES = {"InboxList": "inbox", "ThreadView": "thread", "Composer": "composer",
                 "MainScreen": "everywhere", "ReplydeskApp": "everywhere", "Screen": "screen"}


class MainScreen(Screen[None]):
    """Header, inbox | (SLA pane, thread, composer), status bar, key bar."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    COMMANDS = {ReplydeskCommands}

    # On the screen, not the app: a dialog or the palette on top has its own bindings, so these
    # single-letter keys cannot fire there.
    BINDINGS = [
        Binding("r", "reply", "Reply", id="reply"),
        Binding("R", "reply_private", "Private reply", id="reply_private", show=False),
        Binding("n", "note", "Note", id="note", show=False),
        Binding("t", "tag", "Tag", id="tag"),
        Binding("T", "untag", "Untag", id="untag", show=False),
        Binding("a", "assign", "Assign", id="assign", show=False),
        Binding("e", "escalate", "Escalate", id="escalate"),
        Binding("x", "resolve", "Resolve", id="resolve"),
        Binding("o", "reopen", "Reopen", id="reopen", show=False),
        Binding("s", "snooze", "Snooze", id="snooze"),
        Binding("exclamation_mark", "most_urgent", "Most urgent", id="most_urgent", show=False),
        Binding("slash", "search", "Search", id="search"),
        Binding("full_stop", "repeat", "Repeat", id="repeat", show=False),
        Binding("u,ctrl+z", "undo_send", "Undo send", id="undo_send", show=False),
        Binding("escape", "back", "Back", id="back", show=False),
        Binding("z", "toggle_quoted", "Quoted text", id="toggle_quoted", show=False),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("ctrl+r", "report", "Report", id="report", show=False),
        Binding("q", "app.quit", "Quit", id="quit"),
        *[Binding(str(n), f"view({n})", f"View {n}", id=f"view_{n}", show=False) for n in range(1, 10)],
    ]

    DEFAULT_CSS = """
    MainScreen #body { height: 1fr; }
    MainScreen.-wide #body { layout: horizontal; }
    MainScreen.-narrow #body { layout: vertical; }
    MainScreen.-wide #inbox { width: 58%; height: 1fr; }
    MainScreen.-wide #right { border-left: vkey $primary 50%; }
    MainScreen.-narrow #inbox { height: 45%; border-bottom: hkey $primary 50%; }
    MainScreen #right { height: 1fr; }
    MainScreen #thread { height: 1fr; }
    MainScreen.-narrow SlaPane { max-height: 3; }
    """

    def __init__(self, store: Store, ui: UiSettings, clock: Callable[[], float], tz: str | None, *,
                 engine_note: str = "") -> None:
        super().__init__()
        self.store = store
        self.ui = ui
        self.agent = ui.agent
        self.clock = clock
        self.tz = tz
        self.engine_note = engine_note
        self.problem: str | None = None
        self.view_number = 1
        self.view_title = ui.views[0].name if ui.views else "Inbox"
        self.searching = False
        self.reading = False
        self.last_action: tuple[str, str, dict[str, Any]] | None = None
        self.undo: dict[str, Any] | None = None
        self._header: HeaderLoaded | None = None
        self._thread_timer: Timer | None = None
        self._thread_for: str | None = None
        self._minute = 0
        #: Where each shown thread's messages stood, and where the open composer's stood when it
        #: opened: a reply asks first when the thread moved on since (the collision check).
        self._marks: dict[str, int] = {}
        self._compose_mark: tuple[str, int | None] | None = None
        self._presence: dict[str, list[activity.Presence]] = {}
        self._announced: tuple[str | None, str | None] = (None, None)
        self._announcements = 0

    # ---- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Container(id="body"):
            yield InboxList(self.store, self.clock, id="inbox")
            with Vertical(id="right"):
                yield SlaPane(id="sla")
                yield ThreadView(self.clock, self.tz, id="thread")
                yield Composer(clock=self.clock, id="composer")
        yield StatusBar(id="status")
        yield KeyBar(id="keys")

    @property
    def inbox(self) -> InboxList:
        return self.query_one(InboxList)

    @property
    def composer(self) -> Composer:
        return self.query_one(Composer)

    @property
    def thread_view(self) -> ThreadView:
        return self.query_one(ThreadView)

    def on_mount(self) -> None:
        keymap = self.app.workspace.config.keymap
        self.thread_view.unfold_key = keymap.get("toggle_quoted", "z").split(",")[0]
        self.inbox.focus()
        self.watch(self.inbox, "total", lambda _: self._paint_header(), init=False)
        self._paint_header()
        self.paint_status()
        self.action_view(1)
        self._load_header()
        self._load_activity()

    def on_unmount(self) -> None:
        self._announce(None, None)

    # ---- what the app tells the screen ------------------------------------------------------------

    def tick(self) -> None:
        """Once a second (the app's timer): countdowns on visible rows, the SLA pane each minute,
        presence that ran out."""
        self.inbox.tick()
        if self.composer.is_open:  # the reply window's countdown
            self.composer.update_info()
        now = self.clock()
        if any(p.expires_at <= now for items in self._presence.values() for p in items):
            self._show_presence({c: [p for p in items if p.expires_at > now] for c, items in self._presence.items()})
        minute = int(self.clock() // 60)
        if minute != self._minute:
            self._minute = minute
            if self.inbox.cursor_id:
                self._load_thread(self.inbox.cursor_id, True)

    def set_engine_note(self, note: str) -> None:
        self.engine_note = note
        self.paint_status()

    def show_problem(self, problem: str | None) -> None:
        """A worker failure for the status bar (None: nothing is failing any more)."""
        self.problem = problem
        self.paint_status()

    def refresh_all(self) -> None:
        """Someone wrote (the engine, our writer, an SLA edit): reload what is on screen."""
        self.inbox.reload()
        self._load_header()
        self._load_activity()
        if self.inbox.cursor_id:
            self._load_thread(self.inbox.cursor_id, True)

    # ---- presence, notices ------------------------------------------------------------------------

    def _announce(self, conv_id: str | None, doing: str | None) -> None:
        """Say what this console shows (``replydesk.presence``): in a team, others see it."""
        if (conv_id, doing) != self._announced:
            self._announced = (conv_id, doing)
            self._announcements += 1
            self._write_presence(conv_id, doing, self._announcements)

    @background("sharing what this console shows", group="presence")
    def _write_presence(self, conv_id: str | None, doing: str | None, order: int) -> None:
        with presence.WRITING:
            if order == self._announcements:  # an older announcement that ran late is dropped
                presence.announce(self.store.workspace.data_dir, conv_id, doing)

    @background("reading who else is here", group="activity")
    def _load_activity(self) -> None:
        now = self.clock()

        def read(db: Database) -> ActivityLoaded:
            return ActivityLoaded(activity.others(db, now), activity.unshown_notices(db))

        self.post_message(self.store.read(read))

    @on(ActivityLoaded)
    def _on_activity(self, event: ActivityLoaded) -> None:
        self._show_presence(event.presence)
        if event.notices:
            for notice in event.notices:
                self.notify(notice.text, title="Team", severity="warning", timeout=12)
            ids = [n.id for n in event.notices]
            self._write("Notices", lambda db: activity.mark_shown(db, ids), len(ids), quiet=True)

    def _show_presence(self, others: dict[str, list[activity.Presence]]) -> None:
        self._presence = {c: items for c, items in others.items() if items}
        self.inbox.set_presence(self._presence)
        self.thread_view.set_presence(self._presence.get(self._thread_for or "", []))
        row = self.composer.row
        self.composer.set_presence(self._presence.get(row.id, []) if row is not None else [])

    # ---- header and status ------------------------------------------------------------------------

    @background("reading the counts", group="header", exclusive=True)
    def _load_header(self) -> None:
        def read(db: Database) -> HeaderLoaded:
            waiting = [i for i in outbox.pending(db, ("queued", "sending")) if i.is_reply]
            failed = outbox.pending(db, ("failed", "unknown"))  # replies and other actions alike
            return HeaderLoaded(queries.counts(db), queries.account_states(db), len(waiting), len(failed))

        self.post_message(self.store.read(read))

    @on(HeaderLoaded)
    def _on_header(self, event: HeaderLoaded) -> None:
        self._header = event
        self._paint_header()
        self.paint_status()

    def _paint_header(self) -> None:
        title = self.view_title if not self.searching else f"Search: {self.view_title}"
        counts = self._header.counts if self._header else None
        self.query_one(HeaderBar).show(title, self.inbox.total, counts)

    def paint_status(self) -> None:
        h = self._header
        self.query_one(StatusBar).show(h.accounts if h else [], h.queued if h else 0, h.failed if h else 0,
                                       self.engine_note, self.clock(), self.tz, problem=self.problem)

    # ---- selection and the thread -------------------------------------------------------------------

    @on(InboxList.CursorMoved)
    def _on_cursor(self, event: InboxList.CursorMoved) -> None:
        if self._thread_timer is not None:
            self._thread_timer.stop()
        if event.conv_id != self._thread_for:
            self.set_reading(False)  # another conversation selected ('!', a view, a search)
        if event.conv_id is None:
            self._thread_for = None
            self.thread_view.clear()
            self.query_one(SlaPane).show(None, None, self.clock())
            return
        conv_id = event.conv_id
        # A short debounce: holding j does not start a thread read per row.
        self._thread_timer = self.set_timer(0.05, lambda: self._load_thread(conv_id, False))

    @background("reading the thread", group="thread", exclusive=True)
    def _load_thread(self, conv_id: str, keep_scroll: bool) -> None:
        now = self.clock()

        def read(db: Database) -> ThreadLoaded:
            t = queries.thread(db, conv_id)
            sla = slastate.evaluate_at(db, conv_id, now) if t else None
            return ThreadLoaded(conv_id, t, sla, keep_scroll, activity.thread_mark(db, conv_id) if t else None)

        self.post_message(self.store.read(read))

    @on(ThreadLoaded)
    def _on_thread(self, event: ThreadLoaded) -> None:
        if event.conv_id != self.inbox.cursor_id:
            return
        keep = event.keep_scroll and self._thread_for == event.conv_id
        self._thread_for = event.conv_id
        if event.mark is not None:
            self._marks[event.conv_id] = event.mark
        self.thread_view.set_presence(self._presence.get(event.conv_id, []), repaint=False)
        self.thread_view.show(event.thread, keep_scroll=keep)
        if not self.composer.is_open:
            self._announce(event.conv_id, "viewing")
        row = event.thread.conversation if event.thread else None
        self.query_one(SlaPane).show(row, event.sla, self.clock())

    def set_reading(self, on: bool) -> None:
        """Reading mode (enter / escape): the thread is highlighted and j/k/g/G/page keys scroll it,
        while the focus stays on the list (see InboxList.reading_into for why)."""
        if self.reading == on:
            return
        self.reading = on
        self.thread_view.set_reading(on)
        self.inbox.read_into(self.thread_view if on else None)
        # The key bar follows a frame later: recomputing the active bindings is 1-2 ms of this key.
        self.after_frame(self.refresh_bindings)

    def after_frame(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``callback`` once the frame for this key is painted.

        Through the app, not the screen: the screen's own ``call_after_refresh`` runs as soon as
        the screen is idle, before its widgets have asked for their repaint, so in the same frame
        (measured: the read mark's write then started before the frame of ``enter``, +1-4 ms).
        """
        self.app.call_after_refresh(callback, *args, **kwargs)

    @on(InboxList.Opened)
    def _on_opened(self, event: InboxList.Opened) -> None:
        self.set_reading(True)
        row = self.inbox.current
        # Read receipts on the platform, where the account asks for them (its facts then list the
        # action): queued in the outbox with the local mark, never sent from here.
        on_platform = row is not None and row.id == event.conv_id and row.unread and \
            "mark_read" in self._facts(row).actions

        def mark(db: Database) -> None:
            actions.mark_read(db, event.conv_id)
            if on_platform:
                outbox.queue_action(db, event.conv_id, "mark_read", actor=self.agent)

        # After the frame: the write's worker thread would otherwise share the GIL with the repaint.
        self.after_frame(self._write, "Read", mark, 1, quiet=True)

    @staticmethod
    def _facts(row: queries.InboxRow) -> Any:
        from replydesk.platforms import BOOK

        return BOOK.for_account(row.account, row.platform)

    # ---- writes -------------------------------------------------------------------------------------

    def _write(self, label: str, fn: Callable[[Database], Any], count: int, *, quiet: bool = False,
               clear_marks: bool = False) -> None:
        self._run_write(label, fn, count, quiet, clear_marks)

    @background("saving a change", group="write")
    def _run_write(self, label: str, fn: Callable[[Database], Any], count: int, quiet: bool,
                   clear_marks: bool) -> None:
        try:
            self.store.write(fn)
        except EXPECTED as exc:
            self.post_message(ActionDone(label, count, str(exc)))
            return
        self.post_message(ActionDone(label, count, None, quiet=quiet, clear_marks=clear_marks))

    @on(ActionDone)
    def _on_action_done(self, event: ActionDone) -> None:
        if event.error:
            self.notify(f"{event.label} failed: {event.error}", severity="error")
            return
        if event.clear_marks:
            self.inbox.clear_marks()
        if not event.quiet:
            what = "1 conversation" if event.count == 1 else f"{event.count} conversations"
            self.notify(f"{event.label}: {what}", timeout=3)
        self.refresh_all()

    def _targets(self) -> list[str]:
        ids = self.inbox.targets()
        if not ids:
            self.notify("No conversation selected.", severity="warning")
        return ids

    def apply(self, name: str, params: dict[str, Any], label: str) -> None:
        """Run triage action ``name`` (``tui.triage``) on the marked conversations (or the selected
        one) and remember it for '.'."""
        ids = self._targets()
        if not ids:
            return
        self.last_action = (name, label, params)
        self._write(label, triage_write(name, ids, params, self.agent), len(ids), clear_marks=bool(self.inbox.marked))

    # ---- actions: conversation ----------------------------------------------------------------------

    def _selected_row(self) -> queries.InboxRow | None:
        row = self.inbox.current
        if row is None:
            self.notify("No conversation selected.", severity="warning")
        return row

    def _open_composer(self, mode: str, text: str = "", row: queries.InboxRow | None = None) -> None:
        row = row or self._selected_row()
        if row is None:
            return
        self.composer.open(row, mode, text)
        self.composer.set_presence(self._presence.get(row.id, []))
        if self._compose_mark is None or self._compose_mark[0] != row.id:
            self._compose_mark = (row.id, self._marks.get(row.id))
        self._announce(row.id, "noting" if mode == "note" else "replying")
        if mode != "note" and not text:
            self._load_draft(row.id)

    @background("reading the draft", group="draft")
    def _load_draft(self, conv_id: str) -> None:
        found = self.store.read(lambda db: queries.draft(db, conv_id))
        if found:
            self.post_message(DraftLoaded(conv_id, found[0], found[1]))

    @on(DraftLoaded)
    def _on_draft(self, event: DraftLoaded) -> None:
        if event.text:
            self.composer.load_draft(event.conv_id, event.text, event.private)

    def action_open(self) -> None:
        self.inbox.action_open()

    def action_mark(self) -> None:
        self.inbox.action_mark()

    def action_clear_marks(self) -> None:
        self.inbox.clear_marks()

    def action_reply(self) -> None:
        self._open_composer("public")

    def action_reply_private(self) -> None:
        row = self._selected_row()
        if row is None:
            return
        from replydesk.platforms import BOOK

        facts = BOOK.for_account(row.account, row.platform)
        if not facts.can_reply_privately(row.kind):
            self.notify(f"No private reply on {facts.label} {row.kind}s; opening a normal reply.")
        self._open_composer("private", row=row)

    def action_note(self) -> None:
        self._open_composer("note")

    def action_saved_reply(self, name: str) -> None:
        """Open the composer (if needed) and insert the named saved reply with fields filled."""
        template = self.ui.saved_replies.get(name)
        if template is None:
            self.notify(f"No saved reply named {name!r}.", severity="warning")
            return
        if not self.composer.is_open:
            self._open_composer("public")
        row = self.composer.row
        if row is not None and self.composer.is_open:
            self.composer.insert(fill_template(template, one_line(row.customer or row.handle)))

    @on(Composer.SavedReplyWanted)
    def _pick_saved_reply(self) -> None:
        items = [(name, text) for name, text in self.ui.saved_replies.items()]

        def chosen(name: str | None) -> None:
            if name:
                self.action_saved_reply(name)
            else:
                self.composer.text_area.focus()

        self.app.push_screen(ChoiceDialog("Insert saved reply", items, empty="no saved replies in config"), chosen)

    @on(Composer.Send)
    def _on_send(self, event: Composer.Send) -> None:
        if event.mode == "edit":
            self.composer.close()
            self.inbox.focus()
            self._queue_action("Edit queued", event.conv_id, "edit_reply",
                               {"message_id": event.editing, "text": event.text})
            return
        if event.later:
            def chosen(at: float | None) -> None:
                if at is None:  # cancelled: back to the composer, text intact
                    self.composer.text_area.focus()
                    return
                self.composer.close()
                self.inbox.focus()
                self._send(event.conv_id, event.text, event.mode, at)

            self.app.push_screen(SnoozeDialog(self.clock, self.tz, title="Send at"), chosen)
            return
        self.composer.close()
        self.inbox.focus()
        self._send(event.conv_id, event.text, event.mode)

    def _send(self, conv_id: str, text: str, mode: str, at: float | None = None, to_robot: bool = False,
              checked: bool = False, send_as: str | None = None) -> None:
        """Queue it, unless the thread moved on since the composer opened (asked first)."""
        mark = self._compose_mark[1] if self._compose_mark and self._compose_mark[0] == conv_id else None
        self._compose_mark = None
        self._announce(conv_id, "viewing")
        self._queue(conv_id, text, mode, at, to_robot, None if checked or mode == "note" else mark, send_as)

    @background("queueing the reply", group="write")
    def _queue(self, conv_id: str, text: str, mode: str, at: float | None, to_robot: bool, mark: int | None,
               send_as: str | None = None) -> None:
        agent, delay = self.agent, float(self.ui.undo_seconds)
        try:
            if mode == "note":
                self.store.write(lambda db: actions.add_note(db, conv_id, text, actor=agent))
                self.post_message(ActionDone("Note added", 1))
                return
            if mark is not None:
                def look(db: Database) -> tuple[list[str], int, queries.InboxRow | None]:
                    return (activity.changes_since(db, conv_id, mark, agent), activity.thread_mark(db, conv_id),
                            queries.get_row(db, conv_id))

                changes, now_mark, row = self.store.read(look)
                if changes:  # someone wrote while this reply was written: ask (see _ask_after_collision)
                    self.post_message(Collision(conv_id, text, mode, at, changes, row, now_mark))
                    return
            key = self.store.write(lambda db: outbox.queue_reply(
                db, conv_id, text, private=mode == "private", delay=delay, at=at, actor=agent,
                to_automatic=to_robot, send_as=send_as))
        except outbox.AutomaticRecipient as exc:  # ask first (see _ask_before_replying_to_robot)
            row = self.store.read(lambda db: queries.get_row(db, conv_id))
            self.post_message(ReplyToRobot(conv_id, text, mode, at, exc.reason, row))
            return
        except outbox.OutsideReplyWindow as exc:  # the window closed (or will, before it leaves)
            row = self.store.read(lambda db: queries.get_row(db, conv_id))
            self.post_message(ReplyOutsideWindow(conv_id, text, mode, at, exc.verdict, row))
            return
        except EXPECTED as exc:
            self.post_message(ActionDone("Send", 1, str(exc)))
            return
        if at is not None:
            self.post_message(ActionDone(f"Reply scheduled for {clock_time(at, self.clock(), self.tz)}", 1))
            return
        self.post_message(ReplyQueued(key, conv_id, text, mode == "private", delay))

    @on(Collision)
    def _ask_after_collision(self, event: Collision) -> None:
        """The thread changed since the composer opened (Help Scout's collision check): say what, ask."""
        changed = "; ".join(one_line(c) for c in event.changes)

        def chosen(answer: str | None) -> None:
            if answer == "send":
                self._send(event.conv_id, event.text, event.mode, event.at, checked=True)
            elif event.row is not None:  # back to the draft, text intact; the new messages are now seen
                self._open_composer(event.mode, event.text, row=event.row)
                self._compose_mark = (event.conv_id, event.mark)

        self.app.push_screen(ChoiceDialog(f"Since you started this reply: {changed}. Send it anyway?",
                                          [("send", "queue the reply anyway"), ("back", "back to the draft")]),
                             chosen)

    @on(ReplyToRobot)
    def _ask_before_replying_to_robot(self, event: ReplyToRobot) -> None:
        """Only automatic mail came in (a bounce, an out-of-office, a newsletter): confirm first."""
        def chosen(answer: str | None) -> None:
            if answer == "send":
                self._send(event.conv_id, event.text, event.mode, event.at, to_robot=True)
            elif event.row is not None:  # back to the draft, text intact
                self._open_composer(event.mode, event.text, row=event.row)

        self.app.push_screen(ChoiceDialog(f"Only automatic mail here ({one_line(event.reason)}). Reply anyway?",
                                          [("send", "queue the reply anyway"), ("back", "back to the draft")]), chosen)

    @on(Composer.WindowClosed)
    def _on_window_closed(self, event: Composer.WindowClosed) -> None:
        """Send outside the reply window: the composer stays open under the platform's choices."""
        self._offer_window_choices(event.conv_id, event.text, event.mode, None, event.verdict, None)

    @on(ReplyOutsideWindow)
    def _on_outside_window(self, event: ReplyOutsideWindow) -> None:
        self._offer_window_choices(event.conv_id, event.text, event.mode, event.at, event.verdict, event.row)

    def _offer_window_choices(self, conv_id: str, text: str, mode: str, at: float | None, verdict: Verdict,
                              row: queries.InboxRow | None) -> None:
        """Say why the reply cannot leave and offer what the platform still allows: the human-agent
        tag, a public answer instead, or back to the draft (nothing is queued until one is chosen)."""
        def chosen(answer: str | None) -> None:
            if answer == "public":
                if self.composer.is_open and self.composer.row is not None and self.composer.row.id == conv_id:
                    self.composer.mode = "public"
                    self.composer.update_info()
                    self.composer.text_area.focus()
                    self.notify("Now a public answer to the comment: ctrl+s sends it.", timeout=4)
                elif row is not None:
                    self._open_composer("public", text, row=row)
                return
            if answer and answer != "back":
                self.composer.close()
                self.inbox.focus()
                self._send(conv_id, text, mode, at, send_as=answer)
                return
            if self.composer.is_open:
                self.composer.text_area.focus()
            elif row is not None:  # back to the draft, text intact
                self._open_composer(mode, text, row=row)

        reason = verdict.reason[:1].upper() + verdict.reason[1:]
        self.app.push_screen(ChoiceDialog(f"Not sent: {one_line(reason)}.", dialog_items(verdict, self.clock())),
                             chosen)

    # ---- actions on our own replies (edit, delete) ----------------------------------------------------

    def _our_last_reply(self, what: str) -> tuple[queries.InboxRow, queries.MessageView] | None:
        """The selected conversation and our newest reply in it that reached the platform, from the
        thread on screen (no read needed), if the account can ``what`` it."""
        row = self._selected_row()
        if row is None:
            return None
        action = f"{what}_reply"
        if action not in self._facts(row).actions:
            self.notify(f"{row.account} cannot {what} replies on {self._facts(row).label}.", severity="warning")
            return None
        thread = self.thread_view.thread
        if thread is None or thread.conversation.id != row.id:
            self.notify("The thread is still loading; try again.", severity="warning")
            return None
        ours = [m for m in thread.messages if m.direction == "out" and m.state == "sent"]
        if not ours:
            self.notify("No reply of ours has reached the platform here.", severity="warning")
            return None
        return row, ours[-1]

    def action_edit_reply(self) -> None:
        found = self._our_last_reply("edit")
        if found is not None:
            row, message = found
            self.composer.open(row, "edit", message.text, editing=message.id)

    def action_delete_reply(self) -> None:
        found = self._our_last_reply("delete")
        if found is None:
            return
        row, message = found

        def chosen(answer: str | None) -> None:
            if answer == "delete":
                self._queue_action("Delete queued", row.id, "delete_reply", {"message_id": message.id})

        self.app.push_screen(ChoiceDialog(f"Delete our reply on {self._facts(row).label}: "
                                          f"{one_line(message.text)[:60]}?",
                                          [("delete", "delete it on the platform"), ("back", "keep it")]), chosen)

    def _queue_action(self, label: str, conv_id: str, kind: str, payload: dict[str, Any]) -> None:
        agent = self.agent
        self._write(label, lambda db: outbox.queue_action(db, conv_id, kind, payload, actor=agent), 1)

    def action_toggle_quoted(self) -> None:
        self.thread_view.toggle_folds()

    @on(ReplyQueued)
    def _on_queued(self, event: ReplyQueued) -> None:
        if event.undo_seconds > 0:
            self.undo = {"key": event.key, "conv_id": event.conv_id, "until": time.monotonic() + event.undo_seconds}
            self.notify(f"Reply queued — leaves in {event.undo_seconds:g}s. Press u (or ctrl+z) to undo.",
                        title="Queued", timeout=max(event.undo_seconds, 2))
        else:
            self.undo = None
            self.notify("Reply queued.", timeout=2)
        self.refresh_all()

    def action_undo_send(self) -> None:
        if self.undo is None or time.monotonic() > self.undo["until"]:
            self.undo = None
            self.notify("Nothing to undo: the reply has left (or there was none).", severity="warning")
            return
        undo, self.undo = self.undo, None
        self._cancel(undo["key"], undo["conv_id"])

    @background("taking the reply back", group="write")
    def _cancel(self, key: str, conv_id: str) -> None:
        def run(db: Database) -> tuple[outbox.OutboxItem, queries.InboxRow | None]:
            return outbox.cancel(db, key), queries.get_row(db, conv_id)

        try:
            item, row = self.store.write(run)
        except EXPECTED as exc:
            self.post_message(ReplyCancelled(key, conv_id, "", False, None, str(exc)))
            return
        self.post_message(ReplyCancelled(key, conv_id, item.text, item.private, row))

    @on(ReplyCancelled)
    def _on_cancelled(self, event: ReplyCancelled) -> None:
        if event.error:
            self.notify(f"Could not undo: {event.error}", severity="error")
            return
        self.notify("Reply taken back; it is in the composer again.", timeout=3)
        if event.row is not None:
            self._open_composer("private" if event.private else "public", event.text, row=event.row)
        self.refresh_all()

    @on(Composer.Closed)
    def _on_composer_closed(self, event: Composer.Closed) -> None:
        self.inbox.focus()
        self._compose_mark = None
        self._announce(event.conv_id, "viewing")
        if event.mode != "note":
            self._save_draft(event.conv_id, event.text, event.mode == "private")

    @on(Composer.DraftChanged)
    def _on_draft_changed(self, event: Composer.DraftChanged) -> None:
        self._save_draft(event.conv_id, event.text, event.private)

    def _save_draft(self, conv_id: str, text: str, private: bool) -> None:
        self._write("Draft", lambda db: actions.save_draft(db, conv_id, text, private), 1, quiet=True)

    # ---- actions: triage ----------------------------------------------------------------------------

    def action_tag(self) -> None:
        if ids := self._targets():
            self._load_tags("tag", ids)

    def action_untag(self) -> None:
        if ids := self._targets():
            self._load_tags("untag", ids)

    def action_assign(self) -> None:
        if ids := self._targets():
            self._load_tags("assign", ids)

    @background("reading the tags", group="tags")
    def _load_tags(self, purpose: str, ids: list[str]) -> None:
        def read(db: Database) -> list[str]:
            if purpose == "tag":
                return queries.all_tags(db)
            if purpose == "assign":
                return queries.assignees(db)
            tags: set[str] = set()
            for conv_id in ids:
                row = queries.get_row(db, conv_id)
                if row:
                    tags.update(row.tags)
            return sorted(tags)

        self.post_message(TagsLoaded(self.store.read(read), purpose))

    @on(TagsLoaded)
    def _on_tags(self, event: TagsLoaded) -> None:
        n = len(self.inbox.targets())
        scope = "" if n <= 1 else f" ({n} marked)"
        if event.purpose == "tag":
            def done(value: str | None) -> None:
                tags = [t for t in (value or "").split(",") if t.strip()]
                if tags:
                    self.apply("tag", {"tags": tags}, "Tagged " + ", ".join(one_line(t) for t in tags))

            self.app.push_screen(PromptDialog(f"Add tag{scope}", suggestions=event.tags,
                                              hint="→ completes · comma for several · enter adds"), done)
        elif event.purpose == "untag":
            def removed(value: str | None) -> None:
                if value:
                    self.apply("untag", {"tags": [value]}, f"Removed tag {one_line(value)}")

            self.app.push_screen(ChoiceDialog(f"Remove tag{scope}", [(t, "") for t in event.tags],
                                              empty="no tags on the selection"), removed)
        else:
            def assigned(value: str | None) -> None:
                if value is None:
                    return
                who = value.strip() or None
                label = f"Assigned to {one_line(who)}" if who else "Unassigned"
                self.apply("assign", {"who": who}, label)

            suggestions = list(dict.fromkeys([self.agent, *event.tags]))
            self.app.push_screen(PromptDialog(f"Assign{scope}", value=self.agent, suggestions=suggestions,
                                              hint="enter assigns · empty unassigns"), assigned)

    def action_escalate(self) -> None:
        if not self._targets():
            return

        config = self.app.workspace.config

        def done(value: dict[str, str] | None) -> None:
            if value:
                desk = config.ticket_account(value["target"])
                label = f"Escalated to {one_line(value['target'])}" + (f"; ticket queued for {desk}" if desk else "")
                self.apply("escalate", {**value, "ticket_account": desk}, label)

        self.app.push_screen(EscalateDialog(targets=list(config.escalation.targets)), done)

    def action_resolve(self) -> None:
        self.apply("resolve", {}, "Resolved")

    def action_reopen(self) -> None:
        self.apply("reopen", {}, "Reopened")

    def action_snooze(self) -> None:
        if not self._targets():
            return

        def done(until: float | None) -> None:
            if until is not None:
                self.apply("snooze", {"until": until}, f"Snoozed until {clock_time(until, self.clock(), self.tz)}")

        self.app.push_screen(SnoozeDialog(self.clock, self.tz), done)

    def action_repeat(self) -> None:
        if self.last_action is None:
            self.notify("Nothing to repeat yet.", severity="warning")
            return
        name, label, params = self.last_action
        self.apply(name, params, label)

    # ---- actions: navigation, views, search -----------------------------------------------------------

    def action_most_urgent(self) -> None:
        self._find_urgent(self.inbox.filter)

    @background("finding the most urgent", group="urgent", exclusive=True)
    def _find_urgent(self, f: InboxFilter) -> None:
        def read(db: Database) -> UrgentFound:
            first = queries.inbox_page(db, InboxFilter(needs_reply=True), 0, 1) or queries.inbox_page(
                db, InboxFilter(), 0, 1)
            if not first:
                return UrgentFound(None, None)
            return UrgentFound(queries.position_of(db, f, first[0].id), first[0].id)

        self.post_message(self.store.read(read))

    @on(UrgentFound)
    def _on_urgent(self, event: UrgentFound) -> None:
        if event.conv_id is None:
            self.notify("Nothing open. Inbox zero!")
            return
        self.inbox.focus()
        if event.index is not None:
            self.inbox.move_to(event.index)
        else:  # not in this view: go to the open inbox, on that conversation
            self.searching, self.view_title = False, "Inbox"
            self.inbox.cursor_id = event.conv_id
            self.inbox.set_filter(InboxFilter(), keep_cursor=True)
            self._paint_header()

    def action_view(self, number: int) -> None:
        views = self.ui.views
        if not 1 <= number <= len(views):
            self.notify(f"No view {number}: {len(views)} views are configured.", severity="warning")
            return
        view = views[number - 1]
        self.view_number = number
        self._resolve_query(view.name, view.query, False)

    def action_search(self) -> None:
        def done(query: str | None) -> None:
            if query is not None and query.strip():
                self._resolve_query(query.strip(), query, True)

        self.app.push_screen(PromptDialog("Search", hint=SEARCH_HELP, placeholder="refund tag:vip platform:x"), done)

    @background("searching", group="view", exclusive=True)
    def _resolve_query(self, title: str, query: str, is_search: bool) -> None:
        agent = self.agent
        try:
            hits, f = self.store.read(lambda db: search(db, query, limit=500))
        except EXPECTED as exc:
            self.post_message(ActionDone("Search", 0, str(exc)))
            return
        if f.assignee == "me":
            f = f.with_(assignee=agent)
        if not is_search and not query.strip():
            f = InboxFilter()
        if f.statuses is None and not is_search and "is:" not in query:
            f = f.with_(statuses=queries.OPEN_STATUSES)
        self.post_message(ViewApplied(title, f, len(hits) if is_search else None, is_search))

    @on(ViewApplied)
    def _on_view(self, event: ViewApplied) -> None:
        self.searching = event.is_search
        self.view_title = event.title
        self.inbox.set_filter(event.filter)
        self.inbox.focus()
        self._paint_header()
        if self.searching:
            self.notify(f"{event.hits} matching conversation(s)", timeout=2)

    def action_back(self) -> None:
        """escape: leave the thread, then drop marks, then leave a search."""
        if self.composer.is_open:
            self.composer.action_close()
        elif self.reading:
            self.set_reading(False)
        elif self.thread_view.has_focus:
            self.inbox.focus()
        elif self.inbox.marked:
            self.inbox.clear_marks()
        elif self.searching:
            self.action_view(self.view_number)

    def action_report(self) -> None:
        from replydesk.tui.report_screen import ReportScreen

        self.app.push_screen(ReportScreen())

    def action_help(self) -> None:
        context = "inbox"
        for node in self.focused.ancestors_with_self if self.focused else ():
            if type(node).__name__ in CONTEXT_NAMES:
                context = CONTEXT_NAMES[type(node).__name__]
                break
        rows = [(CONTEXT_NAMES.get(c, c), k, d, i) for c, k, d, i in
                binding_rows(self.active_bindings, format_key)]
        self.app.push_screen(HelpScreen(rows, context))
