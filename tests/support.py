"""Helpers shared by the tests (importable by name: conftest modules are not, reliably)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from replydesk.config import Config, demo_config
from replydesk.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"

# 2026-11-23 10:00:00 UTC, a Monday: a fixed "now" for deterministic SLA states and snapshots.
FIXED_NOW = 1795428000.0


class Clock:
    """A settable clock for the storage layer and the demo platform."""

    def __init__(self, now: float = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds








def make_workspace(path: Path, clock: Clock | None = None, config: Config | None = None, **demo) -> Workspace:
    return Workspace(data_dir=path, config=config or demo_config(**demo), clock=clock)


def sync_once(ws: Workspace, clock: Clock | None = None):
    """One engine pass; the workspace's clock drives both storage and the demo platform."""
    db = ws.open_db()
    try:
        return asyncio.run(ws.engine(db).run_once())
    finally:
        db.close()




def hostile_texts() -> list[dict]:
    path = SHARED_TESTDATA / "hostile-text.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def hostile_queries() -> list[str]:
    path = SHARED_TESTDATA / "hostile-queries.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


@contextlib.contextmanager
def own_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs of the test's own at ``where`` (never the machine's disk), e.g. ``size=3m``; mounting
    needs root, so elsewhere the test skips, and fails where CI asks for every server."""
    if os.geteuid() != 0:
        if os.environ.get("CI") or os.environ.get("REPLYDESK_REQUIRE_SERVERS"):
            pytest.fail("the full-disk tests need root to mount a tmpfs of their own")
        pytest.skip("mounting a tmpfs of the test's own needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_disk(disk: Path) -> Path:
    """Take every free byte of ``disk``; returns the filler to delete."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


_HOLD_WRITE_LOCK = (
    "import sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "print('held', flush=True)\n"
    "sys.stdin.readline()\n"
    "c.execute('ROLLBACK')\n"
)


class OutsideWriteLock:
    """Another process holding a workspace's write lock (``BEGIN IMMEDIATE``) from when it is made
    (it returns once the lock is held) until ``release`` or the end of its ``with`` block."""

    def __init__(self, db_path: Path) -> None:
        import sys

        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-c", _HOLD_WRITE_LOCK, str(db_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert self._proc.stdout is not None and self._proc.stdout.readline() == "held\n"
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.communicate("release\n", timeout=30)

    def __enter__(self) -> OutsideWriteLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()



def run_cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """``replydesk ARGS`` in this process, as a user types it: (exit code, stdout, stderr)."""
    import io
    import sys
    from contextlib import redirect_stderr, redirect_stdout

    from replydesk.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def card_of(data_dir: Path, contact_id: str):  # noqa: ANN201 - storage.contacts.Card
    """The customer card of ``contact_id`` as the workspace at ``data_dir`` holds it."""
    from replydesk.storage import contacts
    from replydesk.storage.db import open_database

    db = open_database(data_dir)
    try:
        card = contacts.card(db, contact_id)
        assert card is not None
        return card
    finally:
        db.close()
