"""Pushed payloads (webhook bodies), kept as received before anything parses them.

A platform that pushes (WhatsApp's webhooks) retries a delivery it got no 2xx for, and gives up
after a while. So the receiver commits the verified body here first (``store``: one fsync'd
transaction), answers 200 only then, and the engine ingests stored bodies afterwards through the
normal ingest path (``ingest_body``: the items and the body's new state in one transaction). A crash
anywhere in between loses nothing: a body is ``received`` until it is ``ingested``, or kept as
``unmappable`` with the reason, for ``replydesk doctor``. One row per (account, dedupe key), so a
redelivered or replayed body is stored once, and ``deliveries`` counts how often it came.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from replydesk.model import FetchResult, iso
from replydesk.storage import ingest
from replydesk.storage.db import Database, StorageError

#: The largest body kept (Meta's webhook bodies are far smaller; a bigger one is refused, not cut).
MAX_BODY = 4 * 1024 * 1024
STATES = ("received", "ingested", "unmappable")


class BodyTooLarge(ValueError):
    """A body over ``MAX_BODY``: refused whole (the receiver answers 413), never stored cut."""


@dataclass(frozen=True)
class PushedBody:
    id: int
    account: str
    dedupe_key: str
    received_at: float
    headers: dict[str, str]
    body: bytes
    state: str
    reason: str | None
    deliveries: int


def store(db: Database, account: str, dedupe_key: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bool]:
    """Commit a verified body durably; returns (row id, True when it is new).

    The commit is synced to disk (``synchronous=FULL`` for this transaction: the workspace's
    usual NORMAL can lose the last commits on a power cut, and the platform will not send this
    body again once we have answered). A body already held only counts one more delivery."""
    if not isinstance(body, bytes | bytearray):
        raise TypeError("a pushed body is bytes, as received")
    if len(body) > MAX_BODY:
        raise BodyTooLarge(f"the body is {len(body)} bytes; at most {MAX_BODY} are kept")
    if db.conn.in_transaction:  # its own commit is the acknowledgement: never one joined to another
        raise StorageError("a pushed body is stored in a transaction of its own")
    now = db.now()
    kept = json.dumps({str(k).lower(): str(v)[:1000] for k, v in headers.items()}, ensure_ascii=False)
    db.conn.execute("PRAGMA synchronous = FULL")
    try:
        with db.transaction():
            row = db.conn.execute("SELECT id FROM pushed_bodies WHERE account=? AND dedupe_key=?",
                                  (account, dedupe_key)).fetchone()
            if row is not None:
                db.conn.execute("UPDATE pushed_bodies SET deliveries = deliveries + 1, updated_at=? WHERE id=?",
                                (now, row[0]))
                return row[0], False
            cur = db.conn.execute(
                "INSERT INTO pushed_bodies(account, dedupe_key, received_at, headers, body, state, updated_at) "
                "VALUES (?,?,?,?,?,?,?)", (account, dedupe_key, now, kept, bytes(body), "received", now))
            return int(cur.lastrowid), True
    finally:
        db.conn.execute("PRAGMA synchronous = NORMAL")


_COLS = "id, account, dedupe_key, received_at, headers, body, state, reason, deliveries"


def _body(r: Any) -> PushedBody:
    try:
        headers = json.loads(r[4] or "{}")
    except ValueError:
        headers = {}
    return PushedBody(r[0], r[1], r[2], r[3], headers if isinstance(headers, dict) else {}, bytes(r[5]), r[6],
                      r[7], r[8])


def get(db: Database, body_id: int) -> PushedBody | None:
    r = db.conn.execute(f"SELECT {_COLS} FROM pushed_bodies WHERE id=?", (body_id,)).fetchone()
    return _body(r) if r else None


def has_pending(db: Database, account: str) -> bool:
    """Whether ``account`` has bodies waiting to be ingested (the engine asks on every turn: one
    look at a partial index)."""
    return db.conn.execute("SELECT 1 FROM pushed_bodies WHERE account=? AND state='received' LIMIT 1",
                           (account,)).fetchone() is not None


def pending(db: Database, account: str, limit: int = 50) -> list[PushedBody]:
    """Bodies received and not yet ingested, oldest first."""
    return [_body(r) for r in db.conn.execute(
        f"SELECT {_COLS} FROM pushed_bodies WHERE account=? AND state='received' ORDER BY id LIMIT ?",
        (account, limit))]


def adopt(db: Database, spooled: Iterable[Any]) -> list[int]:
    """Take bodies the webhook receiver spooled (``storage.spool``) into this table, in one
    transaction synced to disk, and return the spool ids now held here (the caller then forgets
    them there). A body already here (a redelivery) only adds its deliveries."""
    rows = list(spooled)
    if not rows:
        return []
    if db.conn.in_transaction:
        raise StorageError("spooled bodies are adopted in a transaction of their own")
    now = db.now()
    db.conn.execute("PRAGMA synchronous = FULL")  # the spool forgets them once this returns
    try:
        with db.transaction():
            for s in rows:
                kept = json.dumps({str(k).lower(): str(v)[:1000] for k, v in s.headers.items()}, ensure_ascii=False)
                db.conn.execute(
                    "INSERT INTO pushed_bodies(account, dedupe_key, received_at, headers, body, state, deliveries, "
                    "updated_at) VALUES (?,?,?,?,?,'received',?,?) ON CONFLICT(account, dedupe_key) DO UPDATE SET "
                    "deliveries = deliveries + excluded.deliveries, updated_at = excluded.updated_at",
                    (s.account, s.dedupe_key, s.received_at, kept, bytes(s.body), s.deliveries, now))
    finally:
        db.conn.execute("PRAGMA synchronous = NORMAL")
    return [s.id for s in rows]


def ingest_body(db: Database, body_id: int, results: Iterable[FetchResult]) -> ingest.IngestStats:
    """Store what a body was parsed into and mark it ingested, in one transaction: a crash leaves
    it ``received`` (and ingested again later; ingest is idempotent) or done, never half.

    A body whose every item was rejected is kept as ``unmappable`` with the first reason."""
    with db.transaction():
        row = db.conn.execute("SELECT account, state FROM pushed_bodies WHERE id=?", (body_id,)).fetchone()
        if row is None or row[1] != "received":
            return ingest.IngestStats()
        stats = ingest.ingest(db, row[0], list(results))
        took = stats.new_messages + stats.skipped + stats.receipts
        if stats.rejected and not took:
            state, reason = "unmappable", f"every item was rejected: {stats.rejected[0][1]}"[:500]
        else:
            state, reason = "ingested", None
        db.conn.execute("UPDATE pushed_bodies SET state=?, reason=?, items=?, updated_at=? WHERE id=?",
                        (state, reason, took, db.now(), body_id))
    return stats


def mark_unmappable(db: Database, body_id: int, reason: str) -> None:
    """Nothing in the body could be mapped: keep it, with why, for the doctor (never dropped)."""
    with db.transaction():
        db.conn.execute("UPDATE pushed_bodies SET state='unmappable', reason=?, updated_at=? WHERE id=?",
                        (ingest.clean_text(reason, 500), db.now(), body_id))


def summary(db: Database) -> dict[str, Any]:
    """What ``replydesk doctor`` shows: counts by state, when the last body came, the latest
    unmappable ones with their reasons."""
    counts = {state: 0 for state in STATES}
    for state, n in db.conn.execute("SELECT state, count(*) FROM pushed_bodies GROUP BY state"):
        counts[state] = n
    last = db.conn.execute("SELECT max(received_at) FROM pushed_bodies").fetchone()[0]
    redelivered = db.conn.execute("SELECT coalesce(sum(deliveries - 1), 0) FROM pushed_bodies").fetchone()[0]
    bad = [{"id": r[0], "account": r[1], "received_at": iso(r[2]), "reason": r[3]} for r in db.conn.execute(
        "SELECT id, account, received_at, reason FROM pushed_bodies WHERE state='unmappable' "
        "ORDER BY id DESC LIMIT 5")]
    return {"counts": counts, "last_received_at": iso(last), "redeliveries": redelivered, "unmappable": bad}
