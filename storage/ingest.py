"""The hot path: storing what providers fetched, idempotently, with the cursor in the same transaction.

Identity is ``"{account}:{native_id}"`` for contacts, conversations and messages, so running the
same sync twice stores nothing twice. A cursor is written only inside the transaction that stores
the items it covers: a crash can cost a re-fetch, never a hole.

Listening (``FetchResult.listening``): a conversation first seen in a listening result is marked with
the query's name and waits in the Listening view; its customers' posts are logged as ``listened``,
an event no SLA clock reads (unless a policy for listening asks, see ``sla``). A listening result
never changes a conversation the inbox already has (a post that also tags us is one conversation).
A conversation joins the inbox when it is answered (the ``listening_answered`` trigger) or when the
inbox's own streams bring a customer's message into it, the matched post itself included (it tagged
us after all): that message then starts the clock at the time it was written.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from replydesk.foreground import step_aside
from replydesk.model import DIRECTIONS, KINDS, SPAN_KINDS, Contact, FetchResult, IncomingMessage, iso, item_id
from replydesk.storage import aliases, csat, receipts, reply_windows, slastate
from replydesk.storage.db import Database
from replydesk.storage.schema import TAG_SEP

log = logging.getLogger(__name__)

#: The one limit for every text field (message, name, handle, subject, tag, author): stored as
#: received up to here; a longer one keeps this much and says how much was left out. Lists and
#: headers shorten for display only.
MAX_TEXT = 100_000
#: Rejected items kept as rows per account (the first ones: they show what went wrong); beyond them
#: only a count grows, so a flood of malformed items costs a counter, not millions of rows.
REJECTED_KEEP = 100
SNIPPET = 160
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The times an item may claim: from 2000-01-01 to a day past now. Outside them a date is a broken or
#: hostile one (year 1, 9999), and it costs every SLA evaluation of its conversation a walk over the
#: years between (seconds, for a business calendar from year 1); it is stored as the time we received
#: it, with the claimed value kept in the message's meta as ``claimed_at``.
EARLIEST = 946684800.0
LATEST_AHEAD = 86400.0


@dataclass(frozen=True, slots=True)
class ListeningMatch:
    """A new post a listening query found: what a rule may act on (tag ``complaint`` when it says
    "refund"). ``waiting`` is False when the post went into a conversation the inbox already has."""

    conversation_id: str
    message_id: str
    query: str
    text: str
    waiting: bool


@dataclass
class IngestStats:
    new_messages: int = 0
    new_conversations: int = 0
    skipped: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    conversations: set[str] = field(default_factory=set)
    #: (conversation id, message id) of each new customer message, oldest first; collected only for
    #: a ``Database.ingest_hook`` (the rules), which runs on them in the same transaction.
    inbound: list[tuple[str, str]] = field(default_factory=list)
    receipts: int = 0  # delivery receipts that changed one of our messages
    listened: list[ListeningMatch] = field(default_factory=list)
    joined: set[str] = field(default_factory=set)  # listening conversations that joined the inbox


_json_str = json.encoder.encode_basestring_ascii  # the C string encoder json.dumps itself uses


def _json(value: dict) -> str:
    """json.dumps for the hot path: most metadata is empty, and that needs no encoder at all."""
    return json.dumps(value, default=str) if value else "{}"


def clean_text(value: object, limit: int = MAX_TEXT) -> str:
    """Text as received, made storable: lone surrogates replaced, absurd lengths cut visibly."""
    if not isinstance(value, str):
        raise TypeError(f"text is {type(value).__name__}, not str")
    text = _SURROGATE.sub("\ufffd", value)
    if len(text) > limit:
        text = text[:limit] + f"\n[… {len(value) - limit} more characters not stored]"
    return text


def _check(msg: IncomingMessage) -> str | None:
    """Why this item cannot be stored, or None. Providers are fallible; a bad item never stops a batch."""
    if not isinstance(msg.native_id, str) or not msg.native_id:
        return "missing message id"
    if not isinstance(msg.conversation_native_id, str) or not msg.conversation_native_id:
        return "missing conversation id"
    if msg.kind not in KINDS:
        return f"unknown kind {msg.kind!r}"
    if msg.direction not in DIRECTIONS:
        return f"unknown direction {msg.direction!r}"
    if not isinstance(msg.text, str):
        return f"text is {type(msg.text).__name__}"
    if not isinstance(msg.created_at, int | float) or not math.isfinite(msg.created_at):
        return "bad timestamp"
    if not isinstance(msg.platform, str) or not msg.platform:
        return "missing platform"
    contact = getattr(msg, "contact", None)
    if not isinstance(getattr(contact, "native_id", None), str) or not contact.native_id:
        return "missing contact id"
    for name, value in (("author", msg.author), ("subject", msg.subject), ("contact name", contact.name),
                        ("contact handle", contact.handle)):
        if not isinstance(value, str):
            return f"{name} is {type(value).__name__}"
    if msg.parent_native_id is not None and not isinstance(msg.parent_native_id, str):
        return f"parent id is {type(msg.parent_native_id).__name__}"
    if msg.automatic is not None and not isinstance(msg.automatic, str):
        return f"automatic reason is {type(msg.automatic).__name__}"
    return None


def _keep_rejected(db: Database, account: str, rejected: list[tuple[str, str]], now: float) -> None:
    """Record rejected items: the first ``REJECTED_KEEP`` of the account as rows, all in its count,
    and one log line per batch (not one per item)."""
    native, reason = rejected[0]
    log.warning("account %s: %d item(s) rejected, e.g. %s: %s", account, len(rejected), str(native)[:80], reason)
    kept = db.conn.execute("SELECT count(*) FROM rejected_items WHERE account=?", (account,)).fetchone()[0]
    room = max(0, REJECTED_KEEP - kept)
    if room:
        db.conn.executemany(
            "INSERT INTO rejected_items(account, native_id, reason, at) VALUES (?,?,?,?)",
            [(account, str(n)[:200], str(r)[:500], now) for n, r in rejected[:room]],
        )
    db.conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
        "value = json_set(meta.value, '$.count', json_extract(meta.value, '$.count') + ?, '$.last_at', ?, "
        "'$.last_reason', ?)",
        (f"rejected:{account}", json.dumps({"count": len(rejected), "last_at": now, "last_reason": str(reason)[:300]}),
         len(rejected), now, str(rejected[-1][1])[:300]),
    )


def rejected_summary(db: Database) -> dict[str, dict]:
    """Per account: how many items were rejected in all, when last and why, and the first few kept."""
    out: dict[str, dict] = {}
    for key, value in db.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'rejected:%'"):
        try:
            out[key.split(":", 1)[1]] = json.loads(value)
        except ValueError:
            continue
    for account, n in db.conn.execute("SELECT account, count(*) FROM rejected_items GROUP BY account"):
        entry = out.setdefault(account, {"count": 0})
        entry["count"] = max(int(entry.get("count") or 0), n)  # rows from before the count was kept
    for account, entry in out.items():
        entry["first"] = [tuple(r) for r in db.conn.execute(
            "SELECT native_id, reason FROM rejected_items WHERE account=? ORDER BY rowid LIMIT 3", (account,))]
    return out


def _storable(msg: IncomingMessage, now: float) -> IncomingMessage:
    """``msg`` with what SQLite cannot store or the SLA engine cannot afford made safe: lone
    surrogates in its ids (8-bit mail headers decoded with ``surrogateescape``) replaced, the same
    way every time so the identity holds, and a date outside ``EARLIEST``..now+``LATEST_AHEAD``
    replaced by ``now`` (the original kept as ``meta["claimed_at"]``)."""
    changes: dict = {}
    for name in ("native_id", "conversation_native_id", "parent_native_id"):
        value = getattr(msg, name)
        if isinstance(value, str) and _SURROGATE.search(value):
            changes[name] = _SURROGATE.sub("\ufffd", value)
    if _SURROGATE.search(msg.contact.native_id):
        changes["contact"] = replace(msg.contact, native_id=_SURROGATE.sub("\ufffd", msg.contact.native_id))
    if not EARLIEST <= msg.created_at <= now + LATEST_AHEAD:
        changes["created_at"] = now
        try:
            claimed: object = iso(msg.created_at)
        except (ValueError, OverflowError, OSError):
            claimed = repr(msg.created_at)
        changes["meta"] = {**(msg.meta if isinstance(msg.meta, dict) else {}), "claimed_at": claimed}
    return replace(msg, **changes) if changes else msg


def _automatic(msg: IncomingMessage) -> str | None:
    """The stored reason: only inbound messages can be automatic (our own replies never are)."""
    if msg.direction != "in" or not msg.automatic:
        return None
    return clean_text(msg.automatic)


def _spans(msg: IncomingMessage, text: str) -> list[list]:
    """Well-formed quote/signature ranges inside the stored text (providers are fallible)."""
    out = []
    for span in msg.spans or ():
        try:
            start, end, kind = int(span[0]), int(span[1]), str(span[2])
        except (TypeError, ValueError, IndexError):
            continue
        end = min(end, len(text))
        if kind in SPAN_KINDS and 0 <= start < end:
            out.append([start, end, kind])
    return out


def _meta(msg: IncomingMessage) -> dict:
    spans = _spans(msg, msg.text)
    return {**msg.meta, "spans": spans} if spans else msg.meta


def visible_text(text: str, spans: Sequence[Sequence]) -> str:
    """``text`` without its folded ranges (quoted history and signatures), for snippets."""
    pieces: list[str] = []
    pos = 0
    for start, end, kind in sorted(tuple(s) for s in spans):
        if kind == "context":
            continue
        pieces.append(text[pos:start])
        pos = max(pos, end)
    pieces.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(pieces)).strip()


def ensure_account(db: Database, name: str, provider: str, platform: str) -> None:
    db.conn.execute(
        "INSERT INTO accounts(name, provider, platform, created_at) VALUES (?,?,?,?) "
        "ON CONFLICT(name) DO UPDATE SET provider=excluded.provider, platform=excluded.platform",
        (name, provider, platform, db.now()),
    )


def _known_conversations(db: Database, ids: Sequence[str]) -> dict[str, str | None]:
    """Which of ``ids`` exist, each with its listening marker (None: an inbox conversation)."""
    found: dict[str, str | None] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        qs = ",".join("?" * len(chunk))
        found.update(db.conn.execute(f"SELECT id, listening FROM conversations WHERE id IN ({qs})", chunk))
    return found


def _existing(db: Database, ids: Sequence[str], table: str) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        qs = ",".join("?" * len(chunk))
        found.update(r[0] for r in db.conn.execute(f"SELECT id FROM {table} WHERE id IN ({qs})", chunk))
    return found


def ingest(db: Database, account: str, results: Iterable[FetchResult]) -> IngestStats:
    """Store fetched items and advance their cursors, all in one transaction."""
    stats = IngestStats()
    with db.transaction():
        for result in results:
            _ingest_one(db, account, result, stats)
            if result.tickets:  # a helpdesk's word on the tickets we made, with the cursor covering it
                from replydesk.storage import tickets

                stats.conversations.update(tickets.apply(db, account, result.tickets))
            if result.updates:  # receipts after the messages: a body may carry both
                stats.receipts += receipts.apply(db, account, result.updates)
            if result.cursor is None:  # a pushed payload: no cursor to advance
                continue
            db.conn.execute(
                "INSERT INTO sync_cursors(account, stream, cursor, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(account, stream) DO UPDATE SET cursor=excluded.cursor, updated_at=excluded.updated_at",
                (account, result.stream, json.dumps(result.cursor), db.now()),
            )
        slastate.refresh(db, stats.conversations)
        if db.ingest_hook is not None and stats.inbound:
            _run_hook(db, account, stats)
    return stats


def _run_hook(db: Database, account: str, stats: IngestStats) -> None:
    """The engine's rules on what was just stored, in the same transaction (so a crash loses or keeps
    both). A failing rule must not cost the messages: its writes roll back to a savepoint, the
    messages stay, and the error is logged."""
    db.conn.execute("SAVEPOINT ingest_hook")
    try:
        db.ingest_hook(db, account, stats)
    except Exception:
        log.exception("account %s: the rules failed on %d new message(s); the messages are kept",
                      account, len(stats.inbound))
        db.conn.execute("ROLLBACK TO ingest_hook")
    db.conn.execute("RELEASE ingest_hook")


def _ingest_one(db: Database, account: str, result: FetchResult, stats: IngestStats, *,
                checked: bool = False) -> None:
    """Store one fetch result. ``checked``: every message already passed ``_check`` and ``clean_text``
    (the importer checks a record whole before writing it)."""
    now = db.now()
    good: list[IncomingMessage] = [_storable(m, now) for m in result.messages] if checked else []
    rejected = list(result.rejected)
    for n, msg in enumerate(() if checked else result.messages):
        if n % 32 == 0:
            step_aside()  # a key in the console's thread of this process paints first
        reason = _check(msg)
        if reason is None:
            try:
                msg_text = clean_text(msg.text)
            except TypeError as exc:  # pragma: no cover - _check guards this
                reason = str(exc)
        if reason is not None:
            rejected.append((str(getattr(msg, "native_id", "?"))[:200], reason))
            continue
        if msg_text is not msg.text:
            msg = _replace_text(msg, msg_text)
        good.append(_storable(msg, now))
    if rejected:
        _keep_rejected(db, account, rejected, now)
        stats.rejected.extend(rejected[:REJECTED_KEEP])
    if not good:
        return

    msg_ids = [item_id(account, m.native_id) for m in good]
    have = _existing(db, msg_ids, "messages")
    fresh: dict[str, IncomingMessage] = {}
    for mid, msg in zip(msg_ids, good, strict=True):
        if mid in have or mid in fresh:
            stats.skipped += 1
            continue
        fresh[mid] = msg
    if have and result.listening is None:  # the inbox's stream re-delivers what listening found first?
        _join_on_redelivery(db, account, [(mid, m) for mid, m in zip(msg_ids, good, strict=True) if mid in have],
                            stats)
    if not fresh:
        return

    contacts: dict[str, _ContactSeen] = {}
    convs: dict[str, list[tuple[str, IncomingMessage]]] = {}
    for mid, msg in fresh.items():
        cid = item_id(account, msg.contact.native_id)
        seen = contacts.get(cid)
        if seen is None:
            contacts[cid] = _ContactSeen(msg)
        else:
            seen.add(msg)
        convs.setdefault(item_id(account, msg.conversation_native_id), []).append((mid, msg))

    db.conn.executemany(CONTACT_UPSERT, [seen.row(cid, account) for cid, seen in contacts.items()])
    for seen in contacts.values():
        if seen.aliases:
            aliases.remember(db, account, seen.contact.native_id, seen.aliases, seen.name_at)

    conv_ids = list(convs)
    known_marks = _known_conversations(db, conv_ids)
    known = set(known_marks)
    query = result.listening
    # Conversations left waiting in the Listening view after this batch: the ones already there, and
    # those this listening result starts; the inbox's own streams take theirs into the inbox.
    waiting = {c for c, mark in known_marks.items() if mark}
    joining: dict[str, tuple[str, float]] = {}
    if query:
        waiting |= {c for c in conv_ids if c not in known}
    elif waiting:
        for c in list(waiting):
            said = [m.created_at for _, m in convs[c] if m.direction == "in" and not _automatic(m)]
            if said:
                joining[c] = (known_marks[c] or "", min(said))
                waiting.discard(c)
    if waiting:  # a thread we already answered in (our own post came with it) is ours, not listening's
        waiting -= {c for c in waiting if any(m.direction == "out" for _, m in convs[c])}
    conv_rows = []
    robots_only: list[str] = []
    customer_wrote: list[tuple[str, str, str]] = []  # (id, platform, kind): windows count from a new message
    any_robot = any(m.automatic for m in fresh.values())  # the common batch has none: skip the checks
    for n, (conv_id, items) in enumerate(convs.items()):
        if n % 32 == 0:
            step_aside()
        items.sort(key=lambda pair: pair[1].created_at)
        first, last = items[0][1], items[-1][1]
        # Automatic messages (bounces, auto-replies) neither ask for a reply nor count as the
        # customer's latest word; only a batch of nothing else leaves needs_reply as it was.
        people = [m for _, m in items]
        if any_robot and any(_automatic(m) for m in people):
            people = [m for m in people if not _automatic(m)]
            if not people:  # nothing but robots in this batch
                robots_only.append(conv_id)
                people = [m for _, m in items]
        inbound = [m for m in people if m.direction == "in" and not (any_robot and _automatic(m))]
        outbound = [m for _, m in items if m.direction == "out"]
        if inbound:
            customer_wrote.append((conv_id, first.platform, first.kind))
        customer = next((m for m in inbound), next((m for _, m in items if m.direction == "in"), first))
        conv_rows.append((
            conv_id, account, first.platform, first.kind, first.conversation_native_id,
            item_id(account, customer.contact.native_id),
            clean_text(next((m.subject for _, m in items if m.subject), "")),
            _snippet(visible_text(last.text, _spans(last, last.text)) if last.spans else last.text),
            first.created_at, last.created_at,
            inbound[-1].created_at if inbound else None,
            outbound[-1].created_at if outbound else None,
            int(people[-1].direction == "in" and not (any_robot and _automatic(people[-1]))),
            int(any(m.direction == "in" for _, m in items)),
            _json(_conv_meta(items)),
            query if conv_id in waiting and conv_id not in known else None,
        ))
        if conv_id not in known:
            stats.new_conversations += 1
        stats.conversations.add(conv_id)
    kept = {r[0]: r[1] for r in db.conn.execute(
        f"SELECT id, needs_reply FROM conversations WHERE id IN ({','.join('?' * len(robots_only))})",
        robots_only)} if robots_only else {}
    db.conn.executemany(
        """INSERT INTO conversations(id, account, platform, kind, native_id, contact_id, subject, snippet,
               created_at, last_message_at, last_inbound_at, last_outbound_at, needs_reply, unread, meta,
               listening)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
           ON CONFLICT(id) DO UPDATE SET
             subject = CASE WHEN conversations.subject = '' THEN excluded.subject ELSE conversations.subject END,
             snippet = CASE WHEN excluded.last_message_at >= conversations.last_message_at
                            THEN excluded.snippet ELSE conversations.snippet END,
             needs_reply = CASE WHEN excluded.last_message_at >= conversations.last_message_at
                            THEN excluded.needs_reply ELSE conversations.needs_reply END,
             created_at = min(conversations.created_at, excluded.created_at),
             last_message_at = max(conversations.last_message_at, excluded.last_message_at),
             last_inbound_at = coalesce(max(conversations.last_inbound_at, excluded.last_inbound_at),
                                        conversations.last_inbound_at, excluded.last_inbound_at),
             last_outbound_at = coalesce(max(conversations.last_outbound_at, excluded.last_outbound_at),
                                         conversations.last_outbound_at, excluded.last_outbound_at),
             unread = max(conversations.unread, excluded.unread),
             meta = json_patch(conversations.meta, excluded.meta)""",
        conv_rows,
    )
    if kept:  # a bounce or an out-of-office reply does not change whether a person awaits an answer
        db.conn.executemany("UPDATE conversations SET needs_reply=? WHERE id=?",
                            [(needs, conv_id) for conv_id, needs in kept.items()])
    if customer_wrote:
        reply_windows.customer_wrote(db, account, customer_wrote)

    db.conn.executemany(
        "INSERT INTO messages(id, conversation_id, account, native_id, direction, author, text, created_at, "
        "parent_id, state, meta, automatic) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (mid, item_id(account, m.conversation_native_id), account, m.native_id, m.direction,
             clean_text(m.author or _customer_name(m)), m.text, m.created_at,
             item_id(account, m.parent_native_id) if m.parent_native_id else None,
             "received" if m.direction == "in" else "sent",
             _json({**(_meta(m) if m.spans else m.meta), "listening": query} if query
                   else (_meta(m) if m.spans else m.meta)),
             _automatic(m) if m.automatic else None)
            for mid, m in fresh.items()
        ],
    )
    # A customer's message records when it reached us ("received"): the rules run then, and their
    # dry run replays history in that order. An import's messages did not reach us now (and an
    # import is history: no rule runs on it), so they keep only the time they were written.
    received = "}" if checked else ', "received": ' + repr(float(now)) + "}"
    if joining:
        _join(db, joining, "the customer wrote to us", stats)
    db.conn.executemany(
        "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
        [_event_row(mid, m, account, waiting, received) if m.automatic or waiting else
         (item_id(account, m.conversation_native_id), m.created_at,
          "in" if m.direction == "in" else ("reply" if m.direction == "out" else "note"),
          "customer" if m.direction == "in" else "platform",
          '{"message": ' + _json_str(mid) + (received if m.direction == "in" else "}"))
         for mid, m in fresh.items()],
    )
    if query:
        for mid, m in fresh.items():
            if m.direction == "in":
                conv = item_id(account, m.conversation_native_id)
                stats.listened.append(ListeningMatch(conv, mid, query, m.text, conv in waiting))
    stats.new_messages += len(fresh)
    answered = _wake_on_inbound(db, convs, known)
    _review_priority(db, account, fresh)
    if db.ingest_hook is not None:
        stats.inbound.extend(sorted(
            ((item_id(account, m.conversation_native_id), mid) for mid, m in fresh.items()
             if m.direction == "in" and not _automatic(m) and mid not in answered),
            key=lambda pair: fresh[pair[1]].created_at))
    if any(m.delivery_failure is not None for m in fresh.values()):
        _record_delivery_failures(db, account, fresh)
    # The conversation search rows follow by trigger (schema migration 8), renamed contacts included.


def name_rank(contact: Contact) -> int:
    """How good the name a provider gave is: 2 a real name, 1 a stand-in made from the handle (or
    flagged ``name_is_fallback``), 0 a bare id or nothing. Only a better or newer name replaces one."""
    name = (contact.name or contact.handle or "").strip()
    if not name or name == contact.native_id:
        return 0
    handle = (contact.handle or "").strip().lstrip("@").casefold()
    if contact.name_is_fallback or name.lstrip("@").casefold() == handle:
        return 1
    return 2


class _ContactSeen:
    """The best name and the newest handle one batch carries for one contact.

    Batch order means nothing (Mastodon pages come newest first, a backfill brings old posts late):
    the name is the best-ranked one, newest among those by the message's created_at.
    """

    __slots__ = ("contact", "platform", "rank", "name_at", "handle", "handle_at", "vip", "aliases")

    def __init__(self, msg: IncomingMessage) -> None:
        self.contact, self.platform, self.vip = msg.contact, msg.platform, bool(msg.contact.vip)
        self.aliases: list[str] = list(getattr(msg.contact, "aliases", ()) or ())
        self.rank, self.name_at = name_rank(msg.contact), msg.created_at
        self.handle, self.handle_at = _handle(msg.contact), msg.created_at

    def add(self, msg: IncomingMessage) -> None:
        contact, at = msg.contact, msg.created_at
        self.vip = self.vip or bool(contact.vip)
        self.aliases.extend(getattr(contact, "aliases", ()) or ())
        rank = name_rank(contact)
        if (rank, at) >= (self.rank, self.name_at):
            self.contact, self.rank, self.name_at = contact, rank, at
        handle = _handle(contact)
        if handle and (not self.handle or at >= self.handle_at):
            self.handle, self.handle_at = handle, at

    def row(self, cid: str, account: str) -> tuple:
        c = self.contact
        return (cid, account, self.platform, c.native_id, clean_text(c.name or c.handle or c.native_id),
                clean_text(self.handle), int(self.vip), self.rank, self.name_at,
                self.handle_at if self.handle else None)


def _handle(contact: Contact) -> str:
    handle = contact.handle or ""
    return handle if handle.strip().lstrip("@") else ""


#: A name is replaced by a better-ranked one, or by an equally ranked one seen at least as late; a
#: handle by any non-empty handle seen at least as late. The platform's VIP flag is kept (once VIP,
#: VIP), but a VIP flag an agent set by hand (``vip_set``) wins over it. (SET expressions all read
#: the old row.)
CONTACT_UPSERT = """
INSERT INTO contacts(id, account, platform, native_id, name, handle, vip, name_rank, name_at, handle_at, platform_vip)
VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?7)
ON CONFLICT(id) DO UPDATE SET
  name = CASE WHEN excluded.name_rank > contacts.name_rank OR (excluded.name_rank = contacts.name_rank
              AND excluded.name_at >= coalesce(contacts.name_at, excluded.name_at))
         THEN excluded.name ELSE contacts.name END,
  name_at = CASE WHEN excluded.name_rank > contacts.name_rank OR (excluded.name_rank = contacts.name_rank
              AND excluded.name_at >= coalesce(contacts.name_at, excluded.name_at))
         THEN excluded.name_at ELSE contacts.name_at END,
  name_rank = max(contacts.name_rank, excluded.name_rank),
  handle = CASE WHEN excluded.handle != '' AND (contacts.handle = ''
                OR excluded.handle_at >= coalesce(contacts.handle_at, excluded.handle_at))
           THEN excluded.handle ELSE contacts.handle END,
  handle_at = CASE WHEN excluded.handle != '' AND (contacts.handle = ''
                OR excluded.handle_at >= coalesce(contacts.handle_at, excluded.handle_at))
           THEN excluded.handle_at ELSE contacts.handle_at END,
  platform_vip = max(contacts.platform_vip, excluded.platform_vip),
  vip = coalesce(contacts.vip_set, max(contacts.platform_vip, excluded.platform_vip))
"""


def _event_row(mid: str, m: IncomingMessage, account: str, waiting: set[str] | frozenset[str] = frozenset(),
               received: str = "}") -> tuple:
    """The log row of a new message. An automatic one is logged as ``automatic``, a kind the SLA
    engine and the reports do not read: it neither starts nor restarts a clock. A customer's post in a
    conversation waiting in the Listening view is logged as ``listened``: no clock either."""
    conv_id = item_id(account, m.conversation_native_id)
    data = '{"message": ' + _json_str(mid) + "}"
    reason = _automatic(m)
    if reason:
        kind, actor, data = "automatic", "robot", json.dumps({"message": mid, "reason": reason})
    elif m.direction == "in":
        kind, actor = ("listened" if conv_id in waiting else "in"), "customer"
        data = '{"message": ' + _json_str(mid) + received
    else:
        kind, actor = ("reply" if m.direction == "out" else "note"), "platform"
    return (conv_id, m.created_at, kind, actor, data)


def _join(db: Database, conversations: dict[str, tuple[str, float]], why: str, stats: IngestStats) -> None:
    """Listening conversations join the inbox (``conversations``: id -> (the query that found it, when))."""
    ids = list(conversations)
    db.conn.execute(f"UPDATE conversations SET listening = NULL WHERE id IN ({','.join('?' * len(ids))})", ids)
    db.conn.executemany(
        "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
        [(c, at, "joined", "platform", json.dumps({"listening": q, "why": why}))
         for c, (q, at) in conversations.items()],
    )
    stats.joined.update(ids)
    stats.conversations.update(ids)


def _join_on_redelivery(db: Database, account: str, again: list[tuple[str, IncomingMessage]],
                        stats: IngestStats) -> None:
    """The inbox's own stream delivers posts we hold from listening (the post tagged us too): their
    conversation joins the inbox, and each such customer post starts its clock when it was written,
    as if listening had never seen it first. Runs only for re-delivered items, so costs nothing else."""
    by_conv: dict[str, list[tuple[str, IncomingMessage]]] = {}
    for mid, m in again:
        if m.direction == "in" and not _automatic(m):
            by_conv.setdefault(item_id(account, m.conversation_native_id), []).append((mid, m))
    if not by_conv:
        return
    marks = {c: mark for c, mark in _known_conversations(db, list(by_conv)).items() if mark}
    if not marks:
        return
    posts = [(mid, m) for c in marks for mid, m in by_conv[c]]
    _join(db, {c: (mark, min(m.created_at for _, m in by_conv[c])) for c, mark in marks.items()},
          "the post tagged us too", stats)
    db.conn.executemany(
        "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
        [(item_id(account, m.conversation_native_id), m.created_at, "in", "customer",
          '{"message": ' + _json_str(mid) + "}") for mid, m in posts],
    )


def _record_delivery_failures(db: Database, account: str, fresh: dict[str, IncomingMessage]) -> None:
    """A bounce of one of our replies marks that reply failed to deliver, with the report's reason.

    Matched by the platform id of our sent message (email: its Message-ID) or by its outbox key;
    the outbox row of a reply that was in doubt (``unknown``) learns that it did leave and failed."""
    for mid, m in fresh.items():
        failure = m.delivery_failure
        if failure is None:
            continue
        ids = [i for i in failure.remote_ids if isinstance(i, str)][:50]
        keys = [k for k in failure.outbox_keys if isinstance(k, str)][:50]
        reason = clean_text(f"not delivered: {failure.reason}")
        qi, qk = ",".join("?" * len(ids)) or "NULL", ",".join("?" * len(keys)) or "NULL"
        rows = db.conn.execute(
            f"SELECT id, conversation_id FROM messages WHERE account=? AND direction='out' AND ("
            f"native_id IN ({qi}) OR id IN (SELECT message_id FROM outbox WHERE key IN ({qk})))",
            (account, *ids, *keys),
        ).fetchall()
        for message_id, conv_id in rows:
            db.conn.execute(
                "UPDATE messages SET state='failed', error=?, meta=json_set(meta, '$.bounced_by', ?) WHERE id=?",
                (reason, mid, message_id),
            )
            db.conn.execute(
                "UPDATE outbox SET state='failed', last_error=?, updated_at=? WHERE message_id=? AND state='unknown'",
                (reason, db.now(), message_id),
            )
            db.conn.execute(
                "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
                (conv_id, m.created_at, "bounced", "robot",
                 json.dumps({"message": message_id, "report": mid, "reason": reason})),
            )


def _customer_name(m: IncomingMessage) -> str:
    """The author of a message the platform gave no author: the customer for what came in, never
    for our own messages (those show as ours; crediting them to the contact made our earlier
    replies read as the customer's)."""
    return (m.contact.name or m.contact.handle) if m.direction == "in" else ""


def _replace_text(msg: IncomingMessage, text: str) -> IncomingMessage:
    return replace(msg, text=text)


def _snippet(text: str) -> str:
    return " ".join(text.split())[:SNIPPET]


def _conv_meta(items: list[tuple[str, IncomingMessage]]) -> dict:
    """Platform bits a later reply needs (e.g. the post to answer), from the newest message."""
    meta: dict = {}
    for _, m in items:
        reply_meta = m.meta.get("conversation") if isinstance(m.meta, dict) else None
        if isinstance(reply_meta, dict):
            meta.update(reply_meta)
    return meta



PRIORITY_ORDER = ("low", "normal", "high", "urgent")


def _review_priority(db: Database, account: str, fresh: dict[str, IncomingMessage]) -> None:
    """A review (or its new version) with few stars raises its conversation's priority to what
    ``sla.review_priority`` says (1-2 stars: high, by default), so policies and the inbox see it.
    Never lowered: a person may have set it higher, and a better edit does not undo the first word."""
    wanted = getattr(getattr(db.sla, "settings", None), "review_priority", None)
    if not wanted:
        return
    raise_to: dict[str, tuple[str, int]] = {}
    for m in fresh.values():
        rating = m.meta.get("rating") if m.kind == "review" and m.direction == "in" and isinstance(m.meta, dict) \
            else None
        if isinstance(rating, int) and not isinstance(rating, bool) and rating in wanted:
            raise_to[item_id(account, m.conversation_native_id)] = (wanted[rating], rating)
    for conv_id, (priority, rating) in raise_to.items():
        row = db.conn.execute("SELECT priority FROM conversations WHERE id=?", (conv_id,)).fetchone()
        now = row[0] if row is not None and row[0] in PRIORITY_ORDER else "normal"
        if row is None or PRIORITY_ORDER.index(priority) <= PRIORITY_ORDER.index(now):
            continue
        db.conn.execute("UPDATE conversations SET priority=? WHERE id=?", (priority, conv_id))
        db.conn.execute(
            "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
            (conv_id, db.now(), "priority", "system",
             json.dumps({"priority": priority, "from": row[0], "reason": f"{rating}-star review"})))


def _wake_on_inbound(db: Database, convs: dict[str, list[tuple[str, IncomingMessage]]], known: set[str]) -> set[str]:
    """A customer writing again reopens a resolved, pending or snoozed conversation (as helpdesks do).

    Except an answer to a satisfaction survey: a resolved conversation's survey that awaits an answer
    takes the message as its rating (``storage.csat``) and stays resolved. Returns those messages' ids."""
    woken = []
    answered: set[str] = set()
    for conv_id, items in convs.items():
        if conv_id not in known:
            continue
        latest_in = max((m.created_at for _, m in items if m.direction == "in" and not _automatic(m)),
                        default=None)
        if latest_in is None:
            continue
        row = db.conn.execute("SELECT status FROM conversations WHERE id=?", (conv_id,)).fetchone()
        if row and row[0] == "resolved":
            people = [(mid, m) for mid, m in items if m.direction == "in" and not _automatic(m)]
            taken = csat.take_answers(db, conv_id, [(mid, m.text, m.created_at) for mid, m in people])
            answered |= taken
            rest = [m.created_at for mid, m in people if mid not in taken]
            if not rest:
                continue
            latest_in = max(rest)
        if row and row[0] != "open":
            woken.append((conv_id, latest_in, row[0]))
    for conv_id, at, old in woken:
        db.conn.execute("UPDATE conversations SET status='open', snoozed_until=NULL WHERE id=?", (conv_id,))
        db.conn.execute(
            "INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
            (conv_id, at, "status", "customer", json.dumps({"status": "open", "from": old})),
        )
    return answered


def reindex_conversations(db: Database, conv_ids: Sequence[str]) -> None:
    """Rewrite the conversation-level search rows (customer, subject, tags).

    Triggers keep these rows current on every write; this rebuilds them (``doctor --repair``)."""
    for start in range(0, len(conv_ids), 500):
        chunk = conv_ids[start : start + 500]
        qs = ",".join("?" * len(chunk))
        rows = db.conn.execute(
            f"SELECT c.rowid, coalesce(p.name, '') || ' ' || coalesce(p.handle, ''), c.subject, c.tags "
            f"FROM conversations c LEFT JOIN contacts p ON p.id = c.contact_id WHERE c.id IN ({qs})",
            chunk,
        ).fetchall()
        db.conn.executemany("DELETE FROM conversations_fts WHERE rowid=?", [(r[0],) for r in rows])
        db.conn.executemany(
            "INSERT INTO conversations_fts(rowid, customer, subject, tags) VALUES (?,?,?,?)",
            [(r[0], r[1], r[2], r[3].replace(TAG_SEP, " ")) for r in rows],
        )


def get_cursor(db: Database, account: str, stream: str = "default") -> dict | None:
    row = db.conn.execute(
        "SELECT cursor FROM sync_cursors WHERE account=? AND stream=?", (account, stream)
    ).fetchone()
    return json.loads(row[0]) if row else None


def all_cursors(db: Database, account: str) -> dict[str, dict]:
    return {
        r[0]: json.loads(r[1])
        for r in db.conn.execute("SELECT stream, cursor FROM sync_cursors WHERE account=?", (account,))
    }
