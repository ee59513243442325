"""The replydesk console: wires the inbox, thread, SLA pane, composer and dialogs to the storage core.

Threading rule (DESIGN §5): the UI thread never runs SQL. Every read and write happens in a
thread worker through ``Store`` (its own connections) and comes back as a message from
``tui.messages``; handlers only touch widgets. A 1-second timer repaints countdowns and asks a
worker whether ``PRAGMA data_version`` moved (the engine or our writer committed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.css.query import NoMatches
from textual.keys import format_key
from textual.timer import Timer

from replydesk.config import ConfigError
from replydesk.safetext import one_line
from replydesk.storage import actions, outbox, queries, slastate
from replydesk.storage.actions import ActionError
from replydesk.storage.db import DATABASE_ERRORS, Database
from replydesk.storage.queries import InboxFilter
from replydesk.storage.search import search
from replydesk.tui.bars import HeaderBar, StatusBar
from replydesk.tui.commands import ReplydeskCommands
from replydesk.tui.composer import Composer
from replydesk.tui.dialogs import ChoiceDialog, EscalateDialog, PromptDialog, SnoozeDialog
from replydesk.tui.format import fill_template
from replydesk.tui.help import HelpScreen, binding_rows
from replydesk.tui.inbox import InboxList
from replydesk.tui.keybar import KeyBar
from replydesk.tui.messages import (
    ActionDone,
    ConfigReloaded,
    DataChanged,
    DraftLoaded,
    EngineStatus,
    HeaderLoaded,
    ReplyCancelled,
    ReplyQueued,
    TagsLoaded,
    ThreadLoaded,
    UrgentFound,
    ViewApplied,
)
from replydesk.tui.pacing import GcPacer, prefer_ui_thread
from replydesk.tui.sla_pane import SlaPane
from replydesk.tui.store import Store
from replydesk.tui.thread import ThreadView
from replydesk.workspace import EngineThread, Workspace

#: Errors an action can end with that the user should read rather than a traceback.
EXPECTED = (ActionError, *DATABASE_ERRORS, ValueError)
SEARCH_HELP = "words · from:NAME · tag:TAG · platform:x · kind:review · assignee:me · is:breached|open|resolved…"
CONTEXT_NAMES = {"InboxList": "inbox", "ThreadView": "thread", "Composer": "composer",
                 "ReplydeskApp": "everywhere", "Screen": "screen"}


def _workspace_tz(workspace: Workspace) -> str | None:
    try:
        spec = workspace.config.sla.calendar("business")
    except KeyError:
        return None
    return spec.timezone if spec else None


class ReplydeskApp(App[int]):
    """One window: header, inbox | (SLA pane, thread, composer), status bar, footer."""

    TITLE = "replydesk"
    COMMANDS = App.COMMANDS | {ReplydeskCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

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
        Binding("question_mark", "help", "Help", id="help"),
        Binding("ctrl+r", "report", "Report", id="report", show=False),
        Binding("q", "quit", "Quit", id="quit"),
        *[Binding(str(n), f"view({n})", f"View {n}", id=f"view_{n}", show=False) for n in range(1, 10)],
    ]

    CSS = """
    #body { height: 1fr; }
    Screen.-wide #body { layout: horizontal; }
    Screen.-narrow #body { layout: vertical; }
    Screen.-wide #inbox { width: 58%; height: 1fr; }
    Screen.-wide #right { border-left: vkey $primary 50%; }
    Screen.-narrow #inbox { height: 45%; border-bottom: hkey $primary 50%; }
    #right { height: 1fr; }
    #thread { height: 1fr; }
    Screen.-narrow SlaPane { max-height: 3; }
    """

    _own_actions = frozenset(
        b.action.split("(")[0] for b in BINDINGS if isinstance(b, Binding) and b.action != "quit"
    ) | {"quit"}

    def __init__(self, workspace: Workspace, *, start_engine: bool = True,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.workspace = workspace
        self.clock: Callable[[], float] = clock or workspace.clock or time.time
        self.start_engine = start_engine
        self.ui = workspace.config.ui
        self.agent = self.ui.agent
        self.tz = _workspace_tz(workspace)
        self.store = Store(workspace)
        self.engine: EngineThread | None = None
        self.engine_note = "sync off" if not start_engine else "starting sync…"
        self.view_number = 1
        self.view_title = self.ui.views[0].name if self.ui.views else "Inbox"
        self.searching = False
        self.reading = False
        self.last_action: tuple[str, str, dict[str, Any]] | None = None
        self.undo: dict[str, Any] | None = None
        self._header: HeaderLoaded | None = None
        self._thread_timer: Timer | None = None
        self._thread_for: str | None = None
        self._minute = 0
        self.gc_pacer = GcPacer()
        self._switch_interval = sys.getswitchinterval()
        self._config_ticks = 0

    # ---- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Container(id="body"):
            yield InboxList(self.store, self.clock, id="inbox")
            with Vertical(id="right"):
                yield SlaPane(id="sla")
                yield ThreadView(self.clock, self.tz, id="thread")
                yield Composer(id="composer")
        yield StatusBar(id="status")
        yield KeyBar(id="keys")

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications carry names, tags and error text that may come from customers: never markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def _main(self, kind: type[Any]) -> Any:
        """Widgets of the main screen, even while a dialog or the palette is on top."""
        if not self.screen_stack:  # shutting down: callers treat this like a missing widget
            raise NoMatches(f"no screen for {kind.__name__}")
        return self.screen_stack[0].query_one(kind)

    @property
    def inbox(self) -> InboxList:
        return self._main(InboxList)

    @property
    def composer(self) -> Composer:
        return self._main(Composer)

    @property
    def thread_view(self) -> ThreadView:
        return self._main(ThreadView)

    def on_mount(self) -> None:
        if self.workspace.config.keymap:
            self.set_keymap(self.workspace.config.keymap)
        self.inbox.focus()
        self.watch(self.inbox, "total", lambda _: self._paint_header(), init=False)
        self._paint_header()
        self._paint_status()
        if self.start_engine:
            self._start_engine()
        self.action_view(1)
        self._load_header()
        self._poll()
        self.set_interval(1.0, self._tick)
        self.set_timer(0.5, self.gc_pacer.started)  # start-up's objects: modules, styles, widgets
        self._switch_interval = prefer_ui_thread()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.gc_pacer.input()
        await super().on_event(event)

    async def on_unmount(self) -> None:
        self.gc_pacer.stopped()
        sys.setswitchinterval(self._switch_interval)
        if self.engine is not None:
            import asyncio

            await asyncio.to_thread(self.engine.stop)
        self.store.close()

    # ---- background: engine, polling, header --------------------------------------------------------

    @work(thread=True, group="engine")
    def _start_engine(self) -> None:
        self.store.open()
        if not self.workspace.config.accounts:
            self.post_message(EngineStatus(False, "offline review: no accounts configured"))
            return
        engine = EngineThread(self.workspace)
        if engine.start():
            self.engine = engine
            self.post_message(EngineStatus(True, ""))
        else:
            self.post_message(EngineStatus(False, "sync runs in another replydesk process"))

    @on(EngineStatus)
    def _on_engine(self, event: EngineStatus) -> None:
        self.engine_note = event.note
        self._paint_status()

    def _tick(self) -> None:
        """Once a second: countdowns on visible rows, a data_version probe, the SLA pane each minute."""
        try:
            inbox = self.inbox
        except NoMatches:  # the timer fired while the app shuts down
            return
        inbox.tick()
        self._poll()
        self.gc_pacer.tick()
        self._config_ticks += 1
        if self._config_ticks % 2 == 0:
            self._follow_config()
        if self.engine is not None and self.engine.error is not None and not self.engine_note:
            self.engine_note = f"sync stopped: {type(self.engine.error).__name__}"
            self._paint_status()
        minute = int(self.clock() // 60)
        if minute != self._minute:
            self._minute = minute
            if self.inbox.cursor_id:
                self._load_thread(self.inbox.cursor_id, True)

    @work(thread=True, exclusive=True, group="config")
    def _follow_config(self) -> None:
        """An edit of the config file: SLA policies apply at once (re-evaluated from the event log
        on this process's writer), the rest at the next start; a broken edit is reported."""
        try:
            change = self.workspace.check_config()
        except ConfigError as exc:
            self.post_message(ConfigReloaded(None, [], str(exc)))
            return
        if change is None:
            return
        n = self.store.write(slastate.apply_policy_changes) if change.sla_changed else None
        self.post_message(ConfigReloaded(n, change.on_restart, None))

    @on(ConfigReloaded)
    def _on_config(self, event: ConfigReloaded) -> None:
        if event.error:
            self.notify(f"Config edit not applied (the settings in force stay): {event.error}",
                        severity="error", timeout=10)
            return
        if event.reevaluated is not None:
            self.notify(f"SLA policies updated: {event.reevaluated} conversation(s) re-evaluated", timeout=5)
            self._refresh_all()
        if event.on_restart:
            self.notify(f"Config changed ({', '.join(event.on_restart)}): applies when replydesk restarts",
                        severity="warning", timeout=8)

    @work(thread=True, exclusive=True, group="poll")
    def _poll(self) -> None:
        version = self.store.changed()
        if version is not None:
            self.post_message(DataChanged(version))

    @on(DataChanged)
    def _on_data_changed(self, _: DataChanged) -> None:
        self._refresh_all()

    def _refresh_all(self) -> None:
        try:
            self.inbox.reload()
        except NoMatches:  # data arrived while the app shuts down
            return
        self._load_header()
        if self.inbox.cursor_id:
            self._load_thread(self.inbox.cursor_id, True)

    @work(thread=True, exclusive=True, group="header")
    def _load_header(self) -> None:
        def read(db: Database) -> HeaderLoaded:
            waiting = outbox.pending(db, ("queued", "sending"))
            failed = outbox.pending(db, ("failed", "unknown"))
            return HeaderLoaded(queries.counts(db), queries.account_states(db), len(waiting), len(failed))

        self.post_message(self.store.read(read))

    @on(HeaderLoaded)
    def _on_header(self, event: HeaderLoaded) -> None:
        self._header = event
        self._paint_header()
        self._paint_status()

    def _paint_header(self) -> None:
        title = self.view_title if not self.searching else f"Search: {self.view_title}"
        counts = self._header.counts if self._header else None
        self._main(HeaderBar).show(title, self.inbox.total, counts)

    def _paint_status(self) -> None:
        h = self._header
        self._main(StatusBar).show(h.accounts if h else [], h.queued if h else 0, h.failed if h else 0,
                                       self.engine_note, self.clock(), self.tz)

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
            self._main(SlaPane).show(None, None, self.clock())
            return
        conv_id = event.conv_id
        # A short debounce: holding j does not start a thread read per row.
        self._thread_timer = self.set_timer(0.05, lambda: self._load_thread(conv_id, False))

    @work(thread=True, exclusive=True, group="thread")
    def _load_thread(self, conv_id: str, keep_scroll: bool) -> None:
        now = self.clock()

        def read(db: Database) -> ThreadLoaded:
            t = queries.thread(db, conv_id)
            sla = slastate.evaluate_at(db, conv_id, now) if t else None
            return ThreadLoaded(conv_id, t, sla)

        msg = self.store.read(read)
        msg.keep_scroll = keep_scroll  # type: ignore[attr-defined]
        self.post_message(msg)

    @on(ThreadLoaded)
    def _on_thread(self, event: ThreadLoaded) -> None:
        try:
            if event.conv_id != self.inbox.cursor_id:
                return
        except NoMatches:  # a load finishing while the app shuts down
            return
        keep = getattr(event, "keep_scroll", False) and self._thread_for == event.conv_id
        self._thread_for = event.conv_id
        self.thread_view.show(event.thread, keep_scroll=keep)
        row = event.thread.conversation if event.thread else None
        self._main(SlaPane).show(row, event.sla, self.clock())

    def set_reading(self, on: bool) -> None:
        """Reading mode (enter / escape): the thread is highlighted and j/k/g/G/page keys scroll it,
        while the focus stays on the list (see InboxList._reader for why)."""
        if self.reading == on:
            return
        self.reading = on
        self.thread_view.set_reading(on)
        self.inbox.refresh_line(self.inbox.cursor_index)
        # The key bar follows a frame later: recomputing the active bindings is 1-2 ms of this key.
        self.call_after_refresh(self.refresh_bindings)

    @on(InboxList.Opened)
    def _on_opened(self, event: InboxList.Opened) -> None:
        self.set_reading(True)
        # After the frame: the write's worker thread would otherwise share the GIL with the repaint.
        self.call_after_refresh(self._write, "Read", lambda db: actions.mark_read(db, event.conv_id), 1,
                                quiet=True)

    # ---- writes -------------------------------------------------------------------------------------

    def _write(self, label: str, fn: Callable[[Database], Any], count: int, *, quiet: bool = False,
               clear_marks: bool = False) -> None:
        self._run_write(label, fn, count, quiet, clear_marks)

    @work(thread=True, group="write")
    def _run_write(self, label: str, fn: Callable[[Database], Any], count: int, quiet: bool,
                   clear_marks: bool) -> None:
        try:
            self.store.write(fn)
        except EXPECTED as exc:
            self.post_message(ActionDone(label, count, str(exc)))
            return
        done = ActionDone(label, count, None)
        done.quiet, done.clear_marks = quiet, clear_marks  # type: ignore[attr-defined]
        self.post_message(done)

    @on(ActionDone)
    def _on_action_done(self, event: ActionDone) -> None:
        if event.error:
            self.notify(f"{event.label} failed: {event.error}", severity="error")
            return
        if getattr(event, "clear_marks", False):
            self.inbox.clear_marks()
        if not getattr(event, "quiet", False):
            what = "1 conversation" if event.count == 1 else f"{event.count} conversations"
            self.notify(f"{event.label}: {what}", timeout=3)
        self._refresh_all()

    def _targets(self) -> list[str]:
        ids = self.inbox.targets()
        if not ids:
            self.notify("No conversation selected.", severity="warning")
        return ids

    def apply(self, name: str, params: dict[str, Any], label: str) -> None:
        """Run a bulk action on the marked conversations (or the selected one) and remember it for '.'."""
        ids = self._targets()
        if not ids:
            return
        self.last_action = (name, label, params)
        bulk = bool(self.inbox.marked)
        agent = self.agent

        def run(db: Database) -> None:
            if name == "tag":
                actions.tag(db, ids, params["tags"], actor=agent)
            elif name == "untag":
                actions.untag(db, ids, params["tags"], actor=agent)
            elif name == "assign":
                actions.assign(db, ids, params["who"], actor=agent)
            elif name == "escalate":
                actions.escalate(db, ids, target=params["target"], reason=params["reason"],
                                 note=params["note"], actor=agent)
            elif name == "resolve":
                actions.resolve(db, ids, actor=agent)
            elif name == "reopen":
                actions.reopen(db, ids, actor=agent)
            elif name == "snooze":
                actions.snooze(db, ids, params["until"], actor=agent)
            else:  # pragma: no cover - names come from this module
                raise ActionError(f"unknown action {name}")

        self._write(label, run, len(ids), clear_marks=bulk)

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
        if mode != "note" and not text:
            self._load_draft(row.id)

    @work(thread=True, group="draft")
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
        from replydesk.platforms import can_reply_privately, info

        if not can_reply_privately(row.platform, row.kind):
            self.notify(f"No private reply on {info(row.platform).label} {row.kind}s; opening a normal reply.")
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

        self.push_screen(ChoiceDialog("Insert saved reply", items, empty="no saved replies in config"), chosen)

    @on(Composer.Send)
    def _on_send(self, event: Composer.Send) -> None:
        if event.later:
            def chosen(at: float | None) -> None:
                if at is None:  # cancelled: back to the composer, text intact
                    self.composer.text_area.focus()
                    return
                self.composer.close()
                self.inbox.focus()
                self._send(event.conv_id, event.text, event.mode, at)

            self.push_screen(SnoozeDialog(self.clock, self.tz, title="Send at"), chosen)
            return
        self.composer.close()
        self.inbox.focus()
        self._send(event.conv_id, event.text, event.mode)

    @work(thread=True, group="write")
    def _send(self, conv_id: str, text: str, mode: str, at: float | None = None) -> None:
        agent, delay = self.agent, float(self.ui.undo_seconds)
        try:
            if mode == "note":
                self.store.write(lambda db: actions.add_note(db, conv_id, text, actor=agent))
                self.post_message(ActionDone("Note added", 1))
                return
            key = self.store.write(lambda db: outbox.queue_reply(
                db, conv_id, text, private=mode == "private", delay=delay, at=at, actor=agent))
        except EXPECTED as exc:
            self.post_message(ActionDone("Send", 1, str(exc)))
            return
        if at is not None:
            from replydesk.tui.format import clock_time

            self.post_message(ActionDone(f"Reply scheduled for {clock_time(at, self.clock(), self.tz)}", 1))
            return
        self.post_message(ReplyQueued(key, conv_id, text, mode == "private", delay))

    @on(ReplyQueued)
    def _on_queued(self, event: ReplyQueued) -> None:
        if event.undo_seconds > 0:
            self.undo = {"key": event.key, "conv_id": event.conv_id, "until": time.monotonic() + event.undo_seconds}
            self.notify(f"Reply queued — leaves in {event.undo_seconds:g}s. Press u (or ctrl+z) to undo.",
                        title="Queued", timeout=max(event.undo_seconds, 2))
        else:
            self.undo = None
            self.notify("Reply queued.", timeout=2)
        self._refresh_all()

    def action_undo_send(self) -> None:
        if self.undo is None or time.monotonic() > self.undo["until"]:
            self.undo = None
            self.notify("Nothing to undo: the reply has left (or there was none).", severity="warning")
            return
        undo, self.undo = self.undo, None
        self._cancel(undo["key"], undo["conv_id"])

    @work(thread=True, group="write")
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
        self._refresh_all()

    @on(Composer.Closed)
    def _on_composer_closed(self, event: Composer.Closed) -> None:
        self.inbox.focus()
        if event.mode != "note":
            self._save_draft(event.conv_id, event.text, event.mode == "private")

    @on(Composer.DraftChanged)
    def _on_draft_changed(self, event: Composer.DraftChanged) -> None:
        self._save_draft(event.conv_id, event.text, event.private)

    def _save_draft(self, conv_id: str, text: str, private: bool) -> None:
        self._write("Draft", lambda db: actions.save_draft(db, conv_id, text, private), 1, quiet=True)

    def action_tag(self) -> None:
        if self._targets():
            self._load_tags("tag")

    def action_untag(self) -> None:
        if self._targets():
            self._load_tags("untag")

    def action_assign(self) -> None:
        if self._targets():
            self._load_tags("assign")

    @work(thread=True, group="tags")
    def _load_tags(self, purpose: str) -> None:
        ids = self.inbox.targets()

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

            self.push_screen(PromptDialog(f"Add tag{scope}", suggestions=event.tags,
                                          hint="→ completes · comma for several · enter adds"), done)
        elif event.purpose == "untag":
            def removed(value: str | None) -> None:
                if value:
                    self.apply("untag", {"tags": [value]}, f"Removed tag {one_line(value)}")

            self.push_screen(ChoiceDialog(f"Remove tag{scope}", [(t, "") for t in event.tags],
                                          empty="no tags on the selection"), removed)
        else:
            def assigned(value: str | None) -> None:
                if value is None:
                    return
                who = value.strip() or None
                label = f"Assigned to {one_line(who)}" if who else "Unassigned"
                self.apply("assign", {"who": who}, label)

            suggestions = list(dict.fromkeys([self.agent, *event.tags]))
            self.push_screen(PromptDialog(f"Assign{scope}", value=self.agent, suggestions=suggestions,
                                          hint="enter assigns · empty unassigns"), assigned)

    def action_escalate(self) -> None:
        if not self._targets():
            return

        def done(value: dict[str, str] | None) -> None:
            if value:
                self.apply("escalate", value, f"Escalated to {one_line(value['target'])}")

        self.push_screen(EscalateDialog(), done)

    def action_resolve(self) -> None:
        self.apply("resolve", {}, "Resolved")

    def action_reopen(self) -> None:
        self.apply("reopen", {}, "Reopened")

    def action_snooze(self) -> None:
        if not self._targets():
            return

        def done(until: float | None) -> None:
            if until is not None:
                from replydesk.tui.format import clock_time

                self.apply("snooze", {"until": until}, f"Snoozed until {clock_time(until, self.clock(), self.tz)}")

        self.push_screen(SnoozeDialog(self.clock, self.tz), done)

    def action_repeat(self) -> None:
        if self.last_action is None:
            self.notify("Nothing to repeat yet.", severity="warning")
            return
        name, label, params = self.last_action
        self.apply(name, params, label)

    # ---- actions: navigation, views, search -----------------------------------------------------------

    def action_most_urgent(self) -> None:
        self._find_urgent(self.inbox.filter)

    @work(thread=True, exclusive=True, group="urgent")
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

        self.push_screen(PromptDialog("Search", hint=SEARCH_HELP, placeholder="refund tag:vip platform:x"), done)

    @work(thread=True, exclusive=True, group="view")
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
        msg = ViewApplied(title, f, len(hits) if is_search else None)
        msg.is_search = is_search  # type: ignore[attr-defined]
        self.post_message(msg)

    @on(ViewApplied)
    def _on_view(self, event: ViewApplied) -> None:
        self.searching = getattr(event, "is_search", False)
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

        self.push_screen(ReportScreen())

    def action_help(self) -> None:
        context = "inbox"
        for node in self.focused.ancestors_with_self if self.focused else ():
            if type(node).__name__ in CONTEXT_NAMES:
                context = CONTEXT_NAMES[type(node).__name__]
                break
        rows = [(CONTEXT_NAMES.get(c, c), k, d, i) for c, k, d, i in
                binding_rows(self.screen.active_bindings, format_key)]
        self.push_screen(HelpScreen(rows, context))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a dialog or the palette is up, the app's single-letter keys must not fire.
        if action in self._own_actions:
            return self.screen is self.screen_stack[0]
        return True


def run_tui(workspace: Workspace, *, start_engine: bool = True) -> int:
    """Open the console on ``workspace`` (the CLI's ``replydesk`` and ``replydesk demo``)."""
    app = ReplydeskApp(workspace, start_engine=start_engine)
    app.run()
    return app.return_code or 0
