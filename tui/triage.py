"""Triage as a table: each action the keys (and ``.``, repeat) apply to the selection, and its write.

One row per action instead of a chain of ifs: adding an action is one line here plus its key.
No Textual here; the main screen runs the returned write in a worker through ``Store.write``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from replydesk.storage import actions, outbox
from replydesk.storage.db import Database

#: (database, conversation ids, the dialog's answer, the acting agent) -> the write (status changes
#: return the conversations they changed).
Step = Callable[[Database, Sequence[str], Mapping[str, Any], str], Any]


def escalate(db: Database, ids: Sequence[str], p: Mapping[str, Any], actor: str) -> None:
    """Escalate; a target with a helpdesk account (``p["ticket_account"]``) also gets a ticket per
    conversation through the outbox, in the same transaction as the escalation."""
    with db.transaction():
        actions.escalate(db, ids, target=p["target"], reason=p["reason"], note=p["note"], actor=actor)
        if p.get("ticket_account"):
            for conv_id in ids:
                outbox.queue_ticket(db, conv_id, account=p["ticket_account"], target=p["target"],
                                    reason=p["reason"], note=p["note"], actor=actor)


TRIAGE: dict[str, Step] = {
    "tag": lambda db, ids, p, actor: actions.tag(db, ids, p["tags"], actor=actor),
    "untag": lambda db, ids, p, actor: actions.untag(db, ids, p["tags"], actor=actor),
    "assign": lambda db, ids, p, actor: actions.assign(db, ids, p["who"], actor=actor),
    "escalate": lambda db, ids, p, actor: escalate(db, ids, p, actor),
    "resolve": lambda db, ids, p, actor: actions.resolve(db, ids, actor=actor),
    "reopen": lambda db, ids, p, actor: actions.reopen(db, ids, actor=actor),
    "snooze": lambda db, ids, p, actor: actions.snooze(db, ids, p["until"], actor=actor),
}


@dataclass(frozen=True)
class TriageResult:
    """What a triage write did: how many conversations it changed, and how they were before."""

    changed: int
    before: list[actions.TriageState]


def triage_write(name: str, ids: Sequence[str], params: Mapping[str, Any], actor: str
                 ) -> Callable[[Database], TriageResult]:
    """The write of triage action ``name`` on ``ids``, with the state before it for undo (read in
    the same transaction); a name not in ``TRIAGE`` is a bug (KeyError)."""
    step = TRIAGE[name]
    ids, params = list(ids), dict(params)

    def write(db: Database) -> TriageResult:
        with db.transaction():
            before = actions.snapshot(db, ids)
            changed = step(db, ids, params, actor)
        return TriageResult(len(changed) if isinstance(changed, list) else len(ids), before)

    return write


def undo_write(before: Sequence[actions.TriageState], actor: str) -> Callable[[Database], TriageResult]:
    """Put the conversations back as ``before`` recorded them."""
    states = list(before)
    return lambda db: TriageResult(len(actions.restore(db, states, actor=actor)), states)
