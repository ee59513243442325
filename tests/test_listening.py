"""Listening: the config, the exclusions, and how matches live in storage (real SQLite files).

A match waits in the Listening view as a ``mention`` with the query's name, no SLA clock and out of
the reports; a post that also tags us is one conversation whichever stream saw it first; answering
(or the customer writing to us) joins the conversation to the inbox, where the clocks are the
normal ones. Providers' searches and the engine are in ``test_listening_platforms.py``.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from replydesk.config import Config, ConfigError, UiSettings, load_config
from replydesk.listening import ListeningQuery, for_platform
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.reporting import make_report
from replydesk.slaconfig import SlaSettings
from replydesk.storage import actions, ingest, outbox, queries
from replydesk.storage.db import Database
from replydesk.storage.queries import InboxFilter
from replydesk.storage.search import search
from replydesk.workspace import Workspace
from support import FIXED_NOW, Clock, hostile_texts

ACCOUNT = "shop-mastodon"
QUERY = "brand"
LISTENING = InboxFilter(listening=True)


def post(n: int, text: str, *, conv: int | None = None, ago: float = 600, who: str = "ann",
         direction: str = "in", parent: int | None = None) -> IncomingMessage:
    return IncomingMessage(
        native_id=str(n), conversation_native_id=str(conv if conv is not None else n), platform="mastodon",
        kind="mention", contact=Contact(native_id=f"id-{who}", name=who.title(), handle=f"@{who}"), text=text,
        created_at=FIXED_NOW - ago, direction=direction, author=who.title(),
        parent_native_id=str(parent) if parent is not None else None,
        meta={"visibility": "public", "acct": who, "conversation": {"root": str(conv if conv is not None else n)}})


def listened(*messages: IncomingMessage, query: str = QUERY) -> FetchResult:
    return FetchResult(list(messages), {"sources": {"search:Duka la Amani": "9"}}, f"listen:{query}",
                       listening=query)


def mentioned(*messages: IncomingMessage) -> FetchResult:
    return FetchResult(list(messages), {"min_id": "1"}, "mentions")


@pytest.fixture
def db(tmp_path: Path, clock: Clock) -> Database:
    ws = Workspace(tmp_path / "ws", Config(), clock=clock)
    database = ws.open_db()
    with database.transaction():
        ingest.ensure_account(database, ACCOUNT, "mastodon", "mastodon")
    yield database
    database.close()


def conv(n: int) -> str:
    return f"{ACCOUNT}:{n}"


def row(db: Database, n: int) -> dict[str, Any]:
    r = db.conn.execute("SELECT listening, sla_state, sla_due_at, kind, status FROM conversations WHERE id=?",
                        (conv(n),)).fetchone()
    return dict(r) if r else {}


def events(db: Database, n: int) -> list[tuple[str, dict]]:
    return [(k, json.loads(d)) for k, d in db.conn.execute(
        "SELECT kind, data FROM events WHERE conversation_id=? ORDER BY seq", (conv(n),))]


def ids(db: Database, f: InboxFilter) -> list[str]:
    return [r.id for r in queries.inbox_page(db, f, 0, 100)]


def report_ids(db: Database) -> int:
    report = make_report(db, SlaSettings(), None, FIXED_NOW + 3600, None)
    return sum(g["conversations"] for g in report["groups"])


# ---- config ------------------------------------------------------------------------------------------


def _load(tmp_path: Path, listening: str, accounts: str = "") -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(f"""\
        accounts:
          - {{name: shop-mastodon, provider: mastodon, instance: https://mastodon.social}}
          - {{name: shop-mail, provider: email, address: a@shop.example, imap: {{host: imap.shop.example}}}}
          - {{name: shop-telegram, provider: telegram}}
        {accounts}
        listening:
        """) + textwrap.indent(textwrap.dedent(listening), "  "), encoding="utf-8")
    return load_config(path)[0]


def test_a_query_is_validated_and_cleaned(tmp_path):
    config = _load(tmp_path, """\
        - name: brand
          terms: "  Duka   la Amani "
          hashtags: ["#DukaLaAmani", DukaLaAmani]
          handles: ["@rival@mastodon.social"]
          exclude: [hiring]
          interval: 10m
        """)
    (query,) = config.listening
    assert query.terms == ["Duka la Amani"] and query.hashtags == ["DukaLaAmani"]
    assert query.handles == ["rival@mastodon.social"] and query.interval == 600 and query.stream == "listen:brand"
    assert for_platform(config.listening, "shop-mastodon", "mastodon") == [query]


@pytest.mark.parametrize(("listening", "message"), [
    ("- {name: brand, terms: [x], platforms: [email]}",
     "listening: listening query 'brand': email has nothing to listen to (platforms with search: bluesky, "
     "mastodon, x)"),
    ("- {name: brand, terms: [x], accounts: [shop-telegram]}",
     "account 'shop-telegram' is on telegram, which has nothing to listen to"),
    ("- {name: brand, terms: [x], accounts: [nobody]}", "no account named 'nobody'"),
    ("- {name: brand, terms: [x]}\n- {name: brand, hashtags: [y]}", "two listening queries are named 'brand'"),
    ("- {name: brand, exclude: [hiring]}", "give terms, hashtags or handles to look for"),
    ("- {name: brand, terms: [x], interval: 10s}", "at least 60s"),
    ("- {name: brand, hashtags: ['#two words']}", "a hashtag is letters, digits and _ only"),
    ('- {name: brand, terms: [\'say "hi"\']}', "leave out the quotes"),
    ("- {name: brand, terms: [x], colour: red}", "unknown key"),
])
def test_mistakes_are_config_errors_with_the_line(tmp_path, listening, message):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, listening)
    text = str(info.value)
    assert message in text and re.search(r"config\.yaml:\d+: listening", text), text


def test_queries_apply_to_the_accounts_and_platforms_they_name():
    brand = ListeningQuery(name="brand", terms=["duka"])
    only_x = ListeningQuery(name="x-only", terms=["duka"], platforms=["x"])
    one = ListeningQuery(name="one", hashtags=["duka"], accounts=["shop-bsky"])
    assert for_platform([brand, only_x, one], "shop-mastodon", "mastodon") == [brand]
    assert for_platform([brand, only_x, one], "shop-x", "x") == [brand, only_x]
    assert for_platform([brand, only_x, one], "shop-bsky", "bluesky") == [brand, one]


# ---- exclusions --------------------------------------------------------------------------------------


def test_exclusions_match_whole_words_whatever_their_case_width_or_hidden_characters():
    query = ListeningQuery(name="brand", terms=["duka"], exclude=["hiring", "job offer"],
                           exclude_authors=["@Spam@bots.example"])
    assert query.excluded("Duka la Amani is HIRING!") == "excluded word 'hiring'"
    assert query.excluded("a job  offer at Duka") is None  # a phrase as written (two spaces are not one)
    assert query.excluded("Duka: job offer inside") == "excluded word 'job offer'"
    assert query.excluded("hi\u200bring at Duka") == "excluded word 'hiring'"  # a zero-width space slipped in
    assert query.excluded("\u202ehiring\u202c at Duka") == "excluded word 'hiring'"  # a bidi override around it
    assert query.excluded("ｈｉｒｉｎｇ at Duka") == "excluded word 'hiring'"  # fullwidth letters
    assert query.excluded("Duka hirings") is None and query.excluded("Duka rehiring") is None
    assert query.excluded("anything", "spam@Bots.Example") == "author @Spam@bots.example"
    assert query.excluded("anything", "@someone") is None


#: Hostile samples that say "refund" where a naive terminal would overwrite or style it away.
HIDING_REFUND = {"rich-markup", "backspace-overwrite", "carriage-return-overwrite"}


@pytest.mark.parametrize("case", hostile_texts(), ids=lambda c: c["id"])
def test_hostile_posts_are_judged_and_stored_as_received(db: Database, case: dict[str, str]):
    query = ListeningQuery(name="brand", terms=["duka"], exclude=["refund"])
    text = "Duka la Amani: " + case["text"]
    if case["id"] in HIDING_REFUND:  # hidden on a screen is not hidden from the exclusion
        assert query.excluded(text) == "excluded word 'refund'"
        return
    assert query.excluded(text) is None
    stats = ingest.ingest(db, ACCOUNT, [listened(post(1, text))])
    assert stats.rejected == [] and row(db, 1)["listening"] == "brand"
    stored = db.conn.execute("SELECT text FROM messages WHERE id=?", (f"{ACCOUNT}:1",)).fetchone()[0]
    assert stored == ingest.clean_text(text)  # exactly as received (a lone surrogate made storable)


# ---- storage: waiting, joining, one conversation ------------------------------------------------------


def test_a_match_waits_in_the_listening_view_without_a_clock(db: Database):
    stats = ingest.ingest(db, ACCOUNT, [listened(post(1, "Duka la Amani still hasn't shipped", ago=7200))])
    assert row(db, 1) == {"listening": "brand", "sla_state": "none", "sla_due_at": None, "kind": "mention",
                          "status": "open"}
    assert [k for k, _ in events(db, 1)] == ["listened"]
    assert [(m.conversation_id, m.query, m.waiting) for m in stats.listened] == [(conv(1), "brand", True)]
    counts = queries.counts(db)
    assert ids(db, InboxFilter()) == [] and counts.open == 0 and counts.by_platform == {}  # not the inbox's
    assert counts.listening == 1
    assert ids(db, LISTENING) == [conv(1)] and queries.get_row(db, conv(1)).listening == "brand"
    assert ids(db, InboxFilter(listening=True, listening_queries=("other",))) == []
    assert report_ids(db) == 0  # nobody answered: not the business's conversation yet
    meta = json.loads(db.conn.execute("SELECT meta FROM messages WHERE id=?", (f"{ACCOUNT}:1",)).fetchone()[0])
    assert meta["listening"] == "brand"


def test_search_finds_matches_only_when_asked(db: Database):
    ingest.ingest(db, ACCOUNT, [listened(post(1, "Duka la Amani shipped my parcel"))])
    ingest.ingest(db, ACCOUNT, [mentioned(post(2, "@shop where is my parcel"))])
    hits, f = search(db, "parcel")
    assert ids(db, f) == [conv(2)]
    for query in ("parcel is:listening", "is:listening", "listening:brand"):
        hits, f = search(db, query)
        assert ids(db, f) == [conv(1)], query
    assert ids(db, search(db, "listening:other")[1]) == []
    view = UiSettings().views[-1]
    assert view.name == "Listening" and ids(db, search(db, view.query)[1]) == [conv(1)]
    actions.resolve(db, [conv(1)])  # dismissed: it leaves the view, and stays out of the inbox
    assert ids(db, search(db, view.query)[1]) == [] and ids(db, InboxFilter(statuses=None)) == [conv(2)]


def test_a_post_the_inbox_has_stays_one_inbox_conversation(db: Database):
    """The mention came first: listening finding the same post (and its thread) changes nothing."""
    ingest.ingest(db, ACCOUNT, [mentioned(post(1, "@shop Duka la Amani? where is it", ago=300))])
    before = row(db, 1)
    stats = ingest.ingest(db, ACCOUNT, [listened(post(1, "@shop Duka la Amani? where is it", ago=300),
                                                 post(2, "Duka la Amani same here", conv=1, who="bo", ago=200))])
    assert stats.new_messages == 1 and [m.waiting for m in stats.listened] == [False]
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
    assert row(db, 1)["listening"] is None and row(db, 1)["sla_state"] == before["sla_state"] == "ok"
    assert [k for k, _ in events(db, 1)].count("in") == 2 and ids(db, LISTENING) == []


def test_the_inbox_stream_delivering_a_listened_post_joins_it_with_the_posts_own_clock(db: Database):
    """Listening saw it first; the mention stream then brings the same post (it tagged us too)."""
    ingest.ingest(db, ACCOUNT, [listened(post(1, "@shop Duka la Amani lost my order", ago=7200))])
    stats = ingest.ingest(db, ACCOUNT, [mentioned(post(1, "@shop Duka la Amani lost my order", ago=7200))])
    assert stats.new_messages == 0 and stats.joined == {conv(1)}
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
    assert db.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    state = row(db, 1)
    assert state["listening"] is None and state["sla_state"] == "breached"  # 30 min target, 2 h ago
    kinds = events(db, 1)
    assert ("joined", {"listening": "brand", "why": "the post tagged us too"}) in kinds
    assert ids(db, InboxFilter()) == [conv(1)] and queries.counts(db).breached == 1 and ids(db, LISTENING) == []


def test_a_customer_writing_to_us_in_a_listened_thread_joins_it(db: Database):
    ingest.ingest(db, ACCOUNT, [listened(post(1, "Duka la Amani never answers", ago=7200))])
    ingest.ingest(db, ACCOUNT, [mentioned(post(2, "@shop hello?", conv=1, parent=1, ago=60))])
    state = row(db, 1)
    assert state["listening"] is None and state["sla_state"] == "ok"
    assert state["sla_due_at"] == FIXED_NOW - 60 + 1800  # from the message to us, not from the old post
    assert ("joined", {"listening": "brand", "why": "the customer wrote to us"}) in events(db, 1)


def test_answering_joins_the_inbox_with_the_normal_clocks(db: Database, clock: Clock):
    ingest.ingest(db, ACCOUNT, [listened(post(1, "Duka la Amani mugs are lovely but pricey", ago=7200))])
    assert report_ids(db) == 0
    key = outbox.queue_reply(db, conv(1), "Thank you! 10% off with AMANI10")
    assert row(db, 1)["listening"] == "brand"  # queued is not answered yet (undo, failure)
    outbox.mark_sent(db, key, "900", clock.now)
    state = row(db, 1)
    assert state["listening"] is None and state["sla_state"] == "none"  # no first-reply breach for a post never owed
    assert ("joined", {"listening": "brand", "why": "answered"}) in events(db, 1)
    assert ids(db, InboxFilter()) == [conv(1)] and report_ids(db) == 1
    clock.advance(120)
    ingest.ingest(db, ACCOUNT, [mentioned(post(3, "@shop thanks, ordered!", conv=1, parent=900, ago=-100))])
    assert row(db, 1)["sla_state"] == "ok" and row(db, 1)["sla_due_at"] == FIXED_NOW + 100 + 1800


def test_our_own_reply_in_a_listened_thread_makes_it_ours(db: Database):
    """Our answer made elsewhere comes with the thread: the conversation is the inbox's from the start."""
    ingest.ingest(db, ACCOUNT, [listened(post(1, "Duka la Amani?", ago=900),
                                         post(2, "@ann yes, we ship!", conv=1, who="shop", direction="out", ago=800),
                                         post(3, "Duka la Amani great, but late", conv=1, ago=100))])
    state = row(db, 1)
    assert state["listening"] is None and state["sla_state"] == "ok"
    assert [k for k, _ in events(db, 1)][:3] == ["in", "reply", "in"]


def test_a_policy_for_listening_gives_matches_a_clock(tmp_path: Path, clock: Clock):
    settings = SlaSettings.model_validate({"policies": [
        {"name": "listening", "match": {"listening": True}, "first_reply": {"target": "4h"}},
        {"name": "public-social", "match": {"kind": ["mention"]}, "first_reply": {"target": "30m"}},
    ]})
    ws = Workspace(tmp_path / "ws", Config(sla=settings), clock=clock)
    db = ws.open_db()
    ingest.ingest(db, ACCOUNT, [listened(post(1, "Duka la Amani?", ago=600))])
    ingest.ingest(db, ACCOUNT, [mentioned(post(2, "@shop hi", ago=600))])
    listening_row, inbox_row = row(db, 1), row(db, 2)
    db.close()
    assert listening_row["sla_state"] == "ok" and listening_row["sla_due_at"] == FIXED_NOW - 600 + 4 * 3600
    assert inbox_row["sla_due_at"] == FIXED_NOW - 600 + 1800


def test_the_inbox_views_walk_their_own_indexes(db: Database):
    """The partial indexes leave listening rows out of the inbox's walk and give the Listening view its own."""
    def plan(sql: str, params: tuple = ()) -> str:
        return " ".join(r[3] for r in db.conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    for f, index in ((InboxFilter(), "conv_open_inbox"), (LISTENING, "conv_listening")):
        where, params = queries._where(f)
        sql = f"SELECT c.id FROM conversations c{queries._index_hint(f)}{where} ORDER BY {queries.ORDER} LIMIT 50"
        assert index in plan(sql, tuple(params)) and "TEMP B-TREE" not in plan(sql, tuple(params))
    queries.counts(db)  # INDEXED BY: raises if the index cannot serve the query
    queries.inbox_page(db, LISTENING, 0, 10)


def test_an_export_and_import_keep_a_match_waiting(db: Database, tmp_path: Path, clock: Clock):
    from replydesk.storage.exchange import export_records, import_records

    ingest.ingest(db, ACCOUNT, [listened(post(1, "Duka la Amani?", ago=7200))])
    ingest.ingest(db, ACCOUNT, [mentioned(post(2, "@shop hi", ago=600))])
    records = {r["id"]: r for r in export_records(db)}
    assert records[conv(1)]["listening"] == "brand" and records[conv(2)]["listening"] is None
    other = Workspace(tmp_path / "other", Config(), clock=clock).open_db()
    import_records(other, [json.dumps(r) + "\n" for r in records.values()])
    assert row(other, 1)["listening"] == "brand" and row(other, 1)["sla_state"] == "none"
    assert row(other, 2)["listening"] is None and row(other, 2)["sla_state"] == "ok"
    other.close()


def test_an_edited_listening_section_applies_at_the_next_start(tmp_path: Path):
    from replydesk.config import parse_config
    from replydesk.config_watch import ConfigSource, ConfigWatcher

    path = tmp_path / "config.yaml"
    accounts = "accounts:\n  - {name: shop-mastodon, provider: mastodon, instance: https://mastodon.social}\n"
    path.write_text(accounts, encoding="utf-8")
    source = ConfigSource(path, lambda: parse_config(path.read_text(encoding="utf-8"), path))
    watcher = ConfigWatcher(source, source.build())
    path.write_text(accounts + "listening:\n  - {name: brand, hashtags: [dukalaamani]}\n", encoding="utf-8")
    change = watcher.poll()
    assert change is not None and change.on_restart == ["listening"] and not change.sla_changed


def test_a_workspace_of_the_previous_schema_upgrades_with_its_counters_intact(tmp_path: Path, clock: Clock):
    """The listening migration (14) rebuilds the inbox counters with the listening flag from the conversations there."""
    from unittest import mock

    from replydesk.storage import db as db_module
    from replydesk.storage import doctor, schema
    from replydesk.storage.db import open_database

    # The schema just before the listening migration (later ones follow it in the list).
    before = next(i for i, m in enumerate(schema.MIGRATIONS) if any("ADD COLUMN listening" in q for q in m))
    with mock.patch.object(db_module, "SCHEMA_VERSION", before):
        old = open_database(tmp_path / "ws", clock=clock)
        with old.transaction():
            for n in range(30):
                old.conn.execute(
                    "INSERT INTO conversations(id, account, platform, kind, native_id, created_at, last_message_at, "
                    "status, sort_due, sla_state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (conv(n), ACCOUNT, "mastodon", "mention", str(n), FIXED_NOW - n * 3600, FIXED_NOW - n * 3600,
                     ("open", "pending", "resolved")[n % 3], FIXED_NOW + n * 60, ("ok", "breached")[n % 2]))
        assert old.conn.execute("PRAGMA user_version").fetchone()[0] == before
        old.close()
    db = open_database(tmp_path / "ws", clock=clock)
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert doctor.counters_consistent(db)
    assert queries.inbox_count(db, InboxFilter()) == 20 and queries.counts(db).breached == 10
    ingest.ingest(db, ACCOUNT, [listened(post(100, "Duka la Amani?"))])
    assert queries.inbox_count(db, InboxFilter()) == 20 and queries.inbox_count(db, LISTENING) == 1
    assert doctor.counters_consistent(db)
    db.close()


def test_a_pushed_mention_joins_a_listened_conversation_like_a_polled_one(db: Database):
    """A webhook or stream push (a result that advances no cursor) is an inbox stream too."""
    ingest.ingest(db, ACCOUNT, [listened(post(1, "@shop Duka la Amani lost my order", ago=7200))])
    pushed = FetchResult([post(1, "@shop Duka la Amani lost my order", ago=7200)], None, "push")
    stats = ingest.ingest(db, ACCOUNT, [pushed])
    assert stats.joined == {conv(1)} and row(db, 1)["listening"] is None and row(db, 1)["sla_state"] == "breached"
