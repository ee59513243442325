"""Storage figures: ingest vs executemany, search vs raw FTS5, inbox pages, outbox drain vs bare accept.

Every figure is measured against its baseline in the same run, on the same machine state.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.generate import LANGUAGES, TAGS, Spec, account_names, pages
from bench.report import Figure, median, percentile
from replydesk.config import Config, demo_config
from replydesk.model import OutgoingReply
from replydesk.providers.demo import DemoRemote
from replydesk.storage import outbox, queries
from replydesk.storage.db import Database, open_database
from replydesk.storage.ingest import ensure_account, ingest
from replydesk.storage.queries import InboxFilter
from replydesk.storage.search import fts_phrase, fts_query, message_hits_sql, parse, search
from replydesk.workspace import Workspace

#: Tables (and their order) the ingest path writes; the baseline inserts the same rows into them.
INGEST_TABLES = ("accounts", "contacts", "conversations", "messages", "events", "sync_cursors")

log = logging.getLogger(__name__)


def _workdir(base: Path | None) -> Path:
    base = base or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="bench-", dir=base))


# ---- ingest -----------------------------------------------------------------------------------------


def _table_rows(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[tuple]]:
    cur = conn.execute(f"SELECT * FROM {table}")
    cols = [d[0] for d in cur.description]
    return cols, [tuple(r) for r in cur]


def _chunked(tables: dict[str, tuple[list[str], list[tuple]]], chunks: int) -> list[dict[str, list[tuple]]]:
    """Split the rows into ``chunks`` transactions so every foreign key points at an earlier row."""
    plan: list[dict[str, list[tuple]]] = [{t: [] for t in tables} for _ in range(chunks)]
    conv_cols, convs = tables["conversations"]
    conv_chunk = {row[conv_cols.index("id")]: i * chunks // max(len(convs), 1) for i, row in enumerate(convs)}
    contact_chunk: dict[str, int] = {}
    for row in convs:
        cid = row[conv_cols.index("contact_id")]
        contact_chunk[cid] = min(contact_chunk.get(cid, chunks), conv_chunk[row[conv_cols.index("id")]])
    for table, (cols, rows) in tables.items():
        for i, row in enumerate(rows):
            if table == "contacts":
                n = contact_chunk.get(row[cols.index("id")], 0)
            elif table == "conversations":
                n = conv_chunk[row[cols.index("id")]]
            elif table in ("messages", "events"):
                n = conv_chunk.get(row[cols.index("conversation_id")], chunks - 1)
            elif table == "accounts":
                n = 0
            else:
                n = i * chunks // len(rows)
            plan[n][table].append(row)
    return plan


def _ingest_once(n_messages: int, work: Path) -> tuple[float, float, int, int]:
    """(seconds through ingest(), seconds of plain executemany, messages, transactions)."""
    spec = Spec(conversations=max(n_messages // 10, 1), messages=n_messages, accounts=24, seed=11)
    batch = list(pages(spec, time.time()))  # built before the clock starts: providers hand us these
    real_dir, base_dir = work / "real", work / "baseline"
    db = Workspace(real_dir, Config()).open_db()
    with db.transaction():
        for name, platform in account_names(spec):
            ensure_account(db, name, "bench", platform)
    t0 = time.perf_counter()
    for account, page in batch:
        ingest(db, account, [page])
    real = time.perf_counter() - t0
    tables = {t: _table_rows(db.conn, t) for t in INGEST_TABLES}
    db.close()

    # The baseline: the very rows ingest wrote, with executemany, into a fresh database with the same
    # schema (triggers and FTS included: they write both search indexes and the inbox counters), in as
    # many transactions as ingest used.
    base = open_database(base_dir)
    conn = base.conn
    chunks = max(len(batch), 1)
    plan = _chunked(tables, chunks)
    t0 = time.perf_counter()
    for part in plan:
        conn.execute("BEGIN IMMEDIATE")
        for table, rows in part.items():
            if rows:
                cols = tables[table][0]
                marks = ",".join("?" * len(cols))
                conn.executemany(f"INSERT INTO {table}({','.join(cols)}) VALUES ({marks})", rows)
        conn.execute("COMMIT")
    baseline = time.perf_counter() - t0
    base.close()
    messages = len(tables["messages"][1])
    shutil.rmtree(work, ignore_errors=True)
    return real, baseline, messages, chunks


def bench_ingest(size_messages: int, n_messages: int, runs: int, tmp: Path | None) -> Figure:
    reals, bases = [], []
    messages = transactions = 0
    for _ in range(runs):
        real, base, messages, transactions = _ingest_once(n_messages, _workdir(tmp))
        reals.append(real)
        bases.append(base)
    value, baseline = messages / median(reals), messages / median(bases)
    ratio = value / baseline
    return Figure("ingest_rows_per_s", size_messages, value, "messages/s", baseline, target=">= 0.7 ratio",
                  ok=ratio >= 0.7, measured=f"{messages:,} ingested",
                  note=f"{messages:,} messages in {transactions} fetch pages into an empty workspace; baseline = "
                       f"executemany of the same rows (contacts, conversations, messages, events, FTS, cursors)"
                       f"; median of {runs}")


# ---- search -----------------------------------------------------------------------------------------


def search_queries(n: int = 200, seed: int = 3) -> list[str]:
    """A deterministic mix: words in every script, two-word queries, author and filter queries."""
    rng = random.Random(seed)
    words: list[str] = []
    names: list[str] = []
    for _, customer_names, openings, follows in LANGUAGES:
        names += [name.split()[0] for name in customer_names]
        for text in openings + follows:
            words += [w.strip("#?!.,:;{}()").lower() for w in text.split()]
    words = sorted({w for w in words if len(w) > 2 and not w.startswith("n}")})
    extra = ["refund", "order", "refund order", "broken mug", "ship", "παραγγελία", "тапсырыс", "ऑर्डर",
             "pesanan", "agizo", "☕", "Nairobi", "coffee", "\"blue mug\"", "refund -order", "NEAR(x y)"]
    out: list[str] = []
    while len(out) < n:
        roll = rng.random()
        if roll < 0.45:
            out.append(rng.choice(words))
        elif roll < 0.7:
            out.append(f"{rng.choice(words)} {rng.choice(words)}")
        elif roll < 0.8:
            out.append(f"from:{rng.choice(names)}")
        elif roll < 0.9:
            out.append(f"{rng.choice(words)} tag:{rng.choice(TAGS)}")
        else:
            out.append(rng.choice(extra))
    return out


def raw_match(query: str) -> str | None:
    """The MATCH string search() builds for its message statement (same functions, same order)."""
    q = parse(query)
    match = fts_query(q.words)
    author = " OR ".join(fts_phrase(a) for a in q.authors if any(ch.isalnum() for ch in a)) or None
    parts = [p for p in (match, f"author : ({author})" if author else None) if p]
    return " AND ".join(parts) if parts else None


def bench_search(db: Database, size_messages: int, runs: int, n_queries: int = 200) -> list[Figure]:
    qs = [(q, raw_match(q)) for q in search_queries(n_queries)]
    qs = [(q, m) for q, m in qs if m]
    sql = message_hits_sql()
    limit = 50
    ours: dict[int, list[float]] = {i: [] for i in range(len(qs))}
    raw: dict[int, list[float]] = {i: [] for i in range(len(qs))}
    for q, m in qs[:20]:  # warm the page cache once, as an app that is open all day has it
        search(db, q, limit)
        db.conn.execute(sql, (m, limit * 4)).fetchall()
    for r in range(max(runs, 1)):
        for i, (q, m) in enumerate(qs):
            order = (0, 1) if (i + r) % 2 == 0 else (1, 0)  # alternate who goes first
            for who in order:
                t0 = time.perf_counter()
                if who == 0:
                    search(db, q, limit)
                    ours[i].append(time.perf_counter() - t0)
                else:
                    db.conn.execute(sql, (m, limit * 4)).fetchall()
                    raw[i].append(time.perf_counter() - t0)
    ours_ms = [median(v) * 1000 for v in ours.values()]
    raw_ms = [median(v) * 1000 for v in raw.values()]
    p50, p95 = percentile(ours_ms, 50), percentile(ours_ms, 95)
    b50, b95 = percentile(raw_ms, 50), percentile(raw_ms, 95)
    note = f"{len(qs)} queries through storage.search.search vs message_hits_sql() with the same MATCH"
    worst = max(range(len(qs)), key=lambda i: ours_ms[i])
    extra = {"slowest_query": qs[worst][0], "slowest_ms": round(ours_ms[worst], 2)}
    return [
        Figure("search_p50_ms", size_messages, p50, "ms", b50, target="ratio <= 2", ok=p50 / b50 <= 2 if b50 else None,
               note=note),
        Figure("search_p95_ms", size_messages, p95, "ms", b95,
               target="< 20 ms, ratio <= 2", ok=p95 < 20 and (p95 / b95 <= 2 if b95 else True), note=note,
               extra=extra),
    ]


# ---- inbox pages ------------------------------------------------------------------------------------


def _raw_page(db: Database, f: InboxFilter, offset: int, limit: int) -> list[tuple]:
    """The straightforward page query: every row of the view joined and sorted, then cut."""
    where, params = queries._where(f)
    return db.conn.execute(
        f"{queries._ROW_SQL}{where} ORDER BY {queries.ORDER} LIMIT ? OFFSET ?", (*params, limit, offset)
    ).fetchall()


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _alternate(ours: Callable[[], object], plain: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """Times of ``ours`` and ``plain`` measured in turns (who goes first alternates), in ms."""
    ours(), plain()
    a, b = [], []
    for i in range(repeat):
        for who in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            (ours if who == 0 else plain)()
            (a if who == 0 else b).append((time.perf_counter() - t0) * 1000)
    return a, b


def _plain_position(db: Database, f: InboxFilter, conv_id: str) -> int:
    """The straightforward position: COUNT the view's rows before the conversation in inbox order."""
    due, esc, last = db.conn.execute(
        "SELECT sort_due, escalated, last_message_at FROM conversations WHERE id=?", (conv_id,)).fetchone()
    where, params = queries._where(f)
    return db.conn.execute(
        f"SELECT count(*) FROM conversations c{where}{' AND ' if where else ' WHERE '}{queries._BEFORE}",
        (*params, due, due, esc, esc, last, last, conv_id)).fetchone()[0]


def bench_pages(db: Database, size_messages: int, repeat: int) -> list[Figure]:
    page = 100
    default = InboxFilter()
    total = queries.inbox_count(db, default)
    middle = (total // 2) // page * page
    filtered = default.with_(platforms=("x", "instagram"))
    tagged = default.with_(tags=("refund",))
    cases: dict[str, tuple[InboxFilter, int]] = {
        "first": (default, 0), "middle": (default, middle), "filter": (filtered, 0), "tag": (tagged, 0),
    }
    figures = []
    ours_all: list[float] = []
    raw_all: list[float] = []
    for label, (f, offset) in cases.items():
        ours = _timed(lambda f=f, offset=offset: queries.inbox_page(db, f, offset, page), repeat)
        raw = _timed(lambda f=f, offset=offset: _raw_page(db, f, offset, page), repeat)
        ours_all += ours
        raw_all += raw
        figures.append(Figure(f"page_query_{label}_p95_ms", size_messages, percentile(ours, 95), "ms",
                              percentile(raw, 95), note=f"offset {offset:,} of {total:,} open conversations"))
    p95 = percentile(ours_all, 95)
    figures.insert(0, Figure("page_query_p95_ms", size_messages, p95, "ms", percentile(raw_all, 95),
                             target="< 16 ms", ok=p95 < 16,
                             note="storage.queries.inbox_page, 100 rows: first, middle, platform filter, tag filter; "
                                  "baseline = the plain one-statement query (join, ORDER BY, LIMIT/OFFSET) that "
                                  "inbox_page replaces with an index walk and a join after the LIMIT"))
    # What the TUI's reload also runs whenever data changes: count and cursor position, against the
    # plain statements they replace (a COUNT over the view; a COUNT of the rows before the cursor),
    # measured alternately.
    where, params = queries._where(default)
    count_sql = f"SELECT count(*) FROM conversations c{where}"
    ours, plain = _alternate(lambda: queries.inbox_count(db, default),
                             lambda: db.conn.execute(count_sql, params).fetchone(), repeat)
    figures.append(Figure("inbox_count_p95_ms", size_messages, percentile(ours, 95), "ms", percentile(plain, 95),
                          note="queries.inbox_count of the open inbox (the TUI runs it on every data change): a "
                               "sum over the maintained counters; baseline = the plain COUNT over the view"))
    for label, offset in (("", middle), ("_last", max(total - 1, 0))):
        row = queries.inbox_page(db, default, offset, 1)
        if not row:
            continue
        ours, plain = _alternate(lambda row=row: queries.position_of(db, default, row[0].id),
                                 lambda row=row: _plain_position(db, default, row[0].id), repeat)
        figures.append(Figure(f"position_of{label}_p95_ms", size_messages, percentile(ours, 95), "ms",
                              percentile(plain, 95),
                              note=f"queries.position_of for the conversation at {offset:,} of {total:,} (TUI "
                                   "reload); baseline = the plain COUNT of the rows before it"))
    longest = db.conn.execute(
        "SELECT conversation_id FROM messages GROUP BY conversation_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    if longest:
        thread_ms = _timed(lambda: queries.thread(db, longest[0]), repeat)
        figures.append(Figure("thread_query_p95_ms", size_messages, percentile(thread_ms, 95), "ms",
                              note="queries.thread for the longest conversation"))
    return figures


# ---- outbox -----------------------------------------------------------------------------------------


async def _drain(ws: Workspace, n_replies: int) -> tuple[float, int]:
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        run = engine.accounts["demo"]
        await engine.fetch_account(run)  # the demo backlog: conversations to answer
        # conversations any reply may go to now (a closed reply window would refuse the rest)
        convs = [r[0] for r in db.conn.execute("SELECT id FROM conversations WHERE reply_window IS NULL "
                                               "ORDER BY rowid")]
        for i in range(n_replies):
            outbox.queue_reply(db, convs[i % len(convs)], f"Reply {i}: thanks, we're on it 🙂")
        t0 = time.perf_counter()
        sent = 0
        while sent < n_replies:
            got = await engine.drain(run, limit=n_replies - sent)
            if not got:
                break
            sent += got
        elapsed = time.perf_counter() - t0
        if sent < n_replies:  # say why in the figure's note rather than print a bare 0
            states = db.conn.execute("SELECT state, count(*), max(last_error) FROM outbox GROUP BY state").fetchall()
            status = db.conn.execute("SELECT state, detail FROM account_status").fetchall()
            log.warning("outbox drain stopped at %d/%d: outbox %s; account %s; blocked %.1f s, stopped %s",
                        sent, n_replies, [tuple(r) for r in states], [tuple(r) for r in status],
                        run.blocked_until - db.now(), run.stopped)
        for run_ in engine.accounts.values():
            await run_.provider.aclose()
        return elapsed, sent
    finally:
        db.close()


def _bare_accept(work: Path, n_replies: int) -> float:
    remote = DemoRemote(work)
    replies = [OutgoingReply(key=f"k{i:08d}", conversation_id=f"demo:c{i % 240}", conversation_native_id=f"c{i % 240}",
                             account="demo", kind="dm", private=False, text=f"Reply {i}: thanks, we're on it 🙂",
                             customer_handle="@someone") for i in range(n_replies)]
    t0 = time.perf_counter()
    for reply in replies:
        remote.accept(reply, time.time())
    return time.perf_counter() - t0


def bench_outbox(size_messages: int, n_replies: int, runs: int, tmp: Path | None) -> Figure:
    drains, bares = [], []
    sent = 0
    for _ in range(runs):
        work = _workdir(tmp)
        ws = Workspace(work / "ws", demo_config(seed=5))
        elapsed, sent = asyncio.run(_drain(ws, n_replies))
        drains.append(elapsed)
        bares.append(_bare_accept(work / "bare", n_replies))
        shutil.rmtree(work, ignore_errors=True)
    value = sent / median(drains)
    baseline = n_replies / median(bares)
    return Figure("outbox_replies_per_s", size_messages, value, "replies/s", baseline,
                  note=f"{n_replies} replies drained by SyncEngine.drain against the demo platform (no latency) "
                       f"vs bare DemoRemote.accept; median of {runs}" + ("" if sent == n_replies else
                                                                         f"; only {sent} sent"))
