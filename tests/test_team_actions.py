"""The outbox's other actions through the team: mark read, edit or delete our reply, a helpdesk
ticket and the notes forwarded to it as comments.

Platform tokens live only on the team engine, so an action an agent queues must reach it through
the team, be done there exactly once (the demo platform's and the demo helpdesk's ledgers are the
referees), and its outcome (done, the ticket's id and link, the edited or deleted reply) must reach
every agent's cache. Real PostgreSQL, real joined workspaces, the engine as ``EngineThread`` runs it
in the console (in process); the failover test runs two engines as processes and SIGKILLs them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from replydesk.config import parse_config
from replydesk.storage import actions, outbox, queries, team_local, tickets
from replydesk.storage.db import Database, open_database
from replydesk.workspace import EngineThread, Workspace
from team_support import (
    Team,
    TeamProcesses,
    cache_state,
    differences,
    engine_config,
    join_engine_ana_ben,
    sync,
    team_state,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]


def desk(remote: Path, *, idempotency_keys: bool = True, faults: str = "") -> str:
    """A demo helpdesk account (after the demo platform in ``engine_config``), notes as comments."""
    return (f"  - name: desk\n    provider: demo-helpdesk\n    notes_as_comments: true\n    remote: {remote}\n"
            f"    idempotency_keys: {'true' if idempotency_keys else 'false'}\n{faults}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]



@pytest.fixture
def joined(team: Team, tmp_path: Path) -> dict[str, Any]:
    remote = tmp_path / "platform"
    text = engine_config(remote, extra=desk(remote))
    return {**join_engine_ana_ben(team, tmp_path, text), "remote": remote, "config": text}



def team_outbox(team: Team) -> dict[str, tuple[str, str, str]]:
    """The team outbox: key → (action, state, account)."""
    with team.admin() as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT key, action, state, account FROM replydesk.outbox")}


def all_done(team: Team, n: int) -> bool | str:
    rows = team_outbox(team)
    done = sum(1 for _, state, _ in rows.values() if state == "sent")
    return True if len(rows) >= n and done == len(rows) else f"{done} of {len(rows)} done, {n} expected"


def ours(db: Database, n: int) -> list[str]:
    """Conversations of the demo platform with a reply of ours on it, oldest first."""
    return [r[0] for r in db.conn.execute(
        "SELECT DISTINCT c.id FROM conversations c JOIN messages m ON m.conversation_id = c.id "
        "WHERE c.account = 'demo' AND m.direction = 'out' AND m.state = 'sent' ORDER BY c.id LIMIT ?", (n,))]


def run_engine(joined: dict[str, Any], until: Any, what: str) -> None:
    engine = EngineThread(Workspace(joined["engine-a"], parse_config(joined["config"], Path("engine.yaml"))))
    try:
        assert engine.start()
        wait_for(until, what)
    finally:
        engine.stop(timeout=30)


def test_each_action_kind_from_an_agent_is_done_once_by_the_engine_and_reaches_every_cache(
        team: Team, joined: dict[str, Any]) -> None:
    ana = open_database(joined["ana"])
    try:
        edited, deleted = ours(ana, 2)
        plain = ana.conn.execute("SELECT id FROM conversations WHERE account = 'demo' AND id NOT IN (?, ?) "
                                 "ORDER BY id LIMIT 2", (edited, deleted)).fetchall()
        read, escalated = plain[0][0], plain[1][0]
        keys = {
            "mark_read": outbox.queue_action(ana, read, "mark_read", actor="ana"),
            "edit_reply": outbox.queue_action(ana, edited, "edit_reply", {"text": "Fixed: the oven ships Monday."},
                                              actor="ana"),
            "delete_reply": outbox.queue_action(ana, deleted, "delete_reply", actor="ana"),
        }
        with ana.transaction():
            actions.escalate(ana, [escalated], target="billing", actor="ana")
            keys["create_ticket"] = outbox.queue_ticket(ana, escalated, account="desk", target="billing", actor="ana")
        actions.add_note(ana, escalated, "Customer called twice about this.", actor="ana")
        edit_target = outbox.get(ana, keys["edit_reply"]).payload["message_id"]
        delete_target = outbox.get(ana, keys["delete_reply"]).payload["message_id"]
    finally:
        ana.close()
    report = sync(joined["ana"])
    assert report.refused == []
    at_team = team_outbox(team)
    assert {at_team[k][0] for k in keys.values()} == set(keys)  # each carried, with its kind
    assert at_team[keys["create_ticket"]][2] == "desk"  # performed by the helpdesk's account

    run_engine(joined, lambda: all_done(team, 5), "the engine to do the four actions and the note's comment")

    # Done once each on the platform and at the helpdesk.
    performed = read_jsonl(joined["remote"] / "demo-actions.jsonl")
    assert Counter(e["key"] for e in performed) == Counter(keys[k] for k in ("mark_read", "edit_reply", "delete_reply"))
    (ticket,) = read_jsonl(joined["remote"] / "demo-tickets.jsonl")
    assert ticket["key"] == keys["create_ticket"] and ticket["external_id"] == escalated
    (comment,) = read_jsonl(joined["remote"] / "demo-ticket-comments.jsonl")
    assert comment["ticket"] == ticket["id"] and comment["body"] == "Customer called twice about this."

    # Every cache: the actions done, the reply edited and the other deleted, the ticket with its link.
    sync(joined["ana"])
    sync(joined["ben"])
    referee = team_state(team)
    for name in ("ana", "ben", "engine-a"):
        db = open_database(joined[name])
        try:
            assert not differences(cache_state(db), referee), name
            states = {k: outbox.get(db, key).state for k, key in keys.items()}
            assert states == dict.fromkeys(keys, "sent"), name
            assert db.conn.execute("SELECT text FROM messages WHERE id=?", (edit_target,)).fetchone()[0] == \
                "Fixed: the oven ships Monday."
            assert db.conn.execute("SELECT state FROM messages WHERE id=?", (delete_target,)).fetchone()[0] == "deleted"
            (held,) = tickets.of_conversation(db, escalated)
            assert (held.account, held.ticket_id) == ("desk", ticket["id"])
            assert held.url.endswith(f"/tickets/{ticket['id']}")
            kinds = [a.action for a in queries.thread(db, escalated).actions]
            assert kinds == ["create_ticket", "ticket_comment"], name
            assert all(a.state == "sent" for a in queries.thread(db, escalated).actions)
        finally:
            db.close()
    with team.admin() as conn:
        assert conn.execute("SELECT text FROM replydesk.messages WHERE id=%s", (edit_target,)).fetchone()[0] == \
            "Fixed: the oven ships Monday."


def test_offline_actions_go_out_when_back_in_order_with_the_replies_of_their_conversation(
        team: Team, joined: dict[str, Any]) -> None:
    ben = open_database(joined["ben"])
    try:  # offline: a reply, a read mark, another reply on one email thread (no reply window binds it)
        conv = queries.inbox_page(ben, queries.InboxFilter(statuses=None, platforms=("email",)), 0, 1)[0].id
        order = [outbox.queue_reply(ben, conv, "one", actor="ben"),
                 outbox.queue_action(ben, conv, "mark_read", actor="ben"),
                 outbox.queue_reply(ben, conv, "two", actor="ben")]
        assert team_local.pending_count(ben) == 3
    finally:
        ben.close()
    assert team_outbox(team) == {}  # nothing left the cache yet
    assert sync(joined["ben"]).pushed == 3
    with team.admin() as conn:
        queued = [r[0] for r in conn.execute("SELECT key FROM replydesk.outbox ORDER BY seq")]
    assert queued == order

    run_engine(joined, lambda: all_done(team, 3), "the engine to send both replies and mark the thread read")
    with team.admin() as conn:  # each left on a claim of its own, in the order they were queued
        claims = [r[0] for r in conn.execute(
            "SELECT data->>'key' FROM replydesk.events WHERE kind = 'outbox' AND data->>'state' = 'sending' ORDER BY seq")]
    assert claims == order
    sent = [e["key"] for e in read_jsonl(joined["remote"] / "demo-ledger.jsonl")]
    assert sent == [order[0], order[2]]
    assert [e["key"] for e in read_jsonl(joined["remote"] / "demo-actions.jsonl")] == [order[1]]
    sync(joined["ana"])
    db = open_database(joined["ana"])
    try:
        assert [outbox.get(db, k).state for k in order] == ["sent"] * 3
    finally:
        db.close()


def test_an_action_the_team_refuses_waits_failed_with_the_reason(team: Team, joined: dict[str, Any]) -> None:
    """An action on a conversation the team does not hold (made in this cache only) is refused there:
    the cache says so instead of waiting for an engine that never sees it."""
    ana = open_database(joined["ana"])
    try:
        conv = ana.conn.execute("SELECT id FROM conversations WHERE account = 'demo' LIMIT 1").fetchone()[0]
        key = outbox.queue_action(ana, conv, "mark_read", actor="ana")
    finally:
        ana.close()
    with team.admin() as conn:  # the team lost the conversation (as a cache joined to a wiped team would see it)
        conn.execute("DELETE FROM replydesk.conversations WHERE id=%s", (conv,))
    report = sync(joined["ana"])
    assert len(report.refused) == 1 and "Mark read not done" in report.refused[0]
    ana = open_database(joined["ana"])
    try:
        item = outbox.get(ana, key)
        assert item.state == "failed" and "no conversation" in item.last_error
    finally:
        ana.close()


# ---- failover: the leading engine SIGKILLed mid-action -------------------------------------------------


ENGINES = ("engine-a", "engine-b")


class Cluster(TeamProcesses):
    def __init__(self, team: Team, root: Path) -> None:
        # The worst moment, by chance on each action: the engine SIGKILLed right after the platform
        # (or the helpdesk) did it, before it hears so. The helpdesk ignores idempotency keys, so a
        # ticket created again would show: the next leader must look it up instead.
        faults = "    faults: {crash_after_accept: 0.25}\n"
        text = engine_config(root / "platform", backlog=12, extra=faults + desk(
            root / "platform", idempotency_keys=False, faults=faults))
        super().__init__(team, root, text, ENGINES, ("ana",))

    def restart_dead(self) -> int:
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        for name in dead:
            self.start(name)
        return len(dead)


@pytest.fixture
def cluster(pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from Cluster.serving(pg_server, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_leader_killed_mid_action_neither_loses_nor_repeats_one(cluster: Cluster) -> None:
    for name in ENGINES:
        cluster.start(name)
    wait_for(lambda: cluster.leader() is not None or cluster.logs(), "an engine to lead the account", 60)
    wait_for(lambda: sync(cluster.dir("ana")).cursor > 0 and _count(cluster.dir("ana")) == 12 or "pulling",
             "the agent to pull the backlog", 60)
    db = open_database(cluster.dir("ana"))
    try:
        convs = [r[0] for r in db.conn.execute("SELECT id FROM conversations WHERE account = 'demo' ORDER BY id")]
        keys: list[str] = []
        for conv in convs[:8]:
            keys.append(outbox.queue_action(db, conv, "mark_read", actor="ana"))
        for conv in convs[8:12]:
            with db.transaction():
                actions.escalate(db, [conv], target="billing", actor="ana")
                keys.append(outbox.queue_ticket(db, conv, account="desk", target="billing", actor="ana"))
            actions.add_note(db, conv, f"note on {conv}", actor="ana")
    finally:
        db.close()
    sync(cluster.dir("ana"))
    kills = 0

    def settled() -> bool | str:
        nonlocal kills
        kills += cluster.restart_dead()
        rows = team_outbox(cluster.team)
        waiting = [k for k, (_, state, _) in rows.items() if state != "sent"]
        comments = sum(1 for action, _, _ in rows.values() if action == "ticket_comment")
        return True if not waiting and comments >= 4 else f"{len(waiting)} waiting, {comments} of 4 comments"

    wait_for(settled, "every action done, the leader killed and restarted as it goes", 240)
    assert kills >= 1, "no engine crashed mid-action: the test tested nothing"
    queued = Counter(action for action, _, _ in team_outbox(cluster.team).values())
    assert queued == {"mark_read": 8, "create_ticket": 4, "ticket_comment": 4}, queued
    performed = Counter(e["key"] for e in read_jsonl(cluster.remote / "demo-actions.jsonl"))
    assert set(performed) == set(keys[:8])  # none lost (a read mark may repeat: it changes nothing twice)
    made = Counter(t["key"] for t in read_jsonl(cluster.remote / "demo-tickets.jsonl"))
    assert made == Counter(keys[8:]), f"tickets lost or made twice: {made}"
    comments = Counter((c["ticket"], c["body"]) for c in read_jsonl(cluster.remote / "demo-ticket-comments.jsonl"))
    assert sorted(comments.values()) == [1, 1, 1, 1], f"comments lost or made twice: {comments}"
    sync(cluster.dir("ana"))
    db = open_database(cluster.dir("ana"))
    try:
        assert not differences(cache_state(db), team_state(cluster.team))
        assert db.conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == 4
    finally:
        db.close()
    print(f"team actions: 12 actions and 4 comments done once each, {kills} engine crash(es) right after one")


def _count(data_dir: Path) -> int:
    db = open_database(data_dir)
    try:
        return team_local.conversation_count(db)
    finally:
        db.close()


def test_the_cli_queues_actions_and_tickets_through_the_team(team: Team, joined: dict[str, Any],
                                                             tmp_path: Path) -> None:
    """In a joined workspace ``replydesk action`` and ``replydesk escalate`` work as solo: the agent's
    config names the escalation target and its helpdesk account (no token: the engine holds it)."""
    from test_team_store import run_cli

    config = tmp_path / "ana.yaml"
    config.write_text("accounts:\n  - name: desk\n    provider: demo-helpdesk\n"
                      "escalation:\n  targets:\n    billing: {account: desk}\n", encoding="utf-8")
    db = open_database(joined["ana"])
    try:
        conv = ours(db, 1)[0]
    finally:
        db.close()
    where = ["--data-dir", str(joined["ana"]), "--config", str(config)]
    for args in (["action", conv, "mark_read"], ["action", conv, "edit_reply", "--text", "Edited."],
                 ["escalate", conv, "--target", "billing"]):
        code, _, err = run_cli(*args, *where)
        assert code == 0, (args, err)
    assert sorted(v[:2] for v in team_outbox(team).values()) == [  # each at the team at once (no engine here)
        ("create_ticket", "queued"), ("edit_reply", "queued"), ("mark_read", "queued")]
    assert {v[2] for v in team_outbox(team).values() if v[0] == "create_ticket"} == {"desk"}
    run_engine(joined, lambda: all_done(team, 3), "the engine to do them")
    (ticket,) = read_jsonl(joined["remote"] / "demo-tickets.jsonl")
    assert ticket["external_id"] == conv
    sync(joined["ben"])
    db = open_database(joined["ben"])
    try:
        (held,) = tickets.of_conversation(db, conv)
        assert held.ticket_id == ticket["id"]
        assert queries.get_row(db, conv).escalated
    finally:
        db.close()
