"""Config: the example validates; each kind of mistake gets one clear message with file, line and key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from replydesk.cli import main
from replydesk.config import ConfigError, load_config
from support import REPO


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_example_config_validates_and_documents_every_provider():
    config, _ = load_config(REPO / "config.example.yaml")
    assert {a.provider for a in config.accounts} == {"demo", "email", "mastodon", "bluesky", "telegram"}
    assert [p.name for p in config.sla.policies] == ["public-social", "direct-messages", "email", "reviews"]
    assert "office" in config.sla.calendars
    assert len(config.ui.views) == 6


def test_missing_default_config_means_defaults(tmp_path):
    config, path = load_config(None)
    assert path is None and config.accounts == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            accounts:
              - name: demo
                provider: demo
                colour: blue
            """,
            ":5: accounts[0].colour: unknown key",
        ),
        (
            """
            sync:
              send_retries: lots
            """,
            ":3: sync.send_retries: Input should be a valid integer",
        ),
        (
            """
            sync:
              poll_interval: 5 parsecs
            """,
            ":3: sync.poll_interval: invalid duration '5 parsecs'",
        ),
        (
            """
            accounts:
              - name: shop-mail
                provider: email
                address: a@b.example
                smtp: {host: smtp.b.example, port: 465}
            """,
            ":3: accounts[0].imap: missing required option",
        ),
        (
            """
            accounts:
              - name: m
                provider: mastodon
                instance: http://mastodon.example
            """,
            "accounts[0].instance: must be an https:// URL",
        ),
        (
            """
            accounts:
              - name: x
                provider: myspace
            """,
            "accounts[0]: Input tag 'myspace' found using 'provider' does not match any of the expected tags",
        ),
        (
            """
            sla:
              policies:
                - name: p
                  first_reply: {target: 30m, calendar: nowhere}
            """,
            "unknown calendar 'nowhere'",
        ),
        (
            """
            ui:
              agent: me
              theme: solarised
            """,
            ":4: ui.theme: unknown theme 'solarised'; choose one of: textual-dark, textual-light",
        ),
        (
            "accounts: [\n  - oops",
            ":2: not valid YAML",
        ),
        (
            "- just\n- a list\n",
            ":1: the config must be a mapping",
        ),
    ],
    ids=["unknown-key", "wrong-type", "bad-duration", "missing-option", "http-url", "unknown-provider",
         "unknown-calendar", "unknown-theme", "broken-yaml", "not-a-mapping"],
)
def test_bad_config_message_names_file_line_and_key(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert expected in message


def test_bad_config_exits_2_without_traceback(tmp_path, capsys):
    path = _write(tmp_path, "accounts:\n  - name: demo\n    provider: demo\n    seed: many\n")
    code = main(["--config", str(path), "config", "check"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}:4: accounts[0].seed" in err
    assert "Traceback" not in err


def test_config_check_prints_summary(capsys):
    code = main(["--config", str(REPO / "config.example.yaml"), "config", "check", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert '"sla_policies": ["public-social", "direct-messages", "email", "reviews"]' in out


def test_explicit_missing_config_is_an_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml"), "accounts"]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_example_config_lists_every_theme():
    from replydesk.config import THEMES

    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    comment = text[text.index("  # The console's colours"):text.index("  theme: textual-dark")]
    assert [t for t in THEMES if t not in re.findall(r"[a-z0-9-]+", comment)] == []
