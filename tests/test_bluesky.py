"""Bluesky provider against a fake entryway + PDS speaking the documented XRPC shapes."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import httpx
import pytest

from http_fakes import FakeApi, json_response
from replydesk import secrets
from replydesk.model import AnsweredMessage, OutgoingReply, iso
from replydesk.providers import atproto
from replydesk.providers.base import AuthError, PermanentError, RateLimited, TransientError
from replydesk.providers.bluesky import BlueskyProvider

ACCOUNT = "shop-bsky"
HANDLE = "shop.bsky.social"
ME = "did:plc:shopshopshopshopshopshop"
CUSTOMER = "did:plc:customercustomercustomer"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
SERVICE = "https://bsky.test"
PDS = "https://pds.test"
NOW = 1_795_428_000.0
PROXY = "did:web:api.bsky.chat#bsky_chat"
TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def at(offset: float) -> str:
    return iso(NOW + offset).replace("Z", ".000Z")


def post_uri(did: str, n: int) -> str:
    return f"at://{did}/app.bsky.feed.post/3l{n:011d}"


def author(did: str = CUSTOMER, handle: str = "ann.bsky.social", name: str = "Ann") -> dict[str, Any]:
    return {"did": did, "handle": handle, "displayName": name, "avatar": "https://cdn.test/a.jpg",
            "viewer": {"muted": False, "blockedBy": False}, "labels": [], "createdAt": "2024-01-01T00:00:00.000Z"}


def notification(n: int, *, reason: str = "mention", text: str | None = None, reply: dict | None = None,
                 facets: list | None = None, offset: float | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text or f"@{HANDLE} question {n}",
                              "createdAt": at(-10000 + n), "langs": ["en"]}
    if reply:
        record["reply"] = reply
    if facets:
        record["facets"] = facets
    return {"uri": post_uri(CUSTOMER, n), "cid": f"bafyreicid{n}", "author": author(), "reason": reason,
            "record": record, "isRead": False, "indexedAt": at(-10000 + n if offset is None else offset), "labels": []}


class FakeBluesky:
    """An entryway (sessions) and a PDS (everything else) with token expiry, records and chat."""

    def __init__(self) -> None:
        self.api = FakeApi()
        self.password = APP_PASSWORD
        self.access: set[str] = set()
        self.refresh: set[str] = set()
        self.issued = 0
        self.notifications: list[dict[str, Any]] = []  # any order; served newest first
        self.records: dict[str, dict[str, Any]] = {}
        self.threads: dict[str, dict[str, Any]] = {}
        self.logs: list[dict[str, Any]] = []
        self.convos: list[dict[str, Any]] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.fail: dict[str, httpx.Response] = {}
        self.lose_answer: set[str] = set()
        a = self.api
        a.route("POST", "bsky.test:None/xrpc/com.atproto.server.createSession", self.create_session)
        a.route("POST", "bsky.test:None/xrpc/com.atproto.server.refreshSession", self.refresh_session)
        for nsid, handler in {
            "app.bsky.notification.listNotifications": self.list_notifications,
            "app.bsky.feed.getPostThread": self.get_thread,
            "com.atproto.repo.createRecord": self.create_record,
            "com.atproto.repo.getRecord": self.get_record,
            "com.atproto.identity.resolveHandle": self.resolve_handle,
            "chat.bsky.convo.getLog": self.get_log,
            "chat.bsky.convo.listConvos": self.list_convos,
            "chat.bsky.convo.getMessages": self.get_messages,
            "chat.bsky.convo.getConvo": self.get_convo,
            "chat.bsky.convo.sendMessage": self.send_message,
        }.items():
            method = "POST" if nsid in ("com.atproto.repo.createRecord", "chat.bsky.convo.sendMessage") else "GET"
            a.route(method, f"pds.test:None/xrpc/{nsid}", self._authed(nsid, handler))

    # sessions
    def _tokens(self) -> dict[str, Any]:
        self.issued += 1
        access, refresh = f"access-{self.issued}", f"refresh-{self.issued}"
        self.access.add(access)
        self.refresh.add(refresh)
        did_doc = {"@context": ["https://www.w3.org/ns/did/v1"], "id": ME, "alsoKnownAs": [f"at://{HANDLE}"],
                   "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": PDS}]}
        return {"did": ME, "handle": HANDLE, "accessJwt": access, "refreshJwt": refresh, "didDoc": did_doc,
                "active": True}

    def create_session(self, request: httpx.Request) -> httpx.Response:
        if "createSession" in self.fail:
            return self.fail["createSession"]
        body = json.loads(request.content)
        if body != {"identifier": HANDLE, "password": self.password}:
            return json_response({"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, 401)
        return json_response(self._tokens())

    def refresh_session(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.refresh:
            return json_response({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        self.refresh.discard(token)
        return json_response({k: v for k, v in self._tokens().items() if k != "active"})

    def expire_access(self) -> None:
        self.access.clear()

    def _authed(self, nsid: str, handler: Any) -> Any:
        def wrapped(request: httpx.Request) -> httpx.Response:
            if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.access:
                return json_response({"error": "ExpiredToken", "message": "Token has expired"}, 400)
            if nsid in self.fail:
                return self.fail[nsid]
            if nsid.startswith("chat.") and request.headers.get("atproto-proxy") != PROXY:
                return json_response({"error": "MethodNotImplemented", "message": "no proxy"}, 501)
            return handler(request)
        return wrapped

    # app.bsky / com.atproto
    def list_notifications(self, request: httpx.Request) -> httpx.Response:
        reasons = request.url.params.get_list("reasons")
        items = sorted((n for n in self.notifications if not reasons or n["reason"] in reasons),
                       key=lambda n: n["indexedAt"], reverse=True)
        cursor = request.url.params.get("cursor")  # like the AppView's: the time of the last item served
        if cursor:
            items = [n for n in items if n["indexedAt"] < cursor]
        limit = int(request.url.params.get("limit", "50"))
        chunk = items[:limit]
        body: dict[str, Any] = {"notifications": chunk, "priority": False, "seenAt": at(0)}
        if len(items) > limit:
            body["cursor"] = chunk[-1]["indexedAt"]
        return json_response(body, headers={"RateLimit-Limit": "3000", "RateLimit-Remaining": "2999",
                                            "RateLimit-Reset": str(int(NOW + 300))})

    def get_thread(self, request: httpx.Request) -> httpx.Response:
        uri = request.url.params["uri"]
        if uri not in self.threads:
            return json_response({"error": "NotFound", "message": "Post not found"}, 400)
        return json_response({"thread": self.threads[uri]})

    def create_record(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        rkey = body["rkey"]
        if rkey in self.records:
            return json_response({"error": "InvalidRequest", "message": "Record already exists"}, 400)
        uri = f"at://{body['repo']}/{body['collection']}/{rkey}"
        self.records[rkey] = {"uri": uri, "cid": f"bafy{rkey}", "value": body["record"]}
        if "createRecord" in self.lose_answer:
            return json_response({"error": "InternalServerError"}, 502)
        return json_response({"uri": uri, "cid": f"bafy{rkey}", "commit": {"cid": "bafycommit", "rev": "3l"},
                              "validationStatus": "valid"})

    def get_record(self, request: httpx.Request) -> httpx.Response:
        record = self.records.get(request.url.params["rkey"])
        if record is None:
            return json_response({"error": "RecordNotFound", "message": "Could not locate record"}, 400)
        return json_response(record)

    def resolve_handle(self, request: httpx.Request) -> httpx.Response:
        handle = request.url.params["handle"]
        if handle == "ann.bsky.social":
            return json_response({"did": CUSTOMER})
        return json_response({"error": "InvalidRequest", "message": "Unable to resolve handle"}, 400)

    # chat
    def get_log(self, request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return json_response({"cursor": self.logs[-1]["rev"] if self.logs else "0", "logs": self.logs[-2:]})
        newer = [log for log in self.logs if log["rev"] > cursor][:3]
        return json_response({"cursor": newer[-1]["rev"] if newer else cursor, "logs": newer})

    def list_convos(self, request: httpx.Request) -> httpx.Response:
        return json_response({"convos": self.convos})

    def get_messages(self, request: httpx.Request) -> httpx.Response:
        return json_response({"messages": list(reversed(self.messages.get(request.url.params["convoId"], [])))})

    def get_convo(self, request: httpx.Request) -> httpx.Response:
        convo = next(c for c in self.convos if c["id"] == request.url.params["convoId"])
        return json_response({"convo": convo})

    def send_message(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        msgs = self.messages.setdefault(body["convoId"], [])
        view = chat_message(f"m{len(msgs) + 100}", ME, body["message"]["text"], 50)
        msgs.append(view)
        return json_response(view)


def chat_message(mid: str, sender: str, text: str, offset: float) -> dict[str, Any]:
    return {"$type": "chat.bsky.convo.defs#messageView", "id": mid, "rev": f"r{mid}", "text": text,
            "sender": {"did": sender}, "sentAt": at(offset)}


def convo(cid: str = "convo1") -> dict[str, Any]:
    return {"id": cid, "rev": "r1", "members": [author(ME, HANDLE, "Shop"), author()], "muted": False,
            "unreadCount": 1, "status": "accepted"}


def log_create(rev: str, cid: str, message: dict[str, Any]) -> dict[str, Any]:
    return {"$type": "chat.bsky.convo.defs#logCreateMessage", "rev": rev, "convoId": cid, "message": message}


@pytest.fixture
def fake() -> FakeBluesky:
    return FakeBluesky()


@pytest.fixture
def make(fake: FakeBluesky, file_keyring: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(secrets.env_name(ACCOUNT), APP_PASSWORD)

    def build() -> BlueskyProvider:
        return BlueskyProvider(ACCOUNT, {"handle": HANDLE, "service": SERVICE, "poll_interval": None},
                               secrets.getter(ACCOUNT), transport=fake.api.transport, clock=lambda: NOW)
    return build


def calls(fake: FakeBluesky, nsid: str) -> list[httpx.Request]:
    return [c for c in fake.api.calls if c.url.path == f"/xrpc/{nsid}"]


# ---- sessions --------------------------------------------------------------------------------------


async def test_login_once_and_reuse_the_stored_session_across_runs(fake: FakeBluesky, make: Any,
                                                                   file_keyring: Any) -> None:
    await make().fetch({})
    assert len(calls(fake, "com.atproto.server.createSession")) == 1
    stored = json.loads(file_keyring.get_password(secrets.SERVICE, ACCOUNT + ":session"))
    assert stored["did"] == ME and stored["pds"] == PDS and stored["access"] == "access-1"
    await make().fetch({})  # a new run: the keyring session is reused, no second login
    assert len(calls(fake, "com.atproto.server.createSession")) == 1
    listing = calls(fake, "app.bsky.notification.listNotifications")
    assert {c.url.host for c in listing} == {"pds.test"}  # the PDS from the DID document
    assert calls(fake, "com.atproto.server.createSession")[0].url.host == "bsky.test"


async def test_expired_access_token_is_refreshed_not_relogged(fake: FakeBluesky, make: Any,
                                                              file_keyring: Any) -> None:
    provider = make()
    await provider.fetch({})
    fake.expire_access()
    await provider.fetch({})
    assert len(calls(fake, "com.atproto.server.refreshSession")) == 1
    assert len(calls(fake, "com.atproto.server.createSession")) == 1
    stored = json.loads(file_keyring.get_password(secrets.SERVICE, ACCOUNT + ":session"))
    assert stored["access"] == "access-2"  # the renewed session is what the next run uses


async def test_refused_refresh_falls_back_to_one_login(fake: FakeBluesky, make: Any) -> None:
    provider = make()
    await provider.fetch({})
    fake.expire_access()
    fake.refresh.clear()
    await provider.fetch({})
    assert len(calls(fake, "com.atproto.server.createSession")) == 2
    assert provider.xrpc.refreshes == 1


async def test_revoked_app_password_is_an_auth_error(fake: FakeBluesky, make: Any) -> None:
    provider = make()
    await provider.fetch({})
    fake.expire_access()
    fake.refresh.clear()
    fake.password = "revoked"
    with pytest.raises(AuthError) as exc:
        await provider.fetch({})
    assert APP_PASSWORD not in str(exc.value) and "re-login" in str(exc.value)


async def test_login_rate_limit(fake: FakeBluesky, make: Any) -> None:
    fake.fail["createSession"] = json_response(
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, 429,
        {"RateLimit-Limit": "30", "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW + 240))})
    with pytest.raises(RateLimited) as exc:
        await make().fetch({})
    assert exc.value.reset_at == NOW + 240


async def test_rate_limit_headers_on_the_pds(fake: FakeBluesky, make: Any) -> None:
    fake.fail["app.bsky.notification.listNotifications"] = json_response(
        {"error": "RateLimitExceeded"}, 429, {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW + 90))})
    provider = make()
    with pytest.raises(RateLimited) as exc:
        await provider.fetch({})
    assert exc.value.reset_at == NOW + 90
    before = len(fake.api.calls)
    with pytest.raises(RateLimited):
        await provider.fetch({})  # waits for the reset without spending a request
    assert len(fake.api.calls) == before


# ---- notifications ---------------------------------------------------------------------------------


async def test_mapping_mentions_replies_quotes(fake: FakeBluesky, make: Any) -> None:
    text = "☕ see shop.example/track… please"
    start = len("☕ see ".encode())
    facets = [{"$type": "app.bsky.richtext.facet",
               "index": {"byteStart": start, "byteEnd": start + len("shop.example/track…".encode())},
               "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://shop.example/track/12345"}]}]
    root = {"uri": post_uri(ME, 1), "cid": "bafyroot"}
    fake.notifications = [
        notification(1, text=text, facets=facets),
        notification(2, reason="reply", reply={"root": root, "parent": root}),
        notification(3, reason="quote"),
        notification(4, reason="like"),  # filtered by the server (reasons=)
    ]
    fake.threads[post_uri(CUSTOMER, 2)] = {
        "$type": "app.bsky.feed.defs#threadViewPost",
        "post": {"uri": post_uri(CUSTOMER, 2), "cid": "bafyreicid2", "author": author(),
                 "record": fake.notifications[1]["record"], "indexedAt": at(-9998)},
        "parent": {"$type": "app.bsky.feed.defs#threadViewPost",
                   "post": {"uri": root["uri"], "cid": root["cid"], "author": author(ME, HANDLE, "Shop"),
                            "record": {"$type": "app.bsky.feed.post", "text": "New beans!", "createdAt": at(-20000)},
                            "indexedAt": at(-20000)}},
    }
    (result,) = [r for r in await make().fetch({}) if r.stream == "notifications"]
    by_id = {m.native_id: m for m in result.messages}
    assert set(by_id) == {post_uri(CUSTOMER, 1), post_uri(CUSTOMER, 2), post_uri(CUSTOMER, 3), root["uri"]}
    assert by_id[post_uri(CUSTOMER, 1)].text == "☕ see https://shop.example/track/12345 please"
    reply = by_id[post_uri(CUSTOMER, 2)]
    assert reply.kind == "comment" and reply.conversation_native_id == root["uri"]
    assert reply.meta["root"] == root and reply.parent_native_id == root["uri"]
    assert by_id[root["uri"]].direction == "out" and by_id[root["uri"]].text == "New beans!"
    assert by_id[post_uri(CUSTOMER, 3)].kind == "mention"
    assert reply.contact.handle == "@ann.bsky.social" and reply.contact.native_id == CUSTOMER
    params = calls(fake, "app.bsky.notification.listNotifications")[0].url.params
    assert params.get_list("reasons") == ["mention", "reply", "quote"]


async def test_walks_back_to_the_watermark(fake: FakeBluesky, make: Any) -> None:
    fake.notifications = [notification(n) for n in range(1, 121)]
    provider = make()
    first = [r for r in await provider.fetch({}) if r.stream == "notifications"]
    assert len(first) == 1 and len(first[0].messages) == 50  # the first sync takes the newest page
    cursor = first[0].cursor
    fake.notifications += [notification(n) for n in range(121, 191)]
    later = [r for r in await provider.fetch({"notifications": cursor}) if r.stream == "notifications"]
    got = [m.native_id for r in later for m in r.messages]
    assert sorted(got) == sorted(post_uri(CUSTOMER, n) for n in range(121, 191))
    assert "walk" not in later[-1].cursor
    assert later[-1].cursor["seen_uris"] == [post_uri(CUSTOMER, 190)]


async def test_resume_mid_walk_misses_and_doubles_nothing(fake: FakeBluesky, make: Any) -> None:
    fake.notifications = [notification(n) for n in range(1, 11)]
    provider = make()
    (first,) = [r for r in await provider.fetch({}) if r.stream == "notifications"]
    fake.notifications += [notification(n) for n in range(11, 141)]  # 130 new: three pages
    served = [0]
    original = fake.list_notifications

    def flaky(request: httpx.Request) -> httpx.Response:
        served[0] += 1
        return json_response({"error": "UpstreamFailure"}, 502) if served[0] == 2 else original(request)

    fake.api.route("GET", "pds.test:None/xrpc/app.bsky.notification.listNotifications",
                   fake._authed("app.bsky.notification.listNotifications", flaky))
    partial = [r for r in await provider.fetch({"notifications": first.cursor}) if r.stream == "notifications"]
    assert len(partial) == 1 and "walk" in partial[0].cursor  # page one stored, the walk to be continued
    seen = [m.native_id for r in partial for m in r.messages]
    fake.notifications.append(notification(141))  # arrives while we were down
    resumed = [r for r in await make().fetch({"notifications": partial[-1].cursor}) if r.stream == "notifications"]
    seen += [m.native_id for r in resumed for m in r.messages]
    assert "walk" not in resumed[-1].cursor
    final = [r for r in await make().fetch({"notifications": resumed[-1].cursor}) if r.stream == "notifications"]
    seen += [m.native_id for r in final for m in r.messages]
    assert sorted(seen) == sorted(post_uri(CUSTOMER, n) for n in range(11, 142))
    assert len(seen) == len(set(seen))


async def test_failure_on_first_page_raises(fake: FakeBluesky, make: Any) -> None:
    fake.fail["app.bsky.notification.listNotifications"] = json_response({"error": "InternalServerError"}, 500)
    with pytest.raises(TransientError):
        await make().fetch({})


# ---- chat ------------------------------------------------------------------------------------------


def chat_fixture(fake: FakeBluesky) -> None:
    fake.convos = [convo()]
    first = chat_message("m1", CUSTOMER, "Hi, is my order shipped?", -600)
    fake.messages["convo1"] = [first]
    fake.convos[0]["lastMessage"] = first
    fake.logs = [log_create("0001", "convo1", first)]


async def test_chat_bootstrap_then_forward_log(fake: FakeBluesky, make: Any) -> None:
    chat_fixture(fake)
    provider = make()
    (boot,) = [r for r in await provider.fetch({}) if r.stream == "chat"]
    (msg,) = boot.messages
    assert msg.native_id == "convo1:m1" and msg.conversation_native_id == "convo:convo1" and msg.kind == "dm"
    assert msg.direction == "in" and msg.contact.native_id == CUSTOMER and msg.contact.handle == "@ann.bsky.social"
    assert boot.cursor == {"log": "0001", "ready": True}
    later = [chat_message(f"m{n}", CUSTOMER if n % 2 else ME, f"line {n}", n) for n in range(2, 9)]
    fake.logs += [log_create(f"{n:04d}", "convo1", m) for n, m in enumerate(later, start=2)]
    fake.logs.append({"$type": "chat.bsky.convo.defs#logReadMessage", "rev": "0100", "convoId": "convo1"})
    results = [r for r in await provider.fetch({"chat": boot.cursor}) if r.stream == "chat"]
    got = [m for r in results for m in r.messages]
    assert [m.native_id for m in got] == [f"convo1:m{n}" for n in range(2, 9)]
    assert {m.direction for m in got if m.native_id.endswith(("m2", "m4"))} == {"out"}
    assert results[-1].cursor == {"log": "0100", "ready": True}
    chat_calls = [c for c in fake.api.calls if "/xrpc/chat." in c.url.path]
    assert chat_calls and all(c.headers["atproto-proxy"] == PROXY for c in chat_calls)


async def test_our_own_earlier_dms_are_ours_not_the_customers(fake: FakeBluesky, make: Any,
                                                                 tmp_path: Any) -> None:
    """History fetched from a conversation holds our own earlier messages: each shows us (the
    account) as its author, in the provider's mapping and in the stored thread."""
    fake.convos = [convo()]
    history = [chat_message("m1", CUSTOMER, "Is my order shipped?", -900),
               chat_message("m2", ME, "Yes, this morning.", -800),
               chat_message("m3", CUSTOMER, "Thanks!", -700)]
    fake.messages["convo1"] = history
    fake.convos[0]["lastMessage"] = history[-1]
    (boot,) = [r for r in await make().fetch({}) if r.stream == "chat"]
    by_id = {m.native_id: m for m in boot.messages}
    assert (by_id["convo1:m2"].direction, by_id["convo1:m2"].author) == ("out", "Shop")
    assert by_id["convo1:m1"].author == by_id["convo1:m3"].author == "Ann"

    # Our profile without a display name (a realistic variant): the handle, never the customer.
    fake.convos[0]["members"][0] = {k: v for k, v in author(ME, HANDLE, "").items() if k != "displayName"}
    (boot,) = [r for r in await make().fetch({}) if r.stream == "chat"]
    assert {m.native_id: m.author for m in boot.messages}["convo1:m2"] == HANDLE

    from replydesk.storage import ingest, queries
    from replydesk.storage.db import open_database

    db = open_database(tmp_path / "ws")
    ingest.ingest(db, ACCOUNT, [boot])
    thread = queries.thread(db, f"{ACCOUNT}:convo:convo1")
    assert [(m.direction, m.author) for m in thread.messages] == [("in", "Ann"), ("out", HANDLE), ("in", "Ann")]
    db.close()


async def test_outbound_message_without_author_is_never_credited_to_the_customer(tmp_path: Any) -> None:
    """Storage's own fallback: an outbound item a platform sent without an author stays ours."""
    from replydesk.model import Contact, FetchResult, IncomingMessage
    from replydesk.storage import ingest, queries
    from replydesk.storage.db import open_database

    ann = Contact(native_id=CUSTOMER, name="Ann", handle="@ann.bsky.social")
    items = [IncomingMessage("c:1", "convo:c", "bluesky", "dm", ann, "hi", NOW - 60),
             IncomingMessage("c:2", "convo:c", "bluesky", "dm", ann, "hello", NOW - 30, direction="out")]
    db = open_database(tmp_path / "ws")
    ingest.ingest(db, ACCOUNT, [FetchResult(items, {})])
    assert [m.author for m in queries.thread(db, f"{ACCOUNT}:convo:c").messages] == ["Ann", ""]
    db.close()


async def test_group_messages_are_credited_to_their_own_senders(fake: FakeBluesky, make: Any) -> None:
    """A group conversation: each message shows its real sender; the conversation keeps one contact."""
    bob = "did:plc:bobbobbobbobbobbobbobbob"
    group = convo("group1")
    group["members"] = [author(ME, HANDLE, "Shop"), author(), author(bob, "bob.bsky.social", "Bob")]
    fake.convos = [group]
    history = [chat_message("g1", CUSTOMER, "We ordered together", -900),
               chat_message("g2", bob, "Order #4411, two mugs", -850),
               chat_message("g3", ME, "Looking into it", -800),
               chat_message("g4", bob, "Thanks", -700)]
    fake.messages["group1"] = history
    group["lastMessage"] = history[-1]
    provider = make()
    (boot,) = [r for r in await provider.fetch({}) if r.stream == "chat"]
    assert sorted((m.native_id, m.direction, m.author) for m in boot.messages) == [
        ("group1:g1", "in", "Ann"), ("group1:g2", "in", "Bob"), ("group1:g3", "out", "Shop"),
        ("group1:g4", "in", "Bob")]
    assert {m.contact.native_id for m in boot.messages} == {CUSTOMER}
    # A sender missing from the member list (left the group): their handle-less DID, not Ann.
    later = chat_message("g5", "did:plc:gonegonegonegonegonegone", "bye", -600)
    fake.logs = [log_create("0002", "group1", later)]
    results = [r for r in await provider.fetch({"chat": boot.cursor}) if r.stream == "chat"]
    (gone,) = [m for r in results for m in r.messages]
    assert gone.author == "did:plc:gonegonegonegonegonegone"


async def test_app_password_without_dm_access_keeps_notifications(fake: FakeBluesky, make: Any) -> None:
    fake.notifications = [notification(1)]
    fake.fail["chat.bsky.convo.getLog"] = json_response({"error": "InvalidToken", "message": "Bad token scope"}, 400)
    results = await make().fetch({})
    assert [m.native_id for r in results for m in r.messages] == [post_uri(CUSTOMER, 1)]
    (chat,) = [r for r in results if r.stream == "chat"]
    assert "direct-message access" in chat.rejected[0][1]


# ---- replies ---------------------------------------------------------------------------------------


def public_reply(text: str = "Thanks! It ships today.", key: str = "key-1") -> OutgoingReply:
    root = {"uri": post_uri(ME, 1), "cid": "bafyroot"}
    inbound = {"uri": post_uri(CUSTOMER, 2), "cid": "bafyreicid2", "root": root, "did": CUSTOMER,
               "handle": "ann.bsky.social", "indexed_at": NOW - 60}
    return OutgoingReply(key=key, conversation_id=f"{ACCOUNT}:{root['uri']}", conversation_native_id=root["uri"],
                         account=ACCOUNT, kind="comment", private=False, text=text,
                         customer_handle="@ann.bsky.social", answering=AnsweredMessage(inbound["uri"], inbound),
                         meta={"root_uri": root["uri"]})


def tid_seconds(rkey: str) -> float:
    """The timestamp inside a TID record key (53 bits of microseconds above a 10-bit clock id)."""
    value = 0
    for ch in rkey:
        value = value * 32 + "234567abcdefghijklmnopqrstuvwxyz".index(ch)
    return (value >> 10) / 1_000_000


def test_record_key_dates_from_when_the_reply_was_written(make: Any) -> None:
    provider = make()
    written = NOW + 3600  # queued an hour after the customer's post
    reply = dataclasses.replace(public_reply(key="key-9"), created_at=written)
    rkey = provider.rkey(reply)
    assert TID_RE.match(rkey) and written < tid_seconds(rkey) < written + 2.5
    assert provider.rkey(reply) == rkey  # every retry targets the same record
    older = provider.rkey(public_reply(key="key-9"))  # no time given: anchored to the answered post
    assert NOW - 60 < tid_seconds(older) < NOW - 60 + 2.5


async def test_reply_record_refs_rkey_and_facets(fake: FakeBluesky, make: Any) -> None:
    text = "☕ Hi @ann.bsky.social! Track: https://shop.example/t/1. @nobody.invalid"
    provider = make()
    result = await provider.send(public_reply(text))
    (request,) = calls(fake, "com.atproto.repo.createRecord")
    body = json.loads(request.content)
    assert body["repo"] == ME and body["collection"] == "app.bsky.feed.post" and TID_RE.match(body["rkey"])
    record = body["record"]
    assert record["reply"]["root"] == {"uri": post_uri(ME, 1), "cid": "bafyroot"}
    assert record["reply"]["parent"] == {"uri": post_uri(CUSTOMER, 2), "cid": "bafyreicid2"}
    assert "parse_mode" not in record and record["text"] == text
    data = text.encode()
    spans = {f["features"][0]["$type"].split("#")[1]: data[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode()
             for f in record["facets"]}
    assert spans == {"mention": "@ann.bsky.social", "link": "https://shop.example/t/1"}
    mention = next(f for f in record["facets"] if f["features"][0]["$type"].endswith("#mention"))
    assert mention["features"][0]["did"] == CUSTOMER  # known from the inbound post: no lookup needed
    assert result.remote_id == f"at://{ME}/app.bsky.feed.post/{body['rkey']}"
    assert provider.rkey(public_reply(key="key-1")) == body["rkey"] != provider.rkey(public_reply(key="key-2"))


async def test_lost_answer_is_found_and_never_posted_twice(fake: FakeBluesky, make: Any) -> None:
    provider = make()
    fake.lose_answer.add("createRecord")
    with pytest.raises(TransientError):
        await provider.send(public_reply())
    found = await provider.lookup_sent(public_reply())  # what the engine asks before resending
    assert found is not None and found.remote_id.endswith(provider.rkey(public_reply()))
    fake.lose_answer.clear()
    again = await provider.send(public_reply())  # even a blind resend lands on the same record
    assert again.remote_id == found.remote_id and len(fake.records) == 1


async def test_lookup_sent_reports_not_posted(fake: FakeBluesky, make: Any) -> None:
    assert await make().lookup_sent(public_reply()) is None


async def test_post_limit_is_300_graphemes_and_3000_bytes(fake: FakeBluesky, make: Any) -> None:
    """app.bsky.feed.post: maxGraphemes 300 and maxLength 3000 (UTF-8 bytes); a family emoji is one
    grapheme of 25 bytes, so 120 of them fill the byte cap long before the grapheme one."""
    family = "👨‍👩‍👧‍👦"
    provider = make()
    await provider.send(public_reply("é" * 300))  # 300 graphemes, 600 bytes
    await provider.send(public_reply(family * 120, key="families"))  # 120 graphemes, 3000 bytes
    with pytest.raises(PermanentError, match="301 graphemes"):
        await provider.send(public_reply("é" * 301, key="long"))
    with pytest.raises(PermanentError, match="3025 bytes; posts allow 3000"):
        await provider.send(public_reply(family * 121, key="heavy"))
    assert len(fake.records) == 2


def dm_reply(text: str = "It ships today!", key: str = "dm-1") -> OutgoingReply:
    return OutgoingReply(key=key, conversation_id=f"{ACCOUNT}:convo:convo1", conversation_native_id="convo:convo1",
                         account=ACCOUNT, kind="dm", private=True, text=text,
                         answering=AnsweredMessage("convo1:m1", {"convo_id": "convo1", "sent_at": NOW - 600}),
                         customer_handle="@ann.bsky.social",
                         meta={"convo_id": "convo1"})


async def test_dm_reply_and_lookup(fake: FakeBluesky, make: Any) -> None:
    chat_fixture(fake)
    provider = make()
    assert await provider.lookup_sent(dm_reply()) is None
    result = await provider.send(dm_reply())
    (request,) = calls(fake, "chat.bsky.convo.sendMessage")
    assert request.headers["atproto-proxy"] == PROXY
    assert json.loads(request.content) == {"convoId": "convo1", "message": {"text": "It ships today!"}}
    assert result.remote_id == "convo1:m101"
    found = await provider.lookup_sent(dm_reply())
    assert found is not None and found.remote_id == result.remote_id
    with pytest.raises(PermanentError, match="1000"):
        await provider.send(dm_reply("x" * 1001))


def test_tid_shape_and_determinism() -> None:
    assert TID_RE.match(atproto.tid(0, 0)) and atproto.tid(0, 0) == "2222222222222"
    assert atproto.rkey_for("k", NOW) == atproto.rkey_for("k", NOW)
    keys = {atproto.rkey_for(f"key-{n}", NOW) for n in range(2000)}
    assert len(keys) == 2000 and all(TID_RE.match(k) for k in keys)


async def test_a_member_without_a_profile_keeps_the_customers_name(fake: FakeBluesky, make: Any,
                                                                    tmp_path: Any) -> None:
    """A later run sees the convo member as a bare DID with an empty handle (a deactivated or
    not-yet-indexed profile); the customer's real name stays on every conversation."""
    from replydesk.config import Config
    from replydesk.sla import SlaEngine
    from replydesk.storage import ingest, queries
    from replydesk.storage.db import open_database

    db = open_database(tmp_path, sla=SlaEngine(Config().sla), clock=lambda: NOW)
    chat_fixture(fake)
    provider = make()
    boot = await provider.fetch({})
    ingest.ingest(db, ACCOUNT, boot)
    (chat,) = [r for r in boot if r.stream == "chat"]
    fake.convos[0]["members"] = [author(ME, HANDLE, "Shop"), {"did": CUSTOMER, "handle": ""}]
    later = chat_message("m2", CUSTOMER, "Any news?", -60)
    fake.logs.append(log_create("0002", "convo1", later))
    results = await make().fetch({"chat": chat.cursor})  # a new run: the member list is read again
    (msg,) = [m for r in results if r.stream == "chat" for m in r.messages]
    assert msg.contact.name == CUSTOMER  # what the platform gave: a bare DID
    ingest.ingest(db, ACCOUNT, results)
    name, handle = db.conn.execute("SELECT name, handle FROM contacts WHERE native_id=?", (CUSTOMER,)).fetchone()
    assert (name, handle) == ("Ann", "@ann.bsky.social")
    (row,) = queries.inbox_page(db, queries.InboxFilter(statuses=None), 0, 10)
    assert row.customer == "Ann"
