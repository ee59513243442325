"""The scriptable CLI: each command's output and exit code, on a real demo workspace."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from replydesk.cli import build_parser, main
from support import REPO, hostile_texts

COMMANDS = ["demo", "sync", "export", "import", "search", "show", "reply", "action", "note", "outbox", "tag", "untag",
            "assign", "escalate", "resolve", "reopen", "snooze", "sla", "report", "login", "accounts", "locations",
            "templates", "webhooks", "config", "rules", "doctor", "serve", "team"]


@pytest.fixture
def ws(demo_ws):
    return demo_ws


def run(ws, capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(ws.data_dir), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def first_conv(ws, capsys) -> str:
    """The newest open conversation no reply window binds (a closed window refuses a reply)."""
    code, out, _ = run(ws, capsys, "search", "is:open", "--json")
    assert code == 0
    db = ws.open_db()
    try:
        free = {r[0] for r in db.conn.execute("SELECT id FROM conversations WHERE reply_window IS NULL")}
    finally:
        db.close()
    return next(r["id"] for r in json.loads(out)["results"] if r["id"] in free)


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)
    for name in COMMANDS:
        text = sub.choices[name].format_help()
        assert "--data-dir" in text and "--config" in text, name


def test_console_script_help_and_exit_codes(tmp_path):
    exe = REPO / ".venv" / "bin" / "replydesk"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "replydesk.cli"]
    ok = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "Exit codes" in ok.stdout
    bad = subprocess.run([*cmd, "frobnicate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    missing = subprocess.run([*cmd, "--data-dir", str(tmp_path / "none"), "show", "x"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no replydesk workspace" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_demo_headless_once_reports_what_it_stored(tmp_path, capsys):
    code = main(["demo", "--data-dir", str(tmp_path / "d"), "--headless", "--once", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["fetched"]["demo"] > 300 and doc["errors"] == {}


def test_demo_bad_faults_is_usage_error(tmp_path, capsys):
    assert main(["demo", "--data-dir", str(tmp_path), "--headless", "--faults", "explode=1"]) == 2
    assert "unknown fault 'explode'" in capsys.readouterr().err


def test_sync_without_accounts_is_usage_error(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "sync", "--once"]) == 2
    assert "no accounts configured" in capsys.readouterr().err


def test_export_import_roundtrip_is_idempotent(ws, capsys, tmp_path):
    code, out, _ = run(ws, capsys, "export")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) >= 200
    r = records[0]
    assert set(r) >= {"id", "account", "platform", "kind", "customer", "subject", "status", "assignee", "priority",
                      "tags", "escalated", "sla", "messages"}
    assert set(r["customer"]) >= {"id", "name", "handle"}
    assert set(r["messages"][0]) >= {"id", "direction", "author", "text", "created_at", "state"}
    assert r["messages"][0]["created_at"].endswith("Z")
    dump = tmp_path / "dump.jsonl"
    dump.write_text(out, encoding="utf-8")
    other = tmp_path / "other"
    assert main(["--data-dir", str(other), "import", str(dump), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["conversations"] == len(records) and first["messages"] == sum(len(x["messages"]) for x in records)
    assert main(["--data-dir", str(other), "import", str(dump), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 0
    assert main(["--data-dir", str(other), "export"]) == 0
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    strip = lambda recs: sorted((x["id"], x["status"], x["tags"], [m["text"] for m in x["messages"]]) for x in recs)  # noqa: E731
    assert strip(again) == strip(records)


def test_import_rejects_bad_records_clearly(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a:1", "account": "a", "platform": "x", "kind": "dm", "messages": "nope"}\n')
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(bad)]) == 2
    assert "bad.jsonl:1: field 'messages' has the wrong type" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_actions_from_the_cli_change_the_conversation(ws, capsys):
    conv = first_conv(ws, capsys)
    assert run(ws, capsys, "tag", conv, "Refund", "vip")[1].strip().endswith("tags: refund, vip")
    assert run(ws, capsys, "untag", conv, "vip")[1].strip().endswith("tags: refund")
    assert run(ws, capsys, "assign", conv, "maria")[0] == 0
    assert run(ws, capsys, "escalate", conv, "--note", "VIP customer", "--target", "zendesk")[0] == 0
    assert run(ws, capsys, "note", conv, "--text", "called them")[0] == 0
    code, out, _ = run(ws, capsys, "show", conv, "--json")
    record = json.loads(out)
    assert (record["tags"], record["assignee"], record["escalated"], record["priority"]) == \
        (["refund"], "maria", True, "high")
    assert [m["text"] for m in record["messages"] if m["direction"] == "note"] == ["VIP customer", "called them"]
    assert run(ws, capsys, "snooze", conv, "--until", "2h")[0] == 0
    assert json.loads(run(ws, capsys, "show", conv, "--json")[1])["status"] == "snoozed"
    assert run(ws, capsys, "resolve", conv)[1].startswith("resolved 1")
    assert run(ws, capsys, "reopen", conv)[0] == 0
    assert json.loads(run(ws, capsys, "show", conv, "--json")[1])["status"] == "open"
    assert run(ws, capsys, "snooze", conv, "--until", "whenever")[0] == 2
    assert run(ws, capsys, "tag", "demo:no-such-conversation", "x")[0] == 2


def test_reply_queues_and_outbox_lists_it(ws, capsys):
    conv = first_conv(ws, capsys)
    code, out, _ = run(ws, capsys, "reply", conv, "--text", "Asante sana! 🙏", "--json")
    item = json.loads(out)
    assert code == 0 and item["state"] == "queued" and item["conversation"] == conv
    code, out, _ = run(ws, capsys, "outbox", "--json")
    assert [i["key"] for i in json.loads(out)] == [item["key"]]
    code, out, _ = run(ws, capsys, "reply", conv, "--text", "later", "--at", "tomorrow 9:00", "--json")
    later = json.loads(out)
    assert later["not_before"] > item["not_before"]
    assert run(ws, capsys, "outbox", "--discard", later["key"])[0] == 0
    assert len(json.loads(run(ws, capsys, "outbox", "--json")[1])) == 1
    assert run(ws, capsys, "reply", conv, "--text", "   ")[0] == 2  # an empty reply is bad usage


def test_search_json_and_text(ws, capsys):
    code, out, _ = run(ws, capsys, "search", "order", "--json")
    results = json.loads(out)["results"]
    assert code == 0 and results
    assert all("order" in (r["match"] or r["snippet"]).lower() or "#" in r["snippet"] for r in results)
    code, out, _ = run(ws, capsys, "search", "zzzz-not-there")
    assert code == 0 and out.strip() == "no matches"


def test_sla_json_contract(ws, capsys):
    conv = first_conv(ws, capsys)
    code, out, _ = run(ws, capsys, "sla", conv, "--json")
    doc = json.loads(out)
    assert code == 0 and set(doc) == {"conversation", "policy", "at", "metrics"}
    metric = doc["metrics"][0]
    assert set(metric) >= {"metric", "state", "target_seconds", "calendar", "started_at", "due_at",
                           "calendar_seconds_left", "business_seconds_left", "paused_reason", "fulfilled_at",
                           "breached_at"}
    code, out, _ = run(ws, capsys, "sla", conv, "--at", "2026-11-20T00:00:00Z", "--json")
    assert json.loads(out)["metrics"] == []  # before the first message nothing runs
    assert run(ws, capsys, "sla", conv, "--at", "yesterday-ish")[0] == 2


def test_report_json_contract_and_grouping(ws, capsys, tmp_path):
    code, out, _ = run(ws, capsys, "report", "--json")
    doc = json.loads(out)
    assert code == 0 and "by" not in doc and [g["key"] for g in doc["groups"]] == ["all"]
    group = doc["groups"][0]
    assert set(group) >= {"key", "conversations", "first_reply", "next_reply", "resolution", "breaches",
                          "first_contact_resolution"}
    assert set(group["first_reply"]) == {"median_seconds", "p90_seconds", "within_target"}
    by = json.loads(run(ws, capsys, "report", "--by", "platform", "--json")[1])
    assert by["by"] == "platform" and sum(g["conversations"] for g in by["groups"]) == group["conversations"]
    policies = tmp_path / "p.yaml"
    policies.write_text("sla:\n  policies:\n    - name: lax\n      first_reply: {target: 3d}\n")
    what_if = json.loads(run(ws, capsys, "report", "--what-if", str(policies), "--json")[1])["what_if"]
    assert what_if["groups"][0]["breaches"] < group["breaches"]
    assert run(ws, capsys, "report", "--csv")[1].startswith("key,conversations,")


def test_accounts_and_doctor(ws, capsys):
    code, out, _ = run(ws, capsys, "doctor", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = run(ws, capsys, "accounts")
    assert code == 0 and out.startswith("demo ")  # the workspace's account, though not in this config


def test_hostile_customer_text_is_terminal_safe_in_cli_output(tmp_path, capsys):
    cases = hostile_texts()
    if not cases:
        pytest.skip("../shared/testdata is not present")
    records = [
        {"id": f"h:{i}", "account": "h", "platform": "telegram", "kind": "dm",
         "customer": {"id": f"u{i}", "name": c["text"], "handle": "@x"}, "subject": c["text"],
         "messages": [{"id": f"h:m{i}", "direction": "in", "author": c["text"], "text": c["text"],
                       "created_at": "2026-11-23T09:00:00Z"}]}
        for i, c in enumerate(cases)
    ]
    src = tmp_path / "hostile.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(src)]) == 0
    capsys.readouterr()
    for i in range(len(cases)):
        assert main(["--data-dir", str(tmp_path / "w"), "show", f"h:{i}"]) == 0
    assert main(["--data-dir", str(tmp_path / "w"), "export"]) == 0
    out = capsys.readouterr().out
    forbidden = [chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)]]
    forbidden += list("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    leaked = {repr(ch) for ch in forbidden if ch in out}
    assert not leaked
    # and the data itself is stored exactly as received
    assert main(["--data-dir", str(tmp_path / "w"), "show", "h:0", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["messages"][0]["text"] == cases[0]["text"]


def test_ids_and_errors_from_an_imported_file_are_terminal_safe(tmp_path, capsys):
    """Conversation ids and kinds come from providers or files; text output never passes ESC or C1."""
    record = {"id": "h:\x1b]0;owned\x07c1", "account": "h", "platform": "x\x9b31m", "kind": "dm",
              "customer": {"id": "u", "name": "U"},
              "messages": [{"id": "h:m1", "direction": "in", "author": "U", "text": "hi",
                            "created_at": "2026-11-23T09:00:00Z"}]}
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps(record), encoding="utf-8")
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(src)]) == 0
    assert main(["--data-dir", str(tmp_path / "w"), "search", "hi"]) == 0
    assert main(["--data-dir", str(tmp_path / "w"), "show", "c1"]) == 0
    bad = dict(record, kind="tweet\x1b[2J")
    src.write_text(json.dumps(bad), encoding="utf-8")
    assert main(["--data-dir", str(tmp_path / "w"), "import", str(src)]) == 2
    out, err = capsys.readouterr()
    assert "owned" in out  # the id is shown...
    for stream in (out, err):
        assert "\x1b" not in stream and "\x9b" not in stream and "\x07" not in stream  # ...but cannot act


def test_json_export_streams_an_array_that_imports_back(ws, capsys, tmp_path):
    code, out, _ = run(ws, capsys, "export", "--format", "json")
    assert code == 0
    records = json.loads(out)
    assert isinstance(records, list) and len(records) >= 200 and records[0]["messages"]
    dump = tmp_path / "dump.json"
    dump.write_text(out, encoding="utf-8")
    assert main(["--data-dir", str(tmp_path / "other"), "import", str(dump), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["conversations"] == len(records)
    assert result["messages"] == sum(len(r["messages"]) for r in records)


def _sub(parser, name: str):
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def every_command() -> list[str]:
    """Every command the whole command line has (COMMANDS, and any added since)."""
    return list(next(a for a in build_parser()._actions if a.dest == "command").choices)


def test_a_command_alone_parses_and_helps_as_in_the_whole_command_line(monkeypatch):
    """main builds only the parser of the command it runs (start-up): its help and its parse are
    the whole command line's, for every command."""
    from replydesk.cli import command_in

    monkeypatch.setenv("COLUMNS", "100")
    full = build_parser()
    assert set(COMMANDS) <= set(every_command())
    for name in every_command():
        assert _sub(build_parser(only=name), name).format_help() == _sub(full, name).format_help(), name
    for argv in (["search", "refund tag:vip", "--json", "--limit", "5"], ["--data-dir", "d", "show", "x:1"],
                 ["--data-dir=d", "--config", "c", "outbox", "--retry", "k"], ["--data", "d", "resolve", "a", "b"],
                 ["config", "check", "--json"], ["reply", "c", "--text", "-", "--at", "2h", "--private"],
                 ["rules", "test", "greet", "--since", "2d", "--json"], ["locations", "reviews", "--json"],
                 ["report", "--csv", "--by", "tag"], ["webhooks", "serve", "--port", "0"], ["templates", "wa", "--json"],
                 ["reply", "c", "--template", "hello:en", "--param", "Ann", "--param", "42"]):
        assert command_in(argv) == next(a for a in argv if a in COMMANDS and not a.startswith("-"))
        alone, whole = build_parser(only=command_in(argv)).parse_args(argv), full.parse_args(argv)
        plain = lambda ns: {k: v for k, v in vars(ns).items() if k != "func" and not k.endswith("_parser")}  # noqa: E731
        assert plain(alone) == plain(whole), argv
        assert alone.func.__name__ == whole.func.__name__


def test_the_whole_command_line_is_built_when_the_command_is_not_plain():
    from replydesk.cli import command_in

    for argv in ([], ["--help"], ["-h", "search"], ["--data-dir"], ["--d", "x", "-q", "search"], ["--", "search"],
                 ["--config"]):
        assert command_in(argv) is None, argv
    assert command_in(["--version", "search", "x"]) == "search"  # --version exits before any command
    whole = build_parser(only="frobnicate")  # not a command: every command is there to be listed
    assert set(COMMANDS) <= set(next(a for a in whole._actions if a.dest == "command").choices)


def test_help_is_as_wide_as_shutil_finds_the_terminal(monkeypatch):
    import shutil

    from replydesk.cli import _columns

    for columns in ("100", "61", "", "zero"):
        monkeypatch.setenv("COLUMNS", columns)
        assert _columns() == shutil.get_terminal_size().columns, columns


def test_main_help_and_version_exit_0_for_every_command(capsys):
    for argv in [[name] for name in every_command()] + [["config", "check"], ["rules", "test"], ["team", "status"],
                                                          ["webhooks", "serve"], ["webhooks", "token"]]:
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--help"])
        assert stop.value.code == 0, argv
        assert f"usage: replydesk {' '.join(argv)}" in capsys.readouterr().out, argv
    assert main(["--version"]) == 0 and capsys.readouterr().out == "replydesk 0.1.0\n"
    with pytest.raises(SystemExit) as stop:
        main(["search"])  # the query is missing: a usage error
    assert stop.value.code == 2 and "required: query" in capsys.readouterr().err


def test_the_fault_demo_readme_shows_runs_and_keeps_sub_second_latency(tmp_path, capsys):
    """README: ``make demo ARGS="--faults fail=0.3,latency=200ms"``; the units it shows work, 200ms is
    0.2 s (not rounded to 0), and a bad value is one clear line with exit 2."""
    from replydesk.cli import parse_faults

    faults = parse_faults("fail=0.3,latency=200ms")
    assert (faults.fail, faults.latency) == (0.3, 0.2)
    assert parse_faults("latency=1.5s,retry_after=0.5s").latency == 1.5
    assert main(["demo", "--headless", "--once", "--faults", "fail=0.3,latency=200ms",
                 "--data-dir", str(tmp_path / "demo")]) == 0
    capsys.readouterr()
    for spec, said in (("latency=fast", "--faults: latency=fast: invalid duration 'fast'"),
                       ("fail=2", "--faults: fail=2: Input should be less than or equal to 1"),
                       ("offline=perhaps", "--faults: offline='perhaps': expected 1 or 0")):
        assert main(["demo", "--headless", "--once", "--faults", spec, "--data-dir", str(tmp_path / "d2")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"replydesk: {said}"), lines
        assert "validation error" not in lines[0]


# ---- the console's rules, from the command line (issue 13, item 14) -------------------------------


def test_search_on_a_damaged_index_says_what_doctor_says(ws, capsys):
    """A damaged full-text index printed a traceback."""
    db = ws.open_db()
    db.conn.execute("UPDATE messages_fts_data SET block = CAST(printf('%.*c', length(block), 'x') AS BLOB) "
                    "WHERE id > 10")  # the segments, not the structure record: doctor rebuilds it
    db.close()
    code, out, err = run(ws, capsys, "search", "order")
    assert code == 1 and "Traceback" not in err
    assert "search index is damaged" in err and "replydesk doctor --repair" in err
    assert run(ws, capsys, "doctor", "--repair")[0] == 0
    code, out, err = run(ws, capsys, "search", "order")
    assert code == 0 and out.strip() and not err


def test_reply_refuses_a_past_time_and_empty_text_with_exit_2(ws, capsys):
    conv = first_conv(ws, capsys)
    code, _, err = run(ws, capsys, "reply", conv, "--text", "hello", "--at", "2020-01-01T00:00:00Z")
    assert code == 2 and "has already passed" in err
    assert run(ws, capsys, "reply", conv, "--text", "   ")[0] == 2
    assert run(ws, capsys, "note", conv, "--text", "")[0] == 2
    code, out, _ = run(ws, capsys, "outbox", "--json")
    assert json.loads(out) == []  # nothing was queued


def test_report_refuses_two_formats_and_an_inverted_window(ws, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(ws, capsys, "report", "--json", "--csv")
    assert exit_.value.code == 2
    code, _, err = run(ws, capsys, "report", "--since", "2026-11-23T00:00:00Z", "--until", "2026-11-01T00:00:00Z")
    assert code == 2 and "must be before" in err


def test_sla_prints_durations_not_seconds(ws, capsys):
    code, out, _ = run(ws, capsys, "sla", first_conv(ws, capsys))
    assert code == 0
    assert "target " in out and not re.search(r"\d+s\b", out), out
    assert re.search(r"target \d+(m|h \d\dm|d \d\dh)", out), out


def test_accounts_lists_what_the_workspace_holds(ws, capsys):
    """On the demo workspace (no account in this config) it said "no accounts configured"."""
    code, out, _ = run(ws, capsys, "accounts")
    assert code == 0 and "no accounts configured" not in out
    assert out.startswith("demo ") and "not in this config" in out
    code, out, _ = run(ws, capsys, "accounts", "--json")
    assert [(a["name"], a["configured"]) for a in json.loads(out)] == [("demo", False)]


def test_search_lists_newest_first_and_warns_of_mistyped_filters(ws, capsys):
    code, out, err = run(ws, capsys, "search", "platform:x", "--json")
    times = [r["last_message_at"] for r in json.loads(out)["results"]]
    assert code == 0 and times and times == sorted(times, reverse=True)
    code, out, err = run(ws, capsys, "search", "status:open")
    assert code == 0 and "did you mean is:?" in err


def test_a_command_line_without_a_command_lists_the_commands_as_the_whole_one_does(monkeypatch):
    """The console's start and ``replydesk --help`` build only the commands' names and helps: the
    top-level help, and the parse of the top-level options, are the whole command line's."""
    from replydesk.cli import without_command

    monkeypatch.setenv("COLUMNS", "100")
    for argv in ([], ["--help"], ["-h"], ["--data-dir", "d"], ["--data-dir=d", "--config", "c"], ["--conf", "c", "-h"]):
        assert without_command(argv), argv
    for argv in (["search", "x"], ["--data-dir"], ["-q"], ["--data-dir", "d", "show", "x:1"], ["--", "search"]):
        assert not without_command(argv), argv
    light, full = build_parser(names_only=True), build_parser()
    assert light.format_help() == full.format_help()
    for argv in ([], ["--data-dir", "d", "--config", "c"]):
        assert vars(light.parse_args(argv)) == vars(full.parse_args(argv))
