"""What the UI needs to know about each platform without importing a provider: names and limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    label: str
    short: str  # 2-3 cells for the inbox column
    public_limit: int  # graphemes for a public reply; 0 = none
    private_limit: int  # graphemes for a private message; 0 = none; -1 = no private channel
    has_public: bool = True


PLATFORMS: dict[str, PlatformInfo] = {
    "email": PlatformInfo("Email", "MAIL", 0, 0, has_public=False),
    "x": PlatformInfo("X", "X", 280, 10_000),
    "facebook": PlatformInfo("Facebook", "FB", 8_000, 2_000),
    "instagram": PlatformInfo("Instagram", "IG", 2_200, 1_000),
    "google": PlatformInfo("Google reviews", "GBP", 4_096, -1),
    "whatsapp": PlatformInfo("WhatsApp", "WA", 4_096, 4_096, has_public=False),
    "telegram": PlatformInfo("Telegram", "TG", 4_096, 4_096, has_public=False),
    "mastodon": PlatformInfo("Mastodon", "MA", 500, 500),
    "bluesky": PlatformInfo("Bluesky", "BS", 300, 1_000),
}

UNKNOWN = PlatformInfo("Other", "?", 0, 0)


def info(platform: str) -> PlatformInfo:
    return PLATFORMS.get(platform, UNKNOWN)


def reply_limit(platform: str, kind: str, private: bool) -> int:
    """Grapheme limit for a reply; DMs and email answer privately by nature."""
    p = info(platform)
    if private or kind in ("dm", "email") or not p.has_public:
        return max(p.private_limit, 0)
    return p.public_limit


def can_reply_privately(platform: str, kind: str) -> bool:
    """Public threads where the platform also offers a private channel (answer a comment by DM)."""
    p = info(platform)
    return kind in ("comment", "mention") and p.private_limit >= 0
