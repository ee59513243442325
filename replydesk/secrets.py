"""Tokens and passwords: the OS keyring first, an environment variable as the documented fallback.

Secrets never go to the config file, the database, logs or exception text. ``Secret`` objects print
as ``Secret('***')`` so an accidental log line or traceback cannot leak one.
"""

from __future__ import annotations

import os
import re
from typing import Any

SERVICE = "replydesk"


def _keyring() -> Any:
    """keyring, imported on first use: discovering its backends costs start-up time the console
    does not need until a provider asks for a secret."""
    import keyring
    import keyring.errors

    return keyring


class SecretError(Exception):
    """No secret store available or no secret stored; the message says what to do."""


def env_name(account: str) -> str:
    """``REPLYDESK_SECRET_<ACCOUNT>``: upper-cased, every character other than A-Z and 0-9 as ``_``."""
    return "REPLYDESK_SECRET_" + re.sub(r"[^A-Z0-9]", "_", account.upper())


NO_BACKEND_HELP = (
    "no keyring backend is available on this machine (common on headless Linux and over SSH). "
    "Either set the environment variable {env} to the secret, or install a file-based keyring "
    "with 'pip install keyrings.alt' (then the secret is stored encrypted-at-rest by that backend)."
)


def backend_available() -> bool:
    from keyring.backends.fail import Keyring as FailKeyring

    backend = _keyring().get_keyring()
    return not isinstance(backend, FailKeyring) and getattr(backend, "priority", 1) > 0


def store(account: str, secret: str) -> None:
    if not secret:
        raise SecretError("an empty secret was not stored")
    if not backend_available():
        raise SecretError(NO_BACKEND_HELP.format(env=env_name(account)))
    keyring = _keyring()
    try:
        keyring.set_password(SERVICE, account, secret)
    except keyring.errors.KeyringError as exc:
        raise SecretError(f"the keyring refused to store the secret for {account!r}: {type(exc).__name__}") from None


def fetch(account: str) -> str | None:
    """The secret for ``account`` from the env var or the keyring; None when neither has one."""
    value = os.environ.get(env_name(account))
    if value:
        return value
    if not backend_available():
        return None
    keyring = _keyring()
    try:
        return keyring.get_password(SERVICE, account)
    except keyring.errors.KeyringError:
        return None


def delete(account: str) -> bool:
    keyring = _keyring()
    try:
        keyring.delete_password(SERVICE, account)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise SecretError(f"the keyring refused: {type(exc).__name__}") from None
    return True


def getter(account: str):  # noqa: ANN201 - a zero-argument callable, see providers.base.SecretGetter
    """A lazy getter, so a provider reads its secret only when it needs it and never stores it in state."""
    return lambda: fetch(account)
