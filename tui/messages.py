"""One message class per event that a thread worker reports back to the UI (harlequin's pattern).

Workers never touch widgets: they call storage functions on the ``Store``'s connections and
``post_message`` one of these; only the handlers (on the event loop) update the screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from replydesk.model import MessageTemplate
from replydesk.sla import SlaResult
from replydesk.storage.activity import Notice, Presence
from replydesk.storage.queries import Counts, InboxFilter, InboxRow, Thread
from replydesk.windows import Verdict


@dataclass
class DataChanged(Message):
    """Another connection (the engine, our writer) committed: reload what is on screen."""

    version: int


@dataclass
class InboxReloaded(Message):
    """A fresh count, the cursor's new index and the page around it, for one filter generation."""

    generation: int
    total: int
    cursor_index: int | None
    page: int
    rows: list[InboxRow]
    cursor_id: str | None = None  # the conversation the reload was asked to find
    asked_index: int = 0  # where the cursor was when the reload was asked for


@dataclass
class PageLoaded(Message):
    """Rows for one page of the inbox list (requested when a line without data was painted)."""

    generation: int
    page: int
    rows: list[InboxRow]


@dataclass
class UrgentFound(Message):
    """Index of a conversation in the current list (the ``!`` key, or one asked for by id)."""

    index: int | None
    conv_id: str | None
    everything: bool = False  # not in this view: show it among every conversation, not the open ones


@dataclass
class HeaderLoaded(Message):
    """Counts for the header, account states and queued replies for the status bar."""

    counts: Counts
    accounts: list[dict[str, Any]]
    queued: int
    failed: int


@dataclass
class ThreadLoaded(Message):
    """The selected conversation's messages, history and SLA evaluation."""

    conv_id: str
    thread: Thread | None
    sla: SlaResult | None
    keep_scroll: bool = False  # a refresh of the same conversation: the reader's scroll stays
    mark: int | None = None  # where its messages stood (``activity.thread_mark``), for the collision check


@dataclass
class DraftLoaded(Message):
    """A saved draft for the composer (None: start empty)."""

    conv_id: str
    text: str | None
    private: bool


@dataclass
class ViewApplied(Message):
    """A saved view or search resolved to an inbox filter (search syntax → ``InboxFilter``)."""

    title: str
    filter: InboxFilter
    hits: int | None  # for a search: how many conversations the list shows
    is_search: bool = False  # a search (escape goes back to the view) rather than a saved view
    problems: list[str] = field(default_factory=list)  # mistyped filters (``search.problems``)
    seq: int = 0  # the view request it answers (a later one wins)


@dataclass
class ActionDone(Message):
    """A user action finished (``error`` set when it could not apply)."""

    label: str
    count: int
    error: str | None = None
    quiet: bool = False  # no notification (drafts, marking read)
    clear_marks: bool = False  # a bulk action on the marked conversations: the marks go
    undo: list[Any] | None = None  # triage: the state before (``actions.TriageState``), for u
    unchanged: str | None = None  # what to say when nothing changed ("already open")
    undoing: bool = False  # this was an undo (not itself pushed on the undo stack)


@dataclass
class ReplyToRobot(Message):
    """A reply was held back: the conversation holds only automatic mail; the user decides."""

    conv_id: str
    text: str
    mode: str
    at: float | None
    reason: str
    row: InboxRow | None


@dataclass
class ReplyOutsideWindow(Message):
    """Storage refused a reply: its reply window closed (``verdict`` holds the platform's choices)."""

    conv_id: str
    text: str
    mode: str
    at: float | None
    verdict: Verdict
    row: InboxRow | None


@dataclass
class TemplatesRead(Message):
    """The account's approved templates, read for a reply whose window has closed."""

    conv_id: str
    mode: str
    at: float | None
    reason: str
    templates: list[MessageTemplate]
    text: str  # the draft, kept for the way back
    row: InboxRow | None


@dataclass
class ActivityLoaded(Message):
    """Who else is where (conversation id -> presences), and notices the engine left for the user."""

    presence: dict[str, list[Presence]]
    notices: list[Notice]


@dataclass
class Collision(Message):
    """A reply was held back: the thread changed since the composer opened; the user decides."""

    conv_id: str
    text: str
    mode: str
    at: float | None
    changes: list[str]
    row: InboxRow | None
    mark: int
    send_as: str | None = None  # kept through the question: the window choice (human-agent tag, template)
    template: dict[str, Any] | None = None  # the approved template a closed window's reply is sent as


@dataclass
class ReplyQueued(Message):
    """A reply is in the outbox; ``undo_seconds`` is the window before it may leave."""

    key: str
    conv_id: str
    text: str
    private: bool
    undo_seconds: float
    at: float | None = None  # scheduled for this time (send later)


@dataclass
class ReplyCancelled(Message):
    """The undo went through (or could not: ``error``); the text goes back to the composer."""

    key: str
    conv_id: str
    text: str
    private: bool
    row: InboxRow | None
    error: str | None = None
    scheduled_for: float | None = None  # it was a scheduled reply (the composer says so)


@dataclass
class QuitChecked(Message):
    """q: the replies that would wait if the console quit now (and, while quitting, those not gone)."""

    soon: list[str]  # keys of replies leaving within the next couple of minutes
    next_scheduled: float | None
    scheduled: int
    waiting: bool = False  # quitting already: these are the ones that have not left yet


@dataclass
class DeadlinesLoaded(Message):
    """The next SLA deadlines, for alerts (``storage.deadlines``)."""

    deadlines: list[Any]


@dataclass
class EngineStatus(Message):
    """Whether this session runs the sync engine, and why not (shown in the status bar)."""

    running: bool
    note: str


@dataclass
class EngineHealth(Message):
    """A sync engine (this console's or another process's) is stalled, and why; None: it is not."""

    problem: str | None


@dataclass
class TagsLoaded(Message):
    """Every tag in the cache, for completion in the tag dialog."""

    tags: list[str]
    purpose: str
    targets: Any = None  # the conversations the dialog's answer applies to (triage_actions.Targets)


@dataclass
class ConfigReloaded(Message):
    """The config file was edited: what was applied, what waits for a restart, or why not."""

    reevaluated: int | None  # conversations re-evaluated under new SLA policies (None: SLA unchanged)
    on_restart: list[str]
    error: str | None


@dataclass
class WorkerFailed(Message):
    """A worker raised an error it did not handle: the status bar says so and the console stays up."""

    what: str  # what the user misses, e.g. "reading the thread"
    group: str  # the worker group, so a later success of the same work clears the note
    error: str  # the error's type and message, one line


@dataclass
class WorkerRecovered(Message):
    """A worker of a group that had failed succeeded again."""

    group: str


@dataclass
class OutboxLoaded(Message):
    """The replies not gone yet, for the outbox screen (``storage.outbox_list.waiting``)."""

    entries: list[Any]


@dataclass
class CardLoaded(Message):
    """The customer card: the person's contacts, note and conversations (``storage.contacts``)."""

    card: Any
    conversations: list[InboxRow]
    error: str | None = None
    note_by: str | None = None  # who last changed the note (read while the agent is editing it)


@dataclass
class ContactsFound(Message):
    """Contacts matching what the user typed, to merge with."""

    contacts: list[Any]
