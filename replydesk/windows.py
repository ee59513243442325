"""Reply windows: how long after the customer's last message a platform lets a business answer.

WhatsApp allows any reply for 24 hours after the customer's last message, then only approved
templates. Messenger and Instagram allow 24 hours, then up to 7 days a message with the human-agent
tag, then nothing. A private reply to a Facebook or Instagram comment must go out within 7 days of
the comment; after that only a public reply is possible.

Each provider states its rules (``WindowRule``, part of its platform facts); storage keeps each
conversation's windows as absolute times (``open_windows``), recomputed whenever the customer
writes; and everything that queues or sends a reply asks ``check`` first: the composer, the CLI,
storage when it queues, and the engine again before sending. So a reply outside its window gets a
clear message and the choices the platform allows. It never leaves only to be refused later.

Pure (standard library only): the console, the CLI, storage and the engine all use it. Its records
are NamedTuples: the inbox rows a read command lists carry windows, and dataclasses would cost
that command their machinery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

#: What may be sent, besides a plain reply, while a step of a window lasts (``WindowStep.allows``).
HUMAN_AGENT = "human_agent"
REPLY = "reply"
#: Choice id -> how it is offered to the user (the console's dialog, the CLI's message).
CHOICES: dict[str, str] = {
    HUMAN_AGENT: "send it with the human-agent tag",
    "public": "answer publicly instead",
    "template": "send an approved template",
}
#: Choices the user can take now (the console offers them when a window has closed).
ACTIONABLE = (HUMAN_AGENT, "public", "template")
#: What a platform allows whatever the window says (WhatsApp: an approved template, at any time).
TEMPLATE = "template"
AT_ANY_TIME = (TEMPLATE,)


class WindowStep(NamedTuple):
    """Until ``seconds`` after the customer's last message, ``allows`` may be sent
    (``"reply"``: any reply; a choice id such as ``"human_agent"``: a reply sent that way)."""

    seconds: float
    allows: str = REPLY


class WindowRule(NamedTuple):
    """A platform's rule for one or more conversation kinds.

    ``steps`` all count from the customer's last message. ``after`` says what the platform still
    allows once every step has passed, and ``after_choice`` is the choice it maps to, if any
    (``"public"``, ``"template"``). ``private_only``: the rule binds private replies only (a
    private reply to a public comment). A public answer to the comment is always allowed.
    """

    name: str
    kinds: tuple[str, ...]
    steps: tuple[WindowStep, ...]
    after: str
    after_choice: str | None = None
    private_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kinds": list(self.kinds), "after": self.after, "after_choice": self.after_choice,
                "private_only": self.private_only,
                "steps": [{"seconds": s.seconds, "allows": s.allows} for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Any) -> WindowRule | None:
        """A rule read back from storage, or None when it is malformed (then no window is kept)."""
        if not isinstance(data, Mapping):
            return None
        name, after = data.get("name"), data.get("after")
        kinds, steps = data.get("kinds"), data.get("steps")
        if not (isinstance(name, str) and isinstance(after, str) and isinstance(kinds, list)
                and isinstance(steps, list)):
            return None
        parsed = []
        for step in steps:
            seconds = step.get("seconds") if isinstance(step, Mapping) else None
            allows = step.get("allows") if isinstance(step, Mapping) else None
            if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0
                    and isinstance(allows, str)):
                return None
            parsed.append(WindowStep(float(seconds), allows))
        choice = data.get("after_choice")
        return cls(name, tuple(k for k in kinds if isinstance(k, str)), tuple(parsed), after,
                   choice if isinstance(choice, str) else None, data.get("private_only") is True)


class Window(NamedTuple):
    """One rule applied to one conversation: ``steps`` as (until, allows) in epoch seconds."""

    name: str
    since: float  # the customer's message it counts from
    steps: tuple[tuple[float, str], ...]
    after: str
    after_choice: str | None = None
    private_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "since": self.since, "steps": [list(s) for s in self.steps], "after": self.after,
                "after_choice": self.after_choice, "private_only": self.private_only}

    @classmethod
    def from_dict(cls, data: Any) -> Window | None:
        if not isinstance(data, Mapping):
            return None
        name, since, after, steps = data.get("name"), data.get("since"), data.get("after"), data.get("steps")
        if not (isinstance(name, str) and isinstance(since, int | float) and isinstance(after, str)
                and isinstance(steps, list)):
            return None
        parsed = []
        for step in steps:
            if not (isinstance(step, list | tuple) and len(step) == 2 and isinstance(step[0], int | float)
                    and isinstance(step[1], str)):
                return None
            parsed.append((float(step[0]), step[1]))
        choice = data.get("after_choice")
        return cls(name, float(since), tuple(parsed), after, choice if isinstance(choice, str) else None,
                   data.get("private_only") is True)


def open_windows(rules: Iterable[WindowRule], kind: str, last_inbound_at: float | None) -> list[Window]:
    """The windows a conversation of ``kind`` has after the customer's message at ``last_inbound_at``
    (none when the customer never wrote: there is nothing to answer within a window)."""
    if last_inbound_at is None:
        return []
    return [Window(r.name, last_inbound_at, tuple((last_inbound_at + s.seconds, s.allows) for s in r.steps),
                   r.after, r.after_choice, r.private_only)
            for r in rules if kind in r.kinds and r.steps]


def parse(stored: Any) -> list[Window]:
    """Windows as storage keeps them (a JSON list), malformed entries left out."""
    return [w for w in (Window.from_dict(d) for d in stored) if w is not None] if isinstance(stored, list) else []


class Verdict(NamedTuple):
    """What a window says about one reply at one moment.

    ``allowed``: the reply may leave (as ``send_as`` asks). ``until``: when the step that allows it
    ends (the countdown). ``choices``: (choice, until) that are still possible when a plain reply is
    not. ``reason``: a sentence for the user when the reply is not allowed.
    """

    window: Window
    allowed: bool
    until: float | None
    choices: tuple[tuple[str, float | None], ...]
    reason: str


def binding(windows: Sequence[Window], private: bool) -> Window | None:
    """The window that binds a reply (a private-only window binds only private replies)."""
    return next((w for w in windows if private or not w.private_only), None)


def check(windows: Sequence[Window], at: float, *, private: bool, send_as: str | None = None,
          platform: str = "") -> Verdict | None:
    """Whether a reply may leave at ``at``; None when no window binds it.

    ``private``: a private reply (or any reply on a DM). ``send_as``: a choice the user took
    (``"human_agent"``). ``platform``: the platform's label, used in the reason.
    """
    window = binding(windows, private)
    if window is None:
        return None
    wanted = send_as or REPLY
    if wanted == window.after_choice and wanted in AT_ANY_TIME:  # an approved template: always allowed
        return Verdict(window, True, None, (), "")
    until = max((u for u, allows in window.steps if allows == wanted), default=None)
    allowed = until is not None and at <= until
    choices: list[tuple[str, float | None]] = []
    if not allowed:
        choices = [(allows, u) for u, allows in window.steps if allows not in (REPLY, wanted) and at <= u]
        if window.after_choice and window.after_choice not in {c for c, _ in choices}:
            choices.append((window.after_choice, None))
    reason = "" if allowed else refusal(window, at, choices, platform, wanted)
    return Verdict(window, allowed, until, tuple(choices), reason)


def refusal(window: Window, at: float, choices: Sequence[tuple[str, float | None]], platform: str,
            wanted: str = REPLY) -> str:
    """Why a reply cannot leave now, and what the platform still allows, in one sentence."""
    owner = f"{platform}'s " if platform else "the "
    plain_until = max((u for u, allows in window.steps if allows == REPLY), default=window.since)
    what = "this reply" if wanted == REPLY else f"a reply sent as {wanted.replace('_', '-')}"
    text = f"{owner}{window.name} closed {span(at - plain_until)} ago (it counts from the customer's last message)"
    if wanted != REPLY:
        text = f"{what} is not possible now: " + text
    timed = [f"{CHOICES.get(c, c)} for {span(u - at)} more" for c, u in choices if u is not None]
    if timed:
        return text + "; you can still " + " or ".join(timed)
    return text + f": {window.after}"


def span(seconds: float) -> str:
    """``5m``, ``23h 59m``, ``6d 23h``: a window's countdown to the minute."""
    minutes = int(abs(seconds) // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"
