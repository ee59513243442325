"""What others are doing and what changed under the user's feet: presence, collisions, notices.

The console reads these whatever the workspace is: in a solo one the presence and notices tables
are simply empty, and the collision check still says when a customer wrote while a reply was being
written. In a team the local engine fills them (``team_local``): who is viewing or replying where,
and the changes the team refused, which the console shows once.
"""

from __future__ import annotations

from dataclasses import dataclass

from replydesk.storage.db import Database

SNIPPET = 80


@dataclass(frozen=True)
class Presence:
    agent: str
    activity: str  # viewing | replying | noting
    since: float
    expires_at: float


def others(db: Database, now: float) -> dict[str, list[Presence]]:
    """Conversation id -> the other agents there now, replying ones first."""
    out: dict[str, list[Presence]] = {}
    for agent, conv_id, activity, since, expires in db.conn.execute(
            "SELECT agent, conversation_id, activity, since, expires_at FROM presence "
            "WHERE conversation_id IS NOT NULL AND activity IS NOT NULL AND expires_at > ? "
            "ORDER BY activity = 'viewing', since", (now,)):
        out.setdefault(conv_id, []).append(Presence(agent, activity, since, expires))
    return out


def thread_mark(db: Database, conv_id: str) -> int:
    """Where the conversation's messages stand now; ``changes_since`` tells what came after it."""
    row = db.conn.execute("SELECT coalesce(max(rowid), 0) FROM messages WHERE conversation_id=?",
                          (conv_id,)).fetchone()
    return row[0]


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET else flat[:SNIPPET - 1] + "…"


def changes_since(db: Database, conv_id: str, mark: int, me: str, limit: int = 5) -> list[str]:
    """What arrived since ``mark`` that the user did not write: the customer's new messages, another
    agent's reply or note (Help Scout's collision check), one line each, newest last."""
    lines = []
    for direction, author, text, automatic in db.conn.execute(
            "SELECT direction, author, text, automatic FROM messages WHERE conversation_id=? AND rowid > ? "
            "AND state != 'cancelled' AND (direction = 'in' OR author != ?) ORDER BY rowid LIMIT ?",
            (conv_id, mark, me, limit)):
        if direction == "in":
            who = "an automatic message arrived" if automatic else f"{author or 'the customer'} wrote"
        elif direction == "note":
            who = f"{author or 'someone'} added a note"
        else:
            who = f"{author or 'someone'} replied"
        lines.append(f"{who}: “{_snippet(text)}”")
    return lines


@dataclass(frozen=True)
class Notice:
    id: int
    at: float
    conversation_id: str | None
    text: str


def unshown_notices(db: Database, limit: int = 20) -> list[Notice]:
    return [Notice(*r) for r in db.conn.execute(
        "SELECT id, at, conversation_id, text FROM notices WHERE shown = 0 ORDER BY id LIMIT ?", (limit,))]


def mark_shown(db: Database, ids: list[int]) -> None:
    if not ids:
        return
    with db.transaction():
        db.conn.executemany("UPDATE notices SET shown = 1 WHERE id = ?", [(i,) for i in ids])
