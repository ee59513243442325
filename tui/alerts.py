"""Alerts: a conversation that reaches warning or breach while the console is open says so, once.

The app reads the next deadlines (``storage.deadlines.upcoming``) at start, after every data change
and every minute; each second :meth:`Alerts.due` compares them with the app's clock and returns the
ones whose warning or breach time just passed. Each conversation alerts at most once per state
(``ui.alerts``: a notification, the bell, a desktop notification through the terminal). No
Textual here: the app does the telling.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from replydesk.storage.deadlines import Deadline


@dataclass(frozen=True)
class Alert:
    deadline: Deadline
    state: str  # "warning" | "breached"


class Alerts:
    def __init__(self, now: float) -> None:
        self.since = now  # only what happens from now on alerts, not the backlog
        self.deadlines: dict[str, Deadline] = {}
        self.told: set[tuple[str, str]] = set()

    def update(self, deadlines: Iterable[Deadline]) -> None:
        """New deadlines from storage; ones already passed but not yet told stay until told."""
        fresh = {d.conversation_id: d for d in deadlines}
        for conv_id, old in self.deadlines.items():
            if conv_id not in fresh and self._pending(old):
                fresh[conv_id] = old
        self.deadlines = fresh

    def _pending(self, d: Deadline) -> bool:
        return any(t is not None and t > self.since for t in (d.warn_at, d.due_at))

    def due(self, now: float) -> list[Alert]:
        """Deadlines that passed since the last call, worst first; each (conversation, state) once."""
        out: list[Alert] = []
        for d in self.deadlines.values():
            state = None
            if d.due_at is not None and self.since < d.due_at <= now:
                state = "breached"
            elif d.warn_at is not None and self.since < d.warn_at <= now and (d.due_at is None or d.due_at > now):
                state = "warning"
            if state is None or (d.conversation_id, state) in self.told:
                continue
            self.told.add((d.conversation_id, state))
            if state == "breached":
                self.told.add((d.conversation_id, "warning"))  # a breach says more than a warning
            out.append(Alert(d, state))
        self.since = max(self.since, now)
        return sorted(out, key=lambda a: (a.state != "breached", a.deadline.due_at or 0))
