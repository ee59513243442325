"""How the console words a conversation's reply window (the composer's line, the SLA pane, dialogs).

The window itself is data (``InboxRow.reply_windows``, kept by storage); whether a reply may leave
is ``replydesk.windows.check``, the same function storage and the engine ask, so what the console
shows is what will happen.
"""

from __future__ import annotations

from replydesk.storage.queries import InboxRow
from replydesk.windows import ACTIONABLE, CHOICES, Verdict, binding, check, span


def verdict_for(row: InboxRow, mode: str, now: float, send_as: str | None = None) -> Verdict | None:
    """The window's word on a reply in ``mode`` (public/private) to ``row`` at ``now``; None when no
    window binds it (a note never does)."""
    if mode == "note" or not row.reply_windows:
        return None
    from replydesk.platforms import BOOK

    label = BOOK.for_account(row.account, row.platform).label
    private = mode == "private" or row.kind in ("dm", "email")
    return check(row.reply_windows, now, private=private, send_as=send_as, platform=label)


#: What is left once a window closed, in a few words (the full sentence is the rule's ``after``).
LEFT_AFTER = {"template": "templates only", "public": "public answer only"}


def left_after(verdict: Verdict) -> str:
    return LEFT_AFTER.get(verdict.window.after_choice or "", "nothing until they write")


def short(verdict: Verdict, now: float) -> tuple[str, str | None]:
    """(text, colour role) for the composer's info line: the countdown, or what is left."""
    if verdict.allowed and verdict.until is not None:
        left = verdict.until - now
        return f"window {span(left)} left", "warning" if left < 3600 else None
    timed = [(c, u) for c, u in verdict.choices if u is not None]
    if timed:
        choice, until = timed[0]
        return f"window closed: {choice.replace('_', '-')} tag {span(until - now)} left", "warning"
    return f"window closed: {left_after(verdict)}", "error"


def pane_line(row: InboxRow, now: float) -> tuple[str, str, str | None] | None:
    """(state, detail, colour role) for the SLA pane, or None where no window applies. A DM is
    counted as a private reply would be; a comment as a public one, unless only a private window
    exists (then the private-reply window is what is counted down)."""
    if not row.reply_windows:
        return None
    private = row.kind in ("dm", "email") or binding(row.reply_windows, False) is None
    verdict = verdict_for(row, "private" if private else "public", now)
    if verdict is None:
        return None
    if verdict.allowed and verdict.until is not None:
        left = verdict.until - now
        then = f"then {left_after(verdict)}"
        detail = f"private replies; {then}" if verdict.window.private_only else then
        return f"{span(left)} left", detail, "warning" if left < 3600 else "success"
    timed = [(c, u) for c, u in verdict.choices if u is not None]
    closed = f"closed {span(now - (verdict.until or verdict.window.since))} ago"
    if timed:
        choice, until = timed[0]
        return closed, f"{choice.replace('_', '-')} tag {span(until - now)} left", "warning"
    return closed, left_after(verdict), "error"


def dialog_items(verdict: Verdict, now: float) -> list[tuple[str, str]]:
    """The choices a closed window leaves, as (key, description) for a ``ChoiceDialog``, ending with
    the way back to the draft."""
    items = []
    for choice, until in verdict.choices:
        if choice in ACTIONABLE:
            left = f" ({span(until - now)} left)" if until is not None else ""
            items.append((choice, CHOICES[choice] + left))
    items.append(("back", "back to the draft"))
    return items
