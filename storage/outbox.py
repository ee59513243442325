"""The outbox: a reply (or another action) is durable before it is sent, and leaves exactly once, in order.

What it carries (``action``): replies, and the actions that change something on a platform besides
a reply: ``mark_read``, ``edit_reply``, ``delete_reply`` and ``create_ticket`` (an escalation handed
to a helpdesk account). All of them follow the life below, with the same idempotency key, the same
backoff and the same order per conversation. An action has no thread message of its own
(``message_id`` is ''); ``payload`` holds what the user asked for, ``result`` what the platform
answered (a ticket's id and link). ``sent`` means done.

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

import json
import uuid
from dataclasses import dataclass
from typing import Any

from replydesk.model import ACTION_KINDS, iso
from replydesk.storage import reply_windows, slastate, tickets
from replydesk.storage.actions import ActionError, _event, _require
from replydesk.storage.db import Database
from replydesk.storage.ingest import TAG_SEP, clean_text
from replydesk.storage.outbox_items import (  # noqa: F401 (the outbox's API: readers import them from here)
    _COLS,
    BLOCKING,
    OutboxItem,
    _item,
    _loads,
    actions_of,
    as_json,
    get,
    pending,
)
from replydesk.storage.queries import ReplyTarget, get_row, reply_target
from replydesk.windows import Verdict


class AutomaticRecipient(ActionError):
    """The reply would answer a message no person wrote (a bounce, an out-of-office reply)."""

    def __init__(self, conv_id: str, reason: str) -> None:
        super().__init__(f"{conv_id}: the message a reply would answer is automatic ({reason}); "
                         "the reply was not queued")
        self.reason = reason


class OutsideReplyWindow(ActionError):
    """The platform would refuse the reply: its reply window is closed (``verdict`` says what it
    still allows: ``verdict.choices``, e.g. the human-agent tag, or a public answer)."""

    def __init__(self, conv_id: str, verdict: Verdict) -> None:
        super().__init__(f"{conv_id}: {verdict.reason}; the reply was not queued")
        self.verdict = verdict


def queue_reply(db: Database, conv_id: str, text: str, *, private: bool = False, delay: float = 0.0,
                at: float | None = None, actor: str = "me", to_automatic: bool = False,
                send_as: str | None = None, automatic: str | None = None,
                template: dict[str, Any] | None = None) -> str:
    """Queue a reply; returns its idempotency key. ``delay`` is the undo window, ``at`` a send-later time.

    A reply whose conversation holds only automatic inbound mail (a bounce, an out-of-office or a
    newsletter) would go to a robot: it raises ``AutomaticRecipient`` unless ``to_automatic`` says
    the user confirmed it (the console asks; the CLI wants ``--force``).

    A reply that would leave (``not_before``) after its conversation's reply window closed raises
    ``OutsideReplyWindow`` with the choices the platform still allows; ``send_as`` is the choice
    the user took (``windows.HUMAN_AGENT``), checked against the window the same way.

    ``automatic`` marks a reply no person wrote (``"rule:NAME"``, ``"csat"``): once sent it is logged
    as ``auto_reply``, which is not our reply for the SLA unless the policy says so
    (``count_auto_replies``), and the conversation still waits for a person's answer.

    ``template`` (with ``send_as="template"``): the approved template and its filled variables
    (``{"name", "language", "params", "param_names"}``); ``text`` is what it reads as."""
    if (send_as == "template") != (template is not None):
        raise ActionError("a template reply needs its template (and a template only goes as one)")
    text = clean_text(text)
    if not text.strip():
        raise ActionError("a reply cannot be empty")
    key = uuid.uuid4().hex
    now = db.now()
    not_before = max(now + delay, at or 0.0)
    with db.transaction():
        _require(db, [conv_id])
        if not private and _replaces_ours(db, conv_id):
            # The platform keeps one reply of ours (a Google review): a second one would replace the
            # first there, so it is an edit of ours here too, and the thread keeps one reply.
            return queue_action(db, conv_id, "edit_reply", {"text": text}, delay=not_before - now, actor=actor)
        target = reply_target(db, conv_id)
        if target is not None and target.automatic and not to_automatic:
            raise AutomaticRecipient(conv_id, target.automatic)
        verdict = reply_windows.verdict(db, conv_id, not_before, private=private, send_as=send_as)
        if verdict is not None and not verdict.allowed:
            raise OutsideReplyWindow(conv_id, verdict)
        account = db.conn.execute("SELECT account FROM conversations WHERE id=?", (conv_id,)).fetchone()[0]
        msg_id = f"{account}:out:{key}"
        db.conn.execute(
            "INSERT INTO messages(id, conversation_id, account, native_id, direction, author, text, created_at, "
            "state, private) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (msg_id, conv_id, account, f"out:{key}", "out", actor, text, now, "queued", int(private)),
        )
        payload: dict[str, Any] = {"send_as": send_as} if send_as else {}
        if automatic:
            payload["automatic"] = automatic
        if template is not None:
            payload["template"] = template
        _insert(db, key, conv_id, msg_id, account, private, text, now, not_before, "reply", payload)
        data: dict[str, Any] = {"key": key, "private": private, "not_before": not_before}
        if send_as:
            data["send_as"] = send_as
        _event(db, conv_id, "queued", actor, data)
        db.conn.execute("DELETE FROM drafts WHERE conversation_id=?", (conv_id,))
    return key


def _replaces_ours(db: Database, conv_id: str) -> bool:
    """A reply on ``conv_id`` would replace ours on the platform: its facts say the platform keeps one
    reply per conversation (``PlatformFacts.single_reply``) and one of ours is up."""
    from replydesk.storage import platform_facts

    row = db.conn.execute("SELECT account, platform FROM conversations WHERE id=?", (conv_id,)).fetchone()
    facts = platform_facts.for_account(db, row[0]).get(row[1]) if row else None
    if facts is None or not facts.single_reply or "edit_reply" not in facts.actions:
        return False
    return db.conn.execute("SELECT 1 FROM messages WHERE conversation_id=? AND direction='out' AND state='sent' "
                           "LIMIT 1", (conv_id,)).fetchone() is not None


def _insert(db: Database, key: str, conv_id: str, msg_id: str, account: str, private: bool, text: str,
            now: float, not_before: float, action: str, payload: dict[str, Any]) -> None:
    seq = db.conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM outbox").fetchone()[0]
    db.conn.execute(
        f"INSERT INTO outbox({_COLS}, updated_at, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (key, conv_id, msg_id, account, int(private), text, now, not_before, "queued", 0, None, None,
         action, json.dumps(payload, ensure_ascii=False), "{}", now, seq),
    )


#: The most of a conversation a ticket's transcript carries (newest messages, each cut visibly).
TRANSCRIPT_MESSAGES = 50
TRANSCRIPT_CHARS = 4000


def queue_action(db: Database, conv_id: str, kind: str, payload: dict[str, Any] | None = None, *,
                 account: str | None = None, delay: float = 0.0, actor: str = "me", key: str | None = None) -> str:
    """Queue an action other than a reply on ``conv_id``; returns its key.

    ``key``: the action's idempotency key when it is derived from what it does (a note's comment on
    a ticket: two engines of a team queueing the same one make one action); default a fresh one.

    ``account`` performs it (default: the conversation's own; a ticket goes to the helpdesk's).
    What the action needs is completed and frozen here, so a later change to the thread does not
    change what leaves:

    - ``mark_read``: the newest inbound message, as ``up_to``
    - ``edit_reply`` / ``delete_reply``: our sent reply (``payload["message_id"]``, default the
      newest), as its platform id; ``edit_reply`` needs ``payload["text"]``
    - ``create_ticket``: use ``queue_ticket``, which builds the payload
    """
    if kind not in ACTION_KINDS or kind == "reply":
        raise ActionError(f"unknown action {kind!r} (one of: {', '.join(k for k in ACTION_KINDS if k != 'reply')})")
    asked = dict(payload or {})
    key = key or uuid.uuid4().hex
    now = db.now()
    with db.transaction():
        _require(db, [conv_id])
        own = db.conn.execute("SELECT account FROM conversations WHERE id=?", (conv_id,)).fetchone()[0]
        text = ""
        if kind == "mark_read":
            newest = db.conn.execute(
                "SELECT native_id FROM messages WHERE conversation_id=? AND direction='in' "
                "ORDER BY created_at DESC, rowid DESC LIMIT 1", (conv_id,)).fetchone()
            if newest is None:
                raise ActionError(f"{conv_id}: nothing came in to mark read")
            asked["up_to"] = newest[0]
        elif kind in ("edit_reply", "delete_reply"):
            asked.update(_our_reply(db, conv_id, asked.get("message_id")))
            if kind == "edit_reply":
                text = clean_text(asked.get("text") if isinstance(asked.get("text"), str) else "")
                if not text.strip():
                    raise ActionError("an edited reply cannot be empty")
                asked["text"] = text
        elif kind == "create_ticket" and not asked.get("external_id"):
            raise ActionError("a ticket is queued with queue_ticket (it builds the transcript)")
        _insert(db, key, conv_id, "", account or own, False, text, now, now + delay, kind, asked)
        _event(db, conv_id, "action_queued", actor, {"key": key, "action": kind, "account": account or own})
    return key


def _our_reply(db: Database, conv_id: str, message_id: Any) -> dict[str, Any]:
    """Our sent reply an edit or a delete is about: its ids and the start of its text."""
    sql = ("SELECT id, native_id, text, state FROM messages WHERE conversation_id=? AND direction='out'")
    params: list[Any] = [conv_id]
    if isinstance(message_id, str) and message_id:
        sql += " AND (id=? OR native_id=?)"
        params += [message_id, message_id]
    else:
        sql += " AND state='sent'"
    row = db.conn.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", params).fetchone()
    if row is None:
        raise ActionError(f"{conv_id}: no reply of ours " + (f"{message_id!r} " if message_id else "") +
                          "that has reached the platform")
    if row[3] != "sent":
        raise ActionError(f"{conv_id}: our reply {row[0]} is {row[3]}, not on the platform: "
                          "take it back or edit it in the outbox instead")
    return {"message_id": row[0], "remote_id": row[1], "quote": " ".join(row[2].split())[:80]}


def queue_ticket(db: Database, conv_id: str, *, account: str, target: str, reason: str = "", note: str = "",
                 actor: str = "me") -> str:
    """Queue ``create_ticket`` on the helpdesk ``account`` for an escalation to ``target``.

    The payload is what a helpdesk needs, as the conversation is now: subject, requester, priority,
    tags, our conversation id as the external id, and the transcript of its newest messages
    (internal notes left out; the escalation's own note goes separately)."""
    with db.transaction():
        _require(db, [conv_id])
        row = db.conn.execute(
            "SELECT c.subject, c.snippet, c.priority, c.tags, c.platform, c.kind, coalesce(p.name, ''), "
            "coalesce(p.handle, '') FROM conversations c LEFT JOIN contacts p ON p.id = c.contact_id WHERE c.id=?",
            (conv_id,)).fetchone()
        messages = db.conn.execute(
            "SELECT direction, author, text, created_at FROM messages WHERE conversation_id=? "
            "AND direction IN ('in','out') AND state NOT IN ('cancelled','deleted') "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?", (conv_id, TRANSCRIPT_MESSAGES)).fetchall()
        transcript = [{"at": iso(m[3]), "from": "customer" if m[0] == "in" else "us", "author": m[1],
                       "text": m[2] if len(m[2]) <= TRANSCRIPT_CHARS else m[2][:TRANSCRIPT_CHARS] + " […]"}
                      for m in reversed(messages)]
        subject = row[0] or " ".join((row[1] or "").split())[:80] or f"{row[4]} {row[5]} from {row[6] or row[7]}"
        if row[5] == "review" and row[0]:  # a review's subject is its location: say what it is about
            rating = get_row(db, conv_id).rating
            words = " ".join((row[1] or "").split())[:80]
            subject = f"{f'{rating}★ ' if rating else ''}review of {row[0]}" + (f": {words}" if words else "")
        payload = {
            "subject": subject, "requester": {"name": row[6], "handle": row[7]}, "priority": row[2],
            "tags": [t for t in (row[3] or "").split(TAG_SEP) if t], "external_id": conv_id,
            "platform": row[4], "target": target, "reason": reason, "note": note, "transcript": transcript,
        }
        return queue_action(db, conv_id, "create_ticket", payload, account=account, actor=actor)


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


def needing_attention(db: Database, account: str, *, replies: bool = True) -> dict[str, int]:
    """How many of the account's replies (``replies=False``: its other actions) wait for the user
    (``failed``, ``unknown``), by state."""
    return dict(db.conn.execute(
        "SELECT state, count(*) FROM outbox WHERE account=? AND state IN ('failed','unknown') "
        f"AND action {'=' if replies else '!='} 'reply' GROUP BY state",
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
        # (not our own row: a reply recorded sent once keeps its new id if it is ever recorded again)
        clash = None if new_id == item.message_id else db.conn.execute(
            "SELECT direction, state FROM messages WHERE id=?", (new_id,)).fetchone()
        if clash is not None and clash[0] == "out" and clash[1] in ("deleted", "failed"):
            # A platform that reuses the id (a Google review's one reply): our earlier reply there was
            # deleted or refused, and this one takes its place; the old one stays in the thread.
            moved = f"~{uuid.uuid4().hex[:8]}"
            db.conn.execute("UPDATE messages SET id=?, native_id=native_id || ? WHERE id=?", (new_id + moved, moved, new_id))
            db.conn.execute("UPDATE outbox SET message_id=? WHERE message_id=?", (new_id + moved, new_id))
            clash = None
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
        robot = item.payload.get("automatic") if isinstance(item.payload.get("automatic"), str) else None
        if robot:  # an acknowledgement or a survey: the customer still waits for a person
            db.conn.execute(
                "UPDATE conversations SET last_message_at=max(last_message_at, ?), "
                "snippet=CASE WHEN ? >= last_message_at THEN ? ELSE snippet END WHERE id=?",
                (sent_at, sent_at, " ".join(item.text.split())[:160], item.conversation_id),
            )
        else:
            db.conn.execute(
                "UPDATE conversations SET last_outbound_at=max(coalesce(last_outbound_at, 0), ?), "
                "last_message_at=max(last_message_at, ?), needs_reply=0, unread=0, "
                "snippet=CASE WHEN ? >= last_message_at THEN ? ELSE snippet END WHERE id=?",
                (sent_at, sent_at, sent_at, " ".join(item.text.split())[:160], item.conversation_id),
            )
        if not clash:
            data = {"key": key, "remote_id": remote_id, "private": item.private}
            if robot:
                data["by"] = robot
            _event(db, item.conversation_id, "auto_reply" if robot else "reply", robot or "me", data, at=sent_at)
        slastate.refresh(db, [item.conversation_id])


def mark_done(db: Database, key: str, remote_id: str, done_at: float, details: dict[str, Any] | None = None) -> None:
    """Record that an action other than a reply happened, and show its effect in the thread: an
    edited reply takes its new text, a deleted one is marked deleted, a ticket is logged with its
    id and link."""
    with db.transaction():
        item = get(db, key)
        if item is None or item.state == "sent":
            return
        result = {"id": remote_id, **(details or {})}
        db.conn.execute(
            "UPDATE outbox SET state='sent', remote_id=?, result=?, last_error=NULL, updated_at=? WHERE key=?",
            (remote_id, json.dumps(result, ensure_ascii=False, default=str), db.now(), key),
        )
        target = item.payload.get("message_id") if isinstance(item.payload.get("message_id"), str) else None
        if item.action == "edit_reply" and target:
            db.conn.execute("UPDATE messages SET text=?, meta=json_set(meta, '$.edited_at', ?) WHERE id=?",
                            (item.text, done_at, target))
        elif item.action == "delete_reply" and target:
            db.conn.execute("UPDATE messages SET state='deleted', meta=json_set(meta, '$.deleted_at', ?) WHERE id=?",
                            (done_at, target))
        elif item.action == "create_ticket":
            tickets.record(db, item.conversation_id, item.account, key, remote_id, done_at, details or {})
        kind = {"edit_reply": "reply_edited", "delete_reply": "reply_deleted", "mark_read": "platform_read",
                "create_ticket": "ticket", "ticket_comment": "ticket_comment"}.get(item.action, item.action)
        _event(db, item.conversation_id, kind, "me",
               {"key": key, "account": item.account, "remote_id": remote_id, **(details or {})}, at=done_at)


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
        _event(db, item.conversation_id, "retry", "me", {"key": key})  # a team hears of it from the log


def confirm_sent(db: Database, key: str) -> None:
    """The user checked the platform and the 'unknown' reply (or action) is there: record it as done."""
    item = get(db, key)
    if item is None or item.state != "unknown":
        raise ActionError(f"reply {key} is not marked unknown")
    if item.is_reply:
        mark_sent(db, key, item.remote_id or f"confirmed:{key}", db.now())
    else:
        mark_done(db, key, item.remote_id or f"confirmed:{key}", db.now(), {"confirmed": True})


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


def window_refusal(db: Database, item: OutboxItem) -> str | None:
    """Why ``item`` (a reply) may not leave now because its reply window has closed since it was
    queued, or None. The engine asks just before sending: the platform would refuse it."""
    if not item.is_reply:
        return None
    verdict = reply_windows.verdict(db, item.conversation_id, db.now(), private=item.private, send_as=item.send_as)
    return None if verdict is None or verdict.allowed else f"not sent: {verdict.reason}"


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
