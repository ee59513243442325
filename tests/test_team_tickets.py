"""A helpdesk ticket's later status through the team: the leading engine reads it, every cache shows it.

Real PostgreSQL, real joined workspaces; the helpdesk is the Zendesk provider against
``zendesk_fake`` (httpx.MockTransport shaped as the Zendesk API documents it), which both engines
of the team reach, as they would reach one real Zendesk. An agent escalates, the engine makes the
ticket, Zendesk solves it: every agent's thread says "· solved" and the conversation is resolved
(the account asks for it), and two engines reading the same change leave one event in the log.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from replydesk import secrets
from replydesk.config import parse_config
from replydesk.providers.zendesk import ZendeskProvider
from replydesk.storage import actions, outbox, queries, team_local
from replydesk.storage.db import Database, open_database
from replydesk.sync import SyncEngine
from replydesk.team import TeamSync
from replydesk.workspace import Workspace
from team_support import Team, cache_state, differences, engine_config, sync, team_state
from zendesk_fake import FakeZendesk

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

ZENDESK = ("  - name: shop-zendesk\n    provider: zendesk\n    subdomain: shop\n    email: agent@shop.example\n"
           "    resolve_when_solved: true\n")
TARGETS = "escalation:\n  targets:\n    zendesk: {account: shop-zendesk}\n"


@pytest.fixture
def team(pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> Team:
    t = Team.create(pg_server)
    for name, engine in (("engine-a", True), ("engine-b", True), ("ana", False), ("ben", False)):
        t.add(name, engine=engine)
    for key, value in t.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(secrets.env_name("shop-zendesk"), "zd-api-token")
    return t


class Engine:
    """A team engine's replica: the solo engine's pass (Zendesk wired to the fake), then its
    replicator's push and pull as the leader of ``leads``."""

    def __init__(self, data_dir: Path, config_text: str, desk: FakeZendesk) -> None:
        self.data_dir, self.desk = data_dir, desk
        self.config = parse_config(config_text, Path("engine.yaml"))

    def replicate(self, leads: frozenset[str]) -> Any:
        db = open_database(self.data_dir)
        try:
            return TeamSync(self.data_dir, db, leads=lambda: leads).once()
        finally:
            db.close()

    def fetch_and_send(self) -> None:
        ws = Workspace(self.data_dir, self.config)
        db = ws.open_db()
        try:
            engine = SyncEngine(self.config, db, self.data_dir)
            run = engine.accounts["shop-zendesk"]
            wired = ZendeskProvider("shop-zendesk", run.provider.options, secrets.getter("shop-zendesk"),
                                    transport=self.desk.transport, clock=time.time)
            wired.tickets_to_follow = run.provider.tickets_to_follow
            run.provider = wired
            asyncio.run(engine.run_once())
        finally:
            db.close()

    def cycle(self, leads: frozenset[str]) -> None:
        self.replicate(leads)
        self.fetch_and_send()
        self.replicate(leads)


def ticket_events(db: Database, conv: str) -> list[tuple[str, str]]:
    return [(d["status"], d["from"]) for d in (json.loads(r[0]) for r in db.conn.execute(
        "SELECT data FROM events WHERE conversation_id=? AND kind='ticket_status' ORDER BY seq", (conv,)))]


def test_a_solved_ticket_shows_on_every_agent_and_two_engines_log_it_once(team: Team, tmp_path: Path) -> None:
    desk = FakeZendesk(time.time)
    text = engine_config(tmp_path / "platform", backlog=8, extra=ZENDESK) + TARGETS
    (tmp_path / "engine.yaml").write_text(text)
    dirs = {name: tmp_path / name for name in ("engine-a", "engine-b", "ana", "ben")}
    for name in ("engine-a", "engine-b"):
        team.join(dirs[name], name, config=tmp_path / "engine.yaml")
    a, b = Engine(dirs["engine-a"], text, desk), Engine(dirs["engine-b"], text, desk)
    both = frozenset({"demo", "shop-zendesk"})
    a.fetch_and_send()
    a.replicate(both)
    team.join(dirs["ana"], "ana")
    team.join(dirs["ben"], "ben")

    ana = open_database(dirs["ana"])
    try:
        conv = ana.conn.execute("SELECT id FROM conversations WHERE account='demo' ORDER BY id LIMIT 1").fetchone()[0]
        with ana.transaction():
            actions.escalate(ana, [conv], target="zendesk", reason="refund", actor="ana")
            outbox.queue_ticket(ana, conv, account="shop-zendesk", target="zendesk", reason="refund", actor="ana")
    finally:
        ana.close()
    assert sync(dirs["ana"]).refused == []
    a.cycle(both)  # the leader makes the ticket and tells the team
    assert list(desk.tickets) == [1234]
    b.replicate(frozenset())  # the second engine has the ticket too (from the team), leads nothing
    for name in ("ana", "ben"):
        sync(dirs[name])

    desk.set_status(1234, "solved")
    a.fetch_and_send()  # the leader reads it first ...
    b.fetch_and_send()  # ... and the other engine too, before it hears of it from the team
    engine_b = open_database(dirs["engine-b"])
    try:  # not leading the helpdesk: its cache knows, the team hears nothing from it
        changes, _, _ = team_local.pending_changes(engine_b, team_local.link(engine_b), leads=frozenset({"demo"}))
        assert ticket_events(engine_b, conv) == [("solved", "new")]
        assert not [c for c in changes if c.command["kind"] == "ticket_status"]
        changes, _, _ = team_local.pending_changes(engine_b, team_local.link(engine_b), leads=both)
        assert [c.command["status"] for c in changes if c.command["kind"] == "ticket_status"] == ["solved"]
        assert not [c for c in changes if c.command["kind"] == "set" and c.conversation_id == conv]
    finally:
        engine_b.close()
    a.replicate(both)
    b.replicate(both)  # a failover race: both engines think they lead the helpdesk and push what they read

    with team.admin() as conn:
        logged = conn.execute("SELECT agent, data->>'status', data->>'ticket' FROM replydesk.events "
                              "WHERE kind = 'ticket_status'").fetchall()
        status, by = conn.execute("SELECT status, status_by FROM replydesk.conversations WHERE id = %s",
                                  (conv,)).fetchone()
    assert logged == [("engine-a", "solved", "1234")]
    assert (status, by) == ("resolved", "shop-zendesk")
    for name in ("ana", "ben"):
        sync(dirs[name])
    referee = team_state(team)
    for name in ("ana", "ben", "engine-b"):
        db = open_database(dirs[name])
        try:
            assert [t.summary() for t in queries.thread(db, conv).tickets] == ["Zendesk #1234 · solved"], name
            assert queries.get_row(db, conv).status == "resolved", name
            assert ticket_events(db, conv) == [("solved", "new")], name
            reasons = [json.loads(r[0]).get("reason") for r in db.conn.execute(
                "SELECT data FROM events WHERE conversation_id=? AND kind='status' ORDER BY seq", (conv,))]
            assert reasons[-1:] == ["ticket #1234 solved"], name
            assert not differences(cache_state(db), referee), name
            assert team_local.pending_count(db) == 0 or name == "engine-b", name
        finally:
            db.close()
