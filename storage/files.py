"""Workspace files and folders are private: 0600 files, 0700 folders, whatever the umask says.

A workspace holds customer data (the database, exports, the engine's lease), so whichever command
creates a file or folder — the console, ``sync``, ``export -o`` — it is made with these modes and
then set to them explicitly: ``os.open``/``mkdir`` modes are filtered by the umask, and a umask of
000 would otherwise leave a world-writable folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path | str) -> Path:
    """Create ``path`` (and missing parents) and make ``path`` itself 0700 if this call created it.

    Parents are created with the usual modes (they are the user's folders, ``~/.local/share``); an
    existing folder is left as it is (``doctor`` reports and ``doctor --repair`` fixes a loose one).
    """
    path = Path(path)
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return path
    os.chmod(path, DIR_MODE)
    return path


def create_private(path: Path | str, flags: int = os.O_WRONLY) -> int:
    """Open ``path`` with ``flags`` (plus ``O_CREAT``), created 0600 and set to 0600 if it existed
    looser; returns the file descriptor."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def open_private(path: Path | str, mode: str = "w", encoding: str = "utf-8") -> IO[str]:
    """``open(path, mode)`` for text output (``w`` truncates, ``a`` appends), the file 0600."""
    if mode not in ("w", "a"):
        raise ValueError(f"open_private: unsupported mode {mode!r}")
    fd = create_private(path, os.O_WRONLY | (os.O_TRUNC if mode == "w" else os.O_APPEND))
    return os.fdopen(fd, mode, encoding=encoding)
