"""The console and the contract's new parts: reply windows counted down in the composer and the SLA
pane and checked before anything is queued (23:59 goes, 24:01 is refused with the choices the
platform allows), escalation to a helpdesk target, editing and deleting our reply, read marks and
the outbox actions in the thread. Driven with the pilot on the demo workspace, checked in SQLite."""

from __future__ import annotations

from replydesk import windows
from replydesk.config import EscalationSettings, EscalationTarget
from replydesk.model import Contact, DeliveryUpdate, FetchResult, IncomingMessage, MessageTemplate
from replydesk.providers.demo_helpdesk import DemoHelpdeskOptions
from replydesk.storage import ingest, outbox, platform_facts, queries, templates
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.dialogs import ChoiceDialog
from replydesk.tui.template_dialog import TemplateDialog
from replydesk.workspace import Workspace
from tui_support import FIXED, fixed_clock, select, settle

SIZE = (120, 36)
MIN, H, D = 60.0, 3600.0, 86400.0


def customer_writes(db, platform: str, conv: str, ago: float, kind: str = "dm") -> str:  # noqa: ANN001
    """A new conversation on the demo account whose customer wrote ``ago`` seconds before FIXED."""
    ann = Contact(native_id=f"{platform}:ann-{conv}", name="Ann Window", handle="@ann")
    msg = IncomingMessage(f"{conv}-1", conv, platform, kind, ann, "Are you there?", FIXED - ago,
                          meta={"at": FIXED - ago})
    ingest.ingest(db, "demo", [FetchResult([msg], None, "test")])
    return f"demo:{conv}"


async def type_text(pilot, text: str) -> None:  # noqa: ANN001
    for ch in text:
        await pilot.press(ch if ch != " " else "space")


def info(app: ReplydeskApp) -> str:
    return str(app.composer.query_one("#composer-info").render())


def app_for(workspace: Workspace) -> ReplydeskApp:
    return ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)


async def test_a_whatsapp_reply_at_23_59_is_queued(workspace, db) -> None:  # noqa: ANN001
    conv = customer_writes(db, "whatsapp", "wa-2359", 23 * H + 59 * MIN)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        sla = str(app.main.query_one("#sla").render())
        assert "Reply window 1m left · then templates only" in " ".join(sla.split())
        await pilot.press("r")
        await type_text(pilot, "On its way")
        await settle(pilot)
        assert "window 1m left" in info(app)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not app.composer.is_open
    assert [(i.conversation_id, i.text, i.send_as) for i in outbox.pending(db)] == [(conv, "On its way", None)]


async def test_a_whatsapp_reply_at_24_01_is_refused_with_what_the_platform_allows(workspace, db) -> None:  # noqa: ANN001
    conv = customer_writes(db, "whatsapp", "wa-2401", 24 * H + MIN)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        assert "Reply window closed 1m ago" in str(app.main.query_one("#sla").render())
        await pilot.press("r")
        await type_text(pilot, "On its way")
        await settle(pilot)
        assert "· WhatsApp · window closed: templates only · 10/4096" in info(app)
        await pilot.press("ctrl+s")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ChoiceDialog)
        assert dialog.title_text == ("Not sent: WhatsApp's 24-hour customer-service window closed 1m ago (it counts "
                                     "from the customer's last message): only approved message templates may be sent.")
        assert dialog.items == [("template", "send an approved template"), ("back", "back to the draft")]
        assert outbox.pending(db) == []
        await pilot.press("down", "enter")  # back to the draft
        await settle(pilot)
        assert app.composer.is_open and app.composer.text == "On its way"  # the draft is intact
    assert outbox.pending(db) == []


async def test_at_24_01_the_composer_offers_the_approved_templates_filled_in_before_anything_is_queued(
        workspace, db) -> None:  # noqa: ANN001
    """Outside the window only a template may go: the dialog lists the account's approved templates
    (as the engine stored them), fills its variables, shows what the customer will read, and only
    then queues it, as a template reply whose thread text is the filled-in result."""
    conv = customer_writes(db, "whatsapp", "wa-tpl", 24 * H + MIN)
    templates.save(db, "demo", [
        MessageTemplate("order_update", "en_US", "Hi {{1}}, your order {{2}} is on its way.", ("1", "2"), "UTILITY"),
        MessageTemplate("welcome_back", "en_US", "We are open again!", (), "MARKETING")])
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        await pilot.press("r")
        await type_text(pilot, "On its way")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("enter")  # "send an approved template"
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TemplateDialog)
        assert [t.name for t in dialog.templates] == ["order_update", "welcome_back"]
        await pilot.press("enter")  # order_update: its two variables
        await settle(pilot)
        await type_text(pilot, "Ann")
        await pilot.press("enter")
        await type_text(pilot, "#42")
        await settle(pilot)
        assert "Hi Ann, your order #42 is on its way." in str(dialog.query_one("#preview").render())
        assert outbox.pending(db) == []  # nothing yet: the user sees the result first
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, TemplateDialog) and not app.composer.is_open
    [item] = outbox.pending(db)
    assert (item.conversation_id, item.text, item.send_as) == (conv, "Hi Ann, your order #42 is on its way.", "template")
    assert item.template == {"name": "order_update", "language": "en_US", "params": ["Ann", "#42"],
                             "param_names": ["1", "2"]}


async def test_messenger_after_24_hours_offers_the_human_agent_tag(workspace, db) -> None:  # noqa: ANN001
    conv = customer_writes(db, "facebook", "fb-30h", 30 * H)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        assert "Reply window closed 6h 00m ago · human-agent tag 5d 18h left" in \
            str(app.main.query_one("#sla").render())
        await pilot.press("r")
        await type_text(pilot, "Sorry for the wait")
        await pilot.press("ctrl+s")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ChoiceDialog)
        assert "you can still send it with the human-agent tag for 5d 18h more" in dialog.title_text
        assert [key for key, _ in dialog.items] == [windows.HUMAN_AGENT, "back"]
        await pilot.press("enter")  # send it with the tag
        await settle(pilot)
        assert not app.composer.is_open
    assert [(i.conversation_id, i.text, i.send_as) for i in outbox.pending(db)] == [
        (conv, "Sorry for the wait", windows.HUMAN_AGENT)]


async def test_instagram_private_reply_after_7_days_becomes_a_public_answer(workspace, db) -> None:  # noqa: ANN001
    conv = customer_writes(db, "instagram", "ig-8d", 8 * D, kind="comment")
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        await pilot.press("R")  # a private reply to the comment
        await settle(pilot)
        assert app.composer.mode == "private"
        await type_text(pilot, "Thanks!")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        assert [key for key, _ in app.screen.items] == ["public", "back"]
        await pilot.press("enter")  # answer publicly instead: the composer switches, nothing leaves yet
        await settle(pilot)
        assert app.composer.is_open and app.composer.mode == "public" and outbox.pending(db) == []
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert [(i.conversation_id, i.private) for i in outbox.pending(db)] == [(conv, False)]


def with_helpdesk(workspace: Workspace) -> Workspace:
    cfg = workspace.config
    workspace.config = cfg.model_copy(update={
        "accounts": [*cfg.accounts, DemoHelpdeskOptions(name="desk")],
        "escalation": EscalationSettings(targets={"helpdesk": EscalationTarget(account="desk")})})
    return workspace


async def test_escalating_to_a_helpdesk_target_queues_a_ticket_shown_in_the_thread(workspace, db) -> None:  # noqa: ANN001
    with_helpdesk(workspace)
    target = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("enter")  # target "helpdesk", the first reason
        await settle(pilot)
        (ticket,) = outbox.pending(db)
        assert (ticket.action, ticket.account, ticket.conversation_id) == ("create_ticket", "desk", target.id)
        app.main.refresh_all()
        await settle(pilot)
        text = app.thread_view._text.plain
        assert "⚙ ticket in desk" in text and "[queued]" in text
        outbox.mark_sending(db, ticket.key)
        outbox.mark_done(db, ticket.key, "41", FIXED, {"url": "https://helpdesk.demo.invalid/tickets/41"})
        app.main.refresh_all()
        await settle(pilot)
        text = app.thread_view._text.plain
        assert "⚙ ticket in desk #41" in text and "[done ✓]" in text and "/tickets/41" in text
    row = queries.get_row(db, target.id)
    assert row.escalated and ticket.payload["external_id"] == target.id


def answered(db) -> tuple[str, str]:  # noqa: ANN001
    """A demo conversation with a reply of ours on the platform (the backlog's), and that reply's text."""
    row = db.conn.execute("SELECT conversation_id, text FROM messages WHERE direction='out' AND state='sent' "
                          "ORDER BY conversation_id LIMIT 1").fetchone()
    return row[0], row[1]


async def palette(pilot, title: str) -> None:  # noqa: ANN001
    await pilot.press("ctrl+p")
    await settle(pilot)
    await type_text(pilot, title)
    await settle(pilot)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await settle(pilot)


async def test_editing_our_last_reply_queues_an_edit(workspace, db) -> None:  # noqa: ANN001
    conv, text = answered(db)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        await palette(pilot, "Edit our last reply")
        assert app.composer.is_open and app.composer.mode == "edit" and app.composer.text == text
        assert "Edit our reply to" in info(app)
        app.composer.text_area.load_text("We're on it: it ships today")
        await pilot.press("ctrl+s")
        await settle(pilot)
    (edit,) = outbox.pending(db)
    assert (edit.action, edit.text, edit.payload["quote"]) == ("edit_reply", "We're on it: it ships today", text)
    assert queries.draft(db, conv) is None  # an edit is no draft of a new reply


async def test_deleting_our_last_reply_asks_then_queues_a_delete(workspace, db) -> None:  # noqa: ANN001
    conv, _ = answered(db)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        await palette(pilot, "Delete our last reply")
        assert isinstance(app.screen, ChoiceDialog) and app.screen.items[0][0] == "delete"
        await pilot.press("enter")
        await settle(pilot)
    assert [i.action for i in outbox.pending(db)] == ["delete_reply"]


async def test_opening_a_conversation_marks_it_read_on_the_platform_where_the_account_asks(workspace, db) -> None:  # noqa: ANN001
    stored = {p: f for a, p, f in platform_facts.load(db) if a == "demo"}
    assert all("mark_read" not in f.actions for f in stored.values())  # the option is off by default
    platform_facts.save(db, "demo", {p: f.with_actions([*f.actions, "mark_read"]) for p, f in stored.items()})
    unread = queries.inbox_page(db, queries.InboxFilter(), 0, 5)
    target = next(r for r in unread if r.unread)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, target.id)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("escape")
        await pilot.press("enter")  # opened again: already read, nothing more to tell the platform
        await settle(pilot)
    assert [(i.action, i.conversation_id) for i in outbox.pending(db)] == [("mark_read", target.id)]
    assert not queries.get_row(db, target.id).unread


async def test_the_thread_shows_whatsapps_delivered_read_and_failed_receipts(workspace, db) -> None:  # noqa: ANN001
    """Status webhooks update our replies: the thread says delivered, read, or not delivered with the
    platform's reason, in words (not only colour)."""
    conv = customer_writes(db, "whatsapp", "wa-ticks", 2 * H)
    ann = Contact(native_id="whatsapp:ann-wa-ticks", name="Ann Window", handle="@ann")
    ours = [IncomingMessage(f"wamid.{n}", "wa-ticks", "whatsapp", "dm", ann, f"reply {n}", FIXED - H + n,
                            direction="out") for n in range(3)]
    updates = [DeliveryUpdate("wamid.0", "delivered", FIXED - 50), DeliveryUpdate("wamid.1", "read", FIXED - 40),
               DeliveryUpdate("wamid.2", "failed", FIXED - 30, "#131026 Message undeliverable")]
    ingest.ingest(db, "demo", [FetchResult(ours, None, "test", updates=updates)])
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        shown = " ".join(str(app.thread_view.render_thread(app.thread_view.thread)).split())
    assert "[delivered ✓✓]" in shown and "[read ✓✓]" in shown
    assert "[FAILED] reason: not delivered: #131026 Message undeliverable" in shown
