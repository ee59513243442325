"""Cache integrity: random, malformed and hostile batches never corrupt the cache; doctor finds and fixes.

Each hypothesis example builds batches of fetched items, some valid and some with one defect each,
feeds them to ``storage.ingest.ingest`` (sometimes failing mid-transaction, as a crash would) and
checks the invariants the rest of the app relies on.
"""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replydesk import cli
from replydesk.config import Config
from replydesk.model import KINDS, Contact, FetchResult, IncomingMessage, item_id
from replydesk.sla import SlaEngine
from replydesk.storage import ingest, queries, search
from replydesk.storage.db import DB_FILENAME, open_database
from support import FIXED_NOW

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def hostile() -> list[str]:
    path = TESTDATA / "hostile-text.jsonl"
    if not path.exists():
        return ["[bold]x[/]", "\x1b[2J", "\u202eevil"]
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


HOSTILE = hostile()
ACCOUNT = "acct"

texts = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=200),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=5),
    st.just("x" * 150_000),  # huge
    st.binary(max_size=50).map(lambda b: b.decode("utf-8", "surrogateescape")),  # invalid UTF-8, as decoded
)


@st.composite
def valid_message(draw: st.DrawFn) -> IncomingMessage:
    conv = draw(st.sampled_from(["c1", "c2", "c3", "c4"]))
    return IncomingMessage(
        native_id=f"m{draw(st.integers(0, 30))}",  # a small pool: repeats across and inside batches
        conversation_native_id=conv, platform=draw(st.sampled_from(["x", "email", "telegram"])),
        kind=draw(st.sampled_from(KINDS)),
        contact=Contact(native_id=f"u-{conv}", name=draw(st.one_of(texts, st.just(""))),
                        handle=draw(st.sampled_from(["", "@a", "\x1b[31m@b"]))),
        text=draw(texts), created_at=FIXED_NOW - draw(st.floats(0, 86400 * 30, allow_nan=False)),
        direction=draw(st.sampled_from(["in", "in", "out", "note"])),
        author=draw(st.one_of(st.just(""), texts)), subject=draw(st.one_of(st.just(""), texts)),
        parent_native_id=draw(st.one_of(st.none(), st.just("m1"))),
        meta=draw(st.one_of(st.just({}), st.just({"conversation": {"status_id": "9"}}),
                            st.just({"conversation": "not a dict"}))),
    )


# One defect per malformed item: (field, bad value).
DEFECTS: list[tuple[str, Any]] = [
    ("native_id", ""), ("native_id", None), ("native_id", 42),
    ("conversation_native_id", ""), ("conversation_native_id", None),
    ("kind", "fax"), ("kind", None), ("direction", "sideways"),
    ("text", None), ("text", b"\xff\xfe bytes"), ("text", 12),
    ("created_at", math.nan), ("created_at", math.inf), ("created_at", "yesterday"), ("created_at", None),
    ("contact", Contact(native_id="", name="x")), ("contact", Contact(native_id=None, name="x")),  # type: ignore[arg-type]
    ("author", 7), ("subject", ["a list"]), ("contact", Contact(native_id="u", name=3.5)),  # type: ignore[arg-type]
    ("contact", None), ("platform", None), ("meta", "not a dict"),
]


@st.composite
def malformed_message(draw: st.DrawFn) -> IncomingMessage:
    msg = draw(valid_message())
    field, bad = draw(st.sampled_from(DEFECTS))
    values = {f: getattr(msg, f) for f in msg.__dataclass_fields__}
    values[field] = bad
    broken = object.__new__(IncomingMessage)
    for name, value in values.items():  # bypass nothing: the dataclass does not check types anyway
        object.__setattr__(broken, name, value)
    return broken


batch_items = st.lists(st.one_of(valid_message(), valid_message(), malformed_message()), max_size=25)


def _db(path: Path):
    return open_database(path, sla=SlaEngine(Config().sla), clock=lambda: FIXED_NOW)


def _check_invariants(db, committed: dict[str, Any]) -> None:
    conn = db.conn
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    orphans = conn.execute("SELECT count(*) FROM messages m LEFT JOIN conversations c "
                           "ON c.id = m.conversation_id WHERE c.id IS NULL").fetchone()[0]
    assert orphans == 0
    ids = [r[0] for r in conn.execute("SELECT id FROM messages")]
    assert len(ids) == len(set(ids)) and set(ids) == committed["ids"]
    assert conn.execute("SELECT count(*) FROM events WHERE kind IN ('in','reply','note')").fetchone()[0] \
        == len(committed["ids"])
    assert ingest.get_cursor(db, ACCOUNT) == committed["cursor"]
    rejected = conn.execute("SELECT native_id, reason FROM rejected_items").fetchall()
    assert len(rejected) == committed["rejected"] and all(reason for _, reason in rejected)
    for text, in conn.execute("SELECT text FROM messages"):
        text.encode("utf-8")  # storable and displayable: no lone surrogates survive
        assert len(text) <= ingest.MAX_TEXT + 100


def _is_valid(msg: IncomingMessage) -> bool:
    return all(isinstance(getattr(msg, f), t) for f, t in (
        ("native_id", str), ("conversation_native_id", str), ("text", str), ("author", str),
        ("subject", str), ("platform", str), ("contact", Contact),
    )) and bool(msg.native_id) and bool(msg.conversation_native_id) and msg.kind in KINDS \
        and msg.direction in ("in", "out", "note") and isinstance(msg.created_at, int | float) \
        and math.isfinite(msg.created_at) and isinstance(msg.contact.native_id, str) \
        and bool(msg.contact.native_id) and isinstance(msg.contact.name, str) \
        and isinstance(msg.contact.handle, str)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.tuples(batch_items, st.booleans()), min_size=1, max_size=4))
def test_random_malformed_and_hostile_batches_keep_the_cache_consistent(batches, monkeypatch_module) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = _db(Path(tmp))
        committed: dict[str, Any] = {"ids": set(), "cursor": None, "rejected": 0}
        for n, (items, crash) in enumerate(batches):
            cursor = {"n": n}
            if crash:  # the process dies mid-batch: nothing of it, not even the cursor, may remain
                with monkeypatch_module.context() as m:
                    m.setattr(ingest.slastate, "refresh", _boom)
                    with pytest.raises(RuntimeError):
                        ingest.ingest(db, ACCOUNT, [FetchResult(messages=items, cursor=cursor)])
            else:
                stats = ingest.ingest(db, ACCOUNT, [FetchResult(messages=items, cursor=cursor)])
                good = [m for m in items if _is_valid(m)]
                committed["ids"] |= {item_id(ACCOUNT, m.native_id) for m in good}
                committed["cursor"] = cursor
                committed["rejected"] += len(items) - len(good)
                assert len(stats.rejected) == len(items) - len(good)
            _check_invariants(db, committed)
        for word in ("refund", "URGENT", '"', "NEAR("):
            search.search(db, word)  # hostile stored text never breaks search
        db.close()


def _boom(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("killed mid-transaction")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_rejected_items_are_recorded_with_id_and_reason(tmp_path: Path) -> None:
    db = _db(tmp_path)
    good = IncomingMessage("ok1", "c1", "x", "dm", Contact("u", "Amy"), "fine", FIXED_NOW)
    bad = IncomingMessage("bad1", "c1", "x", "dm", Contact("u", "Amy"), None, FIXED_NOW)  # type: ignore[arg-type]
    worse = IncomingMessage("bad2", "c1", "x", "dm", Contact("u", "Amy"), "t", FIXED_NOW, author=5)  # type: ignore[arg-type]
    stats = ingest.ingest(db, ACCOUNT, [FetchResult(messages=[bad, good, worse], cursor={"p": 1})])
    assert stats.new_messages == 1
    rows = db.conn.execute("SELECT native_id, reason FROM rejected_items ORDER BY native_id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("bad1", "text is NoneType"), ("bad2", "author is int")]


# ---- doctor -------------------------------------------------------------------------------------------


def _workspace(tmp_path: Path) -> Path:
    data = tmp_path / "ws"
    db = _db(data)
    ingest.ingest(db, ACCOUNT, [FetchResult(messages=[
        IncomingMessage(f"m{i}", f"c{i % 3}", "x", "dm", Contact(f"u{i % 3}", "Amy"), f"refund please {i}",
                        FIXED_NOW - i) for i in range(50)], cursor={})])
    db.close()
    return data


def _doctor(data: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    code = cli.main(["doctor", "--data-dir", str(data), *extra])
    return code, capsys.readouterr().out


def test_doctor_finds_a_damaged_search_index_and_repair_rebuilds_it(tmp_path: Path, capsys) -> None:
    data = _workspace(tmp_path)
    conn = sqlite3.connect(data / DB_FILENAME)
    conn.execute("UPDATE messages_fts_data SET block = zeroblob(length(block)) WHERE id > 10")
    conn.commit()
    conn.close()
    code, out = _doctor(data, capsys)
    assert code == 1 and "messages_fts: damaged" in out and "--repair" in out
    code, out = _doctor(data, capsys, "--repair")
    assert code == 0 and "rebuilt" in out
    code, out = _doctor(data, capsys)
    assert code == 0 and "messages_fts: ok" in out
    db = _db(data)
    hits, _ = search.search(db, "refund")
    assert hits


def test_doctor_finds_drifted_inbox_counters_and_repair_rebuilds_them(tmp_path: Path, capsys) -> None:
    data = _workspace(tmp_path)
    code, out = _doctor(data, capsys)
    assert code == 0 and "inbox counters: ok" in out
    conn = sqlite3.connect(data / DB_FILENAME)
    conn.execute("UPDATE inbox_cells SET n = n + 5")  # a write that went around the triggers
    conn.execute("DELETE FROM inbox_ranks")
    conn.commit()
    conn.close()
    code, out = _doctor(data, capsys)
    assert code == 1 and "inbox counters: do not match" in out
    code, out = _doctor(data, capsys, "--repair")
    assert code == 0 and "inbox counters: did not match the conversations; rebuilt" in out
    db = _db(data)
    assert queries.inbox_count(db, queries.InboxFilter()) == 3
    assert _doctor(data, capsys)[0] == 0


def test_doctor_on_a_locked_database_says_so_quickly(tmp_path: Path, capsys) -> None:
    import time

    data = _workspace(tmp_path)
    holder = sqlite3.connect(data / DB_FILENAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a hung writer holding the write lock
    holder.execute("UPDATE conversations SET unread = 1")
    try:
        started = time.monotonic()
        code, out = _doctor(data, capsys, "--repair")
        assert time.monotonic() - started < 120  # the doctor waits 2 s, never the app's 30 (or forever)
        assert code == 1 and "locked" in out and "another process" in out
    finally:
        holder.rollback()
        holder.close()
    assert _doctor(data, capsys)[0] == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_doctor_on_a_corrupt_file_gives_a_way_out(tmp_path: Path, capsys, damage: str) -> None:
    data = _workspace(tmp_path)
    path = data / DB_FILENAME
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    if damage == "garbage":
        path.write_bytes(b"not a database at all" * 400)
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2] + b"\x00" * 100)
    code, out = _doctor(data, capsys)
    assert code == 1
    assert "damaged" in out or "integrity check failed" in out or "malformed" in out
    assert "export" in out or "restore" in out or "--repair" in out
