"""AT Protocol plumbing for the Bluesky provider: the XRPC session, record keys and rich text.

Session: ``createSession`` happens once, then ``refreshSession``; the tokens live in the keyring under
``<account>:session`` (never in the database) and are reused across runs, because the login endpoint
allows only a few dozen logins per five minutes and a few hundred a day. An expired access token is
refreshed transparently; a refused refresh falls back to one login with the app password; a refused
login is an ``AuthError`` (re-login needed). Session calls go to the configured ``service`` (the
entryway), everything else to the PDS named in the account's DID document.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from replydesk import secrets
from replydesk.providers import http
from replydesk.providers.base import AuthError, PermanentError, ProviderError, SecretGetter

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SERVICE = "bluesky"
CHAT_PROXY = "did:web:api.bsky.chat#bsky_chat"
PLC_DIRECTORY = "https://plc.directory"
SESSION_SUFFIX = ":session"
_EXPIRED = {"ExpiredToken", "InvalidToken"}


class ScopeError(PermanentError):
    """The app password lacks a privilege (typically direct-message access)."""


@dataclass
class Session:
    did: str
    handle: str
    access: str
    refresh: str
    pds: str

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str | None) -> Session | None:
        try:
            data = json.loads(text or "")
            return cls(**{k: str(data[k]) for k in ("did", "handle", "access", "refresh", "pds")})
        except (ValueError, TypeError, KeyError):
            return None


def xrpc_error(response: httpx.Response) -> tuple[str, str]:
    body = http.json_object(response)
    if body is None:
        return "", ""
    error, message = body.get("error"), body.get("message")
    return (error if isinstance(error, str) else ""), (message if isinstance(message, str) else "")


def pds_from_did_doc(doc: Any) -> str | None:
    """The ``#atproto_pds`` service endpoint of a DID document, if it is a URL we may talk to."""
    services = doc.get("service") if isinstance(doc, dict) else None
    for service in services if isinstance(services, list) else []:
        if not isinstance(service, dict):
            continue
        if str(service.get("id", "")).endswith("#atproto_pds") and isinstance(service.get("serviceEndpoint"), str):
            try:
                return http.check_base_url(service["serviceEndpoint"])
            except PermanentError:
                return None
    return None


class XrpcClient:
    """Authenticated XRPC calls with a persistent, self-renewing session."""

    def __init__(self, account: str, handle: str, service: str, password: SecretGetter,
                 client: Callable[[], httpx.AsyncClient], gate: http.RateGate,
                 login_gate: http.RateGate) -> None:
        self.account = account
        self.handle = handle.lstrip("@")
        self.service = http.check_base_url(service)
        self._password = password
        self._client = client
        self.gate = gate
        self.login_gate = login_gate
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self._warned_keyring = False
        self.logins = 0  # observable in tests: a login is a scarce resource
        self.refreshes = 0

    @property
    def store_name(self) -> str:
        return self.account + SESSION_SUFFIX

    # ---- session ----------------------------------------------------------------------------------

    async def session(self) -> Session:
        if self._session is None:
            async with self._lock:
                if self._session is None:
                    stored = Session.loads(secrets.fetch(self.store_name))
                    if stored is not None and stored.handle.lower() != self.handle.lower():
                        stored = None  # the config now names another account: never reuse its tokens
                    self._session = stored or await self._login()
        return self._session

    def _save(self, session: Session) -> None:
        self._session = session
        try:
            secrets.store(self.store_name, session.dumps())
        except secrets.SecretError:
            if not self._warned_keyring:
                log.warning("bluesky %s: no keyring; the session is kept in memory only", self.account)
                self._warned_keyring = True

    async def _post_session(self, nsid: str, token: str | None, body: Any) -> httpx.Response:
        self.login_gate.check()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = self._client().build_request("POST", f"{self.service}/xrpc/{nsid}", json=body, headers=headers)
        return await http.send_request(self._client(), request, SERVICE)

    async def _login(self) -> Session:
        password = self._password()
        if not password:
            raise AuthError(f"bluesky: no app password stored for account {self.account!r}; run 'replydesk login'")
        self.logins += 1
        response = await self._post_session("com.atproto.server.createSession", None,
                                            {"identifier": self.handle, "password": password})
        error, message = xrpc_error(response)
        if error == "AuthFactorTokenRequired":
            raise AuthError("bluesky: the account asks for an email code; use an app password; re-login needed")
        if response.status_code == 401:
            raise AuthError("bluesky: the app password was refused (revoked or wrong); re-login needed")
        if error in ("AccountTakedown", "AccountDeactivated"):
            raise AuthError(f"bluesky: the account cannot log in ({error}); re-login needed")
        http.raise_for_status(response, SERVICE, self.login_gate)
        session = await self._from_response(response, None)
        self._save(session)
        return session

    async def _refresh(self, old: Session) -> Session:
        self.refreshes += 1
        response = await self._post_session("com.atproto.server.refreshSession", old.refresh, None)
        error, _ = xrpc_error(response)
        if response.status_code == 401 or (response.status_code == 400 and error in _EXPIRED | {"AuthenticationRequired"}):
            return await self._login()  # the refresh token is gone: one login with the app password
        http.raise_for_status(response, SERVICE, self.login_gate)
        session = await self._from_response(response, old)
        self._save(session)
        return session

    async def renew(self, stale: Session) -> Session:
        async with self._lock:
            if self._session is not None and self._session is not stale:
                return self._session  # someone renewed while we waited
            return await self._refresh(stale)

    async def _from_response(self, response: httpx.Response, old: Session | None) -> Session:
        data = http.json_body(response, SERVICE)
        if not isinstance(data, dict):
            raise PermanentError("bluesky: the session answer has an unexpected shape")
        if data.get("active") is False:
            status = data.get("status") if isinstance(data.get("status"), str) else "inactive"
            raise AuthError(f"bluesky: the account is {http.redact(status, 40)}; re-login needed")
        fields = {k: data.get(k) for k in ("did", "handle", "accessJwt", "refreshJwt")}
        if not all(isinstance(v, str) and v for v in fields.values()):
            raise PermanentError("bluesky: the session answer lacks tokens")
        pds = pds_from_did_doc(data.get("didDoc")) or (old.pds if old else None) \
            or await self._resolve_pds(str(fields["did"])) or self.service
        return Session(str(fields["did"]), str(fields["handle"]), str(fields["accessJwt"]),
                       str(fields["refreshJwt"]), pds)

    async def _resolve_pds(self, did: str) -> str | None:
        """The PDS from the DID document when the session answer did not include it."""
        if did.startswith("did:plc:"):
            url = f"{PLC_DIRECTORY}/{did}"
        elif did.startswith("did:web:") and re.fullmatch(r"did:web:[A-Za-z0-9.-]+", did):
            url = f"https://{did[8:]}/.well-known/did.json"
        else:
            return None
        try:
            response = await http.send_request(self._client(), self._client().build_request("GET", url), SERVICE)
            if response.status_code != 200:
                return None
            return pds_from_did_doc(http.json_body(response, SERVICE))
        except ProviderError:
            return None

    # ---- calls ------------------------------------------------------------------------------------

    async def call(self, method: str, nsid: str, *, params: Any = None, body: Any = None,
                   proxy: str | None = None) -> Any:
        """One XRPC call on the PDS; renews the session once if the token expired."""
        for attempt in range(2):
            session = await self.session()
            self.gate.check()
            headers = {"Authorization": f"Bearer {session.access}", "Accept": "application/json"}
            if proxy:
                headers["atproto-proxy"] = proxy
            request = self._client().build_request(method, f"{session.pds}/xrpc/{nsid}", params=params,
                                                   json=body, headers=headers)
            response = await http.send_request(self._client(), request, SERVICE)
            error, message = xrpc_error(response)
            if "scope" in message.lower() and response.status_code in (400, 401, 403):
                raise ScopeError(f"bluesky: the app password may not do this ({http.redact(message, 80)})")
            expired = response.status_code == 401 or (response.status_code == 400 and error in _EXPIRED)
            if expired and attempt == 0:
                await self.renew(session)
                continue
            if expired:
                raise AuthError("bluesky: the session was refused after renewing it; re-login needed")
            http.raise_for_status(response, SERVICE, self.gate)
            return http.json_body(response, SERVICE) if response.content else {}
        raise AssertionError("unreachable")  # pragma: no cover


# ---- record keys ----------------------------------------------------------------------------------

_B32 = "234567abcdefghijklmnopqrstuvwxyz"


def tid(micros: int, clock_id: int) -> str:
    """A TID (the AT Protocol's timestamp record key): 53 bits of microseconds, 10 of clock id."""
    value = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    return "".join(_B32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def rkey_for(key: str, anchor: float) -> str:
    """The record key of the reply with outbox key ``key``: a valid TID (the AppView indexes only
    TID-keyed posts) that depends on nothing but the key and the time of the post it answers, so every
    retry after a crash or a lost answer targets the same record and cannot create a second post."""
    digest = hashlib.sha256(key.encode()).digest()
    micros = int(anchor * 1_000_000) + 1_000_000 + int.from_bytes(digest[:4], "big") % 1_000_000
    return tid(micros, int.from_bytes(digest[4:6], "big"))


# ---- rich text ------------------------------------------------------------------------------------


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


_LINK_RE = re.compile(r"https?://[^\s<>\"]+", re.I)
_HANDLE_RE = re.compile(r"(?<![\w@/])@([a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)+)")


async def make_facets(text: str, resolve: Callable[[str], Awaitable[str | None]]) -> list[dict[str, Any]]:
    """Link and mention facets with UTF-8 byte offsets, as the app.bsky.richtext.facet lexicon wants.
    A mention whose handle does not resolve stays plain text."""
    facets: list[dict[str, Any]] = []
    for match in _LINK_RE.finditer(text):
        url = match.group(0).rstrip(".,;:!?)]}'\"")
        start = match.start()
        facets.append({"index": {"byteStart": _byte_offset(text, start), "byteEnd": _byte_offset(text, start + len(url))},
                       "features": [{"$type": "app.bsky.richtext.facet#link", "uri": url}]})
    for match in _HANDLE_RE.finditer(text):
        handle = match.group(1).rstrip(".")
        did = await resolve(handle.lower())
        if not did:
            continue
        start = match.start()
        facets.append({"index": {"byteStart": _byte_offset(text, start),
                                 "byteEnd": _byte_offset(text, start + 1 + len(handle))},
                       "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}]})
    return sorted(facets, key=lambda f: f["index"]["byteStart"])


def expand_links(text: str, facets: Any) -> str:
    """Inbound text with every link target visible: Bluesky shows shortened link text whose real
    target lives in a facet, so a shortened text becomes the full URL and a different text shows
    both. Malformed facets are ignored; the text itself is never lost."""
    if not isinstance(facets, list) or not facets:
        return text
    from replydesk.providers.html_text import bare_url  # with the first facet, not with the config

    data = text.encode("utf-8", "surrogatepass")
    spans: list[tuple[int, int, str]] = []
    for facet in facets:
        if not isinstance(facet, dict) or not isinstance(facet.get("index"), dict):
            continue
        start, end = facet["index"].get("byteStart"), facet["index"].get("byteEnd")
        if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool):
            continue
        if not 0 <= start < end <= len(data):
            continue
        features = facet.get("features")
        for feature in features if isinstance(features, list) else []:
            if isinstance(feature, dict) and feature.get("$type") == "app.bsky.richtext.facet#link" \
                    and isinstance(feature.get("uri"), str):
                spans.append((start, end, feature["uri"]))
                break
    if not spans:
        return text
    out, pos = [], 0
    for start, end, uri in sorted(spans):
        if start < pos:
            continue  # overlapping facets: keep the first
        out.append(data[pos:start].decode("utf-8", "replace"))
        shown = data[start:end].decode("utf-8", "replace")
        target = bare_url(uri)
        if bare_url(shown) == target or (target.startswith(bare_url(shown)) and shown.rstrip().endswith(("…", "..."))):
            out.append(uri)
        else:
            out.append(f"{shown} ({uri})")
        pos = end
    out.append(data[pos:].decode("utf-8", "replace"))
    return "".join(out)
