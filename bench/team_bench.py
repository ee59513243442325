"""Team figures on a real PostgreSQL (Debian's binaries, a throwaway cluster with fsync on), each
against a baseline measured in the same run, alternated:

- ``team_propagation_p50_ms``/``p95``: an action in agent A's cache until it is in agent B's cache,
  both local engines running as ``replydesk sync`` processes; baseline: a bare NOTIFY from one
  connection to a LISTEN on another (the floor under any push design on this server);
- ``team_commands_per_s``: commands through the team path (``replydesk.submit``: checks, state, log,
  NOTIFY) vs plain INSERTs of the same JSON into a table of the same database, same batches;
- ``team_first_pull_messages_per_s`` (and ``team_first_pull_s``): a new agent's first pull of the
  team workspace into an empty cache vs reading the same event rows with ``COPY … TO STDOUT``;
- with 20 agents connected: ``team_engine_ingest_per_s`` (the engine's local ingest plus its push
  to the team, new messages) while 19 agents pull every event as the server sees agents on
  machines of their own (``bench.remote_crowd``) vs the same with them paused, with the same for 19
  ``replydesk sync`` processes on this machine beside it (``local_*``), and the solo engine's ingest
  of the same pages; and ``team_agent_key_p95_ms`` (an agent's console, its own engine running,
  while the engine pushes new messages and the same 19 agents pull; ``local_*`` with the 19
  ``replydesk sync`` processes) vs the same cache opened solo with the same traffic.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field, replace
from io import StringIO
from pathlib import Path
from typing import Any

from bench import generate, tui_bench
from bench.report import Figure, Reporter, percentile

REPO = Path(__file__).resolve().parents[1]

NAMES = [("team_propagation_p50_ms", "ms"), ("team_propagation_p95_ms", "ms"), ("team_commands_per_s", "commands/s"),
         ("team_first_pull_messages_per_s", "messages/s"), ("team_first_pull_s", "s"),
         ("team_engine_ingest_per_s", "messages/s"), ("team_engine_ingest_vs_solo_per_s", "messages/s"),
         ("team_agent_key_p95_ms", "ms")]


def _support() -> Any:
    """The tests' PostgreSQL and team helpers (the bench runs from a checkout, with the test extra)."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import pgserver
    import team_support

    return pgserver, team_support


def available() -> str | None:
    try:
        pgserver, _ = _support()
    except ImportError as exc:  # pragma: no cover - the test extra is missing
        return f"team figures need the test extra ({exc})"
    return None if pgserver.pg_available() else f"postgresql not installed: {pgserver.PG_HOW}"


def run(reporter: Reporter, *, quick: bool, runs: int, tmp: Path, tui: bool, log: Callable[[str], None]) -> None:
    reason = available()
    if reason:
        for name, unit in NAMES:
            reporter.add(Figure(name, 0, None, unit, note=reason))
        return
    pgserver, support = _support()
    runs = 1 if quick else runs
    with pgserver.running_postgres(fsync=True) as pg:
        bench = TeamBench(pg, support, tmp / "team", quick=quick, runs=runs, log=log)
        try:
            bench.first_pull(reporter)
            bench.commands(reporter)
            bench.propagation(reporter)
            bench.crowd(reporter, tui=tui)
        finally:
            bench.stop()


def _idle_priority() -> None:
    """In the child before exec (a session of its own by then): only the CPU time nobody else wants.

    SCHED_IDLE alone is not that here: with autogroup scheduling (Linux's default for desktops and
    these machines) the kernel first shares a core between sessions, and the PostgreSQL server runs
    in a session of its own (pg_ctl starts it with setsid). A session holding only idle agents still
    got a third of a core the engine's server session was waiting for. The agents' own session is
    therefore niced to 19 as a whole (/proc/self/autogroup), and SCHED_IDLE orders it inside."""
    try:
        with open("/proc/self/autogroup", "w") as group:
            group.write("19")
    except OSError:  # no autogroup (another kernel, another OS): the policy below is all there is
        pass
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def _cpu_seconds(pids: Iterable[int]) -> float | None:
    """User and system CPU seconds of these processes so far; None where /proc is not this machine's."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _small_pages(pages: Iterable[tuple[str, Any]], size: int) -> Iterator[tuple[str, Any]]:
    """The same messages in pages of at most ``size`` (a shop's steady traffic, not a backfill)."""
    for account, page in pages:
        for i in range(0, len(page.messages), size):
            yield account, replace(page, messages=page.messages[i:i + size])


@dataclass
class IngestRounds:
    """Messages/s of each alternated round, and what the crowd's server sessions spent."""

    crowd: list[float] = field(default_factory=list)
    alone: list[float] = field(default_factory=list)
    solo: list[float] = field(default_factory=list)
    messages: int = 0
    server_cpu: float = 0.0
    server_messages: int = 0
    client_cpu: float = 0.0  # the crowd's own processes on this machine

    def server_ms_per_1k(self) -> float | None:
        return round(self.server_cpu * 1e6 / self.server_messages, 1) if self.server_messages else None

    def client_ms_per_1k(self) -> float | None:
        return round(self.client_cpu * 1e6 / self.server_messages, 1) if self.server_messages else None


class TeamBench:
    def __init__(self, pg: Any, support: Any, root: Path, *, quick: bool, runs: int,
                 log: Callable[[str], None]) -> None:
        self.pg, self.s, self.root, self.quick, self.runs, self.log = pg, support, root, quick, runs, log
        root.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    # ---- a team with messages -------------------------------------------------------------------------

    def team(self, messages: int, agents: list[str], tag: str) -> tuple[Any, Path, Any]:
        """A team database whose engine pushed ``messages`` generated messages (through its replica)."""
        import os

        team = self.s.Team.create(self.pg)
        for name in ("engine-a", *agents):
            team.add(name, engine=name == "engine-a")
        os.environ.update(team.env())
        engine_dir = self.root / f"{tag}-engine"
        with redirect_stdout(StringIO()):
            team.join(engine_dir, "engine-a")
        spec = generate.Spec(conversations=max(messages // 8, 1), messages=messages, accounts=6, seed=5)
        pages = list(generate.pages(spec, time.time()))
        push = self._engine_push(engine_dir)
        push(pages)
        return team, engine_dir, spec

    def _engine_push(self, engine_dir: Path) -> Callable[[list[Any]], float]:
        """Seconds from the first page ingested into the engine's replica to the last message in the
        team. As in the team engine, the replicator pushes on a connection and thread of its own while
        the fetches are ingested (``replydesk.team``), looking again 50 ms after a push that found
        nothing; so the figure is the pipeline's, not ingest and push one after the other."""
        from replydesk.storage.db import open_database
        from replydesk.storage.ingest import ensure_account, ingest
        from replydesk.team import TeamSync

        def push(pages: list[Any]) -> float:
            db, replica = open_database(engine_dir), open_database(engine_dir)
            sync = TeamSync(engine_dir, replica, sweep=False)
            fetched = threading.Event()
            failed: list[BaseException] = []

            def replicate() -> None:
                try:
                    while True:
                        last = fetched.is_set()  # read first: a push begun after the last page takes all
                        if not sync.push().pushed and not last:
                            time.sleep(0.05)
                        if last:
                            return
                except BaseException as exc:  # reported on the bench's thread
                    failed.append(exc)

            try:
                sync._connect()
                with db.transaction():
                    for account in {a for a, _ in pages}:
                        ensure_account(db, account, "bench", "email")
                replicator = threading.Thread(target=replicate, name="bench-replicator")
                t0 = time.perf_counter()
                replicator.start()
                try:
                    for account, page in pages:
                        ingest(db, account, [page])
                finally:
                    fetched.set()
                    replicator.join()
                if failed:
                    raise failed[0]
                return time.perf_counter() - t0
            finally:
                sync._close()
                replica.close()
                db.close()

        return push

    def join(self, team: Any, name: str, where: Path) -> float:
        t0 = time.perf_counter()
        with redirect_stdout(StringIO()):
            team.join(where, name)
        return time.perf_counter() - t0

    # ---- figures --------------------------------------------------------------------------------------

    def first_pull(self, reporter: Reporter) -> None:
        n = 10_000 if self.quick else 100_000
        readers = [f"reader{i}" for i in range(self.runs)]
        self.log(f"  team: building a {n:,}-message team workspace")
        team, _, _ = self.team(n, readers, "pull")
        pulls, copies = [], []
        for i, name in enumerate(readers):  # alternated: a first pull, then the plain COPY of the same rows
            pulls.append(self.join(team, name, self.root / f"pull-{i}"))
            with team.admin() as conn:
                t0 = time.perf_counter()
                rows = 0
                with conn.cursor() as cur, cur.copy(
                        "COPY (SELECT seq, at, agent, kind, conversation_id, command_id, data, result "
                        "FROM replydesk.events ORDER BY seq) TO STDOUT") as copy:
                    for _ in copy.rows():
                        rows += 1
                copies.append((time.perf_counter() - t0, rows))
            shutil.rmtree(self.root / f"pull-{i}", ignore_errors=True)
        with team.admin() as conn:
            stored = conn.execute("SELECT count(*) FROM replydesk.messages").fetchone()[0]
        pull_s = statistics.median(pulls)
        copy_s, rows = statistics.median(c[0] for c in copies), copies[0][1]
        reporter.add(Figure("team_first_pull_messages_per_s", stored, stored / pull_s, "messages/s", rows / copy_s,
                            note=f"`team join` of a {stored:,}-message team into an empty cache (pull in pages of "
                                 f"2000 events, each applied through the cache's ingest: search index, SLA); "
                                 f"baseline = COPY of the same {rows:,} event rows to the client; median of {len(pulls)}"))
        reporter.add(Figure("team_first_pull_s", stored, pull_s, "s", copy_s,
                            note="the same first pull, in seconds; baseline = the COPY"))

    def commands(self, reporter: Reporter) -> None:
        from replydesk.storage import team_db

        team, _, _ = self.team(500, ["ana"], "cmd")
        url, _ = team_db.TeamUrl.parse(team.url("ana"))
        n = 2_000 if self.quick else 10_000
        with team.admin() as admin:
            convs = [r[0] for r in admin.execute("SELECT id FROM replydesk.conversations")]
            admin.execute("CREATE TABLE public.plain_inserts (id bigserial PRIMARY KEY, agent text, kind text, "
                          "conversation_id text, data jsonb)")
        commands = [{"kind": "tag", "agent": "ana", "conversation": convs[i % len(convs)], "id": f"bench:{i}",
                     "add": [f"t{i % 7}"]} for i in range(n * self.runs)]
        team_s, plain_s = [], []
        import json

        with team_db.connect(url, team.passwords["ana"]) as conn, team.admin() as admin:
            for r in range(self.runs):
                part = commands[r * n:(r + 1) * n]
                t0 = time.perf_counter()
                for b in range(0, n, 200):
                    team_db.submit_many(conn, part[b:b + 200])
                team_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for b in range(0, n, 200):
                    with admin.transaction(), admin.cursor() as cur:
                        cur.executemany("INSERT INTO public.plain_inserts(agent, kind, conversation_id, data) "
                                        "VALUES (%s, %s, %s, %s::jsonb)",
                                        [(c["agent"], c["kind"], c["conversation"], json.dumps(c))
                                         for c in part[b:b + 200]])
                plain_s.append(time.perf_counter() - t0)
        reporter.add(Figure("team_commands_per_s", n, n / statistics.median(team_s), "commands/s",
                            n / statistics.median(plain_s),
                            note="tag commands through replydesk.submit (authorship, the conversation's state, the "
                                 "log under its append lock, NOTIFY) in transactions of 200, as an agent's push; "
                                 "baseline = plain INSERTs of the same JSON in the same batches; alternated, "
                                 f"median of {self.runs}"))

    def _solo_ingest(self, batch: list[Any], solo_dir: Path) -> float:
        """Seconds the solo engine's ingest takes for ``batch`` (a fresh workspace, removed after)."""
        from replydesk.config import Config
        from replydesk.storage.ingest import ensure_account, ingest
        from replydesk.workspace import Workspace

        db = Workspace(solo_dir, Config()).open_db()
        try:
            with db.transaction():
                for account in {a for a, _ in batch}:
                    ensure_account(db, account, "bench", "email")
            t0 = time.perf_counter()
            for account, page in batch:
                ingest(db, account, [page])
            return time.perf_counter() - t0
        finally:
            db.close()
            shutil.rmtree(solo_dir, ignore_errors=True)

    def _start_sync(self, data_dir: Path, log: Path, *, elsewhere: bool = False) -> subprocess.Popen[bytes]:
        """``replydesk sync`` of a joined workspace; ``elsewhere``: an agent that on a real team runs
        on a machine of its own, so here it gets only the CPU time nobody else wants (a session of
        its own, see ``_idle_priority``; under nice 19 the kernel still shared the cores by weight)."""
        proc = subprocess.Popen([sys.executable, "-m", "replydesk.cli", "sync", "--data-dir", str(data_dir)],
                                cwd=REPO, env=dict(os.environ), stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                start_new_session=elsewhere, preexec_fn=_idle_priority if elsewhere else None)
        self.procs.append(proc)
        return proc

    def _wait_connected(self, team: Any, n: int, cap: float = 300.0) -> None:
        """Until ``n`` agents are online (a heartbeat each, sent once started and caught up): the
        figures are taken with the crowd connected, not while it starts (twenty Python processes
        starting take this machine's cores for seconds; a fixed 2 s wait measured part of that)."""
        deadline = time.monotonic() + cap
        while time.monotonic() < deadline:
            with team.admin() as conn:
                online = conn.execute("SELECT count(*) FROM replydesk.presence WHERE expires_at > now()").fetchone()[0]
            if online >= n:
                return
            time.sleep(0.2)
        raise RuntimeError(f"only {online} of {n} agents connected within {cap:.0f} s")

    def propagation(self, reporter: Reporter) -> None:
        from replydesk.storage import actions, team_db
        from replydesk.storage.db import open_database

        team, _, _ = self.team(2_000, ["ana", "ben"], "prop")
        a, b = self.root / "prop-ana", self.root / "prop-ben"
        self.join(team, "ana", a)
        self.join(team, "ben", b)
        for d in (a, b):
            self._start_sync(d, self.root / f"{d.name}.log")
        samples = 15 if self.quick else 40
        adb, bdb = open_database(a), open_database(b)
        url, _ = team_db.TeamUrl.parse(team.url("ana"))
        sender = team_db.connect(url, team.passwords["ana"])
        listener = team_db.connect(url, team.passwords["ana"])
        listener.execute("LISTEN bench_probe")
        convs = [r[0] for r in adb.conn.execute("SELECT id FROM conversations ORDER BY id LIMIT 50")]
        time.sleep(1.0)  # both local engines connected (their first pull is done: they joined)
        real, floor = [], []
        try:
            for i in range(samples):
                conv, tag = convs[i % len(convs)], f"probe{i}"
                t0 = time.perf_counter()
                actions.tag(adb, [conv], [tag], actor="ana")
                deadline = t0 + 10
                while time.perf_counter() < deadline:
                    if bdb.conn.execute("SELECT 1 FROM conversation_tags WHERE conversation_id=? AND tag=?",
                                        (conv, tag)).fetchone():
                        real.append((time.perf_counter() - t0) * 1000)
                        break
                    time.sleep(0.002)
                t0 = time.perf_counter()
                sender.execute("SELECT pg_notify('bench_probe', '')")
                if list(listener.notifies(timeout=5, stop_after=1)):
                    floor.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)
        finally:
            sender.close()
            listener.close()
            adb.close()
            bdb.close()
            self.stop()
        lost = samples - len(real)
        p95 = percentile(real, 95) if real else None
        note = (f"tag in agent A's cache -> the tag in agent B's cache (A's local engine notices the write, "
                f"pushes; NOTIFY wakes B's, which pulls and applies); {len(real)} samples"
                + (f", {lost} not seen within 10 s" if lost else "")
                + "; baseline = NOTIFY -> LISTEN between two connections, alternated")
        reporter.add(Figure("team_propagation_p50_ms", len(real), percentile(real, 50) if real else None, "ms",
                            percentile(floor, 50) if floor else None, note=note))
        reporter.add(Figure("team_propagation_p95_ms", len(real), p95, "ms", percentile(floor, 95) if floor else None,
                            target="< 1000 ms", ok=p95 is not None and p95 < 1000, note=note))

    def _remote_crowd(self, team: Any, names: list[str]) -> subprocess.Popen[bytes]:
        """``bench.remote_crowd`` for these agents, once every one is connected. Not in the idle class:
        agents on machines of their own pull as soon as they are told, and an idle-class crowd here
        pulled only when the engine let it, which moved its pulls out of the measured push. What it
        costs this machine besides the server's work (receiving the rows) is measured with it."""
        proc = subprocess.Popen([sys.executable, "-m", "bench.remote_crowd"], cwd=REPO, env=dict(os.environ),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=(self.root / "remote-crowd.log").open("ab"),
                                start_new_session=True)
        self.procs.append(proc)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps([{"url": team.url(n), "password": team.passwords[n]} for n in names]).encode())
        proc.stdin.close()
        if proc.stdout.readline().strip() != b"connected":
            raise RuntimeError(f"the remote crowd did not connect (see {self.root / 'remote-crowd.log'})")
        return proc

    def _ingest_rounds(self, team: Any, crowd: list[subprocess.Popen[bytes]], roles: list[str],
                       pages: list[Any], rounds: int, push: Callable[[list[Any]], float]) -> IngestRounds:
        """``rounds`` times, alternated: the team engine's push with the crowd pulling, with it
        paused, and the solo ingest; each over pages of its own."""
        chunk = max(len(pages) // (rounds * 3), 1)

        def signal_crowd(sig: int) -> None:
            for proc in crowd:
                if proc.poll() is None:
                    os.kill(proc.pid, sig)

        def paused(stopped: bool) -> None:
            """The crowd still connected but pulling nothing: its processes stopped, at a moment
            none of their sessions is inside a transaction (a stopped one could hold the log's lock)."""
            if not stopped:
                signal_crowd(signal.SIGCONT)
                return
            for _ in range(200):
                signal_crowd(signal.SIGSTOP)
                with team.admin() as conn:
                    busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = ANY(%s) "
                                        "AND state <> 'idle'", (roles,)).fetchone()[0]
                if not busy:
                    return
                signal_crowd(signal.SIGCONT)
                time.sleep(0.02)
            raise RuntimeError("the crowd's sessions never went idle together")

        def server_cpu() -> float | None:
            """CPU seconds the crowd's server sessions used so far (this machine's /proc)."""
            with team.admin() as conn:
                pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = ANY(%s)",
                                                   (roles,))]
            return _cpu_seconds(pids)

        out = IngestRounds()
        for r in range(rounds):
            order = ("crowd", "alone", "solo") if r % 2 == 0 else ("solo", "alone", "crowd")
            for what in order:
                batch = pages[(r * 3 + order.index(what)) * chunk:(r * 3 + order.index(what) + 1) * chunk]
                out.messages = n = sum(len(p.messages) for _, p in batch)
                if what == "solo":
                    out.solo.append(n / self._solo_ingest(batch, self.root / f"solo-ingest-{len(out.solo)}"))
                    continue
                paused(what == "alone")
                try:
                    before = server_cpu() if what == "crowd" else None
                    client = _cpu_seconds(p.pid for p in crowd) if what == "crowd" else None
                    (out.crowd if what == "crowd" else out.alone).append(n / push(batch))
                    after = server_cpu() if before is not None else None
                    if before is not None and after is not None:
                        out.server_cpu, out.server_messages = out.server_cpu + after - before, out.server_messages + n
                    if client is not None:
                        out.client_cpu += (_cpu_seconds(p.pid for p in crowd) or 0.0) - client
                finally:
                    paused(False)
        return out

    def _key_rounds(self, probe_dir: Path, solo_copy: Path, fresh: Iterator[tuple[str, Any]],
                    push: Callable[[list[Any]], float], spec: Any) -> tuple[float | None, float | None]:
        """The measured agent's key p95 while the engine pushes, and the solo copy's under the same
        traffic, alternated ``runs`` times (medians). The agent is caught up first: a console that
        starts behind the team (every push since it last ran) measures its catching up, not keys."""
        self.s.sync(probe_dir)
        keys = "quick" if self.quick else "full"
        traffic = 8 if self.quick else 30  # pages of 300, 0.15 s apart: the solo probe's engine ingests as many

        def trickle() -> None:  # the engine pushes while the keys are pressed: every agent pulls
            for _, page in zip(range(traffic), fresh, strict=False):
                push([page])
                time.sleep(0.15)

        team_k, solo_k = [], []
        for _ in range(self.runs):
            feeder = threading.Thread(target=trickle, daemon=True)
            feeder.start()
            t = tui_bench.run_probe(probe_dir, keys=keys, engine=True)
            feeder.join(120)
            s = tui_bench.run_probe(solo_copy, keys=keys, sync_pages_n=traffic, sync_per_page=300, spec=spec)
            team_k.append(percentile(t["key_ms"], 95) if t["key_ms"] else None)
            solo_k.append(percentile(s["key_ms"], 95) if s["key_ms"] else None)
        return (statistics.median([v for v in team_k if v is not None]) if any(team_k) else None,
                statistics.median([v for v in solo_k if v is not None]) if any(solo_k) else None)

    def crowd(self, reporter: Reporter, *, tui: bool) -> None:
        """20 agents connected: the engine's ingest rate and one agent's keys, each vs solo mode."""
        size = 1_000 if self.quick else 5_000
        agents = [f"agent{i:02d}" for i in range(20)]
        team, engine_dir, spec = self.team(size, agents, "crowd")
        self.log("  team: 20 agents join and connect")
        for name in agents:
            self.join(team, name, self.root / f"crowd-{name}")
        # Each figure alternates its rounds (the crowd pulling, paused, solo) over pages of its own:
        # half-second pushes three times over had moved the ratio 0.70-0.96 between runs, and the
        # replicator's 50 ms look-again is a tenth of such a push.
        per_run = 1_000 if self.quick else 5_000
        rounds = max(self.runs, 3 if self.quick else 5)  # one round of a quick run was one-off effects
        extra = generate.Spec(conversations=max(per_run * rounds * 6 // 8, 1), messages=per_run * rounds * 6,
                              accounts=6, seed=99, first=spec.conversations)  # new messages, not the team's again
        pages = list(generate.pages(extra, time.time()))
        half = len(pages) // 2
        push = self._engine_push(engine_dir)
        others = agents[1:]  # the first agent is the one whose keys are measured, with its own engine
        roles = [team.role(name) for name in others]
        probe_dir = self.root / f"crowd-{agents[0]}"
        solo_copy = tui_bench.copy_workspace(probe_dir, self.root / "crowd-solo")
        (solo_copy / "team.json").unlink(missing_ok=True)  # the copy is the same cache, opened solo
        later = generate.Spec(conversations=100_000, messages=800_000, accounts=6, seed=98,
                              first=extra.first + extra.conversations)
        fresh = _small_pages(generate.pages(later, time.time()), 300)  # new messages, made as they are pushed
        no_keys: tuple[float | None, float | None] = (None, None)

        # The figures: the 19 others as the server sees agents on machines of their own.
        remote = self._remote_crowd(team, others)
        far = self._ingest_rounds(team, [remote], roles, pages[:half], rounds, push)
        far_keys = self._key_rounds(probe_dir, solo_copy, fresh, push, extra) if tui else no_keys
        remote.terminate()
        remote.wait(30)
        # The same with 19 ``replydesk sync`` processes on this machine, in the idle class.
        crowd = [self._start_sync(self.root / f"crowd-{name}", self.root / f"crowd-{name}.log", elsewhere=True)
                 for name in others]
        self._wait_connected(team, len(others))
        near = self._ingest_rounds(team, crowd, roles, pages[half:], rounds, push)
        near_keys = self._key_rounds(probe_dir, solo_copy, fresh, push, extra) if tui else no_keys
        self.stop()

        value, alone, baseline = (statistics.median(far.crowd), statistics.median(far.alone),
                                  statistics.median(far.solo))
        reporter.add(Figure(
            "team_engine_ingest_per_s", far.messages, value, "messages/s", alone, target="ratio >= 0.9",
            ok=value >= 0.9 * alone,
            note="the team engine's fetch pages: ingested into its replica while its replicator pushes them to the "
                 "team (its own connection and thread, as in the engine) while 20 agents are connected and 19 "
                 "of them pull every event as the team link does (same sessions, queries, batches and pacing: "
                 "bench.remote_crowd), their own machines' work (parsing the rows, applying them) left out; baseline = the "
                 f"same with them paused (SIGSTOP: connected, pulling nothing); alternated, median of {rounds}. "
                 "crowd_server_cpu_ms_per_1k_messages: the 19 agents' server sessions while they pulled, "
                 "crowd_client_cpu_ms_per_1k_messages: the remote crowd's own process (receiving the rows). "
                 "local_*: the same with 19 replydesk sync processes on this machine (idle class), which the "
                 "engine shares two cores with",
            extra={"solo_ingest_per_s": round(baseline, 1), "ratio_to_solo": round(value / baseline, 3),
                   "rounds": rounds, "crowd_server_cpu_ms_per_1k_messages": far.server_ms_per_1k(),
                   "crowd_client_cpu_ms_per_1k_messages": far.client_ms_per_1k(),
                   "local_crowd_per_s": round(statistics.median(near.crowd), 1),
                   "local_paused_per_s": round(statistics.median(near.alone), 1),
                   "local_ratio": round(statistics.median(near.crowd) / statistics.median(near.alone), 3),
                   "local_crowd_server_cpu_ms_per_1k_messages": near.server_ms_per_1k()}))
        reporter.add(Figure("team_engine_ingest_vs_solo_per_s", far.messages, value, "messages/s", baseline,
                            note="the same team figure (first page ingested to last message in the team) against "
                                 "the solo engine's ingest of the same pages (SQLite only); alternated, median of "
                                 f"{rounds}"))
        if not tui:
            reporter.add(Figure("team_agent_key_p95_ms", size, None, "ms", note="tui figures skipped"))
            return
        (tv, sv), (lv, ls) = far_keys, near_keys
        reporter.add(Figure("team_agent_key_p95_ms", size, tv, "ms", sv, target="ratio <= 1.5",
                            ok=tv is not None and sv is not None and tv <= 1.5 * sv,
                            note="one agent's console (headless, its own team engine running, pulling; caught up "
                                 "first) with 20 agents connected (the 19 others: bench.remote_crowd) while the team "
                                 "engine pushes pages of 300 new messages 0.15 s apart from the probe's start; "
                                 "baseline = the same cache opened solo while its engine thread ingests as many "
                                 f"300-message pages 0.15 s apart (solo mode with traffic); alternated, median of "
                                 f"{self.runs}. local_*: the same with 19 replydesk sync processes on this machine",
                            extra={"local_team_p95_ms": round(lv, 2) if lv is not None else None,
                                   "local_solo_p95_ms": round(ls, 2) if ls is not None else None}))
