"""Listening on Bluesky: ``app.bsky.feed.searchPosts``, through the PDS with the account's session.

Each query reads a source per term (``q`` = the term, a phrase in quotes), per hashtag (``q=#tag``
with ``tag=tag``) and per competitor's handle (``mentions=handle``, which matches mention facets),
with ``sort=latest``. Search pages only from newest to oldest, so each source walks down to its
watermark (the newest ``indexedAt`` it holds, with the URIs at that instant), as notifications do:
until the walk reaches it, each page's cursor keeps the old watermark plus where to continue, so a
crash mid-walk neither skips nor repeats anything; the first look takes the newest page only.
``since`` bounds the walk on the server: search filters on ``sortAt`` (about when the post was
written), so it asks from ``SINCE_MARGIN`` before the watermark and the watermark does the rest.

A match is mapped as a mention (``BlueskyProvider._post_message``, with the parents of a new thread),
so a post that also tags us is the same conversation; our own posts and the query's exclusions are
left out before any thread is fetched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from replydesk.model import FetchResult, IncomingMessage, iso
from replydesk.providers import payload
from replydesk.providers.base import PermanentError
from replydesk.providers.bluesky import IndexedWalk
from replydesk.providers.payload import BadItem, ident

if TYPE_CHECKING:
    from replydesk.listening import ListeningQuery
    from replydesk.providers.bluesky import BlueskyProvider

SEARCH = "app.bsky.feed.searchPosts"
PAGE_LIMIT = 50
MAX_PAGES = 3  # per source and run; a longer walk resumes next time
SINCE_MARGIN = 600.0  # seconds: posts indexed this long after they were written are still found


def sources(query: ListeningQuery) -> list[tuple[str, list[tuple[str, str]]]]:
    """(cursor key, search parameters) for each thing ``query`` looks for."""
    out = [(f"term:{t}", [("q", f'"{t}"' if " " in t else t)]) for t in query.terms]
    out += [(f"tag:{t}", [("q", "#" + t), ("tag", t)]) for t in query.hashtags]
    out += [(f"handle:{h}", [("q", h), ("mentions", h)]) for h in query.handles]
    return out


async def listen(provider: BlueskyProvider, queries: list[ListeningQuery],
                 cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
    session = await provider.xrpc.session()

    async def pages() -> AsyncIterator[FetchResult]:
        for query in queries:
            async for page in _query_pages(provider, query, cursors.get(query.stream) or {}, session.did):
                yield page

    return await payload.keep_finished(pages())


async def _query_pages(provider: BlueskyProvider, query: ListeningQuery, cursor: dict[str, Any],
                       me: str) -> AsyncIterator[FetchResult]:
    stored = cursor.get("sources") if isinstance(cursor.get("sources"), dict) else {}
    state: dict[str, dict[str, Any]] = {k: v for k, v in stored.items() if isinstance(v, dict)}
    taken: set[str] = set()
    for key, params in sources(query):
        async for new in _walk(provider, query, params, state.get(key) or {}, me, taken):
            state[key] = new[1]
            yield FetchResult(new[0], {"sources": dict(state)}, query.stream, new[2], listening=query.name)


async def _walk(provider: BlueskyProvider, query: ListeningQuery, search: list[tuple[str, str]],
                cursor: dict[str, Any], me: str, taken: set[str]
                ) -> AsyncIterator[tuple[list[IncomingMessage], dict[str, Any], list[tuple[str, str]]]]:
    """One source's walk down to its watermark: (messages, its new cursor, rejected) per page."""
    walk = IndexedWalk(cursor)
    for _ in range(MAX_PAGES):
        params: list[tuple[str, Any]] = [*search, ("sort", "latest"), ("limit", PAGE_LIMIT)]
        if walk.seen_at is not None:
            params.append(("since", iso(walk.seen_at - SINCE_MARGIN)))
        if walk.page_cursor:
            params.append(("cursor", walk.page_cursor))
        data = await provider.xrpc.call("GET", SEARCH, params=params)
        posts = data.get("posts") if isinstance(data, dict) else None
        if not isinstance(posts, list):
            raise PermanentError("bluesky: searchPosts answered with an unexpected shape")
        rejected: list[tuple[str, str]] = []
        fresh = [(post, at) for post in posts if (at := walk.admit(post, rejected)) is not None]
        messages, rejected = await payload.map_items(
            fresh, lambda item: _match(provider, query, item[0], item[1], me, taken),
            lambda item: ident(item[0], "uri", required=False) or "?", rejected)
        next_cursor = data.get("cursor") if isinstance(data.get("cursor"), str) and data.get("cursor") else None
        done = walk.reached or not posts or not next_cursor or next_cursor == walk.page_cursor or walk.seen_at is None
        yield messages, walk.cursor(next_cursor, done), rejected
        if done:
            return
        walk.page_cursor = next_cursor


async def _match(provider: BlueskyProvider, query: ListeningQuery, post: Any, indexed_at: float, me: str,
                 taken: set[str]) -> list[IncomingMessage] | None:
    if not isinstance(post, dict):
        raise BadItem("post is not an object")
    uri, cid = ident(post, "uri"), ident(post, "cid")
    if uri in taken:
        return None
    taken.add(uri)
    message = provider._post_message(uri, cid, post.get("author"), post.get("record"), indexed_at, "mention", me,
                                     "listening")
    if message.direction == "out" or query.excluded(message.text, message.meta.get("handle", "")):
        return None
    messages = [message]
    root = message.conversation_native_id
    if root != uri and root not in provider._threads and message.parent_native_id \
            and not provider.resolve_thread([root, message.parent_native_id]):
        provider._threads.add(root)
        messages.extend(await provider._parents(uri, "mention", me))
    return messages

