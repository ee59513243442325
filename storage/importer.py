"""``replydesk import``: conversations in the export shape, streamed in bounded batches.

The file is read a record at a time (JSON Lines line by line; a JSON array element by element with
ijson), so memory does not follow the file's size. Records are checked completely before anything
is written, and written in batches of at most ``BATCH_RECORDS`` records / ``BATCH_BYTES`` bytes, one
transaction each, together with the position reached in the file: a kill -9 loses nothing, and
running the same import again continues after the last committed batch.

Merge rule (README "Import"): a record writes only into its own account's conversation
``{account}:{native id}`` (an id that names another account is refused); messages are added by id
and an existing message is never changed; the conversation's status, assignee, priority, tags,
escalation and snooze become the record's (each change an event by ``import``); a record whose
conversation exists on another platform or as another kind is refused. Re-importing a file changes
nothing. Imported replies keep their recorded state and never enter the outbox.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from replydesk.model import (
    DELIVERY_STATES,
    DIRECTIONS,
    KINDS,
    STATUSES,
    Contact,
    FetchResult,
    IncomingMessage,
    item_id,
    parse_iso,
)
from replydesk.slaspec import PRIORITIES
from replydesk.storage import slastate
from replydesk.storage.actions import _event, normalise_tag
from replydesk.storage.db import Database
from replydesk.storage.ingest import (
    MAX_TEXT,
    TAG_SEP,
    IngestStats,
    _check,
    _existing,
    _ingest_one,
    clean_text,
)

BATCH_RECORDS = 2000  # conversations per transaction: large enough that commits cost little,
BATCH_BYTES = 16 << 20  # small enough that memory stays flat (tens of MB) at any file size
HEAD_BYTES = 64 << 10  # hashed to recognise the same file on a rerun
MAX_DEPTH = 64  # records nest three levels; anything deeper than this is not one
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as the config allows


class ImportError_(ValueError):
    """A record or file that does not follow the export shape; the message names the place."""


@dataclass
class ImportResult:
    conversations: int = 0
    messages: int = 0
    resumed_after: int = 0  # records already imported by an interrupted run of the same file

    def as_json(self) -> dict[str, int]:
        return {"conversations": self.conversations, "messages": self.messages, "resumed_after": self.resumed_after}


@dataclass
class _Record:
    """One record, checked and cleaned, ready to write."""

    where: str
    conv_id: str
    account: str
    platform: str
    kind: str
    messages: list[IncomingMessage]
    states: dict[str, tuple[str, bool]]  # message id -> (state, private) to keep as recorded
    status: str
    assignee: str | None
    priority: str
    escalated: bool
    escalation_target: str | None
    snoozed_until: float | None
    tags: list[str]
    size: int = 0
    listening: str | None = None  # the listening query of a match still waiting in the Listening view


@dataclass
class _Progress:
    """Where the file stands: bytes (JSON Lines) or records (JSON array) already committed."""

    key: str | None
    size: int = 0
    mtime_ns: int = 0
    head: str = ""
    offset: int = 0
    records: int = 0
    line: int = 0


# ---- reading ------------------------------------------------------------------------------------


def _text(value: Any, where: str, name: str, *, limit: int = MAX_TEXT, required: bool = False) -> str | None:
    if value is None or (value == "" and not required):
        if required:
            raise ImportError_(f"{where}: missing field {name!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ImportError_(f"{where}: field {name!r} has the wrong type ({type(value).__name__})")
    text = clean_text(str(value), limit)
    if required and not text.strip():
        raise ImportError_(f"{where}: field {name!r} is empty")
    return text


def _need(record: dict, key: str, where: str) -> str:
    if key not in record:
        raise ImportError_(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise ImportError_(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return _text(value, where, key, required=True) or ""


def _flag(record: dict, key: str, where: str) -> bool:
    value = record.get(key, False)
    if value is None or isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ImportError_(f"{where}: field {key!r} must be true or false")


def _time(value: Any, where: str, name: str) -> float:
    if not isinstance(value, str):
        raise ImportError_(f"{where}: {name} is not an ISO 8601 time")
    try:
        return parse_iso(value)
    except (ValueError, OverflowError, OSError):
        raise ImportError_(f"{where}: {name} is not an ISO 8601 time") from None


def _native(full_id: str, account: str, accounts: set[str], where: str) -> str:
    """The native part of an exported id. An id with another known account's prefix is refused:
    a record never reaches into another account's conversations."""
    prefix = f"{account}:"
    if full_id.startswith(prefix):
        return full_id[len(prefix):]
    other = full_id.split(":", 1)[0]
    if ":" in full_id and other in accounts:
        raise ImportError_(f"{where}: id {full_id!r} belongs to account {other!r}, but the record is of "
                           f"account {account!r}; a record can only write into its own account")
    return full_id


def prepare(r: Any, where: str, accounts: set[str]) -> _Record:
    """Check one record completely (nothing is written until every record of a batch passed)."""
    if not isinstance(r, dict):
        raise ImportError_(f"{where}: expected an object (one conversation)")
    account = _need(r, "account", where)
    if not ACCOUNT_NAME.match(account):
        raise ImportError_(f"{where}: account {account!r} is not a valid account name")
    conv_native = _native(_need(r, "id", where), account, accounts, where)
    platform = _need(r, "platform", where)[:64]
    kind = _need(r, "kind", where)
    if kind not in KINDS:
        raise ImportError_(f"{where}: kind must be one of {', '.join(KINDS)}")
    status = r.get("status") or "open"
    if status not in STATUSES:
        raise ImportError_(f"{where}: status must be one of {', '.join(STATUSES)}")
    priority = r.get("priority") or "normal"
    if priority not in PRIORITIES:
        raise ImportError_(f"{where}: priority must be one of {', '.join(PRIORITIES)}")
    customer = r.get("customer") or {}
    if not isinstance(customer, dict):
        raise ImportError_(f"{where}: customer must be an object")
    cw = f"{where}: customer"
    name = _text(customer.get("name"), cw, "name") or ""
    handle = _text(customer.get("handle"), cw, "handle") or ""
    cid = _text(customer.get("id"), cw, "id") or handle or name or "unknown"
    contact = Contact(native_id=_native(cid, account, accounts, cw), name=name, handle=handle,
                      vip=_flag(customer, "vip", cw))
    tags_in = r.get("tags") or []
    if not isinstance(tags_in, list):
        raise ImportError_(f"{where}: tags must be a list")
    try:
        tags = sorted({normalise_tag(t) for t in tags_in if isinstance(t, str) and t.strip()})
    except ValueError as exc:
        raise ImportError_(f"{where}: tags: {exc}") from None
    assignee = _text(r.get("assignee"), where, "assignee", limit=200)
    snoozed = r.get("snoozed_until")
    subject = _text(r.get("subject"), where, "subject") or ""
    msgs = r.get("messages")
    if not isinstance(msgs, list):
        raise ImportError_(f"{where}: field 'messages' has the wrong type ({type(msgs).__name__}, not a list)"
                           if "messages" in r else f"{where}: missing field 'messages'")
    if not msgs:
        raise ImportError_(f"{where}: a conversation needs at least one message")
    incoming: list[IncomingMessage] = []
    states: dict[str, tuple[str, bool]] = {}
    for i, m in enumerate(msgs):
        mw = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            raise ImportError_(f"{mw}: expected an object")
        direction = _need(m, "direction", mw)
        if direction not in DIRECTIONS:
            raise ImportError_(f"{mw}: direction must be one of {', '.join(DIRECTIONS)}")
        state = m.get("state") or ("received" if direction != "out" else "sent")
        if state not in DELIVERY_STATES:
            raise ImportError_(f"{mw}: state must be one of {', '.join(DELIVERY_STATES)}")
        if not isinstance(m.get("text"), str):
            raise ImportError_(f"{mw}: field 'text' must be a string" if "text" in m else f"{mw}: missing field 'text'")
        native = _native(_need(m, "id", mw), account, accounts, mw)
        msg = IncomingMessage(
            native_id=native, conversation_native_id=conv_native, platform=platform, kind=kind, contact=contact,
            text=clean_text(m["text"]), created_at=_time(m.get("created_at"), mw, "created_at"),
            direction=direction, author=_text(m.get("author"), mw, "author") or "", subject=subject,
            automatic=_text(m.get("automatic"), mw, "automatic"),  # a robot's reason, as exported
        )
        reason = _check(msg)
        if reason is not None:
            raise ImportError_(f"{mw}: {reason}")
        incoming.append(msg)
        private = _flag(m, "private", mw)
        if direction == "note" or private or (direction == "out" and state != "sent"):
            states[item_id(account, native)] = (state, private)
    return _Record(
        where=where, conv_id=item_id(account, conv_native), account=account, platform=platform, kind=kind,
        messages=incoming, states=states, status=status, assignee=(assignee or "").strip() or None,
        priority=priority, escalated=_flag(r, "escalated", where),
        escalation_target=_text(r.get("escalation_target"), where, "escalation_target", limit=200),
        snoozed_until=_time(snoozed, where, "snoozed_until") if snoozed is not None else None, tags=tags,
        listening=_text(r.get("listening"), where, "listening", limit=64) or None,
    )


def _lines(f: IO[bytes], source: str, lineno: int) -> Iterator[tuple[str, Any, tuple[int, int]]]:
    """(where, record, (bytes read, line number)) for each JSON Lines record from where ``f`` stands
    (line ``lineno + 1``)."""
    offset = 0
    for line in f:
        lineno += 1
        offset += len(line)
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            yield where, json.loads(line), (offset, lineno)
        except json.JSONDecodeError as exc:
            raise ImportError_(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except UnicodeDecodeError:
            raise ImportError_(f"{where}: not UTF-8 text") from None
        except RecursionError:
            raise ImportError_(f"{where}: nested too deeply to be a record") from None


def _array(f: IO[bytes], source: str, skip: int) -> Iterator[tuple[str, Any, int]]:
    """(where, record, records so far) for each element of a top-level JSON array after ``skip``.

    Built from ijson's plain events with a depth limit: its ``items`` keeps a path string per level,
    which a hostile file nested 200,000 deep turns into gigabytes."""
    import ijson
    from ijson.common import ObjectBuilder

    n, depth, builder = 0, 0, None
    try:
        events = ijson.basic_parse(f, use_float=True)
        first = next(events, None)
        if first is None or first[0] != "start_array":
            raise ImportError_(f"{source}: not a JSON array of records")
        for event, value in events:
            if depth == 0:
                if event == "end_array":
                    break
                n += 1
                builder = ObjectBuilder() if n > skip else None
            if event in ("start_map", "start_array"):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ImportError_(f"{source}: record {n}: nested too deeply to be a record")
            elif event in ("end_map", "end_array"):
                depth -= 1
            if builder is not None:
                builder.event(event, value)
            if depth == 0 and builder is not None:
                yield f"{source}: record {n}", builder.value, n
                builder = None
        for _ in events:  # anything after the closing bracket is an error ijson reports
            pass
    except ijson.JSONError as exc:
        first_line = (str(exc).splitlines() or ["parse error"])[0][:200]
        raise ImportError_(f"{source}: record {max(n, 1)}: not valid JSON ({first_line})") from None
    except UnicodeDecodeError:
        raise ImportError_(f"{source}: record {max(n, 1)}: not UTF-8 text") from None


def _sniff(f: IO[bytes], source: str) -> str:
    """'lines' or 'array', from the first character that is not a BOM or whitespace."""
    head = f.peek(4096)[:4096] if hasattr(f, "peek") else b""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text:
        raise ImportError_(f"{source}: no records (the file is empty)")
    if text[:1] == b"[":
        return "array"
    if text[:1] == b"{":
        return "lines"
    raise ImportError_(f"{source}: not JSON Lines or a JSON array of records (it starts with {text[:20]!r})")


# ---- progress -----------------------------------------------------------------------------------


def _identity(path: Path) -> tuple[str, int, int, str]:
    st = path.stat()
    with open(path, "rb") as fh:
        head = hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, head


def _load_progress(db: Database, path: Path | None) -> _Progress:
    if path is None or not path.is_file():
        return _Progress(key=None)  # standard input or a pipe: nothing to resume from
    key, size, mtime_ns, head = _identity(path)
    progress = _Progress(key=key, size=size, mtime_ns=mtime_ns, head=head)
    row = db.conn.execute(
        "SELECT size, mtime_ns, head, offset, records, line FROM import_progress WHERE source=?", (key,)
    ).fetchone()
    if row is not None and tuple(row[:3]) == (size, mtime_ns, head):
        progress.offset, progress.records, progress.line = row[3], row[4], row[5]
    return progress


def _save_progress(db: Database, p: _Progress) -> None:
    if p.key is None:
        return
    db.conn.execute(
        "INSERT INTO import_progress(source, size, mtime_ns, head, offset, records, line, updated_at) "
        "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(source) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
        "head=excluded.head, offset=excluded.offset, records=excluded.records, line=excluded.line, "
        "updated_at=excluded.updated_at",
        (p.key, p.size, p.mtime_ns, p.head, p.offset, p.records, p.line, db.now()),
    )


# ---- writing ------------------------------------------------------------------------------------


def _known_accounts(db: Database) -> set[str]:
    return {r[0] for r in db.conn.execute("SELECT name FROM accounts")}


def _write(db: Database, batch: list[_Record], result: ImportResult) -> None:
    """One batch, inside the caller's transaction: messages through ingest, then each record's state."""
    by_account: dict[tuple[str, str | None], list[IncomingMessage]] = {}
    for rec in batch:  # a listening match goes in with its query, so it waits where it waited
        by_account.setdefault((rec.account, rec.listening), []).extend(rec.messages)
    platforms: dict[str, str] = {}
    for rec in batch:
        platforms.setdefault(rec.account, rec.platform)
    for (account, listening), messages in by_account.items():
        # A configured account keeps its provider; an account only the file knows is recorded as imported.
        db.conn.execute("INSERT INTO accounts(name, provider, platform, created_at) VALUES (?,?,?,?) "
                        "ON CONFLICT(name) DO NOTHING", (account, "import", platforms[account], db.now()))
        ids = [item_id(account, m.native_id) for m in messages]
        fresh = set(ids) - _existing(db, ids, "messages")
        stats = IngestStats()
        _ingest_one(db, account, FetchResult(messages=messages, cursor={}, listening=listening), stats, checked=True)
        result.messages += stats.new_messages
        updates = [(state, int(private), mid) for rec in batch if rec.account == account
                   for mid, (state, private) in rec.states.items() if mid in fresh]
        db.conn.executemany("UPDATE messages SET state=?, private=? WHERE id=?", updates)
    for rec in batch:
        _apply_state(db, rec)
        result.conversations += 1
    slastate.refresh(db, [rec.conv_id for rec in batch])


def _apply_state(db: Database, rec: _Record) -> None:
    old = db.conn.execute(
        "SELECT status, assignee, escalated, tags FROM conversations WHERE id=?", (rec.conv_id,)
    ).fetchone()
    tags = TAG_SEP.join(rec.tags)
    db.conn.execute(
        "UPDATE conversations SET status=?, assignee=?, priority=?, escalated=?, escalation_target=?, "
        "snoozed_until=?, tags=? WHERE id=?",
        (rec.status, rec.assignee, rec.priority, int(rec.escalated), rec.escalation_target, rec.snoozed_until,
         tags, rec.conv_id),
    )
    if old[3] != tags:
        db.conn.execute("DELETE FROM conversation_tags WHERE conversation_id=?", (rec.conv_id,))
        db.conn.executemany("INSERT INTO conversation_tags(conversation_id, tag) VALUES (?,?)",
                            [(rec.conv_id, t) for t in rec.tags])
        _event(db, rec.conv_id, "tag", "import", {"tags": rec.tags})
    # Record what the import changed, so the SLA replay sees the status history it can know.
    if old[0] != rec.status:
        _event(db, rec.conv_id, "status", "import", {"status": rec.status, "from": old[0]})
    if old[1] != rec.assignee:
        _event(db, rec.conv_id, "assign", "import", {"assignee": rec.assignee})
    if not old[2] and rec.escalated:
        _event(db, rec.conv_id, "escalate", "import", {"target": rec.escalation_target})


def _flush_checked(db: Database, batch: list[_Record], flush: Callable[..., None]) -> None:
    """Write the batch; a record that does not match its stored conversation stops the import after
    the records before it are written."""
    found = _mismatch(db, batch) if batch else None
    if found is None:
        flush()
        return
    index, (platform, kind) = found
    rec = batch[index]
    flush(index)
    raise ImportError_(f"{rec.where}: conversation {rec.conv_id!r} exists as a {platform} {kind}, but the record "
                       f"says {rec.platform} {rec.kind}; it was not changed")


def _mismatch(db: Database, batch: list[_Record]) -> tuple[int, tuple[str, str]] | None:
    """The first record whose conversation exists on another platform or as another kind, with what
    exists."""
    seen: dict[str, tuple[str, str]] = {}
    ids = list({rec.conv_id for rec in batch})
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in db.conn.execute(
            f"SELECT id, platform, kind FROM conversations WHERE id IN ({','.join('?' * len(chunk))})", chunk
        ):
            seen[row[0]] = (row[1], row[2])
    for i, rec in enumerate(batch):
        have = seen.setdefault(rec.conv_id, (rec.platform, rec.kind))
        if have != (rec.platform, rec.kind):
            return i, have
    return None


def import_stream(db: Database, f: IO[bytes], source: str, *, path: Path | None = None,
                  progress: Callable[[int, ImportResult], None] | None = None,
                  batch_records: int = BATCH_RECORDS, batch_bytes: int = BATCH_BYTES) -> ImportResult:
    """Import from the binary stream ``f`` (JSON Lines or a JSON array). With ``path`` (a regular
    file), the position is committed with every batch and an interrupted import of the same,
    unchanged file continues where it stopped. ``progress(bytes_read, result)`` after each batch."""
    state = _load_progress(db, path)
    result = ImportResult(resumed_after=state.records)
    accounts = _known_accounts(db)
    fmt = _sniff(f, source)
    if fmt == "lines":
        if state.offset:
            f.seek(state.offset)
        records: Iterable[tuple[str, Any, Any]] = _lines(f, source, state.line)
        base = state.offset
    else:
        records = _array(f, source, state.records)
        base = 0
    batch: list[_Record] = []
    marks: list[Any] = []
    size = 0

    def flush(upto: int | None = None) -> None:
        nonlocal batch, marks, size
        todo, todo_marks = (batch, marks) if upto is None else (batch[:upto], marks[:upto])
        if todo:
            with db.transaction():
                _write(db, todo, result)
                state.records += len(todo)
                if fmt == "lines":
                    state.offset, state.line = base + todo_marks[-1][0], todo_marks[-1][1]
                _save_progress(db, state)
            if progress is not None:
                progress(state.offset if fmt == "lines" else _tell(f), result)
        batch, marks, size = [], [], 0

    try:
        for where, raw, mark in records:
            rec = prepare(raw, where, accounts)
            accounts.add(rec.account)
            rec.size = sum(len(m.text) for m in rec.messages) + 200
            batch.append(rec)
            marks.append(mark)
            size += rec.size
            if len(batch) >= batch_records or size >= batch_bytes:
                _flush_checked(db, batch, flush)
    except ImportError_:
        # The records before the bad one are kept (a rerun of the fixed file redoes nothing).
        _flush_checked(db, batch, flush)
        raise
    _flush_checked(db, batch, flush)
    if result.conversations == 0 and state.records == 0:
        raise ImportError_(f"{source}: no records")
    if state.key is not None:
        with db.transaction():
            db.conn.execute("DELETE FROM import_progress WHERE source=?", (state.key,))
    return result


def _tell(f: IO[bytes]) -> int:
    try:
        return f.tell()
    except (OSError, ValueError):
        return 0


def import_file(db: Database, source: str, *, progress: Callable[[int, ImportResult], None] | None = None,
                stdin: IO[bytes] | None = None) -> ImportResult:
    """``replydesk import FILE`` (or ``-`` for standard input, which cannot be resumed)."""
    if source == "-":
        import io

        stream = stdin if stdin is not None else io.BufferedReader(os.fdopen(os.dup(0), "rb"))
        return import_stream(db, stream, "<stdin>", progress=progress)
    path = Path(source)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImportError_(f"cannot read {source}: {exc.strerror or exc}") from None
    with fh:
        if not path.is_file():
            return import_stream(db, fh, source, progress=progress)
        return import_stream(db, fh, source, path=path, progress=progress)
