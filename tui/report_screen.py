"""The report screen: the same figures as ``replydesk report`` plus two terminal plots.

The figures are computed in a thread worker from the event log (``replydesk.reporting``), so the
screen opens at once and fills in; the plots use textual-plotext (response-time distribution and
breaches per day).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from replydesk.report import breaches_per_day, build_report, reply_times
from replydesk.reporting import COLUMNS, GROUPINGS, collect
from replydesk.sla import SlaEngine
from replydesk.tui.keybar import KeyBar
from replydesk.tui.keymap import bindings
from replydesk.tui.workers import background

if TYPE_CHECKING:
    from replydesk.tui.app import ReplydeskApp


class ReportReady(Message):
    def __init__(self, by: str | None, report: dict[str, Any], minutes: list[float],
                 per_day: dict[str, int]) -> None:
        super().__init__()
        self.by, self.report, self.minutes, self.per_day = by, report, minutes, per_day


class ReportScreen(Screen[None]):
    """Response times for everything in the cache; ``b`` cycles the grouping."""

    BINDINGS = bindings("report")

    DEFAULT_CSS = """
    ReportScreen #report-title { height: 1; padding: 0 1; background: $boost; }
    ReportScreen DataTable { height: auto; max-height: 45%; }
    ReportScreen #plots { height: 1fr; }
    ReportScreen PlotextPlot { width: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.by: str | None = None

    @property
    def rd_app(self) -> ReplydeskApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(Text("Response-time report · computing…"), id="report-title")
        with Vertical():
            yield DataTable(id="report-table", zebra_stripes=True, cursor_type="row")
            with Horizontal(id="plots"):
                yield PlotextPlot(id="plot-times")
                yield PlotextPlot(id="plot-breaches")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    def action_cycle_grouping(self) -> None:
        order = [None, *GROUPINGS]
        self.by = order[(order.index(self.by) + 1) % len(order)]
        self.query_one("#report-title", Static).update(Text("Response-time report · computing…"))
        self.load()

    @background("computing the report", group="report", exclusive=True)
    def load(self) -> None:
        app = self.rd_app
        by = self.by

        def compute(db: Any) -> ReportReady:
            until = app.clock()
            engine = SlaEngine(app.workspace.config.sla)
            items = collect(db, engine, None, until, by)
            report = build_report(items, None, until, by)
            minutes = [s / 60 for s in reply_times(items, "first_reply")]
            return ReportReady(by, report, minutes, breaches_per_day(items))

        self.post_message(app.store.read(compute))

    def on_report_ready(self, event: ReportReady) -> None:
        if event.by != self.by:
            return
        grouping = event.by or "everything"
        self.query_one("#report-title", Static).update(
            Text(f"Response-time report · until {event.report['until']} · by {grouping} (b to change)")
        )
        table = self.query_one("#report-table", DataTable)
        table.clear(columns=True)
        table.add_columns("group", *[name for name, _ in COLUMNS])
        for group in event.report["groups"]:
            # group keys can be customer-made tags: plain Text, never markup
            table.add_row(Text(str(group["key"])), *[Text(fn(group)) for _, fn in COLUMNS])
        self._plot_times(event.minutes)
        self._plot_breaches(event.per_day)

    def _plot(self, selector: str, title: str, draw: Any) -> None:
        """Redraw one plot from scratch; ``draw(plt)`` adds the data (nothing when there is none)."""
        widget = self.query_one(selector, PlotextPlot)
        widget.plt.clear_data()
        widget.plt.clear_figure()
        widget.plt.title(title)
        draw(widget.plt)
        widget.refresh()

    def _plot_times(self, minutes: list[float]) -> None:
        self._plot("#plot-times", "First reply time (minutes)",
                   lambda plt: minutes and plt.hist([min(m, 24 * 60) for m in minutes], bins=24))

    def _plot_breaches(self, per_day: dict[str, int]) -> None:
        days = list(per_day)[-14:]
        self._plot("#plot-breaches", "Breaches per day",
                   lambda plt: days and plt.bar([d[5:] for d in days], [per_day[d] for d in days]))
