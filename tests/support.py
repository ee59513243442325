"""Helpers shared by the tests (importable by name: conftest modules are not, reliably)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

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
