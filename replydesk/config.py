"""config.yaml → validated, typed settings; every mistake reported with file, line and key.

pydantic does the validation (types, unknown keys); each account is validated by the options model
its provider module declares, found through the provider registry. This module maps the error
locations back onto the YAML nodes so the message can say ``config.yaml:12: accounts[0].imap.port``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    PlainValidator,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from replydesk.listening import ListeningQuery
from replydesk.options import AccountOptions, Duration, Strict
from replydesk.paths import APP, default_config_path, default_data_dir  # noqa: F401 - re-exported
from replydesk.rulesconfig import DEFAULT_LANGUAGES, LANGUAGE_CODES, CsatSettings, RuleSpec, problems
from replydesk.slaconfig import SlaSettings


class ConfigError(Exception):
    """A config problem a person can fix; the message names the file, line and key."""


def _account(value: Any) -> AccountOptions:
    """An ``accounts:`` entry, validated by the options model of the provider it names.

    The registry finds the model (importing only the providers the file names), so a new provider
    needs no edit here; pydantic keeps the model's error locations under ``accounts[i]``.
    """
    from replydesk import providers  # the registry; provider modules load only when named

    if isinstance(value, AccountOptions):  # built in code (the demo, tests): validated already
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("model_type", "Input should be a mapping of account options")
    if "provider" not in value:
        raise PydanticCustomError("missing_provider",
                                  "missing required option 'provider' (one of: {expected})",
                                  {"expected": ", ".join(providers.REGISTRY)})
    name = value["provider"]
    try:
        model = providers.options_model(name) if isinstance(name, str) else None
    except providers.ProviderUnavailable:
        model = None
    if model is None:
        raise PydanticCustomError(
            "union_tag_invalid",
            "Input tag '{tag}' found using 'provider' does not match any of the expected tags: {expected}",
            {"tag": name, "expected": ", ".join(repr(n) for n in providers.REGISTRY)},
        )
    return model.model_validate(value)


#: An account, typed as its provider module's own options (serialised with all of its fields).
Account = Annotated[SerializeAsAny[AccountOptions], PlainValidator(_account)]


class SyncSettings(Strict):
    poll_interval: Duration | None = None
    """Fetch interval of every account that does not set its own; unset, each provider keeps its own
    default (the demo 5 s, Telegram 1 s between long polls, Bluesky 30 s, Mastodon and email 60 s)."""
    send_retries: int = Field(5, ge=0, le=1000)
    """Attempts at a transient failure before a reply is marked failed."""
    retry_base: Duration = 2.0
    """First retry delay; doubles each time, with jitter."""
    retry_max: Duration = 300.0
    """Longest delay between retries."""
    lock_timeout: Duration = Field(30.0, gt=0, le=3600)
    """How long a write (the engine's or a command's) waits for another process's write lock on the
    database before it says "database is locked"; the engine then retries with backoff."""


class View(Strict):
    name: str
    query: str = ""  # the search syntax (README): "is:breached", "assignee:me", "kind:review"


#: Textual's built-in themes (a test keeps this list equal to Textual's), named here so that the
#: config is checked without importing Textual. Light ones: textual-light, catppuccin-latte,
#: solarized-light, rose-pine-dawn, atom-one-light, ansi-light (the terminal's own colours).
THEMES = (
    "textual-dark", "textual-light", "nord", "gruvbox", "catppuccin-mocha", "catppuccin-frappe",
    "catppuccin-macchiato", "catppuccin-latte", "dracula", "tokyo-night", "monokai", "flexoki",
    "solarized-light", "solarized-dark", "rose-pine", "rose-pine-moon", "rose-pine-dawn", "atom-one-dark",
    "atom-one-light", "ansi-dark", "ansi-light",
)


class AlertSettings(Strict):
    notify: bool = True
    """A notification in the console when an open conversation reaches warning or breach."""
    bell: bool = False
    """Ring the terminal bell with it."""
    desktop: Literal["off", "osc9", "osc777"] = "off"
    """Also ask the terminal for a desktop notification: ``osc9`` (iTerm2, kitty, WezTerm, Windows
    Terminal, foot), ``osc777`` (urxvt, VTE-based terminals); inside tmux it needs
    ``set -g allow-passthrough on``."""
    every: Duration = Field(10.0, ge=0, le=3600)
    """At most one telling per this long: alerts that come sooner wait and are told together in one
    summary (none is dropped); 0 tells each second's alerts at once."""


class UiSettings(Strict):
    agent: str = "me"
    """Your name: ``assignee:me`` views, notes and the event log use it."""
    undo_seconds: Duration = Field(5.0, le=3600)
    """How long a sent reply waits in the outbox so it can be taken back (at most an hour)."""
    theme: str = "textual-dark"
    """The console's colours: one of ``THEMES`` (light ones included)."""
    timezone: str | None = None
    """The IANA zone times are typed and shown in (``reply --at``, ``snooze --until``, the console's
    "tomorrow 9:00" and clock times); default: the system's zone."""
    alerts: AlertSettings = AlertSettings()
    """What happens when a conversation reaches warning or breach while the console is open."""
    count_timeout: Duration = 0.6
    """A number typed before a key is a count (``5j``, ``3x``) if the key follows within this time;
    later, the number was a view key (1-9) and nothing more. 0 turns counts off."""
    clipboard: Literal["off", "osc52"] = "off"
    """``y``/``Y`` copy through the terminal (OSC 52; tmux needs ``set -g set-clipboard on``)."""
    views: list[View] = [
        View(name="Inbox", query=""),
        View(name="Breached", query="is:breached"),
        View(name="Mine", query="assignee:me"),
        View(name="Reviews", query="kind:review"),
        View(name="Escalated", query="is:escalated"),
        View(name="Resolved", query="is:resolved"),
        View(name="Listening", query="is:listening is:open is:pending"),  # dismissed (resolved) ones leave
    ]
    saved_replies: dict[str, str] = {
        "thanks": "Thank you {customer}, we're glad we could help!",
        "looking": "Hi {customer}, thanks for reaching out. We're looking into this and will get back to you shortly.",
    }

    @field_validator("theme")
    @classmethod
    def _known_theme(cls, v: str) -> str:
        if v not in THEMES:
            raise ValueError(f"unknown theme {v!r}; choose one of: {', '.join(THEMES)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(v)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Europe/Athens") from None
        return v

    @field_validator("views")
    @classmethod
    def _at_most_nine(cls, v: list[View]) -> list[View]:
        if len(v) > 9:
            raise ValueError("at most 9 views (keys 1-9)")
        return v


class EscalationTarget(Strict):
    account: str | None = None
    """A helpdesk account (``provider: demo-helpdesk``; later Zendesk): escalating to this target
    also creates a ticket there, through the outbox. Without it the target is only a label."""


class EscalationSettings(Strict):
    targets: dict[str, EscalationTarget] = {}
    """Escalation targets by name (what ``e`` and ``replydesk escalate --target`` offer)."""


class WebhookSettings(Strict):
    enabled: bool = False
    """Run the webhook receiver inside ``replydesk sync`` (``replydesk webhooks serve`` runs it alone)."""
    host: str = "127.0.0.1"
    """The address it listens on: keep it local and put a reverse proxy or a tunnel with public HTTPS in
    front (README: "Webhooks")."""
    port: int = Field(8787, ge=0, le=65535)
    """The port it listens on."""
    path: str = Field("/webhooks", pattern=r"^/[A-Za-z0-9_./-]{0,100}$")
    """The URL path: Meta's callback URL is ``https://your.host{path}/meta`` (or ``{path}/<account>``)."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=4 * 1024 * 1024)
    """Bodies larger than this are refused (413) and nothing is stored; Meta's are far smaller."""


class Config(Strict):
    accounts: list[Account] = []
    sync: SyncSettings = SyncSettings()
    sla: SlaSettings = SlaSettings()
    escalation: EscalationSettings = EscalationSettings()
    webhooks: WebhookSettings = WebhookSettings()
    keymap: dict[str, str] = {}
    ui: UiSettings = UiSettings()
    listening: list[ListeningQuery] = []

    @field_validator("listening")
    @classmethod
    def _listening_targets(cls, queries: list[ListeningQuery], info: ValidationInfo) -> list[ListeningQuery]:
        return check_listening(queries, info.data.get("accounts") or [])
    rules: list[RuleSpec] = []
    """Triage rules, tried top to bottom on each customer message (``replydesk.rules``)."""
    csat: CsatSettings = CsatSettings()
    """The satisfaction survey after a resolve, per account."""
    customer_languages: list[str] = list(DEFAULT_LANGUAGES)
    """The languages customers write in: the rules' ``language`` condition chooses among these
    (and the ones the rules name)."""

    @field_validator("customer_languages")
    @classmethod
    def _language_codes(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c.lower() not in LANGUAGE_CODES]
        if unknown:
            raise ValueError(f"unknown language {unknown[0]!r}: use ISO 639-1 codes such as en, sw, hi")
        return [c.lower() for c in v]

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for account in self.accounts:
            if account.name in seen:
                raise ValueError(f"two accounts are named {account.name!r}")
            seen.add(account.name)
        for name, target in self.escalation.targets.items():
            if target.account is not None and target.account not in seen:
                raise ValueError(f"escalation target {name!r}: no account named {target.account!r}")
        return self

    def ticket_account(self, target: str) -> str | None:
        """The helpdesk account an escalation to ``target`` creates a ticket in, if any."""
        found = self.escalation.targets.get(target)
        return found.account if found is not None else None

    def account(self, name: str) -> AccountOptions | None:
        for account in self.accounts:
            if account.name == name:
                return account
        return None


def check_listening(queries: list[ListeningQuery], accounts: list[AccountOptions]) -> list[ListeningQuery]:
    """Each query names platforms that can search and accounts that exist there (email and chats
    have nothing to listen to); names are unique, since each is a cursor and a view filter."""
    if not queries:
        return queries  # and no provider module is imported for nothing
    from replydesk import providers

    def can_listen(provider: str) -> bool:
        try:
            return bool(providers.provider_class(provider).can_listen)
        except providers.ProviderUnavailable:
            return False

    def able() -> str:
        return ", ".join(sorted(name for name in providers.REGISTRY if can_listen(name)))

    by_name = {a.name: a for a in accounts}
    seen: set[str] = set()
    for query in queries:
        if query.name in seen:
            raise ValueError(f"two listening queries are named {query.name!r}")
        seen.add(query.name)
        for platform in query.platforms or ():
            if platform not in providers.REGISTRY or not can_listen(platform):
                raise ValueError(f"listening query {query.name!r}: {platform} has nothing to listen to "
                                 f"(platforms with search: {able()})")
        for name in query.accounts or ():
            account = by_name.get(name)
            if account is None:
                raise ValueError(f"listening query {query.name!r}: no account named {name!r}")
            if not can_listen(account.provider):
                raise ValueError(f"listening query {query.name!r}: account {name!r} is on {account.provider}, "
                                 f"which has nothing to listen to (platforms with search: {able()})")
            if query.platforms is not None and account.provider not in query.platforms:
                raise ValueError(f"listening query {query.name!r}: account {name!r} is not on "
                                 f"{', '.join(query.platforms)}")
    return queries


# ---- locating errors in the YAML -------------------------------------------------------------


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Walk the composed YAML node tree along a pydantic error location."""
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                if i < len(loc) - 1:
                    continue  # a union/discriminator tag pydantic adds to the path
                return node  # a missing key: point at the mapping that lacks it
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        elif isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            continue  # union/discriminator tags in the location: stay on this node
        else:
            return node
    return node


def _describe(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_errors(exc: ValidationError, path: Path, root: yaml.Node | None) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        node = _node_at(root, loc)
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing required option"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(f"{path}{line}: {_describe(loc)}: {msg}")
    return "\n".join(lines)


#: Deeper than this is not a config a person wrote (and PyYAML would recurse until Python gives up).
MAX_DEPTH = 32
#: Nodes after expanding aliases: anchors that refer to anchors multiply ("billion laughs").
MAX_NODES = 20_000


class _Limited(Exception):
    """A limit of ``_Loader`` was hit at ``node``."""

    def __init__(self, node: yaml.Node, problem: str, loc: tuple[Any, ...] | None = None) -> None:
        super().__init__(problem)
        self.node, self.problem, self.loc = node, problem, loc


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses what a person cannot have meant: nesting deeper than
    ``MAX_DEPTH`` (checked while composing, before any recursion gets deep) and dates that do not
    exist (``2026-02-30``), each raised with the node so the message can name its line and key."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._loc: list[Any] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        inside = parent is not None and index is not None  # None: composing a mapping's key
        if inside:  # index: the key node (mapping) or the position (sequence)
            self._loc.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        try:
            if len(self._loc) > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Limited(yaml.ScalarNode("tag:yaml.org,2002:null", "", mark, mark),
                               f"nested more than {MAX_DEPTH} levels deep", tuple(self._loc))
            return super().compose_node(parent, index)
        finally:
            if inside:
                self._loc.pop()

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise _Limited(node, f"{node.value!r} is not a real date or time ({exc})") from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def _walk(node: yaml.Node, loc: tuple[Any, ...] = ()) -> Any:
    """Every (location, node) of the tree, aliases followed (the same node object again)."""
    yield loc, node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(value, (*loc, key.value if isinstance(key, yaml.ScalarNode) else "?"))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _walk(item, (*loc, i))


def _check_tree(root: yaml.Node, path: Path) -> None:
    """Duplicate keys (YAML says they are an error; PyYAML lets the later one win unseen) and a
    tree that expands beyond ``MAX_NODES``."""
    for count, (loc, node) in enumerate(_walk(root), 1):
        if count > MAX_NODES:
            raise ConfigError(f"{path}:{node.start_mark.line + 1}: {_describe(loc)}: the file expands to more than "
                              f"{MAX_NODES} values (anchors referring to anchors?)")
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key, _ in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is None or name == "<<":
                    continue
                if name in seen:
                    raise ConfigError(f"{path}:{key.start_mark.line + 1}: {_describe((*loc, name))}: duplicate key "
                                      f"(also on line {seen[name].start_mark.line + 1}); keep one")
                seen[name] = key


def _location_of(root: yaml.Node | None, target: yaml.Node) -> tuple[Any, ...]:
    if root is not None:
        for loc, node in _walk(root):
            if node is target:
                return loc
    return ()


def _load_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (for error lines), composed once, checked, then constructed."""
    loader = _Loader(text)
    root = None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_tree(root, path)
        return loader.construct_document(root), root
    except _Limited as exc:
        loc = exc.loc if exc.loc is not None else _location_of(root, exc.node)
        key = f" {_describe(loc)}:" if loc else ""
        raise ConfigError(f"{path}:{exc.node.start_mark.line + 1}:{key} {exc.problem}") from None
    finally:
        loader.dispose()


def parse_config(text: str, path: Path) -> Config:
    try:
        data, root = _load_yaml(text, path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of sections (accounts:, sla:, …)")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path, root)) from None
    found = problems(config)  # what needs the whole file: rules' calendars, saved replies, accounts
    if found:
        lines = []
        for loc, msg in found:
            node = _node_at(root, loc)
            line = f":{node.start_mark.line + 1}" if node is not None else ""
            lines.append(f"{path}{line}: {_describe(loc)}: {msg}")
        raise ConfigError("\n".join(lines))
    _check_keymap(config.keymap, path, root)
    return config


def _check_keymap(keymap: dict[str, str], path: Path, root: yaml.Node | None) -> None:
    """Unknown binding ids and keys two bindings would share are errors (``replydesk.keys``)."""
    from replydesk.keys import check_keymap

    clashes = check_keymap(keymap)
    if clashes:
        lines = []
        for ident, problem in clashes:
            node = _node_at(root, ("keymap", ident))
            line = f":{node.start_mark.line + 1}" if node is not None else ""
            lines.append(f"{path}{line}: keymap.{ident}: {problem}")
        raise ConfigError("\n".join(lines))


def load_config(path: Path | None, *, required: bool = False) -> tuple[Config, Path | None]:
    """Load ``path`` (or the default location). A missing default file means an empty config."""
    explicit = path is not None
    path = Path(path) if path is not None else default_config_path()
    if not path.exists():
        if explicit or required:
            raise ConfigError(f"{path}: no such config file (copy config.example.yaml to start)")
        return Config(), None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, path), path


def demo_config(seed: int = 42, faults: Any = None, pace: float | None = None) -> Config:
    """The built-in demo workspace: one demo account, shipped SLA defaults (``faults``: the demo
    provider's ``DemoFaults``)."""
    from replydesk.providers.demo import DemoFaults, DemoOptions

    account = DemoOptions(name="demo", seed=seed, faults=faults or DemoFaults())
    if pace is not None:
        account = account.model_copy(update={"pace": pace})
    return Config(accounts=[account])
