"""Versioned schema migrations, tracked in ``PRAGMA user_version``.

Each migration is a list of SQL statements applied in one transaction. Append new migrations;
never edit a released one — databases in the wild have already run it.
"""

from __future__ import annotations

# A sentinel "due" far in the future so rows without a running SLA sort after every real deadline
# while the inbox index stays a plain ascending one.
NO_DUE = 1e15

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
    # 6: one customer across platforms. Platforms share no identity, so an agent links contacts that
    # are the same person (merge) and can take one out again (split); a contact listed here belongs
    # to exactly its ``person``'s group, and name/handle guessing no longer applies to it. A person
    # (the id of one of its contacts) carries the agent's name for them and note; the contacts'
    # own names stay as the platforms send them.
    [
        """CREATE TABLE contact_links (
            contact_id TEXT PRIMARY KEY REFERENCES contacts(id),
            person TEXT NOT NULL
        )""",
        "CREATE INDEX contact_links_person ON contact_links(person)",
        """CREATE TABLE people (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            updated_at REAL NOT NULL
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
