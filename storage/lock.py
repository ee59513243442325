"""The single-writer lease on a workspace: only one sync engine writes it at a time.

It lives with storage because it guards the database, and ``doctor`` (storage) must be able to
ask who holds it without importing the engine. An ``flock`` the OS releases when the process
dies, so a crash never leaves the workspace locked.

The lease file also says how its holder is doing (``note``): the pid on the first line, then one
JSON line (``{"state": "stalled", "reason": ..., "since": ...}``). It is written in place within a
block reserved when the lease is taken, so the note still gets through when the disk is full or the
database is locked — exactly when ``doctor`` and a console in another process need it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from replydesk.storage.files import create_private, private_dir

LOCK_FILE = "engine.lock"
#: Bytes reserved for the pid and the note (written once at acquire, overwritten in place after).
NOTE_SIZE = 4096


class EngineLock:
    """The single-writer lease: held while the engine runs; released by the OS if the process dies."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        private_dir(self.path.parent)
        fd = create_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):  # a full disk: the lease holds without a note
            self._write(json.dumps({"state": "running"}))
        return True

    def _write(self, note: str) -> None:
        data = f"{os.getpid()}\n{note}\n".encode()[: NOTE_SIZE - 1]
        os.pwrite(self._fd, data.ljust(NOTE_SIZE, b" "), 0)  # same size every time: no new blocks

    def note(self, status: dict[str, Any]) -> None:
        """Record how the holder is doing (best effort: never raises)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError, TypeError, ValueError):
            self._write(json.dumps(status, ensure_ascii=True))

    def held_by_other(self) -> bool:
        """Whether a live process holds the lease (asked without touching the holder's note)."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we got
        return False

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def holder_pid(self) -> str:
        """The pid the holder wrote into the file ("?" when it cannot be read)."""
        lines = self._lines()
        return (lines[0].strip() if lines else "") or "?"

    def holder_note(self) -> dict[str, Any]:
        """The holder's last note (``{}`` when there is none or it cannot be read)."""
        lines = self._lines()
        try:
            note = json.loads(lines[1]) if len(lines) > 1 else {}
        except ValueError:
            return {}
        return note if isinstance(note, dict) else {}

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
