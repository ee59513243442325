"""An account's approved message templates (WhatsApp), as the sync engine last fetched them.

The composer lists them when a conversation's 24-hour window has closed, fills their variables and
shows the result before anything is queued; it reads them from here, since widgets never call the
network. The engine replaces an account's whole set on each refresh (a template withdrawn on the
platform disappears here too).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from replydesk.model import MessageTemplate
from replydesk.storage.db import Database
from replydesk.storage.ingest import clean_text


def save(db: Database, account: str, templates: Iterable[MessageTemplate]) -> int:
    """Replace ``account``'s templates; returns how many are stored."""
    rows = {}
    for t in templates:
        rows[(t.name, t.language)] = (account, clean_text(t.name, 512), clean_text(t.language, 32),
                                      clean_text(t.category, 64), clean_text(t.body, 4096),
                                      json.dumps(list(t.params)), json.dumps(list(t.components), default=str)[:65536],
                                      db.now())
    with db.transaction():
        db.conn.execute("DELETE FROM message_templates WHERE account=?", (account,))
        db.conn.executemany("INSERT INTO message_templates(account, name, language, category, body, params, "
                            "components, updated_at) VALUES (?,?,?,?,?,?,?,?)", list(rows.values()))
    return len(rows)


def _template(r: tuple) -> MessageTemplate:
    def loads(raw: str) -> list:
        try:
            value = json.loads(raw or "[]")
        except ValueError:
            return []
        return value if isinstance(value, list) else []

    return MessageTemplate(r[0], r[1], r[3], tuple(str(p) for p in loads(r[4])), r[2],
                           tuple(c for c in loads(r[5]) if isinstance(c, dict)))


def of_account(db: Database, account: str) -> list[MessageTemplate]:
    return [_template(tuple(r)) for r in db.conn.execute(
        "SELECT name, language, category, body, params, components FROM message_templates WHERE account=? "
        "ORDER BY name, language", (account,))]


def get(db: Database, account: str, name: str, language: str | None = None) -> MessageTemplate | None:
    """One template by name (and language; without one, the only or the first language)."""
    found = [t for t in of_account(db, account) if t.name == name and (language is None or t.language == language)]
    return found[0] if found else None


def accounts(db: Database) -> list[str]:
    """Accounts that have templates stored."""
    return [r[0] for r in db.conn.execute("SELECT DISTINCT account FROM message_templates ORDER BY account")]


def for_conversation(db: Database, conv_id: str, name: str, language: str | None = None
                     ) -> tuple[str, MessageTemplate | None]:
    """(the conversation's account, its template ``name``) for a template reply."""
    row = db.conn.execute("SELECT account FROM conversations WHERE id=?", (conv_id,)).fetchone()
    if row is None:
        return "", None
    return row[0], get(db, row[0], name, language)
