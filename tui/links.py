"""Links and attachments of a message, as the user can check them before anything is opened.

A link is a URL written out in the message text: what the customer sent, or, for HTML mail and
Mastodon posts, the target the converter wrote beside its text (``text (url)``), so a link can
never hide behind other words; the list shows each URL in full, and its host apart (a
``https://bank.example@evil.example`` goes to evil.example). Attachments come from the message's
metadata: name, type and size always; a file kept in the workspace or a URL where the platform
gives one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from replydesk.safetext import visible

_URL = re.compile(r"""(?:https?://|mailto:)[^\s<>"'`]+""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}>»”’…"


@dataclass(frozen=True)
class Link:
    url: str

    @property
    def host(self) -> str:
        """Where the link goes (the part after any ``user@``), as written."""
        if self.url.lower().startswith("mailto:"):
            return self.url[7:].split("?")[0]
        try:
            return urlsplit(self.url).hostname or ""
        except ValueError:
            return ""


def find_links(text: str) -> list[Link]:
    """Every URL written in ``text``, in order, each once; closing punctuation is not part of it
    (a bracket is kept when the URL opened one)."""
    out: dict[str, Link] = {}
    for match in _URL.finditer(text):
        url = match.group()
        while url and url[-1] in _TRAILING:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            url = url[:-1]
        if len(url) > len("https://"):
            out.setdefault(url, Link(url))
    return list(out.values())


@dataclass(frozen=True)
class Attachment:
    name: str
    type: str
    size: int | None
    url: str | None = None
    path: str | None = None  # relative to the workspace's attachments folder

    def describe(self) -> str:
        size = "" if self.size is None else f" · {human_size(self.size)}"
        return f"{visible(self.name)} · {visible(self.type)}{size}"

    def local_file(self, data_dir: Path) -> Path | None:
        """The stored file, if it is one and inside the workspace's attachments folder."""
        if not self.path:
            return None
        root = (data_dir / "attachments").resolve()
        target = (root / self.path).resolve()
        return target if target.is_relative_to(root) else None


def attachments(meta: Any) -> list[Attachment]:
    """The ``attachments`` a provider recorded in a message's metadata; malformed entries skipped."""
    items = meta.get("attachments") if isinstance(meta, dict) else None
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        size = item.get("size")
        out.append(Attachment(
            name=str(item.get("name") or "unnamed"), type=str(item.get("type") or "application/octet-stream"),
            size=size if isinstance(size, int) and size >= 0 else None,
            url=item["url"] if isinstance(item.get("url"), str) else None,
            path=item["path"] if isinstance(item.get("path"), str) else None,
        ))
    return out


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
