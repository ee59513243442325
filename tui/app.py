"""The replydesk console's shell: the sync engine, the store, the timers, pacing and the config file.

What outlives a screen lives here; the inbox and its actions are ``tui.main_screen.MainScreen``,
the first screen on the stack. A 1-second timer repaints the main screen's countdowns and asks a
worker whether the database moved (``Store.changed``: the engine or our writer committed); every
other second, whether the config file was edited. Workers that fail unexpectedly report here
(``WorkerFailed``) and the status bar says so; the console stays up.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual import events, on
from textual.app import App, SystemCommand
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen

from replydesk import foreground
from replydesk.config import ConfigError
from replydesk.platforms import info
from replydesk.safetext import one_line
from replydesk.storage import slastate
from replydesk.storage.deadlines import upcoming
from replydesk.timeparse import user_zone
from replydesk.tui.alerts import Alert, AlertPacer, Alerts, summary
from replydesk.tui.composer import Composer
from replydesk.tui.contrast import ContrastFilter
from replydesk.tui.format import clock_time
from replydesk.tui.inbox import InboxList
from replydesk.tui.main_screen import MainScreen
from replydesk.tui.messages import (
    ConfigReloaded,
    DataChanged,
    DeadlinesLoaded,
    EngineHealth,
    EngineStatus,
    WorkerFailed,
    WorkerRecovered,
)
from replydesk.tui.pacing import GcPacer, prefer_ui_thread
from replydesk.tui.store import Store
from replydesk.tui.thread import ThreadView
from replydesk.tui.workers import background
from replydesk.workspace import EngineThread, Workspace


def _workspace_tz(workspace: Workspace) -> dt.tzinfo:
    """The zone the console shows and reads times in: ``ui.timezone``, else the system's (the same
    as the CLI's, so "tomorrow 9:00" is one instant whichever of them was used)."""
    return user_zone(workspace.config.ui.timezone)


class ReplydeskApp(App[int]):
    """The console: one main screen (the inbox) plus dialogs, help and the report on top of it."""

    TITLE = "replydesk"

    def __init__(self, workspace: Workspace, *, start_engine: bool = True,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        # Last of the line filters: every text segment reads at WCAG AA in any theme and colour mode.
        self._filters.append(ContrastFilter())
        self.workspace = workspace
        self.clock: Callable[[], float] = clock or workspace.clock or time.time
        self.start_engine = start_engine
        self.tz = _workspace_tz(workspace)
        self.theme = workspace.config.ui.theme  # before the first frame: no flash of the default
        self.store = Store(workspace)
        self.engine: EngineThread | None = None
        #: Worker groups whose last run failed -> what the status bar says (see ``tui.workers``).
        self.failing: dict[str, str] = {}
        self.gc_pacer = GcPacer()
        self._switch_interval = sys.getswitchinterval()
        self._config_ticks = 0
        #: Another process syncs this workspace: the console watches for it to stop, then takes over.
        self.engine_elsewhere = False
        self.alerts = Alerts(self.clock())
        self.alert_pacer = AlertPacer(float(self.workspace.config.ui.alerts.every))
        self._deadlines_read_at = -10  # the tick count of the last read of the next deadlines

    def get_default_screen(self) -> Screen:
        note = "starting sync…" if self.start_engine else "sync off"
        return MainScreen(self.store, self.workspace.config.ui, self.clock, self.tz, engine_note=note,
                          has_accounts=bool(self.workspace.config.accounts))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own palette entries, less the ones ours already hold (Quit is ours: it asks
        when replies wait) and the keys panel (``?`` is the help for this console)."""
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):
                yield command

    @property
    def main(self) -> MainScreen:
        """The main screen, even while a dialog, the palette or the report is on top."""
        if not self.screen_stack:  # shutting down: callers treat this like a missing widget
            raise NoMatches("no main screen")
        return self.screen_stack[0]  # type: ignore[return-value]

    # The main screen's widgets, as tests and the bench reach them.

    @property
    def inbox(self) -> InboxList:
        return self.main.inbox

    @property
    def composer(self) -> Composer:
        return self.main.composer

    @property
    def thread_view(self) -> ThreadView:
        return self.main.thread_view

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications carry names, tags and error text that may come from customers: never markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def on_mount(self) -> None:
        if self.workspace.config.keymap:
            self.set_keymap(self.workspace.config.keymap)
        if self.start_engine:
            self._start_engine()
        self._poll()
        self.set_interval(1.0, self._tick)
        # Between ticks too: a teammate's presence or change shows within a second of reaching the
        # cache (one cheap PRAGMA per look; the reload happens only when something moved).
        self.set_interval(0.25, self._poll_if_idle)
        self.set_timer(0.5, self.gc_pacer.started)  # start-up's objects: modules, styles, widgets
        self._switch_interval = prefer_ui_thread()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.gc_pacer.input()
            foreground.key_arrived()  # the engine's thread waits for this key's frame
            self.call_after_refresh(foreground.key_painted)
            if not event.is_forwarded and await self._split_alt(event):
                return
        await super().on_event(event)

    async def _split_alt(self, event: events.Key) -> bool:
        """Escape then a key, typed quickly (a vim user's ``Esc j``), reaches us as one alt+key:
        the terminal (or tmux, whose escape-time is longer) sends them together. Where no binding
        takes that alt+key, it is handled as escape, then the key."""
        key = event.key
        if not key.startswith("alt+") or key in self.screen.active_bindings:
            return False
        rest = key[4:]
        if not rest or "+" in rest.replace("shift+", ""):
            return False
        rest = rest[-1].upper() if rest.startswith("shift+") and len(rest) == 7 else rest
        char = rest if len(rest) == 1 else None
        if isinstance(self.screen, ModalScreen):
            # A dialog: escape dismisses it, and the key is for the screen below once it is gone.
            await super().on_event(events.Key("escape", "\x1b"))
            self.call_after_refresh(self.post_message, events.Key(rest, char))
            return True
        # The main screen: escape's binding runs now (leaving the thread, closing the composer,
        # which hands the focus back to the list at once), then the key goes where escape left the
        # focus, ahead of any key typed after it.
        if not await self._check_bindings("escape"):
            await super().on_event(events.Key("escape", "\x1b"))
        await super().on_event(events.Key(rest, char))
        return True

    async def on_unmount(self) -> None:
        self.gc_pacer.stopped()
        foreground.key_painted()
        sys.setswitchinterval(self._switch_interval)
        if self.engine is not None:
            import asyncio

            await asyncio.to_thread(self.engine.stop)
        self.store.close()

    # ---- the engine -------------------------------------------------------------------------------

    @background("starting the sync engine", group="engine")
    def _start_engine(self) -> None:
        self.store.open()
        if not self.workspace.syncs:
            self.post_message(EngineStatus(False, "offline review: no accounts configured"))
            return
        engine = EngineThread(self.workspace)
        if engine.start():
            self.engine = engine
            self.post_message(EngineStatus(True, ""))
        else:
            self.engine_elsewhere = True
            self.post_message(EngineStatus(False, "sync runs in another replydesk process"))

    @background("taking over syncing", group="engine", exclusive=True)
    def _take_over(self) -> None:
        """Another replydesk was syncing: once it has stopped (its lease is free), sync here, as
        ``replydesk sync`` would if started now; while it runs, show its stall if it has one."""
        engine = EngineThread(self.workspace)
        if engine.start():
            self.engine, self.engine_elsewhere = engine, False
            self.post_message(EngineStatus(True, "took over syncing (the other replydesk stopped)"))
            return
        note = engine.lock.holder_note()
        if note.get("state") == "stalled":
            self.post_message(EngineHealth(self._stall_text(note, "the other replydesk's sync")))
        else:
            self.post_message(EngineHealth(None))

    def _stall_text(self, note: dict, who: str = "sync") -> str:
        since = note.get("since")
        at = f" since {clock_time(since, self.clock(), self.tz)}" if isinstance(since, int | float) else ""
        return f"{who} stalled: {note.get('reason', '?')}{at}, retrying"

    @on(EngineStatus)
    def _on_engine(self, event: EngineStatus) -> None:
        self.main.set_engine_note(event.note)
        if event.running and event.note:
            self.notify(event.note.capitalize(), timeout=6)

    @on(EngineHealth)
    def _on_engine_health(self, event: EngineHealth) -> None:
        if event.problem:
            self.failing = {**self.failing, "engine": event.problem}
        elif "engine" in self.failing:
            self.failing = {k: v for k, v in self.failing.items() if k != "engine"}
        else:
            return
        self._show_failures()

    # ---- timers -----------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Once a second: the main screen's countdowns, a data_version probe, the config file."""
        try:
            main = self.main
            main.tick()
        except NoMatches:  # the timer fired while the app shuts down (the screen or its widgets gone)
            return
        self._alert()
        self._poll_if_idle()
        self.gc_pacer.tick()
        self._config_ticks += 1
        if self._config_ticks % 2 == 0:
            self._follow_config()
        if self._config_ticks % 60 == 0:
            self._load_deadlines()
        self._watch_engine()

    def _watch_engine(self) -> None:
        """The engine's health in the status bar (a stall, with its cause); every few seconds, a look
        at whether another process's engine stopped, to take over."""
        if self.engine is not None:
            health = self.engine.health()
            stalled = health.get("state") == "stalled"
            if stalled or "engine" in self.failing:
                self._on_engine_health(EngineHealth(self._stall_text(health) if stalled else None))
            if not self.engine.running and not self.engine.stopping:
                self.engine, self.engine_elsewhere = None, True  # it ended: start again on the next look
        if self.engine_elsewhere and self.start_engine and self._config_ticks % 2 == 1:
            self._take_over()

    @background("following the config file", group="config", exclusive=True)
    def _follow_config(self) -> None:
        """An edit of the config file: SLA policies apply at once (re-evaluated from the event log
        on this process's writer), the rest at the next start; a broken edit is reported."""
        try:
            change = self.workspace.check_config()
        except ConfigError as exc:
            self.post_message(ConfigReloaded(None, [], str(exc)))
            return
        if change is None:
            return
        n = self.store.write(slastate.apply_policy_changes) if change.sla_changed else None
        self.post_message(ConfigReloaded(n, change.on_restart, None))

    @on(ConfigReloaded)
    def _on_config(self, event: ConfigReloaded) -> None:
        if event.error:
            self.notify(f"Config edit not applied (the settings in force stay): {event.error}",
                        severity="error", timeout=10)
            return
        if event.reevaluated is not None:
            self.notify(f"SLA policies updated: {event.reevaluated} conversation(s) re-evaluated", timeout=5)
            self._refresh_main()
        if event.on_restart:
            self.notify(f"Config changed ({', '.join(event.on_restart)}): applies when replydesk restarts",
                        severity="warning", timeout=8)

    def _poll_if_idle(self) -> None:
        """A probe unless one is still out (a new one would cancel it, and a slow disk would make
        every probe a cancelled one)."""
        if not any(w.group == "poll" and not w.is_finished for w in self.workers):
            self._poll()

    @background("checking for new data", group="poll", exclusive=True)
    def _poll(self) -> None:
        version = self.store.changed()
        if version is not None:
            self.post_message(DataChanged(version))

    @on(DataChanged)
    def _on_data_changed(self, _: DataChanged) -> None:
        self._refresh_main()
        for screen in self.screen_stack:  # a screen over the main one that shows cached data rereads it
            follow = getattr(screen, "data_changed", None)
            if callable(follow):
                follow()
        # New deadlines at most every 5 s: while syncing the data changes every second, and a
        # conversation's warning comes minutes after it arrives.
        if self._config_ticks - self._deadlines_read_at >= 5:
            self._load_deadlines()

    # ---- alerts -----------------------------------------------------------------------------------

    def first_rows_shown(self) -> None:
        """The main screen's first rows and thread are painted (it says so once): now the deadlines
        (alerts count from the start, so a deadline that passed meanwhile still alerts)."""
        self._load_deadlines()

    @background("reading the next deadlines", group="deadlines", exclusive=True)
    def _load_deadlines(self) -> None:
        self._deadlines_read_at = self._config_ticks
        since = self.alerts.since
        self.post_message(DeadlinesLoaded(self.store.read(lambda db: upcoming(db, since))))

    @on(DeadlinesLoaded)
    def _on_deadlines(self, event: DeadlinesLoaded) -> None:
        self.alerts.update(event.deadlines)

    def _alert(self) -> None:
        """Once a second: conversations whose warning or breach time just passed (``ui.alerts``),
        told at once after a quiet spell, else gathered for ``ui.alerts.every`` into one summary."""
        settings = self.workspace.config.ui.alerts
        now = self.clock()
        batch = self.alert_pacer.take(self.alerts.due(now), now)
        if not batch:
            return
        breached = any(a.state == "breached" for a in batch)
        if len(batch) == 1:
            d, what = batch[0].deadline, "breached its SLA" if breached else "is close to breaching its SLA"
            metric = f" ({d.metric.replace('_', ' ')})" if d.metric else ""
            text = f"{self._alert_name(batch[0])} {what}{metric}"
        else:
            text = summary(batch, self._alert_name)
        if settings.notify:
            self.notify(text, title="SLA breached" if breached else "SLA warning",
                        severity="error" if breached else "warning", timeout=8)
        if settings.desktop != "off":
            from replydesk.tui import terminal

            terminal.write_sequence(self, terminal.desktop_notification(
                settings.desktop, "replydesk", text, in_tmux=bool(os.environ.get("TMUX"))))
        if settings.bell:
            self.bell()

    @staticmethod
    def _alert_name(alert: Alert) -> str:
        d = alert.deadline
        return f"{one_line(d.customer) or 'A customer'} on {info(d.platform).label}"

    def _refresh_main(self) -> None:
        try:
            self.main.refresh_all()
        except NoMatches:  # data arrived while the app starts or shuts down
            return

    # ---- worker failures --------------------------------------------------------------------------

    @on(WorkerFailed)
    def _on_worker_failed(self, event: WorkerFailed) -> None:
        self.failing = {**self.failing, event.group: f"{event.what} failed: {event.error}"}
        self._show_failures()

    @on(WorkerRecovered)
    def _on_worker_recovered(self, event: WorkerRecovered) -> None:
        self.failing = {k: v for k, v in self.failing.items() if k != event.group}
        self._show_failures()

    def _show_failures(self) -> None:
        try:
            main = self.main
        except NoMatches:
            return
        main.show_problem(next(reversed(self.failing.values()), None))


def run_tui(workspace: Workspace, *, start_engine: bool = True) -> int:
    """Open the console on ``workspace`` (the CLI's ``replydesk`` and ``replydesk demo``)."""
    app = ReplydeskApp(workspace, start_engine=start_engine)
    app.run()
    return app.return_code or 0
