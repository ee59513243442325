"""The open customer card follows the cache: another agent's edit (or another process's) shows on it
without reopening it, read off the UI thread by the console's data-version probe; and an edit of
the note that lands while the agent types their own is announced, never written into their field."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from replydesk.storage import contacts, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.customer_card import CustomerCard
from replydesk.tui.dialogs import PromptDialog
from support import REPO
from tui_support import fixed_clock, settle

SIZE = (120, 36)


async def open_card(pilot) -> CustomerCard:  # noqa: ANN001
    await settle(pilot)
    await pilot.press("c")
    await settle(pilot)
    card = pilot.app.screen
    assert isinstance(card, CustomerCard) and card.card is not None
    return card


async def until(pilot, check, what: str, rounds: int = 400) -> None:  # noqa: ANN001
    """Wait for a condition (the probe runs every quarter second), failing with what did not happen."""
    for _ in range(rounds):
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def head(card: CustomerCard) -> str:
    return str(card.query_one("#card-head").render())


def edit_elsewhere(data_dir, person: str, contact_ids: list[str]) -> None:  # noqa: ANN001
    """Another process (another agent's edits, replayed by the sync engine, write the same way)."""
    script = textwrap.dedent("""
        import sys
        from replydesk.storage import contacts
        from replydesk.storage.db import open_database
        db = open_database(sys.argv[1])
        contacts.set_note(db, sys.argv[2], "ships to Lyon only", actor="ana")
        contacts.set_vip(db, sys.argv[3:], True, actor="ana")
        db.close()
    """)
    subprocess.run([sys.executable, "-c", script, str(data_dir), person, *contact_ids], cwd=REPO, check=True,
                   timeout=60)


async def test_another_processs_card_edit_shows_on_the_open_card(workspace, db) -> None:  # noqa: ANN001
    row = queries.inbox_page(db, InboxFilter(), 0, 1)[0]
    before = contacts.card(db, contacts.contact_of(db, row.id))
    contacts.set_vip(db, [c.id for c in before.contacts], False)  # the demo's VIPs: not this time
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        card = await open_card(pilot)
        assert card.card.note == "" and not card.card.vip
        assert "ships to Lyon" not in head(card)
        edit_elsewhere(workspace.data_dir, card.card.person, [c.id for c in card.card.contacts])
        await until(pilot, lambda: "ships to Lyon only" in head(card) and "VIP" in head(card), "the edit on the card")
        assert card.card.note == "ships to Lyon only" and card.card.vip
        assert app.screen is card  # still the card, where the agent was


async def test_a_note_landing_while_the_agent_types_theirs_is_announced_not_written_over(workspace, db) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        card = await open_card(pilot)
        person = card.card.person
        await pilot.press("n")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PromptDialog)
        field = dialog.query_one("Input")
        await pilot.press(*"call", "space", *"first")
        assert field.value == "call first"

        contacts.set_note(db, person, "prefers email", actor="ana")  # ana's edit lands in the cache
        await until(pilot, lambda: any("ana changed the customer's note" in n.message for n in app._notifications),
                    "the notice")
        notice = next(n.message for n in app._notifications if "ana changed" in n.message)
        assert "prefers email" in notice and "What you typed stays" in notice
        assert app.screen is dialog and field.value == "call first"  # not clobbered
        assert "prefers email" in head(card)  # the card under the field shows the team's note
        await pilot.press(*" now")
        assert field.value == "call first now"
        await pilot.press("enter")  # having seen theirs, the agent saves theirs over it
        await until(pilot, lambda: card.card.note == "call first now", "the agent's note saved")
    assert contacts.card(db, person).note == "call first now"
    assert sum("changed the customer's note" in n for n in [x.message for x in app._notifications]) <= 1
