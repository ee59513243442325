"""The `sla:` section of config.yaml: business calendars and response-time policies.

Pydantic v2 models with ``extra="forbid"`` so a typo (``warn_befor``) is an error that names the
field instead of a silently ignored setting. Durations are written like ``30m``, ``4h``, ``1d``,
``1h30m`` or ``90s`` and stored as whole seconds.

Built-in calendars:

* ``24x7`` is always open and cannot be redefined.
* ``business`` is Mon-Fri 09:00-17:00 UTC with no holidays; define ``calendars.business`` to give it
  your own time zone, hours and holidays (the shipped email policy uses it).

Escalation: when a conversation is escalated, every target of the matching policy is multiplied by
``escalated_factor`` (default 0.5, i.e. halved). A policy that itself matches ``escalated: true``
already states targets for escalated conversations, so its targets are used as written unless it
sets ``escalated_factor`` explicitly.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from replydesk.model import KINDS
from replydesk.slaspec import (  # noqa: F401 - the rules and units live there, pydantic-free; re-exported
    ALWAYS_OPEN,
    BUSINESS,
    BUSINESS_HOURS,
    DEFAULT_ESCALATED_FACTOR,
    METRICS,
    PAUSE_STATUSES,
    PRIORITIES,
    WEEKDAYS,
    CalendarRules,
    PolicyRules,
    SettingsRules,
    TargetRules,
    format_duration,
    parse_duration,
    parse_interval,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalendarSpec(_Strict, CalendarRules):
    """A business calendar: when the team is expected to answer.

    ``hours`` maps weekdays (mon..sun) to open intervals in local time; several per day are split
    shifts, and an interval ending at or before its start runs past midnight into the next day.
    A holiday closes its whole local date, including the after-midnight tail of the previous day's
    shift. Missing weekdays are closed.
    """

    timezone: str = "UTC"
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]] = Field(
        default_factory=dict
    )
    holidays: list[dt.date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Athens") from exc
        return value

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, intervals in value.items():
            for text in intervals:
                try:
                    parse_interval(text)
                except ValueError as exc:
                    raise ValueError(f"{day}: {exc}") from None
        if not any(value.values()):
            raise ValueError("a calendar needs at least one open interval (e.g. mon: [09:00-17:00])")
        return value


BUSINESS_CALENDAR = CalendarSpec(timezone="UTC", hours=BUSINESS_HOURS)


class TargetSpec(_Strict, TargetRules):
    """One metric's target: a duration on a calendar, with an optional early warning."""

    target: int
    calendar: str = ALWAYS_OPEN
    warn_before: str | None = None  # "10m" (duration on the same clock) or "25%" (of the target)

    @field_validator("target", mode="before")
    @classmethod
    def _parse_target(cls, value: Any) -> int:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError(f"target {value!r} must be longer than zero")
        return seconds

    @field_validator("warn_before", mode="before")
    @classmethod
    def _parse_warn(cls, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                pct = float(value.strip()[:-1])
            except ValueError:
                raise ValueError(f"invalid percentage {value!r}: expected e.g. 25%") from None
            if not 0 < pct < 100:
                raise ValueError(f"warn_before {value!r} must be between 0% and 100%")
            return f"{pct:g}%"
        return format_duration(parse_duration(value))


def _as_list(value: Any) -> Any:
    """Let users write ``kind: dm`` as well as ``kind: [dm]``."""
    return [value] if isinstance(value, str) else value


class MatchSpec(_Strict):
    """Which conversations a policy applies to; an absent field matches anything, tags is any-of.

    ``listening: true`` matches posts a listening query found that wait in the Listening view, and
    gives them a clock (by default they have none: a policy that does not say ``listening: true``
    may match them, but their posts start nothing until they are answered or the customer tags us).
    """

    platform: list[str] | None = None
    kind: list[str] | None = None
    tags: list[str] | None = None
    priority: list[str] | None = None
    escalated: bool | None = None
    listening: bool | None = None

    @field_validator("platform", "kind", "tags", "priority", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("kind")
    @classmethod
    def _check_kind(cls, value: list[str] | None) -> list[str] | None:
        for k in value or ():
            if k not in KINDS:
                raise ValueError(f"unknown kind {k!r}: expected one of {', '.join(KINDS)}")
        return value

    @field_validator("priority")
    @classmethod
    def _check_priority(cls, value: list[str] | None) -> list[str] | None:
        for p in value or ():
            if p not in PRIORITIES:
                raise ValueError(f"unknown priority {p!r}: expected one of {', '.join(PRIORITIES)}")
        return value


class PolicySpec(_Strict, PolicyRules):
    """A named set of targets; the first policy (top to bottom) whose ``match`` applies wins."""

    name: str
    match: MatchSpec = Field(default_factory=MatchSpec)
    first_reply: TargetSpec | None = None
    next_reply: TargetSpec | None = None
    resolution: TargetSpec | None = None
    pause_when: list[Literal["pending", "snoozed"]] = Field(default_factory=list)
    escalated_factor: float | None = Field(default=None, gt=0, le=1)
    #: An automatic reply (a rule's acknowledgement, a survey) counts as our reply for this policy's
    #: first and next reply; by default only a person's reply does.
    count_auto_replies: bool = False


DEFAULT_POLICIES: list[PolicySpec] = [
    PolicySpec.model_validate(p)
    for p in (
        {
            "name": "public-social",
            "match": {"kind": ["comment", "mention"]},
            "first_reply": {"target": "30m", "warn_before": "10m"},
            "next_reply": {"target": "30m", "warn_before": "10m"},
            "resolution": {"target": "1d", "warn_before": "25%"},
            "pause_when": ["pending", "snoozed"],
        },
        {
            "name": "direct-messages",
            "match": {"kind": ["dm"]},
            "first_reply": {"target": "1h", "warn_before": "15m"},
            "next_reply": {"target": "1h", "warn_before": "15m"},
            "resolution": {"target": "1d", "warn_before": "25%"},
            "pause_when": ["pending", "snoozed"],
        },
        {
            "name": "email",
            "match": {"kind": ["email"]},
            "first_reply": {"target": "4h", "calendar": BUSINESS, "warn_before": "1h"},
            "next_reply": {"target": "4h", "calendar": BUSINESS, "warn_before": "1h"},
            # 16 business hours = two working days on the Mon-Fri 09:00-17:00 calendar.
            "resolution": {"target": "16h", "calendar": BUSINESS, "warn_before": "25%"},
            "pause_when": ["pending", "snoozed"],
        },
        {
            "name": "reviews",
            "match": {"kind": ["review"]},
            "first_reply": {"target": "24h", "warn_before": "25%"},
            "next_reply": {"target": "24h", "warn_before": "25%"},
            "pause_when": ["pending", "snoozed"],
        },
    )
]


#: Reviews of 1 or 2 stars come in at high priority: an unanswered one-star review sits in public.
DEFAULT_REVIEW_PRIORITY: dict[int, str] = {1: "high", 2: "high"}


class SlaSettings(_Strict, SettingsRules):
    """The whole ``sla:`` section; ``policies`` falls back to DEFAULT_POLICIES when absent.

    ``review_priority`` maps a review's stars to the priority it comes in with (raised to at least
    that, never lowered: a person may have set it higher), so policies can match on it; ``{}`` turns
    it off.
    """

    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    policies: list[PolicySpec] = Field(default_factory=lambda: list(DEFAULT_POLICIES))
    review_priority: dict[int, Literal["low", "normal", "high", "urgent"]] = Field(
        default_factory=lambda: dict(DEFAULT_REVIEW_PRIORITY))

    @field_validator("review_priority")
    @classmethod
    def _stars(cls, value: dict[int, str]) -> dict[int, str]:
        for stars in value:
            if not 1 <= stars <= 5:
                raise ValueError(f"review_priority: {stars} is not a star rating (1-5)")
        return value

    @model_validator(mode="after")
    def _check_references(self) -> SlaSettings:
        if ALWAYS_OPEN in self.calendars:
            raise ValueError(
                f"calendars.{ALWAYS_OPEN}: the built-in always-open calendar cannot be redefined"
            )
        known = self.calendar_names()
        seen: set[str] = set()
        for i, policy in enumerate(self.policies):
            if policy.name in seen:
                raise ValueError(f"policies[{i}].name: duplicate policy name {policy.name!r}")
            seen.add(policy.name)
            for metric, cal in policy.calendars_used():
                if cal not in known:
                    raise ValueError(
                        f"policies[{i}] ({policy.name}).{metric}.calendar: unknown calendar {cal!r}; "
                        f"known: {', '.join(sorted(known))}"
                    )
        return self

    def business_default(self) -> CalendarSpec:
        return BUSINESS_CALENDAR


def load_sla_settings(section: Any) -> SlaSettings:
    """Validate the raw ``sla:`` mapping from YAML (None or absent -> shipped defaults)."""
    if section is None:
        return SlaSettings()
    return SlaSettings.model_validate(section)
