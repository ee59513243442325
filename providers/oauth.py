"""OAuth 2.0 Authorization Code with PKCE (RFC 6749, RFC 7636, RFC 8252) for any provider that needs it.

Why our own: the protocol is two form POSTs and a SHA-256; what matters is around it, and that is
ours whatever library sends the POSTs:

- **Login** (``login``): the authorization URL is printed (and opened in a browser only when this
  machine has a graphical one); the code comes back on a loopback redirect to ``127.0.0.1`` (a free
  port, or the fixed one a platform insists on) *or* as the redirected URL pasted by the user, which
  is how it works over SSH, where the browser runs on another machine. ``state`` is checked.
- **Tokens in the keyring** (``TokenStore``), never in the config or the database; refreshed before
  they expire (``OAuthSession``).
- **Rotating refresh tokens** (X issues a new refresh token at each refresh and the old one stops
  working): the new set is written to a second keyring entry first, then over the current one, then
  the second entry is removed. A crash at any point between the platform's answer being stored and
  the old set being given up leaves a usable set, and loading prefers the newer one; only a crash in
  the instant between the answer arriving and its first write can lose it (and then the access token
  in hand still works until it expires, since refreshing starts ``REFRESH_MARGIN`` early).
- **A revoked grant** (``invalid_grant``) is an ``AuthError`` ("re-login needed"): it stops that
  account only.

httpx loads with the first token request (see ``providers.http``): the CLI's ``login`` and the
engine's providers import this module, the console never does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import queue
import secrets as random_tokens
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from replydesk import secrets
from replydesk.providers import http
from replydesk.providers.base import AuthError, PermanentError, ProviderError, TransientError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: refresh this long before the access token expires (a poll in flight must not meet an expired token)
REFRESH_MARGIN = 300.0
#: how long ``login`` waits for the redirect or a pasted URL
LOGIN_TIMEOUT = 600.0
CALLBACK_PATH = "/callback"
TOKENS_SUFFIX = ":oauth"
NEXT_SUFFIX = ":oauth-next"
CLIENT_SECRET_SUFFIX = ":client-secret"


class OAuthError(ProviderError):
    """The login did not complete (denied, wrong state, no code); the message says why."""


@dataclass(frozen=True, slots=True)
class OAuthApp:
    """One platform's authorization server and the app registered there."""

    service: str  # the name in messages ("x")
    authorize_url: str
    token_url: str
    client_id: str
    scopes: tuple[str, ...]
    client_secret: str | None = None  # confidential clients authenticate with HTTP Basic
    extra_params: tuple[tuple[str, str], ...] = ()  # e.g. Google's access_type=offline
    redirect_path: str = CALLBACK_PATH  # the loopback redirect's path (Google's examples use "/")

    def __repr__(self) -> str:  # the client secret must never reach a log line
        return f"OAuthApp({self.service!r}, client_id={self.client_id!r})"


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What the token endpoint gave us, with the time we got it (to tell the newer of two sets)."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    obtained_at: float
    scope: str = ""

    def __repr__(self) -> str:
        return f"TokenSet(expires_at={self.expires_at!r}, obtained_at={self.obtained_at!r})"

    def expiring(self, now: float, margin: float = REFRESH_MARGIN) -> bool:
        return self.expires_at is not None and now >= self.expires_at - margin

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> TokenSet | None:
        """A stored set, or None for nothing or anything malformed (treated as not logged in)."""
        try:
            data = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("access_token"), str) or not data["access_token"]:
            return None

        def number(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        refresh = data.get("refresh_token")
        return cls(data["access_token"], refresh if isinstance(refresh, str) and refresh else None,
                   number("expires_at"), number("obtained_at") or 0.0,
                   data["scope"] if isinstance(data.get("scope"), str) else "")


# ---- PKCE and the authorization request --------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge): 43+ characters of the unreserved alphabet, RFC 7636 §4."""
    verifier = random_tokens.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(app: OAuthApp, redirect_uri: str, state: str, challenge: str) -> str:
    params = [("response_type", "code"), ("client_id", app.client_id), ("redirect_uri", redirect_uri),
              ("scope", " ".join(app.scopes)), ("state", state), ("code_challenge", challenge),
              ("code_challenge_method", "S256"), *app.extra_params]
    return app.authorize_url + ("&" if "?" in app.authorize_url else "?") + urlencode(params)


def code_from_redirect(url: str, state: str, service: str) -> str:
    """The authorization code from the URL the platform redirected to (received or pasted)."""
    try:
        query = parse_qs(urlsplit(url.strip()).query)
    except ValueError:
        raise OAuthError(f"{service}: that is not the redirected URL") from None
    if "error" in query:
        reason = query["error"][0]
        detail = query.get("error_description", [""])[0]
        raise OAuthError(f"{service}: authorization refused ({http.redact(reason, 60)})"
                         + (f": {http.redact(detail, 200)}" if detail else ""))
    if query.get("state", [""])[0] != state:
        raise OAuthError(f"{service}: the redirect does not belong to this login (state mismatch); start again")
    code = query.get("code", [""])[0]
    if not code:
        raise OAuthError(f"{service}: the redirected URL has no authorization code")
    return code


# ---- the loopback receiver -------------------------------------------------------------------------


class LoopbackReceiver:
    """A one-shot HTTP server on 127.0.0.1 that receives the redirect (RFC 8252 §7.3).

    ``port`` 0 takes a free port (servers that follow RFC 8252 accept any loopback port); a platform
    that matches the callback URL exactly needs the registered port. Runs on a daemon thread; each
    request on the callback path hands its full URL to ``urls``.
    """

    def __init__(self, port: int = 0, path: str = CALLBACK_PATH) -> None:
        from http.server import BaseHTTPRequestHandler, HTTPServer  # only a login listens

        self.path = path
        self.urls: queue.Queue[str] = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if urlsplit(self.path).path != receiver.path:
                    self.send_error(404)
                    return
                receiver.urls.put(f"http://127.0.0.1:{receiver.port}{self.path}")
                body = ("<!doctype html><meta charset=utf-8><title>replydesk</title>"
                        "<p>replydesk received the answer. You can close this tab and return to the terminal.")
                data = body.encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the URL holds the code
                return

        try:
            self._server = HTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise OAuthError(f"cannot listen on 127.0.0.1:{port} for the redirect ({exc.strerror}); "
                             "free that port or choose another callback port in the config") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-loopback", daemon=True)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def __enter__(self) -> LoopbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---- the token endpoint ----------------------------------------------------------------------------


async def _token_request(client: httpx.AsyncClient, app: OAuthApp, form: dict[str, str], now: float,
                         previous: TokenSet | None = None) -> TokenSet:
    """POST to the token endpoint; map its answer. ``invalid_grant`` (a used, revoked or expired code
    or refresh token) is an AuthError: only a new login helps."""
    import httpx

    auth = httpx.BasicAuth(app.client_id, app.client_secret) if app.client_secret else None
    if not app.client_secret:
        form = {**form, "client_id": app.client_id}
    request = client.build_request("POST", app.token_url, data=form, headers={"Accept": "application/json"})
    if auth is not None:  # build_request takes no auth: the flow adds the Authorization header
        request = next(auth.auth_flow(request))
    response = await http.send_request(client, request, app.service + " login")
    body = http.json_object(response)
    if response.status_code >= 400 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else ""
        if error in ("invalid_grant", "invalid_client", "unauthorized_client") or response.status_code == 401:
            raise AuthError(f"{app.service}: the authorization was refused ({error or response.status_code}); "
                            "re-login needed")
        if response.status_code == 429:
            raise http.RateGate(app.service + " login").limited(response)
        if response.status_code >= 500:
            raise TransientError(f"{app.service}: the token endpoint failed (HTTP {response.status_code})")
        raise PermanentError(f"{app.service}: the token endpoint refused the request "
                             f"({http.redact(error, 60) or response.status_code})")
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise PermanentError(f"{app.service}: the token endpoint answered without an access token")
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:  # servers that do not rotate keep the old one
        refresh = previous.refresh_token if previous else None
    expires_in = body.get("expires_in")
    expires_at = now + float(expires_in) if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) \
        and 0 < expires_in < 10 * 365 * 86400 else None
    scope = body.get("scope") if isinstance(body.get("scope"), str) else (previous.scope if previous else "")
    return TokenSet(access, refresh, expires_at, now, scope)


async def exchange_code(client: httpx.AsyncClient, app: OAuthApp, code: str, verifier: str, redirect_uri: str,
                        now: float) -> TokenSet:
    return await _token_request(client, app, {"grant_type": "authorization_code", "code": code,
                                              "redirect_uri": redirect_uri, "code_verifier": verifier}, now)


async def refresh_tokens(client: httpx.AsyncClient, app: OAuthApp, tokens: TokenSet, now: float) -> TokenSet:
    if not tokens.refresh_token:
        raise AuthError(f"{app.service}: the access token expired and there is no refresh token "
                        "(was offline.access granted?); re-login needed")
    return await _token_request(client, app, {"grant_type": "refresh_token",
                                              "refresh_token": tokens.refresh_token}, now, tokens)


# ---- storing tokens --------------------------------------------------------------------------------


def _no_crash(stage: str) -> None:
    """Where a rotation can be interrupted; tests replace it to kill the process at ``stage``."""


class TokenStore:
    """One account's token set in the keyring, written so a rotation survives a crash.

    Two entries: ``<account>:oauth`` (current) and ``<account>:oauth-next`` (a newer set being put in
    place). ``save`` writes next, then current, then removes next; ``load`` takes whichever is newer.
    """

    checkpoint: Callable[[str], None] = staticmethod(_no_crash)

    def __init__(self, account: str) -> None:
        self.account = account
        self.current_name = account + TOKENS_SUFFIX
        self.next_name = account + NEXT_SUFFIX

    def candidates(self) -> list[TokenSet]:
        """Stored sets, newest first (two only after an interrupted save)."""
        found = [t for t in (TokenSet.loads(secrets.fetch(self.next_name)),
                             TokenSet.loads(secrets.fetch(self.current_name))) if t is not None]
        return sorted(found, key=lambda t: t.obtained_at, reverse=True)

    def load(self) -> TokenSet | None:
        found = self.candidates()
        return found[0] if found else None

    def save(self, tokens: TokenSet) -> None:
        """Store ``tokens`` as the account's set. Raises ``secrets.SecretError`` when there is no keyring."""
        text = tokens.dumps()
        secrets.store(self.next_name, text)
        type(self).checkpoint("after-next")
        secrets.store(self.current_name, text)
        type(self).checkpoint("after-current")
        with contextlib.suppress(secrets.SecretError):
            secrets.delete(self.next_name)

    def forget(self) -> None:
        for name in (self.next_name, self.current_name):
            with contextlib.suppress(secrets.SecretError):
                secrets.delete(name)


class OAuthSession:
    """A provider's view of its tokens: a fresh access token on demand, refreshed before expiry.

    ``client`` returns the provider's httpx client; ``clock`` its clock. One refresh at a time (a
    rotated refresh token can be spent once). On ``invalid_grant`` the keyring is read again first:
    another process (a new ``replydesk login``) may have stored newer tokens.
    """

    def __init__(self, app: OAuthApp, store: TokenStore, client: Callable[[], httpx.AsyncClient],
                 clock: Callable[[], float] = time.time, margin: float = REFRESH_MARGIN) -> None:
        self.app = app
        self.store = store
        self._client = client
        self.clock = clock
        self.margin = margin
        self._tokens: TokenSet | None = None
        self._lock = asyncio.Lock()

    def _missing(self) -> AuthError:
        return AuthError(f"{self.app.service}: not logged in; run 'replydesk login {self.store.account}'")

    async def access_token(self) -> str:
        tokens = self._tokens or self.store.load()
        if tokens is None:
            raise self._missing()
        self._tokens = tokens
        if tokens.expiring(self.clock(), self.margin):
            tokens = await self.refresh(tokens)
        return tokens.access_token

    @property
    def current(self) -> TokenSet | None:
        """The set the last ``access_token`` came from."""
        return self._tokens

    async def refresh(self, stale: TokenSet | None = None) -> TokenSet:
        """Refresh now (after a 401, or before expiry); returns the set in force afterwards.
        ``stale``: the set that was refused or is expiring (another task may have replaced it)."""
        async with self._lock:
            now = self.clock()
            current = self._tokens or self.store.load()
            if current is None:
                raise self._missing()
            if stale is not None and current.access_token != stale.access_token and not current.expiring(now):
                return current  # another task refreshed while we waited
            stored = self.store.load()
            if stored is not None and stored.obtained_at > current.obtained_at and not stored.expiring(now) \
                    and stored.access_token != current.access_token:
                self._tokens = stored  # a new login by another process
                return stored
            tried: set[str] = set()
            for candidate in [current, *self.store.candidates()]:
                if not candidate.refresh_token or candidate.refresh_token in tried:
                    continue
                tried.add(candidate.refresh_token)
                try:
                    fresh = await refresh_tokens(self._client(), self.app, candidate, self.clock())
                except AuthError:
                    continue  # spent or revoked: an interrupted rotation may have left a newer one
                self._save(fresh)
                return fresh
            raise AuthError(f"{self.app.service}: the authorization was revoked or has expired; "
                            f"re-login needed ('replydesk login {self.store.account}')")

    def _save(self, fresh: TokenSet) -> None:
        self._tokens = fresh
        try:
            self.store.save(fresh)
        except secrets.SecretError as exc:  # keep working on the set in memory; say why it will not last
            log.warning("%s %s: the new tokens could not be stored (%s); the next start needs a login",
                        self.app.service, self.store.account, exc)


# ---- the interactive login -------------------------------------------------------------------------


def browser_available() -> bool:
    """A graphical browser on this machine: not over SSH, and on Linux/BSD a display to show it on
    (``webbrowser`` would otherwise start a text browser inside this terminal)."""
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return False
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def _read_lines(lines: Callable[[], str], into: queue.Queue[tuple[str, str]]) -> None:
    while True:
        try:
            line = lines()
        except (EOFError, OSError, ValueError):
            return
        if not line:
            return
        if line.strip():
            into.put(("paste", line.strip()))


async def login(app: OAuthApp, store: TokenStore, *, say: Callable[[str], None], open_browser: bool = True,
                port: int = 0, paste: bool = True, read_line: Callable[[], str] | None = None,
                transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time,
                timeout: float = LOGIN_TIMEOUT) -> TokenSet:
    """The whole login: URL, browser (if any), loopback or pasted redirect, code exchange, keyring.

    ``paste``: also take the redirected URL typed or pasted on ``read_line`` (default: standard input).
    Returns the stored token set.
    """
    verifier, challenge = pkce_pair()
    state = random_tokens.token_urlsafe(24)
    answers: queue.Queue[tuple[str, str]] = queue.Queue()
    with LoopbackReceiver(port, app.redirect_path) as receiver:
        url = authorization_url(app, receiver.redirect_uri, state, challenge)
        say(f"Open this URL to let replydesk use the {app.service} account:\n\n  {url}\n")
        if open_browser and browser_available():
            import webbrowser

            with contextlib.suppress(webbrowser.Error):
                webbrowser.open(url)
                say("(opened in your browser)")
        say(f"Waiting for the redirect to {receiver.redirect_uri} … Working over SSH? After you "
            "approve, copy the address your browser shows (it may say it cannot connect) and paste it here.")
        if paste:
            threading.Thread(target=_read_lines, args=(read_line or sys.stdin.readline, answers),
                             daemon=True).start()

        def forward() -> None:
            with contextlib.suppress(queue.Empty):
                answers.put(("loopback", receiver.urls.get(timeout=timeout)))

        threading.Thread(target=forward, daemon=True).start()
        loop = asyncio.get_running_loop()
        deadline = clock() + timeout
        while True:
            try:
                _, redirected = await loop.run_in_executor(None, answers.get, True, max(0.1, deadline - clock()))
            except queue.Empty:
                raise OAuthError(f"{app.service}: no answer within {int(timeout)} s; run the login again") from None
            try:
                code = code_from_redirect(redirected, state, app.service)
            except OAuthError as exc:
                if "state mismatch" in str(exc) or "no authorization code" in str(exc):
                    say(f"{exc}; paste the full redirected URL")
                    continue
                raise
            break
    client = http.make_client(transport)
    try:
        tokens = await exchange_code(client, app, code, verifier, receiver.redirect_uri, clock())
    finally:
        await client.aclose()
    store.save(tokens)
    return tokens
