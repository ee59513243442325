"""Which lines of a mail are the sender's new words, and which are quoted history or a signature.

Nothing is cut: the message text is stored whole (search and export see every word) and this module
only marks character ranges, which the thread folds behind a key. Kinds of range:

- ``quote``: quoted history (``>`` lines with their "On ... wrote:" attribution, Outlook's
  ``-----Original Message-----`` or ``From:/Sent:`` block and all below it): folded.
- ``context``: quoted lines the sender answered inline, between their own words: shown, dimmed,
  in order with the answers (they are what the answers refer to).
- ``signature``: after a ``-- `` line, or a "Sent from my iPhone"-style footer line: folded.

A quote block counts as ``context`` when the sender wrote both before and after it, or when the
message answers two or more quote blocks (inline answers); a single quote above the reply
(bottom-posting) or below it (top-posting) is history.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Span = tuple[int, int, str]  # (start, end, kind) character offsets into the text

#: Verbs that end an attribution line, in the languages our customers' clients write.
_ATTRIBUTION_END = re.compile(
    r"(wrote|writes|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|skrev|kirjoitti|napisał\(a\)|"
    r"napisał|napisała|pisze|написал\(а\)|написал|написала|пишет|έγραψε|yazdı|写道|寫道|のメッセージ|"
    r"님이 작성)\s*[:：]?\s*$",
    re.IGNORECASE,
)
#: German, Dutch and Nordic clients put the name after the verb: "Am ... schrieb Anna <a@b>:".
_ATTRIBUTION_VERB_FIRST = re.compile(r"\b(schrieb|schreef|skrev|skrifaði|kirjoitti)\b.*[:：]\s*$", re.IGNORECASE)
#: How attributions begin: a date word, a weekday, a number, or the sender's address.
_ATTRIBUTION_START = re.compile(
    r"^(on|am|le|el|il|op|em|no dia|den|på|w dniu|dnia|στις|\d{1,4}[./-]|\w+,|[^\s]+@[^\s]+|\S.*<[^>]*@)",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"messaggio originale|oorspronkelijk bericht|originalmeddelande|mensagem original|"
    r"исходное сообщение|αρχικό μήνυμα)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\**(from|von|de|da|van|från|от|από)\**\s*:\s*\S", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(
    r"^\**(sent|gesendet|envoyé|enviado|inviato|verzonden|skickat|date|datum|отправлено|στάλθηκε)\**\s*:",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*(_{20,}|[—–-]{20,})\s*$")
#: A whole line that is a mail app's footer. Whole-line only: "sent from my iPhone app" in a
#: sentence is the customer's words.
_FOOTER = re.compile(
    r"^\s*(sent (from|with|via) (my |the )?[\w .'-]{2,40}|get outlook for (ios|android)|"
    r"(download|télécharger) outlook (for|pour) (ios|android)|sent from (outlook|mail) for \w+|"
    r"von meinem [\w .-]{2,30} gesendet|gesendet von [\w .-]{2,30}|envoyé de mon [\w .-]{2,30}|"
    r"enviado desde mi [\w .-]{2,30}|enviado do meu [\w .-]{2,30}|inviato da(l mio)? [\w .-]{2,30}|"
    r"verstuurd vanaf mijn [\w .-]{2,30}|skickat från min [\w .-]{2,30}|sendt fra min [\w .-]{2,30}|"
    r"wysłane z (mojego )?[\w .'-]{2,30}|отправлено с [\w .-]{2,30}|αποστολή από [\w .-]{2,30})"
    r"\s*(<[^>]*>)?\s*\.?\s*$",
    re.IGNORECASE,
)
_SIG_DELIMITER = re.compile(r"^--[ \t]?$")
MAX_ATTRIBUTION = 400  # characters over at most three lines


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution_at(lines: Sequence[str], i: int) -> int:
    """How many lines (1-3) from ``i`` form an "On ... wrote:" attribution, or 0."""
    first = lines[i].strip()
    if not first or _is_quote(lines[i]) or not _ATTRIBUTION_START.match(first):
        return 0
    joined = first
    for extra in range(3):
        if extra:
            if i + extra >= len(lines) or not lines[i + extra].strip() or _is_quote(lines[i + extra]):
                return 0
            joined = f"{joined} {lines[i + extra].strip()}"
        if len(joined) > MAX_ATTRIBUTION:
            return 0
        if _ATTRIBUTION_END.search(joined) or _ATTRIBUTION_VERB_FIRST.search(joined):
            return extra + 1
    return 0


def _outlook_block_at(lines: Sequence[str], i: int) -> bool:
    """Outlook's header block of the message it answers: everything from here on is history."""
    line = lines[i].strip()
    if _ORIGINAL.match(line):
        return True
    following = [ln.strip() for ln in lines[i + 1:i + 4] if ln.strip()]
    if _RULE.match(line) and following and _OUTLOOK_FROM.match(following[0]):
        return True
    return bool(_OUTLOOK_FROM.match(line) and following[:2] and any(_OUTLOOK_SENT.match(f) for f in following[:2]))


def _classify(lines: Sequence[str]) -> list[str]:
    """One label per line: new, quote (incl. attribution), history, signature or blank."""
    labels = ["new"] * len(lines)
    i, n = 0, len(lines)
    in_signature = False
    while i < n:
        line = lines[i]
        if not line.strip():
            labels[i] = "blank"
            i += 1
            continue
        if _outlook_block_at(lines, i):
            for j in range(i, n):
                labels[j] = "history"
            break
        span = _attribution_at(lines, i)
        if span:
            nxt = next((j for j in range(i + span, n) if lines[j].strip()), None)
            if nxt is None or not _is_quote(lines[nxt]):
                for j in range(i, n):  # unquoted history below an attribution
                    labels[j] = "history"
                break
            for j in range(i, i + span):
                labels[j] = "quote"
            i += span
            in_signature = False
            continue
        if _is_quote(line):
            labels[i] = "quote"
            in_signature = False
        elif _SIG_DELIMITER.match(line) or in_signature:
            labels[i] = "signature"
            in_signature = True
        elif _FOOTER.match(line):
            labels[i] = "signature"
        i += 1
    return labels


def _blocks(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    """Runs of one label (line ranges); blank lines join the run they sit in, else the next one."""
    runs: list[list[object]] = []
    for index, label in enumerate(labels):
        if label == "blank":
            continue
        if runs and runs[-1][0] == label:
            runs[-1][2] = index + 1
        else:
            runs.append([label, index, index + 1])
    return [(str(k), int(s), int(e)) for k, s, e in runs]  # type: ignore[call-overload]


def quote_spans(text: str) -> list[Span]:
    """Character ranges of ``text`` that are not the sender's new words (see the module doc)."""
    lines = text.split("\n")
    blocks = _blocks(_classify(lines))
    if not any(kind == "new" for kind, _, _ in blocks):
        return []  # only quotes (a forward of old words, say): nothing to fold, show it all
    new_at = [index for index, (kind, _, _) in enumerate(blocks) if kind == "new"]
    answered = sum(1 for index, (kind, _, _) in enumerate(blocks)
                   if kind == "quote" and index + 1 < len(blocks) and blocks[index + 1][0] == "new")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    spans: list[Span] = []
    for index, (kind, start, end) in enumerate(blocks):
        if kind == "new":
            continue
        if kind == "history":
            kind = "quote"
        elif kind == "quote":
            before, after = new_at[0] < index, new_at[-1] > index
            kind = "context" if after and (before or answered >= 2) else "quote"
        spans.append((offsets[start], min(offsets[end] - 1, len(text)), kind))
    return spans

