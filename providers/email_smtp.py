"""Email, part 3 of 3: replies out over SMTP, with the Sent folder as the ledger of what left.

Library: the standard library's smtplib (MAIL/RCPT/DATA by hand, so a connection lost after the
body went out is told apart from one lost before). The reply is filed in the Sent folder flagged
``\\Draft`` *before* SMTP and the flag cleared once the server accepted it: a crash in between leaves
a flagged copy, which ``lookup_sent`` reports as uncertain instead of sending the reply twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import imaplib
import logging
import re
import smtplib
import time
from collections.abc import Callable
from email.message import EmailMessage
from hashlib import sha256
from typing import TYPE_CHECKING

from replydesk.model import OutgoingReply, SendResult
from replydesk.providers.base import AuthError, PermanentError, ProviderError, TransientError, UnknownDelivery
from replydesk.providers.email_headers import REPLY_POLICY
from replydesk.providers.email_imap import (
    DRAFT,
    FetchedItem,
    ImapSession,
    capabilities,
    network_error,
    parse_fetch,
    quote_mailbox,
    quote_string,
    ssl_context,
    uid_set,
)
from replydesk.providers.email_parse import SYNTHETIC_DOMAIN
from replydesk.providers.email_thread import reply_subject

if TYPE_CHECKING:
    from replydesk.providers.email import EmailOptions

log = logging.getLogger(__name__)


class MailSender:
    """One mailbox's outgoing side: build the reply, file it, submit it, settle the ledger."""

    def __init__(self, account: str, cfg: EmailOptions, session: ImapSession, password: Callable[[], str]) -> None:
        self.account = account
        self.cfg = cfg
        self.session = session
        self.password = password

    def message_id_for(self, key: str) -> str:
        """Our Message-ID is a pure function of the outbox key, so a resend can be recognised."""
        safe = key if re.fullmatch(r"[A-Za-z0-9._+=-]{1,64}", key) else sha256(key.encode()).hexdigest()[:40]
        domain = self.cfg.address.rsplit("@", 1)[1]
        return f"<replydesk.{safe}@{domain}>"

    def build_reply(self, reply: OutgoingReply) -> EmailMessage:
        """The MIME message for ``reply``: addressee, subject and threading headers from the message it
        answers (what ``email_mailbox`` stored with it)."""
        meta = reply.answering_meta
        to = str(meta.get("reply_to") or reply.customer_handle or "").strip()
        if "@" not in to:
            raise PermanentError(f"no email address to reply to (got {to!r})")
        parent = reply.in_reply_to_native_id or meta.get("message_id")
        if parent and parent.endswith(f"@{SYNTHETIC_DOMAIN}>"):
            parent = None  # the customer's mail had no Message-ID; nothing to point at
        refs = [r for r in (meta.get("references") or []) if isinstance(r, str) and r.startswith("<")]
        if not refs and reply.conversation_native_id.startswith("<") and reply.conversation_native_id != parent:
            refs = [reply.conversation_native_id]
        if parent:
            refs.append(parent)
        refs = [r for r in dict.fromkeys(refs) if not r.endswith(f"@{SYNTHETIC_DOMAIN}>")]
        if len(refs) > 20:  # RFC 5322 3.6.4: keep the root and the most recent ones
            refs = [refs[0], *refs[-19:]]
        msg = EmailMessage(policy=REPLY_POLICY)  # Message-ID lists folded between ids, never encoded
        try:
            name = self.cfg.display_name
            msg["From"] = email.utils.formataddr((name, self.cfg.address)) if name else self.cfg.address
            msg["To"] = to
            msg["Subject"] = reply_subject(str(meta.get("subject") or ""))  # "" when the customer gave none
            msg["Date"] = email.utils.formatdate(localtime=False)
            msg["Message-ID"] = self.message_id_for(reply.key)
            if parent:
                msg["In-Reply-To"] = parent
            if refs:
                msg["References"] = " ".join(refs)
            msg["X-Mailer"] = "replydesk"
            msg.set_content(reply.text)
        except (ValueError, TypeError) as exc:  # e.g. CR/LF smuggled into an address
            raise PermanentError(f"cannot build the reply: {exc}") from None
        return msg

    async def send(self, reply: OutgoingReply) -> SendResult:
        """File the reply in Sent flagged \\Draft, submit it over SMTP, then clear the flag.

        Filing first closes the crash window of "sent, then copied": if the process dies after
        SMTP accepted the mail, the copy is already in Sent, still flagged, and ``lookup_sent``
        says "may have left" (the user decides) instead of not finding it and sending it again.
        A definite SMTP refusal takes the copy back, so a retry starts clean.
        """
        if self.cfg.smtp is None:
            raise PermanentError(f"email account {self.account!r} has no smtp settings, so it cannot send")
        msg = self.build_reply(reply)
        raw = msg.as_bytes()
        message_id = str(msg["Message-ID"])
        recipients = [a for _, a in email.utils.getaddresses([str(msg["To"])]) if a]
        folder = self.cfg.imap.sent_folder
        if folder:
            await self.session.run(lambda c: self._file_pending(c, folder, raw, message_id))
        try:
            await asyncio.to_thread(self._smtp_send, raw, recipients)
        except UnknownDelivery:
            raise  # the flagged copy stays: a later lookup reports it as uncertain
        except ProviderError:
            if folder:
                try:
                    await self.session.run(lambda c: self._drop_pending(c, folder, message_id))
                except ProviderError as exc:  # a retry will see the flagged copy and ask the user
                    log.warning("%s: could not take back the unsent copy in %s: %s", self.account, folder, exc)
            raise
        sent_at = time.time()
        if folder:
            try:
                await self.session.run(lambda c: self._settle_sent(c, folder, message_id))
            except ProviderError as exc:  # the mail is out and recorded as sent; only the flag lingers
                log.warning("%s: reply sent but its copy in %s is still flagged draft: %s",
                            self.account, folder, exc)
        return SendResult(remote_id=message_id, sent_at=sent_at)

    def _smtp_send(self, raw: bytes, recipients: list[str]) -> None:
        """Blocking SMTP submission with errors mapped for the outbox.

        MAIL/RCPT are done by hand so that a connection lost *after* the body went out becomes
        UnknownDelivery (it may have been accepted) rather than a retry that could send twice.
        """
        o = self.cfg.smtp
        assert o is not None
        what = f"SMTP {o.host}:{o.port}"
        password = self.password()
        phase = "connect"
        try:
            if o.tls == "implicit":
                client: smtplib.SMTP = smtplib.SMTP_SSL(o.host, o.port, timeout=o.timeout, context=ssl_context(o))
            else:
                client = smtplib.SMTP(o.host, o.port, timeout=o.timeout)
            with client:
                client.ehlo()
                if o.tls == "starttls":
                    client.starttls(context=ssl_context(o))
                    client.ehlo()
                if o.user and client.has_extn("auth"):
                    phase = "login"
                    client.login(o.user, password)
                phase = "envelope"
                code, resp = client.mail(self.cfg.address)
                if code != 250:
                    raise smtplib.SMTPSenderRefused(code, resp, self.cfg.address)
                refused = {}
                for rcpt in recipients:
                    code, resp = client.rcpt(rcpt)
                    if code not in (250, 251):
                        refused[rcpt] = (code, resp)
                if len(refused) == len(recipients):
                    raise smtplib.SMTPRecipientsRefused(refused)
                client.putcmd("data")
                code, resp = client.getreply()
                if code != 354:
                    raise smtplib.SMTPDataError(code, resp)
                phase = "body"
                body = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", raw)
                body = re.sub(rb"(?m)^\.", b"..", body)
                if not body.endswith(b"\r\n"):
                    body += b"\r\n"
                client.send(body + b".\r\n")
                code, resp = client.getreply()
                if code != 250:
                    raise smtplib.SMTPDataError(code, resp)
                phase = "done"
                with contextlib.suppress(Exception):
                    client.quit()
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthError(f"SMTP login as {o.user} failed: re-login needed ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            detail = "; ".join(f"{r}: {c} {m.decode(errors='replace')[:80]}" for r, (c, m) in exc.recipients.items())
            if any(c >= 500 for c in codes):
                raise PermanentError(f"{what} refused the recipient: {detail}") from None
            raise TransientError(f"{what} deferred the recipient: {detail}") from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace")[:120] if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            if exc.smtp_code in (530, 534, 535, 538):
                raise AuthError(f"{what} needs a valid login: re-login needed ({exc.smtp_code} {text})") from None
            if exc.smtp_code >= 500:
                raise PermanentError(f"{what} rejected the reply: {exc.smtp_code} {text}") from None
            raise TransientError(f"{what} temporarily refused the reply: {exc.smtp_code} {text}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"{what}: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            if phase == "body":
                raise UnknownDelivery(
                    f"{what}: connection lost after the reply was handed over; it may have been delivered"
                ) from None
            if isinstance(exc, OSError):
                raise network_error(what, exc) from None
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None

    def _sent_copies(self, conn: imaplib.IMAP4, folder: str, message_id: str, *,
                     writable: bool = False) -> list[FetchedItem]:
        """Blocking: the (not deleted) messages of ``folder`` with exactly this Message-ID."""
        typ, data = conn.select(quote_mailbox(folder), readonly=not writable)
        if typ != "OK":
            raise PermanentError(f"IMAP folder {folder!r} cannot be opened: {data[0]!r}")
        typ, data = conn.uid("SEARCH", "UNDELETED", "HEADER", "Message-ID", quote_string(message_id))
        if typ != "OK":
            raise TransientError(f"IMAP search in {folder!r} failed")
        uids = (data[0] or b"").split()
        if not uids:
            return []
        typ, data = conn.uid("FETCH", b",".join(uids).decode(),
                             "(UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ != "OK":
            raise TransientError(f"IMAP fetch in {folder!r} failed")
        # HEADER search matches substrings; be exact.
        return [item for item in parse_fetch(data).values() if message_id.encode() in (item.body or b"")]

    def _file_pending(self, conn: imaplib.IMAP4, folder: str, raw: bytes, message_id: str) -> None:
        if self._sent_copies(conn, folder, message_id):
            return  # filed by an earlier attempt (or by the server itself, as Gmail does)
        typ, data = conn.append(quote_mailbox(folder), "(\\Seen \\Draft)",
                                imaplib.Time2Internaldate(time.time()), raw)
        if typ != "OK":
            raise TransientError(f"IMAP APPEND to {folder!r} failed: {data[0]!r}")

    def _pending_uids(self, conn: imaplib.IMAP4, folder: str, message_id: str) -> str | None:
        """The UID set of our still-flagged copies (folder selected for writing), or None."""
        uids = [i.uid for i in self._sent_copies(conn, folder, message_id, writable=True) if DRAFT in i.flags]
        return uid_set(uids) if uids else None

    def _store(self, conn: imaplib.IMAP4, folder: str, uids: str, change: str) -> None:
        typ, data = conn.uid("STORE", uids, change)
        if typ != "OK":
            raise TransientError(f"IMAP STORE in {folder!r} failed: {data[0]!r}")

    def _settle_sent(self, conn: imaplib.IMAP4, folder: str, message_id: str) -> None:
        if uids := self._pending_uids(conn, folder, message_id):
            self._store(conn, folder, uids, "-FLAGS.SILENT (\\Draft)")

    def _drop_pending(self, conn: imaplib.IMAP4, folder: str, message_id: str) -> None:
        if uids := self._pending_uids(conn, folder, message_id):
            self._store(conn, folder, uids, "+FLAGS.SILENT (\\Deleted)")
            if "UIDPLUS" in capabilities(conn):
                conn.uid("EXPUNGE", uids)  # only ours; without UIDPLUS it stays \\Deleted

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        """Look for our Message-ID (derived from the outbox key) in the Sent folder.

        Not there: it never reached SMTP (the copy is filed first), so sending is safe. There
        without \\Draft: it left. There still flagged: the attempt was cut off between filing
        and confirming, so it may or may not have left: UnknownDelivery, the user decides."""
        folder = self.cfg.imap.sent_folder
        if not folder:
            raise UnknownDelivery("no sent_folder configured, so a sent reply cannot be looked up")
        message_id = self.message_id_for(reply.key)
        copies = await self.session.run(lambda c: self._sent_copies(c, folder, message_id))
        if not copies:
            return None
        settled = [c for c in copies if DRAFT not in c.flags]
        if not settled:
            raise UnknownDelivery(
                f"the reply was being handed to the mail server when the attempt was cut off; it may have "
                f"been delivered. Check the customer's thread, then retry or confirm (the copy in {folder} "
                "is flagged draft)"
            )
        return SendResult(remote_id=message_id, sent_at=settled[0].internaldate or time.time())

