"""The email provider against a real Dovecot (IMAP) and an aiosmtpd server delivering into it.

Each test is something a shop owner would notice: a mail shows up once, in the right thread, in
readable text; a reply threads in the customer's mail client; outages and bad passwords are
reported the way the sync engine expects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import time
from collections.abc import AsyncIterator, Iterator
from email import policy
from typing import Any

import pytest

from replydesk.model import AnsweredMessage, FetchResult, IncomingMessage, OutgoingReply
from replydesk.providers.base import AuthError, ProviderError, TransientError, UnknownDelivery
from replydesk.providers.email import EmailProvider
from replydesk.providers.email_imap import parse_fetch
from servers import (
    ALICE,
    SHOP,
    DovecotServer,
    SmtpSink,
    free_port,
    mail_test_marks,
    make_mail,
    require_server,
    running_dovecot,
    running_smtp,
)

pytestmark = mail_test_marks(60)

DAY = 86400.0
T0 = 1_704_096_000.0  # 2024-01-01 08:00 UTC


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    with running_dovecot({"hello": "shop-pw", "alice": "alice-pw"}) as server:
        yield server


@pytest.fixture
def smtp(dovecot: DovecotServer) -> Iterator[SmtpSink]:
    with running_smtp(dovecot) as sink:
        yield sink


class Engine:
    """The slice of the sync engine these tests need: upsert by native id, cursor per stream."""

    def __init__(self) -> None:
        self.items: dict[str, IncomingMessage] = {}
        self.cursors: dict[str, dict[str, Any]] = {}
        self.ingested = 0

    def cursor(self) -> dict[str, Any] | None:
        merged: dict[str, Any] = {}
        for c in self.cursors.values():
            merged.update(c)
        return merged or None

    def store(self, results: list[FetchResult]) -> list[IncomingMessage]:
        new = []
        for r in results:
            for m in r.messages:
                self.items[m.native_id] = m
                new.append(m)
            self.cursors[r.stream] = r.cursor
        self.ingested += len(new)
        return new

    def resolve(self, ids: Any) -> str | None:
        return next((self.items[i].conversation_native_id for i in ids if i in self.items), None)

    async def sync(self, provider: EmailProvider) -> list[IncomingMessage]:
        return self.store(await provider.fetch(self.cursor()))


@contextlib.asynccontextmanager
async def email_provider(dovecot: DovecotServer, smtp: SmtpSink | None = None, *, password: str = "shop-pw",
                         folders: tuple[str, ...] = ("INBOX",), sent: str | None = "Sent",
                         engine: Engine | None = None) -> AsyncIterator[EmailProvider]:
    options: dict[str, Any] = {
        "address": SHOP,
        "imap": {"host": "127.0.0.1", "port": dovecot.port, "tls": "none", "user": SHOP,
                 "folders": list(folders), "sent_folder": sent, "timeout": 5},
    }
    if smtp is not None:
        options["smtp"] = {"host": smtp.host, "port": smtp.port, "tls": "none", "user": SHOP, "timeout": 5}
    provider = EmailProvider("shop-mail", options, lambda: password)
    if engine is not None:
        provider.resolve_thread = engine.resolve
    try:
        yield provider
    finally:
        await provider.aclose()


def deliver(dovecot: DovecotServer, raw: bytes, user: str = "hello", folder: str = "INBOX") -> None:
    dovecot.deliver(user, raw, folder=folder, sender=ALICE)


# ------------------------------------------------------------------------------------------------


async def test_plain_mail_appears_once_with_sender_subject_and_date(dovecot: DovecotServer) -> None:
    deliver(dovecot, make_mail(subject="Opening hours?", sender=f"Alice Example <{ALICE}>",
                               body="Are you open on Sunday?\n", message_id="<q1@customer.example>", date=T0))
    engine = Engine()
    async with email_provider(dovecot, engine=engine) as p:
        results = await p.fetch(None)
        assert [r.stream for r in results] == ["imap:INBOX", "imap:Sent"]
        engine.store(results)
        [m] = results[0].messages
        assert (m.native_id, m.conversation_native_id, m.platform, m.kind, m.direction) == (
            "<q1@customer.example>", "<q1@customer.example>", "email", "email", "in")
        assert (m.contact.native_id, m.contact.name, m.contact.handle) == (ALICE, "Alice Example", ALICE)
        assert (m.subject, m.text, m.created_at) == ("Opening hours?", "Are you open on Sunday?", T0)
        assert (m.meta["message_id"], m.meta["references"], m.meta["seen"], m.meta["folder"]) == (
            "<q1@customer.example>", [], False, "INBOX")
        assert "warnings" not in m.meta
        assert await engine.sync(p) == []  # nothing new: nothing returned


async def test_thread_of_five_across_two_days_is_one_conversation(dovecot: DovecotServer) -> None:
    ids = [f"<t{i}@customer.example>" for i in range(5)]
    engine = Engine()
    deliver(dovecot, make_mail(subject="Broken mug", message_id=ids[0], date=T0, body="It arrived broken."))
    dovecot.append("hello", make_mail(subject="Re: Broken mug", sender=SHOP, to=ALICE, message_id=ids[1],
                                      in_reply_to=ids[0], references=[ids[0]], date=T0 + 3600,
                                      body="Sorry! Photo please?"), folder="Sent")
    deliver(dovecot, make_mail(subject="Re: Broken mug", message_id=ids[2], in_reply_to=ids[1],
                               references=ids[:2], date=T0 + 7200, body="Here it is."))
    async with email_provider(dovecot, engine=engine) as p:
        await engine.sync(p)
    # next day, a new process: one mail only has In-Reply-To, one lost all threading headers
    deliver(dovecot, make_mail(subject="AW: Broken mug", message_id=ids[3], in_reply_to=ids[2],
                               date=T0 + DAY, body="Any news?"))
    deliver(dovecot, make_mail(subject="RE: broken mug", message_id=ids[4], date=T0 + DAY + 60,
                               body="Hello??"))
    async with email_provider(dovecot, engine=engine) as p:
        await engine.sync(p)
    assert sorted(engine.items) == sorted(ids)
    assert {m.conversation_native_id for m in engine.items.values()} == {ids[0]}
    assert [engine.items[i].direction for i in ids] == ["in", "out", "in", "in", "in"]
    assert engine.items[ids[1]].contact.native_id == ALICE  # our reply is filed under the customer


async def test_html_only_mail_reads_as_text(dovecot: DovecotServer) -> None:
    raw = (f"From: {ALICE}\r\nTo: {SHOP}\r\nSubject: Newsletter reply\r\nMessage-ID: <h1@c>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           "<html><body><p>I <i>love</i> the new <a href='https://shop.example/mug'>mug</a>!</p>"
           "<div>Can I get it in green?</div></body></html>\r\n").encode()
    deliver(dovecot, raw)
    async with email_provider(dovecot) as p:
        [m] = (await p.fetch(None))[0].messages
    assert m.text == "I love the new mug (https://shop.example/mug)!\n\nCan I get it in green?"  # no Markdown
    assert m.meta["html_only"] is True


async def test_greek_iso_8859_7_with_encoded_subject(dovecot: DovecotServer) -> None:
    body = "Καλημέρα! Πότε θα σταλεί η παραγγελία μου;".encode("iso-8859-7")
    raw = (b"From: =?iso-8859-7?b?wevd7uHt5PHv8g==?= <alex@example.gr>\r\nTo: hello@shop.example\r\n"
           b"Subject: =?iso-8859-7?b?0PH84uvn7OEg7OUg9OftIPDh8eHj4+Xr3+E=?=\r\nMessage-ID: <gr@example.gr>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-7\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(body))
    deliver(dovecot, raw)
    async with email_provider(dovecot) as p:
        [m] = (await p.fetch(None))[0].messages
    assert (m.subject, m.text) == ("Πρόβλημα με την παραγγελία", "Καλημέρα! Πότε θα σταλεί η παραγγελία μου;")
    assert (m.contact.name, m.contact.native_id) == ("Αλέξανδρος", "alex@example.gr")


async def test_hindi_utf8(dovecot: DovecotServer) -> None:
    deliver(dovecot, make_mail(subject="ऑर्डर की स्थिति", sender="राहुल <rahul@example.in>",
                               body="नमस्ते, मेरा ऑर्डर कब आएगा?", message_id="<hi@example.in>"))
    async with email_provider(dovecot) as p:
        [m] = (await p.fetch(None))[0].messages
    assert (m.subject, m.text, m.contact.name) == ("ऑर्डर की स्थिति", "नमस्ते, मेरा ऑर्डर कब आएगा?", "राहुल")


async def test_attachment_is_listed_not_shown(dovecot: DovecotServer) -> None:
    msg = email.message.EmailMessage(policy=policy.SMTP)
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = ALICE, SHOP, "Receipt", "<att@c>"
    msg.set_content("Receipt attached.")
    msg.add_attachment(b"%PDF" + b"\0" * 2044, maintype="application", subtype="pdf", filename="receipt.pdf")
    deliver(dovecot, msg.as_bytes())
    async with email_provider(dovecot) as p:
        [m] = (await p.fetch(None))[0].messages
    assert m.text == "Receipt attached."
    assert m.meta["attachments"] == [{"name": "receipt.pdf", "type": "application/pdf", "size": 2048}]


async def test_reply_arrives_threaded_and_joins_the_conversation(dovecot: DovecotServer, smtp: SmtpSink) -> None:
    engine = Engine()
    deliver(dovecot, make_mail(subject="Re: Order 42", message_id="<o2@customer.example>",
                               in_reply_to="<o1@shop.example>", references=["<o1@shop.example>"],
                               body="Where is order 42?"))
    async with email_provider(dovecot, smtp, engine=engine) as p:
        [question] = await engine.sync(p)
        reply = OutgoingReply(
            key="01HZXKEY42", conversation_id="c1", conversation_native_id=question.conversation_native_id,
            account="shop-mail", kind="email", private=True, text="It ships today. — Shop",
            customer_handle=question.contact.handle, answering=AnsweredMessage(question.native_id, question.meta),
        )
        assert await p.lookup_sent(reply) is None  # not sent yet: safe to send
        result = await p.send(reply)
        assert result.remote_id == "<replydesk.01HZXKEY42@shop.example>"

        [raw] = dovecot.fetch_raw("alice")  # what the customer's mail client receives
        got = email.message_from_bytes(raw, policy=policy.default)
        assert (got["From"], got["To"], got["Subject"]) == (SHOP, ALICE, "Re: Order 42")
        assert got["Message-ID"] == "<replydesk.01HZXKEY42@shop.example>"
        assert got["In-Reply-To"] == "<o2@customer.example>"
        assert got["References"] == "<o1@shop.example> <o2@customer.example>"
        assert got.get_content().strip() == "It ships today. — Shop"

        found = await p.lookup_sent(reply)  # after a crash, the outbox finds it instead of resending
        assert found is not None and found.remote_id == result.remote_id

        [ours] = await engine.sync(p)  # the Sent copy comes back as our side of the thread
    assert (ours.native_id, ours.direction, ours.conversation_native_id) == (
        result.remote_id, "out", "<o1@shop.example>")
    assert ours.conversation_native_id == question.conversation_native_id


def sent_flags(dovecot: DovecotServer) -> list[str]:
    """Flags of each message in the shop's Sent folder, in UID order."""
    with dovecot.imap("hello") as conn:
        conn.select("Sent", readonly=True)
        typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
        return [] if data == [None] else [
            " ".join(sorted(flag for flag in item.flags if flag != "\\Recent")) for item in parse_fetch(data).values()]


def reply_to(question: IncomingMessage, key: str) -> OutgoingReply:
    return OutgoingReply(
        key=key, conversation_id="c1", conversation_native_id=question.conversation_native_id,
        account="shop-mail", kind="email", private=True, text="On its way.",
        customer_handle=question.contact.handle, answering=AnsweredMessage(question.native_id, question.meta),
    )


class Crash(BaseException):
    """The process dying at this instant (not an error the provider could handle)."""


async def test_crash_after_smtp_accepted_is_reported_uncertain_not_resent(dovecot: DovecotServer,
                                                                           smtp: SmtpSink) -> None:
    engine = Engine()
    deliver(dovecot, make_mail(subject="Order 7", message_id="<q7@customer.example>"))
    async with email_provider(dovecot, smtp, engine=engine) as p:
        [question] = await engine.sync(p)
        reply = reply_to(question, "01HZCRASH7")

        def dies(*_: Any) -> None:
            raise Crash

        p.sender._settle_sent = dies  # type: ignore[method-assign]  # killed right after SMTP said 250
        with pytest.raises(Crash):
            await p.send(reply)
        assert len(dovecot.fetch_raw("alice")) == 1  # it did leave
        assert sent_flags(dovecot) == ["\\Draft \\Seen"]  # filed before SMTP, never confirmed
        # After the restart the outbox asks before resending: the answer is "maybe", never "no".
        with pytest.raises(UnknownDelivery, match="may have been delivered"):
            await p.lookup_sent(reply)
        assert await engine.sync(p) == []  # an unconfirmed copy is not shown as a sent reply
    assert len(dovecot.fetch_raw("alice")) == 1


async def test_refused_send_takes_its_copy_back_so_the_retry_sends_once(dovecot: DovecotServer,
                                                                        smtp: SmtpSink) -> None:
    engine = Engine()
    deliver(dovecot, make_mail(subject="Order 8", message_id="<q8@customer.example>"))
    down = SmtpSink("127.0.0.1", free_port(), smtp.handler)  # nothing listens there
    async with email_provider(dovecot, down, engine=engine) as p:
        [question] = await engine.sync(p)
        reply = reply_to(question, "01HZRETRY8")
        with pytest.raises(ProviderError):
            await p.send(reply)
        assert sent_flags(dovecot) == []  # the unsent copy was taken back
        assert await p.lookup_sent(reply) is None  # so the outbox knows a resend is safe
    async with email_provider(dovecot, smtp, engine=engine) as p:
        result = await p.send(reply)
        assert (await p.lookup_sent(reply)).remote_id == result.remote_id
    assert len(dovecot.fetch_raw("alice")) == 1
    assert sent_flags(dovecot) == ["\\Seen"]  # one copy, confirmed


async def test_uidvalidity_reset_resyncs_without_duplicates(dovecot: DovecotServer) -> None:
    with dovecot.imap("hello") as conn:
        conn.create("Support")
    for i in range(2):
        deliver(dovecot, make_mail(subject=f"S{i}", message_id=f"<s{i}@c>"), folder="Support")
    engine = Engine()
    async with email_provider(dovecot, folders=("Support",), sent=None, engine=engine) as p:
        assert len(await engine.sync(p)) == 2
        before = engine.cursors["imap:Support"]["Support"]["uidvalidity"]
        dovecot.recreate_folder("hello", "Support")  # e.g. the server was migrated
        for i in range(3):
            deliver(dovecot, make_mail(subject=f"S{i}", message_id=f"<s{i}@c>"), folder="Support")
        again = await engine.sync(p)
    after = engine.cursors["imap:Support"]["Support"]["uidvalidity"]
    assert after != before
    assert [m.native_id for m in again] == ["<s0@c>", "<s1@c>", "<s2@c>"]  # full resync of the folder
    assert sorted(engine.items) == ["<s0@c>", "<s1@c>", "<s2@c>"]  # upserts: still one each


async def test_flag_changes_are_picked_up_with_condstore(dovecot: DovecotServer) -> None:
    deliver(dovecot, make_mail(message_id="<f1@c>"))
    engine = Engine()
    async with email_provider(dovecot, engine=engine) as p:
        [m] = await engine.sync(p)
        assert m.meta["seen"] is False
        with dovecot.imap("hello") as conn:  # the owner read it on their phone
            conn.select("INBOX")
            conn.uid("STORE", "1", "+FLAGS", "(\\Seen)")
        [again] = await engine.sync(p)
    assert (again.native_id, again.meta["seen"], again.meta["flags"]) == ("<f1@c>", True, ["\\Seen"])


async def test_idle_delivers_new_mail_by_push(dovecot: DovecotServer) -> None:
    async with email_provider(dovecot) as p:
        await p.fetch(None)
        got: asyncio.Queue[FetchResult] = asyncio.Queue()

        async def consume() -> None:
            async for result in p.stream():
                await got.put(result)

        task = asyncio.create_task(consume())
        try:
            await asyncio.sleep(0.5)  # let the IDLE connections settle, so this is a push, not a catch-up
            sent_at = time.monotonic()
            deliver(dovecot, make_mail(subject="Live!", message_id="<live@c>"))
            while True:
                result = await asyncio.wait_for(got.get(), timeout=60.0)  # a cap: it ends when mail comes
                if result.messages:
                    break
            elapsed = time.monotonic() - sent_at
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [m.native_id for m in result.messages] == ["<live@c>"]
    assert result.stream == "imap:INBOX"  # through the stream: nothing else polls in this test
    print(f"IDLE push latency: {elapsed:.2f} s")  # a figure, not a test: the bench measures speed


async def test_server_gone_mid_sync_then_resumes_without_loss_or_doubles(dovecot: DovecotServer) -> None:
    engine = Engine()
    for i in range(3):
        deliver(dovecot, make_mail(message_id=f"<g{i}@c>"))
    async with email_provider(dovecot, engine=engine) as p:
        assert len(await engine.sync(p)) == 3
        for i in range(3, 5):
            deliver(dovecot, make_mail(message_id=f"<g{i}@c>"))
        real = p.mailbox._fetch_bodies

        def dies_before_bodies(conn: Any, uids: list[int]) -> Any:
            dovecot.stop()  # the server goes away after SELECT/SEARCH, before the messages come
            return real(conn, uids)

        p.mailbox._fetch_bodies = dies_before_bodies  # type: ignore[method-assign]
        with pytest.raises(TransientError):
            await engine.sync(p)
        p.mailbox._fetch_bodies = real  # type: ignore[method-assign]
        with pytest.raises(TransientError):  # still down: the engine keeps backing off
            await engine.sync(p)
        dovecot.start()
        resumed = await engine.sync(p)
    assert [m.native_id for m in resumed] == ["<g3@c>", "<g4@c>"]
    assert sorted(engine.items) == [f"<g{i}@c>" for i in range(5)]
    assert engine.ingested == 5  # nothing fetched twice


async def test_wrong_password_asks_for_relogin(dovecot: DovecotServer, smtp: SmtpSink) -> None:
    async with email_provider(dovecot, smtp, password="not-the-password") as p:
        with pytest.raises(AuthError, match="re-login needed") as imap_err:
            await p.fetch(None)
        reply = OutgoingReply(key="k1", conversation_id="c", conversation_native_id="<x@c>", account="shop-mail",
                              kind="email", private=True, text="hi",
                              customer_handle=ALICE, answering=AnsweredMessage("<x@c>", {"subject": "x"}))
        with pytest.raises(AuthError, match="re-login needed") as smtp_err:
            await p.send(reply)
    assert "not-the-password" not in str(imap_err.value) + str(smtp_err.value)
    assert smtp.handler.received == []


async def test_stream_reports_the_server_going_away(dovecot: DovecotServer) -> None:
    async with email_provider(dovecot) as p:
        await p.fetch(None)
        stream = p.stream()
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)
        dovecot.stop()
        with pytest.raises(TransientError, match="IDLE"):
            await asyncio.wait_for(pending, timeout=60)
        await stream.aclose()


def test_missing_server_skips_locally_but_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    require_server("dovecot", True, "apt-get install dovecot-imapd")  # present: nothing happens
    monkeypatch.delenv("REPLYDESK_REQUIRE_SERVERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="dovecot not installed: apt-get install dovecot-imapd"):
        require_server("dovecot", False, "apt-get install dovecot-imapd")
    monkeypatch.setenv("REPLYDESK_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match="dovecot not installed"):
        require_server("dovecot", False, "apt-get install dovecot-imapd")
