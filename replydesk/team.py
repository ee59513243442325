"""A joined workspace's local engine: push this replica's changes, pull the team's, share presence.

It is what ``replydesk sync`` (and the console's own engine) runs in a workspace joined to a team:
agents' machines never talk to a platform. One loop, on its own thread with its own connections:

- push first: the local changes past the pointer go to the team as commands in one transaction per
  batch; a refused one is undone locally with the team's value and the user is told;
- then pull: the team's events past the cursor, applied in seq order. LISTEN/NOTIFY wakes the loop
  within milliseconds, but a notification is never data: without one, the loop pulls every
  ``POLL`` seconds anyway, and after a reconnect it simply pulls past its cursor;
- presence: what the console announces (``replydesk.presence``) becomes a heartbeat row that expires
  after ``PRESENCE_TTL``; others' rows are copied into the cache, written only when they change.

Offline (the server down, the network gone) the console keeps working on the cache; changes wait
and go out in order when the team is back. A change the server refuses for what it is (an error it
raised about the command: ``team_db.refusal``) is no reason to wait: it is refused like a conflict,
undone in the cache and told, and the changes behind it go out. The loop is supervised like the solo engine's tasks: a
failure of the cache itself (locked past its timeout, a full disk) or a bug stalls it — logged once,
in ``health()`` (the console, the lease note) and the team's status row — and it retries with
backoff until the cause is gone, never ending. A team engine runs the same loop for its replica, and
also publishes the cursors, facts and states of the accounts it leads (``replydesk.team_engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replydesk import presence, secrets
from replydesk.storage import accounts as account_state
from replydesk.storage import ingest, slastate, team_db, team_local
from replydesk.storage.db import DATABASE_ERRORS, Database
from replydesk.storage.faults import describe_failure
from replydesk.storage.team_db import TeamUrl
from replydesk.waits import pause

log = logging.getLogger(__name__)

#: The status bar shows the team link like an account.
TEAM_ACCOUNT = "team"
TICK = 0.05  # seconds between looks at the local cache and the presence file
POLL = 2.0  # a pull without any notification
#: Seconds between two pulls while notifications keep coming: the first after a quiet spell is
#: pulled at once, the ones after it wait for this gap and are pulled together. An engine pushing
#: a big fetch notifies about 50 times a second; twenty agents pulling on each made the team's
#: server a thousand queries a second. 50 ms: at most 20 pulls a second, and an action a teammate
#: makes right after another still shows within the gap (0.2 s made the bench's propagation, one
#: action after the other, 150 ms instead of 55).
PULL_GAP = 0.05
LIVE_EVERY = 5.0
HEARTBEAT = 20.0
PRESENCE_TTL = 60.0
PUSH_BATCH = 200
PULL_BATCH = 2000  # events a transaction while catching up (a first pull, back from offline)
LIVE_BATCH = 200  # while in step: small transactions, so a console in the same process keeps its frames
RETRY_MAX = 30.0


def password(url: TeamUrl) -> str | None:
    """The agent's database password: the keyring (or its environment fallback), never a file."""
    return secrets.fetch(url.secret_name())


#: How much lower than the console an agent's team link runs (nice levels, where threads have them).
NICE = 10


def background_priority() -> None:
    """Lower the calling thread's CPU priority (for good: call it on a thread of its own).

    An agent's team link is background work (pulling what every other agent and the engine did):
    under load it must yield to the console's keys in the same process, and to an engine's ingest on
    a machine it shares. Linux only (a thread has its own nice value there); elsewhere nothing changes."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + NICE))


def _state_of(error: Exception) -> str:
    """The team link's state in the status bar for a failure: only "offline" says the changes wait."""
    if isinstance(error, team_db.TeamAuthError):
        return "auth_error"
    return "error" if isinstance(error, team_db.TeamRefused) else "offline"


def backoff(failures: int) -> float:
    return min(RETRY_MAX, 0.5 * 2 ** min(failures, 8))


@dataclass
class SyncPass:
    """What one push-and-pull did (``replydesk sync --once``, tests)."""

    pushed: int = 0
    refused: list[str] = field(default_factory=list)
    pulled: int = 0
    messages: int = 0
    cursor: int = 0
    head: int = 0


class TeamSync:
    """Keeps one cache in step with the team. ``run()``/``stop()`` like the solo engine."""

    def __init__(self, data_dir: Path, db: Database, *, secret: Callable[[], str | None] | None = None,
                 leads: Callable[[], frozenset[str]] | None = None, sweep: bool = True,
                 progress: Callable[[int, int], None] | None = None,
                 on_health: Callable[[dict[str, Any]], None] | None = None) -> None:
        link = team_local.link(db)
        if link is None:
            raise team_db.TeamError(f"{data_dir} is not joined to a team ('replydesk team join URL --agent NAME')")
        team_local.ensure_trigger(db)  # a workspace joined before card edits were pushed
        self.data_dir = Path(data_dir)
        self.db = db
        self.link = link
        self.url, _ = TeamUrl.parse(link.url)
        self.secret = secret or (lambda: password(self.url))
        self.engine = link.kind == "engine"
        self.leads = leads or (lambda: frozenset())
        self.sweep_sla = sweep
        self.progress = progress
        self.work: Any = None
        self.listener: Any = None
        self._stop = threading.Event()
        self._state: tuple[str, str] | None = None
        self._state_written = 0.0
        self._doing = presence.NOTHING
        self._published: dict[Any, Any] = {}
        self.connected = threading.Event()
        self.on_health = on_health
        self._stall: tuple[str, float, int] | None = None  # (reason, since (wall time), tries)

    # ---- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """The loop on a thread of its own (an agent's runs at a lower priority: ``background_priority``)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def main() -> None:
            try:
                self.run_blocking()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed first (its task was cancelled)
                    loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=main, name="replydesk-team-link", daemon=True).start()
        await asyncio.shield(done)

    async def run_once(self) -> SyncPass:
        return await asyncio.to_thread(self.once)

    def stop(self) -> None:
        self._stop.set()

    def once(self) -> SyncPass:
        """Connect, push, pull everything, disconnect (a one-off run is not "online": no presence)."""
        try:
            self._connect()
            return self.cycle(presence=False)
        except team_db.TEAM_ERRORS as exc:
            error = self._explain(exc)
            self._report(_state_of(error), str(error))
            raise error from None
        finally:
            self._close()

    def run_blocking(self) -> None:
        if not self.engine:
            background_priority()
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self._connect()
                    failures = 0
                    self._loop()
                except team_db.TEAM_ERRORS as exc:  # the team is out of reach: offline, the cache works on
                    failures += 1
                    error = self._explain(exc)
                    log.warning("team sync: %s (retrying in %.0fs)", error, backoff(failures))
                    self._close()
                    self._report(_state_of(error), str(error))
                    pause(self._stop, backoff(failures))
                except Exception as exc:  # the cache (locked, a full disk) or a bug: stall, retry, never end
                    failures += 1
                    self._stalled(exc)
                    self._close()
                    pause(self._stop, backoff(failures))
        finally:
            self._close(leave=True)

    # ---- supervision ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """As the solo engine's ``health()``: ``{"state": "running"}`` or why the link is stalled."""
        if self._stall is None:
            return {"state": "running"}
        reason, since, tries = self._stall
        return {"state": "stalled", "reason": reason, "since": since,
                "tasks": {"team link": {"reason": reason, "since": since, "tries": tries}}}

    def _publish_health(self) -> None:
        if self.on_health is not None:
            with contextlib.suppress(Exception):
                self.on_health(self.health())

    def _stalled(self, exc: Exception) -> None:
        """Record a failed try: logged (with the traceback when it is not a database fault) once per
        reason, told to ``on_health``, and in the team's status row when the cache takes the write."""
        reason = secrets.mask(describe_failure(exc, self.db.path, self.db.lock_timeout))[:200]
        if self._stall is not None and self._stall[0] == reason:
            self._stall = (reason, self._stall[1], self._stall[2] + 1)
            log.debug("team link: still stalled (%s), try %d", reason, self._stall[2])
            return
        self._stall = (reason, time.time(), 1 if self._stall is None else self._stall[2] + 1)
        if isinstance(exc, (*DATABASE_ERRORS, OSError)):
            log.warning("team link stalled: %s; retrying with backoff", reason)
        else:
            log.exception("team link stalled: %s; retrying with backoff", reason)
        self._publish_health()
        since = time.strftime("%H:%M", time.localtime(self._stall[1]))
        self._report("stalled", f"{reason} since {since}; retrying by itself")

    def _recovered(self) -> None:
        if self._stall is None:
            return
        reason, _, tries = self._stall
        self._stall = None
        log.warning("team link resumed after %d failed tr%s (%s)", tries, "y" if tries == 1 else "ies", reason)
        self._publish_health()

    def _explain(self, exc: BaseException) -> Exception:
        if isinstance(exc, team_db.TeamError):
            return exc
        if isinstance(exc, team_db.TEAM_ERRORS):
            return team_db.explain(exc, self.url, None)
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))

    def _connect(self) -> None:
        if self.work is not None:
            return
        secret = self.secret()
        if not secret:
            raise team_db.TeamAuthError(f"no password stored for {self.url.display()}: run 'replydesk team login'")
        name = f"replydesk {self.link.kind} {self.link.agent}"
        self.work = team_db.connect(self.url, secret, application=name)
        self.listener = team_db.connect(self.url, secret, application=name + " (listen)")
        team_db.listen(self.listener)
        identity = team_db.whoami(self.work, self.url)
        if identity.name != self.link.agent:
            raise team_db.TeamAuthError(f"{self.url.user!r} is agent {identity.name!r} of the team, but this "
                                        f"workspace joined as {self.link.agent!r}: join again")
        self.connected.set()

    def _close(self, leave: bool = False) -> None:
        self.connected.clear()
        for name in ("work", "listener"):
            conn = getattr(self, name)
            if conn is None:
                continue
            if leave and name == "work":
                with contextlib.suppress(*team_db.TEAM_ERRORS):
                    team_db.leave(conn)
            with contextlib.suppress(*team_db.TEAM_ERRORS):
                conn.close()
            setattr(self, name, None)

    def _report(self, state: str, detail: str = "") -> None:
        """The team link's state in the status bar; written on a change (or a minute on): a write
        wakes every reader of the cache."""
        detail = secrets.mask(detail)  # a server's error may quote what we sent it
        now = time.monotonic()
        if self._state == (state, detail) and now - self._state_written < 60:
            return
        try:
            with self.db.transaction():
                ingest.ensure_account(self.db, TEAM_ACCOUNT, "team", "team")
            account_state.set_status(self.db, TEAM_ACCOUNT, state, detail, synced=state == "ok")
        except DATABASE_ERRORS as exc:  # the cache itself is failing: say it in the log, retry later
            log.error("team sync: cannot record the team's state: %s", exc)
            return
        self._state, self._state_written = (state, detail), now

    # ---- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        version = self.db.data_version()
        stamp = presence.stamp(self.data_dir)
        self._doing = presence.read(self.data_dir)
        self.cycle()
        self._recovered()
        last_pull = last_live = last_beat = last_sweep = time.monotonic()
        notified = False  # events announced and not pulled yet (waiting for PULL_GAP)
        while not self._stop.is_set():
            wait = TICK if not notified else min(TICK, max(last_pull + PULL_GAP - time.monotonic(), 0.0))
            channels = team_db.wait_notified(self.listener, wait)
            now = time.monotonic()
            notified = notified or team_db.EVENTS_CHANNEL in channels
            pull_now = (notified and now - last_pull >= PULL_GAP) or now - last_pull >= POLL
            live_now = team_db.LIVE_CHANNEL in channels or now - last_live >= LIVE_EVERY
            current = self.db.data_version()
            if current != version:
                version = current
                self.push()
            new_stamp = presence.stamp(self.data_dir)
            if new_stamp != stamp:
                stamp = new_stamp
                doing = presence.read(self.data_dir)
                if doing != self._doing:
                    self._doing = doing
                    last_beat = 0.0
            if now - last_beat >= HEARTBEAT:
                self.heartbeat()
                last_beat = now
            if pull_now:
                self.pull(LIVE_BATCH)
                last_pull, notified = now, False
            if live_now:
                self.refresh_live()
                last_live = now
            if self.sweep_sla and now - last_sweep >= 1.0:
                self.sweep()
                last_sweep = now
            self._report("ok")

    def cycle(self, presence: bool = True) -> SyncPass:
        """Push, pull until caught up, presence and live state: one full round."""
        report = self.push()
        pulled = self.pull()
        report.pulled, report.messages = pulled.events, pulled.messages
        if presence:
            self.heartbeat()
        self.refresh_live()
        report.cursor = team_local.cursor(self.db)
        report.head = team_db.head(self.work)
        self._report("ok")
        return report

    # ---- push -------------------------------------------------------------------------------------

    def push(self) -> SyncPass:
        report = SyncPass()
        while True:
            with team_local.snapshot(self.db):
                changes, last, complete = team_local.pending_changes(self.db, self.link, leads=self.leads(),
                                                                     limit=PUSH_BATCH)
                extra = self._engine_commands() if self.engine and complete else []
            commands = [c.command for c in changes] + [c for c, _ in extra]
            outcomes = team_db.submit_many(self.work, commands) if commands else []
            mine = outcomes[:len(changes)]
            for i, (change, outcome) in enumerate(zip(changes, mine, strict=True)):
                if change.kind == "retry" and outcome.get("reason") == "missing":
                    forced = team_local.replace_as_forced_reply(self.db, self.link, change)
                    if forced is not None:  # a reply the team refused before: queue it now, as confirmed
                        mine[i] = team_db.submit_many(self.work, [forced])[0]
            pushed = team_local.record_outcomes(self.db, changes, mine, last, self.link)
            for (_, mark), outcome in zip(extra, outcomes[len(changes):], strict=True):
                if outcome.get("ok"):
                    self._published[mark[0]] = mark[1]
            report.pushed += pushed.accepted
            report.refused += pushed.refused
            for text in pushed.refused:
                log.warning("team: %s", text)
            if complete:
                return report

    def _engine_commands(self) -> list[tuple[dict[str, Any], tuple[Any, Any]]]:
        """An engine's cursors and account facts for the accounts it leads, when they changed."""
        out: list[tuple[dict[str, Any], tuple[Any, Any]]] = []
        leads = self.leads()
        base = {"agent": self.link.agent, "at": self.db.now()}
        for account, stream, value in team_local.cursors_of(self.db, leads):
            if self._published.get(("cursor", account, stream)) != value:
                out.append(({**base, "kind": "cursor", "account": account, "stream": stream, "cursor": value},
                            (("cursor", account, stream), value)))
        for row in team_local.account_rows(self.db, leads):
            if self._published.get(("account", row["name"])) != row:
                out.append(({**base, "kind": "account", **row}, (("account", row["name"]), row)))
        return out

    # ---- pull -------------------------------------------------------------------------------------

    def pull(self, batch: int = PULL_BATCH) -> team_local.ApplyReport:
        total = team_local.ApplyReport()
        head = None
        while True:
            events = team_db.pull(self.work, team_local.cursor(self.db), batch)
            if not events:
                break
            report = team_local.apply_events(self.db, events, self.link, leads=self.leads())
            total.events += report.events
            total.messages += report.messages
            if self.progress is not None:
                head = head if head is not None and head >= events[-1].seq else team_db.head(self.work)
                self.progress(events[-1].seq, head)
            if len(events) < batch or self._stop.is_set():  # asked to stop: the rest waits for the next run
                break
            time.sleep(0)  # let another thread (a console's frame) in between batches
        return total

    # ---- presence and live state ------------------------------------------------------------------

    def heartbeat(self) -> None:
        doing = self._doing
        team_db.heartbeat(self.work, doing.conversation, doing.activity, PRESENCE_TTL)

    def refresh_live(self) -> None:
        live = team_db.live(self.work)
        team_local.replace_presence(self.db, live.presence, self.link.agent)
        if self.engine:
            for row in team_local.local_account_states(self.db, self.leads()):
                if self._published.get(("status", row[0])) != row:
                    team_db.set_account_status(self.work, *row)
                    self._published[("status", row[0])] = row
        else:
            team_local.replace_account_states(self.db, [r for r in live.accounts if r[0] != TEAM_ACCOUNT])

    def sweep(self) -> None:
        """SLA deadlines that just passed, as the solo engine's sweep (no snoozes: the team wakes them)."""
        due = slastate.due_conversations(self.db, self.db.now())
        if due:
            with self.db.transaction():
                slastate.refresh(self.db, due)
