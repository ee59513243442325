"""Setting up a Meta account, the first thing a user does: `replydesk login` takes the token and the
app's secret (and says which permissions the token needs), `replydesk accounts` says when the app
secret is missing, and `replydesk webhooks token` makes the verify token once. A real file keyring,
the real CLI; no secret is ever printed."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends.fail import Keyring as FailKeyring

from meta_support import whatsapp_account, workspace_config
from replydesk import secrets
from replydesk.cli import main
from replydesk.providers.meta import APP_SECRET_SUFFIX
from replydesk.webhooks import VERIFY_TOKEN_ENTRY

TOKEN, APP_SECRET = "EAAG-page-token-5d1c", "app-secret-0e9b"


def config(tmp_path: Path) -> Path:
    return workspace_config(tmp_path / "config.yaml", [
        whatsapp_account("shop-whatsapp"),
        {"name": "shop-facebook", "provider": "facebook", "page_id": "100000000000001"},
    ])


def login(cfg: Path, account: str, stdin: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["--config", str(cfg), "login", account])


def test_login_stores_the_token_then_the_app_secret_and_names_the_permissions(
        file_keyring: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert login(cfg, "shop-facebook", f"{TOKEN}\n{APP_SECRET}\n", monkeypatch) == 0
    out, err = capsys.readouterr()
    for permission in ("pages_messaging", "pages_manage_metadata", "pages_read_engagement",
                       "pages_read_user_content", "pages_manage_engagement"):
        assert permission in err
    assert "App secret" in err
    assert TOKEN not in out + err and APP_SECRET not in out + err
    assert secrets.fetch("shop-facebook") == TOKEN
    assert secrets.fetch("shop-facebook" + APP_SECRET_SUFFIX) == APP_SECRET


def test_accounts_says_when_the_app_secret_is_missing(file_keyring: Any, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    secrets.store("shop-whatsapp", TOKEN)
    assert main(["--config", str(cfg), "--data-dir", str(tmp_path / "ws"), "accounts", "--json"]) == 0
    rows = {r["name"]: r["secret"] for r in json.loads(capsys.readouterr().out)}
    assert rows == {"shop-whatsapp": "no app secret", "shop-facebook": "missing"}
    secrets.store("shop-whatsapp" + APP_SECRET_SUFFIX, APP_SECRET)
    assert main(["--config", str(cfg), "--data-dir", str(tmp_path / "ws"), "accounts", "--json"]) == 0
    rows = {r["name"]: r["secret"] for r in json.loads(capsys.readouterr().out)}
    assert rows["shop-whatsapp"] == "set"


def test_a_login_without_an_app_secret_keeps_the_token_and_says_webhooks_are_refused(
        file_keyring: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert login(cfg, "shop-whatsapp", f"{TOKEN}\n", monkeypatch) == 1  # only the token was piped in
    err = capsys.readouterr().err
    assert secrets.fetch("shop-whatsapp") == TOKEN
    assert "token" in err and "webhook" in err and "replydesk login shop-whatsapp" in err
    # a new token later (the app secret stored before) keeps the app secret when none is typed
    secrets.store("shop-whatsapp" + APP_SECRET_SUFFIX, APP_SECRET)
    assert login(cfg, "shop-whatsapp", "EAAG-new-token\n\n", monkeypatch) == 0
    assert secrets.fetch("shop-whatsapp") == "EAAG-new-token"
    assert secrets.fetch("shop-whatsapp" + APP_SECRET_SUFFIX) == APP_SECRET
    assert "kept the app secret" in capsys.readouterr().out


def test_the_verify_token_is_made_once_and_renewed_only_when_asked(
        file_keyring: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert main(["--config", str(cfg), "webhooks", "token"]) == 0
    first = capsys.readouterr().out.strip()
    assert len(first) >= 24 and secrets.fetch(VERIFY_TOKEN_ENTRY) == first
    assert main(["--config", str(cfg), "webhooks", "token"]) == 0
    assert capsys.readouterr().out.strip() == first  # pasted into Meta's dashboard: must not change
    assert main(["--config", str(cfg), "webhooks", "token", "--new"]) == 0
    renewed = capsys.readouterr().out.strip()
    assert renewed != first and secrets.fetch(VERIFY_TOKEN_ENTRY) == renewed


def test_without_a_keyring_the_verify_token_says_which_variable_to_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    try:
        assert main(["--config", str(cfg), "webhooks", "token"]) == 1
        assert "REPLYDESK_SECRET_WEBHOOKS_VERIFY_TOKEN" in capsys.readouterr().err
        monkeypatch.setenv("REPLYDESK_SECRET_WEBHOOKS_VERIFY_TOKEN", "chosen-by-me")
        assert main(["--config", str(cfg), "webhooks", "token"]) == 0
        assert capsys.readouterr().out.strip() == "chosen-by-me"
    finally:
        keyring.set_keyring(previous)
