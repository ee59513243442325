"""Secrets: keyring storage, the env-var fallback, the no-backend message, and no leaks anywhere."""

from __future__ import annotations

import io
import logging

import keyring
import pytest
from keyring.backends.fail import Keyring as FailKeyring

from replydesk import secrets
from replydesk.cli import main
from support import make_workspace, sync_once

TOKEN = "sk-live-9f8e7d6c5b4a-very-secret"


def test_env_name_rule():
    assert secrets.env_name("shop-mail") == "REPLYDESK_SECRET_SHOP_MAIL"
    assert secrets.env_name("Shop.Mastodon 2") == "REPLYDESK_SECRET_SHOP_MASTODON_2"


def test_store_and_fetch_with_a_real_backend(file_keyring):
    secrets.store("shop-mail", TOKEN)
    assert secrets.fetch("shop-mail") == TOKEN
    assert file_keyring.get_password("replydesk", "shop-mail") == TOKEN
    assert secrets.delete("shop-mail") is True
    assert secrets.fetch("shop-mail") is None


def test_env_var_wins_over_keyring(file_keyring, monkeypatch):
    secrets.store("shop-mail", "from-keyring")
    monkeypatch.setenv("REPLYDESK_SECRET_SHOP_MAIL", "from-env")
    assert secrets.fetch("shop-mail") == "from-env"


def test_no_backend_says_what_to_do(monkeypatch):
    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    try:
        assert not secrets.backend_available()
        with pytest.raises(secrets.SecretError) as err:
            secrets.store("shop-mail", TOKEN)
        message = str(err.value)
        assert "REPLYDESK_SECRET_SHOP_MAIL" in message and "keyrings.alt" in message
        assert TOKEN not in message
        assert secrets.fetch("shop-mail") is None
        monkeypatch.setenv("REPLYDESK_SECRET_SHOP_MAIL", TOKEN)
        assert secrets.fetch("shop-mail") == TOKEN
    finally:
        keyring.set_keyring(previous)


def test_login_reads_secret_from_stdin_and_stores_it(file_keyring, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("accounts:\n  - {name: demo, provider: demo}\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main(["--config", str(cfg), "login", "demo"]) == 0
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    assert secrets.fetch("demo") == TOKEN


def test_login_unknown_account_is_usage_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("accounts: []\n")
    assert main(["--config", str(cfg), "login", "nobody"]) == 2


def test_demo_token_never_reaches_db_export_logs_or_help(file_keyring, tmp_path, clock, capsys, caplog):
    secrets.store("demo", TOKEN)
    ws = make_workspace(tmp_path / "ws", clock)
    with caplog.at_level(logging.DEBUG):
        sync_once(ws, clock)
        assert main(["--data-dir", str(ws.data_dir), "export"]) == 0
        main(["--data-dir", str(ws.data_dir), "accounts", "--json"])
        with pytest.raises(SystemExit):
            main(["--help"])
    out, err = capsys.readouterr()
    for path in ws.data_dir.iterdir():
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path.name
    assert TOKEN not in out + err + caplog.text


# ---- which backend, and what it protects against ------------------------------------------------------


def test_login_and_accounts_say_the_backend_and_that_a_plain_file_is_not_encrypted(file_keyring, tmp_path,
                                                                                   monkeypatch, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("accounts:\n  - {name: shop, provider: mastodon, instance: https://mastodon.example}\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main(["--config", str(cfg), "login", "shop"]) == 0
    out = capsys.readouterr().out
    assert "a plain file (keyrings.alt PlaintextKeyring): NOT encrypted: base64 in " + file_keyring.file_path in out
    assert "for encryption at rest, run a desktop keyring" in out and "REPLYDESK_SECRET_SHOP" in out
    assert "encrypted-at-rest" not in out
    assert main(["--config", str(cfg), "--data-dir", str(tmp_path / "ws"), "accounts"]) in (0, 1)
    assert "secrets: a plain file (keyrings.alt PlaintextKeyring): NOT encrypted" in capsys.readouterr().out
    main(["--config", str(cfg), "--data-dir", str(tmp_path / "ws"), "doctor"])
    assert "secrets: a plain file" in capsys.readouterr().out


def test_an_encrypting_backend_is_preferred_over_a_plain_file():
    from keyring.backends import SecretService, fail
    from keyrings.alt.file import PlaintextKeyring

    plain, desktop = PlaintextKeyring(), SecretService.Keyring()
    assert secrets.prefer_encrypted(plain, [plain, desktop]) is desktop
    assert secrets.prefer_encrypted(desktop, [plain, desktop]) is desktop
    assert secrets.prefer_encrypted(plain, [plain, fail.Keyring()]) is plain  # nothing better: as it was


def test_the_environment_variable_is_named_as_the_place(monkeypatch):
    monkeypatch.setenv("REPLYDESK_SECRET_SHOP", TOKEN)
    where, protects, encrypted = secrets.backend_info("shop")
    assert where == "the environment variable REPLYDESK_SECRET_SHOP" and not encrypted
    assert "visible to programs running as you" in protects


def test_login_help_no_longer_promises_encryption_it_cannot_give(capsys):
    with pytest.raises(SystemExit):
        main(["login", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a plain file (base64, NOT encrypted)" in text and "encrypted at rest" in text
