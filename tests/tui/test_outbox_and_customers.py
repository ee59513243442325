"""The outbox screen (item 7: cancel, edit, retry, send now, confirm) and the customer card (merge,
split, VIP, note, other conversations)."""

from __future__ import annotations

from replydesk.storage import contacts, outbox, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.customer_card import CustomerCard
from replydesk.tui.dialogs import ChoiceDialog, PromptDialog
from replydesk.tui.outbox_screen import OutboxScreen
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


def app_for(workspace) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)


def notes(app: ReplydeskApp) -> list[str]:
    return [n.message for n in app._notifications]


def first_row(db) -> queries.InboxRow:  # noqa: ANN001
    return queries.inbox_page(db, InboxFilter(), 0, 1)[0]


async def test_the_outbox_screen_lists_and_acts_on_every_waiting_reply(workspace, db) -> None:  # noqa: ANN001
    # Conversations no reply window binds (a closed window refuses the reply; tests/tui/test_windows_actions.py)
    rows = [r for r in queries.inbox_page(db, InboxFilter(), 0, 40) if not r.reply_windows][:4]
    scheduled = outbox.queue_reply(db, rows[0].id, "scheduled one", at=FIXED + 7200)
    failed = outbox.queue_reply(db, rows[1].id, "failed one")
    outbox.mark_sending(db, failed)
    outbox.mark_failed(db, failed, "HTTP 422: status too long")
    unknown = outbox.queue_reply(db, rows[2].id, "unknown one")
    outbox.mark_sending(db, unknown)
    outbox.mark_unknown(db, unknown, "timed out after sending")
    edit = outbox.queue_reply(db, rows[3].id, "typo heer", at=FIXED + 600)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("O")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OutboxScreen)
        assert [e.item.key for e in screen.entries] == [scheduled, failed, unknown, edit]
        lines = "\n".join(strip.text for strip in screen._compositor.render_strips())
        assert "FAILED" in lines and "UNKNOWN" in lines and "at 12:30 (in 2h 00m)" in lines
        await pilot.press("n")  # the first row: the scheduled one leaves now
        await settle(pilot)
        await pilot.press("down", "r")  # retry the failed one
        await settle(pilot)
        await pilot.press("down", "c")  # the unknown one was posted after all
        await settle(pilot)
        await pilot.press("down", "e")  # edit the last: back into the composer
        await settle(pilot)
        assert not isinstance(app.screen, OutboxScreen)
        assert app.composer.is_open and app.composer.text == "typo heer"
        assert app.composer.row.id == rows[3].id
    assert outbox.get(db, scheduled).not_before <= FIXED
    assert outbox.get(db, failed).state == "queued" and outbox.get(db, failed).last_error is None
    assert outbox.get(db, unknown).state == "sent"
    assert outbox.get(db, edit).state == "cancelled"


async def test_the_outbox_screen_discards(workspace, db) -> None:  # noqa: ANN001
    key = outbox.queue_reply(db, first_row(db).id, "never mind", at=FIXED + 600)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("O")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        for _ in range(50):
            if not app.screen.entries:
                break
            await pilot.pause(0.1)
            await settle(pilot)
        assert app.screen.entries == []
    assert outbox.get(db, key).state == "cancelled"


# ---- the customer ---------------------------------------------------------------------------------


def two_contacts(db) -> tuple[str, str, str, str]:  # noqa: ANN001
    """Two conversations of different customers (no shared name or handle)."""
    rows = db.conn.execute(
        "SELECT c.id, c.contact_id, p.name FROM conversations c JOIN contacts p ON p.id = c.contact_id "
        "ORDER BY c.id").fetchall()
    a = rows[0]
    b = next(r for r in rows if r[2] != a[2])
    return a[0], a[1], b[0], b[1]


def test_merging_and_splitting_contacts(db) -> None:  # noqa: ANN001
    conv_a, a, conv_b, b = two_contacts(db)
    assert b not in contacts.same_customer(db, a)
    contacts.set_note(db, a, "prefers email")
    person = contacts.merge(db, a, b)
    assert set(contacts.same_customer(db, a)) >= {a, b} and set(contacts.same_customer(db, b)) >= {a, b}
    card = contacts.card(db, b)
    assert card.person == person and card.note == "prefers email"
    assert conv_b in [h.id for h in queries.history(db, conv_a, a)]
    contacts.split(db, b)
    assert b not in contacts.same_customer(db, a) and contacts.same_customer(db, b) == [b]
    assert conv_b not in [h.id for h in queries.history(db, conv_a, a)]
    kinds = {r[0] for r in db.conn.execute("SELECT kind FROM events WHERE conversation_id=?", (conv_b,))}
    assert {"contact_merge", "contact_split"} <= kinds


async def test_the_customer_card_opens_conversations_and_edits_the_customer(workspace, db) -> None:  # noqa: ANN001
    row = first_row(db)
    history = queries.thread(db, row.id).history
    assert history, "the demo customer writes on several channels"
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        card = app.screen
        assert isinstance(card, CustomerCard) and card.card is not None
        assert {r.id for r in card.conversations} == {row.id, *(h.id for h in history)}
        await pilot.press("v")  # VIP
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        app.screen.query_one("Input").value = "calls after 5pm"
        await pilot.press("enter")
        await settle(pilot)
        for _ in range(50):
            if card.card is not None and card.card.note == "calls after 5pm" and card.card.vip:
                break
            await pilot.pause(0.05)
            await settle(pilot)
        assert card.card.vip and card.card.note == "calls after 5pm"
        await pilot.press("e")
        await settle(pilot)
        app.screen.query_one("Input").value = "Mr B. (wholesale)"
        await pilot.press("enter")
        await settle(pilot)
        for _ in range(50):
            if card.card.name == "Mr B. (wholesale)":
                break
            await pilot.pause(0.05)
            await settle(pilot)
        assert card.card.name == "Mr B. (wholesale)"
        assert "Mr B. (wholesale)" in str(card.query_one("#card-head").render())
        target = next(r for r in card.conversations if r.id != row.id)
        index = card.conversations.index(target)
        for _ in range(index):
            await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, CustomerCard)
        for _ in range(50):
            if app.inbox.cursor_id == target.id:
                break
            await pilot.pause(0.05)
            await settle(pilot)
        assert app.inbox.cursor_id == target.id
    assert queries.get_row(db, row.id).vip


async def test_merge_from_the_card(workspace, db) -> None:  # noqa: ANN001
    conv_a, a, conv_b, b = two_contacts(db)
    other_name = db.conn.execute("SELECT name FROM contacts WHERE id=?", (b,)).fetchone()[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.open_conversation(conv_a)
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        app.screen.query_one("Input").value = other_name
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog) and app.screen.items
        index = next(n for n, (_, label) in enumerate(app.screen.items) if label.startswith(other_name))
        for _ in range(index):
            await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot)
    assert b in contacts.same_customer(db, a)


async def test_an_also_from_this_customer_entry_opens_on_click(workspace, db) -> None:  # noqa: ANN001
    row = first_row(db)
    history = queries.thread(db, row.id).history
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        view = app.thread_view
        view.scroll_home(animate=False)
        await settle(pilot)
        lines = [strip.text for strip in view._lines]
        y = next(n for n, line in enumerate(lines) if line.startswith("  ") and history[0].snippet[:8] in line)
        await pilot.click("#thread", offset=(6, y))
        await settle(pilot)
        for _ in range(50):
            if app.inbox.cursor_id == history[0].id:
                break
            await pilot.pause(0.05)
            await settle(pilot)
        assert app.inbox.cursor_id == history[0].id
