"""Pushed payloads: what a webhook receiver calls, and how stored bodies reach the cache.

The receiver process (the Meta webhooks issue) does, for each POST: ``receive`` (verify the body
with its provider, then commit it durably), answer the platform 200 only after that returns (a
``PushRejected`` gets 401/403, a ``BodyTooLarge`` 413, and nothing is stored), and leave the rest
to the sync engine. The engine calls ``ingest_pending`` on every turn of a push-capable account:
each stored body is parsed by its provider into the same ``FetchResult``s a fetch returns and
goes through the normal ingest path. So polling, streaming and webhooks share one way into the
cache, and a crash between "stored" and "ingested" only delays a body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from replydesk.providers.base import Provider
from replydesk.storage import pushes
from replydesk.storage.db import Database
from replydesk.storage.pushes import BodyTooLarge
from replydesk.storage.spool import Spool

log = logging.getLogger(__name__)

__all__ = ["BodyTooLarge", "Receipt", "PushStats", "receive", "accept", "adopt_spooled", "ingest_pending"]


@dataclass(frozen=True)
class Receipt:
    """A body the receiver may now acknowledge: ``fresh`` False for a redelivery we already hold."""

    body_id: int
    dedupe_key: str
    fresh: bool


def verified(provider: Provider, headers: Mapping[str, str], raw_body: bytes,
             limit: int = pushes.MAX_BODY) -> tuple[str, dict[str, str]]:
    """Check size and signature before anything else looks at the body; returns (dedupe key, the
    headers to keep). Raises ``BodyTooLarge`` or ``PushRejected``."""
    limit = min(limit, pushes.MAX_BODY)
    if len(raw_body) > limit:
        raise BodyTooLarge(f"the body is {len(raw_body)} bytes; at most {limit} are accepted")
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    provider.verify_push(lower, raw_body)
    key = provider.push_key(lower, raw_body)
    return key, {name: lower[name] for name in provider.push_headers if name in lower}


def receive(db: Database, provider: Provider, headers: Mapping[str, str], raw_body: bytes) -> Receipt:
    """Verify ``raw_body`` with its provider and commit it; only then may the receiver answer 2xx.

    Raises ``PushRejected`` (bad or missing signature) or ``BodyTooLarge`` before anything is stored.
    Parsing waits for ``ingest_pending``: a body we cannot map is still kept, never refused, so a
    platform change costs no data."""
    key, kept = verified(provider, headers, raw_body)
    body_id, fresh = pushes.store(db, provider.account, key, raw_body, kept)
    return Receipt(body_id, key, fresh)


def accept(spool: Spool, provider: Provider, headers: Mapping[str, str], raw_body: bytes,
           limit: int = pushes.MAX_BODY, *, checked: tuple[str, dict[str, str]] | None = None) -> Receipt:
    """``receive`` for the webhook receiver (``replydesk.webhooks``): the same checks, committed to
    the receiver's own spool, which never waits for the engine. ``checked``: the receiver verified
    the body already (routing a body among several accounts of one app)."""
    key, kept = checked if checked is not None else verified(provider, headers, raw_body, limit)
    body_id, fresh = spool.put(provider.account, key, raw_body, kept)
    return Receipt(body_id, key, fresh)


def adopt_spooled(db: Database, spool: Spool, account: str, limit: int = 200) -> int:
    """Move the receiver's spooled bodies for ``account`` into the workspace (durably), then forget
    them in the spool; returns how many moved. A crash in between moves one again later, which the
    workspace's dedupe absorbs (only its delivery count grows)."""
    moved = pushes.adopt(db, spool.waiting(account, limit))
    spool.forget(moved)
    return len(moved)


@dataclass
class PushStats:
    bodies: int = 0
    new_messages: int = 0
    unmappable: list[tuple[int, str]] = field(default_factory=list)


def ingest_pending(db: Database, provider: Provider, limit: int = 50) -> PushStats:
    """Parse and ingest the account's stored bodies, oldest first.

    A body its provider cannot parse at all is kept as unmappable with the reason (a provider's bug
    included: one bad body never stops the others)."""
    stats = PushStats()
    for body in pushes.pending(db, provider.account, limit):
        stats.bodies += 1
        try:
            results = provider.parse_push(body.body, body.headers)
        except Exception as exc:  # the platform's payload is untrusted; so is our parser
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("account %s: pushed body %d cannot be mapped: %s", provider.account, body.id, reason)
            pushes.mark_unmappable(db, body.id, reason)
            stats.unmappable.append((body.id, reason))
            continue
        ingested = pushes.ingest_body(db, body.id, results)
        stats.new_messages += ingested.new_messages
        if ingested.rejected and not (ingested.new_messages or ingested.skipped):
            stats.unmappable.append((body.id, ingested.rejected[0][1]))
    return stats
