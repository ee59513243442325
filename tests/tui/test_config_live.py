"""Editing the config while the console is open: new SLA policies re-order the inbox at once."""

from __future__ import annotations

import os
from pathlib import Path

from replydesk.config import Config, load_config
from replydesk.config_watch import ConfigSource
from replydesk.storage import queries
from replydesk.tui.app import ReplydeskApp
from replydesk.workspace import Workspace
from tui_support import fixed_clock, make_config, settle

LAX = "sla:\n  policies:\n    - name: lax\n      first_reply: {target: 7d}\n      next_reply: {target: 7d}\n"


def save(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 60_000_000_000))


async def test_sla_edit_applies_while_the_console_runs(workspace, db, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "config.yaml"
    save(path, "# shipped SLA defaults\n")

    def build() -> Config:
        return make_config().model_copy(update={"sla": load_config(path)[0].sla})

    watched = Workspace(workspace.data_dir, build(), clock=fixed_clock, config_source=ConfigSource(path, build))
    assert queries.counts(db).breached > 0
    app = ReplydeskApp(watched, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert app.inbox.current.sla_state == "breached"
        save(path, "sla: {policies: [{name: broken, first_reply: {target: soon}}]}\n")
        app._follow_config()
        await settle(pilot)
        assert any("not applied" in n.message and "config.yaml" in n.message for n in app._notifications)
        assert app.inbox.current.sla_state == "breached"  # the settings in force stayed
        save(path, LAX)
        app._follow_config()
        await settle(pilot)
        assert any("SLA policies updated" in n.message for n in app._notifications)
        assert app.inbox.current.sla_state != "breached"  # the list follows without a restart
    assert queries.counts(db).breached == 0
