"""The rules screen (A, or "Rules" in the palette): the dry run of the CLI, per rule, with a
sample of matches; nothing changes."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from replydesk.config import parse_config
from replydesk.rules import dry_run
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.rules_screen import RulesScreen
from replydesk.workspace import Workspace
from tui_support import FIXED, fixed_clock, settle

RULES = """\
rules:
  - name: refund-words
    when: {words: [refund, "charged twice", nimelipishwa]}
    then: {tag: refund, priority: high}
  - name: greek
    when: {language: [el]}
    then: {assign: maria}
"""


async def test_rules_screen_shows_what_the_dry_run_says_and_changes_nothing(workspace) -> None:  # noqa: ANN001
    config = parse_config(RULES, Path("c.yaml")).model_copy(update={"accounts": workspace.config.accounts})
    ws = Workspace(workspace.data_dir, config, clock=fixed_clock)
    db = ws.open_db()
    expected = dry_run(db, config, FIXED - 30 * 86400, FIXED)
    before = db.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    app = ReplydeskApp(ws, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("A")
        await settle(pilot)
        assert isinstance(app.screen, RulesScreen)
        table = app.screen.query_one(DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[0] for r in rows] == ["refund-words", "greek"]
        for row, summary in zip(rows, expected.rules.values(), strict=True):
            assert row[1:3] == [str(len(summary.conversations)), str(summary.firings)]
        assert "tag refund ×" in rows[0][3]
        sample = str(app.screen.query_one("#rules-sample", Static).render())
        assert expected.rules["refund-words"].sample[0]["conversation"] in sample
        await pilot.press("down")
        await settle(pilot)
        assert "greek:" in str(app.screen.query_one("#rules-sample", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, RulesScreen)
    assert db.conn.execute("SELECT count(*) FROM events").fetchone()[0] == before
    db.close()
