"""Peer figures: the mail tools a shop would pick instead, on the very same messages.

notmuch (Xapian) for import and search, neomutt for start-up and keys; both are Debian packages
(``apt-get install notmuch neomutt``) and a figure is null with a note when one is missing.

The corpus is the benchmark workspace's own export, written out as a maildir (one RFC 5322 file
per message, a conversation's messages chained by In-Reply-To/References so notmuch threads them
as replydesk does), made once per workspace and cached beside it. What is not the same, and is
said in each figure's note and in README: notmuch indexes every header and stems English words
(``order`` also finds ``ordered``); replydesk indexes message text, authors, subjects and tags,
unstemmed; notmuch prints a line per thread, replydesk a JSON object per conversation.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DONE = ".complete"
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_]")


def available(tool: str) -> bool:
    return shutil.which(tool) is not None


# ---- the corpus: a maildir of the same messages -------------------------------------------------------


def _address(name: str | None, handle: str | None, platform: str) -> str:
    """A From/To header for a customer: their address on email, a stand-in mailbox elsewhere."""
    handle = handle or "someone"
    local, at, domain = handle.lstrip("@").rpartition("@") if "@" in handle[1:] else (handle.lstrip("@"), "@", "")
    addr = f"{_UNSAFE.sub('_', local) or 'someone'}@{_UNSAFE.sub('_', domain) or platform + '.invalid'}"
    return email.utils.formataddr((name or "", addr), charset="utf-8")


def _header(text: str) -> str:
    text = " ".join(text.split())
    return text if text.isascii() else email.header.Header(text, "utf-8").encode()


def _message_id(item_id: str) -> str:
    return f"<{_UNSAFE.sub('_', item_id)}@bench.invalid>"


def message_files(record: dict[str, Any]) -> Iterator[bytes]:
    """The RFC 5322 files of one exported conversation (notes are internal: not mail)."""
    customer = record.get("customer") or {}
    them = _address(customer.get("name"), customer.get("handle"), record["platform"])
    shop = f"Shop <shop@{record['account']}.invalid>"
    first_text = next((m["text"] for m in record["messages"] if m["direction"] == "in"), "")
    subject = record.get("subject") or " ".join(first_text.split()[:8]) or record["kind"]
    chain: list[str] = []
    for m in record["messages"]:
        if m["direction"] == "note":
            continue
        inbound = m["direction"] == "in"
        author = _address(m.get("author") or customer.get("name"), customer.get("handle"), record["platform"]) \
            if inbound else shop
        at = dt.datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))
        mid = _message_id(m["id"])
        lines = [
            f"From: {author}", f"To: {shop if inbound else them}", f"Subject: {_header(subject)}",
            f"Date: {email.utils.format_datetime(at)}", f"Message-ID: {mid}",
        ]
        if chain:
            lines += [f"In-Reply-To: {chain[-1]}", f"References: {' '.join(chain[-10:])}"]
        lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
                  f"X-Replydesk-Conversation: {_UNSAFE.sub('_', record['id'])}"]
        chain.append(mid)
        yield ("\n".join(lines) + "\n\n" + m["text"] + "\n").encode("utf-8", "surrogateescape")


def maildir(export: Path, cache_dir: Path, key: str, log: Any = None) -> tuple[Path, int]:
    """The maildir of ``export`` (cached: ``<key>-maildir``) and how many messages it holds."""
    root = cache_dir / f"{key}-maildir"
    done = root / DONE
    if done.exists():
        return root, int(done.read_text())
    if root.exists():
        shutil.rmtree(root)
    cur = root / "inbox" / "cur"
    for sub in ("cur", "new", "tmp"):
        (root / "inbox" / sub).mkdir(parents=True)
    n = 0
    started = time.perf_counter()
    with open(export, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            for data in message_files(json.loads(line)):
                n += 1
                with open(cur / f"{n:08d}.bench:2,S", "wb") as out:
                    out.write(data)
            if log and n % 200_000 < 12:
                log(f"  maildir: {n:,} messages ({time.perf_counter() - started:.0f} s)")
    done.write_text(str(n))
    return root, n


# ---- notmuch -------------------------------------------------------------------------------------------


def notmuch_config(mail_root: Path, db_dir: Path) -> Path:
    """A config of its own (nothing of the user's): this mail root, its database elsewhere."""
    db_dir.mkdir(parents=True, exist_ok=True)
    path = db_dir / "notmuch-config"
    path.write_text(
        "[database]\n"
        f"mail_root={mail_root}\n"
        f"path={db_dir / 'xapian'}\n"
        "[user]\nname=Shop\nprimary_email=shop@bench.invalid\n"
        "[new]\ntags=inbox;\nignore=\n"
        "[search]\nexclude_tags=\n"
        "[maildir]\nsynchronize_flags=false\n",
        encoding="utf-8",
    )
    return path


def notmuch_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTMUCH_")}
    env["NOTMUCH_CONFIG"] = str(config)
    env.pop("MAILDIR", None)
    return env


def timed_peak(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a command, through GNU time's ``%M`` (the child's own maxrss:
    time forks it from itself, a small process, not from this bench)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", *cmd], env=env, cwd=cwd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KB ")]
    if proc.returncode != 0 or not peak:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {proc.stderr[-500:]}")
    return seconds, int(peak[-1].split()[1]) / 1024


def notmuch_new(mail_root: Path, db_dir: Path) -> tuple[float, float, Path]:
    """Index the maildir into a fresh notmuch database: (seconds, peak MB, its config)."""
    if db_dir.exists():
        shutil.rmtree(db_dir)
    config = notmuch_config(mail_root, db_dir)
    (db_dir / "xapian").mkdir()
    seconds, peak = timed_peak(["notmuch", "new", "--quiet"], env=notmuch_env(config))
    return seconds, peak, config
