"""The search syntax as data: one parser for the search box, saved views and the rules' conditions.

Pure (stdlib only), so the config can check a rule's ``query`` with the file and line of a mistake,
and a view and a rule read the same words the same way. Storage turns a parsed query into SQL
(``storage.search``); the rules engine tests it against one conversation (``replydesk.rules``).

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
