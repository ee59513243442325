"""SLA config and engine semantics (replydesk.slaconfig, replydesk.sla), table-driven.

Times are UTC on Monday 2026-03-02 unless a test says otherwise; "10:25" means 2026-03-02 10:25Z.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import yaml
from pydantic import ValidationError

from replydesk.sla import ConvAttrs, SlaEngine, SlaEvent, SlaResult
from replydesk.slaconfig import DEFAULT_POLICIES, SlaSettings, load_sla_settings, parse_duration

DAY = "2026-03-02"


def T(hhmm: str, day: str = DAY) -> float:
    return dt.datetime.fromisoformat(f"{day} {hhmm}").replace(tzinfo=dt.UTC).timestamp()


def L(tz: str, text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz)).timestamp()


def inb(hhmm: str, day: str = DAY) -> SlaEvent:
    return SlaEvent(T(hhmm, day), "in")


def rep(hhmm: str, day: str = DAY) -> SlaEvent:
    return SlaEvent(T(hhmm, day), "reply")


def st(hhmm: str, status: str, day: str = DAY) -> SlaEvent:
    return SlaEvent(T(hhmm, day), "status", {"status": status})


CONFIG = """
calendars:
  office:
    timezone: Europe/Athens
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"],
            fri: ["09:00-17:00"]}
    holidays: [2026-01-12]
policies:
  - name: vip-escalated
    match: {tags: [vip, press], escalated: true}
    first_reply: {target: 10m}
  - name: public-social
    match: {kind: [comment, mention]}
    first_reply: {target: 30m, calendar: 24x7, warn_before: 10m}
    next_reply: {target: 1h, calendar: 24x7, warn_before: 25%}
    resolution: {target: 90m}
    pause_when: [pending, snoozed]
  - name: email
    match: {kind: email}
    first_reply: {target: 1h, calendar: office, warn_before: 15m}
  - name: urgent-x
    match: {platform: [x], priority: [urgent, high]}
    first_reply: {target: 5m}
    escalated_factor: 1
"""


@pytest.fixture(scope="module")
def engine() -> SlaEngine:
    return SlaEngine(SlaSettings.model_validate(yaml.safe_load(CONFIG)))


COMMENT = ConvAttrs("facebook", "comment")
EMAIL = ConvAttrs("email", "email")


def metric(result: SlaResult, name: str):
    m = result.metric(name)
    assert m is not None, f"{name} missing from {[x.metric for x in result.metrics]}"
    return m


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("4h", 14400), ("1d", 86400), ("1h30m", 5400), ("90s", 90), ("2w", 1209600), ("45", 45)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30x", "m30", "1h1h", "-5m", "1.5.h", "thirty minutes"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# (id, sla section, text the error must contain -- naming the field)
BAD_CONFIGS = [
    ("unknown top key", {"polices": []}, "polices"),
    (
        "unknown policy key",
        {"policies": [{"name": "a", "first_reply": {"target": "1h", "warn_befor": "5m"}}]},
        "policies.0.first_reply.warn_befor",
    ),
    (
        "bad duration",
        {"policies": [{"name": "a", "next_reply": {"target": "30x"}}]},
        "policies.0.next_reply.target",
    ),
    ("zero target", {"policies": [{"name": "a", "next_reply": {"target": "0m"}}]}, "longer than zero"),
    (
        "bad percent",
        {"policies": [{"name": "a", "resolution": {"target": "1h", "warn_before": "150%"}}]},
        "policies.0.resolution.warn_before",
    ),
    ("bad time", {"calendars": {"o": {"hours": {"mon": ["9-17"]}}}}, "calendars.o.hours"),
    ("hour 25", {"calendars": {"o": {"hours": {"mon": ["09:00-25:00"]}}}}, "mon: invalid opening interval"),
    ("bad weekday", {"calendars": {"o": {"hours": {"monday": ["09:00-17:00"]}}}}, "calendars.o.hours.monday"),
    (
        "bad zone",
        {"calendars": {"o": {"timezone": "Europe/Atlantis", "hours": {"mon": ["09:00-17:00"]}}}},
        "calendars.o.timezone",
    ),
    (
        "bad holiday",
        {"calendars": {"o": {"hours": {"mon": ["09:00-17:00"]}, "holidays": ["soon"]}}},
        "calendars.o.holidays.0",
    ),
    (
        "unknown calendar",
        {"policies": [{"name": "a", "first_reply": {"target": "1h", "calendar": "ofice"}}]},
        "policies[0] (a).first_reply.calendar: unknown calendar 'ofice'",
    ),
    ("redefine 24x7", {"calendars": {"24x7": {"hours": {"mon": ["09:00-17:00"]}}}}, "calendars.24x7"),
    ("duplicate names", {"policies": [{"name": "a"}, {"name": "a"}]}, "policies[1].name"),
    ("bad kind", {"policies": [{"name": "a", "match": {"kind": ["sms"]}}]}, "policies.0.match.kind"),
    ("bad pause", {"policies": [{"name": "a", "pause_when": ["open"]}]}, "policies.0.pause_when.0"),
    ("bad factor", {"policies": [{"name": "a", "escalated_factor": 2}]}, "policies.0.escalated_factor"),
]


@pytest.mark.parametrize(("section", "needle"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_config_errors_name_the_field(section: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        SlaSettings.model_validate(section)
    assert needle in str(info.value)


def test_issue_config_example_parses() -> None:
    text = """
    calendars:
      office:
        timezone: Europe/Athens
        hours: {mon: ["09:00-13:00", "14:00-18:00"], tue: ["09:00-18:00"], sat: ["10:00-14:00"]}
        holidays: [2026-12-25, 2027-01-01]
    policies:
      - name: public-social
        match: {kind: [comment, mention]}
        first_reply: {target: 30m, calendar: 24x7, warn_before: 10m}
        next_reply: {target: 1h, calendar: 24x7, warn_before: 25%}
        resolution: {target: 1d, calendar: office}
        pause_when: [pending, snoozed]
    """
    s = SlaSettings.model_validate(yaml.safe_load(text))
    p = s.policies[0]
    assert (p.first_reply.target, p.next_reply.target, p.resolution.target) == (1800, 3600, 86400)
    assert p.next_reply.warn_seconds() == 900
    assert s.calendars["office"].holidays == [dt.date(2026, 12, 25), dt.date(2027, 1, 1)]


def test_defaults_when_section_absent() -> None:
    s = load_sla_settings(None)
    assert [p.name for p in s.policies] == [p.name for p in DEFAULT_POLICIES]
    # A section with calendars only keeps the shipped policies.
    assert [p.name for p in load_sla_settings({"calendars": {}}).policies] == [
        p.name for p in DEFAULT_POLICIES
    ]


# (id, attrs, first-reply target seconds from the shipped defaults)
DEFAULT_TARGETS = [
    ("comment 30m", ConvAttrs("facebook", "comment"), 1800),
    ("mention 30m", ConvAttrs("x", "mention"), 1800),
    ("dm 1h", ConvAttrs("instagram", "dm"), 3600),
    ("email 4 business hours", ConvAttrs("email", "email"), 4 * 3600),
    ("review 24h", ConvAttrs("google", "review"), 86400),
    ("escalated dm halves", ConvAttrs("instagram", "dm", escalated=True), 1800),
    ("escalated review halves", ConvAttrs("google", "review", escalated=True), 43200),
]


@pytest.mark.parametrize(
    ("attrs", "target"), [c[1:] for c in DEFAULT_TARGETS], ids=[c[0] for c in DEFAULT_TARGETS]
)
def test_default_targets(attrs: ConvAttrs, target: int) -> None:
    r = SlaEngine(SlaSettings()).evaluate(attrs, [inb("10:00")], T("10:00"))
    assert metric(r, "first_reply").target_seconds == target


def test_default_email_uses_business_hours() -> None:
    eng = SlaEngine(SlaSettings())
    friday = "2026-03-06"
    # Built-in business calendar Mon-Fri 09-17 UTC: Fri 16:30-17:00 (30m) + Mon 09:00-12:30 (3h30m).
    r = eng.evaluate(EMAIL, [inb("16:30", friday)], T("16:30", friday))
    assert metric(r, "first_reply").due_at == T("12:30", "2026-03-09")
    # Escalated: 2 business hours -> Mon 10:30.
    r = eng.evaluate(ConvAttrs("email", "email", escalated=True), [inb("16:30", friday)], T("16:30", friday))
    assert metric(r, "first_reply").due_at == T("10:30", "2026-03-09")


# -- matching ----------------------------------------------------------------------------------

MATCH_CASES = [
    ("kind list", ConvAttrs("facebook", "comment"), "public-social"),
    ("kind as scalar", ConvAttrs("email", "email"), "email"),
    ("platform and priority", ConvAttrs("x", "dm", priority="urgent"), "urgent-x"),
    ("priority not listed", ConvAttrs("x", "dm", priority="low"), None),
    (
        "tags any-of plus escalated",
        ConvAttrs("x", "comment", frozenset({"press", "other"}), escalated=True),
        "vip-escalated",
    ),
    ("tag but not escalated falls through", ConvAttrs("x", "comment", frozenset({"vip"})), "public-social"),
    ("first match wins over later ones", ConvAttrs("x", "mention", priority="urgent"), "public-social"),
    ("nothing matches", ConvAttrs("google", "review"), None),
]


@pytest.mark.parametrize(("attrs", "policy"), [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES])
def test_policy_matching(engine: SlaEngine, attrs: ConvAttrs, policy: str | None) -> None:
    p = engine.policy_for(attrs)
    assert (p.name if p else None) == policy
    r = engine.evaluate(attrs, [inb("10:00")], T("10:05"))
    assert r.policy == policy
    if policy is None:
        assert r.state == "none" and r.metrics == [] and r.due_at is None


# -- first reply over time, warning by minutes, breach stays -------------------------------------

# Comment, inbound 10:00, first_reply 30m warn 10m (warning from 10:20, breach at 10:30).
FIRST_REPLY_CASES = [
    # (at, extra events, state, due, calendar_seconds_left, breached_at, fulfilled_at)
    ("10:00", [], "ok", "10:30", 1800, None, None),
    ("10:19", [], "ok", "10:30", 660, None, None),
    ("10:20", [], "warning", "10:30", 600, None, None),
    ("10:29", [], "warning", "10:30", 60, None, None),
    ("10:30", [], "breached", "10:30", 0, "10:30", None),
    ("11:00", [], "breached", "10:30", -1800, "10:30", None),
    ("10:40", [rep("10:25")], "fulfilled", None, None, None, "10:25"),
    (
        "10:30",
        [rep("10:30")],
        "fulfilled",
        None,
        None,
        None,
        "10:30",
    ),  # a reply at the due instant is in time
    # Breach is never erased: a late reply fulfils the metric but it stays breached.
    ("12:00", [rep("10:45")], "breached", "10:30", None, "10:30", "10:45"),
]


@pytest.mark.parametrize(("at", "extra", "state", "due", "left", "breached", "fulfilled"), FIRST_REPLY_CASES)
def test_first_reply_states(engine, at, extra, state, due, left, breached, fulfilled) -> None:
    r = engine.evaluate(COMMENT, [inb("10:00"), *extra], T(at))
    m = metric(r, "first_reply")
    assert m.state == state
    assert m.due_at == (T(due) if due else None)
    assert m.calendar_seconds_left == left
    assert m.breached_at == (T(breached) if breached else None)
    assert m.fulfilled_at == (T(fulfilled) if fulfilled else None)
    assert m.started_at == T("10:00")


def test_late_reply_keeps_result_breached_but_not_urgent(engine) -> None:
    r = engine.evaluate(COMMENT, [inb("10:00"), rep("10:45")], T("10:50"))
    assert metric(r, "first_reply").state == "breached"
    assert metric(r, "first_reply").elapsed_calendar_seconds == 2700
    assert r.state == "breached"
    # The fulfilled-but-breached reply metric no longer drives sorting: resolution (90m) does.
    assert r.urgent().metric == "resolution"
    assert r.due_at == T("11:30")


# -- business hours and holidays through the engine ---------------------------------------------

ATH = "Europe/Athens"
BUSINESS_CASES = [
    # (id, inbound local, at local, due local, business_seconds_left)
    ("Fri 16:30 -> Mon 09:30", "2026-03-06 16:30", "2026-03-06 16:40", "2026-03-09 09:30", 3000),
    ("Monday holiday -> Tue 09:30", "2026-01-09 16:30", "2026-01-09 16:30", "2026-01-13 09:30", 3600),
    ("evaluated over the weekend", "2026-03-06 16:30", "2026-03-08 12:00", "2026-03-09 09:30", 1800),
    # Europe DST: Friday is EET (+2), Monday is EEST (+3); due Mon 09:30 local = 06:30Z.
    ("across Athens spring forward", "2026-03-27 16:30", "2026-03-27 16:45", "2026-03-30 09:30", 2700),
    ("warning inside 15m", "2026-03-04 09:00", "2026-03-04 09:50", "2026-03-04 10:00", 600),
]


@pytest.mark.parametrize(
    ("start", "at", "due", "biz_left"), [c[1:] for c in BUSINESS_CASES], ids=[c[0] for c in BUSINESS_CASES]
)
def test_business_hours(engine, start: str, at: str, due: str, biz_left: int) -> None:
    r = engine.evaluate(EMAIL, [SlaEvent(L(ATH, start), "in")], L(ATH, at))
    m = metric(r, "first_reply")
    assert m.calendar == "office"
    assert m.due_at == L(ATH, due)
    assert m.business_seconds_left == biz_left
    assert m.calendar_seconds_left == L(ATH, due) - L(ATH, at)
    assert m.state == ("warning" if biz_left <= 900 else "ok")
    assert engine.timezone(m.calendar) == ATH


def test_business_breach_measures_overdue_business_time(engine) -> None:
    # Due Mon 09:30 Athens. At Tue 10:00 the overdue business time is Mon 09:30-17:00 (7h30m) plus
    # Tue 09:00-10:00 (1h) = 8h30m, while the calendar overdue time is 24h30m.
    events = [SlaEvent(L(ATH, "2026-03-06 16:30"), "in")]
    m = metric(engine.evaluate(EMAIL, events, L(ATH, "2026-03-10 10:00")), "first_reply")
    assert m.state == "breached"
    assert m.breached_at == L(ATH, "2026-03-09 09:30")
    assert m.business_seconds_left == -(7.5 + 1) * 3600
    assert m.calendar_seconds_left == L(ATH, "2026-03-09 09:30") - L(ATH, "2026-03-10 10:00")


def test_new_york_dst_business_calendar() -> None:
    s = SlaSettings.model_validate(
        {
            "calendars": {
                "ny": {
                    "timezone": "America/New_York",
                    "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                }
            },
            "policies": [{"name": "p", "first_reply": {"target": "2h", "calendar": "ny"}}],
        }
    )
    eng = SlaEngine(s)
    # Fri 2026-03-06 16:00 EST (21:00Z): 1h Friday + 1h Monday -> Mon 10:00 EDT = 14:00Z.
    r = eng.evaluate(EMAIL, [SlaEvent(T("21:00", "2026-03-06"), "in")], T("21:00", "2026-03-06"))
    assert r.metrics[0].due_at == T("14:00", "2026-03-09")
    assert eng.timezone("ny") == "America/New_York" and eng.timezone("24x7") == "UTC"


# -- pause and resume ---------------------------------------------------------------------------

# Comment inbound 10:00; pending 10:10-11:00; first_reply 30m -> 10 min used before the pause, due 11:20.
PAUSE_EVENTS = [inb("10:00"), st("10:10", "pending"), st("11:00", "open")]
PAUSE_CASES = [
    # (at, state, due, business_seconds_left, paused_reason)
    ("10:05", "ok", "10:30", 1500, None),
    ("10:10", "paused", None, 1200, "pending"),
    ("10:59", "paused", None, 1200, "pending"),
    ("11:00", "ok", "11:20", 1200, None),  # 20m left, warning only inside the last 10m
    ("11:15", "warning", "11:20", 300, None),
    ("11:30", "breached", "11:20", -600, None),
]


@pytest.mark.parametrize(("at", "state", "due", "left", "reason"), PAUSE_CASES)
def test_pause_and_resume(engine, at, state, due, left, reason) -> None:
    m = metric(engine.evaluate(COMMENT, PAUSE_EVENTS, T(at)), "first_reply")
    assert m.state == state
    assert m.due_at == (T(due) if due else None)
    assert m.business_seconds_left == left
    assert m.paused_reason == reason
    if state == "paused":
        assert m.calendar_seconds_left is None


def test_snoozed_pauses_and_policy_without_pause_does_not(engine) -> None:
    events = [inb("10:00"), st("10:10", "snoozed"), st("12:00", "open")]
    m = metric(engine.evaluate(COMMENT, events, T("12:00")), "first_reply")
    assert (m.state, m.due_at) == ("ok", T("12:20"))
    # The email policy has no pause_when: pending time counts (business hours: Mon 2026-03-02 is open).
    email_events = [inb("08:00"), st("08:10", "pending")]  # 10:00-10:10 Athens (UTC+2)
    m = metric(engine.evaluate(EMAIL, email_events, T("08:30")), "first_reply")
    assert (m.state, m.due_at) == ("ok", T("09:00"))


def test_pause_counts_for_resolution_too(engine) -> None:
    # resolution 90m: 10:00-10:10 (10m) + 11:00-12:20 (80m) -> breach 12:20.
    m = metric(engine.evaluate(COMMENT, PAUSE_EVENTS, T("13:00")), "resolution")
    assert (m.state, m.breached_at, m.elapsed_calendar_seconds) == ("breached", T("12:20"), 2 * 3600 + 600)


# -- next reply cycles --------------------------------------------------------------------------

# Three unanswered messages after our first reply: the cycle starts at the OLDEST (11:00).
CYCLE_EVENTS = [
    inb("10:00"),
    rep("10:05"),
    inb("11:00"),
    inb("11:20"),
    inb("11:40"),
    rep("12:30"),
    inb("13:00"),
]


def test_next_reply_from_oldest_unanswered(engine) -> None:
    r = engine.evaluate(COMMENT, CYCLE_EVENTS[:5], T("11:50"))
    m = metric(r, "next_reply")
    # 1h from 11:00 with 25% warning (15m): warning since 11:45.
    assert (m.started_at, m.due_at, m.state, m.cycle) == (T("11:00"), T("12:00"), "warning", 1)


def test_next_reply_breached_cycle_stays_in_history(engine) -> None:
    r = engine.evaluate(COMMENT, CYCLE_EVENTS, T("13:10"))
    cycles = [m for m in r.history if m.metric == "next_reply"]
    assert [(c.started_at, c.breached_at, c.fulfilled_at, c.state) for c in cycles] == [
        (T("11:00"), T("12:00"), T("12:30"), "breached"),
        (T("13:00"), None, None, "ok"),
    ]
    assert cycles[0].elapsed_calendar_seconds == 5400
    # The current cycle is the one shown.
    m = metric(r, "next_reply")
    assert (m.started_at, m.due_at, m.cycle) == (T("13:00"), T("14:00"), 2)
    assert (T("12:00"), "breach", "next_reply") in engine.transitions(COMMENT, CYCLE_EVENTS, 0, T("13:10"))


@pytest.mark.parametrize(("at", "state"), [("13:44", "ok"), ("13:45", "warning"), ("14:00", "breached")])
def test_warning_by_percent(engine, at: str, state: str) -> None:
    assert metric(engine.evaluate(COMMENT, CYCLE_EVENTS, T(at)), "next_reply").state == state


def test_resolving_pauses_an_open_reply_cycle_without_fulfilling_it(engine) -> None:
    events = [inb("10:00"), rep("10:05"), inb("10:10"), st("10:15", "resolved")]
    r = engine.evaluate(COMMENT, events, T("12:00"))
    m = metric(r, "next_reply")
    assert (m.state, m.paused_reason, m.fulfilled_at, m.breached_at) == ("paused", "resolved", None, None)
    assert m.elapsed_calendar_seconds == 5 * 60  # 10:10-10:15; nothing counts while resolved
    assert r.due_at is None


def test_resolving_an_unanswered_conversation_is_not_a_first_reply(engine) -> None:
    """README: a reply counts when it is sent. Resolve and reopen a never-answered conversation:
    its first reply is still owed, with the time spent resolved left out."""
    events = [inb("10:00"), st("10:10", "resolved"), st("11:00", "open")]
    m = metric(engine.evaluate(COMMENT, events, T("10:30")), "first_reply")
    assert (m.state, m.paused_reason, m.fulfilled_at) == ("paused", "resolved", None)
    m = metric(engine.evaluate(COMMENT, events, T("11:05")), "first_reply")
    assert (m.state, m.fulfilled_at, m.due_at) == ("ok", None, T("11:20"))  # 30m target, 15m used
    m = metric(engine.evaluate(COMMENT, [*events, rep("11:12")], T("12:00")), "first_reply")
    assert (m.state, m.fulfilled_at, m.fulfilled_by) == ("fulfilled", T("11:12"), "reply")
    m = metric(engine.evaluate(COMMENT, events, T("12:00")), "first_reply")
    assert (m.state, m.breached_at) == ("breached", T("11:20"))


def test_inbound_while_resolved_waits_for_reopen(engine) -> None:
    events = [inb("10:00"), rep("10:05"), st("10:15", "resolved"), inb("11:00"), st("12:00", "open")]
    m = metric(engine.evaluate(COMMENT, events, T("11:30")), "next_reply")
    assert (m.state, m.paused_reason, m.due_at) == ("paused", "resolved", None)
    m = metric(engine.evaluate(COMMENT, events, T("12:10")), "next_reply")
    assert (m.state, m.due_at) == ("ok", T("13:00"))


# -- resolution and reopening -------------------------------------------------------------------

REOPEN_EVENTS = [
    inb("10:00"),
    rep("10:05"),
    st("11:00", "resolved"),
    inb("15:00"),
    st("15:00", "open"),
    rep("15:10"),
    st("16:00", "resolved"),
]
REOPEN_CASES = [
    # 90m target: 60m used by 11:00; reopen 15:00 continues the same clock -> breach 15:30.
    ("10:30", "ok", T("11:30"), None, None),
    ("12:00", "fulfilled", None, None, T("11:00")),
    ("15:10", "ok", T("15:30"), None, None),  # 70m used, 20m left (no warn_before on resolution)
    ("15:30", "breached", T("15:30"), T("15:30"), None),
    ("17:00", "breached", T("15:30"), T("15:30"), T("16:00")),
]


@pytest.mark.parametrize(("at", "state", "due", "breached", "fulfilled"), REOPEN_CASES)
def test_resolution_reopen_continues_clock(engine, at, state, due, breached, fulfilled) -> None:
    m = metric(engine.evaluate(COMMENT, REOPEN_EVENTS, T(at)), "resolution")
    assert (m.state, m.due_at, m.breached_at, m.fulfilled_at) == (state, due, breached, fulfilled)


def test_resolution_transitions(engine) -> None:
    trans = [t for t in engine.transitions(COMMENT, REOPEN_EVENTS, 0, T("17:00")) if t[2] == "resolution"]
    assert trans == [
        (T("10:00"), "activate", "resolution"),
        (T("11:00"), "fulfil", "resolution"),
        (T("15:00"), "activate", "resolution"),
        (T("15:30"), "breach", "resolution"),
        (T("16:00"), "fulfil", "resolution"),
    ]


def test_all_transitions_and_replay_windows(engine) -> None:
    trans = engine.transitions(COMMENT, PAUSE_EVENTS + [rep("11:30")], 0, T("12:00"))
    assert trans == [
        (T("10:00"), "activate", "first_reply"),
        (T("10:00"), "activate", "resolution"),
        (T("10:10"), "pause", "first_reply"),
        (T("10:10"), "pause", "resolution"),
        (T("11:00"), "resume", "first_reply"),
        (T("11:00"), "resume", "resolution"),
        (T("11:20"), "breach", "first_reply"),
        (T("11:30"), "fulfil", "first_reply"),
    ]
    # Incremental windows (since, until] add up to the whole, with nothing duplicated.
    events = PAUSE_EVENTS + [rep("11:30")]
    pieces = []
    for a, b in [("00:00", "10:10"), ("10:10", "11:20"), ("11:20", "12:00")]:
        pieces += engine.transitions(COMMENT, [e for e in events if e.at <= T(b)], T(a), T(b))
    assert pieces == trans


# -- replay at a past moment, policy edits -------------------------------------------------------

REPLAY_EVENTS = [inb("10:00"), rep("10:25"), st("11:00", "resolved")]


@pytest.mark.parametrize(
    ("at", "first_reply", "resolution"),
    [
        ("09:59", None, None),
        ("10:20", "warning", "ok"),
        ("10:25", "fulfilled", "ok"),
        ("11:00", "fulfilled", "fulfilled"),
    ],
)
def test_replay_at_past_moment(engine, at: str, first_reply: str | None, resolution: str | None) -> None:
    r = engine.evaluate(COMMENT, REPLAY_EVENTS, T(at))
    states = {m.metric: m.state for m in r.metrics}
    assert states.get("first_reply") == first_reply
    assert states.get("resolution") == resolution
    assert r.at == T(at)
    if first_reply is None:
        assert r.state == "none"


def test_policy_edit_mid_conversation(engine) -> None:
    events = [inb("10:00")]
    before = metric(engine.evaluate(COMMENT, events, T("11:00")), "first_reply")
    edited = SlaSettings.model_validate(
        {
            "policies": [
                {"name": "public-social", "match": {"kind": ["comment"]}, "first_reply": {"target": "2h"}}
            ]
        }
    )
    after = metric(SlaEngine(edited).evaluate(COMMENT, events, T("11:00")), "first_reply")
    assert (before.state, before.due_at) == ("breached", T("10:30"))
    assert (after.state, after.due_at) == ("ok", T("12:00"))


# -- escalation ---------------------------------------------------------------------------------

ESCALATION_CASES = [
    # (id, attrs, metric, target seconds, due)
    ("not escalated", COMMENT, "first_reply", 1800, "10:30"),
    (
        "escalated halves first reply",
        ConvAttrs("facebook", "comment", escalated=True),
        "first_reply",
        900,
        "10:15",
    ),
    (
        "escalated halves resolution",
        ConvAttrs("facebook", "comment", escalated=True),
        "resolution",
        2700,
        "10:45",
    ),
    (
        "policy matching escalated is not halved again",
        ConvAttrs("x", "comment", frozenset({"vip"}), escalated=True),
        "first_reply",
        600,
        "10:10",
    ),
    (
        "escalated_factor 1 disables halving",
        ConvAttrs("x", "dm", priority="high", escalated=True),
        "first_reply",
        300,
        "10:05",
    ),
]


@pytest.mark.parametrize(
    ("attrs", "name", "target", "due"),
    [c[1:] for c in ESCALATION_CASES],
    ids=[c[0] for c in ESCALATION_CASES],
)
def test_escalated_targets(engine, attrs: ConvAttrs, name: str, target: int, due: str) -> None:
    m = metric(engine.evaluate(attrs, [inb("10:00")], T("10:00")), name)
    assert (m.target_seconds, m.due_at) == (target, T(due))


def test_escalated_warning_percent_scales_minutes_do_not(engine) -> None:
    esc = ConvAttrs("facebook", "comment", escalated=True)
    events = [inb("10:00"), rep("10:01"), inb("11:00")]
    nr = metric(engine.evaluate(esc, events, T("11:00")), "next_reply")
    fr = metric(engine.evaluate(esc, [inb("10:00")], T("10:00")), "first_reply")
    assert (nr.target_seconds, nr.warn_seconds) == (1800, 450)  # 25% of the halved 30m
    assert (fr.target_seconds, fr.warn_seconds) == (900, 600)  # 10m as written
    assert engine.evaluate(esc, [inb("10:00")], T("10:05")).metrics[0].state == "warning"


# -- misc -----------------------------------------------------------------------------------------


def test_no_inbound_means_nothing_to_measure(engine) -> None:
    r = engine.evaluate(COMMENT, [rep("10:00"), st("10:05", "pending")], T("11:00"))
    assert (r.policy, r.metrics, r.state) == ("public-social", [], "none")


def test_outbound_first_then_customer(engine) -> None:
    # Our opening message does not count as a reply to anything; first_reply starts at 10:30.
    r = engine.evaluate(COMMENT, [rep("10:00"), inb("10:30"), rep("10:40")], T("11:00"))
    m = metric(r, "first_reply")
    assert (m.started_at, m.fulfilled_at, m.state) == (T("10:30"), T("10:40"), "fulfilled")
    assert r.metric("next_reply") is None


def test_status_comes_from_the_log_not_from_todays_attrs(engine) -> None:
    """Replay must not see today's status; pre-filtered events give the same answer as all events."""
    resolved_now = ConvAttrs("facebook", "comment", status="resolved")
    events = [inb("10:00"), rep("10:20"), st("12:00", "resolved")]
    past = engine.evaluate(resolved_now, events, T("11:00"))
    assert metric(past, "resolution").state == "ok"
    assert engine.evaluate(resolved_now, [e for e in events if e.at <= T("11:00")], T("11:00")) == past
    assert metric(engine.evaluate(resolved_now, events, T("12:00")), "resolution").fulfilled_at == T("12:00")


def test_unsorted_events_and_ignored_kinds(engine) -> None:
    events = [
        rep("10:25"),
        SlaEvent(T("10:01"), "note"),
        inb("10:00"),
        SlaEvent(T("10:02"), "tag", {"tag": "x"}),
    ]
    m = metric(engine.evaluate(COMMENT, events, T("11:00")), "first_reply")
    assert (m.fulfilled_at, m.elapsed_calendar_seconds) == (T("10:25"), 1500)


def test_to_json_contract(engine) -> None:
    r = engine.evaluate(COMMENT, PAUSE_EVENTS, T("10:30"))
    j = metric(r, "first_reply").to_json()
    assert j == {
        "metric": "first_reply",
        "state": "paused",
        "target_seconds": 1800,
        "calendar": "24x7",
        "started_at": "2026-03-02T10:00:00Z",
        "due_at": None,
        "calendar_seconds_left": None,
        "business_seconds_left": 1200,
        "paused_reason": "pending",
        "fulfilled_at": None,
        "breached_at": None,
    }
    assert r.to_json()["at"] == "2026-03-02T10:30:00Z"
    assert r.state == "paused" and r.due_at is None


def test_urgent_prefers_breached_then_earliest_due(engine) -> None:
    # first_reply breached at 10:30 (still open); resolution due 11:30.
    r = engine.evaluate(COMMENT, [inb("10:00")], T("10:40"))
    assert r.urgent().metric == "first_reply" and r.due_at == T("10:30") and r.state == "breached"
    r = engine.evaluate(COMMENT, [inb("10:00")], T("10:10"))
    assert r.urgent().metric == "first_reply" and r.due_at == T("10:30") and r.state == "ok"


def test_evaluate_with_transitions_matches_the_two_calls():
    from replydesk.slaconfig import SlaSettings

    engine = SlaEngine(SlaSettings())
    attrs = ConvAttrs(platform="x", kind="comment", tags=frozenset(), priority="normal", escalated=False,
                      status="open")
    events = [SlaEvent(0.0, "in"), SlaEvent(4000.0, "reply"), SlaEvent(5000.0, "in")]
    result, trans = engine.evaluate_with_transitions(attrs, events, 100.0, 9000.0)
    assert result.to_json() == engine.evaluate(attrs, events, 9000.0).to_json()
    assert trans == engine.transitions(attrs, events, 100.0, 9000.0)
    assert [t[1] for t in trans] == ["breach", "fulfil", "activate", "breach"]
