"""What ``u`` can take back: the last reply still queued, or the last triage action.

The stack holds what is needed to undo, never the outcome: a reply is looked up by its key when
``u`` comes (it may have left since), and a triage action carries the conversations' state before
it (``actions.TriageState``), which the undo writes back with an event for each change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How many actions ``u`` can go back through.
DEPTH = 20


@dataclass(frozen=True)
class ReplyUndo:
    key: str
    conv_id: str


@dataclass(frozen=True)
class TriageUndo:
    label: str  # what the action did, for "Undone: Resolved (3 conversations)"
    before: list[Any]  # actions.TriageState of each conversation it touched
    count: int


class UndoStack:
    def __init__(self) -> None:
        self.items: list[ReplyUndo | TriageUndo] = []

    def push(self, item: ReplyUndo | TriageUndo) -> None:
        self.items.append(item)
        del self.items[:-DEPTH]

    def pop(self) -> ReplyUndo | TriageUndo | None:
        return self.items.pop() if self.items else None
