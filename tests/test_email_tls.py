"""The email provider over TLS against the real Dovecot (and aiosmtpd), with a certificate from a
throwaway CA: implicit TLS and STARTTLS for IMAP and SMTP, the CA given as ``ca_file`` the way a
self-hosted shop would, and a certificate nobody vouches for refused with a clear reason."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from replydesk.model import AnsweredMessage, OutgoingReply
from replydesk.providers.base import PermanentError
from replydesk.providers.email import EmailProvider
from servers import ALICE, SHOP, DovecotServer, mail_test_marks, make_mail, running_dovecot, running_smtp

trustme = pytest.importorskip("trustme")

pytestmark = mail_test_marks(60)



@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: Any) -> Iterator[dict[str, Path]]:
    """The server's certificate and key, and the CA a client needs, as files (Dovecot reads files)."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory(prefix="replydesk-tls-") as d:
        root = Path(d)
        files = {"chain": root / "chain.pem", "key": root / "key.pem", "ca": root / "ca.pem"}
        cert.private_key_and_cert_chain_pem.write_to_path(str(files["chain"]))
        cert.private_key_pem.write_to_path(str(files["key"]))
        ca.cert_pem.write_to_path(str(files["ca"]))
        yield files


@pytest.fixture
def dovecot(pki: dict[str, Path]) -> Iterator[DovecotServer]:
    with running_dovecot({"hello": "shop-pw", "alice": "alice-pw"}, tls=(pki["chain"], pki["key"])) as server:
        yield server


def server_context(ca: Any) -> Any:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@contextlib.asynccontextmanager
async def provider(dovecot: DovecotServer, *, imap_tls: str, ca_file: Path | None,
                   smtp: tuple[int, str] | None = None) -> AsyncIterator[EmailProvider]:
    imap_port = dovecot.tls_port if imap_tls == "implicit" else dovecot.port
    options: dict[str, Any] = {
        "address": SHOP,
        "imap": {"host": "127.0.0.1", "port": imap_port, "tls": imap_tls, "user": SHOP, "folders": ["INBOX"],
                 "sent_folder": "Sent", "timeout": 5, "ca_file": str(ca_file) if ca_file else None},
    }
    if smtp is not None:
        options["smtp"] = {"host": "127.0.0.1", "port": smtp[0], "tls": smtp[1], "user": SHOP, "timeout": 5,
                           "ca_file": str(ca_file) if ca_file else None}
    p = EmailProvider("shop-mail", options, lambda: "shop-pw")
    try:
        yield p
    finally:
        await p.aclose()


@pytest.mark.parametrize("imap_tls", ["implicit", "starttls"])
async def test_mail_is_read_over_tls(dovecot: DovecotServer, pki: dict[str, Path], imap_tls: str) -> None:
    dovecot.deliver("hello", make_mail(subject="Over TLS", message_id="<tls1@c>"), sender=ALICE)
    async with provider(dovecot, imap_tls=imap_tls, ca_file=pki["ca"]) as p:
        results = await p.fetch(None)
    assert [m.native_id for r in results for m in r.messages] == ["<tls1@c>"]


@pytest.mark.parametrize("smtp_tls", ["implicit", "starttls"])
async def test_reply_is_sent_over_tls(dovecot: DovecotServer, pki: dict[str, Path], ca: Any, smtp_tls: str) -> None:
    dovecot.deliver("hello", make_mail(subject="Order 9", message_id="<tls9@customer.example>"), sender=ALICE)
    ctx = server_context(ca)
    with running_smtp(dovecot, implicit_tls=ctx if smtp_tls == "implicit" else None,
                      starttls=ctx if smtp_tls == "starttls" else None) as sink:
        async with provider(dovecot, imap_tls="implicit", ca_file=pki["ca"], smtp=(sink.port, smtp_tls)) as p:
            [question] = [m for r in await p.fetch(None) for m in r.messages]
            reply = OutgoingReply(
                key=f"01HZTLS{smtp_tls.upper()}", conversation_id="c1",
                conversation_native_id=question.conversation_native_id, account="shop-mail", kind="email",
                private=True, text="Sent over TLS.",
                customer_handle=question.contact.handle, answering=AnsweredMessage(question.native_id, question.meta),
            )
            sent = await p.send(reply)
            assert (await p.lookup_sent(reply)).remote_id == sent.remote_id
    [raw] = dovecot.fetch_raw("alice")
    assert b"Sent over TLS." in raw


async def test_untrusted_certificate_is_refused_with_a_reason(dovecot: DovecotServer) -> None:
    async with provider(dovecot, imap_tls="implicit", ca_file=None) as p:  # the system CAs only
        with pytest.raises(PermanentError, match="TLS certificate rejected"):
            await p.fetch(None)
