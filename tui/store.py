"""The UI's two SQLite connections, each used only from thread workers, one at a time.

Why two: a read (a page, a thread) must never wait behind a write that is itself waiting for the
sync engine's write lock. Why locks: thread workers run on many threads, and one ``sqlite3``
connection must not be used by two of them at once. The UI thread never calls in here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from replydesk import platforms
from replydesk.storage import platform_facts
from replydesk.storage.db import Database
from replydesk.workspace import Workspace

T = TypeVar("T")


class Store:
    """Lazily opened reader and writer connections for the TUI."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._reader: Database | None = None
        self._writer: Database | None = None
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._version: int | None = None

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

    def write(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn`` on the writer connection (call from a thread worker only)."""
        with self._write_lock:
            if self._writer is None:
                self._writer = self.workspace.open_db()
            return fn(self._writer)

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
