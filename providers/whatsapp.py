"""WhatsApp Business (the Cloud API): chats in by webhook only, replies and templates out.

There is no polling API: every inbound message, every delivery status and every echo of a message
the business sent from the WhatsApp Business app (coexistence) arrives as a signed webhook body
(``replydesk.webhooks`` receives it, ``parse_push`` maps it). ``fetch`` fetches nothing; the engine
refreshes the approved templates (``templates``) on its hourly turn.

Mapping (every field is untrusted; one bad message never stops the others):

- A conversation per customer, keyed on the business-scoped user id (``user_id``, in every webhook
  since 2026); the phone number (``wa_id``) is its alias where WhatsApp still gives it. A body with
  only a phone number finds the contact by that alias (``resolve_contact``). When the user changes
  their number, WhatsApp says so in a ``system`` message with ``previous_user_id``: the new ids
  become aliases of the same contact, so it stays one conversation.
- Text is stored as text. Media, locations, contact cards, reactions, orders, buttons, interactive
  answers, system notices and unsupported types are stored as clear placeholders with their details
  (``[image: caption]``, ``[location: name, address (lat, lon)]``), never dropped. ``context`` (a
  reply to an earlier message) is kept as the parent; an ad referral is kept as dimmed context.
- ``statuses`` (sent, delivered, read, played, failed with its error) become delivery receipts for
  our replies. We send each reply with ``biz_opaque_callback_data`` set to its outbox key, which
  WhatsApp returns in the statuses, so a reply whose send we could not confirm is settled by its
  status (the Cloud API has no way to look a sent message up, and no idempotency key).
- ``smb_message_echoes``: what the business wrote in the WhatsApp Business app on its phone is
  stored as our reply, so the SLA clock and the reports count it.

Replies: ``POST /{phone-number-id}/messages`` with ``context.message_id`` (the customer's message),
inside the 24-hour customer-service window; outside it only an approved template may be sent
(``OutgoingReply.template``: name, language and the variables, as the composer filled them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from replydesk.model import (
    ActionResult,
    Contact,
    DeliveryUpdate,
    FetchResult,
    IncomingMessage,
    MessageTemplate,
    OutgoingAction,
    OutgoingReply,
    SendResult,
)
from replydesk.platforms import Limit, PlatformFacts
from replydesk.providers import meta
from replydesk.providers.base import Capabilities, PermanentError, UnknownDelivery
from replydesk.providers.payload import BadItem, ident, items, mapping, text
from replydesk.windows import WindowRule, WindowStep

SERVICE = "whatsapp"
TEXT_LIMIT = 4096
TEMPLATE_PAGES = 10
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
FIELD_MESSAGES, FIELD_ECHOES = "messages", "smb_message_echoes"
STATUS_STATES = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

# a text message body: 4,096 characters; chats only; 24 h after the customer's last message, then
# only approved templates
FACTS = {"whatsapp": PlatformFacts("WhatsApp", "WA", None, Limit(TEXT_LIMIT, "utf16"), (
    WindowRule("24-hour customer-service window", ("dm",), (WindowStep(24 * meta.HOUR),),
               "only approved message templates may be sent", "template"),))}


class WhatsAppOptions(meta.MetaOptions):
    """A WhatsApp Business phone number on the Cloud API."""

    secret_hint: ClassVar[str] = ("a system user's access token with whatsapp_business_messaging and "
                                  "whatsapp_business_management (then the app secret)")

    provider: Literal["whatsapp"] = "whatsapp"
    phone_number_id: str = Field(pattern=r"^[0-9]{1,32}$")
    """The business phone number's id (WhatsApp Manager → API Setup), not the number itself."""
    waba_id: str = Field(pattern=r"^[0-9]{1,32}$")
    """The WhatsApp Business Account id: its templates, and the webhook entries it sends."""


def _placeholder(kind: str, detail: str = "") -> str:
    return f"[{kind}: {detail}]" if detail else f"[{kind}]"


def _media(message: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    media = mapping(message, kind, required=False)
    caption, filename = text(media, "caption"), text(media, "filename")
    meta_info = {k: media[k] for k in ("id", "mime_type", "sha256") if isinstance(media.get(k), str)}
    if kind == "audio":
        label = "voice message" if media.get("voice") is True else "audio"
    elif kind == "sticker":
        label = "animated sticker" if media.get("animated") is True else "sticker"
    else:
        label = kind
    detail = " — ".join(p for p in (filename, caption) if p)
    return _placeholder(label, detail), {"media": meta_info} if meta_info else {}


def _location(loc: dict[str, Any]) -> str:
    lat, lon = loc.get("latitude"), loc.get("longitude")
    where = ", ".join(p for p in (text(loc, "name"), text(loc, "address")) if p)
    coords = f"({lat}, {lon})" if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)) else ""
    url = text(loc, "url")
    return _placeholder("location", " ".join(p for p in (where, coords, url) if p))


def _contacts(cards: list[Any]) -> str:
    shown = []
    for card in cards[:20]:
        name = text(mapping(card, "name", required=False), "formatted_name") or "?"
        phones = [text(p, "phone") for p in items(card, "phones") if text(p, "phone")]
        shown.append(" ".join([name, *phones[:3]]))
    return _placeholder("contact card" if len(shown) == 1 else "contact cards", "; ".join(shown))


def _order(order: dict[str, Any]) -> str:
    lines = []
    for item in items(order, "product_items")[:50]:
        qty, price = item.get("quantity"), item.get("item_price")
        lines.append(f"{qty if isinstance(qty, int | float) else '?'} × {text(item, 'product_retailer_id') or '?'}"
                     + (f" at {price} {text(item, 'currency')}".rstrip() if isinstance(price, int | float) else ""))
    note = text(order, "text")
    return _placeholder("order", "; ".join(lines) + (f" — {note}" if note else ""))


def _interactive(message: dict[str, Any]) -> str:
    inter = mapping(message, "interactive", required=False)
    kind = text(inter, "type")
    reply = mapping(inter, kind, required=False) if kind else {}
    title = text(reply, "title") or text(reply, "body") or text(reply, "name")
    if kind == "nfm_reply":
        return _placeholder("form answer", text(reply, "response_json")[:500])
    return _placeholder("answer" if kind else "interactive message", title)


def _errors(obj: Any) -> str:
    out = []
    for error in items(obj, "errors")[:5]:
        detail = text(mapping(error, "error_data", required=False), "details")
        words = text(error, "title") or text(error, "message")
        code = error.get("code") if isinstance(error, dict) else None
        out.append(" ".join(p for p in (f"#{code}" if isinstance(code, int) else "", words,
                                       f"({detail})" if detail and detail != words else "") if p))
    return "; ".join(out)


def body_text(message: dict[str, Any], value_errors: str = "") -> tuple[str, dict[str, Any], str | None]:
    """(text, extra meta, automatic reason) of one message of any type."""
    kind = text(message, "type") or "unknown"
    extra: dict[str, Any] = {}
    automatic = None
    if kind == "text":
        body = text(mapping(message, "text", required=False), "body")
    elif kind in MEDIA_TYPES:
        body, extra = _media(message, kind)
    elif kind == "location":
        body = _location(mapping(message, "location", required=False))
    elif kind == "contacts":
        body = _contacts(items(message, "contacts"))
    elif kind == "reaction":
        emoji = text(mapping(message, "reaction", required=False), "emoji")
        body = _placeholder("reaction", f"{emoji} to an earlier message") if emoji else "[reaction removed]"
    elif kind == "order":
        body = _order(mapping(message, "order", required=False))
    elif kind == "button":
        body = _placeholder("button", text(mapping(message, "button", required=False), "text"))
    elif kind == "interactive":
        body = _interactive(message)
    elif kind == "system":
        system = mapping(message, "system", required=False)
        body = _placeholder("WhatsApp", text(system, "body") or text(system, "type"))
        automatic = f"automatic: WhatsApp system message ({text(system, 'type') or 'notice'})"
    elif kind == "unsupported":
        what = text(mapping(message, "unsupported", required=False), "type")
        body = _placeholder("unsupported message" + (f" type {what!r}" if what else ""), _errors(message))
    else:
        body = _placeholder(f"{kind} message")
    problems = _errors(message) if kind not in ("unsupported",) else ""
    problems = "; ".join(p for p in (problems, value_errors) if p)
    if problems and kind != "unsupported":
        body = (body + "\n" if body else "") + _placeholder("WhatsApp reported", problems)
    return body, extra, automatic


class WhatsAppProvider(meta.MetaProvider):
    platform = "whatsapp"
    service = SERVICE
    Options = WhatsAppOptions
    FACTS: ClassVar[dict[str, PlatformFacts]] = FACTS
    capabilities = Capabilities(can_dm=True, can_reply_publicly=False, accepts_push=True, templates=True,
                                actions=frozenset({"mark_read"}))
    base_poll_interval = 3600.0  # nothing to poll; the engine's turn refreshes the templates

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        """The Cloud API has no way to list messages: they come by webhook only."""
        return []

    # ---- webhooks ---------------------------------------------------------------------------------

    def _changes(self, raw_body: bytes) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
        """(entry, field, value) of every change in a ``whatsapp_business_account`` body."""
        out = []
        for entry in self.body_of(raw_body, "whatsapp_business_account"):
            for change in items(entry, "changes"):
                if isinstance(change, dict) and isinstance(change.get("value"), dict):
                    out.append((entry, text(change, "field"), change["value"]))
        return out

    def _ours(self, entry: dict[str, Any], value: dict[str, Any]) -> bool:
        phone = text(mapping(value, "metadata", required=False), "phone_number_id")
        return phone == self.options.phone_number_id if phone else text(entry, "id") == self.options.waba_id

    def claims_push(self, raw_body: bytes) -> bool:
        try:
            return any(self._ours(entry, value) for entry, _, value in self._changes(raw_body))
        except ValueError:
            return False

    def push_key(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        """WhatsApp's own ids (``wamid``s; a status by id, state and time), so a redelivery in
        another body is the same delivery; the body's hash when it has none."""
        parts: list[str] = []
        try:
            for _, field, value in self._changes(raw_body):
                for m in items(value, "messages") + items(value, "message_echoes"):
                    parts.append(f"{field}:{text(m, 'id')}")
                for s in items(value, "statuses"):
                    parts.append(f"status:{text(s, 'id')}:{text(s, 'status')}:{text(s, 'timestamp')}")
        except ValueError:
            parts = []
        if not parts or any(p.endswith(":") or "::" in p for p in parts):
            return super().push_key(headers, raw_body)
        return self.ids_key(parts)

    def parse_push(self, raw_body: bytes, headers: Mapping[str, str]) -> list[FetchResult]:
        changes = self._changes(raw_body)  # ValueError: not a WhatsApp body; kept as unmappable
        messages: list[IncomingMessage] = []
        updates: list[DeliveryUpdate] = []
        rejected: list[tuple[str, str]] = []
        learned: dict[str, str] = {}  # aliases met earlier in this body (a number change, then a message)
        for entry, field, value in changes:
            if not self._ours(entry, value):
                phone = text(mapping(value, "metadata", required=False), "phone_number_id") or text(entry, "id")
                rejected.append((f"entry {phone[:40]}", f"for phone number {phone[:40]!r}, not this account's "
                                 f"({self.options.phone_number_id})"))
                continue
            if field == FIELD_MESSAGES:
                self._messages(value, messages, rejected, learned)
                self._statuses(value, updates, rejected)
            elif field == FIELD_ECHOES:
                self._echoes(value, messages, rejected, learned)
            # other fields (template status, account updates) carry nothing for the inbox
        return [FetchResult(messages, None, "push", rejected, updates=updates)]

    def _who(self, wa_id: str, user_id: str, learned: dict[str, str]) -> tuple[str, list[str]]:
        """(the contact's key, its aliases): the user id, else whatever our records say the phone
        number belongs to, else the phone number."""
        phone = f"+{wa_id}" if wa_id else ""
        ids = [i for i in (user_id, phone) if i]
        if not ids:
            raise BadItem("no user id and no phone number")
        known = next((learned[i] for i in ids if i in learned), None) or self.resolve_contact(ids)
        key = known or user_id or wa_id
        return key, [a for a in ids if a != key]

    def _profiles(self, value: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """contacts[] by phone number and by user id."""
        out: dict[str, dict[str, Any]] = {}
        for c in items(value, "contacts"):
            if not isinstance(c, dict):
                continue
            for key in (ident(c, "wa_id", required=False), ident(c, "user_id", required=False)):
                if key:
                    out[key] = c
        return out

    def _messages(self, value: dict[str, Any], out: list[IncomingMessage], rejected: list[tuple[str, str]],
                  learned: dict[str, str]) -> None:
        profiles = self._profiles(value)
        value_errors = _errors(value)
        for m in items(value, "messages"):
            try:
                out.append(self._inbound(m, profiles, value_errors, learned))
            except Exception as exc:  # one bad message never stops the others
                label = text(m, "id")[:200] if isinstance(m, dict) else "?"
                rejected.append((label or "?", str(exc) if isinstance(exc, BadItem)
                                 else f"unexpected payload shape ({type(exc).__name__})"))

    def _inbound(self, m: Any, profiles: dict[str, dict[str, Any]], value_errors: str,
                 learned: dict[str, str]) -> IncomingMessage:
        if not isinstance(m, dict):
            raise BadItem("a message that is not an object")
        native = ident(m, "id")
        wa_id = ident(m, "from", required=False)
        user_id = ident(m, "from_user_id", required=False)
        distinct = list({id(p): p for p in profiles.values()}.values())
        profile = profiles.get(user_id) or profiles.get(wa_id) or (distinct[0] if len(distinct) == 1 else {})
        user_id = user_id or ident(profile, "user_id", required=False)
        wa_id = wa_id or ident(profile, "wa_id", required=False)
        system = mapping(m, "system", required=False) if text(m, "type") == "system" else {}
        if system:  # a number (or user id) change: the old ids name the contact we hold, the new
            # ones become its aliases, so the customer stays one conversation where WhatsApp says so
            new_user, new_phone = ident(system, "user_id", required=False), ident(system, "wa_id", required=False)
            key, aliases = self._who(wa_id, ident(system, "previous_user_id", required=False) or user_id, learned)
            aliases += [a for a in (new_user, f"+{new_phone}" if new_phone else "") if a and a != key]
            wa_id, user_id = new_phone or wa_id, new_user or user_id
        else:
            key, aliases = self._who(wa_id, user_id, learned)
        for alias in aliases:
            learned[alias] = key
        names = mapping(profile, "profile", required=False)
        name, username = text(names, "name"), text(names, "username")
        handle = f"+{wa_id}" if wa_id else (f"@{username}" if username else "")
        body, extra, automatic = body_text(m, value_errors)
        context = mapping(m, "context", required=False)
        parent = ident(context, "id", required=False) or None
        if text(m, "type") == "reaction":
            parent = ident(mapping(m, "reaction", required=False), "message_id", required=False) or parent
        spans: tuple[tuple[int, int, str], ...] = ()
        referral = mapping(m, "referral", required=False)
        if referral:
            note = _placeholder("from an ad", " ".join(p for p in (text(referral, "headline"),
                                                                     text(referral, "source_url")) if p))
            start = len(body) + 1
            body = f"{body}\n{note}"
            spans = ((start, len(body), "context"),)
        if context.get("forwarded") is True or context.get("frequently_forwarded") is True:
            extra["forwarded"] = "many times" if context.get("frequently_forwarded") is True else "once"
        return IncomingMessage(
            native_id=native, conversation_native_id=key, platform="whatsapp", kind="dm",
            contact=Contact(key, name or username or handle or key, handle, name_is_fallback=not name,
                            aliases=tuple(aliases)),
            text=body, created_at=meta.graph_time(m.get("timestamp"), "timestamp"), direction="in",
            parent_native_id=parent, automatic=automatic, spans=spans,
            # only what this message says: an absent number keeps the one we knew (json_patch)
            meta={**extra, "type": text(m, "type"),
                  "conversation": {k: v for k, v in (("wa_id", wa_id), ("user_id", user_id)) if v}},
        )

    def _statuses(self, value: dict[str, Any], out: list[DeliveryUpdate], rejected: list[tuple[str, str]]) -> None:
        for s in items(value, "statuses"):
            state = STATUS_STATES.get(text(s, "status"))
            try:
                at = meta.graph_time(s.get("timestamp") if isinstance(s, dict) else None, "timestamp")
            except BadItem as exc:
                rejected.append((text(s, "id")[:200] or "?", f"status: {exc}"))
                continue
            if state is None:
                rejected.append((text(s, "id")[:200] or "?", f"unknown status {text(s, 'status')[:40]!r}"))
                continue
            update = meta.delivery(s.get("id"), state, at, _errors(s) if state == "failed" else "",
                                   s.get("biz_opaque_callback_data"))
            if update is None:
                rejected.append(("?", "status without a message id"))
            else:
                out.append(update)

    def _echoes(self, value: dict[str, Any], out: list[IncomingMessage], rejected: list[tuple[str, str]],
                learned: dict[str, str]) -> None:
        """Messages the business sent from the WhatsApp Business app: stored as our replies."""
        for m in items(value, "message_echoes"):
            try:
                if not isinstance(m, dict):
                    raise BadItem("an echo that is not an object")
                key, aliases = self._who(ident(m, "to", required=False), ident(m, "to_user_id", required=False),
                                         learned)
                body, extra, _ = body_text(m)
                out.append(IncomingMessage(
                    native_id=ident(m, "id"), conversation_native_id=key, platform="whatsapp", kind="dm",
                    contact=Contact(key, key, name_is_fallback=True, aliases=tuple(aliases)), text=body,
                    created_at=meta.graph_time(m.get("timestamp"), "timestamp"), direction="out",
                    author="WhatsApp Business app", meta={**extra, "echo": True}))
            except Exception as exc:
                rejected.append((text(m, "id")[:200] or "?", str(exc) if isinstance(exc, BadItem)
                                 else f"unexpected payload shape ({type(exc).__name__})"))

    # ---- sending ------------------------------------------------------------------------------------

    def _recipient(self, meta_: Mapping[str, Any], native: str) -> dict[str, str]:
        wa_id, user_id = meta_.get("wa_id"), meta_.get("user_id")
        if isinstance(wa_id, str) and wa_id.isdigit():
            return {"to": wa_id}  # Meta prefers the number while it has one
        return {"recipient": user_id if isinstance(user_id, str) and user_id else native}

    async def send(self, reply: OutgoingReply) -> SendResult:
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                                **self._recipient(reply.meta, reply.conversation_native_id),
                                "biz_opaque_callback_data": reply.key}
        if reply.send_as == "template":
            body.update(type="template", template=template_payload(reply.template))
        else:
            body.update(type="text", text={"body": reply.text, "preview_url": False})
            if reply.in_reply_to_native_id:
                body["context"] = {"message_id": reply.in_reply_to_native_id}
        answer = await self.graph("POST", f"/{self.options.phone_number_id}/messages", body=body)
        sent = answer.get("messages") if isinstance(answer, dict) else None
        remote = sent[0].get("id") if isinstance(sent, list) and sent and isinstance(sent[0], dict) else None
        if not isinstance(remote, str) or not remote:
            raise UnknownDelivery("whatsapp: the send was answered without a message id; check the chat")
        return SendResult(remote, self.clock())

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        raise UnknownDelivery("whatsapp cannot look up a sent message: its status webhook settles the reply "
                              "when WhatsApp has it; otherwise check the chat, then retry or confirm")

    async def perform(self, action: OutgoingAction) -> ActionResult:
        if action.kind != "mark_read":
            return await super().perform(action)
        up_to = action.payload.get("up_to")
        if not isinstance(up_to, str) or not up_to:
            raise PermanentError("whatsapp: no message to mark read")
        await self.graph("POST", f"/{self.options.phone_number_id}/messages",
                         body={"messaging_product": "whatsapp", "status": "read", "message_id": up_to})
        return ActionResult(up_to, self.clock())

    # ---- templates ----------------------------------------------------------------------------------

    async def templates(self) -> list[MessageTemplate]:
        out: list[MessageTemplate] = []
        params = {"status": "APPROVED", "limit": 100,
                  "fields": "name,language,status,category,components,parameter_format"}
        async for page in self.pages(f"/{self.options.waba_id}/message_templates", params, TEMPLATE_PAGES):
            for t in page:
                parsed = parse_template(t)
                if parsed is not None:
                    out.append(parsed)
        return out


def parse_template(t: Any) -> MessageTemplate | None:
    """One entry of ``message_templates``, or None when it is not usable (not approved, malformed)."""
    if not isinstance(t, dict) or text(t, "status").upper() not in ("APPROVED", ""):
        return None
    name, language = ident(t, "name", required=False), ident(t, "language", required=False)
    if not name or not language:
        return None
    components = tuple(c for c in items(t, "components") if isinstance(c, dict))[:10]
    body = next((text(c, "text") for c in components if text(c, "type").upper() == "BODY"), "")
    params = tuple(dict.fromkeys(_PLACEHOLDER.findall(body)))
    return MessageTemplate(name, language, body, params, text(t, "category"), components)


def template_payload(template: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Cloud API's ``template`` object for a reply the composer filled in."""
    if not isinstance(template, Mapping) or not isinstance(template.get("name"), str):
        raise PermanentError("whatsapp: a template reply without its template")
    params = template.get("params") if isinstance(template.get("params"), list) else []
    names = template.get("param_names") if isinstance(template.get("param_names"), list) else []
    named = bool(names) and not all(isinstance(n, str) and n.isdigit() for n in names)
    values = [{"type": "text", "text": str(v), **({"parameter_name": str(n)} if named else {})}
              for v, n in zip(params, names or [None] * len(params), strict=False)]
    out: dict[str, Any] = {"name": template["name"], "language": {"code": str(template.get("language") or "en_US")}}
    if values:
        out["components"] = [{"type": "body", "parameters": values}]
    return out
