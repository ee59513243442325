"""A contact's name: the newest real name wins (by the message's time, not batch order), and a
stand-in (the handle, a bare id, nothing) never replaces a real name.

From realistic orders: Mastodon pages come newest first (the mapper sees the newest post first),
a backfill brings old posts after new ones, and platforms hand out stand-ins when a profile has no
display name (Mastodon's acct, Bluesky's handle or bare DID, an email address)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from http_fakes import FakeApi, cassette, find, json_response, needs_recordings
from replydesk import secrets
from replydesk.config import Config
from replydesk.model import Contact, FetchResult, IncomingMessage, iso
from replydesk.sla import SlaEngine
from replydesk.storage import ingest, queries
from replydesk.storage.db import open_database
from replydesk.storage.ingest import name_rank
from support import FIXED_NOW


def _db(tmp_path):
    return open_database(tmp_path, sla=SlaEngine(Config().sla), clock=lambda: FIXED_NOW)


def _msg(n: int, name: str, at: float, *, handle: str = "@grace", native: str = "u1", conv: str = "t1",
         fallback: bool = False, direction: str = "in") -> IncomingMessage:
    return IncomingMessage(
        native_id=f"m{n}", conversation_native_id=conv, platform="mastodon", kind="mention",
        contact=Contact(native_id=native, name=name, handle=handle, name_is_fallback=fallback),
        text=f"post {n}", created_at=at, direction=direction,
    )


def _contact(db, native: str = "u1") -> tuple[str, str]:
    row = db.conn.execute("SELECT name, handle FROM contacts WHERE id = ?", (f"acct:{native}",)).fetchone()
    return row[0], row[1]


def _ingest(db, *messages: IncomingMessage) -> None:
    ingest.ingest(db, "acct", [FetchResult(messages=list(messages), cursor={})])


def test_the_stand_ins_are_recognised() -> None:
    assert name_rank(Contact("u1", "Grace Okafor", "@grace")) == 2
    assert name_rank(Contact("u1", "grace", "@grace")) == 1  # Mastodon: display name empty -> acct
    assert name_rank(Contact("u1", "grace@shop.example", "grace@shop.example")) == 1  # email: the address
    assert name_rank(Contact("did:plc:abc", "did:plc:abc", "")) == 0  # Bluesky: a bare DID
    assert name_rank(Contact("u1", "", "")) == 0
    assert name_rank(Contact("u1", "Shop Friend", "@x", name_is_fallback=True)) == 1  # the provider says so


def test_newest_first_page_keeps_the_newest_name(tmp_path) -> None:
    db = _db(tmp_path)
    # One page as Mastodon returns it: newest first. The old code kept the last item's (oldest) name.
    _ingest(db, _msg(3, "Grace Okafor", FIXED_NOW - 100), _msg(2, "Grace W.", FIXED_NOW - 5000),
            _msg(1, "Grace Wanjiru", FIXED_NOW - 9000))
    assert _contact(db) == ("Grace Okafor", "@grace")


def test_an_older_name_arriving_later_does_not_replace_a_newer_one(tmp_path) -> None:
    db = _db(tmp_path)
    _ingest(db, _msg(5, "Grace Okafor", FIXED_NOW - 100))
    _ingest(db, _msg(1, "Grace Wanjiru", FIXED_NOW - 90_000, conv="t0"))  # a backfill of an old thread
    assert _contact(db)[0] == "Grace Okafor"
    _ingest(db, _msg(9, "Grace O.", FIXED_NOW - 10))  # a real rename, newer: it wins
    assert _contact(db)[0] == "Grace O."


@pytest.mark.parametrize("stand_in", [
    dict(name="grace", handle="@grace"),              # Mastodon without a display name: the acct
    dict(name="", handle=""),                         # nothing at all
    dict(name="u1", handle=""),                       # a bare id (Bluesky DM member without a profile)
    dict(name="Our friend", handle="@grace", fallback=True),  # a provider flagged it
])
def test_a_stand_in_never_replaces_a_real_name(tmp_path, stand_in: dict[str, Any]) -> None:
    db = _db(tmp_path)
    _ingest(db, _msg(1, "Grace Okafor", FIXED_NOW - 5000))
    # Newer, in a later batch and in the same batch after the real one: the real name stays.
    _ingest(db, _msg(2, stand_in["name"], FIXED_NOW - 10, handle=stand_in["handle"],
                     fallback=stand_in.get("fallback", False)))
    _ingest(db, _msg(3, "Grace Okafor", FIXED_NOW - 20, conv="t2"),
            _msg(4, stand_in["name"], FIXED_NOW - 5, handle=stand_in["handle"], conv="t2",
                 fallback=stand_in.get("fallback", False)))
    name, handle = _contact(db)
    assert name == "Grace Okafor"
    assert handle == "@grace"  # an empty handle never erases a known one


def test_a_real_name_replaces_a_stand_in_even_if_older(tmp_path) -> None:
    db = _db(tmp_path)
    _ingest(db, _msg(2, "u1", FIXED_NOW - 10, handle=""))  # first sight: a bare id
    assert _contact(db) == ("u1", "")
    _ingest(db, _msg(1, "grace", FIXED_NOW - 900, handle="@grace"))  # older, but the handle beats a bare id
    assert _contact(db) == ("grace", "@grace")
    _ingest(db, _msg(0, "Grace Okafor", FIXED_NOW - 5000))  # older still, but a real name
    assert _contact(db)[0] == "Grace Okafor"


def test_a_newer_handle_replaces_an_older_one(tmp_path) -> None:
    db = _db(tmp_path)
    _ingest(db, _msg(2, "Grace Okafor", FIXED_NOW - 10, handle="@grace.new"),
            _msg(1, "Grace Okafor", FIXED_NOW - 900, handle="@grace.old"))
    assert _contact(db)[1] == "@grace.new"
    _ingest(db, _msg(0, "Grace Okafor", FIXED_NOW - 9000, handle="@grace.older", conv="t0"))
    assert _contact(db)[1] == "@grace.new"


def test_the_inbox_and_search_show_the_kept_name(tmp_path) -> None:
    db = _db(tmp_path)
    _ingest(db, _msg(2, "Grace Okafor", FIXED_NOW - 10), _msg(1, "Grace Wanjiru", FIXED_NOW - 900))
    (row,) = queries.inbox_page(db, queries.InboxFilter(statuses=None), 0, 10)
    assert row.customer == "Grace Okafor"


# ---- through the real Mastodon provider, from its documented payload order ----------------------------

INSTANCE = "http://localhost:3000"
ACCOUNT = "shop-mastodon"


def _mention(nid: int, status_id: int, display_name: str, created: float) -> dict[str, Any]:
    """A mention notification shaped like the recorded one; the author is the recorded account."""
    item = copy.deepcopy(find(cassette("test_notifications_mentions_only.yaml"), "GET", "notifications?types").json()[0])
    item["id"] = str(nid)
    item["status"]["id"] = str(status_id)
    item["status"]["created_at"] = iso(created).replace("Z", ".000Z")
    item["status"]["content"] = f"<p>question {nid}</p>"
    item["status"]["in_reply_to_id"] = None
    for account in (item["account"], item["status"]["account"]):
        account["display_name"] = display_name
    return item


@needs_recordings
def test_mastodon_newest_first_page_and_a_later_backfill(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from replydesk.providers.mastodon import MastodonProvider

    api = FakeApi()
    me = find(cassette("test_status_reply.yaml"), "GET", "verify_credentials").json()
    api.route("GET", "/api/v1/accounts/verify_credentials",
              json_response({**me, "id": "117020565966271181", "acct": "shop", "username": "shop"}))
    api.route("GET", "/api/v2/instance",
              find(cassette("test_stream_user_direct.yaml"), "GET", "/api/v2/instance").response())
    api.route("GET", "/api/v1/conversations", json_response([]))
    # Newest first, as the API pages: the customer renamed themselves between the two posts, and the
    # newest post of all came from a moment their display name was empty (Mastodon then shows the acct).
    page = [_mention(30, 117020577157693600, "", FIXED_NOW - 60),
            _mention(20, 117020577157693500, "Grace Okafor", FIXED_NOW - 3600),
            _mention(10, 117020577157693400, "Grace Wanjiru", FIXED_NOW - 86400)]
    api.route("GET", "/api/v1/notifications", json_response(page))
    monkeypatch.setenv(secrets.env_name(ACCOUNT), "token-0123456789")
    provider = MastodonProvider(ACCOUNT, {"instance": INSTANCE, "max_length": None, "poll_interval": None},
                                secrets.getter(ACCOUNT), transport=api.transport, clock=lambda: FIXED_NOW)
    results = asyncio.run(provider.fetch({}))
    db = _db(tmp_path)
    ingest.ingest(db, ACCOUNT, results)
    author = page[0]["status"]["account"]
    name = db.conn.execute("SELECT name FROM contacts WHERE native_id = ?", (author["id"],)).fetchone()[0]
    assert name == "Grace Okafor"
    # Every conversation of the customer shows that name (the inbox joins the contact).
    rows = queries.inbox_page(db, queries.InboxFilter(statuses=None), 0, 10)
    assert len(rows) == 3 and {r.customer for r in rows} == {"Grace Okafor"}


# ---- search stays consistent with what show displays when a customer is renamed -------------------------


def _index_matches_contacts(db) -> bool:
    """Every conversation's search row says exactly the customer, subject and tags it shows."""
    stale = db.conn.execute(
        "SELECT count(*) FROM conversations c LEFT JOIN contacts p ON p.id = c.contact_id "
        "LEFT JOIN conversations_fts f ON f.rowid = c.rowid "
        "WHERE f.customer IS NOT coalesce(p.name, '') || ' ' || coalesce(p.handle, '') "
        "OR f.subject IS NOT c.subject OR f.tags IS NOT replace(c.tags, char(31), ' ')"
    ).fetchone()[0]
    rows = db.conn.execute("SELECT count(*) FROM conversations_fts").fetchone()[0]
    return stale == 0 and rows == db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0]


def _renamed_customer(db) -> None:
    # Three older conversations as "Grace Wanjiru", then a new one after she renamed herself.
    for n in range(3):
        _ingest(db, _msg(n, "Grace Wanjiru", FIXED_NOW - 90_000 + n, conv=f"old{n}"))
    _ingest(db, _msg(9, "Grace Okafor", FIXED_NOW - 60, conv="new"))


def test_search_finds_every_conversation_of_a_renamed_customer(tmp_path) -> None:
    from replydesk.storage import actions, search

    db = _db(tmp_path)
    _renamed_customer(db)
    expected = {"acct:old0", "acct:old1", "acct:old2", "acct:new"}
    for query in ("Okafor", "from:Okafor", "grace okafor"):
        hits, f = search.search(db, query)
        assert {h.conversation_id for h in hits} == expected, query
        assert {r.id for r in queries.inbox_page(db, f, 0, 50)} == expected, query
    # The old name is no longer the customer's: it only finds the messages that were written under it.
    hits, _ = search.search(db, "Wanjiru")
    assert hits == []
    assert _index_matches_contacts(db)
    # Tags and a later rename through any write path keep it so.
    actions.tag(db, ["acct:old1"], ["refund"])
    _ingest(db, _msg(10, "Grace O.", FIXED_NOW - 5, conv="new"))
    assert _index_matches_contacts(db)
    assert {h.conversation_id for h in search.search(db, "from:\"Grace O.\"")[0]} == expected
    assert [h.conversation_id for h in search.search(db, "refund")[0]] == ["acct:old1"]


def test_cli_search_and_show_agree_after_a_rename(tmp_path, capsys: pytest.CaptureFixture) -> None:
    import json

    from replydesk.cli import main

    db = _db(tmp_path)
    _renamed_customer(db)
    db.close()
    assert main(["--data-dir", str(tmp_path), "search", "Okafor", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["id"] for r in results) == ["acct:new", "acct:old0", "acct:old1", "acct:old2"]
    for r in results:
        assert main(["--data-dir", str(tmp_path), "show", r["id"], "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["customer"]["name"] == "Grace Okafor"


def test_the_migration_repairs_stale_search_rows(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database from before the triggers (schema 7) whose search rows are stale: opening it with
    this version rebuilds them."""
    from replydesk.storage import db as db_module
    from replydesk.storage import schema, search

    with monkeypatch.context() as m:
        m.setattr(db_module, "MIGRATIONS", schema.MIGRATIONS[:7])
        m.setattr(db_module, "SCHEMA_VERSION", 7)
        db = _db(tmp_path)
        # Today's ingest writes columns later migrations add (11: listening, 20: the VIP flag's two
        # sources): they are there while the old-schema data is written, and gone before the upgrade
        # adds them again.
        db.conn.execute("ALTER TABLE conversations ADD COLUMN listening TEXT")
        db.conn.execute("ALTER TABLE contacts ADD COLUMN platform_vip INTEGER NOT NULL DEFAULT 0")
        db.conn.execute("ALTER TABLE contacts ADD COLUMN vip_set INTEGER")
        _renamed_customer(db)
        db.conn.execute("ALTER TABLE conversations DROP COLUMN listening")
        db.conn.execute("ALTER TABLE contacts DROP COLUMN platform_vip")
        db.conn.execute("ALTER TABLE contacts DROP COLUMN vip_set")
        db.conn.execute("DELETE FROM conversations_fts")
        db.conn.execute("INSERT INTO conversations_fts(rowid, customer) SELECT rowid, 'Grace Wanjiru @grace' "
                        "FROM conversations")
        assert not _index_matches_contacts(db)
        db.close()
    db = _db(tmp_path)
    assert _index_matches_contacts(db)
    assert len(search.search(db, "Okafor")[0]) == 4
