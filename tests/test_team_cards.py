"""The customer card through the team: a note, the team's name, VIP, merging and splitting contacts.

An agent's card edit is written in their cache first (as in solo mode), pushed as one ``card``
command, and replayed into every other cache; two agents editing the same field without having
seen each other's change: the first to reach the team wins, the other is told and sees the team's
version. Real PostgreSQL, real joined workspaces (the demo platform's customers, fetched by an
engine replica), pushes and pulls as ``replydesk sync --once`` does them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from replydesk.storage import contacts, team_db, team_local
from replydesk.storage.db import Database, open_database
from support import card_of, run_cli
from team_support import Team, sync

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]




def loners(db: Database, n: int) -> list[str]:
    """``n`` contacts that are each a customer of their own (no other contact shares a name or handle)."""
    out = []
    for (cid,) in db.conn.execute("SELECT DISTINCT contact_id FROM conversations ORDER BY contact_id"):
        card = contacts.card(db, cid)
        if card is not None and len(card.contacts) == 1:
            out.append(cid)
        if len(out) == n:
            return out
    pytest.fail(f"the demo workspace has fewer than {n} single-contact customers")



def edit(data_dir: Path, fn: Any) -> Any:
    db = open_database(data_dir)
    try:
        return fn(db)
    finally:
        db.close()


def team_cards(team: Team) -> dict[tuple[str, str], tuple[Any, str]]:
    with team.admin() as conn:
        return {(r[0], r[1]): (r[2], r[3]) for r in conn.execute("SELECT subject, field, value, agent FROM replydesk.cards")}


def test_a_card_edit_by_one_agent_shows_in_the_other_agents_cache(team: Team, joined: dict[str, Path]) -> None:
    (who,) = edit(joined["ana"], lambda db: loners(db, 1))
    before = card_of(joined["ben"], who)
    assert (before.note, before.name, before.vip) == ("", "", False)

    def card_edits(db: Database) -> int:
        contacts.set_note(db, who, "Prefers email; ships to Lyon", actor="ana")
        contacts.set_name(db, who, "Mme Dupont", actor="ana")
        contacts.set_vip(db, [who], True, actor="ana")
        return team_local.pending_count(db)

    assert edit(joined["ana"], card_edits) == 3
    assert sync(joined["ana"]).pushed == 3
    cards = team_cards(team)
    assert cards[(who, "note")] == ("Prefers email; ships to Lyon", "ana")  # the author is the session's agent
    assert cards[(who, "vip")] == (True, "ana")

    sync(joined["ben"])
    after = card_of(joined["ben"], who)
    assert (after.note, after.name, after.vip) == ("Prefers email; ships to Lyon", "Mme Dupont", True)
    # ben's cache logged the edit on the customer's conversation, as the team's (never pushed back)
    db = open_database(joined["ben"])
    try:
        assert [r[0] for r in db.conn.execute("SELECT actor FROM events WHERE kind='card' ORDER BY seq")] == ["ana"] * 3
        assert team_local.pending_count(db) == 0
    finally:
        db.close()
    assert sync(joined["ben"]).pushed == 0


def test_merging_and_splitting_contacts_reaches_every_cache(team: Team, joined: dict[str, Path]) -> None:
    one, two = edit(joined["ana"], lambda db: loners(db, 2))
    edit(joined["ana"], lambda db: contacts.set_note(db, two, "asked for a refund", actor="ana"))
    person = edit(joined["ana"], lambda db: contacts.merge(db, one, two, actor="ana"))
    sync(joined["ana"])
    sync(joined["ben"])
    merged = card_of(joined["ben"], two)
    assert merged.person == person == one
    assert {c.id for c in merged.contacts} == {one, two}
    assert merged.note == "asked for a refund"  # the note moved to the merged customer with the contacts

    edit(joined["ben"], lambda db: contacts.split(db, two, actor="ben"))
    sync(joined["ben"])
    sync(joined["ana"])
    assert {c.id for c in card_of(joined["ana"], one).contacts} == {one}
    assert {c.id for c in card_of(joined["ana"], two).contacts} == {two}


def test_two_agents_editing_one_note_at_once_the_first_wins_and_the_other_is_told(
        team: Team, joined: dict[str, Path]) -> None:
    (who,) = edit(joined["ana"], lambda db: loners(db, 1))
    # Both write before either hears of the other's edit.
    edit(joined["ana"], lambda db: contacts.set_note(db, who, "VIP since 2019", actor="ana"))
    edit(joined["ben"], lambda db: contacts.set_note(db, who, "Call before shipping", actor="ben"))
    assert sync(joined["ana"]).refused == []
    report = sync(joined["ben"])
    assert len(report.refused) == 1
    assert "ana changed the customer's note first" in report.refused[0]
    assert "Call before shipping" in report.refused[0]  # what ben wrote is quoted, not lost
    assert card_of(joined["ben"], who).note == "VIP since 2019"  # ben's card shows the team's version
    db = open_database(joined["ben"])
    try:  # the console shows the notice once
        assert db.conn.execute("SELECT count(*) FROM notices WHERE text LIKE '%note not saved%'").fetchone()[0] == 1
    finally:
        db.close()
    sync(joined["ana"])
    assert card_of(joined["ana"], who).note == "VIP since 2019"
    assert team_cards(team)[(who, "note")] == ("VIP since 2019", "ana")

    # Having seen ana's note, ben's next edit is the last write and wins.
    edit(joined["ben"], lambda db: contacts.set_note(db, who, "VIP since 2019; call first", actor="ben"))
    assert sync(joined["ben"]).refused == []
    sync(joined["ana"])
    assert card_of(joined["ana"], who).note == "VIP since 2019; call first"


def test_a_merge_refused_for_a_concurrent_one_is_undone_with_the_teams_grouping(
        team: Team, joined: dict[str, Path]) -> None:
    a, b, c = edit(joined["ana"], lambda db: loners(db, 3))
    edit(joined["ana"], lambda db: contacts.merge(db, a, b, actor="ana"))
    edit(joined["ben"], lambda db: contacts.merge(db, c, b, actor="ben"))  # b, at the same time
    assert {x.id for x in card_of(joined["ben"], c).contacts} == {b, c}
    sync(joined["ana"])
    report = sync(joined["ben"])
    assert len(report.refused) == 1 and "ana changed the customer's grouping first" in report.refused[0]
    # ben's cache takes the team's grouping: b is a's, and c (never grouped in the team) alone again
    assert {x.id for x in card_of(joined["ben"], b).contacts} == {a, b}
    assert {x.id for x in card_of(joined["ben"], c).contacts} == {c}


def test_an_offline_card_edit_goes_out_when_back(team: Team, joined: dict[str, Path]) -> None:
    one, two = edit(joined["ben"], lambda db: loners(db, 2))
    # ben offline: edits wait in the cache, in order
    edit(joined["ben"], lambda db: contacts.set_vip(db, [one], True, actor="ben"))
    edit(joined["ben"], lambda db: contacts.merge(db, one, two, actor="ben"))
    edit(joined["ben"], lambda db: contacts.set_name(db, one, "The Martins", actor="ben"))
    assert edit(joined["ben"], team_local.pending_count) == 3
    assert team_cards(team) == {}
    # meanwhile ana changes another customer's card: no conflict with ben's
    (other,) = [x for x in edit(joined["ana"], lambda db: loners(db, 3)) if x not in (one, two)][:1]
    edit(joined["ana"], lambda db: contacts.set_note(db, other, "left a 5-star review", actor="ana"))
    sync(joined["ana"])

    report = sync(joined["ben"])  # back online
    assert report.pushed == 3 and report.refused == []
    with team.admin() as conn:
        whats = [r[0] for r in conn.execute("SELECT data->>'what' FROM replydesk.events WHERE kind='card' ORDER BY seq")]
    assert whats == ["note", "vip", "merge", "name"]
    assert card_of(joined["ben"], other).note == "left a 5-star review"
    sync(joined["ana"])
    card = card_of(joined["ana"], two)
    assert (card.name, card.vip, {x.id for x in card.contacts}) == ("The Martins", True, {one, two})



def cli(data_dir: Path, *argv: str) -> tuple[int, str, str]:
    """``replydesk`` in a joined workspace, as an agent types it (no engine runs: it pushes itself)."""
    return run_cli("--data-dir", str(data_dir), *argv)


def test_the_contact_command_goes_through_the_team_like_the_card(team: Team, joined: dict[str, Path]) -> None:
    one, two = edit(joined["ana"], lambda db: loners(db, 2))
    code, _, err = cli(joined["ana"], "contact", "note", one, "Prefers email")
    assert (code, err) == (0, "")
    assert edit(joined["ana"], team_local.pending_count) == 0  # pushed by the command itself
    assert team_cards(team)[(one, "note")] == ("Prefers email", "ana")
    assert cli(joined["ana"], "contact", "vip", one, "--on")[0] == 0
    assert cli(joined["ana"], "contact", "merge", one, two)[0] == 0
    assert team_cards(team)[(two, "person")] == (one, "ana")

    sync(joined["ben"])
    code, out, _ = cli(joined["ben"], "contact", "show", two, "--json")
    card = json.loads(out)
    assert code == 0 and (card["note"], card["vip"]) == ("Prefers email", True)
    assert {c["id"] for c in card["contacts"]} == {one, two}

    # ben edits the note without having seen ana's newer one: refused, said so, exit 1
    assert cli(joined["ana"], "contact", "note", one, "Prefers email; ships to Lyon")[0] == 0
    code, _, err = cli(joined["ben"], "contact", "note", two, "Call first")
    assert code == 1 and "ana changed the customer's note first" in err and "Call first" in err
    assert card_of(joined["ben"], one).note == "Prefers email; ships to Lyon"


def test_undoing_a_refused_card_edit_keeps_the_authors_later_edit_of_the_same_field(
        team: Team, joined: dict[str, Path]) -> None:
    a, b, c = edit(joined["ana"], lambda db: loners(db, 3))
    edit(joined["ana"], lambda db: contacts.merge(db, c, b, actor="ana"))
    sync(joined["ana"])
    # ben, not having seen ana's merge: a note on b, a merge of b into a (which carries b's note to a's
    # customer: refused, ana grouped b first), then a note of his own on a (nobody else's: accepted)
    edit(joined["ben"], lambda db: contacts.set_note(db, b, "asked for a refund", actor="ben"))
    edit(joined["ben"], lambda db: contacts.merge(db, a, b, actor="ben"))
    edit(joined["ben"], lambda db: contacts.set_note(db, a, "ships to Lyon", actor="ben"))
    report = sync(joined["ben"])
    assert len(report.refused) == 1 and "grouping first" in report.refused[0]
    assert team_cards(team)[(a, "note")] == ("ships to Lyon", "ben")
    assert card_of(joined["ben"], a).note == "ships to Lyon"  # the merge's undo left ben's later note alone
    sync(joined["ana"])
    assert card_of(joined["ana"], a).note == "ships to Lyon"


def customers(data_dir: Path) -> list[tuple[str, str, str, str, str, bool]]:
    """(contact, conversation native id, platform, kind, name, VIP) of each customer's first conversation."""
    db = open_database(data_dir)
    try:
        return [(*r[:5], bool(r[5])) for r in db.conn.execute(
            "SELECT p.id, min(c.native_id), c.platform, c.kind, p.name, p.vip FROM contacts p JOIN conversations c "
            "ON c.contact_id = p.id GROUP BY p.id ORDER BY p.id")]
    finally:
        db.close()


def customer_writes_again(engine_dir: Path, vips: list[tuple[str, ...]], n: int) -> None:
    """The engine fetches a new message of each of these customers, the platform still marking them
    VIP, and pushes it to the team (what its sync pass does with a fetch)."""
    from replydesk.model import Contact, FetchResult, IncomingMessage
    from replydesk.storage import ingest

    db = open_database(engine_dir)
    try:
        at = db.conn.execute("SELECT max(created_at) FROM messages").fetchone()[0] + 60
        ingest.ingest(db, "demo", [FetchResult(messages=[IncomingMessage(
            native_id=f"again-{n}-{i}", conversation_native_id=conv, platform=platform, kind=kind,
            contact=Contact(native_id=contact.removeprefix("demo:"), name=name, vip=True), text="still there?",
            created_at=at + i, direction="in") for i, (contact, conv, platform, kind, name) in enumerate(vips)],
            cursor={})])
    finally:
        db.close()
    sync(engine_dir)


def test_an_agents_vip_off_sticks_when_the_platform_still_marks_the_customer_vip(
        team: Team, joined: dict[str, Path]) -> None:
    every = customers(joined["engine-a"])
    vip = next(c for c in every if c[5])  # one the demo platform marks VIP
    # and another customer (a card groups contacts by name), whom the platform will mark VIP next
    other = next(c for c in every if not c[5] and c[4] != vip[4])
    vips = [vip[:5], other[:5]]
    chosen, untouched = vip[0], other[0]
    assert not card_of(joined["ben"], untouched).vip
    assert cli(joined["ana"], "contact", "vip", chosen, "--off")[0] == 0  # pushed by the command itself
    assert team_cards(team)[(chosen, "vip")] == (False, "ana")
    sync(joined["engine-a"])
    sync(joined["ben"])

    customer_writes_again(joined["engine-a"], vips, 1)
    for name in ("ana", "ben"):
        assert sync(joined[name]).messages >= 2
    for name in ("engine-a", "ana", "ben"):  # ana's choice wins everywhere; the platform's flag elsewhere
        assert not card_of(joined[name], chosen).vip, name
        assert card_of(joined[name], untouched).vip, name

    # ben merges the two customers: the choice by hand holds for the merged one, in every cache, and
    # against the platform's flag on the next messages of either
    edit(joined["ben"], lambda db: contacts.merge(db, chosen, untouched, actor="ben"))
    assert sync(joined["ben"]).refused == []
    customer_writes_again(joined["engine-a"], vips, 2)
    for name in ("ana", "ben"):
        sync(joined[name])
    for name in ("engine-a", "ana", "ben"):
        card = card_of(joined[name], untouched)
        assert {c.id for c in card.contacts} >= {chosen, untouched} and not card.vip, name
    assert team_cards(team)[(untouched, "vip")] == (False, "ben")


def test_the_team_refuses_a_card_value_no_replydesk_would_send(team: Team, joined: dict[str, Path]) -> None:
    """An agent's credential is not its client: a VIP flag that is not true or false, a note longer
    than any cache keeps, an id longer than any subject, are refused by the server (invalid, told
    why), and nothing of them reaches the cards or the log; a well-formed edit still goes."""
    (who,) = edit(joined["ana"], lambda db: loners(db, 1))
    person = card_of(joined["ana"], who).person
    url, _ = team_db.TeamUrl.parse(team.url("ana"))
    bad = [({"subject": who, "field": "vip", "value": "yes"}, "vip is true, false or null"),
           ({"subject": who, "field": "vip", "value": 1}, "vip is true, false or null"),
           ({"subject": person, "field": "note", "value": {"text": "hi"}}, "note is text or null"),
           ({"subject": person, "field": "note", "value": "x" * (contacts.MAX_CARD_TEXT + 1)},
            f"at most {contacts.MAX_CARD_TEXT} characters"),
           ({"subject": "p" * (contacts.MAX_CARD_SUBJECT + 1), "field": "name", "value": "Ana"},
            f"subject {contacts.MAX_CARD_SUBJECT}")]
    with team_db.connect(url, team.passwords["ana"]) as conn:
        seq = team_db.head(conn)
        for i, (e, why) in enumerate(bad):
            outcome = team_db.submit(conn, {"id": f"forged:{i}", "agent": "ana", "kind": "card", "edits": [e]})
            assert (outcome["ok"], outcome["reason"]) == (False, "invalid"), e
            assert why in outcome["detail"], outcome
        assert team_db.pull(conn, seq) == [] and team_cards(team) == {}
        fine = team_db.submit(conn, {"id": "fine", "agent": "ana", "kind": "card",
                                     "edits": [{"subject": who, "field": "vip", "value": True},
                                               {"subject": person, "field": "note",
                                                "value": "x" * contacts.MAX_CARD_TEXT}]})
    assert fine["ok"], fine
    assert {k: v[0] for k, v in team_cards(team).items()} == {(who, "vip"): True,
                                                             (person, "note"): "x" * contacts.MAX_CARD_TEXT}
