"""The inbox row and the SLA pane show the clock that matters, honestly (issue items 1 and 9)."""

from __future__ import annotations

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
