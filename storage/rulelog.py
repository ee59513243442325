"""What the rules engine reads and writes: one conversation as a rule sees it, the rules' own
events, their timers, and the history a dry run replays. Every statement the rules need is here;
``replydesk.rules`` decides.

The rules' events: ``rule`` (``{"rule", "trigger": "message"|"timer", "message", "since", "done":
[...], "skipped": [...]}``) at the trigger's time, once per rule that acted; each change it made is
also logged as the usual event (``tag``, ``assign`` …) with the actor ``rule:NAME``, so the log
reads "tagged refund by rule refund-words".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from replydesk.storage.db import Database
from replydesk.storage.ingest import TAG_SEP

#: Event kinds a dry run replays to know each conversation's state as it was.
HISTORY_KINDS = ("in", "listened", "joined", "reply", "auto_reply", "status", "tag", "untag", "assign", "escalate",
                 "priority", "reclassify", "rule")


@dataclass
class ConversationFacts:
    """One conversation as a rule sees it (now, for the engine; at its start, for a dry run)."""

    id: str
    account: str
    platform: str
    kind: str
    status: str = "open"
    tags: set[str] = field(default_factory=set)
    assignee: str | None = None
    priority: str = "normal"
    escalated: bool = False
    customer: str = ""
    handle: str = ""
    vip: bool = False
    subject: str = ""
    listening: str | None = None  # the listening query it waits under (not in the inbox yet), or None


@dataclass(frozen=True)
class MessageFacts:
    id: str
    text: str
    author: str
    created_at: float
    rating: int | None
    automatic: str | None = None


_CONV_SQL = ("SELECT c.id, c.account, c.platform, c.kind, c.status, c.tags, c.assignee, c.priority, c.escalated, "
             "coalesce(p.name, ''), coalesce(p.handle, ''), coalesce(p.vip, 0), c.subject, c.listening "
             "FROM conversations c LEFT JOIN contacts p ON p.id = c.contact_id")


def _conv(row: Sequence[Any]) -> ConversationFacts:
    return ConversationFacts(row[0], row[1], row[2], row[3], row[4], {t for t in (row[5] or "").split(TAG_SEP) if t},
                             row[6], row[7], bool(row[8]), row[9], row[10], bool(row[11]), row[12], row[13])


def rating_of(meta: Any) -> int | None:
    """A review's stars as its provider stored them (``meta["rating"]``, 1-5); anything else: None."""
    value = meta.get("rating") if isinstance(meta, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value) if 1 <= value <= 5 else None


def _message(row: Sequence[Any]) -> MessageFacts:
    try:
        meta = json.loads(row[4] or "{}")
    except ValueError:
        meta = {}
    return MessageFacts(row[0], row[1], row[2], row[3], rating_of(meta), row[5])


_MSG_SQL = "SELECT id, text, author, created_at, meta, automatic FROM messages"


def conversation(db: Database, conv_id: str) -> ConversationFacts | None:
    row = db.conn.execute(f"{_CONV_SQL} WHERE c.id=?", (conv_id,)).fetchone()
    return _conv(row) if row else None


def message(db: Database, message_id: str) -> MessageFacts | None:
    row = db.conn.execute(f"{_MSG_SQL} WHERE id=?", (message_id,)).fetchone()
    return _message(row) if row else None


def wait_since(db: Database, conv_id: str) -> tuple[float, str] | None:
    """When the customer's oldest unanswered message was written (and its id), or None when nothing
    waits: after our last reply by a person (an automatic one does not count) or a resolve."""
    row = db.conn.execute(
        "SELECT e.at, json_extract(e.data, '$.message') FROM events e WHERE e.conversation_id=? AND e.kind='in' "
        "AND e.at > coalesce((SELECT max(at) FROM events WHERE conversation_id=? AND (kind='reply' OR "
        "(kind='status' AND json_extract(data, '$.status')='resolved'))), -1e18) "
        "AND json_extract(e.data, '$.message') NOT IN (SELECT coalesce(json_extract(data, '$.message'), '') "
        "FROM events WHERE conversation_id=? AND kind='reclassify') ORDER BY e.at, e.seq LIMIT 1",
        (conv_id, conv_id, conv_id)).fetchone()
    return (row[0], row[1]) if row else None


def record(db: Database, conv_id: str, at: float, data: dict[str, Any]) -> None:
    db.conn.execute("INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
                    (conv_id, at, "rule", f"rule:{data['rule']}", json.dumps(data, ensure_ascii=False)))


def last_reply(db: Database, conv_id: str, rule: str) -> float | None:
    """When this rule last answered this conversation (the trigger's time), or None."""
    row = db.conn.execute(
        "SELECT max(at) FROM events WHERE conversation_id=? AND kind='rule' AND actor=? "
        "AND json_extract(data, '$.replied') = 1", (conv_id, f"rule:{rule}")).fetchone()
    return row[0] if row else None


def timer_fired(db: Database, conv_id: str, rule: str, since: float) -> bool:
    return db.conn.execute(
        "SELECT 1 FROM events WHERE conversation_id=? AND kind='rule' AND actor=? AND "
        "json_extract(data, '$.trigger')='timer' AND json_extract(data, '$.since') = ? LIMIT 1",
        (conv_id, f"rule:{rule}", since)).fetchone() is not None


def mark_automatic(db: Database, message_id: str, reason: str, actor: str) -> str | None:
    """A rule's word that no person wrote this message: it is flagged like a provider's robot, taken
    out of the SLA (``reclassify``), and the conversation stops waiting for an answer to it."""
    row = db.conn.execute("SELECT conversation_id, created_at, automatic FROM messages WHERE id=? AND direction='in'",
                          (message_id,)).fetchone()
    if row is None or row[2]:
        return None
    conv_id = row[0]
    db.conn.execute("UPDATE messages SET automatic=? WHERE id=?", (reason, message_id))
    db.conn.execute("INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
                    (conv_id, row[1], "reclassify", actor,
                     json.dumps({"message": message_id, "as": "automatic", "reason": reason}, ensure_ascii=False)))
    waiting = db.conn.execute(
        "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.conversation_id=? "
        "AND m.direction='in' AND m.automatic IS NULL AND m.created_at > coalesce(c.last_outbound_at, -1e18) LIMIT 1",
        (conv_id,)).fetchone()
    if waiting is None:
        db.conn.execute("UPDATE conversations SET needs_reply=0 WHERE id=?", (conv_id,))
    return conv_id


# ---- timers -----------------------------------------------------------------------------------------


def schedule(db: Database, rule: str, conv_id: str, since: float, due: float) -> None:
    """Wake ``rule`` for ``conv_id`` at ``due`` for the wait that began at ``since``, unless that
    wait's timer is set already."""
    db.conn.execute(
        "INSERT INTO rule_timers(rule, conversation_id, since, due) VALUES (?,?,?,?) "
        "ON CONFLICT(rule, conversation_id) DO UPDATE SET since=excluded.since, due=excluded.due "
        "WHERE rule_timers.since != excluded.since", (rule, conv_id, since, due))


def due_timers(db: Database, now: float, limit: int = 200, accounts: Iterable[str] | None = None
               ) -> list[tuple[str, str, float, float]]:
    """(rule, conversation, since, due) of timers due by ``now``, earliest first; ``accounts``: only
    their conversations' (a team engine fires the timers of the accounts it leads)."""
    if accounts is None:
        return [tuple(r) for r in db.conn.execute(
            "SELECT rule, conversation_id, since, due FROM rule_timers WHERE due <= ? ORDER BY due LIMIT ?",
            (now, limit))]
    names = list(accounts)
    return [tuple(r) for r in db.conn.execute(
        "SELECT t.rule, t.conversation_id, t.since, t.due FROM rule_timers t JOIN conversations c "
        f"ON c.id = t.conversation_id WHERE t.due <= ? AND c.account IN ({','.join('?' * len(names)) or 'NULL'}) "
        "ORDER BY t.due LIMIT ?", (now, *names, limit))]


def drop_timer(db: Database, rule: str, conv_id: str) -> None:
    db.conn.execute("DELETE FROM rule_timers WHERE rule=? AND conversation_id=?", (rule, conv_id))


def drop_timers_except(db: Database, rules: Iterable[str]) -> None:
    """Timers of rules no longer in the config go."""
    names = list(rules)
    db.conn.execute(f"DELETE FROM rule_timers WHERE rule NOT IN ({','.join('?' * len(names)) or 'NULL'})", names)


# ---- history for a dry run --------------------------------------------------------------------------


@dataclass
class History:
    """One conversation's past as a dry run replays it: its facts at the start (no tags, open, as
    the first message found it) and its log, with the customer's messages."""

    conversation: ConversationFacts
    events: list[tuple[int, float, str, str, dict[str, Any]]]  # (seq, at, kind, actor, data)
    messages: dict[str, MessageFacts]


def history(db: Database, since: float, until: float) -> Iterable[History]:
    """Conversations with a customer message that reached us between ``since`` and ``until``, each
    with its whole log (a rule may depend on what happened before the window)."""
    ids = [r[0] for r in db.conn.execute(
        "SELECT DISTINCT conversation_id FROM events WHERE kind IN ('in', 'listened') AND "
        "coalesce(json_extract(data, '$.received'), at) BETWEEN ? AND ? ORDER BY conversation_id",
        (since, until))]
    marks = ",".join("?" * len(HISTORY_KINDS))
    for start in range(0, len(ids), 200):
        chunk = ids[start:start + 200]
        qs = ",".join("?" * len(chunk))
        convs = {r[0]: _conv(r) for r in db.conn.execute(f"{_CONV_SQL} WHERE c.id IN ({qs})", chunk)}
        events: dict[str, list] = {}
        for seq, conv_id, at, kind, actor, data in db.conn.execute(
                f"SELECT seq, conversation_id, at, kind, actor, data FROM events WHERE conversation_id IN ({qs}) "
                f"AND kind IN ({marks}) ORDER BY conversation_id, seq", (*chunk, *HISTORY_KINDS)):
            events.setdefault(conv_id, []).append((seq, at, kind, actor, json.loads(data)))
        messages: dict[str, dict[str, MessageFacts]] = {}
        for row in db.conn.execute(f"{_MSG_SQL.replace('SELECT id', 'SELECT conversation_id, id')} "
                                   f"WHERE conversation_id IN ({qs}) AND direction='in'", chunk):
            messages.setdefault(row[0], {})[row[1]] = _message(row[1:])
        for conv_id in chunk:
            facts = convs.get(conv_id)
            if facts is None:
                continue
            found_by = facts.listening or next((e[4].get("listening") for e in events.get(conv_id, ())
                                                if e[2] == "joined"), None)
            start_state = ConversationFacts(facts.id, facts.account, facts.platform, facts.kind,
                                            customer=facts.customer, handle=facts.handle, vip=facts.vip,
                                            subject=facts.subject, listening=found_by)
            yield History(start_state, events.get(conv_id, []), messages.get(conv_id, {}))
