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


_chosen = False


def _keyring() -> Any:
    """keyring, imported on first use: discovering its backends costs start-up time the console
    does not need until a provider asks for a secret. On first use an encrypting backend is
    preferred over a plain file when both are there (see ``prefer_encrypted``)."""
    import keyring
    import keyring.errors

    global _chosen
    if not _chosen:
        _chosen = True
        _prefer_encrypted(keyring)
    return keyring


# ---- which backend, and what it protects against -------------------------------------------------

#: Backends (module, class) that encrypt what they store without asking for a password each time,
#: with what that protects against. Plain files and unknown backends are said to be what they are.
ENCRYPTED = {
    ("keyring.backends.SecretService", "Keyring"): (
        "the desktop keyring (Secret Service: GNOME Keyring, KWallet)",
        "encrypted at rest with your login; while it is unlocked, programs running as you can ask for it"),
    ("keyring.backends.libsecret", "Keyring"): (
        "the desktop keyring (libsecret)",
        "encrypted at rest with your login; while it is unlocked, programs running as you can ask for it"),
    ("keyring.backends.kwallet", "DBusKeyring"): (
        "KWallet", "encrypted at rest with your wallet's password; while it is open, programs running as you can "
        "ask for it"),
    ("keyring.backends.macOS", "Keyring"): (
        "the macOS Keychain", "encrypted at rest with your login; other programs need your permission"),
    ("keyring.backends.Windows", "WinVaultKeyring"): (
        "the Windows Credential Manager", "encrypted at rest with your Windows login (DPAPI)"),
}
PLAIN = {
    ("keyrings.alt.file", "PlaintextKeyring"): (
        "a plain file (keyrings.alt PlaintextKeyring)",
        "NOT encrypted: base64 in {path}, readable by anyone who can read your files or their backups; it only "
        "keeps the secret out of the config and the workspace"),
}


def _key(backend: Any) -> tuple[str, str]:
    return type(backend).__module__, type(backend).__name__


def _is_encrypted(backend: Any) -> bool:
    return _key(backend) in ENCRYPTED


def prefer_encrypted(active: Any, viable: list[Any]) -> Any:
    """The backend to use: ``active`` (keyring's own choice by priority), unless it does not encrypt
    and one of the ``viable`` ones does (without asking for a password on every read)."""
    if _is_encrypted(active):
        return active
    better = [b for b in viable if _is_encrypted(b)]
    return max(better, key=_priority) if better else active


def _priority(backend: Any) -> float:
    try:
        return float(backend.priority)
    except Exception:  # noqa: BLE001 - keyring backends raise when asked while unavailable
        return 0.0


def _prefer_encrypted(keyring: Any) -> None:
    """Apply ``prefer_encrypted``, except when the user chose a backend (``PYTHON_KEYRING_BACKEND`` or
    keyring's config file): an explicit choice is theirs."""
    import keyring.backend
    import keyring.core

    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return
    try:
        if keyring.core.load_config() is not None:
            return
        active = keyring.get_keyring()
        viable = [b for b in keyring.backend.get_all_keyring() if _priority(b) > 0]
        chosen = prefer_encrypted(active, viable)
        if chosen is not active:
            keyring.set_keyring(chosen)
    except Exception:  # noqa: BLE001 - a broken backend must not stop the CLI: keyring's choice stays
        return


def backend_info(account: str | None = None) -> tuple[str, str, bool]:
    """(where the secret is kept, what that protects against, whether it is encrypted) — for
    ``login``, ``accounts`` and ``doctor``. With ``account``, its environment variable wins if set."""
    if account is not None and os.environ.get(env_name(account)):
        return (f"the environment variable {env_name(account)}",
                "never stored by replydesk; visible to programs running as you (and in /proc)", False)
    if not backend_available():
        return ("no keyring", "nothing can be stored: set the environment variable or install a keyring", False)
    backend = _keyring().get_keyring()
    key = _key(backend)
    if key in ENCRYPTED:
        name, protects = ENCRYPTED[key]
        return name, protects, True
    if key in PLAIN:
        name, protects = PLAIN[key]
        return name, protects.format(path=getattr(backend, "file_path", "its file")), False
    if key == ("keyring.backends.chainer", "ChainerBackend"):
        inner = [b for b in getattr(backend, "backends", [])]
        if inner and all(_is_encrypted(b) for b in inner):
            name, protects = ENCRYPTED[_key(inner[0])]
            return name, protects, True
    return (f"the keyring backend {key[0]}.{key[1]}",
            "replydesk cannot tell whether it encrypts; check that backend's documentation", False)


class SecretError(Exception):
    """No secret store available or no secret stored; the message says what to do."""


#: Shorter values are not masked: a 3-character "secret" would blank out ordinary words.
MIN_MASKED = 4
MASK = "***"
_known: set[str] = set()
_known_lock = threading.Lock()
_forms: tuple[str, ...] = ()


def remember(secret: str | None) -> None:
    """Mask ``secret`` from now on wherever :func:`mask` runs. A secret stored as a JSON object (an
    OAuth token set) is masked whole and by each of its tokens, which are what a server echoes."""
    global _forms
    if not secret or len(secret) < MIN_MASKED or secret in _known:
        return
    parts = [secret]
    if secret.startswith("{"):
        try:
            blob = json.loads(secret)
        except ValueError:
            blob = None
        if isinstance(blob, dict):
            parts += [v for v in blob.values() if isinstance(v, str) and len(v) >= 12]
    with _known_lock:
        _known.update(parts)
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
    "Either set the environment variable {env} to the secret, or run a desktop keyring (GNOME Keyring, "
    "KWallet: encrypted at rest), or, knowing it is a plain file, 'pip install keyrings.alt' (its "
    "PlaintextKeyring stores base64, not encryption, readable by anyone who can read your files)."
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
