"""Config: the example validates; each kind of mistake gets one clear message with file, line and key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from replydesk import providers
from replydesk.cli import main
from replydesk.config import ConfigError, load_config
from support import REPO


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_example_config_validates_and_documents_every_provider():
    config, _ = load_config(REPO / "config.example.yaml")
    assert {a.provider for a in config.accounts} == set(providers.REGISTRY)
    assert [p.name for p in config.sla.policies] == ["public-social", "direct-messages", "email", "reviews"]
    assert "office" in config.sla.calendars
    assert len(config.ui.views) == 7 and config.ui.views[-1].query.startswith("is:listening")
    assert [q.name for q in config.listening] == ["brand"]


def test_example_config_documents_every_option_of_every_provider():
    """Each provider module's options (nested ones too) appear in config.example.yaml."""
    import re

    from pydantic import BaseModel

    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")

    def fields(model: type[BaseModel]) -> set[str]:
        names = set()
        for name, info in model.model_fields.items():
            names.add(name)
            for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    names |= fields(arg)
        return names

    for name in providers.REGISTRY:
        missing = sorted(f for f in fields(providers.options_model(name)) if not re.search(rf"\b{f}\b", text))
        assert missing == [], f"{name}: {missing}"


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            accounts:
              - name: shop-mail
                provider: email
                address: hello@shop.example
                imap:
                  host: imap.shop.example
                  tls: none
            """,
            ":7: accounts[0].imap: tls: none is only allowed for localhost, not imap.shop.example "
            "(use implicit or starttls so the password is not sent in clear text)",
        ),
        (
            """
            accounts:
              - name: shop-mail
                provider: email
                address: hello@shop.example
                imap: {host: imap.shop.example, folders: []}
            """,
            ":6: accounts[0].imap.folders: must be a list of folder names",
        ),
        (
            """
            accounts:
              - name: shop-mastodon
                provider: mastodon
                instance: https://mastodon.social
                max_length: 0
            """,
            ":6: accounts[0].max_length: Input should be greater than or equal to 1",
        ),
        (
            """
            accounts:
              - name: shop-bluesky
                provider: bluesky
                service: https://bsky.social
            """,
            ":3: accounts[0].handle: missing required option",
        ),
        (
            """
            accounts:
              - name: shop-telegram
                provider: telegram
                api_base: http://api.telegram.org
            """,
            ":5: accounts[0].api_base: must be an https:// URL (plain http only for localhost)",
        ),
        (
            """
            accounts:
              - name: demo
                provider: demo
                faults: {fail: 2}
            """,
            ":5: accounts[0].faults.fail: Input should be less than or equal to 1",
        ),
        (
            """
            accounts:
              - name: demo
                provider: demo
              - name: nameless-provider
                seed: 4
            """,
            f":5: accounts[1]: missing required option 'provider' (one of: {', '.join(providers.REGISTRY)})",
        ),
    ],
    ids=["email-plain-remote", "email-no-folders", "mastodon-max-length", "bluesky-no-handle",
         "telegram-http", "demo-fault-share", "no-provider"],
)
def test_a_providers_own_option_errors_name_file_line_and_key(tmp_path, text, expected):
    """Each provider module validates its own options; the message still points into the file."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}{expected}"


def test_provider_options_keep_their_types_and_defaults(tmp_path):
    path = _write(tmp_path, """
        accounts:
          - name: shop-mail
            provider: email
            address: Hello@Shop.example
            imap: {host: imap.shop.example, tls: starttls}
            smtp: {host: smtp.shop.example}
          - name: shop-mastodon
            provider: mastodon
            instance: https://mastodon.social/
            poll_interval: 2m
    """)
    config, _ = load_config(path)
    mail, mastodon = config.accounts
    assert (mail.imap.port, mail.imap.user, mail.smtp.port, mail.address) == (143, "hello@shop.example", 465,
                                                                              "hello@shop.example")
    assert (mastodon.instance, mastodon.poll_interval, mastodon.max_length) == ("https://mastodon.social", 120.0, None)
    assert type(mastodon).__module__ == "replydesk.providers.mastodon"


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
    assert '"listening": ["brand"]' in out


def test_explicit_missing_config_is_an_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml"), "accounts"]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_example_config_lists_every_theme():
    from replydesk.config import THEMES

    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    comment = text[text.index("  # The console's colours"):text.index("  theme: textual-dark")]
    assert [t for t in THEMES if t not in re.findall(r"[a-z0-9-]+", comment)] == []


_LAUGHS = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10 if i else ["1"] * 10) + "]\n" for i in range(6))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ui:\n  agent: ann\n  theme: nord\n  agent: bob\n", ":4: ui.agent: duplicate key (also on line 2)"),
        ("accounts:\n  - name: demo\n    provider: demo\n    seed: 1\n    seed: 2\n",
         ":5: accounts[0].seed: duplicate key (also on line 4)"),
        ("sla:\n  calendars:\n    office:\n      timezone: UTC\n      holidays: [2026-12-25, 2026-02-30]\n",
         ":5: sla.calendars.office.holidays[1]: '2026-02-30' is not a real date"),
        ("ui:\n  views:\n" + "    " + "[" * 3000 + "]" * 3000 + "\n", ": nested more than 32 levels deep"),
        ("sync:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)), ": nested more than 32 levels deep"),
        (_LAUGHS, "expands to more than 20000 values"),
        ("ui:\n  undo_seconds: 1e300\n", ":2: ui.undo_seconds: Input should be less than or equal to 3600"),
        ("sync:\n  lock_timeout: 0s\n", ":2: sync.lock_timeout: Input should be greater than 0"),
    ],
    ids=["duplicate", "duplicate-in-account", "impossible-date", "deep-list", "deep-map", "alias-bomb",
         "absurd-undo", "zero-lock-timeout"],
)
def test_hostile_config_is_one_error_with_file_line_and_key(tmp_path, capsys, text, expected):
    path = _write(tmp_path, text)
    code = main(["--config", str(path), "config", "check"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert expected in err and str(path) in err
    assert len(err.strip().splitlines()) == 2  # "bad config:" and the one problem


def test_sub_second_durations_are_kept(tmp_path):
    path = _write(tmp_path, "sync:\n  lock_timeout: 250ms\n  retry_base: 1.5s\nui:\n  undo_seconds: 0.5s\n")
    config, _ = load_config(path)
    assert (config.sync.lock_timeout, config.sync.retry_base, config.ui.undo_seconds) == (0.25, 1.5, 0.5)


# ---- keymap ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keymap:\n  reply: r\n  cursor_down: \"j,down,ctrl+n\"\n",
         ":3: keymap.cursor_down: unknown binding id (did you mean inbox.down"),
        ("keymap:\n  resolve: \"r\"\n",
         ":2: keymap.resolve: 'r' is also the key of reply in the inbox list; give one of them another key"),
        ("keymap:\n  inbox.down: \"x\"\n",
         ":2: keymap.inbox.down: 'x' is also the key of resolve in the inbox list"),
        ("keymap:\n  composer.send: \"s\"\n",
         ":2: keymap.composer.send: 's' is typed as text in the composer"),
        ("keymap:\n  search: \"ctrl+p\"\n",
         ":2: keymap.search: 'ctrl+p' is reserved for the command palette"),
        ("keymap:\n  reply: \"\"\n", ":2: keymap.reply: no keys given"),
    ],
)
def test_keymap_mistakes_are_errors_with_file_and_line(tmp_path, text, expected):
    """config check used to accept an unknown id and a key stolen from another binding (which
    then silently stopped working)."""
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:") and expected in str(err.value)
    assert main(["config", "check", "--config", str(path)]) == 2


def test_keymap_remaps_and_swaps_are_accepted(tmp_path):
    """Moving a key to a free one, swapping two keys, and keys the defaults already share are fine;
    so are the example's own (commented) lines."""
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    commented = [line[1:] for line in example.splitlines() if re.match(r"#  [\w.]+: ", line)]
    assert commented, "config.example.yaml shows how to remap keys"
    for body in ("\n".join(commented), 'resolve: "x,ctrl+d"', 'resolve: "r"\n  reply: "x"',
                 '"inbox.down": "j,down,ctrl+n"', 'composer.close: "escape,ctrl+w"'):
        path = tmp_path / "config.yaml"
        path.write_text(f"keymap:\n  {body.strip()}\n", encoding="utf-8")
        config, _ = load_config(path)
        assert config.keymap
