"""The outbox's rows as read: what ``replydesk outbox --json``, the thread and the engine list.

Apart from ``storage.outbox`` (which queues and moves them) so that reading the outbox imports
neither the ingest path nor the SLA and reply-window machinery: ``outbox --json`` is a command
scripts call in loops.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from replydesk.storage.db import Database
from replydesk.storage.queries import action_summary
from replydesk.vocabulary import iso

#: States in which a reply still holds its place in its conversation's queue.
BLOCKING = ("queued", "sending", "failed", "unknown")


class OutboxItem(NamedTuple):
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
    action: str = "reply"  # one of model.ACTION_KINDS
    payload: dict[str, Any] = {}  # what was asked (see model.OutgoingAction)
    result: dict[str, Any] = {}  # what the platform answered (a ticket's link)

    @property
    def is_reply(self) -> bool:
        return self.action == "reply"

    @property
    def template(self) -> dict[str, Any] | None:
        """The approved template a ``send_as="template"`` reply sends (see ``queue_reply``)."""
        value = self.payload.get("template")
        return value if isinstance(value, dict) else None

    @property
    def send_as(self) -> str | None:
        """The choice a reply outside its plain window was queued with (``windows.HUMAN_AGENT``)."""
        value = self.payload.get("send_as")
        return value if isinstance(value, str) and value else None

    def summary(self) -> str:
        """One line for lists (``replydesk outbox``, the thread): the text, or what the action does."""
        return action_summary(self.action, self.account, self.text, self.payload, self.result, self.remote_id)


_COLS = ("key, conversation_id, message_id, account, private, text, created_at, not_before, state, attempts, "
         "last_error, remote_id, action, payload, result")


def _loads(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _item(r: tuple) -> OutboxItem:
    return OutboxItem(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], r[11],
                      r[12], _loads(r[13]), _loads(r[14]))


def get(db: Database, key: str) -> OutboxItem | None:
    r = db.conn.execute(f"SELECT {_COLS} FROM outbox WHERE key=?", (key,)).fetchone()
    return _item(tuple(r)) if r else None


def pending(db: Database, states: tuple[str, ...] = BLOCKING) -> list[OutboxItem]:
    qs = ",".join("?" * len(states))
    return [_item(tuple(r)) for r in db.conn.execute(
        f"SELECT {_COLS} FROM outbox WHERE state IN ({qs}) ORDER BY seq", states
    )]


def actions_of(db: Database, conv_id: str) -> list[OutboxItem]:
    """The conversation's actions other than replies (tickets, edits, deletes, read marks), oldest
    first, for the thread."""
    return [_item(tuple(r)) for r in db.conn.execute(
        f"SELECT {_COLS} FROM outbox WHERE conversation_id=? AND action != 'reply' ORDER BY seq", (conv_id,))]


def as_json(item: OutboxItem) -> dict:
    return {
        "key": item.key, "action": item.action, "conversation": item.conversation_id, "account": item.account,
        "private": item.private, "text": item.text, "state": item.state, "attempts": item.attempts,
        "error": item.last_error, "created_at": iso(item.created_at), "not_before": iso(item.not_before),
        "remote_id": item.remote_id, "payload": item.payload, "result": item.result,
    }
