"""Fixtures for the console tests: a demo workspace frozen at one instant, and helpers to drive it.

The workspace is built once per session (demo provider and database on the same fixed clock, so
ages, SLA states and every snapshot are deterministic) and copied for each test, which then owns
its database and can check it after pressing keys.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replydesk.config import Config, demo_config
from replydesk.workspace import Workspace
from storage.db import Database

FIXED = 1749637800.0  # Wed 2025-06-11 10:30 UTC: inside business hours, so business SLAs run
SEED = 7
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


def fixed_clock() -> float:
    return FIXED


def make_config(undo_seconds: float = 0.0, **ui: Any) -> Config:
    cfg = demo_config(seed=SEED)
    return cfg.model_copy(update={"ui": cfg.ui.model_copy(update={"undo_seconds": undo_seconds, **ui})})


def fill_demo(data_dir: Path, cfg: Config, clock: Callable[[], float] = fixed_clock) -> None:
    """Run one engine pass with the demo platform on ``clock`` (the brief's recipe, clock included)."""
    ws = Workspace(data_dir, cfg, clock=clock)
    db = ws.open_db()
    try:
        asyncio.run(ws.engine(db).run_once())
    finally:
        db.close()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-template")
    fill_demo(path, make_config())
    return path


@pytest.fixture
def make_workspace(demo_template: Path, tmp_path: Path) -> Callable[..., Workspace]:
    """A fresh copy of the demo workspace with the config the test asks for."""

    def make(undo_seconds: float = 0.0, **ui: Any) -> Workspace:
        target = tmp_path / "ws"
        if not target.exists():
            shutil.copytree(demo_template, target)
        return Workspace(target, make_config(undo_seconds, **ui), clock=fixed_clock)

    return make


@pytest.fixture
def workspace(make_workspace: Callable[..., Workspace]) -> Workspace:
    return make_workspace()


@pytest.fixture
def db(workspace: Workspace) -> Iterator[Database]:
    """A connection of the test's own, to check what the UI wrote."""
    conn = workspace.open_db()
    yield conn
    conn.close()


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
            await app.workers.wait_for_complete(busy)
    await pilot.pause()
