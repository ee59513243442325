"""The contract between the sync engine and each platform adapter.

A provider knows its platform's API and nothing of SQLite: it maps platform payloads to
``IncomingMessage`` at the edge, sends ``OutgoingReply`` and reports failures with the
exception classes below, which the engine turns into backoff, rate-limit waits or a stopped account.

Three ways in and out besides ``fetch`` and ``send``:

- **Pushed payloads** (webhooks: WhatsApp has no polling API at all). ``verify_push`` checks a
  body before anything is stored (a bad signature stores nothing), ``push_key`` names it for
  deduplication, and ``parse_push`` maps a stored body into the same ``FetchResult``s a fetch
  returns, so polling, streaming and webhooks share one ingest path (``replydesk.push``).
- **Reply windows** are platform facts (``PlatformFacts.windows``), so they need no method here.
  A reply the user sent with a choice outside the plain window carries it as
  ``OutgoingReply.send_as``.
- **Actions other than replies** (mark read, edit or delete our reply, create a ticket) come
  through the outbox like replies. A provider lists them in ``Capabilities.actions`` and does them
  in ``perform``. After an uncertain attempt, ``lookup_performed`` finds out whether it happened.

A provider module is also where its platform is described: ``Options`` (the account's typed
options, validated by ``replydesk.config``) and ``FACTS`` (names, reply limits and how length is
counted, which the engine stores for the console). Importing a provider module must stay cheap
(no httpx, no imaplib at import time: the config imports the modules of the providers it names,
and the console reads the config at start-up); the wire loads when the provider is built.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from replydesk.model import (
    REPEATABLE_ACTIONS,
    ActionResult,
    FetchResult,
    MessageTemplate,
    OutgoingAction,
    OutgoingReply,
    SendResult,
    Usage,
)
from replydesk.options import AccountOptions
from replydesk.platforms import PlatformFacts

if TYPE_CHECKING:
    from replydesk.listening import ListeningQuery

SecretGetter = Callable[[], str | None]


class ProviderError(Exception):
    """Base of everything a provider raises on purpose. Messages must never contain secrets."""


class TransientError(ProviderError):
    """5xx, timeout, reset, DNS: retry with backoff."""


class RateLimited(ProviderError):
    """429 or an exhausted rate-limit window: wait until ``reset_at`` (epoch seconds)."""

    def __init__(self, message: str, reset_at: float) -> None:
        super().__init__(message)
        self.reset_at = reset_at


class AuthError(ProviderError):
    """401/403 or a revoked token: stop the account until the user logs in again."""


class Offline(TransientError):
    """No network at all; the engine shows 'offline' and keeps everything queued."""


class PermanentError(ProviderError):
    """The platform rejected this request for good (4xx other than auth/limits): do not retry."""


class UnknownDelivery(ProviderError):
    """A send whose outcome cannot be known (no idempotency, no way to look): ask the user."""


class PushRejected(ProviderError):
    """A pushed payload failed verification (a bad or missing signature): the receiver answers
    401/403 and stores nothing. The message says why, never with the secret."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the engine may rely on when it sends (limits are platform facts: ``Provider.facts``)."""

    can_dm: bool = True
    can_reply_publicly: bool = True
    supports_idempotency: bool = False
    can_lookup_sent: bool = False  # can find our own post by key after an uncertain send
    streams: bool = False
    #: outbox actions besides replies this provider performs (``model.ACTION_KINDS``)
    actions: frozenset[str] = field(default_factory=frozenset)
    #: takes pushed payloads (webhooks) through verify_push / parse_push
    accepts_push: bool = False
    #: has approved message templates (``templates()``) that may be sent outside a reply window
    templates: bool = False


class Provider(abc.ABC):
    """One account on one platform."""

    platform: ClassVar[str]
    #: the account's typed options (a provider module's own subclass)
    Options: ClassVar[type[AccountOptions]] = AccountOptions
    #: the platform(s) this provider serves: names, reply limits, how length is counted
    FACTS: ClassVar[dict[str, PlatformFacts]] = {}
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: seconds between polls when the provider does not stream
    poll_interval: float = 30.0
    #: whether a live ``stream()`` carries everything a poll would (the engine pauses polling while it
    #: is up); False where the push covers only part (X's Activity API pushes DMs, not mentions)
    stream_replaces_polling: ClassVar[bool] = True
    #: whether the platform offers a search to listen with (``listen``); email and chats have none
    can_listen: ClassVar[bool] = False

    def __init__(self, account: str, options: AccountOptions | Mapping[str, Any], secret: SecretGetter) -> None:
        self.account = account
        self.options: Any = options if isinstance(options, AccountOptions) else \
            self.Options.model_validate({"name": account, "provider": getattr(self, "platform", ""), **options})
        self._secret = secret
        #: Set by the sync engine: maps platform message ids we may already hold to the native id of
        #: the conversation they belong to (email threading across syncs). Providers stay DB-free.
        self.resolve_thread: Callable[[Sequence[str]], str | None] = lambda ids: None
        #: Set by the sync engine for a helpdesk: the ids of the tickets this account made that are
        #: still worth following (not closed), so it can read their status without a database.
        self.tickets_to_follow: Callable[[], list[str]] = lambda: []
        #: Set by the sync engine: maps ids a customer may be known by (a user id, a phone number,
        #: see ``Contact.aliases``) to the native id of the contact we hold for them, if any.
        self.resolve_contact: Callable[[Sequence[str]], str | None] = lambda ids: None

    @abc.abstractmethod
    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        """Fetch what is new. ``cursors`` maps each stream name to the cursor stored with the last
        ``FetchResult`` of that stream (empty on the first sync). Return one result per stream/page."""

    @abc.abstractmethod
    async def send(self, reply: OutgoingReply) -> SendResult:
        """Post ``reply``; must be safe to call again with the same key where the platform allows."""

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        """After an uncertain send: find our own post by its key. None means 'not posted'."""
        raise UnknownDelivery("this platform cannot tell whether the reply was posted")

    # ---- actions other than replies ----------------------------------------------------------------

    async def perform(self, action: OutgoingAction) -> ActionResult:
        """Do ``action`` (one of ``capabilities.actions``); must be safe to call again with the same
        key where the platform allows. Raise the errors above, as ``send`` does."""
        raise PermanentError(f"{self.platform}: cannot {action.kind.replace('_', ' ')} on this platform")

    def repeatable(self, kind: str) -> bool:
        """Whether an uncertain attempt of ``kind`` may simply be made again: the platform dedupes
        our key, or the action changes nothing the second time (marking read, an edit, a delete)."""
        return self.capabilities.supports_idempotency or kind in REPEATABLE_ACTIONS

    async def lookup_performed(self, action: OutgoingAction) -> ActionResult | None:
        """After an uncertain attempt: find what it did (a ticket by its external id). None: not done."""
        raise UnknownDelivery(f"{self.platform} cannot tell whether the {action.kind.replace('_', ' ')} happened")

    # ---- pushed payloads (webhooks) ---------------------------------------------------------------

    #: the headers a stored body keeps for ``parse_push`` (lower case; never an auth header)
    push_headers: ClassVar[tuple[str, ...]] = ("content-type",)

    def verify_push(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Check a pushed body before anything is stored: raise ``PushRejected`` when it is not the
        platform's (signature wrong or missing). ``headers`` have lower-case names."""
        raise PushRejected(f"{self.platform}: this provider takes no pushed payloads")

    def push_key(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        """The body's deduplication key: a redelivered or replayed body must get the same one.
        The default is the body's hash. A provider whose platform may redeliver the same events in
        another body can override it with the platform's own ids."""
        return "sha256:" + hashlib.sha256(raw_body).hexdigest()

    def parse_push(self, raw_body: bytes, headers: Mapping[str, str]) -> list[FetchResult]:
        """Map a verified, stored body into what a fetch would return (``cursor=None``: a push
        advances no cursor). One bad item goes into ``rejected``. Raise (``PermanentError``,
        ``ValueError``) only when nothing in the body can be mapped: the body is then kept as
        unmappable, with the reason."""
        raise PermanentError(f"{self.platform}: this provider takes no pushed payloads")

    async def templates(self) -> list[MessageTemplate]:
        """The account's approved message templates (``capabilities.templates``); the engine stores
        them for the composer, which never calls the network itself."""
        return []

    def claims_push(self, raw_body: bytes) -> bool:
        """Whether a verified body shared by several accounts of one app (one webhook URL) carries
        events of this account (its Page, its phone number). Only called after verification."""
        return False

    async def stream(self) -> AsyncIterator[FetchResult]:  # pragma: no cover - optional
        """Push-based platforms yield results as they arrive; the default does not stream."""
        if False:
            yield  # type: ignore[unreachable]
        return

    async def listen(self, queries: Sequence[ListeningQuery], cursors: dict[str, dict[str, Any]]
                     ) -> list[FetchResult]:
        """Run listening ``queries`` (``can_listen`` platforms): posts that match them and are new since
        each query's cursor (``cursors[query.stream]``), as results on stream ``query.stream`` with
        ``listening=query.name`` and at least one result per query, so its cursor and poll time are
        stored. Our own posts and the query's exclusions are left out; a matched post comes with the
        thread around it, mapped exactly as the inbox's own streams map it (same conversation ids), so
        a post that also tags us is one conversation. Limits and errors as for ``fetch``."""
        raise PermanentError(f"{self.platform}: nothing to listen to on this platform")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections (default: nothing to release)."""

    def take_usage(self) -> list[Usage]:
        """What the requests since the last call cost, for a platform that charges per use (the
        engine records it per month and paces polling by it); handed over once, then forgotten."""
        return []

    def status_note(self) -> str:
        """A standing note for the status bar (push or polling, waits per endpoint); '' for none."""
        return ""

    def facts(self) -> dict[str, PlatformFacts]:
        """The facts of the platform(s) this account serves as of now; the engine stores them for
        the console (override where a limit is learned at run time, as Mastodon's instance limit)."""
        return dict(self.FACTS)
