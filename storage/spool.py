"""The webhook receiver's own durable store: a small SQLite file beside the workspace database.

Why a file of its own: a platform that pushes (Meta) waits only a few seconds for its 200 and then
retries. The receiver must commit each verified body before it answers, and it must never wait
for the sync engine, which may hold the workspace database's write lock for a long ingest. So the
receiver writes only here (``webhooks.db``: one tiny fsync'd transaction per body, nobody else
holds its lock for more than a moment), and the engine moves spooled bodies into the workspace's
``pushed_bodies`` (``storage.pushes.adopt``) on its own time, then ingests them as usual.

Deduplication: one row per (account, dedupe key) here too, so a redelivery that comes while the
first copy still waits counts a delivery instead of a second row; after the move, the workspace's
table dedupes (a redelivery then comes through the spool once more and is counted there).

The receiver also counts what it refused (bad or missing signatures, bodies too large) and when,
in ``refusals``, so ``replydesk doctor`` can say whether signatures fail. Those counters are written
at most once a second: a flood of forged requests must not turn into a flood of fsyncs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replydesk.storage.files import create_private, private_dir

SPOOL_FILENAME = "webhooks.db"
REFUSAL_FLUSH = 1.0  # seconds between writes of the refusal counters

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spooled (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        dedupe_key TEXT NOT NULL,
        received_at REAL NOT NULL,
        headers TEXT NOT NULL DEFAULT '{}',
        body BLOB NOT NULL,
        deliveries INTEGER NOT NULL DEFAULT 1,
        UNIQUE (account, dedupe_key)
    )""",
    """CREATE TABLE IF NOT EXISTS refusals (
        reason TEXT PRIMARY KEY,
        n INTEGER NOT NULL,
        last_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS receiver (
        key TEXT PRIMARY KEY,
        value REAL NOT NULL
    )""",
)


@dataclass(frozen=True)
class SpooledBody:
    id: int
    account: str
    dedupe_key: str
    received_at: float
    headers: dict[str, str]
    body: bytes
    deliveries: int


def path_in(data_dir: Path) -> Path:
    return Path(data_dir) / SPOOL_FILENAME


def exists(data_dir: Path) -> bool:
    return path_in(data_dir).exists()


class Spool:
    """One connection to the spool file (one per thread: the receiver's, the engine's)."""

    def __init__(self, data_dir: Path, *, clock: Any = time.time, busy_ms: int = 5000) -> None:
        path = path_in(data_dir)
        private_dir(path.parent)
        if not path.exists():  # 0600 before SQLite touches it: it holds customer messages
            os.close(create_private(path))
        self.path = path
        self.clock = clock
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        for attempt in range(50):  # a brand-new file needs a moment alone to switch to WAL
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.02)
        self.conn.execute("PRAGMA synchronous = FULL")  # every commit here is an acknowledgement
        for statement in _SCHEMA:
            self.conn.execute(statement)
        self._refused: dict[str, int] = {}
        self._refused_at = 0.0
        self._flushed_at = 0.0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self.flush_refusals(force=True)
        self.conn.close()

    # ---- the receiver's side ------------------------------------------------------------------------

    def put(self, account: str, dedupe_key: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bool]:
        """Commit a verified body (fsync'd); returns (row id, True when it is new here)."""
        now = self.clock()
        kept = json.dumps({str(k).lower(): str(v)[:1000] for k, v in headers.items()}, ensure_ascii=False)
        with self._transaction():
            row = self.conn.execute("SELECT id FROM spooled WHERE account=? AND dedupe_key=?",
                                    (account, dedupe_key)).fetchone()
            if row is not None:
                self.conn.execute("UPDATE spooled SET deliveries = deliveries + 1 WHERE id=?", (row[0],))
                fresh, body_id = False, int(row[0])
            else:
                cur = self.conn.execute(
                    "INSERT INTO spooled(account, dedupe_key, received_at, headers, body) VALUES (?,?,?,?,?)",
                    (account, dedupe_key, now, kept, bytes(body)))
                fresh, body_id = True, int(cur.lastrowid)
            self.conn.execute("INSERT INTO receiver(key, value) VALUES ('last_received_at', ?) "
                              "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (now,))
        return body_id, fresh

    def refused(self, reason: str) -> None:
        """Count a refused request (``"signature"``, ``"too large"``, ...), flushed at most once a second."""
        self._refused[reason] = self._refused.get(reason, 0) + 1
        self._refused_at = self.clock()
        self.flush_refusals()

    def flush_refusals(self, force: bool = False) -> None:
        if not self._refused or (not force and time.monotonic() - self._flushed_at < REFUSAL_FLUSH):
            return
        counts, self._refused = self._refused, {}
        self._flushed_at = time.monotonic()
        self.conn.execute("PRAGMA synchronous = NORMAL")  # counters: losing the last second is fine
        try:
            with self._transaction():
                self.conn.executemany(
                    "INSERT INTO refusals(reason, n, last_at) VALUES (?,?,?) ON CONFLICT(reason) DO UPDATE "
                    "SET n = n + excluded.n, last_at = excluded.last_at",
                    [(reason, n, self._refused_at) for reason, n in counts.items()])
        finally:
            self.conn.execute("PRAGMA synchronous = FULL")

    # ---- the engine's side --------------------------------------------------------------------------

    def has(self, account: str) -> bool:
        return self.conn.execute("SELECT 1 FROM spooled WHERE account=? LIMIT 1", (account,)).fetchone() is not None

    def waiting(self, account: str, limit: int = 50) -> list[SpooledBody]:
        out = []
        for r in self.conn.execute("SELECT id, account, dedupe_key, received_at, headers, body, deliveries FROM spooled "
                                   "WHERE account=? ORDER BY id LIMIT ?", (account, limit)):
            try:
                headers = json.loads(r[4] or "{}")
            except ValueError:
                headers = {}
            out.append(SpooledBody(r[0], r[1], r[2], r[3], headers if isinstance(headers, dict) else {},
                                   bytes(r[5]), r[6]))
        return out

    def forget(self, ids: list[int]) -> None:
        """Drop bodies the workspace database now holds durably."""
        if ids:
            with self._transaction():
                self.conn.executemany("DELETE FROM spooled WHERE id=?", [(i,) for i in ids])

    # ---- the doctor's side --------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        waiting = dict(self.conn.execute("SELECT account, count(*) FROM spooled GROUP BY account").fetchall())
        last = self.conn.execute("SELECT value FROM receiver WHERE key='last_received_at'").fetchone()
        refusals = {r[0]: {"count": r[1], "last_at": r[2]}
                    for r in self.conn.execute("SELECT reason, n, last_at FROM refusals")}
        return {"waiting": waiting, "last_received_at": last[0] if last else None, "refusals": refusals}
