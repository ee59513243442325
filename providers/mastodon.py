"""Mastodon: mentions and direct messages in, replies out, over the documented REST API.

Streams (one cursor each, advanced only with the items it covers):
- ``mentions``: ``GET /api/v1/notifications?types[]=mention`` paged forward with ``min_id`` (the
  ``Link: rel="prev"`` target), cursor ``{"min_id": newest notification id}``.
- ``direct``: ``GET /api/v1/conversations`` paged the same way; its ids are last-status ids.
- ``push`` (only from ``stream()``): the SSE user notification stream; its items are also re-read by
  polling, and storage drops the second copy, so a push never moves the polling cursors.

A conversation is a thread: its native id is the id of the thread's root status, found with
``/api/v1/statuses/:id/context`` the first time a thread is seen (the ancestors come in too, so the
agent sees the whole public thread), or through ``resolve_thread`` when we already hold the parent.
Replies carry the outbox key as ``Idempotency-Key``: a repeated POST returns the first status.

Length: Mastodon's own counter (``platforms.mastodon_length``: graphemes, a URL is 23, a remote
mention counts its local part), against the instance's ``configuration.statuses.max_characters``
(or the account's ``max_length``), which ``facts()`` hands to the engine for the composer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.options import AccountOptions, HttpsUrl
from replydesk.platforms import Limit, PlatformFacts, mastodon_length
from replydesk.providers import http, payload
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    PermanentError,
    ProviderError,
    RateLimited,
    SecretGetter,
)
from replydesk.providers.payload import BadItem, ident

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SERVICE = "mastodon"
PAGE_LIMIT = 40  # the API's maximum for notifications and conversations
MAX_PAGES = 10  # per stream and fetch; the rest comes on the next poll
DEFAULT_MAX_CHARS = 500
VISIBILITIES = ("public", "unlisted", "private", "direct")


class MastodonOptions(AccountOptions):
    """A Mastodon account: an access token with read:notifications, read:statuses, write:statuses."""

    secret_hint: ClassVar[str] = ("an access token with scopes read:notifications read:statuses write:statuses "
                                  "(Preferences → Development → New application)")

    provider: Literal["mastodon"] = "mastodon"
    instance: HttpsUrl
    """The instance, e.g. https://mastodon.social (https; plain http only for localhost)."""
    max_length: int | None = Field(None, ge=1)
    """The post limit, if it differs from the one the instance reports (omit it to use the instance's)."""


FACTS = {"mastodon": PlatformFacts("Mastodon", "MA", Limit(DEFAULT_MAX_CHARS, "mastodon"),
                                   Limit(DEFAULT_MAX_CHARS, "mastodon"))}


def _html_to_text(content: str, mentions: dict[str, str]) -> str:
    from replydesk.providers.html_text import html_to_text  # html.parser loads with the first post

    return html_to_text(content, mentions)


def _mentions(status: dict[str, Any]) -> dict[str, str]:
    return {m["url"]: m["acct"] for m in payload.items(status, "mentions")
            if isinstance(m, dict) and isinstance(m.get("url"), str) and isinstance(m.get("acct"), str)}


def id_key(value: str) -> tuple[int, str]:
    """Mastodon ids are numeric strings, other servers use fixed-width sortable strings: order by
    length, then lexically, which is numeric order for the first and plain order for the second."""
    return (len(value), value)


class MastodonProvider(http.HttpProvider):
    platform = "mastodon"
    service = SERVICE
    Options = MastodonOptions
    FACTS = FACTS
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, supports_idempotency=True,
                                can_lookup_sent=True, streams=True)
    poll_interval = 60.0
    can_listen = True

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        self.base = http.check_base_url(self.options.instance)
        self._instance_max: int | None = None
        self._me: dict[str, str] | None = None
        self._instance_checked = False
        self._streaming_base: str | None = None
        self._roots: dict[str, str] = {}  # status id -> thread root id, learned this run

    # ---- plumbing ---------------------------------------------------------------------------------

    @property
    def max_chars(self) -> int:
        """The post limit in force: the account's own setting, else the instance's, else 500."""
        return self.options.max_length or self._instance_max or DEFAULT_MAX_CHARS

    def facts(self) -> dict[str, PlatformFacts]:
        return {"mastodon": FACTS["mastodon"].with_limit(self.max_chars, self.max_chars)}

    def _token(self) -> str:
        token = self._secret()
        if not token:
            raise AuthError(f"mastodon: no access token stored for account {self.account!r}; "
                            "run 'replydesk login' (scopes read:notifications read:statuses write:statuses)")
        return token

    async def _request(self, method: str, path: str, *, params: Any = None, json: Any = None,
                       headers: dict[str, str] | None = None) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        return await self.request(method, self.base + path, params=params, json=json,
                                  headers={**auth, **(headers or {})})

    async def _get_json(self, path: str, params: Any = None) -> tuple[Any, httpx.Response]:
        response = await self._request("GET", path, params=params)
        return http.json_body(response, SERVICE), response

    async def me(self) -> dict[str, str]:
        """Our own account (id, acct): tells our posts from the customers' in a thread."""
        if self._me is None:
            data, _ = await self._get_json("/api/v1/accounts/verify_credentials")
            if not isinstance(data, dict):
                raise PermanentError("mastodon: verify_credentials answered with an unexpected shape")
            try:
                self._me = {"id": ident(data, "id", numbers=True),
                            "acct": ident(data, "acct", required=False, numbers=True)}
            except BadItem:
                raise PermanentError("mastodon: verify_credentials has no account id") from None
        return self._me

    async def _check_instance(self) -> None:
        """The instance's own character limit and streaming host (best effort, once per run)."""
        if self._instance_checked:
            return
        self._instance_checked = True
        try:
            data, _ = await self._get_json("/api/v2/instance")
        except (AuthError, RateLimited):
            raise
        except ProviderError:
            return
        config = data.get("configuration") if isinstance(data, dict) else None
        config = config if isinstance(config, dict) else {}
        statuses = config.get("statuses") if isinstance(config.get("statuses"), dict) else {}
        limit = payload.optional_int(statuses, "max_characters")
        if limit is not None and 0 < limit <= 1_000_000:
            self._instance_max = limit
        urls = config.get("urls") if isinstance(config.get("urls"), dict) else {}
        streaming = urls.get("streaming")
        if isinstance(streaming, str) and streaming:
            candidate = re.sub(r"^wss://", "https://", re.sub(r"^ws://", "http://", streaming.strip()))
            try:
                self._streaming_base = http.check_base_url(candidate)
            except PermanentError:
                self._streaming_base = None

    # ---- mapping ----------------------------------------------------------------------------------

    def _message(self, status: dict[str, Any], root: str, kind: str, me: dict[str, str]) -> IncomingMessage:
        """One status as a message. Raises BadItem when a field we need is missing or wrong."""
        sid = ident(status, "id", numbers=True)
        account = payload.mapping(status, "account")
        author_id = ident(account, "id", numbers=True)
        acct = ident(account, "acct", required=False) or ident(account, "username", required=False) or author_id
        name = payload.text(account, "display_name")
        created_at = payload.timestamp(status.get("created_at"), "created_at")
        content = payload.text(status, "content", required=True)
        text = _html_to_text(content, _mentions(status))
        spoiler = payload.text(status, "spoiler_text").strip()
        if spoiler:
            text = f"CW: {spoiler}\n\n{text}"
        for media in payload.items(status, "media_attachments"):
            if isinstance(media, dict):
                label = payload.text(media, "description")
                url = payload.text(media, "url")
                kind_name = payload.text(media, "type") or "attachment"
                text += f"\n[{kind_name}{': ' + label if label else ''}] {url}".rstrip()
        visibility = status.get("visibility") if status.get("visibility") in VISIBILITIES else "public"
        parent = status.get("in_reply_to_id")
        outbound = author_id == me["id"]
        contact = Contact(native_id=author_id, name=name or acct, handle="@" + acct)
        if outbound:  # our own post: the customer is whom it addresses
            other = next((m for m in payload.items(status, "mentions") if isinstance(m, dict)
                          and payload.is_identifier(m.get("id")) and m["id"] != me["id"]
                          and payload.is_identifier(m.get("acct"))), None)
            if other:
                contact = Contact(native_id=other["id"], name=other["acct"], handle="@" + other["acct"])
        return IncomingMessage(
            native_id=sid, conversation_native_id=root, platform="mastodon", kind=kind,
            contact=contact,
            text=text, created_at=created_at, direction="out" if outbound else "in", author=name or acct,
            parent_native_id=str(parent) if isinstance(parent, str | int) and payload.is_identifier(str(parent)) else None,
            meta={"visibility": visibility, "acct": acct, "account_id": author_id, "url": payload.text(status, "url"),
                  "conversation": {"root": root}},
        )

    async def _thread(self, status: dict[str, Any], me: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
        """The thread root of ``status`` and the other statuses to show with it (ancestors, replies)."""
        sid = ident(status, "id", numbers=True)
        parent = status.get("in_reply_to_id")
        if parent is not None and not payload.is_identifier(str(parent)):
            raise BadItem("in_reply_to_id is not a valid id")
        if sid in self._roots:
            return self._roots[sid], []
        if not parent:
            self._roots[sid] = sid
            return sid, []
        parent = str(parent)
        known = self._roots.get(parent) or self.resolve_thread([parent])
        if known:
            self._roots[sid] = known
            return known, []
        try:
            context, _ = await self._get_json(f"/api/v1/statuses/{sid}/context")
        except PermanentError:  # deleted or hidden: keep the status, threaded on its parent
            self._roots[sid] = parent
            return parent, []
        ancestors = [s for s in (context.get("ancestors") or []) if isinstance(s, dict)] \
            if isinstance(context, dict) else []
        descendants = [s for s in (context.get("descendants") or []) if isinstance(s, dict)] \
            if isinstance(context, dict) else []
        root = ancestors[0]["id"] if ancestors and payload.is_identifier(ancestors[0].get("id")) else parent
        for item in [*ancestors, *descendants]:
            if isinstance(item.get("id"), str):
                self._roots[item["id"]] = root
        self._roots[sid] = root
        return root, [*ancestors, *descendants]

    @staticmethod
    def _kind(status: dict[str, Any], thread: list[dict[str, Any]], root: str, me: dict[str, str]) -> str:
        if status.get("visibility") == "direct":
            return "dm"
        root_status = next((s for s in [*thread, status] if s.get("id") == root), None)
        account = root_status.get("account") if isinstance(root_status, dict) else None
        if isinstance(account, dict) and account.get("id") == me["id"]:
            return "comment"  # someone answered one of our posts
        return "mention"

    async def _map_status(self, status: Any, me: dict[str, str], rejected: list[tuple[str, str]]
                          ) -> list[IncomingMessage]:
        """A status plus its thread as messages (raises for a bad status; a bad thread status lands
        in ``rejected`` on its own and the rest are kept)."""
        if not isinstance(status, dict):
            raise BadItem("status missing or not an object")
        root, thread = await self._thread(status, me)
        kind = self._kind(status, thread, root, me)
        messages = [self._message(status, root, kind, me)]
        others, bad = await payload.map_items(thread, lambda s: self._message(s, root, kind, me),
                                              lambda s: s.get("id", "?"))
        rejected.extend((label, f"thread status: {reason}") for label, reason in bad)
        return messages + others

    # ---- fetching ---------------------------------------------------------------------------------

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        me = await self.me()
        await self._check_instance()

        def walk(stream: str, path: str, mapper: Any) -> Any:
            return lambda: payload.keep_finished(self._pages(stream, path, cursors.get(stream) or {}, mapper, me))

        return await payload.keep_finished(payload.chain(
            walk("mentions", "/api/v1/notifications", self._map_notifications),
            walk("direct", "/api/v1/conversations", self._map_conversations),
        ))

    async def _pages(self, stream: str, path: str, cursor: dict[str, Any], mapper: Any,
                     me: dict[str, str]) -> AsyncIterator[FetchResult]:
        """Page forward from ``cursor["min_id"]``; each page is one result with its own cursor."""
        min_id = cursor.get("min_id") if isinstance(cursor.get("min_id"), str) else None
        for _ in range(MAX_PAGES):
            params: list[tuple[str, str | int]] = [("limit", PAGE_LIMIT)]
            if stream == "mentions":
                params.append(("types[]", "mention"))
            if min_id:
                params.append(("min_id", min_id))
            data, response = await self._get_json(path, params)
            if not isinstance(data, list):
                raise PermanentError(f"mastodon: {stream} answered with an unexpected shape")
            if not data:
                break
            messages, rejected = await mapper(data, me)
            prev = http.parse_link_header(response.headers.get("link")).get("prev")
            newest = http.query_param(prev, "min_id") if prev else None
            if not newest:
                ids = [str(item["id"]) for item in data if isinstance(item, dict) and isinstance(item.get("id"), str | int)]
                if stream == "direct":
                    ids = [str(item["last_status"]["id"]) for item in data if isinstance(item, dict)
                           and isinstance(item.get("last_status"), dict)
                           and isinstance(item["last_status"].get("id"), str | int)]
                newest = max(ids, key=id_key) if ids else min_id
            if min_id and newest and id_key(newest) <= id_key(min_id):
                newest = min_id  # never move a cursor backwards
            yield FetchResult(messages, {"min_id": newest} if newest else dict(cursor), stream, rejected)
            if not min_id or len(data) < PAGE_LIMIT or newest == min_id:
                break  # first sync takes the newest page only; a short page means we are at the top
            min_id = newest

    async def _map_batch(self, batch: list[Any], me: dict[str, str], status_of: Any,
                         label: Any) -> tuple[list[IncomingMessage], list[tuple[str, str]]]:
        rejected: list[tuple[str, str]] = []
        return await payload.map_items(batch, lambda item: self._map_status(status_of(item), me, rejected),
                                       label, rejected)

    async def _map_notifications(self, data: list[Any], me: dict[str, str]):  # noqa: ANN202
        mentions = [item for item in data if not isinstance(item, dict) or item.get("type") in (None, "mention")]
        return await self._map_batch(mentions, me, _notification_status,
                                     lambda item: item.get("id", "?") if isinstance(item, dict) else "?")

    async def _map_conversations(self, data: list[Any], me: dict[str, str]):  # noqa: ANN202
        return await self._map_batch(data, me, _conversation_status,
                                     lambda item: f"conversation:{str(item.get('id', '?'))[:100]}"
                                     if isinstance(item, dict) else "?")

    async def listen(self, queries: Any, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        """Listening: full-text search and hashtag timelines (``mastodon_listen``)."""
        from replydesk.providers.mastodon_listen import listen

        return await listen(self, list(queries), cursors)

    # ---- push -------------------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[FetchResult]:
        """Mentions as they happen, from the SSE user notification stream. Ends (raising the mapped
        error) when the connection drops; the engine keeps polling meanwhile and may call again."""
        me = await self.me()
        await self._check_instance()
        base = self._streaming_base or self.base
        response = await self.request(
            "GET", base + "/api/v1/streaming/user/notification", stream=True, read_timeout=90.0,
            headers={"Authorization": f"Bearer {self._token()}", "Accept": "text/event-stream"},
        )
        try:
            async for event in http.iter_sse(http.iter_lines(response, SERVICE), SERVICE):
                if event.event != "notification":
                    continue
                try:
                    item = http.parse_json(event.data)
                except ValueError:
                    yield FetchResult([], {}, "push", [("stream", "event data is not JSON")])
                    continue
                if not isinstance(item, dict) or item.get("type") != "mention":
                    continue
                label = str(item.get("id", "?"))[:100]
                messages, rejected = await self._map_batch([item], me, _notification_status,
                                                           lambda it: str(it.get("id", "?")))
                yield FetchResult(messages, {"last_id": label}, "push", rejected)
        finally:
            await response.aclose()

    # ---- sending ----------------------------------------------------------------------------------

    def compose(self, reply: OutgoingReply) -> dict[str, Any]:
        """The POST /api/v1/statuses body for ``reply`` (pure, so tests can check it directly)."""
        inbound = reply.answering_meta
        acct = inbound.get("acct") if isinstance(inbound.get("acct"), str) else ""
        acct = acct or reply.customer_handle.lstrip("@")
        text = reply.text.strip()
        if acct and not re.match(rf"@{re.escape(acct)}(?![\w@.-])", text, re.I):
            text = f"@{acct} {text}"
        visibility = inbound.get("visibility") if inbound.get("visibility") in VISIBILITIES else None
        if reply.private or reply.kind == "dm":
            visibility = "direct"
        body: dict[str, Any] = {"status": text, "visibility": visibility or "public"}
        if reply.in_reply_to_native_id:
            body["in_reply_to_id"] = reply.in_reply_to_native_id
        return body

    async def send(self, reply: OutgoingReply) -> SendResult:
        body = self.compose(reply)
        limit = self.max_chars
        length = mastodon_length(body["status"])
        if length > limit:
            raise PermanentError(f"mastodon: the reply is {length} characters; this instance allows {limit}")
        response = await self._request("POST", "/api/v1/statuses", json=body,
                                       headers={"Idempotency-Key": reply.key})
        data = http.json_body(response, SERVICE)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str | int):
            raise PermanentError("mastodon: the posted status came back without an id")
        return SendResult(str(data["id"]), payload.timestamp_or(data.get("created_at"), self.clock()))

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        """Our own recent statuses answering the same status with the same text (used only past the
        one hour for which Mastodon remembers an Idempotency-Key)."""
        me = await self.me()
        data, _ = await self._get_json(f"/api/v1/accounts/{me['id']}/statuses",
                                       [("limit", PAGE_LIMIT), ("exclude_reblogs", "true")])
        wanted = " ".join(self.compose(reply)["status"].split())
        for status in data if isinstance(data, list) else []:
            if not isinstance(status, dict) or not isinstance(status.get("content"), str):
                continue
            if reply.in_reply_to_native_id and str(status.get("in_reply_to_id")) != reply.in_reply_to_native_id:
                continue
            if " ".join(_html_to_text(status["content"], _mentions(status)).split()) == wanted:
                return SendResult(str(status["id"]), payload.timestamp_or(status.get("created_at"), self.clock()))
        return None


def _notification_status(item: Any) -> Any:
    if not isinstance(item, dict):
        raise BadItem("notification is not an object")
    return item.get("status")


def _conversation_status(item: Any) -> Any:
    if not isinstance(item, dict):
        raise BadItem("conversation is not an object")
    return item.get("last_status")
