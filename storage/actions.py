"""What a person does to conversations: tag, assign, escalate, resolve, snooze, note, draft.

The CLI and the TUI both call these, so a keypress and a command are the same change. Each action
commits its row changes and an event in one transaction before anything touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from replydesk.model import STATUSES
from replydesk.slaspec import PRIORITIES
from replydesk.storage import slastate
from replydesk.storage.db import Database
from replydesk.storage.ingest import TAG_SEP, clean_text


class ActionError(ValueError):
    """A request that cannot apply (unknown conversation, bad value); the message says why."""


def _event(db: Database, conv_id: str, kind: str, actor: str, data: dict, at: float | None = None) -> None:
    db.conn.execute(
        "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
        (conv_id, db.now() if at is None else at, kind, actor, json.dumps(data, ensure_ascii=False)),
    )


def _require(db: Database, conv_ids: Sequence[str]) -> None:
    for conv_id in conv_ids:
        if not db.conn.execute("SELECT 1 FROM conversations WHERE id=?", (conv_id,)).fetchone():
            raise ActionError(f"no conversation {conv_id!r}")


def normalise_tag(tag: str) -> str:
    tag = " ".join(clean_text(tag).split()).strip().lower()
    if not tag:
        raise ActionError("a tag cannot be empty")
    return tag


def _sync_tag_column(db: Database, conv_id: str) -> None:
    tags = [r[0] for r in db.conn.execute(
        "SELECT tag FROM conversation_tags WHERE conversation_id=? ORDER BY tag", (conv_id,)
    )]
    db.conn.execute("UPDATE conversations SET tags=? WHERE id=?", (TAG_SEP.join(tags), conv_id))


def tag(db: Database, conv_ids: Sequence[str], tags: Iterable[str], actor: str = "me") -> None:
    clean = [normalise_tag(t) for t in tags]
    with db.transaction():
        _require(db, conv_ids)
        for conv_id in conv_ids:
            for t in clean:
                cur = db.conn.execute(
                    "INSERT OR IGNORE INTO conversation_tags(conversation_id, tag) VALUES (?,?)", (conv_id, t)
                )
                if cur.rowcount:
                    _event(db, conv_id, "tag", actor, {"tag": t})
            _sync_tag_column(db, conv_id)
        slastate.refresh(db, conv_ids)  # policies can match on tags


def untag(db: Database, conv_ids: Sequence[str], tags: Iterable[str], actor: str = "me") -> None:
    clean = [normalise_tag(t) for t in tags]
    with db.transaction():
        _require(db, conv_ids)
        for conv_id in conv_ids:
            for t in clean:
                cur = db.conn.execute(
                    "DELETE FROM conversation_tags WHERE conversation_id=? AND tag=?", (conv_id, t)
                )
                if cur.rowcount:
                    _event(db, conv_id, "untag", actor, {"tag": t})
            _sync_tag_column(db, conv_id)
        slastate.refresh(db, conv_ids)


def assign(db: Database, conv_ids: Sequence[str], who: str | None, actor: str = "me") -> None:
    who = clean_text(who).strip() or None if who is not None else None
    with db.transaction():
        _require(db, conv_ids)
        for conv_id in conv_ids:
            cur = db.conn.execute("UPDATE conversations SET assignee=? WHERE id=? AND assignee IS NOT ?",
                                  (who, conv_id, who))
            if cur.rowcount:  # assigning to whoever has it already changes nothing, logs nothing
                _event(db, conv_id, "assign", actor, {"assignee": who})


def set_priority(db: Database, conv_ids: Sequence[str], priority: str, actor: str = "me") -> None:
    """Set the priority (low, normal, high, urgent); SLA policies can match on it."""
    if priority not in PRIORITIES:
        raise ActionError(f"priority must be one of {', '.join(PRIORITIES)}")
    with db.transaction():
        _require(db, conv_ids)
        for conv_id in conv_ids:
            cur = db.conn.execute("UPDATE conversations SET priority=? WHERE id=? AND priority != ?",
                                  (priority, conv_id, priority))
            if cur.rowcount:
                _event(db, conv_id, "priority", actor, {"priority": priority})
        slastate.refresh(db, conv_ids)


def escalate(db: Database, conv_ids: Sequence[str], *, target: str = "helpdesk", reason: str = "",
             note: str = "", actor: str = "me") -> None:
    """Mark escalated, raise priority to at least high, and record where and why."""
    with db.transaction():
        _require(db, conv_ids)
        for conv_id in conv_ids:
            db.conn.execute(
                "UPDATE conversations SET escalated=1, escalation_target=?, "
                "priority=CASE WHEN priority IN ('low','normal') THEN 'high' ELSE priority END WHERE id=?",
                (target, conv_id),
            )
            _event(db, conv_id, "escalate", actor, {"target": target, "reason": reason, "note": note})
            if note:
                add_note(db, conv_id, note, actor=actor)
        slastate.refresh(db, conv_ids)


def set_status(db: Database, conv_ids: Sequence[str], status: str, *, until: float | None = None,
               actor: str = "me") -> list[str]:
    """Set the status; returns the conversations it changed. One already in that status (and, for
    a snooze, until the same time) is left alone: no event, so reopening an open conversation
    neither says nor logs that it did anything."""
    if status not in STATUSES:
        raise ActionError(f"status must be one of {', '.join(STATUSES)}")
    if status == "snoozed" and until is None:
        raise ActionError("snoozing needs a time to wake up")
    changed: list[str] = []
    with db.transaction():
        _require(db, conv_ids)
        for conv_id in conv_ids:
            old, old_until = db.conn.execute(
                "SELECT status, snoozed_until FROM conversations WHERE id=?", (conv_id,)).fetchone()
            if old == status and (status != "snoozed" or old_until == until):
                continue
            db.conn.execute(
                "UPDATE conversations SET status=?, snoozed_until=? WHERE id=?",
                (status, until if status == "snoozed" else None, conv_id),
            )
            data = {"status": status, "from": old}
            if until is not None:
                data["until"] = until
            _event(db, conv_id, "status", actor, data)
            changed.append(conv_id)
        slastate.refresh(db, changed)
    return changed


def resolve(db: Database, conv_ids: Sequence[str], actor: str = "me") -> list[str]:
    return set_status(db, conv_ids, "resolved", actor=actor)


def reopen(db: Database, conv_ids: Sequence[str], actor: str = "me") -> list[str]:
    return set_status(db, conv_ids, "open", actor=actor)


def snooze(db: Database, conv_ids: Sequence[str], until: float, actor: str = "me") -> list[str]:
    return set_status(db, conv_ids, "snoozed", until=until, actor=actor)


@dataclass(frozen=True)
class TriageState:
    """What triage can change on one conversation, as it was: undo puts it back."""

    id: str
    status: str
    snoozed_until: float | None
    assignee: str | None
    priority: str
    escalated: bool
    escalation_target: str | None
    tags: tuple[str, ...]


def snapshot(db: Database, conv_ids: Sequence[str]) -> list[TriageState]:
    """The triage state of ``conv_ids`` now (read before an action, for its undo)."""
    out = []
    for conv_id in conv_ids:
        r = db.conn.execute(
            "SELECT status, snoozed_until, assignee, priority, escalated, escalation_target, tags "
            "FROM conversations WHERE id=?", (conv_id,)).fetchone()
        if r is not None:
            out.append(TriageState(conv_id, r[0], r[1], r[2], r[3], bool(r[4]), r[5],
                                   tuple(t for t in r[6].split(TAG_SEP) if t)))
    return out


def restore(db: Database, states: Sequence[TriageState], actor: str = "me") -> list[str]:
    """Put conversations back as ``states`` recorded them (undo), with an event for each change,
    so the log keeps both the action and its undo. Returns the conversations it changed."""
    changed: set[str] = set()
    with db.transaction():
        for was in states:
            now = next(iter(snapshot(db, [was.id])), None)
            if now is None:
                continue
            if (now.status, now.snoozed_until) != (was.status, was.snoozed_until):
                changed.update(set_status(db, [was.id], was.status, until=was.snoozed_until, actor=actor))
            if now.assignee != was.assignee:
                assign(db, [was.id], was.assignee, actor=actor)
                changed.add(was.id)
            added = [t for t in now.tags if t not in was.tags]
            removed = [t for t in was.tags if t not in now.tags]
            if added:
                untag(db, [was.id], added, actor=actor)
            if removed:
                tag(db, [was.id], removed, actor=actor)
            if added or removed:
                changed.add(was.id)
            if (now.escalated, now.escalation_target, now.priority) != (
                    was.escalated, was.escalation_target, was.priority):
                db.conn.execute("UPDATE conversations SET escalated=?, escalation_target=?, priority=? WHERE id=?",
                                (int(was.escalated), was.escalation_target, was.priority, was.id))
                _event(db, was.id, "escalate" if was.escalated else "deescalate", actor,
                       {"target": was.escalation_target, "undo": True})
                slastate.refresh(db, [was.id])
                changed.add(was.id)
    return sorted(changed)


def wake_snoozed(db: Database) -> list[str]:
    """Snoozes that have run out go back to open (the engine calls this on its tick)."""
    now = db.now()
    ids = [r[0] for r in db.conn.execute(
        "SELECT id FROM conversations WHERE status='snoozed' AND snoozed_until <= ?", (now,)
    )]
    if ids:
        set_status(db, ids, "open", actor="system")
    return ids


def add_note(db: Database, conv_id: str, text: str, actor: str = "me") -> str:
    """An internal note: stored in the thread, never sent anywhere, no SLA effect."""
    text = clean_text(text)
    if not text.strip():
        raise ActionError("a note cannot be empty")
    with db.transaction():
        _require(db, [conv_id])
        account = db.conn.execute("SELECT account FROM conversations WHERE id=?", (conv_id,)).fetchone()[0]
        seq = db.conn.execute("SELECT count(*) FROM messages WHERE conversation_id=?", (conv_id,)).fetchone()[0]
        now = db.now()
        msg_id = f"{account}:note:{conv_id.split(':', 1)[-1]}:{seq}:{int(now * 1000)}"
        db.conn.execute(
            "INSERT INTO messages(id, conversation_id, account, native_id, direction, author, text, created_at, "
            "state) VALUES (?,?,?,?,?,?,?,?,?)",
            (msg_id, conv_id, account, msg_id, "note", actor, text, now, "received"),
        )
        _event(db, conv_id, "note", actor, {"message": msg_id})
    return msg_id


def mark_read(db: Database, conv_id: str) -> None:
    with db.transaction():
        db.conn.execute("UPDATE conversations SET unread=0 WHERE id=? AND unread=1", (conv_id,))


def save_draft(db: Database, conv_id: str, text: str, private: bool = False) -> None:
    """Drafts are stored as typed, on every change, so closing or a crash never loses them."""
    with db.transaction():
        if text.strip():
            db.conn.execute(
                "INSERT INTO drafts(conversation_id, text, private, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(conversation_id) DO UPDATE SET text=excluded.text, private=excluded.private, "
                "updated_at=excluded.updated_at",
                (conv_id, text, int(private), db.now()),
            )
        else:
            db.conn.execute("DELETE FROM drafts WHERE conversation_id=?", (conv_id,))
