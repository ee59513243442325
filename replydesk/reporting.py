"""``replydesk report``: gather conversations from the cache, evaluate them, group, print.

The figures themselves are pure (``replydesk.report``); this module picks the conversations in the
window, replays each one's event log at ``until`` (under the configured policies, or under the
policies of a ``--what-if`` file), and formats JSON, CSV or a table.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from replydesk.config import ConfigError
from replydesk.model import parse_iso
from replydesk.report import ReportItem, build_report
from replydesk.sla import SlaEngine, SlaEvent
from replydesk.slaconfig import SlaSettings, format_duration
from replydesk.storage import csat, queries, slastate
from replydesk.storage.db import Database

GROUPINGS = ("platform", "account", "assignee", "tag", "policy")


def load_policy_file(path: Path) -> SlaSettings:
    """A YAML file holding an ``sla:`` section (or just its contents) for ``--what-if``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read policies: {exc}") from None
    if isinstance(data, dict) and "sla" in data:
        data = data["sla"] or {}
    try:
        return SlaSettings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def collect(db: Database, engine: SlaEngine, since: float | None, until: float,
            by: str | None) -> list[ReportItem]:
    """One item per (group key, conversation) for conversations that started inside the window."""
    rows = queries.conversations_started(db, since, until)
    inputs = slastate.load_inputs(db, [r.id for r in rows])
    # Conversations no customer wrote in (only bounces, auto-replies, bulk mail) are not counted;
    # only those without a customer's "in" event need the look.
    robots = queries.robots_only(db, [c for c, (_, evs, _) in inputs.items()
                                      if not any(e.kind == "in" for e in evs)])
    ratings = csat.ratings(db, list(inputs))  # the survey answers ride along as "csat" events
    items: list[ReportItem] = []
    for row in rows:
        if row.id not in inputs or row.id in robots:
            continue
        attrs, events, _ = inputs[row.id]
        events = [e for e in events if e.at <= until]
        events += [SlaEvent(at, "csat", data) for at, data in ratings.get(row.id, ()) if at <= until]
        result = engine.evaluate(attrs, events, until)
        if by in (None, "platform"):
            keys = [row.platform]
        elif by == "account":
            keys = [row.account]
        elif by == "assignee":
            keys = [row.assignee or "(unassigned)"]
        elif by == "tag":
            keys = row.tags or ["(untagged)"]
        else:
            keys = [result.policy or "(no policy)"]
        items.extend((key, attrs, events, result) for key in keys)
    return items


def _time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise ConfigError(f"--{name}: expected an ISO 8601 time such as 2026-11-01T00:00:00Z") from None


def make_report(db: Database, settings: SlaSettings, since: float | None, until: float,
                by: str | None) -> dict[str, Any]:
    engine = SlaEngine(settings)
    return build_report(collect(db, engine, since, until, by), since, until, by)


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


COLUMNS = [
    ("conversations", lambda g: str(g["conversations"])),
    ("first reply p50", lambda g: _fmt(g["first_reply"]["median_seconds"])),
    ("p90", lambda g: _fmt(g["first_reply"]["p90_seconds"])),
    ("in target", lambda g: _pct(g["first_reply"]["within_target"])),
    ("next reply p50", lambda g: _fmt(g["next_reply"]["median_seconds"])),
    ("in target", lambda g: _pct(g["next_reply"]["within_target"])),
    ("resolution p50", lambda g: _fmt(g["resolution"]["median_seconds"])),
    ("in target", lambda g: _pct(g["resolution"]["within_target"])),
    ("breaches", lambda g: str(g["breaches"])),
    ("FCR", lambda g: _pct(g["first_contact_resolution"])),
    ("replies/conv", lambda g: "-" if g.get("replies_per_conversation") is None
     else f"{g['replies_per_conversation']:.1f}"),
    ("CSAT answers", lambda g: str(g["csat"]["responses"])),
    ("satisfied", lambda g: _pct(g["csat"]["satisfied"])),
    ("avg", lambda g: "-" if g["csat"]["average"] is None else f"{g['csat']['average']:.1f}"),
]


def table(report: dict[str, Any]) -> str:
    header = ["group", *[c[0] for c in COLUMNS]]
    rows = [[g["key"], *[fn(g) for _, fn in COLUMNS]] for g in report["groups"]]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(lines)


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # the CLI ends lines; a "\r" would print as a visible ␍
    writer.writerow(["key", "conversations",
                     *[f"{m}_{f}" for m in ("first_reply", "next_reply", "resolution")
                       for f in ("median_seconds", "p90_seconds", "within_target")],
                     "breaches", "first_contact_resolution", "csat_responses", "csat_satisfied", "csat_average"])
    for g in report["groups"]:
        writer.writerow([g["key"], g["conversations"],
                         *[g[m][f] for m in ("first_reply", "next_reply", "resolution")
                           for f in ("median_seconds", "p90_seconds", "within_target")],
                         g["breaches"], g["first_contact_resolution"],
                         g["csat"]["responses"], g["csat"]["satisfied"], g["csat"]["average"]])
    return out.getvalue()


def run_report(ws: Any, db: Database, args: argparse.Namespace, emit_json: Callable[[Any], None],
               say: Callable[[str], None]) -> int:
    since = _time(args.since, "since")
    until = _time(args.until, "until") or db.now()
    report = make_report(db, ws.config.sla, since, until, args.by)
    what_if = None
    if args.what_if:
        what_if = make_report(db, load_policy_file(Path(args.what_if)), since, until, args.by)
        what_if["policy_file"] = args.what_if
    if args.json:
        if what_if is not None:
            report["what_if"] = what_if
        emit_json(report)
    elif args.csv:
        say(to_csv(report).rstrip("\n"))
        if what_if is not None:
            say("")
            say(to_csv(what_if).rstrip("\n"))
    else:
        window = f"{report['since'] or 'the beginning'} to {report['until']}"
        say(f"Response times, {window}")
        say(table(report))
        if what_if is not None:
            say("")
            say(f"What if the policies in {args.what_if} had applied:")
            say(table(what_if))
    return 0
