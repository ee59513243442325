"""Shared fixtures: workspaces on real SQLite files, a fixed clock, a file-backed keyring."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import keyring
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


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's real config, data or keyring."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("REPLYDESK_HOME", raising=False)
    for name in [n for n in __import__("os").environ if n.startswith("REPLYDESK_SECRET_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def file_keyring(tmp_path: Path):
    """A real keyring backend (keyrings.alt's plaintext file backend) in a temp dir."""
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def make_workspace(path: Path, clock: Clock | None = None, config: Config | None = None, **demo) -> Workspace:
    return Workspace(data_dir=path, config=config or demo_config(**demo), clock=clock)


def sync_once(ws: Workspace, clock: Clock | None = None):
    """One engine pass; the workspace's clock drives both storage and the demo platform."""
    db = ws.open_db()
    try:
        return asyncio.run(ws.engine(db).run_once())
    finally:
        db.close()


@pytest.fixture
def demo_ws(tmp_path: Path, clock: Clock) -> Workspace:
    """A demo workspace after one sync pass at the fixed time."""
    ws = make_workspace(tmp_path / "ws", clock)
    sync_once(ws, clock)
    return ws


def hostile_texts() -> list[dict]:
    path = SHARED_TESTDATA / "hostile-text.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def hostile_queries() -> list[str]:
    path = SHARED_TESTDATA / "hostile-queries.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
