"""The next SLA deadlines of open conversations, for the console's alerts.

Two short reads on existing indexes: the soonest breach times (the inbox order, ``conv_open_inbox``)
and the soonest warning times of conversations still in time (``conv_warn_ok``). The console keeps
them and notices, second by second on its own clock, which ones pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from replydesk.storage.db import Database
from replydesk.storage.schema import NO_DUE


@dataclass(frozen=True)
class Deadline:
    conversation_id: str
    platform: str
    customer: str
    metric: str | None
    warn_at: float | None
    due_at: float | None


_SQL = (
    "SELECT c.id, c.platform, coalesce(nullif(p.name, ''), p.handle, ''), c.sla_metric, c.sla_warn_at, c.sla_due_at "
    "FROM conversations c LEFT JOIN contacts p ON p.id = c.contact_id WHERE c.id IN ({ids})"
)


def upcoming(db: Database, now: float, limit: int = 200) -> list[Deadline]:
    """Open inbox conversations whose warning or breach time is the soonest after ``now`` (a
    listening match waits outside the inbox and alerts nobody, as it counts in no header)."""
    due = [r[0] for r in db.conn.execute(
        "SELECT id FROM conversations INDEXED BY conv_open_inbox WHERE status IN ('open','pending') "
        "AND listening IS NULL AND sort_due > ? AND sort_due < ? ORDER BY sort_due LIMIT ?", (now, NO_DUE, limit))]
    warn = [r[0] for r in db.conn.execute(
        "SELECT id FROM conversations INDEXED BY conv_warn_ok WHERE sla_state = 'ok' AND sla_warn_at > ? "
        "AND status IN ('open','pending') AND listening IS NULL ORDER BY sla_warn_at LIMIT ?", (now, limit))]
    ids = list(dict.fromkeys([*due, *warn]))
    if not ids:
        return []
    return [Deadline(*r) for r in db.conn.execute(_SQL.format(ids=",".join("?" * len(ids))), ids)]
