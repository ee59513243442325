"""Alerts: a conversation that reaches warning or breach while the console is open says so, once.

The app reads the next deadlines (``storage.deadlines.upcoming``) at start, after every data change
and every minute; each second :meth:`Alerts.due` compares them with the app's clock and returns the
ones whose warning or breach time just passed. Each conversation alerts at most once per state
(``ui.alerts``: a notification, the bell, a desktop notification through the terminal). No
Textual here: the app does the telling.

A big inbox crosses deadlines all the time (at 10M messages, 366,000 open conversations: one a
second): :class:`AlertPacer` tells the first alert at once and gathers the ones that follow within
``ui.alerts.every`` into one summary, so a flood is one notification every few seconds, not a stack
of them repainting the screen under the agent's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
        return worst_first(out)


def worst_first(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (a.state != "breached", a.deadline.due_at or 0))


class AlertPacer:
    """At most one telling per ``every`` seconds: an alert after a quiet spell goes out at once, the
    ones within ``every`` of the last telling wait and go out together when it has passed (none is
    dropped)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.waiting: list[Alert] = []
        self.told_at: float | None = None

    def take(self, found: Iterable[Alert], now: float) -> list[Alert]:
        """What to tell now (worst first), given the alerts just found."""
        self.waiting.extend(found)
        if not self.waiting or (self.told_at is not None and now - self.told_at < self.every):
            return []
        out, self.waiting, self.told_at = worst_first(self.waiting), [], now
        return out


def summary(alerts: list[Alert], name: Callable[[Alert], str]) -> str:
    """One line for a batch: how many breached and how many are close, then the first few by name
    ("4 conversations breached their SLA, 2 are close: Siti on X, Ana on Facebook, … and 3 more")."""
    breached = sum(1 for a in alerts if a.state == "breached")
    warned = len(alerts) - breached
    counts = []
    if breached:
        counts.append(f"{breached} conversation{'s' if breached > 1 else ''} breached {'their' if breached > 1 else 'its'} SLA")
    if warned:
        counts.append(f"{warned} {'are' if warned > 1 else 'is'} close to breaching" if breached
                      else f"{warned} conversations are close to breaching their SLA")
    shown = ", ".join(name(a) for a in alerts[:SUMMARY_NAMES])
    more = f" and {len(alerts) - SUMMARY_NAMES} more" if len(alerts) > SUMMARY_NAMES else ""
    return f"{', '.join(counts)}: {shown}{more}"


SUMMARY_NAMES = 3
