"""Editing the config while replydesk runs: SLA policies apply at once, everywhere in the process;
other sections wait for a restart; a broken edit is reported and changes nothing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from replydesk.config import Config, ConfigError, load_config
from replydesk.config_watch import ConfigSource
from replydesk.storage import queries, slastate
from replydesk.sync import SyncEngine
from replydesk.workspace import Workspace
from support import Clock, make_workspace, sync_once

LAX = """
sla:
  policies:
    - name: lax
      first_reply: {target: 7d}
      next_reply: {target: 7d}
"""


def write(path: Path, text: str) -> None:
    """Write and move the mtime on, as an editor saving a minute later would."""
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 60_000_000_000))


def watched_workspace(tmp_path: Path, clock: Clock, text: str = "ui: {agent: me}\n") -> tuple[Workspace, Path]:
    """A demo workspace whose SLA and UI settings come from a file, as ``replydesk demo --config``."""
    base = make_workspace(tmp_path, clock)
    path = tmp_path / "config.yaml"
    write(path, text)

    def build() -> Config:
        return load_config(path)[0].model_copy(update={"accounts": base.config.accounts})

    return Workspace(base.data_dir, build(), clock=clock, config_source=ConfigSource(path, build)), path


def test_sla_edit_applies_to_every_connection_at_once(tmp_path: Path, clock: Clock) -> None:
    ws, path = watched_workspace(tmp_path, clock)
    sync_once(ws, clock)
    reader, writer = ws.open_db(), ws.open_db()
    before = queries.counts(reader)
    assert before.breached > 0
    assert ws.check_config() is None  # nothing edited yet

    write(path, "ui: {agent: me}\n" + LAX)
    change = ws.check_config()
    assert change is not None and change.sla_changed and change.on_restart == []
    assert reader.sla.settings == writer.sla.settings == ws.config.sla  # both connections follow
    total = reader.conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
    assert slastate.apply_policy_changes(writer) == total
    assert slastate.apply_policy_changes(reader) == 0  # once per edit, whichever connection asks
    after = queries.counts(reader)
    assert after.breached == 0 and after.open == before.open  # re-evaluated from the log, no new event
    assert {r[0] for r in reader.conn.execute("SELECT DISTINCT sla_policy FROM conversations")} == {"lax"}


def test_broken_edit_is_reported_and_changes_nothing(tmp_path: Path, clock: Clock) -> None:
    ws, path = watched_workspace(tmp_path, clock)
    db = ws.open_db()
    in_force = db.sla.settings
    write(path, "sla:\n  policies:\n    - name: x\n      first_reply: {target: soon}\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+"):
        ws.check_config()
    assert db.sla.settings == in_force and ws.config.sla == in_force
    assert ws.check_config() is None  # reported once per edit, not every poll
    write(path, "ui: {agent: me}\n" + LAX)  # fixed
    change = ws.check_config()
    assert change is not None and change.sla_changed and db.sla.settings.policies[0].name == "lax"


def test_other_sections_wait_for_a_restart(tmp_path: Path, clock: Clock) -> None:
    ws, path = watched_workspace(tmp_path, clock)
    db = ws.open_db()
    in_force = db.sla.settings
    write(path, "ui: {agent: someone-else}\n")
    change = ws.check_config()
    assert change is not None and not change.sla_changed and change.on_restart == ["ui"]
    assert db.sla.settings == in_force and ws.config.ui.agent == "me"
    path.unlink()  # a deleted file is not an edit to empty settings
    assert ws.check_config() is None and db.sla.settings == in_force


def test_sync_daemon_follows_an_sla_edit(tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    ws, path = watched_workspace(tmp_path, clock)
    sync_once(ws, clock)
    db = ws.open_db()
    engine = ws.engine(db, follow_config=True)
    assert isinstance(engine, SyncEngine)
    write(path, "ui: {agent: me}\n" + LAX)
    with caplog.at_level(logging.INFO, logger="replydesk.sync"):
        engine.follow_config()
    assert queries.counts(db).breached == 0
    assert "SLA policies changed" in caplog.text
