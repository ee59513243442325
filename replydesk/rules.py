"""The rules engine: triage on each customer message (and on "no reply for N minutes" timers), and
the dry run that replays the same decisions over the stored history without changing anything.

Semantics (README, "Rules", says the same):

- A rule is tried on each new customer message when the engine stores it (never on our own
  messages, a robot's, a survey's answer or an import), and a timer rule when a customer's oldest
  unanswered message has waited ``no_reply_for`` (once per wait, if the conversation is open then).
- Rules are tried top to bottom; every rule whose conditions all hold acts, and the rules below it
  see what it did (a tag it added matches their ``tag:``); a rule with ``stop: true`` that matches
  ends the pass for that message. A rule acts at most once per message (or wait), and nothing a
  rule does is a new message, so no rule can trigger itself or another in a loop.
- Time conditions read the message: ``outside_hours`` is about when the customer wrote.
- Posts a listening query found reach the rules through the same ingest hook (the listener's
  ingest runs on the engine's connection), but only rules whose query says ``is:listening`` or
  ``listening:NAME`` see them, as in search; such a rule never answers them.
- An automatic reply goes through the outbox like any reply, at most once per conversation and
  rule in 24 hours (counted between the messages that triggered them), never to a robot (a
  message a rule marked automatic, a conversation holding only robots), not to a message that
  reached us more than ``max_age`` after it was written, and not where the platform's reply window
  has closed. It is logged as ``auto_reply``: not our first reply for the SLA unless the policy sets
  ``count_auto_replies``, and the conversation still waits for a person.

The decision (``RuleSet.evaluate``) is one function of a conversation's state, the message and the
rules' own past, given to it by either caller: the live engine (state from storage, effects written
through the storage actions in the ingest's transaction) or the dry run (state replayed from the
event log, effects kept in memory). That is why a dry run's counts are what the live run does.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from replydesk.bizcal import Calendar, build_calendars
from replydesk.config import Config, ConfigError
from replydesk.model import iso
from replydesk.rulesconfig import RuleSpec, problems
from replydesk.searchsyntax import parse
from replydesk.slaconfig import format_duration
from replydesk.storage import actions, outbox, platform_facts, rulelog, textmatch
from replydesk.storage.db import Database
from replydesk.storage.rulelog import ConversationFacts, MessageFacts
from replydesk.windows import check, open_windows

log = logging.getLogger(__name__)

DAY = 86400.0
SAMPLE = 5  # matches shown per rule by a dry run


def fill(template: str, customer: str) -> str:
    """A saved reply with ``{customer}`` (and ``{first_name}``) filled, as the composer fills it."""
    first = customer.split()[0] if customer.strip() else "there"
    return template.replace("{customer}", customer or "there").replace("{first_name}", first)


@dataclass
class Subject:
    """What a rule looks at: the conversation as it is, and the message (a timer: the one waiting)."""

    conv: ConversationFacts
    message: MessageFacts | None
    trigger: str  # "message" | "timer"
    at: float  # when the rule runs: the message reached us, or the timer came due
    since: float | None = None  # a timer's wait: when the waiting message was written
    marked_automatic: bool = False


@dataclass
class Firing:
    """One rule acting on one trigger: what it did and what it left out, and why."""

    rule: str
    conversation_id: str
    trigger: str
    at: float
    message_id: str | None
    since: float | None
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    replied: bool = False

    def to_event(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rule": self.rule, "trigger": self.trigger, "message": self.message_id,
                                "done": self.done, "skipped": self.skipped, "replied": self.replied}
        if self.since is not None:
            data["since"] = self.since
        return data


class Applier(Protocol):
    """Carries out a rule's actions (live: storage; dry run: nothing). ``reply`` returns why it could
    not be queued, or None."""

    def mark_automatic(self, s: Subject, rule: str, reason: str) -> None: ...
    def tag(self, s: Subject, rule: str, tags: list[str]) -> None: ...
    def priority(self, s: Subject, rule: str, priority: str) -> None: ...
    def assign(self, s: Subject, rule: str, who: str) -> None: ...
    def escalate(self, s: Subject, rule: str, target: str, note: str) -> None: ...
    def reply(self, s: Subject, rule: str, text: str, private: bool) -> str | None: ...
    def snooze(self, s: Subject, rule: str, seconds: float) -> None: ...
    def resolve(self, s: Subject, rule: str) -> None: ...


class Env:
    """What conditions need besides the subject: calendars and the language detector."""

    def __init__(self, config: Config, languages: Iterable[str]) -> None:
        self.calendars: dict[str, Calendar] = build_calendars(config.sla)
        self.codes = tuple(sorted({*config.customer_languages, *languages}))
        self._languages: dict[str, str | None] = {}

    def language(self, message: MessageFacts) -> str | None:
        if message.id not in self._languages:
            from replydesk.language import detector  # lingua loads with the first look

            if len(self._languages) > 10_000:
                self._languages.clear()
            self._languages[message.id] = detector(self.codes).detect(message.text)
        return self._languages[message.id]


class Rule:
    """A rule from the config, ready to test."""

    def __init__(self, spec: RuleSpec, agent: str) -> None:
        self.spec = spec
        self.name = spec.name
        self.query = parse(spec.when.query)
        self.assignee = agent if self.query.assignee == "me" else self.query.assignee
        self.timer = spec.when.no_reply_for

    def matches(self, s: Subject, env: Env) -> bool:
        if (s.trigger == "timer") != (self.timer is not None):
            return False
        q, when, conv, msg = self.query, self.spec.when, s.conv, s.message
        # As in search: posts found by listening only for a rule that asks for them (is:listening,
        # listening:NAME), and such a rule only for them.
        if (conv.listening is not None) != q.listening:
            return False
        if q.listening_queries and conv.listening not in q.listening_queries:
            return False
        if q.platforms and conv.platform not in q.platforms:
            return False
        if q.kinds and conv.kind not in q.kinds:
            return False
        if q.accounts and conv.account not in q.accounts:
            return False
        if q.statuses and conv.status not in q.statuses:
            return False
        if q.escalated and not conv.escalated:
            return False
        if any(t not in conv.tags for t in q.tags):
            return False
        if self.assignee is not None and (conv.assignee or "") != self.assignee:
            return False
        if when.vip is not None and conv.vip != when.vip:
            return False
        if msg is None:  # a timer whose message is gone: only conversation conditions can hold
            return not (q.words or q.authors or when.words or when.language or when.rating or when.outside_hours)
        if when.rating is not None and (msg.rating is None or not when.rating[0] <= msg.rating <= when.rating[1]):
            return False
        if when.outside_hours is not None and env.calendars[when.outside_hours].is_open(msg.created_at):
            return False
        text = f"{msg.text}\n{conv.subject}" if conv.subject else msg.text
        if q.words and not textmatch.has_all(text, q.words):
            return False
        if when.words and not textmatch.has_any(text, when.words):
            return False
        if q.authors and not textmatch.has_any(f"{msg.author}\n{conv.customer}\n{conv.handle}", q.authors):
            return False
        return not (when.language and env.language(msg) not in when.language)


class RuleSet:
    """The config's rules in order, with what their conditions need."""

    def __init__(self, config: Config) -> None:
        found = problems(config)
        if found:  # a config built in code (the file's own check names the line)
            raise ConfigError("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in found))
        self.config = config
        self.rules = [Rule(spec, config.ui.agent) for spec in config.rules]
        self.timers = [r for r in self.rules if r.timer is not None]
        self.env = Env(config, (c for r in config.rules for c in (r.when.language or ())))

    def evaluate(self, s: Subject, apply: Applier, last_reply: Callable[[str, str], float | None],
                 only: str | None = None) -> list[Firing]:
        """Try the rules on ``s`` top to bottom and act through ``apply``; the subject takes each
        rule's effects, so the rules below see them. ``only``: a single rule (a timer's)."""
        fired = []
        for rule in self.rules:
            if only is not None and rule.name != only:
                continue
            if not rule.matches(s, self.env):
                continue
            fired.append(self._act(rule, s, apply, last_reply))
            if rule.spec.stop:
                break
        return fired

    def _act(self, rule: Rule, s: Subject, apply: Applier, last_reply: Callable[[str, str], float | None]) -> Firing:
        then, conv, name = rule.spec.then, s.conv, rule.name
        f = Firing(name, conv.id, s.trigger, s.at, s.message.id if s.message else None, s.since)
        if then.mark_automatic and s.message is not None and not s.marked_automatic:
            apply.mark_automatic(s, name, then.mark_automatic)
            s.marked_automatic = True
            f.done.append("mark automatic")
        new_tags = [t for t in dict.fromkeys(" ".join(t.split()).lower() for t in then.tag) if t not in conv.tags]
        if new_tags:
            apply.tag(s, name, new_tags)
            conv.tags |= set(new_tags)
            f.done += [f"tag {t}" for t in new_tags]
        if then.priority and conv.priority != then.priority:
            apply.priority(s, name, then.priority)
            conv.priority = then.priority
            f.done.append(f"set priority {then.priority}")
        if then.assign and conv.assignee != then.assign:
            apply.assign(s, name, then.assign)
            conv.assignee = then.assign
            f.done.append(f"assign {then.assign}")
        if then.escalate is not None and not conv.escalated:
            apply.escalate(s, name, then.escalate.target, then.escalate.note)
            conv.escalated = True
            if conv.priority in ("low", "normal"):
                conv.priority = "high"
            f.done.append(f"escalate to {then.escalate.target}")
        if then.reply is not None:
            why = self._reply_refusal(rule, s, last_reply)
            if why is None:
                text = fill(self.config.ui.saved_replies[then.reply.saved], conv.customer)
                why = apply.reply(s, name, text, then.reply.private)
            if why is None:
                f.replied = True
                f.done.append(f"reply with {then.reply.saved}")
            else:
                f.skipped.append(f"reply with {then.reply.saved}: {why}")
        if then.snooze and conv.status != "snoozed":
            apply.snooze(s, name, then.snooze)
            conv.status = "snoozed"
            f.done.append(f"snooze {format_duration(then.snooze)}")
        if then.resolve and conv.status != "resolved":
            apply.resolve(s, name)
            conv.status = "resolved"
            f.done.append("resolve")
        return f

    @staticmethod
    def _reply_refusal(rule: Rule, s: Subject, last_reply: Callable[[str, str], float | None]) -> str | None:
        reply = rule.spec.then.reply
        if s.marked_automatic:
            return "the message is automatic (replies never go to robots)"
        if s.conv.listening is not None:
            return "a post found by listening is not addressed to us"
        before = last_reply(s.conv.id, rule.name)
        if before is not None and s.at - before < DAY:
            return "this rule answered the conversation in the last 24 hours"
        if s.trigger == "message" and s.message is not None and s.at - s.message.created_at > reply.max_age:
            return f"the message reached us more than {format_duration(reply.max_age)} after it was written (max_age)"
        return None


# ---- live: the engine's side ----------------------------------------------------------------------


class StorageApplier:
    """A rule's actions as the storage actions, by ``rule:NAME``, inside the caller's transaction."""

    def __init__(self, db: Database, config: Config) -> None:
        self.db, self.config = db, config

    def mark_automatic(self, s: Subject, rule: str, reason: str) -> None:
        rulelog.mark_automatic(self.db, s.message.id, f"automatic: {reason} (rule {rule})", f"rule:{rule}")

    def tag(self, s: Subject, rule: str, tags: list[str]) -> None:
        actions.tag(self.db, [s.conv.id], tags, actor=f"rule:{rule}")

    def priority(self, s: Subject, rule: str, priority: str) -> None:
        actions.set_priority(self.db, [s.conv.id], priority, actor=f"rule:{rule}")

    def assign(self, s: Subject, rule: str, who: str) -> None:
        actions.assign(self.db, [s.conv.id], who, actor=f"rule:{rule}")

    def escalate(self, s: Subject, rule: str, target: str, note: str) -> None:
        actions.escalate(self.db, [s.conv.id], target=target, reason=f"rule {rule}", note=note, actor=f"rule:{rule}")
        desk = self.config.ticket_account(target)
        if desk:
            outbox.queue_ticket(self.db, s.conv.id, account=desk, target=target, reason=f"rule {rule}", note=note,
                                actor=f"rule:{rule}")

    def reply(self, s: Subject, rule: str, text: str, private: bool) -> str | None:
        try:
            outbox.queue_reply(self.db, s.conv.id, text, private=private, actor=f"rule:{rule}",
                               automatic=f"rule:{rule}")
        except outbox.AutomaticRecipient:
            return "the conversation holds only automatic messages (replies never go to robots)"
        except outbox.OutsideReplyWindow as exc:
            return exc.verdict.reason
        except actions.ActionError as exc:
            return str(exc)
        return None

    def snooze(self, s: Subject, rule: str, seconds: float) -> None:
        actions.snooze(self.db, [s.conv.id], self.db.now() + seconds, actor=f"rule:{rule}")

    def resolve(self, s: Subject, rule: str) -> None:
        actions.resolve(self.db, [s.conv.id], actor=f"rule:{rule}")


class LiveRules:
    """The rules inside the sync engine: on what each ingest stored (``Database.ingest_hook``), and
    on due timers (the sweep). Everything a pass does commits with what triggered it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rules = RuleSet(config)

    def attach(self, db: Database) -> None:
        db.ingest_hook = self.on_ingested
        with db.transaction():
            rulelog.drop_timers_except(db, (r.name for r in self.rules.timers))

    def _last_reply(self, db: Database) -> Callable[[str, str], float | None]:
        return lambda conv_id, rule: rulelog.last_reply(db, conv_id, rule)

    def _record(self, db: Database, fired: Sequence[Firing]) -> None:
        for f in fired:
            rulelog.record(db, f.conversation_id, f.at, f.to_event())

    def on_ingested(self, db: Database, account: str, stats: Any) -> None:
        now = db.now()
        apply = StorageApplier(db, self.config)
        waiting: dict[str, None] = {}
        for conv_id, message_id in stats.inbound:
            conv, msg = rulelog.conversation(db, conv_id), rulelog.message(db, message_id)
            if conv is None or msg is None:
                continue
            subject = Subject(conv, msg, "message", now)
            self._record(db, self.rules.evaluate(subject, apply, self._last_reply(db)))
            waiting[conv_id] = None
        for conv_id in waiting if self.rules.timers else ():
            wait = rulelog.wait_since(db, conv_id)
            if wait is None:
                continue
            for rule in self.rules.timers:
                if not rulelog.timer_fired(db, conv_id, rule.name, wait[0]):
                    rulelog.schedule(db, rule.name, conv_id, wait[0], max(wait[0] + rule.timer, now))

    def run_timers(self, db: Database, accounts: Iterable[str] | None = None) -> int:
        """Fire the timers due now; returns how many rules acted. ``accounts``: only those of these
        accounts' conversations (a team engine: the accounts it leads, so a timer fires once a team)."""
        if accounts is not None:
            accounts = list(accounts)
        if not self.rules.timers or not rulelog.due_timers(db, db.now(), 1, accounts):
            return 0
        acted = 0
        with db.transaction():
            apply = StorageApplier(db, self.config)
            known = {r.name: r for r in self.rules.timers}
            for name, conv_id, since, due in rulelog.due_timers(db, db.now(), accounts=accounts):
                rulelog.drop_timer(db, name, conv_id)
                rule, wait = known.get(name), rulelog.wait_since(db, conv_id)
                conv = rulelog.conversation(db, conv_id)
                if rule is None or wait is None or conv is None or rulelog.timer_fired(db, conv_id, name, since):
                    continue
                if wait[0] != since:  # answered, then written again: that wait has its own timer
                    if not rulelog.timer_fired(db, conv_id, name, wait[0]):
                        rulelog.schedule(db, name, conv_id, wait[0], max(wait[0] + rule.timer, db.now()))
                    continue
                if conv.status != "open":
                    continue
                subject = Subject(conv, rulelog.message(db, wait[1]) if wait[1] else None, "timer", due, since)
                fired = self.rules.evaluate(subject, apply, self._last_reply(db), only=name)
                self._record(db, fired)
                acted += len(fired)
        return acted


# ---- the dry run ----------------------------------------------------------------------------------


class _Nothing:
    """A dry run's applier: nothing changes; a reply is checked as the outbox would check it."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts = facts
        self.last_in: float | None = None
        self.people = 0  # customer messages in the conversation so far
        self.snoozed_for: float | None = None  # a snooze just set, for the replay to wake

    def mark_automatic(self, s: Subject, rule: str, reason: str) -> None:
        self.people -= 1

    def tag(self, s: Subject, rule: str, tags: list[str]) -> None: ...
    def priority(self, s: Subject, rule: str, priority: str) -> None: ...
    def assign(self, s: Subject, rule: str, who: str) -> None: ...
    def escalate(self, s: Subject, rule: str, target: str, note: str) -> None: ...
    def resolve(self, s: Subject, rule: str) -> None: ...

    def snooze(self, s: Subject, rule: str, seconds: float) -> None:
        self.snoozed_for = seconds

    def reply(self, s: Subject, rule: str, text: str, private: bool) -> str | None:
        if self.people <= 0:
            return "the conversation holds only automatic messages (replies never go to robots)"
        facts = self.facts.get(s.conv.platform)
        if facts is None or self.last_in is None:
            return None
        windows = open_windows(facts.window_rules(s.conv.kind), s.conv.kind, self.last_in)
        verdict = check(windows, s.at, private=private or s.conv.kind in ("dm", "email"), platform=facts.label) \
            if windows else None
        return verdict.reason if verdict is not None and not verdict.allowed else None


@dataclass
class RuleSummary:
    rule: str
    conversations: set[str] = field(default_factory=set)
    firings: int = 0
    actions: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    sample: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "conversations": len(self.conversations), "firings": self.firings,
                "actions": dict(sorted(self.actions.items())), "skipped": dict(sorted(self.skipped.items())),
                "sample": self.sample}


@dataclass
class DryRun:
    since: float
    until: float
    messages: int = 0  # customer messages replayed in the window
    rules: dict[str, RuleSummary] = field(default_factory=dict)
    firings: list[Firing] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"since": iso(self.since), "until": iso(self.until), "messages": self.messages,
                "rules": [s.to_json() for s in self.rules.values()]}


def dry_run(db: Database, config: Config, since: float, until: float, only: str | None = None) -> DryRun:
    """What the rules would have done to the messages that reached us between ``since`` and
    ``until`` (a timer: came due then), had they been on: replayed from the event log, conversation
    by conversation, with each conversation's state as it was (the people's changes from the log,
    the rules' own effects simulated, what the rules really did left out). Nothing is written."""
    rules = RuleSet(config)
    if only is not None and only not in {r.name for r in rules.rules}:
        raise KeyError(f"no rule named {only!r} (rules: {', '.join(r.name for r in rules.rules) or 'none'})")
    result = DryRun(since, until)
    names = [r.name for r in rules.rules if only is None or r.name == only]
    result.rules = {n: RuleSummary(n) for n in names}
    facts: dict[str, dict[str, Any]] = {}
    for h in rulelog.history(db, since, until):
        if h.conversation.account not in facts:
            facts[h.conversation.account] = platform_facts.for_account(db, h.conversation.account)
        for f in _replay(rules, h, facts[h.conversation.account], until, result):
            if not since <= f.at <= until or (only is not None and f.rule != only):
                continue
            summary = result.rules[f.rule]
            summary.conversations.add(f.conversation_id)
            summary.firings += 1
            summary.actions.update(f.done)
            summary.skipped.update(f.skipped)
            if len(summary.sample) < SAMPLE:
                msg = h.messages.get(f.message_id or "")
                summary.sample.append({"conversation": f.conversation_id, "at": iso(f.at), "trigger": f.trigger,
                                       "customer": h.conversation.customer,
                                       "text": " ".join(msg.text.split())[:120] if msg else "",
                                       "done": f.done, "skipped": f.skipped})
            result.firings.append(f)
    return result


def _effective(event: tuple[int, float, str, str, dict[str, Any]]) -> tuple[float, int]:
    """When an event happened for the rules: a customer message when it reached us (its "received";
    older logs: when it was written), anything else when it was logged."""
    seq, at, kind, _, data = event
    if kind in ("in", "listened"):
        received = data.get("received")
        return (float(received) if isinstance(received, int | float) else at), seq
    return at, seq


def _replay(rules: RuleSet, h: rulelog.History, facts: dict[str, Any], until: float,
            result: DryRun) -> list[Firing]:
    """One conversation's history, its events in the order they reached us, with the rules on."""
    conv = h.conversation
    taken_out = {e[4].get("message") for e in h.events
                 if e[2] == "reclassify" and not str(e[3]).startswith("rule:")}
    apply = _Nothing(facts)
    snoozed_until: float | None = None  # a snooze a rule set here wakes as the engine's sweep wakes it
    replied: dict[str, float] = {}
    fired_waits: set[tuple[str, float]] = set()
    timers: dict[str, tuple[float, float, float]] = {}  # rule -> (since, due, set at)
    people: dict[str, float] = {}  # customer messages seen so far: id -> written
    answered_at = -math.inf  # our last reply by a person, or the last resolve (as ``rulelog.wait_since``)
    out: list[Firing] = []

    def wait() -> tuple[float, str] | None:
        """The oldest customer message written after ``answered_at``: what waits for a reply."""
        waiting = [(at, mid) for mid, at in people.items() if at > answered_at]
        return min(waiting) if waiting else None

    def last_reply(_: str, rule: str) -> float | None:
        return replied.get(rule)

    def record(fired: list[Firing], when: float) -> None:
        nonlocal snoozed_until, answered_at
        for f in fired:
            if f.replied:
                replied[f.rule] = f.at
            if f.trigger == "timer" and f.since is not None:
                fired_waits.add((f.rule, f.since))
            if "resolve" in f.done:
                answered_at = max(answered_at, when)
        if apply.snoozed_for is not None:
            snoozed_until, apply.snoozed_for = when + apply.snoozed_for, None
        out.extend(fired)

    def run_timers(upto: float, final: bool = False) -> None:
        """Fire the timers due by ``upto``; those set at ``upto`` itself wait until everything that
        reached us at that instant is in, as the engine's sweep runs after the ingest."""
        for name, (since, due, set_at) in sorted(timers.items(), key=lambda item: item[1][1]):
            if due > upto or (set_at >= upto and not final):
                continue
            del timers[name]
            now_waiting = wait()
            if now_waiting is None or conv.status != "open" or (name, since) in fired_waits:
                continue
            if now_waiting[0] != since:
                schedule(now_waiting, due)
                continue
            msg = h.messages.get(now_waiting[1])
            record(rules.evaluate(Subject(conv, msg, "timer", due, since), apply, last_reply, only=name), due)

    def schedule(waiting: tuple[float, str], now: float) -> None:
        for rule in rules.timers:
            if (rule.name, waiting[0]) not in fired_waits and timers.get(rule.name, (None,))[0] != waiting[0]:
                timers[rule.name] = (waiting[0], max(waiting[0] + rule.timer, now), now)

    for event in sorted(h.events, key=_effective):
        when, _ = _effective(event)
        _, at, kind, actor, data = event
        if snoozed_until is not None and snoozed_until <= when:
            if conv.status == "snoozed":
                conv.status = "open"
            snoozed_until = None
        run_timers(when)
        if str(actor).startswith("rule:") or kind in ("rule", "auto_reply"):
            continue  # what the rules really did: the replay makes its own
        if kind == "joined":
            conv.listening = None
        elif kind in ("in", "listened"):
            mid = data.get("message")
            msg = h.messages.get(mid)
            if msg is None or mid in taken_out:
                continue
            apply.people += 1
            apply.last_in = max(apply.last_in or at, at)
            if kind == "in":  # a listening match waits for nobody: no clock, no timer
                people[mid] = at
            if when >= result.since:
                result.messages += 1
            subject = Subject(conv, msg, "message", when)
            record(rules.evaluate(subject, apply, last_reply), when)
            if subject.marked_automatic:
                people.pop(mid, None)
            waiting = wait()
            if waiting is not None:
                schedule(waiting, when)
        elif kind == "reply":
            answered_at = max(answered_at, at)
        elif kind == "status":
            conv.status = data.get("status", conv.status)
            if conv.status == "resolved":
                answered_at = max(answered_at, at)
        elif kind == "tag":
            conv.tags.add(data.get("tag", ""))
        elif kind == "untag":
            conv.tags.discard(data.get("tag", ""))
        elif kind == "assign":
            conv.assignee = data.get("assignee")
        elif kind == "priority":
            conv.priority = data.get("priority", conv.priority)
        elif kind == "escalate":
            conv.escalated = True
            if conv.priority in ("low", "normal"):
                conv.priority = "high"
    run_timers(until, final=True)
    return out


def describe(report: DryRun) -> list[str]:
    """The dry run as text lines, for the CLI and the console."""
    def day(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")

    lines = [f"Rules tried on {report.messages} customer message(s) from {day(report.since)} to {day(report.until)} UTC "
             "(a dry run: nothing was changed)"]
    for s in report.rules.values():
        lines.append("")
        lines.append(f"{s.rule}: {len(s.conversations)} conversation(s), {s.firings} time(s)")
        for action, n in sorted(s.actions.items()):
            lines.append(f"  would {action}: {n}")
        for why, n in sorted(s.skipped.items()):
            lines.append(f"  would not {why}: {n}")
        for m in s.sample:
            lines.append(f"  e.g. {m['conversation']}  {m['at']}  {m['customer'][:24]}: {m['text'][:60]}")
    return lines
