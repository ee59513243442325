"""Versioned schema migrations, tracked in ``PRAGMA user_version``.

Each migration is a list of SQL statements applied in one transaction. Append new migrations;
never edit a released one — databases in the wild have already run it.
"""

from __future__ import annotations

from typing import NamedTuple

# A sentinel "due" far in the future so rows without a running SLA sort after every real deadline
# while the inbox index stays a plain ascending one.
NO_DUE = 1e15
#: Between the tags in ``conversations.tags`` (here, not in ingest: the readers need it without the writer).
TAG_SEP = "\x1f"

# The conversation search row's customer column: the contact's name and handle (" " without one),
# and its tags column: the tag list with the separator (\x1f) as a space.
_CUSTOMER = ("coalesce((SELECT p.name || ' ' || p.handle FROM contacts p WHERE p.id = {id}), ' ')")
_TAGS = "replace({t}, char(31), ' ')"

# ---- the inbox counters (migrations 9 and 11) ----------------------------------------------------


class CounterLayout(NamedTuple):
    """Which columns the counter tables keep: ``cells`` in inbox_cells (every filterable column),
    ``ranks`` in inbox_ranks (the columns the default views filter on). A migration that changes
    them rebuilds the tables with the new layout; released migrations keep the layout they had."""

    cells: tuple[str, ...]
    ranks: tuple[str, ...]


#: Migration 9's layout (assignee '' = unassigned).
COUNTERS_9 = CounterLayout(
    cells=("status", "platform", "kind", "account", "sla_state", "escalated", "needs_reply", "assignee"),
    ranks=("status", "sla_state", "escalated", "needs_reply", "kind", "assignee"),
)
#: Since migration 14, both keep ``listening`` as a flag (1: waiting in the Listening view), so the
#: inbox's counts, positions and deep pages leave listening matches out, and the Listening view's count.
COUNTERS = CounterLayout(cells=(*COUNTERS_9.cells, "listening"), ranks=(*COUNTERS_9.ranks, "listening"))
#: Columns a view can filter on, in inbox_cells ...
CELL_COLUMNS = COUNTERS.cells
#: ... and the ones inbox_ranks keeps per bucket (the default views filter only on these).
RANK_COLUMNS = COUNTERS.ranks
#: The triggers that keep the counters (rebuilt with the tables when the layout changes).
COUNTER_TRIGGERS = ("inbox_counts_ai", "inbox_counts_ad", "inbox_cells_au", "inbox_ranks_au0", "inbox_ranks_au1")
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


def counter_value(row: str, col: str) -> str:
    """What a counter keeps of ``row``'s column, as SQL (NULL assignee as '', listening as a flag)."""
    if col == "assignee":
        return f"coalesce({row}.assignee, '')"
    if col == "listening":
        return f"({row}.listening IS NOT NULL)"
    return f"{row}.{col}"


def _values(row: str, cols: tuple[str, ...]) -> str:
    return ", ".join(counter_value(row, c) for c in cols)


def _group(cols: tuple[str, ...]) -> str:
    """GROUP BY keys of a backfill: the columns (assignee is NULL or set by then), the flag for listening."""
    return ", ".join(counter_value("c", c) if c == "listening" else c for c in cols)


def _changed(columns: str) -> str:
    return " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns.split(", "))


def _count_add(row: str, lay: CounterLayout) -> str:
    cols = ", ".join(lay.cells)
    return (f"INSERT INTO inbox_cells({cols}, n) VALUES ({_values(row, lay.cells)}, 1) "
            f"ON CONFLICT({cols}) DO UPDATE SET n = n + 1;")


def _count_remove(row: str, lay: CounterLayout) -> str:
    key = " AND ".join(f"{c} = {counter_value(row, c)}" for c in lay.cells)
    return f"UPDATE inbox_cells SET n = n - 1 WHERE {key}; DELETE FROM inbox_cells WHERE {key} AND n <= 0;"


def _rank_add(row: str, lay: CounterLayout, levels: range = range(len(RANK_LEVELS))) -> str:
    cols = ", ".join(lay.ranks)
    return "\n".join(
        f"INSERT INTO inbox_ranks(level, parent, bucket, {cols}, n) VALUES ({level}, {rank_parent(row, level)}, "
        f"{rank_bucket(row, RANK_LEVELS[level])}, {_values(row, lay.ranks)}, 1) "
        f"ON CONFLICT(level, parent, bucket, {cols}) DO UPDATE SET n = n + 1;"
        for level in levels
    )


def _rank_remove(row: str, lay: CounterLayout, levels: range = range(len(RANK_LEVELS))) -> str:
    out = []
    for level in levels:
        key = (f"level = {level} AND parent = {rank_parent(row, level)} AND bucket = "
               f"{rank_bucket(row, RANK_LEVELS[level])} AND "
               + " AND ".join(f"{c} = {counter_value(row, c)}" for c in lay.ranks))
        out.append(f"UPDATE inbox_ranks SET n = n - 1 WHERE {key}; DELETE FROM inbox_ranks WHERE {key} AND n <= 0;")
    return "\n".join(out)


def _rank_update_triggers(lay: CounterLayout) -> list[str]:
    """One trigger per level, each firing only when that level's bucket (or a kept column) changed:
    a deadline moved within its day rewrites the minute rows alone."""
    source = ", ".join(lay.ranks)
    return [
        f"""CREATE TRIGGER inbox_ranks_au{level} AFTER UPDATE OF sort_due, last_message_at, {source}
            ON conversations
            WHEN {rank_bucket("old", RANK_LEVELS[level])} IS NOT {rank_bucket("new", RANK_LEVELS[level])}
              OR {_changed(source)}
        BEGIN
            {_rank_remove("old", lay, range(level, level + 1))}
            {_rank_add("new", lay, range(level, level + 1))}
        END"""
        for level in range(len(RANK_LEVELS))
    ]


def _rank_backfill(lay: CounterLayout) -> list[str]:
    cols = ", ".join(lay.ranks)
    return [
        f"""INSERT INTO inbox_ranks(level, parent, bucket, {cols}, n)
            SELECT {level}, {rank_parent("c", level)}, {rank_bucket("c", RANK_LEVELS[level])}, {_values("c", lay.ranks)},
                   count(*) FROM conversations c GROUP BY 2, 3, {_group(lay.ranks)}"""
        for level in range(len(RANK_LEVELS))
    ]


_TYPES = {"escalated": "INTEGER", "needs_reply": "INTEGER", "listening": "INTEGER"}


def _ddl(cols: tuple[str, ...]) -> str:
    return ", ".join(f"{c} {_TYPES.get(c, 'TEXT')} NOT NULL" for c in cols)


def counter_tables(lay: CounterLayout) -> list[str]:
    """The counter tables of ``lay``, filled from the conversations, and the triggers that keep them."""
    cells, ranks = ", ".join(lay.cells), ", ".join(lay.ranks)
    return [
        f"""CREATE TABLE inbox_cells (
            {_ddl(lay.cells)}, n INTEGER NOT NULL, PRIMARY KEY ({cells})
        ) WITHOUT ROWID""",
        f"""CREATE TABLE inbox_ranks (
            level INTEGER NOT NULL, parent INTEGER NOT NULL, bucket INTEGER NOT NULL, {_ddl(lay.ranks)},
            n INTEGER NOT NULL, PRIMARY KEY (level, parent, bucket, {ranks})
        ) WITHOUT ROWID""",
        f"""INSERT INTO inbox_cells({cells}, n)
            SELECT {_values("c", lay.cells)}, count(*) FROM conversations c GROUP BY {_group(lay.cells)}""",
        *_rank_backfill(lay),
        f"""CREATE TRIGGER inbox_counts_ai AFTER INSERT ON conversations BEGIN
            {_count_add("new", lay)}
            {_rank_add("new", lay)}
        END""",
        f"""CREATE TRIGGER inbox_counts_ad AFTER DELETE ON conversations BEGIN
            {_count_remove("old", lay)}
            {_rank_remove("old", lay)}
        END""",
        f"""CREATE TRIGGER inbox_cells_au AFTER UPDATE OF {cells} ON conversations
            WHEN {_changed(cells)}
        BEGIN
            {_count_remove("old", lay)}
            {_count_add("new", lay)}
        END""",
        *_rank_update_triggers(lay),
    ]


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
        *counter_tables(COUNTERS_9),
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
    # 11: the outbox carries actions besides replies (mark read, edit or delete our reply, create a
    # ticket): the kind, what the user asked for, and what the platform answered. Existing rows are
    # replies ('reply', no payload), so they keep their meaning and their place in line.
    [
        "ALTER TABLE outbox ADD COLUMN action TEXT NOT NULL DEFAULT 'reply'",
        "ALTER TABLE outbox ADD COLUMN payload TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE outbox ADD COLUMN result TEXT NOT NULL DEFAULT '{}'",
    ],
    # 12: a conversation's reply windows (WhatsApp's 24 hours, Messenger's human-agent tag for 7 days):
    # a JSON list of absolute times, recomputed on each inbound message; NULL where none applies.
    [
        "ALTER TABLE conversations ADD COLUMN reply_window TEXT",
    ],
    # 13: pushed payloads (webhook bodies), committed as received before anything parses them, then
    # ingested through the normal path; one row per (account, dedupe key), so a redelivered or
    # replayed body is stored once. state: received | ingested | unmappable (with the reason).
    [
        """CREATE TABLE pushed_bodies (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL,
            dedupe_key TEXT NOT NULL,
            received_at REAL NOT NULL,
            headers TEXT NOT NULL DEFAULT '{}',
            body BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'received',
            reason TEXT,
            items INTEGER NOT NULL DEFAULT 0,
            deliveries INTEGER NOT NULL DEFAULT 1,
            updated_at REAL NOT NULL,
            UNIQUE (account, dedupe_key)
        )""",
        "CREATE INDEX pushed_pending ON pushed_bodies(account, id) WHERE state = 'received'",
    ],
    # 14: listening (posts found by a search, not addressed to us). ``listening`` holds the name of the
    # query that found the conversation while it waits in the Listening view, NULL for the inbox's own
    # (and once it joined the inbox). The inbox's partial indexes leave listening rows out (views must
    # not walk them), and the Listening view gets its own. The inbox counters (migration 9) gain the
    # listening flag as a column, so every count, position and deep page tells the two apart: their
    # tables and triggers are rebuilt with it. A reply, however it is recorded (sent from the outbox,
    # confirmed, or our own post fetched), joins the conversation to the inbox: the trigger clears the
    # marker and logs why, so no path can forget it.
    [
        "ALTER TABLE conversations ADD COLUMN listening TEXT",
        "DROP INDEX conv_open_inbox",
        "CREATE INDEX conv_open_inbox ON conversations(sort_due, escalated DESC, last_message_at DESC, id) "
        "WHERE status IN ('open','pending') AND listening IS NULL",
        "CREATE INDEX conv_listening ON conversations(sort_due, escalated DESC, last_message_at DESC, id) "
        "WHERE listening IS NOT NULL",
        """CREATE TRIGGER listening_answered AFTER INSERT ON events
           WHEN new.kind = 'reply' BEGIN
             INSERT INTO events(conversation_id, at, kind, actor, data)
               SELECT id, new.at, 'joined', 'system', json_object('listening', listening, 'why', 'answered')
               FROM conversations WHERE id = new.conversation_id AND listening IS NOT NULL;
             UPDATE conversations SET listening = NULL WHERE id = new.conversation_id AND listening IS NOT NULL;
           END""",
        *(f"DROP TRIGGER {name}" for name in COUNTER_TRIGGERS),
        "DROP TABLE inbox_cells",
        "DROP TABLE inbox_ranks",
        *counter_tables(COUNTERS),
    ],
    # 15: team mode (a workspace joined to a PostgreSQL team; empty and unused otherwise). The cache
    # keeps the same tables; these say how far it follows the team and what others are doing.
    [
        # The team version (last applied team seq) of each conversation, and the version each local
        # change was made on (filled by a trigger the join installs), so a push carries what was seen.
        "CREATE TABLE team_versions (conversation_id TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE TABLE team_event_base (seq INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
        # Ranges of local event seqs written while applying the team's events: never pushed back.
        "CREATE TABLE team_applied (lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL)",
        # Who else is looking at or answering which conversation (expires unless renewed).
        """CREATE TABLE presence (
            agent TEXT PRIMARY KEY,
            conversation_id TEXT,
            activity TEXT,
            since REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        # Things the engine must tell the user (a change the team refused, and why), shown once.
        """CREATE TABLE notices (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            conversation_id TEXT,
            text TEXT NOT NULL,
            shown INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX notices_unshown ON notices(id) WHERE shown = 0",
    ],
    # 16: one customer across platforms. Platforms share no identity, so an agent links contacts that
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
    # 17: the helpdesk tickets escalations made (Zendesk, the demo helpdesk): the ticket's id, link and
    # last known status on its conversation, and how far the conversation's internal notes have been
    # forwarded to it as private comments (the seq of the last note event handed over).
    [
        """CREATE TABLE tickets (
            account TEXT NOT NULL,
            ticket_id TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            note_seq INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (account, ticket_id)
        )""",
        "CREATE INDEX tickets_conv ON tickets(conversation_id)",
    ],
    # 18: the rules' "no reply for N minutes" timers: one row per (rule, conversation) while a
    # customer waits, due at the oldest unanswered message's time plus N; the engine's sweep fires
    # the due ones (once per wait) and drops those a reply or a resolve ended.
    [
        """CREATE TABLE rule_timers (
            rule TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            since REAL NOT NULL,
            due REAL NOT NULL,
            PRIMARY KEY (rule, conversation_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX rule_timers_due ON rule_timers(due)",
    ],
    # 19: Meta's platforms. contact_aliases: the other ids a customer is known by (WhatsApp: the phone number beside the business-scoped user
    # id, the user id before a number change), so a provider can keep them one contact. message_templates: an account's approved WhatsApp
    # templates as the engine last fetched them, for the composer (which never calls the network).
    [
        """CREATE TABLE contact_aliases (
            account TEXT NOT NULL,
            alias TEXT NOT NULL,
            native_id TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (account, alias)
        ) WITHOUT ROWID""",
        """CREATE TABLE message_templates (
            account TEXT NOT NULL,
            name TEXT NOT NULL,
            language TEXT NOT NULL,
            category TEXT NOT NULL DEFAULT '',
            body TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '[]',
            components TEXT NOT NULL DEFAULT '[]',
            updated_at REAL NOT NULL,
            PRIMARY KEY (account, name, language)
        ) WITHOUT ROWID""",
    ],
    # 20: an agent's VIP choice sticks. contacts.vip stays what everyone reads; platform_vip is what
    # the platforms say (kept as the max seen, as vip was), vip_set the VIP flag an agent or owner
    # set by hand (NULL: nobody did): it wins over the platform's from then on. A workspace's earlier
    # choices are read back from its card events; the platform's flag of a contact chosen by hand
    # was not kept apart before, so its current flag stands in for it.
    [
        "ALTER TABLE contacts ADD COLUMN platform_vip INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE contacts ADD COLUMN vip_set INTEGER",
        "UPDATE contacts SET platform_vip = vip",
        """UPDATE contacts SET vip_set = h.v FROM (
            SELECT json_extract(j.value, '$.subject') AS id, json_extract(j.value, '$.value') AS v, max(e.seq)
            FROM events e, json_each(e.data, '$.edits') j
            WHERE e.kind = 'card' AND json_valid(e.data) AND json_extract(j.value, '$.field') = 'vip'
            GROUP BY 1) AS h
          WHERE h.id = contacts.id""",
        "UPDATE contacts SET vip = vip_set WHERE vip_set IS NOT NULL",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
