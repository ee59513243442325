"""The team engine (``replydesk serve``): platform sync and sending for a team, next to its database.

It is the only process that holds the platform tokens (agents' machines never do), and it is the
solo engine (``replydesk.sync.SyncEngine``, unchanged in what it decides) running on its own replica
of the team's cache, with three things added:

- **leadership per account**: the engine holding the account's advisory lock in PostgreSQL fetches
  and sends; another engine tries every ``LEAD_EVERY`` seconds and takes over as soon as the
  leader's database session ends (a crash, a SIGKILL, a lost network: the server drops the lock with
  the session). A new leader first catches up with the log, then settles the replies the old one
  left in flight (``reconcile_in_flight``), as the solo engine does after a restart;
- **claims**: a reply (or another outbox action: a mark read, an edit or delete of our reply, a
  helpdesk ticket or its comment) leaves only after the team committed it ``sending`` for this
  engine, which the database allows only the account's current leader (``replydesk.claim``). With
  the solo engine's rules (idempotency keys, looking our post up, ``unknown`` when neither is
  possible) each leaves exactly once however many engines run;
- **a replicator** (``replydesk.team.TeamSync`` on a second connection and thread): what this engine
  fetched and sent goes to the team (messages with their cursor in one transaction), and what agents
  queued comes in.

Both added tasks are supervised like the solo engine's own (``SyncEngine._supervise``): an unexpected
error (the replica locked past its timeout, a full disk, a bug) stalls the task, shown in
``health()`` with the solo tasks' stalls, and it is retried with backoff, never ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from replydesk.providers.base import ProviderError
from replydesk.storage import actions, outbox, slastate, team_db, team_local
from replydesk.storage.db import Database
from replydesk.storage.team_db import TeamUrl
from replydesk.sync import AccountRun, SyncEngine
from replydesk.team import TeamSync, password

if TYPE_CHECKING:
    from replydesk.workspace import Workspace

log = logging.getLogger(__name__)

LEAD_EVERY = 1.0  # seconds between tries at the accounts this engine does not lead (and renewals)
CATCH_UP = 10.0  # at most this long to catch up with the log before settling a new account


class TeamEngine(SyncEngine):
    def __init__(self, workspace: Workspace, db: Database, *, secret: Callable[[], str | None] | None = None,
                 clock: Callable[[], float] | None = None, config_check: Any = None,
                 on_health: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(workspace.config, db, workspace.data_dir, clock=clock, config_check=config_check,
                         on_health=on_health)
        link = team_local.link(db)
        if link is None or link.kind != "engine":
            raise team_db.TeamError(f"{workspace.data_dir} is not joined as a team engine")
        self.link = link
        self.url, _ = TeamUrl.parse(link.url)
        self.secret = secret or (lambda: password(self.url))
        self.led: set[str] = set()
        self.coord: Any = None  # the session holding the leadership locks; claims go through it
        self._replica_db = workspace.open_db()
        self.replicator = TeamSync(workspace.data_dir, self._replica_db, secret=self.secret,
                                   leads=lambda: frozenset(self.led), sweep=False,
                                   on_health=lambda _: self._publish_health())

    # ---- only the leader fetches and sends ----------------------------------------------------------

    def can_call(self, run: AccountRun) -> bool:
        return run.name in self.led and super().can_call(run)

    def can_stream(self, run: AccountRun) -> bool:
        return run.name in self.led and super().can_stream(run)

    async def reconcile_in_flight(self, accounts: Collection[str] | None = None) -> None:
        """Only the accounts this engine leads: another engine may be sending the others right now."""
        await super().reconcile_in_flight(self.led if accounts is None else accounts)

    async def drain(self, run: AccountRun, limit: int = 100) -> int:
        """A reply another engine left ``sending`` (its claim reached this replica after the take-over)
        is settled like one of ours interrupted by a crash, before anything else in its thread leaves."""
        if run.name in self.led and outbox.in_flight(self.db, run.name):
            await super().reconcile_in_flight([run.name])
        return await super().drain(run, limit)

    def forward_notes(self, run: AccountRun) -> int:
        """Only the helpdesk account's leader forwards notes to its tickets (once for the team: the
        comment's key is derived from the note, so a comment a failover queues again is the same one)."""
        return super().forward_notes(run) if run.name in self.led else 0

    async def send_one(self, run: AccountRun, item: outbox.OutboxItem, uncertain: bool = False) -> bool:
        if not self._claim(item):
            return False
        return await super().send_one(run, item, uncertain)

    def _claim(self, item: outbox.OutboxItem) -> bool:
        """The team's word that this engine, the account's leader, sends this reply now.

        Each try is a command of its own (a unique id): an attempt the platform refused is given back
        (``attempts`` stays), so the next claim is for the same attempt number, and its own id keeps
        it its own line in the team's log. The team copes with a repeated id too (``replydesk.claim``:
        it stands while this engine holds the reply, otherwise it is logged under a suffixed id), so an
        older engine's claims are never refused as duplicate commands."""
        if self.coord is None or item.account not in self.led:
            return False
        try:
            outcome = team_db.claim(self.coord, item.key, item.attempts,
                                    f"{self.link.replica}:claim:{item.key}:{item.attempts + 1}:{uuid.uuid4().hex[:12]}")
        except team_db.TEAM_ERRORS as exc:
            self._lose_all(str(team_db.explain(exc, self.url)))
            return False
        if not outcome.get("ok"):
            log.info("reply %s not claimed: %s", item.key, outcome.get("detail"))
            row = outcome.get("outbox")
            if isinstance(row, dict) and row.get("state") in ("sent", "failed", "unknown", "cancelled"):
                team_local.adopt_outbox_row(self.db, row)  # the team is ahead: never wait behind it
            return False
        return True

    def _send_fault(self, run: AccountRun, key: str, exc: ProviderError, attempted: bool) -> None:
        super()._send_fault(run, key, exc, attempted)
        item = outbox.get(self.db, key)
        if item is not None and item.state == "queued":  # a retry wait: the team shows why it waits
            team_local.note_outbox_change(self.db, key)

    def sweep(self) -> None:
        """Snoozes of the accounts this engine leads wake here, once for the team; SLAs as solo; the
        rules' timers and the surveys of the accounts it leads, once for the team too."""
        due = team_local.due_snoozes(self.db, self.led, self.db.now())
        if due:
            actions.set_status(self.db, due, "open", actor="system")
        late = slastate.due_conversations(self.db, self.db.now())
        if late:
            with self.db.transaction():
                slastate.refresh(self.db, late)
        self.run_timers()
        if self.surveys is not None:
            self.surveys.run(self.db, accounts=frozenset(self.led))

    def run_timers(self) -> None:
        """Only the accounts this engine leads. The rules themselves run in the leader's ingest (the
        one engine that fetches an account); what the team's log brings in runs no rule anywhere."""
        if self.rules is not None:
            self.rules.run_timers(self.db, accounts=frozenset(self.led))

    # ---- running ------------------------------------------------------------------------------------

    def stop(self) -> None:
        super().stop()
        self.replicator.stop()

    def health(self) -> dict[str, Any]:
        """The solo tasks' stalls and the replicator's together (the first stall gives the reason)."""
        mine, theirs = super().health(), self.replicator.health()
        if theirs["state"] != "stalled":
            return mine
        if mine["state"] != "stalled" or theirs["since"] < mine["since"]:
            return {**theirs, "tasks": {**mine.get("tasks", {}), **theirs["tasks"]}}
        return {**mine, "tasks": {**mine["tasks"], **theirs["tasks"]}}

    async def run(self) -> None:
        replicator = asyncio.create_task(self._supervise("team link", self._replicate_step))
        leader = asyncio.create_task(self._supervise("team lead", self._lead_step))
        try:
            await super().run()
        finally:
            self.replicator.stop()
            leader.cancel()
            await asyncio.gather(leader, replicator, return_exceptions=True)
            self._lose_all("stopping")
            self._replica_db.close()

    async def _replicate_step(self) -> float:
        """The replicator's loop (it retries the team's faults and its replica's itself); anything that
        still escapes it is the supervisor's to stall and retry."""
        await self.replicator.run()
        return LEAD_EVERY

    async def _lead_step(self) -> float:
        """One look at the leadership: the team out of reach drops every lead (another engine may take
        them); any other error (this replica failing under a take-over) stalls the step."""
        try:
            await self._lead_once()
        except team_db.TEAM_ERRORS as exc:
            self._lose_all(str(team_db.explain(exc, self.url) if not isinstance(exc, team_db.TeamError) else exc))
        return LEAD_EVERY

    async def _lead_once(self) -> None:
        if self.coord is None:
            secret = self.secret()
            if not secret:
                raise team_db.TeamAuthError(f"no password stored for {self.url.display()}")
            self.coord = await asyncio.to_thread(team_db.connect, self.url, secret,
                                                 application=f"replydesk engine {self.link.agent} (lead)")
        if self.led:
            held = team_db.renew(self.coord, self.led)
            for lost in sorted(self.led - held):
                log.warning("lost the lead of %s", lost)
            self.led &= held
        for name, run in self.accounts.items():
            if name not in self.led and team_db.lead(self.coord, name):
                await self._take_over(name, run)

    async def _take_over(self, name: str, run: AccountRun) -> None:
        """Now leading ``name``: catch up with the log, settle what the last leader left in flight."""
        head = team_db.head(self.coord)
        deadline = time.monotonic() + CATCH_UP
        while team_local.cursor(self.db) < head and time.monotonic() < deadline and not self._stop.is_set():
            await asyncio.sleep(0.05)
        await super().reconcile_in_flight([name])
        self.led.add(name)
        run.next_fetch = 0.0
        log.warning("leading %s (team engine %s)", name, self.link.agent)

    def _lose_all(self, why: str) -> None:
        if self.led:
            log.warning("no longer leading %s: %s", ", ".join(sorted(self.led)), why)
        self.led.clear()
        if self.coord is not None:
            with contextlib.suppress(*team_db.TEAM_ERRORS):
                self.coord.close()
            self.coord = None
