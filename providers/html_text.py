"""HTML to plain, readable text, at the edge: the one converter for every platform that sends HTML
(Mastodon's ``content``, HTML-only mail).

Why not html2text (or another Markdown converter): Markdown is neither what the customer wrote nor
safe to show literally (``# heading``, ``| a | b |`` tables, ``[text](url)`` links, escaped ``*``).
The rules here are the ones a support agent needs:

- paragraphs and line breaks kept; headings as their own lines; ``<hr>`` as a paragraph break;
- lists as ``• item`` / ``1. item``, nested lists indented; tables one row per line, cells joined
  by `` · ``;
- every link target visible once: a link whose text differs from its target shows both
  (``text (url)``), so nothing hides behind text; a link that shows its own target shows it once;
- images as ``[image: alt]`` (no alt, e.g. a tracking pixel: nothing);
- ``<blockquote>`` lines start with ``> ``, so quoted history in HTML mail is found like plain mail's;
- Mastodon mentions as ``@acct``, hashtags as ``#tag``; entities decoded; scripts and styles dropped.

Never raises: broken markup degrades to stripped text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from html.parser import HTMLParser

_BLOCK = {"p", "div", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "address", "article", "section",
          "header", "footer", "center", "dl", "dt", "dd", "figure", "figcaption", "form", "main", "nav"}
_PARAGRAPH = {"p", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "dl", "figure"}
_SKIP = {"script", "style", "template", "head", "title", "noscript"}
_CELL = {"td", "th"}
_WS = re.compile(r"[ \t\r\n\f]+")
_TAG = re.compile(r"<[^>]*>")
INDENT = "\x01"  # an indentation space that survives the final trim (nested lists, pre)
CELL_SEP = " · "


def bare_url(url: str) -> str:
    """A URL compared loosely: no scheme, no 'www.', no trailing slash or ellipsis."""
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", url.strip(), flags=re.I)
    value = re.sub(r"^(mailto|tel):", "", value, flags=re.I)
    value = value[4:] if value.lower().startswith("www.") else value
    return value.rstrip("/…. ")


class _Buffer:
    """Text of one nesting level (the body, a blockquote, a table cell). Block boundaries ask for
    line breaks that are only written before the next text, so ``</div><div>`` is one break, not two."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = 0

    def request(self, lines: int) -> None:
        self.pending = max(self.pending, lines)

    def write(self, text: str) -> None:
        if self.pending and self.parts:
            self.parts.append("\n" * self.pending)
        self.pending = 0
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


class _Converter(HTMLParser):
    def __init__(self, mentions: Mapping[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.mentions = mentions
        self.stack: list[_Buffer] = [_Buffer()]  # blockquotes and table cells nest
        self.anchor: dict[str, str] | None = None
        self.anchor_text: list[str] = []
        self.skip = 0
        self.pre = 0
        self.lists: list[list[int | str]] = []  # [kind, next number]
        self.rows: list[list[str] | None] = []  # per open table: the current row's cells

    # output helpers
    @property
    def out(self) -> _Buffer:
        return self.stack[-1]

    def _emit(self, text: str) -> None:
        if self.anchor is not None:
            self.anchor_text.append(text)
        elif text.strip(" ") or (self.out.parts and not self.out.pending
                                 and not self.out.parts[-1].endswith("\n")):
            self.out.write(text)  # (whitespace at a block boundary means nothing)

    def _break(self, lines: int = 1) -> None:
        if self.anchor is not None:
            self.anchor_text.append(" ")
        else:
            self.out.request(lines)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif self.skip:
            return
        elif tag == "br":
            if self.anchor is not None:
                self.anchor_text.append(" ")
            else:
                self.out.write("\n")
        elif tag == "img":
            self._image(dict(attrs))
        elif tag == "hr":
            self._break(2)
        elif tag in ("ul", "ol"):
            self._break(1 if self.lists else 2)  # a nested list continues its item
            self.lists.append([tag, 1])
        elif tag == "li":
            self._break()
            depth = max(len(self.lists) - 1, 0)
            kind = self.lists[-1] if self.lists else ["ul", 1]
            if kind[0] == "ol":
                bullet = f"{kind[1]}. "
                kind[1] = int(kind[1]) + 1
            else:
                bullet = "• "
            self._emit(INDENT * 2 * depth + bullet)
        elif tag == "blockquote":
            self._break(2)
            self.stack.append(_Buffer())
        elif tag == "table":
            self._break()
            self.rows.append(None)
        elif tag == "tr" and self.rows:
            self.rows[-1] = []
        elif tag in _CELL and self.rows:
            self.stack.append(_Buffer())
        elif tag in _BLOCK:
            self._break(2 if tag in _PARAGRAPH else 1)
            if tag == "pre":
                self.pre += 1
        elif tag == "a" and self.anchor is None:
            self.anchor = {k: v or "" for k, v in attrs}
            self.anchor_text = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "img", "hr"):
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif self.skip:
            return
        elif tag == "a" and self.anchor is not None:
            self._close_anchor()
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._break(1 if self.lists else 2)
        elif tag == "blockquote" and len(self.stack) > 1 and not self._in_cell():
            inner = _tidy(self.stack.pop().text())
            if inner:
                self.out.write("\n".join(f"> {line}" if line else ">" for line in inner.split("\n")))
            self._break(2)
        elif tag in _CELL and self._in_cell():
            cell = " ".join(_tidy(self.stack.pop().text()).split())
            if self.rows[-1] is None:
                self.rows[-1] = []
            if cell:
                self.rows[-1].append(cell)  # type: ignore[union-attr]
        elif tag == "tr" and self.rows and self.rows[-1] is not None:
            cells, self.rows[-1] = self.rows[-1], None
            if cells:
                self._break()
                self.out.write(CELL_SEP.join(cells))
                self._break()
        elif tag == "table" and self.rows:
            self.rows.pop()
            self._break()
        elif tag in _BLOCK:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._break(2 if tag in _PARAGRAPH else 1)

    def _in_cell(self) -> bool:
        return bool(self.rows) and len(self.stack) > 1

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self._emit(data.replace(" ", INDENT))
        else:
            self._emit(_WS.sub(" ", data))

    def _image(self, attrs: dict[str, str | None]) -> None:
        alt = " ".join((attrs.get("alt") or "").split())
        if alt:
            self._emit(f"[image: {alt}]")

    def _close_anchor(self) -> None:
        attrs, text = self.anchor or {}, _WS.sub(" ", "".join(self.anchor_text)).strip()
        self.anchor, self.anchor_text = None, []
        href = attrs.get("href", "").strip()
        classes = set(attrs.get("class", "").split())
        if "mention" in classes and "hashtag" not in classes:
            acct = self.mentions.get(href)
            self._emit("@" + acct if acct else (text if text.startswith("@") else "@" + text))
        elif "hashtag" in classes or (text.startswith("#") and "mention" in classes) or not href \
                or href.startswith("#"):  # a hashtag, or a link to nowhere: its text alone
            self._emit(text)
        elif bare_url(text) == bare_url(href) or (text and bare_url(href).startswith(bare_url(text))
                                                  and text.rstrip().endswith(("…", "..."))):
            self._emit(text if href.lower().startswith(("mailto:", "tel:")) else href)
        elif not text:
            self._emit(href)
        else:
            self._emit(f"{text} ({href})")

    def close(self) -> None:
        super().close()
        if self.anchor is not None:
            self._close_anchor()
        while len(self.stack) > 1:  # unclosed blockquotes or cells: keep their text
            inner = self.stack.pop().text()
            self.out.write(inner)


def _tidy(text: str) -> str:
    """Trim each line, keep intended indentation, at most one blank line in a row."""
    lines = [line.strip(" ").replace(INDENT, " ") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def html_to_text(markup: str, mentions: Mapping[str, str] | None = None) -> str:
    """Plain text of ``markup``. ``mentions`` maps a mention's profile URL to its ``acct``."""
    converter = _Converter(mentions or {})
    try:
        converter.feed(markup)
        converter.close()
        text = converter.stack[0].text()
    except Exception:  # noqa: BLE001 - hostile markup must never stop a batch; fall back to stripping
        text = html.unescape(_TAG.sub(" ", markup))
    return _tidy(text.replace("\xa0", " ")).strip(" ")
