"""The ``rules:``, ``csat:`` and ``customer_languages:`` sections of config.yaml.

A rule is a name, conditions (``when``) and actions (``then``). Conditions say what a saved view
says, in the search syntax (``query: "kind:dm tag:refund"``), plus what a view cannot: any of some
words, the message's language, a VIP customer, a review's rating, a message written outside a
calendar's hours, and "no reply for N minutes". Pydantic checks each field; ``problems`` checks what
needs the rest of the config (calendars, saved replies, accounts, escalation targets, what the
platforms can do), so every mistake is reported with the file and line of the rule.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from replydesk.model import KINDS
from replydesk.options import Duration, Strict
from replydesk.searchsyntax import parse

#: Languages the detector (lingua) knows, as ISO 639-1 codes; a test keeps this equal to lingua's
#: own list, so the config is checked without loading it.
LANGUAGE_CODES = (
    "af", "ar", "az", "be", "bg", "bn", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "eo", "es", "et",
    "eu", "fa", "fi", "fr", "ga", "gu", "he", "hi", "hr", "hu", "hy", "id", "is", "it", "ja", "ka", "kk",
    "ko", "la", "lg", "lt", "lv", "mi", "mk", "mn", "mr", "ms", "nb", "nl", "nn", "pa", "pl", "pt", "ro",
    "ru", "sk", "sl", "sn", "so", "sq", "sr", "st", "sv", "sw", "ta", "te", "th", "tl", "tn", "tr", "ts",
    "uk", "ur", "vi", "xh", "yo", "zh", "zu",
)
#: The platforms a rule can name (a test keeps this equal to the platforms the providers know).
PLATFORMS = ("bluesky", "email", "facebook", "google", "instagram", "mastodon", "telegram", "whatsapp", "x")
#: The demo shop's languages: the default set the language condition chooses among.
DEFAULT_LANGUAGES = ("en", "sw", "hi", "ms", "el", "kk")
#: Search filters a rule cannot use: they describe the inbox now, not the message that came in
#: (``no_reply_for`` is the rule's way to say "waiting too long").
UNSUPPORTED_FILTERS = {"breached": "is:breached", "unread": "is:unread"}
_RATING = re.compile(r"^\s*(?:(<=|>=|<|>)\s*([1-5])|([1-5])\s*-\s*([1-5])|([1-5]))\s*$")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def parse_rating(value: Any) -> tuple[int, int]:
    """``4``, ``"1-2"``, ``"<=2"``, ``">3"`` -> the inclusive (low, high) range of stars (1-5)."""
    if isinstance(value, bool):
        raise ValueError("expected a rating such as 1, 1-2, <=2 or >=4")
    if isinstance(value, int):
        if not 1 <= value <= 5:
            raise ValueError("a rating is 1 to 5 stars")
        return value, value
    match = _RATING.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected a rating such as 1, 1-2, <=2 or >=4 (1 to 5 stars)")
    op, n, lo, hi, exact = match.groups()
    if exact:
        return int(exact), int(exact)
    if lo:
        low, high = int(lo), int(hi)
        if low > high:
            raise ValueError(f"the range {value!r} is empty: write the lower rating first")
        return low, high
    n = int(n)
    low, high = {"<=": (1, n), ">=": (n, 5), "<": (1, n - 1), ">": (n + 1, 5)}[op]
    if low > high:
        raise ValueError(f"no rating is {value}")
    return low, high


class WhenSpec(Strict):
    """What a rule waits for. Every condition given must hold; none given: every customer message."""

    query: str = ""
    """The search syntax, as in a saved view: words that must all be in the message, and filters
    (``platform:``, ``kind:``, ``account:``, ``tag:``, ``assignee:``, ``from:``, ``is:open`` …)."""
    words: Annotated[list[str] | None, BeforeValidator(_as_list)] = None
    """Any one of these words or phrases in the message (the search's matching: whole words, case
    and Latin accents ignored)."""
    language: Annotated[list[str] | None, BeforeValidator(_as_list)] = None
    """The message is in one of these languages (ISO 639-1 codes, detected offline)."""
    vip: bool | None = None
    """The customer is (true) or is not (false) a VIP."""
    rating: Annotated[tuple[int, int] | None, BeforeValidator(lambda v: None if v is None else parse_rating(v))] = None
    """A review's rating: ``2``, ``1-2``, ``<=2``, ``>=4`` (stars, 1-5)."""
    outside_hours: str | None = None
    """The message was written outside this calendar's open hours (``business`` or one of ``sla.calendars``)."""
    no_reply_for: Duration | None = None
    """A timer instead of a message: the customer's oldest unanswered message has waited this long
    for a reply of ours (an automatic reply does not count); fires once per wait."""

    @field_validator("words")
    @classmethod
    def _words(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            value = [w.strip() for w in value]
            if not value or not all(re.search(r"\w", w) for w in value):
                raise ValueError("every entry needs a letter or digit (an empty list matches nothing)")
        return value

    @field_validator("language")
    @classmethod
    def _languages(cls, value: list[str] | None) -> list[str] | None:
        for code in value or ():
            if code.lower() not in LANGUAGE_CODES:
                raise ValueError(f"unknown language {code!r}: use an ISO 639-1 code such as en, sw, hi, ms, el, kk")
        if value is not None and not value:
            raise ValueError("name at least one language")
        return [c.lower() for c in value] if value is not None else None

    @field_validator("no_reply_for")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than zero")
        return value


class ReplySpec(Strict):
    """An automatic reply: a saved reply (``ui.saved_replies``), through the outbox like any reply."""

    saved: str
    """The saved reply's name; ``{customer}`` is filled in."""
    private: bool = False
    """Answer privately where the platform has both (a comment answered by DM)."""
    max_age: Duration = 3600.0
    """Only answer a message that reached us within this long of being written (a backlog fetched
    late is not acknowledged days after the fact)."""


class EscalateSpec(Strict):
    target: str = "helpdesk"
    """An escalation target (``escalation.targets``); one with a helpdesk account also gets a ticket."""
    note: str = ""
    """An internal note to go with it."""


def _reply(value: Any) -> Any:
    return {"saved": value} if isinstance(value, str) else value


def _escalate(value: Any) -> Any:
    if value is True:
        return {}
    return {"target": value} if isinstance(value, str) else value


class ThenSpec(Strict):
    """What a rule does, in this order: mark automatic, tag, priority, assign, escalate, reply,
    snooze or resolve. Each change is an event in the log by ``rule:NAME``."""

    tag: Annotated[list[str], BeforeValidator(_as_list)] = []
    """Tags to add."""
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    """Set the priority."""
    assign: str | None = None
    """Assign to this person."""
    escalate: Annotated[EscalateSpec | None, BeforeValidator(_escalate)] = None
    """Escalate (a target name, or ``{target, note}``)."""
    reply: Annotated[ReplySpec | None, BeforeValidator(_reply)] = None
    """Send a saved reply (a name, or ``{saved, private, max_age}``): at most once per conversation
    and rule in 24 hours, never to a robot, not our first reply for the SLA unless the policy sets
    ``count_auto_replies``."""
    snooze: Duration | None = None
    """Snooze for this long."""
    resolve: bool = False
    """Resolve the conversation."""
    mark_automatic: str | None = None
    """Mark the message as written by no person (the reason): it then starts no SLA clock."""

    @model_validator(mode="after")
    def _something(self) -> ThenSpec:
        if not (self.tag or self.priority or self.assign or self.escalate or self.reply or self.snooze
                or self.resolve or self.mark_automatic):
            raise ValueError("a rule needs at least one action (tag, priority, assign, escalate, reply, "
                             "snooze, resolve, mark_automatic)")
        return self


class RuleSpec(Strict):
    """One rule. Rules are tried top to bottom on each customer message (and timer); each one that
    matches acts, and later rules see what earlier ones did; ``stop: true`` ends the pass there."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Events and the dry run name the rule by it."""
    when: WhenSpec = WhenSpec()
    then: ThenSpec
    stop: bool = False
    """When this rule matches, the rules below it are not tried for this message."""


class CsatAccount(Strict):
    """The satisfaction survey of one account."""

    survey: str
    """The saved reply sent after a resolve (ask for 1-5, or good/bad)."""
    platforms: dict[str, str] = {}
    """Another saved reply per platform (the demo account spans several)."""
    enabled: bool = True
    """Turn the survey off without removing it."""


class CsatSettings(Strict):
    """Customer satisfaction: a survey after a resolve, the answer recorded as a rating."""

    accounts: dict[str, CsatAccount] = {}
    """Accounts that survey, by name (the others do not)."""
    answer_within: Duration = 2 * 86400.0
    """An answer later than this after the survey is a new message as usual."""
    repeat_after: Duration = 30 * 86400.0
    """A conversation is surveyed at most once in this long."""


def problems(config: Any) -> list[tuple[tuple[Any, ...], str]]:
    """What is wrong with the rules and the survey given the rest of ``config``, as (location, why)
    pairs; the location is a path into the YAML (``("rules", 2, "when", "query")``)."""
    out: list[tuple[tuple[Any, ...], str]] = []
    accounts = {a.name: a for a in config.accounts}
    calendars = config.sla.calendar_names()
    saved = config.ui.saved_replies
    targets = config.escalation.targets
    seen: set[str] = set()
    for i, rule in enumerate(config.rules):
        at = ("rules", i)
        if rule.name in seen:
            out.append(((*at, "name"), f"two rules are named {rule.name!r}"))
        seen.add(rule.name)
        when, then = rule.when, rule.then
        q = parse(when.query)
        for flag, text in UNSUPPORTED_FILTERS.items():
            if getattr(q, flag):
                out.append(((*at, "when", "query"), f"{text} describes the inbox, not a message: a rule cannot "
                            "use it (no_reply_for: waits for a reply)"))
        for k in q.kinds:
            if k not in KINDS:
                out.append(((*at, "when", "query"), f"unknown kind {k!r}: expected one of {', '.join(KINDS)}"))
        for what, values in (("kind", set(q.kinds)), ("platform", set(q.platforms)), ("status", set(q.statuses)),
                             ("account", set(q.accounts))):
            if len(values) > 1:
                out.append(((*at, "when", "query"), f"a conversation has one {what}: {' and '.join(sorted(values))} "
                            "can never both hold"))
        for name in q.accounts:
            if name not in accounts:
                out.append(((*at, "when", "query"), f"no account named {name!r}"))
        unknown = [p for p in q.platforms if not _known_platform(p)]
        for p in unknown:
            out.append(((*at, "when", "query"), f"unknown platform {p!r}"))
        if when.rating is not None and q.kinds and "review" not in q.kinds:
            out.append(((*at, "when", "rating"), "only reviews have a rating: this rule's query asks for "
                        f"kind:{q.kinds[0]}"))
        if "email" in q.kinds and q.platforms and q.platforms[0] != "email":
            out.append(((*at, "when", "query"), f"kind:email is only on platform email, not {q.platforms[0]}"))
        if when.outside_hours is not None and when.outside_hours not in calendars:
            out.append(((*at, "when", "outside_hours"), f"unknown calendar {when.outside_hours!r}; known: "
                        f"{', '.join(sorted(calendars - {'24x7'}))}"))
        if when.outside_hours == "24x7":
            out.append(((*at, "when", "outside_hours"), "the 24x7 calendar is always open: this never matches"))
        if when.no_reply_for is not None and then.mark_automatic:
            out.append(((*at, "then", "mark_automatic"), "a timer (no_reply_for) has no new message to mark"))
        if then.snooze and then.resolve:
            out.append(((*at, "then"), "snooze and resolve contradict each other: choose one"))
        if then.escalate is not None and targets and then.escalate.target not in targets:
            out.append(((*at, "then", "escalate"), f"unknown escalation target {then.escalate.target!r}; known: "
                        f"{', '.join(sorted(targets))}"))
        if then.reply is not None:
            out += [((*at, "then", "reply"), why) for why in _reply_problems(then, q, accounts, saved)]
    csat = config.csat
    for name, survey in csat.accounts.items():
        at = ("csat", "accounts", name)
        account = accounts.get(name)
        if account is None:
            out.append((at, f"no account named {name!r}"))
        elif not _can_reply(account):
            out.append((at, f"account {name!r} ({account.provider}) cannot send a survey: it does not reply"))
        for key, reply in (("survey", survey.survey), *(("platforms", r) for r in survey.platforms.values())):
            if reply not in saved:
                out.append(((*at, key), f"no saved reply named {reply!r} in ui.saved_replies"))
        for platform in survey.platforms:
            if not _known_platform(platform):
                out.append(((*at, "platforms"), f"unknown platform {platform!r}"))
    return out


def _reply_problems(then: ThenSpec, q: Any, accounts: dict[str, Any], saved: dict[str, str]) -> list[str]:
    reply = then.reply
    out = []
    if reply.saved not in saved:
        out.append(f"no saved reply named {reply.saved!r} in ui.saved_replies")
    if then.mark_automatic:
        out.append("a rule that marks the message automatic must not answer it: replies never go to robots")
    if q.listening:
        out.append("posts found by listening are not addressed to us: a rule does not answer them")
    scope = [accounts[a] for a in q.accounts if a in accounts] or list(accounts.values())
    if scope and not any(_can_reply(a) for a in scope):
        out.append(f"account {scope[0].name!r} ({scope[0].provider}) cannot reply")
    if reply.private:
        if "review" in q.kinds:
            out.append("a review has no private channel: a private reply is impossible")
        for p in q.platforms:
            facts = _platform_facts(p)
            if facts is not None and facts.private is None:
                out.append(f"{facts.label} has no private channel: a private reply is impossible")
    return out


def _can_reply(account: Any) -> bool:
    from replydesk import providers

    try:
        caps = providers.provider_class(account.provider).capabilities
    except providers.ProviderUnavailable:
        return True  # the account's own check reports it
    return bool(caps.can_dm or caps.can_reply_publicly)


def _platform_facts(platform: str) -> Any:
    from replydesk import providers

    return providers.platform_facts(platform)


def _known_platform(platform: str) -> bool:
    return platform in PLATFORMS
