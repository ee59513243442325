"""The command palette (ctrl+p) offers every action, every view and every saved reply.

The entries come from the one key table (``replydesk.keys``): every action of the main screen and
the inbox, and, while the composer is open, the composer's (send, send later, saved reply,
public/private, quote). So a user who forgot a key (or remapped it) finds the action by name, and a
new binding is in the palette without a second list to keep. It belongs to the main screen (its
``COMMANDS``) and runs the actions there.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from replydesk.keys import KeySpec, in_context

if TYPE_CHECKING:
    from replydesk.tui.main_screen import MainScreen

#: Bindings that are no action of their own in the palette (escape) or are listed per view below.
NOT_IN_PALETTE = frozenset({"back", *(f"view_{n}" for n in range(1, 10))})
#: Inbox bindings that are actions (the others are movements, which a palette entry cannot aim).
INBOX_ACTIONS = frozenset({"inbox.open", "inbox.mark"})
#: Actions that have no key (rarely wanted, and never by accident): the palette is their only way.
PALETTE_ONLY: tuple[tuple[str, str, str], ...] = (
    ("Clear marks", "unmark every conversation", "clear_marks"),
    ("Edit our last reply", "change our newest sent reply on the platform (where it can), via the outbox",
     "edit_reply"),
    ("Delete our last reply", "remove our newest sent reply from the platform (where it can), via the outbox",
     "delete_reply"),
)


def _title(spec: KeySpec) -> str:
    return spec.label if spec.label != spec.description else spec.description


def palette_entries(composer_open: bool) -> list[tuple[str, str, str]]:
    """(title, help, action) for the palette; composer actions are ``composer:ACTION``."""
    entries = [(_title(s), s.description, s.action) for s in in_context("main") if s.id not in NOT_IN_PALETTE]
    entries += [(_title(s), s.description, s.action) for s in in_context("inbox") if s.id in INBOX_ACTIONS]
    entries += PALETTE_ONLY
    if composer_open:
        entries += [(f"Composer: {_title(s)}", s.description, f"composer:{s.action}")
                    for s in in_context("composer") if s.id != "composer.close"]
    return entries


class ReplydeskCommands(Provider):
    """Actions, views (``view N``) and saved replies, matched fuzzily by title."""

    @property
    def _main(self) -> MainScreen:
        return self.screen  # type: ignore[return-value] - the screen the palette was opened on

    def _entries(self) -> list[tuple[str, str, str]]:
        entries = palette_entries(self._main.composer.is_open)
        for number, view in enumerate(self._main.ui.views, start=1):
            entries.append((f"View {number}: {view.name}", view.query or "all open conversations",
                            f"view({number})"))
        for name in self._main.ui.saved_replies:
            entries.append((f"Saved reply: {name}", "open the composer with this reply", f"saved_reply({name!r})"))
        return entries

    def _run(self, action: str) -> partial:
        if action.startswith("composer:"):
            return partial(self._main.composer_action, action.split(":", 1)[1])
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
