"""The key hints line at the bottom: one Text, repainted only when the shown keys change.

Textual's Footer recomposes (unmounts and mounts a widget per key) on every focus change; that cost
50-140 ms per enter/escape in bench/, far over a 16 ms frame. This shows the same information, the
active bindings with ``show=True`` in the order they are declared, as a single line.
"""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, TextArea


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; background: $footer-background; color: $footer-foreground; }
    KeyBar > .keybar--key { color: $footer-key-foreground; text-style: bold; }
    """
    COMPONENT_CLASSES = {"keybar--key"}

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown: tuple[tuple[str, str], ...] = ()
        self._line = Text()
        self._strip: Strip | None = None

    def render_line(self, y: int) -> Strip:
        """The line as a cached strip: turning a Text into strips cost 1.3 ms a repaint."""
        width = self.size.width
        if y:
            return Strip.blank(width, self.rich_style)
        if self._strip is None or self._strip.cell_length != width:
            segments = list(self._line.render(self.app.console, end=""))
            self._strip = Strip(segments).adjust_cell_length(width).apply_style(self.rich_style)
        return self._strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strip = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self._bindings_changed, self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self._paint()

    def _bindings_changed(self, screen: Screen) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        shown: list[tuple[str, str]] = []
        seen: set[str] = set()
        # In a text field a printable key is typed, not a binding: do not offer it ("/ Search").
        typing = isinstance(screen.focused, TextArea | Input)
        for key, (_node, binding, enabled, _tooltip) in screen.active_bindings.items():
            if not binding.show or not enabled or binding.action in seen:
                continue
            if typing and len(key) == 1 or typing and key in ("slash", "question_mark", "full_stop"):
                continue
            seen.add(binding.action)
            shown.append((self.app.get_key_display(binding), binding.description))
        if tuple(shown) != self._shown:
            self._shown = tuple(shown)
            self._paint()

    def _paint(self) -> None:
        key_style = self.get_component_rich_style("keybar--key", partial=True)
        palette = Text.assemble(("^p", key_style), " palette")
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        room = max(self.size.width - palette.cell_len - 2, 0)
        for key, description in self._shown:
            part = Text.assemble((f" {key}", key_style), f" {description}")
            if line.cell_len + part.cell_len > room:
                break
            line.append_text(part)
        line.append(" " * max(room - line.cell_len + 1, 1))
        line.append_text(palette)
        self._line = line
        self._strip = None
        self.refresh()  # a repaint of this one line; Static.update would lay out the whole screen
