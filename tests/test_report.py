"""Report figures (replydesk.report) on a small dataset computed by hand.

One policy for platforms x and facebook, 24x7: first_reply 30m, next_reply 1h, resolution 4h,
paused while pending. Mastodon has no policy. Everything happens on Monday 2026-03-02 (UTC) and the
report is evaluated at until = 16:00.

  A (x):         in 10:00, reply 10:10, resolved 10:20
                 FR 600 (in time); resolution 1200 (in time); 1 reply, resolved -> first-contact.
  B (x):         in 10:00, reply 10:40, in 11:00, reply 11:30, resolved 12:00
                 FR 2400 (breached at 10:30); NR 1800 (in time); resolution 7200 (in time); 2 replies.
  C (facebook):  in 10:00, reply 10:20, in 10:30, in 10:50, pending 11:00, open 12:00, reply 13:00
                 FR 1200 (in time); NR from the oldest (10:30): 10:30-11:00 + 12:00-13:00 = 5400,
                 breached at 12:30; resolution running: 10:00-11:00 + 12:00-15:00 = 4h -> breached
                 at 15:00, not resolved; 2 replies.
  D (facebook):  in 15:45, nothing else: FR running (15m of 30m, undecided), resolution running.
  E (mastodon):  in 10:00, reply 11:00; no policy: FR measured (3600) but has no target.

All (5 conversations):
  first_reply values [600, 1200, 2400, 3600] -> median (1200+2400)/2 = 1800, p90 nearest rank
      ceil(0.9*4)=4th = 3600; within target: decided A, B, C (D undecided, E no target) -> 2/3.
  next_reply values [1800, 5400] -> median 3600, p90 ceil(1.8)=2nd = 5400; within 1/2.
  resolution values [1200, 7200] -> median 4200, p90 7200; decided A, B (in time), C (breached) -> 2/3.
  breaches: B first_reply, C next_reply, C resolution = 3.
  first-contact resolution: resolved A (1 reply), B (2 replies) -> 1/2.
  replies per conversation: (1 + 2 + 2 + 0 + 1) / 5 = 1.2.

CSAT answers (``csat`` events, which the SLA ignores): A 5 stars at 10:30, B "good" at 12:30 (and a
second answer at 17:00, after until: not counted), E "2" at 11:30.
  All: 3 responses; satisfied A and B -> 2/3; average of the scores (5 + 2) / 2 = 3.5 (B has none).
  x: 2 responses, both satisfied -> 1.0, average 5.0; facebook: none; mastodon: 1, 0.0, 2.0.
"""

from __future__ import annotations

import datetime as dt

import pytest

from replydesk.report import (
    breaches_per_day,
    build_report,
    group_figures,
    metric_figures,
    percentile,
    reply_times,
    report_groups,
)
from replydesk.sla import ConvAttrs, SlaEngine, SlaEvent
from replydesk.slaconfig import SlaSettings


def T(hhmm: str) -> float:
    return dt.datetime.fromisoformat(f"2026-03-02 {hhmm}").replace(tzinfo=dt.UTC).timestamp()


def ev(hhmm: str, kind: str, status: str | None = None) -> SlaEvent:
    return SlaEvent(T(hhmm), kind, {"status": status} if status else {})


def answer(hhmm: str, score: int | None, satisfied: bool) -> SlaEvent:
    return SlaEvent(T(hhmm), "csat", {"score": score, "satisfied": satisfied, "how": "number"})


SETTINGS = SlaSettings.model_validate(
    {
        "policies": [
            {
                "name": "social",
                "match": {"platform": ["x", "facebook"]},
                "first_reply": {"target": "30m"},
                "next_reply": {"target": "1h"},
                "resolution": {"target": "4h"},
                "pause_when": ["pending"],
            }
        ]
    }
)
UNTIL = T("16:00")

CONVERSATIONS = {
    "A": (
        ConvAttrs("x", "comment"),
        [ev("10:00", "in"), ev("10:10", "reply"), ev("10:20", "status", "resolved"), answer("10:30", 5, True)],
    ),
    "B": (
        ConvAttrs("x", "dm"),
        [
            ev("10:00", "in"),
            ev("10:40", "reply"),
            ev("11:00", "in"),
            ev("11:30", "reply"),
            ev("12:00", "status", "resolved"),
            answer("12:30", None, True),
            answer("17:00", 1, False),
        ],
    ),
    "C": (
        ConvAttrs("facebook", "comment"),
        [
            ev("10:00", "in"),
            ev("10:20", "reply"),
            ev("10:30", "in"),
            ev("10:50", "in"),
            ev("11:00", "status", "pending"),
            ev("12:00", "status", "open"),
            ev("13:00", "reply"),
        ],
    ),
    "D": (ConvAttrs("facebook", "dm"), [ev("15:45", "in")]),
    "E": (ConvAttrs("mastodon", "mention"), [ev("10:00", "in"), ev("11:00", "reply"), answer("11:30", 2, False)]),
}


def items(by_platform: bool = False):
    engine = SlaEngine(SETTINGS)
    out = []
    for attrs, events in CONVERSATIONS.values():
        key = attrs.platform if by_platform else "all"
        out.append((key, attrs, events, engine.evaluate(attrs, events, UNTIL)))
    return out


def test_all_group_hand_computed() -> None:
    assert group_figures("all", items(), UNTIL) == {
        "key": "all",
        "conversations": 5,
        "first_reply": {"median_seconds": 1800, "p90_seconds": 3600, "within_target": pytest.approx(2 / 3)},
        "next_reply": {"median_seconds": 3600, "p90_seconds": 5400, "within_target": 0.5},
        "resolution": {"median_seconds": 4200, "p90_seconds": 7200, "within_target": pytest.approx(2 / 3)},
        "breaches": 3,
        "first_contact_resolution": 0.5,
        "replies_per_conversation": 1.2,
        "csat": {"responses": 3, "satisfied": pytest.approx(2 / 3), "average": 3.5},
    }


def test_groups_by_platform_hand_computed() -> None:
    groups = {g["key"]: g for g in report_groups(items(by_platform=True), UNTIL)}
    assert list(groups) == ["facebook", "mastodon", "x"]
    # x: A and B. FR [600, 2400] median 1500, p90 2nd = 2400, B breached -> 1/2.
    assert groups["x"] == {
        "key": "x",
        "conversations": 2,
        "first_reply": {"median_seconds": 1500, "p90_seconds": 2400, "within_target": 0.5},
        "next_reply": {"median_seconds": 1800, "p90_seconds": 1800, "within_target": 1.0},
        "resolution": {"median_seconds": 4200, "p90_seconds": 7200, "within_target": 1.0},
        "breaches": 1,
        "first_contact_resolution": 0.5,
        "replies_per_conversation": 1.5,
        "csat": {"responses": 2, "satisfied": 1.0, "average": 5.0},
    }
    # facebook: C and D. FR [1200] (D undecided); NR [5400] breached; resolution: none resolved,
    # C breached -> within 0/1; nothing resolved -> first-contact resolution undefined.
    assert groups["facebook"] == {
        "key": "facebook",
        "conversations": 2,
        "first_reply": {"median_seconds": 1200, "p90_seconds": 1200, "within_target": 1.0},
        "next_reply": {"median_seconds": 5400, "p90_seconds": 5400, "within_target": 0.0},
        "resolution": {"median_seconds": None, "p90_seconds": None, "within_target": 0.0},
        "breaches": 2,
        "first_contact_resolution": None,
        "replies_per_conversation": 1.0,
        "csat": {"responses": 0, "satisfied": None, "average": None},
    }
    # mastodon: E without a policy: measured, never judged.
    assert groups["mastodon"]["first_reply"] == {
        "median_seconds": 3600,
        "p90_seconds": 3600,
        "within_target": None,
    }
    assert groups["mastodon"]["breaches"] == 0
    assert groups["mastodon"]["csat"] == {"responses": 1, "satisfied": 0.0, "average": 2.0}


def test_build_report_shape() -> None:
    report = build_report(items(), T("00:00"), UNTIL)
    assert report["since"] == "2026-03-02T00:00:00Z" and report["until"] == "2026-03-02T16:00:00Z"
    assert "by" not in report
    assert [g["key"] for g in report["groups"]] == ["all"]
    assert set(report["groups"][0]) == {
        "key",
        "conversations",
        "first_reply",
        "next_reply",
        "resolution",
        "breaches",
        "first_contact_resolution",
        "replies_per_conversation",
        "csat",
    }
    by = build_report(items(by_platform=True), None, UNTIL, by="platform")
    assert by["by"] == "platform" and len(by["groups"]) == 3
    empty = build_report([], None, UNTIL)
    assert empty["groups"][0]["conversations"] == 0
    assert empty["groups"][0]["first_reply"] == {
        "median_seconds": None,
        "p90_seconds": None,
        "within_target": None,
    }


def test_what_if_other_policy_changes_the_numbers() -> None:
    """--what-if: the same history under a 1h first-reply target makes B in time."""
    loose = SlaSettings.model_validate({"policies": [{"name": "loose", "first_reply": {"target": "1h"}}]})
    engine = SlaEngine(loose)
    alt = [("all", a, e, engine.evaluate(a, e, UNTIL)) for a, e in CONVERSATIONS.values()]
    g = group_figures("all", alt, UNTIL)
    # Now all five have a policy: decided A, B, C, E (all in time; D undecided) -> 1.0; no breaches.
    assert g["first_reply"]["within_target"] == 1.0
    assert g["breaches"] == 0
    assert g["next_reply"] == {"median_seconds": None, "p90_seconds": None, "within_target": None}


def test_business_calendar_times_are_business_seconds() -> None:
    settings = SlaSettings.model_validate(
        {"policies": [{"name": "mail", "first_reply": {"target": "4h", "calendar": "business"}}]}
    )
    engine = SlaEngine(settings)
    attrs = ConvAttrs("email", "email")
    friday = dt.datetime(2026, 3, 6, 16, 30, tzinfo=dt.UTC).timestamp()
    monday = dt.datetime(2026, 3, 9, 10, 0, tzinfo=dt.UTC).timestamp()
    events = [SlaEvent(friday, "in"), SlaEvent(monday, "reply")]
    g = group_figures("all", [("all", attrs, events, engine.evaluate(attrs, events, monday))], monday)
    # Fri 16:30-17:00 + Mon 09:00-10:00 = 1h30m of business time, not 65h30m.
    assert g["first_reply"]["median_seconds"] == 5400


def test_helpers() -> None:
    assert percentile([], 90) is None
    assert percentile([5, 1, 3], 50) == 3
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile([1, 2, 3, 4, 5], 90) == 5  # rank ceil(4.5) = 5: nearest rank never rounds down
    assert percentile(list(range(1, 11)), 100) == 10
    assert metric_figures([]) == {"median_seconds": None, "p90_seconds": None, "within_target": None}
    assert breaches_per_day(items()) == {"2026-03-02": 3}
    assert sorted(reply_times(items(), "first_reply")) == [600, 1200, 2400]  # E has no policy: no history
    assert reply_times(items(), "resolution") == [1200, 7200]
