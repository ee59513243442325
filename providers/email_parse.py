"""Turn raw RFC 5322 bytes into the plain pieces the inbox shows; never raises.

Mail in the wild is mislabelled, truncated and creatively encoded, and one bad message must not
stop a sync. So every step here catches its own failures, keeps what it could read and records a
human-readable warning instead. Stdlib ``email`` with ``policy.default`` does the MIME work; headers
are capped and decoded in one pass (``email_headers``: a hostile header costs its bytes, not their
square); ``html_text`` turns HTML-only mail into readable text (the converter every platform uses);
``email_quotes`` marks quoted history and signatures (nothing is cut: the text is kept whole);
``email_auto`` recognises bounces, auto-replies and bulk mail.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import email
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from typing import Any

from replydesk.providers.email_auto import DeliveryReport, automatic_reason, delivery_report
from replydesk.providers.email_headers import cap_header_block, decode_header
from replydesk.providers.email_quotes import Span, quote_spans
from replydesk.providers.html_text import html_to_text

#: Labels mail clients use that Python either lacks or decodes too strictly. Browsers (WHATWG) make
#: the same substitutions: ISO-8859-1 text is nearly always really Windows-1252, and so on.
CHARSET_ALIASES: dict[str, str] = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "unicode-1-1-utf-7": "utf-7",
    "x-mac-roman": "mac_roman",
}
UNKNOWN_CHARSETS = {"", "unknown-8bit", "x-unknown", "unknown", "default", "8bit", "x-user-defined"}

SYNTHETIC_DOMAIN = "synthesized.replydesk.invalid"

_MSGID = re.compile(r"<[^<>\s]+>")


@dataclass
class ParsedMail:
    """What the inbox needs from one message. Addresses are lower-cased ``addr-spec`` strings."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_name: str = ""
    from_addr: str = ""
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    reply_to: str = ""
    date: float | None = None
    text: str = ""  # the whole body as received (HTML converted), quotes and signature included
    spans: list[Span] = field(default_factory=list)  # quoted history, signature: see email_quotes
    html_only: bool = False
    attachments: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    automatic: str | None = None  # why no person wrote it (bounce, auto-reply, bulk), see email_auto
    report: DeliveryReport | None = None  # a bounce's account of the message it returns

    def synthetic_id(self) -> str:
        """A stable stand-in for a missing Message-ID: same content, same id, across resyncs.

        Hashes the text split the way earlier versions split it, so mail stored by them keeps its
        id when it is fetched again (a flag change re-reads the body)."""
        new, quoted = split_quoted(self.text)
        h = hashlib.sha256()
        for part in (self.from_addr, self.subject, str(self.date), new, quoted):
            h.update(part.encode("utf-8", "replace") + b"\0")
        return f"<{h.hexdigest()[:32]}@{SYNTHETIC_DOMAIN}>"


# --------------------------------------------------------------------------------------------
# charsets


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode ``data`` labelled ``charset``; returns (text, warning or None)."""
    label = (charset or "").strip().strip('"').lower()
    if label in UNKNOWN_CHARSETS:
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace"), None
    name = CHARSET_ALIASES.get(label, label)
    try:
        codecs.lookup(name)
    except LookupError:
        try:
            return data.decode("utf-8"), f"unknown charset {label!r}; read as UTF-8"
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace"), f"unknown charset {label!r}; read as Windows-1252"
    is_utf8 = codecs.lookup(name).name == "utf-8"
    if not is_utf8 and not data.isascii():
        # Valid multi-byte UTF-8 is almost never legacy-encoded text by accident, while UTF-8
        # sent under an old label (the client's default) is common.
        try:
            return data.decode("utf-8"), f"text labelled {label!r} was UTF-8"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(name), None
    except UnicodeDecodeError:
        pass
    if not is_utf8:
        try:  # a common mislabel: UTF-8 sent as something else
            return data.decode("utf-8"), f"text labelled {label!r} was UTF-8"
        except UnicodeDecodeError:
            pass
    return data.decode(name, "replace"), f"invalid bytes for charset {label!r} replaced"


def _has_8bit(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return value if isinstance(value, str) else str(value)
    return None


def header_text(msg: Message, name: str, warnings: list[str], fallbacks: tuple[str | None, ...] = ()) -> str:
    """The decoded text of a header, or ''. Raw 8-bit bytes are read with ``fallbacks`` (the
    body's charsets) before detection; see ``email_headers.decode_header``."""
    raw = _raw_header(msg, name)
    if raw is None:
        return ""
    try:
        return decode_header(raw, fallbacks, warnings, name)
    except Exception as exc:  # noqa: BLE001 - never let one header stop the message
        warnings.append(f"unreadable {name} header ({type(exc).__name__})")
        return " ".join(raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace").split())


#: Address headers up to this size (and with few encoded words) go through the stdlib's full
#: parser, which handles quoting best; anything bigger takes the linear path.
_SMALL_ADDRESS_HEADER = 4096


def _addresses(msg: Message, name: str, warnings: list[str],
               fallbacks: tuple[str | None, ...] = ()) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    raw = _raw_header(msg, name)
    if raw is None:
        return out
    if len(raw) <= _SMALL_ADDRESS_HEADER and raw.count("=?") <= 32 and not _has_8bit(raw):
        try:
            header = msg.get(name)
            for addr in getattr(header, "addresses", ()):
                spec = (addr.addr_spec or "").strip()
                if spec and spec != "<>":
                    out.append((addr.display_name or "", spec.lower()))
            if out:
                return out
        except Exception:  # noqa: BLE001 - the stdlib parser has known crashes on hostile input
            pass
    unfolded = " ".join(raw.split())
    for display, spec in email.utils.getaddresses([unfolded]):
        if "@" in spec:
            with contextlib.suppress(Exception):
                display = decode_header(display, fallbacks)
            spec = decode_header(spec, fallbacks)
            out.append((display, spec.strip().lower()))
    if not out and raw.strip():
        warnings.append(f"could not read the {name} address {unfolded[:80]!r}")
    return out


def _ids(msg: Message, name: str) -> list[str]:
    raw = _raw_header(msg, name)
    if not raw:
        return []
    found = _MSGID.findall(raw)
    if not found and raw.strip() and " " not in raw.strip():
        found = [f"<{raw.strip().strip('<>')}>"]
    return found


# --------------------------------------------------------------------------------------------
# bodies


def _part_text(part: Message, warnings: list[str]) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        warnings.append(f"undecodable body part ({type(exc).__name__})")
        return ""
    if payload is None:
        payload = b""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogateescape")
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text, warning = decode_bytes(payload, charset)
    if warning:
        warnings.append(warning)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name and _has_8bit(name):
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name or None


def _is_attachment(part: Message) -> bool:
    if part.is_multipart():
        return False
    try:
        disposition = (part.get_content_disposition() or "").lower()
    except Exception:
        disposition = ""
    if disposition == "attachment" or _filename(part):
        return True
    return part.get_content_maintype() not in ("text", "multipart")


def _attachment_info(part: Message) -> dict[str, Any]:
    ctype = part.get_content_type()
    name = _filename(part)
    if not name and ctype == "message/rfc822":
        inner = part.get_payload()
        sub = inner[0] if isinstance(inner, list) and inner else None
        subject = _raw_header(sub, "Subject") if isinstance(sub, Message) else None
        name = (decode_header(subject) if subject else "") or "message"
        name = f"{name}.eml"
    try:
        if ctype == "message/rfc822":
            size = len(part.as_bytes())
        else:
            size = len(part.get_payload(decode=True) or b"")
    except Exception:
        size = 0
    return {"name": name or "unnamed", "type": ctype, "size": size}


def _pick_body(msg: Message) -> tuple[Message | None, bool]:
    """The part to show: text/plain preferred, else HTML (second value: it is HTML)."""
    try:
        body = msg.get_body(preferencelist=("plain", "html")) if isinstance(msg, EmailMessage) else None
    except Exception:
        body = None
    if body is not None and not _is_explicit_attachment(body):
        return body, body.get_content_subtype() == "html"
    # get_body skips odd structures; take the first non-attachment text part instead
    for sub in ("plain", "html"):
        for part in msg.walk():
            if part.get_content_type() == f"text/{sub}" and not _is_explicit_attachment(part) \
                    and not _filename(part):
                return part, sub == "html"
    return None, False


def _is_explicit_attachment(part: Message) -> bool:
    try:
        return (part.get_content_disposition() or "").lower() == "attachment"
    except Exception:
        return False


# --------------------------------------------------------------------------------------------
# the split earlier versions made (synthetic ids depend on it)

_ATTRIBUTION_END = re.compile(
    r"(wrote|schrieb|a écrit|escribió|ha scritto|schreef|escreveu|skrev|kirjoitti|napisał|"
    r"написал|написала|написал\(а\)|έγραψε|yazdı|写道|のメッセージ|님이 작성)\s*[:：]?\s*$",
    re.IGNORECASE,
)
#: German, Dutch, Nordic clients put the name after the verb: "Am ... schrieb Anna <a@b>:"
_ATTRIBUTION_VERB_FIRST = re.compile(r"\b(schrieb|schreef|skrev|skrifaði|kirjoitti)\b.*[:：]\s*$", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(
    r"^(on|am|le|el|il|op|em|den|στις|\d{1,4}[./-]|\w+,)\s", re.IGNORECASE
)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"messaggio originale|oorspronkelijk bericht|originalmeddelande|mensagem original|"
    r"исходное сообщение)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\**(from|von|de|da|van|från|от)\**\s*:\s*\S", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(r"^\**(sent|gesendet|envoyé|enviado|inviato|verzonden|skickat|date|datum|отправлено)\**\s*:",
                           re.IGNORECASE)


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def split_quoted(text: str) -> tuple[str, str]:
    """The split earlier versions stored: (what is new, the quoted history). Kept only because
    synthetic Message-IDs hash it; the thread uses ``email_quotes.quote_spans``."""
    lines = text.split("\n")
    n = len(lines)
    cut: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        joined = stripped if i + 1 >= n else f"{stripped} {lines[i + 1].strip()}"
        if _ORIGINAL.match(stripped) or (re.fullmatch(r"_{20,}", stripped) and i + 1 < n
                                         and _OUTLOOK_FROM.match(lines[i + 1].strip())):
            cut = i
            break
        if _OUTLOOK_FROM.match(stripped) and i + 1 < n and _OUTLOOK_SENT.match(lines[i + 1].strip()):
            cut = i
            break
        if _ATTRIBUTION_START.match(stripped) and len(stripped) < 300:
            if _ATTRIBUTION_END.search(stripped) or _ATTRIBUTION_VERB_FIRST.search(stripped):
                cut = i
                break
            if i + 1 < n and _ATTRIBUTION_END.search(joined) and not _is_quote(lines[i + 1]):
                cut = i
                break
        if _is_quote(line):
            # a trailing block of quotes (bottom of a top-posted reply)?
            rest = [ln for ln in lines[i:] if ln.strip()]
            if all(_is_quote(ln) for ln in rest):
                cut = i
            break  # quotes followed by new text: an inline reply, keep it whole
    if cut is None:
        return text.strip(), ""
    new = "\n".join(lines[:cut]).strip()
    if not new:
        return text.strip(), ""
    return new, "\n".join(lines[cut:]).strip()


# --------------------------------------------------------------------------------------------


def parse_message(raw: bytes, own_address: str = "") -> ParsedMail:
    """Parse one message. Always returns; problems end up in ``warnings``.

    ``own_address`` is the shop's: mail relayed by its own group is not taken for list mail."""
    out = ParsedMail()
    w = out.warnings
    raw, capped = cap_header_block(raw)
    w.extend(capped)
    try:
        msg = email.message_from_bytes(raw, policy=policy.default)
    except Exception as exc:  # pragma: no cover - the feed parser is very forgiving
        w.append(f"unparseable message ({type(exc).__name__}); shown as raw text")
        out.text, _ = decode_bytes(raw, None)
        return out

    body, is_html = _pick_body(msg)
    # Unlabelled 8-bit header bytes are most likely in the charset the same client gave the body.
    fallbacks = tuple(dict.fromkeys(c for c in _charsets(msg, body) if c))

    out.subject = header_text(msg, "Subject", w, fallbacks)
    ids = _ids(msg, "Message-ID")
    out.message_id = ids[0] if ids else None
    if out.message_id is None:
        w.append("no Message-ID")
    irt = _ids(msg, "In-Reply-To")
    out.in_reply_to = irt[-1] if irt else None
    out.references = list(dict.fromkeys(_ids(msg, "References")))

    senders = (_addresses(msg, "From", w, fallbacks) or _addresses(msg, "Sender", w, fallbacks)
               or _addresses(msg, "Return-Path", w, fallbacks))
    if senders:
        out.from_name, out.from_addr = senders[0]
    else:
        w.append("no sender address")
    out.to = _addresses(msg, "To", w, fallbacks)
    out.cc = _addresses(msg, "Cc", w, fallbacks)
    reply_to = _addresses(msg, "Reply-To", w, fallbacks)
    out.reply_to = reply_to[0][1] if reply_to else ""

    raw_date = _raw_header(msg, "Date")
    if raw_date:
        try:
            when = email.utils.parsedate_to_datetime(raw_date.strip())
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            out.date = when.timestamp()
        except Exception:
            w.append(f"unreadable Date {raw_date.strip()[:60]!r}")

    for defect in getattr(msg, "defects", [])[:5]:
        w.append(f"MIME defect: {type(defect).__name__}")

    text = ""
    if body is not None:
        text = _part_text(body, w)
        if is_html:
            out.html_only = True
            text = html_to_text(text)
    elif not msg.is_multipart():
        text = _part_text(msg, w)
    try:
        for part in _leaves(msg):
            if part is body or (part is msg and body is None):
                continue
            if _is_attachment(part):
                out.attachments.append(_attachment_info(part))
    except Exception as exc:
        w.append(f"could not list attachments ({type(exc).__name__})")
    out.text = text.strip("\n")
    out.spans = quote_spans(out.text)
    try:
        out.report = delivery_report(msg)
        out.automatic = automatic_reason(msg, own_address, out.report)
    except Exception as exc:  # noqa: BLE001 - a hostile report part must not stop the message
        w.append(f"could not read the delivery report ({type(exc).__name__})")
    return out


def _charsets(msg: Message, body: Message | None) -> list[str | None]:
    """The declared charsets of the body, then of the other text parts."""
    found: list[str | None] = []
    for part in ([body] if body is not None else []) + [p for p in _leaves(msg) if p is not body]:
        try:
            if part.get_content_maintype() == "text":
                found.append(part.get_content_charset())
        except Exception:  # noqa: BLE001
            continue
    return found


def _leaves(part: Message) -> Any:
    """Leaf parts, not descending into attached messages (those are one attachment each)."""
    if part.get_content_type() == "message/rfc822":
        yield part
    elif part.is_multipart():
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            yield from _leaves(sub)
    else:
        yield part
