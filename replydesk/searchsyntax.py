"""The search syntax as data: one parser for the search box, saved views and the rules' conditions.

Pure (stdlib only), so the config can check a rule's ``query`` with the file and line of a mistake,
and a view and a rule read the same words the same way. Storage turns a parsed query into SQL
(``storage.search``); the rules engine tests it against one conversation (``replydesk.rules``).

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

from replydesk.vocabulary import STATUSES

FILTER_KEYS = ("from", "tag", "platform", "account", "kind", "assignee", "is", "listening")
IS_VALUES = (*STATUSES, "escalated", "breached", "unread", "listening")
#: Keys people type for a filter that has another name here.
KEY_ALIASES = {"status": "is", "state": "is", "channel": "platform", "type": "kind", "author": "from",
               "assigned": "assignee", "tags": "tag", "label": "tag", "customer": "from", "name": "from"}
_TOKEN = re.compile(r'"([^"]*)"?|(\S+)')


class ParsedQuery:
    """What a query asks for, filled in by ``parse`` as it reads the query's words. A plain class:
    a read command's start-up pays for no dataclass machinery."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.authors: list[str] = []
        self.tags: list[str] = []
        self.platforms: list[str] = []
        self.accounts: list[str] = []
        self.kinds: list[str] = []
        self.assignee: str | None = None
        self.statuses: list[str] = []
        self.escalated: bool | None = None
        self.breached = False
        self.unread = False
        self.listening = False
        self.listening_queries: list[str] = []
        self.problems: list[str] = []  # mistyped filters, said to the user


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
