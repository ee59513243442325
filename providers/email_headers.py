"""Mail headers read in one linear pass, and Message-ID lists written so receivers can thread them.

Why not ``msg["Subject"]`` with ``policy.default``: its header parser builds a token tree whose cost
grows with the square of the number of RFC 2047 encoded words (a 160 KB subject of 10,000 words
peaked at 823 MB). Here a hostile header costs what its bytes cost: every field is capped before the
stdlib sees it (``cap_header_block``), and the text of a field is decoded by one regex scan that
stops after ``MAX_ENCODED_WORDS`` (``decode_header``).

Raw 8-bit bytes in a header (no RFC 2047, common from older Asian and Russian clients) are read as
UTF-8 if they are valid UTF-8, else in the charset the message body declares (the same client wrote
both), else by detection (chardet: right on 11 of 11 short Big5/Shift_JIS/KOI8-R/GB18030/EUC-KR/
Windows-125x subjects where charset-normalizer got 5 wrong), and only then as Windows-1252.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterable, Sequence
from email.headerregistry import HeaderRegistry
from email.policy import SMTP
from typing import Any

#: One header field (name, colon, value with its folded lines) may use this many bytes; the rest
#: is dropped with a warning. Legitimate fields stay far below: a References chain of 100 long ids
#: is about 12 KB.
MAX_FIELD_BYTES = 32 * 1024
#: The whole top-level header block; fields past it are dropped with a warning.
MAX_BLOCK_BYTES = 512 * 1024
#: RFC 2047 encoded words decoded per field; a subject needs a few dozen.
MAX_ENCODED_WORDS = 256
#: Lines of a folded Message-ID list stay under this many characters where the ids allow.
FOLD_AT = 78
MAX_LINE = 998  # RFC 5322 2.1.1: the hard limit; an id that cannot fit is left out

_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MSGID = re.compile(r"<[^<>\s]+>")
_ID_CHARS = re.compile(r"<[!-;=?-~]+>")  # printable ASCII without < > inside: nothing to encode or split


def _lookup(charset: str | None) -> str | None:
    """A codec name Python knows for ``charset``, with the labels mail clients misuse mapped."""
    from replydesk.providers.email_parse import CHARSET_ALIASES, UNKNOWN_CHARSETS

    label = (charset or "").strip().strip('"').lower()
    if label in UNKNOWN_CHARSETS:
        return None
    name = CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def detect_charset(data: bytes) -> str | None:
    """chardet's guess for a short run of legacy-encoded bytes (imported on first use: rare path)."""
    try:
        import chardet
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    guess = chardet.detect(data).get("encoding")
    return _lookup(guess) if guess else None


def decode_8bit(data: bytes, fallbacks: Sequence[str | None] = ()) -> tuple[str, str | None]:
    """Unlabelled header bytes to text: UTF-8, then each fallback charset, then detection.

    Returns (text, the charset used when it was a guess, else None)."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    for label in fallbacks:
        name = _lookup(label)
        if name and name != "utf-8":
            try:
                return data.decode(name), name
            except UnicodeDecodeError:
                continue
    name = detect_charset(data)
    if name:
        try:
            return data.decode(name), name
        except UnicodeDecodeError:
            pass
    return data.decode("cp1252", "replace"), "cp1252"


def _decode_word(charset: str, encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            return binascii.a2b_base64(payload + "=" * (-len(payload) % 4))
        return binascii.a2b_qp(payload.replace("_", " "), header=True)
    except (binascii.Error, ValueError):
        return None


def _to_text(data: bytes, charset: str, fallbacks: Sequence[str | None]) -> str:
    name = _lookup(charset.split("*", 1)[0])  # RFC 2231 language suffix: utf-8*en
    if name:
        try:
            return data.decode(name)
        except UnicodeDecodeError:
            pass
    return decode_8bit(data, fallbacks)[0]


def _plain(text: str, fallbacks: Sequence[str | None]) -> str:
    """Unencoded header text: surrogate-escaped raw bytes (8-bit headers) decoded, the rest as is."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return decode_8bit(text.encode("utf-8", "surrogateescape"), fallbacks)[0]


def decode_header(value: str, fallbacks: Sequence[str | None] = (), warnings: list[str] | None = None,
                  name: str = "header") -> str:
    """The text of one (raw, possibly folded) header value, in a single pass over it.

    RFC 2047: whitespace between adjacent encoded words is dropped, and adjacent words in the same
    charset are decoded together (clients split multi-byte characters across words). After
    ``MAX_ENCODED_WORDS`` the rest of the value is left out and a warning says so.
    """
    value = _FOLD.sub("", value)
    out: list[str] = []
    run: list[bytes] = []
    run_charset = ""
    pos = count = 0
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos:m.start()]
        data = _decode_word(m.group(1), m.group(2), m.group(3))
        if data is None:  # not a valid encoded word: keep its text literally
            continue
        count += 1
        if count > MAX_ENCODED_WORDS:
            if warnings is not None:
                warnings.append(f"the {name} has more than {MAX_ENCODED_WORDS} encoded words; the rest is not shown")
            pos = len(value)
            break
        adjacent = run and not between.strip(" \t")
        if not adjacent or m.group(1).lower() != run_charset:
            if run:
                out.append(_to_text(b"".join(run), run_charset, fallbacks))
                run = []
            if not adjacent:
                out.append(_plain(between, fallbacks))
        run.append(data)
        run_charset = m.group(1).lower()
        pos = m.end()
    if run:
        out.append(_to_text(b"".join(run), run_charset, fallbacks))
    out.append(_plain(value[pos:], fallbacks))
    return " ".join("".join(out).split())


def cap_header_block(raw: bytes) -> tuple[bytes, list[str]]:
    """``raw`` with each top-level header field cut to ``MAX_FIELD_BYTES`` and the block to
    ``MAX_BLOCK_BYTES``, so nothing downstream can be made to spend more than that. Linear."""
    end = _header_end(raw)
    if end <= MAX_FIELD_BYTES:
        return raw, []
    block, body = raw[:end], raw[end:]
    warnings: list[str] = []
    kept: list[bytes] = []
    total = 0
    for field in _fields(block):
        name = field.split(b":", 1)[0][:40].decode("ascii", "replace").strip() or "header"
        if len(field) > MAX_FIELD_BYTES:
            warnings.append(f"the {name} header is {len(field):,} bytes; only the first "
                            f"{MAX_FIELD_BYTES // 1024} KB were read")
            cut = field[:MAX_FIELD_BYTES]
            space = max(cut.rfind(b" "), cut.rfind(b"\t"))
            field = (cut[:space] if space > len(name) + 1 else cut).rstrip(b"\r\n") + b"\r\n"
        if total + len(field) > MAX_BLOCK_BYTES:
            warnings.append(f"the headers are over {MAX_BLOCK_BYTES // 1024} KB; the rest were not read")
            break
        kept.append(field)
        total += len(field)
    return b"".join(kept) + body, warnings


def _header_end(raw: bytes) -> int:
    """Offset of the blank line that ends the header block (or the end of the data)."""
    found = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return min(found) if found else len(raw)


def _fields(block: bytes) -> Iterable[bytes]:
    """Header fields with their continuation lines, line endings kept."""
    current: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if current and line[:1] in (b" ", b"\t"):
            current.append(line)
            continue
        if current:
            yield b"".join(current)
        current = [line]
    if current:
        yield b"".join(current)


# ------------------------------------------------------------------------------------------------
# writing Message-ID lists


def valid_ids(value: str | Iterable[str]) -> list[str]:
    """The ``<id>`` tokens of ``value`` that can be written as they are (printable ASCII, no
    spaces, short enough for one line), duplicates dropped, order kept."""
    found = _MSGID.findall(value) if isinstance(value, str) else list(value)
    limit = MAX_LINE - len("In-Reply-To: ")
    return list(dict.fromkeys(i for i in found if _ID_CHARS.fullmatch(i) and len(i) <= limit))


def fold_ids(name: str, ids: Sequence[str], linesep: str = "\r\n") -> str:
    """``Name: <a> <b>`` folded *between* ids, never inside one and never as encoded words."""
    lines: list[str] = []
    line = f"{name}:"
    for msgid in ids:
        if len(line) + 1 + len(msgid) > FOLD_AT and line != f"{name}:":
            lines.append(line)
            line = ""
        line += f" {msgid}"
    lines.append(line)
    return linesep.join(lines) + linesep


class MessageIdListHeader:
    """``References``/``In-Reply-To`` for outgoing mail: the policy's generic folding would turn an
    id longer than a line (Amazon SES writes 100+ characters) into RFC 2047 encoded words, which
    receiving clients then fail to match, so the thread breaks. Mixed into ``BaseHeader`` by
    ``HeaderRegistry``."""

    max_count = 1  # one References, one In-Reply-To

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        ids = valid_ids(str(value))
        kwds["ids"] = tuple(ids)
        kwds["decoded"] = " ".join(ids)
        kwds["parse_tree"] = None

    def init(self, name: str, *, ids: tuple[str, ...], parse_tree: Any, defects: list[Any]) -> None:
        super().init(name, parse_tree=parse_tree, defects=defects)  # type: ignore[misc]
        self.ids = ids

    def fold(self, *, policy: Any) -> str:
        return fold_ids(self.name, self.ids, policy.linesep)  # type: ignore[attr-defined]


def _reply_registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    for name in ("references", "in-reply-to"):
        registry.map_to_type(name, MessageIdListHeader)
    return registry


#: The policy our replies are written with: SMTP line endings, ids folded between ids.
REPLY_POLICY = SMTP.clone(header_factory=_reply_registry())
