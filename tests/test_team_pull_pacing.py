"""An agent's cache in step with a flood of team events: pulled in a few transactions, none missed.

An engine pushing thousands of messages a second notifies the team's channel with every batch; an
agent that pulled on each notification made twenty agents a thousand queries a second for the
team's server (and the engine's ingest lost a quarter of its rate). The listening agent pulls the
first notification after a quiet spell at once (an action by a colleague shows within a moment),
and the ones that follow together, ``PULL_GAP`` apart. Real PostgreSQL, a real joined workspace,
the agent's team link listening in a thread as ``replydesk sync`` runs it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from replydesk import team as team_link
from replydesk.storage import queries, team_db, team_local
from replydesk.storage.db import open_database
from replydesk.storage.queries import InboxFilter
from replydesk.team import TeamSync
from team_support import (
    Team,
    cache_state,
    differences,
    engine_ana_ben,
    engine_config,
    join_engine_ana_ben,
    team_state,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]
FLOOD = 100



def test_a_flood_of_events_is_pulled_in_few_transactions_and_the_cache_ends_equal(
        pg_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    team: Team = engine_ana_ben(pg_server, monkeypatch)
    dirs = join_engine_ana_ben(team, tmp_path, engine_config(tmp_path / "platform"))
    pulls: list[float] = []
    real_pull = team_db.pull

    def counted(conn: Any, after: int, limit: int = 2000) -> list[Any]:
        if threading.current_thread().name == "ben-link":
            pulls.append(time.monotonic())
        return real_pull(conn, after, limit)

    monkeypatch.setattr(team_db, "pull", counted)
    ben_db = open_database(dirs["ben"])
    link = TeamSync(dirs["ben"], ben_db)
    listener = threading.Thread(target=link.run_blocking, name="ben-link", daemon=True)
    listener.start()
    ana = open_database(dirs["ana"])
    try:
        conv_ids = [r.id for r in queries.inbox_page(ana, InboxFilter(), 0, 4)]
        wait_for(lambda: len(pulls) > 0, "ben's link pulls once it is up")
        wait_for(lambda: link.health()["state"] == "running", "ben's link is up")
        # a quiet spell (no pull for a gap), so the flood's first notification is pulled at once
        wait_for(lambda: time.monotonic() - pulls[-1] >= team_link.PULL_GAP, "a quiet spell")
        before = len(pulls)
        url, _ = team_db.TeamUrl.parse(team.url("ana"))
        with team_db.connect(url, team.passwords["ana"]) as conn:
            started = time.monotonic()
            for i in range(FLOOD):  # as fast as the server takes them: each its own transaction and notification
                outcome = team_db.submit(conn, {"kind": "tag", "agent": "ana", "id": f"flood:{i}",
                                                "conversation": conv_ids[i % len(conv_ids)], "add": [f"flood-{i}"]})
                assert outcome.get("ok"), outcome
            flooded = time.monotonic() - started
        expected = team_state(team)
        reader = open_database(dirs["ben"])  # its own connection: the link's is the link thread's
        try:
            wait_for(lambda: differences(cache_state(reader), expected) == [], "ben's cache equals the team")
        finally:
            reader.close()
        during = [t for t in pulls[before:] if t <= started + flooded]
        # At most one pull a PULL_GAP while notifications keep coming (and one at its start, one for
        # the POLL fallback); pulling on each would be FLOOD.
        assert len(during) <= flooded / team_link.PULL_GAP + 3, (len(during), round(flooded, 2))
    finally:
        link.stop()
        listener.join(30)
        ana.close()
        ben_db.close()


def test_a_link_asked_to_stop_while_catching_up_stops_between_batches_and_the_next_run_goes_on(
        pg_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """``replydesk sync`` told to stop (SIGTERM, Ctrl-C) far behind the team: it stops after the
    batch it is applying, not after the whole backlog (a lagging agent took minutes to stop), and
    the next run pulls the rest; nothing is skipped."""
    from team_support import sync

    team: Team = engine_ana_ben(pg_server, monkeypatch)
    dirs = join_engine_ana_ben(team, tmp_path, engine_config(tmp_path / "platform"))
    ana = open_database(dirs["ana"])
    try:
        conv_ids = [r.id for r in queries.inbox_page(ana, InboxFilter(), 0, 4)]
    finally:
        ana.close()
    backlog = team_link.PULL_BATCH + 100
    url, _ = team_db.TeamUrl.parse(team.url("ana"))
    with team_db.connect(url, team.passwords["ana"]) as conn:
        before = team_db.head(conn)
        outcomes = team_db.submit_many(conn, [{"kind": "tag", "agent": "ana", "id": f"behind:{i}",
                                               "conversation": conv_ids[i % len(conv_ids)], "add": [f"b{i}"]}
                                              for i in range(backlog)])
        assert all(o.get("ok") for o in outcomes)
        head = team_db.head(conn)
    ben_db = open_database(dirs["ben"])
    try:
        link = TeamSync(dirs["ben"], ben_db)
        link.stop()  # the stop arrives while the link catches up
        link.once()
        assert team_local.cursor(ben_db) == before + team_link.PULL_BATCH < head
    finally:
        ben_db.close()
    sync(dirs["ben"])
    reader = open_database(dirs["ben"])
    try:
        assert team_local.cursor(reader) == head
        assert differences(cache_state(reader), team_state(team)) == []
    finally:
        reader.close()
