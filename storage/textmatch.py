"""Does this text hold these words, as search would find them? Asked by the rules of one message.

A rule's words must match exactly as the search box matches them (whole tokens, case and Latin
accents ignored: FTS5's ``unicode61 remove_diacritics 2``), or a view and a rule would disagree
about the same message. So the test is FTS5 itself, on a private in-memory table holding only the
message being looked at: the same tokenizer and the same literal phrases (``search.fts_phrase``),
at some 20 µs a test.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from replydesk.storage.search import fts_query

_local = threading.local()


def _table() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(text, tokenize='unicode61 remove_diacritics 2')")
        _local.conn, _local.text = conn, None
    return conn


def _load(text: str) -> sqlite3.Connection:
    conn = _table()
    if _local.text != text:  # consecutive tests of one message reuse the row
        conn.execute("DELETE FROM probe")
        conn.execute("INSERT INTO probe(rowid, text) VALUES (1, ?)", (text,))
        _local.text = text
    return conn


def has_all(text: str, words: Sequence[str]) -> bool:
    """Every word (or "phrase") of ``words`` is in ``text``; words with nothing to match are skipped."""
    query = fts_query(list(words))
    if query is None:
        return True
    return _load(text).execute("SELECT 1 FROM probe WHERE probe MATCH ?", (query,)).fetchone() is not None


def has_any(text: str, words: Sequence[str]) -> bool:
    """At least one word (or phrase) of ``words`` is in ``text``."""
    parts = [q for q in (fts_query([w]) for w in words) if q is not None]
    if not parts:
        return False
    query = " OR ".join(parts)
    return _load(text).execute("SELECT 1 FROM probe WHERE probe MATCH ?", (query,)).fetchone() is not None
