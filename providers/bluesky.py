"""Bluesky (AT Protocol): mentions, replies, quotes and direct messages in; replies and DMs out.

Streams:
- ``notifications``: ``app.bsky.notification.listNotifications`` (reasons mention, reply, quote) only
  pages backwards, newest first. We walk down to the stored watermark (the newest ``indexedAt`` we
  hold, with the URIs at that instant); a long walk is resumable: until it reaches the watermark,
  each page's cursor keeps the old watermark plus where to continue, so a crash mid-walk neither
  skips nor repeats anything. A new thread also brings its parents (``app.bsky.feed.getPostThread``).
- ``chat``: ``chat.bsky.convo.getLog`` is a forward cursor; the first sync takes the log head, then
  the recent history of each conversation (``listConvos`` + ``getMessages``). All chat calls go to the
  PDS with ``atproto-proxy: did:web:api.bsky.chat#bsky_chat``.

Replies: ``com.atproto.repo.createRecord`` with a record key derived from the outbox key
(``atproto.rkey_for``), so ``lookup_sent`` is a ``getRecord`` on that key and a retry can never make
a second post. DMs (``sendMessage``) have no key; ``lookup_sent`` looks for our own message with the
same text after the customer's last one.

Length: the lexicons give a post 300 graphemes *and* 3000 bytes of UTF-8 (``maxGraphemes`` and
``maxLength``), a DM 1000 graphemes and 10000 bytes; a reply must fit both (300 ZWJ family emoji are
300 graphemes but 7500 bytes, and the PDS refuses them).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult, iso
from replydesk.options import AccountOptions, HttpsUrl
from replydesk.platforms import Limit, PlatformFacts
from replydesk.providers import atproto, http, payload
from replydesk.providers.atproto import CHAT_PROXY, XrpcClient
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    PermanentError,
    ProviderError,
    RateLimited,
    SecretGetter,
)
from replydesk.providers.payload import BadItem, ident

log = logging.getLogger(__name__)

SERVICE = "bluesky"
REASONS = ("mention", "reply", "quote")
PAGE_LIMIT = 50
MAX_PAGES = 10
FIRST_SYNC_PAGES = 1
BOOTSTRAP_CONVOS = 50
BOOTSTRAP_MESSAGES = 30
POST_LIMIT = 300
DM_LIMIT = 1000
POST_LIMIT_BYTES = 3000
DM_LIMIT_BYTES = 10000
PARENT_HEIGHT = 30
POST = "app.bsky.feed.post"
LOG_CREATE = "chat.bsky.convo.defs#logCreateMessage"
NO_DM_ACCESS = ("this app password has no direct-message access; create one with 'Allow access to your "
                "direct messages' to read and answer DMs")


class IndexedWalk:
    """A newest-first walk by ``indexedAt`` down to the stored watermark, resumable mid-walk.

    The watermark is the newest time seen and the URIs at that instant (several posts can share
    one); a walk cut short keeps its page cursor and the top it has seen so far. Notifications and
    listening searches walk the same way. The stored cursor is read defensively: it is ours, but a
    damaged one must cost a re-read, not a crash."""

    def __init__(self, cursor: dict[str, Any]) -> None:
        def uris(value: Any) -> list[str]:
            return [u for u in value if isinstance(u, str)] if isinstance(value, list) else []

        seen_at, walk = cursor.get("seen_at"), cursor.get("walk")
        walk = walk if isinstance(walk, dict) else {}
        self.seen_at: float | None = seen_at if isinstance(seen_at, int | float) else None
        self.seen = set(uris(cursor.get("seen_uris")))
        self.page_cursor: str | None = walk.get("cursor") if isinstance(walk.get("cursor"), str) else None
        self.top_at: float | None = walk.get("top_at") if isinstance(walk.get("top_at"), int | float) else None
        self.top_uris = uris(walk.get("top_uris"))
        self.reached = False  # an item at or below the watermark came: the walk is complete

    def admit(self, item: Any, rejected: list[tuple[str, str]]) -> float | None:
        """The item's ``indexedAt`` when it is past the watermark (the top moves with it); None when
        it was seen before or has no usable time (then it is rejected with the reason)."""
        uri = ident(item, "uri", required=False) or "?"
        try:
            at = payload.timestamp(item.get("indexedAt") if isinstance(item, dict) else None, "indexedAt")
        except BadItem as exc:
            rejected.append((uri[:200], str(exc)))
            return None
        if self.seen_at is not None and (at < self.seen_at or (at == self.seen_at and uri in self.seen)):
            self.reached = True
            return None
        if self.top_at is None or at > self.top_at:
            self.top_at, self.top_uris = at, [uri]
        elif at == self.top_at:
            self.top_uris.append(uri)
        return at

    def cursor(self, next_cursor: str | None, done: bool) -> dict[str, Any]:
        """The cursor to store after a page: the new watermark once done, else where to go on."""
        if not done:
            return {"seen_at": self.seen_at, "seen_uris": sorted(self.seen),
                    "walk": {"cursor": next_cursor, "top_at": self.top_at, "top_uris": self.top_uris}}
        if self.top_at is not None:
            return {"seen_at": self.top_at, "seen_uris": self.top_uris}
        return {"seen_at": self.seen_at, "seen_uris": sorted(self.seen)} if self.seen_at is not None else {}


class BlueskyOptions(AccountOptions):
    """A Bluesky account: an app password (tick "Allow access to your direct messages" for DMs)."""

    secret_hint: ClassVar[str] = "an app password (Settings → App passwords; tick 'Allow access to your direct messages')"

    provider: Literal["bluesky"] = "bluesky"
    handle: str
    """The account's handle, e.g. shop.bsky.social."""
    service: HttpsUrl = "https://bsky.social"
    """Where to log in: Bluesky's entryway or your own PDS (http only for localhost)."""


FACTS = {"bluesky": PlatformFacts("Bluesky", "BS", Limit(POST_LIMIT, "graphemes", POST_LIMIT_BYTES),
                                  Limit(DM_LIMIT, "graphemes", DM_LIMIT_BYTES))}


def _ref(obj: Any) -> dict[str, str] | None:
    """A strong ref {uri, cid}, or None when it is not one."""
    if isinstance(obj, dict) and payload.is_identifier(obj.get("uri")) and payload.is_identifier(obj.get("cid")) \
            and obj["uri"].startswith("at://"):
        return {"uri": obj["uri"], "cid": obj["cid"]}
    return None


def _embed_note(embed: Any) -> str:
    """A visible line for what the text alone does not say (images, link cards, quoted posts)."""
    if not isinstance(embed, dict):
        return ""
    kind = embed.get("$type") if isinstance(embed.get("$type"), str) else ""
    if kind.startswith("app.bsky.embed.images"):
        images = embed.get("images") if isinstance(embed.get("images"), list) else []
        alts = [i.get("alt") for i in images if isinstance(i, dict) and isinstance(i.get("alt"), str) and i.get("alt")]
        return f"[{len(images)} image(s){': ' + '; '.join(alts) if alts else ''}]"
    if kind.startswith("app.bsky.embed.external") and isinstance(embed.get("external"), dict):
        ext = embed["external"]
        return f"[link: {ext.get('uri') if isinstance(ext.get('uri'), str) else ''}]"
    if kind.startswith("app.bsky.embed.record"):
        record = embed.get("record") if isinstance(embed.get("record"), dict) else {}
        inner = record.get("record") if isinstance(record.get("record"), dict) else record
        return f"[quoting {inner.get('uri') if isinstance(inner.get('uri'), str) else 'a post'}]"
    if kind.startswith("app.bsky.embed.video"):
        return "[video]"
    return ""


def _check_length(text: str, limit: Limit | None, what: str, where: str) -> None:
    measure = (limit or Limit()).measure(text)
    if measure.over:
        raise PermanentError(f"bluesky: {what} is {measure.used} {'bytes' if measure.unit == 'bytes' else 'graphemes'}; "
                             f"{where} allow {measure.limit}")


class BlueskyProvider(http.HttpProvider):
    platform = "bluesky"
    service = SERVICE
    Options = BlueskyOptions
    FACTS = FACTS
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, supports_idempotency=False,
                                can_lookup_sent=True, streams=False)
    poll_interval = 30.0
    can_listen = True

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        self.xrpc = XrpcClient(account, self.options.handle, self.options.service, secret, self.client,
                               self.gate, http.RateGate(SERVICE + " login", self.clock))
        self.chat_enabled = True
        self._convos: dict[str, list[dict[str, Any]]] = {}  # convo id -> members
        self._threads: set[str] = set()  # thread roots whose parents we fetched this run
        self._dids: dict[str, str] = {}

    # ---- fetching ---------------------------------------------------------------------------------

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        session = await self.xrpc.session()
        return await payload.keep_finished(payload.chain(
            lambda: payload.keep_finished(self._notifications(cursors.get("notifications") or {}, session.did)),
            lambda: self._chat_stream(cursors.get("chat") or {}, session.did),
        ))

    async def _chat_stream(self, cursor: dict[str, Any], me: str) -> list[FetchResult]:
        """The chat walk; an app password without DM access turns chat off for this run (said once)."""
        if not self.chat_enabled:
            return []
        try:
            return await payload.keep_finished(self._chat(cursor, me))
        except atproto.ScopeError:
            self.chat_enabled = False
            log.warning("bluesky %s: %s", self.account, NO_DM_ACCESS)
            return [FetchResult([], cursor, "chat", [("chat", NO_DM_ACCESS)])]

    # notifications

    async def _notifications(self, cursor: dict[str, Any], me: str) -> AsyncIterator[FetchResult]:
        walk = IndexedWalk(cursor)
        for page in range(MAX_PAGES):
            params: list[tuple[str, Any]] = [("limit", PAGE_LIMIT), *(("reasons", r) for r in REASONS)]
            if walk.page_cursor:
                params.append(("cursor", walk.page_cursor))
            data = await self.xrpc.call("GET", "app.bsky.notification.listNotifications", params=params)
            items = data.get("notifications") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise PermanentError("bluesky: listNotifications answered with an unexpected shape")
            rejected: list[tuple[str, str]] = []
            fresh = [item for item in items if walk.admit(item, rejected) is not None
                     and item.get("reason") in REASONS]
            messages, rejected = await payload.map_items(
                fresh, lambda item: self._notification_messages(item, me),
                lambda item: ident(item, "uri", required=False) or "?", rejected)
            next_cursor = data.get("cursor") if isinstance(data.get("cursor"), str) else None
            first_sync_done = walk.seen_at is None and page + 1 >= FIRST_SYNC_PAGES
            done = walk.reached or not items or not next_cursor or next_cursor == walk.page_cursor or first_sync_done
            yield FetchResult(messages, walk.cursor(next_cursor, done), "notifications", rejected)
            if done:
                break
            walk.page_cursor = next_cursor

    def _post_message(self, uri: str, cid: str, author: Any, record: Any, indexed_at: float, kind: str,
                      me: str, reason: str = "") -> IncomingMessage:
        if not isinstance(author, dict):
            raise BadItem("author missing or not an object")
        did = ident(author, "did")
        handle = ident(author, "handle", required=False) or did
        name = payload.text(author, "displayName")
        if not isinstance(record, dict):
            raise BadItem("record missing or not an object")
        text = record.get("text", "")
        if not isinstance(text, str):
            raise BadItem("record.text is not a string")
        text = atproto.expand_links(text, record.get("facets"))
        note = _embed_note(record.get("embed"))
        if note:
            text = f"{text}\n{note}" if text else note
        try:
            created_at = payload.timestamp(record.get("createdAt"), "createdAt")
        except BadItem:
            created_at = indexed_at
        reply = record.get("reply") if isinstance(record.get("reply"), dict) else {}
        root, parent = _ref(reply.get("root")), _ref(reply.get("parent"))
        root = root or {"uri": uri, "cid": cid}
        return IncomingMessage(
            native_id=uri, conversation_native_id=root["uri"], platform="bluesky", kind=kind,
            contact=Contact(native_id=did, name=name or handle, handle="@" + handle),
            text=text, created_at=created_at, direction="out" if did == me else "in", author=name or handle,
            parent_native_id=parent["uri"] if parent else None,
            meta={"uri": uri, "cid": cid, "root": root, "did": did, "handle": handle, "reason": reason,
                  "indexed_at": indexed_at, "conversation": {"root_uri": root["uri"]}},
        )

    async def _notification_messages(self, item: dict[str, Any], me: str) -> list[IncomingMessage]:
        uri, cid = ident(item, "uri"), ident(item, "cid")
        reason = item["reason"]
        kind = "comment" if reason == "reply" else "mention"
        message = self._post_message(uri, cid, item.get("author"), item.get("record"),
                                     payload.timestamp(item.get("indexedAt"), "indexedAt"), kind, me, reason)
        messages = [message]
        root = message.conversation_native_id
        if root != uri and root not in self._threads and message.parent_native_id \
                and not self.resolve_thread([root, message.parent_native_id]):
            self._threads.add(root)
            messages.extend(await self._parents(uri, kind, me))
        return messages

    async def _parents(self, uri: str, kind: str, me: str) -> list[IncomingMessage]:
        """The posts above ``uri`` in its thread, so a new conversation shows what it answers."""
        try:
            data = await self.xrpc.call("GET", "app.bsky.feed.getPostThread",
                                        params={"uri": uri, "depth": 0, "parentHeight": PARENT_HEIGHT})
        except (AuthError, RateLimited):
            raise
        except ProviderError as exc:  # context is a nicety; the mention itself is already mapped
            log.info("bluesky %s: thread context unavailable: %s", self.account, exc)
            return []
        node = data.get("thread") if isinstance(data, dict) else None
        node = node.get("parent") if isinstance(node, dict) else None
        out: list[IncomingMessage] = []
        for _ in range(PARENT_HEIGHT):
            if not isinstance(node, dict) or not isinstance(node.get("post"), dict):
                break  # notFoundPost / blockedPost or the top of the thread
            post = node["post"]
            try:
                at = payload.timestamp(post.get("indexedAt"), "indexedAt")
                out.append(self._post_message(ident(post, "uri"), ident(post, "cid"), post.get("author"),
                                              post.get("record"), at, kind, me))
            except Exception:  # a damaged parent only costs context
                pass
            node = node.get("parent")
        return out

    # chat

    async def _chat(self, cursor: dict[str, Any], me: str) -> AsyncIterator[FetchResult]:
        if not cursor.get("ready"):
            yield await self._chat_bootstrap(me)
            return
        log_cursor = cursor.get("log") if isinstance(cursor.get("log"), str) else ""
        for _ in range(MAX_PAGES):
            data = await self.xrpc.call("GET", "chat.bsky.convo.getLog",
                                        params={"cursor": log_cursor} if log_cursor else None, proxy=CHAT_PROXY)
            logs = data.get("logs") if isinstance(data, dict) else None
            if not isinstance(logs, list):
                raise PermanentError("bluesky: getLog answered with an unexpected shape")
            created = [e for e in logs if isinstance(e, dict) and e.get("$type") == LOG_CREATE]
            messages, rejected = await payload.map_items(
                created, lambda entry: self._chat_message(ident(entry, "convoId"), entry.get("message"), me),
                lambda entry: f"chat:{str(entry.get('rev', '?'))[:100]}")
            new = data.get("cursor") if isinstance(data.get("cursor"), str) and data.get("cursor") else log_cursor
            yield FetchResult(messages, {"log": new, "ready": True}, "chat", rejected)
            if not logs or new == log_cursor:
                break
            log_cursor = new

    async def _chat_bootstrap(self, me: str) -> FetchResult:
        """First sync: the log head first (so nothing after it is missed), then recent history."""
        head = await self.xrpc.call("GET", "chat.bsky.convo.getLog", proxy=CHAT_PROXY)
        head_cursor = head.get("cursor") if isinstance(head, dict) and isinstance(head.get("cursor"), str) else ""
        data = await self.xrpc.call("GET", "chat.bsky.convo.listConvos", params={"limit": BOOTSTRAP_CONVOS},
                                    proxy=CHAT_PROXY)
        convos = data.get("convos") if isinstance(data, dict) else None
        messages: list[IncomingMessage] = []
        rejected: list[tuple[str, str]] = []
        for convo in convos if isinstance(convos, list) else []:
            if not isinstance(convo, dict) or not isinstance(convo.get("id"), str):
                rejected.append(("chat:convo", "conversation without an id"))
                continue
            cid = convo["id"]
            self._convos[cid] = [m for m in payload.items(convo, "members") if isinstance(m, dict)]
            if not isinstance(convo.get("lastMessage"), dict):
                continue
            history = await self.xrpc.call("GET", "chat.bsky.convo.getMessages",
                                           params={"convoId": cid, "limit": BOOTSTRAP_MESSAGES}, proxy=CHAT_PROXY)
            found, _ = await payload.map_items(payload.items(history, "messages"),
                                               lambda item, cid=cid: self._chat_message(cid, item, me),
                                               lambda _, cid=cid: f"chat:{cid[:60]}", rejected)
            messages.extend(found)
        return FetchResult(messages, {"log": head_cursor, "ready": True}, "chat", rejected)

    async def _members(self, convo: str) -> list[dict[str, Any]]:
        if convo not in self._convos:
            try:
                data = await self.xrpc.call("GET", "chat.bsky.convo.getConvo", params={"convoId": convo},
                                            proxy=CHAT_PROXY)
                members = data.get("convo", {}).get("members") if isinstance(data, dict) else None
            except (AuthError, RateLimited):
                raise
            except ProviderError:
                members = None
            self._convos[convo] = [m for m in members if isinstance(m, dict)] if isinstance(members, list) else []
        return self._convos[convo]

    async def _chat_message(self, convo: str, item: Any, me: str) -> IncomingMessage | None:
        """One chat message. Its author is its own sender (the member whose DID sent it, us for our
        own messages); the conversation's contact is the first member who is not us, so a group
        keeps one customer while every message is credited to whoever wrote it."""
        if not isinstance(item, dict):
            raise BadItem("message missing or not an object")
        if "deletedMessageView" in str(item.get("$type", "")):
            return None
        mid = ident(item, "id")
        sender = ident(item.get("sender"), "did") if isinstance(item.get("sender"), dict) else ""
        if not sender:
            raise BadItem("sender.did missing")
        text = item.get("text")
        if not isinstance(text, str):
            raise BadItem("text missing or not a string")
        text = atproto.expand_links(text, item.get("facets"))
        note = _embed_note(item.get("embed"))
        if note:
            text = f"{text}\n{note}" if text else note
        sent_at = payload.timestamp(item.get("sentAt"), "sentAt")
        members = await self._members(convo)
        by_did = {m["did"]: m for m in members if payload.is_identifier(m.get("did"))}
        other = next((m for did, m in by_did.items() if did != me), None)
        other_did = other["did"] if other else (sender if sender != me else f"convo:{convo}")
        handle = ident(other, "handle", required=False) if other else ""
        name = payload.text(other, "displayName") or handle
        outbound = sender == me
        return IncomingMessage(
            native_id=f"{convo}:{mid}", conversation_native_id=f"convo:{convo}", platform="bluesky", kind="dm",
            contact=Contact(native_id=other_did, name=name or other_did, handle="@" + handle if handle else ""),
            text=text, created_at=sent_at, direction="out" if outbound else "in",
            author=self._member_name(by_did.get(sender), sender, outbound),
            meta={"convo_id": convo, "sent_at": sent_at, "sender": sender, "conversation": {"convo_id": convo}},
        )

    def _member_name(self, member: dict[str, Any] | None, did: str, ours: bool) -> str:
        """How a message's sender is shown: the member's display name, else the handle; for our
        own messages our account's (the session's handle when the member list lacks us)."""
        name = payload.text(member, "displayName") if member else ""
        handle = ident(member, "handle", required=False) if member else ""
        if ours:
            return name or handle or self.xrpc.handle
        return name or handle or did

    async def listen(self, queries: Any, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        """Listening: ``app.bsky.feed.searchPosts`` per term, hashtag and handle (``bluesky_listen``)."""
        from replydesk.providers.bluesky_listen import listen

        return await listen(self, list(queries), cursors)

    # ---- sending ----------------------------------------------------------------------------------

    @staticmethod
    def _inbound(reply: OutgoingReply) -> dict[str, Any]:
        return reply.answering_meta

    @staticmethod
    def _convo_id(reply: OutgoingReply) -> str | None:
        convo = reply.meta.get("convo_id") if isinstance(reply.meta, dict) else None
        if isinstance(convo, str) and convo:
            return convo
        if reply.conversation_native_id.startswith("convo:"):
            return reply.conversation_native_id[6:]
        return None

    def rkey(self, reply: OutgoingReply) -> str:
        """A TID near when the reply was written (the outbox's time, the same on every retry); for
        a reply without one, the time of the post it answers."""
        anchor: Any = reply.created_at
        if not (isinstance(anchor, int | float) and 1e9 < anchor < 1e11):
            anchor = self._inbound(reply).get("indexed_at")
        anchor = float(anchor) if isinstance(anchor, int | float) and 1e9 < anchor < 1e11 else 1.7e9
        return atproto.rkey_for(reply.key, anchor)

    async def _resolve_handle(self, handle: str) -> str | None:
        if handle not in self._dids:
            try:
                data = await self.xrpc.call("GET", "com.atproto.identity.resolveHandle", params={"handle": handle})
            except (AuthError, RateLimited):
                raise
            except ProviderError:
                return None
            did = data.get("did") if isinstance(data, dict) else None
            if not (isinstance(did, str) and did.startswith("did:")):
                return None
            self._dids[handle] = did
        return self._dids[handle]

    async def compose_post(self, reply: OutgoingReply, did: str) -> dict[str, Any]:
        inbound = self._inbound(reply)
        parent = _ref(inbound)
        if parent is None:
            raise PermanentError("bluesky: the post to answer is unknown (no uri/cid); cannot thread the reply")
        root = _ref(inbound.get("root")) or parent
        known = {}
        if isinstance(inbound.get("handle"), str) and isinstance(inbound.get("did"), str):
            known[inbound["handle"].lower()] = inbound["did"]

        async def resolve(handle: str) -> str | None:
            return known.get(handle) or await self._resolve_handle(handle)

        text = reply.text.strip()
        record: dict[str, Any] = {"$type": POST, "text": text, "createdAt": iso(self.clock()).replace("Z", ".000Z"),
                                  "reply": {"root": root, "parent": parent}}
        facets = await atproto.make_facets(text, resolve)
        if facets:
            record["facets"] = facets
        return {"repo": did, "collection": POST, "rkey": self.rkey(reply), "record": record, "validate": True}

    async def send(self, reply: OutgoingReply) -> SendResult:
        session = await self.xrpc.session()
        convo = self._convo_id(reply)
        if convo:
            return await self._send_dm(reply, convo)
        _check_length(reply.text.strip(), FACTS["bluesky"].public, "the reply", "posts")
        body = await self.compose_post(reply, session.did)
        try:
            data = await self.xrpc.call("POST", "com.atproto.repo.createRecord", body=body)
        except PermanentError:
            found = await self.lookup_sent(reply)  # the record key is taken: by our own earlier attempt?
            if found is not None:
                return found
            raise
        uri = data.get("uri") if isinstance(data, dict) else None
        if not isinstance(uri, str):
            raise PermanentError("bluesky: createRecord answered without a uri")
        return SendResult(uri, self.clock())

    async def _send_dm(self, reply: OutgoingReply, convo: str) -> SendResult:
        text = reply.text.strip()
        _check_length(text, FACTS["bluesky"].private, "the message", "DMs")
        message: dict[str, Any] = {"text": text}
        facets = await atproto.make_facets(text, self._resolve_handle)
        if facets:
            message["facets"] = facets
        try:
            data = await self.xrpc.call("POST", "chat.bsky.convo.sendMessage",
                                        body={"convoId": convo, "message": message}, proxy=CHAT_PROXY)
        except atproto.ScopeError:
            raise PermanentError(f"bluesky: {NO_DM_ACCESS}") from None
        mid = data.get("id") if isinstance(data, dict) else None
        if not isinstance(mid, str):
            raise PermanentError("bluesky: sendMessage answered without a message id")
        return SendResult(f"{convo}:{mid}", payload.timestamp_or(data.get("sentAt"), self.clock()))

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        session = await self.xrpc.session()
        convo = self._convo_id(reply)
        if convo:
            return await self._lookup_dm(reply, convo, session.did)
        rkey = self.rkey(reply)
        try:
            data = await self.xrpc.call("GET", "com.atproto.repo.getRecord",
                                        params={"repo": session.did, "collection": POST, "rkey": rkey})
        except PermanentError as exc:
            if "RecordNotFound" in str(exc) or "not found" in str(exc).lower() or "HTTP 404" in str(exc):
                return None
            raise
        uri = data.get("uri") if isinstance(data, dict) else None
        if not isinstance(uri, str):
            return None
        value = payload.mapping(data, "value", required=False)
        return SendResult(uri, payload.timestamp_or(value.get("createdAt"), self.clock()))

    async def _lookup_dm(self, reply: OutgoingReply, convo: str, me: str) -> SendResult | None:
        """No key on DMs: our own message with the same text, sent after the customer's last one."""
        after = self._inbound(reply).get("sent_at")
        after = float(after) if isinstance(after, int | float) else None
        data = await self.xrpc.call("GET", "chat.bsky.convo.getMessages", params={"convoId": convo, "limit": 50},
                                    proxy=CHAT_PROXY)
        wanted = reply.text.strip()
        for item in data.get("messages", []) if isinstance(data, dict) else []:
            if not isinstance(item, dict) or not isinstance(item.get("sender"), dict):
                continue
            if item["sender"].get("did") != me or item.get("text") != wanted or not isinstance(item.get("id"), str):
                continue
            try:
                sent_at = payload.timestamp(item.get("sentAt"), "sentAt")
            except BadItem:
                continue
            if after is None or sent_at >= after:
                return SendResult(f"{convo}:{item['id']}", sent_at)
        return None

