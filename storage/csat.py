"""Satisfaction surveys in the event log: sent after a resolve, answered with a rating.

``csat_survey`` (data ``{"key", "until"}``) is logged when the engine queues a survey (an
automatic reply in the outbox); a customer message that reaches a resolved conversation before
``until`` and reads as a rating (``replydesk.csat.parse_answer``) is logged as ``csat`` (``{"message",
"survey", "score", "satisfied", "how"}``) instead of reopening the conversation, and the message is
``reclassify``-ed so the SLA does not take it for a question waiting for an answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from replydesk.csat import parse_answer
from replydesk.storage.db import Database

CURSOR_KEY = "csat_cursor"


def _event(db: Database, conv_id: str, at: float, kind: str, actor: str, data: dict[str, Any]) -> None:
    db.conn.execute("INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
                    (conv_id, at, kind, actor, json.dumps(data, ensure_ascii=False)))


def pending_survey(db: Database, conv_id: str) -> tuple[float, dict[str, Any]] | None:
    """The conversation's newest survey (when it was queued, its data) if no answer has come yet."""
    row = db.conn.execute(
        "SELECT seq, at, data FROM events WHERE conversation_id=? AND kind='csat_survey' ORDER BY seq DESC LIMIT 1",
        (conv_id,)).fetchone()
    if row is None:
        return None
    if db.conn.execute("SELECT 1 FROM events WHERE conversation_id=? AND kind='csat' AND seq > ? LIMIT 1",
                       (conv_id, row[0])).fetchone():
        return None
    return row[1], json.loads(row[2])


def take_answers(db: Database, conv_id: str, messages: Sequence[tuple[str, str, float]]) -> set[str]:
    """Of a resolved conversation's new customer ``messages`` (id, text, written at), the one that
    answers its survey: recorded as the rating; the others are new messages as usual."""
    survey = pending_survey(db, conv_id)
    if survey is None:
        return set()
    asked_at, data = survey
    until = data.get("until") if isinstance(data.get("until"), int | float) else asked_at
    for mid, text, at in sorted(messages, key=lambda m: m[2]):
        if not asked_at <= at <= until:
            continue
        rating = parse_answer(text)
        if rating is None:
            continue
        _event(db, conv_id, at, "csat", "customer",
               {"message": mid, "survey": data.get("key"), **rating.to_json()})
        _event(db, conv_id, at, "reclassify", "csat", {"message": mid, "as": "csat"})
        db.conn.execute("UPDATE conversations SET needs_reply=0 WHERE id=?", (conv_id,))
        return {mid}
    return set()


def cursor(db: Database) -> int | None:
    row = db.conn.execute("SELECT value FROM meta WHERE key=?", (CURSOR_KEY,)).fetchone()
    return int(row[0]) if row else None


def set_cursor(db: Database, seq: int) -> None:
    db.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (CURSOR_KEY, str(seq)))


def last_seq(db: Database) -> int:
    return db.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]


def resolved_after(db: Database, seq: int, limit: int = 200) -> list[tuple[int, str, float]]:
    """Resolves logged after ``seq``: (seq, conversation id, at), in log order."""
    return [(r[0], r[1], r[2]) for r in db.conn.execute(
        "SELECT seq, conversation_id, at FROM events WHERE seq > ? AND kind='status' "
        "AND json_extract(data, '$.status') = 'resolved' ORDER BY seq LIMIT ?", (seq, limit))]


def survey_target(db: Database, conv_id: str) -> tuple[str, str, str, str] | None:
    """(account, platform, kind, status) of the conversation a survey would go to."""
    row = db.conn.execute("SELECT account, platform, kind, status FROM conversations WHERE id=?", (conv_id,)).fetchone()
    return tuple(row) if row else None


def surveyed_since(db: Database, conv_id: str, since: float) -> bool:
    return db.conn.execute("SELECT 1 FROM events WHERE conversation_id=? AND kind='csat_survey' AND at >= ? LIMIT 1",
                           (conv_id, since)).fetchone() is not None


def record_survey(db: Database, conv_id: str, key: str, until: float) -> None:
    _event(db, conv_id, db.now(), "csat_survey", "csat", {"key": key, "until": until})


def record_skipped(db: Database, conv_id: str, reason: str) -> None:
    _event(db, conv_id, db.now(), "csat_skipped", "csat", {"reason": reason})


def ratings(db: Database, conv_ids: Sequence[str]) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    """Each conversation's recorded ratings: (at, data), oldest first (the report reads them)."""
    out: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    ids = list(conv_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        qs = ",".join("?" * len(chunk))
        for conv_id, at, data in db.conn.execute(
                f"SELECT conversation_id, at, data FROM events WHERE conversation_id IN ({qs}) AND kind='csat' "
                "ORDER BY conversation_id, at, seq", chunk):
            out.setdefault(conv_id, []).append((at, json.loads(data)))
    return out
