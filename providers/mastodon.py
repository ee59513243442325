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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import regex

from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult, parse_iso
from replydesk.providers import http
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    PermanentError,
    Provider,
    ProviderError,
    RateLimited,
    SecretGetter,
    TransientError,
)
from replydesk.providers.html_text import html_to_text
from replydesk.providers.http import BadItem

log = logging.getLogger(__name__)

SERVICE = "mastodon"
PAGE_LIMIT = 40  # the API's maximum for notifications and conversations
MAX_PAGES = 10  # per stream and fetch; the rest comes on the next poll
DEFAULT_MAX_CHARS = 500
URL_WEIGHT = 23  # Mastodon counts every URL as 23 characters
VISIBILITIES = ("public", "unlisted", "private", "direct")

_URL_RE = re.compile(r"https?://[^\s<>\"]+", re.I)
_MENTION_RE = re.compile(r"(?<![\w/])@(\w+)@[\w.-]+\w", re.UNICODE)


def _str(obj: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if http.is_identifier(value):
        return value
    if required:
        raise BadItem(f"{key} missing or not a valid string")
    return ""


def _dict(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, dict):
        raise BadItem(f"{key} missing or not an object")
    return value


def id_key(value: str) -> tuple[int, str]:
    """Mastodon ids are numeric strings, other servers use fixed-width sortable strings: order by
    length, then lexically, which is numeric order for the first and plain order for the second."""
    return (len(value), value)


def mastodon_length(text: str) -> int:
    """Characters as Mastodon counts them: every URL is 23, a remote mention counts only @user."""
    text = _URL_RE.sub("x" * URL_WEIGHT, text)
    text = _MENTION_RE.sub(lambda m: "@" + m.group(1), text)
    return len(regex.findall(r"\X", text))


class MastodonProvider(Provider):
    platform = "mastodon"
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, max_length=DEFAULT_MAX_CHARS,
                                supports_idempotency=True, can_lookup_sent=True, streams=True)
    poll_interval = 60.0

    def __init__(self, account: str, options: dict[str, Any], secret: SecretGetter, *,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(account, options, secret)
        self.base = http.check_base_url(str(options["instance"]))
        self._configured_max = options.get("max_length")
        if self._configured_max:
            self.capabilities = dataclasses.replace(self.capabilities, max_length=int(self._configured_max))
        self.clock = clock
        self.gate = http.RateGate(SERVICE, clock)
        self._clients = http.LazyClient(transport)
        self._me: dict[str, str] | None = None
        self._instance_checked = False
        self._streaming_base: str | None = None
        self._roots: dict[str, str] = {}  # status id -> thread root id, learned this run

    # ---- plumbing ---------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        return self._clients.get()

    def _token(self) -> str:
        token = self._secret()
        if not token:
            raise AuthError(f"mastodon: no access token stored for account {self.account!r}; "
                            "run 'replydesk login' (scopes read:notifications read:statuses write:statuses)")
        return token

    async def _request(self, method: str, path: str, *, params: Any = None, json: Any = None,
                       headers: dict[str, str] | None = None, base: str | None = None) -> httpx.Response:
        self.gate.check()
        request = self._http().build_request(
            method, (base or self.base) + path, params=params, json=json,
            headers={"Authorization": f"Bearer {self._token()}", "Accept": "application/json", **(headers or {})},
        )
        response = await http.send_request(self._http(), request, SERVICE)
        http.raise_for_status(response, SERVICE, self.gate)
        return response

    async def _get_json(self, path: str, params: Any = None) -> tuple[Any, httpx.Response]:
        response = await self._request("GET", path, params=params)
        return http.json_body(response, SERVICE), response

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def me(self) -> dict[str, str]:
        """Our own account (id, acct): tells our posts from the customers' in a thread."""
        if self._me is None:
            data, _ = await self._get_json("/api/v1/accounts/verify_credentials")
            if not isinstance(data, dict):
                raise PermanentError("mastodon: verify_credentials answered with an unexpected shape")
            try:
                self._me = {"id": _str(data, "id"), "acct": _str(data, "acct", required=False)}
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
        limit = statuses.get("max_characters")
        if not self._configured_max and isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            self.capabilities = dataclasses.replace(self.capabilities, max_length=limit)
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
        sid = _str(status, "id")
        account = _dict(status, "account")
        author_id = _str(account, "id")
        acct = _str(account, "acct", required=False) or _str(account, "username", required=False) or author_id
        name = account.get("display_name") if isinstance(account.get("display_name"), str) else ""
        created = status.get("created_at")
        if not isinstance(created, str):
            raise BadItem("created_at missing or not a string")
        try:
            created_at = parse_iso(created)
        except (ValueError, OverflowError):
            raise BadItem("created_at is not an ISO time") from None
        content = status.get("content")
        if not isinstance(content, str):
            raise BadItem("content missing or not a string")
        mentions = {}
        for mention in status.get("mentions") or []:
            if isinstance(mention, dict) and isinstance(mention.get("url"), str) and isinstance(mention.get("acct"), str):
                mentions[mention["url"]] = mention["acct"]
        text = html_to_text(content, mentions)
        spoiler = status.get("spoiler_text")
        if isinstance(spoiler, str) and spoiler.strip():
            text = f"CW: {spoiler.strip()}\n\n{text}"
        for media in status.get("media_attachments") or []:
            if isinstance(media, dict):
                label = media.get("description") if isinstance(media.get("description"), str) else ""
                url = media.get("url") if isinstance(media.get("url"), str) else ""
                kind_name = media.get("type") if isinstance(media.get("type"), str) else "attachment"
                text += f"\n[{kind_name}{': ' + label if label else ''}] {url}".rstrip()
        visibility = status.get("visibility") if status.get("visibility") in VISIBILITIES else "public"
        parent = status.get("in_reply_to_id")
        outbound = author_id == me["id"]
        contact = Contact(native_id=author_id, name=name or acct, handle="@" + acct)
        if outbound:  # our own post: the customer is whom it addresses
            other = next((m for m in status.get("mentions") or [] if isinstance(m, dict)
                          and http.is_identifier(m.get("id")) and m["id"] != me["id"]
                          and http.is_identifier(m.get("acct"))), None)
            if other:
                contact = Contact(native_id=other["id"], name=other["acct"], handle="@" + other["acct"])
        return IncomingMessage(
            native_id=sid, conversation_native_id=root, platform="mastodon", kind=kind,
            contact=contact,
            text=text, created_at=created_at, direction="out" if outbound else "in", author=name or acct,
            parent_native_id=str(parent) if isinstance(parent, str | int) and http.is_identifier(str(parent)) else None,
            meta={"visibility": visibility, "acct": acct, "account_id": author_id,
                  "url": status.get("url") if isinstance(status.get("url"), str) else "",
                  "conversation": {"root": root}},
        )

    async def _thread(self, status: dict[str, Any], me: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
        """The thread root of ``status`` and the other statuses to show with it (ancestors, replies)."""
        sid = _str(status, "id")
        parent = status.get("in_reply_to_id")
        if parent is not None and not http.is_identifier(str(parent)):
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
        root = ancestors[0]["id"] if ancestors and http.is_identifier(ancestors[0].get("id")) else parent
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

    async def _map_status(self, status: Any, me: dict[str, str], rejected: list[tuple[str, str]],
                          label: str) -> list[IncomingMessage]:
        """A status plus its thread as messages; a bad status lands in ``rejected``."""
        try:
            if not isinstance(status, dict):
                raise BadItem("status missing or not an object")
            root, thread = await self._thread(status, me)
            kind = self._kind(status, thread, root, me)
            messages = [self._message(status, root, kind, me)]
        except ProviderError:
            raise
        except Exception as exc:  # a bad item never stops the batch, whatever is wrong with it
            rejected.append((label, http.reject_reason(exc)))
            return []
        for other in thread:
            try:
                messages.append(self._message(other, root, kind, me))
            except Exception as exc:
                rejected.append((str(other.get("id", "?"))[:100], f"thread status: {http.reject_reason(exc)}"))
        return messages

    # ---- fetching ---------------------------------------------------------------------------------

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        me = await self.me()
        await self._check_instance()
        results: list[FetchResult] = []
        for stream, path, mapper in (
            ("mentions", "/api/v1/notifications", self._map_notifications),
            ("direct", "/api/v1/conversations", self._map_conversations),
        ):
            cursor = cursors.get(stream) or {}
            try:
                results.extend(await self._pages(stream, path, cursor, mapper, me))
            except ProviderError:
                if results:  # keep what is already complete; the error shows again next poll
                    break
                raise
        return results

    async def _pages(self, stream: str, path: str, cursor: dict[str, Any], mapper: Any,
                     me: dict[str, str]) -> list[FetchResult]:
        """Page forward from ``cursor["min_id"]``; each page is one result with its own cursor."""
        results: list[FetchResult] = []
        min_id = cursor.get("min_id") if isinstance(cursor.get("min_id"), str) else None
        for _ in range(MAX_PAGES):
            params: list[tuple[str, str | int]] = [("limit", PAGE_LIMIT)]
            if stream == "mentions":
                params.append(("types[]", "mention"))
            if min_id:
                params.append(("min_id", min_id))
            try:
                data, response = await self._get_json(path, params)
            except ProviderError:
                if results:
                    return results
                raise
            if not isinstance(data, list):
                raise PermanentError(f"mastodon: {stream} answered with an unexpected shape")
            if not data:
                break
            rejected: list[tuple[str, str]] = []
            messages = await mapper(data, me, rejected)
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
            results.append(FetchResult(messages, {"min_id": newest} if newest else dict(cursor), stream, rejected))
            if not min_id or len(data) < PAGE_LIMIT or newest == min_id:
                break  # first sync takes the newest page only; a short page means we are at the top
            min_id = newest
        return results

    async def _map_notifications(self, data: list[Any], me: dict[str, str],
                                 rejected: list[tuple[str, str]]) -> list[IncomingMessage]:
        messages: list[IncomingMessage] = []
        for item in data:
            label = str(item.get("id", "?"))[:100] if isinstance(item, dict) else "?"
            if not isinstance(item, dict) or item.get("type") not in (None, "mention"):
                if not isinstance(item, dict):
                    rejected.append((label, "notification is not an object"))
                continue
            messages.extend(await self._map_status(item.get("status"), me, rejected, label))
        return messages

    async def _map_conversations(self, data: list[Any], me: dict[str, str],
                                 rejected: list[tuple[str, str]]) -> list[IncomingMessage]:
        messages: list[IncomingMessage] = []
        for item in data:
            if not isinstance(item, dict):
                rejected.append(("?", "conversation is not an object"))
                continue
            label = "conversation:" + str(item.get("id", "?"))[:100]
            messages.extend(await self._map_status(item.get("last_status"), me, rejected, label))
        return messages

    # ---- push -------------------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[FetchResult]:
        """Mentions as they happen, from the SSE user notification stream. Ends (raising the mapped
        error) when the connection drops; the engine keeps polling meanwhile and may call again."""
        me = await self.me()
        await self._check_instance()
        base = self._streaming_base or self.base
        self.gate.check()
        request = self._http().build_request(
            "GET", base + "/api/v1/streaming/user/notification",
            headers={"Authorization": f"Bearer {self._token()}", "Accept": "text/event-stream"},
            timeout=httpx.Timeout(connect=10.0, read=90.0, write=10.0, pool=10.0),
        )
        response = await http.send_request(self._http(), request, SERVICE, stream=True)
        try:
            if response.status_code >= 300:
                await response.aread()
            http.raise_for_status(response, SERVICE, self.gate)
            async for event in http.iter_sse(_lines(response)):
                if event.event != "notification":
                    continue
                rejected: list[tuple[str, str]] = []
                try:
                    payload = json.loads(event.data)
                except ValueError:
                    yield FetchResult([], {}, "push", [("stream", "event data is not JSON")])
                    continue
                if not isinstance(payload, dict) or payload.get("type") != "mention":
                    continue
                label = str(payload.get("id", "?"))[:100]
                messages = await self._map_status(payload.get("status"), me, rejected, label)
                yield FetchResult(messages, {"last_id": label}, "push", rejected)
        finally:
            await response.aclose()

    # ---- sending ----------------------------------------------------------------------------------

    def compose(self, reply: OutgoingReply) -> dict[str, Any]:
        """The POST /api/v1/statuses body for ``reply`` (pure, so tests can check it directly)."""
        inbound = reply.meta.get("last_inbound_meta") if isinstance(reply.meta, dict) else None
        inbound = inbound if isinstance(inbound, dict) else {}
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
        limit = self.capabilities.max_length or DEFAULT_MAX_CHARS
        length = mastodon_length(body["status"])
        if length > limit:
            raise PermanentError(f"mastodon: the reply is {length} characters; this instance allows {limit}")
        response = await self._request("POST", "/api/v1/statuses", json=body,
                                       headers={"Idempotency-Key": reply.key})
        data = http.json_body(response, SERVICE)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str | int):
            raise PermanentError("mastodon: the posted status came back without an id")
        return SendResult(str(data["id"]), self._time(data.get("created_at")))

    def _time(self, value: Any) -> float:
        if isinstance(value, str):
            try:
                return parse_iso(value)
            except ValueError:
                pass
        return self.clock()

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
            mentions = {m["url"]: m["acct"] for m in status.get("mentions") or []
                        if isinstance(m, dict) and isinstance(m.get("url"), str) and isinstance(m.get("acct"), str)}
            if " ".join(html_to_text(status["content"], mentions).split()) == wanted:
                return SendResult(str(status["id"]), self._time(status.get("created_at")))
        return None


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """The stream's lines; a dropped connection becomes a TransientError without the URL."""
    try:
        async for line in response.aiter_lines():
            yield line
    except httpx.HTTPError as exc:
        raise TransientError(f"mastodon: the stream was interrupted ({type(exc).__name__})") from None
