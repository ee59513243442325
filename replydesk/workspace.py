"""A workspace = a data dir (SQLite cache, ledger, lock) + a config. Shared by the CLI, TUI and tests.

``EngineThread`` runs the sync engine on its own thread and event loop with its own connection, so
neither the TUI's event loop nor its read connection ever waits on the network or on a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from replydesk import teamlink
from replydesk.config import Config
from replydesk.config_watch import ConfigChange, ConfigSource, ConfigWatcher
from replydesk.sla import SlaEngine
from replydesk.storage import remembered, slastate
from replydesk.storage.db import Database, StorageError, open_database
from replydesk.storage.lock import EngineLock
from replydesk.waits import pause

if TYPE_CHECKING:  # the engine (providers, httpx, tenacity) loads when a sync starts, not with the console
    from replydesk.sync import SyncEngine
    from replydesk.team import TeamSync

log = logging.getLogger(__name__)


@dataclass
class Workspace:
    data_dir: Path
    config: Config
    clock: Callable[[], float] | None = None
    #: The config file, to follow edits while running (None: a config built in code, as in tests).
    config_source: ConfigSource | None = None
    #: ``paths.config_digest`` of the file ``config`` was read from: the database remembers the
    #: validated SLA settings under it, so read commands need not validate them again.
    config_digest: str | None = None
    _dbs: weakref.WeakSet[Database] = field(default_factory=weakref.WeakSet, init=False, repr=False)
    _watcher: ConfigWatcher | None = field(default=None, init=False, repr=False)
    _watch_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    #: Set when the workspace is joined to a team (``team.json``): its engine is then the team's.
    team: teamlink.TeamLink | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.config_source is not None:  # the file as it is now is the baseline
            self._watcher = ConfigWatcher(self.config_source, self.config)
        try:
            self.team = teamlink.read(self.data_dir)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        if self.team is not None:  # in a team, "me" is the agent the workspace joined as
            self.config = self.config.model_copy(
                update={"ui": self.config.ui.model_copy(update={"agent": self.team.agent})})

    @property
    def syncs(self) -> bool:
        """Whether there is anything for an engine to do: platform accounts, or a team to follow."""
        return bool(self.config.accounts) or self.team is not None

    def open_db(self, create: bool = True) -> Database:
        """A new connection (one per thread: the UI reader, the engine writer, the CLI).

        If the SLA policies changed since the workspace was last opened, every conversation is
        re-evaluated now, so the inbox order and states follow the edit at once.
        """
        db = open_database(self.data_dir, sla=SlaEngine(self.config.sla), clock=self.clock, create=create,
                           lock_timeout=self.config.sync.lock_timeout)
        try:
            slastate.apply_policy_changes(db)
            if self.config_digest is not None:
                remembered.remember(db, self.config_digest, slastate.policies_fingerprint(db),
                                    self.config.sla.model_dump(mode="json"))
        except BaseException:
            db.close()
            raise
        self._dbs.add(db)
        return db

    def check_config(self) -> ConfigChange | None:
        """Follow an edit of the config file (call from a worker thread, every few seconds).

        A changed SLA section is put in force on every connection of this workspace at once;
        the caller then re-evaluates with ``slastate.apply_policy_changes`` on its writer.
        Raises ``ConfigError`` for a broken edit (the settings in force stay).
        """
        if self._watcher is None:
            return None
        with self._watch_lock:
            change = self._watcher.poll()
            if change is not None and change.sla_changed:
                self.config = self.config.model_copy(update={"sla": change.config.sla})
                self.config_digest = None  # the settings now in force came from an edit of the file
                for db in list(self._dbs):
                    db.sla = SlaEngine(change.config.sla)
            return change

    def engine(self, db: Database, *, follow_config: bool = False,
               on_health: Callable[[dict], None] | None = None) -> SyncEngine | TeamSync:
        """The sync engine on ``db``; ``follow_config``: it applies SLA edits itself (the sync
        daemon; inside the console, the console does, to tell the user). ``on_health``: told when a
        task stalls or recovers (the lease's note).

        In a workspace joined to a team it is the team's: an agent's local engine (push, pull,
        presence: ``replydesk.team``), or on an engine's workspace the team engine."""
        check = self.check_config if follow_config else None
        if self.team is not None and self.team.kind == "engine":
            from replydesk.team_engine import TeamEngine

            return TeamEngine(self, db, clock=self.clock, config_check=check, on_health=on_health)
        if self.team is not None:
            from replydesk.team import TeamSync

            return TeamSync(self.data_dir, db, on_health=on_health)
        from replydesk.sync import SyncEngine

        return SyncEngine(self.config, db, self.data_dir, clock=self.clock, config_check=check,
                          on_health=on_health)


class EngineThread:
    """The sync engine in the background; ``start()`` returns False when another process writes.

    Supervised like the engine's own tasks: if the engine cannot even start (the database is locked
    past its timeout, the disk is full), the thread keeps the lease and tries again with backoff
    until it can, instead of ending; ``health()`` says why it waits.
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.lock = EngineLock(workspace.data_dir)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: SyncEngine | TeamSync | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self.error: BaseException | None = None
        self._failed_since = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        """``stop()`` was called (an engine no longer running is then no surprise)."""
        return self._stopping.is_set()

    def start(self) -> bool:
        if not self.workspace.syncs:
            return False  # offline review of a cache: nothing to sync
        if not self.lock.acquire():
            return False
        self._thread = threading.Thread(target=self._main, name="replydesk-sync", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        return True

    def health(self) -> dict:
        """The engine's ``health()``, or why it has not started (``{"state": "starting"|"stalled", ...}``)."""
        if self._engine is not None:
            return self._engine.health()
        if self.error is not None:
            return {"state": "stalled", "reason": self._reason(self.error), "since": self._failed_since}
        return {"state": "starting"}

    def _reason(self, exc: BaseException) -> str:
        from replydesk import secrets
        from replydesk.storage.faults import describe_failure

        return secrets.mask(describe_failure(exc, self.workspace.data_dir / "replydesk.db"))[:200]

    def _prepare(self) -> tuple[Database, SyncEngine | TeamSync] | None:
        """The engine and its connection, retried with backoff until both are made or ``stop()``
        (opening migrates and the engine records its accounts: both write)."""
        delay = 0.5
        while not self._stopping.is_set():
            db = None
            try:
                db = self.workspace.open_db()
                engine = self.workspace.engine(db, on_health=self.lock.note)
            except Exception as exc:  # locked past the timeout, a full disk, damage: wait and retry
                if db is not None:
                    db.close()
                if self.error is None or str(exc) != str(self.error):
                    log.warning("sync engine cannot start yet: %s", self._reason(exc))
                    self._failed_since = time.time()
                self.error = exc
                self.lock.note(self.health())
                self._ready.set()
                pause(self._stopping, delay)
                delay = min(delay * 2, 30.0)
                continue
            self.error = None
            return db, engine
        return None

    def _main(self) -> None:
        db = None
        try:
            prepared = self._prepare()
            if prepared is None:
                return
            db, self._engine = prepared
            self.lock.note(self._engine.health())
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._ready.set()
            if not self._stopping.is_set():
                self._loop.run_until_complete(self._engine.run())
        except BaseException as exc:  # shown in the status bar; never kills the UI
            log.exception("sync engine stopped")
            self.error = exc
            self._failed_since = time.time()
            self._ready.set()
        finally:
            if db is not None:
                db.close()
            if self._loop is not None:
                self._loop.close()
            self.lock.release()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._engine is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._engine.stop)
        if self._thread is not None:
            self._thread.join(timeout)
