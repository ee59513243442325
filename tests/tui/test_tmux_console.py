"""The console in a real terminal (tmux): what only a terminal shows (issue items 4, 8, 10).

Key parsing (escape then j arrives as one alt+j), cell widths as the terminal counts them (Indic
conjuncts under a dialog) and the colours as painted (SGR in ``capture-pane -e``).
"""

from __future__ import annotations

import re

import pytest

from replydesk.storage import queries
from replydesk.storage.db import open_database
from tmux_support import Console, styled_runs, wait_for

DEVANAGARI = re.compile("[\u0900-\u097f]")
pytestmark = pytest.mark.slow


def luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture
def console_factory(tmp_path):  # noqa: ANN001
    made: list[Console] = []

    def make(size: tuple[int, int] = (120, 30), **kw) -> Console:  # noqa: ANN003
        c = Console(tmp_path / "demo", size, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def dialog_lines(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if "█" in line]


@pytest.mark.parametrize("key", ["slash", "t"])
def test_dialog_borders_over_devanagari_rows_stay_whole(console_factory, key: str) -> None:
    """Over the demo's Hindi rows the dialog's border moved or doubled: the terminal and Rich
    disagree on the width of Indic conjuncts. The dialog now paints its lines whole, so whatever
    the terminal makes of a cluster, no row shares a line with the border."""
    console = console_factory((120, 30))
    before = console.wait_for_inbox().splitlines()
    console.keys({"slash": "/", "t": "t"}[key])
    screen = console.wait_until(lambda s: len(dialog_lines(s)) >= 5)
    assert screen, console.screen()
    lines = screen.splitlines()
    rows = [n for n, line in enumerate(lines) if "█" in line]
    assert any(DEVANAGARI.search(before[n]) for n in rows), "no Hindi row under the dialog: the test proves nothing"
    lefts = {line.index("█") for line in (lines[n] for n in rows)}
    assert len(lefts) == 1, "\n".join(lines[n] for n in rows)
    for n in rows:
        line = lines[n]
        assert not line[: line.index("█")].strip(), f"a row shares the dialog's line:\n{line}"
        assert line.rstrip().endswith("█"), f"the right border is broken:\n{line}"


def test_escape_then_j_leaves_the_thread_and_moves(console_factory, tmp_path) -> None:  # noqa: ANN001
    """Esc then j within the terminal's escape time arrived as alt+j and did nothing: a vim user
    leaving the thread and moving down stayed in the thread. Now it is escape, then j."""
    console = console_factory((120, 30))
    console.wait_for_inbox()
    db = open_database(tmp_path / "demo", create=False)
    try:
        first, second = (r.id for r in queries.inbox_page(db, queries.InboxFilter(), 0, 2))
        console.keys("Enter")  # read the first conversation: the key bar drops "Open"
        assert console.wait_until(lambda s: "Open" not in s.splitlines()[-1]), console.screen()
        console.keys("Escape", "j")  # one write: the console reads ESC j together
        console.keys("x")  # resolve what is selected now
        resolved = wait_for(lambda: [r[0] for r in db.conn.execute(
            "SELECT id FROM conversations WHERE status='resolved'")])
        assert resolved == [second], f"resolved {resolved}, not the second row: Esc j was lost"
        assert first not in resolved
    finally:
        db.close()


def test_no_color_header_counts_read_on_their_bar(console_factory) -> None:
    """With NO_COLOR=1 the header's breached count and channel tallies were drawn in the bar's
    own grey: invisible. Every run of the header now reads at 4.5:1 and the states keep their marks."""
    console = console_factory((120, 30), env={"NO_COLOR": "1"})
    console.wait_for_inbox()
    # The header paints zeros before its counts are read (the thread's reads share the reader):
    # wait for the channel tallies, which only the counts bring.
    screen = console.wait_until(lambda s: "!)" in "".join(t for t, *_ in styled_runs(s.splitlines()[0])),
                                escapes=True)
    runs = styled_runs(screen.splitlines()[0])
    shown = "".join(text for text, *_ in runs)
    assert "! breached" in shown and "~ warning" in shown and "!)" in shown
    measured = 0
    for text, fg, bg, _bold in runs:
        if text.strip() and fg is not None and bg is not None:
            assert contrast(fg, bg) >= 4.5, (text, fg, bg)
            measured += 1
    assert measured >= 5, runs  # the header's runs carry colours to judge
    breached = next(r for r in runs if r[0].startswith("! breached"))
    assert breached[3], "breached is bold without colour"


def test_a_count_before_j_moves_that_many_rows_beside_the_view_keys(console_factory, tmp_path) -> None:  # noqa: ANN001
    """5j typed at once: 5 is also view 5's key; the view comes back and the cursor moves five rows
    (x then resolves the sixth row, not the first, nor a row of view 5)."""
    console = console_factory((120, 30))
    console.wait_for_inbox()
    db = open_database(tmp_path / "demo", create=False)
    try:
        sixth = queries.inbox_page(db, queries.InboxFilter(), 5, 1)[0].id
        console.keys("5", "j")
        assert console.wait_until(lambda s: s.startswith(" replydesk  Inbox (")), console.screen()
        console.keys("x")
        resolved = wait_for(lambda: [r[0] for r in db.conn.execute(
            "SELECT id FROM conversations WHERE status='resolved'")])
        assert resolved == [sixth], resolved
    finally:
        db.close()
