"""Driving the real console in tmux: start it on a demo workspace, send keys, read the screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich._palettes import EIGHT_BIT_PALETTE

REPO = Path(__file__).resolve().parents[2]


def need_tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux:
        return tmux
    reason = "tmux not installed: apt-get install tmux"
    if os.environ.get("REPLYDESK_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (REPLYDESK_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


def wait_for(fn: Callable[[], Any], timeout: float = 20.0, step: float = 0.1) -> Any:
    """Poll ``fn`` until it returns something true (a bound, not a sleep: the condition decides)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(step)
    return fn()


class Console:
    """``replydesk demo`` in a detached tmux session of the given size."""

    def __init__(self, data_dir: Path, size: tuple[int, int], env: dict[str, str] | None = None,
                 args: str = "--pace 3600") -> None:
        self.tmux = need_tmux()
        self.session = f"replydesk-t-{uuid.uuid4().hex[:8]}"
        base = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}  # colour unless a test asks
        self.env = {**base, "TERM": "xterm-256color", "COLORTERM": "truecolor", **(env or {})}
        exports = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        command = f"cd {REPO} && {exports} {sys.executable} -m replydesk.cli --data-dir {data_dir} demo {args}"
        self.run("new-session", "-d", "-s", self.session, "-x", str(size[0]), "-y", str(size[1]), command)

    def run(self, *args: str) -> str:
        return subprocess.run([self.tmux, *args], check=True, capture_output=True, text=True, env=self.env).stdout

    def screen(self, escapes: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if escapes else []), "-t", self.session)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def wait_until(self, shown: Callable[[str], bool], timeout: float = 20.0, escapes: bool = False) -> str:
        """The screen once ``shown`` accepts it ("" if it never does)."""
        def check() -> str:
            screen = self.screen(escapes)
            return screen if shown(screen) else ""

        return wait_for(check, timeout)

    def wait_for_inbox(self) -> str:
        shown = self.wait_until(lambda s: "Inbox (" in s and "Inbox (0)" not in s and "loading" not in s
                                and " ! " in s)
        assert shown, f"the inbox never appeared:\n{self.screen()}"
        return shown

    def alive(self) -> bool:
        return subprocess.run([self.tmux, "has-session", "-t", self.session], capture_output=True,
                              env=self.env).returncode == 0

    def close(self) -> None:
        subprocess.run([self.tmux, "kill-session", "-t", self.session], capture_output=True)


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def styled_runs(line: str) -> list[tuple[str, tuple[int, int, int] | None, tuple[int, int, int] | None, bool]]:
    """A ``capture-pane -e`` line as (text, fg, bg, bold) runs (truecolor and 256-colour SGR; tmux
    shows its panes in 256 colours unless its terminal is set to truecolor)."""
    runs, fg, bg, bold, pos = [], None, None, False, 0
    for match in _SGR.finditer(line):
        if match.start() > pos:
            runs.append((line[pos:match.start()], fg, bg, bold))
        codes = [int(c) if c else 0 for c in match.group(1).split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                fg, bg, bold = None, None, False
            elif c == 1:
                bold = True
            elif c == 22:
                bold = False
            elif c in (38, 48) and i + 4 < len(codes) and codes[i + 1] == 2:
                rgb = (codes[i + 2], codes[i + 3], codes[i + 4])
                fg, bg = (rgb, bg) if c == 38 else (fg, rgb)
                i += 4
            elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:  # tmux's 256 colours
                rgb = tuple(EIGHT_BIT_PALETTE[codes[i + 2]])
                fg, bg = (rgb, bg) if c == 38 else (fg, rgb)
                i += 2
            elif c == 39:
                fg = None
            elif c == 49:
                bg = None
            i += 1
        pos = match.end()
    runs.append((line[pos:], fg, bg, bold))
    return [r for r in runs if r[0]]
