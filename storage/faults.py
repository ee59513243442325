"""What a database failure means for the person at the keyboard: one line, the cause and what to do.

SQLite reports every fault with a result code (``sqlite_errorname`` on Python's exceptions): a lock
held by another process, a full disk, a read-only file, damage, a schema that lacks a table. Every
surface that meets one — a CLI command, the sync engine's status, the console's status bar,
``doctor`` — words it through :func:`explain`, so the same fault reads the same everywhere and
never as a traceback. A disk I/O error is checked against the free space first: on a full disk
SQLite often cannot even create its ``-shm`` file and says "disk I/O error", which is not damage.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

#: Below this much free space a disk I/O error is taken for a full disk (SQLite needs room for its
#: write-ahead log and shared-memory index, a few pages at least).
LOW_SPACE = 1024 * 1024

#: Damage of the file (as opposed to its surroundings: locks, space, permissions).
_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_DAMAGE_WORDS = ("malformed", "not a database", "vtable constructor failed", "corrupt")


@dataclass(frozen=True)
class Fault:
    """A database failure, classified. ``kind``: locked, full, readonly, io, damaged, schema, other.

    ``line`` is the whole sentence (the CLI, ``doctor``); ``short`` fits a status bar.
    """

    kind: str
    line: str
    short: str = ""

    def __post_init__(self) -> None:
        if not self.short:
            object.__setattr__(self, "short", SHORT.get(self.kind) or self.line)


#: The status-bar wording of each kind (README's table lists them).
SHORT = {
    "locked": "database is locked by another process",
    "full": "disk full",
    "readonly": "database is read-only",
    "io": "disk I/O error",
    "damaged": "database damaged: run replydesk doctor",
    "schema": "database schema incomplete: run replydesk doctor",
}


def free_bytes(path: Path) -> int | None:
    """Free space on the filesystem holding ``path`` (its nearest existing folder), None if unknown."""
    here = Path(path)
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        return shutil.disk_usage(here).free
    except OSError:
        return None


def size_text(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"  # pragma: no cover


def disk_full_line(path: Path) -> str:
    free = free_bytes(path)
    left = f" ({size_text(free)} free)" if free is not None else ""
    return (f"the disk holding {Path(path).parent} is full{left}: free some space, then try again "
            "(nothing stored was lost)")


def _why_not_writable(path: Path | None) -> str:
    """Why SQLite may not write beside the database (it creates its -wal and -shm files there)."""
    if path is None:
        return "the file or its folder is read-only; fix the permissions or the mount, then try again"
    folder = Path(path).parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist; check --data-dir"
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return (f"the filesystem holding {folder} is mounted read-only; remount it read-write (or copy "
                    "the workspace to a writable place), then try again")
    except OSError:
        pass
    if not os.access(folder, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        return f"it or its folder {folder} is read-only for you; fix the permissions, then try again"
    return "the file or its folder is read-only; fix the permissions or the mount, then try again"


def _full_short(path: Path) -> str:
    free = free_bytes(path)
    return f"disk full ({size_text(free)} free)" if free is not None else "disk full"


def classify(exc: BaseException, path: Path | None = None, lock_timeout: float | None = None) -> Fault:
    """Name the fault behind ``exc`` (an ``sqlite3.Error``, an ``OSError`` or our own error)."""
    where = Path(path) if path is not None else None
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lower = text.lower()
    file = str(where) if where is not None else "the database"
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        import errno

        if exc.errno == errno.ENOSPC and where is not None:
            return Fault("full", disk_full_line(where), _full_short(where))
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return Fault("readonly", f"cannot write {exc.filename or file}: {exc.strerror}; fix its permissions "
                                     "(or the mount), then try again")
        return Fault("other", f"{exc.filename or file}: {exc.strerror or text}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in lower:
        held = f" for over {lock_timeout:g} s" if lock_timeout else ""
        return Fault("locked", f"{file} is locked: another process has held its write lock{held}; "
                               "try again when it is done ('replydesk doctor' says who holds it)")
    if name == "SQLITE_FULL" or "database or disk is full" in lower:
        if where is None:
            return Fault("full", "the disk is full: free some space, then try again (nothing stored was lost)")
        return Fault("full", disk_full_line(where), _full_short(where))
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in lower:
        free = free_bytes(where) if where is not None else None
        if where is not None and free is not None and free < LOW_SPACE:
            return Fault("full", disk_full_line(where), _full_short(where))
        return Fault("io", f"{file}: the disk reported an I/O error ({text}); check the disk and its "
                           "mount (the file may be fine), then run 'replydesk doctor'")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly database" in lower \
            or "unable to open database" in lower:
        return Fault("readonly", f"cannot {'open' if 'CANTOPEN' in name or 'unable' in lower else 'write'} "
                                 f"{file}: {_why_not_writable(where)}")
    if name in _DAMAGE or any(word in lower for word in _DAMAGE_WORDS):
        return Fault("damaged", f"{file} is damaged ({text}): run 'replydesk doctor' to check it "
                                "(keep a copy of the file first)")
    if "no such table" in lower or "no such column" in lower or "no such index" in lower:
        return Fault("schema", f"{file} lacks part of its schema ({text}): run 'replydesk doctor' to check "
                               "and 'replydesk doctor --repair' to recreate what is missing")
    return Fault("other", f"{file}: database error: {text}")


def explain(exc: BaseException, path: Path | None = None, lock_timeout: float | None = None) -> str:
    """One line for a person: what is wrong with the database and what to do."""
    return classify(exc, path, lock_timeout).line


def describe_failure(exc: BaseException, path: Path | None = None, lock_timeout: float | None = None) -> str:
    """A supervised task's unexpected failure in a few words (status bar, lease note, log): a database
    fault (or a file error) in the words of :data:`SHORT`, anything else as an internal error."""
    kind = getattr(exc, "kind", None)  # our StorageError (storage.db imports this module)
    if isinstance(kind, str) and not isinstance(exc, (sqlite3.Error, OSError)):
        text = SHORT.get(kind) or str(exc)
    elif isinstance(exc, (sqlite3.Error, OSError)):
        text = classify(exc, path, lock_timeout).short
    else:
        text = f"internal error: {type(exc).__name__}: {exc}"
    return " ".join(text.split())  # callers mask secrets, then cut (a cut first could leave part of one)
