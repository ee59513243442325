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
from support import REPO

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
