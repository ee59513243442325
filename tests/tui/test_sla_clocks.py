"""The inbox row and the SLA pane show the clock that matters, honestly (issue items 1 and 9)."""

from __future__ import annotations

from replydesk.storage import actions, queries
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.format import countdown, duration
from replydesk.tui.sla_pane import SlaPane
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


def app_for(workspace) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)


def late_but_running(db) -> list[str]:  # noqa: ANN001
    """Conversations whose first reply was breached and answered, with a later clock still running."""
    return [r[0] for r in db.conn.execute(
        "SELECT id FROM conversations WHERE sla_state='breached' AND sla_due_at > ? ORDER BY id", (FIXED,))]


async def test_a_past_breach_shows_the_live_clock_it_is_sorted_by(workspace, db) -> None:  # noqa: ANN001
    """Such rows showed a red '! 0m' while sorted by, e.g., resolution in 21 h."""
    ids = late_but_running(db)
    assert ids, "the demo has conversations answered late with a resolution clock running"
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for conv_id in ids[:5]:
            app.inbox.select_id(conv_id)
            await settle(pilot)
            row = app.inbox.current
            assert row.id == conv_id
            line = app.inbox.render_line(app.inbox.cursor_index - int(app.inbox.scroll_offset.y)).text
            live = duration(row.sla_due_at - FIXED)
            assert live in line and "0m " not in line.split(row.customer[:6])[0], line
            assert "×" in line and "!" not in line[:16], line  # marked as a past breach, not a live one
            await pilot.pause(0.1)
            await settle(pilot)
            pane = str(app.main.query_one(SlaPane).render())
            assert "breached" in pane and "met" in pane  # the pane says which target was missed


def test_countdown_states() -> None:
    now = 1000.0
    assert countdown("breached", now + 3600, None, now) == ("1h 00m", "missed")
    assert countdown("breached", now + 3600, now - 1, now) == ("1h 00m", "warning")
    assert countdown("breached", now - 60, None, now) == ("-1m", "breached")
    assert countdown("breached", None, None, now) == ("", "missed")
    assert countdown("ok", now, None, now) == ("0m", "breached")
    assert countdown("ok", now + 600, now + 300, now) == ("10m", "ok")


def pane_lines(app: ReplydeskApp) -> list[str]:
    """The SLA pane as it is on screen (from the compositor), one string per line."""
    pane = app.main.query_one(SlaPane)
    region = pane.region
    lines = app.screen._compositor.render_strips()
    return [lines[y].crop(region.x, region.right).text.rstrip() for y in range(region.y, region.bottom)]


async def test_the_sla_pane_fits_its_lines_at_120_columns(workspace, db) -> None:  # noqa: ANN001
    """At 120x30 the pane clipped its own lines: 'left -2d 23h' wrapped and the last metric fell
    off the bottom. Every metric now has one whole line, with its time left."""
    app = app_for(workspace)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        row = app.inbox.current
        sla = app.main.query_one(SlaPane)._args[1]
        metrics = [m for m in sla.metrics if m.active or m.state == "breached"]
        assert len(metrics) >= 2
        lines = pane_lines(app)
        for m in metrics:
            label = {"first_reply": "First reply", "next_reply": "Next reply", "resolution": "Resolution"}[m.metric]
            line = next((x for x in lines if label in x), None)
            assert line is not None, (label, lines)
            assert "left" in line or "met" in line, line
            assert not line.endswith("…"), line
        assert row is not None


async def test_an_empty_view_clears_the_sla_pane_and_thread(workspace, db) -> None:  # noqa: ANN001
    """An empty view kept showing the previous conversation's SLA pane."""
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        assert "SLA " in str(app.main.query_one(SlaPane).render()) and app.thread_view.thread is not None
        await pilot.press("5")  # Escalated: nothing is escalated in the demo
        await settle(pilot)
        assert app.inbox.total == 0
        assert str(app.main.query_one(SlaPane).render()) == "SLA: nothing selected"
        assert app.thread_view.thread is None


async def test_reopening_an_open_conversation_changes_and_logs_nothing(workspace, db) -> None:  # noqa: ANN001
    """o on an open conversation said "Reopened" and logged a status event."""
    conv_id = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0].id
    before = db.conn.execute("SELECT count(*) FROM events WHERE conversation_id=? AND kind='status'",
                             (conv_id,)).fetchone()[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any("already open" in m for m in messages), messages
        assert not any(m.startswith("Reopened") for m in messages), messages
    after = db.conn.execute("SELECT count(*) FROM events WHERE conversation_id=? AND kind='status'",
                            (conv_id,)).fetchone()[0]
    assert after == before
    assert actions.reopen(db, [conv_id]) == []  # the storage call says it changed nothing
