"""Every key binding of the console as data: one table for the console, the config check and the docs.

The console builds its Textual bindings from ``BINDINGS`` (``tui.keymap``); ``config check`` checks
a ``keymap:`` section against it (:func:`check_keymap`: unknown ids, and keys that two bindings
would share where both are active); README's key table is :func:`markdown_table` (a test keeps
them equal), and the help screen and the palette list the same ids. Standard library only: the
config is checked without loading Textual.

Contexts are where a binding is declared; ``ACTIVE_TOGETHER`` says which contexts answer keys at
the same time (the main screen's keys work while the inbox, the thread or the composer has the
focus), which is where a key must not mean two things.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class KeySpec:
    """One binding: its id (what a keymap names), default keys, action, words and context."""

    id: str
    keys: str  # Textual key names, comma-separated
    action: str
    description: str
    context: str
    show: bool = False  # in the key bar
    count: bool = False  # takes a count typed before it (5j, 3x)

    @property
    def label(self) -> str:
        """The short form for the key bar: the description up to its first bracket or colon."""
        return self.description.split(" (")[0].split(":")[0]


#: Context -> what it is, in the words the help screen and README use.
CONTEXTS: dict[str, str] = {
    "main": "main screen",
    "inbox": "inbox list",
    "thread": "thread",
    "composer": "composer",
    "outbox": "outbox screen",
    "card": "customer card",
    "report": "report screen",
    "dialog": "dialogs",
    "help": "help",
}

#: A focused context -> every context whose keys answer at the same time.
ACTIVE_TOGETHER: dict[str, tuple[str, ...]] = {
    "inbox": ("inbox", "main"),
    "thread": ("thread", "main"),
    "composer": ("composer", "main"),
    "outbox": ("outbox",),
    "card": ("card",),
    "report": ("report",),
    "dialog": ("dialog",),
    "help": ("help",),
}

#: Contexts where printable keys are typed text, so a binding there needs a modifier or a named key.
TYPED_IN = frozenset({"composer", "dialog"})

#: Keys Textual itself answers everywhere; no binding of ours may take them.
RESERVED: dict[str, str] = {"ctrl+p": "the command palette", "ctrl+q": "quitting at once",
                            "ctrl+c": "copying / the quit hint"}


def _main(id: str, keys: str, description: str, action: str | None = None, **kw: bool) -> KeySpec:
    return KeySpec(id, keys, action or id, description, "main", **kw)


BINDINGS: tuple[KeySpec, ...] = (
    # The main screen: the inbox's actions, active wherever the focus is on it.
    _main("reply", "r", "Reply", show=True),
    _main("reply_private", "R", "Private reply (where the platform has both)"),
    _main("note", "n", "Internal note"),
    _main("tag", "t", "Tag (with completion)", show=True, count=True),
    _main("untag", "T", "Remove a tag", count=True),
    _main("assign", "a", "Assign", count=True),
    _main("escalate", "e", "Escalate (reason, target; raises priority; a helpdesk target also gets a ticket)",
          show=True, count=True),
    _main("resolve", "x", "Resolve", show=True, count=True),
    _main("reopen", "o", "Reopen", count=True),
    _main("snooze", "s", "Snooze (1h, 4h, tomorrow 9:00, custom)", show=True, count=True),
    _main("most_urgent", "exclamation_mark", "Jump to the most urgent"),
    _main("search", "slash", "Search", show=True),
    _main("repeat", "full_stop", "Repeat the last action"),
    _main("undo", "u,ctrl+z", "Undo the last action (a reply still queued, triage)"),
    _main("outbox", "O", "Outbox: queued, scheduled, failed and unknown replies"),
    _main("customer", "c", "Customer card (other conversations, handles, VIP, note, merge)"),
    _main("next_message", "right_square_bracket", "Next message in the thread"),
    _main("prev_message", "left_square_bracket", "Previous message in the thread"),
    _main("yank", "y", "Copy the message's text"),
    _main("yank_id", "Y", "Copy the conversation's id"),
    _main("links", "L", "Links in the message"),
    _main("attachments", "v", "Attachments of the message"),
    _main("toggle_quoted", "z", "Show / hide quoted history, signatures and the middle of long threads"),
    _main("back", "escape", "Back / cancel"),
    _main("help", "question_mark", "Help", show=True),
    _main("report", "ctrl+r", "Report screen"),
    _main("rules", "A", "Rules screen: what each automation rule would have done (a dry run)"),
    _main("quit", "q", "Quit", show=True),
    *(_main(f"view_{n}", str(n), f"View {n}", action=f"view({n})") for n in range(1, 10)),
    # The inbox list.
    KeySpec("inbox.down", "j,down", "cursor_down", "Down", "inbox", count=True),
    KeySpec("inbox.up", "k,up", "cursor_up", "Up", "inbox", count=True),
    KeySpec("inbox.first", "g,home", "first", "First", "inbox"),
    KeySpec("inbox.last", "G,end", "last", "Last (with a count: that row)", "inbox", count=True),
    KeySpec("inbox.page_down", "pagedown,ctrl+f", "page_down", "Page down", "inbox", count=True),
    KeySpec("inbox.page_up", "pageup,ctrl+b", "page_up", "Page up", "inbox", count=True),
    KeySpec("inbox.open", "enter", "open", "Open", "inbox", show=True),
    KeySpec("inbox.mark", "space", "mark", "Mark for bulk actions", "inbox", count=True),
    # The thread, when it has the focus itself (a click); reading (enter) keeps the focus on the list.
    KeySpec("thread.down", "j,down", "scroll_down", "Scroll down", "thread"),
    KeySpec("thread.up", "k,up", "scroll_up", "Scroll up", "thread"),
    KeySpec("thread.top", "g,home", "scroll_home", "Top", "thread"),
    KeySpec("thread.bottom", "G,end", "scroll_end", "Bottom", "thread"),
    # The composer.
    KeySpec("composer.send", "ctrl+s,alt+enter", "send", "Send", "composer", show=True),
    KeySpec("composer.close", "escape", "close", "Close (the draft is kept)", "composer", show=True),
    KeySpec("composer.private", "ctrl+t", "toggle_private", "Public / private", "composer"),
    KeySpec("composer.saved", "ctrl+o", "saved_reply", "Saved reply", "composer"),
    KeySpec("composer.later", "ctrl+l", "send_later", "Send later", "composer"),
    KeySpec("composer.quote", "ctrl+g", "quote", "Quote the message (the one [ ] selected, else the one answered)",
            "composer"),
    # The outbox screen.
    KeySpec("outbox.edit", "e,enter", "edit", "Edit (back into the composer)", "outbox", show=True),
    KeySpec("outbox.discard", "d", "discard", "Discard", "outbox", show=True),
    KeySpec("outbox.retry", "r", "retry", "Retry a failed or unknown reply", "outbox", show=True),
    KeySpec("outbox.send_now", "n", "send_now", "Send a queued or scheduled reply now", "outbox", show=True),
    KeySpec("outbox.confirm", "c", "confirm", "Confirm an unknown reply was posted", "outbox", show=True),
    KeySpec("outbox.close", "escape,q", "close", "Close", "outbox", show=True),
    # The customer card.
    KeySpec("card.open", "enter", "open", "Open the conversation", "card", show=True),
    KeySpec("card.vip", "v", "vip", "VIP on / off", "card", show=True),
    KeySpec("card.name", "e", "name", "Edit the customer's name (the team's; platforms keep theirs)", "card",
            show=True),
    KeySpec("card.note", "n", "note", "Edit the note", "card", show=True),
    KeySpec("card.merge", "m", "merge", "Merge with another contact", "card", show=True),
    KeySpec("card.split", "s", "split", "Split the selected contact off", "card", show=True),
    KeySpec("card.close", "escape,q", "close", "Close", "card", show=True),
    # The report screen.
    KeySpec("report.group", "b", "cycle_grouping", "Group by platform, account, assignee, tag, policy", "report",
            show=True),
    KeySpec("report.back", "escape,q", "app.pop_screen", "Back", "report", show=True),
    # Dialogs and help.
    KeySpec("dialog.cancel", "escape", "cancel", "Cancel", "dialog"),
    KeySpec("help.close", "escape,q,question_mark", "close", "Close", "help"),
)

BY_ID: dict[str, KeySpec] = {b.id: b for b in BINDINGS}
COUNTED: frozenset[str] = frozenset(b.id for b in BINDINGS if b.count)


def in_context(context: str) -> tuple[KeySpec, ...]:
    return tuple(b for b in BINDINGS if b.context == context)


def normalise_key(key: str) -> str:
    """A key as Textual names it: ``?`` -> ``question_mark``; names and combinations unchanged."""
    key = key.strip()
    if len(key) == 1 and not key.isalnum():
        if key == " ":
            return "space"
        try:
            return unicodedata.name(key).lower().replace("-", "_").replace(" ", "_")
        except ValueError:
            return key
    return key


def split_keys(keys: str) -> list[str]:
    return [normalise_key(k) for k in keys.split(",") if k.strip()]


def effective(keymap: Mapping[str, str]) -> dict[str, list[str]]:
    """Binding id -> its keys once ``keymap`` is applied."""
    return {b.id: split_keys(keymap[b.id]) if b.id in keymap else split_keys(b.keys) for b in BINDINGS}


def _suggest(name: str) -> str:
    tail = name.rsplit(".", 1)[-1].replace("cursor_", "")
    close = [b.id for b in BINDINGS if b.id == tail or b.id.endswith("." + tail) or tail in b.id]
    return f" (did you mean {' or '.join(close[:3])}?)" if close else ""


def _shared(keys: dict[str, list[str]], context: str) -> dict[str, set[str]]:
    """Key -> ids that answer it when ``context`` has the focus."""
    out: dict[str, set[str]] = {}
    for spec in BINDINGS:
        if spec.context in ACTIVE_TOGETHER[context]:
            for key in keys[spec.id]:
                out.setdefault(key, set()).add(spec.id)
    return out


def check_keymap(keymap: Mapping[str, str]) -> list[tuple[str, str]]:
    """(binding id, problem) for each mistake in a ``keymap:`` section, in the section's order.

    A mistake: an id no binding has; an empty key list; a key Textual reserves; a printable key for
    the composer or a dialog (it would be typed as text); a key that another binding active at the
    same time already answers (the later one would silently lose it), unless the defaults share it
    too (escape closes the composer before it goes back).
    """
    problems: list[tuple[str, str]] = []
    for name, value in keymap.items():
        if name not in BY_ID:
            problems.append((name, f"unknown binding id{_suggest(name)}; `?` in the console lists every id"))
        elif not isinstance(value, str) or not split_keys(value):
            problems.append((name, "no keys given (comma-separated keys, e.g. \"x,ctrl+d\")"))
    known = {k: v for k, v in keymap.items() if k in BY_ID and isinstance(v, str) and split_keys(v)}
    if not known:
        return problems
    now, before = effective(known), effective({})
    for name in known:
        spec = BY_ID[name]
        for key in now[name]:
            if key in RESERVED:
                problems.append((name, f"{key!r} is reserved for {RESERVED[key]}"))
            elif spec.context in TYPED_IN and len(key) == 1 and key != " ":
                problems.append((name, f"{key!r} is typed as text in the {CONTEXTS[spec.context]}; "
                                       "use a key with ctrl or alt, or a named key"))
    seen: set[tuple[str, frozenset[str]]] = set()
    for context in ACTIVE_TOGETHER:
        shared, default = _shared(now, context), _shared(before, context)
        for key, ids in shared.items():
            if len(ids) < 2 or ids <= default.get(key, set()) or (key, frozenset(ids)) in seen:
                continue
            seen.add((key, frozenset(ids)))
            mine = sorted(i for i in ids if i in known) or sorted(ids)
            others = sorted(ids - {mine[0]})
            where = CONTEXTS[context]
            problems.append((mine[0], f"{key!r} is also the key of {', '.join(others)} in the {where}; "
                                      "give one of them another key"))
    return problems


#: How README and the help show key names that stand for one character.
_SHOWN = {"slash": "/", "full_stop": ".", "exclamation_mark": "!", "question_mark": "?", "comma": ",",
          "left_square_bracket": "[", "right_square_bracket": "]"}


def shown_key(key: str) -> str:
    return _SHOWN.get(key, key)


def markdown_table() -> str:
    """README's key table (a test keeps README equal to it; ``python -m replydesk.keys`` prints it)."""
    lines = ["| where | keys | does | id |", "|---|---|---|---|"]
    for spec in BINDINGS:
        if spec.id.startswith("view_") and spec.id != "view_1":
            continue
        keys = " ".join(f"`{shown_key(k)}`" for k in split_keys(spec.keys))
        ident, what = f"`{spec.id}`", spec.description
        if spec.id == "view_1":
            keys, ident, what = "`1`-`9`", "`view_1`-`view_9`", "Saved views 1-9"
        if spec.count:
            what += " · takes a count"
        lines.append(f"| {CONTEXTS[spec.context]} | {keys} | {what} | {ident} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - prints the README table
    print(markdown_table())
