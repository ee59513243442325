"""Rules in team mode: they run once for the team, however many engines and agents run.

Team mode routes every platform message through one engine: only the account's leader fetches
(``TeamEngine.can_call``), so only its ingest runs the rules (``Database.ingest_hook``), and what the
team's log brings into the other caches is applied without them (``team_local.apply_events``).
Agents run no rules at all (their engine is ``TeamSync``). Two team engines with the same rules run
here as real processes (``replydesk serve``) on one demo platform, with an agent (``replydesk sync``);
an engine is SIGKILLed (a fault of the demo wire) right after the platform took an acknowledgement,
before it hears so, and comes back. The referees: the platform's
ledger (each conversation acknowledged exactly once), the team database (every acknowledgement it
accepted was sent) and the agent's cache (it holds each one as an automatic reply, not as the first
reply a person owes, and ran no rule itself).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from replydesk.storage import team_local
from replydesk.storage.db import open_database
from team_support import Team, TeamProcesses, cache_state, differences, engine_config, read_ledger, team_state

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300)]

ENGINES = ("engine-a", "engine-b")
AGENT = "ana"
ACK = "thanks for reaching out"
RULES = """rules:
  - name: ack
    when: {}
    then: {tag: acked, reply: {saved: looking, max_age: 3650d}}
"""


class Cluster(TeamProcesses):
    def __init__(self, team: Team, root: Path) -> None:
        # The worst moments, by chance on each send: the engine SIGKILLed right after the platform
        # took an acknowledgement (before it hears so), or the answer lost on the wire. Either way the
        # send must be looked up, not repeated, by whichever engine leads next.
        faults = "    faults: {crash_after_accept: 0.4, lost_ack: 0.2}\n"
        super().__init__(team, root, engine_config(root / "platform", backlog=20, extra=faults) + RULES,
                         ENGINES, (AGENT,))

    def restart_dead(self) -> int:
        """Start again each engine that died (a crash fault); returns how many."""
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        for name in dead:
            self.start(name)
        return len(dead)

    def acks(self) -> list[dict[str, Any]]:
        return [e for e in read_ledger(self.remote) if ACK in e["text"]]


def wait_for(what: str, check: Any, timeout: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    missing: Any = False
    while time.monotonic() < deadline:
        missing = check()
        if missing is True:
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}: {missing or 'not yet'}\n{cluster.logs()}")


def settled(cluster: Cluster) -> bool | str:
    """Nothing waits to leave at the team, every cache pushed everything and pulled to the head."""
    with cluster.team.admin() as conn:
        head = conn.execute("SELECT coalesce(max(seq), 0) FROM replydesk.events").fetchone()[0]
        waiting = conn.execute("SELECT count(*) FROM replydesk.outbox WHERE state IN ('queued', 'sending')"
                               ).fetchone()[0]
    if waiting:
        return f"{waiting} replies queued or sending at the team"
    for name in (*ENGINES, AGENT):
        db = open_database(cluster.root / name)
        try:
            pending, at = team_local.pending_count(db), team_local.cursor(db)
            queued = db.conn.execute("SELECT count(*) FROM outbox WHERE state IN ('queued', 'sending')").fetchone()[0]
        finally:
            db.close()
        if pending or at < head or queued:
            return f"{name}: {pending} changes not pushed, {queued} replies waiting, at {at} of {head}"
    return True


@pytest.fixture
def cluster(pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from Cluster.serving(pg_server, tmp_path, monkeypatch)


def test_two_engines_and_an_agent_acknowledge_each_conversation_exactly_once(cluster: Cluster) -> None:
    for name in (*ENGINES, AGENT):
        cluster.start(name)
    wait_for("an engine to lead the account", lambda: cluster.leader() is not None or "no leader", 60, cluster)
    kills = 0

    def restarted_and_settled() -> bool | str:
        nonlocal kills
        kills += cluster.restart_dead()
        db = open_database(cluster.root / AGENT)
        try:
            pulled = team_local.conversation_count(db)
        finally:
            db.close()
        return settled(cluster) if pulled == 20 else f"the agent has {pulled} of the 20 conversations"

    wait_for("the team to settle", restarted_and_settled, 200, cluster)

    referee = team_state(cluster.team)
    with cluster.team.admin() as conn:
        customers = {r[0] for r in conn.execute(
            "SELECT DISTINCT conversation_id FROM replydesk.messages WHERE direction = 'in' AND automatic IS NULL")}
    acked = Counter(e["conversation"] for e in cluster.acks())
    # (no crash in 17 sends at 40% each: a chance of 2 in 10,000)
    assert kills >= 1, "no engine crashed while acknowledging: the test tested nothing"
    assert acked and max(acked.values()) == 1, f"acknowledged more than once: {acked.most_common(3)}"
    # Every conversation the rule answered, on whichever engine, was answered on the platform once;
    # one a rule chose not to answer (a closed reply window) is not.
    replied: set[str] = set()
    for name in ENGINES:
        db = open_database(cluster.root / name)
        try:
            for conv_id, data in db.conn.execute("SELECT conversation_id, data FROM events WHERE kind='rule'"):
                if json.loads(data)["replied"]:
                    replied.add(conv_id)
        finally:
            db.close()
    assert {f"demo:{c}" for c in acked} == replied
    assert len(replied) >= 10 and replied <= customers
    print(f"team rules: {len(acked)} conversations acknowledged once each, {kills} engine crash(es) "
          "right after a send")
    assert all(state == "sent" for _, state, _ in referee["outbox"].values())
    assert all("acked" in referee["conversations"][c][2] for c in replied)
    # The agent: the same inbox as the team, every acknowledgement an automatic reply, nobody's first
    # reply (the customers still wait for a person), and no rule ran there.
    db = open_database(cluster.root / AGENT)
    try:
        assert not differences(cache_state(db), referee)
        auto = {r[0] for r in db.conn.execute("SELECT conversation_id FROM events WHERE kind='auto_reply'")}
        assert auto == replied
        assert db.conn.execute("SELECT count(*) FROM events WHERE kind = 'rule'").fetchone()[0] == 0
        keys = {e["key"] for e in cluster.acks()}
        assert not [r for r in db.conn.execute("SELECT data FROM events WHERE kind = 'reply'")
                    if json.loads(r[0]).get("key") in keys]
        waiting = dict(db.conn.execute("SELECT id, needs_reply FROM conversations").fetchall())
    finally:
        db.close()
    db = open_database(cluster.root / ENGINES[0])
    try:
        assert waiting == dict(db.conn.execute("SELECT id, needs_reply FROM conversations").fetchall())
        assert any(waiting[c] for c in replied)
    finally:
        db.close()
