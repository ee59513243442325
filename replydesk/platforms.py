"""Platform facts as data: names, reply limits, and how each platform counts a reply's length.

The facts themselves belong to the provider modules (``FACTS`` on each provider class; the platforms
the demo only simulates keep theirs beside the provider registry). The sync engine writes the facts
of every account it runs into storage, including what it learned at run time (a Mastodon instance's
own limit), and the console reads them back from there: so the console never imports a provider
module, and the composer counts with the account's real limit. This module is the shared vocabulary
(stdlib only; ``regex`` is loaded on the first count that needs grapheme clusters).

Counting, as each platform does it:

- ``graphemes``: user-perceived characters (UAX #29 extended grapheme clusters): an emoji family is 1.
- ``utf16``: UTF-16 code units (Telegram; and the unit used where a platform only says
  "characters": the largest of the plausible units, so the composer never allows what may be refused).
- ``utf8``: bytes of UTF-8 (Google's review replies, Instagram's messages).
- ``codepoints``: Unicode code points.
- ``mastodon``: Mastodon's own counter: graphemes, with every URL counted as 23 and a remote mention
  ``@user@domain`` as ``@user`` only.
- ``x``: X's weighted length (twitter-text v3): most CJK and other non-Latin code points weigh 2,
  Latin and punctuation 1, an emoji (sequence) 2, a URL 23.

``Limit.max_bytes`` is a second cap some platforms have (the AT Protocol's ``maxLength``: 300
graphemes *and* 3000 bytes for a Bluesky post); a reply must fit both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from replydesk.windows import WindowRule

Counting = Literal["graphemes", "utf16", "utf8", "codepoints", "mastodon", "x"]
COUNTINGS: tuple[str, ...] = ("graphemes", "utf16", "utf8", "codepoints", "mastodon", "x")

URL_WEIGHT = 23  # Mastodon and X count every URL as 23 characters
_URL_RE = re.compile(r"https?://[^\s<>\"]+", re.I)
_REMOTE_MENTION_RE = re.compile(r"(?<![\w/])@(\w+)@[\w.-]+\w", re.UNICODE)
# twitter-text v3: these code point ranges weigh 1, everything else 2 (scale 100: 100 and 200).
_X_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_grapheme_re: Any = None


def _clusters(text: str) -> list[str]:
    global _grapheme_re
    if _grapheme_re is None:
        import regex  # ~7 ms; the console has it already, the light CLI commands never count

        _grapheme_re = regex.compile(r"\X")
    return _grapheme_re.findall(text)


def graphemes(text: str) -> int:
    return len(_clusters(text))


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def mastodon_length(text: str) -> int:
    """Characters as Mastodon's StatusLengthValidator counts them."""
    text = _URL_RE.sub("x" * URL_WEIGHT, text)
    text = _REMOTE_MENTION_RE.sub(lambda m: "@" + m.group(1), text)
    return graphemes(text)


def _is_emoji(cluster: str) -> bool:
    for ch in cluster:
        cp = ord(ch)
        if 0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF or cp in (0x20E3, 0xFE0F):
            return True
    return False


def x_length(text: str) -> int:
    """X's weighted length (twitter-text v3 with emoji parsing): what its 280 limit is counted in."""
    text = unicodedata.normalize("NFC", text)
    total, pos = 0, 0
    for match in _URL_RE.finditer(text):
        total += _x_plain(text[pos:match.start()]) + URL_WEIGHT
        pos = match.end()
    return total + _x_plain(text[pos:])


def _x_plain(text: str) -> int:
    total = 0
    for cluster in _clusters(text):
        if _is_emoji(cluster):
            total += 2
            continue
        for ch in cluster:
            cp = ord(ch)
            total += 1 if any(lo <= cp <= hi for lo, hi in _X_LIGHT) else 2
    return total


COUNTERS = {
    "graphemes": graphemes,
    "utf16": utf16_units,
    "utf8": utf8_bytes,
    "codepoints": len,
    "mastodon": mastodon_length,
    "x": x_length,
}

UNITS = {"graphemes": "characters", "utf16": "characters", "utf8": "bytes", "codepoints": "characters",
         "mastodon": "characters", "x": "characters"}


@dataclass(frozen=True, slots=True)
class Measure:
    """A reply's length against one limit, in that limit's unit."""

    used: int
    limit: int  # 0: no limit
    unit: str

    @property
    def over(self) -> bool:
        return bool(self.limit) and self.used > self.limit


@dataclass(frozen=True, slots=True)
class Limit:
    """How long a reply may be on one channel: ``max`` in the platform's ``counting`` (0: no limit),
    and ``max_bytes`` of UTF-8 where the platform has a second cap (0: none)."""

    max: int = 0
    counting: Counting = "graphemes"
    max_bytes: int = 0

    def length(self, text: str) -> int:
        return COUNTERS[self.counting](text)

    def measure(self, text: str) -> Measure:
        """The measure closest to binding: the byte cap when the text uses more of it than of the
        platform's own count (emoji-dense text on Bluesky), else the platform's count."""
        main = Measure(self.length(text), self.max, UNITS[self.counting])
        if self.max_bytes:
            used = utf8_bytes(text)
            if not self.max or used * self.max > main.used * self.max_bytes:
                return Measure(used, self.max_bytes, "bytes")
        return main

    def fits(self, text: str) -> bool:
        return not self.measure(text).over


NO_LIMIT = Limit(0, "codepoints")


@dataclass(frozen=True, slots=True)
class PlatformFacts:
    """What the console needs to know about a platform: its names and its reply limits.

    ``public``: replies in public (a comment, a mention); None when the platform has no public side
    (email, chats). ``private``: direct messages and private answers; None when there is no private
    channel at all (Google reviews). ``windows``: when a reply is allowed at all (``replydesk.windows``:
    WhatsApp's 24 hours, then templates only). ``actions``: what the account can do through the
    outbox besides replying (``model.ACTION_KINDS``), as the engine last learned from its provider.
    ``single_reply``: the platform keeps one reply of ours per conversation and a new one replaces
    it (a Google review's reply): a reply where ours is already up edits it instead.
    """

    label: str
    short: str  # 2-4 cells for the inbox column
    public: Limit | None = NO_LIMIT
    private: Limit | None = NO_LIMIT
    windows: tuple[WindowRule, ...] = ()
    actions: tuple[str, ...] = ()
    single_reply: bool = False

    def limit(self, kind: str, private: bool) -> Limit:
        """The limit a reply on a conversation of ``kind`` counts against; DMs and email answer
        privately by nature."""
        wants_private = private or kind in ("dm", "email") or self.public is None
        chosen = self.private if wants_private and self.private is not None else self.public
        return chosen or NO_LIMIT

    def can_reply_privately(self, kind: str) -> bool:
        """Public threads where the platform also offers a private channel (answer a comment by DM)."""
        return kind in ("comment", "mention") and self.private is not None

    def with_limit(self, public: int | None = None, private: int | None = None) -> PlatformFacts:
        """The same facts with a run-time limit (an instance's own maximum), counting unchanged."""
        pub, priv = self.public, self.private
        if public is not None and pub is not None:
            pub = Limit(public, pub.counting, pub.max_bytes)
        if private is not None and priv is not None:
            priv = Limit(private, priv.counting, priv.max_bytes)
        return replace(self, public=pub, private=priv)

    def window_rules(self, kind: str) -> tuple[WindowRule, ...]:
        """The reply-window rules that apply to conversations of ``kind``."""
        return tuple(r for r in self.windows if kind in r.kinds)

    def with_actions(self, actions: Iterable[str]) -> PlatformFacts:
        return replace(self, actions=tuple(sorted(set(actions))))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["windows"] = [r.to_dict() for r in self.windows]
        return out

    @classmethod
    def from_dict(cls, data: Any, platform: str = "") -> PlatformFacts:
        """Facts read back from storage; anything malformed falls back to what is safe to show."""
        base = fallback(platform)
        if not isinstance(data, Mapping):
            return base

        def text(key: str, default: str) -> str:
            value = data.get(key)
            return value if isinstance(value, str) and value else default

        windows = data.get("windows") if isinstance(data.get("windows"), list) else []
        actions = data.get("actions") if isinstance(data.get("actions"), list) else []
        return cls(text("label", base.label), text("short", base.short)[:4],
                   _limit(data.get("public")), _limit(data.get("private")),
                   tuple(r for r in map(WindowRule.from_dict, windows) if r is not None),
                   tuple(a for a in actions if isinstance(a, str) and a),
                   data.get("single_reply") is True)


def _limit(data: Any) -> Limit | None:
    if not isinstance(data, Mapping):
        return None

    def number(key: str) -> int:
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    counting = data.get("counting")
    return Limit(number("max"), counting if counting in COUNTINGS else "utf16", number("max_bytes"))


def fallback(platform: str) -> PlatformFacts:
    """Facts for a platform nothing told us about (an imported cache): its name, no limit."""
    name = platform or "other"
    return PlatformFacts(name.title(), name[:3].upper())


class FactsBook:
    """The platform facts of the open workspace, as storage holds them (see the module docstring).

    One per process: the console works on one workspace, and its widgets (inbox, thread, bars,
    composer) all ask the same book; the console's store replaces the contents whenever it reads
    them from the database.
    """

    def __init__(self) -> None:
        self._by_platform: dict[str, PlatformFacts] = {}
        self._by_account: dict[tuple[str, str], PlatformFacts] = {}

    def replace(self, rows: Iterable[tuple[str, str, PlatformFacts]]) -> None:
        """Take ``(account, platform, facts)`` rows as the whole truth (one assignment each, so a
        reader on another thread sees the old or the new book, never half of one)."""
        by_account = {(account, platform): facts for account, platform, facts in rows}
        by_platform: dict[str, PlatformFacts] = {}
        for (_, platform), facts in sorted(by_account.items()):
            by_platform.setdefault(platform, facts)
        self._by_account, self._by_platform = by_account, by_platform

    def info(self, platform: str) -> PlatformFacts:
        return self._by_platform.get(platform) or fallback(platform)

    def for_account(self, account: str, platform: str) -> PlatformFacts:
        return self._by_account.get((account, platform)) or self.info(platform)


BOOK = FactsBook()


def info(platform: str) -> PlatformFacts:
    """Names and limits of ``platform`` as the workspace knows them."""
    return BOOK.info(platform)
