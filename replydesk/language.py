"""The language of a customer's message, detected offline with lingua (lingua-language-detector).

lingua is accurate on the short texts customers write ("Asante sana!", "Рақмет!") when it chooses
among the languages a shop actually hears: the detector is built from ``customer_languages`` (and
the languages the rules name), not from all 75 it knows. Measured on the demo's own messages (every
opening, follow-up and review it writes): all 42 right with the six demo languages, where choosing
among all 75 gets Swahili "Asante sana!" (Esperanto), two Hindi lines (Marathi) and a Malay one
(Indonesian) wrong; ``tests/test_language.py`` keeps the figure.

It loads with the first message a language condition looks at (about a second and 80 MB for six
languages at high accuracy; ``low`` accuracy: 20 MB, one demo line wrong), never with the console
or the CLI's other commands.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

_lock = threading.Lock()


class Detector:
    """Detects among a fixed set of languages (ISO 639-1 codes); None when it cannot tell."""

    def __init__(self, codes: Iterable[str], accuracy: str = "high") -> None:
        self.codes = tuple(sorted({c.lower() for c in codes}))
        self.accuracy = accuracy
        self._detector: Any = None

    def _build(self) -> Any:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in self.codes]
        if len(languages) == 1:  # lingua needs two to choose between; one language is no choice
            return languages[0]
        builder = LanguageDetectorBuilder.from_languages(*languages)
        if self.accuracy == "low":
            builder = builder.with_low_accuracy_mode()
        return builder.build()

    def detect(self, text: str) -> str | None:
        if not text or not text.strip():
            return None
        with _lock:
            if self._detector is None:
                self._detector = self._build()
        detector = self._detector
        if not hasattr(detector, "detect_language_of"):
            return detector.iso_code_639_1.name.lower()
        found = detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found is not None else None


@lru_cache(maxsize=8)
def detector(codes: tuple[str, ...], accuracy: str = "high") -> Detector:
    """One detector per set of languages in a process (each loads its models once)."""
    return Detector(codes, accuracy)
