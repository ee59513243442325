"""The contract between the sync engine and each platform adapter.

A provider knows its platform's API and nothing of SQLite: it maps platform payloads to
``IncomingMessage`` at the edge, sends ``OutgoingReply`` and reports failures with the
exception classes below, which the engine turns into backoff, rate-limit waits or a stopped account.

A provider module is also where its platform is described: ``Options`` (the account's typed
options, validated by ``replydesk.config``) and ``FACTS`` (names, reply limits and how length is
counted, which the engine stores for the console). Importing a provider module must stay cheap
(no httpx, no imaplib at import time: the config imports the modules of the providers it names,
and the console reads the config at start-up); the wire loads when the provider is built.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from replydesk.model import FetchResult, OutgoingReply, SendResult, Usage
from replydesk.options import AccountOptions
from replydesk.platforms import PlatformFacts

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


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the engine may rely on when it sends (limits are platform facts: ``Provider.facts``)."""

    can_dm: bool = True
    can_reply_publicly: bool = True
    supports_idempotency: bool = False
    can_lookup_sent: bool = False  # can find our own post by key after an uncertain send
    streams: bool = False


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

    def __init__(self, account: str, options: AccountOptions | Mapping[str, Any], secret: SecretGetter) -> None:
        self.account = account
        self.options: Any = options if isinstance(options, AccountOptions) else \
            self.Options.model_validate({"name": account, "provider": getattr(self, "platform", ""), **options})
        self._secret = secret
        #: Set by the sync engine: maps platform message ids we may already hold to the native id of
        #: the conversation they belong to (email threading across syncs). Providers stay DB-free.
        self.resolve_thread: Callable[[Sequence[str]], str | None] = lambda ids: None

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

    async def stream(self) -> AsyncIterator[FetchResult]:  # pragma: no cover - optional
        """Push-based platforms yield results as they arrive; the default does not stream."""
        if False:
            yield  # type: ignore[unreachable]
        return

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
