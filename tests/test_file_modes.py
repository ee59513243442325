"""Customer data is private whichever command creates it: files 0600, folders 0700, whatever the umask.

Each command runs for real (in-process ``cli.main``, the console's own start-up on a fresh folder)
under a permissive umask, then every file and folder it left is checked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from replydesk.cli import main

UMASKS = [0o000, 0o002, 0o022]


@pytest.fixture(params=UMASKS, ids=[f"umask{u:03o}" for u in UMASKS])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def loose(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that is not 0600 (files) or 0700 (folders)."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


def test_sync_reply_and_export_leave_only_private_files(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "new" / "workspace"  # its parent does not exist either
    assert main(["demo", "--headless", "--once", "--data-dir", str(data)]) == 0
    assert main(["reply", "c1", "--text", "hi", "--data-dir", str(data), "--config", str(demo_config(tmp_path))]) == 0
    assert main(["demo", "--headless", "--once", "--data-dir", str(data)]) == 0  # the reply leaves
    assert (data / "demo-ledger.jsonl").exists()
    out = tmp_path / "export.jsonl"
    assert main(["export", "-o", str(out), "--data-dir", str(data)]) == 0
    assert loose(data) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    imported = tmp_path / "imported"
    assert main(["import", str(out), "--data-dir", str(imported)]) == 0
    assert loose(imported) == []


def demo_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("accounts:\n  - {name: demo, provider: demo}\n", encoding="utf-8")
    return path


def test_an_export_over_an_existing_loose_file_makes_it_private(tmp_path: Path, umask: int) -> None:
    assert main(["demo", "--headless", "--once", "--data-dir", str(tmp_path / "ws")]) == 0
    out = tmp_path / "old-export.jsonl"
    out.write_text("stale\n")
    out.chmod(0o644)
    assert main(["export", "-o", str(out), "--data-dir", str(tmp_path / "ws")]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "stale" not in out.read_text()


def test_the_console_creates_its_workspace_private(tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``replydesk`` on a folder that does not exist yet: what it creates before the first frame."""
    import replydesk.tui.app as app

    seen: list[Path] = []
    monkeypatch.setattr(app, "run_tui", lambda ws: seen.append(ws.data_dir) or 0)
    data = tmp_path / "console-ws"
    assert main(["--data-dir", str(data)]) == 0
    assert seen == [data] and loose(data) == []


async def test_the_console_with_its_engine_creates_only_private_files(tmp_path: Path, umask: int) -> None:
    from replydesk.config import demo_config as demo
    from replydesk.tui.app import ReplydeskApp
    from replydesk.workspace import Workspace
    from support import Clock

    data = tmp_path / "fresh"
    app = ReplydeskApp(Workspace(data, demo(), clock=Clock()))
    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(400):
            await pilot.pause(0.05)
            if app.engine is not None and (data / "engine.lock").exists() and app.engine.health().get("state") == "running":
                break
        assert app.engine is not None
    assert loose(data) == []


def test_the_webhook_receivers_store_is_private_and_doctor_tightens_it(tmp_path: Path, umask: int,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The receiver's spool holds customer messages before the engine moves them in."""
    from replydesk.storage.spool import Spool, path_in

    data = tmp_path / "ws"
    assert main(["demo", "--headless", "--once", "--data-dir", str(data)]) == 0
    spool = Spool(tmp_path / "receiver-only")  # the receiver may start before any workspace exists
    spool.put("shop-whatsapp", "k1", b'{"object": "whatsapp_business_account"}', {})
    spool.close()
    assert loose(tmp_path / "receiver-only") == []
    Spool(data).close()
    path_in(data).chmod(0o644)
    capsys.readouterr()
    assert main(["doctor", "--data-dir", str(data)]) == 1
    assert "webhooks.db: file readable by other users (mode 644); run with --repair" in capsys.readouterr().out
    assert main(["doctor", "--repair", "--data-dir", str(data)]) == 0
    assert loose(data) == []
