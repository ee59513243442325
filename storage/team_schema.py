"""The team database (PostgreSQL): tables, the event log, and the functions every write goes through.

PostgreSQL is the team's source of truth. Everything that changes a conversation is one row of
``replydesk.events`` (a monotonic ``seq``, the agent who did it, what was asked, and the state it
left), and the current state is kept beside it (``conversations``, ``messages``, ``outbox``) so a
command can be checked against it. Agents' caches replay the log past their cursor.

Why the writes are functions (``submit``, ``claim``, ...), ``SECURITY DEFINER``: an agent's database
role may read the team's tables but write none of them; each function takes the author from the
session's own login role (``session_user``), so an agent cannot write an event as another one,
whatever it sends. Internal helpers (``_message``, ``_set``, ...) are executable by nobody else.

Why one transaction-scoped advisory lock around every append: a ``seq`` is taken only while holding
it, so seq order is commit order and a reader that has seen seq N has seen every event below N (a
plain sequence hands out numbers that commit out of order, and a cursor would step over the late
ones). Leadership of an account is a session-level advisory lock (released by the server the moment
the engine's connection dies), mirrored in ``leases`` so a claim can check it; replies are claimed
with ``FOR UPDATE SKIP LOCKED``.

Migrations are versioned like the SQLite ones (``replydesk.meta.schema_version``); functions are
``CREATE OR REPLACE`` and re-applied by every ``replydesk team init``.
"""

from __future__ import annotations

from replydesk.storage.contacts import MAX_CARD_SUBJECT, MAX_CARD_TEXT

#: Advisory lock keys (two int4 form): the log append lock, and one leadership lock per account.
LOG_LOCK = (17017, 1)
LEAD_CLASS = 17018
#: The NOTIFY channels: new events (pull), presence and account states (live view).
EVENTS_CHANNEL = "replydesk_events"
LIVE_CHANNEL = "replydesk_live"

TABLES: list[list[str]] = [
    # 1: the first team schema
    [
        "CREATE TABLE replydesk.meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE SEQUENCE replydesk.event_seq",
        """CREATE TABLE replydesk.agents (
            name text PRIMARY KEY,
            role name UNIQUE NOT NULL,
            kind text NOT NULL DEFAULT 'agent' CHECK (kind IN ('agent', 'engine')),
            round_robin boolean NOT NULL DEFAULT true,
            cap integer,
            last_assigned_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        "CREATE TABLE replydesk.settings (key text PRIMARY KEY, value jsonb NOT NULL)",
        """INSERT INTO replydesk.settings(key, value) VALUES ('round_robin', 'false'), ('cap', '10')""",
        """CREATE TABLE replydesk.events (
            seq bigint PRIMARY KEY,
            at double precision NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            agent text NOT NULL,
            kind text NOT NULL,
            conversation_id text,
            command_id text UNIQUE,
            data jsonb NOT NULL DEFAULT '{}',
            result jsonb NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_conv ON replydesk.events(conversation_id, seq)",
        """CREATE TABLE replydesk.conversations (
            id text PRIMARY KEY,
            account text NOT NULL,
            platform text NOT NULL,
            kind text NOT NULL,
            created_at double precision NOT NULL,
            last_message_at double precision NOT NULL,
            status text NOT NULL DEFAULT 'open',
            snoozed_until double precision,
            assignee text,
            priority text NOT NULL DEFAULT 'normal',
            escalated boolean NOT NULL DEFAULT false,
            escalation_target text,
            tags text[] NOT NULL DEFAULT '{}',
            version bigint NOT NULL,
            assignee_seq bigint NOT NULL DEFAULT 0,
            assignee_by text,
            status_seq bigint NOT NULL DEFAULT 0,
            status_by text,
            escalation_seq bigint NOT NULL DEFAULT 0,
            escalation_by text,
            written_seq bigint NOT NULL DEFAULT 0,
            written_by text
        )""",
        "CREATE INDEX conv_assignee_open ON replydesk.conversations(assignee) WHERE status IN ('open', 'pending')",
        """CREATE TABLE replydesk.messages (
            id text PRIMARY KEY,
            conversation_id text NOT NULL,
            direction text NOT NULL,
            author text NOT NULL,
            text text NOT NULL,
            created_at double precision NOT NULL,
            state text NOT NULL,
            error text,
            private boolean NOT NULL DEFAULT false,
            automatic text,
            seq bigint NOT NULL
        )""",
        "CREATE INDEX messages_conv ON replydesk.messages(conversation_id, seq)",
        """CREATE TABLE replydesk.outbox (
            key text PRIMARY KEY,
            conversation_id text NOT NULL,
            message_id text NOT NULL,
            account text NOT NULL,
            private boolean NOT NULL DEFAULT false,
            text text NOT NULL,
            created_at double precision NOT NULL,
            not_before double precision NOT NULL,
            state text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            remote_id text,
            author text NOT NULL,
            claimed_by text,
            seq bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        "CREATE INDEX outbox_pending ON replydesk.outbox(account, seq) WHERE state IN ('queued', 'sending')",
        """CREATE TABLE replydesk.cursors (
            account text NOT NULL, stream text NOT NULL, cursor jsonb NOT NULL, PRIMARY KEY (account, stream)
        )""",
        """CREATE TABLE replydesk.accounts (
            name text PRIMARY KEY, provider text NOT NULL, platform text NOT NULL, facts jsonb NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE replydesk.presence (
            agent text PRIMARY KEY,
            conversation_id text,
            activity text,
            since timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )""",
        """CREATE TABLE replydesk.leases (
            account text PRIMARY KEY, engine text NOT NULL, pid integer NOT NULL,
            since timestamptz NOT NULL DEFAULT now(), renewed_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE replydesk.account_status (
            account text PRIMARY KEY, state text NOT NULL, detail text NOT NULL DEFAULT '',
            last_sync double precision, until double precision, updated_at timestamptz NOT NULL DEFAULT now()
        )""",
    ],
    # 2: the outbox carries every action (mark read, edit or delete our reply, a helpdesk ticket and
    # its comments), not only replies: what was asked, and what the platform answered
    [
        "ALTER TABLE replydesk.outbox ADD COLUMN action text NOT NULL DEFAULT 'reply'",
        "ALTER TABLE replydesk.outbox ADD COLUMN payload jsonb NOT NULL DEFAULT '{}'",
        "ALTER TABLE replydesk.outbox ADD COLUMN result jsonb NOT NULL DEFAULT '{}'",
    ],
    # 3: the customer card's fields (a person's note and team name, a contact's VIP flag and the
    # person a merge or split put it in), each with the seq and agent of its last change
    [
        """CREATE TABLE replydesk.cards (
            subject text NOT NULL,
            field text NOT NULL CHECK (field IN ('note', 'name', 'vip', 'person')),
            value jsonb NOT NULL,
            seq bigint NOT NULL,
            agent text NOT NULL,
            PRIMARY KEY (subject, field)
        )""",
    ],
    # 4: the helpdesk tickets' statuses as the leading engines read them, so a change is logged once
    # however many engines read it (and round-robin's pick became one function: functions are
    # re-applied by every init, the version says the database has had it)
    [
        """CREATE TABLE replydesk.tickets (
            account text NOT NULL,
            ticket_id text NOT NULL,
            conversation_id text NOT NULL,
            status text NOT NULL,
            updated_at double precision NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (account, ticket_id)
        )""",
    ],
    # 5: the log's payloads kept as JSON text. Every agent reads every event, and turning jsonb
    # back into text on each read was most of the server's work for a pull (4.3 against 1.8 ms per
    # 1,000 events, each agent); the functions still build them as jsonb, cast once, on write.
    [
        "ALTER TABLE replydesk.events ALTER COLUMN data DROP DEFAULT, ALTER COLUMN result DROP DEFAULT",
        "ALTER TABLE replydesk.events ALTER COLUMN data TYPE json USING data::json, "
        "ALTER COLUMN result TYPE json USING result::json",
        "ALTER TABLE replydesk.events ALTER COLUMN data SET DEFAULT '{}', ALTER COLUMN result SET DEFAULT '{}'",
    ],
]

TEAM_SCHEMA_VERSION = len(TABLES)

_ME = """
    SELECT * INTO me FROM replydesk.agents WHERE role = session_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the database role % is not an agent of this team', session_user USING ERRCODE = '42501';
    END IF;"""

_LOCK = f"PERFORM pg_advisory_xact_lock({LOG_LOCK[0]}, {LOG_LOCK[1]});"

#: Re-applied by every ``team init``: the API (granted) and the helpers (granted to nobody).
FUNCTIONS: list[str] = [
    # The state a conversation event leaves, as every cache applies it.
    """CREATE OR REPLACE FUNCTION replydesk._state(c replydesk.conversations) RETURNS jsonb
       LANGUAGE sql IMMUTABLE AS $$
         SELECT jsonb_build_object('status', c.status, 'snoozed_until', c.snoozed_until, 'assignee', c.assignee,
           'priority', c.priority, 'escalated', c.escalated, 'escalation_target', c.escalation_target,
           'tags', to_jsonb(c.tags), 'version', c.version)
       $$""",
    f"""CREATE OR REPLACE FUNCTION replydesk._log(p_agent text, p_kind text, p_conv text, cmd jsonb,
            p_result jsonb, p_seq bigint) RETURNS bigint LANGUAGE plpgsql AS $$
       BEGIN
         INSERT INTO replydesk.events(seq, at, agent, kind, conversation_id, command_id, data, result)
         VALUES (p_seq, coalesce((cmd->>'at')::double precision, extract(epoch FROM clock_timestamp())),
                 p_agent, p_kind, p_conv, cmd->>'id', cmd - 'id' - 'agent' - 'base', p_result);
         PERFORM pg_notify('{EVENTS_CHANNEL}', '');
         RETURN p_seq;
       END $$""",
    """CREATE OR REPLACE FUNCTION replydesk._reject(p_reason text, p_detail text, p_extra jsonb DEFAULT '{}')
       RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
         SELECT jsonb_build_object('ok', false, 'reason', p_reason, 'detail', p_detail) || p_extra
       $$""",
    # Round-robin's pick, the one rule both paths (``_round_robin``, ``submit_messages``) assign by:
    # the online agent (a live heartbeat) with the fewest open conversations under their cap (the
    # team's, ``p_cap``, unless the agent has one); ties to the one assigned longest ago, then by
    # name. NULL: nobody can take one. PL/pgSQL, not SQL: its plan is cached for the session, where
    # an SQL function's would be planned again on every call (a batch picks once per conversation).
    """CREATE OR REPLACE FUNCTION replydesk._pick(p_cap integer) RETURNS text LANGUAGE plpgsql AS $$
       BEGIN
         RETURN (SELECT a.name FROM replydesk.agents a
                   JOIN replydesk.presence p ON p.agent = a.name AND p.expires_at > now()
                   CROSS JOIN LATERAL (SELECT count(*) AS n FROM replydesk.conversations x
                                       WHERE x.assignee = a.name AND x.status IN ('open', 'pending')) open_
                  WHERE a.kind = 'agent' AND a.round_robin AND open_.n < coalesce(a.cap, p_cap, 10)
                  ORDER BY open_.n, a.last_assigned_at NULLS FIRST, a.name LIMIT 1);
       END $$""",
    # Round-robin of one new conversation (``_pick``), logged as the team's assignment.
    """CREATE OR REPLACE FUNCTION replydesk._round_robin(cid text) RETURNS void LANGUAGE plpgsql AS $$
       DECLARE
         enabled boolean; cap_ integer; pick text; s bigint; c replydesk.conversations%ROWTYPE;
       BEGIN
         SELECT (value #>> '{}')::boolean INTO enabled FROM replydesk.settings WHERE key = 'round_robin';
         IF NOT coalesce(enabled, false) THEN RETURN; END IF;
         SELECT (value #>> '{}')::integer INTO cap_ FROM replydesk.settings WHERE key = 'cap';
         pick := replydesk._pick(cap_);
         IF pick IS NULL THEN RETURN; END IF;
         s := nextval('replydesk.event_seq');
         UPDATE replydesk.conversations SET assignee = pick, assignee_seq = s, assignee_by = 'round-robin', version = s
          WHERE id = cid RETURNING * INTO c;
         UPDATE replydesk.agents SET last_assigned_at = clock_timestamp() WHERE name = pick;
         PERFORM replydesk._log('round-robin', 'set', cid,
                                jsonb_build_object('fields', jsonb_build_object('assignee', pick)),
                                replydesk._state(c), s);
       END $$""",
    # A message fetched by an engine (or imported by an agent): stored once by id; an inbound one
    # from a person reopens the conversation, as the caches' ingest does.
    """CREATE OR REPLACE FUNCTION replydesk._message(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE
         m jsonb := cmd->'message'; cv jsonb := cmd->'thread'; cid text := cmd->>'conversation';
         c replydesk.conversations%ROWTYPE; s bigint; fresh boolean := false;
         inbound boolean := (m->>'direction') = 'in' AND coalesce(m->>'automatic', '') = '';
         created double precision := (m->>'created_at')::double precision;
       BEGIN
         IF m->>'id' IS NULL OR cid IS NULL OR created IS NULL OR cv->>'account' IS NULL THEN
           RETURN replydesk._reject('invalid', 'a message needs an id, a conversation, an account and a time');
         END IF;
         PERFORM 1 FROM replydesk.messages WHERE id = m->>'id';
         IF FOUND THEN RETURN jsonb_build_object('ok', true, 'duplicate', true); END IF;
         s := nextval('replydesk.event_seq');
         SELECT * INTO c FROM replydesk.conversations WHERE id = cid FOR UPDATE;
         IF NOT FOUND THEN
           fresh := true;
           INSERT INTO replydesk.conversations(id, account, platform, kind, created_at, last_message_at, version)
           VALUES (cid, cv->>'account', cv->>'platform', cv->>'kind', created, created, s) RETURNING * INTO c;
         ELSE
           UPDATE replydesk.conversations SET
             last_message_at = greatest(last_message_at, created), created_at = least(created_at, created),
             status_seq = CASE WHEN inbound AND status <> 'open' THEN s ELSE status_seq END,
             status_by = CASE WHEN inbound AND status <> 'open' THEN 'customer' ELSE status_by END,
             status = CASE WHEN inbound THEN 'open' ELSE status END,
             snoozed_until = CASE WHEN inbound THEN NULL ELSE snoozed_until END,
             version = s
           WHERE id = cid RETURNING * INTO c;
         END IF;
         INSERT INTO replydesk.messages(id, conversation_id, direction, author, text, created_at, state, error,
                                        private, automatic, seq)
         VALUES (m->>'id', cid, m->>'direction', coalesce(m->>'author', ''), coalesce(m->>'text', ''), created,
                 coalesce(m->>'state', 'received'), m->>'error', coalesce((m->>'private')::boolean, false),
                 nullif(m->>'automatic', ''), s);
         PERFORM replydesk._log(me.name, 'message', cid, cmd, replydesk._state(c), s);
         IF fresh THEN PERFORM replydesk._round_robin(cid); END IF;
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # An internal note: the author is the session's agent, whatever the command says.
    """CREATE OR REPLACE FUNCTION replydesk._note(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE
         m jsonb := cmd->'message'; cid text := cmd->>'conversation'; c replydesk.conversations%ROWTYPE; s bigint;
       BEGIN
         SELECT * INTO c FROM replydesk.conversations WHERE id = cid FOR UPDATE;
         IF NOT FOUND THEN RETURN replydesk._reject('missing', format('no conversation %s in the team', cid)); END IF;
         PERFORM 1 FROM replydesk.messages WHERE id = m->>'id';
         IF FOUND THEN RETURN jsonb_build_object('ok', true, 'duplicate', true); END IF;
         s := nextval('replydesk.event_seq');
         INSERT INTO replydesk.messages(id, conversation_id, direction, author, text, created_at, state, seq)
         VALUES (m->>'id', cid, 'note', me.name, coalesce(m->>'text', ''), (m->>'created_at')::double precision,
                 'received', s);
         UPDATE replydesk.conversations SET written_seq = s, written_by = me.name, version = s
          WHERE id = cid RETURNING * INTO c;
         PERFORM replydesk._log(me.name, 'note', cid, cmd, replydesk._state(c), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # A reply into the team outbox. The collision rule: refused when another agent replied or wrote a
    # note after the version the author had seen, unless the command says the author confirmed it.
    """CREATE OR REPLACE FUNCTION replydesk._reply(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE
         o jsonb := cmd->'outbox'; cid text := cmd->>'conversation'; c replydesk.conversations%ROWTYPE;
         s bigint; base bigint := coalesce((cmd->>'base')::bigint, 0); row_ replydesk.outbox%ROWTYPE;
         other replydesk.messages%ROWTYPE;
       BEGIN
         SELECT * INTO c FROM replydesk.conversations WHERE id = cid FOR UPDATE;
         IF NOT FOUND THEN RETURN replydesk._reject('missing', format('no conversation %s in the team', cid)); END IF;
         PERFORM 1 FROM replydesk.outbox WHERE key = o->>'key';
         IF FOUND THEN RETURN jsonb_build_object('ok', true, 'duplicate', true); END IF;
         IF NOT coalesce((cmd->>'force')::boolean, false) AND c.written_seq > base
            AND c.written_by IS DISTINCT FROM me.name THEN
           SELECT * INTO other FROM replydesk.messages WHERE conversation_id = cid AND seq = c.written_seq;
           RETURN replydesk._reject('collision',
             format('%s %s meanwhile', c.written_by, CASE WHEN other.direction = 'note' THEN 'added a note' ELSE 'replied' END),
             jsonb_build_object('by', c.written_by, 'text', left(coalesce(other.text, ''), 200), 'state', replydesk._state(c)));
         END IF;
         s := nextval('replydesk.event_seq');
         INSERT INTO replydesk.messages(id, conversation_id, direction, author, text, created_at, state, private, seq)
         VALUES (o->>'message_id', cid, 'out', me.name, o->>'text', (o->>'created_at')::double precision, 'queued',
                 coalesce((o->>'private')::boolean, false), s);
         INSERT INTO replydesk.outbox(key, conversation_id, message_id, account, private, text, created_at, not_before,
                                      state, author, seq)
         VALUES (o->>'key', cid, o->>'message_id', c.account, coalesce((o->>'private')::boolean, false), o->>'text',
                 (o->>'created_at')::double precision, (o->>'not_before')::double precision, 'queued', me.name, s)
         RETURNING * INTO row_;
         UPDATE replydesk.conversations SET written_seq = s, written_by = me.name, version = s
          WHERE id = cid RETURNING * INTO c;
         PERFORM replydesk._log(me.name, 'reply', cid, cmd,
                                jsonb_build_object('outbox', to_jsonb(row_)) || replydesk._state(c), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # An outbox action other than a reply (mark read, edit or delete our reply, a ticket, a ticket
    # comment): no thread message and no collision check (it answers nobody); ``account`` performs it
    # (a ticket goes to the helpdesk's). Stored once by key, so two engines queueing the same
    # comment (a failover) make one action.
    """CREATE OR REPLACE FUNCTION replydesk._action(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE
         o jsonb := cmd->'outbox'; cid text := cmd->>'conversation'; c replydesk.conversations%ROWTYPE;
         s bigint; row_ replydesk.outbox%ROWTYPE;
       BEGIN
         IF o->>'key' IS NULL OR (o->>'action') IS NULL OR (o->>'action') NOT IN
            ('mark_read', 'edit_reply', 'delete_reply', 'create_ticket', 'ticket_comment')
            OR jsonb_typeof(coalesce(o->'payload', '{}')) <> 'object' THEN
           RETURN replydesk._reject('invalid', 'an action needs a key, a known kind and a payload object');
         END IF;
         SELECT * INTO c FROM replydesk.conversations WHERE id = cid FOR UPDATE;
         IF NOT FOUND THEN RETURN replydesk._reject('missing', format('no conversation %s in the team', cid)); END IF;
         PERFORM 1 FROM replydesk.outbox WHERE key = o->>'key';
         IF FOUND THEN RETURN jsonb_build_object('ok', true, 'duplicate', true); END IF;
         s := nextval('replydesk.event_seq');
         INSERT INTO replydesk.outbox(key, conversation_id, message_id, account, private, text, created_at, not_before,
                                      state, author, seq, action, payload)
         VALUES (o->>'key', cid, '', coalesce(nullif(o->>'account', ''), c.account), false, coalesce(o->>'text', ''),
                 (o->>'created_at')::double precision, (o->>'not_before')::double precision, 'queued', me.name, s,
                 o->>'action', coalesce(o->'payload', '{}'))
         RETURNING * INTO row_;
         UPDATE replydesk.conversations SET version = s WHERE id = cid RETURNING * INTO c;
         PERFORM replydesk._log(me.name, 'action', cid, cmd, jsonb_build_object('outbox', to_jsonb(row_)), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # Tags merge: adds and removes commute, so two agents tagging at once both land.
    """CREATE OR REPLACE FUNCTION replydesk._tag(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE cid text := cmd->>'conversation'; c replydesk.conversations%ROWTYPE; s bigint;
         adds text[] := ARRAY(SELECT jsonb_array_elements_text(coalesce(cmd->'add', '[]')));
         removes text[] := ARRAY(SELECT jsonb_array_elements_text(coalesce(cmd->'remove', '[]')));
       BEGIN
         SELECT * INTO c FROM replydesk.conversations WHERE id = cid FOR UPDATE;
         IF NOT FOUND THEN RETURN replydesk._reject('missing', format('no conversation %s in the team', cid)); END IF;
         s := nextval('replydesk.event_seq');
         UPDATE replydesk.conversations SET version = s, tags = ARRAY(
             SELECT DISTINCT t FROM unnest(CASE WHEN cmd ? 'replace'
                 THEN ARRAY(SELECT jsonb_array_elements_text(cmd->'replace')) ELSE tags || adds END) t
              WHERE t <> ALL(removes) ORDER BY t)
          WHERE id = cid RETURNING * INTO c;
         PERFORM replydesk._log(me.name, 'tag', cid, cmd, replydesk._state(c), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # Single-valued fields: the first change to reach the team wins. A change made without having
    # seen another agent's later change to the same field is refused, with the team's value.
    """CREATE OR REPLACE FUNCTION replydesk._set(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE cid text := cmd->>'conversation'; f jsonb := coalesce(cmd->'fields', '{}');
         base bigint := coalesce((cmd->>'base')::bigint, 0); c replydesk.conversations%ROWTYPE; s bigint;
         field_ text; by_ text; value_ text;
       BEGIN
         SELECT * INTO c FROM replydesk.conversations WHERE id = cid FOR UPDATE;
         IF NOT FOUND THEN RETURN replydesk._reject('missing', format('no conversation %s in the team', cid)); END IF;
         IF f ? 'status' AND (f->>'status') NOT IN ('open', 'pending', 'snoozed', 'resolved') THEN
           RETURN replydesk._reject('invalid', format('unknown status %s', f->>'status'));
         END IF;
         IF f ? 'assignee' AND c.assignee_seq > base AND c.assignee_by IS DISTINCT FROM me.name THEN
           field_ := 'assignee'; by_ := c.assignee_by; value_ := coalesce(c.assignee, 'nobody');
         ELSIF f ? 'status' AND c.status_seq > base AND c.status_by IS DISTINCT FROM me.name THEN
           field_ := 'status'; by_ := c.status_by; value_ := c.status;
         ELSIF f ? 'escalated' AND c.escalation_seq > base AND c.escalation_by IS DISTINCT FROM me.name THEN
           field_ := 'escalation'; by_ := c.escalation_by; value_ := CASE WHEN c.escalated THEN 'escalated' ELSE 'not escalated' END;
         END IF;
         IF field_ IS NOT NULL THEN
           RETURN replydesk._reject('conflict', format('%s changed the %s to %s first', by_, field_, value_),
                                    jsonb_build_object('field', field_, 'by', by_, 'value', value_,
                                                       'state', replydesk._state(c)));
         END IF;
         s := nextval('replydesk.event_seq');
         UPDATE replydesk.conversations SET
           assignee = CASE WHEN f ? 'assignee' THEN f->>'assignee' ELSE assignee END,
           assignee_seq = CASE WHEN f ? 'assignee' THEN s ELSE assignee_seq END,
           assignee_by = CASE WHEN f ? 'assignee' THEN me.name ELSE assignee_by END,
           status = CASE WHEN f ? 'status' THEN f->>'status' ELSE status END,
           snoozed_until = CASE WHEN f ? 'status' THEN (f->>'snoozed_until')::double precision ELSE snoozed_until END,
           status_seq = CASE WHEN f ? 'status' THEN s ELSE status_seq END,
           status_by = CASE WHEN f ? 'status' THEN me.name ELSE status_by END,
           escalated = CASE WHEN f ? 'escalated' THEN (f->>'escalated')::boolean ELSE escalated END,
           escalation_target = CASE WHEN f ? 'escalated' THEN f->>'escalation_target' ELSE escalation_target END,
           priority = coalesce(f->>'priority', priority),
           escalation_seq = CASE WHEN f ? 'escalated' THEN s ELSE escalation_seq END,
           escalation_by = CASE WHEN f ? 'escalated' THEN me.name ELSE escalation_by END,
           version = s
         WHERE id = cid RETURNING * INTO c;
         PERFORM replydesk._log(me.name, 'set', cid, cmd, replydesk._state(c), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # A customer card edit (note, name, VIP, a merge or split as the links it left): all its fields
    # or none. The rule of single-valued fields: a field another agent changed after the seq the
    # author had seen (``base``) is not overwritten; the whole edit is refused with the team's values.
    f"""CREATE OR REPLACE FUNCTION replydesk._card(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE base bigint := coalesce((cmd->>'base')::bigint, 0); e jsonb; r replydesk.cards%ROWTYPE;
         s bigint; clash replydesk.cards%ROWTYPE; team_ jsonb := '[]';
       BEGIN
         IF jsonb_typeof(cmd->'edits') IS DISTINCT FROM 'array' OR jsonb_array_length(cmd->'edits') = 0 THEN
           RETURN replydesk._reject('invalid', 'a card edit needs edits');
         END IF;
         FOR e IN SELECT * FROM jsonb_array_elements(cmd->'edits') LOOP
           IF jsonb_typeof(e) IS DISTINCT FROM 'object' OR (e->>'field') IS NULL
              OR (e->>'field') NOT IN ('note', 'name', 'vip', 'person') OR coalesce(e->>'subject', '') = ''
              OR NOT e ? 'value' THEN
             RETURN replydesk._reject('invalid', 'a card edit names a subject, a known field and a value');
           END IF;
           -- an agent's credential is not its client: the caches' rules for a card value, here too
           IF jsonb_typeof(e->'value') NOT IN (CASE WHEN e->>'field' = 'vip' THEN 'boolean' ELSE 'string' END, 'null')
           THEN
             RETURN replydesk._reject('invalid', format('a card''s %s is %s or null', e->>'field',
                                      CASE WHEN e->>'field' = 'vip' THEN 'true, false' ELSE 'text' END));
           END IF;
           IF length(e->>'subject') > {MAX_CARD_SUBJECT} OR length(e->>'value') > {MAX_CARD_TEXT} THEN
             RETURN replydesk._reject('invalid', format('a card''s %s is at most {MAX_CARD_TEXT} characters, its '
                                      'subject {MAX_CARD_SUBJECT}', e->>'field'));
           END IF;
           SELECT * INTO r FROM replydesk.cards WHERE subject = e->>'subject' AND field = e->>'field' FOR UPDATE;
           team_ := team_ || jsonb_build_object('subject', e->>'subject', 'field', e->>'field',
                                                'value', CASE WHEN FOUND THEN r.value ELSE 'null' END);
           IF FOUND AND r.seq > base AND r.agent IS DISTINCT FROM me.name AND clash.seq IS NULL THEN
             clash := r;
           END IF;
         END LOOP;
         IF clash.seq IS NOT NULL THEN
           RETURN replydesk._reject('conflict', format('%s changed the customer''s %s first', clash.agent,
                                    CASE clash.field WHEN 'person' THEN 'grouping' WHEN 'vip' THEN 'VIP flag'
                                    ELSE clash.field END),
                                    jsonb_build_object('field', clash.field, 'by', clash.agent, 'cards', team_));
         END IF;
         s := nextval('replydesk.event_seq');
         INSERT INTO replydesk.cards(subject, field, value, seq, agent)
         SELECT x->>'subject', x->>'field', x->'value', s, me.name FROM jsonb_array_elements(cmd->'edits') x
         ON CONFLICT (subject, field) DO UPDATE SET value = excluded.value, seq = excluded.seq, agent = excluded.agent;
         PERFORM replydesk._log(me.name, 'card', cmd->>'conversation', cmd,
                                jsonb_build_object('edits', cmd->'edits'), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # What a helpdesk says about one of our tickets now (the leading engine of its account read it):
    # the rule of the caches' ``tickets.apply`` — a status we hold already, or older news, is a
    # duplicate (two engines reading the same change log it once), "deleted" is inferred on the
    # engine's clock so it always counts; a solved (or closed) ticket resolves its conversation where
    # the helpdesk account asks (``resolve``), as the helpdesk's change (``status_by``: the account).
    """CREATE OR REPLACE FUNCTION replydesk._ticket_status(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE cid text := cmd->>'conversation'; acct text := cmd->>'account'; tid text := cmd->>'ticket';
         st text := cmd->>'status'; upd double precision; held text; held_at double precision;
         c replydesk.conversations%ROWTYPE; s bigint;
       BEGIN
         IF jsonb_typeof(cmd->'updated_at') IS DISTINCT FROM 'number' OR coalesce(acct, '') = ''
            OR coalesce(tid, '') = '' OR coalesce(st, '') = '' OR cid IS NULL THEN
           RETURN replydesk._reject('invalid', 'a ticket status needs an account, a ticket, a status and a time');
         END IF;
         upd := (cmd->>'updated_at')::double precision;
         SELECT status, updated_at INTO held, held_at FROM replydesk.tickets
          WHERE account = acct AND ticket_id = tid FOR UPDATE;
         IF FOUND AND (held = st OR (upd < held_at AND st <> 'deleted')) THEN
           RETURN jsonb_build_object('ok', true, 'duplicate', true);
         END IF;
         SELECT * INTO c FROM replydesk.conversations WHERE id = cid FOR UPDATE;
         IF NOT FOUND THEN RETURN replydesk._reject('missing', format('no conversation %s in the team', cid)); END IF;
         s := nextval('replydesk.event_seq');
         INSERT INTO replydesk.tickets(account, ticket_id, conversation_id, status, updated_at, seq)
         VALUES (acct, tid, cid, st, upd, s)
         ON CONFLICT (account, ticket_id) DO UPDATE SET status = excluded.status, seq = excluded.seq,
           updated_at = greatest(replydesk.tickets.updated_at, excluded.updated_at);
         IF coalesce((cmd->>'resolve')::boolean, false) AND st IN ('solved', 'closed') AND c.status <> 'resolved' THEN
           UPDATE replydesk.conversations SET status = 'resolved', snoozed_until = NULL, status_seq = s,
                  status_by = acct, version = s WHERE id = cid RETURNING * INTO c;
         ELSE
           UPDATE replydesk.conversations SET version = s WHERE id = cid RETURNING * INTO c;
         END IF;
         PERFORM replydesk._log(me.name, 'ticket_status', cid, cmd, replydesk._state(c), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # A reply's delivery state. Agents may cancel, retry (from failed/unknown) or confirm an unknown
    # one; the leading engine moves it through retry waits, sent, failed and unknown.
    """CREATE OR REPLACE FUNCTION replydesk._outbox(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE o replydesk.outbox%ROWTYPE; st text := cmd->>'state'; eng boolean := me.kind = 'engine';
         s bigint; new_id text; allowed boolean;
       BEGIN
         SELECT * INTO o FROM replydesk.outbox WHERE key = cmd->>'key' FOR UPDATE;
         IF NOT FOUND THEN RETURN replydesk._reject('missing', format('no reply %s in the team outbox', cmd->>'key')); END IF;
         IF st = 'sent' AND o.state = 'sent' THEN  -- two engines learnt the same fact
           RETURN jsonb_build_object('ok', true, 'duplicate', true);
         END IF;
         -- An engine moves only a reply it claimed last: a stale engine (killed mid-send, back later)
         -- cannot put back to waiting a reply another engine has taken over. "Sent" is a fact: any
         -- engine may record it, and nothing moves a sent reply again.
         allowed := (st = 'cancelled' AND o.state IN ('queued', 'failed', 'unknown'))
           OR (st = 'queued' AND NOT eng AND o.state IN ('queued', 'failed', 'unknown'))
           OR (st = 'queued' AND eng AND o.state = 'sending' AND o.claimed_by = me.name)
           OR (st IN ('failed', 'unknown') AND eng AND o.state IN ('queued', 'sending')
               AND o.claimed_by IS NOT DISTINCT FROM me.name)
           OR (st = 'sent' AND o.state <> 'cancelled' AND (eng OR o.state = 'unknown'));
         IF NOT coalesce(allowed, false) THEN
           RETURN replydesk._reject('state', format('the reply is %s: it cannot become %s', o.state, st),
                                    jsonb_build_object('outbox', to_jsonb(o)));
         END IF;
         s := nextval('replydesk.event_seq');
         IF st = 'sent' AND o.action <> 'reply' THEN
           -- An action done: what the platform answered, and its effect on the thread (as
           -- ``outbox.mark_done`` shows it in every cache).
           UPDATE replydesk.outbox SET state = 'sent', remote_id = cmd->>'remote_id',
                  result = CASE WHEN jsonb_typeof(cmd->'result') = 'object' THEN cmd->'result'
                                ELSE jsonb_build_object('id', cmd->>'remote_id') END,
                  last_error = NULL, updated_at = now() WHERE key = o.key RETURNING * INTO o;
           IF o.action = 'edit_reply' THEN
             UPDATE replydesk.messages SET text = o.text WHERE id = o.payload->>'message_id';
           ELSIF o.action = 'delete_reply' THEN
             UPDATE replydesk.messages SET state = 'deleted' WHERE id = o.payload->>'message_id';
           END IF;
         ELSIF st = 'sent' THEN
           new_id := o.account || ':' || (cmd->>'remote_id');
           IF new_id <> o.message_id AND EXISTS (SELECT 1 FROM replydesk.messages WHERE id = new_id) THEN
             DELETE FROM replydesk.messages WHERE id = o.message_id;
             UPDATE replydesk.messages SET state = 'sent' WHERE id = new_id;
           ELSE
             UPDATE replydesk.messages SET id = new_id, state = 'sent', error = NULL,
                    created_at = coalesce((cmd->>'sent_at')::double precision, created_at)
              WHERE id = o.message_id;
           END IF;
           UPDATE replydesk.outbox SET state = 'sent', remote_id = cmd->>'remote_id', message_id = new_id,
                  last_error = NULL, updated_at = now() WHERE key = o.key RETURNING * INTO o;
         ELSE
           UPDATE replydesk.outbox SET state = st, text = coalesce(cmd->>'text', text),
                  not_before = coalesce((cmd->>'not_before')::double precision, not_before),
                  last_error = CASE WHEN cmd ? 'last_error' THEN cmd->>'last_error' ELSE last_error END,
                  attempts = coalesce((cmd->>'attempts')::integer, attempts), updated_at = now()
            WHERE key = o.key RETURNING * INTO o;
           UPDATE replydesk.messages SET state = st, error = o.last_error, text = o.text WHERE id = o.message_id;
         END IF;
         PERFORM replydesk._log(me.name, 'outbox', o.conversation_id, cmd, jsonb_build_object('outbox', to_jsonb(o)), s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # A mail server returned one of our replies: that reply failed to deliver.
    """CREATE OR REPLACE FUNCTION replydesk._bounced(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE s bigint := nextval('replydesk.event_seq');
       BEGIN
         UPDATE replydesk.messages SET state = 'failed', error = cmd->>'reason' WHERE id = cmd->>'message';
         UPDATE replydesk.outbox SET state = 'failed', last_error = cmd->>'reason', updated_at = now()
          WHERE message_id = cmd->>'message' AND state = 'unknown';
         PERFORM replydesk._log(me.name, 'bounced', cmd->>'conversation', cmd, '{}', s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # A platform cursor, stored with the messages it covers (same transaction): the engine that takes
    # over an account continues where the last leader stopped.
    """CREATE OR REPLACE FUNCTION replydesk._cursor(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE s bigint;
       BEGIN
         PERFORM 1 FROM replydesk.cursors WHERE account = cmd->>'account' AND stream = cmd->>'stream'
                                           AND cursor = cmd->'cursor';
         IF FOUND THEN RETURN jsonb_build_object('ok', true, 'duplicate', true); END IF;
         s := nextval('replydesk.event_seq');
         INSERT INTO replydesk.cursors(account, stream, cursor) VALUES (cmd->>'account', cmd->>'stream', cmd->'cursor')
         ON CONFLICT (account, stream) DO UPDATE SET cursor = excluded.cursor;
         PERFORM replydesk._log(me.name, 'cursor', NULL, cmd, '{}', s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # An account's platform facts (names, limits), for the agents' composers.
    """CREATE OR REPLACE FUNCTION replydesk._account(me replydesk.agents, cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql AS $$
       DECLARE s bigint;
       BEGIN
         PERFORM 1 FROM replydesk.accounts WHERE name = cmd->>'name' AND provider = cmd->>'provider'
                                             AND platform = cmd->>'platform' AND facts = coalesce(cmd->'facts', '{}');
         IF FOUND THEN RETURN jsonb_build_object('ok', true, 'duplicate', true); END IF;
         s := nextval('replydesk.event_seq');
         INSERT INTO replydesk.accounts(name, provider, platform, facts)
         VALUES (cmd->>'name', cmd->>'provider', cmd->>'platform', coalesce(cmd->'facts', '{}'))
         ON CONFLICT (name) DO UPDATE SET provider = excluded.provider, platform = excluded.platform,
                                          facts = excluded.facts;
         PERFORM replydesk._log(me.name, 'account', NULL, cmd, '{}', s);
         RETURN jsonb_build_object('ok', true, 'seq', s);
       END $$""",
    # A run of message commands in one call, set-based: what ``submit`` does for each (the session's
    # agent, a command id seen before is a repeat, a message stored once by id, an inbound one from a
    # person reopens its conversation, round-robin for a fresh conversation), with the same events and
    # state, but one statement per table instead of a dozen per message, and one NOTIFY. Why it keeps
    # the per-message seqs: a replica applies the log as it is, so message i's event carries the state
    # message i left (its own version), and a round-robin event follows its conversation's first message.
    # Round-robin picks count open conversations before the batch's reopenings (a fresh conversation
    # picked earlier in the batch counts).
    f"""CREATE OR REPLACE FUNCTION replydesk.submit_messages(cmds jsonb) RETURNS jsonb
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       DECLARE
         me replydesk.agents%ROWTYPE; bad text; fresh text[];
         v_ord bigint[]; v_verdict text[]; v_cid text[]; v_created double precision[];
         a_ord bigint[]; a_seq bigint[]; a_cid text[]; a_created double precision[]; a_inbound boolean[];
         a_pf integer[]; a_result jsonb[];
         rr boolean; cap_ integer; f record; pick text; picks jsonb := '{{}}'; n bigint; s0 bigint; out_ jsonb;
       BEGIN
         {_ME}
         IF jsonb_typeof(cmds) IS DISTINCT FROM 'array' OR EXISTS (
             SELECT 1 FROM jsonb_array_elements(cmds) c WHERE jsonb_typeof(c) <> 'object' OR c->>'kind' IS DISTINCT FROM 'message') THEN
           RAISE EXCEPTION 'submit_messages takes an array of message commands' USING ERRCODE = '22023';
         END IF;
         SELECT c->>'agent' INTO bad FROM jsonb_array_elements(cmds) c
          WHERE c ? 'agent' AND (c->>'agent') IS DISTINCT FROM me.name LIMIT 1;
         IF FOUND THEN
           RAISE EXCEPTION 'signed in as agent %: an event cannot be written as %', me.name, bad USING ERRCODE = '42501';
         END IF;
         {_LOCK}
         -- What becomes of each command, in the batch's order: a command id seen before, invalid, a
         -- message stored before or earlier in the batch, the same command id again, or new.
         -- (MATERIALIZED, and the look-ups as LATERAL probes: the planner would otherwise hash the
         -- whole log once per reference to them, a cost that grows with the log.)
         WITH c AS MATERIALIZED (
           SELECT t.ord, t.cmd, t.cmd->>'id' AS cmd_id, t.cmd->'message'->>'id' AS mid, t.cmd->>'conversation' AS cid,
                  coalesce(e.seen, false) AS seen, coalesce(x.stored, false) AS stored
             FROM jsonb_array_elements(cmds) WITH ORDINALITY t(cmd, ord)
             LEFT JOIN LATERAL (SELECT true AS seen FROM replydesk.events e
                                 WHERE e.command_id = t.cmd->>'id' LIMIT 1) e ON true
             LEFT JOIN LATERAL (SELECT true AS stored FROM replydesk.messages x
                                 WHERE x.id = t.cmd->'message'->>'id' LIMIT 1) x ON true),
         v AS (
           SELECT c.*, CASE WHEN c.seen THEN NULL ELSE (c.cmd->'message'->>'created_at')::double precision END AS created
             FROM c),
         w AS MATERIALIZED (
           SELECT v.*, CASE WHEN v.seen THEN 'repeat'
                  WHEN v.mid IS NULL OR v.cid IS NULL OR v.created IS NULL OR v.cmd->'thread'->>'account' IS NULL
                    THEN 'invalid'
                  WHEN v.stored THEN 'duplicate'
                  ELSE 'new' END AS verdict FROM v),
         d1 AS (
           SELECT w.*, CASE WHEN w.verdict = 'new'
                                 AND row_number() OVER (PARTITION BY w.verdict = 'new', w.mid ORDER BY w.ord) > 1
                            THEN 'duplicate' ELSE w.verdict END AS v1 FROM w),
         d2 AS (
           SELECT d1.*, CASE WHEN d1.v1 = 'new' AND d1.cmd_id IS NOT NULL
                                  AND row_number() OVER (PARTITION BY d1.v1 = 'new', d1.cmd_id ORDER BY d1.ord) > 1
                             THEN 'repeat' ELSE d1.v1 END AS verdict2 FROM d1)
         SELECT array_agg(ord ORDER BY ord), array_agg(verdict2 ORDER BY ord), array_agg(cid ORDER BY ord),
                array_agg(created ORDER BY ord)
           INTO v_ord, v_verdict, v_cid, v_created FROM d2;
         -- The batch's fresh conversations (their version is set below, with the seqs).
         WITH r AS (
           SELECT r.*, cmds->(r.ord::integer - 1) AS cmd
             FROM unnest(v_ord, v_verdict, v_cid, v_created) AS r(ord, verdict, cid, created) WHERE r.verdict = 'new'),
         ins AS (
           INSERT INTO replydesk.conversations(id, account, platform, kind, created_at, last_message_at, version)
           SELECT DISTINCT ON (r.cid) r.cid, r.cmd->'thread'->>'account', r.cmd->'thread'->>'platform',
                  r.cmd->'thread'->>'kind', min(r.created) OVER (PARTITION BY r.cid),
                  max(r.created) OVER (PARTITION BY r.cid), 0
             FROM r WHERE NOT EXISTS (SELECT 1 FROM replydesk.conversations x WHERE x.id = r.cid)
            ORDER BY r.cid, r.ord
           RETURNING id)
         SELECT coalesce(array_agg(id), '{{}}') INTO fresh FROM ins;
         -- Round-robin, in the order the fresh conversations came.
         SELECT (value #>> '{{}}')::boolean INTO rr FROM replydesk.settings WHERE key = 'round_robin';
         IF coalesce(rr, false) AND cardinality(fresh) > 0 THEN
           SELECT (value #>> '{{}}')::integer INTO cap_ FROM replydesk.settings WHERE key = 'cap';
           FOR f IN SELECT r.cid FROM unnest(v_ord, v_verdict, v_cid) AS r(ord, verdict, cid)
                     WHERE r.verdict = 'new' AND r.cid = ANY(fresh) GROUP BY r.cid ORDER BY min(r.ord) LOOP
             pick := replydesk._pick(cap_);
             EXIT WHEN pick IS NULL;  -- counts only grow within the batch: nobody later either
             UPDATE replydesk.conversations SET assignee = pick WHERE id = f.cid;
             UPDATE replydesk.agents SET last_assigned_at = clock_timestamp() WHERE name = pick;
             picks := picks || jsonb_build_object(f.cid, pick);
           END LOOP;
         END IF;
         -- Seqs in the batch's order (a picked conversation's assignment right after its first
         -- message), taken at once: the log lock is held, so they are consecutive.
         SELECT count(*) + (SELECT count(*) FROM jsonb_object_keys(picks)) INTO n
           FROM unnest(v_verdict) AS r(verdict) WHERE r.verdict = 'new';
         IF n > 0 THEN
           s0 := nextval('replydesk.event_seq');
           IF n > 1 THEN PERFORM setval('replydesk.event_seq', s0 + n - 1); END IF;
           WITH r AS (
             SELECT r.*, (m->>'direction') = 'in' AND coalesce(m->>'automatic', '') = '' AS inbound,
                    CASE WHEN picks ? r.cid AND r.ord = min(r.ord) OVER (PARTITION BY r.cid) THEN 1 ELSE 0 END AS pf
               FROM unnest(v_ord, v_verdict, v_cid, v_created) AS r(ord, verdict, cid, created)
               CROSS JOIN LATERAL (SELECT cmds->(r.ord::integer - 1)->'message' AS m) mm
              WHERE r.verdict = 'new'),
           q AS (
             SELECT r.*, s0 + row_number() OVER (ORDER BY r.ord) - 1
                         + coalesce(sum(r.pf) OVER (ORDER BY r.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                           AS seq,
                    bool_or(r.inbound) OVER (PARTITION BY r.cid ORDER BY r.ord ROWS UNBOUNDED PRECEDING) AS reopened
               FROM r)
           SELECT array_agg(q.ord ORDER BY q.ord), array_agg(q.seq ORDER BY q.ord), array_agg(q.cid ORDER BY q.ord),
                  array_agg(q.created ORDER BY q.ord), array_agg(q.inbound ORDER BY q.ord),
                  array_agg(q.pf ORDER BY q.ord),
                  array_agg(jsonb_build_object(
                      'status', CASE WHEN q.reopened THEN 'open' ELSE x.status END,
                      'snoozed_until', CASE WHEN q.reopened THEN NULL ELSE x.snoozed_until END,
                      'assignee', CASE WHEN q.pf = 1 THEN NULL ELSE x.assignee END,
                      'priority', x.priority, 'escalated', x.escalated, 'escalation_target', x.escalation_target,
                      'tags', to_jsonb(x.tags), 'version', q.seq) ORDER BY q.ord)
             INTO a_ord, a_seq, a_cid, a_created, a_inbound, a_pf, a_result
             FROM q JOIN replydesk.conversations x ON x.id = q.cid;
           UPDATE replydesk.conversations x SET
             last_message_at = greatest(x.last_message_at, a.last_at), created_at = least(x.created_at, a.first_at),
             status_seq = CASE WHEN a.first_in IS NOT NULL AND x.status <> 'open' THEN a.first_in ELSE x.status_seq END,
             status_by = CASE WHEN a.first_in IS NOT NULL AND x.status <> 'open' THEN 'customer' ELSE x.status_by END,
             status = CASE WHEN a.first_in IS NOT NULL THEN 'open' ELSE x.status END,
             snoozed_until = CASE WHEN a.first_in IS NOT NULL THEN NULL ELSE x.snoozed_until END,
             assignee_seq = coalesce(a.rr_seq, x.assignee_seq),
             assignee_by = CASE WHEN a.rr_seq IS NOT NULL THEN 'round-robin' ELSE x.assignee_by END,
             version = greatest(a.last_seq, a.rr_seq)
           FROM (SELECT r.cid, max(r.created) AS last_at, min(r.created) AS first_at,
                        min(r.seq) FILTER (WHERE r.inbound) AS first_in, max(r.seq) AS last_seq,
                        max(r.seq + 1) FILTER (WHERE r.pf = 1) AS rr_seq
                   FROM unnest(a_cid, a_seq, a_created, a_inbound, a_pf) AS r(cid, seq, created, inbound, pf)
                  GROUP BY r.cid) a
          WHERE x.id = a.cid;
           INSERT INTO replydesk.messages(id, conversation_id, direction, author, text, created_at, state, error,
                                          private, automatic, seq)
           SELECT m->>'id', r.cid, m->>'direction', coalesce(m->>'author', ''), coalesce(m->>'text', ''), r.created,
                  coalesce(m->>'state', 'received'), m->>'error', coalesce((m->>'private')::boolean, false),
                  nullif(m->>'automatic', ''), r.seq
             FROM unnest(a_ord, a_cid, a_seq, a_created) AS r(ord, cid, seq, created)
             CROSS JOIN LATERAL (SELECT cmds->(r.ord::integer - 1)->'message' AS m) mm;
           INSERT INTO replydesk.events(seq, at, agent, kind, conversation_id, command_id, data, result)
           SELECT r.seq, coalesce((cmd->>'at')::double precision, extract(epoch FROM clock_timestamp())), me.name,
                  'message', r.cid, cmd->>'id', cmd - 'id' - 'agent' - 'base', r.result
             FROM unnest(a_ord, a_cid, a_seq, a_result) AS r(ord, cid, seq, result)
             CROSS JOIN LATERAL (SELECT cmds->(r.ord::integer - 1) AS cmd) cc
           UNION ALL
           SELECT r.seq + 1, extract(epoch FROM clock_timestamp()), 'round-robin', 'set', r.cid, NULL,
                  jsonb_build_object('fields', jsonb_build_object('assignee', picks->>r.cid)),
                  r.result || jsonb_build_object('assignee', picks->>r.cid, 'version', r.seq + 1)
             FROM unnest(a_cid, a_seq, a_result, a_pf) AS r(cid, seq, result, pf)
            WHERE r.pf = 1;
           PERFORM pg_notify('{EVENTS_CHANNEL}', '');
         END IF;
         SELECT jsonb_agg(CASE v.verdict
                  WHEN 'repeat' THEN jsonb_build_object('ok', true, 'repeat', true)
                  WHEN 'duplicate' THEN jsonb_build_object('ok', true, 'duplicate', true)
                  WHEN 'invalid' THEN replydesk._reject('invalid',
                                        'a message needs an id, a conversation, an account and a time')
                  ELSE jsonb_build_object('ok', true, 'seq', a.seq) END ORDER BY v.ord)
           INTO out_
           FROM unnest(v_ord, v_verdict) AS v(ord, verdict)
           LEFT JOIN unnest(a_ord, a_seq) AS a(ord, seq) ON a.ord = v.ord;
         RETURN coalesce(out_, '[]');
       END $$""",
    # The one door agents and engines write through.
    f"""CREATE OR REPLACE FUNCTION replydesk.submit(cmd jsonb) RETURNS jsonb
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       DECLARE me replydesk.agents%ROWTYPE; k text := cmd->>'kind';
       BEGIN
         {_ME}
         IF cmd ? 'agent' AND (cmd->>'agent') IS DISTINCT FROM me.name THEN
           RAISE EXCEPTION 'signed in as agent %: an event cannot be written as %', me.name, cmd->>'agent'
             USING ERRCODE = '42501';
         END IF;
         IF k IN ('cursor', 'account', 'bounced', 'ticket_status') AND me.kind <> 'engine' THEN
           RAISE EXCEPTION 'only a team engine may write % events', k USING ERRCODE = '42501';
         END IF;
         {_LOCK}
         IF cmd->>'id' IS NOT NULL THEN
           PERFORM 1 FROM replydesk.events WHERE command_id = cmd->>'id';
           IF FOUND THEN RETURN jsonb_build_object('ok', true, 'repeat', true); END IF;
         END IF;
         RETURN CASE k
           WHEN 'message' THEN replydesk._message(me, cmd)
           WHEN 'note' THEN replydesk._note(me, cmd)
           WHEN 'reply' THEN replydesk._reply(me, cmd)
           WHEN 'action' THEN replydesk._action(me, cmd)
           WHEN 'tag' THEN replydesk._tag(me, cmd)
           WHEN 'set' THEN replydesk._set(me, cmd)
           WHEN 'outbox' THEN replydesk._outbox(me, cmd)
           WHEN 'bounced' THEN replydesk._bounced(me, cmd)
           WHEN 'cursor' THEN replydesk._cursor(me, cmd)
           WHEN 'account' THEN replydesk._account(me, cmd)
           WHEN 'card' THEN replydesk._card(me, cmd)
           WHEN 'ticket_status' THEN replydesk._ticket_status(me, cmd)
           ELSE replydesk._reject('invalid', format('unknown command kind %s', k)) END;
       END $$""",
    # The leading engine claims a reply before the network call (committed 'sending'). A reply another
    # engine left 'sending' is taken over only by the account's leader, and only once that leader has
    # seen the interrupted attempt (``p_seen``), so it went through its own reconciliation first.
    # ``p_id``: the claim's command id, so the claiming replica knows the event for its own echo.
    "DROP FUNCTION IF EXISTS replydesk.claim(text, integer)",
    f"""CREATE OR REPLACE FUNCTION replydesk.claim(p_key text, p_seen integer, p_id text) RETURNS jsonb
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       DECLARE me replydesk.agents%ROWTYPE; o replydesk.outbox%ROWTYPE; s bigint;
       BEGIN
         {_ME}
         IF me.kind <> 'engine' THEN RAISE EXCEPTION 'only a team engine sends replies' USING ERRCODE = '42501'; END IF;
         {_LOCK}
         SELECT * INTO o FROM replydesk.outbox WHERE key = p_key FOR UPDATE SKIP LOCKED;
         IF NOT FOUND THEN RETURN replydesk._reject('busy', 'no such reply, or another engine holds it'); END IF;
         PERFORM 1 FROM replydesk.leases WHERE account = o.account AND engine = me.name AND pid = pg_backend_pid();
         IF NOT FOUND THEN RETURN replydesk._reject('leader', format('this engine does not lead %s', o.account)); END IF;
         IF NOT (o.state = 'queued' OR (o.state = 'sending' AND (o.claimed_by = me.name OR p_seen >= o.attempts))) THEN
           RETURN replydesk._reject('state', format('the reply is %s', o.state), jsonb_build_object('outbox', to_jsonb(o)));
         END IF;
         IF p_id IS NOT NULL AND EXISTS (SELECT 1 FROM replydesk.events WHERE command_id = p_id) THEN
           -- The same claim again (its answer was lost, or the replica had not counted the attempt
           -- yet): it still stands when this engine holds the reply; otherwise it is a new claim,
           -- logged under an id of its own (command ids are unique in the log).
           IF o.state = 'sending' AND o.claimed_by = me.name THEN
             RETURN jsonb_build_object('ok', true, 'attempts', o.attempts, 'repeat', true);
           END IF;
           p_id := p_id || ':' || (o.attempts + 1);
         END IF;
         s := nextval('replydesk.event_seq');
         UPDATE replydesk.outbox SET state = 'sending', attempts = attempts + 1, claimed_by = me.name, updated_at = now()
          WHERE key = p_key RETURNING * INTO o;
         UPDATE replydesk.messages SET state = 'sending', error = NULL WHERE id = o.message_id;
         PERFORM replydesk._log(me.name, 'outbox', o.conversation_id,
                                jsonb_build_object('kind', 'outbox', 'key', p_key, 'state', 'sending', 'id', p_id),
                                jsonb_build_object('outbox', to_jsonb(o)), s);
         RETURN jsonb_build_object('ok', true, 'attempts', o.attempts, 'seq', s);
       END $$""",
    # Leadership of an account: a session-level advisory lock, mirrored in leases for claims and status.
    f"""CREATE OR REPLACE FUNCTION replydesk.lead(p_account text) RETURNS boolean
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       DECLARE me replydesk.agents%ROWTYPE;
       BEGIN
         {_ME}
         IF me.kind <> 'engine' THEN RAISE EXCEPTION 'only a team engine leads accounts' USING ERRCODE = '42501'; END IF;
         IF NOT pg_try_advisory_lock({LEAD_CLASS}, hashtext(p_account)) THEN RETURN false; END IF;
         INSERT INTO replydesk.leases(account, engine, pid) VALUES (p_account, me.name, pg_backend_pid())
         ON CONFLICT (account) DO UPDATE SET engine = excluded.engine, pid = excluded.pid, since = now(),
                                             renewed_at = now();
         PERFORM pg_notify('{LIVE_CHANNEL}', '');
         RETURN true;
       END $$""",
    """CREATE OR REPLACE FUNCTION replydesk.renew(p_accounts text[]) RETURNS SETOF text
       LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
         UPDATE replydesk.leases SET renewed_at = now()
          WHERE account = ANY(p_accounts) AND pid = pg_backend_pid()
            AND engine = (SELECT name FROM replydesk.agents WHERE role = session_user)
         RETURNING account
       $$""",
    # Presence: a heartbeat row that expires; a NOTIFY only when what the agent does changed.
    f"""CREATE OR REPLACE FUNCTION replydesk.heartbeat(p_conversation text, p_activity text, p_ttl double precision)
       RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       DECLARE me replydesk.agents%ROWTYPE; changed boolean;
       BEGIN
         {_ME}
         SELECT NOT (conversation_id IS NOT DISTINCT FROM p_conversation AND activity IS NOT DISTINCT FROM p_activity
                     AND expires_at > now())
           INTO changed FROM replydesk.presence WHERE agent = me.name;
         INSERT INTO replydesk.presence(agent, conversation_id, activity, since, expires_at)
         VALUES (me.name, p_conversation, p_activity, now(), now() + make_interval(secs => p_ttl))
         ON CONFLICT (agent) DO UPDATE SET expires_at = excluded.expires_at,
           since = CASE WHEN replydesk.presence.conversation_id IS NOT DISTINCT FROM excluded.conversation_id
                         AND replydesk.presence.activity IS NOT DISTINCT FROM excluded.activity
                        THEN replydesk.presence.since ELSE excluded.since END,
           conversation_id = excluded.conversation_id, activity = excluded.activity;
         IF coalesce(changed, true) THEN PERFORM pg_notify('{LIVE_CHANNEL}', ''); END IF;
       END $$""",
    f"""CREATE OR REPLACE FUNCTION replydesk.leave() RETURNS void
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         DELETE FROM replydesk.presence WHERE agent = (SELECT name FROM replydesk.agents WHERE role = session_user);
         PERFORM pg_notify('{LIVE_CHANNEL}', '');
       END $$""",
    # The leading engine's view of an account (ok, backoff, rate limited …) for every status bar.
    f"""CREATE OR REPLACE FUNCTION replydesk.set_account_status(p_account text, p_state text, p_detail text,
            p_last_sync double precision, p_until double precision) RETURNS void
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         PERFORM 1 FROM replydesk.leases l JOIN replydesk.agents a ON a.name = l.engine
          WHERE l.account = p_account AND a.role = session_user AND l.pid = pg_backend_pid();
         IF NOT FOUND THEN RETURN; END IF;
         INSERT INTO replydesk.account_status(account, state, detail, last_sync, until)
         VALUES (p_account, p_state, p_detail, p_last_sync, p_until)
         ON CONFLICT (account) DO UPDATE SET state = excluded.state, detail = excluded.detail,
           last_sync = coalesce(excluded.last_sync, replydesk.account_status.last_sync), until = excluded.until,
           updated_at = now();
         PERFORM pg_notify('{LIVE_CHANNEL}', '');
       END $$""",
]

#: Granted to every agent and engine of the team (``{agents}``, ``{engines}``: the team's group roles).
GRANTS: list[str] = [
    "REVOKE ALL ON SCHEMA replydesk FROM PUBLIC",
    "GRANT USAGE ON SCHEMA replydesk TO {agents}, {engines}",
    "REVOKE ALL ON ALL TABLES IN SCHEMA replydesk FROM PUBLIC",
    "GRANT SELECT ON ALL TABLES IN SCHEMA replydesk TO {agents}, {engines}",
    "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA replydesk FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION replydesk.submit(jsonb), replydesk.submit_messages(jsonb), replydesk.heartbeat(text, text, double precision), "
    "replydesk.leave() TO {agents}, {engines}",
    "GRANT EXECUTE ON FUNCTION replydesk.claim(text, integer, text), replydesk.lead(text), replydesk.renew(text[]), "
    "replydesk.set_account_status(text, text, text, double precision, double precision) TO {engines}",
]
