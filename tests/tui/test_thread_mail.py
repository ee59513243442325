"""Mail in the thread: new words first, history and signatures folded behind z, robots marked and
asked about before a reply. Corpus messages (tests/data/mail) parsed and stored as the engine would."""

from __future__ import annotations

from pathlib import Path

from replydesk.model import Contact, DeliveryFailure, FetchResult, IncomingMessage
from replydesk.providers.email_parse import parse_message
from replydesk.storage import ingest, outbox, queries
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.dialogs import ChoiceDialog
from replydesk.tui.help import HelpScreen
from replydesk.tui.thread import body_pieces
from tui_support import FIXED, fixed_clock, settle

CORPUS = Path(__file__).resolve().parents[1] / "data" / "mail"
SIZE = (120, 40)


def store_mail(db, name: str, conv: str, at: float = FIXED - 600) -> str:  # noqa: ANN001
    """One corpus message stored as the email provider maps it; returns the conversation id."""
    p = parse_message((CORPUS / name).read_bytes(), "hello@shop.example")
    failure = DeliveryFailure(tuple(p.report.message_ids), p.report.reason) if p.report else None
    msg = IncomingMessage(
        native_id=p.message_id, conversation_native_id=conv, platform="email", kind="email",
        contact=Contact(native_id=p.from_addr, name=p.from_name or p.from_addr, handle=p.from_addr),
        text=p.text, created_at=at, author=p.from_name or p.from_addr, subject=p.subject,
        meta={"subject": p.subject}, automatic=p.automatic, spans=tuple(p.spans), delivery_failure=failure,
    )
    ingest.ingest(db, "shop-mail", [FetchResult(messages=[msg], cursor={}, stream="test")])
    return f"shop-mail:{conv}"


def thread_text(app: ReplydeskApp) -> str:
    return app.thread_view._text.plain


async def wait_for_thread(pilot, shown) -> None:  # noqa: ANN001
    """Wait until the thread pane shows a thread ``shown`` accepts (the thread read is debounced)."""
    for _ in range(500):  # a bound, not a duration: each round waits for the app to go idle
        await settle(pilot)
        thread = pilot.app.thread_view.thread
        if thread is not None and shown(thread):
            return
        await pilot.pause(0.01)
    raise AssertionError("the expected thread was never shown")


async def show(pilot, conv_id: str) -> None:  # noqa: ANN001
    db = pilot.app.workspace.open_db()
    try:
        index = queries.position_of(db, queries.InboxFilter(), conv_id)
    finally:
        db.close()
    pilot.app.inbox.move_to(index)
    await wait_for_thread(pilot, lambda t: t.conversation.id == conv_id)


def test_body_pieces_fold_history_and_signature_around_the_answer(db) -> None:  # noqa: ANN001
    conv_id = store_mail(db, "thunderbird-bottom-posted.eml", "<tb>")
    [m] = queries.thread(db, conv_id).messages
    assert body_pieces(m, unfolded=False) == [
        ("folded", "quoted text · 6 lines"),
        ("new", "Green, please. And could you gift-wrap it? It is a birthday present."),
        ("folded", "signature · 3 lines"),
    ]
    assert [k for k, _ in body_pieces(m, unfolded=True)] == ["quote", "new", "signature"]
    assert "".join(t for _, t in body_pieces(m, unfolded=True)).replace("\n", "") == m.text.replace("\n", "")


def test_body_pieces_keep_inline_context_in_order(db) -> None:  # noqa: ANN001
    conv_id = store_mail(db, "thunderbird-inline-answers.eml", "<inline>")
    [m] = queries.thread(db, conv_id).messages
    assert body_pieces(m, unfolded=False) == [
        ("new", "Hello,"),
        ("context", "On 08-01-2024 09:30, Shop wrote:\n> 1. Should we ship to your home or to your office?"),
        ("new", "To the office, please: Keizersgracht 100, Amsterdam."),
        ("context", "> 2. Do you want the invoice on paper?"),
        ("new", "No, the PDF is enough."),
        ("context", "> 3. Is Friday delivery fine?\n> We can also do Saturday."),
        ("new", "Friday is fine.\n\nGroeten,\nPiet"),
    ]


async def test_z_unfolds_and_folds_the_quoted_history(workspace, db) -> None:  # noqa: ANN001
    conv_id = store_mail(db, "gmail-top-posted.eml", "<gmail>")
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await show(pilot, conv_id)
        text = thread_text(app)
        assert "Yes, please send the blue one" in text
        assert "Which one would you like?" not in text
        assert "▸ quoted text · 9 lines (z shows)" in text
        await pilot.press("z")
        await settle(pilot)
        assert "Which one would you like?" in thread_text(app)
        await pilot.press("z")
        await settle(pilot)
        assert "Which one would you like?" not in thread_text(app)
        await pilot.press("z")
        await settle(pilot)
        app.inbox.move_to(0)  # another conversation, and back
        await wait_for_thread(pilot, lambda t: t.conversation.id != conv_id)
        await show(pilot, conv_id)
        assert "Which one would you like?" not in thread_text(app)  # another conversation opens folded


async def test_the_unfold_key_follows_the_keymap_and_is_in_help(make_workspace, db) -> None:  # noqa: ANN001
    workspace = make_workspace()
    workspace.config = workspace.config.model_copy(update={"keymap": {"toggle_quoted": "Z"}})
    conv_id = store_mail(db, "outlook-desktop-original-message.eml", "<outlook>")
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await show(pilot, conv_id)
        assert "(Z shows)" in thread_text(app)
        await pilot.press("Z")
        await settle(pilot)
        assert "Please find your invoice attached" in thread_text(app)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert any(row[3] == "toggle_quoted" and "Z" in row[1] for row in app.screen.rows)


async def test_robots_are_marked_and_a_reply_to_one_asks_first(workspace, db) -> None:  # noqa: ANN001
    conv_id = store_mail(db, "newsletter-list.eml", "<news>")
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await show(pilot, conv_id)
        assert "⚙ automatic · bulk: Precedence: bulk" in thread_text(app)
        await pilot.press("r")
        for ch in "Stop":
            await pilot.press(ch)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceDialog)
        assert "bulk: Precedence: bulk" in app.screen.title_text
        assert outbox.pending(db) == []  # nothing queued while the user decides
        await pilot.press("down", "enter")  # back to the draft
        await settle(pilot)
        assert app.composer.is_open and app.composer.text_area.text == "Stop"
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("enter")  # queue it anyway
        await settle(pilot)
    assert [(i.conversation_id, i.text) for i in outbox.pending(db)] == [(conv_id, "Stop")]


async def test_a_bounced_reply_says_not_delivered(workspace, db) -> None:  # noqa: ANN001
    conv_id = store_mail(db, "gmail-top-posted.eml", "<bounced>")
    key = outbox.queue_reply(db, conv_id, "Blue it is.")
    outbox.mark_sending(db, key)
    outbox.mark_sent(db, key, "<replydesk.3c9e1f0a7b2d4e6f8a1b2c3d4e5f6a7b@shop.example>", FIXED - 300)
    store_mail(db, "bounce-postfix.eml", "<bounced>", at=FIXED - 100)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await show(pilot, conv_id)
        text = thread_text(app)
    assert "NOT DELIVERED" in text and "not delivered: 550 5.1.1" in text
    assert "⚙ automatic · bounce: 550 5.1.1" in text


async def test_a_hostile_reason_reaches_the_screen_only_as_visible_symbols(workspace, db) -> None:  # noqa: ANN001
    """A bounce's Diagnostic-Code is remote-server text: escape sequences must not reach the terminal."""
    msg = IncomingMessage(
        native_id="<evil-ndr@x>", conversation_native_id="<evil>", platform="email", kind="email",
        contact=Contact(native_id="mailer-daemon@x", name="MAILER-DAEMON", handle="mailer-daemon@x"),
        text="undeliverable", created_at=FIXED - 60, automatic="bounce: 550 \x1b]8;;https://evil.example\x07click\u202e",
    )
    ingest.ingest(db, "shop-mail", [FetchResult(messages=[msg], cursor={}, stream="test")])
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await show(pilot, "shop-mail:<evil>")
        text = thread_text(app)
        await pilot.press("r", "x", "ctrl+s")
        await settle(pilot)
        title = app.screen.title_text
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "␛" in text
    assert "\x1b" not in title and "␛" in title
