"""X (the X API v2): mentions and DMs in, replies and DMs out, paid per use and paced to a budget.

Login is OAuth 2.0 Authorization Code with PKCE (``providers.oauth``; scopes ``SCOPES``); the tokens
live in the keyring and are refreshed before they expire, rotation-safe.

Streams (one cursor each, advanced only with the items it covers; X's ids are snowflakes, so a
longer decimal string is a later id):
- ``mentions``: ``GET /2/users/:id/mentions`` with ``since_id`` = the newest id we hold; X pages from
  newest to oldest with ``pagination_token``, so a walk keeps the old ``since_id`` plus where it is
  until it reaches the end, then moves to the walk's newest id: a crash mid-walk neither skips nor
  re-reads anything. The first sync takes the newest page only.
- ``dms``: ``GET /2/dm_events`` (``MessageCreate``) has no ``since_id``: we page down until an event
  we hold, asking for a small first page when we hold some (every event returned is paid for).
- Push: the Activity API's persistent stream (``GET /2/activity/stream``, an outbound connection)
  delivers DM events where the app's access allows it; subscriptions for our user id are made on
  first use. While it is live (and covers the time since the last DM poll), DM polling pauses and
  pushed events advance the ``dms`` cursor; mentions are always polled. ``status_note`` says which.

A conversation is the customer's thread: their posts in one X conversation (``conversation_id``),
with the post they answered when it is ours; a DM conversation is one ``dm_conversation_id``. Our own
DMs sent from elsewhere (the X app) come in as our replies.

Spend: every response is priced from the account's ``prices`` (per resource read, per write) and
handed to the engine (``take_usage``), which stores it per month and paces polling by it. X charges a
resource once per UTC day, so what this process already read today is not counted again.

Rate limits are per endpoint (``x-rate-limit-remaining``/``-reset``, 429): one gate per endpoint, so
an exhausted mentions window does not stop DMs or replies; a read wait is stored in that stream's
cursor, so a restart keeps it.

X has no idempotency key: before retrying an uncertain send, ``lookup_sent`` looks through our
recent posts (or the DM conversation) for the same text answering the same post; not found means
``unknown``, for the user to decide (a post may take a moment to show, so absent is not proof).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from replydesk import secrets
from replydesk.model import Contact, FetchResult, IncomingMessage, OutgoingReply, SendResult, Usage, iso
from replydesk.options import HttpsUrl, MeteredOptions, Strict
from replydesk.platforms import Limit, PlatformFacts, x_length
from replydesk.providers import http, oauth, payload
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    PermanentError,
    RateLimited,
    SecretGetter,
    UnknownDelivery,
)
from replydesk.providers.payload import BadItem, ident

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SERVICE = "x"
API_BASE = "https://api.x.com"
AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
TOKEN_URL = "https://api.x.com/2/oauth2/token"
SCOPES = ("tweet.read", "users.read", "tweet.write", "dm.read", "dm.write", "offline.access")
POST_LIMIT = 280
DM_LIMIT = 10_000
PAGE = 100  # the most both list endpoints return per page
DM_PROBE = 10  # the first DM page when we hold events: most polls find nothing new
MAX_PAGES = 10  # per stream and fetch; the rest comes on the next poll
LOOKUP_PAGE = 50
BACKFILL_MINUTES = 5  # the Activity stream replays up to 5 minutes on connect
STREAM_RETRY = 3600.0  # when the Activity API is not available to this app, look again this much later
DM_EVENTS = ("dm.received", "dm.sent")

TWEET_FIELDS = "created_at,conversation_id,in_reply_to_user_id,referenced_tweets,entities,author_id"
DM_FIELDS = "id,text,event_type,created_at,dm_conversation_id,sender_id,participant_ids,referenced_tweets"


class XPrices(Strict):
    """What X charges, in US dollars (the defaults are X's published pay-per-use prices; update
    them here when X changes them). Reads are per resource returned, writes per request."""

    post_read: float = Field(0.005, ge=0)
    """Each post returned (mentions, the posts they answer, our posts when checking a send)."""
    user_read: float = Field(0.010, ge=0)
    """Each user returned (the authors of mentions and DMs, our own account)."""
    dm_event_read: float = Field(0.010, ge=0)
    """Each DM event returned (polled or pushed by the Activity stream)."""
    post_create: float = Field(0.015, ge=0)
    """A reply without a link."""
    post_create_with_url: float = Field(0.200, ge=0)
    """A reply that contains a link."""
    dm_create: float = Field(0.015, ge=0)
    """A DM sent."""


class XOptions(MeteredOptions):
    """An X account: an app in the X developer console (OAuth 2.0, PKCE) and a login with it."""

    secret_hint: ClassVar[str] = "an OAuth 2.0 login in the browser (scopes: " + " ".join(SCOPES) + ")"

    provider: Literal["x"] = "x"
    client_id: str = Field(min_length=1)
    """The app's OAuth 2.0 Client ID (developer console → your app → Keys and tokens)."""
    confidential: bool = False
    """True for a "Web App, Automated App or Bot" (login then asks for its Client Secret); False for a "Native App"."""
    callback_port: int = Field(8765, ge=0, le=65535)
    """The port of the callback URL registered for the app (http://127.0.0.1:8765/callback); X needs an exact match."""
    activity_stream: bool = True
    """Receive DMs through the Activity API's persistent stream where the app's access allows it."""
    api_base: HttpsUrl = API_BASE
    """The API host (change only for a proxy or a test server)."""
    authorize_url: HttpsUrl = AUTHORIZE_URL
    """Where the browser authorizes the app."""
    token_url: HttpsUrl = TOKEN_URL
    """Where codes and refresh tokens are exchanged for access tokens."""
    prices: XPrices = Field(default_factory=XPrices)
    """Per-resource prices the budget assumes."""

    def oauth_app(self) -> oauth.OAuthApp:
        """How ``replydesk login`` and the provider reach X's authorization server."""
        return oauth_app(self, self.name)


# posts: twitter-text's weighted 280; DMs: 10,000 characters
FACTS = {"x": PlatformFacts("X", "X", Limit(POST_LIMIT, "x"), Limit(DM_LIMIT, "utf16"))}


def oauth_app(options: XOptions, account: str) -> oauth.OAuthApp:
    secret = secrets.fetch(account + oauth.CLIENT_SECRET_SUFFIX) if options.confidential else None
    return oauth.OAuthApp(SERVICE, options.authorize_url, options.token_url, options.client_id, SCOPES, secret)


def id_key(value: str) -> tuple[int, str]:
    """Snowflake ids as decimal strings: a longer one is later, then lexical order is numeric."""
    return (len(value), value)


def newer(a: str | None, b: str | None) -> str | None:
    if not a:
        return b
    if not b:
        return a
    return a if id_key(a) >= id_key(b) else b


_URL_RE = re.compile(r"https?://\S+")


def comparable(text: str) -> str:
    """Text as X echoes it back, for matching our own post: entities unescaped, every link as one
    token (X shortens links to t.co), whitespace collapsed."""
    return " ".join(_URL_RE.sub("<url>", html.unescape(text)).split())


def _problem(response: httpx.Response) -> str:
    """X's reason from its error envelope (``detail``/``title``, or ``errors[0].message``), redacted."""
    body = http.json_object(response)
    if body is None:
        return ""
    errors = body.get("errors") if isinstance(body.get("errors"), list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    for value in (body.get("detail"), first.get("message"), first.get("detail"), body.get("title"),
                  body.get("error_description"), body.get("error")):
        if isinstance(value, str) and value:
            return http.redact(value, 200)
    return ""


class Forbidden(PermanentError):
    """403: this app or token may not do that (a scope not granted, no access level, a duplicate post)."""


class XProvider(http.HttpProvider):
    platform = "x"
    service = SERVICE
    Options = XOptions
    FACTS = FACTS
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, supports_idempotency=False,
                                can_lookup_sent=True, streams=True)
    stream_replaces_polling = False
    poll_interval = 60.0
    can_listen = True

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        self.base = http.check_base_url(self.options.api_base)
        self.oauth = oauth.OAuthSession(oauth_app(self.options, account), oauth.TokenStore(account),
                                        self.client, self.clock)
        self.gates: dict[str, http.RateGate] = {}
        self._usage: list[Usage] = []
        self._seen: tuple[str, set[str]] = ("", set())  # (UTC day, resources read today)
        self._me: dict[str, str] | None = None
        self.dms_enabled = True
        self._dm_newest: str | None = None
        self._dm_polled_at = 0.0
        self._stream_live = False
        self._stream_covers = False
        self.mode = "polling"
        self._our_threads: set[str] = set()  # X conversations started by one of our posts

    # ---- plumbing ---------------------------------------------------------------------------------

    def endpoint_gate(self, endpoint: str) -> http.RateGate:
        if endpoint not in self.gates:
            self.gates[endpoint] = http.RateGate(f"{SERVICE} {endpoint}", self.clock)
        return self.gates[endpoint]

    async def _call(self, method: str, endpoint: str, path: str, *, params: Any = None, json_body: Any = None,
                    stream: bool = False, read_timeout: float | None = None) -> httpx.Response:
        """One request through the endpoint's gate, with a fresh token; a 401 refreshes once."""
        gate = self.endpoint_gate(endpoint)
        gate.check()
        client = self.client()
        extra = {"timeout": http.timeouts(read_timeout)} if read_timeout is not None else {}
        for attempt in (1, 2):
            token = await self.oauth.access_token()
            request = client.build_request(method, self.base + path, params=params, json=json_body,
                                           headers={"Authorization": f"Bearer {token}"}, **extra)
            response = await http.send_request(client, request, self.service, stream=stream)
            if response.status_code == 401 and attempt == 1:
                await self._close(response, stream)
                await self.oauth.refresh(self.oauth.current)
                continue
            if response.status_code < 300:
                gate.observe(response)
                return response
            await self._close(response, stream, read=True)
            self._raise(response, endpoint, gate)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _close(response: httpx.Response, stream: bool, read: bool = False) -> None:
        if stream:
            if read:
                await response.aread()
            await response.aclose()

    def _raise(self, response: httpx.Response, endpoint: str, gate: http.RateGate) -> None:
        code = response.status_code
        detail = _problem(response)
        suffix = f": {detail}" if detail else ""
        if code == 429:
            raise gate.limited(response, detail)
        if code == 401:
            raise AuthError(f"x: the token was refused (HTTP 401){suffix}; re-login needed")
        if code == 403:
            raise Forbidden(f"x: {endpoint} not allowed (HTTP 403){suffix}")
        http.raise_for_status(response, f"x {endpoint}", gate)

    async def _json(self, method: str, endpoint: str, path: str, **kw: Any) -> dict[str, Any]:
        response = await self._call(method, endpoint, path, **kw)
        data = http.json_body(response, SERVICE)
        if not isinstance(data, dict):
            raise PermanentError(f"x: {endpoint} answered with an unexpected shape")
        return data

    # ---- spend ------------------------------------------------------------------------------------

    def take_usage(self) -> list[Usage]:
        usage, self._usage = self._usage, []
        return usage

    def _charge(self, resource: str, units: int, price: float) -> None:
        if units > 0:
            self._usage.append(Usage(resource, units, units * price))

    def _charge_reads(self, data: dict[str, Any], kind: str) -> None:
        """Price what a response returned: its items and the included users and posts, each once per
        UTC day (X's deduplication)."""
        day = time.strftime("%Y-%m-%d", time.gmtime(self.clock()))
        if self._seen[0] != day:
            self._seen = (day, set())
        seen = self._seen[1]
        prices = self.options.prices
        includes = data.get("includes") if isinstance(data.get("includes"), dict) else {}
        counts = {"post": 0, "user": 0, "dm": 0}
        groups = [(kind, payload.items(data, "data")), ("user", payload.items(includes, "users")),
                  ("post", payload.items(includes, "tweets"))]
        for group, items in groups:
            for item in items:
                key = f"{group}:{item.get('id') if isinstance(item, dict) else id(item)}"
                if key not in seen:
                    seen.add(key)
                    counts[group] += 1
        self._charge("post:read", counts["post"], prices.post_read)
        self._charge("user:read", counts["user"], prices.user_read)
        self._charge("dm:read", counts["dm"], prices.dm_event_read)

    # ---- who we are -------------------------------------------------------------------------------

    async def me(self) -> dict[str, str]:
        if self._me is None:
            data = await self._json("GET", "users/me", "/2/users/me", params={"user.fields": "username,name"})
            self._charge_reads({"includes": {"users": [data.get("data")]}}, "user")
            user = data.get("data")
            try:
                self._me = {"id": ident(user, "id"), "username": ident(user, "username", required=False)}
            except BadItem:
                raise PermanentError("x: /2/users/me has no user id") from None
        return self._me

    def _learn_me(self, cursors: dict[str, dict[str, Any]]) -> None:
        """Our own id as stored with the mentions cursor: a user read saved at every start."""
        stored = (cursors.get("mentions") or {}).get("me")
        if self._me is None and isinstance(stored, dict) and payload.is_identifier(stored.get("id")):
            self._me = {"id": stored["id"], "username": stored.get("username") if
                        payload.is_identifier(stored.get("username")) else ""}

    # ---- mapping ----------------------------------------------------------------------------------

    @staticmethod
    def _users(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        includes = payload.mapping(data, "includes", required=False)
        return {u["id"]: u for u in payload.items(includes, "users")
                if isinstance(u, dict) and payload.is_identifier(u.get("id"))}

    @staticmethod
    def _tweets(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        includes = payload.mapping(data, "includes", required=False)
        return {t["id"]: t for t in payload.items(includes, "tweets")
                if isinstance(t, dict) and payload.is_identifier(t.get("id"))}

    @staticmethod
    def _text(item: dict[str, Any]) -> str:
        """The text with X's HTML entities undone and each t.co link shown as its real target."""
        text = html.unescape(payload.text(item, "text", required=True))
        entities = payload.mapping(item, "entities", required=False)
        for url in payload.items(entities, "urls"):
            short, full = payload.text(url, "url"), payload.text(url, "expanded_url") or payload.text(url, "unwound_url")
            if short and full.startswith(("http://", "https://")) and full.isprintable():
                text = text.replace(short, full)
        return text

    @staticmethod
    def _contact(user_id: str, users: dict[str, dict[str, Any]]) -> Contact:
        user = users.get(user_id, {})
        username = ident(user, "username", required=False)
        name = payload.text(user, "name") or (f"@{username}" if username else user_id)
        return Contact(native_id=user_id, name=name, handle=f"@{username}" if username else "")

    def _tweet_messages(self, tweet: Any, users: dict[str, dict[str, Any]], tweets: dict[str, dict[str, Any]],
                        me: dict[str, str]) -> list[IncomingMessage]:
        """A mention as a message in the customer's thread, with the post it answers when that is ours."""
        if not isinstance(tweet, dict):
            raise BadItem("post is not an object")
        tid = ident(tweet, "id")
        author = ident(tweet, "author_id")
        created = payload.timestamp(tweet.get("created_at"), "created_at")
        thread = ident(tweet, "conversation_id", required=False) or tid
        text = self._text(tweet)
        parent = next((ident(r, "id", required=False) for r in payload.items(tweet, "referenced_tweets")
                       if isinstance(r, dict) and r.get("type") == "replied_to"), "") or None
        answered = tweets.get(parent) if parent else None
        ours = isinstance(answered, dict) and answered.get("author_id") == me["id"]
        if author == me["id"]:
            return []  # our own post that mentions us: nothing to answer
        contact = self._contact(author, users)
        username = contact.handle.lstrip("@")
        conv = f"thread:{thread}:{author}"
        kind = "comment" if ours or thread in self._our_threads else "mention"
        meta = {"tweet_id": tid, "author_id": author, "username": username,
                "conversation": {"conversation_id": thread, "customer_id": author, "username": username}}
        messages = [IncomingMessage(
            native_id=tid, conversation_native_id=conv, platform="x", kind=kind, contact=contact, text=text,
            created_at=created, direction="in", author=contact.name, parent_native_id=parent, meta=meta)]
        if ours and answered is not None and parent:
            self._our_threads.add(thread)
            with contextlib.suppress(BadItem):  # the answered post is context: the mention stands alone
                messages.insert(0, IncomingMessage(
                    native_id=parent, conversation_native_id=conv, platform="x", kind=kind, contact=contact,
                    text=self._text(answered),
                    created_at=payload.timestamp_or(answered.get("created_at"), created - 1),
                    direction="out", author="@" + (me.get("username") or "me"), meta={"tweet_id": parent}))
        return messages

    def _dm_message(self, event: Any, users: dict[str, dict[str, Any]], me: dict[str, str]) -> IncomingMessage | None:
        if not isinstance(event, dict):
            raise BadItem("DM event is not an object")
        if event.get("event_type") not in (None, "MessageCreate"):
            return None
        eid = ident(event, "id")
        sender = ident(event, "sender_id")
        conv = ident(event, "dm_conversation_id")
        created = payload.timestamp(event.get("created_at"), "created_at")
        text = self._text(event)
        outbound = sender == me["id"]
        participants = [p for p in payload.items(event, "participant_ids") if payload.is_identifier(p)]
        others = [p for p in [*participants, *conv.split("-")] if p != me["id"] and p.isdigit()]
        customer = sender if not outbound else (others[0] if others else "")
        if not customer:
            raise BadItem("DM event names no other participant")
        contact = self._contact(customer, users)
        author = f"@{me.get('username') or 'me'}" if outbound else contact.name
        return IncomingMessage(
            native_id=eid, conversation_native_id=f"dm:{conv}", platform="x", kind="dm", contact=contact,
            text=text, created_at=created, direction="out" if outbound else "in", author=author,
            meta={"dm_event_id": eid, "sender_id": sender,
                  "conversation": {"dm_conversation_id": conv, "participant_id": customer,
                                   "username": contact.handle.lstrip("@")}})

    # ---- fetching ---------------------------------------------------------------------------------

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        self._learn_me(cursors)
        for stream, endpoint in (("mentions", "mentions"), ("dms", "dm_events")):
            until = (cursors.get(stream) or {}).get("blocked_until")
            if isinstance(until, int | float) and until > self.clock():  # a wait a previous run was told
                gate = self.endpoint_gate(endpoint)
                gate.blocked_until = max(gate.blocked_until, float(until))
        me = await self.me()
        dm_cursor = cursors.get("dms") or {}
        self._dm_newest = newer(self._dm_newest, dm_cursor.get("newest_id") if payload.is_identifier(
            dm_cursor.get("newest_id")) else None)
        walks = [lambda: self._walk("mentions", self._mentions(cursors.get("mentions") or {}, me))]
        if self.dms_enabled and not (self._stream_live and self._stream_covers):
            walks.append(lambda: self._walk("dms", self._dms(dm_cursor, me)))
        return await payload.keep_finished(payload.chain(*walks))

    async def _walk(self, stream: str, pages: AsyncIterator[FetchResult]) -> list[FetchResult]:
        """One stream's pages. A DM scope that was not granted turns DMs off for this run (said once)."""
        try:
            return await payload.keep_finished(pages)
        except Forbidden as exc:
            if stream != "dms":
                raise
            self.dms_enabled = False
            reason = f"DMs unavailable: {exc} (log in again granting dm.read and dm.write)"
            log.warning("x %s: %s", self.account, reason)
            return [FetchResult([], {}, "dms", [("dms", reason)])]

    def _blocked(self, stream: str, cursor: dict[str, Any], exc: RateLimited) -> FetchResult:
        """This stream waits for its endpoint's reset; stored with its cursor, so a restart waits too."""
        return FetchResult([], {**cursor, "blocked_until": exc.reset_at}, stream)

    async def _mentions(self, cursor: dict[str, Any], me: dict[str, str]) -> AsyncIterator[FetchResult]:
        since = cursor.get("since_id") if payload.is_identifier(cursor.get("since_id")) else None
        walk = cursor.get("walk") if isinstance(cursor.get("walk"), dict) else {}
        token = walk.get("token") if payload.is_identifier(walk.get("token")) else None
        top = walk.get("top") if payload.is_identifier(walk.get("top")) else None
        base = {k: v for k, v in cursor.items() if k not in ("blocked_until", "walk")}
        base["me"] = me
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"max_results": PAGE, "expansions": "author_id,referenced_tweets.id",
                                      "tweet.fields": TWEET_FIELDS, "user.fields": "username,name"}
            if since:
                params["since_id"] = since
            if token:
                params["pagination_token"] = token
            try:
                data = await self._json("GET", "mentions", f"/2/users/{me['id']}/mentions", params=params)
            except RateLimited as exc:
                yield self._blocked("mentions", base, exc)
                return
            self._charge_reads(data, "post")
            meta = payload.mapping(data, "meta", required=False)
            users, tweets = self._users(data), self._tweets(data)
            messages, rejected = payload.map_each(
                payload.items(data, "data"), lambda t, u=users, w=tweets: self._tweet_messages(t, u, w, me),
                lambda t: ident(t, "id", required=False) or "?")
            newest = ident(meta, "newest_id", required=False) or max(
                (t["id"] for t in payload.items(data, "data") if isinstance(t, dict)
                 and payload.is_identifier(t.get("id"))), key=id_key, default="")
            top = newer(top, newest or None)
            next_token = ident(meta, "next_token", required=False)
            # the first sync takes the newest page only; a walk ends when X has no older page
            done = since is None or not next_token or next_token == token
            state = {**base, "since_id": newer(since, top)} if done else \
                {**base, "since_id": since, "walk": {"token": next_token, "top": top}}
            yield FetchResult(messages, {k: v for k, v in state.items() if v is not None}, "mentions", rejected)
            if done:
                return
            token = next_token

    async def _dms(self, cursor: dict[str, Any], me: dict[str, str]) -> AsyncIterator[FetchResult]:
        known = cursor.get("newest_id") if payload.is_identifier(cursor.get("newest_id")) else None
        walk = cursor.get("walk") if isinstance(cursor.get("walk"), dict) else {}
        token = walk.get("token") if payload.is_identifier(walk.get("token")) else None
        top = walk.get("top") if payload.is_identifier(walk.get("top")) else None
        for page in range(MAX_PAGES):
            params: dict[str, Any] = {"event_types": "MessageCreate", "dm_event.fields": DM_FIELDS,
                                      "expansions": "sender_id,participant_ids", "user.fields": "username,name",
                                      "max_results": DM_PROBE if known and page == 0 and not token else PAGE}
            if token:
                params["pagination_token"] = token
            try:
                data = await self._json("GET", "dm_events", "/2/dm_events", params=params)
            except RateLimited as exc:
                yield self._blocked("dms", {k: v for k, v in cursor.items() if k != "blocked_until"}, exc)
                return
            self._charge_reads(data, "dm")
            events = payload.items(data, "data")
            ids = [e["id"] for e in events if isinstance(e, dict) and payload.is_identifier(e.get("id"))]
            fresh = [e for e in events if not (known and isinstance(e, dict) and payload.is_identifier(e.get("id"))
                                               and id_key(e["id"]) <= id_key(known))]
            reached = len(fresh) < len(events)
            top = newer(top, max(ids, key=id_key) if ids else None)
            users = self._users(data)
            messages, rejected = payload.map_each(fresh, lambda e, u=users: self._dm_message(e, u, me),
                                                  lambda e: ident(e, "id", required=False) or "?")
            next_token = ident(payload.mapping(data, "meta", required=False), "next_token", required=False)
            done = reached or not next_token or known is None or next_token == token
            if done:
                state = {"newest_id": newer(known, top)} if newer(known, top) else {}
                self._dm_newest = newer(self._dm_newest, top)
                self._dm_polled_at = self.clock()
                if self._stream_live:
                    self._stream_covers = True
            else:
                state = {"newest_id": known, "walk": {"token": next_token, "top": top}}
            yield FetchResult(messages, state, "dms", rejected)
            if done:
                return
            token = next_token

    async def listen(self, queries: Any, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        """Listening: recent search, one X query per listening query, paid like any read (``x_listen``)."""
        from replydesk.providers.x_listen import listen

        return await listen(self, list(queries), cursors)

    # ---- push: the Activity API -------------------------------------------------------------------

    def status_note(self) -> str:
        now = self.clock()
        parts = [self.mode]
        for endpoint, gate in sorted(self.gates.items()):
            if gate.blocked_until > now:
                parts.append(f"{endpoint} waits until {http.fmt_time(gate.blocked_until)}")
        if not self.dms_enabled:
            parts.append("DMs unavailable (scope)")
        return " · ".join(parts)

    async def _subscribe(self, me: dict[str, str]) -> None:
        """Subscriptions to our DM events for the stream (made once; X keeps them for the app)."""
        data = await self._json("GET", "activity/subscriptions", "/2/activity/subscriptions")
        have = {(s.get("event_type"), (s.get("filter") or {}).get("user_id"))
                for s in payload.items(data, "data") if isinstance(s, dict) and isinstance(s.get("filter") or {}, dict)}
        for event in DM_EVENTS:
            if (event, me["id"]) not in have:
                await self._json("POST", "activity/subscriptions", "/2/activity/subscriptions",
                                 json_body={"event_type": event, "filter": {"user_id": me["id"]}, "tag": "replydesk"})

    async def stream(self) -> AsyncIterator[FetchResult]:
        """DM events as they happen, over the Activity API's persistent stream. Where the app's access
        does not allow it, say so and stay on polling (looked at again hourly). Ends, raising the mapped
        error, when the connection drops; the engine keeps polling and calls again after its backoff."""
        if not self.options.activity_stream:
            self.mode = "polling"
            await asyncio.sleep(STREAM_RETRY)
            return
        me = await self.me()
        try:
            await self._subscribe(me)
            response = await self._call("GET", "activity/stream", "/2/activity/stream", stream=True,
                                        read_timeout=90.0, params={"backfill_minutes": BACKFILL_MINUTES})
        except PermanentError as exc:  # 403/404: this app's access has no Activity API
            self.mode = "polling (no Activity API access)"
            log.info("x %s: %s", self.account, exc)
            await asyncio.sleep(STREAM_RETRY)
            return
        except RateLimited as exc:  # that endpoint's window only: polling goes on meanwhile
            self.mode = f"polling (stream waits until {http.fmt_time(exc.reset_at)})"
            await asyncio.sleep(max(1.0, exc.reset_at - self.clock()))
            return
        self._stream_live = True
        self._stream_covers = self.clock() - self._dm_polled_at <= BACKFILL_MINUTES * 60
        self.mode = "DMs live, mentions polled"
        try:
            async for line in http.iter_lines(response, SERVICE):
                if not line.strip():
                    continue  # keep-alive
                result = self._pushed(line, me)
                if result is not None:
                    yield result
        finally:
            self._stream_live = False
            self.mode = "polling (stream reconnecting)"
            await response.aclose()

    def _pushed(self, line: str, me: dict[str, str]) -> FetchResult | None:
        try:
            envelope = json.loads(line)
        except ValueError:
            return FetchResult([], {}, "push", [("stream", "event is not JSON")])
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(data, dict) or data.get("event_type") not in DM_EVENTS:
            return None
        event = data.get("payload")
        wrapped = {"data": [event], "includes": data.get("includes") if isinstance(data.get("includes"), dict) else {}}
        self._charge_reads(wrapped, "dm")
        users = self._users(wrapped)
        messages, rejected = payload.map_each([event], lambda e: self._dm_message(e, users, me),
                                              lambda e: ident(e, "id", required=False) or "?")
        eid = ident(event, "id", required=False)
        if self._stream_covers and eid:  # nothing missed since the last DM poll: move its cursor
            self._dm_newest = newer(self._dm_newest, eid)
            return FetchResult(messages, {"newest_id": self._dm_newest}, "dms", rejected)
        return FetchResult(messages, {"event": ident(data, "event_uuid", required=False)}, "push", rejected)

    # ---- sending ----------------------------------------------------------------------------------

    @staticmethod
    def compose(reply: OutgoingReply) -> str:
        """A public reply's text: the customer's @handle first (kept when the user wrote it)."""
        text = reply.text.strip()
        username = reply.answering_meta.get("username")
        username = username if isinstance(username, str) and username else reply.customer_handle.lstrip("@")
        if username and not reply.private and reply.kind != "dm" and \
                not re.match(rf"@{re.escape(username)}(?!\w)", text, re.I):
            text = f"@{username} {text}"
        return text

    def _dm_target(self, reply: OutgoingReply) -> tuple[str, str, str]:
        """(endpoint, path, participant) of a DM answer: the DM conversation, or a new one with the customer."""
        conv = reply.meta.get("dm_conversation_id")
        if reply.kind == "dm" and payload.is_identifier(conv):
            participant = reply.meta.get("participant_id") if payload.is_identifier(reply.meta.get("participant_id")) else ""
            return "dm_conversations/messages", f"/2/dm_conversations/{conv}/messages", participant
        participant = reply.answering_meta.get("author_id") or reply.meta.get("customer_id") \
            or reply.meta.get("participant_id")
        if not payload.is_identifier(participant):
            raise PermanentError("x: no customer to send this DM to")
        return "dm_conversations/with/messages", f"/2/dm_conversations/with/{participant}/messages", participant

    async def send(self, reply: OutgoingReply) -> SendResult:
        prices = self.options.prices
        if reply.private or reply.kind == "dm":
            text = reply.text.strip()
            if FACTS["x"].private.measure(text).over:
                raise PermanentError(f"x: a DM allows {DM_LIMIT} characters")
            endpoint, path, _ = self._dm_target(reply)
            data = await self._json("POST", endpoint, path, json_body={"text": text})
            self._charge("dm:create", 1, prices.dm_create)
            event = payload.mapping(data, "data", required=False)
            if not payload.is_identifier(event.get("dm_event_id")):
                raise PermanentError("x: the DM was accepted without an event id")
            return SendResult(event["dm_event_id"], self.clock())
        text = self.compose(reply)
        length = x_length(text)
        if length > POST_LIMIT:
            raise PermanentError(f"x: the reply is {length} characters as X counts them; a post allows {POST_LIMIT}")
        body: dict[str, Any] = {"text": text}
        if reply.in_reply_to_native_id:
            body["reply"] = {"in_reply_to_tweet_id": reply.in_reply_to_native_id}
        data = await self._json("POST", "tweets", "/2/tweets", json_body=body)
        with_url = bool(_URL_RE.search(text))
        self._charge("post:create" + (":url" if with_url else ""), 1,
                     prices.post_create_with_url if with_url else prices.post_create)
        post = payload.mapping(data, "data", required=False)
        if not payload.is_identifier(post.get("id")):
            raise PermanentError("x: the post was accepted without an id")
        return SendResult(post["id"], self.clock())

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        """Our recent posts (or the DM conversation) for this reply: same text, answering the same post,
        written after the reply was. Found: settled. Not found: ``unknown`` (X may not show a post at
        once, and without a key a second post cannot be taken back)."""
        me = await self.me()
        since = (reply.created_at or self.clock() - 86400) - 120
        if reply.private or reply.kind == "dm":
            wanted = comparable(reply.text.strip())
            _, send_path, participant = self._dm_target(reply)
            path = send_path.rsplit("/messages", 1)[0] + "/dm_events"
            data = await self._json("GET", "dm_conversations/dm_events", path,
                                    params={"max_results": LOOKUP_PAGE, "dm_event.fields": DM_FIELDS,
                                            "event_types": "MessageCreate"})
            self._charge_reads(data, "dm")
            for event in payload.items(data, "data"):
                if not isinstance(event, dict) or not payload.is_identifier(event.get("id")):
                    continue
                at = payload.timestamp_or(event.get("created_at"), self.clock())
                if event.get("sender_id") == me["id"] and at >= since and \
                        comparable(payload.text(event, "text")) == wanted:
                    return SendResult(event["id"], at)
        else:
            wanted = comparable(self.compose(reply))
            data = await self._json("GET", "users/tweets", f"/2/users/{me['id']}/tweets",
                                    params={"max_results": LOOKUP_PAGE, "tweet.fields": TWEET_FIELDS,
                                            "start_time": iso(since)})
            self._charge_reads(data, "post")
            for post in payload.items(data, "data"):
                if not isinstance(post, dict) or not payload.is_identifier(post.get("id")):
                    continue
                answers = {r.get("id") for r in payload.items(post, "referenced_tweets")
                           if isinstance(r, dict) and r.get("type") == "replied_to"}
                if reply.in_reply_to_native_id and reply.in_reply_to_native_id not in answers:
                    continue
                if comparable(payload.text(post, "text")) == wanted:
                    return SendResult(post["id"], payload.timestamp_or(post.get("created_at"), self.clock()))
        raise UnknownDelivery("x: the reply is not among our recent posts or DMs (X has no idempotency key); "
                              "check on X, then retry or confirm it as sent")

