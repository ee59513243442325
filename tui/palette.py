"""Colour roles: every state is styled from the theme's variables, never from a colour name.

A widget that paints states (breached, queued, offline…) declares the role component classes and
their CSS (:func:`role_css`), and asks :class:`Palette` for a role's Rich style when it builds its
text. The CSS uses Textual's ``$text-*`` variables, which each theme sets with enough contrast
for text on its own background, so ``ui.theme`` (or the palette's "Change theme") recolours
everything; :func:`follow_theme` repaints text built before the change.

No state relies on colour alone (``NO_COLOR``, monochrome terminals): each also carries a symbol
(``!``, ``~``, ``✕``…), a word, or bold; the role CSS adds bold where the symbol is small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.style import Style

#: Role -> the CSS of its component class. The comments say what each role is for.
ROLES: dict[str, str] = {
    "error": "color: $text-error; text-style: bold;",  # breached, failed, offline, over the limit
    "warning": "color: $text-warning;",  # warning, queued/sending, backoff, rate limited, notes
    "success": "color: $text-success;",  # ok, sent, met
    "accent": "color: $text-accent;",  # syncing, tags, our own name
    "special": "color: $text-secondary;",  # escalated, private replies
}

ROLE_CLASSES: frozenset[str] = frozenset(f"role--{name}" for name in ROLES)


def role_css(widget: str) -> str:
    """The role rules for ``widget`` (its CSS type name), for its ``DEFAULT_CSS``."""
    return "\n".join(f"{widget} > .role--{name} {{ {css} }}" for name, css in ROLES.items())


class Palette:
    """One widget's roles as Rich styles, resolved from its component classes (so from the theme).

    Textual caches component styles per widget until its styles change, so a lookup is cheap.
    """

    def __init__(self, widget: Any) -> None:
        self.widget = widget

    def __call__(self, role: str, extra: str = "") -> Style:
        style = self.widget.get_component_rich_style(f"role--{role}", partial=True)
        return style + Style.parse(extra) if extra else style


def follow_theme(widget: Any, repaint: Callable[[], None]) -> None:
    """Call ``repaint`` after every theme change (call from ``on_mount``): text already built
    carries the old theme's colours. The subscription ends when the widget is removed."""
    widget.app.theme_changed_signal.subscribe(widget, lambda _theme: repaint())
