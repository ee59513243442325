"""The engine under every fault class, against a tiny HTTP platform (httpx.MockTransport) and the demo.

A fake clock drives storage, the engine and the platform, so "did not call before the reset" is
checked by counting requests, not by sleeping.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from replydesk import cli
from replydesk.config import Config, SyncSettings, demo_config
from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.providers.base import Capabilities, Provider
from replydesk.providers.demo import DemoFaults, DemoOptions, DemoProvider, DemoRemote
from replydesk.providers.http import (
    RateGate,
    make_client,
    parse_reset,
    parse_retry_after,
    raise_for_status,
    send_request,
    wait_until,
)
from replydesk.storage import actions, ingest, outbox, queries, search
from replydesk.storage.db import Database
from replydesk.sync import SyncEngine, backoff_delay
from support import FIXED_NOW, Clock, make_workspace, sync_once

Reply = Callable[[httpx.Request], httpx.Response]


class FakeShop:
    """The platform's server: records every request; answers from a script, else succeeds.

    POST /replies honours ``Idempotency-Key`` like Mastodon (a repeated key returns the first post).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.requests: list[tuple[float, str, httpx.Request]] = []
        self.script: dict[str, list[Reply]] = defaultdict(list)
        self.posts: list[dict[str, Any]] = []
        self.by_key: dict[str, dict[str, Any]] = {}

    def calls(self, route: str | None = None) -> int:
        return sum(1 for _, r, _ in self.requests if route is None or r == route)

    def then(self, route: str, *answers: Reply) -> None:
        self.script[route].extend(answers)

    def handler(self, request: httpx.Request) -> httpx.Response:
        route = f"{request.method} {request.url.path}"
        self.requests.append((self.clock(), route, request))
        if self.script[route]:
            return self.script[route].pop(0)(request)
        if route == "POST /replies":
            body = json.loads(request.content)
            key = request.headers.get("Idempotency-Key", "")
            if key not in self.by_key:
                post = {"id": f"r{len(self.posts) + 1}", **body}
                self.posts.append(post)
                self.by_key[key] = post
            return httpx.Response(200, json=self.by_key[key])
        if route == "GET /replies":
            post = self.by_key.get(request.url.params.get("key", ""))
            return httpx.Response(200, json=[post] if post else [])
        return httpx.Response(200, json=[])


def status(code: int, **headers: str) -> Reply:
    return lambda request: httpx.Response(code, headers=headers, json={"error": "scripted"})


def raises(exc_type: type[httpx.HTTPError], message: str = "scripted") -> Reply:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return answer


class HttpShop(Provider):
    """A minimal HTTP provider built on ``providers.http``, the plumbing the real adapters share."""

    platform = "shop"
    capabilities = Capabilities(supports_idempotency=True)

    def __init__(self, account: str, server: FakeShop, clock: Clock, caps: Capabilities | None = None) -> None:
        super().__init__(account, {}, lambda: "token")
        self.clock = clock
        self.gate = RateGate("shop", clock)
        if caps is not None:
            self.capabilities = caps
        self.client = make_client(httpx.MockTransport(server.handler))

    async def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        self.gate.check()
        request = self.client.build_request(method, f"https://shop.test{path}", **kw)
        response = await send_request(self.client, request, "shop")
        raise_for_status(response, "shop", self.gate)
        return response

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        await self._call("GET", "/messages")
        return [FetchResult(messages=[], cursor={"t": self.clock()})]

    async def send(self, reply: OutgoingReply) -> SendResult:
        r = await self._call("POST", "/replies", headers={"Idempotency-Key": reply.key},
                             json={"conversation": reply.conversation_native_id, "text": reply.text})
        return SendResult(remote_id=r.json()["id"], sent_at=self.clock())

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        found = (await self._call("GET", "/replies", params={"key": reply.key})).json()
        return SendResult(remote_id=found[0]["id"], sent_at=self.clock()) if found else None


# ---- fixtures ---------------------------------------------------------------------------------------


def _msg(conv: str, n: int = 0) -> IncomingMessage:
    return IncomingMessage(native_id=f"{conv}-m{n}", conversation_native_id=conv, platform="mastodon",
                           kind="dm", contact=Contact(f"u-{conv}", "Amani"), text="hello?",
                           created_at=FIXED_NOW - 600 + n)


class Rig:
    """A workspace with two accounts: ``shop`` (HttpShop over FakeShop) and ``demo`` (the demo platform)."""

    def __init__(self, tmp_path: Path, clock: Clock, caps: Capabilities | None = None, **sync: Any) -> None:
        self.clock = clock
        self.dir = tmp_path / "ws"
        settings = SyncSettings(**{"send_retries": 4, "retry_base": 1.0, "retry_max": 60.0, **sync})
        self.config = Config(accounts=[DemoOptions(name="shop", backlog=0),
                                       DemoOptions(name="demo", backlog=5, pace=1e6)],
                             sync=settings)
        self.ws = make_workspace(self.dir, clock, config=self.config)
        self.db: Database = self.ws.open_db()
        self.server = FakeShop(clock)
        self.caps = caps
        self.engine = self.new_engine()
        ingest.ingest(self.db, "shop", [FetchResult(messages=[_msg("x"), _msg("y"), _msg("z")], cursor={})])

    def new_engine(self) -> SyncEngine:
        """A fresh engine (as after a restart) on the same workspace and the same server."""
        engine = SyncEngine(self.config, self.db, self.dir, clock=self.clock)
        engine.accounts["shop"].provider = HttpShop("shop", self.server, self.clock, self.caps)
        return engine

    def run(self, passes: int = 1) -> None:
        for _ in range(passes):
            asyncio.run(self.engine.run_once())

    def status(self, account: str = "shop") -> dict[str, Any]:
        return {s["account"]: s for s in queries.account_states(self.db)}[account]

    def posted_texts(self) -> list[str]:
        return [p["text"] for p in self.server.posts]


@pytest.fixture
def rig(tmp_path: Path, clock: Clock) -> Rig:
    return Rig(tmp_path, clock)


# ---- 4. faults: 5xx, timeouts, resets, DNS ----------------------------------------------------------


@pytest.mark.parametrize("answer", [
    status(503), status(500), status(502),
    raises(httpx.ReadTimeout, "timed out"),
    raises(httpx.RemoteProtocolError, "Server disconnected without sending a response."),
    raises(httpx.ReadError, "[Errno 104] Connection reset by peer"),
], ids=["503", "500", "502", "read-timeout", "disconnect", "reset"])
def test_transient_faults_back_off_exponentially_then_fail_with_reason(rig: Rig, answer: Reply) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "on its way")
    rig.server.then("POST /replies", *[answer] * 10)
    delays = []
    for attempt in range(1, 5):
        rig.run()
        assert rig.server.calls("POST /replies") == attempt  # one request per pass, none while waiting
        item = outbox.get(rig.db, key)
        if attempt < 4:
            assert item.state == "queued" and item.last_error
            delays.append(item.not_before - rig.clock.now)
            rig.run()  # not due yet: nothing is sent
            assert rig.server.calls("POST /replies") == attempt
            rig.clock.advance(delays[-1] + 0.01)
    for n, delay in enumerate(delays, start=1):  # 1, 2, 4 s plus up to 1 s of jitter
        assert 2 ** (n - 1) <= delay <= 2 ** (n - 1) + 1
    item = outbox.get(rig.db, key)
    assert item.state == "failed" and "after 4 attempts" in item.last_error
    msg = rig.db.conn.execute("SELECT state, error FROM messages WHERE id=?", (item.message_id,)).fetchone()
    assert msg[0] == "failed" and msg[1] == item.last_error  # the reason shows in the thread
    assert "1 reply failed" in rig.status()["detail"]  # and in the status bar


def test_backoff_has_jitter_and_a_ceiling() -> None:
    samples = {round(backoff_delay(3, 1.0, 60.0), 6) for _ in range(20)}
    assert len(samples) > 1 and all(4 <= s <= 5 for s in samples)
    assert backoff_delay(30, 1.0, 60.0) == 60.0


def test_dns_failure_means_offline_replies_wait_without_using_up_retries(rig: Rig) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "hello")
    dns = raises(httpx.ConnectError, "[Errno -3] Temporary failure in name resolution")
    rig.server.then("GET /messages", *[dns] * 5)
    waits = []
    for _ in range(5):
        rig.run()
        st = rig.status()
        assert st["state"] == "offline" and "DNS" in st["detail"]
        waits.append(st["until"] - rig.clock.now)
        rig.clock.advance(waits[-1] + 0.01)
    assert waits == sorted(waits) and waits[-1] > waits[0]  # exponential backoff between probes
    item = outbox.get(rig.db, key)
    assert item.state == "queued" and item.attempts == 0
    rig.run()  # the network is back
    assert outbox.get(rig.db, key).state == "sent"


def test_connect_error_while_sending_keeps_the_reply_queued(rig: Rig) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "hello")
    rig.server.then("POST /replies", raises(httpx.ConnectError, "[Errno 111] Connection refused"))
    rig.run()
    item = outbox.get(rig.db, key)
    assert (item.state, item.attempts) == ("queued", 0) and item.last_error.startswith("offline")
    rig.clock.advance(120)
    rig.run()
    assert outbox.get(rig.db, key).state == "sent"


# ---- 4. rate limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_429_waits_until_retry_after_without_spending_requests(rig: Rig, header: str) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "hello")
    value = "120" if header == "seconds" else email.utils.formatdate(FIXED_NOW + 120, usegmt=True)
    rig.server.then("POST /replies", status(429, **{"Retry-After": value}))
    rig.run()
    calls = rig.server.calls()
    st = rig.status()
    assert st["state"] == "rate_limited" and st["until"] == pytest.approx(FIXED_NOW + 120)
    item = outbox.get(rig.db, key)
    assert item.state == "queued" and item.attempts == 0 and "rate limited until" in item.last_error
    for _ in range(4):  # 4 × 29 s: still inside the window, including after a restart
        rig.clock.advance(29)
        rig.run()
        rig.engine = rig.new_engine()
    assert rig.server.calls() == calls  # not one request before the reset
    rig.clock.advance(5)
    rig.run()
    assert outbox.get(rig.db, key).state == "sent" and rig.status()["state"] == "ok"


def test_ratelimit_remaining_zero_waits_for_the_reset_before_the_next_request(rig: Rig) -> None:
    reset = "2026-11-23T10:05:00Z"  # FIXED_NOW + 300, Mastodon's ISO format
    rig.server.then("GET /messages", lambda r: httpx.Response(
        200, json=[], headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}))
    rig.run()
    calls = rig.server.calls()
    key = outbox.queue_reply(rig.db, "shop:x", "hello")
    rig.clock.advance(60)
    rig.run()
    assert rig.server.calls() == calls  # refused locally: the window is spent
    st = rig.status()
    assert st["state"] == "rate_limited" and st["until"] == pytest.approx(FIXED_NOW + 300)
    assert outbox.get(rig.db, key).state == "queued"
    rig.clock.advance(241)
    rig.run()
    assert outbox.get(rig.db, key).state == "sent"


def test_rate_limit_header_formats() -> None:
    now = FIXED_NOW
    assert parse_retry_after("30", now) == now + 30
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == now + 90
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == now  # already past
    assert parse_retry_after("soon", now) is None
    assert parse_reset(str(int(now + 40)), now) == now + 40  # epoch
    assert parse_reset("15", now) == now + 15  # delay (IETF draft)
    assert parse_reset("2026-11-23T10:01:00.000Z", now) == now + 60  # ISO (Mastodon)
    assert wait_until({}, now) == now + 60  # a bare 429: a minute


# ---- 4. auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [401, 403])
def test_auth_error_stops_only_that_account_and_keeps_replies_queued(rig: Rig, code: int) -> None:
    sync_once(rig.ws)  # the demo account's conversations
    shop_key = outbox.queue_reply(rig.db, "shop:x", "hello")
    demo_conv = rig.db.conn.execute("SELECT id FROM conversations WHERE account='demo' LIMIT 1").fetchone()[0]
    rig.server.then("GET /messages", status(code))
    rig.run()
    calls = rig.server.calls()
    demo_key = outbox.queue_reply(rig.db, demo_conv, "thanks")
    for _ in range(3):
        rig.clock.advance(600)
        rig.run()
    st = rig.status()
    assert st["state"] == "auth_error" and "re-login needed" in st["detail"]
    assert rig.server.calls() == calls  # a stopped account makes no requests
    assert outbox.get(rig.db, shop_key).state == "queued"
    assert outbox.get(rig.db, demo_key).state == "sent"  # the other account kept working
    assert rig.status("demo")["state"] == "ok"
    rig.engine = rig.new_engine()  # after "replydesk login", the engine is restarted
    rig.run()
    assert outbox.get(rig.db, shop_key).state == "sent"


# ---- 3. order per conversation -------------------------------------------------------------------------


def test_failed_reply_blocks_its_conversation_only_until_retried(rig: Rig) -> None:
    a = outbox.queue_reply(rig.db, "shop:x", "x first")
    b = outbox.queue_reply(rig.db, "shop:x", "x second")
    c = outbox.queue_reply(rig.db, "shop:y", "y only")
    rig.server.then("POST /replies", status(422))
    rig.run(2)
    assert outbox.get(rig.db, a).state == "failed" and "HTTP 422" in outbox.get(rig.db, a).last_error
    assert outbox.get(rig.db, b).state == "queued" and outbox.get(rig.db, c).state == "sent"
    assert rig.posted_texts() == ["y only"]
    outbox.retry(rig.db, a, text="x first, edited")
    rig.run()
    assert rig.posted_texts() == ["y only", "x first, edited", "x second"]


def test_discarding_a_failed_reply_releases_the_next(rig: Rig) -> None:
    a = outbox.queue_reply(rig.db, "shop:x", "wrong")
    outbox.queue_reply(rig.db, "shop:x", "right")
    rig.server.then("POST /replies", status(400))
    rig.run()
    outbox.cancel(rig.db, a)
    rig.run()
    assert rig.posted_texts() == ["right"]


def test_transient_failure_keeps_later_replies_behind_it(rig: Rig) -> None:
    outbox.queue_reply(rig.db, "shop:x", "one")
    outbox.queue_reply(rig.db, "shop:x", "two")
    outbox.queue_reply(rig.db, "shop:x", "three")
    rig.server.then("POST /replies", status(503), status(503))
    for _ in range(6):
        rig.run()
        rig.clock.advance(10)
    assert rig.posted_texts() == ["one", "two", "three"]


def test_edit_between_read_and_send_is_what_leaves(rig: Rig) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "draft")
    stale = outbox.ready(rig.db, "shop")[0]
    outbox.retry(rig.db, key, text="final")  # the UI edits after the engine read the row
    asyncio.run(rig.engine.send_one(rig.engine.accounts["shop"], stale))
    assert rig.posted_texts() == ["final"]


def test_discard_between_read_and_send_wins(rig: Rig) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "oops")
    stale = outbox.ready(rig.db, "shop")[0]
    outbox.cancel(rig.db, key)
    asyncio.run(rig.engine.send_one(rig.engine.accounts["shop"], stale))
    assert rig.server.calls("POST /replies") == 0 and outbox.get(rig.db, key).state == "cancelled"


# ---- 2. rows left in 'sending' by a crash ----------------------------------------------------------------


def _crashed_mid_send(rig: Rig, text: str = "hello", delivered: bool = True) -> str:
    """Simulate a kill after the platform accepted the post (or not) but before we recorded it."""
    key = outbox.queue_reply(rig.db, "shop:x", text)
    outbox.mark_sending(rig.db, key)
    if delivered:
        post = {"id": "r-early", "conversation": "x", "text": text}
        rig.server.posts.append(post)
        rig.server.by_key[key] = post
    return key


def test_idempotent_platform_gets_the_same_key_again(rig: Rig) -> None:
    key = _crashed_mid_send(rig)
    rig.engine = rig.new_engine()
    rig.run()
    item = outbox.get(rig.db, key)
    assert (item.state, item.remote_id) == ("sent", "r-early")
    sent_keys = [r.headers["Idempotency-Key"] for _, route, r in rig.server.requests if route == "POST /replies"]
    assert sent_keys == [key] and len(rig.server.posts) == 1


@pytest.mark.parametrize("delivered", [True, False])
def test_lookup_capable_platform_is_asked_before_resending(tmp_path: Path, clock: Clock, delivered: bool) -> None:
    rig = Rig(tmp_path, clock, caps=Capabilities(can_lookup_sent=True))
    key = _crashed_mid_send(rig, delivered=delivered)
    rig.engine = rig.new_engine()
    rig.run()
    assert rig.server.calls("GET /replies") == 1
    assert rig.server.calls("POST /replies") == (0 if delivered else 1)
    assert outbox.get(rig.db, key).state == "sent" and len(rig.server.posts) == 1


def test_platform_that_cannot_tell_gets_unknown_and_asks_the_user(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path, clock, caps=Capabilities())
    key = _crashed_mid_send(rig)
    later = outbox.queue_reply(rig.db, "shop:x", "after it")
    rig.engine = rig.new_engine()
    rig.run()
    item = outbox.get(rig.db, key)
    assert item.state == "unknown" and "check it there" in item.last_error
    assert rig.server.calls("POST /replies") == 0  # no guessing
    assert outbox.get(rig.db, later).state == "queued"  # and nothing overtakes it
    outbox.confirm_sent(rig.db, key)  # the user looked: it is there
    rig.run()
    assert outbox.get(rig.db, later).state == "sent" and len(rig.server.posts) == 2


def test_timeout_on_a_platform_without_idempotency_is_not_resent_blindly(tmp_path: Path, clock: Clock) -> None:
    rig = Rig(tmp_path, clock, caps=Capabilities())
    key = outbox.queue_reply(rig.db, "shop:x", "hello")
    rig.server.then("POST /replies", raises(httpx.ReadTimeout, "timed out"))
    rig.run()
    rig.clock.advance(10)
    rig.run()
    assert outbox.get(rig.db, key).state == "unknown" and rig.server.calls("POST /replies") == 1
    outbox.retry(rig.db, key)  # the user checked: not there, send it
    rig.run()
    assert outbox.get(rig.db, key).state == "sent"


def test_demo_platform_never_ends_unknown(tmp_path: Path, clock: Clock) -> None:
    ws = make_workspace(tmp_path, clock, config=demo_config(faults=DemoFaults(lost_ack=1.0)))
    sync_once(ws)
    db = ws.open_db()
    conv = db.conn.execute("SELECT id FROM conversations WHERE reply_window IS NULL LIMIT 1").fetchone()[0]
    key = outbox.queue_reply(db, conv, "hello")
    for _ in range(3):  # every answer lost: stays queued and is resent with the same key
        sync_once(ws)
        clock.advance(30)
        assert outbox.get(db, key).state == "queued"
    outbox.mark_sending(db, key)  # and a crash mid-send on top
    ok = make_workspace(tmp_path, clock)
    sync_once(ok)
    assert outbox.get(db, key).state == "sent"
    assert [e["key"] for e in DemoRemote(tmp_path).ledger()] == [key]


def test_reply_cut_off_on_an_account_since_removed_asks_the_user(tmp_path: Path, clock: Clock) -> None:
    ws = make_workspace(tmp_path, clock)
    sync_once(ws)
    db = ws.open_db()
    conv = db.conn.execute("SELECT id FROM conversations WHERE reply_window IS NULL LIMIT 1").fetchone()[0]
    key = outbox.queue_reply(db, conv, "hello")
    outbox.mark_sending(db, key)  # the process died mid-send; then the demo account left the config
    empty = make_workspace(tmp_path, clock, config=Config())
    asyncio.run(empty.engine(empty.open_db()).reconcile_in_flight())
    item = outbox.get(db, key)
    assert item.state == "unknown" and "no longer in the config" in item.last_error  # not 'sending' forever
    assert DemoRemote(tmp_path).ledger() == []


# ---- 8. send later -----------------------------------------------------------------------------------


def test_scheduled_reply_leaves_on_time_across_a_restart(rig: Rig) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "good morning", at=FIXED_NOW + 3600)
    rig.run()
    rig.clock.advance(3599)
    rig.engine = rig.new_engine()  # a restart in between
    rig.run()
    assert rig.server.calls("POST /replies") == 0 and outbox.get(rig.db, key).state == "queued"
    rig.clock.advance(1)
    rig.run()
    assert outbox.get(rig.db, key).state == "sent" and rig.server.posts[0]["text"] == "good morning"


def test_scheduled_reply_leaves_at_the_next_run_after_its_time(rig: Rig) -> None:
    key = outbox.queue_reply(rig.db, "shop:x", "sorry for the wait", at=FIXED_NOW + 600)
    rig.clock.advance(3 * 3600)  # the app was closed when it came due
    rig.engine = rig.new_engine()
    rig.run()
    assert outbox.get(rig.db, key).state == "sent"


def test_scheduled_reply_does_not_hold_back_a_reply_for_now(rig: Rig) -> None:
    outbox.queue_reply(rig.db, "shop:x", "tomorrow's update", at=FIXED_NOW + 86400)
    outbox.queue_reply(rig.db, "shop:x", "thanks, noted")
    rig.run()
    assert rig.posted_texts() == ["thanks, noted"]
    rig.clock.advance(86400)
    rig.run()
    assert rig.posted_texts() == ["thanks, noted", "tomorrow's update"]


def test_cli_reply_at_is_stored_and_sent_after_a_restart(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import time

    data = tmp_path / "ws"
    start = time.time()
    ws = make_workspace(data, Clock(start))
    sync_once(ws)
    conv = ws.open_db().conn.execute("SELECT id FROM conversations WHERE reply_window IS NULL LIMIT 1").fetchone()[0]
    assert cli.main(["reply", conv, "--text", "later", "--at", "2h", "--json", "--data-dir", str(data)]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    later = make_workspace(data, Clock(start + 2 * 3600 + 5))
    db = later.open_db()
    assert outbox.get(db, key).not_before == pytest.approx(start + 7200, abs=5)
    sync_once(make_workspace(data, Clock(start + 3600)))
    assert outbox.get(db, key).state == "queued"
    sync_once(later)
    assert outbox.get(db, key).state == "sent"


# ---- 5. offline mode and the gap backfill -------------------------------------------------------------


def test_offline_queues_everything_then_drains_and_backfills_without_gaps(tmp_path: Path, clock: Clock) -> None:
    cfg = demo_config(pace=30)
    ws = make_workspace(tmp_path, clock, config=cfg)
    sync_once(ws)
    db = ws.open_db()
    convs = [r[0] for r in db.conn.execute("SELECT id FROM conversations WHERE reply_window IS NULL ORDER BY id LIMIT 5")]
    offline = make_workspace(tmp_path, clock, config=demo_config(pace=30, faults=DemoFaults(offline=True)))
    keys = []
    for minute in range(20):  # twenty minutes without network, the agent keeps working
        keys.append(outbox.queue_reply(db, convs[minute % 5], f"reply {minute}"))
        actions.tag(db, [convs[minute % 5]], ["followup"])
        report = sync_once(offline)
        assert report.sent == 0 and report.errors["demo"].startswith("offline")
        clock.advance(60)
    hits, found = search.search(db, "tag:followup")  # reading and searching the cache still work
    assert {r.id for r in queries.inbox_page(db, found, 0, 50)} == set(convs)
    actions.resolve(db, [convs[4]])
    assert queries.get_row(db, convs[4]).status == "resolved"
    st = {s["account"]: s for s in queries.account_states(db)}["demo"]
    assert st["state"] == "offline"
    assert all(outbox.get(db, k).state == "queued" for k in keys)

    for _ in range(3):  # back online
        sync_once(ws)
    assert all(outbox.get(db, k).state == "sent" for k in keys)
    ledger = [e["key"] for e in DemoRemote(tmp_path).ledger()]
    assert ledger == keys  # in order (one conversation's replies interleave with others in queue order)

    stored = [r[0] for r in db.conn.execute("SELECT native_id FROM messages WHERE native_id LIKE 's%'")]
    numbers = sorted(int(n[1:]) for n in stored)
    assert len(numbers) == len(set(numbers))  # no duplicates
    assert numbers == list(range(numbers[0], numbers[-1] + 1))  # no holes
    provider = DemoProvider("demo", {"pace": 30}, lambda: None, data_dir=tmp_path, clock=clock)
    started = DemoRemote(tmp_path).started_at(clock.now)
    expected = {m.native_id for m in provider._stream(started, started, clock.now)}
    assert set(stored) == expected and len(expected) >= 35  # exactly what the platform holds up to now


def test_drain_outbox_sends_everything_due(rig: Rig) -> None:
    keys = [outbox.queue_reply(rig.db, f"shop:{c}", f"r{i}") for i, c in enumerate("xyzxyz")]
    assert asyncio.run(rig.engine.drain_outbox()) == 6
    assert rig.posted_texts() == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert {outbox.get(rig.db, k).state for k in keys} == {"sent"}
