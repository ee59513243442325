"""Talking to the team database (PostgreSQL, psycopg 3): connecting, set-up, and every call.

Connections use TLS where the server offers it: libpq's default ``sslmode=prefer``, or whatever the
URL says (``?sslmode=verify-full&sslrootcert=ca.pem`` for a server you must be sure of). The password
is never part of a stored URL: callers fetch it from the keyring and pass it in, and no message this
module raises contains it.

Agents and engines only call the team's functions (``replydesk.submit`` and friends, see
``team_schema``); the set-up calls (``init``, ``add_agent``, ``settings``) need the database owner.
"""

from __future__ import annotations

import json
import re
import select
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

from replydesk.storage.db import StorageError
from replydesk.storage.team_schema import (
    EVENTS_CHANNEL,
    FUNCTIONS,
    GRANTS,
    LIVE_CHANNEL,
    TABLES,
    TEAM_SCHEMA_VERSION,
)


class TeamError(StorageError):
    """A team database problem with a message a person can act on (never a secret in it)."""


class TeamAuthError(TeamError):
    """The server refused the credentials."""


class TeamUnavailable(TeamError):
    """The server cannot be reached (down, network, TLS): the agent keeps working offline."""


class TeamRefused(TeamError):
    """The server answered, and refused what was asked (a RAISE in a team function, a constraint, a
    privilege taken away): waiting does not help, so nothing queues behind it as if offline."""


#: SQLSTATEs that say the server, or the way to it, is in trouble rather than the command: a
#: connection (class 08), a shutdown, a restart or the database dropped (57P01-57P04), a cancel (57014: a statement timeout),
#: resources (53: disk, memory, too many connections), a transaction to try again (40: serialization,
#: deadlock), the server's system (58). Each passes; a command refused for what it is does not.
_TRANSIENT_CLASSES = ("08", "53", "40", "58")
_TRANSIENT_STATES = ("57P01", "57P02", "57P03", "57P04", "57014")
#: insufficient_privilege: the login may not do this at all (``_me``'s "not an agent", a REVOKE).
_NOT_ALLOWED = "42501"


#: What a team call can fail with that callers report rather than crash on.
TEAM_ERRORS: tuple[type[Exception], ...] = (TeamError, psycopg.Error)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")


@dataclass(frozen=True)
class TeamUrl:
    """A ``postgresql://user@host:port/db?params`` URL without its password."""

    user: str
    host: str
    port: int
    dbname: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str) -> tuple[TeamUrl, str | None]:
        """The URL and the password it carried (None: none), or a TeamError saying what is wrong."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("postgresql", "postgres"):
            raise TeamError(f"not a PostgreSQL URL (expected postgresql://user@host/database): {_mask(url)}")
        if not parts.username:
            raise TeamError("the URL names no database user (postgresql://USER@host/database)")
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise TeamError("the URL names no database (postgresql://user@host/DATABASE)")
        params = tuple((k, v) for k, _, v in (p.partition("=") for p in parts.query.split("&") if p))
        try:
            port = parts.port or 5432
        except ValueError:
            raise TeamError("the URL's port is not a number") from None
        url_ = cls(unquote(parts.username), parts.hostname or "localhost", port, dbname, params)
        return url_, unquote(parts.password) if parts.password else None

    def display(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return (f"postgresql://{quote(self.user)}@{self.host}:{self.port}/{quote(self.dbname)}"
                + (f"?{query}" if query else ""))

    def conninfo(self) -> dict[str, str]:
        return {"user": self.user, "host": self.host, "port": str(self.port), "dbname": self.dbname,
                **dict(self.params)}

    def secret_name(self) -> str:
        """The keyring entry of this login (one per user, server and database)."""
        return f"team:{self.user}@{self.host}:{self.port}/{self.dbname}"


def _mask(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def refusal(exc: BaseException) -> str | None:
    """The server's own words when ``exc`` is the server refusing a command (an error it raised with
    an SQLSTATE outside the transient ones); None when it is about reaching the server (libpq's own
    errors, a lost connection, carry no SQLSTATE)."""
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if not state or state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES:
        return None
    if state == _NOT_ALLOWED:  # about the login (not an agent, a privilege taken away), not a command:
        return None            # every change would be refused alike, so they wait (``explain``: auth)
    words = (exc.diag.message_primary or str(exc).strip() or type(exc).__name__).splitlines()[0]
    return words[:300]


def explain(exc: BaseException, url: TeamUrl, password: str | None = None, *,
            connecting: bool = False) -> TeamError:
    """A psycopg failure as a sentence: what failed, where, what to do; never the password.

    ``connecting``: the error came from opening the connection, where a refusal is about the login
    (pg_hba, a database privilege), not about a command."""
    text = str(exc).strip()
    server = text.split("FATAL:", 1)[-1].strip().splitlines()[0] if text else type(exc).__name__
    if password:
        server = server.replace(password, "***")
    where = url.display()
    if "password authentication failed" in text or "no password supplied" in text:
        return TeamAuthError(f"the team database at {where} refused the password of {url.user!r}; "
                             "store the right one with 'replydesk team login'")
    if "does not exist" in text and "database" in text:
        return TeamError(f"the team database at {where} does not exist (create it, then 'replydesk team init')")
    if "SSL" in text or "certificate" in text:
        return TeamUnavailable(f"TLS with the team database at {where} failed: {server}")
    refused = None if connecting else refusal(exc)
    if refused is not None:
        if password:
            refused = refused.replace(password, "***")
        return TeamRefused(f"the team refused the command: {refused}")
    if "permission denied" in text or "not an agent" in text or "pg_hba.conf" in text:
        return TeamAuthError(f"the team database at {where} refused {url.user!r}: {server}")
    return TeamUnavailable(f"cannot reach the team database at {where}: {server}")


def connect(url: TeamUrl, password: str | None, *, application: str = "replydesk",
            timeout: float = 5.0) -> psycopg.Connection:
    """An autocommit connection, or a TeamError (auth, unreachable, TLS) that names no secret."""
    try:
        return psycopg.connect(**url.conninfo(), password=password or "", autocommit=True,
                               connect_timeout=max(1, int(timeout)), application_name=application[:60])
    except psycopg.Error as exc:
        raise explain(exc, url, password, connecting=True) from None


def encrypted(conn: psycopg.Connection) -> bool:
    """Whether this connection runs over TLS (what ``team status`` reports)."""
    return conn.pgconn.ssl_in_use


# ---- set-up (the database owner) -------------------------------------------------------------------


def group_roles(dbname: str) -> tuple[str, str]:
    """The team's two group roles (agents, engines), named after its database: roles are per cluster."""
    base = re.sub(r"[^a-z0-9_]", "_", dbname.lower())[:40]
    return f"replydesk_{base}_agent", f"replydesk_{base}_engine"


def init(conn: psycopg.Connection) -> dict[str, Any]:
    """Create or migrate the team schema, (re)install its functions and grants. Idempotent."""
    dbname = conn.info.dbname
    agents, engines = group_roles(dbname)
    with conn.transaction():
        conn.execute("CREATE SCHEMA IF NOT EXISTS replydesk")
        exists = conn.execute("SELECT to_regclass('replydesk.meta') IS NOT NULL").fetchone()[0]
        version = 0
        if exists:
            row = conn.execute("SELECT value FROM replydesk.meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > TEAM_SCHEMA_VERSION:
            raise TeamError(f"the team database was set up by a newer replydesk (schema {version}, this one "
                            f"knows {TEAM_SCHEMA_VERSION}); upgrade replydesk")
        created = version == 0
        for statements in TABLES[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("INSERT INTO replydesk.meta(key, value) VALUES ('schema_version', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(TEAM_SCHEMA_VERSION),))
        for statement in FUNCTIONS:
            conn.execute(statement)
        for role in (agents, engines):
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        for statement in GRANTS:
            conn.execute(sql.SQL(statement).format(agents=sql.Identifier(agents), engines=sql.Identifier(engines)))
    return {"database": dbname, "schema_version": TEAM_SCHEMA_VERSION, "created": created,
            "migrated_from": version if 0 < version < TEAM_SCHEMA_VERSION else None,
            "agent_role": agents, "engine_role": engines}


def default_role(dbname: str, agent: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", f"rd_{dbname}_{agent}".lower())[:63]


def add_agent(conn: psycopg.Connection, name: str, password: str, *, role: str | None = None,
              engine: bool = False) -> str:
    """A login role for one agent (or engine) with its password, mapped to the agent's name."""
    if not _NAME.match(name) or name in ("round-robin", "customer", "system"):
        raise TeamError(f"{name!r} cannot be an agent name (letters, digits, _ . @ -; at most 63)")
    if len(password) < 8:
        raise TeamError("an agent's password needs at least 8 characters")
    dbname = conn.info.dbname
    role = role or default_role(dbname, name)
    agents, engines = group_roles(dbname)
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    with conn.transaction():
        if conn.execute("SELECT 1 FROM replydesk.agents WHERE name = %s", (name,)).fetchone():
            raise TeamError(f"the team already has an agent named {name!r}")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(engines if engine else agents),
                                                      sql.Identifier(role)))
        conn.execute("INSERT INTO replydesk.agents(name, role, kind) VALUES (%s, %s, %s)",
                     (name, role, "engine" if engine else "agent"))
    return role


def set_password(conn: psycopg.Connection, name: str, password: str) -> None:
    """A new password for an agent's login role (the owner resets a forgotten one)."""
    row = conn.execute("SELECT role FROM replydesk.agents WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise TeamError(f"no agent {name!r} in the team")
    verifier = conn.pgconn.encrypt_password(password.encode(), row[0].encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(row[0]), sql.Literal(verifier)))


def configure(conn: psycopg.Connection, *, round_robin: bool | None = None, cap: int | None = None,
              agent: str | None = None, agent_round_robin: bool | None = None,
              agent_cap: int | None = None) -> dict[str, Any]:
    """Team settings (round-robin on/off, the per-agent cap) and per-agent overrides."""
    with conn.transaction():
        for key, value in (("round_robin", round_robin), ("cap", cap)):
            if value is not None:
                conn.execute("UPDATE replydesk.settings SET value = %s WHERE key = %s", (json.dumps(value), key))
        if agent is not None:
            row = conn.execute("SELECT 1 FROM replydesk.agents WHERE name = %s", (agent,)).fetchone()
            if row is None:
                raise TeamError(f"no agent {agent!r} in the team")
            if agent_round_robin is not None:
                conn.execute("UPDATE replydesk.agents SET round_robin = %s WHERE name = %s", (agent_round_robin, agent))
            if agent_cap is not None:
                conn.execute("UPDATE replydesk.agents SET cap = %s WHERE name = %s", (agent_cap, agent))
    return settings(conn)


def settings(conn: psycopg.Connection) -> dict[str, Any]:
    return {k: v for k, v in conn.execute("SELECT key, value FROM replydesk.settings ORDER BY key")}


# ---- what agents and engines call ---------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    name: str
    kind: str  # agent | engine


def whoami(conn: psycopg.Connection, url: TeamUrl) -> Identity:
    """The agent this login is, or a TeamAuthError when the role is no agent of the team."""
    try:
        row = conn.execute("SELECT name, kind FROM replydesk.agents WHERE role = session_user").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        row = None
    except psycopg.errors.UndefinedTable:
        raise TeamError(f"{url.display()} holds no replydesk team: run 'replydesk team init' there") from None
    if row is None:
        raise TeamAuthError(f"{url.user!r} is not an agent of the team at {url.display()} "
                            "(the owner adds agents with 'replydesk team add-agent')")
    return Identity(row[0], row[1])


@dataclass(frozen=True)
class TeamEvent:
    seq: int
    at: float
    agent: str
    kind: str
    conversation_id: str | None
    command_id: str | None
    data: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)


#: A run of at least this many message commands goes to the team as one ``submit_messages`` call.
MESSAGE_RUN = 2
_ONE = "SELECT replydesk.submit(%s::jsonb)"
_MESSAGES = "SELECT replydesk.submit_messages(%s::jsonb)"


def _runs(commands: Sequence[dict[str, Any]], batched: bool) -> list[tuple[bool, list[dict[str, Any]]]]:
    """Consecutive message commands as one run (True), everything else in runs of its own (False)."""
    runs: list[tuple[bool, list[dict[str, Any]]]] = []
    for command in commands:
        is_message = batched and command.get("kind") == "message"
        if runs and runs[-1][0] == is_message:
            runs[-1][1].append(command)
        else:
            runs.append((is_message, [command]))
    out: list[tuple[bool, list[dict[str, Any]]]] = []
    for is_message, run in runs:  # a lone message is cheaper through ``submit``
        short = is_message and len(run) < MESSAGE_RUN
        if out and (short or not is_message) and not out[-1][0]:
            out[-1][1].extend(run)
        else:
            out.append((is_message and not short, run))
    return out


def submit_many(conn: psycopg.Connection, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply ``commands`` in one transaction, in order; one outcome each ({ok, seq} or {ok: False, reason}).

    Why runs of messages go as one call: an engine's fetch is mostly messages, and the set-based
    ``submit_messages`` stores a run of them with one statement per table where ``submit`` runs a
    dozen per message (the team engine's ingest would otherwise be a fraction of a solo one's). A
    database whose functions predate it (``team init`` not re-run) gets every command one by one."""
    if not commands:
        return []
    batched = not getattr(conn, "_replydesk_no_batch", False)
    try:
        try:
            return _submit_runs(conn, _runs(commands, batched))
        except psycopg.errors.UndefinedFunction:
            if not batched:
                raise
            conn._replydesk_no_batch = True  # type: ignore[attr-defined]
            return _submit_runs(conn, _runs(commands, False))
    except psycopg.Error as exc:
        if refusal(exc) is None:
            raise
        return _submit_each(conn, commands)


def _submit_each(conn: psycopg.Connection, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commands again one by one, each in a savepoint of one transaction, after the server
    refused one of them: the others stand (with their order), and a refused one is an outcome like a
    conflict ({ok: False, reason: "refused", detail, state}) rather than an error that would hold up
    every change behind it as if the team were out of reach."""
    out: list[dict[str, Any]] = []
    with conn.transaction():
        for command in commands:
            try:
                with conn.transaction():
                    out.append(submit(conn, command))
            except psycopg.Error as exc:
                why = refusal(exc)
                if why is None:
                    raise
                outcome: dict[str, Any] = {"ok": False, "reason": "refused",
                                           "detail": f"the team refused the command: {why}"}
                state = _conversation_state(conn, command.get("conversation"))
                if state is not None:
                    outcome["state"] = state
                if command.get("kind") == "card":  # undone with the team's fields, as a conflict is
                    outcome["cards"] = _card_fields(conn, command.get("edits"))
                out.append(outcome)
    return out


def _card_fields(conn: psycopg.Connection, edits: Any) -> list[dict[str, Any]]:
    """The team's value of each field a refused card command edits (null: never set), in the
    shape of a conflict's ``cards`` (the cache reads it through ``contacts.edits_from``)."""
    wanted = [(e.get("subject"), e.get("field")) for e in edits if isinstance(e, dict)] if isinstance(edits, list) else []
    wanted = [(s, f) for s, f in wanted if isinstance(s, str) and isinstance(f, str)]
    if not wanted:
        return []
    rows = {(r[0], r[1]): r[2] for r in conn.execute(
        "SELECT subject, field, value FROM replydesk.cards WHERE subject = ANY(%s)", ([s for s, _ in wanted],))}
    return [{"subject": s, "field": f, "value": rows.get((s, f))} for s, f in wanted]


def _conversation_state(conn: psycopg.Connection, conv_id: Any) -> dict[str, Any] | None:
    """A conversation's fields as the team holds them (``replydesk._state``'s shape), so a refused
    change is undone in the cache with the team's values."""
    if not isinstance(conv_id, str):
        return None
    row = conn.execute(
        "SELECT status, snoozed_until, assignee, priority, escalated, escalation_target, tags, version "
        "FROM replydesk.conversations WHERE id = %s", (conv_id,)).fetchone()
    if row is None:
        return None
    keys = ("status", "snoozed_until", "assignee", "priority", "escalated", "escalation_target", "tags", "version")
    return {**dict(zip(keys, row, strict=True)), "tags": list(row[6])}


def _submit_runs(conn: psycopg.Connection, runs: list[tuple[bool, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    pending: list[tuple[bool, psycopg.Cursor[Any]]] = []
    with conn.transaction():
        with conn.pipeline():
            for is_messages, run in runs:
                cur = conn.cursor()
                if is_messages:
                    cur.execute(_MESSAGES, (json.dumps(run),))
                else:
                    cur.executemany(_ONE, [(json.dumps(c),) for c in run], returning=True)
                pending.append((is_messages, cur))
        out: list[dict[str, Any]] = []
        for is_messages, cur in pending:
            if is_messages:
                out.extend(cur.fetchone()[0])
            else:
                for _ in cur.results():
                    out.append(cur.fetchone()[0])
            cur.close()
    return out


def submit(conn: psycopg.Connection, command: dict[str, Any]) -> dict[str, Any]:
    return conn.execute("SELECT replydesk.submit(%s::jsonb)", (json.dumps(command),)).fetchone()[0]


def head(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM replydesk.events").fetchone()[0]


#: An agent's pull: the events past its cursor (``after``, ``limit``), in seq order.
PULL_SQL = ("SELECT seq, at, agent, kind, conversation_id, command_id, data, result FROM replydesk.events "
            "WHERE seq > %s ORDER BY seq LIMIT %s")


def pull(conn: psycopg.Connection, after: int, limit: int = 2000) -> list[TeamEvent]:
    """Events past ``after`` in seq order (every lower seq is committed: see team_schema)."""
    return [TeamEvent(*r) for r in conn.execute(PULL_SQL, (after, limit)).fetchall()]


def listen(conn: psycopg.Connection) -> None:
    for channel in (EVENTS_CHANNEL, LIVE_CHANNEL):
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


def wait_notified(conn: psycopg.Connection, timeout: float) -> set[str]:
    """The channels notified within ``timeout`` seconds (empty: none; a wake-up, never data).

    The wait is a ``select`` on the listening connection's socket, then the notifications it holds
    are read without waiting: psycopg's own ``notifies(timeout=…)`` polls its socket in a loop and
    costs a listener ~2 % of a core while nothing happens (twenty agents on one machine, a third of
    a core). A closed connection reads as ready, and reading it raises as before."""
    try:
        ready, _, _ = select.select([conn.fileno()], [], [], timeout)
    except (OSError, ValueError):  # the socket is gone: let psycopg say so
        ready = [conn]
    return drain_notified(conn) if ready else set()


def drain_notified(conn: psycopg.Connection) -> set[str]:
    return {n.channel for n in conn.notifies(timeout=0)}


def heartbeat(conn: psycopg.Connection, conversation: str | None, activity: str | None, ttl: float) -> None:
    conn.execute("SELECT replydesk.heartbeat(%s, %s, %s)", (conversation, activity, ttl))


def leave(conn: psycopg.Connection) -> None:
    conn.execute("SELECT replydesk.leave()")


@dataclass(frozen=True)
class Live:
    """What is happening now, outside the log: who is where, and each account's sync state."""

    presence: list[tuple[str, str | None, str | None, float, float]]  # agent, conv, activity, since, expires
    accounts: list[tuple[str, str, str, float | None, float | None]]  # account, state, detail, last_sync, until


def live(conn: psycopg.Connection) -> Live:
    presence = conn.execute(
        "SELECT agent, conversation_id, activity, extract(epoch FROM since)::float8, "
        "extract(epoch FROM expires_at)::float8 FROM replydesk.presence WHERE expires_at > now() ORDER BY agent"
    ).fetchall()
    accounts = conn.execute(
        "SELECT account, state, detail, last_sync, until FROM replydesk.account_status ORDER BY account").fetchall()
    return Live([tuple(r) for r in presence], [tuple(r) for r in accounts])


def lead(conn: psycopg.Connection, account: str) -> bool:
    return bool(conn.execute("SELECT replydesk.lead(%s)", (account,)).fetchone()[0])


def renew(conn: psycopg.Connection, accounts: Iterable[str]) -> set[str]:
    return {r[0] for r in conn.execute("SELECT replydesk.renew(%s)", (list(accounts),))}


def claim(conn: psycopg.Connection, key: str, seen_attempts: int, command_id: str | None = None) -> dict[str, Any]:
    return conn.execute("SELECT replydesk.claim(%s, %s, %s)", (key, seen_attempts, command_id)).fetchone()[0]


def set_account_status(conn: psycopg.Connection, account: str, state: str, detail: str,
                       last_sync: float | None, until: float | None) -> None:
    conn.execute("SELECT replydesk.set_account_status(%s, %s, %s, %s, %s)",
                 (account, state, detail, last_sync, until))


def overview(conn: psycopg.Connection) -> dict[str, Any]:
    """The team as ``replydesk team status`` shows it: agents, who is online, leaders, the log's head."""
    agents = [{"name": r[0], "kind": r[1], "online": r[2], "doing": r[3], "open_assigned": r[4]}
              for r in conn.execute(
                  "SELECT a.name, a.kind, p.agent IS NOT NULL, CASE WHEN p.activity IS NULL THEN NULL "
                  "ELSE p.activity || coalesce(' ' || p.conversation_id, '') END, "
                  "(SELECT count(*) FROM replydesk.conversations c WHERE c.assignee = a.name "
                  " AND c.status IN ('open','pending')) "
                  "FROM replydesk.agents a LEFT JOIN replydesk.presence p ON p.agent = a.name AND p.expires_at > now() "
                  "ORDER BY a.kind, a.name")]
    leaders = [{"account": r[0], "engine": r[1], "alive": r[2], "since": r[3], "renewed_seconds_ago": r[4]}
               for r in conn.execute(
                   "SELECT l.account, l.engine, EXISTS (SELECT 1 FROM pg_stat_activity s WHERE s.pid = l.pid), "
                   "extract(epoch FROM l.since)::float8, extract(epoch FROM now() - l.renewed_at)::float8 "
                   "FROM replydesk.leases l ORDER BY l.account")]
    head_, newest = conn.execute(
        "SELECT coalesce(max(seq), 0), extract(epoch FROM max(recorded_at))::float8 FROM replydesk.events").fetchone()
    return {"agents": agents, "leaders": leaders, "head": head_, "newest_event_at": newest,
            "settings": settings(conn), "tls": encrypted(conn)}


def recorded_at(conn: psycopg.Connection, seq: int) -> float | None:
    """When the team recorded event ``seq`` (epoch seconds), to tell a replica's lag in time."""
    row = conn.execute("SELECT extract(epoch FROM recorded_at)::float8 FROM replydesk.events WHERE seq = %s",
                       (seq,)).fetchone()
    return row[0] if row else None
