"""Tools for the message under the reader and its customer: move between messages, copy, links,
attachments, the customer card and the outbox screen.

"The message" is the one ``[``/``]`` selected in the thread, else the customer's newest. Copying
goes through the terminal (OSC 52) only when ``ui.clipboard: osc52`` says so. Links and files are
opened by the system's opener in a worker, after the user saw the whole URL or file name.

A mixin of ``MainScreen``: handlers use Textual's naming convention (``on_...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from replydesk.safetext import one_line, visible
from replydesk.tui.dialogs import ChoiceDialog
from replydesk.tui.workers import background

if TYPE_CHECKING:
    from replydesk.storage.queries import MessageView
    from replydesk.tui.main_screen import MainScreen

    _Base = MainScreen
else:
    _Base = object


class MessageToolsMixin(_Base):
    def _message(self) -> MessageView | None:
        m = self.thread_view.current_message()
        if m is None:
            self.notify("No message here.", severity="warning")
        return m

    def action_toggle_quoted(self) -> None:
        self.thread_view.toggle_folds()

    def action_next_message(self) -> None:
        self.thread_view.select_message(+1)

    def action_prev_message(self) -> None:
        self.thread_view.select_message(-1)

    # ---- copy ---------------------------------------------------------------------------------------

    def _copy(self, text: str, what: str) -> None:
        if self.ui.clipboard != "osc52":
            self.notify(f"Copying is off (ui.clipboard: osc52 turns it on). {what}: {one_line(text)[:200]}",
                        severity="warning", timeout=8)
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied {what.lower()} to the clipboard ({len(text)} characters).", timeout=3)

    def action_yank(self) -> None:
        if m := self._message():
            self._copy(m.text, "The message")

    def action_yank_id(self) -> None:
        if self.inbox.cursor_id:
            self._copy(self.inbox.cursor_id, "The conversation id")
        else:
            self.notify("No conversation selected.", severity="warning")

    # ---- links and attachments ----------------------------------------------------------------------

    def action_links(self) -> None:
        from replydesk.tui.links import find_links
        from replydesk.tui.terminal import check_url

        m = self._message()
        if m is None:
            return
        links = find_links(m.text)
        items = [(str(n), f"{visible(link.host) or '?'} — {visible(link.url)}") for n, link in enumerate(links, 1)]

        def chosen(key: str | None) -> None:
            if key:
                self._open(check_url, links[int(key) - 1].url)

        self.app.push_screen(ChoiceDialog("Links in this message (enter opens the link shown in full)", items,
                                          empty="no links in this message", wide=True), chosen)

    def action_attachments(self) -> None:
        from replydesk.tui.links import attachments
        from replydesk.tui.terminal import check_url

        m = self._message()
        if m is None:
            return
        found = attachments(m.meta)
        items = [(str(n), a.describe()) for n, a in enumerate(found, 1)]
        data_dir: Path = self.app.workspace.data_dir

        def chosen(key: str | None) -> None:
            if not key:
                return
            a = found[int(key) - 1]
            local = a.local_file(data_dir)
            if local is not None:
                self._open(lambda p: p, local)
            elif a.url:
                self._open(check_url, a.url)
            else:
                self.notify(f"{visible(a.name)} is listed by the platform but not kept in the cache; open it "
                            "where it was sent (the mailbox, the platform's app).", severity="warning", timeout=8)

        self.app.push_screen(ChoiceDialog("Attachments (enter opens with the system's opener)", items,
                                          empty="no attachments in this message", wide=True), chosen)

    def _open(self, check, target) -> None:  # noqa: ANN001 - a URL check or identity, a str or Path
        from replydesk.tui.terminal import OpenError

        try:
            checked = check(target)
        except OpenError as exc:
            self.notify(f"Not opened: {exc}", severity="error")
            return
        self._run_opener(checked)

    @background("opening", group="open")
    def _run_opener(self, target: str | Path) -> None:
        from replydesk.tui.terminal import OpenError, open_with_system

        try:
            open_with_system(target)
        except OpenError as exc:
            self.app.call_from_thread(self.notify, f"Not opened: {exc}", severity="error")
            return
        name = target.name if isinstance(target, Path) else target
        self.app.call_from_thread(self.notify, f"Opening {one_line(name)[:120]}", timeout=3)

    # ---- the customer card and the outbox -----------------------------------------------------------

    def action_customer(self) -> None:
        from replydesk.tui.customer_card import CustomerCard

        row = self.inbox.current
        if row is None:
            self.notify("No conversation selected.", severity="warning")
            return

        def chosen(conv_id: str | None) -> None:
            if conv_id:
                self.open_conversation(conv_id)
            self.refresh_all()

        self.app.push_screen(CustomerCard(self.store, row.id, self.clock, self.tz, self.agent), chosen)

    def action_outbox(self) -> None:
        from replydesk.tui.outbox_screen import OutboxScreen

        def chosen(result: tuple[str, str] | None) -> None:
            self.refresh_all()
            if result is None:
                return
            action, key = result
            if action == "edit":
                conv_id = key.split(" ", 1)[1]
                self.undo_reply(key.split(" ", 1)[0], conv_id)
            elif action == "open":
                self.open_conversation(key)

        self.app.push_screen(OutboxScreen(self.store, self.clock, self.tz, self.inbox.cursor_id), chosen)
