"""What the engine records about each account: its sync state for the status bar, and rate limits.

The engine decides (back off, wait for a reset, stop for a re-login); these functions only store
and answer, so the engine holds no SQL and a restarted engine reads what the last one learnt.
"""

from __future__ import annotations

from dataclasses import dataclass

from replydesk.storage.db import Database

#: Longest detail kept per account: it is one line of the status bar.
DETAIL_MAX = 300


@dataclass(frozen=True)
class AccountStatus:
    state: str
    detail: str


def set_status(db: Database, account: str, state: str, detail: str = "", *, until: float | None = None,
               synced: bool = False) -> None:
    """Record the account's state now; ``synced`` also moves its last successful sync time."""
    now = db.now()
    with db.transaction():
        db.conn.execute(
            "INSERT INTO account_status(account, state, detail, last_sync, until, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT(account) DO UPDATE SET state=excluded.state, "
            "detail=excluded.detail, until=excluded.until, updated_at=excluded.updated_at, "
            "last_sync=coalesce(excluded.last_sync, account_status.last_sync)",
            (account, state, detail[:DETAIL_MAX], now if synced else None, until, now),
        )


def set_note(db: Database, account: str, note: str) -> None:
    """The account's standing note for the status bar (push or polling, spend, waits per endpoint),
    shown whatever its state; written only when it changed (an unchanged write costs a commit)."""
    note = note[:200]
    row = db.conn.execute("SELECT note FROM account_status WHERE account=?", (account,)).fetchone()
    if row is None or row[0] == note:
        return
    with db.transaction():
        db.conn.execute("UPDATE account_status SET note=? WHERE account=?", (note, account))


def status_of(db: Database, account: str) -> AccountStatus | None:
    """The account's last recorded state, or None before its first pass."""
    row = db.conn.execute("SELECT state, detail FROM account_status WHERE account=?", (account,)).fetchone()
    return AccountStatus(row[0], row[1]) if row else None


def rate_limits_in_force(db: Database, now: float) -> dict[str, float]:
    """Accounts a platform told to wait, with the time the wait ends (only waits not over at ``now``)."""
    return {name: float(until) for name, until in db.conn.execute(
        "SELECT account, until FROM account_status WHERE state='rate_limited' AND until > ?", (now,)
    )}
