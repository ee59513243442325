"""Three agents and two team engines as real processes on one team database, acting at random.

Every agent is ``replydesk sync`` on its own joined workspace (its local engine) while the test acts
on that workspace's cache as the console would (tag, untag, assign, note, reply, resolve, reopen, and
the customer card's edits: its note, the team's name, VIP, merging and splitting contacts);
both engines are ``replydesk serve`` on one simulated platform (the demo's remote side, shared),
with faults on its wire. Afterwards, the referees: the team database (every cache must equal it,
every change either landed or was refused with a notice) and the platform's ledger (every reply the
team accepted is on it exactly once, in the order the team queued them per conversation).

The second test does the same while the leading engine and the agents are SIGKILLed at random
moments and restarted, and one agent works offline for a stretch.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from replydesk.storage import actions, contacts, outbox, queries, reply_windows, team_local
from replydesk.storage.db import Database, open_database
from team_support import (
    Team,
    TeamProcesses,
    cache_state,
    differences,
    engine_config,
    ledger_by_conversation,
    read_ledger,
    team_state,
)

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300)]

AGENTS = ("ana", "ben", "cy")
ENGINES = ("engine-a", "engine-b")
TAGS = ("refund", "vip", "late", "fragile")
#: The demo platform marks these customers VIP itself, and a new message of theirs says so again
#: (ingest keeps the platform's flag): the random VIP edits leave their contacts alone.
PLATFORM_VIPS = ("Grace Okafor", "Μαρία Παπαδοπούλου")
FAULTS = "faults: {fail: 0.1, latency: 0.01, lost_ack: 0.1, ratelimit: 0.03, retry_after: 0.2s}\n"


class Cluster(TeamProcesses):
    """The team's processes: start, kill, restart; the test acts on the agents' caches."""

    def __init__(self, team: Team, root: Path) -> None:
        super().__init__(team, root, engine_config(root / "platform", backlog=40, extra="    " + FAULTS),
                         ENGINES, AGENTS)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None


def wait_for(what: str, check: Any, timeout: float, cluster: Cluster | None = None) -> None:
    """Wait for a condition (never for a duration): fail with what did not happen, and the logs.
    ``check`` returns True (done), or False or a string saying what is still missing."""
    deadline = time.monotonic() + timeout
    missing: Any = False
    while time.monotonic() < deadline:
        missing = check()
        if missing is True:
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}: {missing or 'not yet'}" + (f"\n{cluster.logs()}" if cluster else ""))


def conversation_count(data_dir: Path) -> int:
    db = open_database(data_dir)
    try:
        return team_local.conversation_count(db)
    finally:
        db.close()


def _reply_allowed(db: Database, conv_id: str) -> bool:
    verdict = reply_windows.verdict(db, conv_id, db.now(), private=False)
    return verdict is None or verdict.allowed


class Actor:
    """Random actions on agents' caches, and a record of what the caches acknowledged."""

    def __init__(self, cluster: Cluster, seed: int) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.dbs: dict[str, Database] = {name: open_database(cluster.dir(name)) for name in AGENTS}
        first = self.dbs[AGENTS[0]]
        self.convs = [r.id for r in queries.inbox_page(first, queries.InboxFilter(statuses=None), 0, 40)]
        # Replies go where the platform still takes one (the demo has DMs whose messaging window
        # closed: queueing there is refused, as the console and CLI show).
        self.replyable = [c for c in self.convs if _reply_allowed(first, c)]
        self.notes: list[str] = []
        self.replies: dict[str, str] = {}  # key -> agent
        self.card_edits: dict[str, int] = defaultdict(int)  # agent -> card edits made (each one command)

    def act(self, agent: str) -> None:
        db, conv, rng = self.dbs[agent], self.rng.choice(self.convs), self.rng
        kind = rng.choice(("tag", "untag", "assign", "note", "reply", "reply", "resolve", "reopen", "card", "card"))
        if kind == "card":
            self.edit_card(agent, db, conv)
        elif kind == "tag":
            actions.tag(db, [conv], [rng.choice(TAGS)], actor=agent)
        elif kind == "untag":
            actions.untag(db, [conv], [rng.choice(TAGS)], actor=agent)
        elif kind == "assign":
            actions.assign(db, [conv], rng.choice((*AGENTS, None)), actor=agent)
        elif kind == "note":
            self.notes.append(actions.add_note(db, conv, f"{agent} note {len(self.notes)}", actor=agent))
        elif kind == "reply":
            conv = rng.choice(self.replyable)
            self.replies[outbox.queue_reply(db, conv, f"{agent} reply {len(self.replies)} to {conv}", actor=agent)] = agent
        elif kind == "resolve":
            actions.resolve(db, [conv], actor=agent)
        else:
            actions.reopen(db, [conv], actor=agent)

    def edit_card(self, agent: str, db: Database, conv: str) -> None:
        """One of the card screen's edits on the conversation's customer, as that cache shows it."""
        rng, n = self.rng, sum(self.card_edits.values())
        contact = contacts.contact_of(db, conv)
        card = contacts.card(db, contact) if contact else None
        if card is None:
            return
        what = rng.choice(("note", "note", "name", "vip", "merge", "split"))
        if what == "split" and len(card.contacts) < 2:
            what = "merge"
        if what == "note":
            contacts.set_note(db, card.person, f"{agent} card note {n}", actor=agent)
        elif what == "name":
            contacts.set_name(db, card.person, rng.choice((f"{agent} name {n}", "")), actor=agent)
        elif what == "vip":
            ids = [c.id for c in card.contacts if c.name not in PLATFORM_VIPS]
            if not ids:
                return
            contacts.set_vip(db, ids, rng.random() < 0.5, actor=agent)
        elif what == "split":
            contacts.split(db, rng.choice(card.contacts).id, actor=agent)
        else:
            other = contacts.contact_of(db, rng.choice(self.convs))
            if other is None or other in {c.id for c in card.contacts}:
                return
            contacts.merge(db, contact, other, actor=agent)
        self.card_edits[agent] += 1

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


def settled(cluster: Cluster) -> bool | str:
    """Every agent pushed everything and pulled to the head, and no reply waits to leave."""
    with cluster.team.admin() as conn:
        head = conn.execute("SELECT coalesce(max(seq), 0) FROM replydesk.events").fetchone()[0]
        waiting = conn.execute("SELECT count(*) FROM replydesk.outbox WHERE state IN ('queued', 'sending')").fetchone()[0]
    if waiting:
        with cluster.team.admin() as conn:
            stuck = conn.execute("SELECT key, conversation_id, state, attempts, claimed_by FROM replydesk.outbox "
                                 "WHERE state IN ('queued', 'sending') ORDER BY seq LIMIT 3").fetchall()
        local = {}
        for name in ENGINES:
            db = open_database(cluster.dir(name))
            try:
                local[name] = [tuple(r) for r in db.conn.execute(
                    "SELECT key, state, attempts, last_error FROM outbox WHERE conversation_id = ? ORDER BY seq",
                    (stuck[0][1],))] if stuck else []
            finally:
                db.close()
        return f"{waiting} replies still queued or sending at the team, first {stuck}; in the engines {local}"
    for name in (*AGENTS, *ENGINES):
        db = open_database(cluster.dir(name))
        try:
            pending, at = team_local.pending_count(db), team_local.cursor(db)
        finally:
            db.close()
        if pending or at < head:
            return f"{name}: {pending} changes not pushed, at {at} of {head}"
    return True


def explain(cluster: Cluster, name: str, referee: dict[str, Any]) -> str:
    """For a failure: the replies whose message differs, as this cache and the team have them."""
    db = open_database(cluster.dir(name))
    try:
        rows = [tuple(r) for r in db.conn.execute(
            "SELECT o.key, o.state, o.attempts, o.message_id, o.remote_id, m.id, m.state FROM outbox o "
            "LEFT JOIN messages m ON m.id = o.message_id WHERE o.state != 'failed' ORDER BY o.seq")]
    finally:
        db.close()
    odd = [r for r in rows if r[0] in referee["outbox"] and (r[5] is None or r[5] not in referee["messages"])]
    return f"\nreplies in {name}'s cache whose message the team lacks: {odd[:5]}"


def check_invariants(cluster: Cluster, actor: Actor) -> dict[str, int]:
    referee = team_state(cluster.team)
    for name in (*AGENTS, *ENGINES):
        db = open_database(cluster.dir(name))
        try:
            diff = differences(cache_state(db), referee)
        finally:
            db.close()
        assert not diff, f"{name}'s cache differs from the team:\n" + "\n".join(diff[:15]) + explain(cluster, name, referee)
    # Nothing lost: every note is in the team; every reply is either in the team outbox or was refused
    # (a collision) and says so in its author's cache.
    assert set(actor.notes) <= set(referee["messages"])
    refused = 0
    for key, agent in actor.replies.items():
        if key in referee["outbox"]:
            continue
        db = open_database(cluster.dir(agent))
        try:
            item = outbox.get(db, key)
            notices = db.conn.execute("SELECT count(*) FROM notices WHERE text LIKE 'Reply not sent:%'").fetchone()[0]
        finally:
            db.close()
        assert item is not None and item.state == "failed" and item.last_error.startswith("not sent:"), (key, item)
        assert notices >= 1
        refused += 1
    # Every card edit landed in the team (one ``card`` event) or was refused with a notice to its author.
    with cluster.team.admin() as conn:
        landed = dict(conn.execute("SELECT agent, count(*) FROM replydesk.events WHERE kind = 'card' "
                                   "GROUP BY agent").fetchall())
    card_refused = 0
    for agent in AGENTS:
        db = open_database(cluster.dir(agent))
        try:
            told = db.conn.execute("SELECT count(*) FROM notices WHERE text LIKE 'Customer % not saved:%'").fetchone()[0]
        finally:
            db.close()
        assert landed.get(agent, 0) + told == actor.card_edits[agent], (agent, landed.get(agent, 0), told,
                                                                         actor.card_edits[agent])
        card_refused += told
    # Exactly once, in order: the platform's ledger against the team's outbox. A reply on a Google
    # review we answered is an edit of ours (the platform keeps one reply): the actions' ledger has it.
    ledger = read_ledger(cluster.remote)
    posted = [e["key"] for e in ledger]
    assert len(posted) == len(set(posted)), "a reply was posted twice"
    sent = {k: v for k, v in referee["outbox"].items() if v[1] == "sent"}
    assert set(sent) == set(referee["outbox"]), "a reply the team accepted did not leave"
    with cluster.team.admin() as conn:
        kinds = dict(conn.execute("SELECT key, action FROM replydesk.outbox").fetchall())
    assert set(posted) == {k for k in sent if kinds[k] == "reply"}
    performed = cluster.remote / "demo-actions.jsonl"
    done = {json.loads(line)["key"] for line in performed.read_text().splitlines() if line.strip()} \
        if performed.exists() else set()
    assert done == {k for k in sent if kinds[k] != "reply"}, "an edit the team accepted was not done, or one it did not"
    queued_order: dict[str, list[str]] = defaultdict(list)
    for key, (conv, _, _seq) in sorted(referee["outbox"].items(), key=lambda kv: kv[1][2]):
        if kinds[key] == "reply":
            queued_order[conv.split(":", 1)[1]].append(key)
    assert ledger_by_conversation(ledger) == dict(queued_order), "replies to a conversation left out of order"
    return {"replies": len(actor.replies), "sent": len(sent), "refused": refused, "notes": len(actor.notes),
            "card_edits": sum(actor.card_edits.values()), "card_refused": card_refused,
            "card_fields": len(referee["cards"])}


@pytest.fixture
def cluster(pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from Cluster.serving(pg_server, tmp_path, monkeypatch)


def start_everything(cluster: Cluster) -> None:
    for name in (*ENGINES, *AGENTS):
        cluster.start(name)
    wait_for("an engine to lead the account", lambda: cluster.leader() is not None or "no leader", 60, cluster)
    wait_for("every agent to pull the backlog",
             lambda: all(conversation_count(cluster.dir(a)) == 40 for a in AGENTS) or "not yet", 90, cluster)


def test_three_agents_and_two_engines_acting_at_random_converge(cluster: Cluster) -> None:
    start_everything(cluster)
    actor = Actor(cluster, seed=int(os.environ.get("REPLYDESK_TEAM_SEED", "17")))
    try:
        for step in range(150):
            actor.act(AGENTS[step % 3])
            time.sleep(actor.rng.uniform(0, 0.04))
        wait_for("the team to settle", lambda: settled(cluster), 120, cluster)
        figures = check_invariants(cluster, actor)
    finally:
        actor.close()
    print(f"team random actions: {figures}")
    assert figures["sent"] >= 10 and figures["card_edits"] >= 10 and figures["card_fields"] >= 10


def test_sigkills_of_the_leading_engine_and_of_agents_and_an_agent_offline(cluster: Cluster) -> None:
    start_everything(cluster)
    rng = random.Random(int(os.environ.get("REPLYDESK_TEAM_SEED", "23")))
    actor = Actor(cluster, seed=rng.randrange(10**6))
    kills = {"engine": 0, "agent": 0}
    offline_until = 0.0
    try:
        for step in range(240):
            agent = AGENTS[step % 3]
            actor.act(agent)
            time.sleep(rng.uniform(0, 0.04))
            roll = rng.random()
            if roll < 0.03:  # the leading engine dies mid-whatever; it comes back a moment later
                leader = cluster.leader()
                if leader is not None and cluster.running(leader):
                    cluster.kill(leader)
                    kills["engine"] += 1
            elif roll < 0.06:  # an agent's local engine dies
                victim = rng.choice(AGENTS[:2])
                if cluster.running(victim):
                    cluster.kill(victim)
                    kills["agent"] += 1
            if step == 60:  # cy goes offline for a stretch and keeps working on its cache
                cluster.kill("cy")
                offline_until = time.monotonic() + 4
            for name in (*ENGINES, *AGENTS):
                if not cluster.running(name) and (name != "cy" or time.monotonic() >= offline_until) \
                        and rng.random() < 0.3:
                    cluster.start(name)
        for name in (*ENGINES, *AGENTS):
            if not cluster.running(name):
                cluster.start(name)
        wait_for("the team to settle", lambda: settled(cluster), 150, cluster)
        figures = check_invariants(cluster, actor)
    finally:
        actor.close()
    print(f"team under SIGKILL: {figures}, kills {kills}")
    assert kills["engine"] >= 1 and kills["agent"] >= 1 and figures["sent"] >= 10
