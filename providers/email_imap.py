"""Email, part 1 of 3: the IMAP session — connecting, one pooled connection, and IDLE.

Library: the standard library's imaplib, each call run in a worker thread (asyncio.to_thread).
Why: no extra dependency, the most widely exercised client against odd servers, and raw commands
(ENABLE CONDSTORE, UID FETCH ... CHANGEDSINCE, UID SEARCH HEADER) pass straight through. imaplib on
3.11 has no IDLE, so IDLE is a few lines on the raw socket in a daemon thread. aioimaplib (native
async + IDLE) was the alternative, but it is far less used and imapclient is synchronous anyway.

The mailbox sync (``email_mailbox``) and the Sent-folder ledger (``email_smtp``) both work through
one ``ImapSession``; ``email`` ties them into the provider.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import errno
import imaplib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from replydesk.providers.base import AuthError, Offline, PermanentError, ProviderError, TransientError

if TYPE_CHECKING:
    from replydesk.providers.email import ImapServer, MailServer

T = TypeVar("T")

DRAFT = "\\Draft"  # a copy in Sent not (yet) confirmed sent: see email_smtp.MailSender.send
IDLE_REFRESH_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE before the server's 30 min timeout
IDLE_READ_TIMEOUT = 0.5  # how quickly an IDLE thread notices it should stop


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


def quote_string(value: str) -> str:
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


def uid_set(uids: Sequence[int]) -> str:
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


def untagged_int(conn: imaplib.IMAP4, key: str) -> int | None:
    values = conn.untagged_responses.get(key)
    if not values:
        return None
    try:
        raw = values[-1]
        return int(raw.split()[0] if isinstance(raw, bytes) else raw)
    except (ValueError, IndexError):
        return None


def network_error(what: str, exc: BaseException) -> ProviderError:
    """Connection trouble as the engine understands it; never includes credentials."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"{what}: TLS certificate rejected ({exc.verify_message})")
    if isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)):
        return Offline(f"{what}: network unreachable ({exc})")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{what}: timed out")
    return TransientError(f"{what}: {type(exc).__name__}: {exc}")



def ssl_context(opts: MailServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=opts.ca_file)


def capabilities(conn: imaplib.IMAP4) -> set[str]:
    """What the server announced at login (kept on the connection by ``ImapSession.connect``)."""
    return getattr(conn, "_replydesk_caps", set())


# ------------------------------------------------------------------------------------------------


class ImapSession:
    """One mailbox's IMAP side: a pooled connection for commands, fresh ones for IDLE threads.

    Every call is blocking imaplib work run in a worker thread, one at a time (the lock), on the
    pooled connection; a stale connection gets exactly one fresh retry.
    """

    def __init__(self, account: str, server: ImapServer, password: Callable[[], str]) -> None:
        self.account = account
        self.server = server
        self.password = password
        self._conn: imaplib.IMAP4 | None = None
        self._lock = asyncio.Lock()

    def connect(self) -> imaplib.IMAP4:
        """A logged-in IMAP connection (blocking; call from a worker thread)."""
        o = self.server
        what = f"IMAP {o.host}:{o.port}"
        password = self.password()
        try:
            if o.tls == "implicit":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(o.host, o.port, ssl_context=ssl_context(o), timeout=o.timeout)
            else:
                conn = imaplib.IMAP4(o.host, o.port, timeout=o.timeout)
                if o.tls == "starttls":
                    conn.starttls(ssl_context=ssl_context(o))
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{what}: connection dropped ({exc})") from None
        except imaplib.IMAP4.error as exc:
            raise PermanentError(f"{what}: {exc}") from None
        except OSError as exc:
            raise network_error(what, exc) from None
        try:
            conn.login(o.user, password)
        except imaplib.IMAP4.abort as exc:
            self.close(conn)
            raise TransientError(f"{what}: connection dropped during login ({exc})") from None
        except imaplib.IMAP4.error as exc:
            self.close(conn)
            text = str(exc)
            if "UNAVAILABLE" in text or "INUSE" in text:
                raise TransientError(f"{what}: server unavailable, try later") from None
            raise AuthError(f"IMAP login as {o.user} failed: re-login needed ({text[:120]})") from None
        except OSError as exc:
            self.close(conn)
            raise network_error(what, exc) from None
        try:
            typ, data = conn.capability()
            caps = set(data[0].decode().upper().split()) if typ == "OK" and data and data[0] else set()
            if "CONDSTORE" in caps and "ENABLE" in caps:
                conn.enable("CONDSTORE")
        except imaplib.IMAP4.error as exc:
            self.close(conn)
            raise TransientError(f"{what}: {exc}") from None
        except OSError as exc:
            self.close(conn)
            raise network_error(what, exc) from None
        conn._replydesk_caps = caps  # type: ignore[attr-defined]
        return conn

    @staticmethod
    def close(conn: imaplib.IMAP4 | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.shutdown()

    def with_conn(self, fn: Callable[[imaplib.IMAP4], T]) -> T:
        """Run ``fn`` on the pooled connection; a stale one gets exactly one fresh retry."""
        o = self.server
        for attempt in (0, 1):
            fresh = self._conn is None
            if fresh:
                self._conn = self.connect()
            conn = self._conn
            try:
                return fn(conn)
            except (imaplib.IMAP4.abort, OSError) as exc:
                self._conn = None
                self.close(conn)
                if fresh or attempt:
                    if isinstance(exc, OSError):
                        raise network_error(f"IMAP {o.host}:{o.port}", exc) from None
                    raise TransientError(f"IMAP {o.host}:{o.port}: connection lost ({exc})") from None
            except imaplib.IMAP4.error as exc:
                raise TransientError(f"IMAP {o.host}:{o.port}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, fn: Callable[[imaplib.IMAP4], T]) -> T:
        """Run blocking ``fn`` on the pooled connection, in a worker thread, one call at a time."""
        async with self._lock:
            return await asyncio.to_thread(self.with_conn, fn)

    async def aclose(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.to_thread(self._logout, conn)

    def _logout(self, conn: imaplib.IMAP4) -> None:
        try:
            conn.logout()
        except Exception:
            self.close(conn)

    def idle_loop(self, folder: str, loop: asyncio.AbstractEventLoop,
                   queue: asyncio.Queue[str | BaseException], stop: threading.Event) -> None:
        """Thread: hold one IDLE connection on ``folder``; post the folder name on any change."""

        def post(item: str | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(queue.put_nowait, item)

        tag = b"RDIDLE"
        try:
            while not stop.is_set():
                conn = self.connect()
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
                    self.close(conn)
        except ProviderError as exc:
            post(exc)
        except (imaplib.IMAP4.abort, OSError) as exc:
            if not stop.is_set():
                post(network_error(f"IMAP IDLE on {folder!r}", exc) if isinstance(exc, OSError)
                     else TransientError(f"IMAP IDLE on {folder!r}: {exc}"))
        except imaplib.IMAP4.error as exc:
            post(TransientError(f"IMAP IDLE on {folder!r}: {exc}"))
