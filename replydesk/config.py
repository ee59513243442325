"""config.yaml → validated, typed settings; every mistake reported with file, line and key.

pydantic does the validation (types, unknown keys, per-provider options); this module maps its
error locations back onto the YAML nodes so the message can say ``config.yaml:12: accounts[0].imap.port``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from platformdirs import user_config_path, user_data_path
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from replydesk.slaconfig import SlaSettings, parse_duration

APP = "replydesk"


class ConfigError(Exception):
    """A config problem a person can fix; the message names the file, line and key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return float(parse_duration(value))
    raise ValueError("expected a duration such as 30s, 5m, 1h")


Duration = Annotated[float, Field(ge=0)]


class DemoFaults(Strict):
    """Fault injection on the demo platform's remote side."""

    fail: float = Field(0.0, ge=0, le=1, description="share of requests answered with HTTP 503")
    latency: float = Field(0.0, ge=0, description="seconds added to every request")
    ratelimit: float = Field(0.0, ge=0, le=1, description="share of requests answered 429 + Retry-After")
    offline: bool = Field(False, description="the platform is unreachable")
    lost_ack: float = Field(0.0, ge=0, le=1, description="share of accepted replies whose answer is lost")
    retry_after: float = Field(2.0, ge=0, description="how long a simulated 429 asks to wait (Retry-After)")
    crash_after_accept: float = Field(
        0.0, ge=0, le=1,
        description="share of accepted replies after which the process is SIGKILLed before it hears the "
                    "answer (crash tests: the worst moment for exactly-once)",
    )

    _dur = field_validator("latency", "retry_after", mode="before")(classmethod(lambda cls, v: _duration(v)))


class AccountBase(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    poll_interval: Duration | None = None

    _dur = field_validator("poll_interval", mode="before")(
        classmethod(lambda cls, v: None if v is None else _duration(v))
    )


class DemoAccount(AccountBase):
    provider: Literal["demo"]
    seed: int = 42
    pace: Duration = 20.0  # average seconds between new customer messages
    backlog: int = Field(240, ge=0, le=100_000)
    faults: DemoFaults = DemoFaults()

    _pace = field_validator("pace", mode="before")(classmethod(lambda cls, v: _duration(v)))


class MailServer(Strict):
    host: str
    port: int = Field(ge=1, le=65535)
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    user: str | None = None
    timeout: float = Field(30.0, gt=0)
    ca_file: str | None = None  # a CA bundle for a self-signed server certificate


class ImapServer(MailServer):
    folders: list[str] = ["INBOX"]
    sent_folder: str | None = None
    max_message_bytes: int = Field(10 * 1024 * 1024, ge=1024)


class EmailAccount(AccountBase):
    provider: Literal["email"]
    address: str
    display_name: str | None = None
    imap: ImapServer
    smtp: MailServer

    @model_validator(mode="after")
    def _plain_only_local(self) -> EmailAccount:
        for server in (self.imap, self.smtp):
            if server.tls == "none" and server.host not in ("localhost", "127.0.0.1", "::1"):
                raise ValueError(f"tls: none is only allowed for localhost, not {server.host}")
        return self


def _https_or_local(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https":
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"):
        return url.rstrip("/")
    raise ValueError("must be an https:// URL (plain http only for localhost)")


class MastodonAccount(AccountBase):
    provider: Literal["mastodon"]
    instance: str
    max_length: int | None = Field(None, ge=1)

    _url = field_validator("instance")(classmethod(lambda cls, v: _https_or_local(v)))


class BlueskyAccount(AccountBase):
    provider: Literal["bluesky"]
    handle: str
    service: str = "https://bsky.social"

    _url = field_validator("service")(classmethod(lambda cls, v: _https_or_local(v)))


class TelegramAccount(AccountBase):
    provider: Literal["telegram"]
    api_base: str = "https://api.telegram.org"

    _url = field_validator("api_base")(classmethod(lambda cls, v: _https_or_local(v)))


Account = Annotated[
    DemoAccount | EmailAccount | MastodonAccount | BlueskyAccount | TelegramAccount,
    Field(discriminator="provider"),
]


class SyncSettings(Strict):
    poll_interval: Duration = 60.0
    send_retries: int = Field(5, ge=0, le=1000, description="attempts before a reply is marked failed")
    retry_base: Duration = 2.0
    retry_max: Duration = 300.0

    _dur = field_validator("poll_interval", "retry_base", "retry_max", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


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


class UiSettings(Strict):
    agent: str = "me"
    undo_seconds: Duration = 5.0
    theme: str = Field("textual-dark", description="the console's colours: one of THEMES")
    views: list[View] = [
        View(name="Inbox", query=""),
        View(name="Breached", query="is:breached"),
        View(name="Mine", query="assignee:me"),
        View(name="Reviews", query="kind:review"),
        View(name="Escalated", query="is:escalated"),
        View(name="Resolved", query="is:resolved"),
    ]
    saved_replies: dict[str, str] = {
        "thanks": "Thank you {customer}, we're glad we could help!",
        "looking": "Hi {customer}, thanks for reaching out. We're looking into this and will get back to you shortly.",
    }

    _dur = field_validator("undo_seconds", mode="before")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("theme")
    @classmethod
    def _known_theme(cls, v: str) -> str:
        if v not in THEMES:
            raise ValueError(f"unknown theme {v!r}; choose one of: {', '.join(THEMES)}")
        return v

    @field_validator("views")
    @classmethod
    def _at_most_nine(cls, v: list[View]) -> list[View]:
        if len(v) > 9:
            raise ValueError("at most 9 views (keys 1-9)")
        return v


class Config(Strict):
    accounts: list[Account] = []
    sync: SyncSettings = SyncSettings()
    sla: SlaSettings = SlaSettings()
    keymap: dict[str, str] = {}
    ui: UiSettings = UiSettings()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for account in self.accounts:
            if account.name in seen:
                raise ValueError(f"two accounts are named {account.name!r}")
            seen.add(account.name)
        return self

    def account(self, name: str) -> Any:
        for account in self.accounts:
            if account.name == name:
                return account
        return None


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
        elif part in ("demo", "email", "mastodon", "bluesky", "telegram") and out.endswith("]"):
            continue  # the discriminator pydantic adds to the path
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


def default_config_path() -> Path:
    return user_config_path(APP) / "config.yaml"


def default_data_dir() -> Path:
    return Path(os.environ.get("REPLYDESK_HOME") or user_data_path(APP))


def parse_config(text: str, path: Path) -> Config:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
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
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path, root)) from None


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


def demo_config(seed: int = 42, faults: DemoFaults | None = None, pace: float | None = None) -> Config:
    """The built-in demo workspace: one demo account, shipped SLA defaults."""
    account = DemoAccount(provider="demo", name="demo", seed=seed, faults=faults or DemoFaults())
    if pace is not None:
        account = account.model_copy(update={"pace": pace})
    return Config(accounts=[account])
