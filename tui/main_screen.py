"""The main screen: the inbox, the selected thread with its SLA pane and composer, and every inbox action.

The app (``tui.app``) owns what outlives a screen (the engine, the store, timers, pacing, following
the config); this screen owns the user's work on the inbox. The actions live in three mixins by
subject: replying (``tui.replying``: composer, sending, undoing a reply, quitting with replies
waiting), triage (``tui.triage_actions``: tag, assign, resolve… with counts, confirmation and undo)
and message tools (``tui.message_tools``: copy, links, attachments, the customer card, the outbox).
Threading rule (DESIGN §5): no SQL on the UI thread. Every read and write runs in a ``background``
worker through the ``Store`` and comes back as a message from ``tui.messages``; only the handlers
touch widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import messages, on
from textual.app import ComposeResult
from textual.containers import Container, Vertical
from textual.keys import format_key
from textual.screen import Screen
from textual.widget import Widget

from replydesk import presence
from replydesk.config import UiSettings
from replydesk.keys import BY_ID
from replydesk.storage import actions, activity, outbox, queries
from replydesk.storage.actions import ActionError
from replydesk.storage.db import DATABASE_ERRORS, Database
from replydesk.storage.queries import InboxFilter
from replydesk.storage.search import problems, search
from replydesk.tui.bars import HeaderBar, StatusBar
from replydesk.tui.commands import ReplydeskCommands
from replydesk.tui.composer import Composer
from replydesk.tui.dialogs import PromptDialog
from replydesk.tui.help import HelpScreen, binding_rows
from replydesk.tui.inbox import InboxList
from replydesk.tui.keybar import KeyBar
from replydesk.tui.keymap import bindings
from replydesk.tui.message_tools import MessageToolsMixin
from replydesk.tui.messages import (
    ActionDone,
    ActivityLoaded,
    HeaderLoaded,
    ThreadLoaded,
    UrgentFound,
    ViewApplied,
)
from replydesk.tui.replying import ReplyingMixin
from replydesk.tui.sla_pane import SlaPane
from replydesk.tui.store import Store
from replydesk.tui.thread import ThreadView
from replydesk.tui.triage_actions import TriageMixin
from replydesk.tui.workers import background

#: Errors an action can end with that the user should read rather than a traceback.
EXPECTED = (ActionError, *DATABASE_ERRORS, ValueError)
SEARCH_HELP = ("words (refun* for a prefix) · from:NAME · tag:TAG · platform:x · kind:review · assignee:me · "
               "is:breached|open|resolved|listening…")
CONTEXT_NAMES = {"InboxList": "inbox", "ThreadView": "thread", "Composer": "composer",
                 "MainScreen": "main", "ReplydeskApp": "main", "Screen": "main"}
#: The view that shows any conversation (opened from the customer card, the outbox, a history line).
EVERYTHING = InboxFilter(statuses=None)


class MainScreen(ReplyingMixin, TriageMixin, MessageToolsMixin, Screen[None]):
    """Header, inbox | (SLA pane, thread, composer), status bar, key bar."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    COMMANDS = {ReplydeskCommands}

    # On the screen, not the app: a dialog or the palette on top has its own bindings, so these
    # single-letter keys cannot fire there. The keys come from the one table in replydesk.keys.
    BINDINGS = bindings("main")

    DEFAULT_CSS = """
    MainScreen #body { height: 1fr; }
    MainScreen.-wide #body { layout: horizontal; }
    MainScreen.-narrow #body { layout: vertical; }
    MainScreen.-wide #inbox { width: 58%; height: 1fr; }
    MainScreen.-wide #right { border-left: vkey $primary 50%; }
    MainScreen.-narrow #inbox { height: 45%; border-bottom: hkey $primary 50%; }
    MainScreen.-narrow.-composing #inbox { height: 25%; }
    MainScreen #right { height: 1fr; }
    MainScreen #thread { height: 1fr; }
    MainScreen.-narrow SlaPane { min-height: 3; max-height: 3; }
    """

    def __init__(self, store: Store, ui: UiSettings, clock: Callable[[], float], tz: str | None, *,
                 engine_note: str = "", has_accounts: bool = True) -> None:
        super().__init__()
        self.store = store
        self.ui = ui
        self.agent = ui.agent
        self.clock = clock
        self.tz = tz
        self.engine_note = engine_note
        self.has_accounts = has_accounts
        self.problem: str | None = None
        self.view_number = 1
        self.view_title = ui.views[0].name if ui.views else "Inbox"
        self.searching = False
        self.reading = False
        self._header: HeaderLoaded | None = None
        self._thread_for: str | None = None
        self._minute = int(clock() // 60)  # the thread read at start is this minute's
        self._side_reads_started = False  # the counts and presence, read once the first thread is shown
        #: Where each shown thread's messages stood, and where the open composer's stood when it
        #: opened: a reply asks first when the thread moved on since (the collision check).
        self._marks: dict[str, int] = {}
        self._compose_mark: tuple[str, int | None] | None = None
        self._presence: dict[str, list[activity.Presence]] = {}
        self._announced: tuple[str | None, str | None] = (None, None)
        self._announcements = 0
        self._view_seq = 0  # which view request the list should show (see restore_view_state)
        self.init_replying()
        self.init_triage()

    # ---- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Container(id="body"):
            yield InboxList(self.store, self.clock, id="inbox")
            with Vertical(id="right"):
                yield SlaPane(id="sla")
                yield ThreadView(self.clock, self.tz, store=self.store, id="thread")
                yield Composer(self.clock, self.tz, id="composer")
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
        self.inbox.empty_hint = self._empty_hint
        self.inbox.cursor_listener = self._cursor_moved
        self.inbox.count_timeout = float(self.ui.count_timeout)
        self.inbox.focus()
        self.watch(self.inbox, "total", lambda _: self._paint_header(), init=False)
        self._paint_header()
        self.paint_status()
        self.action_view(1)
        # The counts, who else is here and the alerts' deadlines are read once the first thread is
        # shown: the UI's one reader connection serves reads in turn, and at 10M messages the first
        # rows waited 60-80 ms behind them, then the first j behind them (the timer: an empty inbox).
        self.set_timer(1.0, self._after_first_thread)

    def on_unmount(self) -> None:
        self._announce(None, None)

    def _after_first_thread(self) -> None:
        if self._side_reads_started:
            return
        self._side_reads_started = True
        self._load_header()
        self._load_activity()
        self.app.first_rows_shown()

    def _empty_hint(self) -> str:
        """What an empty list says: how to start on a workspace with no accounts, else why it is empty."""
        if not self.has_accounts and (self._header is None or not self._header.counts.open) and not self.searching:
            return ("no accounts yet: copy config.example.yaml to your config file and add one (see "
                    "docs/providers.md), then run `replydesk login NAME`; or try `replydesk demo`")
        if self.searching:
            return "nothing matches this search · escape goes back"
        return "nothing here: no conversations match this view"

    # ---- what the app tells the screen ------------------------------------------------------------

    def tick(self) -> None:
        """Once a second (the app's timer): countdowns on visible rows and in the thread, the SLA
        pane each minute, presence that ran out."""
        self.inbox.tick()
        self.thread_view.tick()
        if self.composer.is_open:  # the reply window's countdown
            self.composer.update_info()
        now = self.clock()
        if any(p.expires_at <= now for items in self._presence.values() for p in items):
            self._show_presence({c: [p for p in items if p.expires_at > now] for c, items in self._presence.items()})
        minute = int(self.clock() // 60)
        if minute != self._minute:
            self._minute = minute
            if self.inbox.cursor_id:
                self._reread_thread(self.inbox.cursor_id)

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
            self._reread_thread(self.inbox.cursor_id)

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
        note = self.engine_note
        inboxes = self.query(InboxList)  # none yet while the screen composes
        if inboxes and inboxes.first().count_prefix:
            note = f"count {inboxes.first().count_prefix}… (then j k space x t …)"
        self.query_one(StatusBar).show(h.accounts if h else [], h.queued if h else 0, h.failed if h else 0,
                                       note, self.clock(), self.tz, problem=self.problem)

    # ---- selection and the thread -------------------------------------------------------------------

    @on(InboxList.CursorMoved)
    def _on_cursor(self, event: InboxList.CursorMoved) -> None:
        self._cursor_moved(event.conv_id)

    def _cursor_moved(self, conv_id: str | None) -> None:
        """The list's cursor is on another conversation (called by the list in the key's own
        handler, so what is read ahead shows in the same frame as the highlight)."""
        if conv_id != self._thread_for:
            self.set_reading(False)  # another conversation selected ('!', a view, a search)
        if conv_id is None:
            self._thread_for = None
            self.thread_view.clear()
            self.query_one(SlaPane).show(None, None, self.clock())
            return
        # Shown in this frame when it was read ahead; the thread view reads what is missing (the
        # selected conversation first) without waiting for the keys to stop.
        hit = self.thread_view.follow(conv_id, *self.inbox.ids_around(ThreadView.AHEAD, ThreadView.BEHIND))
        if hit is not None:
            self._show_thread(hit.conv_id, hit.thread, hit.sla, hit.mark, keep_scroll=False)
        self._paint_together(self.inbox)

    def _reread_thread(self, conv_id: str) -> None:
        """Data or the minute changed: read the selected conversation again (the reader's scroll
        stays), through the thread view's reading, which keeps the reads in order."""
        self.store.threads.drop(conv_id)
        self.thread_view.follow(conv_id, *self.inbox.ids_around(ThreadView.AHEAD, ThreadView.BEHIND))

    @on(ThreadLoaded)
    def _on_thread(self, event: ThreadLoaded) -> None:
        if event.conv_id == self.inbox.cursor_id:
            self._show_thread(event.conv_id, event.thread, event.sla, event.mark, keep_scroll=event.keep_scroll)

    def _show_thread(self, conv_id: str, thread: Any, sla: Any, mark: int | None, *, keep_scroll: bool) -> None:
        """Show a read (just arrived, or read ahead): its mark is where the messages shown stood."""
        if not self._side_reads_started:
            self.after_frame(self._after_first_thread)
        keep = keep_scroll and self._thread_for == conv_id
        self._thread_for = conv_id
        if mark is not None:
            self._marks[conv_id] = mark
        self.thread_view.set_presence(self._presence.get(conv_id, []), repaint=False)
        self.thread_view.show(thread, keep_scroll=keep)
        if not self.composer.is_open:
            # After the frame: the presence file's worker thread would share the GIL with the repaint.
            self.after_frame(self._announce, conv_id, "viewing")
        row = thread.conversation if thread else None
        sla_pane = self.query_one(SlaPane)
        sla_pane.show(row, sla, self.clock(), thread.tickets if thread else ())
        self._paint_together(self.thread_view, sla_pane)
        composer = self.composer
        if composer.is_open and composer.row is not None and composer.row.id == conv_id:
            # The composer opened before the thread was read ('j' then 'r' at once): now it knows.
            answered = self.answered_message()
            if answered is not None and answered != composer.answering:
                composer.set_answering(answered)

    @on(ThreadView.NewMessages)
    def _on_new_messages(self, event: ThreadView.NewMessages) -> None:
        """A customer wrote in the conversation on screen: say so (the reply may need rethinking)."""
        who = event.author or "the customer"
        more = f"{event.count} new messages" if event.count > 1 else "a new message"
        note = " — above your draft" if self.composer.is_open else ""
        self.notify(f"{who} sent {more} in this conversation{note}.", title="New message", timeout=6)
        if self.composer.is_open:
            self.composer.set_answering(self.answered_message())

    @on(ThreadView.OpenConversation)
    def _on_history_click(self, event: ThreadView.OpenConversation) -> None:
        self.open_conversation(event.conv_id)

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

    def _paint_together(self, *widgets: Widget) -> None:
        """Have ``widgets``' repaints in the screen's next frame. Each widget tells the screen itself
        once its own queue is idle, and the screen paints as soon as its queue is: on a key the SLA
        pane's word often came after the frame of the highlight and the thread, a frame (8-15 ms)
        later. A widget's own later word then finds nothing left to paint (no output)."""
        for widget in widgets:
            if widget.is_mounted and widget.display:
                self.post_message(messages.Update(widget))

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

    def open_conversation(self, conv_id: str) -> None:
        """Show ``conv_id``: in the current view if it is there, else in a view of everything."""
        self._find_conversation(conv_id, self.inbox.filter)

    @background("finding the conversation", group="urgent", exclusive=True)
    def _find_conversation(self, conv_id: str, f: InboxFilter) -> None:
        self.post_message(UrgentFound(self.store.read(lambda db: queries.position_of(db, f, conv_id)), conv_id,
                                      everything=True))

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
        if event.undo is not None:
            self.remember_triage(event)
        if not event.quiet:
            if event.count == 0 and event.unchanged:
                self.notify(f"Nothing to do: {event.unchanged}", severity="warning", timeout=3)
            else:
                what = "1 conversation" if event.count == 1 else f"{event.count} conversations"
                self.notify(f"{event.label}: {what}", timeout=3)
        self.refresh_all()

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
            return
        # Not in this view: the open inbox ('!'), or everything (a conversation asked for by id).
        self.searching = False
        self.view_title = "All conversations" if event.everything else "Inbox"
        self.inbox.cursor_id = event.conv_id
        self.inbox.set_filter(EVERYTHING if event.everything else InboxFilter(), keep_cursor=True)
        self._paint_header()

    def view_state(self) -> tuple[Any, ...]:
        """The view as it is (title, search, the list's rows and cursor), for a count to return to."""
        return (self.view_number, self.view_title, self.searching, self._view_seq, self.inbox.save_state())

    def restore_view_state(self, state: tuple[Any, ...]) -> None:
        number, title, searching, seq, inbox = state
        if seq == self._view_seq:
            return  # the digit switched nothing (no such view)
        self._view_seq += 1  # a view read still running for the digit is dropped when it lands
        self.view_number, self.view_title, self.searching = number, title, searching
        self.inbox.restore_state(inbox)
        self._paint_header()

    def action_view(self, number: int) -> None:
        views = self.ui.views
        if not 1 <= number <= len(views):
            self.notify(f"No view {number}: {len(views)} views are configured (a number before a key "
                        f"is a count: {number}j).", severity="warning")
            return
        view = views[number - 1]
        self.view_number = number
        self._view_seq += 1
        self._resolve_query(view.name, view.query, False, self._view_seq)

    def action_search(self) -> None:
        def done(query: str | None) -> None:
            if query is not None and query.strip():
                self._view_seq += 1
                self._resolve_query(query.strip(), query, True, self._view_seq)

        self.app.push_screen(PromptDialog("Search", hint=SEARCH_HELP, placeholder="refun* tag:vip platform:x"), done)

    @background("searching", group="view", exclusive=True)
    def _resolve_query(self, title: str, query: str, is_search: bool, seq: int = 0) -> None:
        agent = self.agent

        def read(db: Database) -> ViewApplied:
            _, f = search(db, query, limit=500)
            if f.assignee == "me":
                f = f.with_(assignee=agent)
            if not is_search and not query.strip():
                f = InboxFilter()
            if f.statuses is None and not is_search:
                # A saved view shows open conversations unless it names a status (is:resolved):
                # "Breached" then counts what the header counts.
                f = f.with_(statuses=queries.OPEN_STATUSES)
            # The count the list will show: the same filter, so the toast cannot contradict it.
            return ViewApplied(title, f, queries.inbox_count(db, f) if is_search else None, is_search,
                               problems(query), seq)

        try:
            applied = self.store.read(read)
        except EXPECTED as exc:
            self.post_message(ActionDone("Search", 0, str(exc)))
            return
        self.post_message(applied)

    @on(ViewApplied)
    def _on_view(self, event: ViewApplied) -> None:
        if event.seq != self._view_seq:
            return  # another view was asked for since (or a count took this one back)
        self.searching = event.is_search
        self.view_title = event.title
        self.inbox.set_filter(event.filter)
        self.inbox.focus()
        self._paint_header()
        for problem in event.problems:
            self.notify(problem, severity="warning", timeout=6)
        if self.searching:
            n = event.hits or 0
            self.notify(f"{n} matching conversation{'' if n == 1 else 's'} (most urgent first)", timeout=3)

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
        elif self.searching or self.view_title == "All conversations":
            self.action_view(self.view_number)

    def action_report(self) -> None:
        from replydesk.tui.report_screen import ReportScreen

        self.app.push_screen(ReportScreen())

    def action_rules(self) -> None:
        from replydesk.tui.rules_screen import RulesScreen

        self.app.push_screen(RulesScreen())

    def action_help(self) -> None:
        context = "inbox"
        for node in self.focused.ancestors_with_self if self.focused else ():
            if type(node).__name__ in CONTEXT_NAMES:
                context = CONTEXT_NAMES[type(node).__name__]
                break
        rows = [(CONTEXT_NAMES.get(c, c), k, d, i) for c, k, d, i in
                binding_rows(self.active_bindings, format_key) if i in BY_ID]
        self.app.push_screen(HelpScreen(rows, context))
