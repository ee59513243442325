"""The ``listening:`` section: named searches for posts that talk about the business without tagging it.

A query names what to look for (brand and product names, hashtags, competitors' handles) and what
to leave out (words, authors). Each account whose platform offers search (its provider's
``can_listen``: Mastodon, Bluesky, X) runs the queries that apply to it; email and messaging
platforms have nothing to listen to. Matches land in the Listening view as ``mention``
conversations with a listening marker (see ``storage.ingest``), without an SLA clock until they
are answered.

The exclusions are applied here, on the post as the provider mapped it, because the platforms'
search syntaxes disagree on negation (Mastodon has none); X also gets them in its query, where
leaving a post out saves what reading it would cost.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from replydesk.options import Duration, Strict

#: The stream name of a query's cursor: one stream per (account, query).
STREAM_PREFIX = "listen:"
#: The fewest seconds between two runs of one query: search endpoints have the tightest limits.
MIN_INTERVAL = 60.0
#: Search terms longer than this are not names any more (and X's whole query has 512 characters).
MAX_TERM = 100

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_HASHTAG = re.compile(r"^\w{1,100}$")
_HANDLE = re.compile(r"^[\w.@:-]{1,253}$")


def stream_name(query: str) -> str:
    return STREAM_PREFIX + query


def _strings(value: Any) -> Any:
    """Let users write ``terms: Duka la Amani`` as well as a list."""
    return [value] if isinstance(value, str) else value


def _term(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise ValueError("a term cannot be empty")
    if len(text) > MAX_TERM:
        raise ValueError(f"a term has at most {MAX_TERM} characters")
    if '"' in text:
        raise ValueError(f"{text!r}: leave out the quotes (each term is searched as a phrase)")
    if not text.isprintable():
        raise ValueError(f"{text!r} contains control characters")
    return text


def normalise_handle(handle: str) -> str:
    """``@Rival@Mastodon.social`` -> ``rival@mastodon.social``: how handles are compared."""
    return handle.strip().lstrip("@").casefold()


def _fold(text: str) -> str:
    """Text as exclusions compare it: NFKC, case-folded, with invisible format characters (zero-width
    spaces and joiners, bidi marks) removed, so ``hi\u200bring`` still says "hiring"."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if unicodedata.category(c) != "Cf").casefold()


StringList = Annotated[list[str], BeforeValidator(_strings)]


class ListeningQuery(Strict):
    """One named search, run on every account that can search (or the ``platforms``/``accounts`` named)."""

    name: str = Field(pattern=_NAME)
    """The query's name: the Listening view shows it on each match, ``is:listening listening:NAME`` finds its matches."""
    terms: StringList = []
    """Brand names, product names, phrases: a post containing one matches (case-insensitive; a phrase as written)."""
    hashtags: StringList = []
    """Hashtags (with or without #): Mastodon reads their public timelines, Bluesky and X search them."""
    handles: StringList = []
    """Competitors' handles: posts that mention them (``@rival`` on X, ``rival.bsky.social``, ``@rival@instance``)."""
    exclude: StringList = []
    """Words or phrases that make a post not a match (``hiring``, ``job offer``)."""
    exclude_authors: StringList = []
    """Handles whose posts are never matches (your own posts never are)."""
    platforms: StringList | None = None
    """Where to search: mastodon, bluesky, x (omit it: every account whose platform can search)."""
    accounts: StringList | None = None
    """Which accounts search (omit it: every account on ``platforms``)."""
    interval: Duration = 300.0
    """How often the query runs (at least 60s; an X account also keeps to its listening share of the budget)."""

    @field_validator("terms", "exclude")
    @classmethod
    def _clean_terms(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_term(t) for t in value))

    @field_validator("hashtags")
    @classmethod
    def _clean_hashtags(cls, value: list[str]) -> list[str]:
        out = []
        for tag in value:
            tag = tag.strip().lstrip("#")
            if not _HASHTAG.match(tag):
                raise ValueError(f"#{tag}: a hashtag is letters, digits and _ only")
            out.append(tag)
        return list(dict.fromkeys(out))

    @field_validator("handles", "exclude_authors")
    @classmethod
    def _clean_handles(cls, value: list[str]) -> list[str]:
        out = []
        for handle in value:
            handle = handle.strip().lstrip("@")
            if not _HANDLE.match(handle):
                raise ValueError(f"{handle!r} is not a handle")
            out.append(handle)
        return list(dict.fromkeys(out))

    @field_validator("interval")
    @classmethod
    def _often_enough(cls, value: float) -> float:
        if value < MIN_INTERVAL:
            raise ValueError(f"at least {MIN_INTERVAL:.0f}s: search endpoints have the tightest rate limits")
        return value

    @model_validator(mode="after")
    def _something_to_find(self) -> ListeningQuery:
        if not (self.terms or self.hashtags or self.handles):
            raise ValueError(f"listening query {self.name!r}: give terms, hashtags or handles to look for")
        return self

    @property
    def stream(self) -> str:
        return stream_name(self.name)

    def excluded(self, text: str, author_handle: str = "") -> str | None:
        """Why a post is not a match (the exclusion it hit), or None when it is one.

        Words match whole (``hiring`` leaves out "Hiring!" but not "hirings"), whatever the case, the
        width of the characters or invisible characters slipped in between."""
        if author_handle and self.exclude_authors:
            who = normalise_handle(author_handle)
            for author in self.exclude_authors:
                if normalise_handle(author) == who:
                    return f"author @{author}"
        if self.exclude:
            folded = _fold(text)
            for word in self.exclude:
                if re.search(r"(?<!\w)" + re.escape(_fold(word)) + r"(?!\w)", folded):
                    return f"excluded word {word!r}"
        return None


def for_platform(queries: list[ListeningQuery], account: str, platform: str) -> list[ListeningQuery]:
    """The queries an account runs: those naming it, or (naming no account) its platform or any."""
    out = []
    for query in queries:
        if query.accounts is not None:
            if account in query.accounts:
                out.append(query)
        elif query.platforms is None or platform in query.platforms:
            out.append(query)
    return out
