"""Listening on X: recent search (``GET /2/tweets/search/recent``), paid per post read like everything else.

Each query is one X search: its terms (phrases quoted), ``#hashtags`` and ``@handles`` joined with
``OR``, then its exclusions as ``-word`` and ``-from:author``, our own posts and reposts left out
(``-from:us -is:retweet``): what X leaves out is not returned, so not paid for. X allows 512
characters; a longer query is refused before any request. Paging is the mentions' walk: newest first
with ``next_token`` down to the stored ``since_id``, resumable mid-walk; the first look takes a small
newest page (``FIRST_PAGE``) rather than a week of history. Recent search reaches back 7 days, and X
refuses a ``since_id`` older than that: such a cursor starts again from the oldest time X still allows
(everything between is out of reach anyway).

Spend: the reads are priced as the mentions' are, once per resource per UTC day, and recorded under
``listen:*`` resources, so the engine holds listening to its share of the budget. The endpoint has its
own rate-limit window (its own gate); a wait is stored in the query's cursor, so a restart waits too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from replydesk.model import LISTENING_SPEND, FetchResult, Usage, iso
from replydesk.providers import payload
from replydesk.providers.base import PermanentError, RateLimited
from replydesk.providers.payload import ident
from replydesk.providers.x import TWEET_FIELDS, id_key, newer

if TYPE_CHECKING:
    from replydesk.listening import ListeningQuery
    from replydesk.providers.x import XProvider

ENDPOINT = "tweets/search/recent"
PATH = "/2/tweets/search/recent"
MAX_QUERY = 512
FIRST_PAGE = 10  # the first look: the latest few posts, not a week of them at $0.005 each
PAGE = 100
MAX_PAGES = 5
REACH = 7 * 86400.0  # how far back recent search goes
TWITTER_EPOCH_MS = 1288834974657  # snowflake ids count milliseconds from here (in their top bits)


def _quoted(term: str) -> str:
    return f'"{term}"' if " " in term or not term.isalnum() else term


def build_query(query: ListeningQuery, username: str) -> str:
    """The X search for ``query`` (raises PermanentError when it is longer than X allows)."""
    wanted = [_quoted(t) for t in query.terms] + ["#" + t for t in query.hashtags] + ["@" + h for h in query.handles]
    text = " OR ".join(wanted)
    if len(wanted) > 1:
        text = f"({text})"
    text += "".join(f" -{_quoted(w)}" for w in query.exclude)
    text += "".join(f" -from:{a}" for a in query.exclude_authors)
    if username:
        text += f" -from:{username}"
    text += " -is:retweet"
    if len(text) > MAX_QUERY:
        raise PermanentError(f"x: listening query {query.name!r} is {len(text)} characters as an X search; "
                             f"X allows {MAX_QUERY} (split it into two queries)")
    return text


def snowflake_time(tweet_id: str) -> float | None:
    """When an X id was made (epoch seconds), from its top bits."""
    if not tweet_id.isdigit():
        return None
    return ((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) / 1000.0


async def listen(provider: XProvider, queries: list[ListeningQuery],
                 cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
    me = await provider.me()
    gate = provider.endpoint_gate(ENDPOINT)
    for query in queries:  # a wait a previous run was told, before any request
        until = (cursors.get(query.stream) or {}).get("blocked_until")
        if isinstance(until, int | float) and until > provider.clock():
            gate.blocked_until = max(gate.blocked_until, float(until))

    async def pages() -> AsyncIterator[FetchResult]:
        for query in queries:
            async for page in _walk(provider, query, cursors.get(query.stream) or {}, me):
                yield page

    return await payload.keep_finished(pages())


def _listening_usage(provider: XProvider, start: int) -> None:
    """Relabel the reads charged since ``start`` as listening's (``listen:post:read``)."""
    mine = provider._usage[start:]
    del provider._usage[start:]
    provider._usage.extend(Usage(LISTENING_SPEND + u.resource, u.units, u.usd) for u in mine)


async def _walk(provider: XProvider, query: ListeningQuery, cursor: dict[str, Any], me: dict[str, str]
                ) -> AsyncIterator[FetchResult]:
    text = build_query(query, me.get("username") or "")
    since = cursor.get("since_id") if payload.is_identifier(cursor.get("since_id")) else None
    walk = cursor.get("walk") if isinstance(cursor.get("walk"), dict) else {}
    token = walk.get("token") if payload.is_identifier(walk.get("token")) else None
    top = walk.get("top") if payload.is_identifier(walk.get("top")) else None
    base = {k: v for k, v in cursor.items()
            if k not in ("blocked_until", "walk", "since_id", "start_time", "polled_at")}
    start_time = cursor.get("start_time") if token and not since and isinstance(cursor.get("start_time"), str) \
        else None
    made = snowflake_time(since) if since else None
    if made is not None and made < provider.clock() - REACH + 3600:
        since, token, top = None, None, None  # X refuses it: start from the oldest time it allows
        start_time = iso(provider.clock() - REACH + 60)

    for _ in range(MAX_PAGES):
        params: dict[str, Any] = {"query": text, "max_results": PAGE if since or start_time else FIRST_PAGE,
                                  "expansions": "author_id,referenced_tweets.id",
                                  "tweet.fields": TWEET_FIELDS, "user.fields": "username,name"}
        if since:
            params["since_id"] = since
        if start_time:
            params["start_time"] = start_time
        if token:
            params["next_token"] = token
        charged = len(provider._usage)
        try:
            data = await provider._json("GET", ENDPOINT, PATH, params=params)
        except RateLimited as exc:
            state = {**base, "since_id": since, "walk": {"token": token, "top": top} if token else None,
                     "start_time": start_time if token else None, "blocked_until": exc.reset_at}
            yield FetchResult([], {k: v for k, v in state.items() if v is not None}, query.stream,
                              listening=query.name)
            return
        provider._charge_reads(data, "post")
        _listening_usage(provider, charged)
        meta = payload.mapping(data, "meta", required=False)
        users, tweets = provider._users(data), provider._tweets(data)

        def one(tweet: Any, users: dict = users, tweets: dict = tweets) -> Any:
            if isinstance(tweet, dict) and tweet.get("author_id") != me["id"]:
                username = ident(users.get(tweet.get("author_id"), {}), "username", required=False)
                if query.excluded(provider._text(tweet), username):
                    return None
            return provider._tweet_messages(tweet, users, tweets, me)

        messages, rejected = payload.map_each(payload.items(data, "data"), one,
                                              lambda t: ident(t, "id", required=False) or "?")
        newest = ident(meta, "newest_id", required=False) or max(
            (t["id"] for t in payload.items(data, "data") if isinstance(t, dict)
             and payload.is_identifier(t.get("id"))), key=id_key, default="")
        top = newer(top, newest or None)
        next_token = ident(meta, "next_token", required=False)
        done = (since is None and start_time is None) or not next_token or next_token == token
        state = {**base, "since_id": newer(since, top)} if done else \
            {**base, "since_id": since, "walk": {"token": next_token, "top": top}}
        if start_time and not done:
            state["start_time"] = start_time
        yield FetchResult(messages, {k: v for k, v in state.items() if v is not None}, query.stream, rejected,
                          listening=query.name)
        if done:
            return
        token = next_token
