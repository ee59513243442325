"""Rules: each condition and action, order and ``stop``, no loops, automatic replies (once a day,
never to robots, not the SLA's first reply unless the policy says so), timers, bad rules as config
errors with file:line, and the dry run, whose counts equal what the live engine did on the same
history (both run on copies of one workspace).

Messages go in through the real ingest on a real SQLite file, with the engine's rules attached the
way the sync engine attaches them (``LiveRules.attach``: the rules run inside the ingest's
transaction); the demo platform plays the customers where the whole engine runs.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from replydesk.config import Config, ConfigError, parse_config
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.rules import LiveRules, dry_run
from replydesk.storage import actions, ingest, outbox, queries, slastate
from replydesk.storage.db import Database
from replydesk.workspace import Workspace
from support import FIXED_NOW, Clock

HOUR = 3600.0


def config_of(yaml_text: str, pace: float = 20.0) -> Config:
    """A config from YAML (checked as a file is), with the demo account first."""
    demo = f"  - {{name: demo, provider: demo, pace: {pace}}}\n"
    if "accounts:\n" in yaml_text:
        yaml_text = yaml_text.replace("accounts:\n", "accounts:\n" + demo, 1)
    else:
        yaml_text = "accounts:\n" + demo + yaml_text
    return parse_config(yaml_text, Path("rules.yaml"))


class Shop:
    """A workspace whose messages the test writes, with the engine's rules on."""

    def __init__(self, tmp_path: Path, yaml_text: str, clock: Clock) -> None:
        self.clock = clock
        self.config = config_of(yaml_text)
        self.ws = Workspace(tmp_path / "ws", self.config, clock=clock)
        self.db: Database = self.ws.open_db()
        with self.db.transaction():
            ingest.ensure_account(self.db, "demo", "demo", "multi")
        self.rules = LiveRules(self.config)
        self.rules.attach(self.db)
        self.n = 0

    def write(self, conv: str, text: str, *, at: float | None = None, platform: str = "telegram", kind: str = "dm",
              vip: bool = False, name: str = "Amani Mwangi", meta: dict | None = None, automatic: str | None = None,
              direction: str = "in") -> str:
        self.n += 1
        native = f"m{self.n}"
        message = IncomingMessage(
            native_id=native, conversation_native_id=conv, platform=platform, kind=kind,
            contact=Contact(native_id=f"p-{conv}", name=name, handle=f"@{conv}", vip=vip), text=text,
            created_at=self.clock.now if at is None else at, direction=direction, meta=meta or {},
            automatic=automatic)
        ingest.ingest(self.db, "demo", [FetchResult([message], cursor={"n": self.n})])
        return f"demo:{native}"

    def row(self, conv: str) -> queries.InboxRow:
        return queries.get_row(self.db, f"demo:{conv}")

    def events(self, kind: str = "rule") -> list[tuple[str, str, dict]]:
        return [(r[0], r[1], json.loads(r[2])) for r in self.db.conn.execute(
            "SELECT conversation_id, actor, data FROM events WHERE kind=? ORDER BY seq", (kind,))]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def shop(tmp_path: Path, clock: Clock, rules_yaml: str, extra: str = "") -> Shop:
    return Shop(tmp_path, extra + "rules:\n" + rules_yaml, clock)


# ---- conditions ---------------------------------------------------------------------------------

CONDITIONS = [
    # (rule "when" as YAML flow, a message that matches, one that does not)
    ("{query: 'refund'}", {"text": "Please REFUND my order"}, {"text": "I want refunds"}),
    ("{query: '\"charged twice\"'}", {"text": "I was charged twice!"}, {"text": "charged me once, twice?"}),
    ("{words: [refund, 'charged twice', nimelipishwa]}", {"text": "Nimelipishwa mara mbili"},
     {"text": "Habari, agizo langu bado"}),
    ("{query: 'café'}", {"text": "the cafe was closed"}, {"text": "the cafeteria"}),  # accents as search folds them
    ("{query: 'platform:whatsapp'}", {"text": "hi", "platform": "whatsapp"}, {"text": "hi", "platform": "telegram"}),
    ("{query: 'kind:comment'}", {"text": "hi", "platform": "facebook", "kind": "comment"}, {"text": "hi"}),
    ("{query: 'account:demo kind:dm'}", {"text": "hi"}, {"text": "hi", "platform": "x", "kind": "mention"}),
    ("{query: 'from:Grace'}", {"text": "hi", "name": "Grace Okafor"}, {"text": "hi", "name": "Tom Becker"}),
    ("{language: [sw]}", {"text": "Habari, agizo langu bado halijafika. Tafadhali angalia."},
     {"text": "Hi, my order hasn't arrived yet. Can you check?"}),
    ("{language: [kk, el]}", {"text": "Рақмет!"}, {"text": "Terima kasih!"}),
    ("{vip: true}", {"text": "hi", "vip": True}, {"text": "hi"}),
    ("{query: 'kind:review', rating: '<=2'}",
     {"text": "★★☆☆☆ slow", "platform": "google", "kind": "review", "meta": {"rating": 2}},
     {"text": "★★★★★ great", "platform": "google", "kind": "review", "meta": {"rating": 5}}),
    ("{rating: 4-5}", {"text": "top", "platform": "google", "kind": "review", "meta": {"rating": 4}},
     {"text": "no stars given", "platform": "google", "kind": "review", "meta": {"rating": "5"}}),  # untrusted type
    # Monday 2026-11-23: 10:00 UTC is inside business hours, 07:00 and Saturday are not
    ("{outside_hours: business}", {"text": "hi", "at": FIXED_NOW - 3 * HOUR}, {"text": "hi", "at": FIXED_NOW}),
    ("{outside_hours: office}", {"text": "hi", "at": FIXED_NOW - 2 * 86400}, {"text": "hi", "at": FIXED_NOW}),
]
CALENDAR = """sla:
  calendars:
    office: {timezone: Europe/Athens, hours: {mon: ["09:00-18:00"], tue: ["09:00-18:00"]}}
"""


@pytest.mark.parametrize(("when", "hit", "miss"), CONDITIONS, ids=[c[0] for c in CONDITIONS])
def test_each_condition_matches_what_it_says(tmp_path: Path, clock: Clock, when: str, hit: dict, miss: dict) -> None:
    s = shop(tmp_path, clock, f"  - name: probe\n    when: {when}\n    then: {{tag: matched}}\n", CALENDAR)
    s.write("hit", **{"text": "", **hit})
    s.write("miss", **{"text": "", **miss})
    assert s.row("hit").tags == ("matched",)
    assert s.row("miss").tags == ()


def test_tag_present_and_status_conditions_read_the_conversation_as_it_is(tmp_path: Path, clock: Clock) -> None:
    s = shop(tmp_path, clock, "  - name: vip-list\n    when: {query: 'tag:wholesale is:open'}\n"
                              "    then: {priority: urgent}\n")
    s.write("a", "first order")
    s.write("b", "first order")
    actions.tag(s.db, ["demo:a"], ["wholesale"])
    s.write("a", "second order")
    s.write("b", "second order")
    assert (s.row("a").priority, s.row("b").priority) == ("urgent", "normal")


# ---- actions ------------------------------------------------------------------------------------


def test_each_action_is_done_and_logged_with_the_rules_name(tmp_path: Path, clock: Clock) -> None:
    s = shop(tmp_path, clock, """\
  - name: refund-words
    when: {words: [refund]}
    then: {tag: [refund, money], priority: high, assign: amani, escalate: {target: helpdesk, note: check it}}
  - name: spam
    when: {words: [unsubscribe]}
    then: {mark_automatic: a mailing list, resolve: true}
  - name: later
    when: {words: [tomorrow]}
    then: {snooze: 2h}
""")
    s.write("a", "refund please")
    s.write("b", "click to unsubscribe")
    s.write("c", "call me tomorrow")
    a, b, c = s.row("a"), s.row("b"), s.row("c")
    assert (a.tags, a.priority, a.assignee, a.escalated) == (("money", "refund"), "high", "amani", True)
    assert b.status == "resolved" and not b.needs_reply
    assert c.status == "snoozed"
    logged = s.db.conn.execute("SELECT kind, actor, data FROM events WHERE actor LIKE 'rule:%' AND kind != 'rule' "
                               "AND conversation_id='demo:a' ORDER BY seq").fetchall()
    assert [(k, actor) for k, actor, _ in logged] == [
        ("tag", "rule:refund-words"), ("tag", "rule:refund-words"), ("priority", "rule:refund-words"),
        ("assign", "rule:refund-words"), ("escalate", "rule:refund-words"), ("note", "rule:refund-words")]
    [(conv, actor, fired)] = [e for e in s.events() if e[0] == "demo:a"]
    assert actor == "rule:refund-words"
    assert fired["done"] == ["tag refund", "tag money", "set priority high", "assign amani", "escalate to helpdesk"]
    # marked automatic: a robot now (the thread says why), out of the SLA and of the reports
    [(reason,)] = s.db.conn.execute("SELECT automatic FROM messages WHERE conversation_id='demo:b'").fetchall()
    assert reason == "automatic: a mailing list (rule spam)"
    assert queries.robots_only(s.db, ["demo:b"]) == {"demo:b"}
    assert slastate.evaluate_at(s.db, "demo:b", clock.now).state == "none"


def test_escalating_to_a_helpdesk_target_queues_a_ticket(tmp_path: Path, clock: Clock) -> None:
    s = Shop(tmp_path, """\
accounts:
  - {name: desk, provider: demo-helpdesk}
escalation:
  targets: {helpdesk: {account: desk}}
rules:
  - name: angry
    when: {words: [terrible]}
    then: {escalate: helpdesk}
""", clock)
    s.write("a", "Terrible service!")
    [ticket] = [i for i in outbox.pending(s.db) if i.action == "create_ticket"]
    assert (ticket.account, ticket.conversation_id, ticket.payload["target"]) == ("desk", "demo:a", "helpdesk")


def test_rules_run_in_order_each_sees_the_ones_before_and_stop_ends_the_pass(tmp_path: Path, clock: Clock) -> None:
    s = shop(tmp_path, clock, """\
  - name: first
    when: {words: [refund]}
    then: {tag: refund}
  - name: second
    when: {query: "tag:refund"}
    then: {tag: money}
    stop: true
  - name: third
    when: {}
    then: {tag: never}
  - name: catch-all
    when: {}
    then: {tag: seen}
""")
    s.write("a", "refund please")
    s.write("b", "hello")
    assert s.row("a").tags == ("money", "refund")  # third and catch-all never ran: second stopped it
    assert s.row("b").tags == ("never", "seen")
    assert [(e[0], e[2]["rule"]) for e in s.events()] == [
        ("demo:a", "first"), ("demo:a", "second"), ("demo:b", "third"), ("demo:b", "catch-all")]


def test_no_loop_a_rule_acts_once_per_message_and_its_actions_trigger_nothing(tmp_path: Path, clock: Clock) -> None:
    s = shop(tmp_path, clock, """\
  - name: refund
    when: {query: "tag:refund"}
    then: {tag: refund, reply: looking}
  - name: tagger
    when: {words: [refund]}
    then: {tag: refund}
""")
    s.write("a", "refund please")  # 'refund' did not match yet (no tag); tagger tags it
    for i in range(3):
        clock.advance(60)
        s.write("a", f"hello again {i}")  # now 'refund' matches each time; its reply goes once a day
    fired = [e[2] for e in s.events()]
    assert [f["rule"] for f in fired] == ["tagger", "refund", "refund", "refund"]
    assert sum(f["replied"] for f in fired) == 1
    assert [i.text for i in outbox.pending(s.db)] == [
        "Hi Amani Mwangi, thanks for reaching out. We're looking into this and will get back to you shortly."]
    assert fired[-1]["skipped"] == ["reply with looking: this rule answered the conversation in the last 24 hours"]
    clock.advance(86400)
    s.write("a", "a day later")
    assert len(outbox.pending(s.db)) == 2  # a new day, a new acknowledgement


def test_a_failing_rule_never_costs_the_messages(tmp_path: Path, clock: Clock, monkeypatch) -> None:  # noqa: ANN001
    s = shop(tmp_path, clock, "  - name: probe\n    when: {}\n    then: {tag: seen}\n")

    def broken(*_a, **_k):  # noqa: ANN002, ANN003
        actions.tag(s.db, ["demo:a"], ["half-done"])
        raise RuntimeError("a bug in a rule")

    monkeypatch.setattr(s.rules.rules, "evaluate", broken)
    s.write("a", "hello")
    assert s.row("a") is not None and s.row("a").tags == ()  # stored; the rule's half-write rolled back


# ---- automatic replies ----------------------------------------------------------------------------


def _send(s: Shop) -> None:
    """Play the outbox: every queued reply reaches the platform."""
    for n, item in enumerate(outbox.pending(s.db)):
        outbox.mark_sending(s.db, item.key)
        outbox.mark_sent(s.db, item.key, f"post-{n}-{item.key[:6]}", s.clock.now)


@pytest.mark.parametrize("counts", [False, True])
def test_an_automatic_reply_is_not_the_first_reply_unless_the_policy_says_so(tmp_path: Path, clock: Clock,
                                                                             counts: bool) -> None:
    sla = f"""sla:
  policies:
    - name: dms
      match: {{kind: dm}}
      first_reply: {{target: 1h}}
      count_auto_replies: {str(counts).lower()}
"""
    s = shop(tmp_path, clock, "  - name: ack\n    when: {}\n    then: {reply: looking}\n", sla)
    s.write("a", "hello?")
    clock.advance(60)
    _send(s)
    first = slastate.evaluate_at(s.db, "demo:a", clock.now).metric("first_reply")
    assert (first.state == "fulfilled") is counts
    row = s.row("a")
    assert row.needs_reply  # a person still owes the customer an answer
    assert [tuple(r) for r in s.db.conn.execute(
        "SELECT kind, actor FROM events WHERE kind LIKE '%reply' ORDER BY seq")] == [("auto_reply", "rule:ack")]


def test_an_automatic_reply_never_goes_to_a_robot_nor_to_a_stale_message(tmp_path: Path, clock: Clock) -> None:
    s = shop(tmp_path, clock, """\
  - name: robots
    when: {words: [noreply]}
    then: {mark_automatic: a shop notification}
  - name: ack
    when: {}
    then: {reply: {saved: looking, max_age: 1h}}
""")
    s.write("a", "noreply: your parcel shipped")
    s.write("b", "hello", at=clock.now - 3 * HOUR)  # a backlog the first sync brings late
    s.write("c", "out of office", automatic="auto-reply: Auto-Submitted")  # a provider's robot: no trigger
    assert outbox.pending(s.db) == []
    skipped = {e[0]: e[2]["skipped"] for e in s.events() if e[2]["rule"] == "ack"}
    assert skipped == {
        "demo:a": ["reply with looking: the message is automatic (replies never go to robots)"],
        "demo:b": ["reply with looking: the message reached us more than 1h after it was written (max_age)"]}


# ---- timers -------------------------------------------------------------------------------------


def test_no_reply_for_fires_once_per_wait_and_a_reply_starts_a_new_wait(tmp_path: Path, clock: Clock) -> None:
    s = shop(tmp_path, clock, "  - name: overdue\n    when: {no_reply_for: 30m}\n    then: {tag: overdue}\n")
    s.write("a", "hello?")
    clock.advance(29 * 60)
    assert s.rules.run_timers(s.db) == 0
    s.write("a", "anyone?")  # the same wait: the oldest unanswered message counts
    clock.advance(2 * 60)
    assert s.rules.run_timers(s.db) == 1
    assert s.row("a").tags == ("overdue",)
    clock.advance(3600)
    assert s.rules.run_timers(s.db) == 0  # once per wait
    actions.untag(s.db, ["demo:a"], ["overdue"])
    key = outbox.queue_reply(s.db, "demo:a", "on it")
    outbox.mark_sending(s.db, key)
    outbox.mark_sent(s.db, key, "p1", clock.now)
    clock.advance(60)
    s.write("a", "thanks, and one more thing")
    clock.advance(31 * 60)
    assert s.rules.run_timers(s.db) == 1
    [first, second] = [e[2] for e in s.events()]
    assert first["trigger"] == second["trigger"] == "timer" and first["since"] < second["since"]


def test_timers_fire_only_for_the_accounts_asked(tmp_path: Path, clock: Clock) -> None:
    """A team engine fires the timers of the accounts it leads, and leaves the others' in place."""
    s = shop(tmp_path, clock, "  - name: overdue\n    when: {no_reply_for: 30m}\n    then: {tag: overdue}\n")
    s.write("a", "hello?")
    clock.advance(31 * 60)
    assert s.rules.run_timers(s.db, accounts=["elsewhere"]) == 0
    assert s.row("a").tags == ()
    assert s.rules.run_timers(s.db, accounts=["demo"]) == 1
    assert s.row("a").tags == ("overdue",)


def test_a_timer_does_not_fire_once_the_conversation_is_resolved(tmp_path: Path, clock: Clock) -> None:
    s = shop(tmp_path, clock, "  - name: overdue\n    when: {no_reply_for: 30m}\n    then: {tag: overdue}\n")
    s.write("a", "hello?")
    actions.resolve(s.db, ["demo:a"])
    clock.advance(3600)
    assert s.rules.run_timers(s.db) == 0 and s.row("a").tags == ()


# ---- bad rules ----------------------------------------------------------------------------------

BAD = [
    ("  - name: r\n    when: {colour: red}\n    then: {tag: x}\n", ":3: rules[0].when.colour: unknown key"),
    ("  - name: r\n    when: {}\n    then: {paint: x}\n", ":4: rules[0].then.paint: unknown key"),
    ("  - name: r\n    when: {}\n    then: {}\n", ":4: rules[0].then: a rule needs at least one action"),
    ("  - name: r\n    when: {language: [xx]}\n    then: {tag: x}\n", ":3: rules[0].when.language: unknown language 'xx'"),
    ("  - name: r\n    when: {rating: 7}\n    then: {tag: x}\n", ":3: rules[0].when.rating: a rating is 1 to 5 stars"),
    ("  - name: r\n    when:\n      query: 'kind:dm'\n      rating: 1\n    then: {tag: x}\n",
     ":5: rules[0].when.rating: only reviews have a rating"),
    ("  - name: r\n    when:\n      query: 'kind:dm kind:email'\n    then: {tag: x}\n",
     ":4: rules[0].when.query: a conversation has one kind: dm and email can never both hold"),
    ("  - name: r\n    when:\n      query: 'is:breached'\n    then: {tag: x}\n",
     ":4: rules[0].when.query: is:breached describes the inbox"),
    ("  - name: r\n    when:\n      query: 'platform:myspace'\n    then: {tag: x}\n",
     ":4: rules[0].when.query: unknown platform 'myspace'"),
    ("  - name: r\n    when:\n      outside_hours: office\n    then: {tag: x}\n",
     ":4: rules[0].when.outside_hours: unknown calendar 'office'"),
    ("  - name: r\n    when: {}\n    then:\n      reply: nope\n", ":5: rules[0].then.reply: no saved reply named 'nope'"),
    ("  - name: r\n    when:\n      query: 'kind:review'\n    then:\n      reply: {saved: thanks, private: true}\n",
     ":6: rules[0].then.reply: a review has no private channel"),
    ("  - name: r\n    when:\n      query: 'account:desk'\n    then:\n      reply: thanks\n",
     ":6: rules[0].then.reply: account 'desk' (demo-helpdesk) cannot reply"),
    ("  - name: r\n    when: {}\n    then:\n      mark_automatic: robot\n      reply: thanks\n",
     ":6: rules[0].then.reply: a rule that marks the message automatic must not answer it"),
    ("  - name: r\n    when: {}\n    then:\n      snooze: 1h\n      resolve: true\n",
     ":5: rules[0].then: snooze and resolve contradict each other"),
    ("  - name: r\n    when: {}\n    then: {tag: x}\n  - name: r\n    when: {}\n    then: {tag: y}\n",
     ":5: rules[1].name: two rules are named 'r'"),
]


@pytest.mark.parametrize(("rules_yaml", "expected"), BAD, ids=[b[1].split(": ", 1)[1][:40] for b in BAD])
def test_bad_rules_are_config_errors_with_the_file_and_line(rules_yaml: str, expected: str) -> None:
    text = "accounts:\n  - {name: desk, provider: demo-helpdesk}\nrules:\n" + rules_yaml
    lines = text.count("\n", 0, text.index("rules:\n")) + 1  # the rules start on this line
    with pytest.raises(ConfigError) as err:
        parse_config(text, Path("config.yaml"))
    line, rest = expected[1:].split(":", 1)
    assert f"config.yaml:{int(line) + lines - 1}:{rest}" in str(err.value)


def test_a_survey_for_an_unknown_account_or_saved_reply_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("csat:\n  accounts:\n    shop: {survey: ask}\n", Path("c.yaml"))
    assert "c.yaml:3: csat.accounts.shop: no account named 'shop'" in str(err.value)
    assert "c.yaml:3: csat.accounts.shop.survey: no saved reply named 'ask'" in str(err.value)


def test_the_example_config_documents_every_rule_and_survey_option() -> None:
    import re

    from pydantic import BaseModel

    from replydesk.rulesconfig import (
        CsatAccount,
        CsatSettings,
        EscalateSpec,
        ReplySpec,
        RuleSpec,
        ThenSpec,
        WhenSpec,
    )
    from support import REPO

    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    models: list[type[BaseModel]] = [RuleSpec, WhenSpec, ThenSpec, ReplySpec, EscalateSpec, CsatSettings, CsatAccount]
    missing = [f"{m.__name__}.{f}" for m in models for f in m.model_fields if not re.search(rf"\b{f}\b", text)]
    assert missing == []
    assert "count_auto_replies" in text and "customer_languages" in text


def test_platform_names_are_the_providers_platforms() -> None:
    from replydesk import providers
    from replydesk.providers.demo import CHANNELS
    from replydesk.rulesconfig import PLATFORMS

    # Helpdesks (they take tickets; no customer writes there) are no platform a rule can name.
    channels = [providers.provider_class(name) for name in providers.REGISTRY]
    known = {p for cls in channels if "create_ticket" not in cls.capabilities.actions for p in cls.FACTS}
    assert set(PLATFORMS) == known | set(providers.FACTS_WITHOUT_PROVIDER) | {p for p, _ in CHANNELS}


# ---- the dry run --------------------------------------------------------------------------------

DEMO_RULES = """\
sla:
  calendars:
    office: {timezone: Europe/Athens, hours: {mon: ["09:00-11:00"], tue: ["09:00-18:00"]}}
rules:
  - name: refund-words
    when: {words: [refund, "charged twice", nimelipishwa, रिफंड, Χρεώθηκα]}
    then: {tag: refund, priority: high}
  - name: swahili
    when: {language: sw}
    then: {tag: swahili, assign: amani}
  - name: bad-review
    when: {query: "kind:review", rating: "<=2"}
    then: {escalate: helpdesk, tag: bad-review}
  - name: thanks-close
    when: {words: ["thank you", "asante sana", "terima kasih"]}
    then: {resolve: true}
    stop: true
  - name: after-hours-ack
    when: {query: "kind:dm", outside_hours: office}
    then: {reply: looking}
  - name: overdue
    when: {no_reply_for: 20m, query: "tag:refund"}
    then: {tag: overdue, snooze: 30m}
"""


def _live(ws: Workspace, clock: Clock, passes: int, step: float) -> None:
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        for i in range(passes):
            if i:
                clock.advance(step)
            asyncio.run(engine.run_once())
    finally:
        db.close()


def _live_counts(db: Database, since: float) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for at, data in db.conn.execute("SELECT at, data FROM events WHERE kind='rule' ORDER BY seq"):
        fired = json.loads(data)
        if at < since:
            continue
        s = out.setdefault(fired["rule"], {"firings": set(), "actions": {}, "skipped": {}})
        s["firings"].add((fired["trigger"], fired["message"], fired.get("since")))
        for a in fired["done"]:
            s["actions"][a] = s["actions"].get(a, 0) + 1
        for a in fired["skipped"]:
            s["skipped"][a] = s["skipped"].get(a, 0) + 1
    return out


def test_the_dry_runs_counts_are_what_the_live_engine_did_on_the_same_history(tmp_path: Path) -> None:
    """The demo shop with the rules on for a while (the engine: backlog, new messages, customers
    answering our acknowledgements, timers); then a dry run on a copy of that workspace, which
    ignores what the rules did and replays them: the same firings and the same actions."""
    clock = Clock()
    config = config_of(DEMO_RULES.replace("rules:", "accounts:\n  - {name: desk, provider: demo-helpdesk}\n"
                                          "escalation:\n  targets: {helpdesk: {account: desk}}\nrules:"), pace=60)
    live_dir = tmp_path / "live"
    _live(Workspace(live_dir, config, clock=clock), clock, passes=12, step=300)
    copy = tmp_path / "copy"
    shutil.copytree(live_dir, copy)
    ws = Workspace(copy, config, clock=clock)
    db = ws.open_db()
    before = db.conn.execute("SELECT count(*), max(seq) FROM events").fetchone()
    report = dry_run(db, config, 0.0, clock.now)
    assert db.conn.execute("SELECT count(*), max(seq) FROM events").fetchone() == before  # nothing written
    live = _live_counts(db, 0.0)
    assert set(live) == set(report.rules) - {n for n, s in report.rules.items() if not s.firings}
    for name, summary in report.rules.items():
        dry_firings = {(f.trigger, f.message_id, f.since) for f in report.firings if f.rule == name}
        got = live.get(name, {"firings": set(), "actions": {}, "skipped": {}})
        assert dry_firings == got["firings"], name
        assert dict(summary.actions) == got["actions"], name
        assert dict(summary.skipped) == got["skipped"], name
    # every kind of rule acted, so the comparison covers each path
    assert all(report.rules[n].firings for n in ("refund-words", "swahili", "bad-review", "thanks-close",
                                                 "after-hours-ack", "overdue"))
    assert report.rules["after-hours-ack"].actions["reply with looking"] > 0
    db.close()


def test_dry_run_on_a_history_the_rules_never_saw(demo_ws: Workspace) -> None:
    """The everyday use: rules written today, tried on yesterday's messages. Only one rule asked for."""
    config = config_of(DEMO_RULES)
    db = demo_ws.open_db()
    report = dry_run(db, config, 0.0, db.now(), only="refund-words")
    assert list(report.rules) == ["refund-words"]
    refund = report.rules["refund-words"]
    texts = db.conn.execute("SELECT count(DISTINCT conversation_id) FROM messages WHERE direction='in' AND ("
                            "text LIKE '%refund%' OR text LIKE '%charged twice%' OR text LIKE '%Nimelipishwa%' "
                            "OR text LIKE '%रिफंड%' OR text LIKE '%Χρεώθηκα%')").fetchone()[0]
    assert len(refund.conversations) == texts > 0
    assert refund.actions["tag refund"] == texts
    assert len(refund.sample) == 5 and all(m["done"] == ["tag refund", "set priority high"] for m in refund.sample)
    assert queries.get_row(db, refund.sample[0]["conversation"]).tags == ()  # nothing was tagged for real
    db.close()


def test_cli_rules_test_prints_per_rule_and_json(demo_ws: Workspace, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from replydesk.cli import main

    config = tmp_path / "rules.yaml"
    config.write_text(DEMO_RULES, encoding="utf-8")
    args = ["--data-dir", str(demo_ws.data_dir), "--config", str(config)]
    # The demo's history is dated by the suite's fixed clock, the CLI reads the wall clock: a window
    # given as the date 30 days before the fixed time holds the history whatever today is.
    since = datetime.fromtimestamp(FIXED_NOW - 30 * 86400, UTC).isoformat()
    assert main(["rules", "test", "--since", since, *args]) == 0
    out = capsys.readouterr().out
    assert "(a dry run: nothing was changed)" in out and "refund-words: " in out and "would tag refund:" in out
    assert main(["rules", "test", "swahili", "--json", "--since", since, *args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["rule"] for r in doc["rules"]] == ["swahili"] and doc["rules"][0]["conversations"] > 0
    assert main(["rules", "test", "nope", *args]) == 2
    assert "no rule named 'nope'" in capsys.readouterr().err


# ---- listening matches --------------------------------------------------------------------------


def test_rules_see_listening_matches_only_when_they_ask_for_them(tmp_path: Path, clock: Clock) -> None:
    """Posts a listening query found reach the rules through the same ingest hook (inside the
    listener's ingest); as in search, only a rule saying is:listening or listening:NAME sees them,
    and such a rule cannot answer them. The dry run replays them the same way."""
    from replydesk.model import FetchResult

    s = shop(tmp_path, clock, """\
  - name: complaint
    when: {query: "listening:brand refund"}
    then: {tag: complaint}
  - name: inbox-refund
    when: {words: [refund]}
    then: {tag: refund}
""")
    found = IncomingMessage(native_id="p1", conversation_native_id="p1", platform="mastodon", kind="mention",
                            contact=Contact("ann", "Ann"), text="no refund from them yet", created_at=clock.now)
    ingest.ingest(s.db, "demo", [FetchResult([found], {"s": 1}, "listen:brand", listening="brand")])
    s.write("a", "refund please", platform="mastodon", kind="mention")
    assert s.row("p1").tags == ("complaint",) and s.row("a").tags == ("refund",)
    report = dry_run(s.db, s.config, 0.0, clock.now)
    assert {n: len(r.conversations) for n, r in report.rules.items()} == {"complaint": 1, "inbox-refund": 1}
    with pytest.raises(ConfigError, match="posts found by listening are not addressed to us"):
        config_of("rules:\n  - {name: r, when: {query: 'is:listening'}, then: {reply: thanks}}\n")
