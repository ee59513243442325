"""Start-up stays light: the console and the light commands import no httpx, no mail wire and no
provider implementation before a sync starts, whatever accounts the config names.

Each check runs in a fresh interpreter (this test process has imported everything already) and
starts the console for real (headless, its first frame painted) or runs a light command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from replydesk.config import Config
from replydesk.workspace import Workspace
from support import FIXED_NOW, REPO

#: What only a sync may load: the HTTP client, the mail wire, the mail parser, the engine.
HEAVY = ("httpx", "httpcore", "imaplib", "smtplib", "html2text", "html.parser", "tenacity", "replydesk.sync",
         "uvicorn", "replydesk.webhooks",
         "replydesk.providers.email_imap", "replydesk.providers.email_mailbox", "replydesk.providers.email_smtp",
         "replydesk.providers.email_parse", "replydesk.providers.html_text")

CONSOLE = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from replydesk.cli import _workspace  # the console's own start-up path: config, workspace, app
    from replydesk.tui.app import ReplydeskApp

    class Args:
        config = sys.argv[1] or None
        data_dir = sys.argv[2]

    async def main() -> None:
        app = ReplydeskApp(_workspace(Args()), start_engine=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()

    asyncio.run(main())
    print(json.dumps(sorted(sys.modules)))
""")


def _modules(script: str, *args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_console_start_with_every_provider_configured_loads_no_wire(tmp_path: Path) -> None:
    loaded = _modules(CONSOLE, str(REPO / "config.example.yaml"), str(tmp_path))
    assert [m for m in HEAVY if m in loaded] == []
    # each configured provider's module is read for its options (cheap by contract), nothing else of it
    assert {"replydesk.providers.mastodon", "replydesk.providers.email"} <= loaded


def test_console_start_without_accounts_imports_no_provider_module(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("ui: {agent: ann}\n", encoding="utf-8")
    loaded = _modules(CONSOLE, str(config), str(tmp_path / "data"))
    assert [m for m in HEAVY if m in loaded] == []
    assert sorted(m for m in loaded if m.startswith("replydesk.providers")) == []


@pytest.mark.parametrize("command", [["search", "order"], ["accounts"], ["config", "check"]])
def test_light_commands_load_no_wire(tmp_path: Path, command: list[str]) -> None:
    Workspace(tmp_path, Config()).open_db().close()  # a workspace to search in
    script = textwrap.dedent("""
        import json, sys
        from replydesk.cli import main
        code = main(sys.argv[1:])
        print(json.dumps(sorted(sys.modules)))
        sys.exit(0 if code == 0 else 3)
    """)
    loaded = _modules(script, "--config", str(REPO / "config.example.yaml"), "--data-dir", str(tmp_path), *command)
    assert [m for m in HEAVY if m in loaded] == []


# ---- the light commands: what each one loads ------------------------------------------------------

#: What no read command and no --help/--version may load: the console, the config machinery, the
#: wire, the event loop, the keyring, team mode (its engine, its PostgreSQL client) in a solo workspace.
NOT_FOR_READS = ("textual", "rich", "pydantic", "pydantic_core", "yaml", "httpx", "asyncio", "keyring",
                 "replydesk.config", "replydesk.slaconfig", "replydesk.workspace", "replydesk.sync",
                 "replydesk.tui", "replydesk.providers", "replydesk.team", "replydesk.storage.team_db", "psycopg")

RUN = textwrap.dedent("""
    import json, sys
    from replydesk.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --help
        code = exc.code
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
    sys.exit(code)
""")


def _run(*argv: str) -> tuple[int, str, set[str]]:
    done = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True, timeout=120,
                          cwd=REPO, check=False)
    return done.returncode, done.stdout, set(json.loads(done.stderr.strip().splitlines()[-1]))


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in NOT_FOR_READS))


@pytest.fixture
def read_ws(tmp_path: Path) -> tuple[Path, Path, str]:
    """A workspace with conversations, a config file, and one full command run with that config
    (which makes the workspace remember the validated SLA settings)."""
    from support import make_workspace, sync_once

    ws = make_workspace(tmp_path / "ws")
    sync_once(ws)
    config = tmp_path / "config.yaml"
    config.write_text("ui: {agent: ann}\n", encoding="utf-8")
    code, out, _ = _run("--data-dir", str(ws.data_dir), "--config", str(config), "search", "is:open", "--json")
    assert code == 0
    return ws.data_dir, config, json.loads(out)["results"][0]["id"]


def test_version_and_help_load_neither_storage_nor_config() -> None:
    code, out, loaded = _run("--version")
    assert (code, out) == (0, "replydesk 0.1.0\n")
    assert _heavy(loaded) == [] and "argparse" not in loaded and "sqlite3" not in loaded
    for argv in (["--help"], ["search", "--help"], ["show", "--help"], ["contact", "show", "--help"]):
        code, out, loaded = _run(*argv)
        assert code == 0 and "--data-dir" in out, argv
        assert _heavy(loaded) == [] and "sqlite3" not in loaded, argv


def test_read_commands_load_no_config_machinery(read_ws: tuple[Path, Path, str]) -> None:
    data_dir, config, conv = read_ws
    for argv in (["search", "order", "--json"], ["show", conv, "--json"], ["outbox", "--json"], ["show", conv],
                 ["contact", "show", conv, "--json"], ["contact", "show", conv]):
        code, out, loaded = _run("--data-dir", str(data_dir), "--config", str(config), *argv)
        assert code == 0 and out, argv
        assert _heavy(loaded) == [] and "replydesk.cli_team" not in loaded, argv  # the team commands' module too
        assert "hashlib" not in loaded, argv  # OpenSSL's load: the config digest is two checksums
        # nor the model's record types, tickets, the team link's record or the open's fault
        # diagnosis: a read needs their vocabulary (replydesk.vocabulary), not them
        assert not {"replydesk.model", "replydesk.storage.tickets", "replydesk.teamlink",
                    "replydesk.storage.faults"} & loaded, argv
    for argv in (["search", "order", "--json"], ["outbox", "--json"], ["outbox"]):
        code, out, loaded = _run("--data-dir", str(data_dir), "--config", str(config), *argv)
        # listing what waits is reading: not the writers' modules (ingest, SLA state, reply windows)
        assert code == 0 and not {"replydesk.storage.outbox", "replydesk.storage.ingest",
                                  "replydesk.storage.slastate", "replydesk.storage.reply_windows"} & loaded, argv
        # and no dataclass on the way, reply windows included (the workspace has WhatsApp rows): the
        # machinery imports inspect, ast and dis, and every class costs its creation (show needs the
        # SLA engine's, a list needs none)
        assert not {"dataclasses", "inspect"} & loaded, argv


def test_the_remembered_settings_show_what_the_validated_config_shows(read_ws: tuple[Path, Path, str]) -> None:
    """Every conversation's record (SLA metrics included) is the same from the light open as from
    the full one, at the same instant."""
    import argparse

    from replydesk import cli
    from replydesk.storage import exchange, queries

    data_dir, config, _ = read_ws
    args = argparse.Namespace(data_dir=str(data_dir), config=str(config), command="show")
    light, (_, full) = cli._open_to_read(args, sla=True), cli._open(args, create=False)
    try:
        assert type(light.sla.settings).__name__ == "SettingsData"  # the light one it is
        ids = [r.id for r in queries.inbox_page(full, queries.InboxFilter(statuses=None), 0, 1000)]
        assert len(ids) > 200
        for at in (FIXED_NOW, FIXED_NOW + 3 * 3600, FIXED_NOW + 5 * 86400):
            assert [exchange.export_record(light, i, at) for i in ids] == [exchange.export_record(full, i, at) for i in ids]
    finally:
        light.close()
        full.close()


def test_a_read_command_after_a_config_edit_validates_and_applies_it(read_ws: tuple[Path, Path, str]) -> None:
    data_dir, config, conv = read_ws
    config.write_text("ui: {agent: ann}\nsla:\n  policies:\n    - name: everything-in-a-week\n"
                      "      first_reply: {target: 7d}\n", encoding="utf-8")
    code, out, loaded = _run("--data-dir", str(data_dir), "--config", str(config), "show", conv, "--json")
    assert code == 0 and "pydantic" in loaded  # validated this time...
    assert json.loads(out)["sla"]["policy"] == "everything-in-a-week"
    code, out, loaded = _run("--data-dir", str(data_dir), "--config", str(config), "show", conv, "--json")
    assert json.loads(out)["sla"]["policy"] == "everything-in-a-week"
    assert _heavy(loaded) == []  # ...and remembered for the next one


def test_a_broken_config_is_still_reported_by_a_read_command(read_ws: tuple[Path, Path, str]) -> None:
    data_dir, config, _ = read_ws
    config.write_text("ui: {agent: ann}\nsla:\n  policies: [{name: x, first_reply: {target: soon}}]\n",
                      encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "replydesk.cli", "--data-dir", str(data_dir), "--config", str(config),
                           "search", "order"], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 2 and "invalid duration 'soon'" in done.stderr


def test_another_config_in_force_since_is_not_trusted(read_ws: tuple[Path, Path, str], tmp_path: Path) -> None:
    """The workspace remembers one config; opening it with another puts that one's policies in
    force, so a read with the first config must validate (and apply) it again."""
    data_dir, config, conv = read_ws
    other = tmp_path / "other.yaml"
    other.write_text("sla:\n  policies:\n    - name: other\n      first_reply: {target: 2d}\n", encoding="utf-8")
    assert _run("--data-dir", str(data_dir), "--config", str(other), "show", conv, "--json")[0] == 0
    code, out, loaded = _run("--data-dir", str(data_dir), "--config", str(config), "show", conv, "--json")
    assert code == 0 and "pydantic" in loaded
    assert json.loads(out)["sla"]["policy"] != "other"
