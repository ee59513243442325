"""Every command on a damaged, locked, full or read-only workspace: one line, exit 1 or 2, never a
traceback; ``doctor`` names the fault and advises a restore only for a file that is damaged.

The damage is real: bytes of a real workspace file overwritten or cut, a table dropped, the write
lock held by another process, a tmpfs of the test's own filled to the last byte or mounted
read-only. Commands run in-process through ``cli.main`` (what ``replydesk`` runs), so an exception
escaping it fails the test with its traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from replydesk import cli
from replydesk.storage import doctor
from support import Clock, fill_disk, make_workspace, own_tmpfs, sync_once

COMMANDS = [
    ["search", "order"], ["show", "c1"], ["reply", "c1", "--text", "hi"], ["note", "c1", "--text", "n"],
    ["outbox"], ["outbox", "--json"], ["tag", "c1", "x"], ["untag", "c1", "x"], ["assign", "c1", "ann"],
    ["escalate", "c1"], ["resolve", "c1"], ["reopen", "c1"], ["snooze", "c1", "--until", "2h"], ["sla", "c1"],
    ["report"], ["report", "--json"], ["export"], ["accounts"], ["doctor"], ["doctor", "--repair"],
    ["demo", "--headless", "--once"], ["import", "-"], ["contact", "show", "c1"], ["contact", "note", "c1", "n"],
    ["contact", "vip", "c1", "--on"],
]
QUICK = "sync:\n  lock_timeout: 200ms\n"  # a held lock is reported after 0.2 s, not 30


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo workspace after one sync, checkpointed so all of it is in the main file."""
    path = tmp_path_factory.mktemp("pristine") / "ws"
    sync_once(make_workspace(path, Clock()))
    conn = sqlite3.connect(path / "replydesk.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for name in ("replydesk.db-wal", "replydesk.db-shm"):
        (path / name).unlink(missing_ok=True)
    return path


def _pages(db: Path) -> int:
    return db.stat().st_size // 4096


def _overwrite(db: Path, pages: range, byte: bytes) -> None:
    with open(db, "r+b") as fh:
        for page in pages:
            fh.seek(page * 4096)
            fh.write(byte * 4096)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda db: os.truncate(db, db.stat().st_size // 2),
    "zeroed-tail": lambda db: _overwrite(db, range(_pages(db) * 2 // 3, _pages(db)), b"\0"),
    "garbage-pages": lambda db: _overwrite(db, range(_pages(db) // 3, _pages(db) // 2), b"\xff"),
    "zeroed-header": lambda db: _overwrite(db, range(0, 1), b"\0"),
    "not-a-database": lambda db: db.write_text("hello, not a database\n" * 500),
    "empty": lambda db: db.write_bytes(b""),
    "no-outbox-table": lambda db: _sql(db, "DROP TABLE outbox"),
}


def _sql(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute(statement)
    conn.commit()
    conn.close()


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """``replydesk ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def check_one_line(code: int, err: str, what: str, out: str = "") -> str:
    """The command's complaint (its one stderr line), '' when it succeeded; ``doctor`` reports its
    findings on stdout instead, one per line."""
    assert "Traceback" not in err + out, what
    assert code in (0, 1, 2), (what, code)
    lines = err.strip().splitlines()
    if code and "doctor" in what and not lines:
        assert out.strip(), what
        return out.strip().splitlines()[-1]
    if code:
        assert len(lines) == 1 and lines[0].startswith("replydesk: "), (what, lines)
        return lines[0]
    return ""


def copy_of(pristine: Path, where: Path) -> Path:
    shutil.copytree(pristine, where)
    return where


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_every_command_on_a_damaged_workspace_says_one_line(pristine: Path, tmp_path: Path, kind: str) -> None:
    said: dict[str, str] = {}
    for i, command in enumerate(COMMANDS):
        ws = copy_of(pristine, tmp_path / f"ws{i}")
        DAMAGE[kind](ws / "replydesk.db")
        code, out, err = run([*command, "--data-dir", str(ws)], stdin='{"id": "x"}\n')
        said[" ".join(command)] = check_one_line(code, err, f"{kind}: {command}", out)
    if kind == "empty":  # never silently a fresh workspace
        assert "empty file (0 bytes) where a workspace was" in said["search order"]
        assert all(said[c] for c in said if c != "doctor --repair"), said
    if kind == "no-outbox-table":
        assert "lacks part of its schema (no such table: outbox)" in said["outbox"]


def test_the_console_refuses_a_workspace_it_cannot_open_in_one_line(pristine: Path, tmp_path: Path) -> None:
    for kind in ("not-a-database", "empty", "truncated"):
        ws = copy_of(pristine, tmp_path / kind)
        DAMAGE[kind](ws / "replydesk.db")
        code, _, err = run(["--data-dir", str(ws)])  # no command: the console
        assert code == 1 and check_one_line(code, err, kind)


def test_doctor_finds_a_missing_table_and_repair_recreates_it(pristine: Path, tmp_path: Path) -> None:
    ws = copy_of(pristine, tmp_path / "ws")
    DAMAGE["no-outbox-table"](ws / "replydesk.db")
    report = doctor.check(ws)
    assert not report["ok"]
    assert any(f.startswith("schema: table outbox is missing") for f in report["findings"]), report
    assert not any("restore from an export" in f and "outbox" not in f for f in report["findings"])
    repaired = doctor.check(ws, repair=True)
    assert any("table outbox was missing; recreated empty" in f for f in repaired["findings"]), repaired
    assert doctor.check(ws)["ok"]
    code, out, err = run(["outbox", "--data-dir", str(ws)])
    assert (code, out.strip(), err) == (0, "outbox empty: every reply has left", "")


def test_doctor_on_a_healthy_workspace_says_its_schema_is_complete(pristine: Path, tmp_path: Path) -> None:
    report = doctor.check(copy_of(pristine, tmp_path / "ws"))
    assert report["ok"] and "schema: complete" in report["findings"], report


def test_doctor_treats_an_empty_file_as_damage(pristine: Path, tmp_path: Path) -> None:
    ws = copy_of(pristine, tmp_path / "ws")
    DAMAGE["empty"](ws / "replydesk.db")
    report = doctor.check(ws)
    assert not report["ok"] and "empty file (0 bytes)" in report["findings"][-1]
    assert (ws / "replydesk.db").stat().st_size == 0  # nothing was made of it


HOLD_LOCK = ("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "c.execute('BEGIN IMMEDIATE')\nprint('held', flush=True)\nsys.stdin.readline()\n")


def test_a_write_lock_held_from_outside_is_one_line_for_every_command(pristine: Path, tmp_path: Path) -> None:
    ws = copy_of(pristine, tmp_path / "ws")
    config = tmp_path / "config.yaml"
    config.write_text(QUICK, encoding="utf-8")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ws / "replydesk.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        for command in COMMANDS:
            if command[0] == "demo":
                continue  # the demo workspace has its own config; sync is covered by test_supervision
            code, out, err = run([*command, "--data-dir", str(ws), "--config", str(config)], stdin="")
            line = check_one_line(code, err, str(command), out)
            if command[0] in ("reply", "tag", "note", "resolve"):
                assert code == 1 and "is locked: another process has held its write lock for over 0.2 s" in line
    finally:
        holder.communicate("\n", timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with own_tmpfs(tmp_path / "disk", "size=4m") as disk:
        yield disk


def test_a_full_disk_is_named_with_the_space_left_and_no_restore_is_advised(pristine: Path,
                                                                           small_disk: Path) -> None:
    ws = copy_of(pristine, small_disk / "ws")
    fill_disk(small_disk)
    for command in COMMANDS:
        code, out, err = run([*command, "--data-dir", str(ws)], stdin="")
        line = check_one_line(code, err, str(command), out)
        if code and command[0] != "doctor":
            assert "is full (0 bytes free)" in line or "disk full" in line, (command, line)
            assert "disk I/O error" not in line
    report = doctor.check(ws)
    assert not report["ok"]
    text = "\n".join(report["findings"])
    assert "is full (0 bytes free)" in text and "the file itself is intact" in text
    assert "restore" not in text.replace("nothing needs restoring", "")


def test_a_read_only_workspace_says_so(pristine: Path, small_disk: Path) -> None:
    ws = copy_of(pristine, small_disk / "ws")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    said = {}
    for command in COMMANDS:
        code, out, err = run([*command, "--data-dir", str(ws)], stdin="")
        said[command[0]] = check_one_line(code, err, str(command), out)
    assert "read-only" in said["reply"], said["reply"]
