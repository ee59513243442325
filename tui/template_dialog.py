"""Pick an approved message template, fill its variables, see what the customer will read.

Offered when a conversation's reply window has closed and the platform still allows templates
(WhatsApp after 24 hours). Nothing is queued until the user accepts the filled-in result: the
dialog returns ``(template, values)`` and the screen queues the reply with them.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from replydesk.model import MessageTemplate
from replydesk.tui.dialogs import DIALOG_CSS, _Dialog
from replydesk.tui.format import cell, safe


class TemplateDialog(_Dialog):
    """Templates to choose from (↑↓, enter), then one input per variable; the preview follows
    every keystroke, and enter in the last input queues it. Returns ``(template, values)``."""

    DEFAULT_CSS = DIALOG_CSS.format(name="TemplateDialog") + """
    TemplateDialog #preview { border: round $primary; padding: 0 1; margin: 1 0 0 0; height: auto; }
    TemplateDialog #template-error { color: $error; }
    """

    def __init__(self, templates: list[MessageTemplate], reason: str = "") -> None:
        super().__init__()
        self.templates, self.reason = templates, reason
        self.chosen: MessageTemplate | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Send an approved template"), classes="title")
            if self.reason:
                yield Static(Text(self.reason), classes="hint")
            if not self.templates:
                yield Static(Text("This account has no approved templates yet (the sync engine fetches "
                                  "them hourly). Escape goes back.", style="dim"))
                return
            options = []
            for i, t in enumerate(self.templates):
                label = cell(f"{t.name} ({t.language})", 28, "bold")
                label.append(" ")
                label.append_text(cell(" ".join(t.body.split()), 32, "dim"))
                options.append(Option(label, id=str(i)))
            yield OptionList(*options, id="templates")
            yield Vertical(id="params")
            yield Static("", id="preview")
            yield Static("", id="template-error")
            yield Static(Text("enter in the last field queues it · escape: back to the draft"), classes="hint")

    def on_mount(self) -> None:
        if self.templates:
            listing = self.query_one("#templates", OptionList)
            listing.highlighted = 0
            listing.focus()

    @on(OptionList.OptionHighlighted, "#templates")
    async def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.chosen = self.templates[int(event.option.id or 0)]
        box = self.query_one("#params", Vertical)
        await box.remove_children()
        await box.mount_all([Input(placeholder=f"{{{{{name}}}}}", id=f"param-{i}", classes="param")
                             for i, name in enumerate(self.chosen.params)])
        self._preview()

    @on(OptionList.OptionSelected, "#templates")
    def _selected(self) -> None:
        fields = list(self.query(".param").results(Input))
        if fields:
            fields[0].focus()
        else:
            self._accept()

    def values(self) -> list[str]:
        return [field.value for field in self.query(".param").results(Input)]

    def _preview(self) -> None:
        if self.chosen is None:
            return
        shown = Text("the customer reads:\n", style="dim")
        shown.append_text(safe(self.chosen.fill(self.values())))
        self.query_one("#preview", Static).update(shown)

    @on(Input.Changed, ".param")
    def _changed(self) -> None:
        self._preview()
        self.query_one("#template-error", Static).update("")

    @on(Input.Submitted, ".param")
    def _submitted(self, event: Input.Submitted) -> None:
        fields = list(self.query(".param").results(Input))
        index = fields.index(event.input) if event.input in fields else len(fields) - 1
        if index < len(fields) - 1:
            fields[index + 1].focus()
        else:
            self._accept()

    def _accept(self) -> None:
        if self.chosen is None:
            return
        values = self.values()
        empty = [name for name, value in zip(self.chosen.params, values, strict=False) if not value.strip()]
        if empty:
            self.query_one("#template-error", Static).update(Text(f"fill in {{{{{empty[0]}}}}} first"))
            return
        self.dismiss((self.chosen, values))
