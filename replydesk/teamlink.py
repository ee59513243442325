"""Whether a workspace is joined to a team, read without opening anything: ``team.json`` in its dir.

It holds the team's URL (never a password: that is in the keyring) and the agent's name, so the
workspace can take the agent's name for the console and pick the team's local engine before any
database is open. Standard library only: every start-up reads it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from replydesk.paths import TEAM_FILE as FILE


@dataclass(frozen=True)
class TeamLink:
    url: str  # postgresql://role@host:port/db?sslmode=…, without a password
    agent: str
    kind: str = "agent"  # agent | engine


def read(data_dir: Path) -> TeamLink | None:
    try:
        data = json.loads((Path(data_dir) / FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{Path(data_dir) / FILE} is unreadable ({exc}); join the team again") from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not isinstance(data.get("agent"), str):
        raise ValueError(f"{Path(data_dir) / FILE} is not a team link; join the team again")
    return TeamLink(data["url"], data["agent"], data.get("kind", "agent"))


def write(data_dir: Path, link: TeamLink) -> None:
    path = Path(data_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"url": link.url, "agent": link.agent, "kind": link.kind}, fh)
    os.replace(tmp, path)
