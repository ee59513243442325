"""Dates far outside any sane range are clamped at the edge (every provider's ingest, and import):
a message claiming year 1 or 9999 is stored at the time it was received, with the claim kept.

Why it matters: a business-calendar SLA walks the time between the first inbound message and now,
so one message "from year 1" once made every evaluation of its conversation take seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replydesk.cli import main
from replydesk.config import Config
from replydesk.model import Contact, FetchResult, IncomingMessage, parse_iso
from replydesk.storage import ingest, queries, slastate
from replydesk.workspace import Workspace
from support import FIXED_NOW, Clock


def mail(native: str, created_at: float, **kw: object) -> IncomingMessage:
    return IncomingMessage(native_id=native, conversation_native_id=kw.pop("conv", native), platform="email",
                           kind="email", contact=Contact(native_id="ann@example.com", name="Ann", handle="ann@example.com"),
                           text="Where is my order?", created_at=created_at, direction="in", **kw)


@pytest.mark.parametrize("claimed", ["0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "9999-12-31T23:59:59Z"])
def test_an_absurd_date_is_stored_as_the_time_received(tmp_path: Path, claimed: str) -> None:
    ws = Workspace(tmp_path, Config(), clock=Clock())
    db = ws.open_db()
    try:
        with db.transaction():
            ingest.ensure_account(db, "mail", "email", "email")
        ingest.ingest(db, "mail", [FetchResult(messages=[mail("m1", parse_iso(claimed))], cursor={})])
        row = db.conn.execute("SELECT created_at, meta FROM messages WHERE id='mail:m1'").fetchone()
        assert row[0] == FIXED_NOW and json.loads(row[1])["claimed_at"] == claimed
        conv = queries.get_row(db, "mail:m1")
        assert conv.last_message_at == FIXED_NOW and conv.sla_state in ("ok", "warning")  # counted from now
        result = slastate.evaluate_at(db, "mail:m1", FIXED_NOW + 3600)
        assert result is not None and all(m.started_at >= FIXED_NOW for m in result.metrics if m.started_at)
    finally:
        db.close()


def test_sane_dates_are_kept_as_claimed(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, Config(), clock=Clock())
    db = ws.open_db()
    try:
        with db.transaction():
            ingest.ensure_account(db, "mail", "email", "email")
        old = parse_iso("2003-05-01T08:00:00Z")  # an old mail in an archive: a real date
        soon = FIXED_NOW + 3600  # a sender's clock an hour fast
        ingest.ingest(db, "mail", [FetchResult(messages=[mail("a", old), mail("b", soon)], cursor={})])
        got = dict(db.conn.execute("SELECT native_id, created_at FROM messages"))
        assert got == {"a": old, "b": soon}
    finally:
        db.close()


def test_ids_with_lone_surrogates_are_stored_the_same_way_each_time(tmp_path: Path) -> None:
    """8-bit mail headers decoded with surrogateescape give ids SQLite cannot store as they are."""
    ws = Workspace(tmp_path, Config(), clock=Clock())
    db = ws.open_db()
    try:
        with db.transaction():
            ingest.ensure_account(db, "mail", "email", "email")
        hostile = mail("<id\udcd5@x>", FIXED_NOW - 60, conv="<root\udcff@x>", parent_native_id="<p\udc80@x>")
        for _ in range(2):  # a re-sync finds the same message again: stored once
            ingest.ingest(db, "mail", [FetchResult(messages=[hostile], cursor={})])
        rows = db.conn.execute("SELECT native_id, conversation_id, parent_id FROM messages").fetchall()
        assert [tuple(r) for r in rows] == [("<id\ufffd@x>", "mail:<root\ufffd@x>", "mail:<p\ufffd@x>")]
    finally:
        db.close()


def test_import_clamps_an_absurd_date_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = {"id": "shop:c1", "account": "shop", "platform": "email", "kind": "email",
              "customer": {"id": "shop:ann", "name": "Ann", "handle": "ann@example.com"}, "subject": "Order",
              "status": "open", "assignee": None, "priority": "normal", "tags": [], "escalated": False,
              "messages": [{"id": "shop:m1", "direction": "in", "author": "Ann", "text": "Hello?",
                            "created_at": "0001-01-01T00:00:00Z", "state": "received"}]}
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert main(["import", str(source), "--data-dir", str(tmp_path / "ws")]) == 0, capsys.readouterr().err
    db = Workspace(tmp_path / "ws", Config()).open_db()
    try:
        (created,) = db.conn.execute("SELECT created_at FROM messages").fetchone()
        assert created > parse_iso("2020-01-01T00:00:00Z")  # the time it was imported, not year 1
    finally:
        db.close()
