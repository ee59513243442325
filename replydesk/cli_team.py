"""``replydesk team …`` and ``replydesk serve``: set up a team on PostgreSQL, join it, watch it.

Who runs what: the database owner runs ``team init`` and ``team add-agent`` (one login role per
agent and per engine); each agent runs ``team join`` once on their machine; the team engine runs
``replydesk serve`` next to the database, with the platform accounts in its config. Passwords come
from the keyring (``team login``), never from a file; a URL may carry one only to hand it over.

In a joined workspace the other commands work as in a solo one: writes land in the local cache and
are pushed at once (``after_write``), or by the running engine when there is one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

# The rest loads in the commands that use it: ``replydesk --help`` builds these parsers too.

#: Commands that change the workspace: in a joined one their change goes to the team right away.
#: (A subcommand that only reads, ``contact show``, says so with ``writes=False``.)
WRITES = frozenset({"tag", "untag", "assign", "escalate", "resolve", "reopen", "snooze", "reply", "note",
                    "import", "outbox", "contact"})


def register(sub: Any, common: argparse.ArgumentParser, jsonopt: argparse.ArgumentParser,
             add: Callable[..., argparse.ArgumentParser], exit_usage: int) -> None:
    p = add("serve", cmd_serve, "run the team engine: platform sync and sending for a team (Ctrl-C stops)")
    p = add("team", lambda a: (a.team_parser.print_help(), exit_usage)[1],
            "team mode: one inbox shared through PostgreSQL (init, add-agent, join, status …)")
    tsub = p.add_subparsers(dest="team_command", metavar="SUBCOMMAND")
    p.set_defaults(team_parser=p)

    def team_cmd(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        c = tsub.add_parser(name, parents=[common, jsonopt], help=help_, description=help_)
        c.set_defaults(func=fn)
        return c

    c = team_cmd("init", cmd_init, "create or migrate the team schema (run as the database owner)")
    c.add_argument("url", help="postgresql://OWNER@host:port/database[?sslmode=…]")
    c = team_cmd("add-agent", cmd_add_agent, "give an agent (or a team engine) a login of their own")
    c.add_argument("url", help="the owner's postgresql:// URL")
    c.add_argument("name", help="the agent's name (shown to the team, used as 'me')")
    c.add_argument("--engine", action="store_true", help="a team engine (replydesk serve), not a person")
    c.add_argument("--role", help="the database role to create (default rd_<database>_<name>)")
    c = team_cmd("join", cmd_join, "point this workspace at a team and pull it (a first pull with progress)")
    c.add_argument("url", help="postgresql://ROLE@host:port/database[?sslmode=verify-full&sslrootcert=…]")
    c.add_argument("--agent", required=True, metavar="NAME", help="your agent name in the team")
    c = team_cmd("login", cmd_login, "store this workspace's team password in the keyring")
    c.add_argument("url", nargs="?", help="the team URL (default: the joined workspace's)")
    team_cmd("status", cmd_status, "agents online, the engine leading each account, replication lag")
    c = team_cmd("settings", cmd_settings, "round-robin assignment and per-agent caps (database owner)")
    c.add_argument("url", help="the owner's postgresql:// URL")
    c.add_argument("--round-robin", choices=("on", "off"), help="assign new conversations among online agents")
    c.add_argument("--cap", type=int, help="at most this many open conversations per agent (default 10)")
    c.add_argument("--agent", metavar="NAME", help="the agent the next two options are for")
    c.add_argument("--agent-cap", type=int, help="this agent's own cap")
    c.add_argument("--agent-round-robin", choices=("on", "off"), help="include this agent in round-robin")


def _cli() -> Any:
    from replydesk import cli

    return cli


def _read_secret(prompt: str) -> str:
    """A password from the terminal (not echoed), or one line of standard input for scripts."""
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\n")


def _owner(args: argparse.Namespace) -> Any:
    """A connection as the URL's user, the password from the URL, the keyring, or a prompt."""
    from replydesk import secrets
    from replydesk.storage import team_db

    url, password = team_db.TeamUrl.parse(args.url)
    password = password or secrets.fetch(url.secret_name()) or _read_secret(f"password of {url.user}: ")
    return team_db.connect(url, password, application="replydesk setup"), url


def cmd_init(args: argparse.Namespace) -> int:
    from replydesk.storage import team_db

    cli = _cli()
    conn, url = _owner(args)
    with conn:
        info = team_db.init(conn)
    if args.json:
        cli.emit_json(info)
    else:
        done = "created" if info["created"] else (
            f"migrated from schema {info['migrated_from']}" if info["migrated_from"] else "up to date")
        cli.say(f"team schema {done} in {url.display()} "
                f"(schema {info['schema_version']}); add agents with 'replydesk team add-agent URL NAME'")
    return cli.EXIT_OK


def cmd_add_agent(args: argparse.Namespace) -> int:
    import secrets as token

    from replydesk.storage import team_db

    cli = _cli()
    interactive = sys.stdin is not None and sys.stdin.isatty()
    conn, url = _owner(args)
    password = token.token_urlsafe(18) if interactive else sys.stdin.readline().rstrip("\n")
    with conn:
        role = team_db.add_agent(conn, args.name, password, role=args.role, engine=args.engine)
    join = team_db.TeamUrl(role, url.host, url.port, url.dbname, url.params).display()
    if args.json:
        cli.emit_json({"agent": args.name, "role": role, "engine": args.engine, "url": join})
        return cli.EXIT_OK
    what = "team engine" if args.engine else "agent"
    cli.say(f"{what} {args.name} added (database role {role})")
    if interactive:  # shown once, for the person who hands it over; never stored here
        cli.say(f"password: {password}")
    cli.say(f"join with: replydesk team join '{join}' --agent {args.name}")
    return cli.EXIT_OK


def _store_password(url: Any, password: str) -> str:
    """Keep the team password in the keyring; say where it went (or how to provide it instead)."""
    from replydesk import secrets

    if not secrets.backend_available():
        return ("no keyring on this machine: set " + secrets.env_name(url.secret_name())
                + " to the password for the engine to connect")
    secrets.store(url.secret_name(), password)
    return "password stored in the system keyring"


def cmd_join(args: argparse.Namespace) -> int:
    from replydesk import secrets, teamlink
    from replydesk.storage import team_db, team_local
    from replydesk.team import TeamSync

    cli = _cli()
    ws = cli._workspace(args)
    if ws.team is not None:
        raise cli.UsageError(f"{ws.data_dir} is already joined to {ws.team.url} as {ws.team.agent}")
    url, password = team_db.TeamUrl.parse(args.url)
    password = password or secrets.fetch(url.secret_name()) or _read_secret(f"team password of {url.user}: ")
    with team_db.connect(url, password, application="replydesk join") as conn:
        identity = team_db.whoami(conn, url)
    if identity.name != args.agent:
        raise team_db.TeamAuthError(f"{url.user!r} is agent {identity.name!r} of this team, not {args.agent!r}")
    db = ws.open_db()
    if team_local.conversation_count(db):
        raise cli.UsageError(f"{ws.data_dir} already holds conversations: join into a new --data-dir (bring them "
                             "to the team afterwards with 'replydesk export' and 'replydesk import')")
    where = _store_password(url, password)
    team_local.set_link(db, team_local.Link(url.display(), identity.name, identity.kind,
                                            team_local.new_replica_id()))
    teamlink.write(ws.data_dir, teamlink.TeamLink(url.display(), identity.name, identity.kind))
    started = time.monotonic()
    with _progress(args.json) as progress:
        report = TeamSync(ws.data_dir, db, secret=lambda: password, progress=progress).once()
    took = time.monotonic() - started
    summary = {"agent": identity.name, "kind": identity.kind, "team": url.display(), "events": report.pulled,
               "messages": report.messages, "conversations": team_local.conversation_count(db),
               "seconds": round(took, 3), "data_dir": str(ws.data_dir)}
    if args.json:
        cli.emit_json(summary)
    else:
        cli.say(f"joined {url.display()} as {identity.name} ({identity.kind}); {where}")
        cli.say(f"pulled {report.pulled} events: {summary['conversations']} conversations, {report.messages} "
                f"messages in {took:.1f} s")
        cli.say("run 'replydesk serve' to sync the platforms" if identity.kind == "engine"
                else "open the console with 'replydesk', or keep it in step headless with 'replydesk sync'")
    return cli.EXIT_OK


class _progress:  # noqa: N801 - a context manager that reads as a phrase
    """A progress bar on a terminal (rich, already installed with the console), lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None
        self.said = 0.0

    def __enter__(self) -> Callable[[int, int], None]:
        if not self.quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("pulling the team's events"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("pull", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=max(total, done))
        elif time.monotonic() - self.said >= 1.0 or done >= total:
            self.said = time.monotonic()
            print(f"pulled {done}/{total} events", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def _joined(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from replydesk.storage import team_db

    cli = _cli()
    ws = cli._workspace(args)
    if ws.team is None:
        raise cli.UsageError(f"{ws.data_dir} is not joined to a team ('replydesk team join URL --agent NAME')")
    url, _ = team_db.TeamUrl.parse(ws.team.url)
    return ws, url, cli


def cmd_login(args: argparse.Namespace) -> int:
    from replydesk.storage import team_db

    cli = _cli()
    if args.url:
        url, password = team_db.TeamUrl.parse(args.url)
    else:
        _, url, _ = _joined(args)
        password = None
    password = password or _read_secret(f"team password of {url.user}: ")
    if not password:
        raise cli.UsageError("an empty password was not stored")
    with team_db.connect(url, password, application="replydesk login") as conn:
        team_db.whoami(conn, url)  # the password works, and it is an agent of the team
    cli.say(f"{url.display()}: {_store_password(url, password)}")
    return cli.EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from replydesk.storage import team_db, team_local
    from replydesk.team import password

    ws, url, cli = _joined(args)
    db = ws.open_db(create=False)
    with team_db.connect(url, password(url), application="replydesk status") as conn:
        me = team_db.whoami(conn, url)
        view = team_db.overview(conn)
        cursor = team_local.cursor(db)
        behind = max(0, view["head"] - cursor)
        oldest = team_db.recorded_at(conn, cursor + 1) if behind else None
    lag = {"events_behind": behind, "seconds_behind": round(max(0.0, time.time() - oldest), 3) if oldest else 0.0,
           "cursor": cursor, "head": view["head"], "pending_local_changes": team_local.pending_count(db)}
    doc = {"team": url.display(), "tls": view["tls"], "me": me.name, "kind": me.kind, **lag,
           "agents": view["agents"], "leaders": view["leaders"], "settings": view["settings"]}
    if args.json:
        cli.emit_json(doc)
        return cli.EXIT_OK
    cli.say(f"team {url.display()} ({'TLS' if view['tls'] else 'not encrypted'}) · you are {me.name} ({me.kind})")
    online = [a for a in view["agents"] if a["online"]]
    cli.say(f"agents online: {len(online)} of {len(view['agents'])}")
    for a in view["agents"]:
        state = "online" if a["online"] else "offline"
        doing = f", {a['doing']}" if a["doing"] else ""
        cli.say(f"  {a['name']:<16} {a['kind']:<7} {state}{doing} · {a['open_assigned']} open assigned")
    if not view["leaders"]:
        cli.say("engines: no engine leads any account yet ('replydesk serve' on the engine's machine)")
    for lead in view["leaders"]:
        alive = "" if lead["alive"] else " (its session is gone: another engine takes over)"
        cli.say(f"  {lead['account']:<16} led by {lead['engine']}{alive}")
    rr = view["settings"]
    cli.say(f"round-robin: {'on' if rr.get('round_robin') else 'off'} (cap {rr.get('cap')})")
    cli.say(f"replication: cursor {cursor} of {view['head']} · {behind} event(s) behind"
            + (f" ({lag['seconds_behind']:.1f} s)" if behind else "")
            + f" · {lag['pending_local_changes']} local change(s) not pushed yet")
    return cli.EXIT_OK


def cmd_settings(args: argparse.Namespace) -> int:
    from replydesk.storage import team_db

    cli = _cli()
    conn, _ = _owner(args)
    if (args.agent_cap is not None or args.agent_round_robin) and not args.agent:
        raise cli.UsageError("--agent-cap and --agent-round-robin need --agent NAME")
    with conn:
        doc = team_db.configure(
            conn, round_robin=None if args.round_robin is None else args.round_robin == "on", cap=args.cap,
            agent=args.agent, agent_cap=args.agent_cap,
            agent_round_robin=None if args.agent_round_robin is None else args.agent_round_robin == "on")
    if args.json:
        cli.emit_json(doc)
    else:
        cli.say(f"round-robin {'on' if doc.get('round_robin') else 'off'}, cap {doc.get('cap')} open per agent")
    return cli.EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    cli = _cli()
    ws = cli._workspace(args)
    if ws.team is None or ws.team.kind != "engine":
        raise cli.UsageError(f"{ws.data_dir} is not joined as a team engine: 'replydesk team add-agent URL NAME "
                             "--engine' (owner), then 'replydesk team join URL --agent NAME' here")
    if not ws.config.accounts:
        raise cli.UsageError("the team engine's config names no platform accounts (see config.example.yaml)")
    args.once = False
    args.json = False
    return cli.cmd_sync(args)


def after_write(args: argparse.Namespace) -> int | None:
    """In a joined workspace, send a command's change to the team now, unless an engine runs (it
    will within a moment). Returns an exit code when the team refused the change (the user is told)."""
    from pathlib import Path

    from replydesk import teamlink
    from replydesk.storage.lock import EngineLock

    cli = _cli()
    data_dir = Path(args.data_dir) if args.data_dir else cli.default_data_dir()
    if not (data_dir / teamlink.FILE).exists():
        return None
    lock = EngineLock(data_dir)
    if not lock.acquire():  # the console or 'replydesk sync' is running here: it pushes
        return None
    from replydesk.storage import team_db
    from replydesk.storage.db import StorageError
    from replydesk.team import TeamSync

    try:
        ws = cli._workspace(args)
        db = ws.open_db()
        try:
            report = TeamSync(ws.data_dir, db).once()
        except team_db.TeamRefused as exc:  # not about reaching it: waiting would not help
            cli.complain(f"saved in this workspace, but {exc}")
            return cli.EXIT_ERROR
        except team_db.TeamAuthError as exc:  # the login: the change waits until the owner mends it
            cli.complain(f"saved in this workspace; it goes to the team once the login is allowed again ({exc})")
            return cli.EXIT_ERROR
        except StorageError as exc:
            cli.complain(f"saved in this workspace; it goes to the team once it can be reached ({exc})")
            return None
        finally:
            db.close()
    finally:
        lock.release()
    for text in report.refused:
        cli.complain(text)
    return cli.EXIT_ERROR if report.refused else None
