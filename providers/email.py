"""Email provider: a mailbox read over IMAP becomes conversations; replies go out over SMTP.

Library: the standard library's imaplib/smtplib, each call run in a worker thread (asyncio.to_thread).
Why: no extra dependency, the most widely exercised clients against odd servers, and raw commands
(ENABLE CONDSTORE, UID FETCH ... CHANGEDSINCE, UID SEARCH HEADER) pass straight through. imaplib on
3.11 has no IDLE, so IDLE is a few lines on the raw socket in a daemon thread. aioimaplib (native
async + IDLE) was the alternative, but it is far less used and imapclient is synchronous anyway.

Cursor (one per stream ``imap:{folder}``): ``{folder: {"uidvalidity", "last_uid", "uidnext",
"highestmodseq"}}``. Each ``FetchResult`` carries only its own folder's key, so the engine may pass
``fetch()`` either one stream's cursor or the union (``{**a, **b}``) of all of them; folders missing
from the cursor are synced from the start (idempotent: Message-ID is the item identity).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import errno
import imaplib
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from hashlib import sha256
from typing import Any, ClassVar, TypeVar

from replydesk.model import Contact, DeliveryFailure, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    Offline,
    PermanentError,
    Provider,
    ProviderError,
    SecretGetter,
    TransientError,
    UnknownDelivery,
)
from replydesk.providers.email_auto import outbox_keys
from replydesk.providers.email_headers import REPLY_POLICY
from replydesk.providers.email_parse import SYNTHETIC_DOMAIN, ParsedMail, parse_message
from replydesk.providers.email_thread import ThreadIndex, reply_subject

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
TLS_MODES = ("implicit", "starttls", "none")
PAGE_SIZE = 100  # messages per FetchResult: one storage transaction each
MAX_NEW_PER_FETCH = 2000  # per folder and call; the rest comes on the next poll
DRAFT = "\\Draft"  # a copy in Sent not (yet) confirmed sent: see EmailProvider.send
MAX_FLAG_REFRESH = 500
PARTIAL_BYTES = 256 * 1024
IDLE_REFRESH_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE before the server's 30 min timeout
IDLE_READ_TIMEOUT = 0.5  # how quickly an IDLE thread notices it should stop


# ------------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str
    port: int
    tls: str
    user: str
    timeout: float
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class EmailOptions:
    address: str
    imap: ServerOptions
    smtp: ServerOptions | None
    folders: tuple[str, ...]
    sent_folder: str | None
    max_message_bytes: int


def _server(section: str, raw: Any, address: str, default_ports: dict[str, int]) -> ServerOptions:
    if not isinstance(raw, dict):
        raise ValueError(f"email: '{section}' must be a mapping with host, port, tls, user")
    host = str(raw.get("host") or "").strip()
    if not host:
        raise ValueError(f"email: {section}.host is required")
    tls = str(raw.get("tls") or "implicit").lower()
    if tls not in TLS_MODES:
        raise ValueError(f"email: {section}.tls must be one of implicit, starttls, none (got {tls!r})")
    if tls == "none" and host.lower() not in LOCAL_HOSTS:
        raise ValueError(
            f"email: {section}.tls 'none' is only allowed for localhost/127.0.0.1/::1, not {host!r}; "
            "use implicit or starttls so the password is not sent in clear text"
        )
    try:
        port = int(raw.get("port") or default_ports[tls])
    except (TypeError, ValueError):
        raise ValueError(f"email: {section}.port must be a number") from None
    return ServerOptions(
        host=host,
        port=port,
        tls=tls,
        user=str(raw.get("user") or address),
        timeout=float(raw.get("timeout") or 30.0),
        ca_file=raw.get("ca_file"),
    )


def parse_options(options: dict[str, Any]) -> EmailOptions:
    """Validate the account options; ValueError with the offending key on bad input."""
    address = str(options.get("address") or "").strip()
    if "@" not in address:
        raise ValueError("email: 'address' (the shop's email address) is required")
    imap_raw = options.get("imap")
    imap = _server("imap", imap_raw, address, {"implicit": 993, "starttls": 143, "none": 143})
    smtp_raw = options.get("smtp")
    smtp = _server("smtp", smtp_raw, address, {"implicit": 465, "starttls": 587, "none": 25}) if smtp_raw else None
    folders = imap_raw.get("folders") or ["INBOX"]
    if isinstance(folders, str) or not all(isinstance(f, str) and f for f in folders):
        raise ValueError("email: imap.folders must be a list of folder names")
    sent = imap_raw.get("sent_folder") or None
    return EmailOptions(
        address=address.lower(),
        imap=imap,
        smtp=smtp,
        folders=tuple(dict.fromkeys(folders)),
        sent_folder=str(sent) if sent else None,
        max_message_bytes=int(imap_raw.get("max_message_bytes") or 10 * 1024 * 1024),
    )


# ------------------------------------------------------------------------------------------------
# small IMAP helpers


def imap_utf7(name: str) -> str:
    """Folder names on the wire use IMAP's modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def quote_mailbox(name: str) -> str:
    s = imap_utf7(name)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")


@dataclass(slots=True)
class FetchedItem:
    uid: int
    flags: list[str]
    internaldate: float | None
    size: int | None
    modseq: int | None
    body: bytes | None


def parse_fetch(data: Sequence[Any]) -> dict[int, FetchedItem]:
    """imaplib's FETCH data (tuples for literals, bytes for the rest) keyed by UID."""
    items: dict[int, FetchedItem] = {}

    def record(meta: bytes, body: bytes | None) -> None:
        m = _UID.search(meta)
        if not m:
            return  # unsolicited FETCH without UID
        flags = _FLAGS.search(meta)
        idate = _INTERNALDATE.search(meta)
        size = _SIZE.search(meta)
        modseq = _MODSEQ.search(meta)
        when = None
        if idate:
            with contextlib.suppress(ValueError):
                when = dt.datetime.strptime(idate.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()
        uid = int(m.group(1))
        items[uid] = FetchedItem(
            uid=uid,
            flags=flags.group(1).decode(errors="replace").split() if flags else [],
            internaldate=when,
            size=int(size.group(1)) if size else None,
            modseq=int(modseq.group(1)) if modseq else None,
            body=body,
        )

    pending: list[Any] | None = None
    for entry in data:
        if isinstance(entry, tuple):
            if pending:
                record(*pending)
            pending = [entry[0], entry[1]]
        elif isinstance(entry, bytes):
            if pending is not None and not entry[:1].isdigit():
                pending[0] = pending[0] + b" " + entry  # items after the literal, then ")"
                record(*pending)
                pending = None
            else:
                if pending:
                    record(*pending)
                    pending = None
                record(entry, None)
    if pending:
        record(*pending)
    return items


def _uid_set(uids: Sequence[int]) -> str:
    """Compress sorted UIDs into an IMAP sequence set ('1:5,9,12:14')."""
    parts: list[str] = []
    start = prev = None
    for uid in sorted(uids):
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def _untagged_int(conn: imaplib.IMAP4, key: str) -> int | None:
    values = conn.untagged_responses.get(key)
    if not values:
        return None
    try:
        raw = values[-1]
        return int(raw.split()[0] if isinstance(raw, bytes) else raw)
    except (ValueError, IndexError):
        return None


def _network_error(what: str, exc: BaseException) -> ProviderError:
    """Connection trouble as the engine understands it; never includes credentials."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"{what}: TLS certificate rejected ({exc.verify_message})")
    if isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)):
        return Offline(f"{what}: network unreachable ({exc})")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{what}: timed out")
    return TransientError(f"{what}: {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------------


class EmailProvider(Provider):
    """One mailbox. See the module docstring for the cursor contract."""

    platform: ClassVar[str] = "email"
    capabilities: ClassVar[Capabilities] = Capabilities(
        can_dm=True,
        can_reply_publicly=False,
        max_length=0,
        supports_idempotency=False,
        can_lookup_sent=True,
        streams=True,
    )
    poll_interval: float = 60.0

    def __init__(self, account: str, options: dict[str, Any], secret: SecretGetter) -> None:
        super().__init__(account, options, secret)
        self.cfg = parse_options(options)
        self._conn: imaplib.IMAP4 | None = None
        self._caps: set[str] = set()
        self._lock = asyncio.Lock()
        self._threads = ThreadIndex()
        #: the last cursor state handed out per folder; stream() continues from it
        self._state: dict[str, dict[str, int]] = {}

    # -- folders ---------------------------------------------------------------------------------
    @property
    def sync_folders(self) -> tuple[str, ...]:
        """Configured folders plus the Sent folder, so replies written elsewhere join threads."""
        extra = (self.cfg.sent_folder,) if self.cfg.sent_folder else ()
        return tuple(dict.fromkeys((*self.cfg.folders, *extra)))

    # -- connections -----------------------------------------------------------------------------
    def _password(self) -> str:
        password = self._secret()
        if not password:
            raise AuthError(f"no password stored for email account {self.account!r}: re-login needed")
        return password

    def _ssl_context(self, opts: ServerOptions) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=opts.ca_file)

    def _imap_connect(self) -> imaplib.IMAP4:
        """A logged-in IMAP connection (blocking; call from a worker thread)."""
        o = self.cfg.imap
        what = f"IMAP {o.host}:{o.port}"
        password = self._password()
        try:
            if o.tls == "implicit":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(o.host, o.port, ssl_context=self._ssl_context(o), timeout=o.timeout)
            else:
                conn = imaplib.IMAP4(o.host, o.port, timeout=o.timeout)
                if o.tls == "starttls":
                    conn.starttls(ssl_context=self._ssl_context(o))
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{what}: connection dropped ({exc})") from None
        except imaplib.IMAP4.error as exc:
            raise PermanentError(f"{what}: {exc}") from None
        except OSError as exc:
            raise _network_error(what, exc) from None
        try:
            conn.login(o.user, password)
        except imaplib.IMAP4.abort as exc:
            self._close(conn)
            raise TransientError(f"{what}: connection dropped during login ({exc})") from None
        except imaplib.IMAP4.error as exc:
            self._close(conn)
            text = str(exc)
            if "UNAVAILABLE" in text or "INUSE" in text:
                raise TransientError(f"{what}: server unavailable, try later") from None
            raise AuthError(f"IMAP login as {o.user} failed: re-login needed ({text[:120]})") from None
        except OSError as exc:
            self._close(conn)
            raise _network_error(what, exc) from None
        try:
            typ, data = conn.capability()
            caps = set(data[0].decode().upper().split()) if typ == "OK" and data and data[0] else set()
            if "CONDSTORE" in caps and "ENABLE" in caps:
                conn.enable("CONDSTORE")
        except imaplib.IMAP4.error as exc:
            self._close(conn)
            raise TransientError(f"{what}: {exc}") from None
        except OSError as exc:
            self._close(conn)
            raise _network_error(what, exc) from None
        conn._replydesk_caps = caps  # type: ignore[attr-defined]
        return conn

    @staticmethod
    def _close(conn: imaplib.IMAP4 | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.shutdown()

    def _with_imap(self, fn: Callable[[imaplib.IMAP4], T]) -> T:
        """Run ``fn`` on the pooled connection; a stale one gets exactly one fresh retry."""
        o = self.cfg.imap
        for attempt in (0, 1):
            fresh = self._conn is None
            if fresh:
                self._conn = self._imap_connect()
            conn = self._conn
            try:
                return fn(conn)
            except (imaplib.IMAP4.abort, OSError) as exc:
                self._conn = None
                self._close(conn)
                if fresh or attempt:
                    if isinstance(exc, OSError):
                        raise _network_error(f"IMAP {o.host}:{o.port}", exc) from None
                    raise TransientError(f"IMAP {o.host}:{o.port}: connection lost ({exc})") from None
            except imaplib.IMAP4.error as exc:
                raise TransientError(f"IMAP {o.host}:{o.port}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_imap(self, fn: Callable[[imaplib.IMAP4], T]) -> T:
        async with self._lock:
            return await asyncio.to_thread(self._with_imap, fn)

    async def aclose(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.to_thread(self._logout, conn)

    def _logout(self, conn: imaplib.IMAP4) -> None:
        try:
            conn.logout()
        except Exception:
            self._close(conn)

    # -- fetch -----------------------------------------------------------------------------------
    @staticmethod
    def folder_states(cursor: dict[str, Any] | None) -> dict[str, dict[str, int]]:
        """Accept ``{folder: state}``, ``{"imap:folder": {folder: state}}`` or mixtures of both."""
        states: dict[str, dict[str, int]] = {}

        def walk(node: Any) -> None:
            if not isinstance(node, dict):
                return
            for key, value in node.items():
                if isinstance(value, dict) and "uidvalidity" in value:
                    states[str(key)] = value
                elif isinstance(value, dict):
                    walk(value)

        walk(cursor or {})
        return states

    async def fetch(self, cursor: dict[str, Any] | None) -> list[FetchResult]:
        states = self.folder_states(cursor)
        results: list[FetchResult] = []
        for folder in self.sync_folders:
            results.extend(await self._fetch_folder(folder, states.get(folder)))
        return results

    async def _fetch_folder(self, folder: str, state: dict[str, int] | None) -> list[FetchResult]:
        raw_pages = await self._run_imap(lambda conn: self._sync_folder(conn, folder, state))
        results: list[FetchResult] = []
        for items, new_state in raw_pages:
            messages = [m for m in (self._to_incoming(folder, new_state["uidvalidity"], it) for it in items) if m]
            results.append(FetchResult(messages=messages, cursor={folder: new_state}, stream=f"imap:{folder}"))
        if raw_pages:
            self._state[folder] = raw_pages[-1][1]
        return results

    def _sync_folder(
        self, conn: imaplib.IMAP4, folder: str, state: dict[str, int] | None
    ) -> list[tuple[list[tuple[FetchedItem, ParsedMail]], dict[str, int]]]:
        """Blocking: new (and flag-changed) messages of one folder, in pages with their cursors."""
        typ, data = conn.select(quote_mailbox(folder), readonly=True)
        if typ != "OK":
            raise PermanentError(f"IMAP folder {folder!r} cannot be opened: {data[0]!r}")
        uidvalidity = _untagged_int(conn, "UIDVALIDITY") or 0
        uidnext = _untagged_int(conn, "UIDNEXT") or 0
        modseq = _untagged_int(conn, "HIGHESTMODSEQ")
        exists = _untagged_int(conn, "EXISTS") or 0
        if state and int(state.get("uidvalidity", -1)) != uidvalidity:
            log.info("%s: UIDVALIDITY of %s changed (%s -> %s); resyncing", self.account, folder,
                     state.get("uidvalidity"), uidvalidity)
            state = None
        last_uid = int(state.get("last_uid", 0)) if state else 0
        old_modseq = int(state.get("highestmodseq", 0) or 0) if state else 0

        new_uids: list[int] = []
        if exists and (not uidnext or uidnext > last_uid + 1):
            typ, data = conn.uid("SEARCH", f"UID {last_uid + 1}:*")
            if typ != "OK":
                raise TransientError(f"IMAP search in {folder!r} failed")
            new_uids = sorted(u for u in (int(x) for x in (data[0] or b"").split()) if u > last_uid)
        more = len(new_uids) > MAX_NEW_PER_FETCH
        new_uids = new_uids[:MAX_NEW_PER_FETCH]

        changed: list[int] = []
        if modseq and old_modseq and modseq > old_modseq and last_uid:
            typ, data = conn.uid("FETCH", f"1:{last_uid}", f"(UID FLAGS) (CHANGEDSINCE {old_modseq})")
            if typ == "OK":
                changed = sorted(parse_fetch(data))[:MAX_FLAG_REFRESH]

        base = {"uidvalidity": uidvalidity, "uidnext": uidnext, "last_uid": last_uid}
        if modseq is not None:
            base["highestmodseq"] = old_modseq if state else 0
        todo = changed + new_uids
        pages: list[tuple[list[tuple[FetchedItem, ParsedMail]], dict[str, int]]] = []
        for start in range(0, len(todo), PAGE_SIZE):
            chunk = todo[start:start + PAGE_SIZE]
            items = self._fetch_bodies(conn, chunk)
            page_state = dict(base)
            page_state["last_uid"] = max([base["last_uid"], *(u for u in chunk if u > last_uid)])
            base["last_uid"] = page_state["last_uid"]
            pages.append((items, page_state))
        final = dict(base)
        if modseq is not None and not more:
            final["highestmodseq"] = modseq  # only once every change up to it is in hand
        if pages:
            pages[-1] = (pages[-1][0], final)
        else:
            pages.append(([], final))
        return pages

    def _fetch_bodies(self, conn: imaplib.IMAP4, uids: list[int]) -> list[tuple[FetchedItem, ParsedMail]]:
        if not uids:
            return []
        modseq = " MODSEQ" if "CONDSTORE" in getattr(conn, "_replydesk_caps", set()) else ""
        typ, data = conn.uid("FETCH", _uid_set(uids), f"(UID FLAGS INTERNALDATE RFC822.SIZE{modseq})")
        if typ != "OK":
            raise TransientError("IMAP FETCH failed")
        meta = parse_fetch(data)
        small = [u for u in uids if u in meta and (meta[u].size or 0) <= self.cfg.max_message_bytes]
        big = [u for u in uids if u in meta and u not in small]
        bodies: dict[int, FetchedItem] = {}
        for group, spec in ((small, "BODY.PEEK[]"), (big, f"BODY.PEEK[]<0.{PARTIAL_BYTES}>")):
            if group:
                typ, data = conn.uid("FETCH", _uid_set(group), f"(UID {spec})")
                if typ != "OK":
                    raise TransientError("IMAP FETCH failed")
                bodies.update(parse_fetch(data))
        out: list[tuple[FetchedItem, ParsedMail]] = []
        for uid in uids:
            item = meta.get(uid)
            if item is None:
                continue  # expunged meanwhile
            body = bodies.get(uid)
            item.body = body.body if body else None
            parsed = parse_message(item.body or b"", self.cfg.address)
            if item.body is None:
                parsed.warnings.append("message body could not be fetched")
            if uid in big:
                parsed.warnings.append(
                    f"message is {item.size} bytes; only the first {PARTIAL_BYTES} were read "
                    "(attachment list may be incomplete)"
                )
            out.append((item, parsed))
        return out

    # -- mapping ---------------------------------------------------------------------------------
    def _to_incoming(self, folder: str, uidvalidity: int, entry: tuple[FetchedItem, ParsedMail]) -> IncomingMessage | None:
        item, p = entry
        own = self.cfg.address
        outgoing = folder == self.cfg.sent_folder or p.from_addr == own
        native_id = p.message_id or p.synthetic_id()
        if outgoing:
            others = [(n, a) for n, a in (*p.to, *p.cc) if a != own]
            if folder == self.cfg.sent_folder and not (p.references or p.in_reply_to):
                return None  # a new mail the shop wrote to someone: not a customer conversation
            if folder == self.cfg.sent_folder and DRAFT in item.flags:
                return None  # filed before SMTP and not confirmed: it may never have left
            cname, caddr = others[0] if others else ("", "")
        else:
            cname, caddr = p.from_name, p.from_addr
        # A bounce joins the thread of the message it returns (ours, usually).
        returned = p.report.message_ids if p.report else []
        conv = self._threads.assign(
            native_id, p.in_reply_to, [*returned, *p.references], p.subject, [caddr], self.resolve_thread
        )
        created = p.date or item.internaldate or time.time()
        if p.date is None:
            p.warnings.append("no usable Date header; using the server's arrival time")
        meta: dict[str, Any] = {
            "message_id": native_id,
            "in_reply_to": p.in_reply_to,
            "references": p.references,
            "subject": p.subject,
            "reply_to": p.reply_to or None,
            "to": [a for _, a in p.to],
            "cc": [a for _, a in p.cc],
            "folder": folder,
            "uid": item.uid,
            "uidvalidity": uidvalidity,
            "flags": item.flags,
            "seen": "\\Seen" in item.flags,
            "attachments": p.attachments,
        }
        if item.modseq is not None:
            meta["modseq"] = item.modseq
        if p.html_only:
            meta["html_only"] = True
        if p.warnings:
            meta["warnings"] = p.warnings
        if not p.message_id:
            meta["synthetic_id"] = True
        return IncomingMessage(
            native_id=native_id,
            conversation_native_id=conv,
            platform="email",
            kind="email",
            contact=Contact(native_id=caddr or "unknown", name=cname or caddr, handle=caddr),
            text=p.text,
            created_at=created,
            direction="out" if outgoing else "in",
            author=(p.from_name or p.from_addr) if not outgoing else (p.from_name or own),
            subject=p.subject,
            parent_native_id=p.in_reply_to or (p.references[-1] if p.references else None),
            meta=meta,
            automatic=None if outgoing else p.automatic,
            spans=tuple(p.spans),
            delivery_failure=DeliveryFailure(
                remote_ids=tuple(returned), reason=p.report.reason,
                outbox_keys=outbox_keys(returned, own.rsplit("@", 1)[-1]),
            ) if p.report and p.report.failed and not outgoing else None,
        )

    # -- stream (IDLE) ---------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[FetchResult]:
        """Yield results as mail arrives: IMAP IDLE per folder, or polling where IDLE is missing.

        Continues from the cursors this provider last returned (call ``fetch`` first); a folder
        never fetched is synced from the start. Errors surface as ProviderError for the engine.
        """
        caps: set[str] = await self._run_imap(lambda c: getattr(c, "_replydesk_caps", set()))
        if "IDLE" not in caps:
            while True:
                for folder in self.sync_folders:
                    async for result in self._refresh(folder):
                        yield result
                await asyncio.sleep(self.poll_interval)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException] = asyncio.Queue()
        stop = threading.Event()
        threads = [
            threading.Thread(target=self._idle_loop, args=(f, loop, queue, stop), daemon=True,
                             name=f"imap-idle-{self.account}-{f}")
            for f in self.sync_folders
        ]
        for t in threads:
            t.start()
        try:
            while True:
                first = await queue.get()
                batch = [first]
                await asyncio.sleep(0.05)  # coalesce a burst of EXISTS/FETCH lines
                while not queue.empty():
                    batch.append(queue.get_nowait())
                for entry in batch:
                    if isinstance(entry, BaseException):
                        raise entry
                for folder in dict.fromkeys(e for e in batch if isinstance(e, str)):
                    async for result in self._refresh(folder):
                        yield result
        finally:
            stop.set()
            for t in threads:
                await asyncio.to_thread(t.join, 2 * IDLE_READ_TIMEOUT + 1)

    async def _refresh(self, folder: str) -> AsyncIterator[FetchResult]:
        """Fetch ``folder`` from the last cursor; pass on only results that carry news."""
        before = dict(self._state.get(folder) or {})
        for result in await self._fetch_folder(folder, self._state.get(folder)):
            if result.messages or result.cursor.get(folder) != before:
                yield result

    def _idle_loop(self, folder: str, loop: asyncio.AbstractEventLoop,
                   queue: asyncio.Queue[str | BaseException], stop: threading.Event) -> None:
        """Thread: hold one IDLE connection on ``folder``; post the folder name on any change."""

        def post(item: str | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        tag = b"RDIDLE"
        try:
            while not stop.is_set():
                conn = self._imap_connect()
                try:
                    typ, data = conn.select(quote_mailbox(folder), readonly=True)
                    if typ != "OK":
                        raise PermanentError(f"IMAP folder {folder!r} cannot be opened: {data[0]!r}")
                    conn.send(tag + b" IDLE\r\n")
                    sock = conn.socket()
                    sock.settimeout(IDLE_READ_TIMEOUT)
                    buf = b""
                    idling = False
                    started = time.monotonic()
                    while not stop.is_set() and time.monotonic() - started < IDLE_REFRESH_SECONDS:
                        try:
                            chunk = sock.recv(4096)
                        except TimeoutError:
                            continue
                        if not chunk:
                            raise imaplib.IMAP4.abort("server closed the IDLE connection")
                        buf += chunk
                        while b"\r\n" in buf:
                            line, buf = buf.split(b"\r\n", 1)
                            if line.startswith(b"+") and not idling:
                                idling = True
                                post(folder)  # catch up on anything that arrived before IDLE began
                            elif line.startswith(tag):
                                raise imaplib.IMAP4.abort(f"IDLE ended: {line[:100]!r}")
                            elif line.startswith(b"* BYE"):
                                raise imaplib.IMAP4.abort("server said BYE")
                            elif re.match(rb"\* \d+ (EXISTS|EXPUNGE|FETCH|RECENT)", line):
                                post(folder)
                    with contextlib.suppress(OSError):
                        sock.sendall(b"DONE\r\n")
                finally:
                    self._close(conn)
        except ProviderError as exc:
            post(exc)
        except (imaplib.IMAP4.abort, OSError) as exc:
            if not stop.is_set():
                post(_network_error(f"IMAP IDLE on {folder!r}", exc) if isinstance(exc, OSError)
                     else TransientError(f"IMAP IDLE on {folder!r}: {exc}"))
        except imaplib.IMAP4.error as exc:
            post(TransientError(f"IMAP IDLE on {folder!r}: {exc}"))

    # -- send ------------------------------------------------------------------------------------
    def message_id_for(self, key: str) -> str:
        """Our Message-ID is a pure function of the outbox key, so a resend can be recognised."""
        safe = key if re.fullmatch(r"[A-Za-z0-9._+=-]{1,64}", key) else sha256(key.encode()).hexdigest()[:40]
        domain = self.cfg.address.rsplit("@", 1)[1]
        return f"<replydesk.{safe}@{domain}>"

    def build_reply(self, reply: OutgoingReply) -> EmailMessage:
        """The MIME message for ``reply``: threading headers from the message it answers."""
        meta = reply.meta or {}
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
            name = self.options.get("display_name")
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
            raise PermanentError(f"email account {self.account!r} has no smtp settings")
        msg = self.build_reply(reply)
        raw = msg.as_bytes()
        message_id = str(msg["Message-ID"])
        recipients = [a for _, a in email.utils.getaddresses([str(msg["To"])]) if a]
        folder = self.cfg.sent_folder
        if folder:
            await self._run_imap(lambda c: self._file_pending(c, folder, raw, message_id))
        try:
            await asyncio.to_thread(self._smtp_send, raw, recipients)
        except UnknownDelivery:
            raise  # the flagged copy stays: a later lookup reports it as uncertain
        except ProviderError:
            if folder:
                try:
                    await self._run_imap(lambda c: self._drop_pending(c, folder, message_id))
                except ProviderError as exc:  # a retry will see the flagged copy and ask the user
                    log.warning("%s: could not take back the unsent copy in %s: %s", self.account, folder, exc)
            raise
        sent_at = time.time()
        if folder:
            try:
                await self._run_imap(lambda c: self._settle_sent(c, folder, message_id))
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
        password = self._password()
        phase = "connect"
        try:
            if o.tls == "implicit":
                client: smtplib.SMTP = smtplib.SMTP_SSL(o.host, o.port, timeout=o.timeout, context=self._ssl_context(o))
            else:
                client = smtplib.SMTP(o.host, o.port, timeout=o.timeout)
            with client:
                client.ehlo()
                if o.tls == "starttls":
                    client.starttls(context=self._ssl_context(o))
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
                raise _network_error(what, exc) from None
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None

    def _sent_copies(self, conn: imaplib.IMAP4, folder: str, message_id: str, *,
                     writable: bool = False) -> list[FetchedItem]:
        """Blocking: the (not deleted) messages of ``folder`` with exactly this Message-ID."""
        typ, data = conn.select(quote_mailbox(folder), readonly=not writable)
        if typ != "OK":
            raise PermanentError(f"IMAP folder {folder!r} cannot be opened: {data[0]!r}")
        typ, data = conn.uid("SEARCH", "UNDELETED", "HEADER", "Message-ID", _quote_string(message_id))
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
        return _uid_set(uids) if uids else None

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
            if "UIDPLUS" in getattr(conn, "_replydesk_caps", set()):
                conn.uid("EXPUNGE", uids)  # only ours; without UIDPLUS it stays \\Deleted

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        """Look for our Message-ID (derived from the outbox key) in the Sent folder.

        Not there: it never reached SMTP (the copy is filed first), so sending is safe. There
        without \\Draft: it left. There still flagged: the attempt was cut off between filing
        and confirming, so it may or may not have left: UnknownDelivery, the user decides."""
        folder = self.cfg.sent_folder
        if not folder:
            raise UnknownDelivery("no sent_folder configured, so a sent reply cannot be looked up")
        message_id = self.message_id_for(reply.key)
        copies = await self._run_imap(lambda c: self._sent_copies(c, folder, message_id))
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

