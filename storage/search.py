"""Search the cache: a small documented syntax on top of FTS5, and never raw FTS from the user.

Syntax: plain words match message text, customer names, subjects and tags (every word must
match; each is searched literally, so quotes, ``NEAR``, ``-`` and brackets are just text, except a
trailing ``*``, which makes the word a prefix: ``refun*`` finds refund and refunded).
Filters: ``from:NAME`` (message author or customer; each word of NAME is a prefix of a word of the
name, so ``from:Tom`` and ``from:beck`` both find Tom Becker), ``tag:TAG``, ``platform:NAME``,
``account:NAME``, ``kind:KIND``, ``assignee:WHO``,
``is:open|pending|snoozed|resolved|escalated|breached|unread``,
``is:listening`` (the Listening view: posts a listening query found, not yet answered; without it a
search looks in the inbox only) and ``listening:QUERY`` (one query's matches). A word that looks
like a filter with an unknown key (``col:val``) is searched as text; :func:`problems` says so when
the key looks like a mistyped filter (``status:open``, ``is:brached``).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field

from replydesk.model import STATUSES
from replydesk.storage.db import Database, StorageError
from replydesk.storage.queries import InboxFilter

FILTER_KEYS = ("from", "tag", "platform", "account", "kind", "assignee", "is", "listening")
IS_VALUES = (*STATUSES, "escalated", "breached", "unread", "listening")
#: Keys people type for a filter that has another name here.
KEY_ALIASES = {"status": "is", "state": "is", "channel": "platform", "type": "kind", "author": "from",
               "assigned": "assignee", "tags": "tag", "label": "tag", "customer": "from", "name": "from"}
_TOKEN = re.compile(r'"([^"]*)"?|(\S+)')


@dataclass
class ParsedQuery:
    words: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    assignee: str | None = None
    statuses: list[str] = field(default_factory=list)
    escalated: bool | None = None
    breached: bool = False
    unread: bool = False
    listening: bool = False
    listening_queries: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # mistyped filters, said to the user


def parse(query: str) -> ParsedQuery:
    q = ParsedQuery()
    for match in _TOKEN.finditer(query):
        if match.group(1) is not None:  # a "quoted phrase" (closing quote optional)
            if match.group(1).strip():
                q.words.append(match.group(1))
            continue
        token = match.group(2)
        key, sep, value = token.partition(":")
        key = key.lower()
        if sep and value and key in FILTER_KEYS and ":" not in value:
            if key == "from":
                q.authors.append(value)
            elif key == "tag":
                q.tags.append(value.lower())
            elif key == "platform":
                q.platforms.append(value.lower())
            elif key == "account":
                q.accounts.append(value)
            elif key == "kind":
                q.kinds.append(value.lower())
            elif key == "assignee":
                q.assignee = value
            elif key == "listening":
                q.listening = True
                q.listening_queries.append(value)
            elif key == "is":
                v = value.lower()
                if v in STATUSES:
                    q.statuses.append(v)
                elif v == "escalated":
                    q.escalated = True
                elif v == "breached":
                    q.breached = True
                elif v == "unread":
                    q.unread = True
                elif v == "listening":
                    q.listening = True
                else:
                    q.problems.append(f"unknown is:{value} (known: {', '.join(IS_VALUES)}); searched as text")
                    q.words.append(token)
            continue
        if sep and value and _looks_like_filter(key):
            q.problems.append(f"unknown filter {key}: ({_hint(key)}); searched as text")
        q.words.append(token)
    return q


def _looks_like_filter(key: str) -> bool:
    return key in KEY_ALIASES or any(_close(key, k) for k in FILTER_KEYS if len(k) > 2)


def _close(a: str, b: str) -> bool:
    """One edit apart (a letter wrong, missing, extra or two swapped): ``platfrom``, ``asignee``."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _hint(key: str) -> str:
    wanted = KEY_ALIASES.get(key) or next((k for k in FILTER_KEYS if _close(key, k)), None)
    known = "known: " + ", ".join(f"{k}:" for k in FILTER_KEYS)
    return f"did you mean {wanted}:? {known}" if wanted else known


def problems(query: str) -> list[str]:
    """What in ``query`` looks like a mistyped filter, one sentence each (empty: all understood)."""
    return parse(query).problems


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


@dataclass(frozen=True)
class Hit:
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
