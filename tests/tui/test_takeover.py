"""The console takes over syncing when the other process that synced the workspace stops.

The other process holds the engine's lease for real (a separate interpreter holding the flock, as
``replydesk sync`` does); the console is started while it runs, and must neither sync alongside it
nor leave replies waiting forever once it is gone.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replydesk.storage import outbox, queries
from replydesk.tui.app import ReplydeskApp
from replydesk.workspace import Workspace
from support import OutsideWriteLock
from tui_support import fixed_clock, settle

HOLD_LEASE = (
    "import sys\n"
    "from replydesk.storage.lock import EngineLock\n"
    "lock = EngineLock(sys.argv[1])\n"
    "assert lock.acquire()\n"
    "print('holding', flush=True)\n"
    "sys.stdin.readline()\n"
)
CAP = 60.0


def status_line(app: ReplydeskApp) -> str:
    return [strip.text for strip in app.screen._compositor.render_strips()][-2]


async def wait_for(pilot, condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + CAP
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"gave up after {CAP:g} s waiting for: {what}")


async def test_the_console_takes_over_when_the_other_engine_stops(workspace: Workspace, db) -> None:  # noqa: ANN001
    conv = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0].id
    key = outbox.queue_reply(db, conv, "On its way!")
    other = subprocess.Popen([sys.executable, "-c", HOLD_LEASE, str(workspace.data_dir)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        app = ReplydeskApp(workspace, clock=fixed_clock)
        async with app.run_test(size=(160, 40)) as pilot:
            await settle(pilot)
            await wait_for(pilot, lambda: "sync runs in another replydesk process" in status_line(app),
                           "the console to say another process syncs")
            assert app.engine is None and outbox.get(db, key).state == "queued"
            other.communicate("stop\n", timeout=30)  # the other replydesk exits: its lease is free
            await wait_for(pilot, lambda: app.engine is not None, "the console to start its own engine")
            await wait_for(pilot, lambda: "took over syncing" in status_line(app), "the console to say so")
            await wait_for(pilot, lambda: outbox.get(db, key).state == "sent", "the waiting reply to leave")
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()




async def test_a_stalled_engine_is_in_the_status_bar_until_it_resumes(workspace: Workspace, db) -> None:  # noqa: ANN001
    from replydesk.config import SyncSettings
    from support import Clock
    from tui_support import FIXED

    quick = workspace.config.model_copy(update={"sync": SyncSettings(lock_timeout=0.3, retry_base=0.05,
                                                                     retry_max=0.5)})
    clock = Clock(FIXED)
    ws = Workspace(workspace.data_dir, quick, clock=clock)
    conv = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0].id
    key = outbox.queue_reply(db, conv, "Sorry for the wait", at=FIXED + 600)  # due once the lock is held
    app = ReplydeskApp(ws, clock=clock)
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: app.engine is not None and app.engine.health().get("state") == "running",
                       "the console's engine to run")
        with OutsideWriteLock(ws.data_dir / "replydesk.db"):
            clock.advance(900)  # the reply is due: the engine must write, and cannot
            await wait_for(pilot, lambda: "sync stalled: database is locked by another process since" in
                           status_line(app), "the stall in the status bar")
            assert "locked by another process since 10:45, retrying" in status_line(app)
        await wait_for(pilot, lambda: "stalled" not in status_line(app), "the note to go once it resumed")
        await wait_for(pilot, lambda: outbox.get(db, key).state == "sent", "the reply to leave")


def _damage(db_path: Path, kind: str) -> None:
    """Damage the console's open will not notice (the header and the first pages are intact)."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the main file, so the damage is real
    if kind != "zeroed-tail":
        conn.execute(f"DROP TABLE {kind.removeprefix('no-')}")
        conn.commit()
    conn.close()
    if kind == "zeroed-tail":
        pages = db_path.stat().st_size // 4096
        with open(db_path, "r+b") as fh:
            fh.seek(pages * 2 // 3 * 4096)
            fh.write(b"\0" * 4096 * (pages - pages * 2 // 3))


@pytest.mark.parametrize("kind", ["zeroed-tail", "no-outbox", "no-messages"])
async def test_a_workspace_damaged_past_its_open_is_named_in_the_status_bar(workspace: Workspace,
                                                                            kind: str) -> None:
    """The console opens (the damage is deeper than the open checks) and stays up: the reads, and
    the engine's writes, that meet the damage say so in the status bar instead of a traceback."""
    _damage(workspace.data_dir / "replydesk.db", kind)
    workspace.open_db().close()  # what the CLI does before the console: this damage gets past it
    app = ReplydeskApp(workspace, clock=fixed_clock)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j")  # a thread read too
        await wait_for(pilot, lambda: "run replydesk doctor" in status_line(app), "the status bar to name it")
        assert app.is_running
        await pilot.press("j")  # the keys still work
        assert app.is_running
    assert app.return_code in (None, 0)
