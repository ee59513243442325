"""Search and views say the same count everywhere, and search does what agents reach for (item 3)."""

from __future__ import annotations

from replydesk.storage import actions, queries
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.bars import HeaderBar
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


def app_for(workspace) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)


async def search_for(pilot, query: str) -> None:  # noqa: ANN001
    await pilot.press("slash")
    await settle(pilot)
    pilot.app.screen.query_one("Input").value = query
    await pilot.press("enter")
    await settle(pilot)


async def test_the_search_toast_says_what_the_list_shows(workspace, db) -> None:  # noqa: ANN001
    """'is:breached platform:mastodon' listed 17 and said "0 matching"; 'kind:review from:Tom'
    listed 2 and said 14: the toast counted the word hits, not the conversations shown."""
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for query in ("is:breached platform:mastodon", "kind:review from:Tom", "refund", "from:Tom"):
            app._notifications.clear()
            await search_for(pilot, query)
            shown = app.inbox.total
            toasts = [n.message for n in app._notifications if "matching" in n.message]
            assert toasts == [f"{shown} matching conversation{'' if shown == 1 else 's'} (most urgent first)"], (
                query, toasts)
            header = app.main.query_one(HeaderBar)._shown.plain
            assert f"({shown})" in header
        assert app.inbox.total > 0  # "from:Tom": Tom Becker writes in the demo


async def test_header_breached_count_and_the_breached_view_agree(workspace, db) -> None:  # noqa: ANN001
    """A snoozed (or resolved) breached conversation counted in the Breached view but not in the
    header; now both count open conversations."""
    breached = [r[0] for r in db.conn.execute(
        "SELECT id FROM conversations WHERE sla_state='breached' AND status='open' ORDER BY id LIMIT 2")]
    actions.snooze(db, [breached[0]], FIXED + 3600)
    actions.resolve(db, [breached[1]])
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")  # Breached
        await settle(pilot)
        counts = queries.counts(db)
        assert app.main.view_title == "Breached"
        assert app.inbox.total == counts.breached
        assert f"breached {app.inbox.total}" in app.main.query_one(HeaderBar)._shown.plain


async def test_a_mistyped_filter_is_said(workspace) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await search_for(pilot, "status:open")
        warnings = [n.message for n in app._notifications if n.severity == "warning"]
        assert any("unknown filter status:" in w and "did you mean is:?" in w for w in warnings), warnings


async def test_search_on_a_damaged_index_says_how_to_repair(workspace, db) -> None:  # noqa: ANN001
    """The console said only that the search failed; now it says what doctor says (the CLI too)."""
    db.conn.execute("UPDATE messages_fts_data SET block = CAST(printf('%.*c', length(block), 'x') AS BLOB) "
                    "WHERE id > 10")
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await search_for(pilot, "order")
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert any("search index is damaged" in e and "replydesk doctor --repair" in e for e in errors), errors
        assert app.is_running
