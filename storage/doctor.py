"""``replydesk doctor``: check a workspace database and repair what can be repaired safely.

Safe repairs only: rebuilding the full-text indexes and the inbox counters from the tables they
derive from, and removing an engine lock file that no live process holds. Nothing here deletes
customer data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replydesk.storage import schema
from replydesk.storage.db import DB_FILENAME, StorageError, open_database
from replydesk.storage.lock import LOCK_FILE, EngineLock

RESTORE_ADVICE = ("the file may be damaged: keep a copy, then restore from an export "
                  "('replydesk import') into a fresh --data-dir")


def probe(path: Path, timeout: float = 2.0) -> str | None:
    """Why the database cannot be used right now (damaged, or locked by another process), or None.

    Quick by design: it waits ``timeout`` seconds for the write lock, not the app's 30, so a hung
    writer is reported instead of hanging the doctor too.
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return (f"{path}: the database is locked: another process has held its write lock for over "
                    f"{timeout:g} s ({_lock_holder(path.parent)}). Stop that process (find it with "
                    f"'fuser {path}'), then run 'replydesk doctor' again; nothing was changed")
        return f"{path}: cannot read the database ({exc}); {RESTORE_ADVICE}"
    except sqlite3.DatabaseError as exc:
        return f"{path}: damaged ({exc}); {RESTORE_ADVICE}"
    finally:
        conn.close()
    return None


def _lock_holder(data_dir: Path) -> str:
    lock = EngineLock(data_dir)
    if not lock.held_by_other():
        return "not a replydesk sync engine: none is running here"
    return f"the sync engine, pid {lock.holder_pid()}, may be hung"


def check(data_dir: Path, repair: bool = False, timeout: float = 2.0,
          clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Check the workspace; with ``repair``, fix what is safe. Returns ``{"ok": bool, "findings": [...]}``.
    ``clock``: what "this month" is for the spend figures (tests fix it)."""
    findings: list[str] = []
    ok = True
    path = Path(data_dir) / DB_FILENAME
    if not path.exists():
        return {"ok": False, "findings": [f"{path}: no workspace database here"]}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        findings.append(f"{path}: readable by other users (mode {mode:o})"
                        + ("; fixed to 600" if repair else "; run with --repair to fix"))
        if repair:
            path.chmod(0o600)
        else:
            ok = False
    problem = probe(path, timeout)
    if problem is not None:
        return {"ok": False, "findings": [*findings, problem]}
    try:
        db = open_database(Path(data_dir), create=False, clock=clock)
    except StorageError as exc:
        return {"ok": False, "findings": [*findings, str(exc), RESTORE_ADVICE]}
    db.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    try:
        result = [r[0] for r in db.conn.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            ok = False
            findings.append("integrity check failed: " + "; ".join(result[:5]) + "; " + RESTORE_ADVICE)
        else:
            findings.append("integrity check: ok")
        for table in ("messages_fts", "conversations_fts"):
            try:
                db.conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
                findings.append(f"{table}: ok")
            except sqlite3.DatabaseError as exc:
                findings.append(f"{table}: damaged ({exc})" + ("; rebuilt" if repair else "; run with --repair"))
                if repair:
                    _rebuild(db, table)
                else:
                    ok = False
        if counters_consistent(db):
            findings.append("inbox counters: ok")
        elif repair:
            rebuild_counters(db)
            findings.append("inbox counters: did not match the conversations; rebuilt")
        else:
            ok = False
            findings.append("inbox counters: do not match the conversations; run with --repair")
        if repair:
            _rebuild(db, "messages_fts")
            _rebuild(db, "conversations_fts")
            findings.append("search indexes rebuilt")
        findings.extend(_spend_findings(db))
        findings.extend(_pushed(db))
    except sqlite3.DatabaseError as exc:  # damage the checks themselves trip over
        ok = False
        findings.append(f"{path}: damaged ({exc}); {RESTORE_ADVICE}")
    finally:
        db.close()
    findings.extend(_receiver(Path(data_dir)))
    if (Path(data_dir) / LOCK_FILE).exists():
        if EngineLock(Path(data_dir)).held_by_other():
            findings.append("a sync engine is running on this workspace (lock held by a live process)")
        else:
            findings.append("engine lock: free")
    return {"ok": ok, "findings": findings}


def _pushed(db: Any) -> list[str]:
    """Webhook bodies: when the last came, what waits, and every one we could not map (kept, with why)."""
    from replydesk.storage import pushes

    summary = pushes.summary(db)
    counts = summary["counts"]
    if not any(counts.values()):
        return []
    lines = [f"webhooks: {counts['ingested']} ingested, {counts['received']} waiting, {counts['unmappable']} "
             f"unmappable; last received {summary['last_received_at']}"
             + (f"; {summary['redeliveries']} redeliveries stored once" if summary["redeliveries"] else "")]
    for bad in summary["unmappable"]:
        lines.append(f"  unmappable webhook body {bad['id']} ({bad['account']}, {bad['received_at']}): {bad['reason']}")
    return lines


def _receiver(data_dir: Path) -> list[str]:
    """The webhook receiver's own store: when the last body came, what waits to be moved in, and
    whether requests were refused (a signature that fails means a wrong app secret, or a forger)."""
    from replydesk.model import iso
    from replydesk.storage import spool

    if not spool.exists(data_dir):
        return []
    try:
        store = spool.Spool(data_dir, busy_ms=2000)
        try:
            summary = store.summary()
        finally:
            store.close()
    except sqlite3.Error as exc:
        return [f"webhook receiver store: cannot be read ({exc})"]
    waiting = sum(summary["waiting"].values())
    lines = [f"webhook receiver: last body received {iso(summary['last_received_at']) or 'never'}"
             + (f"; {waiting} waiting for the sync engine" if waiting else "")]
    for reason, seen in sorted(summary["refusals"].items()):
        advice = {"bad signature": " (check the app secret: replydesk login ACCOUNT)",
                  "no signature": " (not from Meta, or a proxy drops the X-Hub-Signature-256 header)",
                  "handshake": " (the verify token does not match: replydesk webhooks token)"}.get(reason, "")
        lines.append(f"  refused {seen['count']} request(s): {reason}, last {iso(seen['last_at'])}{advice}")
    return lines


def _spend_findings(db: Any) -> list[str]:
    """Each metered account's month (X): spent, the month at this pace, and whether the budget lasts."""
    from replydesk.storage import spend

    out = []
    for account in spend.metered_accounts(db):
        s = spend.summary(db, account)
        budget = f" of a ${s.budget:,.2f} budget" if s.budget is not None else " (no budget set)"
        line = (f"{account}: estimated spend ${s.spent:,.2f}{budget} this month ({s.month}, UTC); "
                f"at the current pace ${s.projected:,.2f} by the month's end")
        out.append(line + (f"; warning: {s.warning()}" if s.warning() else ""))
    return out


def _rebuild(db: Any, table: str) -> None:
    from replydesk.storage.ingest import reindex_conversations

    with db.transaction():
        if table == "messages_fts":
            db.conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        else:
            db.conn.execute("DELETE FROM conversations_fts")
            ids = [r[0] for r in db.conn.execute("SELECT id FROM conversations")]
            reindex_conversations(db, ids)


def _fresh_counts() -> dict[str, str]:
    """What each counter table must hold, counted afresh from the conversations."""
    cells = ", ".join(schema.counter_value("c", col) for col in schema.CELL_COLUMNS)
    ranks = ", ".join(schema.counter_value("c", col) for col in schema.RANK_COLUMNS)
    by_cell = ", ".join(str(i + 1) for i in range(len(schema.CELL_COLUMNS)))  # by the kept values
    by_rank = ", ".join(str(i + 4) for i in range(len(schema.RANK_COLUMNS)))
    levels = " UNION ALL ".join(
        f"SELECT {level}, {schema.rank_parent('c', level)}, {schema.rank_bucket('c', width)}, {ranks}, count(*) "
        f"FROM conversations c GROUP BY 2, 3, {by_rank}"
        for level, width in enumerate(schema.RANK_LEVELS)
    )
    return {
        "inbox_cells": f"SELECT {cells}, count(*) FROM conversations c GROUP BY {by_cell}",
        "inbox_ranks": f"SELECT * FROM ({levels})",  # a subquery: EXCEPT would bind to the first part
    }


def _kept(table: str) -> str:
    head = "level, parent, bucket, " if table == "inbox_ranks" else ""
    columns = schema.RANK_COLUMNS if table == "inbox_ranks" else schema.CELL_COLUMNS
    return f"SELECT {head}{', '.join(columns)}, n FROM {table}"


def counters_consistent(db: Any) -> bool:
    """The inbox counters (kept by trigger) equal a fresh count of the conversations."""
    for table, fresh in _fresh_counts().items():
        for sql in (f"{_kept(table)} EXCEPT {fresh}", f"{fresh} EXCEPT {_kept(table)}"):
            if db.conn.execute(sql).fetchone() is not None:
                return False
    return True


def rebuild_counters(db: Any) -> None:
    with db.transaction():
        for table, fresh in _fresh_counts().items():
            head = "level, parent, bucket, " if table == "inbox_ranks" else ""
            columns = schema.RANK_COLUMNS if table == "inbox_ranks" else schema.CELL_COLUMNS
            db.conn.execute(f"DELETE FROM {table}")
            db.conn.execute(f"INSERT INTO {table}({head}{', '.join(columns)}, n) {fresh}")
