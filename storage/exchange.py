"""Export and import conversations as JSON records (the shape scripts rely on; see README).

Import is idempotent: identities are the exported ids, so re-importing a file changes nothing.
Imported outbound messages keep their state for the record but never enter the outbox: a review
pack must not send anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from replydesk.model import (
    DELIVERY_STATES,
    KINDS,
    STATUSES,
    Contact,
    FetchResult,
    IncomingMessage,
    iso,
    parse_iso,
)
from replydesk.slaconfig import PRIORITIES
from replydesk.storage import slastate
from replydesk.storage.actions import _event, normalise_tag, reindex_conversations
from replydesk.storage.db import Database
from replydesk.storage.ingest import TAG_SEP, IngestStats, _ingest_one, ensure_account


class ImportError_(ValueError):
    """A record that does not follow the export shape; the message names the line and field."""


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


def _need(record: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in record:
        raise ImportError_(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        raise ImportError_(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _native(full_id: str, account: str) -> str:
    prefix = f"{account}:"
    return full_id[len(prefix):] if full_id.startswith(prefix) else full_id


def import_records(db: Database, lines: Iterable[str], source: str = "<input>") -> dict[str, int]:
    """Import JSON Lines (or a JSON array, one record per element). Returns counts."""
    counts = {"conversations": 0, "messages": 0}
    records: list[tuple[str, dict]] = []
    text = "".join(lines)
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = [(f"{source}: record {i + 1}", r) for i, r in enumerate(json.loads(text))]
        else:
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    records.append((f"{source}:{n}", json.loads(line)))
    except json.JSONDecodeError as exc:
        raise ImportError_(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    with db.transaction():
        for where, record in records:
            if not isinstance(record, dict):
                raise ImportError_(f"{where}: expected an object")
            _import_one(db, record, where, counts)
    return counts


def _import_one(db: Database, r: dict, where: str, counts: dict[str, int]) -> None:
    conv_id = _need(r, "id", str, where)
    account = _need(r, "account", str, where)
    platform = _need(r, "platform", str, where)
    kind = _need(r, "kind", str, where)
    if kind not in KINDS:
        raise ImportError_(f"{where}: kind must be one of {', '.join(KINDS)}")
    customer = r.get("customer") or {}
    if not isinstance(customer, dict):
        raise ImportError_(f"{where}: customer must be an object")
    msgs = _need(r, "messages", list, where)
    status = r.get("status", "open")
    if status not in STATUSES:
        raise ImportError_(f"{where}: status must be one of {', '.join(STATUSES)}")
    priority = r.get("priority") or "normal"
    if priority not in PRIORITIES:
        raise ImportError_(f"{where}: priority must be one of {', '.join(PRIORITIES)}")
    ensure_account(db, account, "import", platform)
    contact = Contact(
        native_id=_native(str(customer.get("id") or customer.get("handle") or customer.get("name") or "unknown"),
                          account),
        name=str(customer.get("name") or ""), handle=str(customer.get("handle") or ""),
        vip=bool(customer.get("vip", False)),
    )
    conv_native = _native(conv_id, account)
    incoming = []
    for i, m in enumerate(msgs):
        mw = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            raise ImportError_(f"{mw}: expected an object")
        direction = _need(m, "direction", str, mw)
        state = m.get("state", "received")
        if state not in DELIVERY_STATES:
            raise ImportError_(f"{mw}: state must be one of {', '.join(DELIVERY_STATES)}")
        try:
            created = parse_iso(_need(m, "created_at", str, mw))
        except ValueError as exc:
            raise ImportError_(f"{mw}: created_at is not an ISO 8601 time") from exc
        incoming.append(IncomingMessage(
            native_id=_native(_need(m, "id", str, mw), account), conversation_native_id=conv_native,
            platform=platform, kind=kind, contact=contact, text=_need(m, "text", str, mw), created_at=created,
            direction=direction, author=str(m.get("author") or ""), subject=str(r.get("subject") or ""),
            automatic=m["automatic"] if isinstance(m.get("automatic"), str) and m["automatic"] else None,
        ))
    stats = IngestStats()
    listening = r.get("listening") if isinstance(r.get("listening"), str) and r.get("listening") else None
    _ingest_one(db, account, FetchResult(messages=incoming, cursor={}, listening=listening), stats)
    if stats.rejected:
        raise ImportError_(f"{where}: {stats.rejected[0][1]}")
    if not db.conn.execute("SELECT 1 FROM conversations WHERE id=?", (conv_id,)).fetchone():
        raise ImportError_(f"{where}: a conversation needs at least one message")
    # Notes and sent replies keep their recorded state; imported replies are never queued to send.
    for m in msgs:
        if m.get("direction") == "note" or m.get("private"):
            db.conn.execute(
                "UPDATE messages SET private=?, state=? WHERE id=?",
                (int(bool(m.get("private"))), m.get("state", "received"), f"{account}:{_native(m['id'], account)}"),
            )
        elif m.get("direction") == "out" and m.get("state") not in (None, "sent"):
            db.conn.execute("UPDATE messages SET state=? WHERE id=?",
                            (m["state"], f"{account}:{_native(m['id'], account)}"))
    tags = sorted({normalise_tag(t) for t in r.get("tags") or [] if isinstance(t, str) and t.strip()})
    old = db.conn.execute(
        "SELECT status, assignee, escalated, tags FROM conversations WHERE id=?", (conv_id,)
    ).fetchone()
    escalated = bool(r.get("escalated", False))
    snoozed = r.get("snoozed_until")
    db.conn.execute(
        "UPDATE conversations SET status=?, assignee=?, priority=?, escalated=?, escalation_target=?, "
        "snoozed_until=?, tags=? WHERE id=?",
        (status, r.get("assignee"), priority, int(escalated), r.get("escalation_target"),
         parse_iso(snoozed) if isinstance(snoozed, str) else None, TAG_SEP.join(tags), conv_id),
    )
    db.conn.execute("DELETE FROM conversation_tags WHERE conversation_id=?", (conv_id,))
    db.conn.executemany("INSERT INTO conversation_tags(conversation_id, tag) VALUES (?,?)",
                        [(conv_id, t) for t in tags])
    # Record what the import changed, so the SLA replay sees the status history it can know.
    if old[0] != status:
        _event(db, conv_id, "status", "import", {"status": status, "from": old[0]})
    if old[1] != r.get("assignee"):
        _event(db, conv_id, "assign", "import", {"assignee": r.get("assignee")})
    if bool(old[2]) != escalated and escalated:
        _event(db, conv_id, "escalate", "import", {"target": r.get("escalation_target")})
    if old[3] != TAG_SEP.join(tags):
        _event(db, conv_id, "tag", "import", {"tags": tags})
    reindex_conversations(db, [conv_id])
    slastate.refresh(db, [conv_id])
    counts["conversations"] += 1
    counts["messages"] += stats.new_messages
