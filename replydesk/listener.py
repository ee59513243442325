"""The engine's listening: run each account's ``listening:`` queries when they are due, store the matches.

Per account, the queries that apply (``listening.for_platform``) run through the provider's
``listen`` when their interval has passed since the poll time stored with their cursor, so a restart
resumes both where and when it left off. Matches go through the one ingest path with their query's
name (``FetchResult.listening``); what a search cost on a metered platform (X) is recorded under
``listen:*`` resources, counts against the month's budget, and is held to the account's
``listening_share`` of it: listening slows as its share runs low and pauses when it is spent, the
inbox's own polling is not touched.

Its waits (the next run of a query, a rate limit's reset, its backoff) are decided on the engine's
monotonic clock like the account's, so a wall clock stepped back holds no query; the poll time kept
in the cursor (for a restart) and what the status bar shows stay wall time.

Faults stay listening's own: a search refused by a rate limit waits for its reset, a platform error
backs listening off, and neither stops the account's mentions, DMs or replies; only an auth error
stops the account (the token is the same). The status bar's note says which.

The rules hook: ``Listener.on_matches`` (None until the rules engine sets it) is called with the
database and the new matches of each run (``storage.ingest.ListeningMatch``), inside no transaction,
after they are stored, so a rule can tag ``complaint`` when a matched post says "refund".
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from replydesk import budget
from replydesk.listening import ListeningQuery, for_platform
from replydesk.model import Usage
from replydesk.options import MeteredOptions
from replydesk.providers.base import AuthError, PermanentError, ProviderError, RateLimited
from replydesk.storage import ingest, spend
from replydesk.storage.db import Database
from replydesk.storage.ingest import ListeningMatch

if TYPE_CHECKING:
    from replydesk.sync import AccountRun, SyncEngine


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    from replydesk.sync import backoff_delay as delay  # the engine's own rule; sync imports this module

    return delay(attempt, initial, maximum)

log = logging.getLogger(__name__)

#: Where listening looks again after a platform error it cannot retry (a search this access level
#: does not include): an hour, not every poll.
REFUSED_RETRY = 3600.0

MatchHook = Callable[[Database, list[ListeningMatch]], None]


@dataclass
class ListenState:
    """One account's listening in this engine."""

    queries: list[ListeningQuery]
    blocked_until: float = 0.0  # a rate limit's reset, or listening's own backoff (wall time: shown)
    resume_at: float = 0.0  # the same wait on the engine's monotonic clock (what decides)
    failures: int = 0
    note: str = ""  # for the status bar: what listening does or why it waits
    next_at: dict[str, float] = field(default_factory=dict)  # query -> when it is due (monotonic)


class Listener:
    """Listening for every account of one engine (see the module docstring)."""

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine
        self.on_matches: MatchHook | None = None
        self.state: dict[str, ListenState] = {}
        for name, run in engine.accounts.items():
            provider = run.provider
            if not provider.can_listen:
                continue
            queries = for_platform(engine.config.listening, name, provider.platform)
            if queries:
                self.state[name] = ListenState(queries)

    @property
    def db(self) -> Database:
        return self.engine.db

    def _mono(self, wall: float) -> float:
        """A wall-clock instant (a stored poll time, a platform's reset) on the monotonic clock."""
        return self.engine.mono() + (wall - self.db.now())

    def _wall(self, mono: float) -> float:
        return self.db.now() + (mono - self.engine.mono())

    def _wait(self, state: ListenState, seconds: float) -> None:
        state.resume_at = self.engine.mono() + seconds
        state.blocked_until = self.db.now() + seconds

    # ---- when ---------------------------------------------------------------------------------------

    def due(self, run: AccountRun) -> bool:
        """Whether one of the account's queries is due now (in memory, after the first look)."""
        state = self.state.get(run.name)
        if state is None or run.stopped:
            return False
        now = self.engine.mono()
        if now < state.resume_at:
            return False
        if len(state.next_at) < len(state.queries):
            cursors = ingest.all_cursors(self.db, run.name)
            for q in state.queries:
                state.next_at.setdefault(q.name, self._mono(self._due_at(q, cursors.get(q.stream) or {})))
        return min(state.next_at.values()) <= now

    @staticmethod
    def _due_at(query: ListeningQuery, cursor: dict) -> float:
        """When ``query`` runs next: its interval after the stored poll (a restart keeps the pace), never
        before a wait the platform asked for that its cursor remembers."""
        polled = cursor.get("polled_at")
        due = float(polled) + query.interval if isinstance(polled, int | float) else 0.0
        waits = cursor.get("blocked_until")
        return max(due, float(waits)) if isinstance(waits, int | float) else due

    def _paced(self, run: AccountRun, state: ListenState, query: ListeningQuery) -> tuple[float, str]:
        """The query's interval, or on a metered account what listening's share of the budget allows
        (every query of the account polls at that spacing times their number, so together they last)."""
        options = run.provider.options
        if not isinstance(options, MeteredOptions):
            return query.interval, ""
        month = spend.summary(self.db, run.name)
        if month.exhausted:
            return max(1.0, month.end - month.now + 1.0), "paused: the month's budget is spent"
        mine = spend.listening_summary(month, options.listening_share)
        if mine.exhausted:
            return max(1.0, month.end - month.now + 1.0), \
                f"paused: its share (${mine.budget:,.2f}) of the budget is spent"
        interval, why = budget.poll_interval(query.interval / len(state.queries), options, mine)
        return max(query.interval, interval * len(state.queries)), why

    # ---- running ------------------------------------------------------------------------------------

    async def step(self, run: AccountRun) -> int:
        """Run the account's due queries once; returns how many new posts were stored."""
        state = self.state.get(run.name)
        if state is None or not self.engine.can_call(run) or not self.due(run):
            return 0
        now, mono = self.db.now(), self.engine.mono()
        cursors = ingest.all_cursors(self.db, run.name)
        due = [q for q in state.queries if state.next_at[q.name] <= mono]
        metered = isinstance(run.provider.options, MeteredOptions)
        if metered:
            interval, why = self._paced(run, state, due[0])
            if why.startswith("paused"):
                for query in due:
                    state.next_at[query.name] = mono + interval
                state.note = f"listening {why}"
                return 0
        try:
            results = await run.provider.listen(due, {q.stream: cursors.get(q.stream) or {} for q in due})
        except AuthError as exc:  # the same token as the inbox's: the account needs the user
            self.engine._fault(run, exc)
            return 0
        except RateLimited as exc:
            self._wait(state, exc.reset_at - now)
            state.note = f"listening waits until {_clock(exc.reset_at)} (rate limit)"
            return 0
        except ProviderError as exc:
            state.failures += 1
            sync = self.engine.config.sync
            wait = backoff_delay(state.failures, sync.retry_base, sync.retry_max)
            if isinstance(exc, PermanentError):  # refused, not failed: asking every poll would not help
                wait = max(wait, REFUSED_RETRY)
            self._wait(state, wait)
            state.note = f"listening: {exc}; again at {_clock(state.blocked_until)}"
            log.warning("account %s: listening failed: %s", run.name, exc)
            return 0
        finally:  # what the searches cost counts whether or not they finished
            self.engine._record_usage(run, *([Usage(spend.LISTEN_POLLS, len(due), 0.0)] if metered else []))
        streams = {q.stream for q in due}
        results = [dataclasses.replace(r, cursor={**(r.cursor or {}), "polled_at": now}) if r.stream in streams
                   else r for r in results]
        stats = ingest.ingest(self.db, run.name, results)
        state.failures = 0
        # a search that waits for its own endpoint's reset (X) says so in its cursor
        waits = {r.stream: float(r.cursor["blocked_until"]) for r in results if isinstance(r.cursor, dict)
                 and isinstance(r.cursor.get("blocked_until"), int | float) and r.cursor["blocked_until"] > now}
        why = ""
        for query in due:
            interval, why = self._paced(run, state, query)
            state.next_at[query.name] = max(mono + interval, self._mono(waits.get(query.stream, 0.0)))
        state.note = self._describe(run, state, why)
        if waits:
            state.note += f", waits until {_clock(max(waits.values()))} (rate limit)"
        if stats.listened and self.on_matches is not None:
            try:
                self.on_matches(self.db, stats.listened)
            except Exception:  # a rule's bug must not stop listening (nor the account)
                log.exception("account %s: the listening hook failed", run.name)
        return stats.new_messages

    def _describe(self, run: AccountRun, state: ListenState, why: str) -> str:
        if why.startswith("paused"):
            return f"listening {why}"
        n = len(state.queries)
        text = f"listening {n} quer{'y' if n == 1 else 'ies'}"
        soonest = min(state.next_at.values(), default=None)
        if why and soonest is not None:
            text += f", next {_clock(self._wall(soonest))} ({why})"
        options = run.provider.options
        if isinstance(options, MeteredOptions):
            mine = spend.listening_summary(spend.summary(self.db, run.name), options.listening_share)
            share = f"/${mine.budget:,.2f}" if mine.budget is not None else ""
            text += f" ${mine.spent:,.2f}{share}"
        return text

    def note(self, run: AccountRun) -> str:
        """The status bar's words on this account's listening ('' when it does not listen)."""
        state = self.state.get(run.name)
        if state is None:
            return ""
        if state.resume_at > self.engine.mono() and not state.note:
            return f"listening waits until {_clock(state.blocked_until)}"
        return state.note or self._describe(run, state, "")


def _clock(at: float) -> str:
    import time

    return time.strftime("%H:%M", time.localtime(at))
