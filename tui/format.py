"""Pure formatting for the console: countdowns, safe cells, grapheme counts, snooze times.

No Textual imports, so everything here is unit-testable and shared by every widget. All customer
text goes through :func:`safe` / :func:`cell`, which apply ``replydesk.safetext`` and return
``rich.text.Text`` objects — never markup strings — so ``[bold]`` or ``[@click=…]`` stay literal.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from functools import lru_cache
from zoneinfo import ZoneInfo

import regex
from rich.cells import cell_len
from rich.style import Style
from rich.text import Text

from replydesk.safetext import one_line, visible
from replydesk.timeparse import parse_when

_GRAPHEME = regex.compile(r"\X")

#: Symbols carry the state without colour (NO_COLOR, monochrome terminals, screen readers).
#: ``missed``: a target was missed earlier (a breach stays a breach) while the clock shown, the one
#: the row is sorted by, is still running in time.
STATE_SYMBOL = {"breached": "!", "warning": "~", "paused": "=", "ok": " ", "fulfilled": " ", "none": " ",
                "missed": "×"}
#: A listening match in the list (no clock: the query that found it stands where the countdown would).
LISTENING_SYMBOL = "○"


def stars(rating: int | None, *, compact: bool = False) -> str:
    """A review's rating in characters, so it reads without colour: ``★★☆☆☆`` (``2★`` compact);
    '' for none."""
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        return ""
    return f"{rating}★" if compact else "★" * rating + "☆" * (5 - rating)


def graphemes(text: str) -> int:
    """User-perceived characters, which is what platforms count against their limits."""
    return len(_GRAPHEME.findall(text))


def duration(seconds: float) -> str:
    """``12m``, ``1h 05m``, ``2d 03h``: minutes are enough precision for an SLA list."""
    seconds = abs(seconds)
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def countdown(state: str, due_at: float | None, warn_at: float | None, now: float) -> tuple[str, str]:
    """(text, effective state) for the list's SLA column: the clock the row is sorted by.

    The stored ``sla_state`` may be up to a sweep behind; the deadline is exact, so a row whose
    deadline passed shows breached at once, and one past its warning time shows warning. The stored
    state is the worst of the conversation's metrics, so ``breached`` with a deadline still ahead
    means an earlier target was missed (a first reply sent late) while the next one (resolution,
    say) runs: the row shows that live clock, marked ``missed``, not a false ``0m``.
    """
    if state == "paused":
        return "paused", "paused"
    if due_at is None:
        if state == "breached":  # every clock has stopped; one of them was late
            return "", "missed"
        return "", state if state == "fulfilled" else "none"
    left = due_at - now
    if left <= 0:
        return "-" + duration(-left) if left < 0 else "0m", "breached"
    warning = state == "warning" or (warn_at is not None and now >= warn_at)
    if warning:
        return duration(left), "warning"
    return duration(left), "missed" if state == "breached" else "ok"


def safe(text: str | None, style: str | Style = "") -> Text:
    """Customer text for a multi-line area: controls and bidi made visible, never parsed as markup."""
    return Text(visible((text or "").expandtabs(4)), style=style)


@lru_cache(maxsize=4096)
def _char_extra(ch: str) -> int:
    """1 for a spacing combining mark (Devanagari ``ा``, ``ि``…), which terminals give a cell but
    Rich measures as 0; 0 otherwise. Without it every Indic name pushes the next column left."""
    return 1 if unicodedata.category(ch) == "Mc" and cell_len(ch) == 0 else 0


def term_len(text: str) -> int:
    """Cells a terminal (wcwidth semantics, as xterm/VTE/tmux) gives ``text``."""
    if text.isascii():
        return len(text)
    return cell_len(text) + sum(_char_extra(c) for c in text)


def fit(text: str, width: int, *, align: str = "left") -> str:
    """Exactly ``width`` terminal cells: truncated by grapheme with an ellipsis, then padded."""
    if width <= 0:
        return ""
    used = term_len(text)
    if used > width:
        out: list[str] = []
        used = 0
        for g in _GRAPHEME.findall(text):
            w = term_len(g)
            if used + w > width - 1:
                break
            out.append(g)
            used += w
        text, used = "".join(out) + "…", used + 1
    pad = " " * (width - used)
    return pad + text if align == "right" else text + pad


def safe_line(text: str | None, style: str | Style = "") -> Text:
    """Customer text for a header or a label: ``safe`` and flattened to one line (a multi-line
    name or subject must not fill a header)."""
    return Text(one_line((text or "").expandtabs(4)), style=style)


def cell(text: str | None, width: int, style: str | Style = "", *, align: str = "left") -> Text:
    """One fixed-width, single-line cell measured in terminal cells (CJK, emoji, combining marks)."""
    return Text(fit(one_line(text or ""), width, align=align), style=style, no_wrap=True, end="")


def _zone(tz: str | dt.tzinfo | None) -> dt.tzinfo:
    return tz if isinstance(tz, dt.tzinfo) else ZoneInfo(tz) if tz else dt.UTC


def clock_time(at: float | None, now: float, tz: str | dt.tzinfo | None = None) -> str:
    """Short time for the thread: ``14:05`` today, ``3 Mar 14:05`` otherwise."""
    if at is None:
        return ""
    zone = _zone(tz)
    when = dt.datetime.fromtimestamp(at, zone)
    today = dt.datetime.fromtimestamp(now, zone).date()
    return when.strftime("%H:%M") if when.date() == today else when.strftime("%d %b %H:%M")


def leaves(at: float, now: float, tz: str | dt.tzinfo | None = None) -> str:
    """When a queued reply leaves, as a person reads it: ``in 4s`` inside the undo window,
    ``at 14:05 (in 29m)`` for a scheduled one, counting down as the clock moves."""
    left = at - now
    if left < 60:
        return f"in {max(math.ceil(left), 1)}s"
    return f"at {clock_time(at, now, tz)} (in {duration(left)})"


def snooze_until(choice: str, now: float, tz: str | dt.tzinfo | None = None) -> float:
    """Epoch for a snooze or send-later preset (``1h``, ``4h``, ``tomorrow`` = tomorrow 9:00) or a
    custom entry (``30m``, ``2h``, ``3d``, ``14:30``, ``monday 9:00``, ``2025-06-01 09:00``).

    The same reading as the CLI's ``--at``/``--until`` (``timeparse.parse_when``), in the same zone,
    DST-correct. Raises ValueError with a readable message.
    """
    choice = choice.strip()
    try:
        at = parse_when("tomorrow 9:00" if choice == "tomorrow" else choice, now, _zone(tz) if tz else None)
    except ValueError:
        raise ValueError("use 30m, 2h, 3d, 14:30, tomorrow 9:00 or 2025-06-01 09:00") from None
    if at - now < 60:
        raise ValueError("that time has already passed" if at <= now else "snooze for at least a minute")
    return at


def fill_template(template: str, customer: str) -> str:
    """A saved reply with ``{customer}`` filled; unknown ``{fields}`` are left as typed."""
    first = customer.split()[0] if customer.strip() else "there"
    return template.replace("{customer}", customer or "there").replace("{first_name}", first)
