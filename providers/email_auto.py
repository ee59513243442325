"""Mail that no person wrote: bounces, out-of-office and other auto-replies, bulk and list mail.

Recognised by the standard signals, most specific first:

- a delivery report: ``multipart/report; report-type=delivery-status`` (RFC 3464: Postfix,
  Sendmail, Exchange/Office 365, Gmail, Amazon SES), or ``X-Failed-Recipients`` (Exim's plain
  text bounce); ``disposition-notification`` reports are read receipts;
- ``Auto-Submitted`` other than ``no`` (RFC 3834), ``X-Autoreply``, ``X-Autorespond``;
- ``Precedence: bulk``/``junk``/``list``/``auto_reply``, ``List-Id``/``List-Unsubscribe``;
- a null ``Return-Path`` (``<>``), which only automatic mail may use.

The shop's own Google Group (or any list whose id is the shop's own address) relays customers'
mail with ``List-Id`` and ``Precedence: list``; those two signals are ignored for it, or every
customer would look like a robot.

A reason reads ``kind: evidence`` (``bounce: 550 5.1.1 user unknown``); the kind is one of
``AUTOMATIC_KINDS`` in ``replydesk.model``, so rules and other providers use the same words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from replydesk.providers.email_headers import valid_ids

_SMTP_DETAIL = re.compile(r"\b[45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b[^\n]*")
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery (status notification|failure|has failed)|returned mail|mail delivery failed|"
    r"failure notice|non remis|unzustellbar|no se puede entregar)",
    re.IGNORECASE,
)
_MSGID_LINE = re.compile(r"^(?:X-Original-)?Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
MAX_REASON = 300


@dataclass
class DeliveryReport:
    """What a bounce says about the message it returns."""

    failed: bool  # permanently not delivered (Action: failed), not just delayed
    message_ids: list[str] = field(default_factory=list)  # of the returned (our) message
    reason: str = ""
    recipients: list[str] = field(default_factory=list)


def _header(msg: Message, name: str) -> str:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return " ".join(str(value).split())
    return ""


def _report_type(msg: Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    try:
        return str(msg.get_param("report-type", "") or "").lower()
    except Exception:  # noqa: BLE001 - a hostile Content-Type must not stop the parse
        return ""


def _own_list(msg: Message, own_address: str) -> bool:
    """Is this mail relayed by the shop's own group (List-Id ``<hello.shop.example>``)?"""
    if not own_address:
        return False
    own = own_address.lower()
    list_id = _header(msg, "List-Id").lower()
    posts = _header(msg, "List-Post").lower()
    return own.replace("@", ".") in list_id or f"mailto:{own}" in posts


def _walk(msg: Message) -> Any:
    try:
        yield from msg.walk()
    except Exception:  # noqa: BLE001 - malformed structure: stop walking, keep what was seen
        return


def delivery_report(msg: Message) -> DeliveryReport | None:
    """The delivery report inside a bounce, or None when ``msg`` is not one."""
    kind = _report_type(msg)
    exim = bool(_header(msg, "X-Failed-Recipients"))
    plain = not kind and (exim or (_BOUNCE_SENDER.match(_sender(msg)) and
                                  _BOUNCE_SUBJECT.search(_header(msg, "Subject"))))
    if kind != "delivery-status" and not plain:
        return None
    report = DeliveryReport(failed=bool(plain))
    ids: list[str] = []
    texts: list[str] = []
    actions: list[str] = []
    for part in _walk(msg):
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            for block in part.get_payload() if isinstance(part.get_payload(), list) else []:
                action = str(block.get("Action", "")).strip().lower()
                if action:
                    actions.append(action)
                    _recipient(report, block, action)
                ids.extend(valid_ids(str(block.get("X-Original-Message-ID", ""))))
        elif ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(inner, Message):
                ids.extend(valid_ids(_header(inner, "Message-ID")))
        elif ctype == "text/rfc822-headers":
            headers = HeaderParser(policy=policy.compat32).parsestr(_text(part))
            ids.extend(valid_ids(_header(headers, "Message-ID")))
        elif ctype == "text/plain":
            texts.append(_text(part))
    if kind:
        report.failed = "failed" in actions
    else:  # Exim and older servers quote the returned headers inline
        for text in texts:
            ids.extend(_MSGID_LINE.findall(text))
    ids.extend(valid_ids(_header(msg, "In-Reply-To")))  # Exchange points at the returned message
    report.message_ids = list(dict.fromkeys(ids))
    if not report.reason:
        found = next((m.group(0) for t in texts if (m := _SMTP_DETAIL.search(t))), "")
        report.reason = " ".join(found.split())[:MAX_REASON] or (
            "the receiving server refused the message" if report.failed else "delivery delayed")
    return report


def outbox_keys(message_ids: list[str], domain: str) -> tuple[str, ...]:
    """Our outbox keys named by returned Message-IDs (``<replydesk.KEY@domain>``: see
    ``EmailProvider.message_id_for``), so a bounce matches even a reply not yet marked sent."""
    pattern = re.compile(rf"<replydesk\.([A-Za-z0-9._+=-]{{1,64}})@{re.escape(domain)}>", re.IGNORECASE)
    return tuple(dict.fromkeys(m.group(1) for i in message_ids if (m := pattern.fullmatch(i))))


def _recipient(report: DeliveryReport, block: Message, action: str) -> None:
    recipient = str(block.get("Final-Recipient", "")).split(";", 1)[-1].strip()
    if recipient:
        report.recipients.append(recipient)
    if action != "failed" or report.reason:
        return
    status = str(block.get("Status", "")).strip()
    diagnostic = str(block.get("Diagnostic-Code", "")).split(";", 1)[-1]
    diagnostic = " ".join(diagnostic.split())
    text = diagnostic or (f"status {status}" if status else "")
    if status and status not in text:
        text = f"{status} {text}"
    if recipient and recipient not in text:
        text = f"{text} ({recipient})"
    report.reason = text.strip()[:MAX_REASON]


def _sender(msg: Message) -> str:
    value = _header(msg, "From")
    found = re.search(r"[^\s<>\"(]+@[^\s<>\")]+", value)
    return found.group(0).lower() if found else ""


def _text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        return ""
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return str(payload or "")


def automatic_reason(msg: Message, own_address: str = "", report: DeliveryReport | None = None) -> str | None:
    """Why ``msg`` is automatic (``kind: evidence``), or None for mail a person wrote."""
    kind = _report_type(msg)
    if report is not None:
        if report.failed:
            return f"bounce: {report.reason}"
        return f"delay: {report.reason}"
    if kind == "disposition-notification":
        return "receipt: read receipt (disposition-notification report)"
    if kind:
        return f"automatic: {kind} report"
    submitted = _header(msg, "Auto-Submitted").lower()
    if submitted and not submitted.startswith("no"):
        return f"auto-reply: Auto-Submitted: {submitted[:60]}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autogenerated"):
        value = _header(msg, name)
        if value and value.lower() != "no":
            return f"auto-reply: {name}"
    precedence = _header(msg, "Precedence").lower()
    own_list = _own_list(msg, own_address)
    if precedence in ("auto_reply", "auto-reply"):
        return f"auto-reply: Precedence: {precedence}"
    if precedence in ("bulk", "junk") or (precedence == "list" and not own_list):
        return f"bulk: Precedence: {precedence}"
    if not own_list:
        for name in ("List-Id", "List-Unsubscribe"):
            if _header(msg, name):
                return f"bulk: {name}"
    return_path = _header(msg, "Return-Path").lower()
    if return_path in ("<>", "<mailer-daemon>"):
        return f"automatic: null sender (Return-Path: {return_path})"
    return None
