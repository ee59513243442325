"""Post HTML (Mastodon's ``content``) to plain text, at the edge.

Why not html2text: it emits Markdown (``[text](url)``, escaped ``*``/``_``), which is neither what the
customer wrote nor safe to show literally. Here the rules are the ones a support agent needs:
paragraphs and line breaks kept, every link target visible (a link whose text differs from its target
shows both, so nothing hides behind text), mentions as ``@acct``, hashtags as ``#tag``, entities
decoded, everything else dropped. Never raises: broken markup degrades to stripped text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from html.parser import HTMLParser

_BLOCK = {"p", "div", "blockquote", "pre", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr"}
_SKIP = {"script", "style", "template", "head", "title"}
_WS = re.compile(r"[ \t\r\n\f]+")
_TAG = re.compile(r"<[^>]*>")


def bare_url(url: str) -> str:
    """A URL compared loosely: no scheme, no 'www.', no trailing slash or ellipsis."""
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", url.strip(), flags=re.I)
    value = value[4:] if value.lower().startswith("www.") else value
    return value.rstrip("/…. ")


class _Converter(HTMLParser):
    def __init__(self, mentions: Mapping[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.mentions = mentions
        self.out: list[str] = []
        self.anchor: dict[str, str] | None = None
        self.anchor_text: list[str] = []
        self.skip = 0
        self.pre = 0

    # output helpers
    def _emit(self, text: str) -> None:
        (self.anchor_text if self.anchor is not None else self.out).append(text)

    def _newline(self, count: int = 1) -> None:
        if self.anchor is not None:
            self.anchor_text.append(" ")
            return
        self.out.append("\n" * count)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag == "br":
            self._newline()
        elif tag in _BLOCK or tag == "li":
            self._newline(2 if tag in ("p", "blockquote", "pre") else 1)
            if tag == "pre":
                self.pre += 1
            if tag == "li":
                self._emit("• ")
        elif tag == "a" and self.anchor is None:
            self.anchor = {k: v or "" for k, v in attrs}
            self.anchor_text = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "a" and self.anchor is not None:
            self._close_anchor()
        elif tag in _BLOCK:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._newline(2 if tag in ("p", "blockquote", "pre") else 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self._emit(data if self.pre else _WS.sub(" ", data))

    def _close_anchor(self) -> None:
        attrs, text = self.anchor or {}, _WS.sub(" ", "".join(self.anchor_text)).strip()
        self.anchor, self.anchor_text = None, []
        href = attrs.get("href", "").strip()
        classes = set(attrs.get("class", "").split())
        if "mention" in classes and "hashtag" not in classes:
            acct = self.mentions.get(href)
            self.out.append("@" + acct if acct else (text if text.startswith("@") else "@" + text))
        elif "hashtag" in classes or (text.startswith("#") and "mention" in classes):
            self.out.append(text)
        elif not href or bare_url(text) == bare_url(href) or (text and bare_url(href).startswith(bare_url(text))
                                                          and text.rstrip().endswith(("…", "..."))):
            self.out.append(href or text)
        elif not text:
            self.out.append(href)
        else:
            self.out.append(f"{text} ({href})")

    def close(self) -> None:
        super().close()
        if self.anchor is not None:
            self._close_anchor()


def html_to_text(markup: str, mentions: Mapping[str, str] | None = None) -> str:
    """Plain text of ``markup``. ``mentions`` maps a mention's profile URL to its ``acct``."""
    converter = _Converter(mentions or {})
    try:
        converter.feed(markup)
        converter.close()
        text = "".join(converter.out)
    except Exception:  # noqa: BLE001 - hostile markup must never stop a batch; fall back to stripping
        text = html.unescape(_TAG.sub(" ", markup))
    lines = [line.strip(" ") for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n ")
