"""Where a workspace and its config live, and a digest of the config file as it is now.

Light on purpose (the standard library and platformdirs): the read commands (``replydesk search``,
``show``, ``outbox``) find the workspace and tell whether the config changed since the workspace
last validated it without loading the config machinery (pydantic, yaml), see ``replydesk.quickopen``.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

APP = "replydesk"
#: The file in a workspace's dir that joins it to a team (``replydesk.teamlink``): here, because every
#: command looks for it and teamlink's record type is more than that look needs.
TEAM_FILE = "team.json"


def default_config_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path(APP) / "config.yaml"


def default_data_dir() -> Path:
    env = os.environ.get("REPLYDESK_HOME")
    if env:
        return Path(env)
    from platformdirs import user_data_path

    return user_data_path(APP)


def config_digest(explicit: Path | None) -> str | None:
    """A digest of the config a command would load: the file's path and bytes, or that the default
    file is absent. None when the file cannot be read: only a full load can say what is wrong."""
    path = explicit if explicit is not None else default_config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if explicit is not None:
            return None
        data = None
    except OSError:
        return None
    # Two checksums and the length, not a cryptographic hash: this tells an edit from no edit of the
    # user's own file, and hashlib (OpenSSL) would be a fifth of a read command's imports.
    blob = f"{path.resolve()}\0".encode() + (b"absent" if data is None else b"file\0" + data)
    return f"{len(blob):x}-{zlib.crc32(blob):08x}-{zlib.adler32(blob):08x}"
