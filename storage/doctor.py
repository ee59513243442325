"""``replydesk doctor``: check a workspace database and repair what can be repaired safely.

Safe repairs only: rebuilding the full-text indexes and the inbox counters from the tables they
derive from, recreating schema objects the migrations create that are missing (indexes, triggers;
a missing table comes back empty, and doctor says its rows are gone), tightening loose file modes,
and removing an engine lock file that no live process holds. Nothing here deletes customer data.

Restoring from an export is advised only when SQLite itself finds the file damaged: a full disk, a
lock held by another process or a read-only mount are named as such, with the file's integrity
checked read-only where it cannot be opened normally.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replydesk.storage import schema
from replydesk.storage.db import DB_FILENAME, StorageError, empty_file_problem, open_database
from replydesk.storage.faults import LOW_SPACE, classify, disk_full_line, free_bytes
from replydesk.storage.files import DIR_MODE, FILE_MODE
from replydesk.storage.lock import LOCK_FILE, EngineLock
from replydesk.storage.schema import MIGRATIONS

RESTORE_ADVICE = ("the file is damaged: keep a copy, then restore from an export "
                  "('replydesk import') into a fresh --data-dir")


def probe(path: Path, timeout: float = 2.0) -> str | None:
    """Why the database cannot be used right now (damaged, locked by another process, a full disk),
    or None.

    Quick by design: it waits ``timeout`` seconds for the write lock, not the app's 30, so a hung
    writer is reported instead of hanging the doctor too.
    """
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        return _unusable(path, exc)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return _unusable(path, exc, timeout)
    finally:
        conn.close()
    return None


def _unusable(path: Path, exc: sqlite3.Error, timeout: float = 2.0) -> str:
    fault = classify(exc, path)
    if fault.kind == "locked":
        return (f"{path}: the database is locked: another process has held its write lock for over "
                f"{timeout:g} s ({_lock_holder(path.parent)}). Stop that process (find it with "
                f"'fuser {path}'), then run 'replydesk doctor' again; nothing was changed")
    if fault.kind == "damaged":
        return f"{path}: damaged ({exc}); {RESTORE_ADVICE}"
    return f"{path}: {fault.line}; {_read_only_verdict(path)}"


def _read_only_verdict(path: Path) -> str:
    """The file's integrity checked without writing anything (no -shm, no -wal needed): what a
    person needs to know before deciding anything drastic."""
    damage = integrity_read_only(path)
    if damage is None:
        return "the file itself is intact (checked read-only): nothing needs restoring"
    return f"a read-only check also finds damage ({damage}); {RESTORE_ADVICE}"


def integrity_read_only(path: Path) -> str | None:
    """None when ``PRAGMA integrity_check`` passes on a read-only, immutable open of ``path``; else
    the first problem. (Immutable: SQLite reads the main file only, so it works on a full disk or a
    read-only mount; changes still in the write-ahead log are not looked at.)"""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        result = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None if result == ["ok"] else "; ".join(result)


def _lock_holder(data_dir: Path) -> str:
    lock = EngineLock(data_dir)
    if not lock.held_by_other():
        return "not a replydesk sync engine: none is running here"
    stall = engine_stall(data_dir)
    if stall:
        return f"not the sync engine: it is waiting for the lock too ({stall})"
    return f"the sync engine, pid {lock.holder_pid()}, may be hung"


def engine_stall(data_dir: Path) -> str | None:
    """The running engine's own account of a stall (its lease's note), or None."""
    lock = EngineLock(data_dir)
    note = lock.holder_note()
    if note.get("state") != "stalled" or not lock.held_by_other():
        return None
    since = note.get("since")
    at = ""
    if isinstance(since, int | float):
        import time

        at = " since " + time.strftime("%H:%M", time.localtime(since))
    return (f"the sync engine (pid {lock.holder_pid()}) is stalled: {note.get('reason', '?')}{at}; "
            "it retries by itself")


# ---- the schema the migrations create ---------------------------------------------------------------


def expected_schema() -> tuple[dict[tuple[str, str], str], dict[str, list[str]]]:
    """What a fully migrated workspace holds: ``{(type, name): sql}`` and each table's columns.

    Built by running the migrations on an in-memory database, so it never drifts from them.
    """
    conn = sqlite3.connect(":memory:")
    try:
        for migration in MIGRATIONS:
            for statement in migration:
                conn.execute(statement)
        return _schema(conn)
    finally:
        conn.close()


def _schema(conn: sqlite3.Connection) -> tuple[dict[tuple[str, str], str], dict[str, list[str]]]:
    objects = {(t, n): sql or "" for t, n, sql in conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
    columns = {n: [c[1] for c in conn.execute(f'PRAGMA table_info("{n}")')]
               for (t, n) in objects if t == "table"}
    return objects, columns


def _shadow(name: str, objects: dict[tuple[str, str], str]) -> bool:
    """FTS5's own tables (``messages_fts_data``, ...): they come and go with their virtual table."""
    return any(name.startswith(f"{n}_") and "VIRTUAL TABLE" in sql.upper() for (t, n), sql in objects.items())


def schema_problems(conn: sqlite3.Connection) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Objects the migrations create that ``conn`` lacks (``(type, name, sql)``, tables first), and
    one line per table missing columns."""
    want, want_cols = expected_schema()
    have, have_cols = _schema(conn)
    order = {"table": 0, "index": 1, "trigger": 2, "view": 3}
    missing = sorted(((t, n, sql) for (t, n), sql in want.items()
                      if (t, n) not in have and not _shadow(n, want)), key=lambda o: (order.get(o[0], 9), o[1]))
    columns = [f"table {table} lacks column(s) {', '.join(c for c in cols if c not in have_cols[table])}"
               for table, cols in want_cols.items()
               if table in have_cols and not _shadow(table, want) and set(cols) - set(have_cols[table])]
    return missing, columns


# ---- the check ------------------------------------------------------------------------------------


def _modes(data_dir: Path, path: Path, repair: bool, findings: list[str]) -> bool:
    ok = True
    from replydesk.storage import spool

    targets = [(path, FILE_MODE, "file"), (data_dir, DIR_MODE, "folder")]
    if spool.exists(data_dir):  # the webhook receiver's store holds customer messages too
        targets.append((spool.path_in(data_dir), FILE_MODE, "file"))
    for target, want, what in targets:
        mode = target.stat().st_mode & 0o777
        if mode & 0o077:
            findings.append(f"{target}: {what} readable by other users (mode {mode:o})"
                            + (f"; fixed to {want:o}" if repair else "; run with --repair to fix"))
            if repair:
                target.chmod(want)
            else:
                ok = False
    return ok


def check(data_dir: Path, repair: bool = False, timeout: float = 2.0,
          clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Check the workspace; with ``repair``, fix what is safe. Returns ``{"ok": bool, "findings": [...]}``.
    ``clock``: what "this month" is for the spend figures (tests fix it)."""
    findings: list[str] = []
    data_dir = Path(data_dir)
    path = data_dir / DB_FILENAME
    if not path.exists():
        return {"ok": False, "findings": [f"{path}: no workspace database here"]}
    ok = _modes(data_dir, path, repair, findings)
    if path.stat().st_size == 0:
        return {"ok": False, "findings": [*findings, empty_file_problem(path)]}
    free = free_bytes(path)
    if free is not None and free < LOW_SPACE:
        return {"ok": False, "findings": [*findings, f"{path}: {disk_full_line(path)}; {_read_only_verdict(path)}"]}
    problem = probe(path, timeout)
    if problem is not None:
        stall = engine_stall(data_dir)
        return {"ok": False, "findings": [*findings, problem, *([stall] if stall else [])]}
    try:
        db = open_database(data_dir, create=False, lock_timeout=timeout, clock=clock)
    except StorageError as exc:
        advice = [RESTORE_ADVICE] if exc.kind == "damaged" and integrity_read_only(path) is not None else []
        return {"ok": False, "findings": [*findings, str(exc), *advice]}
    try:
        ok = _check_open(db, repair, findings) and ok
    except sqlite3.Error as exc:  # damage (or a fault) the checks themselves trip over
        ok = False
        fault = classify(exc, path)
        findings.append(f"{path}: damaged ({exc}); {RESTORE_ADVICE}" if fault.kind == "damaged"
                        else f"{path}: {fault.line}")
    finally:
        db.close()
    findings.extend(_receiver(data_dir))
    ok = _engine_finding(data_dir, findings) and ok
    return {"ok": ok, "findings": findings}


def _engine_finding(data_dir: Path, findings: list[str]) -> bool:
    if not (data_dir / LOCK_FILE).exists():
        return True
    stall = engine_stall(data_dir)
    if stall:
        findings.append(stall)
        return False
    if EngineLock(data_dir).held_by_other():
        findings.append("a sync engine is running on this workspace (lock held by a live process)")
    else:
        findings.append("engine lock: free")
    return True


def _check_open(db: Any, repair: bool, findings: list[str]) -> bool:
    ok = True
    result = [r[0] for r in db.conn.execute("PRAGMA integrity_check")]
    if result != ["ok"]:
        ok = False
        findings.append("integrity check failed: " + "; ".join(result[:5]) + "; " + RESTORE_ADVICE)
    else:
        findings.append("integrity check: ok")
    ok = _check_schema(db, repair, findings) and ok
    if _exists(db, "rejected_items") and _exists(db, "meta"):
        from replydesk.storage.ingest import rejected_summary

        for account, entry in sorted(rejected_summary(db).items()):
            first = "; ".join(f"{native}: {reason}" for native, reason in entry.get("first", []))
            findings.append(f"account {account}: {entry.get('count', 0)} item(s) from the platform rejected "
                            f"(not storable, the rest was stored){'; first: ' + first if first else ''}")
    for table in ("messages_fts", "conversations_fts"):
        if not _exists(db, table):
            continue  # reported (and recreated) by the schema check
        try:
            db.conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")
            findings.append(f"{table}: ok")
        except sqlite3.DatabaseError as exc:
            findings.append(f"{table}: damaged ({exc})" + ("; rebuilt" if repair else "; run with --repair"))
            if repair:
                _rebuild(db, table)
            else:
                ok = False
    if all(_exists(db, t) for t in ("inbox_cells", "inbox_ranks", "conversations")):
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
    if _exists(db, "spend"):
        findings.extend(_spend_findings(db))
    if _exists(db, "pushed_bodies"):
        findings.extend(_pushed(db))
    return ok


def _exists(db: Any, name: str) -> bool:
    return db.conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() is not None


def _check_schema(db: Any, repair: bool, findings: list[str]) -> bool:
    """Every table, index and trigger the migrations create must be there (a database can claim the
    latest schema version and still lack its outbox: a hand edit, a partial restore)."""
    missing, columns = schema_problems(db.conn)
    if not missing and not columns:
        findings.append("schema: complete")
        return True
    ok = True
    for kind, name, sql in missing:
        gone = " (its rows are gone: restore them from an export if you have one)" if kind == "table" else ""
        if repair:
            with db.transaction():
                db.conn.execute(sql)
            findings.append(f"schema: {kind} {name} was missing; recreated{' empty' if gone else ''}{gone}")
        else:
            ok = False
            findings.append(f"schema: {kind} {name} is missing{gone}; run with --repair to recreate it")
    for line in columns:
        ok = False
        findings.append(f"schema: {line}; restore from an export into a fresh --data-dir")
    return ok


def _rebuild(db: Any, table: str) -> None:
    from replydesk.storage.ingest import reindex_conversations

    with db.transaction():
        if table == "messages_fts":
            db.conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        else:
            db.conn.execute("DELETE FROM conversations_fts")
            ids = [r[0] for r in db.conn.execute("SELECT id FROM conversations")]
            reindex_conversations(db, ids)


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
