"""Tokens and passwords: the OS keyring first, an environment variable as the documented fallback.

Secrets never go to the config file, the database, logs or exception text. ``Secret`` objects print
as ``Secret('***')`` so an accidental log line or traceback cannot leak one.

A server can still echo a credential back (an IMAP server quoting the failed LOGIN line, an API
error body repeating the token). So every secret this process reads is remembered, and
:func:`mask` replaces each one, by value (as written, URL-encoded or JSON-escaped), in any text
before it is stored, logged or shown: the engine masks every error it records, the CLI every line
it prints, and the log formatter every record.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

SERVICE = "replydesk"


def _keyring() -> Any:
    """keyring, imported on first use: discovering its backends costs start-up time the console
    does not need until a provider asks for a secret."""
    import keyring
    import keyring.errors

    return keyring


class SecretError(Exception):
    """No secret store available or no secret stored; the message says what to do."""


#: Shorter values are not masked: a 3-character "secret" would blank out ordinary words.
MIN_MASKED = 4
MASK = "***"
_known: set[str] = set()
_known_lock = threading.Lock()
_forms: tuple[str, ...] = ()


def remember(secret: str | None) -> None:
    """Mask ``secret`` from now on wherever :func:`mask` runs."""
    global _forms
    if not secret or len(secret) < MIN_MASKED or secret in _known:
        return
    with _known_lock:
        _known.add(secret)
        forms = set()
        for value in _known:
            forms |= {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1], html.escape(value)}
        _forms = tuple(sorted((f for f in forms if len(f) >= MIN_MASKED), key=len, reverse=True))


def mask(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    if not _forms or not text:
        return text
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


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
    remember(secret)
    keyring = _keyring()
    try:
        keyring.set_password(SERVICE, account, secret)
    except keyring.errors.KeyringError as exc:
        raise SecretError(f"the keyring refused to store the secret for {account!r}: {type(exc).__name__}") from None


def fetch(account: str) -> str | None:
    """The secret for ``account`` from the env var or the keyring; None when neither has one."""
    value = os.environ.get(env_name(account))
    if value:
        remember(value)
        return value
    if not backend_available():
        return None
    keyring = _keyring()
    try:
        value = keyring.get_password(SERVICE, account)
    except keyring.errors.KeyringError:
        return None
    remember(value)
    return value


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
