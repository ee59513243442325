"""The cache's side of team mode: what this replica pushes, and how it applies the team's events.

A joined workspace keeps the tables the console reads, and every change a person (or this replica's
engine) makes is written there first, exactly as in solo mode: that is what keeps the keys fast and
the console working offline, and why the console never learns it is in a team. The local event log
is the change feed: ``pending_changes`` turns the events past the push pointer into team commands
(each carrying the conversation's team version it was made on, recorded by a trigger the join
installs), and ``apply_events`` replays the team's log into these same tables.

The rules that make every cache converge on the team's state:

- the team's log is applied in seq order, and a conversation event carries the state it left
  (status, assignee, tags …), which the cache takes as is — except a field this replica changed
  and has not pushed yet (that newer intent is kept until its own outcome comes back);
- a replica's own outbox and message events come back as echoes and are skipped (its own copy is
  at least as new: an engine may have sent a reply before it hears its own claim);
- what this module writes while applying is recorded (``team_applied``) and never pushed back;
- a refused change is undone here with the team's value, and the user is told (``notices``).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from replydesk.model import Contact, FetchResult, IncomingMessage, TicketStatus
from replydesk.storage import contacts, outbox, reply_windows, slastate, tickets
from replydesk.storage.actions import _event, _sync_tag_column
from replydesk.storage.db import Database
from replydesk.storage.ingest import IngestStats, _ingest_one, reindex_conversations
from replydesk.storage.team_db import TeamEvent

META_LINK = "team.link"
META_CURSOR = "team.cursor"
META_PUSHED = "team.pushed"

#: Local event kinds whose command needs the conversation's team version (conflict rules use it).
BASED_KINDS = ("assign", "status", "escalate", "queued")
#: Local event kinds that say a person or an engine changed something the team should know.
#: An action other than a reply done (``outbox.mark_done``), by the local event it logs.
DONE_KINDS = ("reply_edited", "reply_deleted", "platform_read", "ticket", "ticket_comment")
PUSHED_KINDS = ("in", "automatic", "reply", "auto_reply", "note", "tag", "untag", "assign", "status", "escalate", "queued",
                "cancelled", "retry", "send_failed", "send_unknown", "outbox", "bounced", "priority",
                "action_queued", "ticket_status", contacts.CARD_EVENT, *DONE_KINDS)
_FIELD_OF = {"tag": "tags", "untag": "tags", "assign": "assignee", "status": "status", "escalate": "escalation",
             "priority": "priority"}
_OUTBOX_KINDS = ("queued", "cancelled", "retry", "send_failed", "send_unknown", "outbox", "action_queued", *DONE_KINDS)


@dataclass(frozen=True)
class Link:
    """How this workspace is joined: the team's URL (no password), who we are, and this replica's id."""

    url: str
    agent: str
    kind: str  # agent | engine
    replica: str

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "agent": self.agent, "kind": self.kind, "replica": self.replica})


def _meta(db: Database, key: str) -> str | None:
    row = db.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return row[0] if row else None


def _set_meta(db: Database, key: str, value: str) -> None:
    db.conn.execute("INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, value))


def link(db: Database) -> Link | None:
    raw = _meta(db, META_LINK)
    if raw is None:
        return None
    data = json.loads(raw)
    return Link(data["url"], data["agent"], data.get("kind", "agent"), data["replica"])


def new_replica_id() -> str:
    return uuid.uuid4().hex[:12]


def conversation_count(db: Database) -> int:
    return db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0]


def set_link(db: Database, value: Link) -> None:
    """Join: remember the team, start the cursors at zero, install the version trigger."""
    with db.transaction():
        _set_meta(db, META_LINK, value.to_json())
        _set_meta(db, META_CURSOR, "0")
        top = db.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        _set_meta(db, META_PUSHED, str(top))
        ensure_trigger(db)


def ensure_trigger(db: Database) -> None:
    """Record the team version each based local change was made on, the moment it is made.
    Run at join, and by the team sync on a workspace joined before a trigger was added."""
    have = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='trigger' AND name LIKE 'team_%'")}
    if {"team_event_base", "team_card_base"} <= have:
        return
    kinds = ",".join(f"'{k}'" for k in BASED_KINDS)
    db.conn.execute(
        f"CREATE TRIGGER IF NOT EXISTS team_event_base AFTER INSERT ON events WHEN new.kind IN ({kinds}) BEGIN "
        "INSERT OR REPLACE INTO team_event_base(seq, version) VALUES (new.seq, coalesce("
        "(SELECT version FROM team_versions WHERE conversation_id = new.conversation_id), 0)); END"
    )
    # A card edit's base is the team's log as far as this cache has applied it: the author had seen
    # every card change below it (card fields belong to no conversation's version).
    db.conn.execute(
        f"CREATE TRIGGER IF NOT EXISTS team_card_base AFTER INSERT ON events WHEN new.kind = '{contacts.CARD_EVENT}' "
        "BEGIN INSERT OR REPLACE INTO team_event_base(seq, version) VALUES (new.seq, coalesce("
        f"(SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{META_CURSOR}'), 0)); END"
    )


def cursor(db: Database) -> int:
    return int(_meta(db, META_CURSOR) or 0)


def pushed(db: Database) -> int:
    return int(_meta(db, META_PUSHED) or 0)


def version_of(db: Database, conv_id: str) -> int:
    row = db.conn.execute("SELECT version FROM team_versions WHERE conversation_id=?", (conv_id,)).fetchone()
    return row[0] if row else 0


# ---- pushing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One local event turned into a team command."""

    local_seq: int
    kind: str
    conversation_id: str
    command: dict[str, Any]


def _applied_ranges(db: Database, after: int) -> list[tuple[int, int]]:
    return [(r[0], r[1]) for r in db.conn.execute("SELECT lo, hi FROM team_applied WHERE hi > ? ORDER BY lo",
                                                  (after,))]


def _inside(seq: int, ranges: list[tuple[int, int]]) -> bool:
    return any(lo <= seq <= hi for lo, hi in ranges)


def pending_changes(db: Database, me: Link, *, leads: frozenset[str] = frozenset(),
                    limit: int = 200) -> tuple[list[Change], int, bool]:
    """Commands for the local changes past the push pointer, in order; the last seq looked at; and
    whether that was every change (False: call again after pushing these)."""
    start = pushed(db)
    ranges = _applied_ranges(db, start)
    marks = ",".join("?" * len(PUSHED_KINDS))
    rows = db.conn.execute(
        f"SELECT e.seq, e.conversation_id, e.at, e.kind, e.actor, e.data, b.version FROM events e "
        f"LEFT JOIN team_event_base b ON b.seq = e.seq WHERE e.seq > ? AND e.kind IN ({marks}) "
        f"ORDER BY e.seq LIMIT ?", (start, *PUSHED_KINDS, limit)).fetchall()
    last = rows[-1][0] if len(rows) == limit else db.conn.execute(
        "SELECT coalesce(max(seq), ?) FROM events", (start,)).fetchone()[0]
    changes: list[Change] = []
    for seq, conv_id, at, kind, actor, raw, base in rows:
        if _inside(seq, ranges):
            continue
        command = _command(db, me, seq, conv_id, at, kind, actor, json.loads(raw or "{}"), base or 0, leads)
        if command is not None:
            changes.append(Change(seq, kind, conv_id, command))
    return changes, last, len(rows) < limit


@contextmanager
def snapshot(db: Database) -> Iterator[Database]:
    """One read transaction: what is pushed together (messages and the cursor past them) is read
    from the same committed state, so a cursor never runs ahead of the messages it covers."""
    if db.conn.in_transaction:
        yield db
        return
    db.conn.execute("BEGIN")
    try:
        yield db
    finally:
        db.conn.execute("COMMIT")


def _message_payload(db: Database, message_id: str) -> dict[str, Any] | None:
    """A stored message as the team (and every other cache) ingests it: the message, its conversation,
    and the conversation's customer (messages carry no contact of their own in the cache)."""
    row = db.conn.execute(
        "SELECT m.id, m.native_id, m.direction, m.author, m.text, m.created_at, m.parent_id, m.state, m.error, "
        "m.private, m.meta, m.automatic, c.id, c.account, c.platform, c.kind, c.native_id, c.subject, "
        "p.native_id, p.name, p.handle, p.vip FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "LEFT JOIN contacts p ON p.id = c.contact_id WHERE m.id = ?", (message_id,)).fetchone()
    if row is None:
        return None
    return {
        "conversation": row[12],
        "thread": {"account": row[13], "platform": row[14], "kind": row[15], "native_id": row[16],
                   "subject": row[17]},
        "contact": {"native_id": row[18] or "unknown", "name": row[19] or "", "handle": row[20] or "",
                    "vip": bool(row[21])},
        "message": {"id": row[0], "native_id": row[1], "direction": row[2], "author": row[3], "text": row[4],
                    "created_at": row[5], "parent_id": row[6], "state": row[7], "error": row[8],
                    "private": bool(row[9]), "meta": json.loads(row[10] or "{}"), "automatic": row[11]},
    }


def _command(db: Database, me: Link, seq: int, conv_id: str, at: float, kind: str, actor: str,
             data: dict[str, Any], base: int, leads: frozenset[str]) -> dict[str, Any] | None:
    common: dict[str, Any] = {"id": f"{me.replica}:{seq}", "agent": me.agent, "at": at, "conversation": conv_id}
    if kind in ("in", "automatic") or (kind in ("reply", "note") and "message" in data
                                       and actor in ("platform", "customer", "robot")):
        payload = _message_payload(db, data.get("message", ""))
        if payload is not None and kind == "in" and not payload["message"]["automatic"]:
            payload["message"]["automatic"] = _survey_answer(db, conv_id, payload["message"]["id"])
        return None if payload is None else {**common, "kind": "message", **payload}
    if kind == "note" and "message" in data:
        row = db.conn.execute("SELECT text, created_at FROM messages WHERE id=?", (data["message"],)).fetchone()
        if row is None:
            return None
        return {**common, "kind": "note", "message": {"id": data["message"], "text": row[0], "created_at": row[1]}}
    if kind == "tag":
        if isinstance(data.get("tags"), list):  # an import states the whole set
            return {**common, "kind": "tag", "replace": data["tags"]}
        return {**common, "kind": "tag", "add": [data.get("tag")]} if data.get("tag") else None
    if kind == "untag":
        return {**common, "kind": "tag", "remove": [data.get("tag")]} if data.get("tag") else None
    if kind == "assign":
        return {**common, "kind": "set", "base": base, "fields": {"assignee": data.get("assignee")}}
    if kind == "ticket_status":
        return _ticket_status_command(common, me, actor, data, at, leads)
    if kind == "status":
        if actor == "customer":  # a customer writing again: every cache and the team derive it themselves
            return None
        if data.get("ticket") is not None:  # a solved ticket's resolution: its ticket_status carries it
            return None
        status = data.get("status")
        until = data.get("until") if status == "snoozed" else None
        return {**common, "kind": "set", "base": base, "fields": {"status": status, "snoozed_until": until}}
    if kind == "escalate":
        row = db.conn.execute("SELECT escalation_target, priority FROM conversations WHERE id=?", (conv_id,)).fetchone()
        target = data.get("target") if data.get("target") is not None else (row[0] if row else None)
        return {**common, "kind": "set", "base": base,
                "fields": {"escalated": True, "escalation_target": target, "priority": row[1] if row else "high"}}
    if kind == "priority":  # a low-rated review's raised priority, or a rule's: the team's too
        priority = data.get("priority")
        return {**common, "kind": "set", "base": base, "fields": {"priority": priority}} \
            if priority in ("low", "normal", "high", "urgent") else None
    if kind == contacts.CARD_EVENT:
        edits = contacts.edits_from(data.get("edits"))
        return {**common, "kind": "card", "base": base, "what": str(data.get("what") or ""),
                "edits": [e.to_json() for e in edits]} if edits else None
    if kind == "bounced":
        return {**common, "kind": "bounced", "message": data.get("message"), "reason": data.get("reason")}
    key = data.get("key")
    item = outbox.get(db, key) if isinstance(key, str) else None
    if item is None:
        return None
    if kind == "queued":
        command = {**common, "kind": "reply", "base": base, "outbox": {
            "key": key, "message_id": f"{item.account}:out:{key}", "text": item.text, "private": item.private,
            "created_at": item.created_at, "not_before": item.not_before}}
        if isinstance(item.payload.get("automatic"), str):  # a rule's or a survey's: every cache knows it
            command["outbox"]["automatic"] = item.payload["automatic"]
        return command
    if kind == "action_queued":
        return {**common, "kind": "action", "outbox": {
            "key": key, "action": item.action, "account": item.account, "text": item.text, "payload": item.payload,
            "created_at": item.created_at, "not_before": item.not_before}}
    if kind in DONE_KINDS:  # an action done (an engine) or confirmed by the user (an unknown one)
        return {**common, "kind": "outbox", "key": key, "state": "sent",
                "remote_id": item.remote_id or data.get("remote_id"), "result": item.result, "sent_at": at}
    if kind in ("reply", "auto_reply"):  # delivered (an engine) or confirmed by the user (an unknown one)
        return {**common, "kind": "outbox", "key": key, "state": "sent",
                "remote_id": item.remote_id or data.get("remote_id"), "sent_at": at}
    if kind == "cancelled":
        return {**common, "kind": "outbox", "key": key, "state": "cancelled"}
    if kind == "retry":
        return {**common, "kind": "outbox", "key": key, "state": "queued", "text": item.text,
                "attempts": item.attempts, "not_before": item.not_before, "last_error": None}
    if kind in ("send_failed", "send_unknown"):
        return {**common, "kind": "outbox", "key": key, "state": "failed" if kind == "send_failed" else "unknown",
                "last_error": item.last_error}
    if kind == "outbox":  # an engine's retry wait after a transient failure
        if item.state != "queued":
            return None
        return {**common, "kind": "outbox", "key": key, "state": "queued", "last_error": item.last_error,
                "not_before": item.not_before, "attempts": item.attempts}
    return None


def _ticket_status_command(common: dict[str, Any], me: Link, account: str, data: dict[str, Any], at: float,
                           leads: frozenset[str]) -> dict[str, Any] | None:
    """A ticket's new status as this engine's poll of the helpdesk ``account`` read it: pushed only by
    the account's leader (another engine's cache has it from the team), once for the team whoever
    else read it too (``replydesk._ticket_status``)."""
    if me.kind != "engine" or account not in leads or not data.get("ticket") or not data.get("status"):
        return None
    updated = data.get("updated_at")
    return {**common, "kind": "ticket_status", "account": account, "ticket": str(data["ticket"]),
            "status": str(data["status"]), "from": data.get("from"),
            "updated_at": float(updated) if isinstance(updated, (int, float)) else at,
            "resolve": bool(data.get("resolve"))}


def _survey_answer(db: Database, conv_id: str, message_id: str) -> str | None:
    """A customer's message this cache took as the answer to a satisfaction survey goes to the team
    as written by no person, with its rating: the team (and every cache) then leaves the conversation
    resolved and starts no clock, as the engine that read the answer did."""
    row = db.conn.execute(
        "SELECT data FROM events WHERE conversation_id=? AND kind='csat' AND json_extract(data, '$.message')=? "
        "LIMIT 1", (conv_id, message_id)).fetchone()
    if row is None:
        return None
    rating = json.loads(row[0])
    said = f"{rating['score']}/5" if isinstance(rating.get("score"), int) else (
        "satisfied" if rating.get("satisfied") else "not satisfied")
    return f"survey answer: {said}"


def note_outbox_change(db: Database, key: str) -> None:
    """An engine's reply went back to waiting (a transient failure): say so to the team."""
    item = outbox.get(db, key)
    if item is not None:
        with db.transaction():
            _event(db, item.conversation_id, "outbox", "system", {"key": key})


def replace_as_forced_reply(db: Database, me: Link, change: Change) -> dict[str, Any] | None:
    """A retried reply the team never accepted (it was refused as a collision): queue it anew, the
    author having confirmed it."""
    key = change.command.get("key")
    item = outbox.get(db, key) if isinstance(key, str) else None
    if item is None:
        return None
    return {"id": f"{me.replica}:{change.local_seq}:forced", "agent": me.agent, "at": change.command.get("at"),
            "conversation": item.conversation_id, "kind": "reply", "force": True, "outbox": {
                "key": key, "message_id": f"{item.account}:out:{key}", "text": item.text, "private": item.private,
                "created_at": item.created_at, "not_before": max(item.not_before, db.now())}}


@dataclass
class PushReport:
    accepted: int = 0
    refused: list[str] = field(default_factory=list)  # what the user is told


def record_outcomes(db: Database, changes: Sequence[Change], outcomes: Sequence[dict[str, Any]], last: int,
                    me: Link) -> PushReport:
    """After a push: move the pointer, and undo each refused change with the team's value (told)."""
    report = PushReport()
    if not changes and last <= pushed(db):  # nothing new (a console's read mark, an SLA tick): no write
        return report
    with applying(db) as undo:
        for change, outcome in zip(changes, outcomes, strict=True):
            if outcome.get("ok"):
                report.accepted += 1
                continue
            text = _refusal(db, change, outcome, undo.top)
            report.refused.append(text)
            db.conn.execute("INSERT INTO notices(at, conversation_id, text) VALUES (?,?,?)",
                            (db.now(), change.conversation_id, text))
        _set_meta(db, META_PUSHED, str(max(last, pushed(db))))
    return report


_WHAT = {"assign": "Assignment", "status": "Status change", "escalate": "Escalation", "queued": "Reply",
         "action_queued": "Action",
         "cancelled": "Taking the reply back", "retry": "Retry", "note": "Note", "tag": "Tag", "untag": "Tag",
         "ticket_status": "Ticket status", contacts.CARD_EVENT: "Customer card edit"}


def _refusal(db: Database, change: Change, outcome: dict[str, Any], upto: int) -> str:
    """Undo a refused change locally and say what happened, in words (``upto``: the last local seq
    before the undos began; what they log is the team's, not the author's)."""
    detail = str(outcome.get("detail") or outcome.get("reason") or "refused")
    what = _WHAT.get(change.kind, change.kind.capitalize())
    state = outcome.get("state")
    if isinstance(state, dict):
        # A field the author changed again since (pushed in this batch, or made while the push was on
        # its way) keeps that newer change: it goes to the team on its own, under the same rule.
        later = own_fields_after(db, change.local_seq, upto).get(change.conversation_id, frozenset())
        _set_state(db, change.conversation_id, state, agent="team", at=db.now(), keep=later)
    row = outcome.get("outbox")
    key = change.command.get("key") or (change.command.get("outbox") or {}).get("key")
    if change.kind == "queued" and key:
        outbox._set(db, key, "failed", last_error=f"not sent: {detail}; retry it from the outbox to send anyway")
        return f"Reply not sent: {detail}. It waits in the outbox as failed; retry it to send anyway."
    if change.kind == "action_queued" and key:
        outbox._set(db, key, "failed", last_error=f"not done: {detail}")
        action = str((change.command.get("outbox") or {}).get("action") or "action").replace("_", " ")
        return f"{action.capitalize()} not done: {detail}. It waits in the outbox as failed."
    if change.kind == contacts.CARD_EVENT:
        return _card_refused(db, change, outcome, detail)
    if isinstance(row, dict):
        _apply_outbox_row(db, row, at=db.now())
    return f"{what} not applied on {change.conversation_id}: {detail} (the team's version stands)"


_CARD_WHAT = {"note": "note", "name": "name", "vip": "VIP flag", "merge": "merge", "split": "split"}


def _card_refused(db: Database, change: Change, outcome: dict[str, Any], detail: str) -> str:
    """A card edit the team refused: the card shows the team's fields again (a field the team never
    had goes back to its default), and the notice quotes what the author wrote so it is not lost."""
    # A field the author changed again since (pushed in this batch, or still waiting) keeps that
    # newer change: it is accepted or refused on its own, and undone by its own refusal.
    later = own_card_fields_after(db, change.local_seq)
    contacts.apply_edits(db, [e for e in contacts.edits_from(outcome.get("cards")) if (e.subject, e.field) not in later])
    what = _CARD_WHAT.get(str(change.command.get("what")), "card edit")
    mine = [e.get("value") for e in change.command.get("edits", [])
            if isinstance(e, dict) and e.get("field") in ("note", "name") and isinstance(e.get("value"), str)]
    quoted = f"; yours was: {_quote(mine[0])}" if mine and mine[0] else ""
    return f"Customer {what} not saved: {detail} (the team's version stands{quoted})"


def _quote(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# ---- applying ---------------------------------------------------------------------------------------


class applying:  # noqa: N801 - used as a context manager, reads as a phrase
    """A transaction whose local events are the team's (or undo a refusal): never pushed back."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._tx = db.transaction()

    def __enter__(self) -> applying:
        self._tx.__enter__()
        self.top = self.db.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        return self

    def __exit__(self, *exc: Any) -> Any:
        if exc[0] is None:
            hi = self.db.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            if hi > self.top:
                if pushed(self.db) >= self.top:  # nothing of ours waits below: just step over them
                    _set_meta(self.db, META_PUSHED, str(hi))
                else:
                    self.db.conn.execute("INSERT OR REPLACE INTO team_applied(lo, hi) VALUES (?,?)",
                                         (self.top + 1, hi))
            self.db.conn.execute("DELETE FROM team_applied WHERE hi <= ?", (pushed(self.db),))
        return self._tx.__exit__(*exc)


@dataclass(frozen=True)
class Intents:
    """This replica's changes not pushed yet: fields per conversation, and reply keys."""

    fields: dict[str, frozenset[str]]
    keys: frozenset[str]
    cards: frozenset[tuple[str, str]] = frozenset()  # (subject, field) of card edits


def own_card_fields_after(db: Database, seq: int) -> set[tuple[str, str]]:
    """(subject, field) of this replica's own card edits logged after local ``seq`` (the team's
    edits replayed here are left out): newer intents that neither a pull nor an undo overwrites."""
    ranges = _applied_ranges(db, seq)
    fields: set[tuple[str, str]] = set()
    for at, raw in db.conn.execute("SELECT seq, data FROM events WHERE seq > ? AND kind = ?",
                                   (seq, contacts.CARD_EVENT)):
        if not _inside(at, ranges):
            fields |= {(e.subject, e.field) for e in contacts.edits_from(json.loads(raw or "{}").get("edits"))}
    return fields


def _own_changes_after(db: Database, seq: int, upto: int | None = None) -> tuple[dict[str, frozenset[str]],
                                                                                frozenset[str]]:
    """This replica's own conversation changes logged after local ``seq`` (and up to ``upto``; the
    team's replayed here and a customer's reopening left out): the fields changed per conversation,
    and the outbox keys."""
    ranges = _applied_ranges(db, seq)
    fields: dict[str, set[str]] = defaultdict(set)
    keys: set[str] = set()
    marks = ",".join("?" * len((*_FIELD_OF, *_OUTBOX_KINDS, "reply", "auto_reply")))
    for at, conv_id, kind, actor, raw in db.conn.execute(
            f"SELECT seq, conversation_id, kind, actor, data FROM events WHERE seq > ? AND seq <= ? "
            f"AND kind IN ({marks})", (seq, upto if upto is not None else 2**62, *_FIELD_OF, *_OUTBOX_KINDS,
                                       "reply", "auto_reply")):
        if _inside(at, ranges) or (kind == "status" and actor == "customer"):
            continue
        if kind in _FIELD_OF:
            fields[conv_id].add(_FIELD_OF[kind])
        else:
            key = json.loads(raw or "{}").get("key")
            if key:
                keys.add(key)
    return {k: frozenset(v) for k, v in fields.items()}, frozenset(keys)


def own_fields_after(db: Database, seq: int, upto: int | None = None) -> dict[str, frozenset[str]]:
    """Per conversation, the fields this replica changed itself after local ``seq``: newer intents
    that neither a pull nor the undo of an older refused change overwrites."""
    return _own_changes_after(db, seq, upto)[0]


def pending_intents(db: Database) -> Intents:
    start = pushed(db)
    fields, keys = _own_changes_after(db, start)
    return Intents(fields, keys, frozenset(own_card_fields_after(db, start)))


@dataclass
class ApplyReport:
    events: int = 0
    messages: int = 0
    conversations: set[str] = field(default_factory=set)


def apply_events(db: Database, events: Sequence[TeamEvent], me: Link, *,
                 leads: frozenset[str] = frozenset()) -> ApplyReport:
    """Replay team events into the cache in one transaction, and move the cursor past them."""
    report = ApplyReport()
    if not events:
        return report
    own = me.replica + ":"
    with applying(db):
        done = cursor(db)  # another applier (a CLI push) may have got here first
        events = [e for e in events if e.seq > done]
        if not events:
            return report
        intents = pending_intents(db)
        versions: dict[str, int] = {}
        for run in _runs(events):
            if run[0].kind == "message":
                _apply_messages(db, [e for e in run if not (e.command_id or "").startswith(own)], intents, report)
            else:
                for event in run:
                    _apply_one(db, event, event.command_id is not None and event.command_id.startswith(own),
                               intents, leads, report)
            for event in run:
                if event.conversation_id:
                    versions[event.conversation_id] = event.seq
        db.conn.executemany(
            "INSERT INTO team_versions(conversation_id, version) VALUES (?,?) "
            "ON CONFLICT(conversation_id) DO UPDATE SET version=max(version, excluded.version)",
            list(versions.items()))
        _set_meta(db, META_CURSOR, str(events[-1].seq))
        slastate.refresh(db, report.conversations)
        report.events = len(events)
    return report


def _runs(events: Sequence[TeamEvent]) -> Iterable[list[TeamEvent]]:
    """Consecutive message events go into one ingest (the fast path); the rest one by one, in order."""
    run: list[TeamEvent] = []
    for event in events:
        if run and (event.kind == "message") != (run[0].kind == "message"):
            yield run
            run = []
        run.append(event)
    if run:
        yield run


def _native(full: str | None, account: str) -> str | None:
    if full is None:
        return None
    prefix = f"{account}:"
    return full[len(prefix):] if full.startswith(prefix) else full


def _apply_messages(db: Database, events: list[TeamEvent], intents: Intents, report: ApplyReport) -> None:
    by_account: dict[str, list[IncomingMessage]] = defaultdict(list)
    fixes: list[tuple[str, int, str]] = []
    last_state: dict[str, TeamEvent] = {}
    for event in events:
        d = event.data
        thread, m, c = d.get("thread") or {}, d.get("message") or {}, d.get("contact") or {}
        account = thread.get("account")
        if not account or not m.get("id"):
            continue
        meta = m.get("meta") if isinstance(m.get("meta"), dict) else {}
        by_account[account].append(IncomingMessage(
            native_id=m.get("native_id") or _native(m["id"], account), conversation_native_id=thread.get("native_id")
            or _native(event.conversation_id, account), platform=thread.get("platform", ""),
            kind=thread.get("kind", ""), contact=Contact(native_id=str(c.get("native_id") or "unknown"),
                                                         name=str(c.get("name") or ""),
                                                         handle=str(c.get("handle") or ""), vip=bool(c.get("vip"))),
            text=m.get("text", ""), created_at=m.get("created_at", event.at), direction=m.get("direction", "in"),
            author=m.get("author", ""), subject=thread.get("subject") or "",
            parent_native_id=_native(m.get("parent_id"), account), meta=meta, automatic=m.get("automatic"),
        ))
        if m.get("state") not in (None, "received", "sent") or m.get("private"):
            fixes.append((m.get("state") or "received", int(bool(m.get("private"))), m["id"]))
        if event.conversation_id:
            last_state[event.conversation_id] = event
    for account, messages in by_account.items():
        stats = IngestStats()
        _ingest_one(db, account, FetchResult(messages=messages, cursor={}), stats)
        report.messages += stats.new_messages
        report.conversations |= stats.conversations
    if fixes:
        db.conn.executemany("UPDATE messages SET state=?, private=? WHERE id=?", fixes)
    for conv_id, event in last_state.items():
        _set_state(db, conv_id, event.result, agent=event.agent, at=event.at,
                   keep=intents.fields.get(conv_id, frozenset()))
        report.conversations.add(conv_id)


def _apply_one(db: Database, event: TeamEvent, own: bool, intents: Intents, leads: frozenset[str],
               report: ApplyReport) -> None:
    kind, conv_id, d = event.kind, event.conversation_id, event.data
    if kind in ("tag", "set"):
        if conv_id and _exists(db, conv_id):
            _set_state(db, conv_id, event.result, agent=event.agent, at=event.at,
                       keep=intents.fields.get(conv_id, frozenset()))
            report.conversations.add(conv_id)
    elif kind == "note":
        m = d.get("message") or {}
        if not own and conv_id and _exists(db, conv_id) and m.get("id"):
            account = db.conn.execute("SELECT account FROM conversations WHERE id=?", (conv_id,)).fetchone()[0]
            cur = db.conn.execute(
                "INSERT OR IGNORE INTO messages(id, conversation_id, account, native_id, direction, author, text, "
                "created_at, state) VALUES (?,?,?,?,?,?,?,?,?)",
                (m["id"], conv_id, account, m["id"], "note", event.agent, m.get("text", ""),
                 m.get("created_at", event.at), "received"))
            if cur.rowcount:
                _event(db, conv_id, "note", event.agent, {"message": m["id"]}, at=event.at)
    elif kind in ("reply", "action"):  # another replica's queued reply or action, in the team's order
        row = event.result.get("outbox") or {}
        if not own and conv_id and _exists(db, conv_id) and row.get("key") and outbox.get(db, row["key"]) is None:
            (_insert_reply if kind == "reply" else _insert_action)(db, row, event)
            report.conversations.add(conv_id)
        db.conn.execute("UPDATE outbox SET seq=? WHERE key=?", (event.seq, row.get("key")))
    elif kind == "outbox":
        row = event.result.get("outbox") or {}
        if not own and row.get("key") and row["key"] not in intents.keys:
            _apply_outbox_row(db, row, at=float(d.get("sent_at") or event.at))
            if conv_id:
                report.conversations.add(conv_id)
    elif kind == "card" and not own:
        _apply_card(db, event, intents)
    elif kind == "ticket_status" and not own:
        if conv_id and _exists(db, conv_id):
            _apply_ticket_status(db, event, conv_id, intents.fields.get(conv_id, frozenset()))
            report.conversations.add(conv_id)
    elif kind == "bounced" and not own:
        db.conn.execute("UPDATE messages SET state='failed', error=? WHERE id=?", (d.get("reason"), d.get("message")))
        db.conn.execute("UPDATE outbox SET state='failed', last_error=? WHERE message_id=? AND state='unknown'",
                        (d.get("reason"), d.get("message")))
    elif kind == "cursor" and d.get("account") not in leads and not own:
        db.conn.execute(
            "INSERT INTO sync_cursors(account, stream, cursor, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT(account, stream) DO UPDATE SET cursor=excluded.cursor, updated_at=excluded.updated_at",
            (d.get("account"), d.get("stream"), json.dumps(d.get("cursor")), event.at))
    elif kind == "account" and not own and d.get("name"):
        facts = json.dumps(d.get("facts") or {})
        before = db.conn.execute("SELECT facts FROM accounts WHERE name=?", (d["name"],)).fetchone()
        db.conn.execute(
            "INSERT INTO accounts(name, provider, platform, created_at, facts) VALUES (?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET provider=excluded.provider, platform=excluded.platform, "
            "facts=excluded.facts",
            (d["name"], d.get("provider", ""), d.get("platform", ""), event.at, facts))
        if before is None or before[0] != facts:
            # The rules may reach this cache after the conversations they bind (the engine publishes
            # facts once it leads, its backlog can be ahead of them in the log): without this, the
            # windows stay unknown here, a reply queues to a closed one and the engine refuses it.
            reply_windows.refresh(db, d["name"])


def _apply_card(db: Database, event: TeamEvent, intents: Intents) -> None:
    """Another agent's card edit, written as a solo edit writes it (and logged on the customer's
    conversation like one); a field this replica changed and has not pushed yet keeps its newer intent."""
    edits = [e for e in contacts.edits_from(event.result.get("edits")) if (e.subject, e.field) not in intents.cards]
    if not edits:
        return
    contacts.apply_edits(db, edits)
    conv_id = event.conversation_id if event.conversation_id and _exists(db, event.conversation_id) else \
        contacts.card_conversation(db, [e.subject for e in edits])
    if conv_id is not None:
        _event(db, conv_id, contacts.CARD_EVENT, event.agent,
               {"what": str(event.data.get("what") or ""), "edits": [e.to_json() for e in edits]}, at=event.at)


def _apply_ticket_status(db: Database, event: TeamEvent, conv_id: str, keep: frozenset[str]) -> None:
    """A ticket's status the leading engine read, applied as that engine's cache applied it
    (``tickets.apply``: the ticket line, its ``ticket_status`` event, the resolution where asked);
    a status change this replica has not pushed yet keeps its newer intent. Then the team's state,
    for a cache that never learnt of the ticket."""
    d = event.data
    try:
        status = TicketStatus(str(d["ticket"]), str(d["status"]), float(d["updated_at"]),
                              bool(d.get("resolve")) and "status" not in keep)
    except (KeyError, TypeError, ValueError):
        return
    tickets.apply(db, str(d.get("account") or ""), [status])
    _set_state(db, conv_id, event.result, agent=event.agent, at=event.at, keep=keep)


def _exists(db: Database, conv_id: str) -> bool:
    return db.conn.execute("SELECT 1 FROM conversations WHERE id=?", (conv_id,)).fetchone() is not None


def _insert_reply(db: Database, row: dict[str, Any], event: TeamEvent) -> None:
    conv_id = row["conversation_id"]
    account = row.get("account") or db.conn.execute("SELECT account FROM conversations WHERE id=?",
                                                    (conv_id,)).fetchone()[0]
    key = row["key"]
    db.conn.execute(
        "INSERT OR IGNORE INTO messages(id, conversation_id, account, native_id, direction, author, text, created_at, "
        "state, private) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (row["message_id"], conv_id, account, f"out:{key}", "out", row.get("author") or event.agent, row["text"],
         row["created_at"], "queued", int(bool(row.get("private")))))
    # A rule's acknowledgement or a survey says so in the command: once sent it is an ``auto_reply``
    # here too (not our first reply for the SLA unless the policy says so), as in the engine's cache.
    automatic = (event.data.get("outbox") or {}).get("automatic")
    payload = json.dumps({"automatic": automatic}) if isinstance(automatic, str) and automatic else "{}"
    db.conn.execute(
        "INSERT INTO outbox(key, conversation_id, message_id, account, private, text, created_at, not_before, state, "
        "attempts, last_error, remote_id, updated_at, seq, payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (key, conv_id, row["message_id"], account, int(bool(row.get("private"))), row["text"], row["created_at"],
         row["not_before"], "queued", 0, None, None, event.at, event.seq, payload))
    _event(db, conv_id, "queued", event.agent, {"key": key, "private": bool(row.get("private")),
                                                 "not_before": row["not_before"]}, at=event.at)


def _insert_action(db: Database, row: dict[str, Any], event: TeamEvent) -> None:
    """Another replica's outbox action, queued here as it was there (what it asked, frozen)."""
    payload = row.get("payload") if isinstance(row.get("payload"), dict) else {}
    account = row.get("account") or db.conn.execute("SELECT account FROM conversations WHERE id=?",
                                                    (row["conversation_id"],)).fetchone()[0]
    db.conn.execute(
        "INSERT INTO outbox(key, conversation_id, message_id, account, private, text, created_at, not_before, state, "
        "attempts, last_error, remote_id, updated_at, seq, action, payload, result) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (row["key"], row["conversation_id"], "", account, 0, str(row.get("text") or ""), float(row["created_at"]),
         float(row["not_before"]), "queued", 0, None, None, event.at, event.seq, str(row.get("action")),
         json.dumps(payload, ensure_ascii=False), "{}"))
    _event(db, row["conversation_id"], "action_queued", event.agent,
           {"key": row["key"], "action": row.get("action"), "account": account}, at=event.at)
    if row.get("action") == "ticket_comment":
        _comment_forwarded(db, row["conversation_id"], account, payload)


def _comment_forwarded(db: Database, conv_id: str, account: str, payload: dict[str, Any]) -> None:
    """An engine forwarded a note to its ticket: this cache counts it as forwarded too, so an engine
    that takes the helpdesk account over later does not queue the same note again."""
    note = payload.get("message_id")
    if not isinstance(note, str):
        return
    seq = db.conn.execute("SELECT max(seq) FROM events WHERE conversation_id=? AND kind='note' "
                          "AND json_extract(data, '$.message')=?", (conv_id, note)).fetchone()[0]
    if seq is not None:
        db.conn.execute("UPDATE tickets SET note_seq=max(note_seq, ?) WHERE account=? AND ticket_id=?",
                        (seq, account, str(payload.get("ticket_id"))))


def _apply_outbox_row(db: Database, row: dict[str, Any], *, at: float) -> None:
    """Take the team's delivery state of one reply (sent renames the message as the engine did) or
    action (done shows its effect: an edited or deleted reply, a ticket with its link)."""
    key = row.get("key")
    local = outbox.get(db, key) if isinstance(key, str) else None
    if local is None or local.state == "sent":  # sent is a fact: nothing moves it back
        return
    state = row.get("state")
    if state == "sent" and not local.is_reply:
        result = row.get("result") if isinstance(row.get("result"), dict) else {}
        details = {k: v for k, v in result.items() if k != "id"}
        outbox.mark_done(db, key, str(row.get("remote_id") or result.get("id") or f"team:{key}"), at, details)
        return
    if state == "sent":
        outbox.mark_sent(db, key, row.get("remote_id") or f"team:{key}", at)
        return
    db.conn.execute(
        "UPDATE outbox SET state=?, attempts=?, not_before=?, last_error=?, text=?, updated_at=? WHERE key=?",
        (state, int(row.get("attempts") or 0), float(row.get("not_before") or local.not_before), row.get("last_error"),
         row.get("text") or local.text, db.now(), key))
    db.conn.execute("UPDATE messages SET state=?, error=?, text=? WHERE id=?",
                    (state, row.get("last_error"), row.get("text") or local.text, local.message_id))
    if state in ("failed", "unknown") and local.state != state:
        _event(db, local.conversation_id, "send_failed" if state == "failed" else "send_unknown", "team",
               {"key": key, "error": row.get("last_error")}, at=at)


def adopt_outbox_row(db: Database, row: dict[str, Any]) -> None:
    """Take the team's state of a reply that this replica holds otherwise (an engine's claim found the
    team ahead: sent or settled by another engine while this one missed an event)."""
    with applying(db):
        _apply_outbox_row(db, row, at=db.now())


def _set_state(db: Database, conv_id: str, state: dict[str, Any], *, agent: str, at: float,
               keep: frozenset[str]) -> None:
    """Make the conversation's fields the team's, logging each change as the local log knows them.

    ``keep``: fields this replica changed and has not pushed yet (or changed after a refused change
    this undoes); its newer intent stays. ``escalation`` covers the escalation and the priority with it.
    """
    if not state or "status" not in state:
        return
    row = db.conn.execute("SELECT status, snoozed_until, assignee, priority, escalated, escalation_target "
                          "FROM conversations WHERE id=?", (conv_id,)).fetchone()
    if row is None:
        return
    status, until, assignee, priority, escalated, target = row
    if "status" not in keep and (state["status"] != status or state.get("snoozed_until") != until):
        db.conn.execute("UPDATE conversations SET status=?, snoozed_until=? WHERE id=?",
                        (state["status"], state.get("snoozed_until"), conv_id))
        data: dict[str, Any] = {"status": state["status"], "from": status}
        if state.get("snoozed_until") is not None:
            data["until"] = state["snoozed_until"]
        _event(db, conv_id, "status", agent, data, at=at)
    if "assignee" not in keep and state.get("assignee") != assignee:
        db.conn.execute("UPDATE conversations SET assignee=? WHERE id=?", (state.get("assignee"), conv_id))
        _event(db, conv_id, "assign", agent, {"assignee": state.get("assignee")}, at=at)
    # ``priority`` kept alone (a pending priority change): the team's escalation, with our priority.
    team_escalation = (bool(state.get("escalated")), state.get("escalation_target"),
                       priority if "priority" in keep else state.get("priority") or "normal")
    if "escalation" not in keep and team_escalation != (bool(escalated), target, priority):
        db.conn.execute("UPDATE conversations SET escalated=?, escalation_target=?, priority=? WHERE id=?",
                        (int(team_escalation[0]), team_escalation[1], team_escalation[2], conv_id))
        if team_escalation[0] and not escalated:
            _event(db, conv_id, "escalate", agent, {"target": team_escalation[1]}, at=at)
    if "tags" not in keep and isinstance(state.get("tags"), list):
        team_tags = {t for t in state["tags"] if isinstance(t, str)}
        local_tags = {r[0] for r in db.conn.execute("SELECT tag FROM conversation_tags WHERE conversation_id=?",
                                                    (conv_id,))}
        if team_tags != local_tags:
            for t in sorted(team_tags - local_tags):
                db.conn.execute("INSERT OR IGNORE INTO conversation_tags(conversation_id, tag) VALUES (?,?)", (conv_id, t))
                _event(db, conv_id, "tag", agent, {"tag": t}, at=at)
            for t in sorted(local_tags - team_tags):
                db.conn.execute("DELETE FROM conversation_tags WHERE conversation_id=? AND tag=?", (conv_id, t))
                _event(db, conv_id, "untag", agent, {"tag": t}, at=at)
            _sync_tag_column(db, conv_id)
            reindex_conversations(db, [conv_id])


# ---- what is happening now (presence, account states) -------------------------------------------------


def replace_presence(db: Database, rows: Sequence[tuple[str, str | None, str | None, float, float]],
                     me: str) -> bool:
    """The team's live presence, without ours; written only when it changed (a write wakes consoles)."""
    wanted = sorted((a, c, act, since, exp) for a, c, act, since, exp in rows if a != me)
    current = sorted(tuple(r) for r in db.conn.execute(
        "SELECT agent, conversation_id, activity, since, expires_at FROM presence"))
    if [r[:4] for r in wanted] == [r[:4] for r in current] and all(
            abs(w[4] - c[4]) < 30 for w, c in zip(wanted, current, strict=True)):
        return False
    with db.transaction():
        db.conn.execute("DELETE FROM presence")
        db.conn.executemany("INSERT INTO presence(agent, conversation_id, activity, since, expires_at) "
                            "VALUES (?,?,?,?,?)", wanted)
    return True


def replace_account_states(db: Database, rows: Sequence[tuple[str, str, str, float | None, float | None]]) -> bool:
    """The leading engines' account states, for the status bar (written only when they changed)."""
    current = {r[0]: tuple(r) for r in db.conn.execute(
        "SELECT account, state, detail, last_sync, until FROM account_status")}
    changed = [tuple(r) for r in rows if current.get(r[0]) != tuple(r)]
    if not changed:
        return False
    with db.transaction():
        for account, state, detail, last_sync, until in changed:
            db.conn.execute(
                "INSERT INTO accounts(name, provider, platform, created_at) VALUES (?,?,?,?) "
                "ON CONFLICT(name) DO NOTHING", (account, "team", "multi", db.now()))
            db.conn.execute(
                "INSERT INTO account_status(account, state, detail, last_sync, until, updated_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(account) DO UPDATE SET state=excluded.state, detail=excluded.detail, "
                "last_sync=excluded.last_sync, until=excluded.until, updated_at=excluded.updated_at",
                (account, state, detail, last_sync, until, db.now()))
    return True


def local_account_states(db: Database, names: Iterable[str]) -> list[tuple[str, str, str, float | None, float | None]]:
    """An engine's own account states, to publish for the accounts it leads."""
    names = list(names)
    if not names:
        return []
    qs = ",".join("?" * len(names))
    return [tuple(r) for r in db.conn.execute(
        f"SELECT account, state, detail, last_sync, until FROM account_status WHERE account IN ({qs})", names)]


def account_rows(db: Database, names: Iterable[str]) -> list[dict[str, Any]]:
    """An engine's accounts (provider, platform, facts), to publish as ``account`` commands."""
    names = list(names)
    if not names:
        return []
    qs = ",".join("?" * len(names))
    return [{"name": r[0], "provider": r[1], "platform": r[2], "facts": json.loads(r[3] or "{}")}
            for r in db.conn.execute(f"SELECT name, provider, platform, facts FROM accounts WHERE name IN ({qs})",
                                     names)]


def cursors_of(db: Database, names: Iterable[str]) -> list[tuple[str, str, Any]]:
    names = list(names)
    if not names:
        return []
    qs = ",".join("?" * len(names))
    return [(r[0], r[1], json.loads(r[2])) for r in db.conn.execute(
        f"SELECT account, stream, cursor FROM sync_cursors WHERE account IN ({qs}) ORDER BY account, stream", names)]


def due_snoozes(db: Database, accounts: Iterable[str], now: float) -> list[str]:
    """Snoozed conversations of ``accounts`` whose time has come (the leading engine wakes them)."""
    names = list(accounts)
    if not names:
        return []
    qs = ",".join("?" * len(names))
    return [r[0] for r in db.conn.execute(
        f"SELECT id FROM conversations WHERE status='snoozed' AND snoozed_until <= ? AND account IN ({qs})",
        (now, *names))]


def pending_count(db: Database) -> int:
    """Local changes not yet pushed (for ``team status``)."""
    start = pushed(db)
    ranges = _applied_ranges(db, start)
    marks = ",".join("?" * len(PUSHED_KINDS))
    return sum(1 for (seq, kind, actor) in db.conn.execute(
        f"SELECT seq, kind, actor FROM events WHERE seq > ? AND kind IN ({marks})", (start, *PUSHED_KINDS))
        if not _inside(seq, ranges) and not (kind == "status" and actor == "customer"))
