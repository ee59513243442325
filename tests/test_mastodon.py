"""Mastodon provider against the real recorded traffic (Mastodon.py's cassettes) and documented shapes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from typing import Any

import httpx
import pytest

from http_fakes import FakeApi, cassette, find, json_response, needs_recordings
from replydesk import secrets
from replydesk.model import AnsweredMessage, OutgoingReply
from replydesk.providers.base import AuthError, PermanentError, RateLimited, TransientError
from replydesk.providers.html_text import html_to_text
from replydesk.providers.mastodon import MastodonProvider, mastodon_length

pytestmark = needs_recordings

INSTANCE = "http://localhost:3000"
ACCOUNT = "shop-mastodon"
TOKEN = "mastodon-test-token-0123456789"
NOW = 1_795_428_000.0
NOTIFICATIONS = "/api/v1/notifications"
CONVERSATIONS = "/api/v1/conversations"


def make(api: FakeApi, monkeypatch: pytest.MonkeyPatch, **options: Any) -> MastodonProvider:
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    opts = {"instance": INSTANCE, "max_length": None, "poll_interval": None, **options}
    return MastodonProvider(ACCOUNT, opts, secrets.getter(ACCOUNT), transport=api.transport, clock=lambda: NOW)


def me_route(api: FakeApi, account_id: str, acct: str) -> None:
    """verify_credentials for the token's account (a recorded one, re-pointed where the cassette used
    another token)."""
    recorded = find(cassette("test_status_reply.yaml"), "GET", "verify_credentials").json()
    api.route("GET", "/api/v1/accounts/verify_credentials", json_response({**recorded, "id": account_id,
                                                                           "acct": acct, "username": acct}))


def instance_route(api: FakeApi) -> None:
    api.route("GET", "/api/v2/instance", find(cassette("test_stream_user_direct.yaml"), "GET", "/api/v2/instance").response())


def recorded_mention() -> dict[str, Any]:
    return find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types").json()[0]


def notification(nid: int, *, status_id: str | None = None, text: str = "hello", **status_fields: Any) -> dict[str, Any]:
    """A mention notification shaped like the recorded one, with its own ids."""
    item = copy.deepcopy(recorded_mention())
    item["id"] = str(nid)
    item["status"]["id"] = status_id or str(117020577157693549 + nid * 1000)
    item["status"]["content"] = f"<p>{text}</p>"
    item["status"].update(status_fields)
    return item


def page(items: list[dict[str, Any]], newest: str | None) -> httpx.Response:
    headers = {"x-ratelimit-remaining": "250", "x-ratelimit-reset": "2026-11-23T10:05:00.000Z"}
    if newest:
        headers["link"] = (f'<{INSTANCE}/api/v1/notifications?max_id=1>; rel="next", '
                           f'<{INSTANCE}/api/v1/notifications?min_id={newest}&types%5B%5D=mention>; rel="prev"')
    return json_response(items, headers=headers)


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    me_route(api, "117020565966271181", "mastodonpy_test")
    instance_route(api)
    api.route("GET", CONVERSATIONS, json_response([]))
    return api


# ---- inbound ---------------------------------------------------------------------------------------


async def test_recorded_mentions(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types")
    api.route("GET", NOTIFICATIONS, recorded.response())
    provider = make(api, monkeypatch)
    results = await provider.fetch({})
    mentions = [r for r in results if r.stream == "mentions"]
    assert len(mentions) == 1 and mentions[0].rejected == []
    (msg,) = mentions[0].messages
    assert msg.native_id == "117020577157693549" and msg.conversation_native_id == "117020577157693549"
    assert msg.text == "@mastodonpy_test hello!"
    assert msg.kind == "mention" and msg.direction == "in" and msg.contact.handle == "@admin"
    assert msg.meta["visibility"] == "public" and msg.meta["acct"] == "admin"
    assert msg.created_at == pytest.approx(1785592302.823)
    assert mentions[0].cursor == {"min_id": "21"}  # from the recorded Link rel="prev"
    request = api.requests("GET", NOTIFICATIONS)[0]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.url.params.get_list("types[]") == ["mention"]
    assert provider.facts()["mastodon"].public.max == 500  # from the recorded /api/v2/instance


async def test_recorded_conversations(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded DM list belongs to mastodonpy_test_2: one DM it started, one it answered."""
    recorded = find(cassette("test_conversations.yaml"), "GET", "/api/v1/conversations/")
    me_route(api, "117020566092212359", "mastodonpy_test_2")
    api.route("GET", NOTIFICATIONS, json_response([]))
    api.route("GET", CONVERSATIONS, recorded.response())
    customer_dm = find(cassette("test_stream_user_direct.yaml"), "POST", "/api/v1/statuses", index=3).json()
    customer_dm["id"] = "117020588315335369"  # the DM from mastodonpy_test that the second one answers
    api.route("GET", "/api/v1/statuses/117020588388552703/context",
              json_response({"ancestors": [customer_dm], "descendants": []}))
    results = await make(api, monkeypatch).fetch({})
    (direct,) = [r for r in results if r.stream == "direct"]
    assert direct.rejected == []
    by_id = {m.native_id: m for m in direct.messages}
    assert set(by_id) == {"117020593780198542", "117020588388552703", "117020588315335369"}
    assert {m.kind for m in direct.messages} == {"dm"}
    started = by_id["117020593780198542"]
    assert started.direction == "out" and started.contact.handle == "@admin"  # the customer, not us
    assert started.text == "@admin ilu bby ;3" and started.meta["visibility"] == "direct"
    answered, customer = by_id["117020588388552703"], by_id["117020588315335369"]
    assert customer.direction == "in" and answered.direction == "out"
    assert answered.conversation_native_id == customer.conversation_native_id == "117020588315335369"
    assert answered.text == "@mastodonpy_test pssssst!"
    assert direct.cursor == {"min_id": "117020593780198542"}  # the recorded Link rel="prev"


async def test_forward_paging_follows_link_headers(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    first = [notification(n) for n in range(61, 21, -1)]  # 40 items, newest first
    second = [notification(n) for n in range(66, 61, -1)]
    api.route("GET", NOTIFICATIONS, lambda r: page(first, "61") if r.url.params["min_id"] == "21"
              else page(second, "66") if r.url.params["min_id"] == "61" else page([], None))
    results = await make(api, monkeypatch).fetch({"mentions": {"min_id": "21"}})
    mentions = [r for r in results if r.stream == "mentions"]
    assert [r.cursor for r in mentions] == [{"min_id": "61"}, {"min_id": "66"}]
    assert sum(len(r.messages) for r in mentions) == 45


async def test_resume_after_a_failure_mid_walk_misses_and_doubles_nothing(api: FakeApi,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    everything = {n: notification(n) for n in range(22, 101)}

    def server(fail_after: int | None):
        served = [0]

        def handler(request: httpx.Request) -> httpx.Response:
            served[0] += 1
            if fail_after is not None and served[0] > fail_after:
                return json_response({"error": "Bad gateway"}, 502)
            since = int(request.url.params["min_id"])
            chunk = [everything[n] for n in sorted(everything) if n > since][:40]
            return page(list(reversed(chunk)), chunk[-1]["id"] if chunk else None)
        return handler

    seen: list[str] = []
    cursor: dict[str, Any] = {"min_id": "21"}
    api.route("GET", NOTIFICATIONS, server(fail_after=1))
    results = await make(api, monkeypatch).fetch({"mentions": cursor})
    assert len(results) == 1  # the second page failed: only the complete first page comes back
    for result in results:
        seen += [m.native_id for m in result.messages]
        cursor = result.cursor
    api.route("GET", NOTIFICATIONS, server(fail_after=None))
    for result in await make(api, monkeypatch).fetch({"mentions": cursor}):
        seen += [m.native_id for m in result.messages]
    expected = [everything[n]["status"]["id"] for n in range(22, 101)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


async def test_a_failure_on_the_first_page_raises_and_moves_nothing(api: FakeApi,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    api.route("GET", NOTIFICATIONS, json_response({"error": "oops"}, 503))
    with pytest.raises(TransientError):
        await make(api, monkeypatch).fetch({"mentions": {"min_id": "21"}})


async def test_thread_context_brings_the_whole_thread(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    me = {"id": "117020565966271181", "acct": "mastodonpy_test"}
    root = copy.deepcopy(recorded_mention()["status"])
    root.update(id="500", account={**root["account"], "id": me["id"], "acct": me["acct"]}, content="<p>New beans!</p>")
    middle = copy.deepcopy(recorded_mention()["status"])
    middle.update(id="501", in_reply_to_id="500", content="<p>How much?</p>")
    item = notification(30, status_id="502", text="Hello?", in_reply_to_id="501")
    api.route("GET", NOTIFICATIONS, page([item], "30"))
    api.route("GET", "/api/v1/statuses/502/context", json_response({"ancestors": [root, middle], "descendants": []}))
    results = await make(api, monkeypatch).fetch({})
    messages = {m.native_id: m for r in results for m in r.messages}
    assert set(messages) == {"500", "501", "502"}
    assert {m.conversation_native_id for m in messages.values()} == {"500"}
    assert messages["500"].direction == "out" and messages["502"].direction == "in"
    assert {m.kind for m in messages.values()} == {"comment"}  # an answer to our own post
    assert messages["502"].parent_native_id == "501"


async def test_known_parent_skips_the_context_request(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    item = notification(30, status_id="777", in_reply_to_id="776")
    api.route("GET", NOTIFICATIONS, page([item], "30"))
    provider = make(api, monkeypatch)
    provider.resolve_thread = lambda ids: "700" if "776" in ids else None
    results = await provider.fetch({})
    (msg,) = [m for r in results for m in r.messages]
    assert msg.conversation_native_id == "700"
    assert not [c for c in api.calls if "/context" in c.url.path]


async def test_bad_items_are_rejected_and_the_rest_kept(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    good = notification(40)
    no_status = {**notification(41), "status": None}
    bad_time = notification(42, created_at="yesterday")
    bad_account = notification(43)
    bad_account["status"]["account"] = "admin"
    api.route("GET", NOTIFICATIONS, page([bad_account, bad_time, no_status, good, "junk"], "43"))
    (result,) = [r for r in await make(api, monkeypatch).fetch({}) if r.stream == "mentions"]
    assert [m.native_id for m in result.messages] == [good["status"]["id"]]
    assert {native for native, _ in result.rejected} == {"41", "42", "43", "?"}
    assert result.cursor == {"min_id": "43"}


# ---- HTML ------------------------------------------------------------------------------------------


def test_html_to_text_keeps_links_visible_and_mentions_as_acct() -> None:
    content = ('<p><span class="h-card"><a href="https://x.example/@ann" class="u-url mention">@<span>ann</span></a>'
               '</span> see <a href="https://shop.example/track/123456789" rel="nofollow noopener">'
               '<span class="invisible">https://</span><span class="ellipsis">shop.example/track/1</span>'
               '<span class="invisible">23456789</span></a> or <a href="https://evil.example/">our site</a></p>'
               '<p>Line one<br />line two &amp; <a href="https://x.example/tags/coffee" class="mention hashtag">'
               '#<span>coffee</span></a></p>')
    text = html_to_text(content, {"https://x.example/@ann": "ann@x.example"})
    assert text == ("@ann@x.example see https://shop.example/track/123456789 or our site (https://evil.example/)"
                    "\n\nLine one\nline two & #coffee")


RECORDED_CASSETTES = ("test_conversations.yaml", "test_notifications_mentions_only.yaml",
                      "test_notifications_types.yaml", "test_status_reply.yaml", "test_stream_user_direct.yaml")


def _recorded_contents(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["content"]] if isinstance(node.get("content"), str) and "<" in node["content"] else []
        return found + [c for value in node.values() for c in _recorded_contents(value)]
    if isinstance(node, list):
        return [c for value in node for c in _recorded_contents(value)]
    return []


def test_recorded_post_html_reads_as_plain_text_with_every_link_visible() -> None:
    """The one converter on every post of the recorded traffic: no tag, no Markdown, and each link
    that is not a mention or hashtag has its target in the text."""
    import re

    contents = []
    for name in RECORDED_CASSETTES:
        for interaction in cassette(name):
            for line in interaction.body.splitlines() or [""]:
                line = line.removeprefix("data:").strip()
                if line.startswith(("{", "[")):
                    try:
                        contents += _recorded_contents(json.loads(line))
                    except ValueError:
                        continue
                    with contextlib.suppress(ValueError, AttributeError, TypeError):  # SSE: JSON in JSON
                        contents += _recorded_contents(json.loads(json.loads(line).get("payload", "null")))
    assert len(contents) >= 5
    for content in contents:
        text = html_to_text(content)
        assert "<" not in text.replace("<3", "") and "](" not in text and "&amp;" not in text, content
        for href, klass in re.findall(r'<a href="([^"]+)"(?: class="([^"]*)")?', content):
            if "mention" not in (klass or "") and "hashtag" not in (klass or ""):
                assert href in text, (href, text)


def test_rich_federated_post_html_has_no_markdown_residue() -> None:
    """Pleroma/Akkoma and Misskey servers federate lists, quotes, headings and images."""
    content = ('<h2>Order problem</h2><p>Two things:</p><ul><li>the <strong>lid</strong> is cracked</li>'
               '<li>see <a href="https://photos.example/1">this photo</a></li></ul>'
               '<blockquote><p>Ships in 24h</p></blockquote><p><img src="x.png" alt="the box"> thanks</p>')
    assert html_to_text(content) == ("Order problem\n\nTwo things:\n\n• the lid is cracked\n"
                                     "• see this photo (https://photos.example/1)\n\n> Ships in 24h\n\n"
                                     "[image: the box] thanks")


def test_html_markup_in_text_stays_literal() -> None:
    assert html_to_text("<p>[bold red]URGENT[/] &lt;script&gt;</p>") == "[bold red]URGENT[/] <script>"


# ---- replies ---------------------------------------------------------------------------------------


def reply(text: str = "same!", *, key: str = "k-1", visibility: str = "public", private: bool = False,
          acct: str = "mastodonpy_test_2", to: str | None = "117020583245459824", kind: str = "mention") -> OutgoingReply:
    return OutgoingReply(key=key, conversation_id=f"{ACCOUNT}:{to}", conversation_native_id=to or "1",
                         account=ACCOUNT, kind=kind, private=private, text=text,
                         customer_handle="@" + acct,
                         answering=AnsweredMessage(to, {"acct": acct, "visibility": visibility}) if to else None,
                         meta={"root": to})


async def test_recorded_reply(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = find(cassette("test_status_reply.yaml"), "POST", "/api/v1/statuses", index=1)
    api.route("POST", "/api/v1/statuses", recorded.response())
    result = await make(api, monkeypatch).send(reply())
    assert result.remote_id == "117020583258292382"
    (request,) = api.requests("POST", "/api/v1/statuses")
    body = json.loads(request.content)
    form = recorded.form  # what Mastodon.py sent when this was recorded
    assert body["status"] == form["status"][0] == "@mastodonpy_test_2 same!"
    assert body["in_reply_to_id"] == form["in_reply_to_id"][0]
    assert body["visibility"] == form["visibility"][0]
    assert request.headers["idempotency-key"] == "k-1"


async def test_direct_stays_direct_and_private_goes_direct(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(api, monkeypatch)
    assert provider.compose(reply(visibility="direct"))["visibility"] == "direct"
    assert provider.compose(reply(visibility="unlisted"))["visibility"] == "unlisted"
    assert provider.compose(reply(visibility="public", private=True))["visibility"] == "direct"
    assert provider.compose(reply("@MastodonPy_Test_2 hi"))["status"] == "@MastodonPy_Test_2 hi"  # no double prefix


async def test_same_key_posts_once(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = find(cassette("test_status_reply.yaml"), "POST", "/api/v1/statuses", index=1).json()
    ledger: dict[str, dict[str, Any]] = {}

    def post(request: httpx.Request) -> httpx.Response:  # Mastodon's Idempotency-Key behaviour
        key = request.headers["idempotency-key"]
        ledger.setdefault(key, {**recorded, "id": str(900 + len(ledger))})
        return json_response(ledger[key])

    api.route("POST", "/api/v1/statuses", post)
    provider = make(api, monkeypatch)
    first, again = await provider.send(reply(key="abc")), await provider.send(reply(key="abc"))
    assert first.remote_id == again.remote_id and len(ledger) == 1


async def test_length_limit_counts_like_mastodon(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(api, monkeypatch, max_length=60)
    assert mastodon_length("see https://example.com/" + "x" * 200) == 4 + 23
    assert mastodon_length("@ann@very.long.example.social hi") == len("@ann hi")
    with pytest.raises(PermanentError, match="60"):
        await provider.send(reply("x" * 80))
    assert not api.requests("POST", "/api/v1/statuses")


async def test_lookup_sent_finds_our_reply(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = find(cassette("test_status_reply.yaml"), "POST", "/api/v1/statuses", index=1).json()
    me_route(api, "117020565693913441", "admin")
    api.route("GET", "/api/v1/accounts/117020565693913441/statuses", json_response([recorded]))
    provider = make(api, monkeypatch)
    found = await provider.lookup_sent(reply())
    assert found is not None and found.remote_id == "117020583258292382"
    assert await provider.lookup_sent(reply("something else")) is None


# ---- rate limits and auth --------------------------------------------------------------------------


async def test_429_retry_after_seconds(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.route("GET", NOTIFICATIONS, json_response({"error": "Too many requests"}, 429, {"Retry-After": "30"}))
    with pytest.raises(RateLimited) as exc:
        await make(api, monkeypatch).fetch({})
    assert exc.value.reset_at == NOW + 30


async def test_429_retry_after_http_date(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(NOW + 120))
    api.route("GET", NOTIFICATIONS, json_response({"error": "Too many requests"}, 429, {"Retry-After": date}))
    with pytest.raises(RateLimited) as exc:
        await make(api, monkeypatch).fetch({})
    assert exc.value.reset_at == NOW + 120


async def test_exhausted_window_waits_without_requests(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types")
    api.route("GET", NOTIFICATIONS, recorded.response(**{"x-ratelimit-remaining": "0",
                                                         "x-ratelimit-reset": "2026-11-23T10:05:00.000Z"}))
    provider = make(api, monkeypatch)
    await provider.fetch({})
    before = len(api.calls)
    with pytest.raises(RateLimited) as exc:
        await provider.fetch({"mentions": {"min_id": "21"}})
    assert exc.value.reset_at == NOW + 300 and len(api.calls) == before


@pytest.mark.parametrize("status", [401, 403])
async def test_revoked_token_is_an_auth_error(api: FakeApi, monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    api.route("GET", "/api/v1/accounts/verify_credentials",
              json_response({"error": "The access token was revoked"}, status))
    with pytest.raises(AuthError) as exc:
        await make(api, monkeypatch).fetch({})
    assert TOKEN not in str(exc.value) and "re-login" in str(exc.value)


async def test_missing_token_is_an_auth_error(api: FakeApi) -> None:
    provider = MastodonProvider(ACCOUNT, {"instance": INSTANCE}, lambda: None, transport=api.transport)
    with pytest.raises(AuthError, match="replydesk login"):
        await provider.fetch({})
    assert api.calls == []


# ---- streaming -------------------------------------------------------------------------------------


def stream_fixture(api: FakeApi) -> None:
    """The recorded user stream; the token there belonged to mastodonpy_test."""
    recordings = cassette("test_stream_user_direct.yaml")
    me_route(api, "117020617404561855", "mastodonpy_test")
    ours = find(recordings, "POST", "/api/v1/statuses", index=3).json()  # our DM that the customer answers
    api.route("GET", "/api/v1/statuses/117024236635443611/context",
              json_response({"ancestors": [ours], "descendants": []}))
    return recordings


async def test_recorded_sse_stream(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    recordings = stream_fixture(api)
    user = find(recordings, "GET", "/api/v1/streaming/user")
    api.route("GET", "localhost:4000/api/v1/streaming/user/notification", user.response())  # ws:// → http://
    provider = make(api, monkeypatch)
    results = [r async for r in provider.stream()]
    assert [r.stream for r in results] == ["push", "push"]
    public, direct = results
    assert [m.native_id for m in public.messages] == ["117024236408130890"]
    assert public.messages[0].kind == "mention" and public.messages[0].contact.handle == "@admin"
    by_id = {m.native_id: m for m in direct.messages}
    assert set(by_id) == {"117024236635443611", "117024236559579118"}
    assert by_id["117024236635443611"].direction == "in" and by_id["117024236559579118"].direction == "out"
    assert {m.kind for m in direct.messages} == {"dm"}
    assert {m.conversation_native_id for m in direct.messages} == {"117024236559579118"}
    stream_request = [c for c in api.calls if c.url.path.startswith("/api/v1/streaming")][0]
    assert stream_request.url.port == 4000 and stream_request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_streamed_mention_arrives_while_the_connection_stays_open(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    stream_fixture(api)
    body = find(cassette("test_stream_user_direct.yaml"), "GET", "/api/v1/streaming/user").body
    first_event = body[: body.index("event: update", 10)]  # heartbeat + the first update
    mention = body[body.index("event: notification"):]
    mention = mention[: mention.index("\n\n") + 2]

    async def chunks():
        yield first_event.encode()
        await asyncio.sleep(0.2)
        yield mention.encode()
        await asyncio.sleep(3600)  # the connection stays open, as a real stream does

    api.route("GET", "localhost:4000/api/v1/streaming/user/notification",
              lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=chunks()))
    provider = make(api, monkeypatch)
    stream = provider.stream()
    result = await asyncio.wait_for(stream.__anext__(), timeout=60.0)  # a cap; it ends on the event
    assert [m.native_id for m in result.messages] == ["117024236408130890"]
    await stream.aclose()


# ---- with the real engine and storage ---------------------------------------------------------------


async def test_engine_ingests_and_replies_with_the_outbox_key(tmp_path: Any, api: FakeApi,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from replydesk.config import Config
    from replydesk.providers import http
    from replydesk.providers.mastodon import MastodonOptions
    from replydesk.storage import outbox
    from replydesk.workspace import Workspace
    from support import Clock

    recorded = find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types")
    api.route("GET", NOTIFICATIONS, lambda r: recorded.response() if "min_id" not in r.url.params
              else page([], None))
    posted = find(cassette("test_status_reply.yaml"), "POST", "/api/v1/statuses", index=1).json()
    api.route("POST", "/api/v1/statuses", lambda r: json_response({**posted, "id": "990"}))
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(api.transport, **kw))
    ws = Workspace(tmp_path, Config(accounts=[MastodonOptions(name=ACCOUNT, instance=INSTANCE)]),
                   Clock())
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        await engine.run_once()
        await engine.run_once()  # the cursor moved: nothing is stored twice
        conv = f"{ACCOUNT}:117020577157693549"
        assert db.conn.execute("SELECT count(*) FROM messages WHERE conversation_id=?", (conv,)).fetchone()[0] == 1
        key = outbox.queue_reply(db, conv, "Thanks for the shout-out!")
        await engine.run_once()
        (request,) = api.requests("POST", "/api/v1/statuses")
        body = json.loads(request.content)
        assert request.headers["idempotency-key"] == key
        assert body == {"status": "@admin Thanks for the shout-out!", "visibility": "public",
                        "in_reply_to_id": "117020577157693549"}
        assert outbox.get(db, key).state == "sent" and outbox.get(db, key).remote_id == "990"
    finally:
        db.close()


async def test_engine_stores_the_instances_own_limit_for_the_composer(tmp_path: Any, api: FakeApi,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance configured for 1000 characters: the engine learns it from /api/v2/instance and
    stores it with the account, where the console reads it; the account's own max_length wins."""
    from replydesk.config import Config
    from replydesk.providers import http
    from replydesk.providers.mastodon import MastodonOptions
    from replydesk.storage import platform_facts
    from replydesk.workspace import Workspace
    from support import Clock

    instance = find(cassette("test_stream_user_direct.yaml"), "GET", "/api/v2/instance").json()
    instance["configuration"]["statuses"]["max_characters"] = 1000
    api.route("GET", "/api/v2/instance", json_response(instance))
    api.route("GET", NOTIFICATIONS, json_response([]))
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    monkeypatch.setenv(secrets.env_name("capped"), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(api.transport, **kw))
    accounts = [MastodonOptions(name=ACCOUNT, instance=INSTANCE), MastodonOptions(name="capped", instance=INSTANCE,
                                                                                   max_length=300)]
    ws = Workspace(tmp_path, Config(accounts=accounts), Clock())
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        before = {a: f.public.max for a, _, f in platform_facts.load(db)}
        await engine.run_once()
        after = {a: f for a, _, f in platform_facts.load(db)}
    finally:
        db.close()
    assert before == {ACCOUNT: 500, "capped": 300}  # stored at start: the default, the account's own
    assert after[ACCOUNT].public.max == 1000 and after[ACCOUNT].public.counting == "mastodon"
    assert after["capped"].public.max == 300
    assert after[ACCOUNT].limit("mention", False).fits("a" * 1000)
    assert not after[ACCOUNT].limit("mention", False).fits("a" * 1001)


async def test_engine_stores_a_streamed_mention_without_polling(tmp_path: Any, api: FakeApi,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The running engine consumes the SSE stream: a mention is in the cache (not only parsed) in < 2 s."""
    from replydesk.config import Config
    from replydesk.providers import http
    from replydesk.providers.mastodon import MastodonOptions
    from replydesk.workspace import Workspace
    from support import Clock

    stream_fixture(api)
    api.route("GET", NOTIFICATIONS, lambda r: page([], None))
    body = find(cassette("test_stream_user_direct.yaml"), "GET", "/api/v1/streaming/user").body
    mention = body[body.index("event: notification"):]
    mention = mention[: mention.index("\n\n") + 2]
    pushed = asyncio.Event()

    async def chunks():
        yield b":thump\n\n"
        await pushed.wait()
        yield mention.encode()
        await asyncio.sleep(30)

    api.route("GET", "localhost:4000/api/v1/streaming/user/notification",
              lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=chunks()))
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(api.transport, **kw))
    account = MastodonOptions(name=ACCOUNT, instance=INSTANCE, poll_interval=600)
    ws = Workspace(tmp_path, Config(accounts=[account]), Clock())
    db = ws.open_db()
    engine = ws.engine(db)
    task = asyncio.create_task(engine.run())
    try:
        deadline = time.monotonic() + 60
        while not engine.accounts[ACCOUNT].streaming and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert engine.accounts[ACCOUNT].streaming
        pushed.set()
        started = time.monotonic()
        found = 0
        while not found and time.monotonic() - started < 60:  # polling is every 10 minutes here
            await asyncio.sleep(0.02)
            found = db.conn.execute("SELECT count(*) FROM messages WHERE native_id='117024236408130890'").fetchone()[0]
        assert found == 1
    finally:
        engine.stop()
        await asyncio.wait_for(task, 5)
        db.close()
