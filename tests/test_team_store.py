"""Team mode against a real PostgreSQL: the log, the rules, the replicas (in-process, one pass each).

Agents and the engine are real login roles on a real server (TLS on); their workspaces are joined
through the CLI. An engine's fetch is the solo engine's pass on its replica, pushed by its
replicator; each agent's ``replydesk sync --once`` is one push and pull. The team database is the
referee: after the passes every cache must equal it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from replydesk.storage import (
    actions,
    activity,
    outbox,
    platform_facts,
    queries,
    reply_windows,
    team_db,
    team_local,
)
from replydesk.storage.db import open_database
from replydesk.team import TeamSync
from support import OutsideWriteLock, run_cli
from team_support import (
    Team,
    cache_state,
    differences,
    engine_config,
    engine_pass,
    sync,
    team_state,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]




def conversations(data_dir: Path, n: int = 3) -> list[str]:
    db = open_database(data_dir)
    try:
        return [r.id for r in queries.inbox_page(db, queries.InboxFilter(statuses=None), 0, n)]
    finally:
        db.close()



def assert_equal_to_team(team: Team, *dirs: Path) -> None:
    referee = team_state(team)
    for d in dirs:
        db = open_database(d)
        try:
            diff = differences(cache_state(db), referee)
        finally:
            db.close()
        assert not diff, f"{d.name}'s cache differs from the team:\n" + "\n".join(diff[:20])


def test_join_pulls_the_team_and_every_cache_equals_the_database(team: Team, joined: dict[str, Path]) -> None:
    referee = team_state(team)
    assert len(referee["conversations"]) == 30 and len(referee["messages"]) >= 30
    assert_equal_to_team(team, joined["ana"], joined["ben"], joined["engine-a"])
    db = open_database(joined["ana"])
    try:
        assert team_local.link(db).agent == "ana"
        assert queries.account_states(db)  # the team link shows in the status bar like an account
    finally:
        db.close()


def test_each_action_reaches_the_others_and_tags_merge(team: Team, joined: dict[str, Path]) -> None:
    c1, c2, c3 = conversations(joined["ana"])
    ana, ben = open_database(joined["ana"]), open_database(joined["ben"])
    try:
        actions.tag(ana, [c1], ["refund"], actor="ana")
        actions.tag(ben, [c1], ["vip"], actor="ben")  # at the same time: both land
        actions.add_note(ana, c2, "called the courier", actor="ana")
        actions.escalate(ben, [c3], target="billing", reason="chargeback", actor="ben")
        actions.resolve(ana, [c2], actor="ana")
    finally:
        ana.close()
        ben.close()
    for name in ("ana", "ben", "ana", "ben"):
        sync(joined[name])
    state = team_state(team)
    assert state["conversations"][c1][2] == ("refund", "vip")
    assert state["conversations"][c2][0] == "resolved"
    assert state["conversations"][c3][3] is True and state["conversations"][c3][4] == "high"
    with team.admin() as conn:  # who did what: every event carries its agent
        authors = {(r[0], r[1]) for r in conn.execute(
            "SELECT agent, kind FROM replydesk.events WHERE kind IN ('tag', 'note', 'set')")}
        note = conn.execute("SELECT author FROM replydesk.messages WHERE direction = 'note'").fetchone()
    assert {("ana", "tag"), ("ben", "tag"), ("ana", "note"), ("ben", "set"), ("ana", "set")} <= authors
    assert note == ("ana",)
    assert_equal_to_team(team, joined["ana"], joined["ben"])


def test_two_agents_assign_at_once_the_first_wins_and_the_other_is_told(team: Team, joined: dict[str, Path]) -> None:
    conv = conversations(joined["ana"], 1)[0]
    ana, ben = open_database(joined["ana"]), open_database(joined["ben"])
    try:
        actions.assign(ana, [conv], "ana", actor="ana")
        actions.assign(ben, [conv], "ben", actor="ben")  # ben has not seen ana's change
    finally:
        ana.close()
        ben.close()
    first = sync(joined["ana"])
    second = sync(joined["ben"])
    assert first.refused == []
    assert len(second.refused) == 1 and "ana changed the assignee to ana first" in second.refused[0]
    assert team_state(team)["conversations"][conv][1] == "ana"
    ben = open_database(joined["ben"])
    try:
        assert queries.get_row(ben, conv).assignee == "ana"  # the refused change was undone
        notices = [n.text for n in activity.unshown_notices(ben)]
        assert any("not applied" in n for n in notices)  # and the console will say so
        actions.assign(ben, [conv], "ben", actor="ben")  # having seen ana's change, ben may reassign
    finally:
        ben.close()
    assert sync(joined["ben"]).refused == []
    sync(joined["ana"])
    assert team_state(team)["conversations"][conv][1] == "ben"
    assert_equal_to_team(team, joined["ana"], joined["ben"])


def test_a_reply_after_another_agents_reply_is_stopped_at_the_team(team: Team, joined: dict[str, Path]) -> None:
    conv = conversations(joined["ana"], 1)[0]
    ana, ben = open_database(joined["ana"]), open_database(joined["ben"])
    try:
        outbox.queue_reply(ana, conv, "Your parcel left today.", actor="ana")
        late = outbox.queue_reply(ben, conv, "We are looking into it!", actor="ben")  # ben had not seen it
    finally:
        ana.close()
        ben.close()
    assert sync(joined["ana"]).refused == []
    refused = sync(joined["ben"]).refused
    assert len(refused) == 1 and "ana replied meanwhile" in refused[0]
    ben = open_database(joined["ben"])
    try:
        held = outbox.get(ben, late)
        assert held.state == "failed" and "ana replied meanwhile" in held.last_error
        outbox.retry(ben, late)  # ben read it and sends anyway: it goes to the team as confirmed
    finally:
        ben.close()
    assert sync(joined["ben"]).refused == []
    rows = team_state(team)["outbox"]
    assert {rows[k][1] for k in rows} == {"queued"} and len(rows) == 2
    sync(joined["ana"])
    assert_equal_to_team(team, joined["ana"], joined["ben"])


def test_reply_windows_reach_agents_whose_conversations_came_before_the_rules(team: Team,
                                                                             joined: dict[str, Path]) -> None:
    """The engine publishes its account's facts once it leads, after the backlog is in the log: an
    agent's cache learns the rules after the conversations, and must still know which DM windows
    closed (or it queues replies the engine then refuses, and they block their thread)."""
    engine = open_database(joined["engine-a"])
    try:
        TeamSync(joined["engine-a"], engine, leads=lambda: frozenset({"demo"})).once()
        verdicts = {c: reply_windows.verdict(engine, c, engine.now(), private=False)
                    for c in conversations(joined["engine-a"], 40)}
        closed = [c for c, v in verdicts.items() if v is not None and not v.allowed]
        windows = dict(engine.conn.execute("SELECT id, reply_window FROM conversations"))
    finally:
        engine.close()
    assert closed, "the demo backlog has DMs whose messaging window closed"
    sync(joined["ana"])
    ana = open_database(joined["ana"])
    try:
        assert dict(ana.conn.execute("SELECT id, reply_window FROM conversations")) == windows
        with pytest.raises(outbox.OutsideReplyWindow):
            outbox.queue_reply(ana, closed[0], "Sorry for the wait!", actor="ana")
    finally:
        ana.close()


def test_a_reply_on_a_review_we_answered_is_an_edit_of_ours_the_team_carries(team: Team,
                                                                            joined: dict[str, Path]) -> None:
    """Google keeps one reply of ours per review: a second reply is queued as an edit of ours, in a
    team as in a solo workspace, and the team carries the edit to the engine (the platform's tokens
    are there) and to every other agent."""
    engine = open_database(joined["engine-a"])
    try:  # the account as a leading engine publishes it to the team, and each cache applies it
        (row,) = team_local.account_rows(engine, ["demo"])
    finally:
        engine.close()
    ana = open_database(joined["ana"])
    try:
        with ana.transaction():
            ana.conn.execute("INSERT INTO accounts(name, provider, platform, created_at, facts) VALUES (?,?,?,?,?) "
                             "ON CONFLICT(name) DO UPDATE SET facts=excluded.facts",
                             (row["name"], row["provider"], row["platform"], ana.now(), json.dumps(row["facts"])))
        assert platform_facts.for_account(ana, "demo")["google"].single_reply
        conv = ana.conn.execute(
            "SELECT c.id FROM conversations c JOIN messages m ON m.conversation_id = c.id WHERE c.platform = "
            "'google' AND m.direction = 'out' AND m.state = 'sent' ORDER BY c.id LIMIT 1").fetchone()[0]
        key = outbox.queue_reply(ana, conv, "Thank you, the oven is fixed.", actor="ana")
        assert outbox.get(ana, key).action == "edit_reply"
    finally:
        ana.close()
    assert sync(joined["ana"]).refused == []
    assert team_state(team)["outbox"][key][1] == "queued"
    with team.admin() as conn:
        assert conn.execute("SELECT action FROM replydesk.outbox WHERE key=%s", (key,)).fetchone()[0] == "edit_reply"
    sync(joined["ben"])
    assert_equal_to_team(team, joined["ana"], joined["ben"])
    ben = open_database(joined["ben"])
    try:
        assert outbox.get(ben, key).payload["text"] == "Thank you, the oven is fixed."
    finally:
        ben.close()


def test_offline_changes_wait_and_reach_the_team_in_order(team: Team, joined: dict[str, Path]) -> None:
    c1, c2, _ = conversations(joined["ben"])
    ben = open_database(joined["ben"])
    try:  # no sync for a while: everything stays in the cache, the console works as usual
        actions.tag(ben, [c1], ["late"], actor="ben")
        actions.untag(ben, [c1], ["late"], actor="ben")
        actions.tag(ben, [c1], ["later"], actor="ben")
        actions.add_note(ben, c2, "first", actor="ben")
        actions.add_note(ben, c2, "second", actor="ben")
        actions.snooze(ben, [c2], until=ben.now() + 3600, actor="ben")
        outbox.queue_reply(ben, c1, "one", actor="ben")
        outbox.queue_reply(ben, c1, "two", actor="ben")
        assert team_local.pending_count(ben) == 8
    finally:
        ben.close()
    report = sync(joined["ben"])
    assert report.pushed == 8 and report.refused == []
    state = team_state(team)
    assert state["conversations"][c1][2] == ("later",) and state["conversations"][c2][0] == "snoozed"
    with team.admin() as conn:
        notes = [r[0] for r in conn.execute("SELECT text FROM replydesk.messages WHERE direction = 'note' ORDER BY seq")]
        replies = [r[0] for r in conn.execute("SELECT text FROM replydesk.outbox ORDER BY seq")]
    assert notes == ["first", "second"] and replies == ["one", "two"]
    sync(joined["ana"])
    assert_equal_to_team(team, joined["ana"], joined["ben"])


def test_round_robin_assigns_new_conversations_among_online_agents_up_to_the_cap(team: Team, tmp_path: Path) -> None:
    code, _, err = run_cli("team", "settings", team.owner_url(), "--round-robin", "on", "--cap", "2")
    assert code == 0, err
    for name in ("ana", "ben"):  # online: a live heartbeat
        with team_db.connect(*team_db.TeamUrl.parse(team.url(name))[:1], team.passwords[name]) as conn:
            team_db.heartbeat(conn, None, None, 60)
    remote = tmp_path / "platform"
    text = engine_config(remote, backlog=5)
    (tmp_path / "engine.yaml").write_text(text)
    team.join(tmp_path / "engine", "engine-a", config=tmp_path / "engine.yaml")
    engine_pass(tmp_path / "engine", text)
    assignees = [s[1] for s in team_state(team)["conversations"].values()]
    assert sorted(a or "" for a in assignees) == ["", "ana", "ana", "ben", "ben"]  # the cap holds the fifth
    with team.admin() as conn:
        by = {r[0] for r in conn.execute("SELECT agent FROM replydesk.events WHERE kind = 'set'")}
    assert by == {"round-robin"}


def test_every_cli_command_works_in_a_joined_workspace(team: Team, joined: dict[str, Path], tmp_path: Path) -> None:
    conv = conversations(joined["ana"], 1)[0]
    where = ["--data-dir", str(joined["ana"])]
    for args in (["tag", conv, "vip"], ["assign", conv, "ana"], ["note", conv, "--text", "checked"],
                 ["reply", conv, "--text", "On its way!"], ["escalate", conv, "--target", "billing"],
                 ["resolve", conv]):
        code, _, err = run_cli(*args, *where)
        assert code == 0, (args, err)
    state = team_state(team)  # each went through the team at once: no engine runs here
    assert state["conversations"][conv][:3] == ("resolved", "ana", ("vip",))
    assert [o[1] for o in state["outbox"].values()] == ["queued"]
    code, out, _ = run_cli("export", *where)
    assert code == 0 and json.loads(out.splitlines()[0])["id"]
    record = {"id": "demo:imported-1", "account": "demo", "platform": "email", "kind": "email", "subject": "Hi",
              "customer": {"name": "Zoe", "handle": "zoe@example.com"}, "tags": ["imported"],
              "messages": [{"id": "demo:imported-1-m", "direction": "in", "text": "Hello from the archive",
                            "created_at": "2026-11-20T09:00:00Z"}]}
    (tmp_path / "in.jsonl").write_text(json.dumps(record) + "\n")
    code, _, err = run_cli("import", str(tmp_path / "in.jsonl"), *where)
    assert code == 0, err
    state = team_state(team)
    assert state["conversations"]["demo:imported-1"][2] == ("imported",)
    assert "demo:imported-1-m" in state["messages"]
    code, out, _ = run_cli("team", "status", "--json", *where)
    status = json.loads(out)
    assert code == 0 and status["tls"] is True and status["me"] == "ana" and status["events_behind"] == 0
    sync(joined["ben"])
    assert_equal_to_team(team, joined["ben"])


def test_an_agent_cannot_write_as_another_or_touch_the_tables(team: Team, joined: dict[str, Path]) -> None:
    url, _ = team_db.TeamUrl.parse(team.url("ana"))
    conv = conversations(joined["ana"], 1)[0]
    with team_db.connect(url, team.passwords["ana"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot be written as ben"):
            team_db.submit(conn, {"kind": "tag", "agent": "ben", "conversation": conv, "add": ["x"]})
        for statement in ("INSERT INTO replydesk.events(seq, at, agent, kind) VALUES (1e9, 0, 'ben', 'tag')",
                          "UPDATE replydesk.conversations SET assignee = 'ben'",
                          "DELETE FROM replydesk.events",
                          "SELECT replydesk._set(NULL, '{}')",
                          "SELECT replydesk.claim('k', 0, NULL)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # a note claiming another author is recorded as the session's agent
        team_db.submit(conn, {"kind": "note", "conversation": conv,
                              "message": {"id": "demo:note:forged", "text": "hi", "author": "ben", "created_at": 1}})
    with team.admin() as admin:
        assert admin.execute("SELECT author FROM replydesk.messages WHERE id = 'demo:note:forged'").fetchone() == ("ana",)
        assert admin.execute("SELECT agent FROM replydesk.events WHERE data->'message'->>'id' = 'demo:note:forged'"
                             ).fetchone() == ("ana",)


def test_a_wrong_password_gets_a_clear_error_without_traceback_or_secret(team: Team, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(team.secret_env("ana")[0])  # nothing stored: the password is typed
    wrong = "not-the-password-7781"
    code, out, err = run_cli("team", "join", team.url("ana"), "--agent", "ana", "--data-dir", str(tmp_path / "w"),
                             stdin=wrong + "\n")
    assert code == 1
    assert err.startswith("replydesk: the team database at postgresql://") and "refused the password" in err
    assert "Traceback" not in err and wrong not in err + out and team.passwords["ana"] not in err + out
    assert not (tmp_path / "w" / "team.json").exists()  # nothing joined


def test_connections_use_tls_when_the_server_offers_it(team: Team) -> None:
    for params in ({}, {"sslmode": "require"}):
        url, _ = team_db.TeamUrl.parse(team.url("ana", **params))
        with team_db.connect(url, team.passwords["ana"]) as conn:
            assert team_db.encrypted(conn)
    url, _ = team_db.TeamUrl.parse(team.url("ana", sslmode="verify-full", sslrootcert=str(team.pg.ca_file)))
    with team_db.connect(url, team.passwords["ana"]) as conn:
        assert team_db.encrypted(conn)


def test_only_the_leader_claims_and_a_takeover_waits_for_the_interrupted_attempt(team: Team,
                                                                                  joined: dict[str, Path]) -> None:
    team.add("engine-b", engine=True)
    conv = conversations(joined["ana"], 1)[0]
    ana = open_database(joined["ana"])
    try:
        key = outbox.queue_reply(ana, conv, "Hello", actor="ana")
    finally:
        ana.close()
    sync(joined["ana"])
    a_url, b_url = (team_db.TeamUrl.parse(team.url(n))[0] for n in ("engine-a", "engine-b"))
    a = team_db.connect(a_url, team.passwords["engine-a"])
    b = team_db.connect(b_url, team.passwords["engine-b"])
    try:
        assert team_db.lead(a, "demo") is True and team_db.lead(b, "demo") is False
        assert team_db.claim(b, key, 0)["reason"] == "leader"
        assert team_db.claim(a, key, 0, "a:claim:1") == {"ok": True, "attempts": 1, "seq": team_db.head(a)}
        a.close()  # the leader dies mid-send: its lock goes with its session (once the server sees it gone)
        deadline = time.monotonic() + 20
        while not team_db.lead(b, "demo"):
            assert time.monotonic() < deadline, "the lock did not go with the leader's session"
            time.sleep(0.02)
        assert team_db.claim(b, key, 0)["reason"] == "state"  # b has not seen the interrupted attempt yet
        assert team_db.claim(b, key, 1, "b:claim:2")["ok"] is True  # having seen (and settled) it, b takes over
        with team.admin() as conn:  # each claim is an event of the claiming engine, with its id
            claims = conn.execute("SELECT agent, command_id FROM replydesk.events WHERE kind = 'outbox' "
                                  "ORDER BY seq").fetchall()
        assert claims == [("engine-a", "a:claim:1"), ("engine-b", "b:claim:2")]
    finally:
        b.close()


def test_a_claim_repeated_with_its_id_stands_and_does_not_cost_the_engine_its_lead(team: Team,
                                                                                     joined: dict[str, Path]) -> None:
    """An engine whose replica had not counted an attempt claims again with the same command id: the
    team said 'duplicate key' and the engine, taking that for a lost database, gave up leading and
    came back to the same refusal, so the reply never left."""
    conv = conversations(joined["ana"], 1)[0]
    ana = open_database(joined["ana"])
    try:
        key = outbox.queue_reply(ana, conv, "Hello", actor="ana")
    finally:
        ana.close()
    sync(joined["ana"])
    a = team_db.connect(team_db.TeamUrl.parse(team.url("engine-a"))[0], team.passwords["engine-a"])
    try:
        assert team_db.lead(a, "demo") is True
        assert team_db.claim(a, key, 0, "a:claim:k:1")["ok"] is True
        again = team_db.claim(a, key, 0, "a:claim:k:1")  # the same claim: it still stands
        assert again["ok"] is True and again["attempts"] == 1
        # The send waited (back to queued); the replica, behind, claims with the id it used before.
        assert team_db.submit(a, {"kind": "outbox", "key": key, "state": "queued"})["ok"] is True
        third = team_db.claim(a, key, 0, "a:claim:k:1")
        assert third["ok"] is True and third["attempts"] == 2
        with team.admin() as conn:
            claims = conn.execute("SELECT command_id FROM replydesk.events WHERE kind = 'outbox' "
                                  "AND command_id LIKE 'a:claim:%' ORDER BY seq").fetchall()
        assert [c[0] for c in claims] == ["a:claim:k:1", "a:claim:k:1:2"]
    finally:
        a.close()


def test_join_keeps_the_password_in_the_keyring_and_the_engine_reads_it_there(
        team: Team, joined: dict[str, Path], tmp_path: Path, file_keyring, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.delenv(team.secret_env("ben")[0])  # no environment fallback: only the keyring has it
    where = tmp_path / "ben2"
    code, out, err = run_cli("team", "join", team.url("ben"), "--agent", "ben", "--data-dir", str(where),
                             stdin=team.passwords["ben"] + "\n")
    assert code == 0, err
    assert "password stored in the system keyring" in out
    url, _ = team_db.TeamUrl.parse(team.url("ben"))
    assert file_keyring.get_password("replydesk", url.secret_name()) == team.passwords["ben"]
    link = json.loads((where / "team.json").read_text())
    assert team.passwords["ben"] not in (where / "team.json").read_text() and link["agent"] == "ben"
    assert sync(where).cursor == sync(joined["ana"]).head  # the local engine connects with the stored one




def test_the_team_link_stalls_on_a_locked_cache_says_so_and_resumes_by_itself(team: Team,
                                                                              joined: dict[str, Path]) -> None:
    """The agent's local engine (push, pull, presence) is supervised like the solo engine's tasks: a
    cache locked by another process past its timeout is a stall in ``health()`` and the lease's note
    (the team is not "offline"), and what the team sent meanwhile arrives once the lock is gone."""

    from replydesk.config import Config, SyncSettings
    from replydesk.storage.lock import EngineLock
    from replydesk.workspace import EngineThread, Workspace

    c1, *_ = conversations(joined["ben"])
    ws = Workspace(joined["ben"], Config(sync=SyncSettings(lock_timeout=0.3)))
    engine = EngineThread(ws)
    holder = None
    try:
        assert engine.start()
        wait_for(lambda: engine._engine is not None and engine._engine.connected.is_set(), "ben's link to connect")
        holder = OutsideWriteLock(joined["ben"] / "replydesk.db")
        ana = open_database(joined["ana"])
        try:
            actions.tag(ana, [c1], ["vip"], actor="ana")
        finally:
            ana.close()
        sync(joined["ana"])  # the team has a change for ben's cache, which cannot take it now
        wait_for(lambda: engine.health().get("state") == "stalled", "ben's link to say it is stalled")
        assert engine.health()["reason"] == "database is locked by another process"
        assert EngineLock(joined["ben"]).holder_note()["state"] == "stalled"
        holder.release()

        def tagged() -> bool:
            ben = open_database(joined["ben"])
            try:
                return "vip" in queries.get_row(ben, c1).tags
            finally:
                ben.close()

        wait_for(tagged, "ana's tag to reach ben's cache once the lock was released")
        wait_for(lambda: engine.health() == {"state": "running"}, "the stall to clear")
    finally:
        if holder is not None:
            holder.release()
        engine.stop(timeout=30)



def test_a_reply_the_platform_refused_once_is_claimed_again_and_leaves(team: Team, joined: dict[str, Path]) -> None:
    """A rate-limited attempt gives its attempt back (the reply never left), so the next claim is the
    same attempt again: it must be a claim of its own, not a repeat of the first's command (which the
    team refuses as a duplicate, and the engine then dropped its lead and tried again forever)."""
    from replydesk.config import parse_config
    from replydesk.workspace import EngineThread, Workspace

    ana = open_database(joined["ana"])
    try:  # a conversation no reply window binds (an email thread)
        conv = queries.inbox_page(ana, queries.InboxFilter(statuses=None, platforms=("email",)), 0, 1)[0].id
        key = outbox.queue_reply(ana, conv, "Hello again", actor="ana")
    finally:
        ana.close()
    sync(joined["ana"])
    text = engine_config(joined["engine-a"].parent / "platform", extra="    faults: {ratelimit: 1.0, retry_after: 0.3s}\n")
    engine = EngineThread(Workspace(joined["engine-a"], parse_config(text, Path("engine.yaml"))))

    def local(predicate) -> bool:  # noqa: ANN001
        db = open_database(joined["engine-a"])
        try:
            item = outbox.get(db, key)
            return item is not None and predicate(item)
        finally:
            db.close()

    try:
        assert engine.start()
        wait_for(lambda: local(lambda i: "rate limited" in (i.last_error or "")), "the platform to refuse the reply")
        provider = engine._engine.accounts["demo"].provider
        provider.wire.faults = provider.wire.faults.model_copy(update={"ratelimit": 0.0})  # the limit lifts
        wait_for(lambda: local(lambda i: i.state == "sent"), "the reply to leave on a claim of its own")
    finally:
        engine.stop(timeout=30)
    with team.admin() as conn:
        ids = [r[0] for r in conn.execute("SELECT command_id FROM replydesk.events WHERE kind = 'outbox' "
                                          "AND agent = 'engine-a' AND command_id LIKE %s", (f"%:claim:{key}:%",))]
    assert len(ids) >= 2 and len(set(ids)) == len(ids)
