"""Readable text in every theme and colour mode: WCAG AA contrast (4.5:1) for every line painted.

Textual's themes choose colours that look right together, not colours that read on every
background the console puts them on: a state colour on the selected row's accent, a dim label on
a panel, the breached count turned grey by ``NO_COLOR`` until it matched its bar. So the last of the
app's line filters (after Textual's own: ANSI to truecolor, dim, NO_COLOR's monochrome) checks each
piece of text against its background, as it will reach the terminal in truecolor and as a 256-colour
terminal will show it, and moves a colour that reads worse than 4.5:1 towards black or white until it
reads. Hue and state marks stay; only lightness moves, and only where needed. The adjusted styles
are cached, so a repaint costs a dictionary lookup per segment.
"""

from __future__ import annotations

from functools import lru_cache

from rich.color import Color, ColorSystem, ColorTriplet
from rich.segment import Segment
from rich.style import Style
from textual.color import Color as TextualColor
from textual.filter import LineFilter

#: WCAG 2 AA for normal text.
AA = 4.5
_WHITE, _BLACK = ColorTriplet(255, 255, 255), ColorTriplet(0, 0, 0)


def _channel(c: int) -> float:
    v = c / 255
    return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4


@lru_cache(maxsize=8192)
def luminance(rgb: ColorTriplet) -> float:
    """WCAG relative luminance."""
    return 0.2126 * _channel(rgb.red) + 0.7152 * _channel(rgb.green) + 0.0722 * _channel(rgb.blue)


def ratio(a: ColorTriplet, b: ColorTriplet) -> float:
    """WCAG contrast ratio, 1 to 21."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@lru_cache(maxsize=8192)
def in_256(rgb: ColorTriplet) -> ColorTriplet:
    """The colour a 256-colour terminal shows for ``rgb`` (Rich's downgrade)."""
    return Color.from_triplet(rgb).downgrade(ColorSystem.EIGHT_BIT).get_truecolor()


def worst_ratio(fg: ColorTriplet, bg: ColorTriplet) -> float:
    """The lower of the truecolor and the 256-colour contrast."""
    return min(ratio(fg, bg), ratio(in_256(fg), in_256(bg)))


def _blend(a: ColorTriplet, b: ColorTriplet, t: float) -> ColorTriplet:
    return ColorTriplet(*(round(x + (y - x) * t) for x, y in zip(a, b, strict=True)))


@lru_cache(maxsize=8192)
def readable(fg: ColorTriplet, bg: ColorTriplet, minimum: float = AA) -> ColorTriplet:
    """``fg``, or the nearest colour towards black or white that reads on ``bg`` in both modes."""
    if worst_ratio(fg, bg) >= minimum:
        return fg
    target = _WHITE if ratio(_WHITE, bg) >= ratio(_BLACK, bg) else _BLACK
    for step in range(1, 21):
        candidate = _blend(fg, target, step / 20)
        if worst_ratio(candidate, bg) >= minimum:
            return candidate
    return target


@lru_cache(maxsize=4096)
def readable_style(style: Style, background: ColorTriplet | None) -> Style:
    fg, bg = style.color, style.bgcolor
    if style.reverse:
        fg, bg = bg, fg
    fg_rgb = fg.triplet if fg is not None else None
    bg_rgb = bg.triplet if bg is not None else background
    if fg_rgb is None or bg_rgb is None:  # the terminal's own colours (ansi themes): its choice
        return style
    better = readable(fg_rgb, bg_rgb)
    if better == fg_rgb:
        return style
    color = Color.from_triplet(better)
    changed = style + (Style(bgcolor=color) if style.reverse else Style(color=color))
    if worst_ratio(better, bg_rgb) < AA:  # a mid-tone background no text colour reads on: move it too
        back = Color.from_triplet(readable(bg_rgb, better))
        changed += Style(color=back) if style.reverse else Style(bgcolor=back)
    return changed


def readable_background(bg: ColorTriplet) -> ColorTriplet:
    """``bg``, or the nearest colour towards black or white on which black or white text reads:
    for a highlight (the selected row) that every state colour must read on."""
    best = max(worst_ratio(_WHITE, bg), worst_ratio(_BLACK, bg))
    if best >= AA + 1:
        return bg
    away = _BLACK if ratio(_WHITE, bg) >= ratio(_BLACK, bg) else _WHITE
    for step in range(1, 21):
        candidate = _blend(bg, away, step / 20)
        if max(worst_ratio(_WHITE, candidate), worst_ratio(_BLACK, candidate)) >= AA + 1:
            return candidate
    return away


class ContrastFilter(LineFilter):
    """Raise every text segment to AA contrast against its background (see the module doc)."""

    def apply(self, segments: list[Segment], background: TextualColor) -> list[Segment]:
        base = background.rich_color.triplet if background is not None and background.a else None
        out = []
        append, adjust = out.append, readable_style
        for segment in segments:
            text, style, control = segment
            if style is not None and not control and text and not text.isspace():
                better = adjust(style, base)
                if better is not style:
                    segment = Segment(text, better, control)
            append(segment)
        return out
