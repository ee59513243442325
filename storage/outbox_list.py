"""The outbox as the console lists it: every reply still waiting, with its conversation's customer."""

from __future__ import annotations

from dataclasses import dataclass

from replydesk.storage.db import Database
from replydesk.storage.outbox import BLOCKING, OutboxItem, pending


@dataclass(frozen=True)
class OutboxEntry:
    item: OutboxItem
    customer: str
    platform: str


def waiting(db: Database, states: tuple[str, ...] = BLOCKING) -> list[OutboxEntry]:
    """Queued (due or scheduled), sending, failed and unknown replies, oldest first."""
    items = pending(db, states)
    if not items:
        return []
    ids = list(dict.fromkeys(i.conversation_id for i in items))
    who = {r[0]: (r[1], r[2]) for r in db.conn.execute(
        "SELECT c.id, coalesce(nullif(p.name, ''), p.handle, ''), c.platform FROM conversations c "
        f"LEFT JOIN contacts p ON p.id = c.contact_id WHERE c.id IN ({','.join('?' * len(ids))})", ids)}
    return [OutboxEntry(i, *who.get(i.conversation_id, ("", ""))) for i in items]


def leaving_soon(db: Database, now: float, within: float) -> list[OutboxItem]:
    """Queued replies that leave within ``within`` seconds of ``now`` (the undo window): quitting
    now would keep them waiting until replydesk syncs again."""
    return [i for i in pending(db, ("queued", "sending")) if i.not_before <= now + within]


def scheduled(db: Database, now: float, after: float) -> list[OutboxItem]:
    """Queued replies scheduled for later than ``now + after``."""
    return [i for i in pending(db, ("queued",)) if i.not_before > now + after]
