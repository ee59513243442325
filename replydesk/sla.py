"""The SLA engine: pure functions from a conversation's event log to its metric states.

No database, no clock: callers pass the events and the instant ``at`` to evaluate, so the same code
serves the live inbox, ``replydesk sla --at`` replays, exports, reports and ``--what-if`` policy
replays. A policy change simply means a new engine over the same events.

Semantics (the docs state them exactly like this):

- ``first_reply``: from the first inbound customer message to our first public or private reply on
  the platform (not a note; a reply counts when it is sent, not when queued).
- ``next_reply``: each inbound message that arrives after our last reply starts a new cycle,
  measured from the *oldest* unanswered inbound message to our next reply. The current (latest)
  cycle is the one shown; breaches of earlier cycles stay in ``SlaResult.history`` and in
  ``transitions()``.
- ``resolution``: from the first inbound message to resolved; reopening continues the same clock
  (time spent resolved does not count).
- Business time: a metric's target is counted on its calendar; time outside open intervals does not
  count. DST changes are handled by the calendar's zone (see ``bizcal``).
- Paused time (while pending or snoozed, if the policy says so) does not count, on business and
  24x7 calendars alike. A breach is never back-dated and never erased: once breached, the metric
  stays ``breached`` when it is later fulfilled (``fulfilled_at`` and ``breached_at`` both set).
- Escalated conversations get their targets multiplied by the policy's escalation factor (halved
  by default; see ``PolicySpec.factor_for``). ``warn_before`` percentages apply to the effective
  target; durations are used as written.

Decisions the issue leaves open, made here and relied upon by the tests:

- Status comes from ``status`` events only, starting ``open``; ``ConvAttrs.status`` (today's
  value) is never read, so a replay at a past ``at`` is exact and passing only the events up to
  ``at`` gives the same result as passing them all.
- Resolving is not a reply: an unanswered reply cycle is paused while the conversation is resolved
  (reason ``resolved``, so nothing counts and nothing breaches while it is closed) and continues
  when it is reopened; only a sent reply fulfils ``first_reply`` and ``next_reply``. The report
  counts such a cycle as undecided (neither met nor missed) unless it had breached before. An
  inbound message that arrives while resolved starts (or joins) a cycle that is paused the same
  way until the conversation is reopened.
- A reply exactly at the due instant is in time; at the due instant with no reply the metric is
  breached.
- While paused a metric has no due time; ``business_seconds_left`` still shows the budget left.
- ``SlaResult.state`` is ``none`` when no policy applies or nothing has started yet (no inbound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from replydesk.bizcal import Calendar, build_calendars
from replydesk.slaspec import METRICS
from replydesk.vocabulary import iso

if TYPE_CHECKING:  # the validated models (pydantic) or their plain-data twins (slaspec) alike
    from replydesk.slaconfig import PolicySpec, SlaSettings, TargetSpec

STATES_BY_SEVERITY: tuple[str, ...] = ("none", "fulfilled", "paused", "ok", "warning", "breached")
TRANSITION_KINDS: tuple[str, ...] = ("activate", "pause", "resume", "fulfil", "breach")
_STATUSES = frozenset({"open", "pending", "snoozed", "resolved"})
_INF = math.inf


@dataclass(frozen=True, slots=True)
class SlaEvent:
    """One fact from the conversation's event log, as the SLA engine needs it."""

    at: float  # epoch seconds UTC
    kind: str  # "in" | "reply" | "auto_reply" | "status" (data={"status": ...}); other kinds are ignored
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConvAttrs:
    """The conversation attributes policies match on (their current values)."""

    platform: str
    kind: str
    tags: frozenset[str] = frozenset()
    priority: str = "normal"  # low | normal | high | urgent
    escalated: bool = False
    status: str = "open"
    listening: bool = False  # found by a listening query, waiting in the Listening view


@dataclass(slots=True)
class MetricState:
    """One metric (one cycle of it, for next_reply) as of the evaluation instant."""

    metric: str  # first_reply | next_reply | resolution
    state: str  # ok | warning | breached | paused | fulfilled
    target_seconds: int
    calendar: str
    started_at: float | None
    due_at: float | None  # None while paused (and once fulfilled in time)
    calendar_seconds_left: float | None
    business_seconds_left: float | None
    paused_reason: str | None
    fulfilled_at: float | None
    breached_at: float | None
    elapsed_calendar_seconds: float | None
    elapsed_business_seconds: float | None
    # Additions beyond the contract:
    cycle: int = 0  # 0 for first_reply/resolution; 1.. for next_reply cycles
    fulfilled_by: str | None = None  # "reply" (reply metrics) | "resolved" (resolution)
    warn_seconds: float = 0.0

    @property
    def active(self) -> bool:
        """Still running (not fulfilled), whether counting, paused or already breached."""
        return self.fulfilled_at is None

    def to_json(self) -> dict[str, Any]:
        """The ``replydesk sla --json`` metric object (times as ISO UTC with Z)."""

        def secs(value: float | None) -> int | None:
            return None if value is None else round(value)

        return {
            "metric": self.metric,
            "state": self.state,
            "target_seconds": self.target_seconds,
            "calendar": self.calendar,
            "started_at": iso(self.started_at),
            "due_at": iso(self.due_at),
            "calendar_seconds_left": secs(self.calendar_seconds_left),
            "business_seconds_left": secs(self.business_seconds_left),
            "paused_reason": self.paused_reason,
            "fulfilled_at": iso(self.fulfilled_at),
            "breached_at": iso(self.breached_at),
        }


@dataclass(slots=True)
class SlaResult:
    """The SLA of one conversation at one instant: the current state of each metric."""

    policy: str | None
    metrics: list[MetricState]
    # Additions beyond the contract: every cycle of every metric (for reports), and the instant.
    history: list[MetricState] = field(default_factory=list)
    at: float | None = None

    def urgent(self) -> MetricState | None:
        """The active (not fulfilled) metric that breaches first; already breached ones first."""
        best: tuple[tuple[int, float], MetricState] | None = None
        for m in self.metrics:
            if not m.active:
                continue
            if m.breached_at is not None:
                key = (0, m.breached_at)
            elif m.due_at is not None:
                key = (1, m.due_at)
            else:  # paused: least budget left first
                key = (2, m.business_seconds_left if m.business_seconds_left is not None else _INF)
            if best is None or key < best[0]:
                best = (key, m)
        return best[1] if best else None

    @property
    def state(self) -> str:
        """Worst state: breached > warning > ok > paused > fulfilled > none."""
        if self.policy is None or not self.metrics:
            return "none"
        return max((m.state for m in self.metrics), key=STATES_BY_SEVERITY.index)

    @property
    def due_at(self) -> float | None:
        """Calendar due time of ``urgent()`` (None when none, paused or all fulfilled): sort key."""
        u = self.urgent()
        return u.due_at if u else None

    def metric(self, name: str) -> MetricState | None:
        return next((m for m in self.metrics if m.metric == name), None)

    def to_json(self) -> dict[str, Any]:
        """``{"policy", "at", "metrics"}``; the CLI adds ``conversation``."""
        return {"policy": self.policy, "at": iso(self.at), "metrics": [m.to_json() for m in self.metrics]}


Transition = tuple[float, str, str]  # (at, kind, metric)


def status_changes(events: Sequence[SlaEvent], at: float) -> list[tuple[float, str]]:
    """(time, status) for every valid status event up to ``at``, in log order."""
    return [
        (ev.at, str(ev.data.get("status")))
        for ev in events
        if ev.kind == "status" and ev.at <= at and ev.data.get("status") in _STATUSES
    ]


def status_at(events: Sequence[SlaEvent], at: float) -> str:
    """The conversation's status at ``at`` as the engine sees it."""
    changes = status_changes(sorted(events, key=lambda e: e.at), at)
    return changes[-1][1] if changes else "open"


def _runs(changes: list[tuple[float, str]]) -> list[tuple[float, float, str]]:
    """Status changes -> contiguous (start, end, status) runs covering all time."""
    runs: list[tuple[float, float, str]] = []
    start, status = -_INF, "open"
    for t, st in changes:
        if st == status:
            continue
        runs.append((start, t, status))
        start, status = t, st
    runs.append((start, _INF, status))
    return runs


@dataclass(slots=True)
class _Cycle:
    start: float
    stop: float | None
    stop_by: str | None


def _reply_cycles(events: Sequence[SlaEvent]) -> list[_Cycle]:
    """Group inbound messages into reply cycles: oldest unanswered inbound -> next reply.

    ``events`` are sorted and already limited to the evaluation instant. Status changes do not end
    a cycle (resolving is not a reply); ``_measure`` pauses the clock while resolved.
    """
    cycles: list[_Cycle] = []
    open_at: float | None = None
    for ev in events:
        if ev.kind == "in":
            if open_at is None:
                open_at = ev.at
        elif ev.kind == "reply" and open_at is not None:
            cycles.append(_Cycle(open_at, ev.at, "reply"))
            open_at = None
    if open_at is not None:
        cycles.append(_Cycle(open_at, None, None))
    return cycles


def _measure(
    metric: str,
    cycle_no: int,
    cyc: _Cycle,
    at: float,
    target: int,
    warn: float,
    cal: Calendar,
    cal_name: str,
    runs: list[tuple[float, float, str]],
    pause_when: frozenset[str],
) -> tuple[MetricState, list[Transition]]:
    """Walk one cycle through the status runs: elapsed time, breach instant, state and transitions."""
    is_resolution = metric == "resolution"
    start, stop = cyc.start, cyc.stop
    end = stop if stop is not None else at
    trans: list[Transition] = []
    elapsed_cal = elapsed_biz = 0.0
    breached_at: float | None = None
    done_at: float | None = None
    phase: str | None = None
    status = "open"
    for r0, r1, st in runs:
        if r1 <= start:  # entirely before the cycle
            continue
        if r0 > end or (r0 == end and r0 > start and stop is not None):
            break
        a, b = max(r0, start), min(r1, end)
        if st == "resolved":
            new = "done" if (is_resolution and r0 > start) else "pause"
        elif st in pause_when:
            new = "pause"
        else:
            new = "count"
        if phase is None:
            trans.append((a, "activate", metric))
            if new == "pause":
                trans.append((a, "pause", metric))
        elif new != phase:
            if new == "done":
                trans.append((a, "fulfil", metric))
            elif phase == "done":
                trans.append((a, "activate", metric))
                if new == "pause":
                    trans.append((a, "pause", metric))
            else:
                trans.append((a, "pause" if new == "pause" else "resume", metric))
        if new == "count" and b > a:
            seg = cal.between(a, b)
            if breached_at is None and elapsed_biz + seg >= target:
                t = cal.add(a, target - elapsed_biz)
                if stop is None or t < stop:
                    breached_at = t
                    trans.append((t, "breach", metric))
            elapsed_biz += seg
            elapsed_cal += b - a
        if new == "done":
            done_at = a
        phase, status = new, st

    fulfilled_at: float | None = None
    fulfilled_by: str | None = None
    if stop is not None:
        fulfilled_at, fulfilled_by = stop, cyc.stop_by
        trans.append((stop, "fulfil", metric))
    elif phase == "done":
        fulfilled_at, fulfilled_by = done_at, "resolved"

    remaining = target - elapsed_biz
    paused = fulfilled_at is None and phase == "pause"
    due_at: float | None = None
    cal_left: float | None = None
    biz_left: float | None = None
    if breached_at is not None:
        state = "breached"
        due_at = breached_at
        if fulfilled_at is None:
            cal_left, biz_left = breached_at - at, remaining
    elif fulfilled_at is not None:
        state = "fulfilled"
    elif paused:
        state = "paused"
        biz_left = remaining
    else:
        due_at = cal.add(at, remaining)
        cal_left, biz_left = due_at - at, remaining
        state = "warning" if remaining <= warn else "ok"
    trans.sort(key=lambda tr: tr[0])  # stable: same-instant transitions keep their logical order
    return (
        MetricState(
            metric=metric,
            state=state,
            target_seconds=target,
            calendar=cal_name,
            started_at=start,
            due_at=due_at,
            calendar_seconds_left=cal_left,
            business_seconds_left=biz_left,
            paused_reason=status if paused else None,
            fulfilled_at=fulfilled_at,
            breached_at=breached_at,
            elapsed_calendar_seconds=elapsed_cal,
            elapsed_business_seconds=elapsed_biz,
            cycle=cycle_no,
            fulfilled_by=fulfilled_by,
            warn_seconds=warn,
        ),
        trans,
    )


class SlaEngine:
    """Evaluates conversations against one ``SlaSettings``; build a new one when the config changes."""

    def __init__(self, settings: SlaSettings) -> None:
        self.settings = settings
        self.calendars: dict[str, Calendar] = build_calendars(settings)
        self._target_cache: dict[tuple[int, bool], dict[str, tuple[TargetSpec, int, float]]] = {}

    def timezone(self, calendar: str) -> str:
        """IANA zone of a calendar, for showing due times in calendar-local time ("UTC" for 24x7)."""
        spec = self.settings.calendar(calendar)
        return spec.timezone if spec is not None else "UTC"

    def policy_for(self, attrs: ConvAttrs) -> PolicySpec | None:
        """The first policy whose match applies (absent match fields match anything)."""
        for policy in self.settings.policies:
            m = policy.match
            if m.platform is not None and attrs.platform not in m.platform:
                continue
            if m.kind is not None and attrs.kind not in m.kind:
                continue
            if m.tags is not None and not set(m.tags).intersection(attrs.tags):
                continue
            if m.priority is not None and attrs.priority not in m.priority:
                continue
            if m.escalated is not None and bool(attrs.escalated) != m.escalated:
                continue
            if m.listening is not None and attrs.listening != m.listening:
                continue
            return policy
        return None

    def _targets(self, policy: PolicySpec, attrs: ConvAttrs) -> dict[str, tuple[TargetSpec, int, float]]:
        # Depends only on (policy, escalated): cached, as it runs for every conversation of a batch.
        key = (id(policy), attrs.escalated)
        cached = self._target_cache.get(key)
        if cached is None:
            cached = self._target_cache[key] = self._compute_targets(policy, attrs.escalated)
        return cached

    def _compute_targets(self, policy: PolicySpec, escalated: bool) -> dict[str, tuple[TargetSpec, int, float]]:
        factor = policy.factor_for(escalated)
        out = {}
        for metric in METRICS:
            spec = policy.target(metric)
            if spec is not None:
                target = max(1, int(round(spec.target * factor)))
                out[metric] = (spec, target, spec.warn_seconds(target))
        return out

    def _compute(
        self, attrs: ConvAttrs, events: Sequence[SlaEvent], at: float
    ) -> tuple[PolicySpec | None, list[MetricState], list[MetricState], list[Transition]]:
        policy = self.policy_for(attrs)
        if policy is None:
            return None, [], [], []
        if policy.match.listening:  # a policy for listening matches: their posts start its clocks
            events = [SlaEvent(e.at, "in", e.data) if e.kind == "listened" else e for e in events]
        ordered = sorted(events, key=lambda e: e.at)  # stable: same-instant events keep log order
        evs = [e for e in ordered if e.at <= at]
        if any(e.kind == "auto_reply" for e in evs):  # an automatic reply is ours only if the policy says so
            evs = [SlaEvent(e.at, "reply", e.data) if e.kind == "auto_reply" else e for e in evs
                   if e.kind != "auto_reply" or policy.count_auto_replies]
        changes = status_changes(evs, at)
        runs = _runs(changes)
        pause_when = frozenset(policy.pause_when)
        targets = self._targets(policy, attrs)
        current: list[MetricState] = []
        history: list[MetricState] = []
        trans: list[Transition] = []

        def run(metric: str, no: int, cyc: _Cycle) -> MetricState:
            spec, target, warn = targets[metric]
            state, tr = _measure(
                metric,
                no,
                cyc,
                at,
                target,
                warn,
                self.calendars[spec.calendar],
                spec.calendar,
                runs,
                pause_when,
            )
            history.append(state)
            trans.extend(tr)
            return state

        cycles = _reply_cycles(evs)
        if cycles and "first_reply" in targets:
            current.append(run("first_reply", 0, cycles[0]))
        if len(cycles) > 1 and "next_reply" in targets:
            last = None
            for no, cyc in enumerate(cycles[1:], start=1):
                last = run("next_reply", no, cyc)
            current.append(last)  # type: ignore[arg-type]
        first_in = next((e.at for e in evs if e.kind == "in"), None)
        if first_in is not None and "resolution" in targets:
            current.append(run("resolution", 0, _Cycle(first_in, None, None)))
        trans.sort(key=lambda tr: tr[0])
        return policy, current, history, trans

    def evaluate(self, attrs: ConvAttrs, events: Sequence[SlaEvent], at: float) -> SlaResult:
        """Metric states at ``at``; only events with ``ev.at <= at`` count (replay with --at)."""
        policy, current, history, _ = self._compute(attrs, events, at)
        return SlaResult(policy=policy.name if policy else None, metrics=current, history=history, at=at)

    def evaluate_with_transitions(
        self, attrs: ConvAttrs, events: Sequence[SlaEvent], since: float, at: float
    ) -> tuple[SlaResult, list[Transition]]:
        """``evaluate`` and ``transitions(since, at)`` from one computation (the sync hot path).

        Never evaluated before ``since`` (the last evaluation): a wall clock stepped back must not
        take a recorded breach back; the result's ``at`` says which instant was used.
        """
        if since > at:
            at = since
        policy, current, history, trans = self._compute(attrs, events, at)
        result = SlaResult(policy=policy.name if policy else None, metrics=current, history=history, at=at)
        return result, [tr for tr in trans if since < tr[0] <= at]

    def transitions(
        self, attrs: ConvAttrs, events: Sequence[SlaEvent], since: float, until: float
    ) -> list[Transition]:
        """(at, kind, metric) for activate|pause|resume|fulfil|breach with ``since < at <= until``.

        Half-open at ``since`` so a caller appending to the event log after each sync can pass the
        previous ``until`` without duplicating anything. Past transitions never change when later
        events arrive, so appending is safe.
        """
        _, _, _, trans = self._compute(attrs, events, until)
        return [tr for tr in trans if since < tr[0] <= until]
