"""WhatsApp (the Cloud API) for real: the recorded webhook bodies mapped into the cache, statuses on
our replies, echoes from the Business app, one contact across a number change, templates outside
the 24-hour window, read marks, and hostile payloads handled at the edge.

Inbound bodies are the real ones recorded by the pywa project (``../shared/testdata/recorded/
whatsapp``, read at test time); the Graph API's answers are shaped as Meta documents them, through
``httpx.MockTransport``. Real SQLite workspaces throughout.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_fakes import FakeApi, json_response
from meta_support import (
    APP_SECRET,
    PHONE_ID,
    WABA_ID,
    V,
    graph,
    graph_error,
    meta_secrets,
    needs_whatsapp_recordings,
    raw,
    recorded,
    sent,
    signed,
)
from replydesk import push, secrets
from replydesk.cli import main
from replydesk.config import Config
from replydesk.model import MessageTemplate
from replydesk.providers.base import PushRejected
from replydesk.providers.whatsapp import WhatsAppOptions, WhatsAppProvider
from replydesk.storage import accounts, ingest, outbox, pushes, queries, templates
from replydesk.workspace import Workspace
from support import Clock

pytestmark = needs_whatsapp_recordings

#: What each recorded inbound case must read as in the thread (every case: a new one fails the test
#: until it is looked at). Media, locations, cards, orders and unknown types are placeholders with
#: their details, never dropped.
SHOWN = {
    "text": "Body Text",
    "image": "[image]",
    "media_with_url": "[image]",
    "video": "[video: caption]",
    "document": "[document: filename.pdf — caption]",
    "audio": "[audio]",
    "voice": "[voice message]",
    "static_sticker": "[sticker]",
    "animated_sticker": "[animated sticker]",
    "reaction": "[reaction: 😮 to an earlier message]",
    "unreaction_empty": "[reaction removed]",
    "unreaction_no_emoji": "[reaction removed]",
    "current_location": "[location: (12.25089, 43.90539)]",
    "chosen_location": "[location: Facebook HQ, 1 Hacker Way, Menlo Park, CA 94025 (37.4611978, -122.2164385) "
                       "https://maps.google.com/?cid=2000000000000000000]",
    "contacts": "[contact cards: Chandler Bing +1 555-555-5555; Monica +1 666-666-6666; "
                "Rachel Green +1 777-777-7777]",
    "order": "[order: 3 × HAMBURGER at 30 ILS; 2 × FRENCH_FRIES at 35 ILS; 2 × SODA at 10 ILS]",
    "unsupported": "[unsupported message: #131051 Message type unknown (Message type is currently not supported.)]",
    "unsupported_with_type": "[unsupported message type 'pool': #131051 Message type unknown (Message type is "
                             "currently not supported.)]",
    "reply": "replied text",
    "forwarded": "forwarded text",
    "forwarded_many_times": "text forwarded many times",
    "interactive_message_with_err": "[interactive message]\n[WhatsApp reported: #131000 Something went wrong "
                                    "(Unsupported webhook payload)]",
    "referral": "BODY\n[from an ad: AD_TITLE AD_OR_POST_FB_URL]",
}
#: the parent a reply or a reaction keeps (the message it answers)
PARENTS = {"reply": "wamid.xyzxyz==", "interactive_message_with_err": "wamid.gvwegfretge==",
           "reaction": "wamid.yzxyzx=", "unreaction_empty": "wamid.yzxyzx=", "unreaction_no_emoji": "wamid.yzxyzx="}


def provider(name: str = "wa", **options: Any) -> WhatsAppProvider:
    opts = WhatsAppOptions(name=name, phone_number_id=PHONE_ID, waba_id=WABA_ID, **options)
    return WhatsAppProvider(name, opts, lambda: "token", app_secret=lambda: APP_SECRET)


def wa_config(*names: str, **options: Any) -> Config:
    return Config(accounts=[WhatsAppOptions(name=n, phone_number_id=PHONE_ID, waba_id=WABA_ID, **options)
                            for n in names])


class Site:
    """A workspace with WhatsApp accounts, its engine, and the Graph fake it sends through."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch, *names: str, now: float, **options: Any) -> None:
        meta_secrets(monkeypatch, *names)
        self.api: FakeApi = graph(monkeypatch)
        self.clock = Clock(now)
        self.ws = Workspace(path, wa_config(*names, **options), clock=self.clock)
        self.db = self.ws.open_db()
        self.engine = self.ws.engine(self.db)
        for run in self.engine.accounts.values():  # the platform's side of time follows the test's clock
            run.provider.clock = run.provider.gate.clock = self.clock

    def push(self, account: str, body: Any) -> push.Receipt:
        data = raw(body) if not isinstance(body, bytes) else body
        return push.receive(self.db, self.engine.accounts[account].provider, signed(data), data)

    async def run(self) -> None:
        await self.engine.run_once()

    def thread(self, account: str) -> queries.Thread:
        conv = self.db.conn.execute("SELECT id FROM conversations WHERE account=?", (account,)).fetchone()[0]
        return queries.thread(self.db, conv)

    def close(self) -> None:
        self.db.close()


def messages_value(body: dict[str, Any]) -> dict[str, Any]:
    return body["entry"][0]["changes"][0]["value"]


# ---- inbound ---------------------------------------------------------------------------------------


async def test_every_recorded_inbound_case_is_stored_and_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cases = recorded("message.json")
    assert set(cases) == set(SHOWN), "a recorded case is not covered (or one is gone)"
    names = {case: f"wa-{i}" for i, case in enumerate(cases)}  # the recorded ids repeat: one account each
    site = Site(tmp_path / "ws", monkeypatch, *names.values(), now=1700000000.0)
    try:
        for case, body in cases.items():
            assert site.push(names[case], body).fresh
        assert not pushes.summary(site.db)["counts"]["unmappable"]
        await site.run()  # the engine ingests every account's stored bodies
        assert pushes.summary(site.db)["counts"] == {"received": 0, "ingested": len(cases), "unmappable": 0}
        for case, name in names.items():
            thread = site.thread(name)
            [message] = thread.messages
            contact = messages_value(cases[case])["contacts"][0]
            assert message.text == SHOWN[case], case
            assert message.direction == "in" and message.state == "received"
            assert thread.conversation.customer == contact["profile"]["name"] == "Test Name"
            assert thread.conversation.handle == "+" + contact["wa_id"]
            assert thread.conversation.id == f"{name}:{contact['user_id']}"  # keyed on the business-scoped id
            parent = site.db.conn.execute("SELECT parent_id FROM messages WHERE id=?", (message.id,)).fetchone()[0]
            assert parent == (f"{name}:{PARENTS[case]}" if case in PARENTS else None), case
            assert thread.conversation.reply_windows  # a customer message opens the 24-hour window
        referral = site.thread(names["referral"]).messages[0]
        assert [s[2] for s in referral.spans] == ["context"]  # the ad is dimmed context, not their words
        forwarded = site.thread(names["forwarded_many_times"]).messages[0]
        assert forwarded.meta["forwarded"] == "many times"
    finally:
        site.close()
    capsys.readouterr()
    assert main(["--data-dir", str(tmp_path / "ws"), "show", f"{names['order']}:US.13491208655302741918"]) == 0
    shown = capsys.readouterr().out
    assert "Test Name +972987654321" in shown and "[order: 3 × HAMBURGER at 30 ILS" in shown


def test_a_body_for_another_phone_number_or_not_whatsapp_is_kept_with_its_reason() -> None:
    wa = provider()
    body = copy.deepcopy(recorded("message.json")["text"])
    body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    [result] = wa.parse_push(raw(body), {})
    assert result.messages == [] and result.rejected == [("entry 999", "for phone number '999', not this "
                                                          f"account's ({PHONE_ID})")]
    with pytest.raises(ValueError, match="not a 'whatsapp_business_account' webhook body"):
        wa.parse_push(raw({"object": "page", "entry": []}), {})
    assert not wa.claims_push(raw(body)) and wa.claims_push(raw(recorded("message.json")["text"]))


def test_hostile_and_malformed_messages_never_stop_the_good_ones() -> None:
    body = copy.deepcopy(recorded("message.json")["text"])
    value = messages_value(body)
    good = value["messages"][0]
    value["messages"] = [
        {**good, "id": None},                                   # no id
        {**good, "id": "wamid.t", "timestamp": "yesterday"},    # no usable time
        {**good, "id": "wamid.n", "text": {"body": 12345}},    # a body that is not text: shown as nothing
        "not an object",
        {**good, "id": "wamid.big", "text": {"body": "x" * 200_000}},
        {**good, "id": "wamid.esc", "text": {"body": "\x1b[31mred\x1b[0m \u202eevil"}},
        {**good, "id": "wamid.type", "type": {"nested": True}},
        good,
    ]
    [result] = provider().parse_push(raw(body), {})
    assert {m.native_id for m in result.messages} == {"wamid.n", "wamid.big", "wamid.esc", "wamid.type", "wamid.xyzxyz"}
    reasons = dict(result.rejected)
    assert reasons["?"] in ("id missing or not a valid string", "a message that is not an object")
    assert reasons["wamid.t"] == "timestamp is not a time"
    by_id = {m.native_id: m for m in result.messages}
    assert by_id["wamid.esc"].text == "\x1b[31mred\x1b[0m \u202eevil"  # stored as received; shown visibly
    assert by_id["wamid.type"].text == "[unknown message]"


# ---- statuses, echoes, our replies -----------------------------------------------------------------


async def test_statuses_update_the_delivery_state_of_replies_we_sent(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A customer writes (the recorded referral case), we answer, WhatsApp reports sent, delivered,
    read (and played) for our message; on another account it reports it failed, with the error."""
    inbound = recorded("message.json")["referral"]
    statuses = recorded("message_status.json")
    at = float(messages_value(inbound)["messages"][0]["timestamp"]) + 600
    site = Site(tmp_path / "ws", monkeypatch, "wa-ok", "wa-failed", now=at)
    our_id = messages_value(statuses["sent"])["statuses"][0]["id"]
    site.api.route("POST", f"{V}/{PHONE_ID}/messages", sent(our_id))
    try:
        keys = {}
        for name in ("wa-ok", "wa-failed"):
            site.push(name, inbound)
            await site.run()
            keys[name] = outbox.queue_reply(site.db, site.thread(name).conversation.id, "Thanks, on its way!")
        await site.run()
        requests = site.api.requests("POST", f"{V}/{PHONE_ID}/messages")
        assert len(requests) == 2
        body = json.loads(requests[0].content)
        assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "972987654321",
                        "biz_opaque_callback_data": keys["wa-ok"], "type": "text",
                        "text": {"body": "Thanks, on its way!", "preview_url": False},
                        "context": {"message_id": "wamid.ID"}}
        assert requests[0].headers["authorization"] == "Bearer EAAG-test-token"
        assert "EAAG" not in str(requests[0].url)  # the token never travels in a URL
        for case in ("sent", "read", "delivered", "played"):  # out of order, as webhooks may come
            site.push("wa-ok", statuses[case])
        site.push("wa-failed", statuses["failed"])
        await site.run()
        ours = [m for m in site.thread("wa-ok").messages if m.direction == "out"]
        assert [(m.state, m.meta.get("receipt")) for m in ours] == [("sent", "read")]
        failed = [m for m in site.thread("wa-failed").messages if m.direction == "out"]
        assert [m.state for m in failed] == ["failed"]
        assert failed[0].error == ("not delivered: #130472 User's number is part of an experiment (Failed to send "
                                   "message because this user's phone number is part of an experiment)")
        assert pushes.summary(site.db)["counts"]["unmappable"] == 0
    finally:
        site.close()


async def test_a_status_carrying_our_key_settles_a_reply_whose_send_was_uncertain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer to a send is lost (a read timeout): WhatsApp cannot be asked, so the reply is
    ``unknown``, never sent twice; its status webhook carries our key back and settles it."""
    inbound = recorded("message.json")["referral"]
    at = float(messages_value(inbound)["messages"][0]["timestamp"]) + 60
    site = Site(tmp_path / "ws", monkeypatch, "wa", now=at)
    site.api.route("POST", f"{V}/{PHONE_ID}/messages", httpx.ReadTimeout("lost on the way back"))
    try:
        site.push("wa", inbound)
        await site.run()
        key = outbox.queue_reply(site.db, site.thread("wa").conversation.id, "We open at nine.")
        await site.run()
        site.clock.advance(600)
        await site.run()
        assert outbox.get(site.db, key).state == "unknown"
        assert len(site.api.requests("POST", f"{V}/{PHONE_ID}/messages")) == 1  # not sent a second time
        status = copy.deepcopy(recorded("message_status.json")["with_tracker"])
        messages_value(status)["statuses"][0].update(id="wamid.settled", biz_opaque_callback_data=key)
        site.push("wa", status)
        await site.run()
        item = outbox.get(site.db, key)
        assert (item.state, item.remote_id) == ("sent", "wamid.settled")
        [ours] = [m for m in site.thread("wa").messages if m.direction == "out"]
        assert ours.state == "sent" and ours.id == "wa:wamid.settled"
        stray = copy.deepcopy(status)
        messages_value(stray)["statuses"][0].update(id="wamid.other", biz_opaque_callback_data="not-a-key-of-ours")
        site.push("wa", stray)
        await site.run()  # a key we never issued settles nothing
        assert len([m for m in site.thread("wa").messages if m.direction == "out"]) == 1
    finally:
        site.close()


def echo_body(to: str, message_id: str, text: str, timestamp: int, to_user_id: str | None = None) -> dict[str, Any]:
    """An ``smb_message_echoes`` webhook as Meta documents it (coexistence with the Business app)."""
    echo: dict[str, Any] = {"from": "972123456789", "to": to, "id": message_id, "timestamp": str(timestamp),
                            "type": "text", "text": {"body": text}}
    if to_user_id:
        echo["to_user_id"] = to_user_id
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{"field": "smb_message_echoes",
            "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "972123456789",
                                                                     "phone_number_id": PHONE_ID},
                      "message_echoes": [echo]}}]}]}


async def test_what_the_business_answers_from_its_phone_counts_as_our_reply(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = recorded("message.json")["text"]
    at = float(messages_value(inbound)["messages"][0]["timestamp"])
    site = Site(tmp_path / "ws", monkeypatch, "wa", now=at + 300)
    try:
        site.push("wa", inbound)
        await site.run()
        assert site.thread("wa").conversation.needs_reply
        site.push("wa", echo_body("972987654321", "wamid.echo1", "Answered from the shop's phone", int(at) + 120))
        await site.run()
        thread = site.thread("wa")
        assert [(m.direction, m.text, m.author) for m in thread.messages] == [
            ("in", "Body Text", "Test Name"), ("out", "Answered from the shop's phone", "WhatsApp Business app")]
        assert not thread.conversation.needs_reply  # the SLA clock counts it as answered
        replies = site.db.conn.execute("SELECT count(*) FROM events WHERE conversation_id=? AND kind='reply'",
                                       (thread.conversation.id,)).fetchone()[0]
        assert replies == 1
    finally:
        site.close()


async def test_a_customer_who_changes_number_or_hides_it_stays_one_contact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = recorded("message.json")["text"]
    at = float(messages_value(first)["messages"][0]["timestamp"])
    old_user = messages_value(first)["contacts"][0]["user_id"]
    site = Site(tmp_path / "ws", monkeypatch, "wa", now=at + 3600)

    def text_from(message_id: str, wa_id: str | None, user_id: str, username: str | None, offset: int) -> Any:
        body = copy.deepcopy(first)
        value = messages_value(body)
        contact: dict[str, Any] = {"profile": {"name": "Test Name", **({"username": username} if username else {})},
                                   "user_id": user_id}
        if wa_id:
            contact["wa_id"] = wa_id
        value["contacts"] = [contact]
        message = {**value["messages"][0], "id": message_id, "timestamp": str(int(at) + offset),
                   "text": {"body": f"message {message_id}"}}
        message.pop("from")
        if wa_id:
            message["from"] = wa_id
        else:
            message["from_user_id"] = user_id
        value["messages"] = [message]
        return body

    change = copy.deepcopy(first)  # the system message Meta documents for a number change
    value = messages_value(change)
    value.pop("contacts")
    value["messages"] = [{"from": "972987654321", "id": "wamid.sys", "timestamp": str(int(at) + 60), "type": "system",
                          "system": {"body": "User Test Name changed from 972987654321 to 972555000111",
                                     "wa_id": "972555000111", "type": "user_changed_number",
                                     "user_id": "US.NEW.777", "previous_user_id": old_user}}]
    try:
        for body in (first, change, text_from("wamid.new", "972555000111", "US.NEW.777", None, 120),
                     text_from("wamid.hidden", None, "US.NEW.777", "annshop", 180)):
            site.push("wa", body)
        await site.run()
        convs = site.db.conn.execute("SELECT id FROM conversations WHERE account='wa'").fetchall()
        assert [c[0] for c in convs] == [f"wa:{old_user}"]  # one conversation, one contact
        thread = site.thread("wa")
        assert [m.text for m in thread.messages] == [
            "Body Text", "[WhatsApp: User Test Name changed from 972987654321 to 972555000111]",
            "message wamid.new", "message wamid.hidden"]
        assert thread.messages[1].automatic.startswith("automatic: WhatsApp system message")
        assert thread.conversation.handle == "@annshop"  # the newest message shows their username
        # a reply goes to the newest number we know (Meta prefers the number while it works)
        site.api.route("POST", f"{V}/{PHONE_ID}/messages", sent("wamid.reply"))
        outbox.queue_reply(site.db, thread.conversation.id, "Got it")
        await site.run()
        [request] = site.api.requests("POST", f"{V}/{PHONE_ID}/messages")
        assert json.loads(request.content)["to"] == "972555000111"
    finally:
        site.close()


# ---- windows, templates, read marks ------------------------------------------------------------------

TEMPLATES_PAGE = {"data": [
    {"name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "1",
     "parameter_format": "POSITIONAL",
     "components": [{"type": "HEADER", "format": "TEXT", "text": "Your order"},
                    {"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way.",
                     "example": {"body_text": [["Ann", "#42"]]}},
                    {"type": "FOOTER", "text": "Corner Coffee"}]},
    {"name": "named_hello", "language": "de", "status": "APPROVED", "category": "UTILITY", "id": "2",
     "parameter_format": "NAMED",
     "components": [{"type": "BODY", "text": "Hallo {{first_name}}!",
                     "example": {"body_text_named_params": [{"param_name": "first_name", "example": "Ann"}]}}]},
    {"name": "rejected_one", "language": "en_US", "status": "REJECTED", "category": "MARKETING", "id": "3",
     "components": [{"type": "BODY", "text": "nope"}]},
    {"name": 17, "language": "en_US", "status": "APPROVED"},
], "paging": {"cursors": {"before": "a", "after": "b"}}}


async def test_a_reply_at_23_59_leaves_and_at_24_01_only_an_approved_template_may(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    inbound = recorded("message.json")["text"]
    wrote = float(messages_value(inbound)["messages"][0]["timestamp"])
    site = Site(tmp_path / "ws", monkeypatch, "wa", now=wrote + 23 * 3600 + 59 * 60)
    site.api.route("GET", f"{V}/{WABA_ID}/message_templates", json_response(TEMPLATES_PAGE))
    ids = iter(range(1, 10))
    site.api.route("POST", f"{V}/{PHONE_ID}/messages", lambda r: sent(f"wamid.out{next(ids)}"))
    try:
        site.push("wa", inbound)
        await site.run()
        conv = site.thread("wa").conversation.id
        assert [t.name for t in templates.of_account(site.db, "wa")] == ["named_hello", "order_update"]
        plain = outbox.queue_reply(site.db, conv, "Sure!")  # 23:59 after the customer's message
        await site.run()
        assert outbox.get(site.db, plain).state == "sent"
        site.clock.now = wrote + 24 * 3600 + 60  # 24:01
        with pytest.raises(outbox.OutsideReplyWindow) as refused:
            outbox.queue_reply(site.db, conv, "Anything else?")
        assert refused.value.verdict.choices == (("template", None),)
        assert "only approved message templates may be sent" in str(refused.value)
        site.db.close()
        capsys.readouterr()
        args = ["--data-dir", str(site.ws.data_dir)]
        assert main([*args, "reply", conv, "--text", "Anything else?"]) == 1
        assert "--template NAME" in capsys.readouterr().err
        assert main([*args, "templates", "wa"]) == 0
        assert "order_update (en_US, UTILITY, 2 variable(s)): Hi {{1}}, order {{2}} is on its way." in \
            capsys.readouterr().out
        assert main([*args, "reply", conv, "--template", "order_update", "--param", "Ann"]) == 2  # one short
        assert main([*args, "reply", conv, "--template", "order_update", "--param", "Ann", "--param", "#42"]) == 0
        site.db = site.ws.open_db()
        site.engine.db = site.db
        [queued] = outbox.pending(site.db)
        assert queued.send_as == "template" and queued.template["params"] == ["Ann", "#42"]
        site.clock.now = queued.not_before  # the CLI ran on the real clock; a template may leave at any time
        await site.run()
        requests = site.api.requests("POST", f"{V}/{PHONE_ID}/messages")
        body = json.loads(requests[-1].content)
        assert body["type"] == "template" and "context" not in body
        assert body["template"] == {"name": "order_update", "language": {"code": "en_US"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "#42"}]}]}
        texts = [(m.text, m.state) for m in site.thread("wa").messages if m.direction == "out"]
        assert texts == [("Sure!", "sent"), ("Hi Ann, order #42 is on its way.", "sent")]
    finally:
        site.close()


def test_named_template_variables_go_by_name() -> None:
    from replydesk.providers.whatsapp import parse_template, template_payload

    named = parse_template(TEMPLATES_PAGE["data"][1])
    assert named.params == ("first_name",) and named.fill(["Ann"]) == "Hallo Ann!"
    assert template_payload(named.as_reply(["Ann"]))["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "Ann", "parameter_name": "first_name"}]}]
    assert parse_template(TEMPLATES_PAGE["data"][2]) is None and parse_template(TEMPLATES_PAGE["data"][3]) is None


async def test_a_reply_queued_in_the_window_that_closes_before_it_leaves_is_not_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = recorded("message.json")["text"]
    wrote = float(messages_value(inbound)["messages"][0]["timestamp"])
    site = Site(tmp_path / "ws", monkeypatch, "wa", now=wrote + 23 * 3600 + 59 * 60)
    try:
        site.push("wa", inbound)
        await site.run()
        key = outbox.queue_reply(site.db, site.thread("wa").conversation.id, "Late")  # at 23:59: allowed
        site.clock.advance(120)  # offline for two minutes: it would leave at 24:01
        await site.run()
        item = outbox.get(site.db, key)
        assert item.state == "failed" and "only approved message templates" in item.last_error
        assert site.api.requests("POST", f"{V}/{PHONE_ID}/messages") == []
    finally:
        site.close()


async def test_opening_a_chat_marks_it_read_on_whatsapp_where_the_account_asks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = recorded("message.json")["text"]
    wrote = float(messages_value(inbound)["messages"][0]["timestamp"])
    site = Site(tmp_path / "ws", monkeypatch, "wa", now=wrote + 60, mark_read=True)
    site.api.route("POST", f"{V}/{PHONE_ID}/messages", json_response({"success": True}))
    try:
        site.push("wa", inbound)
        await site.run()
        conv = site.thread("wa").conversation.id
        outbox.queue_action(site.db, conv, "mark_read", {})
        await site.run()
        [request] = site.api.requests("POST", f"{V}/{PHONE_ID}/messages")
        assert json.loads(request.content) == {"messaging_product": "whatsapp", "status": "read",
                                               "message_id": "wamid.xyzxyz"}
    finally:
        site.close()


# ---- limits and tokens --------------------------------------------------------------------------------


async def test_throttling_waits_and_an_expired_token_stops_only_that_account(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = recorded("message.json")["text"]
    wrote = float(messages_value(inbound)["messages"][0]["timestamp"])
    site = Site(tmp_path / "ws", monkeypatch, "wa-a", "wa-b", now=wrote + 60)
    try:
        for name in ("wa-a", "wa-b"):
            site.push(name, inbound)
        await site.run()
        convs = {name: site.thread(name).conversation.id for name in ("wa-a", "wa-b")}
        # wa-a: WhatsApp's throughput limit, with the business use case's own estimate of when it ends
        usage = json.dumps({WABA_ID: [{"type": "whatsapp_business_management", "call_count": 100,
                                       "total_cputime": 10, "total_time": 12, "estimated_time_to_regain_access": 7}]})
        answers = iter([graph_error(130429, "Rate limit hit", headers={"X-Business-Use-Case-Usage": usage}),
                        graph_error(190, "Error validating access token: Session has expired.", subcode=463)])
        site.api.route("POST", f"{V}/{PHONE_ID}/messages", lambda r: next(answers))
        key_a = outbox.queue_reply(site.db, convs["wa-a"], "one")
        await site.engine.drain(site.engine.accounts["wa-a"])
        status = accounts.status_of(site.db, "wa-a")
        assert status.state == "rate_limited" and "Rate limit hit (#130429)" in status.detail
        assert site.engine.accounts["wa-a"].blocked_until == pytest.approx(site.clock.now + 7 * 60)
        assert outbox.get(site.db, key_a).state == "queued" and outbox.get(site.db, key_a).attempts == 0
        # wa-b: the token expired: that account stops for a re-login, wa-a's wait is untouched
        key_b = outbox.queue_reply(site.db, convs["wa-b"], "two")
        await site.engine.drain(site.engine.accounts["wa-b"])
        status = accounts.status_of(site.db, "wa-b")
        assert status.state == "auth_error" and "re-login needed" in status.detail
        assert site.engine.accounts["wa-b"].stopped and not site.engine.accounts["wa-a"].stopped
        assert outbox.get(site.db, key_b).state == "queued"  # kept for after the login
        assert "EAAG" not in status.detail
    finally:
        site.close()


def test_a_signature_is_checked_before_anything_reads_the_body() -> None:
    wa = provider()
    body = raw(recorded("message.json")["text"])
    wa.verify_push(signed(body), body)
    for headers, data, why in (({}, body, "no X-Hub-Signature-256"),
                               (signed(body, "another-secret"), body, "does not match"),
                               (signed(body), body[:-3] + b"  }", "does not match")):
        with pytest.raises(PushRejected, match=why):
            wa.verify_push(headers, data)
    keyless = WhatsAppProvider("wa", wa.options, lambda: "token", app_secret=lambda: None)
    with pytest.raises(PushRejected, match="no app secret"):
        keyless.verify_push(signed(body), body)
    assert secrets.env_name("wa:app-secret") == "REPLYDESK_SECRET_WA_APP_SECRET"


def test_a_redelivery_in_another_body_is_the_same_delivery() -> None:
    """The dedupe key is WhatsApp's ids, not the bytes: the same events re-serialised dedupe."""
    wa = provider()
    body = recorded("message.json")["text"]
    compact, pretty = raw(body), json.dumps(body, indent=2).encode()
    assert compact != pretty and wa.push_key({}, compact) == wa.push_key({}, pretty)
    statuses = recorded("message_status.json")
    assert wa.push_key({}, raw(statuses["sent"])) != wa.push_key({}, raw(statuses["delivered"]))
    assert wa.push_key({}, b"\xff not json").startswith("sha256:")


def test_ingested_receipts_only_move_forward(tmp_path: Path) -> None:
    """read, then a late delivered: still read; failed is final."""
    from replydesk.model import Contact, DeliveryUpdate, FetchResult, IncomingMessage

    ws = Workspace(tmp_path, Config(), clock=Clock())
    db = ws.open_db()
    try:
        out = IncomingMessage("wamid.1", "c", "whatsapp", "dm", Contact("c", "Ann"), "ours", 100.0, direction="out")
        ingest.ingest(db, "wa", [FetchResult([out], None)])
        for state in ("read", "delivered", "sent"):
            ingest.ingest(db, "wa", [FetchResult([], None, updates=[DeliveryUpdate("wamid.1", state, 200.0)])])
        row = db.conn.execute("SELECT state, json_extract(meta, '$.receipt') FROM messages").fetchone()
        assert tuple(row) == ("sent", "read")
        ingest.ingest(db, "wa", [FetchResult([], None, updates=[DeliveryUpdate("wamid.1", "failed", 300.0, "#1 x")])])
        ingest.ingest(db, "wa", [FetchResult([], None, updates=[DeliveryUpdate("wamid.1", "read", 400.0)])])
        row = db.conn.execute("SELECT state, error FROM messages").fetchone()
        assert tuple(row) == ("failed", "not delivered: #1 x")
    finally:
        db.close()


def test_templates_are_stored_for_the_composer(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, Config(), clock=Clock())
    db = ws.open_db()
    try:
        templates.save(db, "wa", [MessageTemplate("a", "en", "Hi {{1}}", ("1",)), MessageTemplate("b", "de", "Hallo")])
        templates.save(db, "wa", [MessageTemplate("b", "de", "Hallo")])  # "a" was withdrawn on the platform
        assert [(t.name, t.body) for t in templates.of_account(db, "wa")] == [("b", "Hallo")]
    finally:
        db.close()


def test_hostile_text_in_every_customer_field_is_kept_as_received(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Each case of ``hostile-text.jsonl`` as a message body, a profile name, a document's file name
    and a location's name: stored exactly as received (placeholders only add our brackets), and the
    CLI shows it with no control, escape or bidi character reaching the terminal."""
    from replydesk.safetext import BIDI_CONTROLS
    from support import hostile_texts

    cases = hostile_texts()
    assert cases
    base = recorded("message.json")
    wa = provider()
    ws = Workspace(tmp_path / "ws", Config(), clock=Clock(1700000000.0))
    db = ws.open_db()
    try:
        for n, case in enumerate(cases):
            hostile = case["text"]
            bodies = []
            for kind in ("text", "document", "chosen_location"):
                body = copy.deepcopy(base[kind])
                value = messages_value(body)
                value["contacts"][0]["profile"]["name"] = hostile
                value["contacts"][0]["user_id"] = f"US.{n}"
                message = value["messages"][0]
                message["id"] = f"wamid.{n}.{kind}"
                if kind == "text":
                    message["text"]["body"] = hostile
                elif kind == "document":
                    message["document"]["filename"] = hostile
                else:
                    message["location"]["name"] = hostile
                bodies.append(body)
            # \u escapes, as a server may send them: lone surrogates included
            results = [r for body in bodies for r in wa.parse_push(json.dumps(body).encode(), {})]
            assert not [r.rejected for r in results if r.rejected], case["id"]
            ingest.ingest(db, "wa", results)
            texts = [r[0] for r in db.conn.execute("SELECT text FROM messages WHERE conversation_id=? ORDER BY id",
                                                   (f"wa:US.{n}",))]
            stored = ingest.clean_text(hostile)  # as received, but a lone surrogate (SQLite cannot keep one)
            assert texts[2] == stored, case["id"]  # the text message
            assert stored in texts[0] and stored in texts[1], case["id"]  # the file name, the place's name
    finally:
        db.close()
    for n in range(len(cases)):
        capsys.readouterr()
        assert main(["--data-dir", str(tmp_path / "ws"), "show", f"wa:US.{n}"]) == 0
        shown = capsys.readouterr().out
        raw_controls = [ch for ch in shown if (ord(ch) < 32 and ch not in "\n\t") or 0x7F <= ord(ch) < 0xA0
                        or ch in BIDI_CONTROLS]
        assert raw_controls == [], cases[n]["id"]
