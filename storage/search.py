"""Search the cache: a small documented syntax on top of FTS5, and never raw FTS from the user.

Syntax: plain words match message text, customer names, subjects and tags (every word must
match; each is searched literally, so quotes, ``*``, ``NEAR``, ``-`` and brackets are just text).
Filters: ``from:NAME`` (message author or customer), ``tag:TAG``, ``platform:NAME``, ``account:NAME``,
``kind:KIND``, ``assignee:WHO``, ``is:open|pending|snoozed|resolved|escalated|breached|unread``,
``is:listening`` (the Listening view: posts a listening query found, not yet answered; without it a
search looks in the inbox only) and ``listening:QUERY`` (one query's matches).
A word that looks like a filter with an unknown key (``col:val``) is searched as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from replydesk.model import STATUSES
from replydesk.storage.db import Database
from replydesk.storage.queries import InboxFilter

FILTER_KEYS = ("from", "tag", "platform", "account", "kind", "assignee", "is", "listening")
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
                    q.words.append(token)
            continue
        q.words.append(token)
    return q


def fts_phrase(text: str) -> str:
    """One literal FTS5 string: double quotes doubled, so nothing in it is syntax."""
    return '"' + text.replace('"', '""') + '"'


def fts_query(words: list[str]) -> str | None:
    """AND of literal phrases; words the tokenizer drops entirely (pure punctuation) are skipped."""
    parts = [fts_phrase(w) for w in words if re.search(r"\w", w)]
    return " AND ".join(parts) if parts else None


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


def search(db: Database, query: str, limit: int = 50) -> tuple[list[Hit], InboxFilter]:
    """Hits (newest first, one per conversation) and the inbox filter that shows exactly them.

    Newest first rather than by bm25 rank: agents look for the recent conversation, and walking
    the index backwards by rowid lets FTS5 stop at the limit instead of scoring every hit.
    """
    q = parse(query)
    hits: dict[str, Hit] = {}
    match = fts_query(q.words)
    author_match = " OR ".join(fts_phrase(a) for a in q.authors if re.search(r"\w", a)) or None
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
