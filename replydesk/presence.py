"""What this console is looking at, in a small file beside the cache: ``presence.json``.

The console says which conversation it shows and whether a reply is being written; whatever syncs
the workspace reads it (in a team, the local engine turns it into a heartbeat others see within a
second). A file, not a table: a write on every cursor move must not wake the console's own reload
(a commit would), nor wait behind the engine's writes. It carries the console's pid, so a console
that died is not "viewing" for ever. Standard library only: the console imports it at start-up.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

FILE = "presence.json"
ACTIVITIES = ("viewing", "replying", "noting")


@dataclass(frozen=True)
class Doing:
    conversation: str | None
    activity: str | None


NOTHING = Doing(None, None)
#: The console announces from worker threads: one write at a time (take it to check what is newest).
WRITING = threading.Lock()


def announce(data_dir: Path, conversation: str | None, activity: str | None) -> None:
    """Record what the console shows now (None, None: nothing); atomic, so a reader never sees half.
    Call with ``WRITING`` held."""
    path = Path(data_dir) / FILE
    body = json.dumps({"conversation": conversation, "activity": activity if activity in ACTIVITIES else None,
                       "pid": os.getpid()})
    tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp")
    with suppress(OSError):  # best effort: a read-only or full disk must not stop the console
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        os.replace(tmp, path)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that pid: not our console
        return False
    return True


def stamp(data_dir: Path) -> float | None:
    """The file's modification time (None: no file), to notice a change without reading it."""
    try:
        return (Path(data_dir) / FILE).stat().st_mtime_ns / 1e9
    except OSError:
        return None


def read(data_dir: Path) -> Doing:
    """What the console announced, or NOTHING when there is no live console."""
    try:
        data = json.loads((Path(data_dir) / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return NOTHING
    if not isinstance(data, dict) or not _alive(data.get("pid")):
        return NOTHING
    conversation = data.get("conversation")
    activity = data.get("activity")
    if not isinstance(conversation, str) or activity not in ACTIVITIES:
        return NOTHING
    return Doing(conversation, activity)
