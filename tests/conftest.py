"""Shared fixtures: workspaces on real SQLite files, a fixed clock, a file-backed keyring.

Plain helpers live in ``support.py``: two conftest modules (here and in tui/) share the module
name ``conftest``, so importing from one by name is not reliable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keyring
import pytest

from replydesk.workspace import Workspace
from support import Clock, make_workspace, sync_once


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's real config, data or keyring."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TZ", "UTC")  # local times are the machine's zone unless configured: pin it
    time.tzset()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("REPLYDESK_HOME", raising=False)
    for name in [n for n in os.environ if n.startswith("REPLYDESK_SECRET_")]:
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


@pytest.fixture
def demo_ws(tmp_path: Path, clock: Clock) -> Workspace:
    """A demo workspace after one sync pass at the fixed time."""
    ws = make_workspace(tmp_path / "ws", clock)
    sync_once(ws, clock)
    return ws


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL cluster for the session's team tests; each test makes its own database.
    Skips with the reason without the server binaries (fails under REPLYDESK_REQUIRE_SERVERS=1)."""
    from pgserver import running_postgres

    with running_postgres() as server:
        yield server


@pytest.fixture
def team(pg_server, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201 - team_support.Team
    """The team most team tests need: engine-a, ana and ben on a database of their own."""
    from team_support import engine_ana_ben

    return engine_ana_ben(pg_server, monkeypatch)


@pytest.fixture
def joined(team, tmp_path: Path) -> dict[str, Path]:  # noqa: ANN001
    """The engine's replica with the demo backlog pushed, and ana's and ben's caches pulled from it."""
    from team_support import engine_config, join_engine_ana_ben

    return join_engine_ana_ben(team, tmp_path, engine_config(tmp_path / "platform"))
