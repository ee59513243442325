"""Listening on each platform, through httpx.MockTransport with the documented search payloads.

Mastodon's matches are the real recorded statuses (Mastodon.py's cassettes) served as ``/api/v2/search``
and hashtag-timeline answers; Bluesky's are ``app.bsky.feed.searchPosts`` post views on the fake PDS of
``test_bluesky``; X's are recent-search pages built on tweepy's recorded mention. Engine tests run on
real SQLite workspaces with the suite's fixed clock: one conversation for a post that also tags us,
answering joins the inbox, a restart resumes where and when it left off, rate limits wait, and X's
listening keeps to its share of the budget.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
import pytest

from http_fakes import FakeApi, cassette, find, json_response, needs_recordings
from replydesk import secrets
from replydesk.config import Config
from replydesk.listening import ListeningQuery
from replydesk.providers.mastodon import MastodonOptions, MastodonProvider
from replydesk.storage import ingest, outbox, queries
from replydesk.storage.queries import InboxFilter
from replydesk.workspace import Workspace

INSTANCE = "http://localhost:3000"
MA = "shop-mastodon"
TOKEN = "mastodon-test-token-0123456789"
ME_ID, ME_ACCT = "117020565966271181", "mastodonpy_test"  # the shop (the account the mentions were recorded for)
SEARCH, NOTIFICATIONS = "/api/v2/search", "/api/v1/notifications"
TAG = "/api/v1/timelines/tag/dukalaamani"
BRAND = ListeningQuery(name="brand", terms=["Duka la Amani"], hashtags=["dukalaamani"], exclude=["hiring"])


def status(sid: int, text: str, **fields: Any) -> dict[str, Any]:
    item = copy.deepcopy(find(cassette("test_stream_user_direct.yaml"), "POST", "/api/v1/statuses", index=2).json())
    item.update({"id": str(sid), "content": f"<p>{text}</p>", "mentions": [], "in_reply_to_id": None,
                 "url": f"{INSTANCE}/@admin/{sid}", **fields})
    return item


def our_status(sid: int, text: str) -> dict[str, Any]:
    item = status(sid, text)
    item["account"] = {**item["account"], "id": ME_ID, "acct": ME_ACCT, "username": ME_ACCT}
    return item


def recorded_mention() -> dict[str, Any]:
    return find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types").json()[0]


def mastodon_api() -> FakeApi:
    api = FakeApi()
    me = find(cassette("test_status_reply.yaml"), "GET", "verify_credentials").json()
    api.route("GET", "/api/v1/accounts/verify_credentials",
              json_response({**me, "id": ME_ID, "acct": ME_ACCT, "username": ME_ACCT}))
    api.route("GET", "/api/v2/instance",
              find(cassette("test_stream_user_direct.yaml"), "GET", "/api/v2/instance").response())
    api.route("GET", "/api/v1/conversations", json_response([]))
    api.route("GET", NOTIFICATIONS, json_response([]))
    api.route("GET", TAG, json_response([]))
    api.route("GET", SEARCH, json_response({"accounts": [], "statuses": [], "hashtags": []}))
    return api


def mastodon(api: FakeApi, clock: Any, monkeypatch: pytest.MonkeyPatch) -> MastodonProvider:
    monkeypatch.setenv(secrets.env_name(MA), TOKEN)
    return MastodonProvider(MA, {"instance": INSTANCE}, secrets.getter(MA), transport=api.transport, clock=clock)


def searched(*statuses: dict[str, Any]) -> httpx.Response:
    return json_response({"accounts": [], "statuses": list(statuses), "hashtags": []},
                         headers={"x-ratelimit-remaining": "250", "x-ratelimit-reset": "2026-11-23T10:05:00.000Z"})


pytestmark = needs_recordings


# ---- Mastodon ---------------------------------------------------------------------------------------


async def test_mastodon_listens_by_search_and_hashtag_timeline(clock, monkeypatch):
    api = mastodon_api()
    late = status(117030000000000001, "Duka la Amani still hasn&#39;t shipped my order")
    mugs = status(117030000000000005, "Love the new mugs <a href=\"x\">#dukalaamani</a>")
    found = [late, our_status(117030000000000002, "Duka la Amani autumn sale!"),
             status(117030000000000003, "Duka la Amani is HIRING"),
             status(117030000000000004, "Duka la Amani, privately", visibility="private")]
    api.route("GET", SEARCH, searched(*found))
    api.route("GET", TAG, json_response([mugs, late]))
    provider = mastodon(api, clock, monkeypatch)
    results = await provider.listen([BRAND], {})
    assert {r.stream for r in results} == {"listen:brand"} and {r.listening for r in results} == {"brand"}
    messages = {m.native_id: m for r in results for m in r.messages}
    assert set(messages) == {late["id"], mugs["id"]}  # ours, the excluded and the private one left out; once each
    assert messages[late["id"]].text == "Duka la Amani still hasn't shipped my order"
    assert {m.kind for m in messages.values()} == {"mention"} and messages[late["id"]].contact.handle == "@admin"
    cursor = results[-1].cursor
    assert cursor == {"sources": {'search:"Duka la Amani"': "117030000000000004", "tag:dukalaamani": mugs["id"]}}
    (search,) = api.requests("GET", SEARCH)
    assert dict(search.url.params) == {"limit": "40", "q": '"Duka la Amani"', "type": "statuses",
                                       "resolve": "false"}
    assert search.headers["authorization"] == f"Bearer {TOKEN}"
    # Next time: from the stored ids on; an instance that ignores min_id in search sends the same again
    again = await provider.listen([BRAND], {"listen:brand": cursor})
    assert [m for r in again for m in r.messages] == []
    assert api.requests("GET", SEARCH)[-1].url.params["min_id"] == "117030000000000004"
    assert api.requests("GET", TAG)[-1].url.params["min_id"] == mugs["id"]


async def test_mastodon_search_errors_and_limits_are_the_platforms(clock, monkeypatch):
    api = mastodon_api()
    api.route("GET", SEARCH, json_response({"error": "Too many requests"}, 429, {"retry-after": "120"}))
    from replydesk.providers.base import RateLimited

    with pytest.raises(RateLimited) as info:
        await mastodon(api, clock, monkeypatch).listen([BRAND], {})
    assert info.value.reset_at == clock.now + 120


# ---- Mastodon with the engine ------------------------------------------------------------------------


def mastodon_workspace(tmp_path, clock, *queries: ListeningQuery) -> Workspace:
    return Workspace(tmp_path / "ws", Config(accounts=[MastodonOptions(name=MA, instance=INSTANCE)],
                                             listening=list(queries) or [BRAND]), clock)


def wire(engine: Any, api: FakeApi, clock: Any, monkeypatch: pytest.MonkeyPatch) -> MastodonProvider:
    run = engine.accounts[MA]
    run.provider = mastodon(api, clock, monkeypatch)
    return run.provider


def one(db: Any, sql: str, *params: Any) -> Any:
    return db.conn.execute(sql, params).fetchone()[0]


async def test_a_listened_post_that_tags_us_is_one_conversation_and_joins_the_inbox(tmp_path, clock, monkeypatch):
    """The recorded mention is found by a search first; then the notification stream brings it."""
    mention = recorded_mention()
    hello = ListeningQuery(name="hello", terms=["hello"])
    api = mastodon_api()
    api.route("GET", SEARCH, searched(mention["status"]))
    ws = mastodon_workspace(tmp_path, clock, hello)
    db = ws.open_db()
    engine = ws.engine(db)
    wire(engine, api, clock, monkeypatch)
    await engine.run_once()
    conv = f"{MA}:{mention['status']['id']}"
    assert queries.get_row(db, conv).listening == "hello"
    assert [r.id for r in queries.inbox_page(db, InboxFilter(listening=True), 0, 10)] == [conv]
    note = queries.account_states(db)[0]["note"]
    assert "listening 1 query" in note
    api.route("GET", NOTIFICATIONS, find(cassette("test_notifications_mentions_only.yaml"), "GET",
                                         "notifications?types").response())
    clock.advance(60)
    await engine.run_once()
    assert one(db, "SELECT count(*) FROM conversations") == 1 and one(db, "SELECT count(*) FROM messages") == 1
    row = queries.get_row(db, conv)
    assert row.listening is None and row.sla_state == "breached"  # the recorded post is from August
    assert [r.id for r in queries.inbox_page(db, InboxFilter(), 0, 10)] == [conv]
    db.close()


async def test_replying_to_a_listened_post_is_a_public_reply_and_joins_the_inbox(tmp_path, clock, monkeypatch):
    late = status(117030000000000001, "Duka la Amani still hasn't shipped my order")
    api = mastodon_api()
    api.route("GET", SEARCH, searched(late))
    posted = find(cassette("test_status_reply.yaml"), "POST", "/api/v1/statuses", index=1).json()
    api.route("POST", "/api/v1/statuses", lambda r: json_response({**posted, "id": "990"}))
    ws = mastodon_workspace(tmp_path, clock)
    db = ws.open_db()
    engine = ws.engine(db)
    wire(engine, api, clock, monkeypatch)
    await engine.run_once()
    conv = f"{MA}:{late['id']}"
    key = outbox.queue_reply(db, conv, "So sorry! It leaves today, tracking by DM.")
    await engine.run_once()
    (request,) = api.requests("POST", "/api/v1/statuses")
    assert json.loads(request.content) == {"status": "@admin So sorry! It leaves today, tracking by DM.",
                                           "visibility": "public", "in_reply_to_id": late["id"]}
    assert request.headers["idempotency-key"] == key
    row = queries.get_row(db, conv)
    assert outbox.get(db, key).state == "sent" and row.listening is None and row.sla_state == "none"
    assert [r.id for r in queries.inbox_page(db, InboxFilter(), 0, 10)] == [conv]
    db.close()


async def test_a_restart_resumes_where_and_when_listening_left_off(tmp_path, clock, monkeypatch):
    late = status(117030000000000001, "Duka la Amani still hasn't shipped my order")
    newer = status(117030000000000009, "Duka la Amani answered in minutes, wow")
    api = mastodon_api()
    api.route("GET", SEARCH, lambda r: searched(late) if "min_id" not in r.url.params else searched(late, newer))
    ws = mastodon_workspace(tmp_path, clock)
    db = ws.open_db()
    engine = ws.engine(db)
    wire(engine, api, clock, monkeypatch)
    await engine.run_once()
    assert len(api.requests("GET", SEARCH)) == 1
    db.close()
    # a new process a minute later: the query's interval (5 min) runs from the stored poll
    clock.advance(60)
    db = ws.open_db()
    engine = ws.engine(db)
    wire(engine, api, clock, monkeypatch)
    await engine.run_once()
    assert len(api.requests("GET", SEARCH)) == 1
    clock.advance(300)
    await engine.run_once()
    assert api.requests("GET", SEARCH)[-1].url.params["min_id"] == late["id"]
    texts = [r[0] for r in db.conn.execute("SELECT text FROM messages ORDER BY created_at, rowid")]
    assert sorted(texts) == sorted(["Duka la Amani still hasn't shipped my order",
                                    "Duka la Amani answered in minutes, wow"])  # each post once
    db.close()


async def test_a_rate_limited_search_waits_for_its_reset(tmp_path, clock, monkeypatch):
    api = mastodon_api()
    api.route("GET", SEARCH, [json_response({"error": "Too many requests"}, 429, {"retry-after": "600"}),
                              searched(status(117030000000000001, "Duka la Amani?"))])
    ws = mastodon_workspace(tmp_path, clock)
    db = ws.open_db()
    engine = ws.engine(db)
    wire(engine, api, clock, monkeypatch)
    await engine.run_once()
    assert "listening waits until" in queries.account_states(db)[0]["note"]
    for _ in range(3):  # nothing is asked before the reset, however often the engine comes by
        clock.advance(120)
        await engine.run_once()
    assert len(api.requests("GET", SEARCH)) == 1
    clock.advance(300)
    await engine.run_once()
    assert len(api.requests("GET", SEARCH)) == 2
    assert one(db, "SELECT count(*) FROM conversations WHERE listening = 'brand'") == 1
    assert "listening 1 query" in queries.account_states(db)[0]["note"]
    db.close()


async def test_the_rules_hook_sees_each_new_match(tmp_path, clock, monkeypatch):
    """Until the rules engine connects it: a hook that tags 'complaint' when a match says "refund"."""
    from replydesk.storage import actions

    api = mastodon_api()
    api.route("GET", SEARCH, searched(status(117030000000000001, "Duka la Amani, I want a refund"),
                                      status(117030000000000002, "Duka la Amani mugs are great")))
    ws = mastodon_workspace(tmp_path, clock)
    db = ws.open_db()
    engine = ws.engine(db)
    wire(engine, api, clock, monkeypatch)
    seen = []

    def complaint(database: Any, matches: list[ingest.ListeningMatch]) -> None:
        seen.extend(matches)
        actions.tag(database, [m.conversation_id for m in matches if "refund" in m.text], ["complaint"], actor="rule")

    engine.listening.on_matches = complaint
    await engine.run_once()
    assert {(m.query, m.waiting) for m in seen} == {("brand", True)} and len(seen) == 2
    assert queries.get_row(db, f"{MA}:117030000000000001").tags == ("complaint",)
    assert queries.get_row(db, f"{MA}:117030000000000002").tags == ()
    db.close()


def test_an_account_without_search_runs_no_query(tmp_path, clock):
    from replydesk.config import demo_config

    config = demo_config().model_copy(update={"listening": [BRAND]})
    ws = Workspace(tmp_path / "ws", config, clock)
    db = ws.open_db()
    engine = ws.engine(db)
    assert engine.listening.state == {}
    asyncio.run(engine.run_once())
    assert queries.account_states(db)[0]["note"] == ""
    db.close()
