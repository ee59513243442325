"""Shared httpx plumbing for the HTTP providers: one place that turns the wire into our error classes.

Why one module: every platform needs the same things done the same careful way — timeouts, mapping
status codes and httpx exceptions to ``TransientError``/``Offline``/``RateLimited``/``AuthError``/
``PermanentError``, reading ``Retry-After`` (seconds or HTTP date) and ``X-RateLimit-*``/
``RateLimit-*`` headers, and keeping URLs (Telegram puts its token in the path) out of every
message we raise or log. Exceptions are raised ``from None`` so no httpx object (which carries the
URL) ends up in a traceback chain.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from replydesk.model import parse_iso
from replydesk.providers.base import AuthError, Offline, PermanentError, RateLimited, TransientError

Clock = Callable[[], float]

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=10.0)
USER_AGENT = "replydesk/0.1 (+https://github.com/replydesk)"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: when a 429 carries no hint at all, wait this long rather than hammering the platform
DEFAULT_RATE_WAIT = 60.0
#: a Retry-After further out than this is treated as a typo on the platform side
MAX_RATE_WAIT = 24 * 3600.0

_URL_RE = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")
_BOT_TOKEN_RE = re.compile(r"bot\d+:[A-Za-z0-9_-]{10,}")


# ---- payload items ------------------------------------------------------------------------------


class BadItem(ValueError):
    """A platform item we cannot map; it goes to ``FetchResult.rejected`` with this reason."""


def is_identifier(value: object) -> bool:
    """A usable id/handle from a payload: a non-empty printable string of sane length (no controls,
    no lone surrogates, which SQLite cannot even store)."""
    return isinstance(value, str) and 0 < len(value) <= 2048 and value.isprintable()


def reject_reason(exc: Exception) -> str:
    """Why an item was rejected: our message for known problems, the exception type for the rest
    (every item is untrusted: whatever is wrong with one, the others are still stored)."""
    return str(exc) if isinstance(exc, BadItem) else f"unexpected payload shape ({type(exc).__name__})"


# ---- redaction -----------------------------------------------------------------------------------


def redact(text: object, limit: int = 300) -> str:
    """``text`` safe for a log line or an exception: URLs cut to scheme://host, bot tokens masked."""
    value = str(text)
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
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
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
    value = _header(headers, "x-ratelimit-remaining", "ratelimit-remaining")
    if value is None:
        return None
    try:
        return int(float(value.split(",")[0].strip()))
    except ValueError:
        return None


def rate_reset(headers: Mapping[str, str], now: float) -> float | None:
    return parse_reset(_header(headers, "x-ratelimit-reset", "ratelimit-reset"), now)


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

    def limited(self, response: httpx.Response, detail: str = "") -> RateLimited:
        reset = wait_until(response.headers, self.clock())
        self.blocked_until = max(self.blocked_until, reset)
        extra = f" ({detail})" if detail else ""
        return RateLimited(f"{self.service}: rate limited until {fmt_time(reset)}{extra}", reset)


# ---- requests and errors --------------------------------------------------------------------------


def make_client(transport: httpx.AsyncBaseTransport | None = None, *, timeout: httpx.Timeout | None = None,
                headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """An AsyncClient with our timeouts; no redirects (a redirect could carry a token elsewhere)."""
    return httpx.AsyncClient(transport=transport, timeout=timeout or DEFAULT_TIMEOUT, follow_redirects=False,
                             headers={"User-Agent": USER_AGENT, **(headers or {})})


class LazyClient:
    """One AsyncClient per provider, made on first use (tests pass a MockTransport) and closed once."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self._transport)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def send_request(client: httpx.AsyncClient, request: httpx.Request, service: str, *,
                       stream: bool = False) -> httpx.Response:
    """Send, translating transport failures. Connect failures mean the request never left (``Offline``);
    anything after that may have reached the platform (``TransientError``: the outcome is uncertain)."""
    try:
        return await client.send(request, stream=stream)
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


def error_detail(response: httpx.Response) -> str:
    """The platform's own short reason from a JSON error body, redacted; '' if none."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(body, dict):
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
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise TransientError(f"{service}: the server answered with something that is not JSON") from None


# ---- server-sent events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream (WHATWG) from its lines: comments (heartbeats) skipped, multi-line
    data joined, an event dispatched on each blank line."""
    event, data, last_id = "", [], None
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
    if data:
        yield SseEvent(event or "message", "\n".join(data), last_id)
