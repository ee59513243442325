"""The SLA pane: each active metric of the selected conversation, with the numbers behind the colour.

The list shows calendar time to breach (fair to sort by); this pane adds the target, business time
left and the pause reason, from ``slastate.evaluate_at`` run in a worker at the app's clock.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from replydesk.sla import MetricState, SlaResult
from replydesk.storage.queries import InboxRow
from replydesk.tui.format import STATE_SYMBOL, duration, one_line, safe
from replydesk.tui.palette import ROLE_CLASSES, Palette, follow_theme, role_css
from replydesk.tui.window_text import pane_line

METRIC_LABEL = {"first_reply": "First reply", "next_reply": "Next reply", "resolution": "Resolution"}
#: SLA state -> (colour role, extra attributes); paused is dim, without a colour of its own.
STATE_ROLE = {"breached": ("error", ""), "warning": ("warning", ""), "paused": (None, "dim"), "ok": ("success", ""),
              "fulfilled": ("success", "dim")}


def _left(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return ("-" if seconds < 0 else "") + duration(seconds)


class SlaPane(Static):
    """SLA metrics for the conversation under the cursor."""

    COMPONENT_CLASSES = ROLE_CLASSES
    DEFAULT_CSS = """
    SlaPane {
        background: $panel;
        padding: 0 1;
        height: auto;
        max-height: 6;
    }
    """ + role_css("SlaPane")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.palette = Palette(self)
        self._args: tuple[InboxRow | None, SlaResult | None, float] | None = None

    def on_mount(self) -> None:
        follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        if self._args is not None:
            self.show(*self._args)

    def state_style(self, state: str) -> Style | str:
        role, extra = STATE_ROLE.get(state, (None, ""))
        return self.palette(role, extra) if role else extra

    def show(self, row: InboxRow | None, sla: SlaResult | None, now: float) -> None:
        self._args = (row, sla, now)
        text = self.render_sla(row, sla, now)
        if text == getattr(self, "_shown", None):
            return  # a refresh with nothing new must not cost a layout pass
        self._shown = text
        self.update(text, layout=text.plain.count("\n") != getattr(self, "_lines", -1))
        self._lines = text.plain.count("\n")

    def render_sla(self, row: InboxRow | None, sla: SlaResult | None, now: float) -> Text:
        if row is None:
            return Text("SLA: nothing selected", style="dim")
        window = self.window_line(row, now)  # second: when a reply may go at all is read first
        if row.listening and (sla is None or not any(m.active for m in sla.metrics)):
            out = Text.assemble(("Listening ", "bold"), ("found by ", "dim"), safe(one_line(row.listening), "bold"),
                                (" · no SLA clock · a reply joins it to the inbox", "dim"))
            if window is not None:
                out.append("\n")
                out.append_text(window)
            return out
        if sla is None or sla.policy is None:
            age = now - row.last_message_at
            out = Text.assemble(("SLA ", "bold"), ("no policy applies · last message ", "dim"),
                                (duration(age) + " ago", ""))
            if window is not None:
                out.append("\n")
                out.append_text(window)
            return out
        out = Text.assemble(("SLA ", "bold"), safe(sla.policy, "bold"), (f" · {sla.state}", self.state_style(sla.state)))
        if window is not None:
            out.append("\n")
            out.append_text(window)
        metrics = [m for m in sla.metrics if m.active or m.state == "breached"] or sla.metrics
        for m in metrics:
            out.append("\n")
            out.append_text(self.metric_line(m))
        return out

    def window_line(self, row: InboxRow, now: float) -> Text | None:
        """The platform's reply window, counted down (``tui.window_text``): when replies must be
        in, and what is left once it closes. The words carry it without colour too."""
        found = pane_line(row, now)
        if found is None:
            return None
        label, detail, role = found
        return Text.assemble(("  Reply window", "bold"), (f" {label}", self.palette(role) if role else ""),
                             (f" · {detail}", ""))

    def metric_line(self, m: MetricState) -> Text:
        style = self.state_style(m.state)
        t = Text.assemble(
            (STATE_SYMBOL.get(m.state, " ") + " ", style),
            (f"{METRIC_LABEL.get(m.metric, m.metric):<11}", "bold"),
            (f" {m.state:<9}", style),
            (f" target {duration(m.target_seconds)} ({m.calendar})", "dim"),
        )
        if m.fulfilled_at is not None:
            t.append(" · met", style="dim")
        else:
            t.append(f" · left {_left(m.calendar_seconds_left)}")
            if m.calendar != "24x7":
                t.append(f" · business {_left(m.business_seconds_left)}")
        if m.paused_reason:
            t.append(" · paused: ", style="dim")
            t.append_text(safe(m.paused_reason, "dim"))
        return t
