"""The sync engine: fetch from every account, drain the outbox, keep SLA state current.

One engine writes a workspace at a time (``storage.lock.EngineLock``: an flock that dies with its
process, so a crash never leaves it stuck). The engine runs on its own asyncio loop with its own
connection, so it never blocks the UI; the UI reads with its own connection and notices writes via
``data_version``. The engine holds no SQL: it decides, and ``replydesk.storage`` stores and answers.

Failure handling, per account: transient faults back off exponentially with jitter (tenacity's
``wait_exponential_jitter``), rate limits wait until their reset without spending requests, auth
errors stop the account ("re-login needed") and keep everything queued.

Every task of the engine (one loop per account, one per push stream, the SLA sweep) is supervised:
an unexpected error — a locked or full database, a bug — is logged once, recorded as a stall
("stalled: database is locked by another process since 08:34") in the account's status, the lease
file (``doctor`` and other processes read it) and ``health()`` (the console in this process), then
retried with backoff; the task resumes by itself when the cause is gone. Waits (backoff, rate-limit
resets, the next poll) run on the monotonic clock, so a wall clock stepped back holds nothing; the
outbox's stored retry times written before such a step are moved back with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, wait_exponential, wait_random

from replydesk import providers, push, secrets
from replydesk.config import Config, ConfigError
from replydesk.config_watch import POLL_EVERY, ConfigChange
from replydesk.model import AnsweredMessage, OutgoingAction, OutgoingReply, Usage
from replydesk.options import MeteredOptions
from replydesk.platforms import PlatformFacts
from replydesk.providers.base import (
    AuthError,
    Offline,
    Provider,
    ProviderError,
    RateLimited,
    TransientError,
    UnknownDelivery,
)
from replydesk.rules import LiveRules
from replydesk.storage import (
    accounts,
    actions,
    aliases,
    ingest,
    outbox,
    platform_facts,
    pushes,
    queries,
    slastate,
    spend,
    spool,
    templates,
    tickets,
)
from replydesk.storage.db import DATABASE_ERRORS, Database
from replydesk.storage.faults import describe_failure
from replydesk.surveys import Surveys

log = logging.getLogger(__name__)

IDLE = 0.25  # seconds between looks at the outbox when nothing else wakes an account
#: Longest wait between two tries of a stalled task: the cause (a lock, a full disk) is usually
#: fixed by someone who then expects the engine to carry on within moments.
STALL_RETRY_MAX = 30.0
#: A jump of the wall clock against the monotonic one larger than this is a step, not drift.
CLOCK_STEP = 2.0
TEMPLATES_EVERY = 3600.0  # seconds between refreshes of an account's message templates


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Delay before retry ``attempt`` (1-based): ``initial * 2**(attempt-1)`` plus up to ``initial`` of
    jitter, never above ``maximum``; tenacity's wait strategies do the arithmetic.

    The engine uses tenacity's waits rather than its retry loop because a retry here outlives the
    process: the next attempt time is stored in the outbox row (``not_before``), not on a stack.
    """
    state = RetryCallState(None, None, (), {})
    state.attempt_number = max(1, attempt)
    wait = wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial)
    return min(float(wait(state)), maximum)


def poll_interval(account: Any, config: Config) -> float | None:
    """The account's own ``poll_interval``, else ``sync.poll_interval``, else None (the provider's own)."""
    if account.poll_interval:
        return float(account.poll_interval)
    if config.sync.poll_interval:
        return float(config.sync.poll_interval)
    return None


@dataclass
class AccountRun:
    """In-memory state of one account in this engine."""

    name: str
    provider: Provider
    failures: int = 0
    blocked_until: float = 0.0  # backoff or rate-limit reset, wall time (what the user is told)
    resume_at: float = 0.0  # the same wait on the monotonic clock (what decides)
    stopped: bool = False  # auth error: needs the user
    next_fetch: float = 0.0  # monotonic; 0 until the first poll
    streaming: bool = False  # a push stream is delivering: polling pauses (it would race it)
    stream_resume_at: float = 0.0  # monotonic: a partial stream's own backoff (polling goes on meanwhile)
    pace_note: str = ""  # how often a metered account polls now, and why
    templates_due: float = 0.0  # monotonic: when the account's message templates are fetched again
    facts: dict[str, PlatformFacts] = field(default_factory=dict)  # as last stored for the console


@dataclass
class Stall:
    """A supervised task that keeps failing: why, since when (wall time), how many tries."""

    reason: str
    since: float
    tries: int = 1


@dataclass
class PassReport:
    fetched: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    errors: dict[str, str] = field(default_factory=dict)


class SyncEngine:
    def __init__(self, config: Config, db: Database, data_dir: Path, *,
                 secret_for: Callable[[str], Callable[[], str | None]] = secrets.getter,
                 clock: Callable[[], float] | None = None,
                 config_check: Callable[[], ConfigChange | None] | None = None,
                 monotonic: Callable[[], float] | None = None,
                 on_health: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.db = db
        # Waits run on a clock that never steps; a test's fixed clock is its own monotonic clock.
        self.mono = monotonic or (time.monotonic if db.clock is time.time else db.clock)
        self._offset = db.now() - self.mono()  # wall minus monotonic: a drop is a clock stepped back
        self.stalls: dict[str, Stall] = {}
        self.on_health = on_health
        self.config_check = config_check
        self._config_checked = 0.0
        self.data_dir = Path(data_dir)
        self.accounts: dict[str, AccountRun] = {}
        for account in config.accounts:
            provider = providers.create(account, self.data_dir, secret_for(account.name), clock=clock)
            interval = poll_interval(account, config)
            if interval is not None:
                provider.poll_interval = interval
            provider.resolve_thread = self._thread_resolver(account.name)
            provider.tickets_to_follow = self._ticket_follower(account.name)
            provider.resolve_contact = self._contact_resolver(account.name)
            self.accounts[account.name] = AccountRun(account.name, provider)
            with db.transaction():
                ingest.ensure_account(db, account.name, account.provider,
                                      "multi" if account.provider == "demo" else account.provider)
            self._publish_facts(self.accounts[account.name])
            if isinstance(account, MeteredOptions):
                spend.set_budget(db, account.name, account.monthly_budget_usd)
        self._restore_rate_limits()
        from replydesk.listener import Listener

        self.listening = Listener(self)  # the accounts' listening: queries; ``on_matches`` is the rules' hook
        self._stop = asyncio.Event()
        # Rules act on what each ingest stores, inside its transaction (db.ingest_hook); timers and
        # surveys come with the sweep. Both are read from the config at start.
        self.rules = LiveRules(config) if config.rules else None
        if self.rules is not None:
            self.rules.attach(db)
        self.surveys = Surveys(config) if config.csat.accounts else None
        self._spool: spool.Spool | None = None  # the webhook receiver's store, opened once it exists

    def _restore_rate_limits(self) -> None:
        """A platform's "wait until T" binds the next process too: a restart must not spend requests."""
        now = self.db.now()
        for name, until in accounts.rate_limits_in_force(self.db, now).items():
            if name in self.accounts:
                self._block(self.accounts[name], until - now)

    def _block(self, run: AccountRun, seconds: float) -> None:
        """Hold the account's calls for ``seconds``: decided on the monotonic clock, shown in wall time."""
        seconds = max(0.0, seconds)
        run.resume_at = self.mono() + seconds
        run.blocked_until = self.db.now() + seconds

    def _check_clock(self) -> None:
        """Notice a wall clock stepped back (NTP, a VM resumed, a hand correction): the waits stored in
        the outbox before the step are moved back with it, so no reply is held for the step's length."""
        offset = self.db.now() - self.mono()
        step = self._offset - offset
        if step > CLOCK_STEP:
            moved = outbox.rebase_waits(self.db, -step, written_after=self.db.now())
            log.warning("the system clock went back %.0f s: %d reply wait(s) moved back with it", step, moved)
        if abs(step) > CLOCK_STEP:
            self._offset = offset

    # ---- status -----------------------------------------------------------------------------------

    def _status(self, account: str, state: str, detail: str = "", until: float | None = None,
                synced: bool = False) -> None:
        if state == "ok":
            detail = "; ".join(filter(None, (detail, self._attention(account))))
        accounts.set_status(self.db, account, state, detail, until=until, synced=synced)

    def _attention(self, account: str) -> str:
        """Replies that need the user, for the status bar: the account may be fine, they are not."""
        counts = outbox.needing_attention(self.db, account)
        parts = [f"{n} repl{'y' if n == 1 else 'ies'} {state}" for state, n in sorted(counts.items())]
        others = outbox.needing_attention(self.db, account, replies=False)
        parts += [f"{n} action{'' if n == 1 else 's'} {state}" for state, n in sorted(others.items())]
        return (", ".join(parts) + ": see the outbox") if parts else ""

    def _publish_facts(self, run: AccountRun) -> None:
        """Store the account's platform facts for the console when they changed (at start, and when
        a fetch taught the provider a limit, as a Mastodon instance's own maximum). They carry the
        actions the account can perform, so the console offers only those: ``mark_read`` only where
        the account's ``mark_read`` option asks for read receipts on the platform."""
        actions = set(run.provider.capabilities.actions)
        if not getattr(run.provider.options, "mark_read", False):
            actions.discard("mark_read")
        facts = {p: f.with_actions(actions) for p, f in run.provider.facts().items()}
        if facts != run.facts:
            platform_facts.save(self.db, run.name, facts)
            run.facts = facts

    # ---- metered platforms ------------------------------------------------------------------------

    @staticmethod
    def _metered(run: AccountRun) -> MeteredOptions | None:
        options = run.provider.options
        return options if isinstance(options, MeteredOptions) else None

    def _record_usage(self, run: AccountRun, *extra: Usage) -> None:
        """What the provider's requests cost since the last look, into this month's spend."""
        usage = [*run.provider.take_usage(), *extra]
        if usage:
            spend.record(self.db, run.name, usage)

    def _next_poll_in(self, run: AccountRun) -> float:
        """The account's own interval, or for a metered one what its budget and quiet hours allow."""
        options = self._metered(run)
        if options is None:
            return run.provider.poll_interval
        from replydesk import budget

        interval, why = budget.poll_interval(run.provider.poll_interval, options,
                                             spend.summary(self.db, run.name))
        # once the budget is spent the spend line says so (and that replies still send)
        run.pace_note = "" if "paused" in why else f"every {budget.describe(interval)}" + (
            f" ({why})" if why else "")
        return interval

    def _publish_note(self, run: AccountRun) -> None:
        """The status bar's standing note: the provider's (push or polling, waits per endpoint), the
        pace, and for a metered account the month's spend with a warning when it will not last."""
        parts = [run.provider.status_note()]
        if self._metered(run) is not None:
            summary = spend.summary(self.db, run.name)
            parts += [run.pace_note, summary.text()]
        parts.append(self.listening.note(run))
        accounts.set_note(self.db, run.name, " · ".join(p for p in parts if p))

    def can_call(self, run: AccountRun) -> bool:
        """False while the account is stopped, backing off or waiting for a rate-limit reset."""
        return not run.stopped and self.mono() >= run.resume_at

    def can_stream(self, run: AccountRun) -> bool:
        """Whether to open the account's push stream now: after the first poll has stored its cursors
        (both would ask the platform at once), and not while it must wait."""
        now = self.mono()
        return not run.stopped and run.next_fetch > 0 and now >= run.resume_at and now >= run.stream_resume_at

    def _thread_resolver(self, account: str) -> Callable[[Any], str | None]:
        def resolve(native_ids: Any) -> str | None:
            return queries.conversation_of_message(self.db, account, native_ids)

        return resolve

    def _ticket_follower(self, account: str) -> Callable[[], list[str]]:
        def follow() -> list[str]:
            return tickets.followed(self.db, account)

        return follow

    def forward_notes(self, run: AccountRun) -> int:
        """A helpdesk account that takes notes (``notes_as_comments``): internal notes written after
        an escalation are queued as private comments on its ticket, once each, before the drain."""
        if "ticket_comment" not in run.provider.capabilities.actions or \
                not getattr(run.provider.options, "notes_as_comments", False):
            return 0
        return len(tickets.queue_note_comments(self.db, run.name))

    def _contact_resolver(self, account: str) -> Callable[[Any], str | None]:
        def resolve(ids: Any) -> str | None:
            return aliases.resolve(self.db, account, ids)

        return resolve

    def _fault(self, run: AccountRun, exc: ProviderError) -> str:
        """Translate a provider failure into account state; returns a one-line reason."""
        now = self.db.now()
        reason = secrets.mask(str(exc) or type(exc).__name__)
        if isinstance(exc, AuthError):
            run.stopped = True
            self._status(run.name, "auth_error", f"re-login needed: {reason}")
        elif isinstance(exc, RateLimited):
            if self.can_call(run) or exc.reset_at > run.blocked_until:  # never shortens a longer wait
                self._block(run, exc.reset_at - now)
            self._status(run.name, "rate_limited", f"{reason}; waiting until {_clock(run.blocked_until)}",
                         until=run.blocked_until)
        elif isinstance(exc, TransientError):
            run.failures += 1
            sync = self.config.sync
            self._block(run, backoff_delay(run.failures, sync.retry_base, sync.retry_max))
            self._status(run.name, "offline" if isinstance(exc, Offline) else "backoff", reason,
                         until=run.blocked_until)
        else:
            run.failures += 1
            self._block(run, backoff_delay(run.failures, self.config.sync.retry_base, self.config.sync.retry_max))
            self._status(run.name, "error", reason, until=run.blocked_until)
        return reason

    # ---- fetching ---------------------------------------------------------------------------------

    async def fetch_account(self, run: AccountRun) -> int:
        """One fetch of every stream of the account; returns the number of new messages."""
        if not self.can_call(run):
            return 0
        try:
            results = await run.provider.fetch(ingest.all_cursors(self.db, run.name))
        except ProviderError as exc:
            self._fault(run, exc)
            return 0
        finally:  # what the requests cost counts whether or not the fetch finished
            self._record_usage(run, *([Usage(spend.POLLS, 1, 0.0)] if self._metered(run) else []))
        stats = ingest.ingest(self.db, run.name, results)
        run.failures = 0
        await self._refresh_templates(run)
        self._publish_facts(run)
        self._status(run.name, "ok", f"{stats.new_messages} new" if stats.new_messages else "", synced=True)
        return stats.new_messages

    async def _refresh_templates(self, run: AccountRun) -> None:
        """An account's approved message templates (WhatsApp), for the composer: on the first fetch
        and then hourly. A failure keeps the last set and says why in the log."""
        if not run.provider.capabilities.templates or self.mono() < run.templates_due:
            return
        run.templates_due = self.mono() + TEMPLATES_EVERY
        try:
            found = await run.provider.templates()
        except ProviderError as exc:
            log.warning("account %s: message templates not refreshed: %s", run.name, exc)
            return
        templates.save(self.db, run.name, found)

    def _adopt_spooled(self, run: AccountRun) -> None:
        """Bodies the webhook receiver spooled (``storage.spool``) move into the workspace first."""
        if self._spool is None:
            if not spool.exists(self.data_dir):
                return
            self._spool = spool.Spool(self.data_dir)
        if self._spool.has(run.name):
            push.adopt_spooled(self.db, self._spool, run.name)

    def ingest_pushed(self, run: AccountRun) -> int:
        """Bodies a webhook receiver stored for this account (``replydesk.push``), through the same
        ingest path as a fetch; returns the number of new messages. Needs no network, so it runs
        while the account backs off too."""
        if not run.provider.capabilities.accepts_push:
            return 0
        self._adopt_spooled(run)
        if not pushes.has_pending(self.db, run.name):
            return 0
        stats = push.ingest_pending(self.db, run.provider)
        if stats.new_messages:
            self._status(run.name, "ok", f"{stats.new_messages} new by push", synced=True)
        return stats.new_messages

    # ---- sending ----------------------------------------------------------------------------------

    def _outgoing(self, item: outbox.OutboxItem) -> OutgoingReply:
        stored = outbox.reply_context(self.db, item.conversation_id)
        row, last_in = stored.conversation, stored.last_inbound
        meta = json.loads(row[2] or "{}")
        answering = AnsweredMessage(last_in.native_id, last_in.meta) if last_in is not None else None
        return OutgoingReply(
            key=item.key, conversation_id=item.conversation_id, conversation_native_id=row[0],
            account=item.account, kind=row[1], private=item.private, text=item.text,
            customer_handle=row[3], answering=answering, meta=meta, created_at=item.created_at,
            send_as=item.send_as, template=item.template,
        )

    def _action(self, item: outbox.OutboxItem) -> OutgoingAction:
        """The provider's view of an outbox action (the conversation's details, the frozen payload)."""
        row = outbox.reply_context(self.db, item.conversation_id).conversation
        return OutgoingAction(
            key=item.key, kind=item.action, account=item.account, conversation_id=item.conversation_id,
            conversation_native_id=row[0], conversation_kind=row[1], payload=dict(item.payload),
            meta=json.loads(row[2] or "{}"), created_at=item.created_at,
        )

    def _settles_itself(self, run: AccountRun, item: outbox.OutboxItem) -> bool:
        """A repeat of an uncertain attempt is harmless: the platform dedupes the key (or the action
        changes nothing twice), so there is nothing to find out first."""
        if item.is_reply:
            return run.provider.capabilities.supports_idempotency
        return run.provider.repeatable(item.action)

    def _can_look(self, run: AccountRun, item: outbox.OutboxItem) -> bool:
        return run.provider.capabilities.can_lookup_sent

    async def _reconcile(self, run: AccountRun, item: outbox.OutboxItem) -> bool:
        """An earlier attempt may have been posted (or done): find out before trying again.

        Idempotent: nothing to find out, repeating with the same key is safe (False).
        Lookup-capable: look for our post (or ticket); found → recorded as done (True), absent →
        try again (False). Neither: mark ``unknown`` and let the user decide (True); guessing risks
        a double post or a second ticket.
        """
        if self._settles_itself(run, item):
            return False
        what = "reply was posted" if item.is_reply else f"{item.action.replace('_', ' ')} happened"
        if not self._can_look(run, item):
            outbox.mark_unknown(self.db, item.key, f"the platform cannot tell whether this {what}; "
                                "check it there, then retry or confirm")
            return True
        if item.is_reply:
            found = await run.provider.lookup_sent(self._outgoing(item))
            if found is not None:
                outbox.mark_sent(self.db, item.key, found.remote_id, found.sent_at)
                return True
            return False
        done = await run.provider.lookup_performed(self._action(item))
        if done is not None:
            outbox.mark_done(self.db, item.key, done.remote_id, done.done_at, done.details)
            return True
        return False

    async def send_one(self, run: AccountRun, item: outbox.OutboxItem, uncertain: bool = False) -> bool:
        """Try to deliver one reply (or perform one action). True when it left (or was found done).

        A reply whose reply window closed while it waited (offline for a day, a send-later time)
        fails here with the platform's rule and the choices left, instead of being refused there."""
        attempted = False
        try:
            if (uncertain or item.attempts > 0) and await self._reconcile(run, item):
                settled = outbox.get(self.db, item.key)
                return settled is not None and settled.state == "sent"
            refusal = outbox.window_refusal(self.db, item)
            if refusal is not None:
                outbox.mark_failed(self.db, item.key, refusal)
                return False
            if not item.is_reply and item.action not in run.provider.capabilities.actions:
                outbox.mark_failed(self.db, item.key, f"account {run.name} cannot "
                                   f"{item.action.replace('_', ' ')} (its provider does not offer it)")
                return False
            fresh = outbox.mark_sending(self.db, item.key)
            if fresh is None:
                return False  # discarded or already handled since we read it
            attempted = True
            if fresh.is_reply:
                result = await run.provider.send(self._outgoing(fresh))
            else:
                done = await run.provider.perform(self._action(fresh))
        except ProviderError as exc:
            self._send_fault(run, item.key, exc, attempted)
            return False
        except Exception as exc:  # a provider bug: treat as uncertain, never leave the row 'sending'
            if not attempted and isinstance(exc, DATABASE_ERRORS):
                raise  # the workspace failed (locked, full) before anything left: the step stalls and retries
            log.exception("account %s: unexpected error sending %s", run.name, item.key)
            self._send_fault(run, item.key, TransientError(f"internal error: {type(exc).__name__}: {exc}"),
                             attempted)
            return False
        finally:  # a metered platform's reply or lookup costs too: never blocked, always counted
            self._record_usage(run)
        if fresh.is_reply:
            outbox.mark_sent(self.db, item.key, result.remote_id, result.sent_at)
        else:
            outbox.mark_done(self.db, item.key, done.remote_id, done.done_at, done.details)
        run.failures = 0
        return True

    def _send_fault(self, run: AccountRun, key: str, exc: ProviderError, attempted: bool) -> None:
        """Record why a reply did not leave, and when it may try again.

        ``attempted``: this call had marked the row sending, so a refusal (429, auth, offline) gives
        the attempt back; a failure before that (a lookup) leaves the count alone.
        """
        sync = self.config.sync
        now = self.db.now()
        reason = secrets.mask(str(exc) or type(exc).__name__)
        if isinstance(exc, UnknownDelivery):
            outbox.mark_unknown(self.db, key, reason)
        elif isinstance(exc, RateLimited):
            self._fault(run, exc)
            outbox.mark_retry(self.db, key, f"rate limited until {_clock(exc.reset_at)}", exc.reset_at,
                              refused=attempted)
        elif isinstance(exc, AuthError):
            self._fault(run, exc)
            outbox.mark_retry(self.db, key, "waiting: re-login needed", now, refused=attempted)
        elif isinstance(exc, Offline):
            self._fault(run, exc)
            outbox.mark_retry(self.db, key, f"offline; will send when back: {reason}", run.blocked_until,
                              refused=attempted)
        elif isinstance(exc, TransientError):
            self._fault(run, exc)
            current = outbox.get(self.db, key)
            attempts = current.attempts if current else 1
            if attempts >= sync.send_retries:
                outbox.mark_failed(self.db, key, f"{reason} (after {attempts} attempts)")
                self._status(run.name, "error", f"{self._attention(run.name)} (last: {reason})")
            else:  # the reply's own backoff, never before the account's: a retry then would be wasted
                retry_at = max(now + backoff_delay(attempts, sync.retry_base, sync.retry_max), run.blocked_until)
                outbox.mark_retry(self.db, key, reason, retry_at)
        else:  # PermanentError and anything else the platform said no to for good
            outbox.mark_failed(self.db, key, reason)
            self._status(run.name, "error", f"{self._attention(run.name)} (last: {reason})")

    async def drain(self, run: AccountRun, limit: int = 100) -> int:
        """Send what is due, oldest first; stop at the first sign the account needs to wait."""
        sent = 0
        while sent < limit and self.can_call(run):
            batch = outbox.ready(self.db, run.name, limit=20)
            if not batch:
                break
            progressed = False
            for item in batch:
                if not self.can_call(run):
                    break
                if await self.send_one(run, item):
                    sent += 1
                    progressed = True
            if not progressed:
                break
        return sent

    async def drain_outbox(self, limit: int = 1_000_000) -> int:
        """Send everything due on every account now (no fetching); returns how many left.

        A plain entry point for benchmarks and scripts: the outbox drained as the running engine would.
        """
        await self.reconcile_in_flight()
        sent = 0
        for run in self.accounts.values():
            sent += await self.drain(run, limit=limit - sent)
        return sent

    async def reconcile_in_flight(self, accounts: Collection[str] | None = None) -> None:
        """Replies left in 'sending' by a crash: settle each before anything else in its thread leaves.
        ``accounts``: only theirs (a team engine settles the accounts it has just come to lead).

        Each goes back to queued still counted as attempted, so it stays first in its conversation and
        uncertain: on a platform that cannot tell, it becomes ``unknown`` here and now; otherwise the
        next drain settles it before sending (same key again, or a lookup first), within rate limits.
        """
        for item in outbox.in_flight(self.db):
            if accounts is not None and item.account not in accounts:
                continue
            run = self.accounts.get(item.account)
            if run is None:  # the account is gone from the config: nobody can find out here
                outbox.mark_unknown(self.db, item.key, f"interrupted while sending, and account {item.account!r} "
                                    "is no longer in the config: check on the platform, then retry or confirm")
                continue
            outbox.mark_retry(self.db, item.key, "interrupted while sending; checking before resending",
                              self.db.now())
            if not (self._settles_itself(run, item) or self._can_look(run, item)):
                await self._reconcile(run, item)  # needs no network: marks it unknown

    # ---- housekeeping -----------------------------------------------------------------------------

    def sweep(self) -> None:
        """Time-driven changes: snoozes that ran out, SLAs that just breached, rules' timers that
        came due, surveys after a resolve."""
        actions.wake_snoozed(self.db)
        due = slastate.due_conversations(self.db, self.db.now())
        if due:
            with self.db.transaction():
                slastate.refresh(self.db, due)
        self.run_timers()
        if self.surveys is not None:
            self.surveys.run(self.db)

    def run_timers(self) -> None:
        if self.rules is not None:
            self.rules.run_timers(self.db)

    # ---- running ----------------------------------------------------------------------------------

    async def run_once(self) -> PassReport:
        report = PassReport()
        self._check_clock()
        await self.reconcile_in_flight()
        self.run_timers()  # timers due before what this pass fetches fire first, as time ran
        for run in self.accounts.values():
            if self.can_call(run):
                self._status(run.name, "syncing")
            report.fetched[run.name] = await self.fetch_account(run) + self.ingest_pushed(run)
            report.fetched[run.name] += await self.listening.step(run)
            self.forward_notes(run)
            report.sent += await self.drain(run)
            if self._metered(run) is not None:
                self._next_poll_in(run)
            self._publish_note(run)
            status = accounts.status_of(self.db, run.name)
            if status and status.state not in ("ok", "syncing"):
                report.errors[run.name] = f"{status.state}: {status.detail}"
            elif status and status.state == "syncing":
                self._status(run.name, "ok", synced=True)
        self.sweep()
        return report

    def stop(self) -> None:
        self._stop.set()

    # ---- supervision ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """How the engine is doing, for the console in this process and the lease note:
        ``{"state": "running"|"stalled", "reason", "since", "tasks"}`` (no database needed)."""
        if not self.stalls:
            return {"state": "running"}
        first = min(self.stalls.values(), key=lambda st: st.since)
        return {"state": "stalled", "reason": first.reason, "since": first.since,
                "tasks": {name: {"reason": st.reason, "since": st.since, "tries": st.tries}
                          for name, st in self.stalls.items()}}

    def _publish_health(self) -> None:
        if self.on_health is not None:
            with contextlib.suppress(Exception):
                self.on_health(self.health())

    def describe(self, exc: BaseException) -> str:
        """One line for a task's unexpected failure (``storage.faults.describe_failure``), secrets masked."""
        return secrets.mask(describe_failure(exc, self.db.path, self.db.lock_timeout))[:200]

    def _stalled(self, task: str, account: str | None, exc: BaseException) -> Stall:
        """Record a failed try of ``task``. Logged (with the traceback) once per reason; the account's
        status row says so too when the database takes the write (best effort: it may be the cause)."""
        reason = self.describe(exc)
        stall = self.stalls.get(task)
        if stall is not None and stall.reason == reason:
            stall.tries += 1
            log.debug("%s: still stalled (%s), try %d", task, reason, stall.tries)
            return stall
        stall = self.stalls[task] = Stall(reason, self.db.now(), 1 if stall is None else stall.tries + 1)
        if isinstance(exc, (*DATABASE_ERRORS, OSError)):
            log.warning("%s stalled: %s; retrying with backoff", task, reason)
        else:
            log.exception("%s stalled: %s; retrying with backoff", task, reason)
        self._publish_health()
        if account is not None:
            with contextlib.suppress(Exception):
                self._status(account, "stalled", f"{reason} since {_clock(stall.since)[:5]}; retrying by itself")
        return stall

    def _recovered(self, task: str, account: str | None) -> None:
        stall = self.stalls.pop(task, None)
        if stall is None:
            return
        log.warning("%s resumed after %d failed tr%s (%s)", task, stall.tries, "y" if stall.tries == 1 else "ies",
                    stall.reason)
        self._publish_health()
        if account is not None:
            with contextlib.suppress(Exception):
                current = accounts.status_of(self.db, account)
                if current is not None and current.state == "stalled":
                    self._status(account, "ok", "resumed")

    async def _supervise(self, task: str, step: Callable[[], Any], account: str | None = None, *,
                         once: bool = False) -> None:
        """Run ``step`` (a coroutine function returning the seconds to wait) until ``stop()`` (with
        ``once``: until it has succeeded once).

        An error ``step`` does not handle itself stalls the task, never ends it: it is retried with
        backoff (at most ``STALL_RETRY_MAX`` apart) until it works again.
        """
        while not self._stop.is_set():
            try:
                wait = await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a locked or full database, a bug: stall, retry, never end
                stall = self._stalled(task, account, exc)
                sync = self.config.sync
                wait = backoff_delay(stall.tries, min(sync.retry_base, STALL_RETRY_MAX),
                                     min(sync.retry_max, STALL_RETRY_MAX))
            else:
                if task in self.stalls:
                    self._recovered(task, account)
                if once:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, wait))

    # ---- the tasks --------------------------------------------------------------------------------

    async def _account_step(self, run: AccountRun) -> float:
        """One turn of an account: fetch when due, take in pushed bodies, run the listening queries
        that are due, send what is due; returns the seconds to sleep."""
        self._check_clock()
        paused = run.streaming and run.provider.stream_replaces_polling
        if not paused and self.mono() >= run.next_fetch and self.can_call(run):
            await self.fetch_account(run)
            run.next_fetch = self.mono() + self._next_poll_in(run)
            self._publish_note(run)
        self.ingest_pushed(run)
        if self.listening.due(run) and self.can_call(run):
            await self.listening.step(run)
            self._publish_note(run)
        self.forward_notes(run)
        await self.drain(run)
        return self._idle(run)

    def _idle(self, run: AccountRun) -> float:
        """Seconds to sleep: until the account's next wait ends, at most 0.25 s (new replies queued by
        another process are noticed by polling)."""
        now = self.mono()
        waits = [t - now for t in (run.next_fetch, run.resume_at) if t > now and not run.stopped]
        return min([IDLE, *waits]) if waits else IDLE

    async def _stream_step(self, run: AccountRun) -> float:
        """Push where the platform offers it (IMAP IDLE, Mastodon streaming, Telegram long polling).

        Each streamed result is stored with its cursor like a polled one. While the stream is up,
        polling pauses; when it drops, polling takes over at once and the stream is retried after
        the account's backoff, so nothing arrives only through one path.
        """
        # Start after the first poll has stored its cursors (both would ask the platform at once).
        partial = not run.provider.stream_replaces_polling
        if self.can_stream(run):
            run.streaming = True
            try:
                async for result in run.provider.stream():
                    stats = ingest.ingest(self.db, run.name, [result])
                    self._record_usage(run)
                    run.failures = 0
                    self._status(run.name, "ok", f"live · {stats.new_messages} new" if stats.new_messages
                                 else "live", synced=True)
                    self._publish_note(run)
                    if self._stop.is_set():
                        break
            except ProviderError as exc:
                self._record_usage(run)
                if partial and not isinstance(exc, AuthError):  # polling carries on: back off the stream only
                    run.stream_resume_at = self.mono() + backoff_delay(
                        2, self.config.sync.retry_base, self.config.sync.retry_max)
                    log.info("account %s: stream ended (%s); polling meanwhile", run.name, exc)
                else:
                    self._fault(run, exc)
            finally:
                run.streaming = False
                if partial:
                    self._publish_note(run)
        return max(1.0, self._idle(run))

    async def _sweep_step(self) -> float:
        self._check_clock()
        self.follow_config()
        self.sweep()
        return 1.0

    def follow_config(self) -> None:
        """Every few seconds: put an edited SLA section in force and re-evaluate from the log."""
        if self.config_check is None or time.monotonic() - self._config_checked < POLL_EVERY:
            return
        self._config_checked = time.monotonic()
        try:
            change = self.config_check()
        except ConfigError as exc:
            log.error("config edit not applied (the settings in force stay): %s", exc)
            return
        if change is None:
            return
        if change.sla_changed:
            n = slastate.apply_policy_changes(self.db)
            log.info("SLA policies changed: %d conversation(s) re-evaluated", n)
        if change.on_restart:
            log.warning("config changed in %s: applies when replydesk sync restarts", ", ".join(change.on_restart))

    async def run(self) -> None:
        """Run until ``stop()``: one supervised task per account, per push stream, and the SLA/snooze
        sweeper."""
        self._stop = asyncio.Event()
        await self._supervise("start", self._start_step, once=True)
        tasks = [asyncio.create_task(self._supervise(f"account {run.name}", lambda run=run: self._account_step(run),
                                                     run.name))
                 for run in self.accounts.values()]
        tasks += [asyncio.create_task(self._supervise(f"stream {run.name}", lambda run=run: self._stream_step(run),
                                                      run.name))
                  for run in self.accounts.values() if run.provider.capabilities.streams]
        tasks.append(asyncio.create_task(self._supervise("sla sweep", self._sweep_step)))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for run in self.accounts.values():
                with contextlib.suppress(Exception):
                    await run.provider.aclose()
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    async def _start_step(self) -> float:
        """Settle replies a crash left in 'sending' before anything else leaves (retried like any task)."""
        await self.reconcile_in_flight()
        return 0.0
