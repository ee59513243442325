"""The domain model shared by providers, storage, the sync engine, the CLI and the TUI.

Plain dataclasses and string constants, stdlib only, so every layer (and the tests) can use them
without pulling in Textual, httpx or SQLite. The constants, literal types and time conversions live
in ``replydesk.vocabulary`` (re-exported here): the read commands import that alone.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from replydesk.vocabulary import (  # noqa: F401  (re-exported: the rest of the code finds them here)
    ACTION_KINDS,
    AUTOMATIC_KINDS,
    DELIVERY_STATES,
    DIRECTIONS,
    KINDS,
    REPEATABLE_ACTIONS,
    SPAN_KINDS,
    STATUSES,
    DeliveryState,
    Direction,
    Kind,
    Status,
    from_epoch,
    iso,
    parse_iso,
    to_epoch,
)


def item_id(account: str, native_id: str) -> str:
    """The stable identity of anything we store: a re-sync upserts onto the same row."""
    return f"{account}:{native_id}"


@dataclass(frozen=True, slots=True)
class Contact:
    """A customer as one platform knows them."""

    native_id: str
    name: str
    handle: str = ""
    vip: bool = False
    #: The provider had no real name and put a stand-in in ``name`` (the handle, an address, an id).
    #: Storage never lets a stand-in replace a real name; it also recognises the usual stand-ins
    #: (empty, the native id, the handle) without this flag.
    name_is_fallback: bool = False
    #: Other platform ids this customer is known by (WhatsApp: the phone number beside the
    #: business-scoped user id, or the user id they had before a number change). Storage keeps them,
    #: and a provider's ``resolve_contact`` finds the contact by any of them, so it stays one.
    aliases: tuple[str, ...] = ()


def automatic_kind(reason: str | None) -> str | None:
    """The kind word of an automatic message's reason (``"bounce: ..."`` -> ``"bounce"``)."""
    if not reason:
        return None
    kind = reason.split(":", 1)[0].strip().lower()
    return kind if kind in AUTOMATIC_KINDS else "automatic"


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A platform's word that one of our own sent messages did not arrive (an email bounce).

    ``remote_ids`` are the platform ids of the failed message (email: its Message-ID) and
    ``outbox_keys`` the outbox keys the platform could read back; either is enough to match."""

    remote_ids: tuple[str, ...]
    reason: str
    outbox_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One message as a provider saw it on the platform, already mapped to plain text.

    Providers emit these; storage turns them into contact, conversation and message rows.
    ``conversation_native_id`` groups messages into one thread on one platform.
    """

    native_id: str
    conversation_native_id: str
    platform: str
    kind: str
    contact: Contact
    text: str
    created_at: float  # epoch seconds, UTC
    direction: str = "in"
    author: str = ""
    subject: str = ""
    parent_native_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # platform bits a reply needs later
    #: Why no person wrote this (``"kind: evidence"``, kinds in AUTOMATIC_KINDS), or None. An
    #: automatic message is shown but starts no SLA clock, counts in no report, wakes nothing,
    #: and a reply to it asks first.
    automatic: str | None = None
    #: (start, end, kind) character ranges of ``text`` that are not the author's new words (kinds in
    #: SPAN_KINDS): the thread folds quoted history and signatures, and dims inline context.
    spans: tuple[tuple[int, int, str], ...] = ()
    #: Set when this message reports that one of our own messages was not delivered.
    delivery_failure: DeliveryFailure | None = None


#: What a platform may report about one of our sent messages, in the order it happens (a later state
#: never goes back to an earlier one; ``failed`` ends it). WhatsApp's ``played`` (a voice message
#: listened to) counts as ``read``.
RECEIPT_STATES: tuple[str, ...] = ("sent", "delivered", "read", "failed")


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """A platform's word on one of our sent messages: it left, reached the customer's phone, was
    read, or failed (with the platform's reason). ``remote_id`` is the message's platform id;
    ``outbox_key`` the key the platform echoes back where it can (WhatsApp's
    ``biz_opaque_callback_data``), which also settles a send whose outcome we did not know."""

    remote_id: str
    state: str  # one of RECEIPT_STATES
    at: float
    error: str = ""
    outbox_key: str = ""


@dataclass(frozen=True, slots=True)
class TicketStatus:
    """Where a helpdesk ticket we created stands now, as its helpdesk said (Zendesk: new, open,
    pending, hold, solved, closed). ``resolve``: the account asks that a solved (or closed) ticket
    resolve its conversation here."""

    ticket_id: str
    status: str
    updated_at: float
    resolve: bool = False


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one provider fetch returns: items plus the cursor that covers exactly them.

    Storage stores the items and the cursor in one transaction, so a crash never leaves a cursor
    that points past items we do not have.
    """

    messages: list[IncomingMessage]
    cursor: dict[str, Any] | None  # None: nothing to advance (a pushed payload covers no cursor)
    stream: str = "default"
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (native id, reason)
    _: KW_ONLY  # what follows is named: platforms add kinds of result, and a position would shift
    #: a helpdesk's tickets whose status changed (stored with the cursor that covers them)
    tickets: list[TicketStatus] = field(default_factory=list)
    #: Delivery receipts for our own messages (WhatsApp's status webhooks).
    updates: list[DeliveryUpdate] = field(default_factory=list)
    #: The listening query these posts matched (see ``replydesk.listening``), None for the inbox's own
    #: streams. A conversation such a result creates waits in the Listening view, without a clock,
    #: until it is answered or the customer tags us; one the inbox already has stays as it is.
    listening: str | None = None


@dataclass(frozen=True, slots=True)
class AnsweredMessage:
    """The customer's message a reply answers: its platform id and the details its provider stored
    with it when it came in (``IncomingMessage.meta``: Mastodon's visibility and acct, Bluesky's
    uri and cid, email's subject and references, Telegram's message id)."""

    native_id: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingReply:
    """A reply leaving the outbox, as a provider receives it.

    Two kinds of platform detail travel with it, kept apart: ``meta`` is the conversation's (what
    the provider put in ``IncomingMessage.meta["conversation"]``: a chat id, a thread root), and
    ``answering`` the answered message's own (None when the conversation has no inbound message).
    """

    key: str  # the idempotency key; stable across retries and restarts
    conversation_id: str
    conversation_native_id: str
    account: str
    kind: str  # conversation kind
    private: bool  # a DM/private answer rather than a public reply
    text: str
    customer_handle: str
    answering: AnsweredMessage | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None  # when the user wrote it (epoch); the same on every retry
    #: How the user chose to send it outside the plain reply window (``windows.HUMAN_AGENT``:
    #: Messenger's human-agent tag; ``"template"``: an approved WhatsApp template), or None.
    send_as: str | None = None
    #: The approved template a ``send_as="template"`` reply sends: ``{"name", "language",
    #: "params": [...]}`` (``text`` is what it reads as, filled in, for the thread).
    template: dict[str, Any] | None = None

    @property
    def in_reply_to_native_id(self) -> str | None:
        return self.answering.native_id if self.answering else None

    @property
    def answering_meta(self) -> dict[str, Any]:
        """The answered message's details, or {} (never None, so providers can read keys)."""
        meta = self.answering.meta if self.answering else None
        return meta if isinstance(meta, dict) else {}


@dataclass(frozen=True, slots=True)
class SendResult:
    remote_id: str
    sent_at: float


#: Resources a listening search spent are recorded with this prefix (``listen:post:read``): they
#: count against the month's budget, and listening's own share of it is told from them.
LISTENING_SPEND = "listen:"


@dataclass(frozen=True, slots=True)
class OutgoingAction:
    """An action other than a reply leaving the outbox, as a provider receives it.

    ``payload`` is what the user asked for, frozen when it was queued:

    - ``mark_read``: ``{"up_to": native id of the newest inbound message}``
    - ``edit_reply``: ``{"remote_id": our reply's platform id, "text": the new text}``
    - ``delete_reply``: ``{"remote_id": our reply's platform id}``
    - ``create_ticket``: ``{"subject", "requester": {"name", "handle"}, "transcript": [...],
      "priority", "tags", "external_id": our conversation id, "target", "reason", "note"}``
    - ``ticket_comment``: ``{"ticket_id", "body", "message_id": our note}`` (a private comment)

    ``account`` is the account that performs it. For a ticket that is the helpdesk account, not
    the conversation's own. ``meta`` holds the conversation's platform details, as for a reply.
    """

    key: str  # the idempotency key; stable across retries and restarts
    kind: str  # one of ACTION_KINDS other than "reply"
    account: str
    conversation_id: str
    conversation_native_id: str
    conversation_kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What the platform answered: an id (the ticket, the edited post) and details worth showing
    (``{"url": …}``)."""

    remote_id: str
    done_at: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """An approved message template (WhatsApp: the only thing that may be sent once the 24-hour
    window has closed). ``body`` is its text with ``{{1}}``/``{{name}}`` placeholders, ``params``
    their names in order; the header, footer and buttons stay in ``components`` as the platform
    gave them."""

    name: str
    language: str
    body: str
    params: tuple[str, ...] = ()
    category: str = ""
    components: tuple[dict[str, Any], ...] = ()

    def fill(self, values: list[str] | tuple[str, ...]) -> str:
        """The text the customer will read with ``values`` in place of the placeholders, in order."""
        import re

        given = dict(zip(self.params, values, strict=False))
        return re.sub(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}", lambda m: given.get(m.group(1), m.group(0)), self.body)

    def as_reply(self, values: list[str] | tuple[str, ...]) -> dict[str, Any]:
        """What the outbox keeps for a reply that sends this template (``OutgoingReply.template``)."""
        return {"name": self.name, "language": self.language, "params": list(values),
                "param_names": list(self.params)}


@dataclass(frozen=True, slots=True)
class Usage:
    """What a metered platform charges for one kind of resource (X: "post read", "DM create"): how
    many units a request used and their estimated price. Providers report it, storage adds it up
    per account and month, the engine paces polling by it."""

    resource: str
    units: int
    usd: float
