"""Shared parts of the Meta tests: the recorded WhatsApp webhook bodies (read from ../shared at test
time, never copied), Meta's signature, a Graph API fake (``FakeApi`` routes by path) plugged in as
every provider's transport, and workspaces with Meta accounts whose secrets come from the
environment (the documented fallback), so a receiver in another process finds them too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from http_fakes import FakeApi, json_response
from replydesk import secrets
from replydesk.providers import http, meta
from replydesk.webhooks import VERIFY_TOKEN_ENTRY
from support import SHARED_TESTDATA

RECORDED_WA = SHARED_TESTDATA / "recorded" / "whatsapp"
needs_whatsapp_recordings = pytest.mark.skipif(
    not RECORDED_WA.is_dir(), reason=f"recorded WhatsApp webhooks not found at {RECORDED_WA}")

APP_SECRET = "test-app-secret-7f3a"
VERIFY_TOKEN = "test-verify-token-91c2"
TOKEN = "EAAG-test-token"
PHONE_ID, WABA_ID = "1122334455667", "1234567890987654321"  # as the recorded bodies name them
V = f"/{meta.GRAPH_VERSION}"


def recorded(name: str) -> dict[str, Any]:
    """One recorded file's cases: {case: whole webhook body}."""
    return json.loads((RECORDED_WA / name).read_text(encoding="utf-8"))


def raw(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    """The headers Meta sends with ``body``."""
    return {"content-type": "application/json", "x-hub-signature-256": meta.signature(secret, body)}


def meta_secrets(monkeypatch: pytest.MonkeyPatch, *accounts: str) -> dict[str, str]:
    """Tokens, app secrets and the verify token in the environment; returns them (for a subprocess)."""
    env = {secrets.env_name(VERIFY_TOKEN_ENTRY): VERIFY_TOKEN}
    for account in accounts:
        env[secrets.env_name(account)] = TOKEN
        env[secrets.env_name(account + meta.APP_SECRET_SUFFIX)] = APP_SECRET
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def graph(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A Graph API fake every provider the engine builds talks to (no request leaves the machine);
    the template list is empty until a test routes one."""
    api = FakeApi()
    api.route("GET", f"{V}/{WABA_ID}/message_templates", json_response({"data": [], "paging": {}}))
    real = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real(api.transport, **kw))
    return api


def sent(message_id: str) -> Any:
    """The Cloud API's answer to a send."""
    return json_response({"messaging_product": "whatsapp", "contacts": [{"input": "972987654321",
                          "wa_id": "972987654321"}], "messages": [{"id": message_id}]})


def graph_error(code: int, message: str, status: int = 400, subcode: int | None = None,
                headers: dict[str, str] | None = None, **extra: Any) -> Any:
    """An error as the Graph API answers it."""
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf", **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    return json_response({"error": error}, status, headers)


def workspace_config(path: Path, accounts: list[dict[str, Any]], **webhooks: Any) -> Path:
    """A config file (the CLI and a receiver process read it)."""
    import yaml

    path.write_text(yaml.safe_dump({"accounts": accounts, "webhooks": {"port": 0, **webhooks}}), encoding="utf-8")
    return path


def whatsapp_account(name: str) -> dict[str, Any]:
    return {"name": name, "provider": "whatsapp", "phone_number_id": PHONE_ID, "waba_id": WABA_ID}
