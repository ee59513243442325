"""Snapshots of the main screen at 80x24 and 160x48: fixed clock, fixed seed, no engine thread.

Update after an intended visual change with ``pytest tests/tui --snapshot-update`` and review the
SVGs in ``__snapshots__``.
"""

from __future__ import annotations

from replydesk.tui.app import ReplydeskApp
from tui_support import fixed_clock, settle


async def _ready(pilot) -> None:  # noqa: ANN001
    await settle(pilot)
    await pilot.pause(0.1)  # the thread read (and those read ahead)
    await settle(pilot)


def test_main_screen_80x24(workspace, snap_compare) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_ready)


def test_main_screen_160x48(workspace, snap_compare) -> None:  # noqa: ANN001
    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    assert snap_compare(app, terminal_size=(160, 48), run_before=_ready)


def test_composer_open_160x48(workspace, snap_compare) -> None:  # noqa: ANN001
    async def compose(pilot) -> None:  # noqa: ANN001
        await _ready(pilot)
        await pilot.press("j", "r")
        await pilot.press(*"Hi there")
        # the cursor as drawn right after typing, whatever phase its blink timer reached on a busy machine
        pilot.app.composer.text_area.cursor_blink = False
        await _ready(pilot)

    app = ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)
    assert snap_compare(app, terminal_size=(160, 48), run_before=compose)


def test_main_screen_light_theme_120x36(make_workspace, snap_compare) -> None:  # noqa: ANN001
    """ui.theme: a light theme, every state coloured from its variables (see test_themes.py)."""
    app = ReplydeskApp(make_workspace(theme="catppuccin-latte"), start_engine=False, clock=fixed_clock)
    assert snap_compare(app, terminal_size=(120, 36), run_before=_ready)
