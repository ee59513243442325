"""A command the team refuses is told as what it is, and does not wait as if the team were away.

Two kinds of failure look alike to psycopg and must not to the user: the server out of reach (down,
the network gone: the change waits in the cache and goes out when it is back) and the server
answering with an error about the command itself (a constraint, a function raising, a privilege
taken away: waiting would never help). Real PostgreSQL, real joined workspaces, the real CLI; the
owner makes the server refuse with a CHECK constraint or a REVOKE, as a team's owner might.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgserver import running_postgres
from replydesk.storage import actions, outbox, queries, team_db, team_local
from replydesk.storage.db import open_database
from support import card_of, run_cli
from team_support import (
    Team,
    engine_config,
    engine_pass,
    join_engine_ana_ben,
    sync,
    team_state,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]




@pytest.fixture
def joined(team: Team, tmp_path: Path) -> dict[str, Path]:
    return join_engine_ana_ben(team, tmp_path, engine_config(tmp_path / "platform", backlog=5))


def first_conversations(data_dir: Path, n: int) -> list[str]:
    db = open_database(data_dir)
    try:
        return [r[0] for r in db.conn.execute("SELECT id FROM conversations ORDER BY id LIMIT ?", (n,))]
    finally:
        db.close()


def tags_of(data_dir: Path, conv: str) -> list[str]:
    db = open_database(data_dir)
    try:
        return sorted(r[0] for r in db.conn.execute("SELECT tag FROM conversation_tags WHERE conversation_id=?",
                                                    (conv,)))
    finally:
        db.close()


def test_a_refused_command_is_told_through_the_cli_undone_and_not_retried(team: Team, joined: dict[str, Path]) -> None:
    conv, other = first_conversations(joined["ana"], 2)
    with team.admin() as admin:
        admin.execute("ALTER TABLE replydesk.conversations ADD CONSTRAINT no_forbidden_tag "
                      "CHECK (NOT ('forbidden' = ANY(tags)))")
    where = ("--data-dir", str(joined["ana"]))
    code, _, err = run_cli("tag", conv, "forbidden", *where)
    assert code == 1
    assert "the team refused the command" in err and "no_forbidden_tag" in err, err
    assert "cannot reach" not in err and "Traceback" not in err and team.passwords["ana"] not in err
    assert team_state(team)["conversations"][conv][2] == ()
    assert tags_of(joined["ana"], conv) == []  # undone here with the team's value
    ana = open_database(joined["ana"])
    try:
        assert team_local.pending_count(ana) == 0  # not waiting to be sent again
        notices = [r[0] for r in ana.conn.execute("SELECT text FROM notices WHERE conversation_id=?", (conv,))]
        assert any("the team refused the command" in n for n in notices), notices
        # a refused change among others: the others go out, in order, and it alone is refused
        actions.tag(ana, [other], ["first"], actor="ana")
        actions.tag(ana, [other], ["forbidden"], actor="ana")
        actions.add_note(ana, other, "checked the order", actor="ana")
        actions.tag(ana, [other], ["last"], actor="ana")
    finally:
        ana.close()
    report = sync(joined["ana"])
    assert report.pushed == 3 and len(report.refused) == 1 and "no_forbidden_tag" in report.refused[0]
    assert team_state(team)["conversations"][other][2] == ("first", "last")
    assert tags_of(joined["ana"], other) == ["first", "last"]
    assert sync(joined["ana"]).pushed == 0  # nothing left over to retry
    code, _, err = run_cli("tag", conv, "fine", *where)  # the link itself is healthy
    assert code == 0, err
    assert team_state(team)["conversations"][conv][2] == ("fine",)


def test_a_refused_card_edit_is_undone_with_the_teams_note(team: Team, joined: dict[str, Path]) -> None:
    """A card edit the server refuses: the card shows the team's note again (none here), and the
    notice quotes what the agent wrote."""
    conv = first_conversations(joined["ana"], 1)[0]
    with team.admin() as admin:
        admin.execute("ALTER TABLE replydesk.cards ADD CONSTRAINT no_forbidden_note "
                      "CHECK (value::text NOT LIKE '%forbidden%')")
    where = ("--data-dir", str(joined["ana"]))
    code, _, err = run_cli("contact", "note", conv, "forbidden words", *where)
    assert code == 1 and "no_forbidden_note" in err, err
    ana = open_database(joined["ana"])
    try:
        contact = ana.conn.execute("SELECT contact_id FROM conversations WHERE id=?", (conv,)).fetchone()[0]
        notices = [r[0] for r in ana.conn.execute("SELECT text FROM notices")]
        assert team_local.pending_count(ana) == 0
    finally:
        ana.close()
    assert card_of(joined["ana"], contact).note in ("", None)  # the team's version stands, here too
    assert any("forbidden words" in n and "not saved" in n for n in notices), notices


def test_a_privilege_taken_away_holds_the_changes_with_the_reason_until_it_is_given_back(
        team: Team, joined: dict[str, Path]) -> None:
    """A REVOKE is about the login, not one command: every change would be refused alike, so none is
    undone or failed; the agent is told who refused whom, and the reply goes once the grant is back."""
    conv = first_conversations(joined["ana"], 1)[0]
    agents, _ = team_db.group_roles(team.dbname)
    with team.admin() as admin:
        admin.execute(f'REVOKE EXECUTE ON FUNCTION replydesk.submit(jsonb) FROM "{agents}"')
    where = ("--data-dir", str(joined["ana"]))
    code, _, err = run_cli("reply", conv, "--text", "On its way!", *where)
    assert code == 1 and "permission denied for function submit" in err and "refused" in err, (code, err)
    assert "cannot reach" not in err and "Traceback" not in err
    assert "the team refused the command" not in err  # not a verdict on this reply
    ana = open_database(joined["ana"])
    try:
        (item,) = [outbox.get(ana, r[0]) for r in ana.conn.execute("SELECT key FROM outbox WHERE conversation_id=?",
                                                                    (conv,))]
        assert item.state != "failed" and team_local.pending_count(ana) == 1  # it waits
    finally:
        ana.close()
    assert team_state(team)["outbox"] == {}
    with team.admin() as admin:
        admin.execute(f'GRANT EXECUTE ON FUNCTION replydesk.submit(jsonb) TO "{agents}"')
    sync(joined["ana"])
    assert [(c, state) for c, state, _ in team_state(team)["outbox"].values()] == [(conv, "queued")]  # once
    ana = open_database(joined["ana"])
    try:
        assert team_local.pending_count(ana) == 0
    finally:
        ana.close()


def test_a_stopped_server_is_out_of_reach_and_the_change_goes_out_when_it_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_postgres() as pg:  # its own server: this one is stopped and started again
        team = Team.create(pg)
        for name, engine in (("engine-a", True), ("ana", False)):
            team.add(name, engine=engine)
        for key, value in team.env().items():
            monkeypatch.setenv(key, value)
        text = engine_config(tmp_path / "platform", backlog=3)
        (tmp_path / "engine.yaml").write_text(text)
        team.join(tmp_path / "engine-a", "engine-a", config=tmp_path / "engine.yaml")
        engine_pass(tmp_path / "engine-a", text)
        team.join(tmp_path / "ana", "ana")
        conv = first_conversations(tmp_path / "ana", 1)[0]
        where = ("--data-dir", str(tmp_path / "ana"))
        pg.stop()
        code, _, err = run_cli("tag", conv, "vip", *where)
        assert code == 0
        assert "cannot reach the team database at" in err and "team refused" not in err, err
        ana = open_database(tmp_path / "ana")
        try:
            assert team_local.pending_count(ana) == 1  # waiting, in the cache
            state = ana.conn.execute("SELECT state FROM account_status WHERE account='team'").fetchone()
            assert tuple(state) == ("offline",)
            assert [r.id for r in queries.inbox_page(ana, queries.InboxFilter(statuses=None, tags=("vip",)), 0, 5)] == [conv]
        finally:
            ana.close()
        code, _, err = run_cli("sync", "--once", *where)
        assert code != 0 and "cannot reach the team database at" in err, err
        pg.start()
        code, _, err = run_cli("sync", "--once", *where)
        assert code == 0, err
        assert team_state(team)["conversations"][conv][2] == ("vip",)
        ana = open_database(tmp_path / "ana")
        try:
            assert team_local.pending_count(ana) == 0
        finally:
            ana.close()


def test_a_connection_the_server_ends_is_out_of_reach_not_a_refusal(team: Team, joined: dict[str, Path]) -> None:
    conv = first_conversations(joined["ana"], 1)[0]
    url, _ = team_db.TeamUrl.parse(team.url("ana"))
    conn = team_db.connect(url, team.passwords["ana"])
    try:
        with team.admin() as admin:  # an administrator (or a restart) ends the agent's session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (url.user,))
        with pytest.raises(team_db.TEAM_ERRORS) as caught:
            team_db.submit_many(conn, [{"id": "x:1", "agent": "ana", "kind": "tag", "conversation": conv,
                                        "add": ["x"]}])
        error = team_db.explain(caught.value, url)
        assert isinstance(error, team_db.TeamUnavailable) and team_db.refusal(caught.value) is None
        assert str(error).startswith(f"cannot reach the team database at {url.display()}")
    finally:
        conn.close()
    assert team_state(team)["conversations"][conv][2] == ()
