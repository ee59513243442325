"""``replydesk import`` streams in committed batches: kill -9 loses nothing and a rerun continues;
a record never writes outside its own account; malformed files get one clear line, never a traceback."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replydesk.cli import main
from replydesk.config import Config
from replydesk.model import iso
from replydesk.sla import SlaEngine
from replydesk.storage import importer
from replydesk.storage.db import DB_FILENAME, open_database
from support import FIXED_NOW, REPO

T0 = FIXED_NOW - 400 * 86400  # long past: every SLA state is settled, whatever the day the test runs


def record(n: int, account: str = "shop", messages: int = 3, **extra) -> dict:
    conv = f"{account}:c{n}"
    msgs = [{"id": f"{account}:m{n}-{j}", "direction": "in" if j % 2 == 0 else "out",
             "author": f"Customer {n % 50}" if j % 2 == 0 else "Shop", "text": f"message {j} about order {n}",
             "created_at": iso(T0 + n * 60 + j), "state": "received" if j % 2 == 0 else "sent"}
            for j in range(messages)]
    return {"id": conv, "account": account, "platform": "telegram", "kind": "dm",
            "customer": {"id": f"{account}:u{n % 50}", "name": f"Customer {n % 50}", "handle": f"@cust{n % 50}"},
            "subject": "", "status": "resolved" if n % 3 == 0 else "open", "assignee": "sam" if n % 4 == 0 else None,
            "priority": "normal", "tags": ["refund"] if n % 5 == 0 else [], "escalated": n % 7 == 0,
            "messages": msgs, **extra}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def state_of(data_dir: Path) -> dict[str, list]:
    """Everything an import writes, without the columns that depend on when the SLA was checked."""
    conn = sqlite3.connect(data_dir / DB_FILENAME)
    try:
        q = lambda sql: sorted((tuple(r) for r in conn.execute(sql)), key=repr)  # noqa: E731
        return {
            "conversations": q("SELECT id, account, platform, kind, contact_id, subject, status, assignee, priority, "
                               "escalated, tags, created_at, last_message_at, needs_reply, sla_state FROM conversations"),
            "messages": q("SELECT id, conversation_id, direction, author, text, created_at, state, private FROM messages"),
            "contacts": q("SELECT id, name, handle, vip FROM contacts"),
            "tags": q("SELECT conversation_id, tag FROM conversation_tags"),
            # what the import itself records is stamped with when it ran
            "events": q("SELECT conversation_id, CASE WHEN actor = 'import' THEN NULL ELSE at END, kind, actor, data "
                        "FROM events WHERE kind != 'sla'"),
            "search": q("SELECT rowid, customer, subject, tags FROM conversations_fts"),
            "progress": q("SELECT * FROM import_progress"),
        }
    finally:
        conn.close()


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "replydesk.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def committed_records(data_dir: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{data_dir / DB_FILENAME}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT records FROM import_progress").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created or not migrated yet
        return 0
    return row[0] if row else 0


@pytest.mark.slow
def test_kill_9_mid_import_loses_nothing_and_a_rerun_continues(tmp_path: Path) -> None:
    total = 6000
    src = write_jsonl(tmp_path / "export.jsonl", [record(n) for n in range(total)])
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    done = cli("--data-dir", str(clean), "import", str(src), "--json")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert json.loads(out) == {"conversations": total, "messages": total * 3, "resumed_after": 0}

    proc = cli("--data-dir", str(killed), "import", str(src))
    try:
        deadline = time.monotonic() + 120
        while committed_records(killed) < importer.BATCH_RECORDS:  # wait for the first committed batch
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    at_kill = committed_records(killed)
    assert importer.BATCH_RECORDS <= at_kill < total, "the import must have been killed mid-way"

    rerun = cli("--data-dir", str(killed), "import", str(src), "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    result = json.loads(out)
    assert result["resumed_after"] == at_kill  # continued after the last committed batch
    assert result["conversations"] == total - at_kill
    assert state_of(killed) == state_of(clean)  # nothing lost, nothing doubled
    assert state_of(killed)["progress"] == []  # a finished import leaves no position behind


def test_an_interrupted_json_array_import_continues_by_record(tmp_path: Path) -> None:
    records = [record(n) for n in range(23)]
    src = tmp_path / "export.json"
    src.write_text(json.dumps(records, indent=2), encoding="utf-8")
    db = open_database(tmp_path / "w", sla=SlaEngine(Config().sla), clock=lambda: FIXED_NOW)

    class Stop(Exception):
        pass

    def stop_after_two_batches(done: int, result: importer.ImportResult) -> None:
        if result.conversations >= 10:
            raise Stop

    with pytest.raises(Stop), open(src, "rb") as fh:
        importer.import_stream(db, fh, str(src), path=src, progress=stop_after_two_batches, batch_records=5)
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 10
    with open(src, "rb") as fh:
        result = importer.import_stream(db, fh, str(src), path=src, batch_records=5)
    assert (result.resumed_after, result.conversations, result.messages) == (10, 13, 39)
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 23


def test_a_changed_file_starts_over_and_imports_idempotently(tmp_path: Path, capsys) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [record(n) for n in range(12)])
    data = tmp_path / "w"
    db = open_database(data, sla=SlaEngine(Config().sla), clock=lambda: FIXED_NOW)
    with pytest.raises(RuntimeError), open(src, "rb") as fh:
        importer.import_stream(db, fh, str(src), path=src, batch_records=4,
                               progress=lambda done, r: (_ for _ in ()).throw(RuntimeError("stop")))
    db.close()
    write_jsonl(src, [record(n) for n in range(12)] + [record(99)])  # edited since: its position is void
    assert main(["--data-dir", str(data), "import", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_after"] == 0
    before = state_of(data)
    assert main(["--data-dir", str(data), "import", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 0
    assert state_of(data) == before  # re-importing changes nothing


def test_a_record_never_overwrites_another_accounts_conversation(tmp_path: Path, capsys) -> None:
    data = tmp_path / "w"
    good = write_jsonl(tmp_path / "good.jsonl", [record(1, account="demo")])
    assert main(["--data-dir", str(data), "import", str(good)]) == 0
    before = state_of(data)
    capsys.readouterr()
    evil = record(1, account="evil", status="resolved", assignee="mallory", tags=["pwned"])
    evil["id"] = "demo:c1"
    for m in evil["messages"]:
        m["id"] = m["id"].replace("evil:", "demo:")
    write_jsonl(tmp_path / "evil.jsonl", [evil])
    assert main(["--data-dir", str(data), "import", str(tmp_path / "evil.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "belongs to account 'demo'" in err and "evil.jsonl:1" in err
    assert state_of(data) == before
    # Without another account's prefix, the id is the record's own: a new conversation of 'evil'.
    evil["id"] = "c1"
    for m in evil["messages"]:
        m["id"] = m["id"].split(":", 1)[1]
    write_jsonl(tmp_path / "evil.jsonl", [evil])
    assert main(["--data-dir", str(data), "import", str(tmp_path / "evil.jsonl")]) == 0
    after = state_of(data)
    demo = [c for c in after["conversations"] if c[0] == "demo:c1"]
    assert demo == [c for c in before["conversations"] if c[0] == "demo:c1"]
    assert {c[0] for c in after["conversations"]} == {"demo:c1", "evil:c1"}


def test_a_record_that_does_not_match_its_conversation_changes_nothing(tmp_path: Path, capsys) -> None:
    data = tmp_path / "w"
    assert main(["--data-dir", str(data), "import", str(write_jsonl(tmp_path / "a.jsonl", [record(1)]))]) == 0
    before = state_of(data)
    other = record(1, status="resolved")
    other["platform"] = "email"
    assert main(["--data-dir", str(data), "import", str(write_jsonl(tmp_path / "b.jsonl", [other]))]) == 2
    assert "exists as a telegram dm, but the record says email dm" in capsys.readouterr().err
    assert state_of(data) == before


def test_reimport_merges_new_messages_and_never_rewrites_stored_ones(tmp_path: Path, capsys) -> None:
    data = tmp_path / "w"
    assert main(["--data-dir", str(data), "import", str(write_jsonl(tmp_path / "a.jsonl", [record(2)]))]) == 0
    newer = record(2, messages=4, status="pending", tags=["vip"])
    newer["messages"][0]["text"] = "an edited copy of the first message"
    newer["messages"][1]["state"] = "failed"
    assert main(["--data-dir", str(data), "import", str(write_jsonl(tmp_path / "b.jsonl", [newer]))]) == 0
    state = state_of(data)
    texts = {m[0]: (m[4], m[6]) for m in state["messages"]}
    assert texts["shop:m2-0"] == ("message 0 about order 2", "received")  # kept as first stored
    assert texts["shop:m2-1"][1] == "sent"
    assert "shop:m2-3" in texts  # the new message was added
    (conv,) = state["conversations"]
    assert conv[6] == "pending" and conv[10] == "vip"  # the record's triage fields win


MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("blank lines", b"\n\n  \n"),
    ("not json", b"hello world\n"),
    ("truncated object", b'{"id": "a:c1", "account": "a"'),
    ("truncated array", b'[{"id": "a:c1"'),
    ("array of numbers", b"[1, 2, 3]"),
    ("a number", b"42"),
    ("a string", b'"just text"'),
    ("binary garbage", bytes(range(256)) * 4),
    ("latin-1 text", '{"id": "a:c1", "text": "caf\xe9"}\n'.encode("latin-1")),
    ("utf-16", '{"id": "a:c1"}\n'.encode("utf-16")),
    ("deeply nested object", b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"\n"),
    ("deeply nested array", b"[" * 200_000 + b"]" * 200_000),
    ("jsonl line is a list", b'[{"id": "a:c1"}]\n{"id": 2}\n'),
    ("second line broken", json.dumps(record(1)).encode() + b"\n{oops\n"),
    ("missing id", json.dumps({k: v for k, v in record(1).items() if k != "id"}).encode()),
    ("id not a string", json.dumps({**record(1), "id": 5}).encode()),
    ("empty id", json.dumps({**record(1), "id": ""}).encode()),
    ("bad account name", json.dumps({**record(1), "account": "a b:c"}).encode()),
    ("account not a string", json.dumps({**record(1), "account": ["x"]}).encode()),
    ("unknown kind", json.dumps({**record(1), "kind": "tweet"}).encode()),
    ("unknown status", json.dumps({**record(1), "status": "deleted"}).encode()),
    ("unknown priority", json.dumps({**record(1), "priority": 9}).encode()),
    ("customer a list", json.dumps({**record(1), "customer": ["x"]}).encode()),
    ("customer name an object", json.dumps({**record(1), "customer": {"name": {"x": 1}}}).encode()),
    ("tags a string", json.dumps({**record(1), "tags": "refund"}).encode()),
    ("assignee an object", json.dumps({**record(1), "assignee": {"name": "x"}}).encode()),
    ("escalation target a list", json.dumps({**record(1), "escalation_target": [1]}).encode()),
    ("escalated a string", json.dumps({**record(1), "escalated": "yes"}).encode()),
    ("snoozed_until not a time", json.dumps({**record(1), "snoozed_until": "tomorrow-ish"}).encode()),
    ("snoozed_until a number", json.dumps({**record(1), "snoozed_until": 1e308}).encode()),
    ("no messages", json.dumps({**record(1), "messages": []}).encode()),
    ("messages an object", json.dumps({**record(1), "messages": {"a": 1}}).encode()),
    ("message a string", json.dumps({**record(1), "messages": ["hi"]}).encode()),
    ("message without text", json.dumps({**record(1), "messages": [{"id": "m", "direction": "in",
                                                                       "created_at": iso(T0)}]}).encode()),
    ("message text a number", json.dumps({**record(1), "messages": [{"id": "m", "direction": "in", "text": 5,
                                                                        "created_at": iso(T0)}]}).encode()),
    ("message bad direction", json.dumps({**record(1), "messages": [{"id": "m", "direction": "sideways",
                                                                        "text": "x", "created_at": iso(T0)}]}).encode()),
    ("message bad state", json.dumps({**record(1), "messages": [{"id": "m", "direction": "in", "text": "x",
                                                                    "state": "lost", "created_at": iso(T0)}]}).encode()),
    ("message time missing", json.dumps({**record(1), "messages": [{"id": "m", "direction": "in",
                                                                       "text": "x"}]}).encode()),
    ("message time garbage", json.dumps({**record(1), "messages": [{"id": "m", "direction": "in", "text": "x",
                                                                       "created_at": "2026-02-30T10:00:00Z"}]}).encode()),
    ("message time beyond year 9999", json.dumps({**record(1), "messages": [{"id": "m", "direction": "in",
                                                                                "text": "x",
                                                                                "created_at": "+10000-01-01"}]}).encode()),
    ("message id an object", json.dumps({**record(1), "messages": [{"id": {}, "direction": "in", "text": "x",
                                                                       "created_at": iso(T0)}]}).encode()),
    ("private a string", json.dumps({**record(1), "messages": [{"id": "m", "direction": "in", "text": "x",
                                                                   "private": "no", "created_at": iso(T0)}]}).encode()),
    ("NaN where a flag goes", b'{"id": "a:c1", "account": "a", "platform": "x", "kind": "dm", "escalated": NaN, '
                               b'"messages": []}'),
]


@pytest.mark.parametrize(("name", "data"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_file_gets_one_clear_line_and_exit_2(tmp_path: Path, capsys, name: str, data: bytes) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_bytes(data)
    code = main(["--data-dir", str(tmp_path / "w"), "import", str(src)])  # an exception here is a traceback
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("replydesk: ") and "bad.jsonl" in lines[0], lines
    assert "Traceback" not in captured.err and captured.out == ""
    assert len(lines[0]) < 400


def test_surrogates_and_controls_in_a_record_are_stored_safely(tmp_path: Path, capsys) -> None:
    r = record(3)
    r["assignee"] = "sam\ud800"
    r["customer"]["name"] = "Ann\ud83d"
    r["messages"][0]["id"] = "shop:m\udfff"
    src = tmp_path / "s.jsonl"
    src.write_text(json.dumps(r) + "\n", encoding="utf-8")  # json.dumps escapes the lone surrogates
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(src)]) == 0
    state = state_of(tmp_path / "w")
    assert state["conversations"][0][7] == "sam\ufffd"
    assert ("shop:u3", "Ann\ufffd", "@cust3", 0) in state["contacts"]


def test_standard_input_imports_without_a_position(tmp_path: Path) -> None:
    data = "".join(json.dumps(record(n)) + "\n" for n in range(5)).encode()
    db = open_database(tmp_path / "w", clock=lambda: FIXED_NOW)
    result = importer.import_file(db, "-", stdin=io.BufferedReader(io.BytesIO(data)))
    assert (result.conversations, result.messages) == (5, 15)
    assert db.conn.execute("SELECT count(*) FROM import_progress").fetchone()[0] == 0


def test_json_and_quiet_modes_print_only_what_scripts_read(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [record(n) for n in range(3)])
    quiet = cli("--data-dir", str(tmp_path / "q"), "import", str(src), "--quiet")
    out, err = quiet.communicate(timeout=120)
    assert (quiet.returncode, out, err) == (0, "", "")
    as_json = cli("--data-dir", str(tmp_path / "j"), "import", str(src), "--json")
    out, err = as_json.communicate(timeout=120)
    assert as_json.returncode == 0 and err == ""
    assert json.loads(out) == {"conversations": 3, "messages": 9, "resumed_after": 0}


def test_the_records_before_a_bad_line_stay_imported(tmp_path: Path, capsys) -> None:
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(record(n)) + "\n" for n in range(3)) + "{broken\n" + json.dumps(record(9)) + "\n")
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(src)]) == 2
    assert "a.jsonl:4: not valid JSON" in capsys.readouterr().err
    assert sorted(c[0] for c in state_of(tmp_path / "w")["conversations"]) == ["shop:c0", "shop:c1", "shop:c2"]


def test_a_robots_message_keeps_its_reason_through_export_and_import(tmp_path: Path, capsys) -> None:
    r = record(4)
    r["messages"][0]["automatic"] = "auto-reply: Auto-Submitted: auto-replied"
    src = write_jsonl(tmp_path / "a.jsonl", [r])
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(src)]) == 0
    capsys.readouterr()
    assert main(["--data-dir", str(tmp_path / "w"), "export"]) == 0
    (out,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out["messages"][0]["automatic"] == "auto-reply: Auto-Submitted: auto-replied"
    assert "automatic" not in out["messages"][1]
