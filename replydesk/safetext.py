"""Customer text is data: make it safe to put on a terminal, without hiding what was sent.

Control characters (C0 except newline and tab, DEL, C1) become visible Unicode control pictures
(and the line/paragraph separators U+2028/U+2029 the symbols ␤ and ¶),
so an ESC sequence, an OSC 8 hyperlink or a carriage-return overwrite shows up as text instead of
acting on the terminal. Bidi embedding/override/isolate characters are replaced by a visible mark so
they cannot reorder what follows ("Trojan Source"). Joiners needed by Indic scripts and emoji stay.
Markup safety is the renderer's job: the TUI builds ``rich.text.Text`` objects, never markup strings.
"""

from __future__ import annotations

import re

_PICTURES = {i: chr(0x2400 + i) for i in range(0x20)}  # ␀ … ␟
_PICTURES[0x7F] = "\u2421"  # ␡
_PICTURES.pop(0x0A)  # newline and tab are layout, not control
_PICTURES.pop(0x09)

BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
#: Unicode's line and paragraph separators: terminals neither break the line nor show anything
#: consistent for them, so like the other separators (vertical tab, form feed) they get a symbol.
SEPARATORS = {0x2028: "\u2424", 0x2029: "\u00b6"}  # ␤ and ¶
_TABLE = {**_PICTURES, **{ord(c): "\ufffd" for c in BIDI_CONTROLS}, **SEPARATORS}
for _c1 in range(0x80, 0xA0):
    _TABLE[_c1] = "\ufffd"

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029" + BIDI_CONTROLS + "]"
)


def visible(text: str) -> str:
    """The text with every terminal-active or reordering character made visible."""
    if not _UNSAFE.search(text):
        return text
    return text.translate(_TABLE)


def one_line(text: str) -> str:
    """For list rows and headers: visible() and all whitespace runs collapsed to one space."""
    return " ".join(visible(text).split())
