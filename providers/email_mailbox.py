"""Email, part 2 of 3: mailbox sync — folders into pages of messages, and mail into conversations.

Cursor (one per stream ``imap:{folder}``): ``{folder: {"uidvalidity", "last_uid", "uidnext",
"highestmodseq"}}``. Each ``FetchResult`` carries only its own folder's key, so the engine may pass
``fetch()`` either one stream's cursor or the union (``{**a, **b}``) of all of them; folders missing
from the cursor are synced from the start (idempotent: Message-ID is the item identity).
New mail arrives through IMAP IDLE where the server has it (``stream``), by polling otherwise.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from replydesk.model import Contact, DeliveryFailure, FetchResult, IncomingMessage
from replydesk.providers import payload
from replydesk.providers.base import PermanentError, TransientError
from replydesk.providers.email_auto import outbox_keys
from replydesk.providers.email_imap import (
    DRAFT,
    IDLE_READ_TIMEOUT,
    FetchedItem,
    ImapSession,
    capabilities,
    parse_fetch,
    quote_mailbox,
    uid_set,
    untagged_int,
)
from replydesk.providers.email_parse import ParsedMail, parse_message
from replydesk.providers.email_thread import ThreadIndex

if TYPE_CHECKING:
    from replydesk.providers.email import EmailOptions

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # messages per FetchResult: one storage transaction each
MAX_NEW_PER_FETCH = 2000  # per folder and call; the rest comes on the next poll
MAX_FLAG_REFRESH = 500
PARTIAL_BYTES = 256 * 1024


class MailboxSync:
    """The configured folders (and Sent) of one mailbox, synced into ``FetchResult`` pages."""

    def __init__(self, account: str, cfg: EmailOptions, session: ImapSession,
                 resolve_thread: Callable[[Sequence[str]], str | None], poll_interval: Callable[[], float]) -> None:
        self.account = account
        self.cfg = cfg
        self.session = session
        self.resolve_thread = resolve_thread
        self.poll_interval = poll_interval
        self._threads = ThreadIndex()
        #: the last cursor state handed out per folder; stream() continues from it
        self._state: dict[str, dict[str, int]] = {}

    @property
    def sync_folders(self) -> tuple[str, ...]:
        """Configured folders plus the Sent folder, so replies written elsewhere join threads."""
        extra = (self.cfg.imap.sent_folder,) if self.cfg.imap.sent_folder else ()
        return tuple(dict.fromkeys((*self.cfg.imap.folders, *extra)))

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
        raw_pages = await self.session.run(lambda conn: self._sync_folder(conn, folder, state))
        results: list[FetchResult] = []
        for items, new_state in raw_pages:
            messages, rejected = self.map_fetched(folder, new_state["uidvalidity"], items)
            results.append(FetchResult(messages=messages, cursor={folder: new_state}, stream=f"imap:{folder}",
                                       rejected=rejected))
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
        uidvalidity = untagged_int(conn, "UIDVALIDITY") or 0
        uidnext = untagged_int(conn, "UIDNEXT") or 0
        modseq = untagged_int(conn, "HIGHESTMODSEQ")
        exists = untagged_int(conn, "EXISTS") or 0
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
        modseq = " MODSEQ" if "CONDSTORE" in capabilities(conn) else ""
        typ, data = conn.uid("FETCH", uid_set(uids), f"(UID FLAGS INTERNALDATE RFC822.SIZE{modseq})")
        if typ != "OK":
            raise TransientError("IMAP FETCH failed")
        meta = parse_fetch(data)
        small = [u for u in uids if u in meta and (meta[u].size or 0) <= self.cfg.imap.max_message_bytes]
        big = [u for u in uids if u in meta and u not in small]
        bodies: dict[int, FetchedItem] = {}
        for group, spec in ((small, "BODY.PEEK[]"), (big, f"BODY.PEEK[]<0.{PARTIAL_BYTES}>")):
            if group:
                typ, data = conn.uid("FETCH", uid_set(group), f"(UID {spec})")
                if typ != "OK":
                    raise TransientError("IMAP FETCH failed")
                bodies.update(parse_fetch(data))
        out: list[tuple[FetchedItem, ParsedMail | None]] = []
        for uid in uids:
            item = meta.get(uid)
            if item is None:
                continue  # expunged meanwhile
            body = bodies.get(uid)
            item.body = body.body if body else None
            parsed = self.parse(item)
            if parsed is None:
                out.append((item, None))
                continue
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
    def parse(self, item: FetchedItem) -> ParsedMail | None:
        """The fetched message parsed, or None when it cannot be (hostile or broken: it is rejected
        when mapped, and the others of its page go on)."""
        try:
            return parse_message(item.body or b"", self.cfg.address)
        except Exception:
            log.debug("%s: uid %s cannot be parsed", self.account, item.uid, exc_info=True)
            return None

    def map_fetched(self, folder: str, uidvalidity: int, items: Sequence[tuple[FetchedItem, ParsedMail | None]]
                    ) -> tuple[list[IncomingMessage], list[tuple[str, str]]]:
        """One page of fetched mail as messages; a message that cannot be parsed or mapped is rejected
        with a reason (``payload.map_each``), the others are kept."""
        return payload.map_each(items, lambda it: self._to_incoming(folder, uidvalidity, it),
                                lambda it: f"{folder} uid {it[0].uid}")

    def _to_incoming(self, folder: str, uidvalidity: int,
                     entry: tuple[FetchedItem, ParsedMail | None]) -> IncomingMessage | None:
        item, p = entry
        if p is None:
            raise payload.BadItem("the message cannot be parsed")
        own = self.cfg.address
        outgoing = folder == self.cfg.imap.sent_folder or p.from_addr == own
        native_id = p.message_id or p.synthetic_id()
        if outgoing:
            others = [(n, a) for n, a in (*p.to, *p.cc) if a != own]
            if folder == self.cfg.imap.sent_folder and not (p.references or p.in_reply_to):
                return None  # a new mail the shop wrote to someone: not a customer conversation
            if folder == self.cfg.imap.sent_folder and DRAFT in item.flags:
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
        caps: set[str] = await self.session.run(capabilities)
        if "IDLE" not in caps:
            while True:
                for folder in self.sync_folders:
                    async for result in self._refresh(folder):
                        yield result
                await asyncio.sleep(self.poll_interval())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException] = asyncio.Queue()
        stop = threading.Event()
        threads = [
            threading.Thread(target=self.session.idle_loop, args=(f, loop, queue, stop), daemon=True,
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
