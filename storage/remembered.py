"""The validated SLA settings a workspace remembers, with the digest of the config they came from.

Why: evaluating an SLA needs the policies, and validating the config (pydantic, yaml) would be most
of the time of a command that only reads the cache (``replydesk show``, ``search``). Every full
open of the workspace (``Workspace.open_db``) keeps the settings in force here as JSON data; a read
command whose config file digest still matches uses them (``replydesk.slaspec.SettingsData``).
"""

from __future__ import annotations

import json
from typing import Any

from replydesk.storage.db import Database

#: meta keys: the remembered settings, and the fingerprint of the policies the conversations'
#: SLA columns were last evaluated with (written by ``slastate.apply_policy_changes``).
KEY = "sla_settings"
APPLIED_KEY = "sla_policies"


def remember(db: Database, source: str, policies: str, settings: dict[str, Any]) -> None:
    """Keep ``settings`` (``policies``: their fingerprint) as read from the config ``source``
    (its digest). Written only when something changed, so an unchanged open stays a read."""
    value = json.dumps({"source": source, "policies": policies, "settings": settings},
                       sort_keys=True, separators=(",", ":"))
    row = db.conn.execute("SELECT value FROM meta WHERE key=?", (KEY,)).fetchone()
    if row is not None and row[0] == value:
        return
    with db.transaction():
        db.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (KEY, value))


def recall(db: Database, source: str) -> dict[str, Any] | None:
    """The settings kept for the config ``source``, if the conversations were last evaluated
    with them (another config may have been put in force since); else None."""
    rows = dict(db.conn.execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (KEY, APPLIED_KEY)).fetchall())
    kept = json.loads(rows.get(KEY) or "null")
    if not isinstance(kept, dict) or kept.get("source") != source or kept.get("policies") != rows.get(APPLIED_KEY):
        return None
    return kept.get("settings")
