"""CSAT: the survey goes once after a resolve (never on reviews or to robots), the answer is read in
the customer's language and recorded as the rating (the conversation stays resolved), anything else
is a new message; the report shows the figures per group. The engine and the demo platform run for
real: the survey leaves through the outbox and lands once on the platform's ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from replydesk.config import parse_config
from replydesk.csat import parse_answer
from replydesk.model import Contact, FetchResult, IncomingMessage, iso
from replydesk.providers.demo import DemoRemote
from replydesk.reporting import make_report
from replydesk.storage import actions, ingest, queries, slastate
from replydesk.workspace import Workspace
from support import Clock

ANSWERS = [
    ("5", 5, True), ("⭐⭐⭐⭐⭐", 5, True), ("★★☆☆☆", 2, False), ("good", None, True), ("asante sana, 5", 5, True),
    ("4/5", 4, True), ("4 out of 5 stars", 4, True), ("Terrible", None, False), ("not good", None, False),
    ("nzuri sana", None, True), ("si nzuri", None, False), ("बहुत अच्छा", None, True), ("अच्छा नहीं", None, False),
    ("धन्यवाद, ५", 5, True), ("Terima kasih, bagus", None, True), ("teruk", None, False),
    ("Ευχαριστώ πολύ, 5", 5, True), ("Καλό", None, True), ("δεν ήταν καλό", None, False), ("жақсы", None, True),
    ("жақсы емес", None, False), ("3", 3, False), ("👍", None, True), ("👎", None, False),
]
NOT_ANSWERS = [
    "Still not here after 3 days, any update?", "Order #1234 is late", "3 or 4", "Thanks, that helps!",
    "Asante sana!", "Habari, agizo langu #1683 bado halijafika.", "good and bad", "5 ⭐⭐", "",
]


@pytest.mark.parametrize(("text", "score", "satisfied"), ANSWERS)
def test_typical_answers_in_several_languages_are_read(text: str, score: int | None, satisfied: bool) -> None:
    rating = parse_answer(text)
    assert rating is not None and (rating.score, rating.satisfied) == (score, satisfied)


@pytest.mark.parametrize("text", NOT_ANSWERS)
def test_anything_else_is_not_an_answer(text: str) -> None:
    assert parse_answer(text) is None


CONFIG = """\
accounts:
  - {name: demo, provider: demo, pace: 3600}
ui:
  saved_replies:
    csat: "How did we do, {first_name}? Reply 1 (bad) to 5 (great)."
csat:
  accounts:
    demo: {survey: csat}
  answer_within: 1d
"""


def _conv(db, kind: str) -> queries.InboxRow:  # noqa: ANN001
    row = db.conn.execute("SELECT id FROM conversations WHERE kind=? AND reply_window IS NULL ORDER BY id LIMIT 1",
                          (kind,)).fetchone()
    return queries.get_row(db, row[0])


def _answer(db, row: queries.InboxRow, text: str, at: float, n: int) -> None:  # noqa: ANN001
    contact = db.conn.execute("SELECT native_id, name FROM contacts WHERE id=(SELECT contact_id FROM conversations "
                              "WHERE id=?)", (row.id,)).fetchone()
    native = db.conn.execute("SELECT native_id FROM conversations WHERE id=?", (row.id,)).fetchone()[0]
    msg = IncomingMessage(native_id=f"answer-{n}", conversation_native_id=native, platform=row.platform,
                          kind=row.kind, contact=Contact(contact[0], contact[1]), text=text, created_at=at)
    ingest.ingest(db, "demo", [FetchResult([msg], cursor=None)])


def test_survey_once_after_resolve_answer_recorded_and_reported(tmp_path: Path) -> None:
    clock = Clock()
    config = parse_config(CONFIG, Path("c.yaml"))
    ws = Workspace(tmp_path / "ws", config, clock=clock)
    db = ws.open_db()
    engine = ws.engine(db)
    asyncio.run(engine.run_once())  # the backlog; the survey starts watching resolves from here
    dm, review = _conv(db, "dm"), _conv(db, "review")
    actions.resolve(db, [dm.id, review.id])
    clock.advance(10)
    asyncio.run(engine.run_once())  # the sweep queues the survey, the next drain sends it
    asyncio.run(engine.run_once())
    ledger = [e for e in DemoRemote(ws.data_dir).ledger() if e["text"].startswith("How did we do")]
    native = db.conn.execute("SELECT native_id FROM conversations WHERE id=?", (dm.id,)).fetchone()[0]
    assert [e["conversation"] for e in ledger] == [native]  # once, and not on the review
    assert ledger[0]["text"] == f"How did we do, {dm.customer.split()[0]}? Reply 1 (bad) to 5 (great)."
    skipped = db.conn.execute("SELECT data FROM events WHERE kind='csat_skipped' AND conversation_id=?",
                              (review.id,)).fetchone()
    assert "reviews are not surveyed" in skipped[0]
    # resolving again within repeat_after does not survey again
    actions.reopen(db, [dm.id])
    actions.resolve(db, [dm.id])
    clock.advance(10)
    asyncio.run(engine.run_once())
    asyncio.run(engine.run_once())
    assert len([e for e in DemoRemote(ws.data_dir).ledger() if e["text"].startswith("How did we do")]) == 1
    # the answer: recorded, the conversation stays resolved and waits for nobody
    _answer(db, dm, "asante sana, 5", clock.now, 1)
    row = queries.get_row(db, dm.id)
    assert row.status == "resolved" and not row.needs_reply
    sla = slastate.evaluate_at(db, dm.id, clock.now)
    assert all(m.state in ("fulfilled", "breached") or m.metric != "next_reply" for m in sla.metrics)
    report = make_report(db, config.sla, None, clock.now, "platform")
    [group] = [g for g in report["groups"] if g["key"] == dm.platform]
    assert group["csat"] == {"responses": 1, "satisfied": 1.0, "average": 5.0}
    # anything after the answer is a new message: it reopens as usual
    _answer(db, dm, "Where is my refund, by the way?", clock.now + 60, 2)
    assert queries.get_row(db, dm.id).status == "open"
    db.close()


def test_a_non_answer_or_a_late_answer_reopens_as_usual(tmp_path: Path) -> None:
    clock = Clock()
    config = parse_config(CONFIG, Path("c.yaml"))
    ws = Workspace(tmp_path / "ws", config, clock=clock)
    db = ws.open_db()
    engine = ws.engine(db)
    asyncio.run(engine.run_once())
    first, second = [queries.get_row(db, r[0]) for r in db.conn.execute(
        "SELECT id FROM conversations WHERE kind='dm' AND reply_window IS NULL ORDER BY id LIMIT 2")]
    actions.resolve(db, [first.id, second.id])
    clock.advance(10)
    asyncio.run(engine.run_once())
    _answer(db, first, "my parcel is still missing", clock.now, 1)
    clock.advance(2 * 86400)  # past answer_within (1 day); a message dated ahead of now is clamped to now
    _answer(db, second, "5", clock.now, 2)
    assert queries.get_row(db, first.id).status == "open"
    assert queries.get_row(db, second.id).status == "open"
    assert db.conn.execute("SELECT count(*) FROM events WHERE kind='csat'").fetchone()[0] == 0
    db.close()


def test_no_survey_to_a_robot(tmp_path: Path) -> None:
    clock = Clock()
    config = parse_config(CONFIG, Path("c.yaml"))
    ws = Workspace(tmp_path / "ws", config, clock=clock)
    db = ws.open_db()
    engine = ws.engine(db)
    asyncio.run(engine.run_once())
    bounce = IncomingMessage(native_id="mailer-1", conversation_native_id="robot-thread", platform="email",
                             kind="email", contact=Contact("mailer-daemon", "Mail Delivery System"),
                             text="Delivery failed", created_at=clock.now, automatic="bounce: 550 5.1.1 no such user")
    ingest.ingest(db, "demo", [FetchResult([bounce], cursor=None)])
    actions.resolve(db, ["demo:robot-thread"])
    clock.advance(10)
    asyncio.run(engine.run_once())
    assert [i for i in db.conn.execute("SELECT key FROM outbox WHERE conversation_id='demo:robot-thread'")] == []
    [reason] = db.conn.execute("SELECT data FROM events WHERE kind='csat_skipped'").fetchone()
    assert "only automatic messages" in reason
    db.close()


def _surveys(ws: Workspace) -> list[dict]:
    return [e for e in DemoRemote(ws.data_dir).ledger() if e["text"].startswith(("How did we do", "Habari"))]


def _resolve_and_survey(db, engine, clock: Clock, ids: list[str]) -> None:  # noqa: ANN001
    actions.resolve(db, ids)
    clock.advance(10)
    asyncio.run(engine.run_once())  # the sweep queues the survey, the next drain sends it
    asyncio.run(engine.run_once())


def test_a_platform_has_its_own_survey_and_an_account_can_turn_it_off(tmp_path: Path) -> None:
    clock = Clock()
    for enabled in ("true", "false"):
        config = parse_config(CONFIG.replace("    csat: ", "    csat_sw: \"Habari {first_name}, tupe alama 1-5.\"\n"
                                             "    csat: ").replace(
            "demo: {survey: csat}", f"demo: {{survey: csat, platforms: {{telegram: csat_sw}}, enabled: {enabled}}}"),
            Path("c.yaml"))
        ws = Workspace(tmp_path / enabled, config, clock=clock)
        db = ws.open_db()
        engine = ws.engine(db)
        asyncio.run(engine.run_once())
        dms = {p: queries.get_row(db, c) for p, c in db.conn.execute(
            "SELECT platform, min(id) FROM conversations WHERE kind='dm' AND reply_window IS NULL "
            "AND platform IN ('telegram', 'x') GROUP BY platform")}
        assert set(dms) == {"telegram", "x"}
        _resolve_and_survey(db, engine, clock, [r.id for r in dms.values()])
        natives = {p: db.conn.execute("SELECT native_id FROM conversations WHERE id=?", (r.id,)).fetchone()[0]
                   for p, r in dms.items()}
        sent = {e["conversation"]: e["text"] for e in _surveys(ws)}
        if enabled == "true":
            first = {p: r.customer.split()[0] for p, r in dms.items()}
            assert sent == {natives["telegram"]: f"Habari {first['telegram']}, tupe alama 1-5.",
                            natives["x"]: f"How did we do, {first['x']}? Reply 1 (bad) to 5 (great)."}
        else:
            assert sent == {}  # turned off: nothing queued, nothing sent
            assert db.conn.execute("SELECT count(*) FROM outbox WHERE conversation_id IN (?, ?)",
                                   [r.id for r in dms.values()]).fetchone()[0] == 0
        db.close()


def test_the_cli_report_shows_csat_with_every_grouping(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Two surveyed conversations, one tagged: answered "5" and "si nzuri" (Swahili: not good).
    Hand-computed: all 2 answers, 50% satisfied, average 5.0 (only "5" has a score); by tag: wholesale
    1 answer, 100%, 5.0; (untagged) 1 answer, 0%, no average."""
    from replydesk.cli import main

    clock = Clock()
    config_file = tmp_path / "c.yaml"
    config_file.write_text(CONFIG, encoding="utf-8")
    config = parse_config(CONFIG, config_file)
    ws = Workspace(tmp_path / "ws", config, clock=clock)
    db = ws.open_db()
    engine = ws.engine(db)
    asyncio.run(engine.run_once())
    first, second = [queries.get_row(db, r[0]) for r in db.conn.execute(
        "SELECT id FROM conversations WHERE kind='dm' AND reply_window IS NULL ORDER BY id LIMIT 2")]
    actions.tag(db, [first.id], ["wholesale"])
    _resolve_and_survey(db, engine, clock, [first.id, second.id])
    _answer(db, first, "5", clock.now, 1)
    _answer(db, second, "si nzuri", clock.now, 2)
    db.close()
    args = ["--data-dir", str(ws.data_dir), "--config", str(config_file), "--until", iso(clock.now + 60)]
    assert main(["report", "--by", "tag", "--json", *args]) == 0
    groups = {g["key"]: g["csat"] for g in json.loads(capsys.readouterr().out)["groups"]}
    assert groups["wholesale"] == {"responses": 1, "satisfied": 1.0, "average": 5.0}
    assert groups["(untagged)"] == {"responses": 1, "satisfied": 0.0, "average": None}
    for by in ("platform", "account", "assignee", "policy"):
        assert main(["report", "--by", by, "--json", *args]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert sum(g["csat"]["responses"] for g in doc["groups"]) == 2, by
    assert main(["report", *args]) == 0
    text = capsys.readouterr().out
    header, row = [line for line in text.splitlines() if "CSAT answers" in line or line.startswith("all")][:2]
    assert "satisfied" in header and row.split()[-3:] == ["2", "50%", "5.0"]
    assert main(["report", "--csv", *args]) == 0
    lines = capsys.readouterr().out.splitlines()  # "\n" ends a line: no stray (visible) carriage return
    assert lines[0].endswith("csat_responses,csat_satisfied,csat_average") and lines[1].endswith(",2,0.5,5.0")


def test_a_standby_team_engine_surveys_nothing(tmp_path: Path) -> None:
    """A team engine surveys the accounts it leads only (the leader surveys each resolve once)."""
    from replydesk.surveys import Surveys

    clock = Clock()
    config = parse_config(CONFIG, Path("c.yaml"))
    ws = Workspace(tmp_path / "ws", config, clock=clock)
    db = ws.open_db()
    asyncio.run(ws.engine(db).run_once())
    surveys = Surveys(config)
    surveys.run(db)  # the first look starts the cursor
    first, second = [r[0] for r in db.conn.execute(
        "SELECT id FROM conversations WHERE kind='dm' AND reply_window IS NULL ORDER BY id LIMIT 2")]
    actions.resolve(db, [first])
    assert surveys.run(db, accounts=frozenset({"elsewhere"})) == 0
    assert db.conn.execute("SELECT count(*) FROM events WHERE kind='csat_survey'").fetchone()[0] == 0
    actions.resolve(db, [second])
    assert surveys.run(db, accounts=frozenset({"demo"})) == 1
    db.close()


def test_in_a_team_the_answer_goes_to_the_team_as_no_persons_message(tmp_path: Path) -> None:
    """The team reopens a conversation on a person's message; the survey's answer must not, so the
    engine that read it pushes it marked, with the rating (and anything else as usual)."""
    from replydesk.storage import team_local

    clock = Clock()
    config = parse_config(CONFIG, Path("c.yaml"))
    ws = Workspace(tmp_path / "ws", config, clock=clock)
    db = ws.open_db()
    engine = ws.engine(db)
    asyncio.run(engine.run_once())
    dm = _conv(db, "dm")
    actions.resolve(db, [dm.id])
    clock.advance(10)
    asyncio.run(engine.run_once())
    asyncio.run(engine.run_once())
    link = team_local.Link("postgresql://team.example/shop", "engine-a", "engine", "r1")
    team_local.set_link(db, link)  # from here on, what changes is pushed
    _answer(db, dm, "asante sana, 5", clock.now, 1)
    _answer(db, dm, "and where is my refund?", clock.now + 60, 2)
    changes, _, _ = team_local.pending_changes(db, link)
    sent = {c.command["message"]["text"]: c.command["message"]["automatic"] for c in changes
            if c.command["kind"] == "message"}
    assert sent == {"asante sana, 5": "survey answer: 5/5", "and where is my refund?": None}
    db.close()
