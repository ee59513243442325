"""Delivery receipts: what a platform reports about our own sent messages after they left.

WhatsApp's status webhooks say ``sent``, ``delivered``, ``read`` (``played`` for a voice message) or
``failed`` with its error. Each updates the thread message of our reply: a receipt only moves
forward (a late "delivered" after "read" changes nothing; statuses may arrive in any order), and
``failed`` marks the message not delivered with the platform's reason, as an email bounce does.

A receipt that carries our outbox key (WhatsApp echoes ``biz_opaque_callback_data``) also settles a
reply whose send we could not be sure of: the platform has it, so it is recorded as sent with the
platform's id, and is never sent a second time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from replydesk.model import RECEIPT_STATES, DeliveryUpdate
from replydesk.storage.db import Database

#: How far each receipt has come; ``failed`` is final whatever came before.
RANK = {"sent": 1, "delivered": 2, "read": 3}
#: Outbox states a keyed receipt settles: the send's outcome was not known, or it was interrupted.
UNSETTLED = ("unknown", "sending", "queued", "failed")


def apply(db: Database, account: str, updates: Iterable[DeliveryUpdate]) -> int:
    """Apply ``updates`` inside the caller's transaction; returns how many changed a message."""
    changed = 0
    for update in updates:
        if not isinstance(update, DeliveryUpdate) or update.state not in RECEIPT_STATES:
            continue
        if not isinstance(update.remote_id, str) or not update.remote_id:
            continue
        if update.outbox_key:
            _settle(db, update)
        changed += _receipt(db, account, update)
    return changed


def _settle(db: Database, update: DeliveryUpdate) -> None:
    """The platform echoed our key with its id: a reply in doubt (or interrupted) did leave."""
    from replydesk.storage import outbox  # outbox imports ingest, which imports this module

    row = db.conn.execute("SELECT state, attempts, action FROM outbox WHERE key=?", (update.outbox_key,)).fetchone()
    if row is None or row[2] != "reply" or row[0] not in UNSETTLED or (row[0] != "unknown" and row[1] == 0):
        return  # not ours, done already, or never attempted (a stray key cannot send anything)
    outbox.mark_sent(db, update.outbox_key, update.remote_id, update.at)


def _receipt(db: Database, account: str, update: DeliveryUpdate) -> int:
    row = db.conn.execute(
        "SELECT id, conversation_id, state, meta FROM messages WHERE account=? AND direction='out' AND native_id=?",
        (account, update.remote_id)).fetchone()
    if row is None:
        return 0  # a message sent from elsewhere that we do not hold
    message_id, conv_id, state, raw_meta = row
    try:
        meta = json.loads(raw_meta or "{}")
    except ValueError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    if state == "failed" or meta.get("receipt") == "failed":
        return 0
    if update.state == "failed":
        reason = f"not delivered: {update.error or 'the platform gave no reason'}"[:500]
        db.conn.execute("UPDATE messages SET state='failed', error=?, meta=json_set(meta, '$.receipt', 'failed', "
                        "'$.receipt_at', ?) WHERE id=?", (reason, update.at, message_id))
        db.conn.execute("UPDATE outbox SET state='failed', last_error=?, updated_at=? WHERE message_id=? "
                        "AND state='unknown'", (reason, db.now(), message_id))
        db.conn.execute("INSERT INTO events(conversation_id, at, kind, actor, data) VALUES (?,?,?,?,?)",
                        (conv_id, update.at, "delivery_failed", "platform",
                         json.dumps({"message": message_id, "reason": reason})))
        return 1
    if RANK[update.state] <= RANK.get(str(meta.get("receipt")), 0):
        return 0
    db.conn.execute("UPDATE messages SET meta=json_set(meta, '$.receipt', ?, '$.receipt_at', ?) WHERE id=?",
                    (update.state, update.at, message_id))
    return 1
