"""Modal dialogs for actions that need an answer: tag, untag, assign, escalate, snooze, search.

Every dialog is keyboard-only (enter accepts, escape cancels, tab moves) and returns plain values
through ``dismiss``; the app turns them into storage calls. Existing data shown here (tags, names)
is rendered with ``rich.text.Text`` via ``safe``/``cell``, like everything else customer-controlled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester, SuggestFromList
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from replydesk.tui.format import cell, safe, snooze_until
from replydesk.tui.keymap import bindings
from replydesk.tui.palette import ROLE_CLASSES, Palette, role_css

# The dialog sits in a band as wide as the screen: every line the dialog covers is painted whole,
# so no row of the inbox below shares a line with its border. A row holding an Indic conjunct,
# which Rich and the terminal may measure differently, would otherwise shift (or double) the
# border on its line, whatever the terminal makes of the cluster.
DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > .band {{
    width: 100%; height: auto; max-height: 90%; background: $background 70%; align-horizontal: center;
}}
{name} > .band > Vertical {{
    width: 64; max-width: 95%; height: auto;
    border: thick $accent; background: $surface; padding: 0 1;
}}
{name} > .band.-wide > Vertical {{ width: 100; }}
{name} .title {{ text-style: bold; width: 1fr; }}
{name} .hint {{ color: $text-muted; width: 1fr; }}
{name} OptionList {{ height: auto; max-height: 10; }}
"""


class TagSuggester(Suggester):
    """Completes the tag being typed, also after a comma: ``vip, shipp`` → ``vip, shipping-delay``
    (Textual's SuggestFromList matched the whole value, so only the first tag completed)."""

    def __init__(self, tags: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=False)
        self.tags = tags

    async def get_suggestion(self, value: str) -> str | None:
        head, sep, last = value.rpartition(",")
        typed = last.lstrip()
        if not typed:
            return None
        for tag in self.tags:
            if tag.lower().startswith(typed.lower()) and tag.lower() != typed.lower():
                return f"{head}{sep}{last[: len(last) - len(typed)]}{tag}"
        return None


class _Dialog(ModalScreen[Any]):
    BINDINGS = bindings("dialog")
    COMPONENT_CLASSES = ROLE_CLASSES
    WIDE = False

    def __init__(self) -> None:
        super().__init__()
        self.palette = Palette(self)

    def band(self) -> Horizontal:
        """The full-width band the dialog's box sits in (see DIALOG_CSS)."""
        return Horizontal(classes="band -wide" if self.WIDE else "band")

    def action_cancel(self) -> None:
        self.dismiss(None)


class PromptDialog(_Dialog):
    """One line of input with completion from ``suggestions`` (tags, agents, search history)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="PromptDialog")

    def __init__(self, title: str, *, hint: str = "", value: str = "", suggestions: list[str] | None = None,
                 placeholder: str = "", suggester: Suggester | None = None, max_length: int = 0) -> None:
        super().__init__()
        self.title_text, self.hint, self.value, self.placeholder = title, hint, value, placeholder
        self.max_length = max_length  # 0: any length
        self.suggestions = suggestions or []
        self.suggester = suggester or (SuggestFromList(self.suggestions, case_sensitive=False)
                                       if self.suggestions else None)

    def compose(self) -> ComposeResult:
        with self.band(), Vertical():
            yield Label(Text(self.title_text), classes="title")
            yield Input(self.value, placeholder=self.placeholder, id="prompt", suggester=self.suggester,
                        max_length=self.max_length)
            if self.suggestions:
                shown = Text("known: ", style="dim")
                shown.append_text(safe(", ".join(self.suggestions[:30])))
                yield Static(shown, classes="hint")
            if self.hint:
                yield Static(Text(self.hint), classes="hint")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class EscalateDialog(_Dialog):
    """Target team, reason and an optional note; returns ``{"target", "reason", "note"}``."""

    REASONS = ("angry customer", "refund request", "legal or safety", "VIP customer", "technical problem",
               "public complaint", "other")
    TARGETS = ("helpdesk", "billing", "shipping", "manager", "tech")

    DEFAULT_CSS = DIALOG_CSS.format(name="EscalateDialog")

    def __init__(self, targets: list[str] | None = None) -> None:
        """``targets``: the config's escalation targets, offered first (those with a helpdesk
        account create a ticket there)."""
        super().__init__()
        self.targets = list(dict.fromkeys([*(targets or []), *self.TARGETS]))

    def compose(self) -> ComposeResult:
        with self.band(), Vertical():
            yield Label("Escalate", classes="title")
            yield Label("Target (team or person):", classes="hint")
            yield Input("helpdesk", id="target", suggester=SuggestFromList(self.targets, case_sensitive=False))
            yield Label("Reason (↑↓ to pick):", classes="hint")
            yield OptionList(*[Option(r, id=r) for r in self.REASONS], id="reason")
            yield Label("Note (optional, kept as an internal note) — enter escalates:", classes="hint")
            yield Input(id="note")

    def on_mount(self) -> None:
        self.query_one("#reason", OptionList).highlighted = 0

    def _result(self) -> dict[str, str]:
        reasons = self.query_one("#reason", OptionList)
        index = reasons.highlighted if reasons.highlighted is not None else 0
        return {
            "target": self.query_one("#target", Input).value.strip() or "helpdesk",
            "reason": self.REASONS[index],
            "note": self.query_one("#note", Input).value.strip(),
        }

    @on(Input.Submitted)
    def _submit(self) -> None:
        self.dismiss(self._result())

    @on(OptionList.OptionSelected)
    def _picked(self) -> None:
        self.query_one("#note", Input).focus()


class SnoozeDialog(_Dialog):
    """Presets (1h, 4h, tomorrow 9:00) or a custom time; returns the wake-up epoch."""

    PRESETS = (("1h", "1 hour"), ("4h", "4 hours"), ("tomorrow", "tomorrow 9:00"), ("custom", "custom…"))

    DEFAULT_CSS = DIALOG_CSS.format(name="SnoozeDialog") + role_css("SnoozeDialog")

    def __init__(self, clock: Callable[[], float], tz: str | None = None, title: str = "Snooze until") -> None:
        super().__init__()
        self.clock, self.tz, self.title_text = clock, tz, title

    def compose(self) -> ComposeResult:
        with self.band(), Vertical():
            yield Label(self.title_text, classes="title")
            yield OptionList(*[Option(label, id=key) for key, label in self.PRESETS], id="presets")
            yield Input(placeholder="custom: 30m, 2h, 3d, 14:30, 2025-06-01 09:00", id="custom")
            yield Static("", id="snooze-error", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#presets", OptionList).focus()

    @on(OptionList.OptionSelected)
    def _preset(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == "custom":
            self.query_one("#custom", Input).focus()
            return
        self.dismiss(snooze_until(str(event.option.id), self.clock(), self.tz))

    @on(Input.Submitted)
    def _custom(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(snooze_until(event.value, self.clock(), self.tz))
        except ValueError as exc:
            self.query_one("#snooze-error", Static).update(Text(str(exc), style=self.palette("error")))


class ChoiceDialog(_Dialog):
    """Pick one of a few named items (saved replies, tags to remove); returns its key."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ChoiceDialog")

    def __init__(self, title: str, items: list[tuple[str, str]], *, empty: str = "nothing to choose",
                 wide: bool = False) -> None:
        super().__init__()
        self.title_text, self.items, self.empty = title, items, empty
        self.WIDE = wide

    def compose(self) -> ComposeResult:
        with self.band(), Vertical():
            yield Label(Text(self.title_text), classes="title")
            if self.items:
                options = []
                key_width = min(max(len(k) for k, _ in self.items) + 1, 14)
                for key, preview in self.items:
                    label = cell(key, key_width, "bold")
                    label.append(" ")
                    label.append_text(cell(preview, (96 if self.WIDE else 58) - key_width - 2, "dim"))
                    options.append(Option(label, id=key))
                yield OptionList(*options, id="choices")
            else:
                yield Static(Text(self.empty, style="dim"))

    def on_mount(self) -> None:
        if self.items:
            self.query_one("#choices", OptionList).highlighted = 0

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

