"""Customers across platforms: who is the same person, the customer card, merging and splitting.

Platforms give us no shared identity. Until an agent says otherwise, "the same customer" is a guess:
the same contact, or a contact elsewhere with the same display name or handle (case-insensitive).
Merging two contacts records them as one person in ``contact_links``; splitting takes a contact
out again. A contact the agent has merged or split is grouped exactly as recorded, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from replydesk.storage.actions import ActionError
from replydesk.storage.db import Database


@dataclass(frozen=True)
class ContactInfo:
    id: str
    account: str
    platform: str
    name: str
    handle: str
    vip: bool
    linked: bool  # grouped by an agent (merge/split), not by guessing


@dataclass(frozen=True)
class Card:
    """The customer card: every contact of the person, their VIP flag and the agent's note."""

    person: str
    contacts: list[ContactInfo]
    note: str
    name: str = ""  # what the team calls the customer ("" : the platforms' names)

    @property
    def vip(self) -> bool:
        return any(c.vip for c in self.contacts)


_COLS = "c.id, c.account, c.platform, c.name, c.handle, c.vip, l.person IS NOT NULL"


def _info(r: tuple) -> ContactInfo:
    return ContactInfo(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]))


def _person(db: Database, contact_id: str) -> str | None:
    row = db.conn.execute("SELECT person FROM contact_links WHERE contact_id=?", (contact_id,)).fetchone()
    return row[0] if row else None


def same_customer(db: Database, contact_id: str) -> list[str]:
    """Ids of every contact that is ``contact_id``'s customer (itself first)."""
    person = _person(db, contact_id)
    if person is not None:
        return [contact_id, *(r[0] for r in db.conn.execute(
            "SELECT contact_id FROM contact_links WHERE person=? AND contact_id != ? ORDER BY contact_id",
            (person, contact_id)))]
    me = db.conn.execute("SELECT name, handle FROM contacts WHERE id=?", (contact_id,)).fetchone()
    if me is None:
        return []
    # A UNION of index lookups (lower(name), lower(handle)); an OR would scan contacts. Contacts an
    # agent grouped are left out of the guess: they belong where the agent put them.
    rows = db.conn.execute(
        "SELECT id FROM contacts WHERE ? != '' AND lower(name) = lower(?) "
        "UNION SELECT id FROM contacts WHERE ? != '' AND lower(handle) = lower(?)",
        (me[0], me[0], me[1], me[1]),
    )
    guessed = [r[0] for r in rows if r[0] != contact_id]
    linked = {r[0] for r in db.conn.execute(
        f"SELECT contact_id FROM contact_links WHERE contact_id IN ({','.join('?' * len(guessed))})", guessed)
    } if guessed else set()
    return [contact_id, *sorted(g for g in guessed if g not in linked)]


def card(db: Database, contact_id: str) -> Card | None:
    ids = same_customer(db, contact_id)
    if not ids:
        return None
    marks = ",".join("?" * len(ids))
    rows = {r[0]: _info(tuple(r)) for r in db.conn.execute(
        f"SELECT {_COLS} FROM contacts c LEFT JOIN contact_links l ON l.contact_id = c.id WHERE c.id IN ({marks})",
        ids)}
    person = _person(db, contact_id) or contact_id
    row = db.conn.execute("SELECT note, name FROM people WHERE id=?", (person,)).fetchone()
    return Card(person, [rows[i] for i in ids if i in rows], row[0] if row else "", row[1] if row else "")


def find(db: Database, text: str, limit: int = 20) -> list[ContactInfo]:
    """Contacts whose name or handle contains ``text`` (case-insensitive), for the merge picker."""
    needle = "%" + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return [_info(tuple(r)) for r in db.conn.execute(
        f"SELECT {_COLS} FROM contacts c LEFT JOIN contact_links l ON l.contact_id = c.id "
        "WHERE lower(c.name) LIKE ? ESCAPE '\\' OR lower(c.handle) LIKE ? ESCAPE '\\' ORDER BY c.name LIMIT ?",
        (needle, needle, limit))]


def _require(db: Database, contact_ids: Sequence[str]) -> None:
    for cid in contact_ids:
        if not db.conn.execute("SELECT 1 FROM contacts WHERE id=?", (cid,)).fetchone():
            raise ActionError(f"no contact {cid!r}")


def merge(db: Database, contact_id: str, other_id: str, actor: str = "me") -> str:
    """Record ``other_id``'s customer as the same person as ``contact_id``'s; returns the person.
    Both whole groups join (as they are shown now, guesses included), and the notes are kept."""
    with db.transaction():
        _require(db, [contact_id, other_id])
        mine, theirs = same_customer(db, contact_id), same_customer(db, other_id)
        person = _person(db, contact_id) or contact_id
        notes = [n for n in (_note(db, _person(db, contact_id) or contact_id),
                             _note(db, _person(db, other_id) or other_id)) if n]
        db.conn.executemany(
            "INSERT INTO contact_links(contact_id, person) VALUES (?,?) "
            "ON CONFLICT(contact_id) DO UPDATE SET person=excluded.person",
            [(cid, person) for cid in dict.fromkeys([*mine, *theirs])],
        )
        if len(notes) > 1 and notes[0] != notes[1]:
            set_note(db, person, "\n".join(notes))
        _log(db, [*mine, *theirs], "contact_merge", actor, {"person": person, "merged": other_id})
    return person


def split(db: Database, contact_id: str, actor: str = "me") -> None:
    """Take ``contact_id`` out of its customer: from now on it is a customer of its own."""
    with db.transaction():
        _require(db, [contact_id])
        group = same_customer(db, contact_id)
        rest = [cid for cid in group if cid != contact_id]
        old = _person(db, contact_id) or contact_id
        if rest:
            # The others stay one customer as recorded (a guessed member becomes a recorded one, so
            # the split contact is not guessed back in by its name); the note stays with them.
            person = old if old != contact_id else rest[0]
            db.conn.executemany(
                "INSERT INTO contact_links(contact_id, person) VALUES (?,?) "
                "ON CONFLICT(contact_id) DO UPDATE SET person=excluded.person", [(cid, person) for cid in rest])
            if person != old and _note(db, old):
                set_note(db, person, _note(db, old))
                set_note(db, old, "")
        db.conn.execute(
            "INSERT INTO contact_links(contact_id, person) VALUES (?,?) "
            "ON CONFLICT(contact_id) DO UPDATE SET person=excluded.person", (contact_id, contact_id))
        _log(db, group, "contact_split", actor, {"split": contact_id})


def set_vip(db: Database, contact_ids: Sequence[str], vip: bool) -> None:
    with db.transaction():
        _require(db, contact_ids)
        db.conn.executemany("UPDATE contacts SET vip=? WHERE id=?", [(int(vip), cid) for cid in contact_ids])


def _note(db: Database, person: str) -> str:
    row = db.conn.execute("SELECT note FROM people WHERE id=?", (person,)).fetchone()
    return row[0] if row else ""


def set_note(db: Database, person: str, note: str) -> None:
    with db.transaction():
        db.conn.execute(
            "INSERT INTO people(id, note, updated_at) VALUES (?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET note=excluded.note, updated_at=excluded.updated_at",
            (person, note, db.now()))


def set_name(db: Database, person: str, name: str) -> None:
    """The team's name for the customer (the platforms' names are kept as they send them)."""
    with db.transaction():
        db.conn.execute(
            "INSERT INTO people(id, name, updated_at) VALUES (?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET name=excluded.name, updated_at=excluded.updated_at",
            (person, name, db.now()))


def _log(db: Database, contact_ids: Sequence[str], kind: str, actor: str, data: dict) -> None:
    """One event per conversation of the contacts: the log says who merged or split whom."""
    from replydesk.storage.actions import _event

    if not contact_ids:
        return
    marks = ",".join("?" * len(contact_ids))
    for (conv_id,) in db.conn.execute(
            f"SELECT id FROM conversations WHERE contact_id IN ({marks})", list(contact_ids)).fetchall():
        _event(db, conv_id, kind, actor, data)


def contact_of(db: Database, conv_id: str) -> str | None:
    row = db.conn.execute("SELECT contact_id FROM conversations WHERE id=?", (conv_id,)).fetchone()
    return row[0] if row else None
