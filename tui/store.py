"""The UI's two SQLite connections, each used only from thread workers, one at a time.

Why two: a read (a page, a thread) must never wait behind a write that is itself waiting for the
sync engine's write lock. Why locks: thread workers run on many threads, and one ``sqlite3``
connection must not be used by two of them at once. The UI thread never calls in here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from replydesk import platforms
from replydesk.sla import SlaResult
from replydesk.storage import activity, platform_facts, queries, slastate
from replydesk.storage.db import Database
from replydesk.storage.queries import Thread
from replydesk.workspace import Workspace

T = TypeVar("T")


@dataclass(frozen=True)
class ThreadRead:
    """One conversation as the thread pane and the SLA pane show it, read at ``at``."""

    conv_id: str
    thread: Thread | None
    sla: SlaResult | None
    at: float
    mark: int | None = None  # where its messages stood (``activity.thread_mark``), for the collision check


class ThreadCache:
    """The threads read lately (the selected one and those read ahead around it), so moving onto a
    conversation shows it at once instead of after a read.

    An entry is *fresh* while nothing was written since it was read and its clock minute lasts
    (the SLA pane's figures are minutes); after a write it is still shown, and read again behind
    it. Thread-safe: workers fill it, the UI thread only looks entries up (no SQL).
    """

    SIZE = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[ThreadRead, int]] = OrderedDict()
        self.generation = 0  # bumped by every write anyone made: entries of older ones are stale

    def get(self, conv_id: str) -> ThreadRead | None:
        with self._lock:
            hit = self._entries.get(conv_id)
            if hit is not None:
                self._entries.move_to_end(conv_id)
            return hit[0] if hit is not None else None

    def fresh(self, conv_id: str, now: float, *, written_since: bool = False) -> bool:
        """Whether the cached read can stand: read this minute and, unless ``written_since`` is
        allowed (a row read ahead is read again only once it is selected), after the last write."""
        with self._lock:
            hit = self._entries.get(conv_id)
            return (hit is not None and int(hit[0].at // 60) == int(now // 60)
                    and (written_since or hit[1] == self.generation))

    def put(self, read: ThreadRead, generation: int) -> None:
        """Keep ``read``, made when the cache was at ``generation`` (a read that raced a write is
        kept as stale, so it is read again before it counts as fresh)."""
        with self._lock:
            self._entries[read.conv_id] = (read, generation)
            self._entries.move_to_end(read.conv_id)
            while len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)

    def drop(self, conv_id: str) -> None:
        with self._lock:
            self._entries.pop(conv_id, None)

    def written(self) -> None:
        """Someone wrote: every entry may be out of date."""
        with self._lock:
            self.generation += 1


class Store:
    """Lazily opened reader and writer connections for the TUI."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._reader: Database | None = None
        self._writer: Database | None = None
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._version: int | None = None
        self.threads = ThreadCache()

    def open(self) -> None:
        """Open (and so migrate) both connections, one after the other, before the engine starts.

        Migrating is not safe for two connections at once on a brand-new file, so the UI makes
        sure the schema exists before the engine thread opens its own connection.
        """
        self.read(lambda db: None)
        self.write(lambda db: None)

    def read(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn`` on the reader connection (call from a thread worker only)."""
        with self._read_lock:
            if self._reader is None:
                self._reader = self.workspace.open_db()
                self._learn_facts(self._reader)
            return fn(self._reader)

    @staticmethod
    def _learn_facts(db: Database) -> None:
        """Put the workspace's platform facts (names, limits, counting) in the console's book: read
        before the first rows are, so they paint with the right names, and again after each change."""
        platforms.BOOK.replace(platform_facts.load(db))

    def read_thread(self, conv_id: str, now: float) -> ThreadRead:
        """Read one conversation for the thread and SLA panes, and keep it in ``threads``."""
        generation = self.threads.generation

        def read(db: Database) -> ThreadRead:
            thread = queries.thread(db, conv_id)
            sla = slastate.evaluate_at(db, conv_id, now) if thread else None
            return ThreadRead(conv_id, thread, sla, now, activity.thread_mark(db, conv_id) if thread else None)

        got = self.read(read)
        self.threads.put(got, generation)
        return got

    def write(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn`` on the writer connection (call from a thread worker only)."""
        with self._write_lock:
            if self._writer is None:
                self._writer = self.workspace.open_db()
            before = self._writer.changes()
            try:
                return fn(self._writer)
            finally:
                if self._writer.changes() != before:
                    self.threads.written()

    def changed(self) -> int | None:
        """The new data version (``Database.data_version``) if another connection committed since
        the last call: polled about once a second, it notices the engine's writes — and our own
        writer's — without a file watcher."""
        version = self.read(Database.data_version)
        if self._version is None:
            self._version = version
            return None
        if version != self._version:
            self._version = version
            self.threads.written()
            self.read(self._learn_facts)  # the engine may have learned a limit
            return version
        return None

    def close(self) -> None:
        for lock, attr in ((self._read_lock, "_reader"), (self._write_lock, "_writer")):
            with lock:
                db = getattr(self, attr)
                if db is not None:
                    db.close()
                    setattr(self, attr, None)
