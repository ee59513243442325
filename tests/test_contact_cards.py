"""The customer card's writes in a solo workspace: each edit is one ``card`` event (the change a
team replica pushes), and a merge keeps the note either customer had."""

from __future__ import annotations

import json

from replydesk.config import Config
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.sla import SlaEngine
from replydesk.storage import contacts, ingest
from replydesk.storage.db import open_database
from support import FIXED_NOW


def _msg(n: int, native: str, name: str) -> IncomingMessage:
    return IncomingMessage(
        native_id=f"m{n}", conversation_native_id=f"t{n}", platform="mastodon", kind="mention",
        contact=Contact(native_id=native, name=name, handle=f"@{native}"), text=f"post {n}",
        created_at=FIXED_NOW - 600 + n, direction="in")


def _db(tmp_path):
    db = open_database(tmp_path, sla=SlaEngine(Config().sla), clock=lambda: FIXED_NOW)
    ingest.ingest(db, "masto", [FetchResult(messages=[_msg(1, "u1", "Grace"), _msg(2, "u2", "Linus")], cursor={})])
    return db


def test_merging_keeps_the_note_only_the_other_customer_had(tmp_path) -> None:
    db = _db(tmp_path)
    contacts.set_note(db, "masto:u2", "asked for a refund")
    person = contacts.merge(db, "masto:u1", "masto:u2", actor="ana")
    card = contacts.card(db, "masto:u2")
    assert card is not None and card.person == person
    assert card.note == "asked for a refund"


def test_each_card_edit_is_one_event_saying_what_it_left(tmp_path) -> None:
    db = _db(tmp_path)
    contacts.set_vip(db, ["masto:u1"], True, actor="ana")
    contacts.set_name(db, "masto:u1", "Grace H.", actor="ana")
    contacts.merge(db, "masto:u1", "masto:u2", actor="ana")
    rows = [(r[0], r[1], json.loads(r[2])) for r in db.conn.execute(
        "SELECT conversation_id, actor, data FROM events WHERE kind='card' ORDER BY seq")]
    assert [(actor, data["what"]) for _, actor, data in rows] == [("ana", "vip"), ("ana", "name"), ("ana", "merge")]
    assert rows[0][0] == "masto:t1"  # logged on the customer's conversation
    assert rows[2][2]["edits"] == [{"subject": "masto:u1", "field": "person", "value": "masto:u1"},
                                   {"subject": "masto:u2", "field": "person", "value": "masto:u1"}]


def test_edits_from_another_replica_are_checked(tmp_path) -> None:
    raw = [{"subject": "a", "field": "vip", "value": "yes"}, {"subject": "a", "field": "sql", "value": "x"},
           {"subject": "", "field": "note", "value": "x"}, {"subject": "a", "field": "note", "value": 3},
           "junk", {"subject": "a", "field": "note", "value": "n" * 20_000}, {"subject": "b", "field": "vip", "value": True}]
    edits = contacts.edits_from(raw)
    assert [(e.subject, e.field) for e in edits] == [("a", "note"), ("b", "vip")]
    assert len(edits[0].value) == contacts.MAX_CARD_TEXT
