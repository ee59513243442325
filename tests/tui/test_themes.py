"""``ui.theme``: every Textual theme is accepted and applied, and states keep distinct, readable styles.

Styles are read from what the widgets render (inbox rows, the status bar, the SLA pane, the
thread's delivery states) after switching the running console's theme, so a colour literal left
in a widget, or a role lost by a theme, shows up here.
"""

from __future__ import annotations

from rich.color import Color as RichColor
from rich.segment import Segment
from rich.style import Style
from textual.app import App
from textual.color import Color
from textual.filter import Monochrome
from textual.theme import BUILTIN_THEMES

from replydesk.config import THEMES
from replydesk.storage import queries
from replydesk.storage.queries import MessageView
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.bars import HeaderBar, StatusBar
from replydesk.tui.sla_pane import SlaPane
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)
STATES = {"breached": ("-1h 05m", "breached"), "warning": ("12m", "warning"), "ok": ("3h 10m", "ok")}


def luminance(color: RichColor) -> float:
    """WCAG relative luminance of a Rich colour."""
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = color.get_truecolor()
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: RichColor, b: RichColor) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def countdown_style(app: ReplydeskApp, state: str) -> Style:
    """The style of the SLA countdown cell of an inbox row in ``state`` (as the list paints it)."""
    inbox = app.inbox
    text, _ = STATES[state]
    segments = inbox.row_segments(inbox.current, 100, STATES[state], base=inbox._base(), cursor=None, marked=False)
    return next(s.style for s in segments if s.text.strip() == text)


def span_style(text, word: str) -> Style:  # noqa: ANN001
    """The style of the span of ``text`` (a rich Text) that starts with ``word``."""
    plain = text.plain
    for span in text.spans:
        if plain[span.start:span.end].strip().startswith(word):
            return span.style
    raise AssertionError(f"{word!r} not styled in {plain!r}")


def test_the_theme_list_is_textuals() -> None:
    """config.py names the themes without importing Textual: the list must be Textual's own."""
    assert len(THEMES) == len(set(THEMES))
    assert set(THEMES) == set(App().available_themes)
    assert {"textual-light", "solarized-light"} <= {t for t in THEMES if not BUILTIN_THEMES[t].dark}


async def test_the_configured_theme_is_applied(make_workspace) -> None:  # noqa: ANN001
    app = ReplydeskApp(make_workspace(theme="solarized-light"), start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.theme == "solarized-light"
        background = app.inbox.rich_style.bgcolor
        assert luminance(background) > 0.5  # a light list, not the default dark one
        breached = countdown_style(app, "breached")
        assert contrast(breached.color, background) >= 3  # the warning colour reads on light paper


async def test_every_theme_paints_each_state_distinctly_and_readably(workspace, db) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    failed = MessageView(id="m", direction="out", author="me", text="hi", created_at=FIXED, state="failed",
                         private=False, error=None, outbox_key=None, attempts=1, not_before=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        status = app.main.query_one(StatusBar)
        pane = app.main.query_one(SlaPane)
        header = app.main.query_one(HeaderBar)
        for theme in THEMES:
            app.theme = theme
            await settle(pilot)
            where = f"theme {theme}"
            # Inbox rows: breached, warning and ok countdowns all look different, and can be read.
            styles = {state: countdown_style(app, state) for state in STATES}
            assert len(set(styles.values())) == 3, (where, styles)
            background = app.inbox.rich_style.bgcolor
            if background is not None and not theme.startswith("ansi"):  # ansi: the terminal decides
                for state in ("breached", "warning"):
                    assert contrast(styles[state].color, background) >= 2.5, (where, state, styles[state])
            # The widgets' roles: error, warning and success differ wherever states are painted,
            # and the bars' states read on the bars' own background.
            for widget in (status, header, pane, app.thread_view, app.composer):
                roles = [widget.palette(r) for r in ("error", "warning", "success")]
                assert len(set(roles)) == 3, (where, type(widget).__name__, roles)
                bar = widget.rich_style.bgcolor
                if widget in (status, header) and bar is not None and not theme.startswith("ansi"):
                    assert min(contrast(r.color, bar) for r in roles) >= 2, (where, type(widget).__name__)
            # What is on screen follows the switch: the status bar was repainted in the new colours.
            assert span_style(status._shown, "ok") == status.palette("success"), where
            assert pane.state_style("breached") == pane.palette("error")
            rendered = app.thread_view.render_message(failed, FIXED)
            assert span_style(rendered, "FAILED") == app.thread_view.palette("error"), where


async def test_no_color_keeps_states_apart_without_colour(workspace, db, monkeypatch) -> None:  # noqa: ANN001
    """NO_COLOR (Textual's monochrome filter): states still differ by symbol, word or bold."""
    monkeypatch.setenv("NO_COLOR", "1")
    rows = queries.inbox_page(db, queries.InboxFilter(), 0, 1)
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.no_color and app.inbox.cursor_id == rows[0].id
        inbox, grey = app.inbox, Monochrome()
        background = Color.from_rich_color(inbox.rich_style.bgcolor)
        seen = {}
        for state, shown in STATES.items():
            segments = inbox.row_segments(inbox.current, 100, shown, base=inbox._base(), cursor=None, marked=False)
            plain = grey.apply([Segment(s.text, s.style) for s in segments], background)
            symbol = plain[4]
            countdown = next(s for s in plain if s.text.strip() == shown[0])
            seen[state] = (symbol.text, bool(countdown.style.bold))
        assert seen == {"breached": ("!", True), "warning": ("~", False), "ok": (" ", False)}
        header = app.main.query_one(HeaderBar)._shown.plain
        assert "! breached" in header and "~ warning" in header and "!)" in header
