"""Keeps each conversation's SLA columns (the inbox sort key) in step with its event log.

The SLA engine is pure (``replydesk.sla``); this module feeds it the conversation's attributes and
events from SQLite, writes the derived ``sla_*``/``sort_due`` columns, and appends the engine's
transitions (activate, pause, resume, fulfil, breach) to the event log, once each.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence

from replydesk.foreground import step_aside
from replydesk.sla import ConvAttrs, SlaEvent, SlaResult
from replydesk.storage.db import Database
from replydesk.storage.schema import NO_DUE

#: Event kinds the SLA engine reads; everything else in the log is skipped when loading. An
#: ``auto_reply`` (a rule's acknowledgement, a survey) counts only where the policy says so; a
#: ``reclassify`` takes a customer message out (marked automatic by a rule, a survey's answer);
#: ``listened`` (a post a listening query found) starts a clock only under a policy that matches
#: ``listening: true``.
SLA_INPUT_KINDS = ("in", "reply", "status", "auto_reply", "reclassify", "listened")
_CHUNK = 500


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_inputs(db: Database, conv_ids: Sequence[str]) -> dict[str, tuple[ConvAttrs, list[SlaEvent], float | None]]:
    """Attributes, SLA-relevant events and last check time for each conversation."""
    out: dict[str, tuple[ConvAttrs, list[SlaEvent], float | None]] = {}
    events: dict[str, list[SlaEvent]] = defaultdict(list)
    marks = ",".join("?" * len(SLA_INPUT_KINDS))
    for chunk in _chunks(list(conv_ids)):
        qs = ",".join("?" * len(chunk))
        raw_in: dict[str, list[tuple[int, str]]] = {}  # conversation -> (index, data) of its "in" events
        taken_out: dict[str, set[str]] = {}  # conversation -> messages reclassified
        for row in db.conn.execute(
            f"SELECT conversation_id, at, kind, data FROM events WHERE conversation_id IN ({qs}) "
            f"AND kind IN ({marks}) ORDER BY conversation_id, at, seq",
            (*chunk, *SLA_INPUT_KINDS),
        ):
            kind = row[2]
            if kind == "reclassify":
                taken_out.setdefault(row[0], set()).add(json.loads(row[3]).get("message"))
                continue
            if kind == "in":
                raw_in.setdefault(row[0], []).append((len(events[row[0]]), row[3]))
            data = json.loads(row[3]) if kind == "status" else {}
            events[row[0]].append(SlaEvent(at=row[1], kind=kind, data=data))
        for conv_id, messages in taken_out.items():  # rare: parse "in" data only where needed
            drop = {i for i, raw in raw_in.get(conv_id, ()) if json.loads(raw).get("message") in messages}
            events[conv_id] = [e for i, e in enumerate(events[conv_id]) if i not in drop]
        for row in db.conn.execute(
            f"SELECT id, platform, kind, tags, priority, escalated, status, sla_checked_at, listening "
            f"FROM conversations WHERE id IN ({qs})",
            tuple(chunk),
        ):
            attrs = ConvAttrs(
                platform=row[1], kind=row[2], tags=frozenset(t for t in row[3].split("\x1f") if t),
                priority=row[4], escalated=bool(row[5]), status=row[6], listening=row[8] is not None,
            )
            out[row[0]] = (attrs, events.get(row[0], []), row[7])
    return out


def refresh(db: Database, conv_ids: Iterable[str], now: float | None = None) -> dict[str, SlaResult]:
    """Re-evaluate SLAs for ``conv_ids``; call inside the writer's transaction."""
    engine = db.sla
    ids = list(dict.fromkeys(conv_ids))
    if engine is None or not ids:
        return {}
    now = db.now() if now is None else now
    results: dict[str, SlaResult] = {}
    updates = []
    logged = []
    for n, (conv_id, (attrs, events, checked_at)) in enumerate(load_inputs(db, ids).items()):
        if n % 16 == 0:
            step_aside()  # a key in the console's thread of this process paints first
        since = checked_at if checked_at is not None else float("-inf")
        result, transitions = engine.evaluate_with_transitions(attrs, events, since, now)
        results[conv_id] = result
        due = result.due_at
        urgent = result.urgent()
        warn_at = due - urgent.warn_seconds if (due is not None and urgent and urgent.warn_seconds) else None
        updates.append((
            result.policy, result.state, urgent.metric if urgent else None, due, warn_at,
            due if due is not None else NO_DUE, result.at, conv_id,  # result.at >= the last check
        ))
        for at, kind, metric in transitions:
            logged.append((conv_id, at, "sla", "system", json.dumps({"transition": kind, "metric": metric})))
    db.conn.executemany(
        "UPDATE conversations SET sla_policy=?, sla_state=?, sla_metric=?, sla_due_at=?, sla_warn_at=?, sort_due=?, "
        "sla_checked_at=? WHERE id=?",
        updates,
    )
    if logged:
        db.conn.executemany(
            "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)", logged
        )
    return results


def evaluate_at(db: Database, conv_id: str, at: float) -> SlaResult | None:
    """The SLA of one conversation as of ``at`` (replay): nothing is written."""
    if db.sla is None:
        return None
    inputs = load_inputs(db, [conv_id]).get(conv_id)
    if inputs is None:
        return None
    attrs, events, _ = inputs
    return db.sla.evaluate(attrs, [e for e in events if e.at <= at], at)


def due_conversations(db: Database, now: float) -> list[str]:
    """Conversations whose stored deadline or warning time has passed but whose state lags behind."""
    rows = db.conn.execute(
        "SELECT id FROM conversations INDEXED BY conv_due_pending WHERE sla_due_at <= ? AND sla_state != 'breached' "
        "UNION SELECT id FROM conversations INDEXED BY conv_warn_ok WHERE sla_warn_at <= ? AND sla_state = 'ok'",
        (now, now),
    )
    return [r[0] for r in rows]


def policies_fingerprint(db: Database) -> str:
    """A stable digest of the SLA settings in force, to notice a policy edit between runs."""
    import hashlib

    return hashlib.sha256(db.sla.settings.model_dump_json().encode()).hexdigest()[:16]


def apply_policy_changes(db: Database) -> int:
    """Re-evaluate every conversation when the SLA policies changed since the last run.

    A policy edit applies to open conversations at once, from the event log, instead of waiting for
    each conversation's next event (Zendesk's behaviour). Returns how many were re-evaluated.
    """
    if db.sla is None:
        return 0
    fingerprint = policies_fingerprint(db)
    row = db.conn.execute("SELECT value FROM meta WHERE key='sla_policies'").fetchone()
    if row is not None and row[0] == fingerprint:
        return 0
    with db.transaction():
        row = db.conn.execute("SELECT value FROM meta WHERE key='sla_policies'").fetchone()
        if row is not None and row[0] == fingerprint:  # another connection got here first
            return 0
        ids = [r[0] for r in db.conn.execute("SELECT id FROM conversations")]
        for start in range(0, len(ids), 2000):
            refresh(db, ids[start : start + 2000])
        db.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('sla_policies', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (fingerprint,),
        )
    return len(ids)
