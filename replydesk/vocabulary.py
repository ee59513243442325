"""The model's vocabulary: its literal types, its constants and the epoch/ISO conversions.

Apart from ``replydesk.model`` (which re-exports all of it) because the read commands need only
these: the model's dataclasses cost a read command the ``dataclasses`` machinery and their
creation at import, a tenth of its time.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

Direction = Literal["in", "out", "note"]
Kind = Literal["dm", "comment", "mention", "review", "email"]
Status = Literal["open", "pending", "snoozed", "resolved"]
DeliveryState = Literal["received", "queued", "sending", "sent", "failed", "unknown", "cancelled", "deleted"]

KINDS: tuple[str, ...] = ("dm", "comment", "mention", "review", "email")
STATUSES: tuple[str, ...] = ("open", "pending", "snoozed", "resolved")
DIRECTIONS: tuple[str, ...] = ("in", "out", "note")
DELIVERY_STATES: tuple[str, ...] = ("received", "queued", "sending", "sent", "failed", "unknown", "cancelled",
                                     "deleted")
#: What the outbox carries. A reply is one kind of action. The others: mark the conversation read on
#: the platform, edit or delete one of our own sent replies, create a ticket in a helpdesk. All of
#: them leave the same way: durable first, an idempotency key, in order per conversation.
#: ``ticket_comment`` adds an internal note to the helpdesk ticket an escalation made.
ACTION_KINDS: tuple[str, ...] = ("reply", "mark_read", "edit_reply", "delete_reply", "create_ticket",
                                  "ticket_comment")
#: Actions that are safe to repeat by nature (a second "mark read" or an edit to the same text
#: changes nothing), so an uncertain attempt is simply tried again.
REPEATABLE_ACTIONS: tuple[str, ...] = ("mark_read", "edit_reply", "delete_reply")

#: What kind of robot wrote an automatic message: the first word of its reason ("bounce: 550 5.1.1 ...").
#: bounce: a delivery failure; delay: a delivery delay notice; auto-reply: out of office, "we got
#: your message"; bulk: newsletters, list and other bulk mail; receipt: a read receipt;
#: automatic: any other machine-made message.
AUTOMATIC_KINDS: tuple[str, ...] = ("bounce", "delay", "auto-reply", "bulk", "receipt", "automatic")
#: Kinds of character range a provider may mark in a message's text (see ``IncomingMessage.spans``).
SPAN_KINDS: tuple[str, ...] = ("quote", "context", "signature")



def to_epoch(value: dt.datetime) -> float:
    """Seconds since the epoch for an aware datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def from_epoch(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


def iso(value: float | None) -> str | None:
    """Epoch seconds to ISO 8601 UTC with a trailing Z (the export contract)."""
    if value is None:
        return None
    return from_epoch(value).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """ISO 8601 (with Z or offset; naive = UTC) to epoch seconds."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return to_epoch(value)
