"""Property tests: mutated and hostile platform payloads never raise and never stop the other items.

Each example takes real payload shapes (the recorded Mastodon traffic, the documented Bluesky and
Telegram shapes), damages one item at a random place (field deleted, wrong type, huge or hostile text,
odd encodings), runs it through the provider *and* through storage's ingest into a real SQLite file,
and checks: no exception, every untouched item stored, the damaged one stored or in ``rejected``,
the cursor still advanced.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from http_fakes import FakeApi, cassette, find, json_response, needs_recordings
from replydesk.config import Config
from replydesk.model import FetchResult
from replydesk.providers.bluesky import BlueskyProvider
from replydesk.providers.html_text import html_to_text
from replydesk.providers.mastodon import MastodonProvider
from replydesk.providers.telegram import TelegramProvider
from replydesk.sla import SlaEngine
from replydesk.storage import ingest
from replydesk.storage.db import Database, open_database
from support import hostile_texts

NOW = 1_795_428_000.0
DELETE = object()
HOSTILE = [case["text"] for case in hostile_texts()] or ["\x1b[2J", "[bold]x[/]", "\u202egnp.exe"]

junk = st.one_of(
    st.just(DELETE), st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.sampled_from(HOSTILE),
    st.just("x" * 300_000), st.just("\ud800 lone surrogate"), st.just("<p>" * 5000), st.just("\x00\x01\x7f\x9b"),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path in a JSON value (the value itself included)."""
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            out += paths(value, (*prefix, index))
    return out


def mutate(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return None if value is DELETE else value
    obj = copy.deepcopy(obj)
    parent = obj
    for part in path[:-1]:
        parent = parent[part]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    database = open_database(tmp_path_factory.mktemp("props"), sla=SlaEngine(Config().sla), clock=lambda: NOW)
    with database.transaction():
        for name, platform in (("m", "mastodon"), ("b", "bluesky"), ("t", "telegram")):
            ingest.ensure_account(database, name, platform, platform)
    yield database
    database.close()


def stored(db: Database, account: str, native_ids: list[str]) -> set[str]:
    qs = ",".join("?" * len(native_ids))
    rows = db.conn.execute(f"SELECT native_id FROM messages WHERE account=? AND native_id IN ({qs})",
                           (account, *native_ids))
    return {r[0] for r in rows}


def check(db: Database, account: str, results: list[FetchResult], good: list[str], damaged_label: str) -> None:
    ingest.ingest(db, account, results)  # must not raise either
    got = {m.native_id for r in results for m in r.messages}
    assert set(good) <= got
    assert stored(db, account, good) == set(good)
    del damaged_label  # the damaged item may be mapped, skipped or rejected; all are fine


def test_html_to_text_never_raises() -> None:
    @given(st.text(alphabet=st.sampled_from(list("<>/&;#=\"' apbrspan!-[]CDATA\n")) | st.characters(), max_size=300))
    @settings(max_examples=300, deadline=None)
    def run(markup: str) -> None:
        assert isinstance(html_to_text(markup), str)

    run()
    for text in HOSTILE:
        assert isinstance(html_to_text(f"<p>{text}</p>"), str)


# ---- Mastodon ---------------------------------------------------------------------------------------


@needs_recordings
def test_mastodon_mutated_notifications(db: Database) -> None:
    template = find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types").json()[0]
    items = []
    for n in range(3):
        item = copy.deepcopy(template)
        item["id"], item["status"]["id"] = str(100 + n), str(9000 + n)
        items.append(item)
    me = find(cassette("test_status_reply.yaml"), "GET", "verify_credentials").json()
    counter = iter(range(10**9))

    @given(st.sampled_from(paths(items[1])), junk)
    @SETTINGS
    def run(path: tuple, value: Any) -> None:
        k = next(counter)
        batch = copy.deepcopy(items)
        for offset, item in enumerate(batch):  # fresh ids per example: storage sees new items each time
            item["status"]["id"] = str(10_000_000 + k * 10 + offset)
        batch[1] = mutate(batch[1], path, value)
        api = FakeApi()
        api.route("GET", "/api/v1/accounts/verify_credentials", json_response(me))
        api.route("GET", "/api/v1/notifications", json_response(batch, headers={
            "link": '<http://localhost:3000/api/v1/notifications?min_id=102>; rel="prev"'}))
        api.route("GET", "/api/v1/conversations", json_response([]))
        provider = MastodonProvider("m", {"instance": "http://localhost:3000"}, lambda: "token",
                                    transport=api.transport, clock=lambda: NOW)
        results = asyncio.run(provider.fetch({}))
        assert results[0].cursor == {"min_id": "102"}
        check(db, "m", results, [batch[0]["status"]["id"], batch[2]["status"]["id"]], "101")

    run()


@needs_recordings
def test_mastodon_hostile_text_survives(db: Database) -> None:
    import html

    template = find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types").json()[0]
    batch = []
    for n, text in enumerate(HOSTILE):
        item = copy.deepcopy(template)
        item["id"], item["status"]["id"] = str(200 + n), str(20_000_000 + n)
        item["status"]["content"] = f"<p>{html.escape(text)}</p>"
        item["account"]["display_name"] = text
        batch.append(item)
    api = FakeApi()
    api.route("GET", "/api/v1/accounts/verify_credentials", json_response({"id": "1", "acct": "shop"}))
    api.route("GET", "/api/v1/notifications", json_response(batch))
    api.route("GET", "/api/v1/conversations", json_response([]))
    provider = MastodonProvider("m", {"instance": "http://localhost:3000"}, lambda: "token", transport=api.transport)
    results = asyncio.run(provider.fetch({}))
    check(db, "m", results, [i["status"]["id"] for i in batch], "")
    texts = {m.native_id: m.text for r in results for m in r.messages}
    for item, text in zip(batch, HOSTILE, strict=True):
        if "\r" not in text and "\n" not in text and "\t" not in text and "  " not in text:
            assert texts[item["status"]["id"]] == text.strip(" ")  # entities decoded, nothing else changed


# ---- Bluesky ----------------------------------------------------------------------------------------


def bsky_notification(n: int, text: str = "hello") -> dict[str, Any]:
    did = "did:plc:customercustomercustomer"
    return {"uri": f"at://{did}/app.bsky.feed.post/3l{n:011d}", "cid": f"bafy{n}",
            "author": {"did": did, "handle": "ann.bsky.social", "displayName": "Ann"}, "reason": "mention",
            "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-11-23T09:00:00.000Z",
                       "facets": [{"index": {"byteStart": 0, "byteEnd": 3},
                                   "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://x.example"}]}],
                       "reply": {"root": {"uri": f"at://{did}/app.bsky.feed.post/root", "cid": "bafyroot"},
                                 "parent": {"uri": f"at://{did}/app.bsky.feed.post/root", "cid": "bafyroot"}}},
            "isRead": False, "indexedAt": f"2026-11-23T09:{n % 60:02d}:00.000Z", "labels": []}


def bsky_provider(notifications: list[Any], chat_logs: list[Any] | None = None) -> BlueskyProvider:
    api = FakeApi()
    session = {"did": "did:plc:shop", "handle": "shop.bsky.social", "accessJwt": "a", "refreshJwt": "r",
               "didDoc": {"service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                       "serviceEndpoint": "https://pds.test"}]}}
    api.route("POST", "/xrpc/com.atproto.server.createSession", json_response(session))
    api.route("GET", "/xrpc/app.bsky.notification.listNotifications", json_response({"notifications": notifications}))
    api.route("GET", "/xrpc/chat.bsky.convo.getLog", json_response({"cursor": "9", "logs": chat_logs or []}))
    api.route("GET", "/xrpc/chat.bsky.convo.getConvo", json_response({"convo": {"id": "c", "members": []}}))
    provider = BlueskyProvider("b", {"handle": "shop.bsky.social", "service": "https://bsky.test"}, lambda: "pw",
                               transport=api.transport, clock=lambda: NOW)
    provider.resolve_thread = lambda ids: "known"  # no thread context requests in these tests
    return provider


def test_bluesky_mutated_notifications(db: Database, file_keyring: Any) -> None:
    counter = iter(range(10**9))

    @given(st.sampled_from(paths(bsky_notification(1))), junk)
    @SETTINGS
    def run(path: tuple, value: Any) -> None:
        k = next(counter) * 3
        batch = [bsky_notification(k + 2), mutate(bsky_notification(k + 1), path, value), bsky_notification(k)]
        provider = bsky_provider(batch)
        results = asyncio.run(provider.fetch({"chat": {"log": "1", "ready": True}}))
        check(db, "b", results, [batch[0]["uri"], batch[2]["uri"]], "")
        assert results[0].cursor.get("seen_at") is not None

    run()


def test_bluesky_mutated_chat_messages(db: Database, file_keyring: Any) -> None:
    def log(n: int) -> dict[str, Any]:
        return {"$type": "chat.bsky.convo.defs#logCreateMessage", "rev": f"{n:04d}", "convoId": "c",
                "message": {"$type": "chat.bsky.convo.defs#messageView", "id": f"m{n}", "rev": f"{n:04d}",
                            "text": "hi", "sender": {"did": "did:plc:cust"}, "sentAt": "2026-11-23T09:00:00.000Z"}}

    counter = iter(range(10**9))

    @given(st.sampled_from(paths(log(1))), junk)
    @SETTINGS
    def run(path: tuple, value: Any) -> None:
        k = next(counter) * 3 + 10
        logs = [log(k), mutate(log(k + 1), path, value), log(k + 2)]
        results = asyncio.run(bsky_provider([], logs).fetch({"chat": {"log": "1", "ready": True}}))
        check(db, "b", results, [f"c:m{k}", f"c:m{k + 2}"], "")

    run()


def test_bluesky_hostile_text_is_kept_exactly(db: Database, file_keyring: Any) -> None:
    batch = [bsky_notification(5000 + n, text) for n, text in enumerate(HOSTILE)]
    for item in batch:
        item["record"].pop("facets")
    results = asyncio.run(bsky_provider(batch).fetch({"chat": {"log": "1", "ready": True}}))
    check(db, "b", results, [i["uri"] for i in batch], "")
    texts = {m.native_id: m.text for r in results for m in r.messages}
    assert [texts[i["uri"]] for i in batch] == HOSTILE


# ---- Telegram ---------------------------------------------------------------------------------------


def tg_update(n: int, text: str = "hello") -> dict[str, Any]:
    return {"update_id": 1000 + n, "message": {
        "message_id": n, "date": 1795420000 + n, "text": text,
        "from": {"id": 111, "is_bot": False, "first_name": "Ann", "username": "ann"},
        "chat": {"id": 111, "first_name": "Ann", "type": "private"},
        "entities": [{"type": "text_link", "offset": 0, "length": 2, "url": "https://x.example"}]}}


def tg_provider(updates: list[Any]) -> TelegramProvider:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"ok": True, "result": updates}).encode())

    return TelegramProvider("t", {"api_base": "https://tg.test"}, lambda: "1:" + "A" * 30,
                            transport=httpx.MockTransport(handler))


def test_telegram_mutated_updates(db: Database) -> None:
    counter = iter(range(10**9))

    @given(st.sampled_from([p for p in paths(tg_update(1)) if p[:1] != ("update_id",)]), junk)
    @SETTINGS
    def run(path: tuple, value: Any) -> None:
        k = next(counter) * 3 + 10
        updates = [tg_update(k), mutate(tg_update(k + 1), path, value), tg_update(k + 2)]
        (result,) = asyncio.run(tg_provider(updates).fetch({}))
        assert result.cursor == {"offset": 1000 + k + 3}  # past the damaged one too: never stuck on it
        check(db, "t", [result], [f"111:{k}", f"111:{k + 2}"], "")

    run()


def test_telegram_hostile_text_is_kept_exactly(db: Database) -> None:
    updates = [tg_update(100_000 + n, text) for n, text in enumerate(HOSTILE)]
    for update in updates:
        update["message"].pop("entities")
    (result,) = asyncio.run(tg_provider(updates).fetch({}))
    check(db, "t", [result], [f"111:{100_000 + n}" for n in range(len(HOSTILE))], "")
    assert [m.text for m in result.messages] == HOSTILE


def test_paths_and_mutate_helpers() -> None:
    assert mutate({"a": {"b": 1}}, ("a", "b"), DELETE) == {"a": {}}
    assert ("a", "b") in paths({"a": {"b": [1]}}) and ("a", "b", 0) in paths({"a": {"b": [1]}})
    assert Path(__file__).name.startswith("test_")
