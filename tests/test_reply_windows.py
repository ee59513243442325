"""Reply windows: WhatsApp's 24 hours, Messenger's human-agent tag, Instagram's private replies.

Stored on the conversation from the platform's rules (real SQLite), recomputed on each inbound
message, and checked before a reply is queued (storage, the CLI) and again before it is sent
(the engine), so outside the window the user hears it at once, with the choices the platform
allows, and the platform never refuses what we sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from replydesk import providers, windows
from replydesk.cli import main
from replydesk.config import demo_config
from replydesk.model import AnsweredMessage, Contact, FetchResult, IncomingMessage, OutgoingReply
from replydesk.platforms import PlatformFacts
from replydesk.providers.base import PermanentError
from replydesk.providers.demo import DemoProvider, DemoRemote
from replydesk.storage import ingest, outbox, platform_facts, queries
from replydesk.storage.db import Database, open_database
from replydesk.workspace import Workspace
from support import FIXED_NOW, Clock

H, D = 3600.0, 86400.0
ACCOUNT = "shop"


# ---- the rules themselves ----------------------------------------------------------------------------


def meta_windows(platform: str, kind: str, last_in: float = 0.0) -> list[windows.Window]:
    facts = providers.platform_facts(platform)
    return windows.open_windows(facts.window_rules(kind), kind, last_in)


def test_whatsapp_allows_24_hours_then_templates_only() -> None:
    wa = meta_windows("whatsapp", "dm")
    assert windows.check(wa, 23 * H + 59 * 60, private=True).allowed
    late = windows.check(wa, 24 * H + 60, private=True, platform="WhatsApp")
    assert not late.allowed and late.choices == (("template", None),)
    assert late.reason == ("WhatsApp's 24-hour customer-service window closed 1m ago (it counts from the customer's "
                           "last message): only approved message templates may be sent")
    # the human-agent tag is Messenger's: it opens nothing on WhatsApp
    assert not windows.check(wa, 25 * H, private=True, send_as=windows.HUMAN_AGENT).allowed


def test_messenger_allows_24_hours_then_the_human_agent_tag_for_7_days() -> None:
    fb = meta_windows("facebook", "dm")
    assert windows.check(fb, 24 * H, private=True).allowed
    late = windows.check(fb, 30 * H, private=True, platform="Facebook")
    assert not late.allowed and late.choices == ((windows.HUMAN_AGENT, 7 * D),)
    assert "you can still send it with the human-agent tag for 5d 18h more" in late.reason
    tagged = windows.check(fb, 30 * H, private=True, send_as=windows.HUMAN_AGENT)
    assert tagged.allowed and tagged.until == 7 * D
    gone = windows.check(fb, 7 * D + 60, private=True, send_as=windows.HUMAN_AGENT, platform="Facebook")
    assert not gone.allowed and gone.choices == ()
    assert gone.reason.endswith("no message can be sent until the customer writes again")


def test_instagram_private_reply_to_a_comment_within_7_days_public_always() -> None:
    ig = meta_windows("instagram", "comment")
    assert windows.check(ig, 6 * D, private=True).allowed
    assert windows.check(ig, 30 * D, private=False) is None  # a public answer: no window binds it
    late = windows.check(ig, 7 * D + 60, private=True, platform="Instagram")
    assert not late.allowed and late.choices == (("public", None),)
    assert "only a public answer to the comment is possible" in late.reason


def test_windows_read_back_from_storage_are_checked_not_trusted() -> None:
    good = meta_windows("whatsapp", "dm", 100.0)[0].to_dict()
    assert windows.parse([good, {"name": 1}, "junk", {**good, "steps": [["x", "reply"]]}]) == \
        [windows.Window.from_dict(good)]
    assert windows.parse("not a list") == []
    rule = providers.platform_facts("facebook").windows[0]
    assert windows.WindowRule.from_dict(rule.to_dict()) == rule
    assert windows.WindowRule.from_dict({**rule.to_dict(), "steps": [{"seconds": -1, "allows": "reply"}]}) is None


# ---- kept on the conversation ------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path):
    clock = Clock()
    db = open_database(tmp_path / "ws", clock=clock)
    with db.transaction():
        ingest.ensure_account(db, ACCOUNT, "demo", "multi")
    platform_facts.save(db, ACCOUNT, {p: providers.platform_facts(p) for p in ("whatsapp", "facebook", "instagram",
                                                                               "mastodon")})
    yield db
    db.close()


def customer_writes(db: Database, platform: str, conv: str, at: float, *, kind: str = "dm", n: int = 0,
                    direction: str = "in", automatic: str | None = None) -> str:
    ann = Contact(native_id=f"{platform}:ann", name="Ann", handle="@ann")
    msg = IncomingMessage(f"{conv}-{n}-{direction}", conv, platform, kind, ann, f"message {n}", at,
                          direction=direction, automatic=automatic)
    ingest.ingest(db, ACCOUNT, [FetchResult([msg], {"t": at})])
    return f"{ACCOUNT}:{conv}"


def test_the_window_is_kept_on_the_conversation_and_moves_with_each_customer_message(db: Database) -> None:
    conv = customer_writes(db, "whatsapp", "wa1", FIXED_NOW - 20 * H)
    (window,) = queries.get_row(db, conv).reply_windows
    assert (window.since, window.steps) == (FIXED_NOW - 20 * H, ((FIXED_NOW + 4 * H, "reply"),))
    customer_writes(db, "whatsapp", "wa1", FIXED_NOW - 30 * H, n=1)  # an older message, fetched late
    assert queries.get_row(db, conv).reply_windows == (window,)
    customer_writes(db, "whatsapp", "wa1", FIXED_NOW - 19 * H, n=2, direction="out")  # ours: no effect
    customer_writes(db, "whatsapp", "wa1", FIXED_NOW - 18 * H, n=3, automatic="auto-reply: test")  # a robot
    assert queries.get_row(db, conv).reply_windows == (window,)
    customer_writes(db, "whatsapp", "wa1", FIXED_NOW - 2 * H, n=4)
    assert queries.get_row(db, conv).reply_windows[0].steps == ((FIXED_NOW + 22 * H, "reply"),)
    other = customer_writes(db, "mastodon", "ma1", FIXED_NOW - 50 * H, kind="mention")
    assert queries.get_row(db, other).reply_windows == ()  # no rule: no window, any reply goes


def test_rules_that_arrive_later_apply_to_conversations_already_stored(db: Database) -> None:
    platform_facts.save(db, ACCOUNT, {"whatsapp": PlatformFacts("WhatsApp", "WA", None, None)})  # no rules yet
    conv = customer_writes(db, "whatsapp", "wa2", FIXED_NOW - H)
    assert queries.get_row(db, conv).reply_windows == ()
    platform_facts.save(db, ACCOUNT, {"whatsapp": providers.platform_facts("whatsapp")})
    assert queries.get_row(db, conv).reply_windows[0].steps == ((FIXED_NOW + 23 * H, "reply"),)


def test_a_reply_is_checked_before_it_is_queued(db: Database) -> None:
    allowed = customer_writes(db, "whatsapp", "wa3", FIXED_NOW - (23 * H + 59 * 60))
    assert outbox.queue_reply(db, allowed, "on its way")
    late = customer_writes(db, "whatsapp", "wa4", FIXED_NOW - (24 * H + 60))
    with pytest.raises(outbox.OutsideReplyWindow) as refused:
        outbox.queue_reply(db, late, "too late")
    assert refused.value.verdict.choices == (("template", None),)
    assert "closed 1m ago" in str(refused.value) and "the reply was not queued" in str(refused.value)
    assert [i.conversation_id for i in outbox.pending(db)] == [allowed]
    assert queries.thread(db, late).messages[-1].text == "message 0"  # nothing was added to the thread
    # an undo window or a send-later time that ends past the close is refused too: it would leave late
    closing = customer_writes(db, "whatsapp", "wa5", FIXED_NOW - (24 * H - 3))
    with pytest.raises(outbox.OutsideReplyWindow):
        outbox.queue_reply(db, closing, "leaves in 5 s", delay=5)
    assert outbox.queue_reply(db, closing, "leaves now")


def test_the_human_agent_tag_is_queued_as_the_users_choice(db: Database) -> None:
    conv = customer_writes(db, "facebook", "fb1", FIXED_NOW - 30 * H)
    with pytest.raises(outbox.OutsideReplyWindow) as refused:
        outbox.queue_reply(db, conv, "sorry for the wait")
    assert refused.value.verdict.choices == ((windows.HUMAN_AGENT, FIXED_NOW - 30 * H + 7 * D),)
    key = outbox.queue_reply(db, conv, "sorry for the wait", send_as=windows.HUMAN_AGENT)
    item = outbox.get(db, key)
    assert item.send_as == windows.HUMAN_AGENT and outbox.as_json(item)["payload"] == {"send_as": "human_agent"}
    old = customer_writes(db, "facebook", "fb2", FIXED_NOW - 8 * D)
    with pytest.raises(outbox.OutsideReplyWindow):
        outbox.queue_reply(db, old, "a week late", send_as=windows.HUMAN_AGENT)


def test_a_private_reply_to_an_instagram_comment_needs_the_7_days_a_public_one_does_not(db: Database) -> None:
    conv = customer_writes(db, "instagram", "ig1", FIXED_NOW - 8 * D, kind="comment")
    with pytest.raises(outbox.OutsideReplyWindow) as refused:
        outbox.queue_reply(db, conv, "DM me", private=True)
    assert refused.value.verdict.choices == (("public", None),)
    assert outbox.queue_reply(db, conv, "Thanks, answered in public", private=False)


# ---- the CLI and the engine, on the demo workspace ---------------------------------------------------


def demo_conv(db: Database, platform: str, *, closed: bool) -> str:
    """A demo conversation of ``platform`` whose plain reply window is (not) closed now."""
    for row in queries.inbox_page(db, queries.InboxFilter(platforms=(platform,), kinds=("dm",)), 0, 500):
        verdict = windows.check(row.reply_windows, db.now(), private=True)
        if verdict is not None and verdict.allowed != closed:
            return row.id
    raise AssertionError(f"the demo has no {platform} DM with a {'closed' if closed else 'open'} window")


def test_the_demo_simulates_windows_on_whatsapp_messenger_and_instagram(demo_ws: Workspace) -> None:
    db = demo_ws.open_db()
    try:
        for platform in ("whatsapp", "facebook", "instagram"):
            assert demo_conv(db, platform, closed=True) and demo_conv(db, platform, closed=False)
        rows = queries.inbox_page(db, queries.InboxFilter(platforms=("email", "x", "telegram")), 0, 500)
        assert rows and not any(r.reply_windows for r in rows)
    finally:
        db.close()


def test_cli_reply_outside_the_window_is_refused_with_the_choices(tmp_path: Path, capsys) -> None:
    """The CLI runs on the real clock, so the conversations are placed hours from now on it (the
    margins are hours: no dependence on the date or on speed)."""
    import time

    db = open_database(tmp_path / "ws", clock=time.time)
    with db.transaction():
        ingest.ensure_account(db, ACCOUNT, "demo", "multi")
    platform_facts.save(db, ACCOUNT, {p: providers.platform_facts(p) for p in ("whatsapp", "facebook")})
    now = time.time()
    wa = customer_writes(db, "whatsapp", "wa", now - 25 * H)
    fb = customer_writes(db, "facebook", "fb", now - 30 * H)
    ok = customer_writes(db, "whatsapp", "wa-ok", now - 2 * H)
    db.close()
    base = ["--data-dir", str(tmp_path / "ws")]
    assert main([*base, "reply", wa, "--text", "hello"]) == 1
    err = capsys.readouterr().err
    assert "WhatsApp's 24-hour customer-service window closed 1h 00m ago" in err
    assert "only approved message templates may be sent; the reply was not queued" in err
    assert main([*base, "reply", fb, "--text", "hello"]) == 1
    err = capsys.readouterr().err
    assert "Facebook's 24-hour messaging window closed 6h 00m ago" in err
    assert "to send it with the human-agent tag: add --send-as human_agent" in err
    assert main([*base, "reply", fb, "--text", "hello", "--send-as", "human_agent", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["payload"] == {"send_as": "human_agent"}
    assert main([*base, "reply", ok, "--text", "hello"]) == 0
    capsys.readouterr()
    assert main([*base, "outbox", "--json"]) == 0
    assert [i["conversation"] for i in json.loads(capsys.readouterr().out)] == [fb, ok]


def test_engine_checks_again_before_sending_a_reply_whose_window_closed_while_it_waited(tmp_path: Path) -> None:
    """Queued inside the window, then the engine was offline for a day: the reply fails here with
    the platform's rule, and nothing reaches the platform to be refused."""
    clock = Clock()
    ws = Workspace(tmp_path, demo_config(), clock=clock)
    db = ws.open_db()
    try:
        asyncio.run(ws.engine(db).run_once())
        conv = demo_conv(db, "whatsapp", closed=False)
        key = outbox.queue_reply(db, conv, "Your order ships today", delay=5)
        clock.advance(2 * D)
        asyncio.run(ws.engine(db).drain_outbox())
        item = outbox.get(db, key)
        assert item.state == "failed" and item.attempts == 0
        assert item.last_error.startswith("not sent: WhatsApp's 24-hour customer-service window closed")
        assert DemoRemote(tmp_path).ledger() == []
    finally:
        db.close()


def test_a_human_agent_reply_reaches_the_platform_with_its_tag(tmp_path: Path) -> None:
    clock = Clock()
    ws = Workspace(tmp_path, demo_config(), clock=clock)
    db = ws.open_db()
    try:
        asyncio.run(ws.engine(db).run_once())
        for row in queries.inbox_page(db, queries.InboxFilter(platforms=("facebook",), kinds=("dm",)), 0, 500):
            verdict = windows.check(row.reply_windows, db.now(), private=True)
            if verdict is not None and not verdict.allowed and verdict.choices:
                break
        else:
            raise AssertionError("no Messenger conversation between 24 h and 7 days in the demo")
        key = outbox.queue_reply(db, row.id, "Sorry for the wait", send_as=windows.HUMAN_AGENT)
        asyncio.run(ws.engine(db).drain_outbox())
        assert outbox.get(db, key).state == "sent"
        (posted,) = DemoRemote(tmp_path).ledger()
        assert (posted["key"], posted["send_as"]) == (key, "human_agent")
    finally:
        db.close()


def test_the_demo_platform_refuses_a_reply_outside_its_window_as_meta_does(tmp_path: Path) -> None:
    """The simulated platform enforces the rule itself, so the checks above are what keep the
    user from a refusal, not a courtesy."""
    demo = DemoProvider("demo", {}, lambda: None, data_dir=tmp_path, clock=lambda: FIXED_NOW)
    conv = next(i for i in range(500) if demo._conv(i).platform == "whatsapp" and demo._conv(i).kind == "dm")
    reply = OutgoingReply(key="k", conversation_id=f"demo:c{conv}", conversation_native_id=f"c{conv}",
                          account="demo", kind="dm", private=True, text="late", customer_handle="@x",
                          answering=AnsweredMessage("m", {"at": FIXED_NOW - 25 * H}))
    with pytest.raises(PermanentError, match=r"\(#10\) This message is sent outside of allowed window"):
        asyncio.run(demo.send(reply))
    assert DemoRemote(tmp_path).ledger() == []
    fresh = dataclasses.replace(reply, answering=AnsweredMessage("m", {"at": FIXED_NOW - H}))
    assert asyncio.run(demo.send(fresh)).remote_id == "post-1"
