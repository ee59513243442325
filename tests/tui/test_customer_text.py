"""Customer-controlled text in headers and the composer (issue items 11, 12, 13)."""

from __future__ import annotations

import json

from textual import events

from replydesk.cli import main
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import actions, ingest, queries
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.dialogs import PromptDialog
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)
NAME = "\n".join(f"Name line {n}" for n in range(12))
SUBJECT = "\n".join(f"Subject line {n}" for n in range(12)) + " " + "x" * 1200
BODY = "first line\nsecond line\u2028after a line separator\u2029after a paragraph separator"


def app_for(workspace) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)


def add_conversation(db) -> str:  # noqa: ANN001
    """A conversation newer and more urgent than the demo's: it is the first row."""
    msg = IncomingMessage(
        native_id="long-1", conversation_native_id="long", platform="email", kind="email",
        contact=Contact(native_id="long-person", name=NAME + " " + "y" * 700, handle="long@example.com"),
        text=BODY, created_at=FIXED - 5000, author=NAME, subject=SUBJECT,
    )
    ingest.ingest(db, "demo", [FetchResult(messages=[msg], cursor={}, stream="test")])
    return "demo:long"


async def test_multi_line_names_and_subjects_take_one_line_in_the_header(workspace, db) -> None:  # noqa: ANN001
    """A 12-line name filled the whole thread header (line 0, line 1, ...)."""
    conv = add_conversation(db)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.inbox.move_to(queries.position_of(db, queries.InboxFilter(), conv))
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        assert app.thread_view.thread.conversation.id == conv
        text = app.thread_view._text.plain
        first_line = text.split("\n")[0]
        assert "Name line 0 Name line 1" in first_line and "Name line 11" in first_line  # one line
        assert "Subject line 0 Subject line 1" in text
        body = text
        assert "first line\n" in body and "  second line" in body  # the message keeps its lines
        # U+2028/U+2029 reached the terminal raw: now they are symbols, like other separators.
        assert "\u2028" not in app.thread_view._text.plain and "\u2029" not in app.thread_view._text.plain
        assert "second line␤after a line separator¶after a paragraph separator" in body
        screen = "".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "\u2028" not in screen and "\u2029" not in screen


def test_long_names_subjects_and_tags_are_stored_as_received(tmp_path, capsys) -> None:  # noqa: ANN001
    """Import cut long names (500), subjects (1000) and tags (100) with a marker, though README
    says text is stored as received: now only the display shortens them."""
    name, subject, tag = "N" * 900, "S" * 2500, "t" * 180
    record = {"id": "imp:c1", "account": "imp", "platform": "email", "kind": "email",
              "customer": {"id": "p1", "name": name, "handle": "p@example.com"}, "subject": subject,
              "status": "open", "tags": [tag],
              "messages": [{"id": "imp:m1", "direction": "in", "author": name, "text": "hello",
                            "created_at": "2025-06-11T09:00:00Z", "state": "received"}]}
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(record) + "\n", encoding="utf-8")
    data = tmp_path / "ws"
    assert main(["--data-dir", str(data), "import", str(src)]) == 0
    capsys.readouterr()
    assert main(["--data-dir", str(data), "export"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (out["customer"]["name"], out["subject"], out["tags"]) == (name, subject, [tag])
    assert out["messages"][0]["author"] == name


async def test_a_typed_zwj_emoji_stays_whole_in_the_composer(workspace) -> None:  # noqa: ANN001
    """Typed (one key per code point, as a terminal sends an IME's output) a family emoji fell
    apart: the composer dropped the joiners. Pasted ones were kept; now both are."""
    family = "👨\u200d👩\u200d👧\u200d👦"
    flag = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"  # Scotland: tag characters
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        for ch in f"Hi {family} {flag}!":
            key = "space" if ch == " " else ch
            app.composer.text_area.post_message(events.Key(key, ch))
        await settle(pilot)
        assert app.composer.text == f"Hi {family} {flag}!"


async def test_tag_completion_works_after_a_comma(workspace, db) -> None:  # noqa: ANN001
    """Only the first tag of a comma list completed."""
    rows = [r[0] for r in db.conn.execute("SELECT id FROM conversations ORDER BY id LIMIT 2")]
    actions.tag(db, [rows[1]], ["shipping-delay", "refund-asked"])
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        for ch in "refu":
            await pilot.press(ch)
        await pilot.press("right")
        await settle(pilot)
        for ch in ", ship":
            await pilot.press("space" if ch == " " else "comma" if ch == "," else ch)
        await settle(pilot)
        await pilot.press("right")
        await settle(pilot)
        assert app.screen.query_one("Input").value == "refund-asked, shipping-delay"
        await pilot.press("enter")
        await settle(pilot)
        target = app.inbox.cursor_id
    tags = {r[0] for r in db.conn.execute("SELECT tag FROM conversation_tags WHERE conversation_id=?", (target,))}
    assert tags >= {"refund-asked", "shipping-delay"}
