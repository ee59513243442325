"""The header (counts + per-channel urgency bar) and the status bar (sync state, queued replies).

Both are plain ``Static`` widgets fed by ``HeaderLoaded``; they format, never query.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from replydesk.platforms import info
from replydesk.storage.queries import Counts
from replydesk.tui.format import clock_time, safe

STATE_STYLE = {
    "ok": "green", "idle": "dim", "syncing": "cyan", "backoff": "yellow", "rate_limited": "yellow",
    "offline": "bold red", "auth_error": "bold red",
}
STATE_MARK = {"ok": "●", "idle": "○", "syncing": "↻", "backoff": "…", "rate_limited": "⧗", "offline": "✕",
              "auth_error": "✕"}


class _Bar(Static):
    """A one-line bar that repaints only when its text changed: the engine's writes refresh the
    counts every second while syncing, and a repaint that changes nothing still costs a keypress
    its frame."""

    _shown: Text | None = None

    def show_text(self, text: Text) -> None:
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # always one line


class HeaderBar(_Bar):
    """Title, view, counts and a WeeChat-style hotlist of channels, most urgent first."""

    DEFAULT_CSS = """
    HeaderBar {
        height: 1;
        background: $primary-background;
        color: $text;
    }
    """

    def show(self, view: str, shown: int, counts: Counts | None) -> None:
        self.show_text(self.render_header(view, shown, counts))

    @staticmethod
    def render_header(view: str, shown: int, counts: Counts | None) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        t.append(" replydesk ", style="bold reverse")
        t.append(" ")
        t.append_text(safe(view, "bold"))
        t.append(f" ({shown})  ", style="dim")
        if counts is None:
            return t
        t.append(f"open {counts.open}  ")
        t.append(f"! breached {counts.breached}", style="bold red" if counts.breached else "dim")
        t.append("  ")
        t.append(f"~ warning {counts.warning}", style="yellow" if counts.warning else "dim")
        t.append("  │ Act: ", style="dim")
        ranked = sorted(counts.by_platform.items(),
                        key=lambda kv: (-kv[1]["breached"], -kv[1]["warning"], -kv[1]["open"], kv[0]))
        for platform, c in ranked:
            style = "bold red" if c["breached"] else "yellow" if c["warning"] else "dim"
            t.append(info(platform).short, style=style)
            t.append(f":{c['open']}", style=style)
            if c["breached"]:
                t.append(f"({c['breached']}!)", style=style)
            t.append(" ")
        return t


class StatusBar(_Bar):
    """Per-account sync state and queued replies; says plainly when replies are waiting offline."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $text;
    }
    """

    def show(self, accounts: list[dict[str, Any]], queued: int, failed: int, engine_note: str,
             now: float, tz: str | None = None) -> None:
        self.show_text(self.render_status(accounts, queued, failed, engine_note, now, tz))

    @staticmethod
    def render_status(accounts: list[dict[str, Any]], queued: int, failed: int, engine_note: str,
                      now: float, tz: str | None = None) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        offline = not accounts or all(a["state"] in ("offline", "auth_error") for a in accounts)
        for a in accounts:
            state = a["state"]
            t.append(" " + STATE_MARK.get(state, "?") + " ", style=STATE_STYLE.get(state, ""))
            t.append_text(safe(a["account"]))
            label = state.replace("_", "-")
            if state == "rate_limited" and a.get("until"):
                label += f" until {clock_time(a['until'], now, tz)}"
            elif state == "ok" and a.get("last_sync"):
                label += f" {clock_time(a['last_sync'], now, tz)}"
            t.append(f" {label}", style=STATE_STYLE.get(state, ""))
            if a.get("detail") and state not in ("ok", "idle", "syncing"):
                t.append(": ")
                t.append_text(safe(str(a["detail"])[:60], "dim"))
            if a.get("note"):  # push or polling, spend, waits per endpoint (X): shown in every state
                t.append(" · ", style="dim")
                t.append_text(safe(str(a["note"])[:100], "yellow" if "⚠" in str(a["note"]) else "dim"))
        t.append("  │ ", style="dim")
        t.append(f"{queued} repl{'y' if queued == 1 else 'ies'} queued", style="yellow" if queued else "dim")
        if failed:
            t.append(f"  {failed} failed", style="bold red")
        if offline or any(a["state"] == "offline" for a in accounts):
            t.append("  │ ", style="dim")
            t.append("offline — replies will wait", style="bold yellow")
        if engine_note:
            t.append("  │ ", style="dim")
            t.append(engine_note, style="dim")
        return t
