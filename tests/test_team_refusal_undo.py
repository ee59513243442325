"""Undoing a refused conversation change leaves the author's later changes alone (real PostgreSQL).

When the team refuses an agent's command (another agent assigned the conversation first), the
author's cache takes the team's values back. A field the author changed again afterwards (pushed in
the same batch, or made while the push was on its way) keeps that newer change: it goes to the team
on its own, and is accepted or refused by the same rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from replydesk import team as team_module
from replydesk.storage import actions, queries, team_local
from replydesk.storage.db import open_database
from team_support import (
    Team,
    cache_state,
    differences,
    sync,
    team_state,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]




def a_fresh_conversation(data_dir: Path) -> str:
    """An open conversation nobody has touched: unassigned, normal priority, not escalated, untagged."""
    db = open_database(data_dir)
    try:
        for row in queries.inbox_page(db, queries.InboxFilter(statuses=None), 0, 100):
            if (row.status, row.assignee, row.priority, row.escalated, row.tags) == ("open", None, "normal", False, ()):
                return row.id
    finally:
        db.close()
    pytest.fail("the demo workspace has no untouched open conversation")


def fields(data_dir: Path, conv: str) -> tuple[Any, ...]:
    db = open_database(data_dir)
    try:
        r = queries.get_row(db, conv)
        return r.status, r.assignee, r.priority, r.escalated, tuple(sorted(r.tags))
    finally:
        db.close()


def test_undoing_a_refused_assignment_keeps_the_authors_later_changes(
        team: Team, joined: dict[str, Path]) -> None:
    conv = a_fresh_conversation(joined["ana"])
    db = open_database(joined["ana"])
    try:
        actions.assign(db, [conv], "ana", actor="ana")
    finally:
        db.close()
    assert sync(joined["ana"]).refused == []

    # ben, not having seen ana's assignment: takes it himself (refused: ana was first), then tags it
    # and sets it pending (nobody else touched those: accepted), all in one push ...
    db = open_database(joined["ben"])
    try:
        actions.assign(db, [conv], "ben", actor="ben")
        actions.tag(db, [conv], ["refund"], actor="ben")
        actions.set_status(db, [conv], "pending", actor="ben")
    finally:
        db.close()

    # ... and while that push is on its way, escalates it (raising the priority) in his console.
    real_submit = team_module.team_db.submit_many
    seen_after_push: list[tuple[Any, ...]] = []

    def submit_while_ben_works(conn: Any, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        outcomes = real_submit(conn, commands)
        if any(c.get("kind") == "set" and "assignee" in c.get("fields", {}) for c in commands):
            console = open_database(joined["ben"])
            try:
                actions.escalate(console, [conv], target="helpdesk", actor="ben")
            finally:
                console.close()
        return outcomes

    real_record = team_local.record_outcomes

    def record_and_look(db: Any, *args: Any, **kwargs: Any) -> Any:
        report = real_record(db, *args, **kwargs)
        r = queries.get_row(db, conv)
        seen_after_push.append((r.status, r.assignee, r.priority, r.escalated, tuple(sorted(r.tags))))
        return report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(team_module.team_db, "submit_many", submit_while_ben_works)
        patch.setattr(team_module.team_local, "record_outcomes", record_and_look)
        report = sync(joined["ben"])
    assert len(report.refused) == 1 and "ana changed the assignee to ana first" in report.refused[0]
    # The moment the refusal was undone, ben's cache showed the team's assignee and still every
    # change of his own made after it (never the team's older status, tags or priority).
    assert seen_after_push[0] == ("pending", "ana", "high", True, ("refund",))
    assert fields(joined["ben"], conv) == ("pending", "ana", "high", True, ("refund",))

    # The later changes reach the team as ben made them (the escalation with his next push), and
    # every cache agrees with it.
    assert sync(joined["ben"]).refused == []
    assert team_state(team)["conversations"][conv] == ("pending", "ana", ("refund",), True, "high")
    sync(joined["ana"])
    for name in ("ana", "ben"):
        db = open_database(joined[name])
        try:
            diff = differences(cache_state(db), team_state(team))
        finally:
            db.close()
        assert not diff, f"{name}'s cache differs from the team:\n" + "\n".join(diff[:20])
