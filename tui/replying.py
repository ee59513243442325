"""Replying, as the main screen does it: the composer, sending (now, later, to a robot, outside a
reply window), editing or deleting our reply on the platform, taking a reply back, and quitting
while replies wait.

A mixin of ``MainScreen`` (its handlers use Textual's naming convention, which works from a mixin;
``@on`` does not). Every read and write runs in a worker through the screen's ``Store``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replydesk.safetext import one_line
from replydesk.storage import actions, activity, outbox, queries, templates
from replydesk.storage.db import Database
from replydesk.tui.composer import UNSENT, Composer
from replydesk.tui.dialogs import ChoiceDialog, SnoozeDialog
from replydesk.tui.format import clock_time, fill_template, leaves
from replydesk.tui.messages import (
    ActionDone,
    Collision,
    DraftLoaded,
    QuitChecked,
    ReplyCancelled,
    ReplyOutsideWindow,
    ReplyQueued,
    ReplyToRobot,
    TemplatesRead,
)
from replydesk.tui.undo import ReplyUndo
from replydesk.tui.window_text import dialog_items
from replydesk.tui.workers import background
from replydesk.windows import TEMPLATE, Verdict

if TYPE_CHECKING:
    from replydesk.model import MessageTemplate
    from replydesk.storage.queries import InboxRow, MessageView
    from replydesk.tui.main_screen import MainScreen

    _Base = MainScreen
else:
    _Base = object

#: Seconds a reply may still wait for and count as "leaving now" when the user quits.
LEAVING_NOW = 120.0


class ReplyingMixin(_Base):
    def init_replying(self) -> None:
        self._quitting = False
        self._quit_polls = 0

    # ---- the composer -------------------------------------------------------------------------------

    def _selected_row(self) -> InboxRow | None:
        row = self.inbox.current
        if row is None:
            self.notify("No conversation selected.", severity="warning")
        return row

    def answered_message(self) -> MessageView | None:
        """The message a reply answers, as storage will pick it (``queries.reply_target``): the
        customer's newest that a person wrote, else their newest."""
        thread = self.thread_view.thread
        if thread is None or thread.conversation.id != self.inbox.cursor_id:
            return None
        inbound = [m for m in thread.messages if m.direction == "in"]
        people = [m for m in inbound if not m.automatic]
        return (people or inbound or [None])[-1]

    def _open_composer(self, mode: str, text: str = "", row: InboxRow | None = None) -> None:
        row = row or self._selected_row()
        if row is None:
            return
        self.composer.open(row, mode, text, answering=self.answered_message() if mode != "note" else None,
                           quote=self.thread_view.current_message())
        self.set_class(True, "-composing")
        # A team: others see that we reply, we see them, and the thread's place now is what the
        # collision check compares with when the reply is sent.
        self.composer.set_presence(self._presence.get(row.id, []))
        if self._compose_mark is None or self._compose_mark[0] != row.id:
            self._compose_mark = (row.id, self._marks.get(row.id))
        self._announce(row.id, "noting" if mode == "note" else "replying")
        if mode != "note" and not text:
            self._load_draft(row.id)

    @background("reading the draft", group="draft")
    def _load_draft(self, conv_id: str) -> None:
        found = self.store.read(lambda db: queries.draft(db, conv_id))
        if found:
            self.post_message(DraftLoaded(conv_id, found[0], found[1]))

    def on_draft_loaded(self, event: DraftLoaded) -> None:
        if event.text:
            self.composer.load_draft(event.conv_id, event.text, event.private)

    def action_reply(self) -> None:
        row = self.inbox.current
        if row is not None and self._facts(row).single_reply and "edit_reply" in self._facts(row).actions:
            # The platform keeps one reply of ours (a Google review): with ours up, r edits it.
            thread = self.thread_view.thread
            ours = [m for m in thread.messages if m.direction == "out" and m.state == "sent"] \
                if thread is not None and thread.conversation.id == row.id else []
            if ours:
                self.composer.open(row, "edit", ours[-1].text, editing=ours[-1].id)
                return
        self._open_composer("public")

    def action_reply_private(self) -> None:
        row = self._selected_row()
        if row is None:
            return
        from replydesk.platforms import BOOK

        facts = BOOK.for_account(row.account, row.platform)
        if not facts.can_reply_privately(row.kind):
            self.notify(f"No private reply on {facts.label} {row.kind}s; opening a normal reply.")
        self._open_composer("private", row=row)

    def action_note(self) -> None:
        self._open_composer("note")

    def action_saved_reply(self, name: str) -> None:
        """Open the composer (if needed) and insert the named saved reply with fields filled."""
        template = self.ui.saved_replies.get(name)
        if template is None:
            self.notify(f"No saved reply named {name!r}.", severity="warning")
            return
        if not self.composer.is_open:
            self._open_composer("public")
        row = self.composer.row
        if row is not None and self.composer.is_open:
            self.composer.insert(fill_template(template, one_line(row.customer or row.handle)))

    def composer_action(self, action: str) -> None:
        """A composer action from the palette (send, send later, saved reply, public/private, quote)."""
        if not self.composer.is_open:
            self.notify("Open the composer first (r to reply).", severity="warning")
            return
        getattr(self.composer, f"action_{action}")()

    def on_composer_saved_reply_wanted(self, _: Composer.SavedReplyWanted) -> None:
        items = [(name, text) for name, text in self.ui.saved_replies.items()]

        def chosen(name: str | None) -> None:
            if name:
                self.action_saved_reply(name)
            else:
                self.composer.text_area.focus()

        self.app.push_screen(ChoiceDialog("Insert saved reply", items, empty="no saved replies in config"), chosen)

    def on_composer_send(self, event: Composer.Send) -> None:
        if event.mode == "edit":
            self._close_composer()
            self._queue_action("Edit queued", event.conv_id, "edit_reply",
                               {"message_id": event.editing, "text": event.text})
            return
        if event.later:
            def chosen(at: float | None) -> None:
                if at is None:  # cancelled: back to the composer, text intact
                    self.composer.text_area.focus()
                    return
                self._close_composer()
                self._send(event.conv_id, event.text, event.mode, at)

            self.app.push_screen(SnoozeDialog(self.clock, self.tz, title="Send at"), chosen)
            return
        self._close_composer()
        self._send(event.conv_id, event.text, event.mode)

    def _close_composer(self) -> None:
        self.composer.close()
        self.set_class(False, "-composing")
        self.inbox.focus()

    def on_composer_closed(self, event: Composer.Closed) -> None:
        self.set_class(False, "-composing")
        self.inbox.focus()
        self._compose_mark = None
        self._announce(event.conv_id, "viewing")
        if event.mode not in UNSENT:  # an edit of our reply is no draft of a new one
            self._save_draft(event.conv_id, event.text, event.mode == "private")

    def on_composer_draft_changed(self, event: Composer.DraftChanged) -> None:
        self._save_draft(event.conv_id, event.text, event.private)

    def _save_draft(self, conv_id: str, text: str, private: bool) -> None:
        self._write("Draft", lambda db: actions.save_draft(db, conv_id, text, private), 1, quiet=True)

    # ---- sending ------------------------------------------------------------------------------------

    def _send(self, conv_id: str, text: str, mode: str, at: float | None = None, to_robot: bool = False,
              checked: bool = False, send_as: str | None = None, template: dict[str, Any] | None = None) -> None:
        """Queue it, unless the thread moved on since the composer opened (asked first)."""
        mark = self._compose_mark[1] if self._compose_mark and self._compose_mark[0] == conv_id else None
        self._compose_mark = None
        self._announce(conv_id, "viewing")
        self._queue(conv_id, text, mode, at, to_robot, None if checked or mode == "note" else mark, send_as,
                    template)

    @background("queueing the reply", group="write")
    def _queue(self, conv_id: str, text: str, mode: str, at: float | None, to_robot: bool, mark: int | None,
               send_as: str | None = None, template: dict[str, Any] | None = None) -> None:
        from replydesk.tui.main_screen import EXPECTED

        agent, delay = self.agent, float(self.ui.undo_seconds)
        try:
            if mode == "note":
                self.store.write(lambda db: actions.add_note(db, conv_id, text, actor=agent))
                self.post_message(ActionDone("Note added", 1))
                return
            if mark is not None:
                def look(db: Database) -> tuple[list[str], int, InboxRow | None]:
                    return (activity.changes_since(db, conv_id, mark, agent), activity.thread_mark(db, conv_id),
                            queries.get_row(db, conv_id))

                changes, now_mark, row = self.store.read(look)
                if changes:  # someone wrote while this reply was written: ask (see on_collision)
                    self.post_message(Collision(conv_id, text, mode, at, changes, row, now_mark, send_as, template))
                    return
            key = self.store.write(lambda db: outbox.queue_reply(
                db, conv_id, text, private=mode == "private", delay=delay, at=at, actor=agent,
                to_automatic=to_robot, send_as=send_as, template=template))
        except outbox.AutomaticRecipient as exc:  # ask first (see on_reply_to_robot)
            row = self.store.read(lambda db: queries.get_row(db, conv_id))
            self.post_message(ReplyToRobot(conv_id, text, mode, at, exc.reason, row))
            return
        except outbox.OutsideReplyWindow as exc:  # the window closed (or will, before it leaves)
            row = self.store.read(lambda db: queries.get_row(db, conv_id))
            self.post_message(ReplyOutsideWindow(conv_id, text, mode, at, exc.verdict, row))
            return
        except EXPECTED as exc:
            self.post_message(ActionDone("Send", 1, str(exc)))
            return
        self.post_message(ReplyQueued(key, conv_id, text, mode == "private", delay, at))

    def on_collision(self, event: Collision) -> None:
        """The thread changed since the composer opened (Help Scout's collision check): say what, ask."""
        changed = "; ".join(one_line(c) for c in event.changes)

        def chosen(answer: str | None) -> None:
            if answer == "send":
                self._send(event.conv_id, event.text, event.mode, event.at, checked=True, send_as=event.send_as,
                           template=event.template)
            elif event.row is not None:  # back to the draft, text intact; the new messages are now seen
                self._open_composer(event.mode, event.text, row=event.row)
                self._compose_mark = (event.conv_id, event.mark)

        self.app.push_screen(ChoiceDialog(f"Since you started this reply: {changed}. Send it anyway?",
                                          [("send", "queue the reply anyway"), ("back", "back to the draft")]),
                             chosen)

    def on_reply_to_robot(self, event: ReplyToRobot) -> None:
        """Only automatic mail came in (a bounce, an out-of-office, a newsletter): confirm first."""
        def chosen(answer: str | None) -> None:
            if answer == "send":
                self._send(event.conv_id, event.text, event.mode, event.at, to_robot=True)
            elif event.row is not None:  # back to the draft, text intact
                self._open_composer(event.mode, event.text, row=event.row)

        self.app.push_screen(ChoiceDialog(f"Only automatic mail here ({one_line(event.reason)}). Reply anyway?",
                                          [("send", "queue the reply anyway"), ("back", "back to the draft")]), chosen)

    def on_composer_window_closed(self, event: Composer.WindowClosed) -> None:
        """Send outside the reply window: the composer stays open under the platform's choices."""
        self._offer_window_choices(event.conv_id, event.text, event.mode, None, event.verdict, None)

    def on_reply_outside_window(self, event: ReplyOutsideWindow) -> None:
        self._offer_window_choices(event.conv_id, event.text, event.mode, event.at, event.verdict, event.row)

    def _offer_window_choices(self, conv_id: str, text: str, mode: str, at: float | None, verdict: Verdict,
                              row: InboxRow | None) -> None:
        """Say why the reply cannot leave and offer what the platform still allows: the human-agent
        tag, a public answer instead, or back to the draft (nothing is queued until one is chosen)."""
        def chosen(answer: str | None) -> None:
            if answer == TEMPLATE:  # pick an approved template (read in the background), then queue it
                shown = row or self.composer.row
                self._load_templates(conv_id, shown.account if shown else "", mode, at, verdict.reason, text, row)
                return
            if answer == "public":
                if self.composer.is_open and self.composer.row is not None and self.composer.row.id == conv_id:
                    self.composer.mode = "public"
                    self.composer.update_info()
                    self.composer.text_area.focus()
                    self.notify("Now a public answer to the comment: ctrl+s sends it.", timeout=4)
                elif row is not None:
                    self._open_composer("public", text, row=row)
                return
            if answer and answer != "back":
                self._close_composer()
                self._send(conv_id, text, mode, at, send_as=answer)
                return
            if self.composer.is_open:
                self.composer.text_area.focus()
            elif row is not None:  # back to the draft, text intact
                self._open_composer(mode, text, row=row)

        reason = verdict.reason[:1].upper() + verdict.reason[1:]
        self.app.push_screen(ChoiceDialog(f"Not sent: {one_line(reason)}.", dialog_items(verdict, self.clock())),
                             chosen)

    @background("reading the message templates", group="read")
    def _load_templates(self, conv_id: str, account: str, mode: str, at: float | None, reason: str, text: str,
                        row: InboxRow | None) -> None:
        found = self.store.read(lambda db: templates.of_account(db, account))
        self.post_message(TemplatesRead(conv_id, mode, at, reason, found, text, row))

    def on_templates_read(self, event: TemplatesRead) -> None:
        """The templates dialog; what it returns is queued as a template reply (the filled-in text
        is what the thread shows). Escape goes back to the draft."""
        from replydesk.tui.template_dialog import TemplateDialog

        def chosen(answer: tuple[MessageTemplate, list[str]] | None) -> None:
            if answer is None:  # back to the draft, text intact
                if self.composer.is_open:
                    self.composer.text_area.focus()
                elif event.row is not None:
                    self._open_composer(event.mode, event.text, row=event.row)
                return
            template, values = answer
            if self.composer.is_open:
                self._close_composer()
            else:
                self.inbox.focus()
            self._send(event.conv_id, template.fill(values), event.mode, event.at, send_as=TEMPLATE,
                       template=template.as_reply(values))

        reason = event.reason[:1].upper() + event.reason[1:]
        self.app.push_screen(TemplateDialog(event.templates, one_line(reason)), chosen)

    def on_reply_queued(self, event: ReplyQueued) -> None:
        self.push_undo(ReplyUndo(event.key, event.conv_id))
        now = self.clock()
        if event.at is not None:
            self.notify(f"Reply scheduled: it leaves {leaves(event.at, now, self.tz)}. u takes it back; "
                        "O lists the outbox.", title="Scheduled", timeout=4)
        elif event.undo_seconds > 0:
            self.notify(f"Reply queued — leaves in {event.undo_seconds:g}s. Press u (or ctrl+z) to undo.",
                        title="Queued", timeout=max(event.undo_seconds, 2))
        else:
            self.notify("Reply queued.", timeout=2)
        self.refresh_all()

    # ---- actions on our own replies (edit, delete) ----------------------------------------------------

    def _our_last_reply(self, what: str) -> tuple[InboxRow, MessageView] | None:
        """The selected conversation and our newest reply in it that reached the platform, from the
        thread on screen (no read needed), if the account can ``what`` it."""
        row = self._selected_row()
        if row is None:
            return None
        facts = self._facts(row)
        if f"{what}_reply" not in facts.actions:
            self.notify(f"{row.account} cannot {what} replies on {facts.label}.", severity="warning")
            return None
        thread = self.thread_view.thread
        if thread is None or thread.conversation.id != row.id:
            self.notify("The thread is still loading; try again.", severity="warning")
            return None
        ours = [m for m in thread.messages if m.direction == "out" and m.state == "sent"]
        if not ours:
            self.notify("No reply of ours has reached the platform here.", severity="warning")
            return None
        return row, ours[-1]

    def action_edit_reply(self) -> None:
        found = self._our_last_reply("edit")
        if found is not None:
            row, message = found
            self.composer.open(row, "edit", message.text, editing=message.id)
            self.set_class(True, "-composing")

    def action_delete_reply(self) -> None:
        found = self._our_last_reply("delete")
        if found is None:
            return
        row, message = found

        def chosen(answer: str | None) -> None:
            if answer == "delete":
                self._queue_action("Delete queued", row.id, "delete_reply", {"message_id": message.id})

        self.app.push_screen(ChoiceDialog(f"Delete our reply on {self._facts(row).label}: "
                                          f"{one_line(message.text)[:60]}?",
                                          [("delete", "delete it on the platform"), ("back", "keep it")]), chosen)

    def _queue_action(self, label: str, conv_id: str, kind: str, payload: dict[str, Any]) -> None:
        agent = self.agent
        self._write(label, lambda db: outbox.queue_action(db, conv_id, kind, payload, actor=agent), 1)

    # ---- taking a reply back ------------------------------------------------------------------------

    def undo_reply(self, key: str | None, conv_id: str) -> None:
        """Take a queued reply back into the composer: ``key``, or the newest one still queued in
        ``conv_id`` (after a restart, or once the undo window has passed: as long as it has not
        started leaving, it can come back)."""
        self._cancel(key, conv_id)

    @background("taking the reply back", group="write")
    def _cancel(self, key: str | None, conv_id: str) -> None:
        from replydesk.tui.main_screen import EXPECTED

        def run(db: Database) -> tuple[outbox.OutboxItem, queries.InboxRow | None] | None:
            nonlocal key
            if key is None:
                queued = [i for i in outbox.pending(db, ("queued",)) if i.conversation_id == conv_id]
                if not queued:
                    return None
                key = queued[-1].key
            return outbox.cancel(db, key), queries.get_row(db, conv_id)

        try:
            done = self.store.write(run)
        except EXPECTED as exc:
            self.post_message(ReplyCancelled(key or "", conv_id, "", False, None, str(exc)))
            return
        if done is None:
            self.post_message(ReplyCancelled("", conv_id, "", False, None, "nothing queued here to take back"))
            return
        item, row = done
        self.post_message(ReplyCancelled(item.key, conv_id, item.text, item.private, row,
                                         scheduled_for=item.not_before if item.not_before > self.clock() + 60
                                         else None))

    def on_reply_cancelled(self, event: ReplyCancelled) -> None:
        if event.error:
            self.notify(f"Nothing to undo: {event.error}", severity="warning")
            return
        was = ""
        if event.scheduled_for is not None:
            was = f" It was scheduled for {clock_time(event.scheduled_for, self.clock(), self.tz)}: ctrl+l schedules again."
        self.notify(f"Reply taken back; it is in the composer again.{was}", timeout=4)
        if event.row is not None:
            if self.inbox.cursor_id != event.conv_id:
                self.open_conversation(event.conv_id)
            self._open_composer("private" if event.private else "public", event.text, row=event.row)
        self.refresh_all()

    # ---- quitting -----------------------------------------------------------------------------------

    def action_quit(self) -> None:
        """q: quit, unless replies are about to leave; then ask (send now, wait, quit anyway)."""
        if self._quitting:
            return
        self._check_quit()

    @background("checking the outbox", group="quit", exclusive=True)
    def _check_quit(self) -> None:
        from replydesk.storage.outbox_list import leaving_soon, scheduled

        now = self.clock()
        soon, later = self.store.read(lambda db: (leaving_soon(db, now, LEAVING_NOW), scheduled(db, now, LEAVING_NOW)))
        self.post_message(QuitChecked([i.key for i in soon], min((i.not_before for i in later), default=None),
                                      len(later)))

    def on_quit_checked(self, event: QuitChecked) -> None:
        if event.waiting:
            self._wait_for_leaving(event)
            return
        engine = getattr(self.app, "engine", None)
        if not event.soon and not event.scheduled:
            self.app.exit()
            return
        later = ""
        if event.scheduled:
            first = clock_time(event.next_scheduled, self.clock(), self.tz)
            later = (f" {event.scheduled} scheduled repl{'y' if event.scheduled == 1 else 'ies'} (the next at "
                     f"{first}) leave only while replydesk syncs.")
        if not event.soon:
            def chosen_later(answer: str | None) -> None:
                if answer == "quit":
                    self.app.exit()

            self.app.push_screen(ChoiceDialog(f"Quit?{later}", [("quit", "quit; they leave at the next sync"),
                                                                ("stay", "stay")]), chosen_later)
            return
        n = len(event.soon)
        what = f"{n} repl{'y is' if n == 1 else 'ies are'} waiting to leave (the undo window)."
        choices: list[tuple[str, str]] = [
            ("send", "send now, then quit"), ("wait", "wait until they have left, then quit"),
            ("quit", "quit anyway (they leave at the next sync)"), ("stay", "stay")]
        if engine is None:
            what += " This console does not sync (another replydesk does, or none is running)."
            choices = [("quit", "quit: they leave when replydesk syncs"), ("stay", "stay")]

        def chosen(answer: str | None) -> None:
            if answer == "quit":
                self.app.exit()
            elif answer in ("send", "wait"):
                self._quitting, self._quit_polls = True, 0
                self.notify("Quitting once the replies have left…", timeout=5)
                self._leave_then_quit(event.soon, answer == "send")

        self.app.push_screen(ChoiceDialog(f"{what}{later}", choices), chosen)

    @background("sending before quitting", group="quit", exclusive=True)
    def _leave_then_quit(self, keys: list[str], now: bool) -> None:
        if now:
            for key in keys:
                self.store.write(lambda db, key=key: _send_now(db, key))
        self.post_message(QuitChecked(keys, None, 0, waiting=True))

    def _wait_for_leaving(self, event: QuitChecked) -> None:
        """While quitting: look every half second whether the replies have left (at most a minute:
        offline, they would wait for ever, so the user decides again)."""
        if not event.soon:
            self.app.exit()
            return
        self._quit_polls += 1
        if self._quit_polls > 120:
            self._quitting = False
            self.notify(f"{len(event.soon)} repl{'y has' if len(event.soon) == 1 else 'ies have'} not left "
                        "(offline, or the platform refuses). q asks again.", severity="warning", timeout=8)
            return
        self.set_timer(0.5, lambda: self._poll_leaving(event.soon))

    @background("waiting for the replies to leave", group="quit", exclusive=True)
    def _poll_leaving(self, keys: list[str]) -> None:
        def still(db: Database) -> list[str]:
            items = [outbox.get(db, key) for key in keys]
            return [i.key for i in items if i is not None and i.state in ("queued", "sending")]

        self.post_message(QuitChecked(self.store.read(still), None, 0, waiting=True))


def _send_now(db: Database, key: str) -> None:
    """The undo window ends now for ``key`` (if it is still queued)."""
    item = outbox.get(db, key)
    if item is not None and item.state == "queued":
        outbox.retry(db, key)
