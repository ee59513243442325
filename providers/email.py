"""Email provider: a mailbox read over IMAP becomes conversations; replies go out over SMTP.

This module is the platform's description and the provider that ties three modules together:

- ``email_imap``: the IMAP session (connecting, the pooled connection, IDLE);
- ``email_mailbox``: mailbox sync (folders into pages with their cursors) and mapping mail to
  messages and threads;
- ``email_smtp``: SMTP submission with the Sent folder as the ledger of what left.

They load when the provider is built (by the sync engine), not with this module, which the config
imports to validate an account's options.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from replydesk.model import FetchResult, OutgoingReply, SendResult
from replydesk.options import AccountOptions, Strict, is_local
from replydesk.platforms import NO_LIMIT, PlatformFacts
from replydesk.providers.base import AuthError, Capabilities, Provider, SecretGetter


class MailServer(Strict):
    """A mail server and how to reach it."""

    DEFAULT_PORTS: ClassVar[dict[str, int]] = {}

    host: str = Field(min_length=1)
    """The server's host name."""
    port: int | None = Field(None, ge=1, le=65535)
    """The port; default: the usual one for ``tls``."""
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    """implicit (TLS from the first byte), starttls, or none (only for localhost)."""
    user: str | None = None
    """The login; default: the account's address."""
    timeout: float = Field(30.0, gt=0)
    """Seconds to wait for the server."""
    ca_file: str | None = None
    """A CA bundle for a self-signed server certificate."""

    @model_validator(mode="after")
    def _safe_and_complete(self) -> MailServer:
        if self.tls == "none" and not is_local(self.host):
            raise ValueError(f"tls: none is only allowed for localhost, not {self.host} "
                             "(use implicit or starttls so the password is not sent in clear text)")
        if self.port is None:
            self.port = self.DEFAULT_PORTS[self.tls]
        return self


class ImapServer(MailServer):
    DEFAULT_PORTS: ClassVar[dict[str, int]] = {"implicit": 993, "starttls": 143, "none": 143}

    folders: list[str] = ["INBOX"]
    """The folders to read customers' mail from."""
    sent_folder: str | None = None
    """Where replies are filed (flagged draft before SMTP, unflagged once accepted), which is how a
    reply interrupted by a crash is found instead of sent twice; without it such a reply ends unknown."""
    max_message_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """Larger mails are read partly (their first 256 KiB)."""

    @field_validator("folders")
    @classmethod
    def _folder_names(cls, folders: list[str]) -> list[str]:
        if not folders or not all(folders):
            raise ValueError("must be a list of folder names")
        return list(dict.fromkeys(folders))


class SmtpServer(MailServer):
    DEFAULT_PORTS: ClassVar[dict[str, int]] = {"implicit": 465, "starttls": 587, "none": 25}


class EmailOptions(AccountOptions):
    """A mailbox over IMAP and SMTP; the password goes in the keyring (``replydesk login``)."""

    secret_hint: ClassVar[str] = "the mailbox password or an app password"

    provider: Literal["email"] = "email"
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    """The shop's email address: the From of replies, and how our own mail is told apart."""
    display_name: str | None = None
    """The From name on replies."""
    imap: ImapServer
    """Where mail is read."""
    smtp: SmtpServer | None = None
    """Where replies are sent; leave it out for a mailbox that is only read."""

    @model_validator(mode="after")
    def _defaults(self) -> EmailOptions:
        self.address = self.address.lower()
        for server in (self.imap, self.smtp):
            if server is not None and not server.user:
                server.user = self.address
        return self


#: Email has no public side and no length limit worth counting.
FACTS = {"email": PlatformFacts("Email", "MAIL", None, NO_LIMIT)}


class EmailProvider(Provider):
    """One mailbox. See ``email_mailbox`` for the cursor contract, ``email_smtp`` for sending."""

    platform: ClassVar[str] = "email"
    Options = EmailOptions
    FACTS = FACTS
    capabilities: ClassVar[Capabilities] = Capabilities(
        can_dm=True,
        can_reply_publicly=False,
        supports_idempotency=False,
        can_lookup_sent=True,
        streams=True,
    )
    poll_interval: float = 60.0

    def __init__(self, account: str, options: Any, secret: SecretGetter) -> None:
        super().__init__(account, options, secret)
        # The wire (imaplib, smtplib, the mail parser) loads with the provider, not with the config.
        from replydesk.providers.email_imap import ImapSession
        from replydesk.providers.email_mailbox import MailboxSync
        from replydesk.providers.email_smtp import MailSender

        self.cfg: EmailOptions = self.options
        self.session = ImapSession(account, self.cfg.imap, self._password)
        self.mailbox = MailboxSync(account, self.cfg, self.session, lambda ids: self.resolve_thread(ids),
                                   lambda: self.poll_interval)
        self.sender = MailSender(account, self.cfg, self.session, self._password)

    def _password(self) -> str:
        password = self._secret()
        if not password:
            raise AuthError(f"no password stored for email account {self.account!r}: re-login needed")
        return password

    @property
    def sync_folders(self) -> tuple[str, ...]:
        return self.mailbox.sync_folders

    async def fetch(self, cursor: dict[str, Any] | None) -> list[FetchResult]:
        return await self.mailbox.fetch(cursor)

    async def stream(self) -> AsyncIterator[FetchResult]:
        async for result in self.mailbox.stream():
            yield result

    async def send(self, reply: OutgoingReply) -> SendResult:
        return await self.sender.send(reply)

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        return await self.sender.lookup_sent(reply)

    def message_id_for(self, key: str) -> str:
        return self.sender.message_id_for(key)

    async def aclose(self) -> None:
        await self.session.aclose()
