"""README's key table, the help screen and the palette say what the keys do (issue item 15)."""

from __future__ import annotations

from replydesk.keys import BY_ID, in_context, markdown_table
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.commands import NOT_IN_PALETTE, palette_entries
from replydesk.tui.help import HelpScreen
from support import REPO
from tui_support import fixed_clock, settle

SIZE = (120, 36)


def test_readme_key_table_is_the_consoles_bindings() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- keys:")
    table = readme[readme.index("\n", start) + 1: readme.index("<!-- /keys -->")].strip()
    assert table == markdown_table(), "README's key table is stale: paste `python -m replydesk.keys`"


async def test_help_lists_our_bindings_and_none_of_textuals_internal_ones(workspace) -> None:  # noqa: ANN001
    """Help listed Textual's own scroll bindings (Scroll Up, Page Left, …) beside ours."""
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        ids = [row[3] for row in app.screen.rows]
        assert set(ids) <= set(BY_ID), set(ids) - set(BY_ID)
        assert {b.id for b in in_context("main")} | {b.id for b in in_context("inbox")} <= set(ids)
        assert not [row for row in app.screen.rows if row[2].startswith("Scroll") or row[2].startswith("Page Left")]


async def test_the_palette_holds_every_action_once_and_the_composers(workspace, db) -> None:  # noqa: ANN001
    """The palette lacked the composer's actions and listed Quit twice (ours and Textual's)."""
    entries = palette_entries(composer_open=False)
    titles = [t for t, _, _ in entries]
    assert len(titles) == len(set(titles))
    actions = {a for _, _, a in entries}
    assert {b.action for b in in_context("main") if b.id not in NOT_IN_PALETTE} <= actions
    composer = {a for _, _, a in palette_entries(composer_open=True)} - actions
    assert composer == {f"composer:{b.action}" for b in in_context("composer") if b.id != "composer.close"}
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        system = [c.title for c in app.get_system_commands(app.screen)]
        assert "Quit" not in system and "Keys" not in system and titles.count("Quit") == 1
        # From the composer, the palette sends.
        await pilot.press("r")
        for ch in "From the palette":
            await pilot.press("space" if ch == " " else ch)
        await pilot.press("ctrl+p")
        await settle(pilot)
        for ch in "Composer: Send":
            await pilot.press("space" if ch == " " else "colon" if ch == ":" else ch)
        await settle(pilot)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
    queued = [r[0] for r in db.conn.execute("SELECT text FROM outbox")]
    assert queued == ["From the palette"]
