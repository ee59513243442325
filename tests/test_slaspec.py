"""The SLA settings as plain data (``slaspec.SettingsData``, what the read commands evaluate with)
give the same answers as the validated models they were dumped from."""

from __future__ import annotations

import dataclasses

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from replydesk import slaconfig, slaspec
from replydesk.sla import ConvAttrs, SlaEngine, SlaEvent
from support import FIXED_NOW, REPO

PAIRS = [(slaconfig.CalendarSpec, slaspec.CalendarData), (slaconfig.TargetSpec, slaspec.TargetData),
         (slaconfig.MatchSpec, slaspec.MatchData), (slaconfig.PolicySpec, slaspec.PolicyData),
         (slaconfig.SlaSettings, slaspec.SettingsData)]


def example_settings() -> slaconfig.SlaSettings:
    """config.example.yaml's sla section (a split-shift calendar in Athens with holidays), plus an
    escalated policy with its own factor and a tag match, so every rule is exercised."""
    section = yaml.safe_load((REPO / "config.example.yaml").read_text(encoding="utf-8"))["sla"]
    section["policies"].insert(0, {
        "name": "vip-escalated", "match": {"tags": ["vip"], "escalated": True, "priority": ["high", "urgent"]},
        "first_reply": {"target": "20m", "calendar": "office", "warn_before": "50%"},
        "resolution": {"target": "8h", "calendar": "office"}, "escalated_factor": 0.25,
    })
    return slaconfig.load_sla_settings(section)


def test_the_twins_have_the_same_fields() -> None:
    for model, data in PAIRS:
        assert set(model.model_fields) == {f.name for f in dataclasses.fields(data)}, model.__name__


def test_the_twins_answer_the_rules_alike() -> None:
    validated = example_settings()
    plain = slaspec.SettingsData.from_json(validated.model_dump(mode="json"))
    assert plain.calendar_names() == validated.calendar_names()
    for name in validated.calendar_names():
        a, b = validated.calendar(name), plain.calendar(name)
        assert (a is None) == (b is None)
        if a is not None:
            assert (a.timezone, a.intervals(), list(a.holidays)) == (b.timezone, b.intervals(), list(b.holidays))
    for a, b in zip(validated.policies, plain.policies, strict=True):
        assert a.name == b.name and a.calendars_used() == b.calendars_used()
        assert [a.factor_for(e) for e in (False, True)] == [b.factor_for(e) for e in (False, True)]
        for metric in slaspec.METRICS:
            ta, tb = a.target(metric), b.target(metric)
            assert (ta is None) == (tb is None)
            if ta is not None:
                assert (ta.target, ta.calendar, ta.warn_seconds(), ta.warn_seconds(600)) == \
                       (tb.target, tb.calendar, tb.warn_seconds(), tb.warn_seconds(600))


VALIDATED = example_settings()
ENGINES = (SlaEngine(VALIDATED), SlaEngine(slaspec.SettingsData.from_json(VALIDATED.model_dump(mode="json"))))

events = st.lists(st.tuples(
    st.floats(min_value=0, max_value=14 * 86400, allow_nan=False),
    st.sampled_from(["in", "reply", "status"]),
    st.sampled_from(["open", "pending", "snoozed", "resolved"]),
), max_size=12)


@settings(max_examples=150, deadline=None)
@given(events=events, kind=st.sampled_from(["dm", "comment", "mention", "review", "email"]),
       tags=st.frozensets(st.sampled_from(["vip", "refund"])), priority=st.sampled_from(slaspec.PRIORITIES),
       escalated=st.booleans(), at=st.floats(min_value=0, max_value=21 * 86400, allow_nan=False))
def test_the_engine_gives_the_same_result_on_either(events, kind, tags, priority, escalated, at) -> None:
    attrs = ConvAttrs(platform="email", kind=kind, tags=tags, priority=priority, escalated=escalated)
    log = [SlaEvent(at=FIXED_NOW + t, kind=k, data={"status": s} if k == "status" else {}) for t, k, s in events]
    a, b = (engine.evaluate_with_transitions(attrs, log, FIXED_NOW, FIXED_NOW + at) for engine in ENGINES)
    assert a == b
