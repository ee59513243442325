"""The header (counts + per-channel urgency bar) and the status bar (sync state, queued replies).

Both are plain ``Static`` widgets fed by ``HeaderLoaded``; they format, never query. Colours come
from the theme (``tui.palette``); every state also shows a mark or a word, for ``NO_COLOR``.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from replydesk.platforms import info
from replydesk.storage.queries import Counts
from replydesk.tui.format import LISTENING_SYMBOL, clock_time, safe
from replydesk.tui.palette import ROLE_CLASSES, Palette, follow_theme, role_css

#: Account state -> its colour role (None: dim) and its mark.
STATE_ROLE = {"ok": "success", "idle": None, "syncing": "accent", "backoff": "warning", "rate_limited": "warning",
              "offline": "error", "auth_error": "error", "stalled": "error", "error": "error"}
STATE_MARK = {"ok": "●", "idle": "○", "syncing": "↻", "backoff": "…", "rate_limited": "⧗", "offline": "✕",
              "auth_error": "✕", "stalled": "⚠", "error": "✕"}


class _Bar(Static):
    """A one-line bar that repaints only when its text changed: the engine's writes refresh the
    counts every second while syncing, and a repaint that changes nothing still costs a keypress
    its frame."""

    COMPONENT_CLASSES = ROLE_CLASSES
    _shown: Text | None = None
    _args: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.palette = Palette(self)

    def on_mount(self) -> None:
        follow_theme(self, self._restyle)

    def _restyle(self) -> None:
        if self._args is not None:
            args, kwargs = self._args
            self.show(*args, **kwargs)

    def show(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - each bar defines it
        raise NotImplementedError

    def show_text(self, text: Text) -> None:
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # always one line


class HeaderBar(_Bar):
    """Title, view, counts and a WeeChat-style hotlist of channels, most urgent first."""

    DEFAULT_CSS = """
    HeaderBar {
        height: 1;
        background: $panel;  /* not $primary-background: light themes make it too strong to read states on */
        color: $text;
    }
    """ + role_css("HeaderBar")

    def show(self, view: str, shown: int, counts: Counts | None) -> None:
        self._args = ((view, shown, counts), {})
        self.show_text(self.render_header(view, shown, counts))

    def render_header(self, view: str, shown: int, counts: Counts | None) -> Text:
        role = self.palette
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        t.append(" replydesk ", style="bold reverse")
        t.append(" ")
        t.append_text(safe(view, "bold"))
        t.append(f" ({shown})  ", style="dim")
        if counts is None:
            return t
        t.append(f"open {counts.open}  ")
        t.append(f"! breached {counts.breached}", style=role("error") if counts.breached else "dim")
        t.append("  ")
        t.append(f"~ warning {counts.warning}", style=role("warning") if counts.warning else "dim")
        if counts.listening:  # posts found by listening, waiting in their own view (key 7 by default)
            t.append(f"  {LISTENING_SYMBOL} listening {counts.listening}", style="dim")
        t.append("  │ Act: ", style="dim")
        ranked = sorted(counts.by_platform.items(),
                        key=lambda kv: (-kv[1]["breached"], -kv[1]["warning"], -kv[1]["open"], kv[0]))
        for platform, c in ranked:
            style = role("error") if c["breached"] else role("warning") if c["warning"] else "dim"
            t.append(info(platform).short, style=style)
            t.append(f":{c['open']}", style=style)
            if c["breached"]:
                t.append(f"({c['breached']}!)", style=style)
            elif c["warning"]:  # the mark says it without colour, as "!" does for breaches
                t.append(f"({c['warning']}~)", style=style)
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
    """ + role_css("StatusBar")

    def show(self, accounts: list[dict[str, Any]], queued: int, failed: int, engine_note: str,
             now: float, tz: str | None = None, *, problem: str | None = None) -> None:
        self._args = ((accounts, queued, failed, engine_note, now, tz), {"problem": problem})
        self.show_text(self.render_status(accounts, queued, failed, engine_note, now, tz, problem=problem))

    def render_status(self, accounts: list[dict[str, Any]], queued: int, failed: int, engine_note: str,
                      now: float, tz: str | None = None, *, problem: str | None = None) -> Text:
        role = self.palette
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        offline = not accounts or all(a["state"] in ("offline", "auth_error") for a in accounts)
        for a in accounts:
            state = a["state"]
            name = STATE_ROLE.get(state)
            style = role(name) if name else "dim" if state in STATE_ROLE else ""
            t.append(" " + STATE_MARK.get(state, "?") + " ", style=style)
            t.append_text(safe(a["account"]))
            label = state.replace("_", "-")
            if state == "rate_limited" and a.get("until"):
                label += f" until {clock_time(a['until'], now, tz)}"
            elif state == "ok" and a.get("last_sync"):
                label += f" {clock_time(a['last_sync'], now, tz)}"
            t.append(f" {label}", style=style)
            if a.get("detail") and state not in ("ok", "idle", "syncing"):
                t.append(": ")
                t.append_text(safe(str(a["detail"])[:60], "dim"))
            if a.get("note"):  # push or polling, spend, waits per endpoint (X): shown in every state
                t.append(" · ", style="dim")
                t.append_text(safe(str(a["note"])[:100], role("warning") if "⚠" in str(a["note"]) else "dim"))
        if problem:  # a read or write that failed: first after the accounts, so it is never cut off
            t.append("  │ ", style="dim")
            t.append("⚠ ", style=role("error"))
            t.append_text(safe(problem[:80], role("error")))
        t.append("  │ ", style="dim")
        t.append(f"{queued} repl{'y' if queued == 1 else 'ies'} queued", style=role("warning") if queued else "dim")
        if failed:
            t.append(f"  {failed} failed", style=role("error"))
        if offline or any(a["state"] == "offline" for a in accounts):
            t.append("  │ ", style="dim")
            t.append("offline — replies will wait", style=role("warning", "bold"))
        if engine_note:
            t.append("  │ ", style="dim")
            t.append(engine_note, style="dim")
        return t
