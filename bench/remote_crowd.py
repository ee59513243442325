"""Agents whose machines are elsewhere, as the team's server sees them: one process for many.

Each agent has the two sessions ``replydesk sync`` opens (work and listen), LISTENs, heartbeats,
reads the live state and pulls every event past its cursor with the same queries, batch size and
pacing as the team link (``replydesk.team``). What it leaves out is the agent's own machine's work:
turning the rows into Python objects and applying them to a local cache. On one 2-core box that
work cannot be kept off the engine's cores: nineteen idle-class processes that never touch the
team still slowed the engine's ingest to 0.64x (README, team figures), so the figure measured this
machine, not the team's design.

Run by the team bench: ``python -m bench.remote_crowd`` reads ``[{"url": …, "password": …}, …]``
on stdin, prints ``connected`` once every agent has pulled to the head, and runs until SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import psycopg
from psycopg import pq

from replydesk import team as link
from replydesk.storage import team_db

COUNTS = {"wakeups": 0, "pulls": 0, "rows": 0, "lives": 0}
#: The team link's pull, sent through libpq as it is: the rows arrive (TLS and all) and are never
#: turned into Python objects, the part of an agent that runs on its own machine.
_PULL = team_db.PULL_SQL.replace("%s", "$1", 1).replace("%s", "$2", 1).encode()


def _pull(conn: psycopg.Connection, after: int, limit: int) -> pq.abc.PGresult:
    """A prepared statement, as psycopg makes of a query a connection repeats (the team link's)."""
    if not getattr(conn, "_bench_prepared", False):
        made = conn.pgconn.prepare(b"bench_pull", _PULL)
        if made.status != pq.ExecStatus.COMMAND_OK:
            raise RuntimeError((made.error_message or b"cannot prepare the pull").decode(errors="replace"))
        conn._bench_prepared = True  # type: ignore[attr-defined]
    got = conn.pgconn.exec_prepared(b"bench_pull", [str(after).encode(), str(limit).encode()])
    if got.status != pq.ExecStatus.TUPLES_OK:
        raise RuntimeError((got.error_message or b"the pull failed").decode(errors="replace"))
    return got


def _agent(url: str, password: str, ready: threading.Barrier, stop: threading.Event) -> None:
    parsed, _ = team_db.TeamUrl.parse(url)
    try:
        work = team_db.connect(parsed, password, application="bench remote agent")
        listener = team_db.connect(parsed, password, application="bench remote agent (listen)")
        team_db.listen(listener)
        cursor = team_db.head(work)
        team_db.heartbeat(work, None, None, link.PRESENCE_TTL)
    except BaseException:
        ready.abort()  # the bench hears "not connected" at once, not after the barrier's wait
        raise
    ready.wait()
    last_pull = last_live = last_beat = time.monotonic()
    notified = False
    try:
        while not stop.is_set():
            wait = link.TICK if not notified else min(link.TICK, max(last_pull + link.PULL_GAP - time.monotonic(), 0))
            channels = team_db.wait_notified(listener, wait)
            now = time.monotonic()
            notified = notified or team_db.EVENTS_CHANNEL in channels
            COUNTS["wakeups"] += bool(channels)
            if now - last_beat >= link.HEARTBEAT:
                team_db.heartbeat(work, None, None, link.PRESENCE_TTL)
                last_beat = now
            if (notified and now - last_pull >= link.PULL_GAP) or now - last_pull >= link.POLL:
                while True:
                    got = _pull(work, cursor, link.LIVE_BATCH)
                    COUNTS["pulls"] += 1
                    COUNTS["rows"] += got.ntuples
                    if got.ntuples:
                        cursor = int(got.get_value(got.ntuples - 1, 0) or 0)
                    if got.ntuples < link.LIVE_BATCH:
                        break
                last_pull, notified = now, False
            if team_db.LIVE_CHANNEL in channels or now - last_live >= link.LIVE_EVERY:
                team_db.live(work)
                COUNTS["lives"] += 1
                last_live = now
    finally:
        try:
            team_db.leave(work)
        finally:
            work.close()
            listener.close()


def main() -> int:
    agents: list[dict[str, Any]] = json.load(sys.stdin)
    stop = threading.Event()
    ready = threading.Barrier(len(agents) + 1)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=_agent, args=(a["url"], a["password"], ready, stop), daemon=True)
               for a in agents]
    for thread in threads:
        thread.start()
    try:
        ready.wait(120)
    except threading.BrokenBarrierError:
        print("an agent could not connect (its error is above)", file=sys.stderr, flush=True)
        return 1
    print("connected", flush=True)
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(0.2)
    print(json.dumps(COUNTS), file=sys.stderr, flush=True)  # the team bench's log: what the crowd asked
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
