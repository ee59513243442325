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
    """Store ``account``'s facts; True when they changed (an unchanged write costs no commit).

    Changed reply-window rules apply to the account's conversations at once (a workspace made
    before the rules existed, or a provider that learned them), not only from the next message."""
    from replydesk.storage import reply_windows

    value = _encode(facts)
    row = db.conn.execute("SELECT facts FROM accounts WHERE name=?", (account,)).fetchone()
    if row is None or row[0] == value:
        return False
    with db.transaction():
        db.conn.execute("UPDATE accounts SET facts=? WHERE name=?", (value, account))
        reply_windows.refresh(db, account)
    return True


def for_account(db: Database, account: str) -> dict[str, PlatformFacts]:
    """One account's facts by platform ({} when the engine never stored any)."""
    row = db.conn.execute("SELECT facts FROM accounts WHERE name=?", (account,)).fetchone()
    try:
        data = json.loads(row[0] or "{}") if row else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {p: PlatformFacts.from_dict(e, p) for p, e in data.items() if isinstance(p, str) and p}


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
