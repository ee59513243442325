"""Export and import conversations as JSON records (the shape scripts rely on; see README).

Import (``storage.importer``) is idempotent: identities are the exported ids, so re-importing a file
changes nothing. Imported outbound messages keep their state for the record but never enter the
outbox: a review pack must not send anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from replydesk.storage import slastate
from replydesk.storage.db import Database
from replydesk.storage.schema import TAG_SEP
from replydesk.vocabulary import iso


def export_records(db: Database, conv_ids: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """One record per conversation, newest activity first, with messages, tags and SLA state."""
    if conv_ids is None:
        rows = db.conn.execute("SELECT id FROM conversations ORDER BY last_message_at DESC, id")
        conv_ids = [r[0] for r in rows]
    now = db.now()
    for conv_id in conv_ids:
        record = export_record(db, conv_id, now)
        if record is not None:
            yield record


def export_record(db: Database, conv_id: str, now: float) -> dict[str, Any] | None:
    c = db.conn.execute(
        "SELECT c.id, c.account, c.platform, c.kind, c.subject, c.status, c.assignee, c.priority, c.tags, "
        "c.escalated, c.escalation_target, c.snoozed_until, c.created_at, c.last_message_at, "
        "p.native_id, p.name, p.handle, p.vip, c.listening FROM conversations c "
        "LEFT JOIN contacts p ON p.id = c.contact_id "
        "WHERE c.id = ?",
        (conv_id,),
    ).fetchone()
    if c is None:
        return None
    sla = slastate.evaluate_at(db, conv_id, now)
    messages = [
        {"id": m[0], "direction": m[1], "author": m[2], "text": m[3], "created_at": iso(m[4]), "state": m[5],
         "private": bool(m[6]), **({"error": m[7]} if m[7] else {}), **({"automatic": m[8]} if m[8] else {})}
        for m in db.conn.execute(
            "SELECT id, direction, author, text, created_at, state, private, error, automatic FROM messages "
            "WHERE conversation_id=? AND state != 'cancelled' ORDER BY created_at, rowid",
            (conv_id,),
        )
    ]
    return {
        "id": c[0], "account": c[1], "platform": c[2], "kind": c[3],
        "customer": {"id": f"{c[1]}:{c[14]}" if c[14] else None, "name": c[15], "handle": c[16],
                     "vip": bool(c[17])},
        "subject": c[4], "status": c[5], "assignee": c[6], "priority": c[7],
        "tags": [t for t in c[8].split(TAG_SEP) if t], "escalated": bool(c[9]), "escalation_target": c[10],
        "snoozed_until": iso(c[11]), "created_at": iso(c[12]), "last_message_at": iso(c[13]),
        "sla": _sla_json(sla, conv_id, now),
        "listening": c[18],  # the query that found it while it waits in the Listening view, else null
        "messages": messages,
    }


def _sla_json(result: Any, conv_id: str, now: float) -> dict[str, Any]:
    if result is None:
        return {"conversation": conv_id, "policy": None, "at": iso(now), "state": "none", "metrics": []}
    return {
        "conversation": conv_id, "policy": result.policy, "at": iso(now), "state": result.state,
        "metrics": [m.to_json() for m in result.metrics],
    }


def import_records(db: Database, lines: Iterable[str], source: str = "<input>") -> dict[str, int]:
    """Import JSON Lines (or a JSON array) given as text; see ``storage.importer`` for the rules."""
    import io

    from replydesk.storage import importer

    data = "".join(lines).encode("utf-8", "surrogatepass")
    return importer.import_stream(db, io.BufferedReader(io.BytesIO(data)), source).as_json()
