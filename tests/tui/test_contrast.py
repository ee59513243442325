"""Every piece of text reads at WCAG AA (4.5:1) in every shipped theme, in truecolor and as a
256-colour terminal shows it, and NO_COLOR keeps states apart (issue item 4).

What is measured is what reaches the terminal: the compositor's strips after the app's line filters
(Textual's own and ours), so a theme colour, a dim label, the selected row's highlight or NO_COLOR's
monochrome are all judged as painted. The contrast arithmetic is WCAG's, written out here.
"""

from __future__ import annotations

import pytest
from rich.color import Color as RichColor
from rich.color import ColorSystem
from rich.segment import Segment
from textual.color import Color

from replydesk.config import THEMES
from replydesk.storage import actions, queries
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.bars import HeaderBar
from tui_support import fixed_clock, settle

SIZE = (120, 36)
#: ansi-*: the terminal's own palette, which the terminal (not the console) makes readable.
TRUECOLOR_THEMES = [t for t in THEMES if not t.startswith("ansi")]
#: An inbox row's SLA column in each state the list paints (text, effective state).
STATES = {"breached": ("-1h 05m", "breached"), "warning": ("12m", "warning"), "ok": ("3h 10m", "ok"),
          "paused": ("paused", "paused"), "missed": ("21h 00m", "missed")}


def luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def in_256(color: RichColor) -> tuple[int, int, int]:
    return tuple(color.downgrade(ColorSystem.EIGHT_BIT).get_truecolor())


def unreadable(segments: list[Segment], where: str) -> list[str]:
    """Text segments under 4.5:1, in truecolor or in 256 colours."""
    bad = []
    for seg in segments:
        style = seg.style
        if style is None or not seg.text.strip() or seg.text.strip() in ("▏", "▕", "▔", "▁", "│", "█"):
            continue  # decoration is not text
        fg, bg = (style.bgcolor, style.color) if style.reverse else (style.color, style.bgcolor)
        if fg is None or bg is None or fg.triplet is None or bg.triplet is None:
            continue
        true = contrast(tuple(fg.triplet), tuple(bg.triplet))
        eight = contrast(in_256(fg), in_256(bg))
        if min(true, eight) < 4.5:
            bad.append(f"{where}: {seg.text.strip()[:24]!r} {true:.2f}/{eight:.2f} ({fg.triplet} on {bg.triplet})")
    return bad


def filtered(app: ReplydeskApp, segments: list[Segment], background: Color) -> list[Segment]:
    for line_filter in app.get_line_filters():
        segments = line_filter.apply(segments, background)
    return segments


@pytest.fixture
def tagged_workspace(make_workspace):  # noqa: ANN001
    """The first row carries a tag (a tag on the selected row was amber on amber)."""
    ws = make_workspace()
    db = ws.open_db()
    first = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0]
    actions.tag(db, [first.id], ["vip-customer"])
    db.close()
    return ws


@pytest.mark.parametrize("theme", TRUECOLOR_THEMES)
async def test_every_text_on_screen_and_every_row_state_reads_at_aa(tagged_workspace, theme) -> None:  # noqa: ANN001
    ws = tagged_workspace
    ws.config = ws.config.model_copy(update={"ui": ws.config.ui.model_copy(update={"theme": theme})})
    app = ReplydeskApp(ws, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        assert app.inbox.current.tags == ("vip-customer",) and app.inbox.has_focus
        bad: list[str] = []
        for y, strip in enumerate(app.screen._compositor.render_strips()):
            bad += unreadable(list(strip), f"{theme} line {y}")
        # Every state of a row, selected (focused and not) and not, as the filters paint it.
        inbox = app.inbox
        background = Color.from_rich_color(inbox.rich_style.bgcolor)
        for state, shown in STATES.items():
            for cursor in (None, "inbox--cursor", "inbox--cursor-blur"):
                style = inbox._style(cursor) if cursor else None
                segments = inbox.row_segments(inbox.current, 100, shown, base=inbox._base(), cursor=style,
                                              marked=True)
                bad += unreadable(filtered(app, segments, background), f"{theme} {state} row {cursor or ''}")
        assert not bad, "\n".join(bad[:20])


async def test_no_color_keeps_states_readable_and_apart(workspace, db, monkeypatch) -> None:  # noqa: ANN001
    """NO_COLOR drew the header's breached count and channel tallies in the bar's own colour."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        assert app.no_color
        strips = app.screen._compositor.render_strips()
        bad = []
        for y, strip in enumerate(strips):
            bad += unreadable(list(strip), f"NO_COLOR line {y}")
        assert not bad, "\n".join(bad[:20])
        header = list(strips[0])
        breached = next(s for s in header if s.text.startswith("! breached"))
        assert breached.style.bold  # the count says itself: mark, word and bold, not colour
        assert "~ warning" in HeaderBar.render_header(app.main.query_one(HeaderBar), "Inbox", 1,
                                                       queries.counts(db)).plain
        inbox, background = app.inbox, Color.from_rich_color(app.inbox.rich_style.bgcolor)
        marks = {}
        for state, shown in STATES.items():
            segments = filtered(app, inbox.row_segments(inbox.current, 100, shown, base=inbox._base(), cursor=None,
                                                        marked=False), background)
            marks[state] = (segments[4].text, bool(segments[5].style and segments[5].style.bold))
        assert marks == {"breached": ("!", True), "warning": ("~", False), "ok": (" ", False),
                         "paused": ("=", False), "missed": ("×", False)}
        # The selected row stands apart from the others without colour.
        cursor_row = list(strips[1])
        other_row = list(strips[2])
        assert cursor_row[0].style.bgcolor != other_row[0].style.bgcolor
