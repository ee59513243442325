"""Group mail into conversations the way a person reading the thread would.

Order of evidence: what the engine already stored (``resolve_thread``), the ids seen earlier in this
process, the root of the References chain (stable whatever order messages arrive in), and only for
mail with no threading headers at all the normalised subject plus the customer's address.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

#: Reply prefixes in the languages our customers write in (Re, AW, SV, Antw, VS, Odp, R, RIF, ...),
#: optionally with a counter ("Re[2]:", "RE(3):") and full-width colons (CJK clients).
_REPLY_PREFIX = re.compile(
    r"^\s*(re|aw|sv|vs|antw|antwort|odp|rif|r|ref|res|yan|ynt|atb|رد|回复|答复|回覆)\s*(\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_FORWARD_PREFIX = re.compile(
    r"^\s*(fwd?|fw|wg|tr|i|enc|rv|doorst|vb|pd|ilt|転送|转发|轉寄)\s*(\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)


def strip_reply_prefixes(subject: str) -> str:
    """'Re: AW: Re[2]: Order' -> 'Order' (forward prefixes kept: a forward is new context)."""
    prev = None
    s = subject.strip()
    while prev != s:
        prev = s
        s = _REPLY_PREFIX.sub("", s, count=1).strip()
    return s


def reply_subject(subject: str) -> str:
    """The subject of our answer: exactly one 'Re: ' in front, however many the customer had.

    No subject stays no subject: a bare "Re:" says nothing, and inventing one from the message's
    first words would split the thread in clients that thread by subject (Gmail)."""
    base = strip_reply_prefixes(subject)
    return f"Re: {base}" if base else ""


def normalise_subject(subject: str) -> str:
    """Subject as a threading key: reply and forward prefixes, list tags, case and spacing gone."""
    prev = None
    s = subject.strip()
    while prev != s:
        prev = s
        s = _REPLY_PREFIX.sub("", s, count=1)
        s = _FORWARD_PREFIX.sub("", s, count=1)
        s = re.sub(r"^\s*\[[^\]]{1,40}\]\s*", "", s, count=1)  # [list-tag]
        s = s.strip()
    return " ".join(s.casefold().split())


def subject_key(subject: str, participants: Sequence[str]) -> str | None:
    norm = normalise_subject(subject)
    people = sorted({p.lower() for p in participants if p})
    if not norm or not people:
        return None  # "(no subject)" from anyone is not a thread
    digest = hashlib.sha256(("\n".join([norm, *people])).encode()).hexdigest()[:24]
    return f"subject:{digest}"


class ThreadIndex:
    """Assigns ``conversation_native_id`` values; remembers what it assigned in this process."""

    def __init__(self) -> None:
        self._by_id: dict[str, str] = {}
        self._by_subject: dict[str, str] = {}

    def assign(
        self,
        message_id: str,
        in_reply_to: str | None,
        references: Sequence[str],
        subject: str,
        participants: Sequence[str],
        resolve: Callable[[Sequence[str]], str | None],
    ) -> str:
        chain = list(dict.fromkeys([*references, *([in_reply_to] if in_reply_to else [])]))
        ids = [*chain, message_id]
        key = subject_key(subject, participants)
        conv = None
        try:
            conv = resolve(ids)
        except Exception:  # the engine hook must never break a sync
            conv = None
        if not conv:
            conv = next((self._by_id[i] for i in ids if i in self._by_id), None)
        if not conv and chain:
            conv = chain[0]  # root of the References chain
        if not conv and key:
            conv = self._by_subject.get(key)
        if not conv:
            conv = message_id
        for i in ids:
            self._by_id.setdefault(i, conv)
        if key:
            self._by_subject.setdefault(key, conv)
        return conv
