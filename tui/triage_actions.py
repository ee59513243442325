"""Triage as the main screen does it: the dialogs, counts (``3x``), asking before a bulk action,
repeating (``.``) and undoing (``u``).

What an action applies to: the marked conversations, else the selected one, or with a count the
rows from the cursor down (``3x`` resolves this row and the next two). More than ``BULK_ASK``
conversations are confirmed first. Every action remembers the state before it, and ``u`` puts it
back (the last reply still queued, or the last triage action, whichever came last).

A mixin of ``MainScreen``: handlers use Textual's naming convention (``on_...``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from replydesk.safetext import one_line
from replydesk.storage import queries
from replydesk.storage.db import Database
from replydesk.storage.queries import InboxFilter
from replydesk.tui.dialogs import ChoiceDialog, EscalateDialog, PromptDialog, SnoozeDialog, TagSuggester
from replydesk.tui.format import clock_time
from replydesk.tui.messages import ActionDone, TagsLoaded
from replydesk.tui.triage import TriageResult, triage_write, undo_write
from replydesk.tui.undo import ReplyUndo, TriageUndo, UndoStack
from replydesk.tui.workers import background

if TYPE_CHECKING:
    from replydesk.tui.main_screen import MainScreen

    _Base = MainScreen
else:
    _Base = object

#: A bulk action on more conversations than this asks first.
BULK_ASK = 5
#: What "nothing changed" means for each action (``set_status`` skips what is already so).
UNCHANGED = {"resolve": "already resolved", "reopen": "already open", "snooze": "already snoozed until then",
             "assign": "already assigned so", "tag": "already tagged so", "untag": "no such tag there"}


@dataclass(frozen=True)
class Targets:
    """What an action applies to: ``ids``, or ``count`` rows of ``filter`` from ``start``."""

    ids: tuple[str, ...] = ()
    filter: InboxFilter | None = None
    start: int = 0
    count: int = 0

    @property
    def size(self) -> int:
        return self.count if self.filter is not None else len(self.ids)

    def resolve(self, db: Database) -> list[str]:
        if self.filter is None:
            return list(self.ids)
        return [r.id for r in queries.inbox_page(db, self.filter, self.start, self.count)]


class TriageMixin(_Base):
    def init_triage(self) -> None:
        self.last_action: tuple[str, str, dict[str, Any]] | None = None
        self.undo_stack = UndoStack()

    # ---- what an action applies to ------------------------------------------------------------------

    def _targets(self, count: int = 1) -> Targets | None:
        inbox = self.inbox
        if count > 1 and inbox.total:
            n = min(count, inbox.total - inbox.cursor_index)
            return Targets(filter=inbox.filter, start=inbox.cursor_index, count=n)
        ids = inbox.targets()
        if not ids:
            self.notify("No conversation selected.", severity="warning")
            return None
        return Targets(ids=tuple(ids))

    @staticmethod
    def _scope(targets: Targets) -> str:
        return "" if targets.size <= 1 else f" ({targets.size} conversations)"

    def apply(self, name: str, params: dict[str, Any], label: str, targets: Targets | None = None) -> None:
        """Run triage action ``name`` (``tui.triage``) on ``targets`` (by default the marked
        conversations or the selected one), asking first for more than ``BULK_ASK``; remember it
        for '.' and for 'u'."""
        targets = targets or self._targets()
        if targets is None:
            return
        if targets.size > BULK_ASK:
            def chosen(answer: str | None) -> None:
                if answer == "yes":
                    self._apply(name, params, label, targets)

            self.app.push_screen(ChoiceDialog(f"{label}: {targets.size} conversations?",
                                              [("yes", f"yes, all {targets.size} (u undoes it)"), ("no", "cancel")]),
                                 chosen)
            return
        self._apply(name, params, label, targets)

    def _apply(self, name: str, params: dict[str, Any], label: str, targets: Targets) -> None:
        self.last_action = (name, label, params)
        agent, bulk = self.agent, bool(self.inbox.marked) and targets.filter is None
        self._triage(label, name, lambda db: triage_write(name, targets.resolve(db), params, agent)(db),
                     targets.size, bulk)

    @background("saving a change", group="write")
    def _triage(self, label: str, name: str, fn: Callable[[Database], TriageResult], size: int,
                clear_marks: bool) -> None:
        from replydesk.tui.main_screen import EXPECTED

        try:
            result = self.store.write(fn)
        except EXPECTED as exc:
            self.post_message(ActionDone(label, size, str(exc)))
            return
        self.post_message(ActionDone(label, result.changed, None, clear_marks=clear_marks,
                                     undo=result.before if result.changed else None,
                                     unchanged=UNCHANGED.get(name, "nothing changed")))

    # ---- undo ---------------------------------------------------------------------------------------

    def push_undo(self, item: ReplyUndo | TriageUndo) -> None:
        self.undo_stack.push(item)

    def remember_triage(self, event: ActionDone) -> None:
        if not event.undoing and event.undo:
            self.push_undo(TriageUndo(event.label, event.undo, event.count))

    def action_undo(self) -> None:
        """u: take back the last thing done: a reply still queued, or a triage action. On a queued
        reply selected in the thread ([ ]), take back that one."""
        selected = self.thread_view.current_message() if self.thread_view.selected is not None else None
        if selected is not None and selected.direction == "out" and selected.state == "queued" \
                and selected.outbox_key and self.inbox.cursor_id:
            self.undo_reply(selected.outbox_key, self.inbox.cursor_id)
            return
        item = self.undo_stack.pop()
        if isinstance(item, ReplyUndo):
            self.undo_reply(item.key, item.conv_id)
        elif isinstance(item, TriageUndo):
            what = "1 conversation" if item.count == 1 else f"{item.count} conversations"
            agent, before = self.agent, item.before
            # A helpdesk ticket the escalation queued is an outbox action of its own: undo leaves
            # it to the outbox screen (O), where it can be discarded before it leaves.
            ticket = "; the ticket stays in the outbox (O discards it)" if "ticket queued" in item.label else ""
            self._undo_triage(f"Undone: {item.label} ({what}){ticket}", lambda db: undo_write(before, agent)(db))
        elif self.inbox.cursor_id:  # nothing done in this session: a reply still queued here
            self.undo_reply(None, self.inbox.cursor_id)
        else:
            self.notify("Nothing to undo.", severity="warning")

    @background("undoing", group="write")
    def _undo_triage(self, label: str, fn: Callable[[Database], TriageResult]) -> None:
        from replydesk.tui.main_screen import EXPECTED

        try:
            result = self.store.write(fn)
        except EXPECTED as exc:
            self.post_message(ActionDone("Undo", 0, str(exc)))
            return
        self.post_message(ActionDone(label, result.changed, None, undoing=True,
                                     unchanged="it was changed back already"))

    # ---- the actions --------------------------------------------------------------------------------

    def action_open(self) -> None:
        self.inbox.action_open()

    def action_mark(self) -> None:
        self.inbox.action_mark()

    def action_clear_marks(self) -> None:
        self.inbox.clear_marks()

    def action_tag(self, count: int = 1) -> None:
        if targets := self._targets(count):
            self._load_tags("tag", targets)

    def action_untag(self, count: int = 1) -> None:
        if targets := self._targets(count):
            self._load_tags("untag", targets)

    def action_assign(self, count: int = 1) -> None:
        if targets := self._targets(count):
            self._load_tags("assign", targets)

    @background("reading the tags", group="tags")
    def _load_tags(self, purpose: str, targets: Targets) -> None:
        def read(db: Database) -> list[str]:
            if purpose == "tag":
                return queries.all_tags(db)
            if purpose == "assign":
                return queries.assignees(db)
            tags: set[str] = set()
            for conv_id in targets.resolve(db):
                row = queries.get_row(db, conv_id)
                if row:
                    tags.update(row.tags)
            return sorted(tags)

        self.post_message(TagsLoaded(self.store.read(read), purpose, targets))

    def on_tags_loaded(self, event: TagsLoaded) -> None:
        targets: Targets = event.targets
        scope = self._scope(targets)
        if event.purpose == "tag":
            def done(value: str | None) -> None:
                tags = [t.strip() for t in (value or "").split(",") if t.strip()]
                if tags:
                    self.apply("tag", {"tags": tags}, "Tagged " + ", ".join(one_line(t) for t in tags), targets)

            self.app.push_screen(PromptDialog(f"Add tag{scope}", suggestions=event.tags,
                                              suggester=TagSuggester(event.tags),
                                              hint="→ completes · comma for several · enter adds"), done)
        elif event.purpose == "untag":
            def removed(value: str | None) -> None:
                if value:
                    self.apply("untag", {"tags": [value]}, f"Removed tag {one_line(value)}", targets)

            self.app.push_screen(ChoiceDialog(f"Remove tag{scope}", [(t, "") for t in event.tags],
                                              empty="no tags on the selection"), removed)
        else:
            def assigned(value: str | None) -> None:
                if value is None:
                    return
                who = value.strip() or None
                label = f"Assigned to {one_line(who)}" if who else "Unassigned"
                self.apply("assign", {"who": who}, label, targets)

            suggestions = list(dict.fromkeys([self.agent, *event.tags]))
            self.app.push_screen(PromptDialog(f"Assign{scope}", value=self.agent, suggestions=suggestions,
                                              hint="enter assigns · empty unassigns"), assigned)

    def action_escalate(self, count: int = 1) -> None:
        targets = self._targets(count)
        if targets is None:
            return

        config = self.app.workspace.config

        def done(value: dict[str, str] | None) -> None:
            if value:
                desk = config.ticket_account(value["target"])
                label = f"Escalated to {one_line(value['target'])}" + (f"; ticket queued for {desk}" if desk else "")
                self.apply("escalate", {**value, "ticket_account": desk}, label, targets)

        self.app.push_screen(EscalateDialog(targets=list(config.escalation.targets)), done)

    def action_resolve(self, count: int = 1) -> None:
        if targets := self._targets(count):
            self.apply("resolve", {}, "Resolved", targets)

    def action_reopen(self, count: int = 1) -> None:
        if targets := self._targets(count):
            self.apply("reopen", {}, "Reopened", targets)

    def action_snooze(self, count: int = 1) -> None:
        targets = self._targets(count)
        if targets is None:
            return

        def done(until: float | None) -> None:
            if until is not None:
                self.apply("snooze", {"until": until},
                           f"Snoozed until {clock_time(until, self.clock(), self.tz)}", targets)

        self.app.push_screen(SnoozeDialog(self.clock, self.tz), done)

    def action_repeat(self) -> None:
        if self.last_action is None:
            self.notify("Nothing to repeat yet.", severity="warning")
            return
        name, label, params = self.last_action
        self.apply(name, params, label)

    def run_counted(self, action: str, count: int) -> None:
        """An action typed with a count (``3x``): the main screen's actions take ``count``."""
        getattr(self, f"action_{action}")(count=count)
