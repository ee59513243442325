"""Telegram bots (including Telegram Business): ``getUpdates`` long polling in, ``sendMessage`` out.

The bot token sits in every request URL, so this module never lets a URL reach an exception message
or a log: requests go through ``providers.http`` (messages without URLs, exceptions raised ``from
None``), platform descriptions are redacted, and httpx's own request log is masked.

Cursor (stream ``updates``): ``{"offset": last update_id + 1}``. One ``getUpdates`` per fetch, because
asking with a higher offset confirms (deletes) the previous batch on Telegram's side: the batch must be
stored, with its cursor, before we ask again. A conversation is a chat, or a topic thread in a forum
supergroup. Telegram has no idempotency and no way to find a sent message, so an uncertain send ends
``unknown`` (``lookup_sent`` raises ``UnknownDelivery``) and the agent decides.

Length: the Bot API allows 4096 characters "after entities parsing", counted in UTF-16 code units
(the unit of its entity offsets). We never set a parse mode, so nothing is parsed away: the text
counts as written, an emoji outside the BMP as 2, a ZWJ family as the sum of its parts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.options import AccountOptions, HttpsUrl
from replydesk.platforms import Limit, PlatformFacts, utf16_units
from replydesk.providers import http, payload
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    PermanentError,
    SecretGetter,
    TransientError,
    UnknownDelivery,
)
from replydesk.providers.payload import BadItem, integer
from replydesk.providers.payload import text as text_of

if TYPE_CHECKING:
    import httpx

SERVICE = "telegram"
DEFAULT_API = "https://api.telegram.org"
ALLOWED_UPDATES = ["message", "edited_message", "business_message", "edited_business_message"]
UPDATE_KINDS = (("message", False), ("business_message", False),
                ("edited_message", True), ("edited_business_message", True))
PAGE_LIMIT = 100
MAX_TEXT = 4096  # UTF-16 code units, as the Bot API counts
STREAM_POLL = 25  # seconds a push long poll waits
#: Message fields that carry something other than text, most specific first: Telegram sets a
#: venue's ``location`` too, and an animation's ``document``, "for backward compatibility", so the
#: richer field must be looked at before the one it implies.
MEDIA = ("venue", "location", "animation", "photo", "video", "audio", "voice", "video_note", "document",
         "sticker", "contact", "poll", "dice", "game", "story")
#: A business chat's conversation: the connection it arrived through and the chat (see ``_conversation``).
BUSINESS = "b"



class TelegramOptions(AccountOptions):
    """A Telegram bot (a token from @BotFather; works with Telegram Business connections)."""

    secret_hint: ClassVar[str] = "the bot token from @BotFather"

    provider: Literal["telegram"] = "telegram"
    api_base: HttpsUrl = DEFAULT_API
    """The Bot API server: Telegram's, or a self-hosted one."""


#: Chats only (a group message is answered in the chat): every reply counts against the message limit.
FACTS = {"telegram": PlatformFacts("Telegram", "TG", None, Limit(MAX_TEXT, "utf16"))}


def expand_text_links(text: str, entities: Any) -> str:
    """Show the target of every ``text_link`` entity after its text: nothing hides behind a word.
    Offsets are UTF-16 code units; malformed entities are ignored."""
    links = []
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict) or entity.get("type") != "text_link" or not isinstance(entity.get("url"), str):
            continue
        offset, length = entity.get("offset"), entity.get("length")
        if isinstance(offset, int) and isinstance(length, int) and not isinstance(offset, bool) \
                and not isinstance(length, bool) and offset >= 0 and length > 0:
            links.append((offset, offset + length, entity["url"]))
    if not links:
        return text
    units = text.encode("utf-16-le", "surrogatepass")
    total = len(units) // 2
    out, pos = [], 0
    for start, end, url in sorted(links):
        if start < pos or end > total:
            continue
        out.append(units[2 * pos : 2 * end].decode("utf-16-le", "replace"))
        out.append(f" ({url})")
        pos = end
    out.append(units[2 * pos :].decode("utf-16-le", "replace"))
    return "".join(out)


def _media_note(message: dict[str, Any]) -> str:
    for kind in MEDIA:
        value = message.get(kind)
        if value is None:
            continue
        if kind == "sticker" and isinstance(value, dict):
            return f"[sticker {text_of(value, 'emoji')}]".replace(" ]", "]")
        if kind == "document" and isinstance(value, dict):
            return f"[document {text_of(value, 'file_name')}]".replace(" ]", "]")
        if kind == "poll" and isinstance(value, dict):
            return f"[poll: {text_of(value, 'question')}]"
        if kind == "contact" and isinstance(value, dict):
            return f"[contact: {text_of(value, 'first_name')} {text_of(value, 'phone_number')}]"
        if kind == "venue" and isinstance(value, dict):
            place = ", ".join(p for p in (text_of(value, "title"), text_of(value, "address")) if p)
            return f"[venue: {place}]" if place else "[venue]"
        if kind == "location" and isinstance(value, dict):
            return f"[location: {value.get('latitude')}, {value.get('longitude')}]"
        return f"[{kind.replace('_', ' ')}]"
    return "[unsupported message]"


def _conversation(chat_id: int, business: str, thread: int | None) -> str:
    """A conversation's native id. A Business chat is keyed with its connection: the customer's
    private chat with the business account and their own chat with the bot share the chat id (the
    user's id), and are two conversations (replies in the first go out through the business)."""
    if business:
        return f"{BUSINESS}:{business}:{chat_id}"
    return f"{chat_id}:{thread}" if thread is not None else str(chat_id)


def business_of(conversation_native_id: str) -> tuple[str, int] | None:
    """(business connection id, chat id) of a Business chat's conversation id, else None."""
    head, sep, rest = conversation_native_id.partition(":")
    if head != BUSINESS or not sep:
        return None
    connection, sep, chat = rest.rpartition(":")
    if not (connection and sep and chat.lstrip("-").isdigit()):
        return None
    return connection, int(chat)


def _update_label(update: Any) -> str:
    value = update.get("update_id") if isinstance(update, dict) else None
    return f"update:{value}" if isinstance(value, int) and not isinstance(value, bool) else "update:?"


class TelegramProvider(http.HttpProvider):
    platform = "telegram"
    service = SERVICE
    Options = TelegramOptions
    FACTS = FACTS
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, supports_idempotency=False,
                                can_lookup_sent=False, streams=True)
    #: fetch() long-polls for ``long_poll`` seconds, so a new message shows within about 2 s
    poll_interval = 1.0
    long_poll = 1

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        self.base = http.check_base_url(self.options.api_base)
        self._poll_lock = asyncio.Lock()  # Telegram answers 409 to a second concurrent getUpdates
        self._streaming = False
        self._offset: int | None = None
        http.install_log_redaction()  # the token is in every URL: mask httpx's request log from the start

    # ---- the Bot API --------------------------------------------------------------------------------

    async def call(self, method: str, payload: dict[str, Any], *, wait: float = 0) -> Any:
        """POST one Bot API method; returns ``result`` or raises our errors, never with the token."""
        token = self._secret()
        if not token:
            raise AuthError(f"telegram: no bot token stored for account {self.account!r}; run 'replydesk login'")
        response = await self.request("POST", f"{self.base}/bot{token}/{method}", json=payload,
                                      read_timeout=30.0 + wait, check=False)
        body = http.json_object(response)
        if response.status_code == 200 and body is not None and body.get("ok") is True:
            return body.get("result")
        raise self._error(response, body or {}, token)

    def _error(self, response: httpx.Response, body: dict[str, Any], token: str) -> Exception:
        code = body.get("error_code") if isinstance(body.get("error_code"), int) else response.status_code
        description = http.redact(text_of(body, "description").replace(token, "<redacted>"), 200)
        params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        suffix = f": {description}" if description else ""
        if code == 429:  # the shared gate: no request is spent until it ends, restarts included
            retry = params.get("retry_after")
            reset = None
            if isinstance(retry, int | float) and not isinstance(retry, bool) and 0 <= retry < http.MAX_RATE_WAIT:
                reset = self.clock() + float(retry)
            return self.gate.limited(response, reset=reset)
        if code == 401:
            return AuthError("telegram: the bot token was refused (revoked or wrong); re-login needed")
        if code == 404 and text_of(body, "description") in ("", "Not Found"):
            return AuthError("telegram: the Bot API does not know this token (HTTP 404); check the token and "
                             "api_base; re-login needed")
        if code == 409:
            return PermanentError(f"telegram: another getUpdates consumer or a webhook is active{suffix}")
        if isinstance(params.get("migrate_to_chat_id"), int):
            return PermanentError(f"telegram: the group became supergroup {params['migrate_to_chat_id']}{suffix}")
        if code >= 500 or response.status_code >= 500:
            return TransientError(f"telegram: server error HTTP {code}{suffix}")
        if response.status_code == 200:  # 200 without ok: something in between answered
            return TransientError("telegram: unexpected answer from the Bot API")
        if code == 403:
            return PermanentError(f"telegram: not allowed to message this chat{suffix}")
        return PermanentError(f"telegram: request rejected (HTTP {code}){suffix}")

    # ---- fetching -----------------------------------------------------------------------------------

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        cursor = cursors.get("updates") or {}
        offset = cursor.get("offset") if isinstance(cursor.get("offset"), int) else None
        if self._streaming:
            return []  # stream() is consuming updates; a second getUpdates would be refused
        async with self._poll_lock:
            return [await self._poll(offset, self.long_poll)]

    async def _poll(self, offset: int | None, wait: int) -> FetchResult:
        payload: dict[str, Any] = {"timeout": wait, "limit": PAGE_LIMIT, "allowed_updates": ALLOWED_UPDATES}
        if offset is not None:
            payload["offset"] = offset
        updates = await self.call("getUpdates", payload, wait=wait)
        if not isinstance(updates, list):
            raise PermanentError("telegram: getUpdates answered with an unexpected shape")
        result = self.page(updates, offset)
        self._offset = result.cursor.get("offset", offset)
        return result

    def page(self, updates: list[Any], offset: int | None) -> FetchResult:
        """Map one getUpdates batch; the cursor moves past every update we saw, good or bad."""
        ids = [u["update_id"] for u in updates if isinstance(u, dict) and isinstance(u.get("update_id"), int)
               and not isinstance(u.get("update_id"), bool)]
        messages, rejected = payload.map_each(updates, self._map_update, _update_label)
        seen = [offset - 1, *ids] if offset is not None else ids
        cursor = {"offset": max(seen) + 1} if seen else {}
        return FetchResult(messages, cursor, "updates", rejected)

    def _map_update(self, update: Any) -> IncomingMessage | None:
        integer(update, "update_id")
        return self._map(update)

    def _map(self, update: dict[str, Any]) -> IncomingMessage | None:
        found = next(((update[key], edited) for key, edited in UPDATE_KINDS if key in update), None)
        if found is None:
            return None  # an update type we did not ask for
        message, edited = found
        if not isinstance(message, dict):
            raise BadItem("message is not an object")
        message_id = integer(message, "message_id")
        chat = message.get("chat")
        chat_id = integer(chat, "id")
        date = integer(message, "date")
        chat_type = text_of(chat, "type")
        sender = message.get("from") if isinstance(message.get("from"), dict) else None
        sender = sender or (message.get("sender_chat") if isinstance(message.get("sender_chat"), dict) else None)
        if sender is None and chat_type == "private":
            sender = chat
        if sender is None:
            raise BadItem("no sender (from/sender_chat) on a group message")
        sender_id = integer(sender, "id")
        name = " ".join(p for p in (text_of(sender, "first_name"), text_of(sender, "last_name")) if p) \
            or text_of(sender, "title") or text_of(sender, "username") or str(sender_id)
        username = text_of(sender, "username")
        business = text_of(message, "business_connection_id")
        thread = message.get("message_thread_id") if message.get("is_topic_message") is True else None
        thread = thread if isinstance(thread, int) and not isinstance(thread, bool) else None
        text = message.get("text")
        entities = message.get("entities")
        if not isinstance(text, str):
            text, entities = message.get("caption"), message.get("caption_entities")
            note = _media_note(message)
            text = f"{note}\n{text}" if isinstance(text, str) and text else note
        text = expand_text_links(text, entities)
        # Message ids count per chat, and a business chat is another chat than the bot's own
        # with the same user: its messages are keyed with the connection too.
        scope = f"{BUSINESS}:{business}:{chat_id}" if business else str(chat_id)
        native = f"{scope}:{message_id}"
        created_at = float(date)
        parent = None
        reply_to = message.get("reply_to_message")
        if isinstance(reply_to, dict) and isinstance(reply_to.get("message_id"), int):
            parent = f"{scope}:{reply_to['message_id']}"
        if edited:
            edit_date = message.get("edit_date")
            edit_date = edit_date if isinstance(edit_date, int) and not isinstance(edit_date, bool) else date
            native, parent, created_at = f"{native}:edit:{edit_date}", native, float(edit_date)
            text = f"(edited) {text}"
        # In a Business chat the customer is the chat itself; anyone else writing is the business side.
        outbound = bool(business) and chat_type == "private" and sender_id != chat_id
        customer = chat if outbound and isinstance(chat, dict) else sender
        customer_name = name
        if outbound:
            customer_name = " ".join(p for p in (text_of(chat, "first_name"), text_of(chat, "last_name")) if p) \
                or text_of(chat, "username") or str(chat_id)
        customer_handle = text_of(customer, "username")
        conversation = _conversation(chat_id, business, thread)
        reply_meta = {"chat_id": chat_id, "chat_type": chat_type, "business_connection_id": business or None,
                      "message_thread_id": thread}
        return IncomingMessage(
            native_id=native, conversation_native_id=conversation, platform="telegram",
            kind="dm" if chat_type == "private" else "mention",
            contact=Contact(native_id=str(integer(customer, "id")), name=customer_name,
                            handle="@" + customer_handle if customer_handle else ""),
            text=text, created_at=created_at, direction="out" if outbound else "in",
            author=name if not outbound else (("@" + username) if username else name),
            subject=text_of(chat, "title") if chat_type != "private" else "",
            parent_native_id=parent,
            meta={**reply_meta, "message_id": message_id, "conversation": reply_meta},
        )

    async def stream(self) -> AsyncIterator[FetchResult]:
        """Push: long polls of ``STREAM_POLL`` seconds. The consumer must store each result before it
        asks for the next one, because the next poll confirms the previous batch to Telegram."""
        self._streaming = True
        try:
            while True:
                async with self._poll_lock:
                    result = await self._poll(self._offset, STREAM_POLL)
                yield result
        finally:
            self._streaming = False

    # ---- sending ------------------------------------------------------------------------------------

    def compose(self, reply: OutgoingReply) -> dict[str, Any]:
        """The sendMessage payload: plain text (never a parse_mode), threaded on the customer's message.
        The chat comes from the conversation's details, the message to thread on from the answered one's."""
        meta = reply.meta if isinstance(reply.meta, dict) else {}
        inbound = reply.answering_meta
        keyed = business_of(reply.conversation_native_id)
        if keyed is not None:  # a Business chat: its connection and chat are in its key, always
            return self._payload(reply, keyed[1], "private", keyed[0], None, inbound)
        chat_id = meta.get("chat_id", inbound.get("chat_id"))
        if not isinstance(chat_id, int) or isinstance(chat_id, bool):
            head = reply.conversation_native_id.split(":", 1)[0]
            if not head.lstrip("-").isdigit():
                raise PermanentError("telegram: this conversation has no chat id to answer")
            chat_id = int(head)
        chat_type = meta.get("chat_type", inbound.get("chat_type"))
        # Conversations stored before Business chats had keys of their own keep what they stored.
        business = meta.get("business_connection_id") or inbound.get("business_connection_id")
        thread = meta.get("message_thread_id", inbound.get("message_thread_id"))
        return self._payload(reply, chat_id, chat_type, business, thread, inbound)

    @staticmethod
    def _payload(reply: OutgoingReply, chat_id: int, chat_type: Any, business: Any, thread: Any,
                 inbound: dict[str, Any]) -> dict[str, Any]:
        if reply.private and chat_type not in (None, "private"):
            raise PermanentError("telegram: a private answer is not possible in a group; answer in the chat "
                                 "or message the customer directly")
        payload: dict[str, Any] = {"chat_id": chat_id, "text": reply.text}
        message_id = inbound.get("message_id")
        if isinstance(message_id, int) and not isinstance(message_id, bool):
            payload["reply_parameters"] = {"message_id": message_id, "allow_sending_without_reply": True}
        if isinstance(business, str) and business:
            payload["business_connection_id"] = business
        if isinstance(thread, int) and not isinstance(thread, bool):
            payload["message_thread_id"] = thread
        return payload

    async def send(self, reply: OutgoingReply) -> SendResult:
        text = reply.text
        if not text.strip():
            raise PermanentError("telegram: an empty message cannot be sent")
        if utf16_units(text) > MAX_TEXT:
            raise PermanentError(f"telegram: the message is {utf16_units(text)} characters; Telegram allows {MAX_TEXT}")
        payload = self.compose(reply)
        result = await self.call("sendMessage", payload)
        try:
            message_id = integer(result, "message_id")
            chat_id = integer(result.get("chat"), "id")
        except BadItem:
            raise PermanentError("telegram: sendMessage answered without a message id") from None
        date = result.get("date")
        sent_at = float(date) if isinstance(date, int) and not isinstance(date, bool) else self.clock()
        business = payload.get("business_connection_id")
        scope = f"{BUSINESS}:{business}:{chat_id}" if business else str(chat_id)
        return SendResult(f"{scope}:{message_id}", sent_at)

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        raise UnknownDelivery("Telegram cannot tell whether this message was delivered (the Bot API has no "
                              "idempotency and no history); check the chat, then resend or mark it sent")
