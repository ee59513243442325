"""Platform adapters. ``create`` builds the provider for one configured account.

Imports are lazy so starting the app never pays for adapters the workspace does not use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from replydesk.providers.base import Provider

#: provider name in config -> "module:Class"
REGISTRY: dict[str, str] = {
    "demo": "replydesk.providers.demo:DemoProvider",
    "email": "replydesk.providers.email:EmailProvider",
    "mastodon": "replydesk.providers.mastodon:MastodonProvider",
    "bluesky": "replydesk.providers.bluesky:BlueskyProvider",
    "telegram": "replydesk.providers.telegram:TelegramProvider",
}


class ProviderUnavailable(Exception):
    """The account's provider is not part of this build."""


def provider_class(name: str) -> type[Provider]:
    target = REGISTRY.get(name)
    if target is None:
        raise ProviderUnavailable(f"unknown provider {name!r}")
    module_name, _, cls = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ProviderUnavailable(f"the {name} provider is not available in this version") from None
        raise
    return getattr(module, cls)


def create(account: Any, data_dir: Path, secret: Any, clock: Any = None) -> Provider:
    """Build the provider for a validated account config (``replydesk.config`` models).

    ``clock`` reaches only the demo platform, whose simulated customers live on it (tests fix it).
    """
    options = account.model_dump(exclude={"name", "provider"})
    cls = provider_class(account.provider)
    if account.provider == "demo":
        return cls(account.name, options, secret, data_dir=data_dir, **({"clock": clock} if clock else {}))
    return cls(account.name, options, secret)
