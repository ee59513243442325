"""Zendesk escalation through httpx.MockTransport, shaped as the Zendesk API documents it
(``zendesk_fake``), on real SQLite workspaces with the demo shop's conversations and the suite's
fixed clock: the ticket and its transcript, idempotent create (the same key twice is one ticket),
the lookup after an uncertain create, status follow (reads and the incremental export), notes as
private comments, offline, a 429 with Retry-After, the rate-limit headers, an invalid token."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from replydesk import secrets
from replydesk.config import (
    Config,
    ConfigError,
    EscalationSettings,
    EscalationTarget,
    SyncSettings,
    parse_config,
)
from replydesk.providers.demo import DemoOptions
from replydesk.providers.zendesk import ZendeskOptions, ZendeskProvider
from replydesk.storage import accounts, actions, outbox, queries
from replydesk.workspace import Workspace
from support import Clock
from zendesk_fake import FakeZendesk


@pytest.fixture
def desk(clock: Clock) -> FakeZendesk:
    return FakeZendesk(clock)


@pytest.fixture
def token(file_keyring) -> None:
    secrets.store("shop-zendesk", "zd-api-token")


def zd_options(**kw: Any) -> ZendeskOptions:
    return ZendeskOptions(name="shop-zendesk", subdomain="shop", email="agent@shop.example", **kw)


class Shop:
    """The demo shop with a Zendesk account as the ``zendesk`` escalation target."""

    def __init__(self, path: Path, clock: Clock, desk: FakeZendesk, **zd: Any) -> None:
        self.clock, self.desk = clock, desk
        config = Config(accounts=[DemoOptions(name="demo"), zd_options(**zd)],
                        escalation=EscalationSettings(targets={"zendesk": EscalationTarget(account="shop-zendesk")}),
                        sync=SyncSettings(retry_base=1.0, retry_max=5.0, send_retries=5))
        self.ws = Workspace(path, config, clock=clock)
        self.db = self.ws.open_db()
        self.engine = self.ws.engine(self.db)
        run = self.engine.accounts["shop-zendesk"]
        wired = ZendeskProvider("shop-zendesk", run.provider.options, secrets.getter("shop-zendesk"),
                                transport=desk.transport, clock=clock)
        wired.tickets_to_follow = run.provider.tickets_to_follow
        run.provider = wired
        self.run()

    @property
    def provider(self) -> ZendeskProvider:
        return self.engine.accounts["shop-zendesk"].provider

    def run(self, passes: int = 1, advance: float = 10.0) -> None:
        for _ in range(passes):
            asyncio.run(self.engine.run_once())
            self.clock.advance(advance)

    def conversation(self, n: int = 0) -> str:
        rows = queries.inbox_page(self.db, queries.InboxFilter(), 0, 40)
        return [r.id for r in rows if not r.reply_windows and r.kind != "email"][n]

    def escalate(self, conv: str, note: str = "") -> str:
        with self.db.transaction():
            actions.escalate(self.db, [conv], target="zendesk", reason="refund", note=note)
            return outbox.queue_ticket(self.db, conv, account="shop-zendesk", target="zendesk", reason="refund",
                                       note=note)


@pytest.fixture
def shop(tmp_path: Path, clock: Clock, desk: FakeZendesk, token: None) -> Shop:
    return Shop(tmp_path / "ws", clock, desk)


def test_an_escalation_becomes_a_zendesk_ticket_with_the_transcript(shop: Shop) -> None:
    conv = shop.conversation()
    key = shop.escalate(conv, note="charged twice")
    shop.run()
    (post,) = shop.desk.requests("POST", r"/tickets\.json$")
    assert post.headers["idempotency-key"] == key
    ticket = json.loads(post.content)["ticket"]
    row = queries.get_row(shop.db, conv)
    thread = queries.thread(shop.db, conv)
    assert ticket["external_id"] == conv and ticket["priority"] == "high"  # escalating raised it to high
    assert ticket["subject"] == (row.subject or ticket["subject"]) and len(ticket["subject"]) <= 150
    assert ticket["requester"] == {"name": row.customer}
    assert ticket["comment"]["public"] is False
    body = ticket["comment"]["body"]
    assert f"conversation {conv}" in body and "Reason: refund" in body and "Note: charged twice" in body
    for m in thread.messages:
        if m.direction in ("in", "out"):
            assert m.text in body
    assert "replydesk" in ticket["tags"] and f"replydesk_{row.platform}" in ticket["tags"]
    assert all(" " not in t for t in ticket["tags"])
    (shown,) = thread.tickets
    assert (shown.summary(), shown.url) == ("Zendesk #1234 · new", "https://shop.zendesk.com/agent/tickets/1234")
    item = outbox.get(shop.db, key)
    assert item.state == "sent" and item.result["url"] == "https://shop.zendesk.com/agent/tickets/1234"


def test_an_email_customer_is_the_requester_with_their_address(shop: Shop, desk: FakeZendesk) -> None:
    from replydesk.model import OutgoingAction

    payload = {"subject": "Where is my order?", "requester": {"name": "Ann Lee", "handle": "ann@example.org"},
               "priority": "urgent", "tags": ["vip customer"], "external_id": "shop-mail:t1", "platform": "email",
               "transcript": [{"at": "2026-11-23T09:00:00Z", "from": "customer", "author": "Ann Lee", "text": "Hi!"}]}
    action = OutgoingAction("k-mail", "create_ticket", "shop-zendesk", "shop-mail:t1", "t1", "email", payload)
    asyncio.run(shop.provider.perform(action))
    ticket = json.loads(desk.requests("POST", r"/tickets\.json$")[-1].content)["ticket"]
    assert ticket["requester"] == {"name": "Ann Lee", "email": "ann@example.org"}
    assert ticket["priority"] == "urgent" and "vip_customer" in ticket["tags"] and "replydesk_email" in ticket["tags"]


def test_the_same_key_twice_is_one_ticket(shop: Shop, desk: FakeZendesk) -> None:
    conv = shop.conversation()
    key = shop.escalate(conv)
    action = shop.engine._action(outbox.get(shop.db, key))
    first = asyncio.run(shop.provider.perform(action))
    second = asyncio.run(shop.provider.perform(action))
    assert first.remote_id == second.remote_id == "1234" and list(desk.tickets) == [1234]
    assert desk.calls[-1].method == "POST"
    # another create (another key) is another ticket: the key, not the conversation, makes it one
    other = shop.engine._action(outbox.get(shop.db, shop.escalate(conv)))
    assert asyncio.run(shop.provider.perform(other)).remote_id == "1235"


@pytest.mark.parametrize("landed", [True, False], ids=["the-ticket-was-made", "it-was-not"])
def test_an_uncertain_create_is_looked_up_by_external_id_before_a_retry(shop: Shop, desk: FakeZendesk,
                                                                       landed: bool) -> None:
    conv = shop.conversation()
    key = shop.escalate(conv)
    if landed:  # Zendesk made the ticket, the answer was lost on the way back
        desk.after_create.append(httpx.ReadTimeout("timed out"))
    else:  # the request was lost before Zendesk read it
        desk.before.append(httpx.ReadTimeout("timed out"))
    shop.run()
    item = outbox.get(shop.db, key)
    assert item.state == "queued" and item.attempts == 1  # uncertain: it may exist
    shop.run(advance=30)
    shop.run()
    lookups = desk.requests("GET", r"/tickets\.json$")
    assert lookups and lookups[0].url.params["external_id"] == conv
    assert list(desk.tickets) == [1234]  # one ticket either way
    posts = desk.requests("POST", r"/tickets\.json$")
    assert len(posts) == (1 if landed else 2) and {p.headers["idempotency-key"] for p in posts} == {key}
    item = outbox.get(shop.db, key)
    assert item.state == "sent" and item.remote_id == "1234"
    assert [t.ticket_id for t in queries.thread(shop.db, conv).tickets] == ["1234"]


def test_the_ticket_status_is_followed_and_a_solved_ticket_resolves_where_asked(tmp_path, clock, desk,
                                                                                token) -> None:
    shop = Shop(tmp_path / "ws", clock, desk, resolve_when_solved=True)
    conv = shop.conversation()
    shop.escalate(conv)
    shop.run()
    desk.set_status(1234, "pending")
    shop.run()
    (show,) = desk.requests("GET", r"/show_many\.json$")[-1:]
    assert show.url.params["ids"] == "1234"
    assert [t.summary() for t in queries.thread(shop.db, conv).tickets] == ["Zendesk #1234 · pending"]
    assert queries.get_row(shop.db, conv).status == "open"
    desk.set_status(1234, "solved")
    shop.run()
    assert queries.get_row(shop.db, conv).status == "resolved"
    events = [json.loads(r[0]) for r in shop.db.conn.execute(
        "SELECT data FROM events WHERE conversation_id=? AND kind='ticket_status' ORDER BY seq", (conv,))]
    assert [(e["status"], e["from"]) for e in events] == [("pending", "new"), ("solved", "pending")]
    desk.set_status(1234, "closed")
    shop.run()
    before = len(desk.requests("GET", r"/show_many\.json$"))
    shop.run()
    assert len(desk.requests("GET", r"/show_many\.json$")) == before  # a closed ticket is no longer read


def test_a_solved_ticket_leaves_the_conversation_open_by_default(shop: Shop, desk: FakeZendesk) -> None:
    conv = shop.conversation()
    shop.escalate(conv)
    shop.run()
    desk.set_status(1234, "solved")
    shop.run()
    assert [t.summary() for t in queries.thread(shop.db, conv).tickets] == ["Zendesk #1234 · solved"]
    assert queries.get_row(shop.db, conv).status == "open"
    del desk.tickets[1234]  # deleted in Zendesk: show_many leaves it out, and it is followed no more
    shop.run()
    assert [t.summary() for t in queries.thread(shop.db, conv).tickets] == ["Zendesk #1234 · deleted"]
    before = len(desk.requests("GET", r"/show_many\.json$"))
    shop.run()
    assert len(desk.requests("GET", r"/show_many\.json$")) == before


def test_the_incremental_export_follows_statuses(tmp_path, clock, desk, token) -> None:
    shop = Shop(tmp_path / "ws", clock, desk, follow="export")
    conv = shop.conversation()
    shop.escalate(conv)
    shop.run()
    desk.set_status(1234, "hold")
    shop.run()
    assert [t.summary() for t in queries.thread(shop.db, conv).tickets] == ["Zendesk #1234 · hold"]
    exports = desk.requests("GET", r"/incremental/tickets/cursor\.json$")
    assert "start_time" in exports[0].url.params and "cursor" in exports[-1].url.params  # then from the cursor
    assert not desk.requests("GET", r"/show_many\.json$")


def test_later_notes_go_to_the_ticket_as_private_comments_once_and_in_order(shop: Shop, desk: FakeZendesk) -> None:
    conv = shop.conversation()
    actions.add_note(shop.db, conv, "before the escalation: stays here")
    shop.escalate(conv, note="charged twice")
    desk.before.append(httpx.ConnectError("network down"))  # offline: the create waits in the outbox
    shop.run()
    actions.add_note(shop.db, conv, "called the bank, refund on its way")
    shop.run(advance=30)
    shop.run()
    puts = desk.requests("PUT", r"/tickets/1234\.json$")
    assert [json.loads(p.content)["ticket"]["comment"] for p in puts] == [
        {"body": "called the bank, refund on its way", "public": False}]
    posts = desk.requests("POST", r"/tickets\.json$")  # the first never reached Zendesk
    assert list(desk.tickets) == [1234] and len({p.headers["idempotency-key"] for p in posts}) == 1
    actions.add_note(shop.db, conv, "refund done")
    shop.run()
    shop.run()
    bodies = [c["body"] for c in desk.comments[1234][1:]]
    assert bodies == ["called the bank, refund on its way", "refund done"]  # the escalation's note rode along
    assert "Note: charged twice" in desk.comments[1234][0]["body"]
    kinds = [a.action for a in queries.thread(shop.db, conv).actions]
    assert kinds == ["create_ticket", "ticket_comment", "ticket_comment"]


def test_notes_stay_here_when_the_account_says_so(tmp_path, clock, desk, token) -> None:
    shop = Shop(tmp_path / "ws", clock, desk, notes_as_comments=False)
    conv = shop.conversation()
    shop.escalate(conv)
    shop.run()
    actions.add_note(shop.db, conv, "internal only")
    shop.run()
    assert not desk.requests("PUT", r"/tickets/\d+\.json$")


def test_an_uncertain_comment_is_looked_up_among_the_tickets_comments(shop: Shop, desk: FakeZendesk) -> None:
    conv = shop.conversation()
    shop.escalate(conv)
    shop.run()
    actions.add_note(shop.db, conv, "checked the logs")
    desk.after_update.append(httpx.ReadTimeout("timed out"))  # the comment lands, its answer does not
    shop.run()
    shop.run(advance=30)
    shop.run()
    assert [c["body"] for c in desk.comments[1234][1:]] == ["checked the logs"]  # once
    assert desk.requests("GET", r"/tickets/1234/comments\.json$")
    (comment,) = [a for a in queries.thread(shop.db, conv).actions if a.action == "ticket_comment"]
    assert comment.state == "sent"


def test_a_429_waits_for_retry_after_without_spending_a_request(shop: Shop, desk: FakeZendesk) -> None:
    conv = shop.conversation()
    key = shop.escalate(conv)
    desk.before.append(httpx.Response(429, headers={"Retry-After": "45"}, json={"error": "APIRateLimitExceeded"}))
    now = shop.clock.now
    shop.run(advance=0)
    item = outbox.get(shop.db, key)
    assert (item.state, item.attempts, item.not_before) == ("queued", 0, now + 45)
    assert accounts.status_of(shop.db, "shop-zendesk").state == "rate_limited"
    assert accounts.rate_limits_in_force(shop.db, now) == {"shop-zendesk": now + 45}
    calls = len(desk.calls)
    shop.clock.advance(30)
    shop.run(advance=0)
    assert len(desk.calls) == calls  # nothing spent before the reset
    shop.clock.advance(20)
    shop.run()
    assert outbox.get(shop.db, key).state == "sent" and list(desk.tickets) == [1234]


def test_an_exhausted_window_waits_for_its_reset(shop: Shop, desk: FakeZendesk) -> None:
    desk.remaining = 1  # the next answer says 0 left, resets in 42 s (ratelimit-reset)
    conv = shop.conversation()
    shop.escalate(conv)
    now = shop.clock.now
    shop.run(advance=0)
    assert shop.provider.gate.blocked_until == now + 42
    shop.escalate(shop.conversation(1))
    calls = len(desk.calls)
    shop.run(advance=0)
    assert len(desk.calls) == calls
    # X-Rate-Limit-Remaining alone (no reset header): a minute, Zendesk's window
    desk.before.append(httpx.Response(200, json={"tickets": []}, headers={"X-Rate-Limit-Remaining": "0"}))
    shop.clock.advance(60)
    shop.provider.tickets_to_follow = lambda: ["1234"]
    asyncio.run(shop.provider.fetch({}))
    assert shop.provider.gate.blocked_until == shop.clock.now + 60


def test_an_invalid_token_stops_the_account_and_keeps_the_ticket_queued(shop: Shop, desk: FakeZendesk) -> None:
    secrets.store("shop-zendesk", "revoked-token")
    conv = shop.conversation()
    key = shop.escalate(conv)
    shop.run()
    status = accounts.status_of(shop.db, "shop-zendesk")
    assert status.state == "auth_error" and "re-login needed" in status.detail
    assert "Couldn't authenticate you" in status.detail
    item = outbox.get(shop.db, key)
    assert (item.state, item.attempts) == ("queued", 0) and not desk.tickets
    sent = desk.requests("POST", r"/tickets\.json$")[0].headers["authorization"]
    assert base64.b64decode(sent.split()[1]).decode() == "agent@shop.example/token:revoked-token"
    assert "revoked-token" not in status.detail


def test_oauth_tokens_are_sent_as_bearer(tmp_path, clock, desk, token) -> None:
    p = ZendeskProvider("shop-zendesk", zd_options(auth="oauth"), lambda: "oauth-access", transport=desk.transport,
                        clock=clock)
    p.tickets_to_follow = lambda: ["1"]
    with pytest.raises(Exception, match="OAuth token was refused"):
        asyncio.run(p.fetch({}))
    assert desk.calls[-1].headers["authorization"] == "Bearer oauth-access"


def test_the_config_checks_a_zendesk_account(tmp_path) -> None:
    text = "accounts:\n  - {name: z, provider: zendesk, subdomain: shop}\n"
    with pytest.raises(ConfigError, match="auth: token needs the agent's email"):
        parse_config(text, tmp_path / "config.yaml")
    text = "accounts:\n  - {name: z, provider: zendesk, subdomain: Shop.Example}\n"
    with pytest.raises(ConfigError, match="subdomain"):
        parse_config(text, tmp_path / "config.yaml")
    ok = parse_config("accounts:\n  - {name: z, provider: zendesk, subdomain: shop, auth: oauth}\n"
                      "escalation: {targets: {zendesk: {account: z}}}\n", tmp_path / "config.yaml")
    assert ok.ticket_account("zendesk") == "z"
