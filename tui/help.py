"""The help screen: every binding active where ``?`` was pressed, with the keys after the keymap.

It is built from ``Screen.active_bindings`` (the real dispatch chain with the user's keymap
applied), so it can never drift from what the keys actually do.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from replydesk.keys import BY_ID
from replydesk.tui.keymap import bindings
from replydesk.tui.palette import ROLE_CLASSES, Palette, role_css


def binding_rows(active: dict[str, ActiveBinding], app_format_key) -> list[tuple[str, str, str, str]]:  # noqa: ANN001
    """(context, keys, description, binding id) grouped by binding, in declaration order."""
    grouped: dict[tuple[int, str], list[str]] = {}
    info: dict[tuple[int, str], tuple[str, Binding]] = {}
    for key, ab in active.items():
        b = ab.binding
        if not b.description and not b.id:
            continue
        ident = (id(ab.node), b.id or b.action)
        grouped.setdefault(ident, []).append(app_format_key(key))
        info.setdefault(ident, (type(ab.node).__name__, b))
    rows = []
    for ident, keys in grouped.items():
        context, b = info[ident]
        spec = BY_ID.get(b.id or "")
        does = spec.description + (" · takes a count" if spec.count else "") if spec else b.description or b.action
        rows.append((context, " ".join(dict.fromkeys(keys)), does, b.id or ""))
    return rows


COUNTS_HELP = ("Counts: a number before j k pagedown pageup G space x o t T a e s repeats or widens it (5j, "
               "3x resolves this row and the next two). 1-9 switch views at once; when a count key follows, the "
               "number was a count and the view you were on comes back.")


class HelpScreen(ModalScreen[None]):
    """A modal table of bindings; escape, q or ? closes it."""

    BINDINGS = bindings("help")
    COMPONENT_CLASSES = ROLE_CLASSES

    # A band as wide as the screen, like the dialogs' (tui.dialogs): no inbox row shares a line
    # with the border.
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > .band { width: 100%; height: 90%; background: $background 70%; align-horizontal: center; }
    HelpScreen > .band > VerticalScroll {
        width: 100; max-width: 98%; height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """ + role_css("HelpScreen")

    def __init__(self, rows: list[tuple[str, str, str, str]], context: str) -> None:
        super().__init__()
        self.rows, self.context = rows, context

    def compose(self) -> ComposeResult:
        table = Table(title=f"Keys — {self.context}", expand=True, show_edge=False, header_style="bold")
        table.add_column("where", style="dim", no_wrap=True)
        table.add_column("keys", style=Palette(self)("accent", "bold"), no_wrap=True)
        table.add_column("does")
        table.add_column("keymap id", style="dim", no_wrap=True)
        for context, keys, description, ident in self.rows:
            table.add_row(context, keys, description, ident)
        with Horizontal(classes="band"), VerticalScroll():
            yield Static(table)
            yield Static(Text(COUNTS_HELP, style="dim"))
            yield Static(Text("Remap any key in config.yaml: keymap: {id: \"keys\"} · ctrl+p: every action "
                              "· mouse: a click selects a row, the wheel scrolls the pane under the pointer",
                              style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
