"""The provider registry: one line per provider, and what the rest of replydesk asks of it.

A provider is one module (its account ``Options``, its platform ``FACTS``, its mappings and its
provider class) plus one line in ``REGISTRY``. Modules are imported only when something needs them:
the config imports the modules of the providers it names (cheap by contract, see ``base``), the
sync engine builds the providers; the console imports none (it reads the facts from storage).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from replydesk.options import AccountOptions
from replydesk.platforms import PlatformFacts
from replydesk.providers.base import Provider

#: provider name in config -> "module:Class"
REGISTRY: dict[str, str] = {
    "demo": "replydesk.providers.demo:DemoProvider",
    "email": "replydesk.providers.email:EmailProvider",
    "mastodon": "replydesk.providers.mastodon:MastodonProvider",
    "bluesky": "replydesk.providers.bluesky:BlueskyProvider",
    "telegram": "replydesk.providers.telegram:TelegramProvider",
    "x": "replydesk.providers.x:XProvider",
    "google": "replydesk.providers.google:GoogleProvider",
    "facebook": "replydesk.providers.facebook:FacebookProvider",
    "instagram": "replydesk.providers.instagram:InstagramProvider",
    "whatsapp": "replydesk.providers.whatsapp:WhatsAppProvider",
    "demo-helpdesk": "replydesk.providers.demo_helpdesk:DemoHelpdesk",
    "zendesk": "replydesk.providers.zendesk:ZendeskProvider",
}

#: Providers whose "remote side" lives in the workspace (they take the data dir).
SIMULATED = ("demo", "demo-helpdesk")

#: Platforms that only the demo simulates so far. Their facts wait here for their provider module:
#: when one lands, its entry moves into that module's ``FACTS``. Where a platform documents
#: "characters" without saying which, we count UTF-16 units (the largest plausible unit).
FACTS_WITHOUT_PROVIDER: dict[str, PlatformFacts] = {
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


def options_model(name: str) -> type[AccountOptions]:
    """The options model of provider ``name`` (``replydesk.config`` validates accounts with it)."""
    return provider_class(name).Options


def platform_facts(platform: str) -> PlatformFacts | None:
    """The facts of ``platform`` from the provider that owns them, else from the table above."""
    for name in REGISTRY:
        facts = provider_class(name).FACTS.get(platform)
        if facts is not None:
            return facts
    return FACTS_WITHOUT_PROVIDER.get(platform)


def create(account: AccountOptions, data_dir: Path, secret: Any, clock: Any = None) -> Provider:
    """Build the provider for a validated account (its provider module's ``Options``).

    ``clock`` reaches only the demo platform, whose simulated customers live on it (tests fix it).
    """
    cls = provider_class(account.provider)
    if account.provider in SIMULATED:
        return cls(account.name, account, secret, data_dir=data_dir, **({"clock": clock} if clock else {}))
    return cls(account.name, account, secret)
