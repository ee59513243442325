"""A mutation fuzzer over every HTTP provider's payload mappers, beyond one field at a time.

``test_provider_properties`` damages one field of one item; this goes further, as a hostile or
broken platform does: several mutations stacked in one item, values nested hundreds of levels deep,
and the raw body itself damaged (cut short, bytes flipped, nested past the interpreter's limit, the
wrong top-level type, numbers out of range). The rule checked is the provider contract: ``fetch``
returns (each bad item in ``rejected`` with a reason, the others stored by a real ingest) or raises
a ``ProviderError`` the engine can show; never any other exception.

Hypothesis drives it (derandomized: the same examples every run, so a failure reproduces); atheris
was considered and left out: its coverage guidance pays off on parsers written in C, while these
mappers are Python over ``json.loads`` output, which structural mutation reaches directly.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_provider_properties import DELETE, NOW, bsky_notification, junk, mutate, paths, stored, tg_update

from http_fakes import FakeApi, cassette, find, needs_recordings
from replydesk.model import FetchResult
from replydesk.providers.base import ProviderError
from replydesk.providers.bluesky import BlueskyProvider
from replydesk.providers.mastodon import MastodonProvider
from replydesk.providers.telegram import TelegramProvider
from replydesk.storage import ingest
from replydesk.storage.db import Database

NEST = "__nested__"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """One real workspace database for every example, with the accounts the fuzzed providers use."""
    from replydesk.config import Config
    from replydesk.sla import SlaEngine
    from replydesk.storage.db import open_database

    database = open_database(tmp_path_factory.mktemp("fuzz"), sla=SlaEngine(Config().sla), clock=lambda: NOW)
    with database.transaction():
        for name, platform in (("m", "mastodon"), ("b", "bluesky"), ("t", "telegram"), ("e", "email"),
                               ("shop-x", "x"), ("shop-mastodon", "mastodon")):
            ingest.ensure_account(database, name, platform, platform)
    return database
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

values = junk | st.sampled_from([NEST]) | st.sampled_from([2**64, -(2**63) - 1, 1e308, -0.0, "", " ", "0"])
depths = st.sampled_from([2, 50, 300, 900, 5000])


def render(data: Any, depth: int) -> bytes:
    """JSON of ``data`` with each ``NEST`` marker replaced by lists nested ``depth`` deep (written by
    hand: ``json.dumps`` itself would give up on the deepest)."""
    text = json.dumps(data, allow_nan=True)
    return text.replace(json.dumps(NEST), "[" * depth + "1" + "]" * depth).encode()


def damage(body: bytes, how: str, where: float) -> bytes:
    """The raw body damaged as a broken proxy or a hostile server would."""
    cut = int(len(body) * where)
    return {
        "truncate": body[:cut],
        "flip": body[:cut] + bytes([body[cut] ^ 0x5A]) + body[cut + 1:] if cut < len(body) else body,
        "nest": b"[" * 100_000 + b"]" * 100_000,
        "object": b'{"result": {"ok": true}, "notifications": {"a": 1}, "logs": 7}',
        "scalar": b'"just a string"',
        "null": b"null",
        "huge-number": body.replace(b"1", b"1e400", 1),
        "nan": b"[NaN, Infinity, -Infinity]",
        "bom": b"\xef\xbb\xbf" + body,
        "latin1": body.decode("utf-8", "replace").encode("latin-1", "replace"),
    }[how]


raw_damage = st.sampled_from(["truncate", "flip", "nest", "object", "scalar", "null", "huge-number", "nan",
                              "bom", "latin1"])


def stacked(template: dict[str, Any]) -> st.SearchStrategy[list[tuple[tuple, Any]]]:
    return st.lists(st.tuples(st.sampled_from(paths(template)), values), min_size=1, max_size=4)


def apply(item: dict[str, Any], mutations: list[tuple[tuple, Any]]) -> Any:
    for path, value in mutations:
        try:
            item = mutate(item, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the parent
            continue
    return item


def fetch_or_provider_error(fetch: Any) -> list[FetchResult] | None:
    """The contract: results, or a ProviderError (the engine shows it); anything else fails the test."""
    try:
        return asyncio.run(fetch)
    except ProviderError:
        return None


def settle(db: Database, account: str, results: list[FetchResult] | None, good: list[str]) -> None:
    if results is None:
        return
    ingest.ingest(db, account, results)  # a real ingest: must not raise either
    for result in results:
        assert all(isinstance(label, str) and reason for label, reason in result.rejected), result.rejected
    if good:
        assert stored(db, account, good) == set(good)


# ---- Mastodon ---------------------------------------------------------------------------------------


def mastodon(handler: Callable[[httpx.Request], httpx.Response]) -> MastodonProvider:
    me = find(cassette("test_status_reply.yaml"), "GET", "verify_credentials").json()
    api = FakeApi()
    api.route("GET", "/api/v1/accounts/verify_credentials", httpx.Response(200, json=me))
    api.route("GET", "/api/v1/notifications", handler)
    api.route("GET", "/api/v1/conversations", httpx.Response(200, json=[]))
    return MastodonProvider("m", {"instance": "http://localhost:3000"}, lambda: "token",
                            transport=api.transport, clock=lambda: NOW)


def mastodon_items(k: int) -> list[dict[str, Any]]:
    template = find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types").json()[0]
    items = []
    for n in range(3):
        item = copy.deepcopy(template)
        item["id"], item["status"]["id"] = str(100 + n), str(50_000_000 + k * 10 + n)
        items.append(item)
    return items


@needs_recordings
def test_mastodon_stacked_and_nested_mutations(db: Database) -> None:
    counter = iter(range(10**9))
    template = mastodon_items(0)[1]

    @given(stacked(template), depths)
    @FUZZ
    def run(mutations: list[tuple[tuple, Any]], depth: int) -> None:
        batch = mastodon_items(next(counter))
        batch[1] = apply(batch[1], mutations)
        body = render(batch, depth)
        results = fetch_or_provider_error(mastodon(lambda r: httpx.Response(200, content=body)).fetch({}))
        good = [batch[0]["status"]["id"], batch[2]["status"]["id"]] if results and depth < 900 else []
        settle(db, "m", results, good)

    run()


@needs_recordings
def test_mastodon_damaged_bodies(db: Database) -> None:
    counter = iter(range(10**9))

    @given(raw_damage, st.floats(0, 1))
    @FUZZ
    def run(how: str, where: float) -> None:
        body = damage(render(mastodon_items(1000 + next(counter)), 2), how, where)
        settle(db, "m", fetch_or_provider_error(mastodon(lambda r: httpx.Response(200, content=body)).fetch({})), [])

    run()


@needs_recordings
def test_mastodon_listening_stacked_and_nested_mutations(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listening's search results are platform payloads too: a bad status is rejected, the rest kept."""
    from test_listening_platforms import BRAND, SEARCH, TAG, mastodon, mastodon_api, status

    counter = iter(range(10**9))
    template = status(1, "Duka la Amani still hasn't shipped my order")

    @given(stacked(template), depths)
    @FUZZ
    def run(mutations: list[tuple[tuple, Any]], depth: int) -> None:
        k = 117_100_000_000_000_000 + next(counter) * 10
        found = [status(k + n, f"Duka la Amani order {n}?") for n in range(3)]
        found[1] = apply(found[1], mutations)
        body = render({"accounts": [], "statuses": found, "hashtags": []}, depth)
        api = mastodon_api()
        api.route("GET", SEARCH, lambda r: httpx.Response(200, content=body))
        api.route("GET", TAG, httpx.Response(200, json=[]))
        provider = mastodon(api, lambda: NOW, monkeypatch)
        results = fetch_or_provider_error(provider.listen([BRAND], {}))
        good = [found[0]["id"], found[2]["id"]] if results and depth < 900 else []
        settle(db, "shop-mastodon", results, good)

    run()


# ---- Bluesky ----------------------------------------------------------------------------------------


def bluesky(notifications_body: bytes, log_body: bytes | None = None) -> BlueskyProvider:
    api = FakeApi()
    session = {"did": "did:plc:shop", "handle": "shop.bsky.social", "accessJwt": "a", "refreshJwt": "r",
               "didDoc": {"service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                       "serviceEndpoint": "https://pds.test"}]}}
    api.route("POST", "/xrpc/com.atproto.server.createSession", httpx.Response(200, json=session))
    api.route("GET", "/xrpc/app.bsky.notification.listNotifications",
              lambda r: httpx.Response(200, content=notifications_body))
    api.route("GET", "/xrpc/chat.bsky.convo.getLog",
              lambda r: httpx.Response(200, content=log_body or b'{"cursor": "9", "logs": []}'))
    api.route("GET", "/xrpc/chat.bsky.convo.getConvo", httpx.Response(200, json={"convo": {"id": "c", "members": []}}))
    provider = BlueskyProvider("b", {"handle": "shop.bsky.social", "service": "https://bsky.test"}, lambda: "pw",
                               transport=api.transport, clock=lambda: NOW)
    provider.resolve_thread = lambda ids: "known"
    return provider


def test_bluesky_stacked_and_nested_mutations(db: Database, file_keyring: Any) -> None:
    counter = iter(range(10**9))

    @given(stacked(bsky_notification(1)), depths)
    @FUZZ
    def run(mutations: list[tuple[tuple, Any]], depth: int) -> None:
        k = 100_000 + next(counter) * 3
        batch = [bsky_notification(k + 2), apply(bsky_notification(k + 1), mutations), bsky_notification(k)]
        body = render({"notifications": batch}, depth)
        results = fetch_or_provider_error(bluesky(body).fetch({"chat": {"log": "1", "ready": True}}))
        good = [batch[0]["uri"], batch[2]["uri"]] if results and depth < 900 else []
        settle(db, "b", results, good)

    run()


def test_bluesky_damaged_bodies(db: Database, file_keyring: Any) -> None:
    counter = iter(range(10**9))

    @given(raw_damage, st.floats(0, 1), st.booleans())
    @FUZZ
    def run(how: str, where: float, in_chat: bool) -> None:
        k = 200_000 + next(counter) * 3
        good = render({"notifications": [bsky_notification(k)]}, 2)
        log = json.dumps({"cursor": "9", "logs": [{"$type": "chat.bsky.convo.defs#logCreateMessage", "rev": "1",
                                                   "convoId": "c", "message": {"id": f"m{k}", "text": "hi"}}]}).encode()
        provider = bluesky(good, damage(log, how, where)) if in_chat else bluesky(damage(good, how, where))
        settle(db, "b", fetch_or_provider_error(provider.fetch({"chat": {"log": "1", "ready": True}})), [])

    run()


# ---- Telegram ---------------------------------------------------------------------------------------


def telegram(body: bytes) -> TelegramProvider:
    return TelegramProvider("t", {"api_base": "https://tg.test"}, lambda: "1:" + "A" * 30,
                            transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)))


def test_telegram_stacked_and_nested_mutations(db: Database) -> None:
    counter = iter(range(10**9))

    @given(stacked(tg_update(1)), depths)
    @FUZZ
    def run(mutations: list[tuple[tuple, Any]], depth: int) -> None:
        k = 300_000 + next(counter) * 3
        updates = [tg_update(k), apply(tg_update(k + 1), mutations), tg_update(k + 2)]
        results = fetch_or_provider_error(telegram(render({"ok": True, "result": updates}, depth)).fetch({}))
        good = [f"111:{k}", f"111:{k + 2}"] if results and depth < 900 else []
        settle(db, "t", results, good)

    run()


def test_telegram_damaged_bodies(db: Database) -> None:
    @given(raw_damage, st.floats(0, 1))
    @FUZZ
    def run(how: str, where: float) -> None:
        body = damage(render({"ok": True, "result": [tg_update(400_000)]}, 2), how, where)
        settle(db, "t", fetch_or_provider_error(telegram(body).fetch({})), [])

    run()


# ---- X ----------------------------------------------------------------------------------------------


def x_provider(mentions_body: bytes, dms_body: bytes = b'{"meta": {"result_count": 0}}') -> Any:
    """X with a logged-in token set in the (file) keyring; mentions and DM events as given."""
    from test_x import ME

    from replydesk.providers import x

    api = FakeApi()
    api.route("GET", "/2/users/me", httpx.Response(200, json={"data": ME}))
    api.route("GET", f"/2/users/{ME['id']}/mentions", lambda r: httpx.Response(200, content=mentions_body))
    api.route("GET", "/2/dm_events", lambda r: httpx.Response(200, content=dms_body))
    return x.XProvider("shop-x", {"client_id": "client-1"}, lambda: None, transport=api.transport, clock=lambda: NOW)


def x_page(k: int) -> dict[str, Any]:
    from test_x import CUSTOMER, mention

    items = [mention(str(9_000_000 + k * 10 + n), f"where is my order {n}?") for n in range(3)]
    return {"data": items, "includes": {"users": [CUSTOMER], "tweets": []},
            "meta": {"result_count": 3, "newest_id": items[0]["id"], "oldest_id": items[-1]["id"]}}


@pytest.fixture
def x_login(file_keyring: Any) -> None:
    from replydesk.providers import oauth

    oauth.TokenStore("shop-x").save(oauth.TokenSet("access-1", "refresh-1", NOW + 7200, NOW))


def test_x_stacked_and_nested_mutations(db: Database, x_login: None) -> None:
    counter = iter(range(10**9))
    template = x_page(0)["data"][1]

    @given(stacked(template), depths)
    @FUZZ
    def run(mutations: list[tuple[tuple, Any]], depth: int) -> None:
        page = x_page(1 + next(counter))
        page["data"][1] = apply(page["data"][1], mutations)
        results = fetch_or_provider_error(x_provider(render(page, depth)).fetch({}))
        good = [page["data"][0]["id"], page["data"][2]["id"]] if results and depth < 900 else []
        settle(db, "shop-x", results, good)

    run()


def test_x_damaged_bodies(db: Database, x_login: None) -> None:
    counter = iter(range(10**9))

    @given(raw_damage, st.floats(0, 1), st.booleans())
    @FUZZ
    def run(how: str, where: float, in_dms: bool) -> None:
        good = render(x_page(50_000 + next(counter)), 2)
        dms = json.dumps({"data": [{"id": "7", "event_type": "MessageCreate", "text": "hi", "sender_id": "2244994945",
                                    "dm_conversation_id": "783214-2244994945",
                                    "created_at": "2026-11-23T09:30:00.000Z"}],
                          "meta": {"result_count": 1}}).encode()
        provider = x_provider(good, damage(dms, how, where)) if in_dms else x_provider(damage(good, how, where))
        settle(db, "shop-x", fetch_or_provider_error(provider.fetch({})), [])

    run()


def test_the_fuzzer_damages_what_it_says() -> None:
    assert render({"a": NEST}, 3) == b'{"a": [[[1]]]}'
    body = b'[{"id": "1"}]'
    assert damage(body, "truncate", 0.5) == body[:6]
    assert damage(body, "flip", 0.0)[0] != body[0]
    assert apply({"a": {"b": 1}}, [(("a",), DELETE), (("a", "b"), 2)]) == {}
    with pytest.raises(RecursionError):  # what the stdlib does with it: not a ValueError
        json.loads(damage(body, "nest", 0))


# ---- Email ------------------------------------------------------------------------------------------

MAIL = sorted((Path(__file__).parent / "data" / "mail").glob("*.eml"))


def mail_damage(raw: bytes, how: str, where: float, depth: int) -> bytes:
    cut = int(len(raw) * where)
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    nested = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth))
    return {
        "truncate": raw[:cut],
        "flip": raw[:cut] + bytes([raw[cut] ^ 0xA5]) + raw[cut + 1:] if cut < len(raw) else raw,
        "nul": raw[:cut] + b"\0" * 64 + raw[cut:],
        "nested-mime": b"From: a@b.example\nMIME-Version: 1.0\n" + nested + b"hello\n",
        "headers-only": head,
        "repeat-headers": head + b"\n" + head * 50 + sep + body,
        "bad-encoded-words": head + b"\nSubject: " + b"=?utf-8?b?////?= =?x-unknown?q?=ZZ?= " * 200 + sep + body,
        "bad-dates": head.replace(b"Date:", b"Date: Mon, 31 Feb 0001 99:99:99 +9999\nX-Old-Date:") + sep + body,
        "bad-charset": raw.replace(b"charset=", b"charset=x-no-such-charset-", 1),
        "binary": bytes(range(256)) * 8,
    }[how]


mail_ways = st.sampled_from(["truncate", "flip", "nul", "nested-mime", "headers-only", "repeat-headers",
                             "bad-encoded-words", "bad-dates", "bad-charset", "binary"])


def test_email_mutated_messages(db: Database) -> None:
    """The mail corpus damaged every way: each message becomes a stored message or a rejected one."""
    from replydesk.providers.email import EmailOptions
    from replydesk.providers.email_imap import FetchedItem
    from replydesk.providers.email_mailbox import MailboxSync

    options = EmailOptions(name="e", address="hello@shop.example", imap={"host": "imap.shop.example"})
    counter = iter(range(10**9))

    @given(st.sampled_from(MAIL), mail_ways, st.floats(0, 1), st.sampled_from([1, 50, 400, 2000]))
    @FUZZ
    def run(path: Path, how: str, where: float, depth: int) -> None:
        sync = MailboxSync("e", options, session=None, resolve_thread=lambda ids: None, poll_interval=lambda: 60.0)
        uid = next(counter)
        raw = mail_damage(path.read_bytes(), how, where, depth)
        item = FetchedItem(uid=uid, flags=[], internaldate=NOW, size=len(raw), modseq=None, body=raw)
        messages, rejected = sync.map_fetched("INBOX", 1, [(item, sync.parse(item))])
        assert len(messages) + len(rejected) <= 1 and all(reason for _, reason in rejected)
        ingest.ingest(db, "e", [FetchResult(messages=messages, rejected=rejected, cursor={}, stream="imap:INBOX")])

    run()


def test_meta_headers_and_error_bodies_nested_past_the_limit_are_garbage_not_a_crash() -> None:
    """Meta's usage headers and error bodies went through ``json.loads``, whose RecursionError on a
    deeply nested value escaped the provider (the account's task stalled on every poll)."""
    from replydesk.providers import meta

    deep = "[" * 50_000 + "]" * 50_000
    assert meta.usage({"x-app-usage": deep, "x-business-use-case-usage": deep}) == (0.0, 0.0)
    response = httpx.Response(400, content=deep.encode(), request=httpx.Request("GET", "https://graph.test/x"))
    assert meta.error_of(response) == {}
    with pytest.raises(ValueError):
        meta.MetaProvider.body_of(deep.encode(), "page")
