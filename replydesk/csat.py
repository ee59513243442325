"""Reading a customer's answer to a satisfaction survey: "5", "⭐⭐⭐⭐⭐", "good", "asante sana, 5".

Pure (stdlib only): storage calls it on a message that arrives while a survey awaits an answer. An
answer is short and says one thing: a number from 1 to 5 (in any script's digits, "4/5" and "4 out
of 5" too), a row of stars, a thumb, or a word for good or bad in the languages our customers write
(English, Swahili, Hindi, Malay, Greek, Kazakh, and a few more), with a negation flipping the word
("not good", "si nzuri", "अच्छा नहीं", "δεν ήταν καλό", "жақсы емес"). Anything longer, or two
numbers that disagree, is not an answer: it is a new message, handled as usual.

A number or stars give a score on the 1-5 scale; a good/bad word gives no score, only whether the
customer was satisfied (the report's average is over scores, its "satisfied" share over all
answers: 4-5 or good).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rating:
    score: int | None  # 1..5, or None for a good/bad answer
    satisfied: bool
    how: str  # "number" | "stars" | "word" | "emoji"

    def to_json(self) -> dict:
        return {"score": self.score, "satisfied": self.satisfied, "how": self.how}


def _fold(word: str) -> str:
    """Lower case without accents ("Καλό" -> "καλο"), so a missing accent still reads. Only Latin,
    Greek and Cyrillic lose their marks: in Devanagari a mark is part of the letter."""
    out: list[str] = []
    for c in unicodedata.normalize("NFD", word.casefold()):
        if unicodedata.category(c) == "Mn" and out and ord(out[-1]) < 0x0530:
            continue
        out.append(c)
    return unicodedata.normalize("NFC", "".join(out))


def _words(*items: str) -> frozenset[str]:
    return frozenset(_fold(w) for item in items for w in item.split())


GOOD = _words(
    "good great excellent amazing awesome perfect happy satisfied superb fantastic wonderful nice",  # en
    "nzuri vizuri bora safi poa",  # sw
    "अच्छा अच्छी अच्छे बढ़िया बेहतरीन शानदार उत्तम",  # hi
    "bagus baik terbaik hebat puas",  # ms
    "καλό καλή καλά καλός τέλεια τέλειο άριστα εξαιρετικό εξαιρετική ωραία",  # el
    "жақсы тамаша керемет",  # kk
    "bien bon bonne bueno buena gut sehr ótimo bom",  # fr es de pt
)
BAD = _words(
    "bad poor terrible awful horrible unhappy unsatisfied dissatisfied worst disappointing",  # en
    "mbaya vibaya",  # sw
    "बुरा बुरी खराब ख़राब बेकार",  # hi
    "teruk buruk kecewa",  # ms
    "κακό κακή κακά άσχημα χάλια",  # el
    "жаман нашар",  # kk
    "mal mauvais malo mala schlecht ruim",  # fr es de pt
)
#: Words that turn "good" into "bad" when they come just before it (or, for Hindi and Kazakh, just after).
NEGATE_BEFORE = _words("not no never isn't wasn't si sio tidak tak kurang δεν όχι ούτε pas nicht nao não")
NEGATE_AFTER = _words("नहीं नही емес")
#: Words an answer may carry besides the rating itself ("asante sana, 5": thanks very much, 5).
FILLER = _words(
    "thanks thank you very much so really it was is the service rating rate i my a an stars star out of "
    "overall and",
    "asante sana ni huduma kwa",  # sw
    "धन्यवाद बहुत था थी है सेवा",  # hi
    "terima kasih sangat amat perkhidmatan",  # ms
    "ευχαριστώ ευχαριστούμε πολύ πάρα ήταν η εξυπηρέτηση",  # el
    "рақмет өте қызмет болды",  # kk
    "merci gracias danke obrigado très muy",
)
GOOD_EMOJI = frozenset("👍😀😃😄😊🙂😍🥰❤💯")
BAD_EMOJI = frozenset("👎😞😠😡🙁☹😢")
FILLED_STARS = frozenset("⭐★🌟")
EMPTY_STARS = frozenset("☆")
MAX_OTHER_WORDS = 3  # besides rating and filler words: more, and it is a message, not an answer
_NUMBER = re.compile(r"\d+")
#: Letters with their combining marks (Devanagari's vowel signs and virama), digits, apostrophes.
_TOKEN = re.compile(r"(?:[^\W_]|[\u0300-\u036f\u0900-\u0963\u0981-\u09fe]|['’])+")
_DENOMINATOR = re.compile(r"(?:/|\bout\s+of\b|\bof\b|\bkati\s+ya\b|\bdaripada\b|\bαπό\b)\s*(\d+)", re.I)


def parse_answer(text: str) -> Rating | None:
    """The rating ``text`` gives, or None when it is not an answer to a 1-5 or good/bad question."""
    if not isinstance(text, str):
        return None
    text = unicodedata.normalize("NFKC", text).strip()
    if not text or len(text) > 200:
        return None
    stars = sum(1 for c in text if c in FILLED_STARS)
    empty = sum(1 for c in text if c in EMPTY_STARS)
    # "4/5", "4 out of 5": the 5 is the scale, not a second answer
    scale_free = _DENOMINATOR.sub(lambda m: " " if m.group(1) == "5" else m.group(0), text)
    numbers = {int(n) for n in _NUMBER.findall(scale_free)}
    tokens = [_fold(t) for t in _TOKEN.findall(scale_free)]
    word_verdicts = _word_verdicts(tokens)
    others = [t for t in tokens if not t.isdigit() and t not in GOOD and t not in BAD and t not in FILLER
              and t not in NEGATE_BEFORE and t not in NEGATE_AFTER]
    if len(others) > MAX_OTHER_WORDS:
        return None
    score: int | None = None
    how = ""
    if numbers:
        if len(numbers) != 1 or not 1 <= next(iter(numbers)) <= 5:
            return None  # "#1234", "3 days late", "4 or 5": not a clear answer
        score, how = next(iter(numbers)), "number"
    if stars or empty:
        if not 1 <= stars <= 5 or stars + empty > 5 or (score is not None and score != stars):
            return None
        score, how = stars, how or "stars"
    if score is not None:
        return Rating(score, score >= 4, how)
    good = sum(1 for c in text if c in GOOD_EMOJI)
    bad = sum(1 for c in text if c in BAD_EMOJI)
    verdicts = set(word_verdicts)
    if good:
        verdicts.add(True)
    if bad:
        verdicts.add(False)
    if len(verdicts) != 1:
        return None  # nothing said, or both said
    satisfied = verdicts.pop()
    return Rating(None, satisfied, "word" if word_verdicts else "emoji")


def _word_verdicts(tokens: list[str]) -> list[bool]:
    """True for each good word, False for each bad one, flipped by a negation beside it."""
    out = []
    for i, token in enumerate(tokens):
        if token in GOOD or token in BAD:
            verdict = token in GOOD
            before = tokens[max(0, i - 2):i]
            after = tokens[i + 1:i + 2]
            if any(t in NEGATE_BEFORE for t in before) or any(t in NEGATE_AFTER for t in after):
                verdict = not verdict
            out.append(verdict)
    return out
