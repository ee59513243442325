"""Helpers for the team tests: a team database on the session's PostgreSQL, agents, joined workspaces.

Each test gets its own database (and so its own roles) on one cluster started per session; every
agent and engine is a real login role with its own password, and joins a real workspace directory
through the CLI, as a person would. Passwords reach the engines through the documented environment
fallback of the keyring (``REPLYDESK_SECRET_…``), which subprocesses inherit.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pgserver import PgServer
from replydesk import secrets
from replydesk.cli import main
from replydesk.config import Config, parse_config
from replydesk.storage import team_db
from replydesk.storage.db import Database, open_database
from replydesk.team import TeamSync
from replydesk.workspace import Workspace


def engine_config(remote: Path, *, backlog: int = 30, poll: str = "1s", extra: str = "") -> str:
    """A team engine's config: the demo platform, its remote side shared by every engine of the team."""
    return (f"accounts:\n  - name: demo\n    provider: demo\n    seed: 11\n    pace: 3600s\n    backlog: {backlog}\n"
            f"    poll_interval: {poll}\n    remote: {remote}\n{extra}"
            "sync:\n  retry_base: 0.05s\n  retry_max: 0.5s\n  send_retries: 1000\n")


@dataclass
class Team:
    pg: PgServer
    dbname: str
    passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, pg: PgServer) -> Team:
        team = cls(pg, pg.create_database())
        with redirect_stdout(io.StringIO()):
            assert main(["team", "init", team.owner_url()]) == 0
        return team

    def owner_url(self) -> str:
        return self.pg.url(self.dbname).replace("://rdadmin@", f"://rdadmin:{self.pg.admin_password}@")

    def admin(self) -> Any:
        return self.pg.admin(self.dbname)

    def role(self, name: str) -> str:
        return team_db.default_role(self.dbname, name)

    def url(self, name: str, **params: str) -> str:
        """The agent's URL, without its password (what a workspace stores)."""
        return self.pg.url(self.dbname, self.role(name), **params)

    def secret_env(self, name: str) -> tuple[str, str]:
        url, _ = team_db.TeamUrl.parse(self.url(name))
        return secrets.env_name(url.secret_name()), self.passwords[name]

    def env(self) -> dict[str, str]:
        return dict(self.secret_env(n) for n in self.passwords)

    def add(self, name: str, *, engine: bool = False) -> str:
        password = f"pw-{name}-{self.dbname[-6:]}"
        self.passwords[name] = password
        old = sys.stdin
        sys.stdin = io.StringIO(password + "\n")
        try:
            with redirect_stdout(io.StringIO()):
                assert main(["team", "add-agent", self.owner_url(), name] + (["--engine"] if engine else [])) == 0
        finally:
            sys.stdin = old
        return password

    def join(self, data_dir: Path, name: str, *, config: Path | None = None) -> None:
        url = self.url(name).replace("@", f":{self.passwords[name]}@", 1)
        args = ["team", "join", url, "--agent", name, "--data-dir", str(data_dir), "--json"]
        if config is not None:
            args += ["--config", str(config)]
        with redirect_stdout(io.StringIO()):
            assert main(args) == 0


def engine_ana_ben(pg_server: Any, monkeypatch: Any) -> Team:
    """The team most tests need: one engine (engine-a) and two agents (ana, ben), with their
    credentials where the keyring's stand-in reads them (the environment)."""
    t = Team.create(pg_server)
    for name, engine in (("engine-a", True), ("ana", False), ("ben", False)):
        t.add(name, engine=engine)
    for key, value in t.env().items():
        monkeypatch.setenv(key, value)
    return t


def join_engine_ana_ben(team: Team, root: Path, config_text: str) -> dict[str, Path]:
    """engine-a's replica with its platforms' backlog pushed to the team, then ana's and ben's
    caches joined (pulled from it); the directories by name."""
    (root / "engine.yaml").write_text(config_text)
    dirs = {name: root / name for name in ("engine-a", "ana", "ben")}
    team.join(dirs["engine-a"], "engine-a", config=root / "engine.yaml")
    engine_pass(dirs["engine-a"], config_text)
    team.join(dirs["ana"], "ana")
    team.join(dirs["ben"], "ben")
    return dirs


def workspace(data_dir: Path, config: Config | None = None, clock: Any = None) -> Workspace:
    return Workspace(data_dir, config or Config(), clock=clock)


def sync(data_dir: Path) -> Any:
    """One push-and-pull of a joined workspace (the agent's ``replydesk sync --once``)."""
    db = open_database(data_dir)
    try:
        return TeamSync(data_dir, db).once()
    finally:
        db.close()


def engine_pass(data_dir: Path, config_text: str) -> None:
    """A team engine's fetch without leadership games: the solo engine's pass on the engine's replica
    (fetch and ingest), then its replicator's push (the messages go to the team)."""
    from replydesk.sync import SyncEngine

    cfg = parse_config(config_text, Path("engine.yaml"))
    ws = Workspace(data_dir, cfg)
    db = ws.open_db()
    try:
        asyncio.run(SyncEngine(cfg, db, data_dir).run_once())
        TeamSync(data_dir, db).once()
    finally:
        db.close()


# ---- comparing a cache with the team database ------------------------------------------------------


def team_state(team: Team) -> dict[str, Any]:
    """The team database's conversations and messages, as the referee of every cache."""
    with team.admin() as conn:
        convs = {r[0]: (r[1], r[2], tuple(sorted(r[3])), bool(r[4]), r[5]) for r in conn.execute(
            "SELECT id, status, assignee, tags, escalated, priority FROM replydesk.conversations")}
        messages = {r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute(
            "SELECT id, conversation_id, direction, text, state FROM replydesk.messages")}
        outbox_rows = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT key, conversation_id, state, seq FROM replydesk.outbox")}
        cards = {(r[0], r[1]): r[2] for r in conn.execute("SELECT subject, field, value FROM replydesk.cards")}
    return {"conversations": convs, "messages": messages, "outbox": outbox_rows, "cards": cards}


def cache_state(db: Database) -> dict[str, Any]:
    convs = {r[0]: (r[1], r[2], tuple(sorted(t for t in r[3].split("\x1f") if t)), bool(r[4]), r[5])
             for r in db.conn.execute("SELECT id, status, assignee, tags, escalated, priority FROM conversations")}
    messages = {r[0]: (r[1], r[2], r[3], r[4]) for r in db.conn.execute(
        "SELECT m.id, m.conversation_id, m.direction, m.text, CASE WHEN m.direction = 'out' THEN m.state "
        "ELSE m.state END FROM messages m")}
    outbox_rows = {r[0]: (r[1], r[2]) for r in db.conn.execute("SELECT key, conversation_id, state FROM outbox")}
    # The customer cards' fields as this cache holds them, keyed as the team's ``cards`` rows are.
    cards: dict[tuple[str, str], Any] = {}
    for person, note, name in db.conn.execute("SELECT id, note, name FROM people"):
        cards[(person, "note")], cards[(person, "name")] = note, name
    vips = {r[0]: bool(r[1]) for r in db.conn.execute("SELECT id, vip FROM contacts")}
    links = dict(db.conn.execute("SELECT contact_id, person FROM contact_links").fetchall())
    return {"conversations": convs, "messages": messages, "outbox": outbox_rows,
            "cards": {"fields": cards, "vip": vips, "person": links}}


def differences(cache: dict[str, Any], team: dict[str, Any]) -> list[str]:
    """Where a cache and the team disagree, in words (empty: they are equal)."""
    out: list[str] = []
    for conv_id, state in team["conversations"].items():
        mine = cache["conversations"].get(conv_id)
        if mine != state:
            out.append(f"conversation {conv_id}: cache {mine} team {state}")
    extra = set(cache["conversations"]) - set(team["conversations"])
    out += [f"conversation {c} only in the cache" for c in sorted(extra)]
    for mid, (conv, direction, text, state) in team["messages"].items():
        mine = cache["messages"].get(mid)
        if mine is None or mine[:3] != (conv, direction, text) or (direction == "out" and mine[3] != state):
            out.append(f"message {mid}: cache {mine} team {(conv, direction, text, state)}")
    # Only here, rightly: a reply the team refused (a collision) waits in its author's cache as failed,
    # for the author to retry or discard (the process tests check each such reply and its notice).
    out += [f"message {m} only in the cache" for m in sorted(set(cache["messages"]) - set(team["messages"]))
            if cache["messages"][m][3] not in ("cancelled", "failed") or cache["messages"][m][1] != "out"]
    for key, (conv, state, _) in team["outbox"].items():
        mine = cache["outbox"].get(key)
        if mine != (conv, state):
            out.append(f"reply {key}: cache {mine} team {(conv, state)}")
    return out + card_differences(cache["cards"], team["cards"])


def card_differences(cache: dict[str, Any], team: dict[tuple[str, str], Any]) -> list[str]:
    """The customer cards: every field the team holds (a note, a name, a VIP flag, the customer a
    contact is grouped in), and no note, name or grouping the team does not hold. (A VIP flag the
    team never heard of can be the platform's own: the demo marks some customers VIP.)"""
    out: list[str] = []
    for (subject, field_), value in team.items():
        if field_ in ("note", "name"):
            mine: Any = cache["fields"].get((subject, field_), "")
            value = value or ""
        elif field_ == "vip":
            if subject not in cache["vip"]:
                continue  # a contact this cache has no message of yet: it comes with them
            mine, value = cache["vip"][subject], bool(value)
        else:
            mine = cache["person"].get(subject)
        if mine != value:
            out.append(f"card {subject} {field_}: cache {mine!r} team {value!r}")
    for (subject, field_), mine in cache["fields"].items():
        if mine and (subject, field_) not in team:
            out.append(f"card {subject} {field_}: cache {mine!r}, the team has none")
    for subject, person in cache["person"].items():
        if (subject, "person") not in team:
            out.append(f"card {subject} person: cache {person!r}, the team has none")
    return out


def read_ledger(remote: Path) -> list[dict[str, Any]]:
    path = remote / "demo-ledger.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ledger_by_conversation(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        out[e["conversation"]].append(e["key"])
    return out


class TeamProcesses:
    """A team's engines (``replydesk serve``) and agents (``replydesk sync``) as real processes, one
    data directory and log each under ``root``; the engines share one config, whose demo platform
    keeps its remote side in ``root / "platform"``."""

    def __init__(self, team: Team, root: Path, config_text: str, engines: tuple[str, ...],
                 agents: tuple[str, ...]) -> None:
        from support import REPO

        self.team, self.root, self.remote, self.repo = team, root, root / "platform", REPO
        self.engines = engines
        self.env = {**os.environ, **team.env(), "REPLYDESK_LOG": "WARNING"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.config = root / "engine.yaml"
        self.config.write_text(config_text, encoding="utf-8")
        for name in (*engines, *agents):
            team.add(name, engine=name in engines)
            team.join(self.dir(name), name, config=self.config if name in engines else None)

    @classmethod
    def serving(cls, pg_server: Any, root: Path, monkeypatch: Any) -> Iterator[Any]:
        """The body of a test fixture: a fresh team with this class's processes on it, its
        credentials in the environment, everything stopped afterwards (``yield from`` it)."""
        team = Team.create(pg_server)
        processes = cls(team, root)
        for key, value in team.env().items():
            monkeypatch.setenv(key, value)
        try:
            yield processes
        finally:
            processes.stop_all()

    def dir(self, name: str) -> Path:
        return self.root / name

    def start(self, name: str) -> None:
        engine = name in self.engines
        cmd = [sys.executable, "-m", "replydesk.cli", "serve" if engine else "sync", "--data-dir", str(self.dir(name))]
        if engine:
            cmd += ["--config", str(self.config)]
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(cmd, cwd=self.repo, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def leader(self) -> str | None:
        """The engine leading the demo account now (its session alive), if any."""
        with self.team.admin() as conn:
            row = conn.execute("SELECT l.engine FROM replydesk.leases l WHERE l.account = 'demo' AND EXISTS "
                               "(SELECT 1 FROM pg_stat_activity s WHERE s.pid = l.pid)").fetchone()
        return row[0] if row else None

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.root.glob("*.log")))


def wait_for(condition: Any, what: str, cap: float = 90.0) -> None:
    """Until ``condition()`` is True (a condition, not a duration: a busy machine only waits longer);
    the failure says what was awaited and what the condition last returned."""
    deadline = time.monotonic() + cap
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last is True:
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting {cap:g} s for: {what} ({last})")
