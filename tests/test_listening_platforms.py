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
from test_bluesky import (
    APP_PASSWORD,
    CUSTOMER,
    HANDLE,
    SERVICE,
    FakeBluesky,
    at,
    author,
    notification,
    post_uri,
)
from test_bluesky import ME as BS_ME
from test_bluesky import NOW as BS_NOW
from test_x import CUSTOMER as X_CUSTOMER
from test_x import ME as X_ME
from test_x import MENTIONS as X_MENTIONS
from test_x import mention as x_mention
from test_x import page as x_page
from test_x import provider as x_provider
from test_x import tokens, x_workspace  # noqa: F401 - the X fixture: a logged-in account
from test_x import wire as x_wire

from http_fakes import FakeApi, cassette, find, json_response, needs_recordings
from replydesk import secrets
from replydesk.config import Config
from replydesk.listening import ListeningQuery
from replydesk.model import parse_iso
from replydesk.providers import bluesky_listen, x_listen
from replydesk.providers.base import PermanentError
from replydesk.providers.bluesky import BlueskyProvider
from replydesk.providers.mastodon import MastodonOptions, MastodonProvider
from replydesk.storage import ingest, outbox, queries, spend
from replydesk.storage.queries import InboxFilter
from replydesk.workspace import Workspace
from support import FIXED_NOW

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


# ---- Bluesky ----------------------------------------------------------------------------------------


BS = "shop-bsky"
SEARCH_POSTS = "app.bsky.feed.searchPosts"
BS_BRAND = ListeningQuery(name="brand", terms=["Duka la Amani"], hashtags=["dukalaamani"],
                          handles=["rival.bsky.social"], exclude=["hiring"])


def post_view(n: int, text: str, *, did: str = CUSTOMER, handle: str = "ann.bsky.social", offset: float = 0,
              reply: dict | None = None) -> dict[str, Any]:
    """An app.bsky.feed.defs#postView as searchPosts documents it."""
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": at(offset), "langs": ["en"]}
    if reply:
        record["reply"] = reply
    return {"uri": post_uri(did, n), "cid": f"bafyreicid{n}", "author": author(did, handle, handle.split(".")[0]),
            "record": record, "replyCount": 0, "repostCount": 0, "likeCount": 0, "quoteCount": 0,
            "indexedAt": at(offset + 2), "viewer": {}, "labels": []}


class SearchingBluesky(FakeBluesky):
    """The fake PDS of test_bluesky, answering searchPosts the way the AppView does: newest first,
    a cursor to go on, ``since`` on when the post was written."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = []
        self.api.route("GET", f"pds.test:None/xrpc/{SEARCH_POSTS}", self._authed(SEARCH_POSTS, self.search_posts))

    def search_posts(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        words = params["q"].strip('"').casefold()
        tag, mentions = params.get("tag"), params.get("mentions")
        found = [p for p in self.posts if words in p["record"]["text"].casefold()
                 and (not tag or f"#{tag}" in p["record"]["text"]) and (not mentions or f"@{mentions}" in p["record"]["text"])]
        if params.get("since"):
            found = [p for p in found if parse_iso(p["record"]["createdAt"]) >= parse_iso(params["since"])]
        found.sort(key=lambda p: p["indexedAt"], reverse=True)
        if params.get("cursor"):
            found = [p for p in found if p["indexedAt"] < params["cursor"]]
        limit = int(params.get("limit", "25"))
        body: dict[str, Any] = {"posts": found[:limit], "hitsTotal": len(found)}
        if len(found) > limit:
            body["cursor"] = found[limit - 1]["indexedAt"]
        return json_response(body)


@pytest.fixture
def bsky(file_keyring: Any, monkeypatch: pytest.MonkeyPatch):
    fake = SearchingBluesky()
    monkeypatch.setenv(secrets.env_name(BS), APP_PASSWORD)

    def build() -> BlueskyProvider:
        return BlueskyProvider(BS, {"handle": HANDLE, "service": SERVICE}, secrets.getter(BS),
                               transport=fake.api.transport, clock=lambda: BS_NOW)
    build.fake = fake  # type: ignore[attr-defined]
    return build


def searches(fake: FakeBluesky) -> list[httpx.URL]:
    return [c.url for c in fake.api.calls if c.url.path == f"/xrpc/{SEARCH_POSTS}"]


async def test_bluesky_searches_each_term_hashtag_and_handle(bsky):
    fake = bsky.fake
    fake.posts = [post_view(1, "Duka la Amani still hasn't shipped", offset=-500),
                  post_view(2, "love my mug #dukalaamani", offset=-400),
                  post_view(3, "@rival.bsky.social is cheaper than Duka la Amani", offset=-300),
                  post_view(4, "Duka la Amani autumn sale", did=BS_ME, handle=HANDLE, offset=-200),
                  post_view(5, "Duka la Amani is hiring", offset=-100)]
    results = await bsky().listen([BS_BRAND], {})
    messages = {m.native_id: m for r in results for m in r.messages}
    assert set(messages) == {post_uri(CUSTOMER, n) for n in (1, 2, 3)}  # ours and the excluded one left out
    assert {m.kind for m in messages.values()} == {"mention"} and {r.listening for r in results} == {"brand"}
    assert messages[post_uri(CUSTOMER, 1)].conversation_native_id == post_uri(CUSTOMER, 1)
    assert [dict(u.params) for u in searches(fake)] == [
        {"q": '"Duka la Amani"', "sort": "latest", "limit": "50"},
        {"q": "#dukalaamani", "tag": "dukalaamani", "sort": "latest", "limit": "50"},
        {"q": "rival.bsky.social", "mentions": "rival.bsky.social", "sort": "latest", "limit": "50"}]
    sources = results[-1].cursor["sources"]
    assert sources["term:Duka la Amani"]["seen_uris"] == [post_uri(CUSTOMER, 5)]  # the newest seen, excluded or not


async def test_bluesky_walks_down_to_its_watermark_and_resumes_after_a_failure(bsky, monkeypatch):
    monkeypatch.setattr(bluesky_listen, "PAGE_LIMIT", 5)
    fake = bsky.fake
    only = ListeningQuery(name="brand", terms=["duka"])
    fake.posts = [post_view(n, f"duka {n}", offset=-5000 + n) for n in range(1, 13)]
    first = await bsky().listen([only], {})
    assert [m.native_id for r in first for m in r.messages] == [post_uri(CUSTOMER, n) for n in range(12, 7, -1)]
    cursor = first[-1].cursor  # the first look: the newest page only
    fake.posts += [post_view(n, f"duka {n}", offset=-5000 + n) for n in range(13, 30)]  # 17 new: four pages
    served = [0]
    original = fake.search_posts

    def flaky(request: httpx.Request) -> httpx.Response:
        served[0] += 1
        return json_response({"error": "UpstreamFailure"}, 502) if served[0] == 2 else original(request)

    fake.api.route("GET", f"pds.test:None/xrpc/{SEARCH_POSTS}", fake._authed(SEARCH_POSTS, flaky))
    partial = await bsky().listen([only], {"listen:brand": cursor})
    assert len(partial) == 1 and "walk" in partial[0].cursor["sources"]["term:duka"]
    seen = [m.native_id for r in partial for m in r.messages]
    since = parse_iso(searches(fake)[-2].params["since"])
    assert since == parse_iso(at(-5000 + 12 + 2)) - bluesky_listen.SINCE_MARGIN
    cursor = partial[-1].cursor
    for _ in range(3):  # three pages a run: the walk goes on where it stopped
        more = await bsky().listen([only], {"listen:brand": cursor})
        seen += [m.native_id for r in more for m in r.messages]
        cursor = more[-1].cursor
    assert "walk" not in cursor["sources"]["term:duka"]
    assert sorted(seen) == sorted(post_uri(CUSTOMER, n) for n in range(13, 30)) and len(seen) == len(set(seen))


async def test_a_bluesky_post_that_tags_us_maps_to_the_same_conversation(bsky, tmp_path, clock):
    fake = bsky.fake
    mention = notification(7, text=f"@{HANDLE} Duka la Amani where is my order?")
    fake.notifications = [mention]
    view = {k: mention[k] for k in ("uri", "cid", "author", "record", "indexedAt", "labels")}
    fake.posts = [{**view, "replyCount": 0, "repostCount": 0, "likeCount": 0, "viewer": {}}]
    provider = bsky()
    heard = await provider.listen([BS_BRAND], {})
    fetched = [r for r in await provider.fetch({}) if r.stream == "notifications"]
    ws = Workspace(tmp_path / "ws", Config(), clock)
    db = ws.open_db()
    with db.transaction():
        ingest.ensure_account(db, BS, "bluesky", "bluesky")
    ingest.ingest(db, BS, heard)
    conv = f"{BS}:{mention['uri']}"
    assert queries.get_row(db, conv).listening == "brand"
    stats = ingest.ingest(db, BS, fetched)
    assert stats.joined == {conv} and one(db, "SELECT count(*) FROM conversations") == 1
    assert one(db, "SELECT count(*) FROM messages") == 1 and queries.get_row(db, conv).listening is None
    db.close()


# ---- X ----------------------------------------------------------------------------------------------


X_BRAND = ListeningQuery(name="brand", terms=["Duka la Amani", "dukalaamani"], hashtags=["dukalaamani"],
                         handles=["rivalshop"], exclude=["hiring", "job offer"], exclude_authors=["spambot"])
RECENT = x_listen.PATH


@pytest.fixture
def xapi(tokens: Any) -> FakeApi:  # noqa: F811 - the fixture imported above
    """X's API as test_x fakes it: who we are, and no DMs."""
    fake = FakeApi()
    fake.route("GET", "/2/users/me", json_response({"data": X_ME}))
    fake.route("GET", "/2/dm_events", json_response({"meta": {"result_count": 0}}))
    return fake


def snowflake(at: float) -> str:
    return str((int(at * 1000) - x_listen.TWITTER_EPOCH_MS) << 22)


def test_an_x_query_says_everything_x_can_leave_out():
    assert x_listen.build_query(X_BRAND, "Twitter") == (
        '("Duka la Amani" OR dukalaamani OR #dukalaamani OR @rivalshop) -hiring -"job offer" -from:spambot '
        "-from:Twitter -is:retweet")
    assert x_listen.build_query(ListeningQuery(name="one", hashtags=["duka"]), "") == "#duka -is:retweet"
    long = ListeningQuery(name="long", terms=[f"product name {n:03d}" for n in range(40)])
    with pytest.raises(PermanentError, match="X allows 512"):
        x_listen.build_query(long, "Twitter")
    assert x_listen.snowflake_time(snowflake(FIXED_NOW)) == pytest.approx(FIXED_NOW, abs=0.001)


async def test_x_recent_search_is_paid_as_listening_and_resumes_from_since_id(xapi, clock):
    base = int(snowflake(clock.now - 3600))  # ids of an hour ago: recent search reaches them
    late = x_mention(str(base + 10), "Duka la Amani still hasn't shipped")
    hiring = x_mention(str(base + 11), "Duka la Amani is hiring, DM me")  # X would leave it out
    xapi.route("GET", RECENT, x_page([hiring, late]))
    p = x_provider(xapi, clock)
    await p.me()
    p.take_usage()
    results = await p.listen([X_BRAND], {})
    assert [m.native_id for r in results for m in r.messages] == [late["id"]]
    (msg,) = results[0].messages
    assert msg.kind == "mention" and msg.conversation_native_id == f"thread:{late['id']}:{X_CUSTOMER['id']}"
    assert results[0].listening == "brand" and results[0].cursor == {"since_id": hiring["id"]}
    sent = xapi.requests("GET", RECENT)[0].url.params
    assert sent["query"] == x_listen.build_query(X_BRAND, "Twitter") and sent["max_results"] == "10"
    assert sent["expansions"] == "author_id,referenced_tweets.id" and "since_id" not in sent
    usage = {u.resource: u for u in p.take_usage()}
    assert set(usage) == {"listen:post:read", "listen:user:read"} and usage["listen:post:read"].units == 2
    # next time: everything since the newest id, walking X's pages down to it
    newer = [x_mention(str(base + 100 + n), f"dukalaamani order {n}") for n in range(5)]
    newest_first = newer[::-1]
    xapi.route("GET", RECENT, [x_page(newest_first[:2], next_token="t1"), x_page(newest_first[2:])])
    later = await p.listen([X_BRAND], {"listen:brand": results[-1].cursor})
    first, second = xapi.requests("GET", RECENT)[-2:]
    assert first.url.params["since_id"] == hiring["id"] and first.url.params["max_results"] == "100"
    assert second.url.params["next_token"] == "t1" and second.url.params["since_id"] == hiring["id"]
    assert later[0].cursor["walk"]["token"] == "t1" and later[-1].cursor == {"since_id": newer[4]["id"]}
    assert sorted(m.native_id for r in later for m in r.messages) == sorted(t["id"] for t in newer)


async def test_x_refuses_a_since_id_older_than_a_week_so_the_search_starts_from_the_oldest_it_allows(xapi, clock):
    xapi.route("GET", RECENT, x_page([]))
    old = snowflake(clock.now - 8 * 86400)
    await x_provider(xapi, clock).listen([X_BRAND], {"listen:brand": {"since_id": old}})
    sent = xapi.requests("GET", RECENT)[0].url.params
    assert "since_id" not in sent and parse_iso(sent["start_time"]) == clock.now - x_listen.REACH + 60


async def test_an_x_search_wait_is_kept_in_its_cursor(xapi, clock):
    reset = int(clock.now + 900)
    xapi.route("GET", RECENT, json_response({"title": "Too Many Requests"}, 429,
                                           {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}))
    (result,) = await x_provider(xapi, clock).listen([X_BRAND], {})
    assert result.cursor == {"blocked_until": reset} and result.messages == []
    # a new process: the stored wait holds, no request before the reset
    (again,) = await x_provider(xapi, clock).listen([X_BRAND], {"listen:brand": result.cursor})
    assert len(xapi.requests("GET", RECENT)) == 1 and again.cursor["blocked_until"] == reset


def test_x_listening_keeps_to_its_share_of_the_budget_on_the_fixed_clock(tmp_path, clock, xapi):
    """$1 a month, a tenth for listening: each search brings 10 new posts ($0.05) and listening stops
    at its $0.10, while mentions go on polling; the next month it starts again."""
    counter = iter(range(int(snowflake(clock.now - 3600)), 10**20))

    def fresh_posts(request: httpx.Request) -> httpx.Response:
        return x_page([x_mention(str(next(counter)), "Duka la Amani!") for _ in range(10)][::-1])

    xapi.route("GET", RECENT, fresh_posts)
    xapi.route("GET", X_MENTIONS, x_page([], users=[]))
    ws = x_workspace(tmp_path, clock, extra="    monthly_budget_usd: 1.0\n    listening_share: 0.1",
                     accounts="listening:\n  - {name: brand, terms: [Duka la Amani], interval: 1m}")
    db = ws.open_db()
    engine = ws.engine(db)
    x_wire(engine, xapi, clock)
    for _ in range(6):
        asyncio.run(engine.run_once())
        clock.advance(61)
    assert len(xapi.requests("GET", RECENT)) == 2 and len(xapi.requests("GET", X_MENTIONS)) == 6
    month = spend.summary(db, "shop-x")
    mine = spend.listening_summary(month, 0.1)
    assert mine.spent == pytest.approx(2 * 10 * 0.005 + 0.010) and mine.budget == pytest.approx(0.1)
    assert month.spent == pytest.approx(mine.spent + 0.010)  # and our own user, read for the inbox
    note = queries.account_states(db)[0]["note"]
    assert "listening paused: its share ($0.10) of the budget is spent" in note
    assert one(db, "SELECT count(*) FROM conversations WHERE listening='brand'") == 20
    clock.now = spend.month_bounds(clock.now)[1] + 60  # December: a new budget (and a refreshed token)
    xapi.route("POST", "/2/oauth2/token", json_response({"access_token": "access-2", "refresh_token": "refresh-2",
                                                         "expires_in": 7200, "token_type": "bearer"}))
    asyncio.run(engine.run_once())
    assert len(xapi.requests("GET", RECENT)) == 3
    db.close()


def test_x_listening_slows_as_its_share_runs_low(tmp_path, clock, xapi):
    from replydesk.model import Usage

    xapi.route("GET", RECENT, x_page([x_mention("1900000000000000010", "Duka la Amani?")]))
    xapi.route("GET", X_MENTIONS, x_page([]))
    ws = x_workspace(tmp_path, clock, extra="    monthly_budget_usd: 100\n    listening_share: 0.5",
                     accounts="listening:\n  - {name: brand, terms: [Duka la Amani], interval: 1m}\n"
                              "  - {name: rival, handles: [rivalshop], interval: 1m}")
    db = ws.open_db()
    spend.record(db, "shop-x", [Usage("listen:post:read", 9000, 45.0), Usage(spend.LISTEN_POLLS, 30, 0.0)])
    engine = ws.engine(db)
    x_wire(engine, xapi, clock)
    asyncio.run(engine.run_once())
    assert len(xapi.requests("GET", RECENT)) == 2  # both queries ran
    state = engine.listening.state["shop-x"]
    # $1.50 a search, $5 left of listening's $50 for 7.6 days, two queries: about one search a day each
    assert min(state.next_at.values()) - clock.now > 12 * 3600
    assert "(budget)" in queries.account_states(db)[0]["note"]
    clock.advance(3600)
    asyncio.run(engine.run_once())
    assert len(xapi.requests("GET", RECENT)) == 2 and len(xapi.requests("GET", X_MENTIONS)) == 2
    db.close()


def test_an_x_search_wait_holds_listening_alone(tmp_path, clock, xapi):
    reset = int(clock.now + 900)
    xapi.route("GET", RECENT, json_response({"title": "Too Many Requests"}, 429,
                                            {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}))
    xapi.route("GET", X_MENTIONS, x_page([]))
    ws = x_workspace(tmp_path, clock, accounts="listening:\n  - {name: brand, terms: [Duka la Amani], interval: 1m}")
    db = ws.open_db()
    engine = ws.engine(db)
    x_wire(engine, xapi, clock)
    asyncio.run(engine.run_once())
    state = queries.account_states(db)[0]
    assert state["state"] == "ok" and "(rate limit)" in state["note"] and "waits until" in state["note"]
    assert engine.listening.state["shop-x"].next_at["brand"] == reset
    clock.advance(120)
    asyncio.run(engine.run_once())  # mentions go on; the search waits for its own window
    assert len(xapi.requests("GET", RECENT)) == 1 and len(xapi.requests("GET", X_MENTIONS)) == 2
    db.close()
