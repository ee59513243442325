"""Notice edits of the config file while replydesk runs.

The long-running processes (the console, ``replydesk sync``) poll the file's modification time and
size every couple of seconds; an edit is parsed and validated like at start-up. What may change
live is the SLA section (DESIGN: a policy edit applies to open conversations at once); the other
sections (accounts, keys, views, listening queries) take effect at the next start, and the caller says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from replydesk.config import Config

log = logging.getLogger(__name__)

#: Seconds between two looks at the file.
POLL_EVERY = 2.0


@dataclass(frozen=True)
class ConfigSource:
    """Where the config comes from and how to build it again the way it was built at start."""

    path: Path
    build: Callable[[], Config]


@dataclass
class ConfigChange:
    config: Config
    sla_changed: bool
    #: Sections that changed but apply at the next start.
    on_restart: list[str] = field(default_factory=list)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ConfigWatcher:
    def __init__(self, source: ConfigSource, current: Config) -> None:
        self.source = source
        self.current = current
        self._stamp = _stamp(source.path)

    def poll(self) -> ConfigChange | None:
        """The change since the last call, if the file was edited.

        Raises ``ConfigError`` (with file and line) for an edit that does not parse, once per
        edit; the settings in force stay as they were. A deleted file changes nothing.
        """
        stamp = _stamp(self.source.path)
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        new = self.source.build()
        old, self.current = self.current, new
        on_restart = [name for name in ("accounts", "sync", "keymap", "ui", "listening", "rules", "csat",
                                        "customer_languages") if getattr(old, name) != getattr(new, name)]
        sla_changed = old.sla != new.sla
        if not sla_changed and not on_restart:
            return None
        return ConfigChange(new, sla_changed, on_restart)
