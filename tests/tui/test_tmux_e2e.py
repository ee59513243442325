"""End to end in a real terminal: the console in tmux on a demo workspace, driven by send-keys.

This is the one test that sees what a person sees (escape sequences, real key parsing, the live
sync engine); everything finer-grained lives in the pilot tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from replydesk.storage import outbox
from replydesk.storage.db import open_database
from tmux_support import need_tmux, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_console_in_tmux_shows_inbox_and_queues_a_reply(tmp_path: Path) -> None:
    tmux = need_tmux()
    session = f"replydesk-e2e-{uuid.uuid4().hex[:8]}"
    data_dir = tmp_path / "demo"
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}

    def tm(*args: str) -> str:
        return subprocess.run([tmux, *args], check=True, capture_output=True, text=True, env=env).stdout

    command = f"cd {REPO} && {sys.executable} -m replydesk.cli --data-dir {data_dir} demo --pace 3600"
    tm("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command)
    try:
        def screen() -> str:
            return tm("capture-pane", "-p", "-t", session)

        def inbox_shown() -> str:
            s = screen()
            return s if "Inbox (" in s and "Inbox (0)" not in s else ""

        shown = wait_for(inbox_shown)
        assert shown, f"the inbox never appeared:\n{screen()}"
        assert "replydesk" in shown and "breached" in shown
        tm("send-keys", "-t", session, "r")
        assert wait_for(lambda: "ctrl+s send" in screen()), screen()
        tm("send-keys", "-t", session, "-l", "Hello from tmux")
        assert wait_for(lambda: "Hello from tmux" in screen()), screen()
        tm("send-keys", "-t", session, "C-s")
        assert wait_for(lambda: "queued" in screen().lower()), screen()

        db = open_database(data_dir, create=False)
        try:
            items = wait_for(lambda: [i for i in outbox.pending(db, ("queued", "sending", "sent"))
                                       if i.text == "Hello from tmux"])
            assert items, "the reply never reached the outbox"
        finally:
            db.close()
        # q inside the undo window says the reply is waiting and offers to send it now.
        tm("send-keys", "-t", session, "q")
        assert wait_for(lambda: "waiting to leave" in screen()), screen()
        tm("send-keys", "-t", session, "Enter")  # the first choice: send now, then quit
        # The app quits once the engine has sent it, and with it the tmux session ends.
        closed = wait_for(lambda: subprocess.run([tmux, "has-session", "-t", session], capture_output=True,
                                                  env=env).returncode != 0, timeout=20)
        assert closed, f"send now did not quit:\n{screen()}"
        db = open_database(data_dir, create=False)
        try:
            sent = [i for i in outbox.pending(db, ("sent",)) if i.text == "Hello from tmux"]
            assert sent, "quitting with 'send now' left the reply unsent"
        finally:
            db.close()
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], capture_output=True)
