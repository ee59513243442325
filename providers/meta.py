"""Meta's Graph API, shared by the Facebook, Instagram and WhatsApp providers.

One pinned API version (``GRAPH_VERSION``, the only place it is named), one way to call the Graph
(the token in an ``Authorization`` header, never in a URL; ``appsecret_proof`` where the app secret
is known), one mapping of Graph errors to the engine's, one reading of the usage headers, and the
webhook signature check Meta uses for all three (``X-Hub-Signature-256``).

Errors (``{"error": {"code", "error_subcode", "message", "is_transient"}}``):

- throttling (codes 4, 17, 32, 613, the 80001-80014 business-use-case family; WhatsApp's 130429,
  131048, 131056) and HTTP 429 become ``RateLimited`` until the time Meta says
  (``estimated_time_to_regain_access``, else ``Retry-After``, else a few minutes);
- an expired or revoked token (190, 102) stops only that account: ``AuthError`` ("re-login needed");
- ``is_transient``, codes 1 and 2, and 5xx retry with backoff (``TransientError``);
- everything else, including a message outside its window (10 with subcode 2018278, WhatsApp's
  131047), is refused for good (``PermanentError``) with Meta's own words.

Usage (``X-App-Usage``, ``X-Business-Use-Case-Usage``: percentages of the hourly allowance): the
provider slows its polling as the highest share grows (twice as slow from 50 %, four times from
75 %, eight times from 90 %) and stops calling at 95 % until Meta's estimate of when access returns,
so the account never reaches Meta's own throttle in the normal course.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from replydesk import secrets
from replydesk.model import DeliveryUpdate, FetchResult, parse_iso
from replydesk.options import AccountOptions, HttpsUrl
from replydesk.providers import http
from replydesk.providers.base import (
    AuthError,
    PermanentError,
    ProviderError,
    PushRejected,
    RateLimited,
    SecretGetter,
    TransientError,
)
from replydesk.providers.payload import BadItem, keep_finished
from replydesk.windows import HUMAN_AGENT, WindowRule, WindowStep

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: The Graph API version every Meta request uses (v26.0 is current; v25.0 is supported until 2028).
GRAPH_VERSION = "v26.0"
GRAPH_HOST = "https://graph.facebook.com"
INSTAGRAM_HOST = "https://graph.instagram.com"
SIGNATURE_HEADER = "x-hub-signature-256"
#: The keyring entry beside the account's token that holds the Meta app's secret (webhook signatures
#: and ``appsecret_proof``): ``<account>:app-secret``.
APP_SECRET_SUFFIX = ":app-secret"

THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
WHATSAPP_THROTTLE = frozenset({130429, 131048, 131056})
TOKEN_CODES = frozenset({190, 102})
TRANSIENT_CODES = frozenset({1, 2})
#: A message outside its window: Messenger/Instagram (10 / 2018278), WhatsApp's re-engagement rule.
WINDOW_ERRORS = frozenset({(10, 2018278), (10, 2018108), (131047, None)})
THROTTLE_WAIT = 300.0  # when Meta throttles and says nothing about when it ends
STOP_AT = 95  # percent of the allowance: stop calling until Meta's estimate
SLOW_STEPS = ((90, 8.0), (75, 4.0), (50, 2.0))

HOUR, DAY = 3600.0, 86400.0
#: Meta's windows (Messenger Platform, Instagram Messaging): a reply within 24 h of the customer's
#: last message; the human-agent tag up to 7 days where the app has that feature; a private reply
#: to a Page or Instagram comment must leave within 7 days of it.
MESSENGER_DM = WindowRule("24-hour messaging window", ("dm",),
                          (WindowStep(24 * HOUR), WindowStep(7 * DAY, HUMAN_AGENT)),
                          "no message can be sent until the customer writes again")
MESSENGER_DM_NO_TAG = WindowRule("24-hour messaging window", ("dm",), (WindowStep(24 * HOUR),),
                                 "no message can be sent until the customer writes again")
PRIVATE_REPLY = WindowRule("7-day window for private replies", ("comment",), (WindowStep(7 * DAY),),
                           "only a public answer to the comment is possible", "public", private_only=True)


def messenger_rules(human_agent: bool) -> tuple[WindowRule, ...]:
    """The window rules of a Messenger or Instagram account: the tag step only where the app has it."""
    return (MESSENGER_DM if human_agent else MESSENGER_DM_NO_TAG, PRIVATE_REPLY)


class MetaOptions(AccountOptions):
    """What every Meta account has (a Page, an Instagram account, a WhatsApp number)."""

    api_base: HttpsUrl = GRAPH_HOST
    """The Graph API host (change only for a proxy or a test server)."""


# ---- small readers --------------------------------------------------------------------------------


def graph_time(value: Any, what: str = "created_time") -> float:
    """A Graph time (``2026-11-23T09:00:00+0000``) or epoch seconds (a string or a number, as
    webhooks send them; milliseconds when absurdly large) -> epoch seconds, or ``BadItem``."""
    if isinstance(value, bool):
        raise BadItem(f"{what} is not a time")
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        if number > 1e11:  # milliseconds (Messenger's webhook timestamps)
            number /= 1000.0
        if not math.isfinite(number) or not 0 < number < 1e10:
            raise BadItem(f"{what} is out of range")
        return number
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except (ValueError, OverflowError):
            raise BadItem(f"{what} is not a time") from None
    raise BadItem(f"{what} missing or not a time")


def first_line(text: str, limit: int = 120) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ---- the signature ---------------------------------------------------------------------------------


def signature(secret: str, raw_body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``raw_body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | None, headers: Mapping[str, str], raw_body: bytes, service: str) -> None:
    """HMAC-SHA256 of the raw body with the app secret, compared in constant time, before anything
    reads the body. Raises ``PushRejected`` (the reason never includes the secret)."""
    given = headers.get(SIGNATURE_HEADER, "")
    if not given:
        raise PushRejected(f"{service}: the webhook has no X-Hub-Signature-256 header")
    if not secret:
        raise PushRejected(f"{service}: no app secret in the keyring, so no webhook can be verified "
                           "(replydesk login stores it)")
    if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), signature(secret, raw_body).encode()):
        raise PushRejected(f"{service}: the webhook's X-Hub-Signature-256 does not match its body")


# ---- usage and errors -----------------------------------------------------------------------------


def _percentages(value: Any) -> list[float]:
    out = []
    if isinstance(value, Mapping):
        for key in ("call_count", "total_cputime", "total_time", "acc_id_util_pct"):
            number = value.get(key)
            if isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number):
                out.append(float(number))
    return out


def usage(headers: Mapping[str, str]) -> tuple[float, float]:
    """(the highest share of the allowance in use, in percent; minutes until access returns as Meta
    estimates them) from ``X-App-Usage`` and ``X-Business-Use-Case-Usage``. Garbage reads as 0."""
    highest, regain = 0.0, 0.0
    for name in ("x-app-usage", "x-page-usage", "x-business-use-case-usage"):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            data = http.parse_json(raw[:65536])
        except ValueError:
            continue
        entries: list[Any] = [data]
        if name == "x-business-use-case-usage" and isinstance(data, Mapping):
            entries = [e for v in data.values() if isinstance(v, list) for e in v]
        for entry in entries:
            highest = max([highest, *_percentages(entry)])
            if isinstance(entry, Mapping):
                minutes = entry.get("estimated_time_to_regain_access")
                if isinstance(minutes, int | float) and not isinstance(minutes, bool) and 0 < minutes < 1440:
                    regain = max(regain, float(minutes))
    return min(highest, 1000.0), regain


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The Graph's error object, or {} when the body has none."""
    body = http.json_object(response, limit=1_000_000)
    error = body.get("error") if body is not None else None
    return error if isinstance(error, dict) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def failure(response: httpx.Response, service: str, now: float) -> ProviderError:
    """The engine's error for a Graph response that is not 2xx (see the module docstring)."""
    error = error_of(response)
    code, sub = _int(error.get("code")), _int(error.get("error_subcode"))
    status = response.status_code
    message = error.get("error_user_msg") or error.get("message")
    detail = http.redact(message, 200) if isinstance(message, str) and message else f"HTTP {status}"
    where = f"{service}: {detail}" + (f" (#{code})" if code is not None else "")
    if status == 429 or code in THROTTLE_CODES or code in WHATSAPP_THROTTLE:
        _, minutes = usage(response.headers)
        reset = now + minutes * 60 if minutes else (http.parse_retry_after(response.headers.get("retry-after"), now)
                                                     or now + (60.0 if code in WHATSAPP_THROTTLE else THROTTLE_WAIT))
        return RateLimited(f"{where}; Meta throttles this account until {http.fmt_time(reset)}", reset)
    if code in TOKEN_CODES or status == 401:
        return AuthError(f"{where}: the access token has expired or was revoked; re-login needed")
    if (code, sub) in WINDOW_ERRORS or (code, None) in WINDOW_ERRORS:
        return PermanentError(f"{where}: outside the platform's reply window")
    if error.get("is_transient") is True or code in TRANSIENT_CODES or status >= 500 or status == 408:
        return TransientError(f"{where}: Meta's servers had a problem; trying again later")
    return PermanentError(f"{where}: refused")


# ---- the provider base ----------------------------------------------------------------------------


class MetaProvider(http.HttpProvider):
    """An account on one of Meta's platforms: Graph calls, usage pacing, webhook verification.

    A subclass names its ``host`` (Instagram Login uses graph.instagram.com) and maps its payloads.
    """

    Options: ClassVar[type[AccountOptions]] = MetaOptions
    #: accounts of one Meta app share a webhook URL (``/webhooks/meta``): the receiver verifies the
    #: body with each one's app secret and routes it by ``claims_push``
    shares_webhook_url: ClassVar[bool] = True
    push_headers = ("content-type", SIGNATURE_HEADER)
    base_poll_interval: ClassVar[float] = 60.0

    def __init__(self, account: str, options: Any, secret: SecretGetter, *,
                 app_secret: Callable[[], str | None] | None = None, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        self.base = f"{http.check_base_url(self.api_host())}/{GRAPH_VERSION}"
        self.app_secret = app_secret or secrets.getter(account + APP_SECRET_SUFFIX)
        self._interval = float(self.options.poll_interval or self.base_poll_interval)
        self.pressure = 0.0  # the highest share of Meta's allowance last reported, in percent
        self.stream_problems: dict[str, str] = {}  # streams Meta refused for good, and why

    def api_host(self) -> str:
        return self.options.api_base

    # ---- pacing -----------------------------------------------------------------------------------

    @property
    def poll_interval(self) -> float:  # type: ignore[override]
        """The configured interval, stretched while Meta reports a high share of the allowance used."""
        factor = next((f for threshold, f in SLOW_STEPS if self.pressure >= threshold), 1.0)
        return self._interval * factor

    @poll_interval.setter
    def poll_interval(self, value: float) -> None:
        self._interval = float(value)

    def observe_usage(self, response: httpx.Response) -> None:
        share, minutes = usage(response.headers)
        if not any(h in response.headers for h in ("x-app-usage", "x-page-usage", "x-business-use-case-usage")):
            return
        self.pressure = share
        if share >= STOP_AT:
            now = self.clock()
            self.gate.blocked_until = max(self.gate.blocked_until, now + max(minutes * 60, THROTTLE_WAIT))

    def status_note(self) -> str:
        parts = [f"{name}: {why}" for name, why in sorted(self.stream_problems.items())]
        if self.pressure >= SLOW_STEPS[-1][0]:
            parts.append(f"Graph API usage {self.pressure:.0f}%: polling slowed")
        return " · ".join(parts)

    async def run_streams(self, walks: list[tuple[str, Callable[[], AsyncIterator[FetchResult]]]]
                          ) -> list[FetchResult]:
        """Every stream's pages, one stream after the other. A stream Meta refuses for good (a
        permission the token lacks, say for recommendations) is left out with the reason in the
        status note, and the others go on; any other failure ends the fetch, keeping what finished."""
        results: list[FetchResult] = []
        for name, walk in walks:
            try:
                results += await keep_finished(walk())
            except PermanentError as exc:
                self.stream_problems[name] = str(exc)[:200]
                log.warning("account %s: %s skipped: %s", self.account, name, exc)
                continue
            except ProviderError:
                if any(r.messages or r.rejected for r in results):
                    return results
                raise
            self.stream_problems.pop(name, None)
        return results

    # ---- calls ------------------------------------------------------------------------------------

    def token(self) -> str:
        token = self._secret()
        if not token:
            raise AuthError(f"{self.service}: no access token in the keyring; run replydesk login {self.account}")
        return token

    def _proof(self, token: str) -> dict[str, str]:
        try:
            app_secret = self.app_secret()
        except Exception:  # a keyring problem must not stop the call: the proof is optional
            app_secret = None
        if not app_secret:
            return {}
        return {"appsecret_proof": hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()}

    async def graph(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    body: Any = None) -> Any:
        """One Graph call (``path`` after the version, e.g. ``/123/messages``); the decoded JSON."""
        token = self.token()
        query = {**(params or {}), **self._proof(token)}
        response = await self.request(method, self.base + path, params=query or None, json=body,
                                      headers={"Authorization": f"Bearer {token}"}, check=False)
        self.observe_usage(response)
        if not 200 <= response.status_code < 300:
            raise failure(response, self.service, self.clock())
        return http.json_body(response, self.service)

    async def pages(self, path: str, params: Mapping[str, Any], max_pages: int) -> AsyncIterator[list[Any]]:
        """The ``data`` of each page of a Graph edge, following ``paging.cursors.after`` (never a URL
        from the payload: the next request is ours, with the same path and parameters)."""
        after: str | None = None
        for _ in range(max_pages):
            page = await self.graph("GET", path, params={**params, **({"after": after} if after else {})})
            data = page.get("data") if isinstance(page, dict) else None
            yield data if isinstance(data, list) else []
            paging = page.get("paging") if isinstance(page, dict) else None
            cursors = paging.get("cursors") if isinstance(paging, dict) else None
            after = cursors.get("after") if isinstance(cursors, dict) else None
            if not (isinstance(after, str) and after and isinstance(paging, dict) and paging.get("next")):
                return

    # ---- webhooks ---------------------------------------------------------------------------------

    def verify_push(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        verify_signature(self.app_secret(), headers, raw_body, self.service)

    @staticmethod
    def body_of(raw_body: bytes, expected: str) -> list[dict[str, Any]]:
        """The ``entry`` list of a verified body whose ``object`` is ``expected``; ``ValueError``
        (the body is kept as unmappable, with the reason) for anything else."""
        data = http.parse_json(raw_body)
        if not isinstance(data, dict) or data.get("object") != expected:
            found = data.get("object") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a {expected!r} webhook body (object is {str(found)[:40]!r})")
        entries = data.get("entry")
        if not isinstance(entries, list):
            raise ValueError("the webhook body has no 'entry' list")
        return [e for e in entries if isinstance(e, dict)]

    @staticmethod
    def ids_key(parts: list[str]) -> str:
        """A dedupe key from the platform's event ids (a redelivery in another body is the same)."""
        return "ids:" + hashlib.sha256("\n".join(sorted(parts)).encode("utf-8", "replace")).hexdigest()


def delivery(remote_id: Any, state: str, at: float, error: str = "", key: Any = "") -> DeliveryUpdate | None:
    """A receipt from untrusted fields, or None when the id is unusable."""
    if not (isinstance(remote_id, str) and 0 < len(remote_id) <= 512):
        return None
    return DeliveryUpdate(remote_id, state, at, error[:500], key if isinstance(key, str) and len(key) <= 512 else "")
