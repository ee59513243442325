"""The rules screen: what each rule of the config would have done to the stored history.

The same dry run as ``replydesk rules test`` (``replydesk.rules.dry_run``), computed in a thread
worker on the console's reader, so nothing changes and the screen opens at once and fills in. One
row per rule (conversations, times, what it would do, what it would leave out); the highlighted
rule's sample of matches below. ``w`` changes the window (1, 7, 30, 90 days).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from replydesk.rules import DryRun, dry_run
from replydesk.safetext import one_line
from replydesk.tui.keybar import KeyBar
from replydesk.tui.workers import background

if TYPE_CHECKING:
    from replydesk.tui.app import ReplydeskApp

WINDOWS_DAYS = (30, 90, 1, 7)


class DryRunReady(Message):
    def __init__(self, days: int, report: DryRun | None, error: str = "") -> None:
        super().__init__()
        self.days, self.report, self.error = days, report, error


def _actions(counts: dict[str, int]) -> str:
    return ", ".join(f"{a} ×{n}" for a, n in sorted(counts.items())) or "-"


class RulesScreen(Screen[None]):
    """Each rule's dry run over the last ``days``; ``w`` cycles the window."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="rules.back"),
        Binding("w", "cycle_window", "Window", id="rules.window"),
    ]

    DEFAULT_CSS = """
    RulesScreen #rules-title { height: 1; padding: 0 1; background: $boost; }
    RulesScreen DataTable { height: auto; max-height: 50%; }
    RulesScreen #rules-sample { height: 1fr; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.days = WINDOWS_DAYS[0]
        self.report: DryRun | None = None

    @property
    def rd_app(self) -> ReplydeskApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(Text("Rules · dry run · computing…"), id="rules-title")
        with Vertical():
            yield DataTable(id="rules-table", zebra_stripes=True, cursor_type="row")
            yield Static(Text(""), id="rules-sample")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    def action_cycle_window(self) -> None:
        self.days = WINDOWS_DAYS[(WINDOWS_DAYS.index(self.days) + 1) % len(WINDOWS_DAYS)]
        self.query_one("#rules-title", Static).update(Text(f"Rules · dry run over {self.days} days · computing…"))
        self.load()

    @background("trying the rules", group="rules", exclusive=True)
    def load(self) -> None:
        app = self.rd_app
        days = self.days
        config = app.workspace.config
        if not config.rules:
            self.post_message(DryRunReady(days, None, "No rules in the config: add a rules: section "
                                                      "(config.example.yaml shows each condition and action)."))
            return

        def compute(db: Any) -> DryRunReady:
            until = app.clock()
            return DryRunReady(days, dry_run(db, config, until - days * 86400, until))

        self.post_message(app.store.read(compute))

    def on_dry_run_ready(self, event: DryRunReady) -> None:
        if event.days != self.days:
            return
        title = self.query_one("#rules-title", Static)
        table = self.query_one("#rules-table", DataTable)
        table.clear(columns=True)
        if event.report is None:
            title.update(Text("Rules · dry run"))
            self.query_one("#rules-sample", Static).update(Text(event.error))
            return
        self.report = event.report
        title.update(Text(f"Rules · dry run over {event.days} days ({event.report.messages} customer messages; "
                          "nothing is changed) · w: window"))
        table.add_columns("rule", "conversations", "times", "would do", "would not")
        for summary in event.report.rules.values():
            # rule names and tags come from the config, reasons may quote customers: plain Text
            table.add_row(Text(summary.rule), Text(str(len(summary.conversations))), Text(str(summary.firings)),
                          Text(_actions(summary.actions)), Text(_actions(summary.skipped)))
        self._show_sample(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_sample(event.cursor_row)

    def _show_sample(self, index: int) -> None:
        if self.report is None or not self.report.rules:
            return
        summaries = list(self.report.rules.values())
        summary = summaries[max(0, min(index, len(summaries) - 1))]
        text = Text(f"{summary.rule}: {len(summary.sample)} of {summary.firings} shown\n", style="bold")
        for m in summary.sample:
            text.append(f"{m['at']}  {m['conversation']}  ")
            text.append(one_line(m["customer"])[:24], style="bold")
            text.append(f": {one_line(m['text'])[:70]}\n")
            if m["done"] or m["skipped"]:
                text.append("    " + "; ".join([*m["done"], *(f"not {s}" for s in m["skipped"])]) + "\n", style="dim")
        if not summary.sample:
            text.append("no match in this window", style="dim")
        self.query_one("#rules-sample", Static).update(text)
