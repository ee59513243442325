"""The single-writer lease on a workspace: only one sync engine writes it at a time.

It lives with storage because it guards the database, and ``doctor`` (storage) must be able to
ask who holds it without importing the engine. An ``flock`` the OS releases when the process
dies, so a crash never leaves the workspace locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

LOCK_FILE = "engine.lock"


class EngineLock:
    """The single-writer lease: held while the engine runs; released by the OS if the process dies."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the lease
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def held_by_other(self) -> bool:
        if self._fh is not None:
            return False
        if self.acquire():
            self.release()
            return False
        return True

    def holder_pid(self) -> str:
        """The pid the holder wrote into the file ("?" when it cannot be read)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
