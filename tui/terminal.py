"""What the console asks of the terminal and the desktop: desktop notifications, the system opener.

Everything that goes into an escape sequence is flattened to printable text first: a customer's
name in a notification must not end the sequence early (BEL, ESC, ST) and start one of its own.
Opening runs the platform's opener (``xdg-open``, ``open``) as a separate process with the URL or
file as one argument, never through a shell.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from replydesk.safetext import one_line

_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f;\u2028\u2029]")
#: Link schemes the console opens; anything else (javascript:, file:, data:, …) is refused.
OPENABLE_SCHEMES = ("http", "https", "mailto")


def plain(text: str, limit: int = 200) -> str:
    """One line of text safe inside an OSC sequence (controls and ``;`` replaced)."""
    flat = _NOT_PRINTABLE.sub(" ", one_line(text))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def desktop_notification(kind: str, title: str, body: str, *, in_tmux: bool) -> str:
    """The OSC 9 (``osc9``) or OSC 777 (``osc777``) sequence for a desktop notification; inside
    tmux wrapped for passthrough (the outer terminal shows it; tmux needs allow-passthrough)."""
    title, body = plain(title, 80), plain(body)
    if kind == "osc9":
        seq = f"\x1b]9;{title}: {body}\x07"
    elif kind == "osc777":
        seq = f"\x1b]777;notify;{title};{body}\x07"
    else:
        raise ValueError(f"unknown desktop notification kind {kind!r}")
    if in_tmux:
        seq = "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return seq


def write_sequence(app: Any, seq: str) -> None:
    """Send ``seq`` to the terminal (nothing when headless: no terminal to tell)."""
    driver = getattr(app, "_driver", None)
    if driver is not None and not app.is_headless:
        driver.write(seq)
        driver.flush()


def opener() -> list[str] | None:
    """The system's command that opens a file or URL with its usual application."""
    if sys.platform == "darwin":
        name = "open"
    elif sys.platform == "win32":  # pragma: no cover - not tested here
        return ["cmd", "/c", "start", ""]
    else:
        name = "xdg-open"
    path = shutil.which(name)
    return [path] if path else None


class OpenError(Exception):
    """Why something could not be opened, in words for the status line."""


def check_url(url: str) -> str:
    """``url`` if the console may open it, else OpenError: only http(s) and mailto, no spaces or
    controls (the opener gets exactly the text the user saw)."""
    if url != url.strip() or _NOT_PRINTABLE.search(url) or " " in url:
        raise OpenError("the link has spaces or control characters in it")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in OPENABLE_SCHEMES:
        raise OpenError(f"only {', '.join(OPENABLE_SCHEMES)} links are opened, not {scheme or 'this'}:")
    return url


def open_with_system(target: str | Path) -> None:
    """Hand ``target`` (a checked URL or an existing file) to the system opener, detached."""
    command = opener()
    if command is None:
        raise OpenError("no opener found (install xdg-utils for xdg-open)")
    if isinstance(target, Path) and not target.is_file():
        raise OpenError(f"{target.name} is not in the cache any more")
    try:
        subprocess.Popen([*command, str(target)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
    except OSError as exc:
        raise OpenError(f"the opener failed: {exc.strerror or exc}") from None
