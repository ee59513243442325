"""The outbox: a reply is durable before it is sent, and leaves exactly once, in order.

Life of a reply: ``queued`` (written with the thread message in one transaction; may wait for an
undo window or a scheduled time) → ``sending`` (committed *before* the network call) → ``sent``
(remote id recorded) or back to ``queued`` with a retry time, or ``failed`` (reason kept; blocks
later replies in the same conversation) or ``unknown`` (the platform cannot tell us; the user decides).
A row found in ``sending`` after a restart is an uncertain send: the engine reconciles it.

``attempts`` counts the attempts that may have reached the platform: one the platform refused outright
(429, 401/403, no network) is handed back with ``refused=True`` and does not count, so only a reply
with attempts > 0 can have been posted without our knowing.

Order: a reply waits for every earlier reply in its conversation that is still queued, sending,
failed or unknown, except one scheduled for later (``--at`` or an undo window) that has not come due:
a reply written for 10:00 does not hold back a "thanks!" written for now. Such a row is told from
one waiting to retry by ``last_error``, which every retry sets and only a fresh (or user-retried,
hence due) reply lacks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from replydesk.model import iso
from replydesk.storage import slastate
from replydesk.storage.actions import ActionError, _event, _require
from replydesk.storage.db import Database
from replydesk.storage.ingest import clean_text
from replydesk.storage.queries import ReplyTarget, reply_target

#: States in which a reply still holds its place in its conversation's queue.
BLOCKING = ("queued", "sending", "failed", "unknown")


@dataclass(frozen=True)
class OutboxItem:
    key: str
    conversation_id: str
    message_id: str
    account: str
    private: bool
    text: str
    created_at: float
    not_before: float
    state: str
    attempts: int
    last_error: str | None
    remote_id: str | None


_COLS = ("key, conversation_id, message_id, account, private, text, created_at, not_before, state, attempts, "
         "last_error, remote_id")


def _item(r: tuple) -> OutboxItem:
    return OutboxItem(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], r[11])


class AutomaticRecipient(ActionError):
    """The reply would answer a message no person wrote (a bounce, an out-of-office reply)."""

    def __init__(self, conv_id: str, reason: str) -> None:
        super().__init__(f"{conv_id}: the message a reply would answer is automatic ({reason}); "
                         "the reply was not queued")
        self.reason = reason


def queue_reply(db: Database, conv_id: str, text: str, *, private: bool = False, delay: float = 0.0,
                at: float | None = None, actor: str = "me", to_automatic: bool = False) -> str:
    """Queue a reply; returns its idempotency key. ``delay`` is the undo window, ``at`` a send-later time.

    A reply whose conversation holds only automatic inbound mail (a bounce, an out-of-office or a
    newsletter) would go to a robot: it raises ``AutomaticRecipient`` unless ``to_automatic`` says
    the user confirmed it (the console asks; the CLI wants ``--force``)."""
    text = clean_text(text)
    if not text.strip():
        raise ActionError("a reply cannot be empty")
    key = uuid.uuid4().hex
    now = db.now()
    not_before = max(now + delay, at or 0.0)
    with db.transaction():
        _require(db, [conv_id])
        target = reply_target(db, conv_id)
        if target is not None and target.automatic and not to_automatic:
            raise AutomaticRecipient(conv_id, target.automatic)
        account = db.conn.execute("SELECT account FROM conversations WHERE id=?", (conv_id,)).fetchone()[0]
        msg_id = f"{account}:out:{key}"
        seq = db.conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM outbox").fetchone()[0]
        db.conn.execute(
            "INSERT INTO messages(id, conversation_id, account, native_id, direction, author, text, created_at, "
            "state, private) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (msg_id, conv_id, account, f"out:{key}", "out", actor, text, now, "queued", int(private)),
        )
        db.conn.execute(
            f"INSERT INTO outbox({_COLS}, updated_at, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (key, conv_id, msg_id, account, int(private), text, now, not_before, "queued", 0, None, None, now, seq),
        )
        _event(db, conv_id, "queued", actor, {"key": key, "private": private, "not_before": not_before})
        db.conn.execute("DELETE FROM drafts WHERE conversation_id=?", (conv_id,))
    return key


def get(db: Database, key: str) -> OutboxItem | None:
    r = db.conn.execute(f"SELECT {_COLS} FROM outbox WHERE key=?", (key,)).fetchone()
    return _item(tuple(r)) if r else None


def pending(db: Database, states: tuple[str, ...] = BLOCKING) -> list[OutboxItem]:
    qs = ",".join("?" * len(states))
    return [_item(tuple(r)) for r in db.conn.execute(
        f"SELECT {_COLS} FROM outbox WHERE state IN ({qs}) ORDER BY seq", states
    )]


def ready(db: Database, account: str | None = None, limit: int = 50) -> list[OutboxItem]:
    """Queued replies due now whose conversation has nothing earlier still waiting or stuck."""
    now = db.now()
    sql = (
        f"SELECT {_COLS} FROM outbox o WHERE o.state = 'queued' AND o.not_before <= ? "
        "AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.conversation_id = o.conversation_id "
        "  AND e.seq < o.seq AND e.state IN ('queued','sending','failed','unknown') "
        "  AND NOT (e.state = 'queued' AND e.last_error IS NULL AND e.not_before > ?))"
    )
    params: list = [now, now]
    if account is not None:
        sql += " AND o.account = ?"
        params.append(account)
    sql += " ORDER BY o.seq LIMIT ?"
    params.append(limit)
    return [_item(tuple(r)) for r in db.conn.execute(sql, params)]


def in_flight(db: Database, account: str | None = None) -> list[OutboxItem]:
    """Rows left in ``sending`` (a crash or kill mid-send): their outcome must be reconciled."""
    sql = f"SELECT {_COLS} FROM outbox WHERE state='sending'"
    params: tuple = ()
    if account is not None:
        sql += " AND account=?"
        params = (account,)
    return [_item(tuple(r)) for r in db.conn.execute(sql + " ORDER BY seq", params)]


def needing_attention(db: Database, account: str) -> dict[str, int]:
    """How many of the account's replies wait for the user (``failed``, ``unknown``), by state."""
    return dict(db.conn.execute(
        "SELECT state, count(*) FROM outbox WHERE account=? AND state IN ('failed','unknown') GROUP BY state",
        (account,),
    ).fetchall())


@dataclass(frozen=True)
class ReplyContext:
    """What a reply answers, as stored: the conversation's row and the message it answers.

    ``conversation`` is (native_id, kind, meta JSON, customer handle); ``last_inbound`` is the
    customer's newest message (never a robot's, see ``queries.reply_target``) or None. The engine
    assembles the provider's ``OutgoingReply`` from them.
    """

    conversation: tuple[str, str, str | None, str]
    last_inbound: ReplyTarget | None


def reply_context(db: Database, conv_id: str) -> ReplyContext:
    """The stored rows a reply to ``conv_id`` is built from (see ``ReplyContext``)."""
    row = db.conn.execute(
        "SELECT c.native_id, c.kind, c.meta, coalesce(p.handle, '') FROM conversations c "
        "LEFT JOIN contacts p ON p.id = c.contact_id WHERE c.id = ?",
        (conv_id,),
    ).fetchone()
    if row is None:
        raise ActionError(f"no conversation {conv_id}")
    return ReplyContext(tuple(row), reply_target(db, conv_id))


def _set(db: Database, key: str, state: str, **cols: object) -> None:
    sets = ", ".join(f"{c}=?" for c in cols)
    db.conn.execute(
        f"UPDATE outbox SET state=?, updated_at=?{', ' + sets if sets else ''} WHERE key=?",
        (state, db.now(), *cols.values(), key),
    )
    db.conn.execute(
        "UPDATE messages SET state=?, error=? WHERE id=(SELECT message_id FROM outbox WHERE key=?)",
        (state, cols.get("last_error"), key),
    )


def mark_sending(db: Database, key: str) -> OutboxItem | None:
    """Commit 'sending' before the network call: after a crash we know the send may have happened.

    Only a still-queued reply moves; the row is returned as committed, so what leaves is the text as
    it is now (an edit or a discard from the UI between the engine's read and this write wins).
    None when the reply is no longer queued.
    """
    with db.transaction():
        item = get(db, key)
        if item is None or item.state != "queued":
            return None
        db.conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE key=?", (key,))
        _set(db, key, "sending")
        return get(db, key)


def mark_sent(db: Database, key: str, remote_id: str, sent_at: float) -> None:
    """Record delivery. The thread message takes the platform's id, so a later fetch of the same post
    upserts onto it instead of showing our reply twice."""
    with db.transaction():
        item = get(db, key)
        if item is None or item.state == "sent":
            return
        new_id = f"{item.account}:{remote_id}"
        clash = db.conn.execute("SELECT 1 FROM messages WHERE id=?", (new_id,)).fetchone()
        if clash:  # the platform's copy arrived by sync first: keep it, drop our placeholder
            db.conn.execute("DELETE FROM messages WHERE id=?", (item.message_id,))
            db.conn.execute("UPDATE messages SET state='sent' WHERE id=?", (new_id,))
        else:
            db.conn.execute(
                "UPDATE messages SET id=?, native_id=?, state='sent', error=NULL, created_at=? WHERE id=?",
                (new_id, remote_id, sent_at, item.message_id),
            )
        db.conn.execute(
            "UPDATE outbox SET state='sent', remote_id=?, message_id=?, last_error=NULL, updated_at=? WHERE key=?",
            (remote_id, new_id, db.now(), key),
        )
        db.conn.execute(
            "UPDATE conversations SET last_outbound_at=max(coalesce(last_outbound_at, 0), ?), "
            "last_message_at=max(last_message_at, ?), needs_reply=0, unread=0, "
            "snippet=CASE WHEN ? >= last_message_at THEN ? ELSE snippet END WHERE id=?",
            (sent_at, sent_at, sent_at, " ".join(item.text.split())[:160], item.conversation_id),
        )
        if not clash:
            _event(db, item.conversation_id, "reply", "me",
                   {"key": key, "remote_id": remote_id, "private": item.private}, at=sent_at)
        slastate.refresh(db, [item.conversation_id])


def mark_retry(db: Database, key: str, error: str, retry_at: float, *, refused: bool = False) -> None:
    """A transient failure: back to queued, not before ``retry_at``; the reason stays visible.

    ``refused``: the platform turned the request away before acting on it (429, auth, no network),
    so the attempt ``mark_sending`` counted is taken back: it neither uses up a retry nor makes the
    reply uncertain.
    """
    with db.transaction():
        if refused:
            db.conn.execute("UPDATE outbox SET attempts = max(attempts - 1, 0) WHERE key=?", (key,))
        _set(db, key, "queued", last_error=error, not_before=retry_at)


def mark_failed(db: Database, key: str, error: str) -> None:
    with db.transaction():
        _set(db, key, "failed", last_error=error)
        item = get(db, key)
        if item:
            _event(db, item.conversation_id, "send_failed", "system", {"key": key, "error": error})


def mark_unknown(db: Database, key: str, reason: str) -> None:
    with db.transaction():
        _set(db, key, "unknown", last_error=reason)
        item = get(db, key)
        if item:
            _event(db, item.conversation_id, "send_unknown", "system", {"key": key, "reason": reason})


def retry(db: Database, key: str, text: str | None = None) -> None:
    """The user's answer to failed/unknown (or "send now" for a queued one): send again, optionally edited."""
    with db.transaction():
        item = get(db, key)
        if item is None or item.state not in ("failed", "unknown", "queued"):
            raise ActionError(f"reply {key} is not waiting for a decision")
        if text is not None:
            text = clean_text(text)
            db.conn.execute("UPDATE outbox SET text=? WHERE key=?", (text, key))
            db.conn.execute("UPDATE messages SET text=? WHERE id=?", (text, item.message_id))
        # 'unknown': the user checked the platform and it is not there, so it is no longer uncertain.
        # 'failed': a fresh retry budget, but still possibly posted (a lookup-capable platform checks).
        attempts = {"unknown": 0, "failed": min(item.attempts, 1)}.get(item.state, item.attempts)
        db.conn.execute("UPDATE outbox SET attempts=? WHERE key=?", (attempts, key))
        _set(db, key, "queued", last_error=None, not_before=db.now())


def confirm_sent(db: Database, key: str) -> None:
    """The user checked the platform and the 'unknown' reply is there: record it as sent."""
    item = get(db, key)
    if item is None or item.state != "unknown":
        raise ActionError(f"reply {key} is not marked unknown")
    mark_sent(db, key, item.remote_id or f"confirmed:{key}", db.now())


def cancel(db: Database, key: str) -> OutboxItem:
    """Undo or discard: only a reply that has not started leaving can be taken back."""
    with db.transaction():
        item = get(db, key)
        if item is None:
            raise ActionError(f"no reply {key}")
        if item.state not in ("queued", "failed", "unknown"):
            raise ActionError(f"reply {key} is {item.state}; it can no longer be taken back")
        _set(db, key, "cancelled")
        _event(db, item.conversation_id, "cancelled", "me", {"key": key})
    return item


def as_json(item: OutboxItem) -> dict:
    return {
        "key": item.key, "conversation": item.conversation_id, "account": item.account,
        "private": item.private, "text": item.text, "state": item.state, "attempts": item.attempts,
        "error": item.last_error, "created_at": iso(item.created_at), "not_before": iso(item.not_before),
        "remote_id": item.remote_id,
    }


def rebase_waits(db: Database, shift: float, *, written_after: float) -> int:
    """The wall clock stepped by ``shift`` seconds (negative: back): move the send times of queued
    replies written before the step (their ``updated_at`` lies after ``written_after``, the clock's
    new now) by the same amount, so an undo window or a retry keeps its length instead of growing
    by the step. Returns how many replies moved."""
    with db.transaction():
        return db.conn.execute(
            "UPDATE outbox SET not_before = not_before + ?, updated_at = updated_at + ? "
            "WHERE state = 'queued' AND updated_at > ?",
            (shift, shift, written_after),
        ).rowcount
