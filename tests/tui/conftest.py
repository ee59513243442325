"""Fixtures for the console tests: a demo workspace frozen at one instant, and helpers to drive it.

The workspace is built once per session (demo provider and database on the same fixed clock, so
ages, SLA states and every snapshot are deterministic) and copied for each test, which then owns
its database and can check it after pressing keys.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replydesk.storage.db import Database
from replydesk.workspace import Workspace
from tui_support import FIXED, SEED, SHARED, fill_demo, fixed_clock, hostile_cases, make_config, settle  # noqa: F401


@pytest.fixture(autouse=True)
def _colour_as_in_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots are taken in colour; a developer's or CI's NO_COLOR must not change them."""
    monkeypatch.delenv("NO_COLOR", raising=False)


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
