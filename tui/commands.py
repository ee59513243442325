"""The command palette (ctrl+p) offers every action, every view and every saved reply.

The palette lists the same action names the key bindings run, so a user who forgot a key (or
remapped it) can always find the action by name. It belongs to the main screen (its ``COMMANDS``)
and runs the actions there.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from replydesk.tui.main_screen import MainScreen

#: (title, help, action) — the action strings are the main screen's ``action_*`` methods.
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("Open conversation", "read the selected conversation", "open"),
    ("Reply", "public reply (or the platform's only kind)", "reply"),
    ("Private reply", "answer a public post privately, where the platform can", "reply_private"),
    ("Internal note", "a note for the team, never sent", "note"),
    ("Tag", "add a tag (with completion)", "tag"),
    ("Remove tag", "remove one of the conversation's tags", "untag"),
    ("Assign", "assign to someone (empty: unassign)", "assign"),
    ("Escalate", "mark escalated with a reason and target; raises priority", "escalate"),
    ("Resolve", "close the conversation", "resolve"),
    ("Reopen", "open it again", "reopen"),
    ("Snooze", "hide until 1h, 4h, tomorrow 9:00 or a custom time", "snooze"),
    ("Jump to most urgent", "the conversation closest to (or past) its SLA", "most_urgent"),
    ("Search", "search the cache (words, from:, tag:, platform:, is:)", "search"),
    ("Repeat last action", "apply the last action again to the selection", "repeat"),
    ("Undo send", "take back the reply just sent, during its undo window", "undo_send"),
    ("Edit our last reply", "change our newest sent reply on the platform (where it can), via the outbox",
     "edit_reply"),
    ("Delete our last reply", "remove our newest sent reply from the platform (where it can), via the outbox",
     "delete_reply"),
    ("Mark for bulk", "toggle the mark on the selected conversation", "mark"),
    ("Clear marks", "unmark every conversation", "clear_marks"),
    ("Report", "response times, breaches and first-contact resolution, with plots", "report"),
    ("Help", "every key binding in this context", "help"),
    ("Quit", "leave replydesk (the outbox keeps queued replies)", "app.quit"),
)


class ReplydeskCommands(Provider):
    """Actions, views (``view N``) and saved replies, matched fuzzily by title."""

    @property
    def _main(self) -> MainScreen:
        return self.screen  # type: ignore[return-value] - the screen the palette was opened on

    def _entries(self) -> list[tuple[str, str, str]]:
        entries = list(ACTIONS)
        for number, view in enumerate(self._main.ui.views, start=1):
            entries.append((f"View {number}: {view.name}", view.query or "all open conversations",
                            f"view({number})"))
        for name in self._main.ui.saved_replies:
            entries.append((f"Saved reply: {name}", "open the composer with this reply", f"saved_reply({name!r})"))
        return entries

    def _run(self, action: str) -> partial:
        return partial(self.app.run_action, action, self._main)

    async def discover(self) -> Hits:
        for title, help_text, action in self._entries():
            yield DiscoveryHit(title, self._run(action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, action in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), self._run(action), help=help_text)
