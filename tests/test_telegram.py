"""Telegram provider against a fake Bot API with Telegram's getUpdates/offset semantics."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import httpx
import pytest

from replydesk import secrets
from replydesk.model import AnsweredMessage, OutgoingReply
from replydesk.providers.base import (
    AuthError,
    Offline,
    PermanentError,
    RateLimited,
    TransientError,
    UnknownDelivery,
)
from replydesk.providers.telegram import ALLOWED_UPDATES, TelegramProvider, expand_text_links

ACCOUNT = "shop-telegram"
TOKEN = "7012345678:AAFakeTokenForTestsOnly_abcdefghijk-XYZ"
API = "https://api.telegram.test"
NOW = 1_795_428_000


def user(uid: int = 111, first: str = "Ann", username: str | None = "ann_k") -> dict[str, Any]:
    out: dict[str, Any] = {"id": uid, "is_bot": False, "first_name": first, "language_code": "en"}
    if username:
        out["username"] = username
    return out


def private_chat(uid: int = 111) -> dict[str, Any]:
    return {"id": uid, "first_name": "Ann", "username": "ann_k", "type": "private"}


def message(mid: int, text: str | None = "Hello", *, chat: dict | None = None, sender: dict | None = None,
            **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"message_id": mid, "from": sender or user(), "chat": chat or private_chat(),
                           "date": NOW - 100 + mid}
    if text is not None:
        out["text"] = text
    out.update(extra)
    return out


class FakeBotApi:
    """Pending updates are kept until a getUpdates with a higher offset confirms them, as Telegram does."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.next_id = 500
        self.sent: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.answer: Any = None  # override: a Response or an exception to raise

    def push(self, **update: Any) -> int:
        self.next_id += 1
        self.updates.append({"update_id": self.next_id, **update})
        return self.next_id

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.path.startswith(f"/bot{TOKEN}/")
        if self.answer is not None:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer
        method = request.url.path.rsplit("/", 1)[1]
        body = json.loads(request.content or b"{}")
        if method == "getUpdates":
            offset = body.get("offset")
            if offset is not None:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed: gone
            return ok(self.updates[: body.get("limit", 100)])
        if method == "sendMessage":
            self.sent.append(body)
            chat = {"id": body["chat_id"], "type": "private", "first_name": "Ann"}
            return ok({"message_id": 9000 + len(self.sent), "from": {"id": 7012345678, "is_bot": True,
                                                                     "first_name": "Shop"},
                       "chat": chat, "date": NOW, "text": body["text"]})
        return httpx.Response(404, json={"ok": False, "error_code": 404, "description": "Not Found"})


def ok(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "result": result})


@pytest.fixture
def bot() -> FakeBotApi:
    return FakeBotApi()


@pytest.fixture
def provider(bot: FakeBotApi, monkeypatch: pytest.MonkeyPatch) -> TelegramProvider:
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    return TelegramProvider(ACCOUNT, {"api_base": API, "poll_interval": None}, secrets.getter(ACCOUNT),
                            transport=httpx.MockTransport(bot), clock=lambda: float(NOW))


# ---- inbound ---------------------------------------------------------------------------------------


async def test_get_updates_request_and_mapping(bot: FakeBotApi, provider: TelegramProvider) -> None:
    bot.push(message=message(1, "Where is my order #123?"))
    bot.push(business_message=message(2, "Hi from a Business chat", business_connection_id="bc-1",
                                      chat=private_chat(222), sender=user(222, "Bo", "bo")))
    bot.push(business_message=message(3, "We'll check!", business_connection_id="bc-1",
                                      chat=private_chat(222), sender=user(999, "Shop owner", "shop")))
    topic = {"id": -100200, "title": "Support forum", "type": "supergroup", "is_forum": True}
    bot.push(message=message(4, "Question in a topic", chat=topic, message_thread_id=77, is_topic_message=True))
    bot.push(edited_message=message(1, "Where is my order #124?", edit_date=NOW + 5))
    (result,) = await provider.fetch({})
    body = json.loads(bot.requests[0].content)
    assert body["allowed_updates"] == ALLOWED_UPDATES and "offset" not in body and body["timeout"] >= 1
    by_id = {m.native_id: m for m in result.messages}
    first = by_id["111:1"]
    assert first.conversation_native_id == "111" and first.kind == "dm" and first.direction == "in"
    assert first.contact.native_id == "111" and first.contact.handle == "@ann_k"
    assert first.meta["message_id"] == 1 and first.meta["conversation"]["chat_id"] == 111
    biz = by_id["b:bc-1:222:2"]
    assert biz.meta["business_connection_id"] == "bc-1" and biz.direction == "in"
    assert biz.conversation_native_id == "b:bc-1:222"
    owner = by_id["b:bc-1:222:3"]
    assert owner.direction == "out" and owner.contact.native_id == "222"  # the customer stays the contact
    assert by_id["-100200:4"].conversation_native_id == "-100200:77" and by_id["-100200:4"].kind == "mention"
    edit = by_id[f"111:1:edit:{NOW + 5}"]
    assert edit.text == "(edited) Where is my order #124?" and edit.parent_native_id == "111:1"
    assert result.cursor == {"offset": 506} and result.stream == "updates"


async def test_resume_nothing_missed_or_doubled(bot: FakeBotApi, provider: TelegramProvider) -> None:
    for n in range(1, 6):
        bot.push(message=message(n, f"m{n}"))
    (crashed,) = await provider.fetch({})  # fetched, then the process died before storing
    assert len(crashed.messages) == 5
    stored: list[str] = []
    (again,) = await provider.fetch({})  # restart from the stored (empty) cursor: same batch again
    stored += [m.native_id for m in again.messages]
    for n in range(6, 9):
        bot.push(message=message(n, f"m{n}"))
    (more,) = await provider.fetch({"updates": again.cursor})
    stored += [m.native_id for m in more.messages]
    (empty,) = await provider.fetch({"updates": more.cursor})
    assert empty.messages == [] and empty.cursor == more.cursor
    assert stored == [f"111:{n}" for n in range(1, 9)]


async def test_bad_updates_are_rejected_and_skipped(bot: FakeBotApi, provider: TelegramProvider) -> None:
    bot.push(message=message(1, "fine"))
    bot.push(message={"message_id": "x", "chat": private_chat(), "date": NOW})
    bot.push(message=message(3, None, photo=[{"file_id": "f"}], caption="broken mug"))
    bot.push(message="not an object")
    bot.updates.append({"update_id": "nonsense", "message": message(5)})
    bot.push(callback_query={"id": "1"})
    (result,) = await provider.fetch({})
    assert [m.native_id for m in result.messages] == ["111:1", "111:3"]
    assert result.messages[1].text == "[photo]\nbroken mug"
    assert {r[0] for r in result.rejected} == {"update:502", "update:504", "update:?"}
    assert result.cursor == {"offset": 506}


def test_a_venue_shows_its_title_and_address() -> None:
    """Telegram sets a venue's ``location`` too (for backward compatibility, says the Bot API):
    the venue is what the customer shared, so its title and address are what is shown."""
    here = {"latitude": 41.3851, "longitude": 2.1734}
    venue = {"location": here, "title": "Corner Coffee", "address": "Carrer de Pau Claris 12, Barcelona",
             "foursquare_id": "4b5f2c3df964a520", "foursquare_type": "food/coffeeshop"}
    provider = TelegramProvider(ACCOUNT, {"api_base": API}, lambda: TOKEN)
    result = provider.page([
        {"update_id": 1, "message": message(1, None, venue=venue, location=here)},
        {"update_id": 2, "message": message(2, None, venue={"location": here, "title": "Pop-up stall",
                                                            "address": ""}, location=here)},
        {"update_id": 3, "message": message(3, None, location=here)},
        {"update_id": 4, "message": message(4, None, animation={"file_id": "a"}, document={"file_id": "a",
                                                                                          "file_name": "x.mp4"})},
    ], None)
    assert [m.text for m in result.messages] == [
        "[venue: Corner Coffee, Carrer de Pau Claris 12, Barcelona]", "[venue: Pop-up stall]",
        "[location: 41.3851, 2.1734]", "[animation]"]


async def test_business_chat_and_the_bots_own_chat_with_the_same_id_stay_apart(bot: FakeBotApi,
                                                                               provider: TelegramProvider) -> None:
    """Ann writes to the shop's Business account and, separately, to its bot: both chats have her
    user id as chat id, and even the same message ids. They are two conversations."""
    bot.push(business_message=message(5, "Hi shop, about my order", business_connection_id="bc-1",
                                      chat=private_chat(111)))
    bot.push(message=message(5, "/start"))  # her own chat with the bot: same chat id, same message id
    bot.push(business_message=message(6, "Still there?", business_connection_id="bc-1", chat=private_chat(111),
                                      reply_to_message=message(5, "Hi shop, about my order")))
    (result,) = await provider.fetch({})
    got = {m.native_id: m for m in result.messages}
    assert sorted(got) == ["111:5", "b:bc-1:111:5", "b:bc-1:111:6"]
    assert got["111:5"].conversation_native_id == "111"
    assert got["b:bc-1:111:5"].conversation_native_id == got["b:bc-1:111:6"].conversation_native_id == "b:bc-1:111"
    assert got["b:bc-1:111:6"].parent_native_id == "b:bc-1:111:5"
    assert got["111:5"].contact.native_id == got["b:bc-1:111:5"].contact.native_id == "111"  # one person


def test_text_links_are_made_visible() -> None:
    text = "Hi 👋 track here please"
    entities = [{"type": "text_link", "offset": 6, "length": 10, "url": "https://evil.example/"},
                {"type": "bold", "offset": 0, "length": 2}, {"type": "text_link", "offset": 99, "length": 3, "url": "x"}]
    assert expand_text_links(text, entities) == "Hi 👋 track here (https://evil.example/) please"
    assert expand_text_links(text, "garbage") == text


# ---- replies ---------------------------------------------------------------------------------------


def reply(text: str = "[b]Thanks[/b] *not bold* <i>x</i>", *, key: str = "k1", private: bool = False,
          conv: dict[str, Any] | None = None, message_id: int = 2) -> OutgoingReply:
    """A reply as the engine builds it: the conversation's details in ``meta``, the answered message's
    (the conversation's plus its message id, as ``_map`` stores them) in ``answering``."""
    conv = conv or {"chat_id": 222, "chat_type": "private", "business_connection_id": "bc-1", "message_thread_id": None}
    native = f"b:{conv['business_connection_id']}:{conv['chat_id']}" if conv["business_connection_id"] \
        else str(conv["chat_id"])
    return OutgoingReply(key=key, conversation_id=f"{ACCOUNT}:{native}", conversation_native_id=native,
                         account=ACCOUNT, kind="dm", private=private, text=text, customer_handle="@bo", meta=conv,
                         answering=AnsweredMessage(f"{native}:{message_id}", {**conv, "message_id": message_id}))


async def test_send_message_plain_text_threaded_business(bot: FakeBotApi, provider: TelegramProvider) -> None:
    result = await provider.send(reply())
    (body,) = bot.sent
    assert body == {"chat_id": 222, "text": "[b]Thanks[/b] *not bold* <i>x</i>", "business_connection_id": "bc-1",
                    "reply_parameters": {"message_id": 2, "allow_sending_without_reply": True}}
    assert "parse_mode" not in body
    assert result.remote_id == "b:bc-1:222:9001" and result.sent_at == NOW


async def test_topic_thread_and_private_answer_in_group(bot: FakeBotApi, provider: TelegramProvider) -> None:
    conv = {"chat_id": -100200, "chat_type": "supergroup", "business_connection_id": None, "message_thread_id": 77}
    await provider.send(reply("hi", conv=conv, message_id=4))
    assert bot.sent[0]["message_thread_id"] == 77 and bot.sent[0]["chat_id"] == -100200
    assert bot.sent[0]["reply_parameters"]["message_id"] == 4
    with pytest.raises(PermanentError, match="private"):
        await provider.send(reply("secret", private=True, conv=conv, message_id=4))


async def test_too_long_is_refused_before_sending(bot: FakeBotApi, provider: TelegramProvider) -> None:
    with pytest.raises(PermanentError, match="4096"):
        await provider.send(reply("😀" * 2049))  # 4098 UTF-16 units
    assert bot.sent == []


async def test_no_idempotency_means_unknown(provider: TelegramProvider) -> None:
    assert not provider.capabilities.supports_idempotency and not provider.capabilities.can_lookup_sent
    with pytest.raises(UnknownDelivery):
        await provider.lookup_sent(reply())


# ---- errors ----------------------------------------------------------------------------------------


async def test_429_retry_after_parameter(bot: FakeBotApi, provider: TelegramProvider) -> None:
    bot.answer = httpx.Response(429, json={"ok": False, "error_code": 429,
                                           "description": "Too Many Requests: retry after 17",
                                           "parameters": {"retry_after": 17}})
    with pytest.raises(RateLimited) as exc:
        await provider.send(reply())
    assert exc.value.reset_at == NOW + 17
    bot.answer = None
    sent_before = len(bot.requests)
    with pytest.raises(RateLimited):
        await provider.fetch({})  # still inside the window: no request spent
    assert len(bot.requests) == sent_before


@pytest.mark.parametrize(("status", "description"), [(401, "Unauthorized"), (404, "Not Found")])
async def test_revoked_or_unknown_token_is_an_auth_error(bot: FakeBotApi, provider: TelegramProvider,
                                                         status: int, description: str) -> None:
    bot.answer = httpx.Response(status, json={"ok": False, "error_code": status, "description": description})
    with pytest.raises(AuthError, match="re-login"):
        await provider.fetch({})


async def test_blocked_by_user_is_permanent_not_auth(bot: FakeBotApi, provider: TelegramProvider) -> None:
    bot.answer = httpx.Response(403, json={"ok": False, "error_code": 403,
                                           "description": "Forbidden: bot was blocked by the user"})
    with pytest.raises(PermanentError, match="blocked"):
        await provider.send(reply())


FAILURES = [
    httpx.ConnectError("[Errno -3] Temporary failure in name resolution"),
    httpx.ConnectTimeout("timed out"),
    httpx.ReadTimeout("The read operation timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.Response(500, json={"ok": False, "error_code": 500, "description": "Internal Server Error"}),
    httpx.Response(502, text=f"<html>Bad gateway for {API}/bot{TOKEN}/sendMessage</html>"),
    httpx.Response(400, json={"ok": False, "error_code": 400,
                              "description": f"Bad Request: see {API}/bot{TOKEN}/sendMessage and {TOKEN}"}),
    httpx.Response(409, json={"ok": False, "error_code": 409, "description": "Conflict: terminated by other getUpdates"}),
    httpx.Response(200, text="<html>captive portal</html>"),
    httpx.Response(429, json={"ok": False, "error_code": 429, "description": "Too Many Requests",
                              "parameters": {"retry_after": "soon"}}),
]


@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: type(f).__name__ + str(getattr(f, "status_code", "")))
async def test_token_never_appears_in_errors_or_logs(bot: FakeBotApi, provider: TelegramProvider, failure: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    bot.answer = failure
    with caplog.at_level(logging.DEBUG):
        for call in (provider.fetch({}), provider.send(reply())):
            try:
                await call
            except (TransientError, PermanentError, RateLimited, AuthError, Offline) as exc:
                rendered = "".join(traceback.format_exception(exc))
                assert TOKEN not in rendered and TOKEN.split(":")[1] not in rendered
                assert exc.__cause__ is None
                provider.gate.blocked_until = 0.0
            else:
                raise AssertionError("expected a failure")
    assert TOKEN.split(":")[1] not in caplog.text


async def test_httpx_request_log_is_masked(bot: FakeBotApi, provider: TelegramProvider,
                                           caplog: pytest.LogCaptureFixture) -> None:
    bot.push(message=message(1))
    with caplog.at_level(logging.DEBUG):
        await provider.fetch({})
    assert "getUpdates" in caplog.text and TOKEN.split(":")[1] not in caplog.text


async def test_missing_token(bot: FakeBotApi) -> None:
    provider = TelegramProvider(ACCOUNT, {"api_base": API}, lambda: None, transport=httpx.MockTransport(bot))
    with pytest.raises(AuthError, match="replydesk login"):
        await provider.fetch({})
    assert bot.requests == []


# ---- with the real engine and storage ---------------------------------------------------------------


async def test_engine_turns_a_lost_answer_into_unknown_not_a_duplicate(tmp_path: Any, bot: FakeBotApi,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from replydesk.config import Config
    from replydesk.providers import http
    from replydesk.providers.telegram import TelegramOptions
    from replydesk.storage import outbox
    from replydesk.workspace import Workspace
    from support import Clock

    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(httpx.MockTransport(bot), **kw))
    clock = Clock()
    ws = Workspace(tmp_path, Config(accounts=[TelegramOptions(name=ACCOUNT, api_base=API)]),
                   clock)
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        bot.push(message=message(1, "Where is my order?"))
        await engine.run_once()
        key = outbox.queue_reply(db, f"{ACCOUNT}:111", "It ships today")
        original = bot.__call__

        def accept_then_drop(request: httpx.Request) -> httpx.Response:
            response = original(request)
            if request.url.path.endswith("/sendMessage"):
                raise httpx.ReadTimeout("the answer was lost")  # Telegram posted it; we never heard back
            return response

        bot.answer = None
        monkeypatch.setattr(FakeBotApi, "__call__", lambda self, request: accept_then_drop(request))
        await engine.run_once()
        assert outbox.get(db, key).state == "queued" and len(bot.sent) == 1
        clock.advance(3600)
        await engine.run_once()
        item = outbox.get(db, key)
        assert item.state == "unknown" and len(bot.sent) == 1  # asked, not guessed: never sent twice
        assert TOKEN.split(":")[1] not in (item.last_error or "")
        await engine.run_once()
        assert len(bot.sent) == 1
    finally:
        db.close()


async def test_business_replies_always_go_through_the_business_whatever_came_last(
        tmp_path: Any, bot: FakeBotApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real engine and storage: the business chat and the bot chat are two conversations;
    a reply in the business one carries its business_connection_id even when the customer's latest
    message (anywhere) was in the bot chat, and a reply in the bot chat never does."""
    from replydesk.config import Config
    from replydesk.providers import http
    from replydesk.providers.telegram import TelegramOptions
    from replydesk.storage import outbox, queries
    from replydesk.workspace import Workspace
    from support import Clock

    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(httpx.MockTransport(bot), **kw))
    ws = Workspace(tmp_path, Config(accounts=[TelegramOptions(name=ACCOUNT, api_base=API)]), Clock())
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        bot.push(business_message=message(5, "Hi shop, about my order", business_connection_id="bc-1",
                                          chat=private_chat(111)))
        bot.push(message=message(5, "/start"))  # newer, in the bot's own chat
        await engine.run_once()
        convs = {r.id: r for r in queries.inbox_page(db, queries.InboxFilter(), 0, 10)}
        assert set(convs) == {f"{ACCOUNT}:111", f"{ACCOUNT}:b:bc-1:111"}
        texts = {m.text for m in queries.thread(db, f"{ACCOUNT}:b:bc-1:111").messages}
        assert texts == {"Hi shop, about my order"}  # the bot chat's "/start" is not in it
        outbox.queue_reply(db, f"{ACCOUNT}:b:bc-1:111", "On its way")
        outbox.queue_reply(db, f"{ACCOUNT}:111", "Welcome to the bot")
        await engine.run_once()
    finally:
        db.close()
    by_text = {b["text"]: b for b in bot.sent}
    assert by_text["On its way"]["business_connection_id"] == "bc-1"
    assert by_text["On its way"]["chat_id"] == 111
    assert by_text["On its way"]["reply_parameters"]["message_id"] == 5
    assert "business_connection_id" not in by_text["Welcome to the bot"]
