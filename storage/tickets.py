"""The helpdesk tickets escalations made: id, link and status on their conversation.

A ticket is recorded when its ``create_ticket`` action is done (``outbox.mark_done``); its status
follows what the helpdesk says on each poll (``apply``, inside the ingest transaction that stores
the poll's cursor), logged as a ``ticket_status`` event, and a solved ticket resolves its
conversation where the helpdesk account asks for it. In a team, the leading engine's cache does
this and pushes the ``ticket_status`` event (the resolution rides in it); every other cache applies
the team's event through this same ``apply``. Internal notes written after the escalation
are handed to the ticket as private comments (``queue_note_comments``): the engine asks for an
account whose option wants them, and the note event's seq marks how far that went, so each note
is queued once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from replydesk.model import TicketStatus
from replydesk.storage.db import Database

#: Statuses after which a ticket is no longer followed (Zendesk: a closed ticket cannot change).
FINAL = ("closed", "deleted")
#: Statuses that resolve the conversation, where the helpdesk account asks.
SOLVED = ("solved", "closed")


@dataclass(frozen=True)
class Ticket:
    account: str
    ticket_id: str
    conversation_id: str
    label: str
    url: str
    status: str
    updated_at: float

    def summary(self) -> str:
        """``Zendesk #1234 · pending``: the words carry it without colour."""
        return f"{self.label or self.account} #{self.ticket_id}" + (f" · {self.status}" if self.status else "")


def record(db: Database, conv_id: str, account: str, key: str, ticket_id: str, at: float,
           details: dict[str, Any]) -> None:
    """A ticket the ``create_ticket`` action ``key`` made; call inside the writer's transaction.

    Notes are forwarded from the escalation on: the first one after the action was queued (the
    escalation's own note rides in the ticket's first comment)."""
    queued = db.conn.execute(
        "SELECT max(seq) FROM events WHERE conversation_id=? AND kind='action_queued' AND json_extract(data, '$.key')=?",
        (conv_id, key)).fetchone()[0]
    if queued is None:  # queued before the log said so (an import): from now on
        queued = db.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    label = details.get("label") if isinstance(details.get("label"), str) else ""
    url = details.get("url") if isinstance(details.get("url"), str) else ""
    status = details.get("status") if isinstance(details.get("status"), str) else ""
    db.conn.execute(
        "INSERT INTO tickets(account, ticket_id, conversation_id, label, url, status, created_at, updated_at, note_seq) "
        "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(account, ticket_id) DO UPDATE SET url=excluded.url, "
        "label=excluded.label",
        (account, ticket_id, conv_id, label, url, status, at, at, queued))


def apply(db: Database, account: str, statuses: Iterable[TicketStatus]) -> list[str]:
    """What the helpdesk says now about ``account``'s tickets; call inside the writer's transaction.

    A changed status is stored and logged on the conversation; a ticket solved (or closed) with
    ``resolve`` set resolves its conversation. Tickets we did not make are ignored. Returns the
    conversations that changed."""
    from replydesk.storage.actions import _event  # here: reading a thread (queries) needs none of the writes

    changed: list[str] = []
    for s in statuses:
        row = db.conn.execute("SELECT conversation_id, status, updated_at FROM tickets WHERE account=? AND ticket_id=?",
                              (account, s.ticket_id)).fetchone()
        # older news than what we hold is left out; "deleted" is inferred from an absence, on our clock
        if row is None or (row[1] == s.status) or (s.updated_at < row[2] and s.status != "deleted"):
            continue
        conv_id, old = row[0], row[1]
        db.conn.execute("UPDATE tickets SET status=?, updated_at=? WHERE account=? AND ticket_id=?",
                        (s.status, max(s.updated_at, row[2]), account, s.ticket_id))
        _event(db, conv_id, "ticket_status", account, {"ticket": s.ticket_id, "status": s.status, "from": old,
                                                        "updated_at": s.updated_at, "resolve": s.resolve},
               at=s.updated_at)
        changed.append(conv_id)
        if s.resolve and s.status in SOLVED:
            current = db.conn.execute("SELECT status FROM conversations WHERE id=?", (conv_id,)).fetchone()
            if current is not None and current[0] != "resolved":
                db.conn.execute("UPDATE conversations SET status='resolved', snoozed_until=NULL WHERE id=?", (conv_id,))
                _event(db, conv_id, "status", account, {"status": "resolved", "from": current[0],
                                                        "reason": f"ticket #{s.ticket_id} {s.status}",
                                                        "ticket": s.ticket_id}, at=s.updated_at)
    return changed


def followed(db: Database, account: str) -> list[str]:
    """The ids of ``account``'s tickets still worth reading (not closed), oldest first."""
    qs = ",".join("?" * len(FINAL))
    return [r[0] for r in db.conn.execute(
        f"SELECT ticket_id FROM tickets WHERE account=? AND status NOT IN ({qs}) ORDER BY created_at",
        (account, *FINAL))]


def of_conversation(db: Database, conv_id: str) -> list[Ticket]:
    return [Ticket(*r) for r in db.conn.execute(
        "SELECT account, ticket_id, conversation_id, label, url, status, updated_at FROM tickets "
        "WHERE conversation_id=? ORDER BY created_at", (conv_id,))]


def comment_key(account: str, ticket_id: str, message_id: str) -> str:
    """The idempotency key of a note's comment on a ticket: the same note on the same ticket is one
    comment, whichever engine of a team queues it (a failover) and however often."""
    import hashlib  # here: OpenSSL's load stays out of the read commands that read tickets

    return hashlib.sha256(f"{account}\x1f{ticket_id}\x1f{message_id}".encode()).hexdigest()[:32]


def queue_note_comments(db: Database, account: str, *, actor: str = "system") -> list[str]:
    """Queue each internal note written on a conversation after its escalation to ``account`` as a
    private comment on the ticket (``ticket_comment``), once, in order; returns the keys."""
    from replydesk.storage import outbox  # outbox records tickets: imported here, not at the top

    qs = ",".join("?" * len(FINAL))
    rows = db.conn.execute(
        f"SELECT t.ticket_id, t.conversation_id, e.seq, e.data FROM tickets t JOIN events e "
        f"ON e.conversation_id = t.conversation_id AND e.kind = 'note' AND e.seq > t.note_seq "
        f"WHERE t.account = ? AND t.status NOT IN ({qs}) ORDER BY e.seq", (account, *FINAL)).fetchall()
    if not rows:
        return []
    keys = []
    with db.transaction():
        for ticket_id, conv_id, seq, data in rows:
            try:
                message_id = json.loads(data or "{}").get("message")
            except (ValueError, AttributeError):
                message_id = None
            note = db.conn.execute("SELECT text FROM messages WHERE id=? AND direction='note'",
                                   (message_id,)).fetchone() if isinstance(message_id, str) else None
            key = comment_key(account, ticket_id, message_id) if isinstance(message_id, str) else None
            if key is not None and outbox.get(db, key) is not None:
                pass  # queued already (by another engine of the team, whose action reached this cache)
            elif note is not None and note[0].strip():
                keys.append(outbox.queue_action(
                    db, conv_id, "ticket_comment", {"ticket_id": ticket_id, "body": note[0], "message_id": message_id},
                    account=account, actor=actor, key=key))
            db.conn.execute("UPDATE tickets SET note_seq=max(note_seq, ?) WHERE account=? AND ticket_id=?",
                            (seq, account, ticket_id))
    return keys
