"""Report figures (``replydesk report``) as pure functions over evaluated conversations.

Input items are ``(group key, ConvAttrs, events, SlaResult evaluated at `until`)``; the caller
decides the grouping (platform, account, assignee, tag, policy; one item per group a conversation
belongs to), which keeps this module free of storage and lets ``--what-if`` feed results from an
engine built on other policies through the very same code.

Choices, stated once so readers of the numbers know what they mean:

- Elapsed times are measured on each metric's own calendar with paused time left out: business
  seconds when the policy's calendar is a business one, plain seconds on ``24x7``. That is the
  clock the target is judged on, so a median can be compared with the target directly.
- Reply times use every cycle answered by a reply: the first reply once per conversation, and
  every next-reply cycle (not only the current one). Cycles closed by resolving without a reply and
  cycles still waiting are left out of the median and p90 (there is no reply time to report).
- ``within_target`` is the share of *decided* cycles that met the target: decided means answered
  (resolved, for resolution) or already breached. Cycles still running in time are undecided.
- ``breaches`` counts breached cycles of all three metrics, earlier next-reply cycles included.
- ``first_contact_resolution`` is the share of conversations resolved at ``until`` that got exactly
  one reply; ``replies_per_conversation`` is the mean number of replies over all conversations.
- Conversations no policy applies to are still measured (24x7, no pauses) for the time figures,
  but have no target, so they count in neither ``within_target`` nor ``breaches``.
- CSAT: ``responses`` counts the survey answers recorded up to ``until`` (``csat`` events, one per
  answer); ``satisfied`` is the share of them rated 4-5 or "good"; ``average`` is the mean score
  of those given as a number or stars (1-5; a good/bad answer has none).
- Medians average the two middle values; p90 is nearest-rank (an observed value: the smallest one
  with at least 90% of values at or below it). Figures with nothing to measure are ``None``.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from replydesk.model import iso
from replydesk.sla import ConvAttrs, MetricState, SlaEngine, SlaEvent, SlaResult, status_at
from replydesk.slaconfig import METRICS, PolicySpec, SlaSettings, TargetSpec

ReportItem = tuple[str, ConvAttrs, Sequence[SlaEvent], SlaResult]

_UNTARGETED_SECONDS = 10**10  # ~300 years: measures times without ever breaching
_MEASURE_ONLY = SlaEngine(
    SlaSettings(
        policies=[
            PolicySpec(
                name="(no policy)",
                **{m: TargetSpec(target=_UNTARGETED_SECONDS) for m in METRICS},
            )
        ]
    )
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def metric_figures(cycles: Iterable[MetricState], targeted: Iterable[bool] | None = None) -> dict[str, Any]:
    """``{"median_seconds", "p90_seconds", "within_target"}`` for cycles of one metric.

    ``targeted`` says per cycle whether a real target applied (all True when omitted).
    """
    cycles = list(cycles)
    flags = [True] * len(cycles) if targeted is None else list(targeted)
    values: list[float] = []
    decided = met = 0
    for m, has_target in zip(cycles, flags, strict=True):
        done_by = "resolved" if m.metric == "resolution" else "reply"
        completed = m.fulfilled_by == done_by
        if completed and m.elapsed_business_seconds is not None:
            values.append(m.elapsed_business_seconds)
        if has_target and (completed or m.breached_at is not None):
            decided += 1
            met += m.breached_at is None
    return {
        "median_seconds": statistics.median(values) if values else None,
        "p90_seconds": percentile(values, 90),
        "within_target": met / decided if decided else None,
    }


def _history(item: ReportItem, until: float | None) -> tuple[list[MetricState], bool]:
    """All metric cycles of one conversation and whether they had real targets."""
    _, attrs, events, result = item
    if result.policy is not None:
        return result.history, True
    at = until if until is not None else result.at
    if at is None:
        at = max((e.at for e in events), default=0.0)
    return _MEASURE_ONLY.evaluate(attrs, events, at).history, False


def group_figures(key: str, items: Sequence[ReportItem], until: float | None = None) -> dict[str, Any]:
    """The figures of one group, shaped like one entry of the report JSON ``groups`` list."""
    by_metric: dict[str, list[MetricState]] = {m: [] for m in METRICS}
    flags: dict[str, list[bool]] = {m: [] for m in METRICS}
    breaches = replies_total = resolved = one_reply = 0
    answers: list[Mapping[str, Any]] = []
    for item in items:
        _, attrs, events, result = item
        at = until if until is not None else result.at
        history, targeted = _history(item, until)
        for m in history:
            by_metric[m.metric].append(m)
            flags[m.metric].append(targeted)
            breaches += targeted and m.breached_at is not None
        replies = sum(1 for e in events if e.kind == "reply" and (at is None or e.at <= at))
        answers += [e.data for e in events if e.kind == "csat" and (at is None or e.at <= at)]
        replies_total += replies
        if status_at(events, at if at is not None else math.inf) == "resolved":
            resolved += 1
            one_reply += replies == 1
    n = len(items)
    return {
        "key": key,
        "conversations": n,
        **{m: metric_figures(by_metric[m], flags[m]) for m in METRICS},
        "breaches": breaches,
        "first_contact_resolution": one_reply / resolved if resolved else None,
        "replies_per_conversation": replies_total / n if n else None,
        "csat": csat_figures(answers),
    }


def csat_figures(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"responses", "satisfied", "average"}`` of survey answers (``csat`` event data)."""
    scores = [a["score"] for a in answers if isinstance(a.get("score"), int) and 1 <= a["score"] <= 5]
    return {
        "responses": len(answers),
        "satisfied": sum(1 for a in answers if a.get("satisfied") is True) / len(answers) if answers else None,
        "average": sum(scores) / len(scores) if scores else None,
    }


def report_groups(items: Iterable[ReportItem], until: float | None = None) -> list[dict[str, Any]]:
    """Group items by key (sorted) and compute each group's figures."""
    groups: dict[str, list[ReportItem]] = {}
    for item in items:
        groups.setdefault(item[0], []).append(item)
    return [group_figures(key, groups[key], until) for key in sorted(groups)]


def build_report(
    items: Iterable[ReportItem], since: float | None, until: float | None, by: str | None = None
) -> dict[str, Any]:
    """The whole ``replydesk report --json`` object; ``by=None`` means one group keyed ``all``.

    ``since``/``until`` are epoch seconds (shown as ISO UTC); the caller picks the conversations
    in the window and evaluates them at ``until``.
    """
    items = list(items)
    if by is None:
        items = [("all", a, e, r) for _, a, e, r in items]
    groups = report_groups(items, until)
    if by is None and not groups:
        groups = [group_figures("all", [], until)]
    out: dict[str, Any] = {"since": iso(since), "until": iso(until)}
    if by is not None:
        out["by"] = by
    out["groups"] = groups
    return out


def breaches_per_day(items: Iterable[ReportItem], timezone: str = "UTC") -> dict[str, int]:
    """ISO local date -> number of breaches that happened that day (for the TUI's bar plot)."""
    zone = zoneinfo.ZoneInfo(timezone)
    counts: dict[str, int] = {}
    for _, _, _, result in items:
        for m in result.history:
            if m.breached_at is not None:
                day = dt.datetime.fromtimestamp(m.breached_at, zone).date().isoformat()
                counts[day] = counts.get(day, 0) + 1
    return dict(sorted(counts.items()))


def reply_times(items: Iterable[ReportItem], metric: str = "first_reply") -> list[float]:
    """Every answered cycle's elapsed seconds for ``metric`` (for the distribution plot)."""
    done_by = "resolved" if metric == "resolution" else "reply"
    return [
        m.elapsed_business_seconds
        for _, _, _, result in items
        for m in result.history
        if m.metric == metric and m.fulfilled_by == done_by and m.elapsed_business_seconds is not None
    ]
