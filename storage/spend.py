"""What metered platforms cost this month: recorded per account, month (UTC) and resource.

X's API is paid per use (each post or DM event read, each post or DM written). Providers report
``Usage`` rows; the engine records them here, so the spend survives restarts and a new month starts
from zero (rows are keyed by month, nothing is reset or deleted). The summary answers what the
status bar and ``replydesk doctor`` show: spent so far, the month's total at the current pace, and
when the budget runs out if that comes before the month's end. The figures are estimates from the
configured prices; the platform's own console has the bill.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from replydesk.model import LISTENING_SPEND, Usage
from replydesk.storage.db import Database

#: the pseudo-resource that counts polls (units), so a poll's average cost can be told
POLLS = "poll"
#: the same for listening searches (one unit per query run); their reads are ``listen:*:read``
LISTEN_POLLS = LISTENING_SPEND + POLLS
#: below this much of the month elapsed, the pace is taken over this long (a first hour's spend
#: multiplied by 720 would cry wolf)
MIN_PACE_WINDOW = 86400.0


def month_of(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m")


def month_bounds(at: float) -> tuple[float, float]:
    """Start and end (epoch seconds) of the UTC calendar month holding ``at``."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start.timestamp(), end.timestamp()


def record(db: Database, account: str, usage: Iterable[Usage], at: float | None = None) -> None:
    """Add ``usage`` to the account's month (one transaction)."""
    rows = [u for u in usage if u.units or u.usd]
    if not rows:
        return
    at = db.now() if at is None else at
    month = month_of(at)
    with db.transaction():
        db.conn.executemany(
            "INSERT INTO spend(account, month, resource, units, usd, updated_at) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(account, month, resource) DO UPDATE SET units = units + excluded.units, "
            "usd = usd + excluded.usd, updated_at = excluded.updated_at",
            [(account, month, u.resource, int(u.units), float(u.usd), at) for u in rows],
        )


def set_budget(db: Database, account: str, monthly_usd: float | None) -> None:
    """The account's budget as configured now (None: no budget; the spend is still recorded)."""
    with db.transaction():
        if monthly_usd is None:
            db.conn.execute("DELETE FROM spend_budgets WHERE account=?", (account,))
        else:
            db.conn.execute(
                "INSERT INTO spend_budgets(account, monthly_usd, updated_at) VALUES (?,?,?) "
                "ON CONFLICT(account) DO UPDATE SET monthly_usd=excluded.monthly_usd, updated_at=excluded.updated_at",
                (account, float(monthly_usd), db.now()),
            )


@dataclass(frozen=True)
class SpendSummary:
    """One account's month: what was spent, and what the pace says about the rest."""

    account: str
    month: str
    now: float
    start: float
    end: float
    spent: float
    budget: float | None
    polls: int = 0
    poll_spend: float = 0.0  # what the polls cost (reads), as opposed to replies and lookups
    by_resource: dict[str, tuple[int, float]] = field(default_factory=dict)
    listen_polls: int = 0  # listening searches run (their spend is in by_resource as listen:*)

    @property
    def rate(self) -> float:
        """Dollars per second so far this month."""
        return self.spent / max(self.now - self.start, MIN_PACE_WINDOW)

    @property
    def projected(self) -> float:
        """The month's total if it goes on at this pace."""
        return max(self.spent, self.rate * (self.end - self.start))

    @property
    def remaining(self) -> float | None:
        return None if self.budget is None else self.budget - self.spent

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.spent >= self.budget

    @property
    def runs_out_at(self) -> float | None:
        """When the budget is spent at this pace, if before the month ends (None: it lasts)."""
        if self.budget is None:
            return None
        if self.exhausted:
            return self.now
        if self.rate <= 0:
            return None
        when = self.now + (self.budget - self.spent) / self.rate
        return when if when < self.end else None

    @property
    def cost_per_poll(self) -> float | None:
        return self.poll_spend / self.polls if self.polls >= 3 else None

    def text(self) -> str:
        """The status bar's few words: ``$3.20/$25.00, pace $11.40``, then ``⚠ runs out 24 Nov`` or
        ``⚠ budget spent: polling paused, replies still send`` when it will not last."""
        budget = f"/${self.budget:,.2f}" if self.budget is not None else ""
        line = f"${self.spent:,.2f}{budget}, pace ${self.projected:,.2f}"
        if self.exhausted:
            return line + " ⚠ budget spent: polling paused, replies still send"
        out = self.runs_out_at
        return line + (f" ⚠ runs out {dt.datetime.fromtimestamp(out, dt.UTC):%d %b}" if out is not None else "")

    def warning(self) -> str:
        if self.exhausted:
            return "budget spent: polling paused until the month ends; replies still send"
        out = self.runs_out_at
        if out is not None:
            day = dt.datetime.fromtimestamp(out, dt.UTC).strftime("%d %b")
            return f"at this pace the budget runs out on {day}"
        return ""


def summary(db: Database, account: str, now: float | None = None) -> SpendSummary:
    now = db.now() if now is None else now
    month = month_of(now)
    start, end = month_bounds(now)
    by_resource = {r: (int(u), float(d)) for r, u, d in db.conn.execute(
        "SELECT resource, units, usd FROM spend WHERE account=? AND month=?", (account, month))}
    row = db.conn.execute("SELECT monthly_usd FROM spend_budgets WHERE account=?", (account,)).fetchone()
    polls = by_resource.pop(POLLS, (0, 0.0))
    listened = by_resource.pop(LISTEN_POLLS, (0, 0.0))
    spent = sum(d for _, d in by_resource.values())  # listening's too: it counts against the budget
    poll_spend = sum(d for r, (_, d) in by_resource.items()
                     if r.endswith(":read") and not r.startswith(LISTENING_SPEND))
    return SpendSummary(account, month, now, start, end, spent, float(row[0]) if row else None,
                        polls[0], poll_spend, by_resource, listened[0])


def listening_summary(month: SpendSummary, share: float) -> SpendSummary:
    """Listening's part of ``month`` (a ``summary``): what its searches spent against its ``share`` of
    the budget (None when the account has none), with its own polls, so ``budget.poll_interval``
    paces listening by listening's cost alone."""
    mine = {r: v for r, v in month.by_resource.items() if r.startswith(LISTENING_SPEND)}
    spent = sum(d for _, d in mine.values())
    budget = None if month.budget is None else month.budget * share
    return SpendSummary(month.account, month.month, month.now, month.start, month.end, spent, budget,
                        month.listen_polls, sum(d for r, (_, d) in mine.items() if r.endswith(":read")), mine)


def metered_accounts(db: Database) -> list[str]:
    """Accounts with a budget or any recorded spend (for ``doctor``)."""
    return [r[0] for r in db.conn.execute(
        "SELECT account FROM spend_budgets UNION SELECT DISTINCT account FROM spend ORDER BY 1")]
