"""The building blocks of every account's options, shared by the config and the provider modules.

Each provider module declares its own options model on ``AccountOptions`` (pydantic, a docstring per
field); ``replydesk.config`` validates an ``accounts:`` entry with the model of the provider it
names. What every platform needs the same way lives here once: strict models, durations, and the
rule that plain http (or a mail server without TLS) is only for this machine.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

#: The hosts a password or token may reach without TLS: this machine only.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_local(host: str | None) -> bool:
    return (host or "").lower().strip("[]") in LOCAL_HOSTS


def https_or_local(url: str) -> str:
    """An API base URL: https, or plain http for this machine only (tests, self-hosters)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_local(parts.hostname)):
        return url.rstrip("/")
    raise ValueError("must be an https:// URL (plain http only for localhost)")


_SECONDS_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|[wdhms])", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: The longest duration any option takes (about 300 years, "never" for every practical purpose):
#: beyond it a value would overflow the clock arithmetic it feeds (``undo_seconds: 1e300`` once broke
#: ``outbox --json``); options with a tighter sensible range say so themselves (``undo_seconds``).
MAX_SECONDS = 1e10


def parse_seconds(text: str) -> float:
    """``200ms``, ``1.5s``, ``30s``, ``5m``, ``1h30m``, ``2d`` or a bare number → seconds, exactly
    (sub-second values are kept: ``200ms`` is 0.2, not 0)."""
    raw = text.strip()
    try:
        number = float(raw)
    except ValueError:
        compact = raw.replace(" ", "")
        parts = _SECONDS_PART.findall(compact)
        if not compact or "".join(n + u for n, u in parts).lower() != compact.lower():
            raise ValueError(f"invalid duration {text!r}: expected e.g. 200ms, 1.5s, 30s, 5m, 1h30m") from None
        units = [u.lower() for _, u in parts]
        if len(set(units)) != len(units):
            raise ValueError(f"invalid duration {text!r}: a unit appears twice") from None
        number = sum(float(n) * _UNITS[u.lower()] for n, u in parts)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"invalid duration {text!r}: must be a finite, non-negative time")
    return number


def seconds(value: Any) -> Any:
    """``200ms``/``30s``/``5m``/``1h`` or a plain number → seconds; anything else is left to the type check."""
    if isinstance(value, str):
        return parse_seconds(value)
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 200ms, 30s, 5m, 1h")
    if isinstance(value, int | float) and not math.isfinite(value):
        raise ValueError("expected a finite duration")
    return value


#: A duration option: ``200ms``, ``90s``, ``30m``, ``4h`` or a number of seconds (up to ``MAX_SECONDS``).
Duration = Annotated[float, BeforeValidator(seconds), Field(ge=0, le=MAX_SECONDS)]
HttpsUrl = Annotated[str, BeforeValidator(lambda v: https_or_local(v) if isinstance(v, str) else v)]


class Strict(BaseModel):
    """Unknown keys are mistakes (a typo must not be silently ignored).

    Every field has a docstring (for the reader and for ``config.example.yaml``); pydantic is not
    asked to read them (``use_attribute_docstrings`` parses the module's source with ``ast``: ~10 ms
    of the console's start-up), since nothing shows them at run time.
    """

    model_config = ConfigDict(extra="forbid")


class AccountOptions(Strict):
    """What every account has; a provider module subclasses it with its own options."""

    #: what ``replydesk login`` asks for
    secret_hint: ClassVar[str] = "the token"

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """The account's name: the keyring entry, the conversation ids and ``--account`` use it."""
    provider: str
    """Which provider module serves the account (``demo``, ``email``, ``mastodon``, …)."""
    poll_interval: Duration | None = None
    """Seconds between fetches; default: the provider's own interval."""
    mark_read: bool = False
    """Mark a conversation read on the platform when you open it (the customer may see a read
    receipt), through the outbox; only where the provider can (the demo and WhatsApp)."""


def _quiet_hours(value: Any) -> Any:
    """``22:00-07:00`` (may cross midnight) → (start, end) minutes after midnight."""
    if value is None or not isinstance(value, str):
        return value
    import re

    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
    if not match:
        raise ValueError("expected HH:MM-HH:MM, e.g. 22:00-07:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
        raise ValueError("hours 00-23 and minutes 00-59, e.g. 22:00-07:00")
    return value.strip()


def _zone(value: Any) -> Any:
    if isinstance(value, str):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Athens)") from None
    return value


class MeteredOptions(AccountOptions):
    """An account on a platform that charges per use (X): a monthly budget the poller keeps to.

    The engine reads these (``isinstance(options, MeteredOptions)``): it records what each request
    cost, slows polling in quiet hours and as the budget runs low, and says so in the status bar.
    """

    monthly_budget_usd: float | None = Field(None, ge=0)
    """The most this account should cost a month, in US dollars (omit it: no limit, spend still shown)."""
    quiet_hours: Annotated[str | None, BeforeValidator(_quiet_hours)] = None
    """Hours with few customers, e.g. 22:00-07:00 (in ``timezone``): polls slow to ``quiet_poll_interval``."""
    quiet_poll_interval: Duration = 600.0
    """The polling interval in quiet hours."""
    timezone: Annotated[str, BeforeValidator(_zone)] = "UTC"
    """The time zone of ``quiet_hours`` (IANA name)."""
    listening_share: float = Field(0.2, ge=0, le=1)
    """The part of ``monthly_budget_usd`` listening searches may spend (0.2: a fifth); the rest stays for the inbox."""
