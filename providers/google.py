"""Google Business Profile reviews: every review of the shop's locations in, our replies out.

Login is OAuth 2.0 for installed apps (``providers.oauth``: a loopback redirect with PKCE, or the
redirected URL pasted over SSH), scope ``business.manage``; the tokens (Google's refresh token does
not rotate) and the Desktop client's secret live in the keyring.

Locations: the Account Management API lists the accounts the login manages and the Business
Information API their locations (``list_locations``, what ``replydesk locations`` prints). The
config picks some (``locations:``) or takes them all; their titles label the conversations and are
kept with the ``locations`` cursor, listed again every few hours.

Reviews (the v4 API; there is no "since" parameter): a location's reviews come newest first
(``orderBy=updateTime desc``) in pages of 50 with ``pageToken``; a walk goes down to the watermark
(the newest ``updateTime`` the previous walk saw) and only then moves it, so an interrupted walk
resumes where it stopped and nothing is skipped. An account with several locations is read in one
walk (``batchGetReviews``). The first sync reads back ``backfill`` (30 days).

One conversation per review, named after it (``accounts/…/locations/…/reviews/…``). Each version of
the review is a message of its own, keyed by its stars and words: when the customer edits the
review, the new text and rating come in as a new message (the old one stays) and, like any
customer message, it reopens the conversation. A rating-only review is a message with no text; an
anonymous reviewer gets a name of their own review (never one shared by every anonymous reviewer,
which would tie their reviews together as one customer's). The stars travel in the message's and
the conversation's ``meta["rating"]``.

Replies: ``PUT …/reviews/{id}/reply`` is an upsert, so an uncertain attempt is simply made again
(``supports_idempotency``) and never leaves two replies; Google keeps one reply per review, so the
platform facts say ``single_reply`` and a reply where ours is up is queued as an edit. Editing and
deleting our reply are outbox actions. Google moderates replies: one it refuses
(``reviewReplyState: REJECTED`` with its ``policyViolation``) fails with that reason, also when the
refusal comes later, on a fetch (our reply is then marked not delivered).

Rate limits: Google answers 429 (``RESOURCE_EXHAUSTED``), sometimes with ``Retry-After``; the gate
waits for it (a minute without one) and spends no request meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints

from replydesk import secrets
from replydesk.model import (
    ActionResult,
    Contact,
    DeliveryFailure,
    FetchResult,
    IncomingMessage,
    OutgoingAction,
    OutgoingReply,
    SendResult,
)
from replydesk.options import AccountOptions, Duration, HttpsUrl
from replydesk.platforms import Limit, PlatformFacts, utf8_bytes
from replydesk.providers import http, oauth, payload
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    PermanentError,
    RateLimited,
    SecretGetter,
    TransientError,
)
from replydesk.providers.payload import BadItem, ident

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SERVICE = "google"
SCOPES = ("https://www.googleapis.com/auth/business.manage",)
AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
TOKEN_URL = "https://oauth2.googleapis.com/token"
REVIEWS_API = "https://mybusiness.googleapis.com"
ACCOUNTS_API = "https://mybusinessaccountmanagement.googleapis.com"
BUSINESS_API = "https://mybusinessbusinessinformation.googleapis.com"
REPLY_BYTES = 4096  # a reply's comment: at most 4096 bytes
PAGE = 50  # the most a reviews page holds
BATCH = 50  # locations per batchGetReviews call
MAX_PAGES = 10  # per walk and fetch; the rest comes on the next poll
LOCATIONS_EVERY = 6 * 3600.0  # list the locations (titles, new ones) again this often
UNAVAILABLE_FOR = 3600.0  # a location whose reviews are refused is tried again this much later
STARS = {"ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5}

_LOCATION = r"accounts/[A-Za-z0-9_-]+/locations/[A-Za-z0-9_-]+"
_LOCATION_RE = re.compile(rf"^{_LOCATION}$")
_REVIEW_RE = re.compile(rf"^{_LOCATION}/reviews/[A-Za-z0-9_-]+$")

LocationName = Annotated[str, StringConstraints(pattern=_LOCATION_RE.pattern)]


class GoogleOptions(AccountOptions):
    """A Google Business Profile login: a Desktop OAuth client in a Google Cloud project with the
    Business Profile APIs enabled."""

    secret_hint: ClassVar[str] = "an OAuth 2.0 login in the browser (scope business.manage)"

    provider: Literal["google"] = "google"
    client_id: str = Field(min_length=1)
    """The OAuth client ID of a "Desktop app" client (Google Cloud console → APIs & Services → Credentials)."""
    confidential: bool = True
    """The client has a secret (Google's Desktop clients do: ``replydesk login`` asks for it and keeps it in the keyring)."""
    locations: list[LocationName] = []
    """The locations to answer (``accounts/…/locations/…``, as ``replydesk locations ACCOUNT`` lists them); empty: all the login manages."""
    backfill: Duration = 30 * 86400.0
    """How far back the first sync reads reviews (older ones stay on Google)."""
    batch: bool = True
    """Read an account's locations together (``batchGetReviews``) when it has more than one."""
    reviews_api: HttpsUrl = REVIEWS_API
    """The reviews API host (v4; change only for a proxy or a test server)."""
    accounts_api: HttpsUrl = ACCOUNTS_API
    """The Account Management API host."""
    business_api: HttpsUrl = BUSINESS_API
    """The Business Information API host."""
    authorize_url: HttpsUrl = AUTHORIZE_URL
    """Where the browser authorizes the client."""
    token_url: HttpsUrl = TOKEN_URL
    """Where codes and refresh tokens are exchanged for access tokens."""

    def oauth_app(self) -> oauth.OAuthApp:
        """How ``replydesk login`` and the provider reach Google's authorization server."""
        return oauth_app(self, self.name)


# a reply: at most 4,096 bytes; no private channel; one reply per review, a new one replaces it
FACTS = {"google": PlatformFacts("Google reviews", "GBP", Limit(REPLY_BYTES, "utf8"), None, single_reply=True)}


def oauth_app(options: GoogleOptions, account: str) -> oauth.OAuthApp:
    """``access_type=offline`` and ``prompt=consent``: Google hands out a refresh token only then."""
    secret = secrets.fetch(account + oauth.CLIENT_SECRET_SUFFIX) if options.confidential else None
    return oauth.OAuthApp(SERVICE, options.authorize_url, options.token_url, options.client_id, SCOPES, secret,
                          (("access_type", "offline"), ("prompt", "consent")), redirect_path="/")


@dataclass(frozen=True, slots=True)
class Location:
    """A location the login manages: its v4 name (``accounts/…/locations/…``), title and address."""

    name: str
    title: str
    address: str = ""
    account: str = ""  # the account's own name ("Corner Coffee Group")

    @property
    def account_name(self) -> str:
        return self.name.split("/locations/", 1)[0]


def stars(rating: int | None) -> str:
    """★★☆☆☆ for 2 of 5 (the words a stored rating is shown with; '' for none)."""
    return "★" * rating + "☆" * (5 - rating) if isinstance(rating, int) and 1 <= rating <= 5 else ""


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8", "replace")).hexdigest()[:12]


def _readable(code: str) -> str:
    """``OFF_TOPIC`` → ``off topic``."""
    return code.replace("_", " ").strip().lower()


def violation(reply: dict[str, Any]) -> str:
    """Why Google refused a reply: its ``policyViolation`` (an enum name, or an object with one)."""
    found = reply.get("policyViolation")
    if isinstance(found, dict):
        found = next((found[k] for k in ("reason", "type", "violation", "description", "policyViolation")
                      if isinstance(found.get(k), str) and found[k]), "")
    if isinstance(found, str) and found.strip() and found != "POLICY_VIOLATION_UNSPECIFIED":
        return http.redact(_readable(found), 120)
    return "a content policy"


def problem(response: httpx.Response) -> tuple[str, str]:
    """Google's error envelope (``{"error": {code, message, status, details}}``) as (status, reason),
    the reason with the field-level messages v4 puts in ``details[].errorDetails``; redacted."""
    body = http.json_object(response)
    error = body.get("error") if body is not None else None
    if isinstance(error, str):
        return "", http.redact(error, 200)
    if not isinstance(error, dict):
        return "", ""
    status = error.get("status") if isinstance(error.get("status"), str) else ""
    parts = [error["message"]] if isinstance(error.get("message"), str) and error["message"] else []
    for detail in error.get("details") if isinstance(error.get("details"), list) else []:
        if not isinstance(detail, dict):
            continue
        for item in detail.get("errorDetails") if isinstance(detail.get("errorDetails"), list) else []:
            if isinstance(item, dict) and isinstance(item.get("message"), str) and item["message"] not in parts:
                parts.append(item["message"])
        for item in detail.get("fieldViolations") if isinstance(detail.get("fieldViolations"), list) else []:
            if isinstance(item, dict) and isinstance(item.get("description"), str):
                parts.append(item["description"])
        if isinstance(detail.get("reason"), str) and detail["reason"] not in parts:
            parts.append(_readable(detail["reason"]))
    return status, http.redact("; ".join(parts), 300)


class GoogleProvider(http.HttpProvider):
    platform = "google"
    service = SERVICE
    Options = GoogleOptions
    FACTS = FACTS
    #: PUT …/reply is an upsert: a repeat with the same text leaves one reply
    capabilities = Capabilities(can_dm=False, can_reply_publicly=True, supports_idempotency=True,
                                can_lookup_sent=False, actions=frozenset({"edit_reply", "delete_reply"}))
    poll_interval = 120.0

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        opts: GoogleOptions = self.options
        self.reviews_base = http.check_base_url(opts.reviews_api)
        self.accounts_base = http.check_base_url(opts.accounts_api)
        self.business_base = http.check_base_url(opts.business_api)
        self.oauth = oauth.OAuthSession(oauth_app(opts, account), oauth.TokenStore(account), self.client, self.clock)
        self.titles: dict[str, str] = {}
        #: locations whose reviews were refused (not verified, access removed): reason, when to try again
        self.unavailable: dict[str, tuple[str, float]] = {}

    # ---- plumbing ---------------------------------------------------------------------------------

    async def _call(self, method: str, url: str, *, params: Any = None, json_body: Any = None,
                    what: str = "request") -> httpx.Response:
        """One request through the gate with a fresh token; a 401 refreshes the token once."""
        self.gate.check()
        client = self.client()
        for attempt in (1, 2):
            token = await self.oauth.access_token()
            request = client.build_request(method, url, params=params, json=json_body,
                                           headers={"Authorization": f"Bearer {token}"})
            response = await http.send_request(client, request, SERVICE)
            if response.status_code == 401 and attempt == 1:
                await self.oauth.refresh(self.oauth.current)
                continue
            self.gate.observe(response)
            if response.status_code < 300:
                return response
            self._raise(response, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise(self, response: httpx.Response, what: str) -> None:
        code = response.status_code
        status, reason = problem(response)
        suffix = f": {reason}" if reason else ""
        if code == 429:
            raise self.gate.limited(response, reason)
        if code == 401:
            raise AuthError(f"google: the token was refused (HTTP 401){suffix}; re-login needed")
        if code == 403 and "scope" in reason.lower():
            raise AuthError(f"google: the login lacks the business.manage scope{suffix}; re-login needed")
        if code == 403:
            raise PermanentError(f"google: {what} not allowed (HTTP 403{', ' + status if status else ''}){suffix}")
        if code == 408 or code >= 500:
            raise TransientError(f"google: server error HTTP {code}{suffix}")
        raise PermanentError(f"google: {what} refused (HTTP {code}{', ' + status if status else ''}){suffix}")

    async def _json(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        data = http.json_body(await self._call(method, url, **kw), SERVICE)
        if not isinstance(data, dict):
            raise PermanentError(f"google: {kw.get('what', 'a request')} answered with an unexpected shape")
        return data

    # ---- locations --------------------------------------------------------------------------------

    async def list_locations(self) -> list[Location]:
        """Every location the login manages: the accounts (Account Management API), then each
        account's locations (Business Information API), in the v4 form the reviews API takes."""
        accounts: list[tuple[str, str]] = []
        token = None
        for _ in range(100):
            params = {"pageSize": 20, **({"pageToken": token} if token else {})}
            data = await self._json("GET", f"{self.accounts_base}/v1/accounts", params=params, what="listing accounts")
            for acc in payload.items(data, "accounts"):
                name = ident(acc, "name", required=False)
                if re.fullmatch(r"accounts/[A-Za-z0-9_-]+", name):
                    accounts.append((name, payload.text(acc, "accountName")))
            token = ident(data, "nextPageToken", required=False)
            if not token:
                break
        found: dict[str, Location] = {}
        for account, label in accounts:
            token = None
            for _ in range(100):
                params = {"readMask": "name,title,storefrontAddress", "pageSize": 100,
                          **({"pageToken": token} if token else {})}
                data = await self._json("GET", f"{self.business_base}/v1/{account}/locations", params=params,
                                        what="listing locations")
                for loc in payload.items(data, "locations"):
                    native = ident(loc, "name", required=False)  # "locations/123"
                    if not re.fullmatch(r"locations/[A-Za-z0-9_-]+", native):
                        continue
                    name = f"{account}/{native}"
                    if any(n.endswith("/" + native) for n in found):
                        continue  # the same location seen through another account (a group)
                    address = payload.mapping(loc, "storefrontAddress", required=False)
                    lines = [x for x in payload.items(address, "addressLines") if isinstance(x, str) and x.strip()]
                    place = payload.text(address, "locality")
                    found[name] = Location(name, payload.text(loc, "title") or native,
                                           ", ".join([*lines, *([place] if place else [])]), label)
                token = ident(data, "nextPageToken", required=False)
                if not token:
                    break
        return list(found.values())

    async def _locations(self, cursor: dict[str, Any]) -> tuple[list[str], FetchResult | None]:
        """The locations to read and their titles: the stored list while it is fresh, else listed
        again (a listing refused with locations in the config reads those, titled by their names)."""
        now = self.clock()
        stored = cursor.get("titles") if isinstance(cursor.get("titles"), dict) else {}
        titles = {k: v for k, v in stored.items() if isinstance(k, str) and _LOCATION_RE.match(k) and isinstance(v, str)}
        at = cursor.get("at")
        chosen = list(self.options.locations)
        result = None
        stale = not isinstance(at, int | float) or now - at >= LOCATIONS_EVERY
        newly_chosen = isinstance(at, int | float) and now - at >= 600 and any(n not in titles for n in chosen)
        if not titles or stale or newly_chosen:
            try:
                listed = await self.list_locations()
            except (PermanentError, RateLimited) as exc:
                if not chosen and not titles:
                    raise
                log.warning("google %s: listing locations failed (%s); reading the ones known", self.account, exc)
            else:
                titles = {loc.name: loc.title for loc in listed}
                result = FetchResult([], {"at": now, "titles": titles}, "locations")
        self.titles = titles
        names = chosen or sorted(titles)
        return names, result

    # ---- reviews ----------------------------------------------------------------------------------

    def _reviewer(self, review: dict[str, Any], review_id: str) -> Contact:
        """The author: their display name, or for an anonymous reviewer a name of this review's own."""
        reviewer = payload.mapping(review, "reviewer", required=False)
        name = " ".join(payload.text(reviewer, "displayName").split())
        if reviewer.get("isAnonymous") is True or not name:
            return Contact(native_id=f"reviewer:{review_id}", name=f"Anonymous reviewer ({review_id[-6:]})",
                           name_is_fallback=True)
        return Contact(native_id=f"reviewer:{review_id}", name=name)

    def _review_messages(self, location: str, review: Any) -> list[IncomingMessage]:
        """A review (the version Google shows now) and our reply to it, as messages of its conversation."""
        if not isinstance(review, dict):
            raise BadItem("review is not an object")
        review_id = ident(review, "reviewId", required=False)
        name = ident(review, "name", required=False) or (f"{location}/reviews/{review_id}" if review_id else "")
        if not _REVIEW_RE.match(name):
            raise BadItem("review name missing or malformed")
        review_id = review_id or name.rsplit("/", 1)[1]
        written = payload.timestamp(review.get("createTime"), "createTime")
        updated = max(payload.timestamp_or(review.get("updateTime"), written), written)
        rating = STARS.get(review.get("starRating")) if isinstance(review.get("starRating"), str) else None
        comment = payload.text(review, "comment")
        contact = self._reviewer(review, review_id)
        title = self.titles.get(location) or location
        place = name.split("/reviews/", 1)[0]
        conversation = {"review": name, "location": place, "location_title": title, "rating": rating}
        messages = [IncomingMessage(
            native_id=f"{name}#v{_digest(rating, comment)}", conversation_native_id=name, platform="google",
            kind="review", contact=contact, text=comment, created_at=updated, direction="in", author=contact.name,
            subject=title, meta={"rating": rating, "written_at": written, "conversation": conversation})]
        reply = payload.mapping(review, "reviewReply", required=False)
        said = payload.text(reply, "comment")
        if said:
            at = payload.timestamp_or(reply.get("updateTime"), updated)
            if reply.get("reviewReplyState") == "REJECTED":  # never shown: say why, and mark ours
                reason = violation(reply)
                messages.append(IncomingMessage(
                    native_id=f"{name}/reply-rejected#{_digest(said)}", conversation_native_id=name,
                    platform="google", kind="review", contact=contact, created_at=at, direction="in",
                    author="Google", text=f"Google did not publish our reply ({reason}).",
                    automatic=f"bounce: Google rejected the reply ({reason})",
                    delivery_failure=DeliveryFailure((f"{name}/reply",), f"Google rejected the reply ({reason})")))
            else:
                messages.append(IncomingMessage(
                    native_id=f"{name}/reply", conversation_native_id=name, platform="google", kind="review",
                    contact=contact, text=said, created_at=at, direction="out", author=title,
                    meta={"reply_state": reply.get("reviewReplyState") if isinstance(
                        reply.get("reviewReplyState"), str) else ""}))
        return messages

    def _groups(self, names: list[str]) -> list[tuple[str, list[str]]]:
        """(stream, locations) per walk: one per location, or one per account's batch. A batch's
        stream is named by the locations it covers: adding one starts a walk of its own."""
        by_account: dict[str, list[str]] = {}
        now = self.clock()
        for name in names:
            reason, until = self.unavailable.get(name, ("", 0.0))
            if until > now:
                continue
            by_account.setdefault(name.split("/locations/", 1)[0], []).append(name)
        groups: list[tuple[str, list[str]]] = []
        for account, members in sorted(by_account.items()):
            if self.options.batch and len(members) > 1:
                for start in range(0, len(members), BATCH):
                    chunk = sorted(members[start:start + BATCH])
                    groups.append((f"reviews:{account}:{_digest(*chunk)[:8]}", chunk))
            else:
                groups += [(f"reviews:{m}", [m]) for m in members]
        return groups

    async def _page(self, names: list[str], token: str | None) -> tuple[list[tuple[str, Any]], str]:
        """One page of (location, review), newest first, and the next page's token ('' at the end)."""
        if len(names) == 1:
            params = {"pageSize": PAGE, "orderBy": "updateTime desc", **({"pageToken": token} if token else {})}
            data = await self._json("GET", f"{self.reviews_base}/v4/{names[0]}/reviews", params=params,
                                    what="reading reviews")
            pairs = [(names[0], r) for r in payload.items(data, "reviews")]
        else:
            account = names[0].split("/locations/", 1)[0]
            body = {"locationNames": names, "pageSize": PAGE, "orderBy": "updateTime desc",
                    "ignoreRatingOnlyReviews": False, **({"pageToken": token} if token else {})}
            data = await self._json("POST", f"{self.reviews_base}/v4/{account}/locations:batchGetReviews",
                                    json_body=body, what="reading reviews")
            pairs = []
            for item in payload.items(data, "locationReviews"):
                place = ident(item, "name", required=False)
                pairs.append((place if place in names else names[0], payload.mapping(item, "review", required=False)
                              if isinstance(item, dict) else item))
        return pairs, ident(data, "nextPageToken", required=False)

    async def _walk(self, stream: str, names: list[str], cursor: dict[str, Any]) -> AsyncIterator[FetchResult]:
        """Pages down to the watermark (``updateTime`` of the newest review the last finished walk
        saw); a walk in progress keeps the old watermark and where it is."""
        mark = cursor.get("watermark") if isinstance(cursor.get("watermark"), int | float) else None
        walk = cursor.get("walk") if isinstance(cursor.get("walk"), dict) else {}
        token = walk.get("token") if payload.is_identifier(walk.get("token")) else None
        top = walk.get("top") if isinstance(walk.get("top"), int | float) else None
        floor = mark if mark is not None else (walk.get("floor") if isinstance(walk.get("floor"), int | float)
                                               else self.clock() - self.options.backfill)
        for _ in range(MAX_PAGES):
            try:
                pairs, next_token = await self._page(names, token)
            except PermanentError:
                if token is None:
                    raise
                # a page token Google no longer takes: the next poll walks again from the top
                yield FetchResult([], {"watermark": mark} if mark is not None else {}, stream)
                return
            times = []
            fresh = []
            for place, review in pairs:
                at = payload.timestamp_or(review.get("updateTime"), payload.timestamp_or(
                    review.get("createTime"), 0.0)) if isinstance(review, dict) else 0.0
                times.append(at)
                if at >= floor or at == 0.0:  # equal: re-read (ids dedupe), never skipped
                    fresh.append((place, review))
            valid = [t for t in times if t > 0]
            top = max([*valid, *([top] if top is not None else [])], default=None)
            messages, rejected = payload.map_each(
                fresh, lambda pair: self._review_messages(*pair),
                lambda pair: ident(pair[1], "name", required=False) or ident(pair[1], "reviewId", required=False))
            done = any(0 < t < floor for t in times) or not next_token or next_token == token
            if done:
                state: dict[str, Any] = {"watermark": max(top, mark or top) if top is not None else (mark or floor)}
            else:
                state = {"walk": {"token": next_token, "top": top, "floor": floor}}
                if mark is not None:
                    state["watermark"] = mark
            yield FetchResult(messages, state, stream, rejected)
            if done:
                return
            token = next_token

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        return await payload.keep_finished(self._pages(cursors))

    async def _pages(self, cursors: dict[str, dict[str, Any]]) -> AsyncIterator[FetchResult]:
        names, listed = await self._locations(cursors.get("locations") or {})
        if listed is not None:
            yield listed
        for stream, members in self._groups(names):
            try:
                async for page in self._walk(stream, members, cursors.get(stream) or {}):
                    yield page
            except PermanentError as exc:  # this location (or batch) only: the others go on
                now = self.clock()
                for name in members:
                    first = name not in self.unavailable
                    self.unavailable[name] = (str(exc), now + UNAVAILABLE_FOR)
                    if first:
                        log.warning("google %s: reviews of %s unavailable: %s", self.account, name, exc)
                        yield FetchResult([], None, stream, [(name, f"reviews unavailable: {exc}")])
            else:
                for name in members:
                    self.unavailable.pop(name, None)

    def status_note(self) -> str:
        now = self.clock()
        down = [self.titles.get(n, n) for n, (_, until) in sorted(self.unavailable.items()) if until > now]
        if not down:
            return ""
        return f"reviews unavailable: {', '.join(down[:3])}" + (f" and {len(down) - 3} more" if len(down) > 3 else "")

    # ---- replying ---------------------------------------------------------------------------------

    @staticmethod
    def _review_of(native: str) -> str:
        if not _REVIEW_RE.match(native or ""):
            raise PermanentError("google: this conversation is not a review (no review name)")
        return native

    async def _put_reply(self, review: str, text: str) -> tuple[str, float]:
        """Upsert our reply; (remote id, when). Google refusing it for a policy reason is final."""
        text = text.strip()
        if not text:
            raise PermanentError("google: a reply cannot be empty")
        if utf8_bytes(text) > REPLY_BYTES:
            raise PermanentError(f"google: a reply allows {REPLY_BYTES} bytes; this one has {utf8_bytes(text)}")
        data = await self._json("PUT", f"{self.reviews_base}/v4/{review}/reply", json_body={"comment": text},
                                what="the reply")
        if data.get("reviewReplyState") == "REJECTED":
            raise PermanentError(f"google: Google rejected the reply ({violation(data)}); "
                                 "change the text and send it again")
        return f"{review}/reply", payload.timestamp_or(data.get("updateTime"), self.clock())

    async def send(self, reply: OutgoingReply) -> SendResult:
        if reply.private:  # a review's only answer is public: never post a "private" one there
            raise PermanentError("google: a review can only be answered publicly (the reply is shown on Google)")
        remote, at = await self._put_reply(self._review_of(reply.conversation_native_id), reply.text)
        return SendResult(remote, at)

    async def perform(self, action: OutgoingAction) -> ActionResult:
        review = self._review_of(action.conversation_native_id)
        if action.kind == "edit_reply":
            text = action.payload.get("text")
            remote, at = await self._put_reply(review, text if isinstance(text, str) else "")
            return ActionResult(remote, at)
        if action.kind == "delete_reply":
            try:
                await self._call("DELETE", f"{self.reviews_base}/v4/{review}/reply", what="deleting the reply")
            except PermanentError as exc:
                if "HTTP 404" not in str(exc):
                    raise  # 404: already gone, which is what was asked
            return ActionResult(f"{review}/reply", self.clock())
        return await super().perform(action)
