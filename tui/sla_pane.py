"""The SLA pane: each active metric of the selected conversation, with the numbers behind the colour.

The list shows calendar time to breach (fair to sort by); this pane adds the target, business time
left and the pause reason, from ``slastate.evaluate_at`` run in a worker at the app's clock.

Its height stays put while the cursor moves (at least 5 lines beside the inbox, 3 below it: what
most conversations need): a pane that grew and shrank with each conversation re-laid out the whole
screen on most ``j``/``k`` — three frames, 15-30 ms after the highlight — and made the thread jump.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.css.scalar import Unit
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from replydesk.safetext import one_line
from replydesk.sla import MetricState, SlaResult
from replydesk.storage.queries import InboxRow
from replydesk.tui.format import STATE_SYMBOL, duration, safe_line
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


def _lines(lines: list[Text], height: int) -> Text:
    """At most ``height`` lines, none of them wrapping (the pane's height would cut them off)."""
    out = Text("\n").join(lines[:height])
    out.no_wrap, out.overflow = True, "ellipsis"
    return out


class SlaPane(Widget):
    """SLA metrics for the conversation under the cursor.

    Painted line by line from strips made once per text (``render_line``), not as a ``Static``:
    its content pipeline (wrapping, re-styling) cost about 1 ms of the frame of each key for five
    lines that never wrap."""

    COMPONENT_CLASSES = ROLE_CLASSES
    DEFAULT_CSS = """
    SlaPane {
        background: $panel;
        padding: 0 1;
        height: auto;
        min-height: 5;
        max-height: 6;
    }
    """ + role_css("SlaPane")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.palette = Palette(self)
        self._args: tuple[InboxRow | None, SlaResult | None, float, tuple] | None = None
        self._shown = Text("")
        self._fitted_height = -1
        self._strips: tuple[tuple[int, Style], list[Strip]] | None = None  # (width, style) they were cut for

    def on_mount(self) -> None:
        follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        if self._args is not None:
            self.show(*self._args)

    def state_style(self, state: str) -> Style | str:
        role, extra = STATE_ROLE.get(state, (None, ""))
        return self.palette(role, extra) if role else extra

    def show(self, row: InboxRow | None, sla: SlaResult | None, now: float, tickets: tuple = ()) -> None:
        """``tickets``: the helpdesk tickets its escalations made (``storage.tickets.Ticket``)."""
        self._args = (row, sla, now, tuple(tickets))
        text = self.render_sla(row, sla, now, self._width(), self._height(), tickets=tuple(tickets))
        if text == self._shown:
            return  # a refresh with nothing new must not cost a layout pass
        self._shown, self._strips = text, None
        height = self._fitted(text.plain.count("\n") + 1)
        self.refresh(layout=height != self._fitted_height)
        self._fitted_height = height

    def render(self) -> Text:
        """The text shown (``render_line`` paints it)."""
        return self._shown

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._shown.plain.count("\n") + 1

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None

    def render_line(self, y: int) -> Strip:
        width, base = self.content_region.width, self.rich_style
        if self._strips is None or self._strips[0] != (width, base):
            console = self.app.console
            strips = []
            for line in self._shown.split("\n", allow_blank=True):
                line.truncate(width, overflow="ellipsis")  # a line never wraps (``render_sla`` fits them)
                strip = Strip(list(line.render(console, end="")), line.cell_len)
                strips.append(strip.adjust_cell_length(width).apply_style(base))
            self._strips = ((width, base), strips)
        strips = self._strips[1]
        return strips[y] if y < len(strips) else Strip.blank(width, base)

    def _width(self) -> int:
        return max(self.size.width - 2, 20) if self.size.width else 80  # padding: 0 1

    def _height(self) -> int:
        """The lines the pane may use (its max-height: 6 beside the inbox, 3 below it)."""
        max_height = self.styles.max_height
        return int(max_height.value) if max_height is not None and max_height.unit == Unit.CELLS else 6

    def _fitted(self, lines: int) -> int:
        """The pane's height for ``lines`` of text: a layout is needed only when this changes."""
        low = self.styles.min_height
        least = int(low.value) if low is not None and low.unit == Unit.CELLS else 0
        return min(max(lines, least), self._height())

    def on_resize(self) -> None:
        if self._args is not None:
            self.show(*self._args)

    def render_sla(self, row: InboxRow | None, sla: SlaResult | None, now: float, width: int = 200,
                   height: int = 6, *, tickets: tuple = ()) -> Text:
        """One line per metric, each made to fit ``width`` (nothing wraps, so nothing is cut off by
        the pane's height), under the reply window's line and a title line when there is room."""
        if row is None:
            return Text("SLA: nothing selected", style="dim")
        window = self.window_line(row, now)  # second: when a reply may go at all is read first
        extra = [window] if window is not None else []
        for ticket in tickets:  # then where the case was handed over, and where it stands there
            extra.append(Text.assemble(("Ticket ", "bold"), safe_line(ticket.summary(), self.palette("special"))))
        if row.listening and (sla is None or not any(m.active for m in sla.metrics)):
            head = Text.assemble(("Listening ", "bold"), ("found by ", "dim"), safe_line(row.listening, "bold"),
                                 (" · no SLA clock · a reply joins it to the inbox", "dim"))
            return _lines([head, *extra], height)
        if sla is None or sla.policy is None:
            age = now - row.last_message_at
            head = Text.assemble(("SLA ", "bold"), ("no policy applies · last message ", "dim"),
                                 (duration(age) + " ago", ""))
            return _lines([head, *extra], height)
        title = Text.assemble(("SLA ", "bold"), safe_line(sla.policy, "bold"),
                              (f" · {sla.state}", self.state_style(sla.state)))
        metrics = [m for m in sla.metrics if m.active or m.state == "breached"] or sla.metrics
        lines = [*extra, *(self.metric_line(m, width) for m in metrics)]
        if len(lines) < height:
            lines.insert(0, title)
        return _lines(lines, height)

    def window_line(self, row: InboxRow, now: float) -> Text | None:
        """The platform's reply window, counted down (``tui.window_text``): when replies must be
        in, and what is left once it closes. The words carry it without colour too."""
        found = pane_line(row, now)
        if found is None:
            return None
        label, detail, role = found
        return Text.assemble(("  Reply window", "bold"), (f" {label}", self.palette(role) if role else ""),
                             (f" · {detail}", ""))

    def metric_line(self, m: MetricState, width: int = 200) -> Text:
        """The metric in the longest form that fits ``width``: target, calendar, time left and the
        business time left; shorter forms drop the calendar name, then the words."""
        style = self.state_style(m.state)
        label = METRIC_LABEL.get(m.metric, m.metric)
        if m.fulfilled_at is not None:
            left = " · met"
        else:
            left = f" · left {_left(m.calendar_seconds_left)}"
            if m.calendar != "24x7":
                left += f" · business {_left(m.business_seconds_left)}"
        paused = f" · paused: {one_line(m.paused_reason)}" if m.paused_reason else ""
        forms = [
            (f"{label:<11}", f" {m.state:<9}", f" target {duration(m.target_seconds)} ({m.calendar})", left + paused),
            (f"{label:<11}", f" {m.state:<9}", f" target {duration(m.target_seconds)}", left + paused),
            (label, f" {m.state}", f" /{duration(m.target_seconds)}", left.replace(" business", " biz") + paused),
            (label, f" {m.state}", "", left.replace(" left", "").replace(" business", " biz") + paused),
        ]
        for head, state, target, rest in forms:
            t = Text.assemble((STATE_SYMBOL.get(m.state, " ") + " ", style), (head, "bold"), (state, style),
                              (target, "dim"), (rest, ""))
            if t.cell_len <= width:
                break
        t.no_wrap, t.overflow = True, "ellipsis"
        return t
