"""Contact aliases: the other platform ids one customer is known by.

WhatsApp keys a customer on their business-scoped user id, and gives their phone number beside it
while it may; after a number change it says which user id they had before. Storage keeps each such
alias pointing at the contact's native id, so a provider (which holds no state of its own) can ask
``resolve`` which contact a new message belongs to and the customer stays one contact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from replydesk.model import item_id
from replydesk.storage.db import Database

MAX_ALIASES = 20  # per contact and batch: an untrusted payload cannot flood the table


def remember(db: Database, account: str, native_id: str, aliases: Iterable[str], at: float) -> None:
    """Point ``aliases`` at ``native_id`` (inside the caller's transaction); the newest mapping wins."""
    rows = [(account, a, native_id, at) for a in list(dict.fromkeys(aliases))[:MAX_ALIASES]
            if isinstance(a, str) and a and a != native_id and len(a) <= 256]
    if rows:
        db.conn.executemany(
            "INSERT INTO contact_aliases(account, alias, native_id, at) VALUES (?,?,?,?) "
            "ON CONFLICT(account, alias) DO UPDATE SET native_id=excluded.native_id, at=excluded.at "
            "WHERE excluded.at >= contact_aliases.at", rows)


def resolve(db: Database, account: str, ids: Sequence[str]) -> str | None:
    """The native id of the contact known by any of ``ids`` (its own id first, then an alias)."""
    ids = [i for i in ids if isinstance(i, str) and i][:MAX_ALIASES]
    if not ids:
        return None
    qs = ",".join("?" * len(ids))
    for i in ids:  # the caller's order is its preference (the current user id before a phone number)
        row = db.conn.execute("SELECT native_id FROM contacts WHERE id=?", (item_id(account, i),)).fetchone()
        if row is not None:
            return row[0]
    row = db.conn.execute(f"SELECT native_id FROM contact_aliases WHERE account=? AND alias IN ({qs}) "
                          "ORDER BY at DESC LIMIT 1", (account, *ids)).fetchone()
    return row[0] if row else None
