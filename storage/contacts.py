"""Customers across platforms: who is the same person, the customer card, merging and splitting.

Platforms give us no shared identity. Until an agent says otherwise, "the same customer" is a guess:
the same contact, or a contact elsewhere with the same display name or handle (case-insensitive).
Merging two contacts records them as one person in ``contact_links``; splitting takes a contact
out again. A contact the agent has merged or split is grouped exactly as recorded, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def contact(db: Database, contact_id: str) -> ContactInfo | None:
    row = db.conn.execute(f"SELECT {_COLS} FROM contacts c LEFT JOIN contact_links l ON l.contact_id = c.id "
                          "WHERE c.id = ?", (contact_id,)).fetchone()
    return _info(tuple(row)) if row else None


def find(db: Database, text: str, limit: int = 20) -> list[ContactInfo]:
    """Contacts whose name or handle contains ``text`` (case-insensitive), for the merge picker."""
    needle = "%" + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return [_info(tuple(r)) for r in db.conn.execute(
        f"SELECT {_COLS} FROM contacts c LEFT JOIN contact_links l ON l.contact_id = c.id "
        "WHERE lower(c.name) LIKE ? ESCAPE '\\' OR lower(c.handle) LIKE ? ESCAPE '\\' ORDER BY c.name LIMIT ?",
        (needle, needle, limit))]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def named(db: Database, ref: str, limit: int = 50) -> list[str]:
    """The contacts a person means by ``ref`` on the command line, by the first rule that finds any:
    a contact id, a conversation id (its customer), a handle (the leading ``@`` optional), a display
    name (both case-insensitive), then a unique end of a contact or conversation id (what a person
    copies from a list, as ``replydesk show`` takes). Several contacts can match (one name on two
    platforms, an end of several ids; at most ``limit``): ``customers`` says whether they are one
    customer."""
    ref = ref.strip()
    if not ref:
        return []
    if db.conn.execute("SELECT 1 FROM contacts WHERE id=?", (ref,)).fetchone():
        return [ref]
    row = db.conn.execute("SELECT contact_id FROM conversations WHERE id=? AND contact_id IS NOT NULL",
                          (ref,)).fetchone()
    if row:
        return [row[0]]
    bare = ref.removeprefix("@")
    for sql, params in (
            ("SELECT id FROM contacts WHERE lower(handle) IN (lower(?), lower(?)) ORDER BY id", (bare, "@" + bare)),
            ("SELECT id FROM contacts WHERE lower(name) = lower(?) ORDER BY id", (ref,))):
        found = [r[0] for r in db.conn.execute(sql, params)]
        if found:
            return found
    for sql in ("SELECT id FROM contacts WHERE id LIKE '%' || ? ESCAPE '\\' ORDER BY id LIMIT ?",
                "SELECT DISTINCT contact_id FROM conversations WHERE id LIKE '%' || ? ESCAPE '\\' "
                "AND contact_id IS NOT NULL ORDER BY contact_id LIMIT ?"):
        found = [r[0] for r in db.conn.execute(sql, (_like(ref), limit))]
        if found:
            return found
    return []


def customers(db: Database, contact_ids: Sequence[str]) -> list[list[str]]:
    """``contact_ids`` grouped by the customer each belongs to (as its card groups it), in order."""
    groups: list[list[str]] = []
    members: list[set[str]] = []  # each group's customer, read once (not once per contact after it)
    for cid in dict.fromkeys(contact_ids):
        for group, known in zip(groups, members, strict=True):
            if cid in known:
                group.append(cid)
                break
        else:
            groups.append([cid])
            members.append(set(same_customer(db, cid)))
    return groups


def _require(db: Database, contact_ids: Sequence[str]) -> None:
    from replydesk.storage.actions import ActionError  # here: reading a card loads no writer module

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
        group = list(dict.fromkeys([*mine, *theirs]))
        edits = [Edit(cid, "person", person) for cid in group]
        kept = "\n".join(dict.fromkeys(notes))  # both notes, or the one either customer had
        if kept != _note(db, person):
            edits.append(Edit(person, "note", kept))
        edits += _chosen_vip(db, group)
        apply_edits(db, edits)
        _log(db, [*mine, *theirs], "contact_merge", actor, {"person": person, "merged": other_id})
        _card_event(db, "merge", edits, actor)
    return person


def split(db: Database, contact_id: str, actor: str = "me") -> None:
    """Take ``contact_id`` out of its customer: from now on it is a customer of its own."""
    with db.transaction():
        _require(db, [contact_id])
        group = same_customer(db, contact_id)
        rest = [cid for cid in group if cid != contact_id]
        old = _person(db, contact_id) or contact_id
        edits: list[Edit] = []
        if rest:
            # The others stay one customer as recorded (a guessed member becomes a recorded one, so
            # the split contact is not guessed back in by its name); the note stays with them.
            person = old if old != contact_id else rest[0]
            edits += [Edit(cid, "person", person) for cid in rest]
            if person != old and _note(db, old):
                edits += [Edit(person, "note", _note(db, old)), Edit(old, "note", "")]
        edits.append(Edit(contact_id, "person", contact_id))
        apply_edits(db, edits)
        _log(db, group, "contact_split", actor, {"split": contact_id})
        _card_event(db, "split", edits, actor)


def _chosen_vip(db: Database, group: Sequence[str]) -> list[Edit]:
    """A merge keeps a VIP flag chosen by hand: the merged customer is VIP if anyone chose VIP for a
    part of it, not VIP if the choices were "not VIP", whatever the platforms say of the other part
    (no choice by hand: the platforms' flags, as before). The edits that make every contact say so."""
    marks = ",".join("?" * len(group))
    chosen = dict(db.conn.execute(f"SELECT id, vip_set FROM contacts WHERE id IN ({marks})", list(group)).fetchall())
    picks = [v for v in chosen.values() if v is not None]
    if not picks:
        return []
    vip = any(picks)
    return [Edit(cid, "vip", vip) for cid in group if cid in chosen and chosen[cid] != int(vip)]


def set_vip(db: Database, contact_ids: Sequence[str], vip: bool, actor: str = "me") -> None:
    """An agent's (or owner's) choice: it wins over the platform's VIP flag from now on (ingest
    keeps it), in every cache of a team (it travels as a card edit)."""
    with db.transaction():
        _require(db, contact_ids)
        edits = [Edit(cid, "vip", bool(vip)) for cid in contact_ids]
        apply_edits(db, edits)
        _card_event(db, "vip", edits, actor)


def _note(db: Database, person: str) -> str:
    row = db.conn.execute("SELECT note FROM people WHERE id=?", (person,)).fetchone()
    return row[0] if row else ""


def set_note(db: Database, person: str, note: str, actor: str = "me") -> None:
    with db.transaction():
        edits = [Edit(person, "note", note)]
        apply_edits(db, edits)
        _card_event(db, "note", edits, actor)


def set_name(db: Database, person: str, name: str, actor: str = "me") -> None:
    """The team's name for the customer (the platforms' names are kept as they send them)."""
    with db.transaction():
        edits = [Edit(person, "name", name)]
        apply_edits(db, edits)
        _card_event(db, "name", edits, actor)


# ---- card edits as data: what a solo edit writes, what a team replays --------------------------------


#: The fields of a card an agent edits: ``subject`` is a person for note and name, a contact for the
#: VIP flag and for ``person`` (the customer a merge or split put the contact in).
CARD_FIELDS = ("note", "name", "vip", "person")
#: The local event one card edit logs (one per edit, whatever the number of conversations): the
#: team's change feed for the card, and its history.
CARD_EVENT = "card"
MAX_CARD_TEXT = 10_000  # a note or a name from another replica is untrusted data
MAX_CARD_SUBJECT = 1024  # a person's or a contact's id


@dataclass(frozen=True)
class Edit:
    """One field of a card as an edit left it (``value`` None: the field's default)."""

    subject: str
    field: str
    value: str | bool | None

    def to_json(self) -> dict[str, object]:
        return {"subject": self.subject, "field": self.field, "value": self.value}


def edits_from(raw: object) -> list[Edit]:
    """Edits from an event's JSON, dropping what is malformed (another replica's data is untrusted)."""
    out: list[Edit] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or item.get("field") not in CARD_FIELDS:
            continue
        subject, field_, value = item.get("subject"), item["field"], item.get("value")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_CARD_SUBJECT:
            continue
        if field_ == "vip" and not isinstance(value, bool | None):
            continue
        if field_ != "vip" and not (value is None or isinstance(value, str)):
            continue
        if isinstance(value, str):
            value = value[:MAX_CARD_TEXT]
        out.append(Edit(subject, field_, value))
    return out


def apply_edits(db: Database, edits: Sequence[Edit]) -> None:
    """Write card fields (inside the caller's transaction): the one writer of solo edits and of the
    team's. A contact this cache does not hold is skipped (its messages bring it, with the team's
    grouping applied in log order before)."""
    for e in edits:
        if e.field in ("note", "name"):
            db.conn.execute(
                f"INSERT INTO people(id, {e.field}, updated_at) VALUES (?,?,?) "
                f"ON CONFLICT(id) DO UPDATE SET {e.field}=excluded.{e.field}, updated_at=excluded.updated_at",
                (e.subject, e.value or "", db.now()))
        elif e.field == "vip":  # a choice by hand wins over the platform's flag; None: the platform's again
            db.conn.execute("UPDATE contacts SET vip_set=?, vip=coalesce(?, platform_vip) WHERE id=?",
                            (None if e.value is None else int(bool(e.value)),) * 2 + (e.subject,))
        elif not db.conn.execute("SELECT 1 FROM contacts WHERE id=?", (e.subject,)).fetchone():
            continue
        elif e.value is None:
            db.conn.execute("DELETE FROM contact_links WHERE contact_id=?", (e.subject,))
        else:
            db.conn.execute(
                "INSERT INTO contact_links(contact_id, person) VALUES (?,?) "
                "ON CONFLICT(contact_id) DO UPDATE SET person=excluded.person", (e.subject, e.value))


def card_conversation(db: Database, subjects: Sequence[str]) -> str | None:
    """The newest conversation of the customers ``subjects`` name (contacts, or persons): where a
    card edit is logged, and where a notice about it points."""
    subjects = list(dict.fromkeys(subjects))
    if not subjects:
        return None
    marks = ",".join("?" * len(subjects))
    row = db.conn.execute(
        f"SELECT id FROM conversations WHERE contact_id IN ({marks}) OR contact_id IN "
        f"(SELECT contact_id FROM contact_links WHERE person IN ({marks})) "
        "ORDER BY last_message_at DESC, id LIMIT 1", [*subjects, *subjects]).fetchone()
    return row[0] if row else None


def last_editor(db: Database, card: Card, field: str) -> str | None:
    """Who last changed ``field`` (``note``, ``name``) of the customer on ``card``, as the card
    events on the customer's conversations say: the agent a notice about that change names."""
    import json

    ids = [c.id for c in card.contacts]
    if not ids:
        return None
    rows = db.conn.execute(
        f"SELECT actor, data FROM events WHERE kind = ? AND conversation_id IN "
        f"(SELECT id FROM conversations WHERE contact_id IN ({','.join('?' * len(ids))})) ORDER BY seq DESC LIMIT 200",
        [CARD_EVENT, *ids])
    for actor, raw in rows:
        try:
            edits = edits_from(json.loads(raw or "{}").get("edits"))
        except (ValueError, AttributeError):
            continue
        if any(e.subject == card.person and e.field == field for e in edits):
            return actor
    return None


def _card_event(db: Database, what: str, edits: Sequence[Edit], actor: str) -> None:
    from replydesk.storage.actions import _event

    conv_id = card_conversation(db, [e.subject for e in edits])
    if conv_id is not None:
        _event(db, conv_id, CARD_EVENT, actor, {"what": what, "edits": [e.to_json() for e in edits]})


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
