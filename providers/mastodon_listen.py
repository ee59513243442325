"""Listening on Mastodon: full-text search (``GET /api/v2/search``) and hashtag timelines.

Each query reads several sources, one cursor each inside the query's stream cursor
(``{"sources": {"search:Duka la Amani": min_id, "tag:dukalaamani": min_id}}``):
- a term (and a competitor's handle, searched as text): ``/api/v2/search?type=statuses&q=...``.
  Statuses search finds public posts only where the instance runs full-text search (Elasticsearch or
  OpenSearch), and there only posts of accounts that opted into search; without it the search finds
  nothing, which is why hashtags, which every instance serves, are the reliable route;
- a hashtag: ``/api/v1/timelines/tag/:tag``, the instance's public timeline of that tag (its own and
  federated posts).
Both page forward with ``min_id``, the first look takes the newest page only, and an id at or below
the stored one is never taken again (an instance that ignores ``min_id`` in search re-sends them).
A match is mapped with its thread exactly as a mention is (``MastodonProvider._map_status``), so a
post that also tags us is the same conversation; reblogs, private posts, our own posts and the
query's exclusions are left out before any thread is fetched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from replydesk.model import FetchResult, IncomingMessage
from replydesk.providers import payload
from replydesk.providers.base import PermanentError
from replydesk.providers.payload import BadItem

if TYPE_CHECKING:
    from replydesk.listening import ListeningQuery
    from replydesk.providers.mastodon import MastodonProvider

PAGE_LIMIT = 40  # the most search and timelines return
MAX_PAGES = 3  # per source and run; the rest comes next time
PUBLIC = ("public", "unlisted")


def sources(query: ListeningQuery) -> list[tuple[str, str]]:
    """(kind, value) to read for ``query``: a search per term and handle, a timeline per hashtag."""
    out = [("search", f'"{t}"' if " " in t else t) for t in query.terms]
    out += [("tag", t) for t in query.hashtags]
    out += [("search", "@" + h) for h in query.handles]
    return out


async def listen(provider: MastodonProvider, queries: list[ListeningQuery],
                 cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
    me = await provider.me()
    await provider._check_instance()

    async def pages() -> AsyncIterator[FetchResult]:
        for query in queries:
            async for page in _query_pages(provider, query, cursors.get(query.stream) or {}, me):
                yield page

    return await payload.keep_finished(pages())


async def _query_pages(provider: MastodonProvider, query: ListeningQuery, cursor: dict[str, Any],
                       me: dict[str, str]) -> AsyncIterator[FetchResult]:
    from replydesk.providers.mastodon import id_key

    stored = cursor.get("sources") if isinstance(cursor.get("sources"), dict) else {}
    state = {k: v for k, v in stored.items() if isinstance(k, str) and payload.is_identifier(v)}
    taken: set[str] = set()  # a post found by two sources of one query is mapped once
    yielded = False
    for kind, value in sources(query):
        key = f"{kind}:{value}"
        min_id = state.get(key)
        for _ in range(MAX_PAGES):
            params: list[tuple[str, str | int]] = [("limit", PAGE_LIMIT)]
            if kind == "search":
                params += [("q", value), ("type", "statuses"), ("resolve", "false")]
                path = "/api/v2/search"
            else:
                path = f"/api/v1/timelines/tag/{quote(value, safe='')}"
            if min_id:
                params.append(("min_id", min_id))
            data, _ = await provider._get_json(path, params)
            statuses = data.get("statuses") if kind == "search" and isinstance(data, dict) else data
            if not isinstance(statuses, list):
                raise PermanentError(f"mastodon: {path} answered with an unexpected shape")
            ids = [str(s["id"]) for s in statuses if isinstance(s, dict) and isinstance(s.get("id"), str | int)
                   and payload.is_identifier(str(s["id"]))]
            new = [s for s in statuses if not (min_id and isinstance(s, dict) and isinstance(s.get("id"), str | int)
                                               and id_key(str(s["id"])) <= id_key(min_id))]
            messages, rejected = await _map(provider, query, new, me, taken)
            newest = max(ids, key=id_key) if ids else None
            if newest and (not min_id or id_key(newest) > id_key(min_id)):
                state[key] = newest
            yield FetchResult(messages, {"sources": dict(state)}, query.stream, rejected, listening=query.name)
            yielded = True
            if not min_id or len(statuses) < PAGE_LIMIT or state.get(key) == min_id:
                break  # the first look takes the newest page only; a short page means we are at the top
            min_id = state[key]
    if not yielded:  # pragma: no cover - a query always has a source (config checks it)
        yield FetchResult([], {"sources": dict(state)}, query.stream, listening=query.name)


async def _map(provider: MastodonProvider, query: ListeningQuery, statuses: list[Any], me: dict[str, str],
               taken: set[str]) -> tuple[list[IncomingMessage], list[tuple[str, str]]]:
    """The matches among ``statuses``, each with its thread; a bad one is rejected, the others kept."""
    rejected: list[tuple[str, str]] = []

    async def one(status: Any) -> list[IncomingMessage] | None:
        if not isinstance(status, dict):
            raise BadItem("status is not an object")
        sid = payload.ident(status, "id", numbers=True)
        if sid in taken or status.get("reblog") or status.get("visibility") not in PUBLIC:
            return None
        taken.add(sid)
        seen = provider._message(status, sid, "mention", me)  # no request: the text to judge it by
        if seen.direction == "out" or query.excluded(seen.text, seen.meta.get("acct", "")):
            return None
        return await provider._map_status(status, me, rejected)

    return await payload.map_items(statuses, one, lambda s: s.get("id", "?") if isinstance(s, dict) else "?",
                                   rejected)
