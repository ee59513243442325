"""The set-based message path (``submit_messages``) against the per-message one (``submit``).

Two teams on one real PostgreSQL server start from the same state; one takes a batch of an engine's
messages command by command, the other as one run. Every cache replays the log as it is, so the two
must leave the same events (seq, author, data, the state each left), the same tables, and the same
outcome per command.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from replydesk.storage import team_db
from team_support import Team

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

AT = 1_790_000_000.0


def message(cmd_id: str, conv: str, msg_id: str, *, direction: str = "in", at: float = AT,
            automatic: str | None = None, **message_fields: Any) -> dict[str, Any]:
    """An engine's message command, as a replica pushes one (``team_local._message_payload``)."""
    return {"id": cmd_id, "agent": "engine-a", "at": at, "kind": "message", "conversation": conv,
            "thread": {"account": "demo", "platform": "email", "kind": "email", "native_id": conv[5:],
                       "subject": f"About {conv}"},
            "contact": {"native_id": f"c-{conv}", "name": "Zoe", "handle": "zoe@example.com", "vip": False},
            "message": {"id": msg_id, "native_id": msg_id[5:], "direction": direction, "author": "Zoe",
                        "text": f"text of {msg_id}", "created_at": at, "parent_id": None, "state": "received",
                        "error": None, "private": False, "meta": {}, "automatic": automatic, **message_fields}}


def prepare(pg_server: Any) -> Team:
    """A team with conversations resolved, snoozed and assigned, round-robin on (cap 2) and two agents online."""
    team = Team.create(pg_server)
    for name, engine in (("engine-a", True), ("ana", False), ("ben", False)):
        team.add(name, engine=engine)
    for name in ("ana", "ben"):
        with connect(team, name) as conn:
            team_db.heartbeat(conn, None, None, 600)
    with connect(team, "engine-a") as engine, connect(team, "ana") as ana:
        for i, conv in enumerate(("demo:resolved", "demo:snoozed", "demo:mine")):
            assert team_db.submit(engine, message(f"setup:{i}", conv, f"{conv}:m0", at=AT - 100 + i))["ok"]
        for conv, fields in (("demo:resolved", {"status": "resolved", "snoozed_until": None}),
                             ("demo:snoozed", {"status": "snoozed", "snoozed_until": AT + 3600}),
                             ("demo:mine", {"status": "resolved", "snoozed_until": None})):
            outcome = team_db.submit(ana, {"id": f"set:{conv}", "agent": "ana", "at": AT - 50, "kind": "set",
                                           "conversation": conv, "fields": fields})
            assert outcome["ok"], outcome
        assert team_db.submit(ana, {"id": "assign:mine", "agent": "ana", "at": AT - 40, "kind": "set",
                                    "conversation": "demo:mine", "fields": {"assignee": "ben"}})["ok"]
    with team.admin() as admin:  # on after the set-up: the batch's fresh conversations are the first it assigns
        admin.execute("UPDATE replydesk.settings SET value = 'true' WHERE key = 'round_robin'")
        admin.execute("UPDATE replydesk.settings SET value = '2' WHERE key = 'cap'")
    return team


def connect(team: Team, name: str) -> psycopg.Connection:
    url, _ = team_db.TeamUrl.parse(team.url(name))
    return team_db.connect(url, team.passwords[name])


def batch() -> list[dict[str, Any]]:
    return [
        message("b:1", "demo:resolved", "demo:resolved:m1", at=AT + 1),            # reopens a resolved one
        message("b:2", "demo:resolved", "demo:resolved:m0", at=AT + 2),            # stored before
        message("b:3", "demo:fresh1", "demo:fresh1:m1", at=AT + 3),                # a fresh conversation
        message("b:4", "demo:fresh1", "demo:fresh1:m1", at=AT + 4),                # the same message again
        message("b:5", "demo:fresh1", "demo:fresh1:m2", direction="out", at=AT - 5),  # ours, earlier
        message("b:6", "demo:snoozed", "demo:snoozed:m1", at=AT + 6, automatic="auto-reply"),  # no reopening
        message("b:7", "demo:fresh2", "demo:fresh2:m1", at=AT + 7),                # fresh, the other agent
        message("b:8", "demo:snoozed", "demo:snoozed:m2", at=AT + 8),              # now it reopens
        {**message("b:9", "demo:mine", "demo:mine:m9"), "message": {"id": "demo:mine:m9"}},  # no time: invalid
        message("setup:0", "demo:mine", "demo:mine:m10", at=AT + 10),              # a command id seen before
        message("b:11", "demo:fresh3", "demo:fresh3:m1", at=AT + 11, state="failed", private=True),  # over the cap
        message("b:12", "demo:mine", "demo:mine:m12", direction="out", at=AT + 12),  # ours: stays resolved
        message("b:13", "demo:fresh1", "demo:fresh1:m3", at=AT + 13),
    ]


def state(team: Team) -> dict[str, Any]:
    with team.admin() as admin:
        return {
            "events": admin.execute(
                "SELECT seq, agent, kind, conversation_id, command_id, data, result, "
                "CASE WHEN agent = 'round-robin' THEN NULL ELSE at END FROM replydesk.events ORDER BY seq").fetchall(),
            "conversations": admin.execute("SELECT * FROM replydesk.conversations ORDER BY id").fetchall(),
            "messages": admin.execute("SELECT * FROM replydesk.messages ORDER BY id").fetchall(),
            "assigned": admin.execute("SELECT name, last_assigned_at IS NULL FROM replydesk.agents ORDER BY name"
                                      ).fetchall(),
            "head": admin.execute("SELECT last_value FROM replydesk.event_seq").fetchone(),
        }


def mixed() -> list[dict[str, Any]]:
    """The batch with other commands between its messages (a push's order): runs of messages, split."""
    commands = batch()
    commands.insert(5, {"id": "t:1", "agent": "engine-a", "at": AT + 5, "kind": "tag", "conversation": "demo:fresh1",
                        "add": ["billing"]})
    commands.insert(9, {"id": "k:1", "agent": "engine-a", "at": AT + 9, "kind": "cursor", "account": "demo",
                        "stream": "inbox", "cursor": {"after": 9}})
    return commands


@pytest.mark.parametrize("how", ["submit_messages", "submit_many"])
def test_a_batch_of_messages_leaves_the_same_events_and_state_as_one_by_one(pg_server: Any, how: str) -> None:
    one_by_one, batched = prepare(pg_server), prepare(pg_server)
    assert state(one_by_one) == state(batched)
    commands = batch() if how == "submit_messages" else mixed()
    with connect(one_by_one, "engine-a") as conn:
        expected = [team_db.submit(conn, c) for c in commands]
    with connect(batched, "engine-a") as conn:
        if how == "submit_messages":
            got = conn.execute("SELECT replydesk.submit_messages(%s::jsonb)", (Jsonb(commands),)).fetchone()[0]
        else:
            assert [(b, len(run)) for b, run in team_db._runs(commands, True)] == [
                (True, 5), (False, 1), (True, 3), (False, 1), (True, 5)]
            got = team_db.submit_many(conn, commands)
    assert got == expected
    verdicts = [o.get("duplicate") or o.get("repeat") or o.get("reason") for o in got]
    if how == "submit_messages":
        assert verdicts == [None, True, None, True, None, None, None, None, "invalid", True, None, None, None]
    after, before = state(batched), state(one_by_one)
    assert after == before
    conversations = {r[0]: r for r in after["conversations"]}
    assert conversations["demo:resolved"][6] == "open" and conversations["demo:snoozed"][6] == "open"
    assert conversations["demo:mine"][6] == "resolved"
    # nobody has an open one (ben's demo:mine is resolved): ana first (by name), then ben, then ana (cap 2)
    assert [conversations[c][8] for c in ("demo:fresh1", "demo:fresh2", "demo:fresh3")] == ["ana", "ben", "ana"]
    assert sum(1 for e in after["events"] if e[1] == "round-robin") == 3


def test_a_batch_cannot_write_as_another_agent_and_takes_messages_only(pg_server: Any) -> None:
    team = prepare(pg_server)
    with connect(team, "engine-a") as conn:
        forged = [message("f:1", "demo:x", "demo:x:m1"), {**message("f:2", "demo:x", "demo:x:m2"), "agent": "ana"}]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot be written as ana"):
            conn.execute("SELECT replydesk.submit_messages(%s::jsonb)", (Jsonb(forged),))
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT replydesk.submit_messages(%s::jsonb)",
                         (Jsonb([{"kind": "tag", "conversation": "demo:mine", "add": ["x"]}]),))
    with team.admin() as admin:
        assert admin.execute("SELECT count(*) FROM replydesk.messages WHERE id LIKE 'demo:x:%'").fetchone() == (0,)


def test_a_team_whose_functions_predate_the_batch_takes_the_push_one_by_one(pg_server: Any) -> None:
    """An engine upgraded before the owner re-ran ``team init``: the push still goes through."""
    team = prepare(pg_server)
    with team.admin() as admin:
        admin.execute("DROP FUNCTION replydesk.submit_messages(jsonb)")
    with connect(team, "engine-a") as conn:
        got = team_db.submit_many(conn, mixed())
        again = team_db.submit_many(conn, [message("late:1", "demo:late", "demo:late:m1"),
                                           message("late:2", "demo:late", "demo:late:m2")])
    assert [o["ok"] for o in got].count(False) == 1 and all(o["ok"] for o in again)
    with team.admin() as admin:
        assert admin.execute("SELECT count(*) FROM replydesk.messages WHERE conversation_id = 'demo:late'"
                             ).fetchone() == (2,)


def test_a_team_set_up_at_schema_3_migrates_and_both_paths_assign_by_one_rule(
        pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database ``team init`` made before schema 4 (no tickets table): init again migrates it in
    place, what it held stays, and round-robin picks the same way through ``submit`` and the batch."""
    import io
    import json
    from contextlib import redirect_stdout

    from replydesk.cli import main
    from replydesk.storage import team_schema

    with monkeypatch.context() as old:  # the set-up as an older replydesk did it
        old.setattr(team_db, "TABLES", team_schema.TABLES[:3])
        old.setattr(team_db, "TEAM_SCHEMA_VERSION", 3)
        team = prepare(pg_server)
    with team.admin() as admin:
        assert admin.execute("SELECT value FROM replydesk.meta WHERE key = 'schema_version'").fetchone() == ("3",)
        assert admin.execute("SELECT to_regclass('replydesk.tickets')").fetchone() == (None,)
        before = admin.execute("SELECT id, status, assignee FROM replydesk.conversations ORDER BY id").fetchall()
        logged = admin.execute("SELECT seq, data::jsonb, result::jsonb FROM replydesk.events ORDER BY seq").fetchall()
    assert len(logged) >= 7  # the set-up's messages and changes, logged by the older schema
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["team", "init", team.owner_url(), "--json"]) == 0
    info = json.loads(out.getvalue())
    assert (info["schema_version"], info["created"], info["migrated_from"]) == (team_schema.TEAM_SCHEMA_VERSION, False, 3)
    with team.admin() as admin:
        assert admin.execute("SELECT id, status, assignee FROM replydesk.conversations ORDER BY id").fetchall() == before
        assert admin.execute("SELECT count(*) FROM replydesk.tickets").fetchone() == (0,)
        assert admin.execute("SELECT seq, data::jsonb, result::jsonb FROM replydesk.events ORDER BY seq").fetchall() == logged
        assert admin.execute("SELECT data_type FROM information_schema.columns WHERE table_schema = 'replydesk' "
                             "AND table_name = 'events' AND column_name = 'data'").fetchone() == ("json",)
    with connect(team, "engine-a") as conn:  # nobody has an open one: ana (by name), then ben, then ana (cap 2)
        one = team_db.submit(conn, message("m:1", "demo:one", "demo:one:m1", at=AT + 1))
        two = team_db.submit_many(conn, [message("m:2", "demo:two", "demo:two:m1", at=AT + 2),
                                         message("m:3", "demo:three", "demo:three:m1", at=AT + 3)])
        assert one["ok"] and all(o["ok"] for o in two)
        solved = team_db.submit(conn, {"id": "t:1", "agent": "engine-a", "kind": "ticket_status",
                                       "conversation": "demo:one", "account": "desk", "ticket": "7",
                                       "status": "solved", "updated_at": AT + 9, "resolve": True})
        again = team_db.submit(conn, {"id": "t:2", "agent": "engine-a", "kind": "ticket_status",
                                      "conversation": "demo:one", "account": "desk", "ticket": "7",
                                      "status": "solved", "updated_at": AT + 9, "resolve": True})
        assert solved["ok"] and again == {"ok": True, "duplicate": True}
    with team.admin() as admin:
        assigned = dict(admin.execute("SELECT id, assignee FROM replydesk.conversations "
                                      "WHERE id IN ('demo:one', 'demo:two', 'demo:three')").fetchall())
        assert admin.execute("SELECT status FROM replydesk.conversations WHERE id = 'demo:one'").fetchone() == (
            "resolved",)
    assert assigned == {"demo:one": "ana", "demo:two": "ben", "demo:three": "ana"}
