"""The customer card's writes in a solo workspace: each edit is one ``card`` event (the change a
team replica pushes), and a merge keeps the note either customer had."""

from __future__ import annotations

import dataclasses
import json

import pytest

from replydesk.config import Config
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.sla import SlaEngine
from replydesk.storage import contacts, ingest
from replydesk.storage.actions import _event
from replydesk.storage.db import open_database
from support import FIXED_NOW


def _msg(n: int, native: str, name: str) -> IncomingMessage:
    return IncomingMessage(
        native_id=f"m{n}", conversation_native_id=f"t{n}", platform="mastodon", kind="mention",
        contact=Contact(native_id=native, name=name, handle=f"@{native}"), text=f"post {n}",
        created_at=FIXED_NOW - 600 + n, direction="in")


_OPENED: list = []


@pytest.fixture(autouse=True)
def _close_opened():  # noqa: ANN202
    """Every connection ``_db`` opened is closed after its test (closing one twice is harmless)."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def _db(tmp_path):
    db = open_database(tmp_path, sla=SlaEngine(Config().sla), clock=lambda: FIXED_NOW)
    _OPENED.append(db)
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
                                   {"subject": "masto:u2", "field": "person", "value": "masto:u1"},
                                   # ana's VIP choice for Grace holds for the merged customer
                                   {"subject": "masto:u2", "field": "vip", "value": True}]


def test_edits_from_another_replica_are_checked(tmp_path) -> None:
    raw = [{"subject": "a", "field": "vip", "value": "yes"}, {"subject": "a", "field": "sql", "value": "x"},
           {"subject": "", "field": "note", "value": "x"}, {"subject": "a", "field": "note", "value": 3},
           "junk", {"subject": "a", "field": "note", "value": "n" * 20_000}, {"subject": "b", "field": "vip", "value": True}]
    edits = contacts.edits_from(raw)
    assert [(e.subject, e.field) for e in edits] == [("a", "note"), ("b", "vip")]
    assert len(edits[0].value) == contacts.MAX_CARD_TEXT


def _vip_msg(n: int, native: str, name: str, vip: bool) -> IncomingMessage:
    return dataclasses.replace(_msg(n, native, name),
                               contact=Contact(native_id=native, name=name, handle=f"@{native}", vip=vip))


def _vip(db, contact_id: str) -> bool:
    card = contacts.card(db, contact_id)
    assert card is not None
    return card.vip


def test_an_agents_vip_choice_wins_over_the_platforms_flag_from_then_on(tmp_path) -> None:
    db = _db(tmp_path)
    ingest.ingest(db, "masto", [FetchResult(messages=[_vip_msg(3, "u1", "Grace", True),
                                                      _vip_msg(4, "u2", "Linus", True)], cursor={})])
    assert _vip(db, "masto:u1") and _vip(db, "masto:u2")  # the platform says VIP
    contacts.set_vip(db, ["masto:u1"], False, actor="ana")
    # the customers write again, the platform still marking both VIP
    ingest.ingest(db, "masto", [FetchResult(messages=[_vip_msg(5, "u1", "Grace", True),
                                                      _vip_msg(6, "u2", "Linus", True)], cursor={})])
    assert not _vip(db, "masto:u1")  # ana's "not VIP" sticks
    assert _vip(db, "masto:u2")  # nobody chose for Linus: the platform's flag
    db.close()
    db = _db(tmp_path)  # and after a restart
    assert not _vip(db, "masto:u1")

    # a choice of VIP sticks as well, over a platform that says nothing of it
    contacts.set_vip(db, ["masto:u1"], True, actor="ana")
    ingest.ingest(db, "masto", [FetchResult(messages=[_vip_msg(7, "u1", "Grace", False)], cursor={})])
    assert _vip(db, "masto:u1")


def test_a_merge_keeps_the_agents_vip_choice(tmp_path) -> None:
    db = _db(tmp_path)
    ingest.ingest(db, "masto", [FetchResult(messages=[_vip_msg(3, "u2", "Linus", True)], cursor={})])
    contacts.set_vip(db, ["masto:u1"], False, actor="ana")  # Grace: not VIP, by hand
    contacts.merge(db, "masto:u1", "masto:u2", actor="ana")  # Linus (VIP by the platform) is Grace
    assert not _vip(db, "masto:u2")
    ingest.ingest(db, "masto", [FetchResult(messages=[_vip_msg(4, "u2", "Linus", True)], cursor={})])
    assert not _vip(db, "masto:u1") and not _vip(db, "masto:u2")


def test_the_upgrade_keeps_a_vip_choice_made_before_it(tmp_path, monkeypatch) -> None:
    """A workspace from before choices were kept apart (schema 19): its card events say who chose."""
    from replydesk.storage import db as db_module
    from replydesk.storage import schema

    with monkeypatch.context() as m:
        m.setattr(db_module, "MIGRATIONS", schema.MIGRATIONS[:19])
        m.setattr(db_module, "SCHEMA_VERSION", 19)
        db = open_database(tmp_path, sla=SlaEngine(Config().sla), clock=lambda: FIXED_NOW)
        # today's ingest writes the columns the upgrade adds: there while the old data is written
        db.conn.execute("ALTER TABLE contacts ADD COLUMN platform_vip INTEGER NOT NULL DEFAULT 0")
        db.conn.execute("ALTER TABLE contacts ADD COLUMN vip_set INTEGER")
        ingest.ingest(db, "masto", [FetchResult(messages=[_msg(1, "u1", "Grace"), _msg(2, "u2", "Linus")],
                                                cursor={})])
        db.conn.execute("ALTER TABLE contacts DROP COLUMN platform_vip")
        db.conn.execute("ALTER TABLE contacts DROP COLUMN vip_set")
        with db.transaction():  # what an old build's card screen left: VIP on, then off, for Grace
            for value in (True, False):
                db.conn.execute("UPDATE contacts SET vip=? WHERE id='masto:u1'", (int(value),))
                _event(db, "masto:t1", contacts.CARD_EVENT, "ana",
                       {"what": "vip", "edits": [{"subject": "masto:u1", "field": "vip", "value": value}]})
        db.close()
    db = _db(tmp_path)  # upgraded, then the platform's VIP flag comes with new messages
    ingest.ingest(db, "masto", [FetchResult(messages=[_vip_msg(3, "u1", "Grace", True),
                                                      _vip_msg(4, "u2", "Linus", True)], cursor={})])
    assert not _vip(db, "masto:u1")
    assert _vip(db, "masto:u2")
