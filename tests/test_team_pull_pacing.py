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
    sync,
    team_state,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]
FLOOD = 100


def inbox_ids(data_dir: Path, n: int = 4) -> list[str]:
    db = open_database(data_dir)
    try:
        return [r.id for r in queries.inbox_page(db, InboxFilter(), 0, n)]
    finally:
        db.close()


def tags_by_ana(conv_ids: list[str], prefix: str, n: int) -> list[dict[str, Any]]:
    """``n`` tag commands of ana's, straight to the server (no cache in between), over ``conv_ids``."""
    return [{"kind": "tag", "agent": "ana", "id": f"{prefix}:{i}", "conversation": conv_ids[i % len(conv_ids)],
             "add": [f"{prefix}-{i}"]} for i in range(n)]


def test_a_flood_of_events_is_pulled_in_few_transactions_and_the_cache_ends_equal(
        team: Team, joined: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = joined
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
    try:
        conv_ids = inbox_ids(dirs["ana"])
        wait_for(lambda: len(pulls) > 0, "ben's link pulls once it is up")
        wait_for(lambda: link.health()["state"] == "running", "ben's link is up")
        # a quiet spell (no pull for a gap), so the flood's first notification is pulled at once
        wait_for(lambda: time.monotonic() - pulls[-1] >= team_link.PULL_GAP, "a quiet spell")
        before = len(pulls)
        url, _ = team_db.TeamUrl.parse(team.url("ana"))
        with team_db.connect(url, team.passwords["ana"]) as conn:
            started = time.monotonic()
            for command in tags_by_ana(conv_ids, "flood", FLOOD):  # each its own transaction and notification
                outcome = team_db.submit(conn, command)
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
        ben_db.close()


def test_a_link_asked_to_stop_while_catching_up_stops_between_batches_and_the_next_run_goes_on(
        team: Team, joined: dict[str, Path]) -> None:
    """``replydesk sync`` told to stop (SIGTERM, Ctrl-C) far behind the team: it stops after the
    batch it is applying, not after the whole backlog (a lagging agent took minutes to stop), and
    the next run pulls the rest; nothing is skipped."""
    dirs = joined
    conv_ids = inbox_ids(dirs["ana"])
    backlog = team_link.PULL_BATCH + 100
    url, _ = team_db.TeamUrl.parse(team.url("ana"))
    with team_db.connect(url, team.passwords["ana"]) as conn:
        before = team_db.head(conn)
        outcomes = team_db.submit_many(conn, tags_by_ana(conv_ids, "behind", backlog))
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
