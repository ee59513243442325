"""Messenger-shaped messaging, shared by Facebook Pages and Instagram (one API, two platforms).

Polling: ``GET /{owner}/conversations?platform=…`` sorted by ``updated_time`` (newest first), paged
with ``paging.cursors``, down to the stored ``updated_time`` watermark, then each changed
conversation's ``/{conversation-id}/messages``. Every page but the last carries the old watermark,
so a walk cut short resumes from the start on the next poll (ingest dedupes what it already has)
and never leaves a hole. The first sync takes the newest page only.

Webhooks: ``entry[].messaging[]`` events (``message``, with ``is_echo`` for what the Page or the
account sent itself, e.g. from the Meta Business Suite inbox; ``delivery`` with the ``mids`` that
arrived). One conversation per customer: keyed on the customer's page-scoped id, which both the
conversations API (``participants``) and the webhooks (``sender``/``recipient``) give.

Sending: ``POST /{owner}/messages`` with ``messaging_type: RESPONSE`` inside the 24-hour window, or
``MESSAGE_TAG`` + ``HUMAN_AGENT`` up to 7 days where the app has that feature; a private reply to a
comment goes to ``recipient: {comment_id}``. No endpoint takes an idempotency key: before an
uncertain send is tried again, ``find_ours`` looks through the conversation's latest messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from replydesk.model import Contact, DeliveryUpdate, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.providers import meta
from replydesk.providers.base import PermanentError, UnknownDelivery
from replydesk.providers.payload import BadItem, Rejected, ident, items, map_each, mapping, text
from replydesk.windows import HUMAN_AGENT

CONVERSATIONS_PAGE = 25
MESSAGES_PAGE = 25
MAX_PAGES = 10
MESSAGE_PAGES = 4
LOOKUP_MESSAGES = 20
LOOKUP_SLACK = 120.0  # seconds: our clock and Meta's may disagree a little
MESSAGE_FIELDS = "id,message,from,to,created_time,attachments{mime_type,name,file_url,image_data{url}},sticker"


def conversation_id(customer: str) -> str:
    return f"dm:{customer}"


def attachments_text(message: Any) -> str:
    """Placeholders for what a message carries besides text (never dropped)."""
    out = []
    for a in items(mapping(message, "attachments", required=False), "data")[:20] + items(message, "attachments")[:20]:
        if not isinstance(a, dict):
            continue
        kind = text(a, "type") or text(a, "mime_type").split("/")[0] or "attachment"
        kind = {"image": "image", "video": "video", "audio": "audio", "file": "file", "application": "file"}.get(
            kind, kind)
        name = text(a, "name") or text(mapping(a, "payload", required=False), "title")
        out.append(f"[{kind}: {name}]" if name else f"[{kind}]")
    if text(message, "sticker") or (isinstance(message, dict) and message.get("sticker_id")):
        out.append("[sticker]")
    return "\n".join(out)


def message_text(message: Any) -> str:
    words = text(message, "message") or text(message, "text")
    extra = attachments_text(message)
    body = "\n".join(p for p in (words, extra) if p)
    return body or "[a message with nothing we can show]"


class Messaging:
    """The messaging part of one account: ``owner`` is the node messages are sent from (the Page,
    or the Instagram account), ``ours`` the ids that mean "we wrote it"."""

    def __init__(self, provider: meta.MetaProvider, api_platform: str, owner: str, ours: set[str],
                 human_agent: bool) -> None:
        self.p, self.owner, self.ours, self.human_agent = provider, owner, ours, human_agent
        self.api_platform = api_platform  # the conversations API's name: messenger, instagram
        self.platform = provider.platform  # ours: facebook, instagram

    # ---- polling ------------------------------------------------------------------------------------

    async def walk(self, cursor: dict[str, Any] | None) -> AsyncIterator[FetchResult]:
        since = cursor.get("updated") if isinstance(cursor, dict) else None
        since = float(since) if isinstance(since, int | float) and not isinstance(since, bool) else None
        newest = since
        params = {"platform": self.api_platform, "fields": "id,updated_time,participants", "limit": CONVERSATIONS_PAGE}
        pages = self.p.pages(f"/{self.owner}/conversations", params, 1 if since is None else MAX_PAGES)
        done = False
        async for page in pages:
            messages: list[IncomingMessage] = []
            rejected: Rejected = []
            for conv in page:
                try:
                    updated = meta.graph_time(conv.get("updated_time") if isinstance(conv, dict) else None,
                                              "updated_time")
                except BadItem as exc:
                    rejected.append((text(conv, "id")[:200] or "?", str(exc)))
                    continue
                if since is not None and updated <= since:
                    done = True
                    break
                newest = max(newest or updated, updated)
                await self._conversation(conv, since, messages, rejected)
            # each page keeps the old watermark: a walk cut short starts again from the newest
            yield FetchResult(messages, {"updated": since} if since is not None else None, "messages", rejected)
            if done:
                break
        if newest is not None:  # the walk is complete: only now does the watermark move
            yield FetchResult([], {"updated": newest}, "messages")

    async def _conversation(self, conv: dict[str, Any], since: float | None, out: list[IncomingMessage],
                            rejected: Rejected) -> None:
        conv_id = ident(conv, "id", required=False)
        customer = self._customer(conv)
        if not conv_id or customer is None:
            rejected.append((conv_id or "?", "a conversation without an id or a customer"))
            return
        pages = self.p.pages(f"/{conv_id}/messages", {"fields": MESSAGE_FIELDS, "limit": MESSAGES_PAGE},
                             1 if since is None else MESSAGE_PAGES)
        async for page in pages:
            mapped, bad = map_each(page, lambda m: self.polled(m, customer), lambda m: text(m, "id"))
            out.extend(mapped)
            rejected.extend(bad)
            if since is not None and any(m.created_at <= since for m in mapped):
                break

    def _customer(self, conv: dict[str, Any]) -> Contact | None:
        for person in items(mapping(conv, "participants", required=False), "data"):
            pid = ident(person, "id", required=False)
            if pid and pid not in self.ours:
                return self.contact(pid, text(person, "name"), text(person, "username"))
        return None

    def contact(self, pid: str, name: str = "", username: str = "") -> Contact:
        handle = f"@{username}" if username else ""
        return Contact(pid, name or username or pid, handle, name_is_fallback=not name)

    def polled(self, m: Any, customer: Contact) -> IncomingMessage:
        native = ident(m, "id")
        sender = ident(mapping(m, "from", required=False), "id", required=False)
        ours = sender in self.ours
        return IncomingMessage(
            native_id=native, conversation_native_id=conversation_id(customer.native_id), platform=self.platform,
            kind="dm", contact=customer, text=message_text(m),
            created_at=meta.graph_time(m.get("created_time")), direction="out" if ours else "in",
            meta={"conversation": {"recipient": customer.native_id}},
        )

    # ---- webhooks -----------------------------------------------------------------------------------

    def events(self, entry: dict[str, Any], out: list[IncomingMessage], updates: list[DeliveryUpdate],
               rejected: Rejected) -> None:
        for event in items(entry, "messaging"):
            try:
                self._event(event, out, updates)
            except Exception as exc:  # one bad event never stops the others
                mid = text(mapping(event, "message", required=False), "mid")
                rejected.append((mid[:200] or "?", str(exc) if isinstance(exc, BadItem)
                                 else f"unexpected payload shape ({type(exc).__name__})"))

    def _event(self, event: Any, out: list[IncomingMessage], updates: list[DeliveryUpdate]) -> None:
        if not isinstance(event, dict):
            raise BadItem("an event that is not an object")
        sender = ident(mapping(event, "sender"), "id")
        recipient = ident(mapping(event, "recipient"), "id")
        at = meta.graph_time(event.get("timestamp"), "timestamp")
        delivered = mapping(event, "delivery", required=False)
        for mid in items(delivered, "mids"):
            update = meta.delivery(mid, "delivered", at)
            if update is not None:
                updates.append(update)
        message = mapping(event, "message", required=False)
        if not message or message.get("is_deleted") is True:
            return  # reads, reactions, postbacks: nothing for the thread
        echo = message.get("is_echo") is True or sender in self.ours
        customer = recipient if echo else sender
        reply_to = ident(mapping(message, "reply_to", required=False), "mid", required=False) or None
        body = message_text(message)
        if message.get("is_unsupported") is True:
            body = "[a message type this API does not show; open it on the platform]"
        out.append(IncomingMessage(
            native_id=ident(message, "mid"), conversation_native_id=conversation_id(customer), platform=self.platform,
            kind="dm", contact=self.contact(customer), text=body, created_at=at,
            direction="out" if echo else "in", parent_native_id=reply_to,
            meta={"conversation": {"recipient": customer}},
        ))

    @staticmethod
    def event_ids(entry: dict[str, Any]) -> list[str]:
        parts = []
        for event in items(entry, "messaging"):
            mid = text(mapping(event, "message", required=False), "mid")
            if mid:
                parts.append(f"m:{mid}")
            delivered = mapping(event, "delivery", required=False)
            if delivered:
                parts.append("d:" + ",".join(sorted(str(m) for m in items(delivered, "mids"))) +
                             f":{delivered.get('watermark')}")
            if not mid and not delivered:
                parts.append(f"e:{text(mapping(event, 'sender', required=False), 'id')}:{event.get('timestamp')}")
        return parts

    # ---- sending ------------------------------------------------------------------------------------

    def message_body(self, reply: OutgoingReply, recipient: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"recipient": recipient, "message": {"text": reply.text}}
        if reply.send_as == HUMAN_AGENT:
            if not self.human_agent:
                raise PermanentError(f"{self.p.service}: this app has no human-agent tag (set human_agent_tag "
                                     "where Meta granted the feature)")
            body.update(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
        else:
            body["messaging_type"] = "RESPONSE"
        return body

    async def send_dm(self, reply: OutgoingReply) -> SendResult:
        customer = reply.meta.get("recipient") or reply.conversation_native_id.removeprefix("dm:")
        answer = await self.p.graph("POST", f"/{self.owner}/messages",
                                    body=self.message_body(reply, {"id": str(customer)}))
        return self._sent(answer)

    async def send_private_reply(self, reply: OutgoingReply, comment_id: str) -> SendResult:
        answer = await self.p.graph("POST", f"/{self.owner}/messages",
                                    body=self.message_body(reply, {"comment_id": comment_id}))
        return self._sent(answer)

    def _sent(self, answer: Any) -> SendResult:
        remote = answer.get("message_id") if isinstance(answer, dict) else None
        if not isinstance(remote, str) or not remote:
            raise UnknownDelivery(f"{self.p.service}: the send was answered without a message id; check the inbox")
        return SendResult(remote, self.p.clock())

    async def find_ours(self, reply: OutgoingReply) -> SendResult:
        """Our message with the reply's text in the customer's conversation, written after the reply."""
        customer = str(reply.meta.get("recipient") or reply.conversation_native_id.removeprefix("dm:"))
        found = await self.p.graph("GET", f"/{self.owner}/conversations",
                                   params={"platform": self.api_platform, "user_id": customer, "fields": "id"})
        convs = [c for c in items(found, "data") if ident(c, "id", required=False)]
        page = await self.p.graph("GET", f"/{convs[0]['id']}/messages",
                                  params={"fields": "id,message,from,created_time", "limit": LOOKUP_MESSAGES}) \
            if convs else {}
        return match_ours(items(page, "data"), reply, self.ours, "message", self.p.service)


def match_ours(candidates: list[Any], reply: OutgoingReply, ours: set[str], field: str, service: str) -> SendResult:
    """The first of ``candidates`` that we wrote, with the reply's text, after the reply was written.
    None found raises ``UnknownDelivery``: Meta may take a moment to show a message, and without an
    idempotency key a second one cannot be taken back, so the user decides."""
    after = (reply.created_at or 0.0) - LOOKUP_SLACK
    for c in candidates:
        author = ident(mapping(c, "from", required=False), "id", required=False)
        try:
            at = meta.graph_time(c.get("created_time") or c.get("timestamp") if isinstance(c, dict) else None)
        except BadItem:
            continue
        if author in ours and text(c, field).strip() == reply.text.strip() and at >= after:
            remote = ident(c, "id", required=False)
            if remote:
                return SendResult(remote, at)
    raise UnknownDelivery(f"{service}: the reply is not among the latest messages there (no Graph endpoint takes "
                          "an idempotency key); check it on the platform, then retry or confirm it as sent")


def event_ids(entries: list[dict[str, Any]], change_id: Callable[[Any, Any], str]) -> list[str]:
    """The ids of what a Messenger-shaped webhook body (a Page's, an Instagram account's) brings: each
    messaging event's, and ``change_id(change, value)`` for each change, so a redelivery of the same
    events in another body is known for the same (``MetaProvider.ids_key``)."""
    parts: list[str] = []
    for entry in entries:
        parts += Messaging.event_ids(entry)
        for change in items(entry, "changes"):
            parts.append(change_id(change, mapping(change, "value", required=False)))
    return parts
