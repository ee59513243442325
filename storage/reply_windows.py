"""Each conversation's reply windows, kept as absolute times beside it (``conversations.reply_window``).

The rules come from the account's platform facts (``replydesk.windows.WindowRule``, stored by the
engine). The windows count from the customer's last message (``last_inbound_at``, which robots
never move), so they are recomputed whenever ingest stores a new inbound message, and for the
whole account when its rules change. Whatever queues or sends a reply asks ``verdict`` first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from replydesk.platforms import PlatformFacts
from replydesk.storage import platform_facts
from replydesk.storage.db import Database
from replydesk.windows import Verdict, Window, check, open_windows, parse


def _has_rules(facts: dict[str, PlatformFacts]) -> bool:
    return any(f.windows for f in facts.values())


def refresh(db: Database, account: str, conv_ids: Sequence[str] | None = None) -> int:
    """Recompute the windows of ``conv_ids`` (None: every conversation of ``account``).

    Cheap when the account has no rules: one look at its facts. Returns how many rows were written.
    """
    facts = platform_facts.for_account(db, account)
    if conv_ids is not None and not _has_rules(facts):
        return 0
    if conv_ids is None:
        rows = db.conn.execute(
            "SELECT id, platform, kind, last_inbound_at, reply_window FROM conversations WHERE account=?",
            (account,)).fetchall()
    else:
        rows = []
        for start in range(0, len(conv_ids), 500):
            chunk = list(conv_ids[start:start + 500])
            rows += db.conn.execute(
                f"SELECT id, platform, kind, last_inbound_at, reply_window FROM conversations "
                f"WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    updates = []
    for conv_id, platform, kind, last_in, stored in rows:
        platform_rules = facts[platform].window_rules(kind) if platform in facts else ()
        windows = open_windows(platform_rules, kind, last_in)
        value = json.dumps([w.to_dict() for w in windows]) if windows else None
        if value != stored:
            updates.append((value, conv_id))
    if updates:
        db.conn.executemany("UPDATE conversations SET reply_window=? WHERE id=?", updates)
    return len(updates)


def customer_wrote(db: Database, account: str, convs: Sequence[tuple[str, str, str]]) -> int:
    """Ingest's call: the customer wrote in these (id, platform, kind) conversations. Only those a
    rule binds are read back and recomputed (one look at the account's facts otherwise)."""
    facts = platform_facts.for_account(db, account)
    if not _has_rules(facts):
        return 0
    bound = [c for c, platform, kind in convs if platform in facts and facts[platform].window_rules(kind)]
    return refresh(db, account, bound) if bound else 0


def windows_of(db: Database, conv_id: str) -> tuple[str, list[Window]]:
    """(the platform's label, the conversation's windows) as stored."""
    row = db.conn.execute("SELECT account, platform, reply_window FROM conversations WHERE id=?",
                          (conv_id,)).fetchone()
    if row is None:
        return "", []
    windows = parse(_loads(row[2]))
    label = ""
    if windows:
        facts = platform_facts.for_account(db, row[0]).get(row[1])
        label = facts.label if facts is not None else row[1].title()
    return label, windows


def verdict(db: Database, conv_id: str, at: float, *, private: bool, send_as: str | None = None) -> Verdict | None:
    """Whether a reply to ``conv_id`` may leave at ``at`` (None: no window binds it)."""
    kind = db.conn.execute("SELECT kind FROM conversations WHERE id=?", (conv_id,)).fetchone()
    if kind is None:
        return None
    label, windows = windows_of(db, conv_id)
    if not windows:
        return None
    return check(windows, at, private=private or kind[0] in ("dm", "email"), send_as=send_as, platform=label)


def _loads(raw: str | None) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
