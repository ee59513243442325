"""Shared httpx plumbing for the HTTP providers: one place that turns the wire into our error classes.

Why one module: every platform needs the same things done the same careful way — timeouts, mapping
status codes and httpx exceptions to ``TransientError``/``Offline``/``RateLimited``/``AuthError``/
``PermanentError``, reading ``Retry-After`` (seconds or HTTP date) and ``X-RateLimit-*``/
``RateLimit-*``/``x-rate-limit-*`` (X) headers, and keeping URLs (Telegram puts its token in the path) out of every
message we raise or log. Exceptions are raised ``from None`` so no httpx object (which carries the
URL) ends up in a traceback chain.

``HttpProvider`` is the base of every HTTP platform: it holds the lazily made client, the clock,
the rate gate and ``aclose``, so a provider module states only its endpoints and mappings. httpx
itself (~100 ms of imports) loads with the first client, not with this module: provider modules
import this one, and the config imports the provider modules it names at start-up.

What one response may cost is capped here for every platform: a body is read streamed and given
up past ``MAX_BODY`` (or the endpoint's own limit; a gzip bomb counts decoded), a push stream's
line past ``MAX_LINE`` and its event past ``MAX_EVENT``, JSON nested past the interpreter's limit;
each is a ``ResponseTooLarge`` (a transient error: the account backs off and the status bar says
why), never a process that grows until the machine gives out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from replydesk.model import parse_iso
from replydesk.options import AccountOptions, is_local
from replydesk.providers.base import (
    AuthError,
    Offline,
    PermanentError,
    Provider,
    RateLimited,
    SecretGetter,
    TransientError,
)

if TYPE_CHECKING:
    import httpx

Clock = Callable[[], float]

USER_AGENT = "replydesk/0.1 (+https://github.com/replydesk)"
#: when a 429 carries no hint at all, wait this long rather than hammering the platform
DEFAULT_RATE_WAIT = 60.0
#: a Retry-After further out than this is treated as a typo on the platform side
MAX_RATE_WAIT = 24 * 3600.0

#: The most one response body may hold (decoded), unless the endpoint says otherwise.
MAX_BODY = 8 * 1024 * 1024
#: The longest line and the largest event a push stream (SSE) may send.
MAX_LINE = 1024 * 1024
MAX_EVENT = 1024 * 1024

_URL_RE = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")
_BOT_TOKEN_RE = re.compile(r"bot\d+:[A-Za-z0-9_-]{10,}")


# ---- redaction -----------------------------------------------------------------------------------


def redact(text: object, limit: int = 300) -> str:
    """``text`` safe for a log line or an exception: known secrets and bot tokens masked (before
    anything is cut, so no part of a secret survives a truncation), URLs cut to scheme://host."""
    from replydesk import secrets

    value = secrets.mask(str(text))
    value = _BOT_TOKEN_RE.sub("bot<redacted>", value)

    def _host_only(match: re.Match[str]) -> str:
        try:
            parts = urlsplit(match.group(0))
            host = parts.hostname or ""
        except ValueError:
            return "<url>"
        return f"{parts.scheme}://{host}/…" if host else "<url>"

    value = _URL_RE.sub(_host_only, value)
    value = "".join(ch if ch.isprintable() or ch == " " else " " for ch in value)
    return value[:limit] + ("…" if len(value) > limit else "")


class _RedactingFilter(logging.Filter):
    """httpx logs every request URL at INFO; the Telegram token lives in that URL. Mask it."""

    def filter(self, record: logging.LogRecord) -> bool:
        import httpx  # only httpx logs through this filter, so it is loaded already

        if isinstance(record.args, tuple):
            record.args = tuple(_mask(a) if isinstance(a, str | httpx.URL) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _mask(record.msg)
        return True


def _mask(value: object) -> str:
    return _BOT_TOKEN_RE.sub("bot<redacted>", str(value))


def install_log_redaction() -> None:
    """Idempotently add the token-masking filter to httpx's and httpcore's loggers."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
            logger.addFilter(_RedactingFilter())


# ---- URLs -----------------------------------------------------------------------------------------


def check_base_url(url: str) -> str:
    """https, or plain http for loopback only (tests, self-hosters on the same machine)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_local(parts.hostname)):
        return url.rstrip("/")
    raise PermanentError(f"refusing a non-https URL for {parts.hostname or 'an unknown host'}")


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def parse_link_header(value: str | None) -> dict[str, str]:
    """RFC 8288 ``Link`` header → {rel: url}; malformed parts are ignored."""
    links: dict[str, str] = {}
    if not value:
        return links
    for part in value.split(","):
        match = re.match(r'\s*<([^>]*)>\s*(.*)', part)
        if not match:
            continue
        rel = re.search(r'rel="?([^";]+)"?', match.group(2))
        if rel:
            for name in rel.group(1).split():
                links.setdefault(name, match.group(1))
    return links


def query_param(url: str, name: str) -> str | None:
    try:
        values = parse_qs(urlsplit(url).query).get(name)
    except ValueError:
        return None
    return values[0] if values else None


# ---- rate-limit headers ---------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as delay-seconds or an HTTP date → epoch seconds; None if absent or garbage."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return min(max(when.timestamp(), now), now + MAX_RATE_WAIT)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return now + min(seconds, MAX_RATE_WAIT)


def parse_reset(value: str | None, now: float) -> float | None:
    """A rate-limit reset in any of the shapes platforms send: ISO time (Mastodon's
    ``X-RateLimit-Reset``), epoch seconds (Bluesky's ``RateLimit-Reset``) or delta seconds (the IETF
    draft's ``RateLimit-Reset``). Returns epoch seconds."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            return parse_iso(value)
        except ValueError:
            return parse_retry_after(value, now)
    if not math.isfinite(number) or number < 0:
        return None
    if number > 1e9:  # an absolute epoch time
        return min(number, now + MAX_RATE_WAIT)
    return now + min(number, MAX_RATE_WAIT)


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def rate_remaining(headers: Mapping[str, str]) -> int | None:
    value = _header(headers, "x-ratelimit-remaining", "ratelimit-remaining", "x-rate-limit-remaining")
    if value is None:
        return None
    try:
        return int(float(value.split(",")[0].strip()))
    except ValueError:
        return None


def rate_reset(headers: Mapping[str, str], now: float) -> float | None:
    return parse_reset(_header(headers, "x-ratelimit-reset", "ratelimit-reset", "x-rate-limit-reset"), now)


def wait_until(headers: Mapping[str, str], now: float) -> float:
    """When a 429 (or an exhausted window) ends: Retry-After first, then the reset header."""
    return (parse_retry_after(headers.get("retry-after"), now)
            or rate_reset(headers, now)
            or now + DEFAULT_RATE_WAIT)


def fmt_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


@dataclass
class RateGate:
    """Remembers an exhausted rate-limit window so we wait for its reset without spending a request."""

    service: str
    clock: Clock = time.time
    blocked_until: float = 0.0

    def check(self) -> None:
        if self.clock() < self.blocked_until:
            raise RateLimited(f"{self.service}: rate limit reached; waiting until {fmt_time(self.blocked_until)}",
                              self.blocked_until)

    def observe(self, response: httpx.Response) -> None:
        remaining = rate_remaining(response.headers)
        if remaining is not None and remaining <= 0:
            now = self.clock()
            reset = rate_reset(response.headers, now)
            if reset is not None and reset > now:
                self.blocked_until = max(self.blocked_until, reset)

    def limited(self, response: httpx.Response, detail: str = "", reset: float | None = None) -> RateLimited:
        """The error for a 429, remembered so no request is spent before it ends. ``reset``: the
        platform said when in its body (Telegram's ``parameters.retry_after``), else the headers do."""
        reset = reset if reset is not None else wait_until(response.headers, self.clock())
        self.blocked_until = max(self.blocked_until, reset)
        extra = f" ({detail})" if detail else ""
        return RateLimited(f"{self.service}: rate limited until {fmt_time(reset)}{extra}", reset)


# ---- requests and errors --------------------------------------------------------------------------


def timeouts(read: float = 30.0) -> httpx.Timeout:
    """Our timeouts, with a longer read for long polls and streams."""
    import httpx

    return httpx.Timeout(connect=10.0, read=read, write=30.0, pool=10.0)


def make_client(transport: httpx.AsyncBaseTransport | None = None, *, timeout: httpx.Timeout | None = None,
                headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """An AsyncClient with our timeouts; no redirects (a redirect could carry a token elsewhere)."""
    import httpx

    return httpx.AsyncClient(transport=transport, timeout=timeout or timeouts(),
                             follow_redirects=False, headers={"User-Agent": USER_AGENT, **(headers or {})})


class LazyClient:
    """One AsyncClient per provider, made on first use (tests pass a MockTransport) and closed once."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            install_log_redaction()  # before the first request is logged
            self._client = make_client(self._transport)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class ResponseTooLarge(TransientError):
    """A response (or a stream's line or event) over its limit: not read further, retried later."""


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n / 1024:g} KB"


async def read_capped(response: httpx.Response, service: str, limit: int = MAX_BODY) -> httpx.Response:
    """The streamed ``response`` read whole, but never past ``limit`` decoded bytes: returns an
    ordinary (read) response, or raises ``ResponseTooLarge`` after closing the connection."""
    import httpx

    declared = response.headers.get("content-length", "")
    too_big = ResponseTooLarge(f"{service}: the server's answer is over {_size(limit)}, the limit for one "
                               "response; not read (retrying later)")
    try:
        if declared.isdigit() and int(declared) > limit and "content-encoding" not in response.headers:
            raise too_big
        chunks, total = [], 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                raise too_big
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise TransientError(f"{service}: the answer was cut off ({type(exc).__name__})") from None
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                          request=response.request, extensions=response.extensions)


async def send_request(client: httpx.AsyncClient, request: httpx.Request, service: str, *,
                       stream: bool = False, max_bytes: int = MAX_BODY) -> httpx.Response:
    """Send, translating transport failures. Connect failures mean the request never left (``Offline``);
    anything after that may have reached the platform (``TransientError``: the outcome is uncertain).

    The body is read streamed and capped at ``max_bytes`` (``read_capped``); with ``stream`` it is
    left to the caller, who reads it through ``iter_lines`` (capped per line)."""
    import httpx

    try:
        response = await client.send(request, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        reason = "timed out connecting" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else \
            "cannot connect (network down, DNS or refused)"
        raise Offline(f"{service}: {reason}") from None
    except httpx.TimeoutException:
        raise TransientError(f"{service}: timed out waiting for the server") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise PermanentError(f"{service}: invalid URL in configuration") from None
    except httpx.HTTPError as exc:
        raise TransientError(f"{service}: connection failed ({type(exc).__name__})") from None
    if stream:
        return response
    return await read_capped(response, service, max_bytes)


def parse_json(content: bytes | str) -> Any:
    """``json.loads`` that fails with ``ValueError`` only: a document nested past the interpreter's
    recursion limit (hostile, or broken) is not a crash of the account's loop."""
    try:
        return json.loads(content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def json_object(response: httpx.Response, limit: int | None = None) -> dict[str, Any] | None:
    """A response's body when it is a JSON object (an error envelope, an API's answer), else None:
    not JSON, not UTF-8, nested past the recursion limit, or another JSON value. ``limit``: read only
    that many bytes (an error body has no business being larger)."""
    try:
        body = parse_json(response.content if limit is None else response.content[:limit])
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def error_detail(response: httpx.Response) -> str:
    """The platform's own short reason from a JSON error body, redacted; '' if none."""
    body = json_object(response)
    if body is None:
        return ""
    parts = []
    for key in ("error", "message", "description", "error_description"):
        value = body.get(key)
        if isinstance(value, str) and value and value not in parts:
            parts.append(value)
    return redact(": ".join(parts), 200)


def raise_for_status(response: httpx.Response, service: str, gate: RateGate | None = None) -> None:
    """Map an HTTP status to our exceptions; 2xx returns quietly. Never puts the URL in a message."""
    code = response.status_code
    if gate is not None:
        gate.observe(response)
    if 200 <= code < 300:
        return
    detail = error_detail(response)
    suffix = f": {detail}" if detail else ""
    if code == 429:
        gate = gate or RateGate(service)
        raise gate.limited(response, detail)
    if code in (401, 403):
        raise AuthError(f"{service}: access denied (HTTP {code}){suffix}; re-login needed")
    if code == 408 or code >= 500:
        raise TransientError(f"{service}: server error HTTP {code}{suffix}")
    if 300 <= code < 400:
        raise PermanentError(f"{service}: unexpected redirect (HTTP {code}); check the configured URL")
    raise PermanentError(f"{service}: request rejected (HTTP {code}){suffix}")


def json_body(response: httpx.Response, service: str) -> Any:
    """Decoded JSON of a successful response. A 2xx that is not JSON (a captive portal, a proxy page)
    is transient: the platform did not answer us."""
    try:
        return parse_json(response.content)
    except (ValueError, UnicodeDecodeError):
        raise TransientError(f"{service}: the server answered with something that is not JSON "
                             "(or JSON nested too deeply)") from None


# ---- server-sent events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


async def iter_sse(lines: AsyncIterator[str], service: str = "stream",
                   max_event: int = MAX_EVENT) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream (WHATWG) from its lines: comments (heartbeats) skipped, multi-line
    data joined, an event dispatched on each blank line. An event whose data grows past
    ``max_event`` characters (data lines without the blank line that ends it) is an error."""
    event, data, last_id, size = "", [], None, 0
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data), last_id)
            event, data, size = "", [], 0
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value[:200]
        elif name == "data":
            size += len(value) + 1
            if size > max_event:
                raise ResponseTooLarge(f"{service}: a pushed event is over {_size(max_event)}, the limit; "
                                       "the stream was dropped (polling carries on)")
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value[:200]
    if data:
        yield SseEvent(event or "message", "\n".join(data), last_id)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


async def iter_lines(response: httpx.Response, service: str, max_line: int = MAX_LINE) -> AsyncIterator[str]:
    """A streamed response's lines (CR, LF or CRLF, as SSE allows), none longer than ``max_line``
    characters; a dropped connection becomes a TransientError without the URL."""
    import httpx

    pending = ""
    try:
        async for chunk in response.aiter_text():
            text = pending + chunk
            cut = len(text) - 1 if text.endswith("\r") else len(text)  # "\r" may start a "\r\n"
            lines = _LINE_BREAK.split(text[:cut])
            pending = lines.pop() + text[cut:]
            for line in lines:
                yield line
            if len(pending) > max_line:
                raise ResponseTooLarge(f"{service}: a pushed line is over {_size(max_line)}, the limit; "
                                       "the stream was dropped (polling carries on)")
    except httpx.HTTPError as exc:
        raise TransientError(f"{service}: the stream was interrupted ({type(exc).__name__})") from None
    if pending:
        yield pending


# ---- the provider base ----------------------------------------------------------------------------


class HttpProvider(Provider):
    """An account on an HTTP platform: one client (made on first use; tests pass a MockTransport),
    the clock, the rate gate every request goes through, and ``aclose``.

    A subclass sets ``service`` (the name in messages) and states its endpoints and mappings; its
    requests go through ``request``, which spends nothing while the gate says wait and maps every
    failure to our error classes.
    """

    service: ClassVar[str]

    def __init__(self, account: str, options: AccountOptions | Mapping[str, Any], secret: SecretGetter, *,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock = time.time) -> None:
        super().__init__(account, options, secret)
        self.clock = clock
        self.gate = RateGate(self.service, clock)
        self._clients = LazyClient(transport)

    def client(self) -> httpx.AsyncClient:
        return self._clients.get()

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def request(self, method: str, url: str, *, params: Any = None, json: Any = None,
                      headers: dict[str, str] | None = None, read_timeout: float | None = None,
                      stream: bool = False, check: bool = True, max_bytes: int = MAX_BODY) -> httpx.Response:
        """Send one request through the gate. ``check``: map a non-2xx status to our errors here
        (a platform with its own error envelope, as Telegram's, maps it itself). ``max_bytes``: the
        endpoint's limit on the body (``MAX_BODY`` unless it says otherwise)."""
        self.gate.check()
        client = self.client()
        extra = {"timeout": timeouts(read_timeout)} if read_timeout is not None else {}
        request = client.build_request(method, url, params=params, json=json, headers=headers, **extra)
        response = await send_request(client, request, self.service, stream=stream, max_bytes=max_bytes)
        if check:
            if stream and response.status_code >= 300:  # the error's body, for its reason (capped too)
                response = await read_capped(response, self.service, 64 * 1024)
            raise_for_status(response, self.service, self.gate)
        return response
