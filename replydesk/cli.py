"""The ``replydesk`` command: the TUI by default, and every action as a scriptable subcommand.

Exit codes: 0 success, 2 bad usage or config, 1 anything else. ``--json`` output is one JSON
document (or JSON Lines for ``export``); text output makes customer text terminal-safe.
"""

from __future__ import annotations

import os
import sys

from replydesk import __version__

TYPE_CHECKING = False  # not typing's: importing typing is a millisecond of every start
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    from replydesk import secrets
    from replydesk.config import Config
    from replydesk.storage import actions, exchange, outbox, outbox_items, queries, search, slastate
    from replydesk.storage.db import Database
    from replydesk.workspace import Workspace

# Start-up: a command imports what it uses and nothing else. ``--version`` needs nothing, ``--help``
# argparse, and the read commands (search, show, outbox) the storage functions (no pydantic, yaml,
# Textual, httpx or provider): the modules below load on first use, each where a command needs it.


class _OnFirstUse:
    """A module imported the first time one of its names is used."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            import importlib

            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


# The command bodies use these names as modules (the imports under TYPE_CHECKING say which).
actions: Any = _OnFirstUse("replydesk.storage.actions")
exchange: Any = _OnFirstUse("replydesk.storage.exchange")
outbox: Any = _OnFirstUse("replydesk.storage.outbox")
outbox_items: Any = _OnFirstUse("replydesk.storage.outbox_items")  # reading only: no ingest or SLA modules
queries: Any = _OnFirstUse("replydesk.storage.queries")
search: Any = _OnFirstUse("replydesk.storage.search")
slastate: Any = _OnFirstUse("replydesk.storage.slastate")
secrets: Any = _OnFirstUse("replydesk.secrets")


def visible(text: str) -> str:
    from replydesk.safetext import visible as made_visible

    return made_visible(text)


def one_line(text: str) -> str:
    from replydesk.safetext import one_line as flattened

    return flattened(text)


def iso(ts: float | None) -> str | None:
    from replydesk.vocabulary import iso as to_iso

    return to_iso(ts)


def _raised(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of ``module`` to catch, if it was imported: if not, none was raised."""
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names) if loaded is not None else ()


EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
#: Providers whose accounts also keep the Meta app's secret (webhook signatures, appsecret_proof).
META_PROVIDERS = ("facebook", "instagram", "whatsapp")


class UsageError(Exception):
    """Bad arguments detected after parsing (exit 2)."""


# ---- output ---------------------------------------------------------------------------------------


def _json_safe(text: str) -> str:
    """json.dumps leaves DEL, C1 controls and bidi marks raw with ensure_ascii=False: escape them
    as \\uXXXX too, so JSON on a terminal cannot act on it while scripts still get the exact text."""
    import re  # re caches the compiled pattern

    from replydesk.safetext import BIDI_CONTROLS

    return re.sub("[\x7f-\x9f\u2028\u2029" + BIDI_CONTROLS + "]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _masked(text: str) -> str:
    """``secrets.mask``: a secret is known only once replydesk.secrets fetched it, so a command that
    never loaded that module has none to mask (and the read commands do not load it for this)."""
    loaded = sys.modules.get("replydesk.secrets")
    return loaded.mask(text) if loaded is not None else text


def emit_json(obj: Any, out: Any = None) -> None:
    import json

    out = out or sys.stdout
    out.write(_masked(_json_safe(json.dumps(obj, ensure_ascii=False, indent=None))) + "\n")


def say(text: str = "") -> None:
    """Every text line the CLI prints goes through here: ids, names and subjects can come from
    customers or imported files, so control and bidi characters are made visible at this one sink."""
    sys.stdout.write(_masked(visible(text)) + "\n")


def complain(text: str) -> None:
    """Errors on stderr: they quote what the user or a file gave us, so the same rule applies."""
    sys.stderr.write(_masked(visible(f"replydesk: {text}")) + "\n")


# ---- workspace ------------------------------------------------------------------------------------


def _workspace(args: argparse.Namespace) -> Workspace:
    from pathlib import Path

    from replydesk.config import load_config
    from replydesk.config_watch import ConfigSource
    from replydesk.paths import config_digest, default_config_path, default_data_dir
    from replydesk.workspace import Workspace

    explicit = Path(args.config) if args.config else None
    digest = config_digest(explicit)  # of the bytes before they are read: an edit in between shows later
    config, path = load_config(explicit)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    watched = path or default_config_path()  # a config created while running is followed too
    return Workspace(data_dir=data_dir, config=config, config_digest=digest,
                     config_source=ConfigSource(watched, lambda: load_config(watched)[0]))


def _demo_workspace(args: argparse.Namespace) -> Workspace:
    from pathlib import Path

    from replydesk.config import demo_config, load_config
    from replydesk.config_watch import ConfigSource
    from replydesk.paths import default_data_dir
    from replydesk.workspace import Workspace

    faults = parse_faults(args.faults) if getattr(args, "faults", None) else None
    base = demo_config(seed=args.seed, faults=faults, pace=getattr(args, "pace", None))
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir() / "demo"
    if not args.config:
        return Workspace(data_dir=data_dir, config=base)
    path = Path(args.config)

    def build() -> Config:
        user, _ = load_config(path)
        return user.model_copy(update={"accounts": base.accounts})

    return Workspace(data_dir=data_dir, config=build(), config_source=ConfigSource(path, build))


def parse_faults(spec: str) -> Any:
    """``fail=0.3,latency=200ms,ratelimit=0.1,offline=1,lost_ack=0.2`` → validated fault settings
    (the demo provider's ``DemoFaults``)."""
    from replydesk.providers.demo import DemoFaults

    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise UsageError(f"--faults: expected key=value, got {part!r}")
        key = key.strip()
        if key not in DemoFaults.model_fields:
            raise UsageError(f"--faults: unknown fault {key!r} (known: {', '.join(DemoFaults.model_fields)})")
        value = value.strip()
        if key == "offline":
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise UsageError(f"--faults: offline={value!r}: expected 1 or 0")
            values[key] = value.lower() in ("1", "true", "yes", "on")
        else:
            values[key] = value
    from pydantic import ValidationError

    try:
        return DemoFaults.model_validate(values)
    except ValidationError as exc:  # one line: which fault, what was given, what is accepted
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{field}={values.get(field, '')!s}: {msg}")
        raise UsageError("--faults: " + "; ".join(problems)) from None


def _open(args: argparse.Namespace, create: bool = True) -> tuple[Workspace, Database]:
    ws = _demo_workspace(args) if getattr(args, "command", None) == "demo" else _workspace(args)
    args.db_where = (ws.data_dir / "replydesk.db", ws.config.sync.lock_timeout)  # for error messages
    return ws, ws.open_db(create=create)


def _open_to_read(args: argparse.Namespace, *, sla: bool = False, create: bool = False) -> Database:
    """The workspace for a command that only reads it (search, show, the outbox list).

    When the workspace last validated this very config file (same path and bytes, and its SLA
    policies are the ones in force) it remembers the validated SLA settings, and this opens the
    database alone: no config machinery (pydantic, yaml), which would be most of the command's
    time. Otherwise (an edited, new or broken config, no workspace yet) it is ``_open``: the
    config is validated, errors are reported and a policy edit is applied, as for any command.
    """
    import contextlib
    from pathlib import Path

    from replydesk.paths import config_digest, default_data_dir
    from replydesk.storage import remembered
    from replydesk.storage.db import StorageError, open_database

    digest = config_digest(Path(args.config) if args.config else None)
    if digest is not None:
        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
        with contextlib.suppress(StorageError):
            db = open_database(data_dir, create=False)
            settings = remembered.recall(db, digest)
            if settings is not None:
                if sla:
                    from replydesk.sla import SlaEngine
                    from replydesk.slaspec import SettingsData

                    db.sla = SlaEngine(SettingsData.from_json(settings))
                return db
            db.close()
    return _open(args, create=create)[1]


def default_data_dir() -> Path:
    from replydesk.paths import default_data_dir as data_dir

    return data_dir()


def _joined(args: argparse.Namespace) -> bool:
    """Whether the workspace is joined to a team (a file in it): looked at before the team
    commands' module is imported, so a solo workspace's commands never load it."""
    from pathlib import Path

    from replydesk.paths import TEAM_FILE

    return (Path(args.data_dir) if args.data_dir else default_data_dir()).joinpath(TEAM_FILE).exists()


def _conv(db: Database, ref: str) -> str:
    conv_id = queries.resolve_conversation(db, ref)
    if conv_id is None:
        raise UsageError(f"no conversation matches {ref!r} (use the id shown by 'replydesk search' or 'export')")
    return conv_id


# ---- commands -------------------------------------------------------------------------------------


def cmd_tui(args: argparse.Namespace) -> int:
    from replydesk.tui.app import run_tui

    ws = _demo_workspace(args) if args.command == "demo" else _workspace(args)
    ws.open_db().close()  # create or migrate it, and meet a damaged or locked file here, in one line
    return run_tui(ws)


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.headless:
        return cmd_tui(args)
    return cmd_sync(args)


def cmd_sync(args: argparse.Namespace) -> int:
    import asyncio

    from replydesk.storage.lock import EngineLock

    ws, db = _open(args)
    if not ws.syncs:
        raise UsageError("no accounts configured: add one to the config (see config.example.yaml)")
    lock = EngineLock(ws.data_dir)
    if not lock.acquire():
        complain(f"another replydesk is already syncing {ws.data_dir}")
        return EXIT_ERROR
    try:
        engine = ws.engine(db, follow_config=not args.once, on_health=lock.note)
        if args.once:
            report = asyncio.run(engine.run_once())
            if ws.team is not None:  # a joined workspace: one push and pull with the team
                _say_team_pass(report, args.json)
                return EXIT_OK
            if args.json:
                emit_json({"fetched": report.fetched, "sent": report.sent, "errors": report.errors})
            else:
                for account, n in report.fetched.items():
                    err = report.errors.get(account)
                    say(f"{account}: {n} new message(s)" + (f" — {err}" if err else ""))
                say(f"sent {report.sent} repl{'y' if report.sent == 1 else 'ies'}")
                c = queries.counts(db)
                say(f"{c.open} open, {c.breached} breached, {c.warning} warning in {ws.data_dir}")
            return EXIT_OK
        receiver = _start_receiver(ws) if ws.config.webhooks.enabled else None
        say(f"syncing {len(ws.config.accounts)} account(s) into {ws.data_dir}; Ctrl-C stops")
        try:
            return _run_forever(engine)
        finally:
            if receiver is not None:
                receiver.stop()
    finally:
        lock.release()
        db.close()


def _start_receiver(ws: Workspace) -> Any:
    """The webhook receiver on a thread of ``replydesk sync`` (its own store: it never waits for the engine)."""
    from replydesk import webhooks

    settings = ws.config.webhooks
    app = webhooks.build_app(ws.config, ws.data_dir)
    for problem in webhooks.setup_problems(app):
        complain(f"webhooks: {problem}")
    receiver = webhooks.Receiver(app, settings.host, settings.port)
    try:
        receiver.start()
    except OSError as exc:
        raise UsageError(f"webhooks: {exc}") from None
    say(f"receiving webhooks on http://{settings.host}:{receiver.port}{settings.path}/meta")
    return receiver


def cmd_webhooks(args: argparse.Namespace) -> int:
    """``serve``: the receiver alone (the engine, in ``sync`` or the console, ingests what it keeps);
    ``token``: the verification token to paste into Meta's dashboard, made once and kept in the keyring."""
    import signal

    from replydesk import webhooks

    ws = _workspace(args)
    if args.webhooks_command == "token":
        token = secrets.fetch(webhooks.VERIFY_TOKEN_ENTRY)
        if token is None or args.new:
            import secrets as random

            token = random.token_urlsafe(24)
            secrets.store(webhooks.VERIFY_TOKEN_ENTRY, token)
        # The one secret printed on purpose, unmasked: the user asked for it, to paste into Meta's dashboard.
        sys.stdout.write(visible(token) + "\n")
        return EXIT_OK
    settings = ws.config.webhooks
    app = webhooks.build_app(ws.config, ws.data_dir)
    if not app.providers:
        raise UsageError("no account takes webhooks (facebook, instagram, whatsapp or a demo in push mode)")
    for problem in webhooks.setup_problems(app):
        complain(problem)
    receiver = webhooks.Receiver(app, args.host or settings.host, settings.port if args.port is None else args.port)
    stopping = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)  # before the server's thread starts: it inherits the mask
    try:
        try:
            receiver.start()
        except OSError as exc:
            complain(str(exc))
            return EXIT_ERROR
        sys.stdout.write(f"receiving webhooks for {', '.join(app.providers)} on "
                         f"http://{receiver.config.host}:{receiver.port}{settings.path}/meta "
                         f"(or {settings.path}/ACCOUNT); Ctrl-C stops\n")
        sys.stdout.flush()
        signal.sigwait(stopping)  # Ctrl-C or a service manager's SIGTERM: close cleanly
    finally:
        receiver.stop()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
    say("stopped")
    return EXIT_OK


def cmd_templates(args: argparse.Namespace) -> int:
    """The approved message templates the engine last fetched (WhatsApp), for ``reply --template``."""
    from replydesk.storage import templates

    _, db = _open(args, create=False)
    names = [args.account] if args.account else templates.accounts(db)
    found = {name: templates.of_account(db, name) for name in names}
    if args.json:
        emit_json({name: [{"name": t.name, "language": t.language, "category": t.category, "body": t.body,
                           "params": list(t.params)} for t in ts] for name, ts in found.items()})
        return EXIT_OK
    if not any(found.values()):
        say("no templates yet: the sync engine fetches an account's approved templates hourly")
    for name, ts in found.items():
        for t in ts:
            say(f"{name}  {t.name} ({t.language}, {t.category or '-'}, {len(t.params)} variable(s)): "
                f"{one_line(t.body)[:70]}")
    return EXIT_OK


def _say_team_pass(report: Any, as_json: bool) -> None:
    if as_json:
        emit_json({"pushed": report.pushed, "refused": report.refused, "pulled": report.pulled,
                   "cursor": report.cursor, "head": report.head})
        return
    say(f"pushed {report.pushed} change(s), pulled {report.pulled} event(s); at {report.cursor} of {report.head}")
    for text in report.refused:
        complain(text)


def _run_forever(engine: Any) -> int:
    import asyncio
    import signal

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, engine.stop)
        await engine.run()

    asyncio.run(main())
    say("stopped")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    import json

    _, db = _open(args, create=False)
    from replydesk.storage.files import open_private

    out = open_private(args.output) if args.output else sys.stdout  # customer data: 0600, whatever the umask
    try:
        records = exchange.export_records(db)
        if args.format == "json":  # one element at a time: an export of a million messages stays small
            out.write("[")
            for n, record in enumerate(records):
                out.write(("," if n else "") + "\n" + _json_safe(json.dumps(record, ensure_ascii=False, indent=2)))
            out.write("\n]\n")
        else:
            for record in records:
                emit_json(record, out)
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from replydesk.storage import importer

    _, db = _open(args)
    show = None if (args.json or args.quiet or not sys.stderr.isatty()) else _ImportProgress(args.file)
    try:
        result = importer.import_file(db, args.file, progress=show.update if show else None)
    except importer.ImportError_ as exc:
        raise UsageError(str(exc)) from None
    finally:
        if show:
            show.close()
    if args.json:
        emit_json(result.as_json())
    elif not args.quiet:
        resumed = (f" (continued after {result.resumed_after:,} record(s) an interrupted run had imported)"
                   if result.resumed_after else "")
        say(f"imported {result.conversations:,} conversation(s), {result.messages:,} new message(s){resumed}")
    return EXIT_OK


class _ImportProgress:
    """A progress bar on a terminal's stderr (rich, which Textual brings anyway); nothing otherwise."""

    def __init__(self, source: str) -> None:
        import contextlib

        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        total = None
        with contextlib.suppress(OSError):
            total = os.stat(source).st_size if source != "-" else None
        self.bar = Progress(TextColumn("importing"), BarColumn(), DownloadColumn(), TextColumn("{task.description}"),
                            TimeRemainingColumn(), transient=True, console=_stderr_console())
        self.task = self.bar.add_task("", total=total)
        self.bar.start()

    def update(self, done: int, result: Any) -> None:
        self.bar.update(self.task, completed=done,
                        description=f"{result.conversations:,} conversations, {result.messages:,} messages")

    def close(self) -> None:
        self.bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _row_json(row: queries.InboxRow) -> dict[str, Any]:
    return {
        "id": row.id, "account": row.account, "platform": row.platform, "kind": row.kind,
        "customer": {"name": row.customer, "handle": row.handle}, "subject": row.subject,
        "snippet": row.snippet, "status": row.status, "assignee": row.assignee, "priority": row.priority,
        "tags": list(row.tags), "escalated": row.escalated, "sla_state": row.sla_state,
        "sla_due_at": iso(row.sla_due_at), "last_message_at": iso(row.last_message_at),
    }


def cmd_search(args: argparse.Namespace) -> int:
    db = _open_to_read(args)
    for problem in search.problems(args.query):
        complain(problem)
    hits, f = search.search(db, args.query, limit=args.limit)
    rows = queries.inbox_page(db, f.with_(statuses=f.statuses), 0, max(args.limit, 500))
    by_id = {h.conversation_id: h for h in hits}
    rows.sort(key=lambda r: (-r.last_message_at, r.id))  # newest first, as README says
    rows = rows[: args.limit]
    if args.json:
        emit_json({"query": args.query, "results": [
            {**_row_json(r), "match": by_id[r.id].snippet if r.id in by_id else None} for r in rows
        ]})
        return EXIT_OK
    if not rows:
        say("no matches")
    for r in rows:
        hit = by_id.get(r.id)
        say(f"{r.id}  {r.platform:<9} {one_line(r.customer)[:24]:<24} {r.status:<8} "
            f"{one_line(hit.snippet if hit else r.snippet)[:70]}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    db = _open_to_read(args, sla=True)
    conv_id = _conv(db, args.conversation)
    record = exchange.export_record(db, conv_id, db.now())
    if args.json:
        emit_json(record)
        return EXIT_OK
    say(f"{record['id']}  {record['platform']} {record['kind']}  {record['status']}"
        + (f"  assignee {visible(record['assignee'])}" if record["assignee"] else "")
        + ("  ESCALATED" if record["escalated"] else ""))
    say(f"customer: {one_line(record['customer']['name'])} {one_line(record['customer']['handle'] or '')}")
    if record["subject"]:
        say(f"subject: {one_line(record['subject'])}")
    if record["tags"]:
        say("tags: " + ", ".join(one_line(t) for t in record["tags"]))
    sla = record["sla"]
    say(f"SLA: {sla['state']}" + (f" ({sla['policy']})" if sla.get("policy") else ""))
    say("")
    for m in record["messages"]:
        arrow = {"in": "←", "out": "→", "note": "✎"}[m["direction"]]
        state = "" if m["state"] in ("received", "sent") else f" [{m['state']}]"
        say(f"{arrow} {m['created_at']} {one_line(m['author'])}{state}")
        for line in visible(m["text"]).splitlines() or [""]:
            say(f"    {line}")
    return EXIT_OK


def cmd_reply(args: argparse.Namespace) -> int:
    ws, db = _open(args)
    conv_id = _conv(db, args.conversation)
    at = None
    if args.at:
        from replydesk.timeparse import parse_when

        try:
            at = parse_when(args.at, db.now(), ws.config.ui.timezone)
        except ValueError as exc:
            raise UsageError(f"--at: {exc}") from None
        if at <= db.now():
            raise UsageError(f"--at: {args.at!r} has already passed (it would send at once); "
                             "leave --at out to send now")
    template, send_as = None, args.send_as
    if args.template:
        text, template = _template_reply(db, conv_id, args.template, args.param or [])
        send_as = "template"
    elif args.text is None:
        raise UsageError("reply needs --text (or --template NAME with its --param values)")
    else:
        text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        raise UsageError("--text is empty: a reply needs words")
    try:
        key = outbox.queue_reply(db, conv_id, text, private=args.private, at=at, actor=ws.config.ui.agent,
                                 to_automatic=args.force, send_as=send_as, template=template)
    except outbox.AutomaticRecipient as exc:
        complain(f"{exc}: use --force to send it anyway")
        return EXIT_ERROR
    except outbox.OutsideReplyWindow as exc:
        complain(str(exc) + "".join(_window_hints(exc.verdict.choices)))
        return EXIT_ERROR
    item = outbox.get(db, key)
    if args.json:
        emit_json(outbox.as_json(item))
    elif item.action == "edit_reply":  # the platform keeps one reply of ours (a Google review)
        say(f"our reply on {conv_id} is up and the platform keeps one: queued an edit of it ({key}); "
            "the sync engine sends it")
    else:
        when = f" (leaves at {iso(item.not_before)})" if at else ""
        say(f"queued reply {key} to {conv_id}{when}; it is sent by the sync engine")
    return EXIT_OK


def _template_reply(db: Database, conv_id: str, spec: str, values: list[str]) -> tuple[str, dict[str, Any]]:
    """(the text the customer will read, what the outbox keeps) for ``--template NAME[:LANGUAGE]``."""
    from replydesk.storage import templates

    name, _, language = spec.partition(":")
    account, found = templates.for_conversation(db, conv_id, name, language or None)
    if found is None:
        raise UsageError(f"no approved template {spec!r} for {account} (replydesk templates lists them)")
    if len(values) != len(found.params):
        raise UsageError(f"template {found.name} needs {len(found.params)} --param value(s) "
                         f"({', '.join(found.params) or 'none'}), got {len(values)}")
    return found.fill(values), found.as_reply(values)


def _window_hints(choices: Sequence[tuple[str, float | None]]) -> list[str]:
    """What the CLI can do about a closed reply window: the choices as options."""
    from replydesk.windows import HUMAN_AGENT

    hints = []
    for choice, _ in choices:
        if choice == HUMAN_AGENT:
            hints.append(f"\n  to send it with the human-agent tag: add --send-as {HUMAN_AGENT}")
        elif choice == "public":
            hints.append("\n  to answer the comment publicly instead: leave out --private")
        elif choice == "template":
            hints.append("\n  to send an approved template: --template NAME --param VALUE … "
                         "(replydesk templates lists them)")
    return hints


def cmd_action(args: argparse.Namespace) -> int:
    """Mark read on the platform, edit or delete our own reply: queued in the outbox like a reply."""
    ws, db = _open(args)
    conv_id = _conv(db, args.conversation)
    payload: dict[str, Any] = {}
    if args.message:
        payload["message_id"] = args.message
    if args.action == "edit_reply":
        if args.text is None:
            raise UsageError("edit_reply needs --text (the reply's new text)")
        payload["text"] = sys.stdin.read() if args.text == "-" else args.text
    elif args.text is not None:
        raise UsageError(f"--text is for edit_reply, not {args.action}")
    key = outbox.queue_action(db, conv_id, args.action, payload, actor=ws.config.ui.agent)
    item = outbox.get(db, key)
    if args.json:
        emit_json(outbox.as_json(item))
    else:
        say(f"queued {args.action} {key} on {conv_id} ({one_line(item.summary())[:60]}); the sync engine does it")
    return EXIT_OK


def cmd_note(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise UsageError("--text is empty: a note needs words")
    ws, db = _open(args)
    actions.add_note(db, _conv(db, args.conversation), args.text, actor=ws.config.ui.agent)
    say("note added")
    return EXIT_OK


def cmd_outbox(args: argparse.Namespace) -> int:
    reading = not (args.retry or args.discard or args.confirm_sent)
    db = _open_to_read(args, create=True) if reading else _open(args)[1]
    if args.retry:
        outbox.retry(db, args.retry)
        say(f"reply {args.retry} queued again")
        return EXIT_OK
    if args.discard:
        outbox.cancel(db, args.discard)
        say(f"reply {args.discard} discarded")
        return EXIT_OK
    if args.confirm_sent:
        outbox.confirm_sent(db, args.confirm_sent)
        say(f"reply {args.confirm_sent} recorded as sent")
        return EXIT_OK
    items = outbox_items.pending(db)
    if args.json:
        emit_json([outbox_items.as_json(i) for i in items])
        return EXIT_OK
    if not items:
        say("outbox empty: every reply has left")
    for i in items:
        err = f" — {one_line(i.last_error)}" if i.last_error else ""
        kind = "" if i.is_reply else f"[{i.action}] "
        say(f"{i.key}  {i.state:<8} {i.conversation_id}  {kind}{one_line(i.summary())[:50]}{err}")
    return EXIT_OK


def _bulk(action: str, label: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        ws, db = _open(args)
        ids = [_conv(db, ref) for ref in args.conversations]
        getattr(actions, action)(db, ids, actor=ws.config.ui.agent)
        say(f"{label} {len(ids)} conversation(s)")
        return EXIT_OK

    return run


def cmd_tag(args: argparse.Namespace) -> int:
    ws, db = _open(args)
    conv_id = _conv(db, args.conversation)
    fn = actions.tag if args.command == "tag" else actions.untag
    fn(db, [conv_id], args.tags, actor=ws.config.ui.agent)
    row = queries.get_row(db, conv_id)
    say(f"{conv_id} tags: " + (", ".join(one_line(t) for t in row.tags) or "(none)"))
    return EXIT_OK


def cmd_assign(args: argparse.Namespace) -> int:
    ws, db = _open(args)
    who = None if args.who in ("-", "none", "") else args.who
    actions.assign(db, [_conv(db, args.conversation)], who, actor=ws.config.ui.agent)
    say(f"assigned to {who}" if who else "unassigned")
    return EXIT_OK


def cmd_escalate(args: argparse.Namespace) -> int:
    ws, db = _open(args)
    conv_id = _conv(db, args.conversation)
    desk = ws.config.ticket_account(args.target)
    with db.transaction():  # the escalation and its ticket, or neither
        actions.escalate(db, [conv_id], target=args.target, reason=args.reason or "",
                         note=args.note or "", actor=ws.config.ui.agent)
        key = outbox.queue_ticket(db, conv_id, account=desk, target=args.target, reason=args.reason or "",
                                  note=args.note or "", actor=ws.config.ui.agent) if desk else None
    say(f"escalated to {args.target}" + (f"; ticket {key} queued for {desk} (the sync engine creates it)"
                                          if key else ""))
    return EXIT_OK


def cmd_snooze(args: argparse.Namespace) -> int:
    from replydesk.timeparse import parse_when

    ws, db = _open(args)
    try:
        until = parse_when(args.until, db.now(), ws.config.ui.timezone)
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None
    actions.snooze(db, [_conv(db, args.conversation)], until, actor=ws.config.ui.agent)
    say(f"snoozed until {iso(until)}")
    return EXIT_OK


def cmd_sla(args: argparse.Namespace) -> int:
    from replydesk.model import parse_iso

    _, db = _open(args, create=False)
    conv_id = _conv(db, args.conversation)
    try:
        at = parse_iso(args.at) if args.at else db.now()
    except ValueError:
        raise UsageError("--at: expected an ISO 8601 time such as 2026-11-20T09:30:00Z") from None
    result = slastate.evaluate_at(db, conv_id, at)
    doc = {"conversation": conv_id, "policy": result.policy if result else None, "at": iso(at),
           "metrics": [m.to_json() for m in result.metrics] if result else []}
    if args.json:
        emit_json(doc)
        return EXIT_OK
    say(f"{conv_id}: policy {doc['policy'] or '(none applies)'} at {doc['at']}")
    for m in doc["metrics"]:
        left, business = m["calendar_seconds_left"], m["business_seconds_left"]
        say(f"  {m['metric']:<12} {m['state']:<9} target {_duration(m['target_seconds'])} ({m['calendar']})"
            + (f" due {m['due_at']}" if m["due_at"] else "")
            + (f" left {_duration(left)}" if left is not None else "")
            + (f" (business {_duration(business)})" if business is not None and m["calendar"] != "24x7" else "")
            + (f" met {m['fulfilled_at']}" if m["fulfilled_at"] else "")
            + (f" paused: {m['paused_reason']}" if m["paused_reason"] else ""))
    return EXIT_OK


def _duration(seconds: float) -> str:
    """``45m``, ``3h 05m``, ``2d 04h``, ``-1h 10m`` (past due): what the console shows."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{sign}{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d {hours:02d}h"


def cmd_report(args: argparse.Namespace) -> int:
    import contextlib

    from replydesk.model import parse_iso
    from replydesk.reporting import run_report

    ws, db = _open(args, create=False)
    with contextlib.suppress(ValueError):  # an unreadable time is run_report's to explain
        since = parse_iso(args.since) if args.since else None
        until = parse_iso(args.until) if args.until else db.now()
        if since is not None and since >= until:
            raise UsageError(f"--since ({args.since}) must be before --until ({args.until or 'now'})")
    return run_report(ws, db, args, emit_json, say)


def cmd_login(args: argparse.Namespace) -> int:
    import getpass

    ws = _workspace(args)
    account = ws.config.account(args.account)
    if account is None:
        raise UsageError(f"no account {args.account!r} in the config")
    if hasattr(account, "oauth_app"):
        return _login_oauth(args, account)
    print(f"{args.account}: enter {account.secret_hint}", file=sys.stderr)
    if not secrets.backend_available():
        complain(secrets.NO_BACKEND_HELP.format(env=secrets.env_name(args.account)))
        return EXIT_ERROR
    secret = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("secret: ")
    try:
        secrets.store(args.account, secret)
        if getattr(account, "provider", "") in META_PROVIDERS:  # the app's secret signs its webhooks
            from replydesk.providers.meta import APP_SECRET_SUFFIX

            entry = args.account + APP_SECRET_SUFFIX
            had = secrets.fetch(entry) is not None
            print(f"{args.account}: enter the Meta app's secret (App settings → Basic → App secret)"
                  + ("; empty keeps the one stored" if had else ""), file=sys.stderr)
            app_secret = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("secret: ")
            if app_secret:
                secrets.store(entry, app_secret)
            elif had:
                say(f"stored the token for {args.account}; kept the app secret already stored")
                return EXIT_OK
            else:
                complain(f"stored the token for {args.account}, but no app secret: its webhooks are refused "
                         f"until `replydesk login {args.account}` stores it")
                return EXIT_ERROR
    except secrets.SecretError as exc:
        complain(str(exc))
        return EXIT_ERROR
    where, protects, encrypted = secrets.backend_info()
    say(f"stored the secret for {args.account} in {where}: {protects}")
    if not encrypted:
        say("for encryption at rest, run a desktop keyring (GNOME Keyring, KWallet) or keep the secret in "
            f"the environment variable {secrets.env_name(args.account)} instead")
    return EXIT_OK


def _login_oauth(args: argparse.Namespace, account: Any) -> int:
    """OAuth 2.0 with PKCE (X): the browser approves, the redirect or a pasted URL brings the code,
    the tokens go to the keyring. Over SSH the URL is printed and the redirected address pasted."""
    import asyncio
    import getpass

    from replydesk.providers import oauth

    if not secrets.backend_available():
        complain("OAuth tokens are renewed as they are used, so they need a keyring: "
                 + secrets.NO_BACKEND_HELP.format(env="(no environment variable will do here)"))
        return EXIT_ERROR
    if getattr(account, "confidential", False):
        print(f"{args.account}: enter the app's OAuth 2.0 Client Secret", file=sys.stderr)
        client_secret = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("secret: ")
        secrets.store(args.account + oauth.CLIENT_SECRET_SUFFIX, client_secret)

    def tell(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        asyncio.run(oauth.login(account.oauth_app(), oauth.TokenStore(args.account), say=tell,
                                open_browser=not args.no_browser, port=getattr(account, "callback_port", 0)))
    except oauth.OAuthError as exc:
        complain(str(exc))
        return EXIT_ERROR
    except Exception as exc:  # the token endpoint's errors (ProviderError) name the reason
        from replydesk.providers.base import ProviderError

        if not isinstance(exc, ProviderError):
            raise
        complain(str(exc))
        return EXIT_ERROR
    say(f"logged in: the {account.provider} tokens for {args.account} are in the system keyring")
    return EXIT_OK


def cmd_locations(args: argparse.Namespace) -> int:
    """The places an account's login manages (Google Business Profile locations), to pick in the
    config. Asks the platform now; the engine need not run."""
    import asyncio

    from replydesk import providers
    from replydesk.providers.base import ProviderError

    ws = _workspace(args)
    account = ws.config.account(args.account)
    if account is None:
        raise UsageError(f"no account {args.account!r} in the config")
    provider = providers.create(account, ws.data_dir, secrets.getter(account.name))
    if not hasattr(provider, "list_locations"):
        raise UsageError(f"account {args.account!r} ({account.provider}) has no locations to list")

    async def listing() -> list[Any]:
        try:
            return await provider.list_locations()
        finally:
            await provider.aclose()

    try:
        found = asyncio.run(listing())
    except ProviderError as exc:
        complain(str(exc))
        return EXIT_ERROR
    chosen = set(getattr(account, "locations", None) or ())
    if args.json:
        emit_json([{"name": loc.name, "title": loc.title, "address": loc.address, "account": loc.account,
                    "chosen": not chosen or loc.name in chosen} for loc in found])
        return EXIT_OK
    if not found:
        say(f"{args.account}: the login manages no locations")
        return EXIT_OK
    for loc in found:
        mark = "*" if not chosen or loc.name in chosen else " "
        where = f" · {one_line(loc.address)}" if loc.address else ""
        group = f"  ({one_line(loc.account)})" if loc.account else ""
        say(f"{mark} {loc.name}  {one_line(loc.title)}{where}{group}")
    say(f"\n* answered now ({'every location' if not chosen else 'the ones in the config'}); to pick some, "
        f"list them in the account's locations:, e.g.\n  locations: [{found[0].name}]")
    return EXIT_OK


def cmd_accounts(args: argparse.Namespace) -> int:
    from replydesk.storage.db import DATABASE_ERRORS, StorageError

    ws = _demo_workspace(args) if args.command == "demo" else _workspace(args)
    states: dict[str, dict] = {}
    db_path = ws.data_dir
    problem = ""
    try:
        db = ws.open_db(create=False)
        states = {s["account"]: s for s in queries.account_states(db)}
    except StorageError as exc:
        problem = str(exc) if exc.kind != "missing" else ""
    except DATABASE_ERRORS as exc:
        from replydesk.storage.faults import explain

        problem = explain(exc, ws.data_dir / "replydesk.db")
    rows = []
    for a in ws.config.accounts:
        s = states.pop(a.name, {})
        rows.append({"name": a.name, "provider": a.provider, "state": s.get("state", "never synced"),
                     "detail": s.get("detail", ""), "note": s.get("note", ""), "last_sync": iso(s.get("last_sync")),
                     "configured": True, "secret": _secret_state(a)})
    # Accounts the workspace holds data of that this config does not name (the demo's, an import's):
    # the cache still shows them, so say so rather than "no accounts".
    for name, s in sorted(states.items()):
        rows.append({"name": name, "provider": s.get("platform", ""), "state": s.get("state", "idle"),
                     "detail": s.get("detail", ""), "note": s.get("note", ""),
                     "last_sync": iso(s.get("last_sync")), "configured": False, "secret": "n/a"})
    if args.json:
        emit_json(rows)
    else:
        if not rows:
            say(f"no accounts configured and none in the workspace {db_path}: add one to the config "
                "(see config.example.yaml), or try 'replydesk demo'")
        for r in rows:
            where = "" if r["configured"] else "  (in the workspace, not in this config: its cache is read-only here)"
            say(f"{r['name']:<16} {r['provider']:<9} {r['state']:<13} secret {r['secret']:<7} "
                f"last sync {r['last_sync'] or 'never'} {one_line(r['detail'])}"
                + (f" · {one_line(r['note'])}" if r["note"] else "") + where)
        if any(a.provider not in ("demo", "demo-helpdesk") for a in ws.config.accounts):
            backend, protects, _ = secrets.backend_info()
            say(f"secrets: {backend}: {protects}")
    if problem:  # the accounts are listed from the config; their sync state could not be read
        complain(f"sync states unknown: {problem}")
        return EXIT_ERROR
    return EXIT_OK


def _secret_state(account: Any) -> str:
    """``set``, ``missing``, or for a Meta account without its app secret ``no app secret`` (its
    webhooks cannot be verified, so none is accepted)."""
    if account.provider in ("demo", "demo-helpdesk"):
        return "n/a"
    if not (secrets.fetch(account.name) or secrets.fetch(account.name + ":oauth")):
        return "missing"
    if account.provider in META_PROVIDERS and not secrets.fetch(account.name + ":app-secret"):
        return "no app secret"
    return "set"


def cmd_config_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from replydesk.config import load_config

    config, path = load_config(Path(args.config) if args.config else None)
    summary = {
        "file": str(path) if path else None,
        "accounts": [{"name": a.name, "provider": a.provider} for a in config.accounts],
        "sla_policies": [p.name for p in config.sla.policies],
        "sla_calendars": sorted(config.sla.calendars),
        "views": [v.name for v in config.ui.views],
        "keymap": config.keymap,
        "rules": [r.name for r in config.rules],
        "csat_accounts": sorted(config.csat.accounts),
        "listening": [q.name for q in config.listening],
    }
    if args.json:
        emit_json(summary)
        return EXIT_OK
    say(f"{path or '(no config file: built-in defaults)'}: OK")
    say(f"  accounts: {', '.join(f'{a.name} ({a.provider})' for a in config.accounts) or 'none'}")
    say(f"  SLA policies: {', '.join(summary['sla_policies'])}")
    say(f"  calendars: {', '.join(summary['sla_calendars']) or '24x7 only'}")
    say(f"  views: {', '.join(summary['views'])}")
    if config.listening:
        say(f"  listening: {', '.join(summary['listening'])}")
    say(f"  rules: {', '.join(summary['rules']) or 'none'}")
    if summary["csat_accounts"]:
        say(f"  satisfaction survey: {', '.join(summary['csat_accounts'])}")
    return EXIT_OK


def cmd_rules_test(args: argparse.Namespace) -> int:
    """The dry run: what the rules would have done to the stored history. Nothing changes."""
    from replydesk import rules
    from replydesk.slaspec import parse_duration

    ws, db = _open(args, create=False)
    if not ws.config.rules:
        raise UsageError("no rules in the config: add a rules: section (see config.example.yaml)")
    until = db.now()
    try:
        since = until - parse_duration(args.since)
    except ValueError:
        from replydesk.model import parse_iso

        try:
            since = parse_iso(args.since)
        except ValueError:
            raise UsageError("--since: expected a duration (30d, 12h) or an ISO 8601 time") from None
    try:
        report = rules.dry_run(db, ws.config, since, until, args.rule)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    if args.json:
        emit_json(report.to_json())
        return EXIT_OK
    for line in rules.describe(report):
        say(line)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from replydesk.storage.doctor import check

    ws = _workspace(args) if args.command != "demo" else _demo_workspace(args)
    report = check(ws.data_dir, repair=args.repair)
    if any(a.provider != "demo" for a in ws.config.accounts):
        where, protects, _ = secrets.backend_info()
        report["findings"].append(f"secrets: {where}: {protects}")
    if args.json:
        emit_json(report)
    else:
        for line in report["findings"]:
            say(line)
    return EXIT_OK if report["ok"] else EXIT_ERROR


# ---- argument parsing -----------------------------------------------------------------------------


class _NotBuilt:
    """Stands in for the parser of a command that is not being run: building all 23 costs 3 ms
    of the start-up of the one that is (``build_parser(only=...)``); its definition is skipped."""

    def __getattr__(self, name: str) -> Callable[..., _NotBuilt]:
        return lambda *args, **kwargs: self


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it ($COLUMNS, stdout, else 80)."""
    try:
        if int(os.environ.get("COLUMNS", "0")) > 0:
            return int(os.environ["COLUMNS"])
    except ValueError:
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


#: The top-level options and whether each takes a value (argparse also accepts unique prefixes).
_TOP_OPTIONS = {"--data-dir": True, "--config": True, "--version": False, "--help": False}


def _scan(argv: Sequence[str]) -> tuple[str | None, bool, bool]:
    """(the first word, which argparse takes for the command; whether everything before it is a
    plainly spelled top-level option; whether the top-level help is asked for, -h or --help)."""
    helps = False
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            return arg, True, helps
        option, has_value, _ = arg.partition("=")
        known = [o for o in _TOP_OPTIONS if o.startswith(option)] if option.startswith("--") and len(option) > 2 else []
        if option == "-h" or known == ["--help"]:
            helps = True
            continue
        if len(known) != 1 or (_TOP_OPTIONS[known[0]] and not has_value and next(args, None) is None):
            return None, False, helps
    return None, True, helps


def command_in(argv: Sequence[str]) -> str | None:
    """The word argparse will take for the command, or None when that is not plain (the console,
    an unusual spelling, the top-level help, which lists every command): then every command's
    parser is built."""
    word, plain, helps = _scan(argv)
    return word if plain and not helps else None


def _remember_translations(argparse: Any) -> None:
    """argparse translates each of its words (``usage:``, ``options``, each ``-h``'s help) through
    gettext every time it builds a parser, and gettext looks for the catalogue on disk on every
    call: 90 us each, 6 ms of a ``--help``. The answer cannot change within one run: remember it."""
    import functools  # argparse has loaded it already

    if not getattr(argparse, "_replydesk_remembered", False):
        argparse._ = functools.lru_cache(maxsize=None)(argparse._)
        argparse.ngettext = functools.lru_cache(maxsize=None)(argparse.ngettext)
        argparse._replydesk_remembered = True


def without_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` names no command for sure (the console, the top-level help): then only the
    commands' names and one-line helps are needed, not their options (building every command's
    parser took 15-20 ms of ``replydesk --help`` and of the console's start)."""
    word, plain, _ = _scan(argv)
    return word is None and plain


def build_parser(only: str | None = None, *, names_only: bool = False) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, just that command's parser (the one being run); with
    ``names_only``, every command by name and help but none of their options (``without_command``)."""
    import argparse

    _remember_translations(argparse)

    class Formatter(argparse.HelpFormatter):
        """argparse's, told the width: its own lookup imports shutil (and bz2, lzma) at every start."""

        def __init__(self, prog: str, **kwargs: Any) -> None:
            super().__init__(prog, **{"width": _columns() - 2, **kwargs})

    common = argparse.ArgumentParser(add_help=False, formatter_class=Formatter)
    common.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="workspace directory (env REPLYDESK_HOME; default: the user data dir)")
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="config file (default: config.yaml in the user config dir)")
    jsonopt = argparse.ArgumentParser(add_help=False, formatter_class=Formatter)
    jsonopt.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser = argparse.ArgumentParser(
        prog="replydesk", parents=[common], formatter_class=Formatter,
        description="Answer customers from every platform in one terminal console. "
                    "With no command, opens the console on the configured workspace.",
        epilog="Exit codes: 0 success, 2 bad usage or config, 1 other errors. "
               "Search syntax: words, from:NAME, tag:TAG, platform:P, account:A, kind:K, assignee:WHO, "
               "is:open|pending|snoozed|resolved|escalated|breached|unread.",
    )
    parser.add_argument("--version", action="version", version=f"replydesk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    built: list[str] = []

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str, json_: bool = False,
            **kw: Any) -> Any:
        if only is not None and name != only:
            return _NotBuilt()
        built.append(name)
        if names_only:
            sub.add_parser(name, help=help_, add_help=False)
            return _NotBuilt()
        p = sub.add_parser(name, parents=[common, jsonopt] if json_ else [common], help=help_,
                           description=help_, formatter_class=Formatter, **kw)
        p.set_defaults(func=fn)
        return p

    p = add("demo", cmd_demo, "open the console on the built-in demo workspace (no account needed)")
    p.add_argument("--seed", type=int, default=42, help="the demo shop's random seed (default 42)")
    p.add_argument("--faults", metavar="SPEC", help="fault injection, e.g. fail=0.3,latency=200ms,ratelimit=0.1,offline=1 "
                   "(shares 0-1; durations as 200ms, 1.5s, 2m)")
    p.add_argument("--pace", type=float, default=None, help="seconds between new customer messages (default 20)")
    p.add_argument("--headless", action="store_true", help="run the demo's sync engine without the UI")
    p.add_argument("--once", action="store_true", help="with --headless: one pass, then exit")
    p.add_argument("--json", action="store_true", help="with --headless --once: print the pass as JSON")

    p = add("sync", cmd_sync, "run the sync engine headless (Ctrl-C stops)", json_=True)
    p.add_argument("--once", action="store_true", help="one pass over every account, then exit")

    p = add("export", cmd_export, "write every conversation with its messages, tags and SLA state")
    p.add_argument("--format", choices=("jsonl", "json"), default="jsonl")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")

    p = add("import", cmd_import, "import conversations in the export shape (idempotent; an interrupted "
            "import of a file continues where it stopped when run again)", json_=True)
    p.add_argument("file", help="a .jsonl or .json file, or - for standard input")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success (no progress, no summary)")

    p = add("search", cmd_search, "search the cache (see the syntax below)", json_=True)
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=50)

    p = add("show", cmd_show, "show one conversation with its messages", json_=True)
    p.add_argument("conversation", help="a conversation id (or a unique end of one)")

    p = add("reply", cmd_reply, "queue a reply in the outbox (the sync engine sends it)", json_=True)
    p.add_argument("conversation")
    p.add_argument("--text", help="the reply text, or - to read standard input")
    p.add_argument("--template", metavar="NAME[:LANG]",
                   help="send an approved WhatsApp template instead (allowed outside the 24-hour window)")
    p.add_argument("--param", action="append", metavar="VALUE", help="a template variable, in order (repeat)")
    p.add_argument("--private", action="store_true", help="answer privately where the platform allows")
    p.add_argument("--at", metavar="WHEN", help="send later: 2h, 'tomorrow 9:00', ISO 8601")
    p.add_argument("--force", action="store_true",
                   help="queue it even when the conversation holds only automatic mail (a bounce, an "
                        "out-of-office reply, a newsletter): without it such a reply is refused, exit 1")
    p.add_argument("--send-as", choices=("human_agent",), default=None,
                   help="outside the platform's plain reply window, send it the way the platform still allows "
                        "(human_agent: Messenger's and Instagram's human-agent tag, up to 7 days); a reply "
                        "outside every window is refused with exit 1 and the choices")

    p = add("action", cmd_action, "queue an action other than a reply on a conversation (sent by the engine)",
            json_=True)
    p.add_argument("conversation")
    p.add_argument("action", choices=("mark_read", "edit_reply", "delete_reply"),
                   help="mark_read: on the platform; edit_reply / delete_reply: our own sent reply")
    p.add_argument("--text", help="edit_reply: the new text, or - to read standard input")
    p.add_argument("--message", metavar="ID", help="which of our replies (default: the newest sent one)")

    p = add("note", cmd_note, "add an internal note (never sent)")
    p.add_argument("conversation")
    p.add_argument("--text", required=True)

    p = add("outbox", cmd_outbox, "list queued, sending, failed and unknown replies and actions", json_=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--retry", metavar="KEY", help="send a failed or unknown reply (or action) again")
    g.add_argument("--discard", metavar="KEY", help="take back a reply (or action) that has not left")
    g.add_argument("--confirm-sent", metavar="KEY", help="record an 'unknown' reply (or action) as done")

    for name in ("tag", "untag"):
        p = add(name, cmd_tag, f"{'add' if name == 'tag' else 'remove'} tags on a conversation")
        p.add_argument("conversation")
        p.add_argument("tags", nargs="+", metavar="TAG")

    p = add("assign", cmd_assign, "assign a conversation (WHO = - to unassign)")
    p.add_argument("conversation")
    p.add_argument("who")

    p = add("escalate", cmd_escalate, "escalate a conversation (raises its priority; a target with a helpdesk "
                                      "account in the config also gets a ticket, through the outbox)")
    p.add_argument("conversation")
    p.add_argument("--note", help="an internal note to go with it")
    p.add_argument("--reason", help="why (shown in the thread)")
    p.add_argument("--target", default="helpdesk", help="where to (default: helpdesk)")

    for name, verb in (("resolve", "resolved"), ("reopen", "reopened")):
        p = add(name, _bulk(name, verb), f"mark conversations {verb}")
        p.add_argument("conversations", nargs="+", metavar="CONVERSATION")

    p = add("snooze", cmd_snooze, "snooze a conversation until a time")
    p.add_argument("conversation")
    p.add_argument("--until", required=True, metavar="WHEN", help="1h, 4h, 'tomorrow 9:00', monday, ISO 8601")

    p = add("sla", cmd_sla, "SLA metrics of a conversation, now or at a past moment", json_=True)
    p.add_argument("conversation")
    p.add_argument("--at", metavar="TIME", help="replay the state at this ISO 8601 time")

    p = add("report", cmd_report, "response-time report (medians, p90, share within target, breaches)")
    p.add_argument("--since", metavar="TIME")
    p.add_argument("--until", metavar="TIME")
    p.add_argument("--by", choices=("platform", "account", "assignee", "tag", "policy"))
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON for scripts")
    out.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--what-if", metavar="POLICY_FILE", help="replay history under the SLA policies in this YAML")

    p = add("login", cmd_login, "store an account's token or password in the keyring "
            "(X and Google: log in with OAuth in the browser)",
            epilog="Where it goes: the desktop keyring when there is one (GNOME Keyring, KWallet, the macOS "
                   "Keychain, the Windows Credential Manager: encrypted at rest); with only keyrings.alt "
                   "installed, a plain file (base64, NOT encrypted). 'replydesk accounts' says which is in "
                   "use; REPLYDESK_SECRET_<ACCOUNT> in the environment is used instead when set.")
    p.add_argument("account")
    p.add_argument("--no-browser", action="store_true",
                   help="OAuth logins: only print the URL (paste the redirected address back over SSH)")

    add("accounts", cmd_accounts, "list accounts with their sync state", json_=True)

    p = add("locations", cmd_locations, "list the locations an account's login manages (Google reviews), "
            "to pick in the config", json_=True)
    p.add_argument("account")
    p = add("templates", cmd_templates, "list approved message templates (WhatsApp) as last fetched", json_=True)
    p.add_argument("account", nargs="?", help="one account (default: all)")

    p = add("webhooks", lambda a: (a.webhooks_parser.print_help(), EXIT_USAGE)[1],
            "the webhook receiver for Meta's pushed events")
    p.set_defaults(webhooks_parser=p)
    wsub = p.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND")
    w = wsub.add_parser("serve", parents=[common], help="run the receiver (Ctrl-C stops)",
                        description="run the receiver; the sync engine ingests what it keeps", formatter_class=Formatter)
    w.add_argument("--host", help="listen address (default: webhooks.host)")
    w.add_argument("--port", type=int, help="listen port (default: webhooks.port; 0: any free port)")
    w.set_defaults(func=cmd_webhooks)
    w = wsub.add_parser("token", parents=[common], help="print the verify token for Meta's dashboard",
                        description="print the verify token to paste into Meta's webhook settings "
                                    "(made once and kept in the keyring)", formatter_class=Formatter)
    w.add_argument("--new", action="store_true", help="make a new token (then update it at Meta too)")
    w.set_defaults(func=cmd_webhooks)

    p = add("config", lambda a: (a.config_parser.print_help(), EXIT_USAGE)[1], "configuration commands")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    p.set_defaults(config_parser=p)
    c = csub.add_parser("check", parents=[common, jsonopt], help="validate the config and print a summary",
                        description="validate the config and print a summary", formatter_class=Formatter)
    c.set_defaults(func=cmd_config_check)

    p = add("rules", lambda a: (a.rules_parser.print_help(), EXIT_USAGE)[1], "triage rules: try them on the history")
    rsub = p.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    p.set_defaults(rules_parser=p)
    r = rsub.add_parser("test", parents=[common, jsonopt],
                        help="dry run: what the rules would have done to the stored history (nothing changes)",
                        description="Replay the rules over the stored history and print, per rule, how many "
                                    "conversations it would have matched, what it would have done and a sample.",
                        formatter_class=Formatter)
    r.add_argument("rule", nargs="?", help="only this rule (default: all, in order)")
    r.add_argument("--since", default="30d", metavar="WHEN", help="how far back: 30d, 12h or an ISO 8601 time "
                                                                  "(default 30d)")
    r.set_defaults(func=cmd_rules_test)

    p = add("doctor", cmd_doctor, "check the workspace database and repair what is safe", json_=True)
    p.add_argument("--repair", action="store_true", help="rebuild search indexes, clear stale locks")
    if only is None or only == "contact":
        from replydesk import cli_contact

        cli_contact.register(sub, common, jsonopt, add, Formatter, EXIT_USAGE)
    if only is None or only in ("serve", "team"):  # their module is not imported for the others
        from replydesk import cli_team

        cli_team.register(sub, common, jsonopt, add, EXIT_USAGE)
    if only is not None and not built:  # not a command: the whole line, so argparse lists them all
        return build_parser()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:  # scripts and completions ask this in loops: no parser needed
        sys.stdout.write(f"replydesk {__version__}\n")
        return EXIT_OK
    parser = build_parser(only=command_in(argv), names_only=without_command(argv))
    args = parser.parse_args(argv)  # --help prints and exits here, before logging is set up
    reads = getattr(args, "func", None) in (cmd_search, cmd_show, cmd_outbox) or getattr(args, "writes", None) is False
    if os.environ.get("REPLYDESK_LOG") or not reads:
        import logging  # the read commands log nothing: 2 ms of their start-up spared

        ours = not logging.getLogger().handlers  # a host (a test runner) may have its own already
        logging.basicConfig(level=os.environ.get("REPLYDESK_LOG", "WARNING").upper(),
                            format="%(levelname)s %(name)s: %(message)s")
        if ours:
            from replydesk import logcap

            for handler in logging.getLogger().handlers:  # no flood, no secret, whatever a platform sends
                logcap.install(handler)
    for name in ("data_dir", "config"):
        if not hasattr(args, name):
            setattr(args, name, None)
    func = getattr(args, "func", None)
    try:
        if func is None:
            args.command = None
            return cmd_tui(args)
        code = func(args)
        if code == EXIT_OK and _joined(args):
            from replydesk import cli_team

            if args.command in cli_team.WRITES and getattr(args, "writes", True):
                code = cli_team.after_write(args) or code
        return code
    except UsageError as exc:
        complain(str(exc))
        return EXIT_USAGE
    except _raised("replydesk.config", "ConfigError") as exc:
        complain(f"bad config:\n{exc}")
        return EXIT_USAGE
    except (_raised("replydesk.storage.actions", "ActionError") + _raised("replydesk.storage.db", "StorageError")
            + _raised("replydesk.secrets", "SecretError")) as exc:
        complain(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        import contextlib

        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
    except (*_raised("sqlite3", "Error"), OSError) as exc:  # locked, full, read-only, damaged: one line, never a traceback
        import logging

        from replydesk.storage.faults import explain

        path, timeout = getattr(args, "db_where", (None, None))
        logging.getLogger("replydesk").debug("database error", exc_info=True)
        complain(explain(exc, path, timeout))
        return EXIT_ERROR
    except Exception as exc:  # a bug: say so in one line; REPLYDESK_LOG=debug shows the traceback
        import logging

        logging.getLogger("replydesk").debug("internal error", exc_info=True)
        complain(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                 "(run with REPLYDESK_LOG=debug for the details, and please report it)")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    # ``python -m replydesk.cli``: the command modules' ``from replydesk import cli`` must find this
    # module, not import a second copy (whose UsageError this main would not catch).
    sys.modules.setdefault("replydesk.cli", sys.modules[__name__])
    sys.exit(main())
