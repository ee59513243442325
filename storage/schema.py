"""Versioned schema migrations, tracked in ``PRAGMA user_version``.

Each migration is a list of SQL statements applied in one transaction. Append new migrations;
never edit a released one — databases in the wild have already run it.
"""

from __future__ import annotations

# A sentinel "due" far in the future so rows without a running SLA sort after every real deadline
# while the inbox index stays a plain ascending one.
NO_DUE = 1e15

# The conversation search row's customer column: the contact's name and handle (" " without one),
# and its tags column: the tag list with the separator (\x1f) as a space.
_CUSTOMER = ("coalesce((SELECT p.name || ' ' || p.handle FROM contacts p WHERE p.id = {id}), ' ')")
_TAGS = "replace({t}, char(31), ' ')"

# ---- the inbox counters (migration 9) -----------------------------------------------------------

#: Columns a view can filter on, in inbox_cells (assignee '' = unassigned) ...
CELL_COLUMNS = ("status", "platform", "kind", "account", "sla_state", "escalated", "needs_reply", "assignee")
#: ... and the ones inbox_ranks keeps per bucket (the default views filter only on these).
RANK_COLUMNS = ("status", "sla_state", "escalated", "needs_reply", "kind", "assignee")
DAY = 86400
#: The bucket widths of inbox_ranks' levels: a day, and a minute within it. A position sums the
#: days before the conversation's and the minutes of its day before its minute, then walks its
#: minute: the walk stays short where many deadlines fall on one day (a third of a 10M inbox fell on
#: one). A level between them (hours) made positions 2x faster at 10M but every conversation write
#: dearer (ingest fell under 0.7x executemany), so two levels it is.
RANK_LEVELS = (DAY, 60)
#: Bucket groups above every time bucket: rows without a deadline (by escalated, then the last
#: message, newest first), then rows whose deadline lies beyond NO_DUE (absurd dates), all in one.
NO_DUE_BUCKETS = 1 << 50
BEYOND_BUCKET = 1 << 60
_CLAMP = float(1 << 43)  # seconds: far beyond any real date, small enough to stay exact


def _floor(expr: str, width: int) -> str:
    """floor(expr / width) in SQL for expr >= 0 (CAST truncates toward zero)."""
    return f"CAST(({expr}) / {width}.0 AS INTEGER)"


def rank_bucket(row: str, width: int = DAY) -> str:
    """The inbox-order bucket of a row at one level, as SQL: monotone non-decreasing in
    ``queries.ORDER``, and nested (a bucket at a finer level lies inside one of the coarser).

    Times before 1970 (only absurd dates) all fall in bucket 0: still monotone, and cheap to compute
    in the triggers that run on every conversation write."""
    last = f"min({_CLAMP}, max(0, {row}.last_message_at))"
    return (f"(CASE WHEN {row}.sort_due < {NO_DUE!r} THEN {_floor(f'max(0, {row}.sort_due)', width)} "
            f"WHEN {row}.sort_due = {NO_DUE!r} THEN {NO_DUE_BUCKETS} + (1 - {row}.escalated) * {1 << 45} "
            f"+ ({1 << 44} - {_floor(last, width)}) ELSE {BEYOND_BUCKET} END)")


def rank_parent(row: str, level: int) -> str:
    """The bucket one level up (0 at the top level)."""
    return "0" if level == 0 else rank_bucket(row, RANK_LEVELS[level - 1])


def _value(row: str, col: str) -> str:
    return f"coalesce({row}.assignee, '')" if col == "assignee" else f"{row}.{col}"


def _cell_values(row: str) -> str:
    return ", ".join(_value(row, c) for c in CELL_COLUMNS)


def _rank_values(row: str) -> str:
    return ", ".join(_value(row, c) for c in RANK_COLUMNS)


def _changed(columns: str) -> str:
    return " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns.split(", "))


def _count_add(row: str) -> str:
    return (f"INSERT INTO inbox_cells({_CELL_COLS}, n) VALUES ({_cell_values(row)}, 1) "
            f"ON CONFLICT({_CELL_COLS}) DO UPDATE SET n = n + 1;")


def _count_remove(row: str) -> str:
    key = " AND ".join(f"{c} = {_value(row, c)}" for c in CELL_COLUMNS)
    return f"UPDATE inbox_cells SET n = n - 1 WHERE {key}; DELETE FROM inbox_cells WHERE {key} AND n <= 0;"


def _rank_add(row: str, levels: range = range(len(RANK_LEVELS))) -> str:
    return "\n".join(
        f"INSERT INTO inbox_ranks(level, parent, bucket, {_RANK_COLS}, n) VALUES ({level}, {rank_parent(row, level)}, "
        f"{rank_bucket(row, RANK_LEVELS[level])}, {_rank_values(row)}, 1) "
        f"ON CONFLICT(level, parent, bucket, {_RANK_COLS}) DO UPDATE SET n = n + 1;"
        for level in levels
    )


def _rank_remove(row: str, levels: range = range(len(RANK_LEVELS))) -> str:
    out = []
    for level in levels:
        key = (f"level = {level} AND parent = {rank_parent(row, level)} AND bucket = "
               f"{rank_bucket(row, RANK_LEVELS[level])} AND " + " AND ".join(f"{c} = {_value(row, c)}" for c in RANK_COLUMNS))
        out.append(f"UPDATE inbox_ranks SET n = n - 1 WHERE {key}; DELETE FROM inbox_ranks WHERE {key} AND n <= 0;")
    return "\n".join(out)


def _rank_update_triggers() -> list[str]:
    """One trigger per level, each firing only when that level's bucket (or a kept column) changed:
    a deadline moved within its day rewrites the minute rows alone."""
    return [
        f"""CREATE TRIGGER inbox_ranks_au{level} AFTER UPDATE OF sort_due, last_message_at, {_RANK_SOURCE}
            ON conversations
            WHEN {rank_bucket("old", RANK_LEVELS[level])} IS NOT {rank_bucket("new", RANK_LEVELS[level])}
              OR {_changed(_RANK_SOURCE)}
        BEGIN
            {_rank_remove("old", range(level, level + 1))}
            {_rank_add("new", range(level, level + 1))}
        END"""
        for level in range(len(RANK_LEVELS))
    ]


def _rank_backfill() -> list[str]:
    return [
        f"""INSERT INTO inbox_ranks(level, parent, bucket, {_RANK_COLS}, n)
            SELECT {level}, {rank_parent("c", level)}, {rank_bucket("c", RANK_LEVELS[level])}, {_rank_values("c")},
                   count(*) FROM conversations c GROUP BY 2, 3, {_RANK_COLS}"""
        for level in range(len(RANK_LEVELS))
    ]


_CELL_COLS = ", ".join(CELL_COLUMNS)
_RANK_COLS = ", ".join(RANK_COLUMNS)
_CELL_SOURCE = _CELL_COLS
_RANK_SOURCE = ", ".join(c for c in RANK_COLUMNS)
_TYPES = {"escalated": "INTEGER", "needs_reply": "INTEGER"}
_CELL_DDL = ", ".join(f"{c} {_TYPES.get(c, 'TEXT')} NOT NULL" for c in CELL_COLUMNS)
_RANK_DDL = ", ".join(f"{c} {_TYPES.get(c, 'TEXT')} NOT NULL" for c in RANK_COLUMNS)


MIGRATIONS: list[list[str]] = [
    # 1: the first schema
    [
        """CREATE TABLE accounts (
            name TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            platform TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE contacts (
            id TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            platform TEXT NOT NULL,
            native_id TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            handle TEXT NOT NULL DEFAULT '',
            vip INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX contacts_handle ON contacts(handle)",
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            platform TEXT NOT NULL,
            kind TEXT NOT NULL,
            native_id TEXT NOT NULL,
            contact_id TEXT REFERENCES contacts(id),
            subject TEXT NOT NULL DEFAULT '',
            snippet TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'open',
            assignee TEXT,
            priority TEXT NOT NULL DEFAULT 'normal',
            escalated INTEGER NOT NULL DEFAULT 0,
            escalation_target TEXT,
            snoozed_until REAL,
            tags TEXT NOT NULL DEFAULT '',
            meta TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            last_message_at REAL NOT NULL,
            last_inbound_at REAL,
            last_outbound_at REAL,
            needs_reply INTEGER NOT NULL DEFAULT 0,
            unread INTEGER NOT NULL DEFAULT 0,
            sla_policy TEXT,
            sla_state TEXT NOT NULL DEFAULT 'none',
            sla_metric TEXT,
            sla_due_at REAL,
            sla_warn_at REAL,
            sla_checked_at REAL,
            sort_due REAL NOT NULL DEFAULT 1e15
        )""",
        # The inbox order: most urgent first, escalated next, newest last. Covering the status lets
        # the default "open" views walk the index without touching rows they skip.
        "CREATE INDEX conv_inbox ON conversations(sort_due, escalated DESC, last_message_at DESC)",
        "CREATE INDEX conv_status_inbox ON conversations(status, sort_due, escalated DESC, last_message_at DESC)",
        "CREATE INDEX conv_due ON conversations(sla_due_at) WHERE sla_due_at IS NOT NULL",
        "CREATE INDEX conv_warn ON conversations(sla_warn_at) WHERE sla_warn_at IS NOT NULL",
        "CREATE INDEX conv_contact ON conversations(contact_id, last_message_at DESC)",
        "CREATE INDEX conv_account_native ON conversations(account, native_id)",
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            account TEXT NOT NULL,
            native_id TEXT NOT NULL,
            direction TEXT NOT NULL,
            author TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            created_at REAL NOT NULL,
            parent_id TEXT,
            state TEXT NOT NULL DEFAULT 'received',
            error TEXT,
            private INTEGER NOT NULL DEFAULT 0,
            meta TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX msg_thread ON messages(conversation_id, created_at)",
        """CREATE TABLE conversation_tags (
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            tag TEXT NOT NULL,
            PRIMARY KEY (conversation_id, tag)
        ) WITHOUT ROWID""",
        "CREATE INDEX tags_by_tag ON conversation_tags(tag)",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT NOT NULL,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_conv ON events(conversation_id, at, seq)",
        # Append-only: the SLA state and the reports are replayed from it.
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END""",
        """CREATE TABLE outbox (
            key TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            message_id TEXT NOT NULL,
            account TEXT NOT NULL,
            private INTEGER NOT NULL DEFAULT 0,
            text TEXT NOT NULL,
            created_at REAL NOT NULL,
            not_before REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            remote_id TEXT,
            updated_at REAL NOT NULL,
            seq INTEGER NOT NULL
        )""",
        "CREATE INDEX outbox_pending ON outbox(state, not_before)",
        "CREATE INDEX outbox_conv ON outbox(conversation_id, seq)",
        """CREATE TABLE sync_cursors (
            account TEXT NOT NULL,
            stream TEXT NOT NULL,
            cursor TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (account, stream)
        ) WITHOUT ROWID""",
        """CREATE TABLE account_status (
            account TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            last_sync REAL,
            until REAL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE drafts (
            conversation_id TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            private INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE rejected_items (
            account TEXT NOT NULL,
            native_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            at REAL NOT NULL
        )""",
        # Full-text search: messages (text, author) and conversations (customer, subject, tags).
        # unicode61 with Latin diacritics folded ("cafe" finds "café"); other scripts match as written.
        """CREATE VIRTUAL TABLE messages_fts USING fts5(
            text, author, content='messages', content_rowid='rowid',
            tokenize='unicode61 remove_diacritics 2'
        )""",
        """CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, text, author) VALUES (new.rowid, new.text, new.author);
        END""",
        """CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, text, author)
            VALUES ('delete', old.rowid, old.text, old.author);
        END""",
        """CREATE TRIGGER messages_au AFTER UPDATE OF text, author ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, text, author)
            VALUES ('delete', old.rowid, old.text, old.author);
            INSERT INTO messages_fts(rowid, text, author) VALUES (new.rowid, new.text, new.author);
        END""",
        # Keyed by conversations.rowid; rewritten whenever customer, subject or tags change.
        """CREATE VIRTUAL TABLE conversations_fts USING fts5(
            customer, subject, tags, tokenize='unicode61 remove_diacritics 2'
        )""",
        "CREATE INDEX msg_native ON messages(account, native_id)",
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    ],
    # 2: indexes measured by bench/ at 1M messages
    [
        # The default views filter status IN ('open','pending'): two ranges of conv_status_inbox that
        # SQLite had to merge with a temp sort of every open row on each page. One partial index in
        # inbox order serves them directly, and a page becomes a walk of LIMIT+OFFSET entries.
        "CREATE INDEX conv_open_inbox ON conversations(sort_due, escalated DESC, last_message_at DESC, id) "
        "WHERE status IN ('open','pending')",
        # The customer's history matches contacts by name or handle, case-insensitively.
        "CREATE INDEX contacts_lname ON contacts(lower(name))",
        "CREATE INDEX contacts_lhandle ON contacts(lower(handle))",
    ],
    # 3: the header's counts per channel and SLA state, read on every data change, from the index
    # alone (a scan of the table took 680 ms at 1M messages).
    [
        "CREATE INDEX conv_open_counts ON conversations(platform, sla_state) WHERE status IN ('open','pending')",
        # The engine's once-a-second sweep looks for deadlines that just passed; indexing only the
        # rows not yet marked breached (or still ok, for warnings) skips the thousands already past.
        "DROP INDEX conv_due",
        "DROP INDEX conv_warn",
        "CREATE INDEX conv_due_pending ON conversations(sla_due_at) WHERE sla_state != 'breached'",
        "CREATE INDEX conv_warn_ok ON conversations(sla_warn_at) WHERE sla_state = 'ok'",
    ],
    # 4: the platform facts of each account (names, reply limits, how length is counted), written by
    # the sync engine, including limits learned at run time; the console reads them from here.
    [
        "ALTER TABLE accounts ADD COLUMN facts TEXT NOT NULL DEFAULT '{}'",
    ],
    # 5: messages no person wrote (bounces, auto-replies, bulk mail): the reason, NULL for people.
    # Set by providers (IncomingMessage.automatic) and later by rules; such a message starts no
    # SLA clock and a reply to it asks first.
    [
        "ALTER TABLE messages ADD COLUMN automatic TEXT",
    ],
    # 6: what metered platforms (X's pay-per-use API) cost: units and estimated dollars per account,
    # calendar month (UTC) and resource, with the polls that spent them; each account's monthly
    # budget as the engine last had it (so `doctor` can compare without the config); and a status
    # note per account (push or polling, spend, waits per endpoint) the status bar shows always.
    [
        """CREATE TABLE spend (
            account TEXT NOT NULL,
            month TEXT NOT NULL,
            resource TEXT NOT NULL,
            units INTEGER NOT NULL DEFAULT 0,
            usd REAL NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL,
            PRIMARY KEY (account, month, resource)
        ) WITHOUT ROWID""",
        """CREATE TABLE spend_budgets (
            account TEXT PRIMARY KEY,
            monthly_usd REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "ALTER TABLE account_status ADD COLUMN note TEXT NOT NULL DEFAULT ''",
    ],
    # 7: a contact's name is the newest *real* name (by the message's created_at, not batch order);
    # a stand-in (the handle, a bare id) never replaces a real one. name_rank: 2 real, 1 a stand-in
    # made from the handle, 0 a bare id or nothing. Existing names are dated by their contact's
    # newest message, the best estimate of when the name was last seen.
    [
        "ALTER TABLE contacts ADD COLUMN name_rank INTEGER NOT NULL DEFAULT 2",
        "ALTER TABLE contacts ADD COLUMN name_at REAL",
        "ALTER TABLE contacts ADD COLUMN handle_at REAL",
        "UPDATE contacts SET name_rank = CASE WHEN name = '' OR name = native_id THEN 0 "
        "WHEN ltrim(lower(name), '@') = ltrim(lower(handle), '@') THEN 1 ELSE 2 END",
        "UPDATE contacts SET name_at = (SELECT max(c.last_message_at) FROM conversations c "
        "WHERE c.contact_id = contacts.id)",
        "UPDATE contacts SET handle_at = name_at",
    ],
    # 8: the conversation search rows (customer, subject, tags) follow their conversation and its
    # contact by trigger, whichever code writes them: a customer renamed by a later conversation was
    # re-indexed only in the conversations touched afterwards, so search missed the older ones.
    # The rebuild at the end repairs the stale rows such databases carry.
    [
        f"""CREATE TRIGGER conv_fts_ai AFTER INSERT ON conversations BEGIN
            INSERT INTO conversations_fts(rowid, customer, subject, tags)
            VALUES (new.rowid, {_CUSTOMER.format(id="new.contact_id")}, new.subject, {_TAGS.format(t="new.tags")});
        END""",
        f"""CREATE TRIGGER conv_fts_au AFTER UPDATE OF contact_id, subject, tags ON conversations
            WHEN old.contact_id IS NOT new.contact_id OR old.subject IS NOT new.subject OR old.tags IS NOT new.tags
        BEGIN
            DELETE FROM conversations_fts WHERE rowid = old.rowid;
            INSERT INTO conversations_fts(rowid, customer, subject, tags)
            VALUES (new.rowid, {_CUSTOMER.format(id="new.contact_id")}, new.subject, {_TAGS.format(t="new.tags")});
        END""",
        """CREATE TRIGGER conv_fts_ad AFTER DELETE ON conversations BEGIN
            DELETE FROM conversations_fts WHERE rowid = old.rowid;
        END""",
        f"""CREATE TRIGGER contact_fts_au AFTER UPDATE OF name, handle ON contacts
            WHEN old.name IS NOT new.name OR old.handle IS NOT new.handle
        BEGIN
            DELETE FROM conversations_fts WHERE rowid IN (SELECT rowid FROM conversations WHERE contact_id = new.id);
            INSERT INTO conversations_fts(rowid, customer, subject, tags)
            SELECT rowid, new.name || ' ' || new.handle, subject, {_TAGS.format(t="tags")}
            FROM conversations WHERE contact_id = new.id;
        END""",
        "DELETE FROM conversations_fts",
        f"""INSERT INTO conversations_fts(rowid, customer, subject, tags)
            SELECT rowid, {_CUSTOMER.format(id="contact_id")}, subject, {_TAGS.format(t="tags")} FROM conversations""",
    ],
    # 9: counts that do not grow with the cache. inbox_count and position_of counted index entries
    # (linear: x10 from 100k to 1M messages). Triggers keep two small tables of counts in step with
    # conversations on every write path (ingest, actions, SLA sweeps, imports, policy re-evaluation):
    # - inbox_cells: conversations per combination of the filterable columns (a few thousand at
    #   most), so a view's count is a sum over the cells it selects;
    # - inbox_ranks: conversations per bucket of the inbox order (rank_bucket, monotone in it) at
    #   two nested levels (day, minute: RANK_LEVELS) and a few filter columns, so a position
    #   is a sum of buckets before the conversation's plus a walk of its own minute only, and a deep
    #   page starts its walk at the minute that holds it (see storage/queries.py).
    # An empty assignee is unassigned (NULL), as actions.assign stores it; imports could write ''.
    [
        "UPDATE conversations SET assignee = NULL WHERE assignee = ''",
        f"""CREATE TABLE inbox_cells (
            {_CELL_DDL}, n INTEGER NOT NULL, PRIMARY KEY ({_CELL_COLS})
        ) WITHOUT ROWID""",
        f"""CREATE TABLE inbox_ranks (
            level INTEGER NOT NULL, parent INTEGER NOT NULL, bucket INTEGER NOT NULL, {_RANK_DDL},
            n INTEGER NOT NULL, PRIMARY KEY (level, parent, bucket, {_RANK_COLS})
        ) WITHOUT ROWID""",
        f"""INSERT INTO inbox_cells({_CELL_COLS}, n)
            SELECT {_cell_values("c")}, count(*) FROM conversations c GROUP BY {_CELL_COLS}""",
        *_rank_backfill(),
        f"""CREATE TRIGGER inbox_counts_ai AFTER INSERT ON conversations BEGIN
            {_count_add("new")}
            {_rank_add("new")}
        END""",
        f"""CREATE TRIGGER inbox_counts_ad AFTER DELETE ON conversations BEGIN
            {_count_remove("old")}
            {_rank_remove("old")}
        END""",
        f"""CREATE TRIGGER inbox_cells_au AFTER UPDATE OF {_CELL_SOURCE} ON conversations
            WHEN {_changed(_CELL_SOURCE)}
        BEGIN
            {_count_remove("old")}
            {_count_add("new")}
        END""",
        *_rank_update_triggers(),
    ],
    # 10: where an interrupted ``replydesk import`` of a file stands (committed with each batch), so a
    # rerun of the same, unchanged file continues there. offset/line for JSON Lines, records for both.
    [
        """CREATE TABLE import_progress (
            source TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            head TEXT NOT NULL,
            offset INTEGER NOT NULL,
            records INTEGER NOT NULL,
            line INTEGER NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
