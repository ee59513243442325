"""The platform facts of each account, as the sync engine last knew them (``accounts.facts``).

The engine writes what its providers say (``Provider.facts()``: static facts plus what was learned
at run time, such as a Mastodon instance's own limit); the console and the CLI read them back here,
so neither imports a provider module. One JSON object per account: ``{platform: facts}`` (the demo
account serves several platforms).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from replydesk.platforms import PlatformFacts
from replydesk.storage.db import Database


def _encode(facts: Mapping[str, PlatformFacts]) -> str:
    return json.dumps({platform: f.to_dict() for platform, f in sorted(facts.items())}, sort_keys=True)


def save(db: Database, account: str, facts: Mapping[str, PlatformFacts]) -> bool:
    """Store ``account``'s facts; True when they changed (an unchanged write costs no commit)."""
    value = _encode(facts)
    row = db.conn.execute("SELECT facts FROM accounts WHERE name=?", (account,)).fetchone()
    if row is None or row[0] == value:
        return False
    with db.transaction():
        db.conn.execute("UPDATE accounts SET facts=? WHERE name=?", (value, account))
    return True


def load(db: Database) -> list[tuple[str, str, PlatformFacts]]:
    """Every account's facts as ``(account, platform, facts)``; malformed entries read as safe ones."""
    out: list[tuple[str, str, PlatformFacts]] = []
    for account, raw in db.conn.execute("SELECT name, facts FROM accounts ORDER BY name"):
        try:
            data = json.loads(raw or "{}")
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        for platform, entry in data.items():
            if isinstance(platform, str) and platform:
                out.append((account, platform, PlatformFacts.from_dict(entry, platform)))
    return out
