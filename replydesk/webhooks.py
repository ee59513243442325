"""The webhook receiver: Meta's (Messenger, Instagram, WhatsApp) pushed events, kept before the 200.

An ASGI app served by uvicorn (``replydesk webhooks serve``, or on a thread inside ``replydesk sync``
when ``webhooks.enabled``). For each request:

- ``GET {path}/<name>?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``: Meta's one-time
  verification handshake. The token is compared in constant time with the one in the keyring
  (``webhooks:verify-token``); the challenge is echoed back, or 403.
- ``POST {path}/<name>``: the body is read up to the size limit (413 beyond it), then checked against
  ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw bytes with the account's app secret, compared in
  constant time) before anything parses it: a missing signature gets 401, a wrong one 403, and
  nothing is stored. A verified body is committed to the receiver's own spool (``storage.spool``:
  fsync'd, a lock nobody holds for long) and only then answered 200. The sync engine moves it into
  the workspace and ingests it on its next turn; a redelivery is stored once.

``<name>`` is an account (its body is that account's), or ``meta``: one URL for every account of
one Meta app. A ``meta`` body is verified with each Meta account's app secret in turn, and stored
for every verified account whose ids (Page, Instagram account, phone number) it carries; when none
claims it, it is kept for the first verified one, which records why it could not be mapped
(``replydesk doctor`` shows it). Nothing verified is ever dropped.

The receiver never touches the workspace database, so it answers within Meta's few seconds however
busy the engine is. Its secrets come from the keyring, never from the config.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from replydesk import push, secrets
from replydesk.providers.base import Provider, PushRejected
from replydesk.storage.pushes import MAX_BODY, BodyTooLarge
from replydesk.storage.spool import Spool

log = logging.getLogger(__name__)

VERIFY_TOKEN_ENTRY = "webhooks:verify-token"
SHARED_ROUTE = "meta"
MAX_CHALLENGE = 256

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class _Disconnected(Exception):
    """The client went away before its body was complete."""


@dataclass
class Outcome:
    """What one request came to, for the log line and the tests."""

    status: int
    stored: list[tuple[str, int, bool]] = field(default_factory=list)  # (account, spool id, fresh)
    reason: str = ""


class WebhookApp:
    """The ASGI application. ``providers``: every push-capable account by name (built as the engine
    builds them, without network). ``verify_token``: the handshake token's getter."""

    def __init__(self, providers: Mapping[str, Provider], spool: Spool, *, path: str = "/webhooks",
                 max_body: int = MAX_BODY, verify_token: Callable[[], str | None] | None = None) -> None:
        self.providers = dict(providers)
        self.spool = spool
        self.prefix = "/" + path.strip("/")
        self.max_body = min(max_body, MAX_BODY)
        self.verify_token = verify_token or secrets.getter(VERIFY_TOKEN_ENTRY)
        self.lock = threading.Lock()  # the spool connection is shared by the server's requests
        self.outcomes: list[Outcome] = []  # the last few, newest last (tests and `serve`'s log)

    # ---- ASGI ---------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path in ("/healthz", self.prefix + "/healthz"):
            await _answer(send, 200, b"ok")
            return
        name = path[len(self.prefix) + 1:] if path.startswith(self.prefix + "/") else None
        if not name or "/" in name or (name != SHARED_ROUTE and name not in self.providers):
            await _answer(send, 404, b"no such webhook")
            return
        if method == "GET":
            status, body = self.handshake(scope.get("query_string", b""))
            await _answer(send, status, body)
            return
        if method != "POST":
            await _answer(send, 405, b"GET (verification) or POST (events) only")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            raw = await self._read(headers, receive)
        except _Disconnected:  # the sender gave up mid-body: nothing to verify, nobody to answer
            return
        if raw is None:
            self._refused("too large")
            await _answer(send, 413, b"body too large")
            return
        outcome = await asyncio.to_thread(self.accept, name, headers, raw)
        self.outcomes = [*self.outcomes[-49:], outcome]
        await _answer(send, outcome.status, b"EVENT_RECEIVED" if outcome.status == 200 else outcome.reason.encode())

    async def _read(self, headers: Mapping[str, str], receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is over the limit (never buffered beyond it)."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # ---- the handshake ------------------------------------------------------------------------------

    def handshake(self, query_string: bytes) -> tuple[int, bytes]:
        try:
            query = parse_qs(query_string.decode("latin-1"), max_num_fields=20)
        except ValueError:
            return 400, b"bad query"
        mode = (query.get("hub.mode") or [""])[0]
        given = (query.get("hub.verify_token") or [""])[0]
        challenge = (query.get("hub.challenge") or [""])[0]
        expected = self.verify_token()
        if mode != "subscribe" or not expected or not given:
            self._refused("handshake")
            return 403, b"verification failed"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace")):
            self._refused("handshake")
            return 403, b"verification failed"
        if not challenge or len(challenge) > MAX_CHALLENGE or not challenge.isascii() or not challenge.isprintable():
            return 400, b"bad challenge"
        return 200, challenge.encode("ascii")

    # ---- events -------------------------------------------------------------------------------------

    def accept(self, name: str, headers: Mapping[str, str], raw: bytes) -> Outcome:
        """Verify, route and commit one body (runs on a worker thread: SQLite and HMAC only)."""
        candidates = [p for p in self.providers.values() if getattr(p, "shares_webhook_url", False)] \
            if name == SHARED_ROUTE else [self.providers[name]]
        verified: list[tuple[Provider, tuple[str, dict[str, str]]]] = []
        problem: PushRejected | None = None
        for provider in candidates:
            try:
                verified.append((provider, push.verified(provider, headers, raw, self.max_body)))
            except BodyTooLarge:
                self._refused("too large")
                return Outcome(413, reason="body too large")
            except PushRejected as exc:
                problem = problem or exc
        if not verified:
            missing = "x-hub-signature-256" not in headers
            self._refused("no signature" if missing else "bad signature")
            return Outcome(401 if missing else 403, reason=str(problem or "no account takes this webhook"))
        targets = [(p, c) for p, c in verified if len(verified) == 1 or p.claims_push(raw)] or verified[:1]
        outcome = Outcome(200)
        try:
            with self.lock:
                for provider, checked in targets:
                    receipt = push.accept(self.spool, provider, headers, raw, checked=checked)
                    outcome.stored.append((provider.account, receipt.body_id, receipt.fresh))
        except Exception as exc:  # the disk is full, the spool is damaged: Meta will retry a 503
            log.error("webhook body not stored: %s", type(exc).__name__)
            return Outcome(503, reason="not stored; try again")
        return outcome

    def _refused(self, reason: str) -> None:
        try:
            with self.lock:
                self.spool.refused(reason)
        except Exception:  # counting a refusal must never turn it into a 500
            log.debug("refusal not counted", exc_info=True)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ---- building and running ---------------------------------------------------------------------------


def build_app(config: Any, data_dir: Path, *, secret_for: Callable[[str], Callable[[], str | None]] = secrets.getter,
              spool: Spool | None = None) -> WebhookApp:
    """The receiver for a workspace: every configured account that takes pushed payloads."""
    from replydesk import providers

    built: dict[str, Provider] = {}
    for account in config.accounts:
        cls = providers.provider_class(account.provider)
        if cls.capabilities.accepts_push:
            built[account.name] = providers.create(account, Path(data_dir), secret_for(account.name))
    settings = config.webhooks
    return WebhookApp(built, spool or Spool(data_dir), path=settings.path, max_body=settings.max_body_bytes,
                      verify_token=secret_for(VERIFY_TOKEN_ENTRY))


def setup_problems(app: WebhookApp) -> list[str]:
    """What will make Meta's requests fail, said at start rather than discovered in the dashboard:
    no verify token (the subscription's handshake fails) or an account without its app secret (every
    body for it is refused). Never names a secret."""
    problems = []
    if not app.verify_token():
        problems.append("no verify token: Meta's verification of the callback URL will fail; "
                        "run `replydesk webhooks token` and paste what it prints into the dashboard")
    for name, provider in app.providers.items():
        app_secret = getattr(provider, "app_secret", None)
        if callable(app_secret) and not app_secret():
            problems.append(f"{name}: no app secret, so every webhook for it is refused; "
                            f"`replydesk login {name}` stores it")
    return problems


class Receiver:
    """uvicorn serving a ``WebhookApp`` on a thread of its own (its own event loop, so the engine's
    work on its loop never delays an answer)."""

    def __init__(self, app: WebhookApp, host: str, port: int) -> None:
        import uvicorn

        self.app = app
        self.config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning",
                                     access_log=False, timeout_keep_alive=5, limit_concurrency=64,
                                     server_header=False, date_header=False)
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); 0 until the server has started."""
        for server in getattr(self.server, "servers", []) or []:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return 0

    def start(self, timeout: float = 10.0) -> None:
        """Serve on a background thread; returns once the socket listens (or raises)."""
        import time

        self._thread = threading.Thread(target=self.server.run, name="replydesk-webhooks", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            self.server.should_exit = True
            raise OSError(f"the webhook receiver could not listen on {self.config.host}:{self.config.port}")

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.app.spool.close()
