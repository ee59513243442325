"""Language detection (lingua, offline) on the demo's own messages: every opening, follow-up,
review and hostile line it writes, labelled with the language it is written in.

Measured (README and ``replydesk.language`` state it): 42 of 42 right choosing among the six demo
languages; choosing among all 75 lingua knows, 38 of 42 (Swahili "Asante sana!" read as
Esperanto, two Hindi lines as Marathi, a Malay one as Indonesian), which is why the detector
chooses among ``customer_languages``.
"""

from __future__ import annotations

from replydesk.language import Detector
from replydesk.providers.demo import HOSTILE, LANGUAGES, REVIEW_TEXTS
from replydesk.rulesconfig import DEFAULT_LANGUAGES, LANGUAGE_CODES

REVIEW_LANGUAGES = ("en", "en", "en", "el")  # the demo's REVIEW_TEXTS, in order


def demo_lines() -> list[tuple[str, str]]:
    lines = [(lang, text.format(n=4821)) for lang, _, openings, follow_ups in LANGUAGES
             for text in openings + follow_ups]
    lines += list(zip(REVIEW_LANGUAGES, REVIEW_TEXTS, strict=True))
    return lines + [("en", text) for text in HOSTILE]


def accuracy(detector: Detector) -> tuple[int, list[tuple[str, str | None, str]]]:
    wrong = [(lang, got, text) for lang, text in demo_lines() if (got := detector.detect(text)) != lang]
    return len(demo_lines()) - len(wrong), wrong


def test_every_demo_message_is_detected_among_the_shops_languages() -> None:
    right, wrong = accuracy(Detector(DEFAULT_LANGUAGES))
    assert (right, len(demo_lines())) == (42, 42), wrong


def test_among_every_language_lingua_knows_short_lines_go_wrong() -> None:
    """Why the detector chooses among the shop's languages: the figure the docs give."""
    right, wrong = accuracy(Detector(LANGUAGE_CODES))
    assert right == 38, wrong
    assert ("sw", "eo", "Asante sana!") in wrong


def test_the_config_knows_the_languages_lingua_knows() -> None:
    from lingua import Language

    assert sorted(LANGUAGE_CODES) == sorted(lang.iso_code_639_1.name.lower() for lang in Language.all())


def test_nothing_to_detect_is_no_language() -> None:
    assert Detector(DEFAULT_LANGUAGES).detect("  ") is None
    assert Detector(["sw"]).detect("anything at all") == "sw"  # one language is no choice
