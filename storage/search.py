"""Search the cache: a small documented syntax on top of FTS5, and never raw FTS from the user.

The syntax is parsed by ``replydesk.searchsyntax`` (pure, shared with the rules' conditions and
the config check); this module turns a parsed query into FTS5 and the inbox filter.
"""

from __future__ import annotations

import re
import sqlite3
from typing import NamedTuple

from replydesk.searchsyntax import FILTER_KEYS, IS_VALUES, ParsedQuery, parse, problems
from replydesk.storage.db import Database, StorageError
from replydesk.storage.queries import InboxFilter

__all__ = ["FILTER_KEYS", "IS_VALUES", "Hit", "ParsedQuery", "SearchIndexDamaged", "fts_phrase", "fts_query",
           "message_hits_sql", "parse", "problems", "search"]


def fts_phrase(text: str) -> str:
    """One literal FTS5 string: double quotes doubled, so nothing in it is syntax."""
    return '"' + text.replace('"', '""') + '"'


def fts_word(word: str) -> str:
    """A literal phrase, or a prefix query for a word ending in ``*`` (``refun*``)."""
    if word.endswith("*") and re.search(r"\w", word[:-1]):
        return fts_phrase(word.rstrip("*")) + "*"
    return fts_phrase(word)


def fts_query(words: list[str]) -> str | None:
    """AND of literal phrases (prefixes for ``word*``); words the tokenizer drops entirely (pure
    punctuation) are skipped."""
    parts = [fts_word(w) for w in words if re.search(r"\w", w)]
    return " AND ".join(parts) if parts else None


def name_query(name: str) -> str | None:
    """``from:NAME``: every word of NAME a prefix of a word of the name (AND)."""
    words = [w for w in re.split(r"[\s._@-]+", name) if re.search(r"\w", w)]
    return " AND ".join(fts_phrase(w) + "*" for w in words) if words else None


class Hit(NamedTuple):
    conversation_id: str
    message_id: str | None
    snippet: str


def message_hits_sql() -> str:
    """The raw FTS5 statement behind message search (the benchmark times it bare as a baseline)."""
    return (
        "SELECT m.conversation_id, m.id, snippet(messages_fts, 0, '', '', '…', 12) "
        "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
        "WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT ?"
    )


class SearchIndexDamaged(StorageError):
    """The full-text index cannot be read; what ``replydesk doctor`` would say, and the repair."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"the search index is damaged ({error}); 'replydesk doctor' checks it and "
                         "'replydesk doctor --repair' rebuilds it from the messages (nothing is lost)")


def search(db: Database, query: str, limit: int = 50) -> tuple[list[Hit], InboxFilter]:
    """See :func:`_search`; a damaged full-text index raises ``SearchIndexDamaged`` (a message the
    console and the CLI show as it is) instead of SQLite's error."""
    try:
        return _search(db, query, limit)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        raise SearchIndexDamaged(exc) from exc


def _search(db: Database, query: str, limit: int = 50) -> tuple[list[Hit], InboxFilter]:
    """Hits (newest first, one per conversation) and the inbox filter that shows exactly them.

    Newest first rather than by bm25 rank: agents look for the recent conversation, and walking
    the index backwards by rowid lets FTS5 stop at the limit instead of scoring every hit.
    """
    q = parse(query)
    hits: dict[str, Hit] = {}
    match = fts_query(q.words)
    author_match = " OR ".join(f"({n})" for n in map(name_query, q.authors) if n) or None
    if match or author_match:
        # Words match message text only: matching authors too made a word like "shop" hit every
        # reply we ever sent (our author name). Authors are for from:, customers come from below.
        message_match = " AND ".join(
            p for p in (f"text : ({match})" if match else None,
                        f"author : ({author_match})" if author_match else None) if p
        )
        for conv_id, msg_id, snip in db.conn.execute(message_hits_sql(), (message_match, limit * 4)):
            hits.setdefault(conv_id, Hit(conv_id, msg_id, snip))
        conv_match = " AND ".join(
            p for p in (match, f"customer : ({author_match})" if author_match else None) if p
        )
        for conv_id, snip in db.conn.execute(
            "SELECT c.id, snippet(conversations_fts, -1, '', '', '…', 12) FROM conversations_fts "
            "JOIN conversations c ON c.rowid = conversations_fts.rowid "
            "WHERE conversations_fts MATCH ? ORDER BY conversations_fts.rowid DESC LIMIT ?",
            (conv_match, limit),
        ):
            hits.setdefault(conv_id, Hit(conv_id, None, snip))
        ids: tuple[str, ...] | None = tuple(hits)
    else:
        ids = None  # only filters: the inbox filter alone selects
    f = InboxFilter(
        statuses=tuple(q.statuses) or None,
        platforms=tuple(q.platforms), kinds=tuple(q.kinds), accounts=tuple(q.accounts), tags=tuple(q.tags),
        assignee=q.assignee, escalated=q.escalated, sla_states=("breached",) if q.breached else (),
        needs_reply=None, conversation_ids=ids, listening=q.listening,
        listening_queries=tuple(q.listening_queries),
    )
    if q.unread:
        f = f.with_(needs_reply=True)
    return list(hits.values())[:limit], f
