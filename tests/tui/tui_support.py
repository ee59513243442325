"""Helpers for the console tests (a module of its own: conftest cannot be imported by name)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replydesk.config import Config, demo_config
from replydesk.storage import queries
from replydesk.workspace import Workspace

FIXED = 1749637800.0  # Wed 2025-06-11 10:30 UTC: inside business hours, so business SLAs run
SEED = 7
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


def fixed_clock() -> float:
    return FIXED


def make_config(undo_seconds: float = 0.0, **ui: Any) -> Config:
    """The demo config with test settings. Counts are off unless a test asks (``count_timeout``):
    whether a digit then a key is a count depends on the time between them, which a test that
    switches a view and then acts must not depend on; the count tests set a long window."""
    cfg = demo_config(seed=SEED)
    ui = {"undo_seconds": undo_seconds, "count_timeout": 0.0, **ui}
    return cfg.model_copy(update={"ui": cfg.ui.model_copy(update=ui)})


def fill_demo(data_dir: Path, cfg: Config, clock: Callable[[], float] = fixed_clock) -> None:
    """Run one engine pass with the demo platform on ``clock`` (the brief's recipe, clock included)."""
    ws = Workspace(data_dir, cfg, clock=clock)
    db = ws.open_db()
    try:
        asyncio.run(ws.engine(db).run_once())
    finally:
        db.close()


def hostile_cases() -> list[dict[str, str]]:
    path = SHARED / "hostile-text.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def settle(pilot: Any, rounds: int = 40) -> None:
    """Wait until no worker runs and the message queues are drained (reads are thread workers)."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        busy = [w for w in app.workers if not w.is_finished]
        if not busy:
            await pilot.pause()
            if not [w for w in app.workers if not w.is_finished]:
                return
        else:
            from textual.worker import WorkerCancelled, WorkerFailed

            # An exclusive worker replaced by a newer one: the next round waits for that one. One that
            # failed was reported to the status bar (``tui.workers``), where a test that expects it
            # looks: whether it was still running when this looked is timing, not behaviour.
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await app.workers.wait_for_complete(busy)
    await pilot.pause()


async def select(pilot: Any, conv_id: str) -> None:
    """Move the cursor to ``conv_id`` and wait until its thread (and SLA pane) is shown. By index,
    as the keys move it: the thread is read when the cursor moves, after a short debounce."""
    db = pilot.app.workspace.open_db()
    try:
        index = queries.position_of(db, queries.InboxFilter(), conv_id)
    finally:
        db.close()
    assert index is not None, f"{conv_id} is not in the inbox"
    for attempt in range(500):  # a bound, not a duration: each round waits for the app to go idle
        if attempt % 50 == 0 and pilot.app.inbox.cursor_id != conv_id:
            pilot.app.inbox.move_to(index)
        await settle(pilot)
        thread = pilot.app.thread_view.thread
        if pilot.app.inbox.cursor_id == conv_id and thread is not None and thread.conversation.id == conv_id:
            return
        await pilot.pause(0.01)
    raise AssertionError(f"{conv_id} was never shown")
