"""A server that echoes credentials in its errors never gets them stored, logged or shown.

The Mastodon instance (``httpx.MockTransport``, documented shapes) quotes the token back in its
error bodies, as misconfigured proxies and some servers do; the account's status, the outbox's
error, the event log, ``sync --once``, ``accounts`` and the log must all carry ``***`` instead.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from test_mastodon import ACCOUNT, CONVERSATIONS, INSTANCE, NOTIFICATIONS, TOKEN, instance_route, me_route

from http_fakes import FakeApi, json_response, needs_recordings
from replydesk import secrets
from replydesk.cli import main
from replydesk.providers import http

pytestmark = needs_recordings


def test_mask_replaces_a_secret_in_every_form_it_is_echoed() -> None:
    secret = "p@ss w/rd&\"1"
    secrets.remember(secret)
    for echoed in (secret, quote(secret, safe=""), json.dumps(secret)[1:-1], "p%40ss+w%2Frd%26%221"):
        assert secrets.mask(f"LOGIN failed: {echoed}!") == "LOGIN failed: ***!", echoed
    secrets.remember("abc")  # too short to mask without blanking ordinary words
    assert secrets.mask("abc") == "abc"


def test_a_truncated_echo_leaves_no_part_of_the_secret() -> None:
    secrets.remember(TOKEN)
    detail = http.redact("x" * 190 + TOKEN, 200)
    assert TOKEN[:8] not in detail


def echoing_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeApi, Path]:
    api = FakeApi()
    me_route(api, "117020565966271181", "mastodonpy_test")
    instance_route(api)
    api.route("GET", CONVERSATIONS, json_response([]))
    api.route("GET", NOTIFICATIONS, json_response(
        {"error": f"upstream said: Authorization: Bearer {TOKEN} is not valid here"}, status=503))
    api.route("POST", "/api/v1/statuses", json_response(
        {"error": f"rejected token={quote(TOKEN)}"}, status=422))
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(api.transport, **kw))
    config = tmp_path / "config.yaml"
    config.write_text(f"accounts:\n  - name: {ACCOUNT}\n    provider: mastodon\n    instance: {INSTANCE}\n",
                      encoding="utf-8")
    return api, config


def test_an_echoed_token_is_never_stored_printed_or_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from replydesk.storage import accounts, ingest, outbox
    from replydesk.storage.db import open_database

    _, config = echoing_instance(tmp_path, monkeypatch)
    data = tmp_path / "ws"
    args = ["--data-dir", str(data), "--config", str(config)]
    with caplog.at_level(logging.DEBUG):
        assert main(["sync", "--once", *args]) == 0
        db = open_database(data)
        with db.transaction():  # a conversation to answer, as a fetch would have stored it
            ingest.ensure_account(db, ACCOUNT, "mastodon", "mastodon")
        from replydesk.model import Contact, FetchResult, IncomingMessage

        ingest.ingest(db, ACCOUNT, [FetchResult(messages=[IncomingMessage(
            native_id="1", conversation_native_id="1", platform="mastodon", kind="mention",
            contact=Contact(native_id="9", name="Ann", handle="@ann"), text="hi", created_at=db.now() - 60,
            direction="in")], cursor={})])
        key = outbox.queue_reply(db, f"{ACCOUNT}:1", "Thanks!")
        assert main(["sync", "--once", *args]) == 0
        assert main(["accounts", *args]) == 0
        assert main(["outbox", "--json", *args]) == 0
    out, err = capsys.readouterr()
    status = accounts.status_of(db, ACCOUNT)
    item = outbox.get(db, key)
    assert "***" in status.detail + (item.last_error or "")
    db.close()
    quoted = quote(TOKEN)
    for where, text in (("stdout", out), ("stderr", err), ("log", caplog.text)):
        assert TOKEN not in text and quoted not in text, where
    for path in data.iterdir():
        if path.is_file():
            raw = path.read_bytes()
            assert TOKEN.encode() not in raw and quoted.encode() not in raw, path.name


def test_the_mastodon_echo_reaches_the_status_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's reason stays readable around the mask: the user still learns what went wrong."""
    from replydesk.storage import accounts
    from replydesk.storage.db import open_database

    _, config = echoing_instance(tmp_path, monkeypatch)
    assert main(["sync", "--once", "--data-dir", str(tmp_path / "ws"), "--config", str(config)]) == 0
    db = open_database(tmp_path / "ws")
    try:
        detail = accounts.status_of(db, ACCOUNT).detail
        assert "upstream said: Authorization: Bearer *** is not valid here" in detail
    finally:
        db.close()


@pytest.mark.server
@pytest.mark.timeout(90)
def test_an_imap_server_echoing_the_password_gets_it_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A real Dovecot whose login refusal quotes the password (``%w`` in the user's reason), as a
    misconfigured proxy does: the account's status, ``sync --once``, ``accounts``, the log and every
    file of the workspace carry ``***``, and the server's reason around it stays readable."""
    from replydesk.storage import accounts
    from replydesk.storage.db import open_database
    from servers import SHOP, running_dovecot

    password = "Imap-Echo-pw-7f3a"  # this test's own: no other test has taught the masker it
    with running_dovecot() as dovecot:
        dovecot.add_user("hello", password, extra="nologin=y reason=proxy_refused_password_%w")
        config = tmp_path / "config.yaml"
        config.write_text(
            "accounts:\n  - name: shop-mail\n    provider: email\n    address: " + SHOP + "\n"
            f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, tls: none, user: {SHOP}, timeout: 5}}\n"
            f"    smtp: {{host: 127.0.0.1, port: 9, tls: none, user: {SHOP}, timeout: 5}}\n", encoding="utf-8")
        monkeypatch.setenv(secrets.env_name("shop-mail"), password)
        data = tmp_path / "ws"
        args = ["--data-dir", str(data), "--config", str(config)]
        with caplog.at_level(logging.DEBUG):
            main(["sync", "--once", *args])
            assert main(["accounts", *args]) == 0
    out, err = capsys.readouterr()
    db = open_database(data)
    try:
        detail = accounts.status_of(db, "shop-mail").detail
    finally:
        db.close()
    assert "proxy_refused_password_***" in detail, detail
    for where, text in (("stdout", out), ("stderr", err), ("log", caplog.text), ("status", detail)):
        assert password not in text, where
    for path in data.iterdir():
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path.name
