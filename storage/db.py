"""Opening a workspace database: file mode, pragmas, migrations, and the handle the rest uses.

One SQLite file per workspace, WAL mode so readers (the TUI, the CLI) never block the single
writer (the sync engine), foreign keys on. The file is created 0600 in a 0700 folder: it holds
customer data.

A new workspace is built under a temporary name and linked into place only once its schema is
complete, so ``replydesk.db`` is never an empty file of ours: an empty one found later is damage
(a truncation, a failed restore), reported as such, never silently turned into a fresh workspace.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from replydesk.storage.files import FILE_MODE, private_dir
from replydesk.storage.schema import MIGRATIONS, SCHEMA_VERSION

DB_FILENAME = "replydesk.db"
#: How long a write waits for another connection's write lock before "database is locked".
LOCK_TIMEOUT = 30.0


class StorageError(Exception):
    """A database problem with a message a user can act on. ``kind`` as ``storage.faults.Fault``."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


#: What a storage call can fail with that a caller should report rather than crash on: our own
#: errors, and SQLite's (locked, full disk, damage). Callers need not import sqlite3 for it.
DATABASE_ERRORS: tuple[type[Exception], ...] = (StorageError, sqlite3.Error)


class Database:
    """A connection plus what every storage function needs: the SLA engine and a clock.

    ``sla`` is a ``replydesk.sla.SlaEngine`` (or None to skip SLA bookkeeping, e.g. a bare import);
    ``clock`` returns epoch seconds and is swapped in tests for a fixed time. ``ingest_hook`` is
    called inside each ingest's transaction with what it stored (the engine's rules and survey
    answers), so their effects commit with the messages or not at all.
    """

    # A plain class (compared and hashed by identity: a connection is itself): a read command's
    # start-up pays for no dataclass machinery.
    def __init__(self, conn: sqlite3.Connection, path: Path, sla: Any = None,
                 clock: Callable[[], float] = time.time, lock_timeout: float = LOCK_TIMEOUT,
                 ingest_hook: Callable[[Database, str, Any], None] | None = None) -> None:
        self.conn = conn
        self.path = path
        self.sla = sla
        self.clock = clock
        self.lock_timeout = lock_timeout
        self.ingest_hook = ingest_hook

    def now(self) -> float:
        return self.clock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: take the write lock up front so a batch never half-applies."""
        if self.conn.in_transaction:  # nested: join the outer transaction
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits.

        Per connection and cheap (no I/O beyond the WAL index), so a reader can poll it about once
        a second to notice the engine's writes without a file watcher.
        """
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def changes(self) -> int:
        """Rows this connection has changed since it opened (SQLite's ``total_changes``): a
        caller tells a write that changed nothing from one that did, without a query."""
        return self.conn.total_changes

    def close(self) -> None:
        self.conn.close()


def _connect(path: Path, lock_timeout: float = LOCK_TIMEOUT) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=lock_timeout)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(lock_timeout * 1000)}")
    return conn


def _create_private(path: Path) -> None:
    """Create the file 0600 before SQLite touches it, so no other user can ever read it."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)


def _create_workspace(path: Path) -> None:
    """Build a complete, migrated database beside ``path`` and link it into place atomically.

    Two processes creating the same workspace at once each build their own; the first link wins and
    the other opens the winner's. Until the link, ``path`` does not exist, so a crash mid-creation
    leaves no empty ``replydesk.db`` behind (only a stray temporary file, removed here next time).
    """
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}-{time.monotonic_ns()}")
    _create_private(tmp)
    try:
        conn = _connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, tmp)
        finally:
            conn.close()  # the last connection: SQLite checkpoints and removes the -wal/-shm
        with suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            with suppress(FileNotFoundError):
                leftover.unlink()


def _set_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch to WAL. On a brand-new file the switch needs a moment alone with it, and SQLite
    does not always wait for that on its own, so another connection opening the same new
    workspace at the same instant is waited out here."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 + 0.01 * attempt)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} was written by a newer replydesk (schema {version}, this one knows {SCHEMA_VERSION}); "
            "upgrade replydesk, or point --data-dir at another workspace"
        )
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process or thread opening the same new
            # workspace at the same moment may have migrated it while we waited.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                conn.rollback()
                break
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def empty_file_problem(path: Path) -> str:
    return (f"{path} is an empty file (0 bytes) where a workspace was: its data is gone (truncated, or a "
            "failed copy or restore). Restore it from a backup or an export ('replydesk import' into a "
            "fresh --data-dir), or remove the file to start an empty workspace")


def open_database(data_dir: Path, *, sla: Any = None, clock: Callable[[], float] | None = None,
                  create: bool = True, lock_timeout: float = LOCK_TIMEOUT) -> Database:
    """Open (creating and migrating as needed) the workspace database in ``data_dir``.

    Every failure is a ``StorageError`` with one line saying what is wrong and what to do.
    """
    data_dir = Path(data_dir)
    path = data_dir / DB_FILENAME
    conn = None
    try:
        if not path.exists():
            if not create:
                raise StorageError(f"no replydesk workspace at {data_dir} (expected {path.name})", "missing")
            private_dir(data_dir)
            _create_workspace(path)
        elif path.stat().st_size == 0:
            raise StorageError(empty_file_problem(path), "damaged")
        conn = _connect(path, lock_timeout)
        _set_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, path)
    except (sqlite3.Error, OSError) as exc:
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()
        from replydesk.storage.faults import classify  # only a failure needs its diagnosis

        fault = classify(exc, path, lock_timeout)
        raise StorageError(f"cannot open the workspace: {fault.line}", fault.kind) from exc
    db = Database(conn=conn, path=path, sla=sla, lock_timeout=lock_timeout)
    if clock is not None:
        db.clock = clock
    return db
