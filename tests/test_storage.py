"""Storage: the file, migrations, idempotent ingest, cursor atomicity, the event log, search."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from replydesk.config import Config
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.sla import SlaEngine
from replydesk.storage import actions, ingest, outbox, queries, search
from replydesk.storage.db import DB_FILENAME, StorageError, open_database
from replydesk.storage.schema import SCHEMA_VERSION
from support import FIXED_NOW, hostile_queries


def _db(tmp_path, now=FIXED_NOW):
    return open_database(tmp_path, sla=SlaEngine(Config().sla), clock=lambda: now)


def _msg(n: int, conv: str = "t1", text: str = "hello", direction: str = "in", at: float | None = None,
         kind: str = "dm", **kw) -> IncomingMessage:
    return IncomingMessage(
        native_id=f"m{n}", conversation_native_id=conv, platform="telegram", kind=kind,
        contact=Contact(native_id=f"u-{conv}", name=kw.pop("name", "Amani Mwangi"), handle="@amani"),
        text=text, created_at=at if at is not None else FIXED_NOW - 3600 + n, direction=direction, **kw,
    )


def test_new_workspace_file_is_private_wal_and_current(tmp_path):
    db = _db(tmp_path)
    path = tmp_path / DB_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_older_database_is_migrated(tmp_path):
    # A database from before the first migration (user_version 0) with nothing in it.
    sqlite3.connect(tmp_path / DB_FILENAME).execute("PRAGMA user_version = 0").connection.close()
    db = _db(tmp_path)
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0


def test_newer_database_is_refused_with_a_clear_message(tmp_path):
    _db(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StorageError, match="newer replydesk"):
        _db(tmp_path)


def test_not_a_database_gives_a_way_out(tmp_path):
    (tmp_path / DB_FILENAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="replydesk doctor"):
        _db(tmp_path)


def test_ingest_twice_stores_nothing_twice(tmp_path):
    db = _db(tmp_path)
    batch = [FetchResult(messages=[_msg(1), _msg(2), _msg(3, conv="t2")], cursor={"offset": 3})]
    first = ingest.ingest(db, "tg", batch)
    second = ingest.ingest(db, "tg", batch)
    assert (first.new_messages, first.new_conversations) == (3, 2)
    assert (second.new_messages, second.new_conversations) == (0, 0)
    assert db.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 3
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 2
    assert db.conn.execute("SELECT count(*) FROM events WHERE kind='in'").fetchone()[0] == 3
    assert ingest.get_cursor(db, "tg") == {"offset": 3}


def test_cursor_advances_only_with_its_items(tmp_path, monkeypatch):
    db = _db(tmp_path)
    ingest.ingest(db, "tg", [FetchResult(messages=[_msg(1)], cursor={"offset": 1})])

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest, "_wake_on_inbound", boom)  # after the rows are written
    with pytest.raises(RuntimeError):
        ingest.ingest(db, "tg", [FetchResult(messages=[_msg(2), _msg(3)], cursor={"offset": 3})])
    assert ingest.get_cursor(db, "tg") == {"offset": 1}
    assert db.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_malformed_items_are_skipped_with_reason_and_others_stored(tmp_path):
    db = _db(tmp_path)
    bad = [
        IncomingMessage(native_id="", conversation_native_id="t1", platform="x", kind="dm",
                        contact=Contact("u", "U"), text="no id", created_at=FIXED_NOW),
        IncomingMessage(native_id="b2", conversation_native_id="t1", platform="x", kind="tweet",
                        contact=Contact("u", "U"), text="bad kind", created_at=FIXED_NOW),
        IncomingMessage(native_id="b3", conversation_native_id="t1", platform="x", kind="dm",
                        contact=Contact("u", "U"), text=None, created_at=FIXED_NOW),  # type: ignore[arg-type]
        IncomingMessage(native_id="b4", conversation_native_id="t1", platform="x", kind="dm",
                        contact=Contact("u", "U"), text="nan time", created_at=float("nan")),
    ]
    stats = ingest.ingest(db, "x", [FetchResult(messages=[*bad, _msg(9, text="good \ud800 one")], cursor={})])
    assert stats.new_messages == 1
    reasons = dict(db.conn.execute("SELECT native_id, reason FROM rejected_items"))
    assert reasons == {"": "missing message id", "b2": "unknown kind 'tweet'", "b3": "text is NoneType",
                       "b4": "bad timestamp"}
    stored = db.conn.execute("SELECT text FROM messages").fetchone()[0]
    assert stored == "good \ufffd one"  # a lone surrogate cannot be stored: replaced, not dropped


def test_huge_text_is_cut_visibly(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1, text="a" * 300_000)], cursor={})])
    text = db.conn.execute("SELECT text FROM messages").fetchone()[0]
    assert len(text) < 101_000 and text.endswith("[… 200000 more characters not stored]")


def test_inbox_order_most_urgent_first(tmp_path):
    db = _db(tmp_path)
    # a comment 2h old (30m target: breached 90m ago), a DM 50m old (1h target: 10m left),
    # a DM 5m old (55m left), a review 1h old (24h target)
    ingest.ingest(db, "x", [FetchResult(messages=[
        _msg(1, conv="comment", kind="comment", at=FIXED_NOW - 7200),
        _msg(2, conv="dm-old", at=FIXED_NOW - 3000),
        _msg(3, conv="dm-new", at=FIXED_NOW - 300),
        _msg(4, conv="review", kind="review", at=FIXED_NOW - 3600),
    ], cursor={})])
    rows = queries.inbox_page(db, queries.InboxFilter(), 0, 10)
    assert [r.id for r in rows] == ["x:comment", "x:dm-old", "x:dm-new", "x:review"]
    assert [r.sla_state for r in rows] == ["breached", "warning", "ok", "ok"]
    assert queries.position_of(db, queries.InboxFilter(), "x:dm-new") == 2
    counts = queries.counts(db)
    assert (counts.open, counts.breached, counts.warning) == (4, 1, 1)


def test_event_log_is_append_only(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1)], cursor={})])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.conn.execute("UPDATE events SET kind='x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.conn.execute("DELETE FROM events")


def test_actions_record_events_and_change_the_conversation(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1), _msg(2, conv="t2")], cursor={})])
    ids = ["x:t1", "x:t2"]
    actions.tag(db, ids, ["Refund", "vip"])
    actions.untag(db, ["x:t2"], ["vip"])
    actions.assign(db, ["x:t1"], "maria")
    actions.escalate(db, ["x:t1"], target="zendesk", reason="legal", note="customer mentions a lawyer")
    actions.snooze(db, ["x:t2"], FIXED_NOW + 3600)
    t1, t2 = queries.get_row(db, "x:t1"), queries.get_row(db, "x:t2")
    assert t1.tags == ("refund", "vip") and t2.tags == ("refund",)
    assert (t1.assignee, t1.escalated, t1.priority) == ("maria", True, "high")
    assert t2.status == "snoozed"
    kinds = [r[0] for r in db.conn.execute("SELECT kind FROM events WHERE conversation_id='x:t1' ORDER BY seq")]
    assert kinds[:1] == ["in"] and {"tag", "assign", "escalate", "note"} <= set(kinds)
    thread = queries.thread(db, "x:t1")
    assert thread.messages[-1].direction == "note" and "lawyer" in thread.messages[-1].text
    actions.resolve(db, ids)
    assert queries.inbox_count(db, queries.InboxFilter()) == 0
    actions.reopen(db, ["x:t1"])
    assert [r.id for r in queries.inbox_page(db, queries.InboxFilter(), 0, 5)] == ["x:t1"]


def test_customer_writing_again_reopens(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1)], cursor={})])
    actions.resolve(db, ["x:t1"])
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(2, at=FIXED_NOW - 10)], cursor={})])
    assert queries.get_row(db, "x:t1").status == "open"


def test_outbox_orders_replies_per_conversation_and_blocks_after_failure(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1), _msg(2, conv="t2")], cursor={})])
    a = outbox.queue_reply(db, "x:t1", "first")
    b = outbox.queue_reply(db, "x:t1", "second")
    c = outbox.queue_reply(db, "x:t2", "other conversation")
    assert [i.key for i in outbox.ready(db)] == [a, c]
    outbox.mark_sending(db, a)
    outbox.mark_failed(db, a, "HTTP 400 bad request")
    assert [i.key for i in outbox.ready(db)] == [c]  # b waits behind the failed a
    outbox.retry(db, a, text="first, edited")
    outbox.mark_sending(db, a)
    outbox.mark_sent(db, a, "r-1", FIXED_NOW)
    assert [i.key for i in outbox.ready(db)] == [b, c]
    thread = queries.thread(db, "x:t1")
    sent = [m for m in thread.messages if m.direction == "out"]
    assert [(m.text, m.state) for m in sent] == [("first, edited", "sent"), ("second", "queued")]
    assert sent[0].id == "x:r-1"


def test_undo_takes_a_reply_back_before_it_leaves(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1)], cursor={})])
    key = outbox.queue_reply(db, "x:t1", "oops", delay=5)
    assert outbox.ready(db) == []  # inside the undo window
    outbox.cancel(db, key)
    assert [m.direction for m in queries.thread(db, "x:t1").messages] == ["in"]
    assert outbox.pending(db) == []


def test_platform_copy_of_our_reply_is_not_shown_twice(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1)], cursor={})])
    key = outbox.queue_reply(db, "x:t1", "on our way")
    outbox.mark_sending(db, key)
    outbox.mark_sent(db, key, "r-77", FIXED_NOW)
    echo = IncomingMessage(native_id="r-77", conversation_native_id="t1", platform="telegram", kind="dm",
                           contact=Contact("u-t1", "Amani"), text="on our way", created_at=FIXED_NOW,
                           direction="out")
    ingest.ingest(db, "x", [FetchResult(messages=[echo], cursor={})])
    outs = [m for m in queries.thread(db, "x:t1").messages if m.direction == "out"]
    assert len(outs) == 1


# ---- search -------------------------------------------------------------------------------------


@pytest.fixture
def searchable(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[
        _msg(1, conv="a", text="Where is my refund for order 1234?"),
        _msg(2, conv="b", text="Η παραγγελία μου δεν έχει φτάσει", name="Μαρία Παπαδοπούλου"),
        _msg(3, conv="c", text="मेरा ऑर्डर अभी तक नहीं आया", name="अनन्या शर्मा"),
        _msg(4, conv="d", text='He said "NEAR(" and -refund * ((', name="Tom Becker"),
    ], cursor={})])
    actions.tag(db, ["x:b"], ["shipping"])
    return db


def test_search_words_filters_and_scripts(searchable):
    db = searchable

    def ids(q):
        hits, f = search.search(db, q)
        return sorted(r.id for r in queries.inbox_page(db, f, 0, 50))

    assert ids("refund") == ["x:a", "x:d"]
    assert ids("παραγγελία") == ["x:b"]
    assert ids("ऑर्डर") == ["x:c"]
    assert ids("tag:shipping") == ["x:b"]
    assert ids("shipping") == ["x:b"]  # plain words match tags too
    assert ids("from:Becker") == ["x:d"]
    assert ids("refund from:Becker") == ["x:d"]
    assert ids("is:resolved") == []


@pytest.mark.parametrize("query", [*hostile_queries(), "NEAR(", '"', "*", "-refund", "a AND", "((", "'; DROP TABLE",
                                   "tag:", "col:val:extra", "^start", "\x00", "🙂", "AND OR NOT"])
def test_hostile_queries_never_raise_and_search_literally(searchable, query):
    hits, f = search.search(searchable, query)
    rows = queries.inbox_page(searchable, f, 0, 50)
    assert isinstance(rows, list)
    if query == "-refund":  # literally the word "refund", not a negation
        assert {r.id for r in rows} == {"x:a", "x:d"}


def test_search_syntax_is_literal_text():
    q = search.parse('"unclosed phrase NEAR( tag:vip is:open platform:x col:val:extra')
    assert q.words == ["unclosed phrase NEAR( tag:vip is:open platform:x col:val:extra"]
    q = search.parse('refund "two words" tag:vip is:open platform:X col:val:extra')
    assert q.words == ["refund", "two words", "col:val:extra"]
    assert (q.tags, q.statuses, q.platforms) == (["vip"], ["open"], ["x"])
    assert search.fts_query(['say "hi"']) == '"say ""hi"""'


def test_search_prefixes_partial_names_and_mistyped_filters(searchable):
    """refun* finds refund, from: takes the start of any word of a name, and a filter that looks
    mistyped is said (it is still searched as text)."""
    db = searchable

    def ids(q):
        _, f = search.search(db, q)
        return sorted(r.id for r in queries.inbox_page(db, f, 0, 50))

    assert ids("refun") == []  # a word is a word
    assert ids("refun*") == ["x:a", "x:d"]
    assert ids("from:Beck") == ids("from:tom") == ["x:d"]
    assert ids("from:Παπαδ") == ["x:b"]
    assert ids("from:ecker") == []  # the start of a word, not any part
    assert search.problems("refund") == []
    assert search.problems("order:1234 10:30 https://shop.example/x") == []
    assert "did you mean is:?" in search.problems("status:open")[0]
    assert "did you mean platform:?" in search.problems("platfrom:x")[0]
    assert search.problems("is:brached")[0].startswith("unknown is:brached (known: open, pending")


def test_two_connections_opening_a_new_workspace_at_once(tmp_path):
    """The TUI's reader and the engine's writer may create the same workspace simultaneously."""
    import threading

    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def opener():
        try:
            barrier.wait()
            open_database(tmp_path).close()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _db(tmp_path).conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_never_is_null_not_zero_and_times_only_move_forward(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(1, at=FIXED_NOW - 500)], cursor={})])
    row = db.conn.execute("SELECT last_inbound_at, last_outbound_at FROM conversations").fetchone()
    assert tuple(row) == (FIXED_NOW - 500, None)  # never replied: NULL, not 0
    ingest.ingest(db, "x", [FetchResult(messages=[_msg(2, at=FIXED_NOW - 900),  # an older one, late
                                                  _msg(3, direction="out", at=FIXED_NOW - 100)], cursor={})])
    row = db.conn.execute("SELECT last_inbound_at, last_outbound_at FROM conversations").fetchone()
    assert tuple(row) == (FIXED_NOW - 500, FIXED_NOW - 100)


def test_engine_state_survives_in_the_database(tmp_path):
    """What the engine learnt about an account (state, a rate limit's end) is there for the next one."""
    from replydesk.storage import accounts

    db = _db(tmp_path)
    with db.transaction():
        ingest.ensure_account(db, "tg", "telegram", "telegram")
    accounts.set_status(db, "tg", "ok", "2 new", synced=True)
    accounts.set_status(db, "tg", "rate_limited", "429", until=FIXED_NOW + 60)
    accounts.set_status(db, "mail", "rate_limited", "old", until=FIXED_NOW - 1)
    assert accounts.status_of(db, "tg") == accounts.AccountStatus("rate_limited", "429")
    assert accounts.status_of(db, "nobody") is None
    assert accounts.rate_limits_in_force(db, FIXED_NOW) == {"tg": FIXED_NOW + 60}  # a wait that ended is gone
    [tg] = queries.account_states(db)
    assert tg["last_sync"] == FIXED_NOW  # a later non-sync state keeps the last good sync time


def test_report_rows_come_with_their_tags_inside_the_window(tmp_path):
    db = _db(tmp_path)
    ingest.ingest(db, "tg", [FetchResult(messages=[_msg(1, "a", at=FIXED_NOW - 7200), _msg(2, "b", at=FIXED_NOW - 60)],
                                         cursor={})])
    actions.tag(db, ["tg:a"], ["vip", "refund"])
    rows = {r.id: r for r in queries.conversations_started(db, None, FIXED_NOW)}
    assert sorted(rows["tg:a"].tags) == ["refund", "vip"] and rows["tg:b"].tags == []
    assert [r.id for r in queries.conversations_started(db, FIXED_NOW - 3600, FIXED_NOW)] == ["tg:b"]
