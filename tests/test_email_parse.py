"""Parsing mail as customers really send it: every charset, odd structure and broken input.

No server needed: these feed raw bytes to the parser and check what the inbox would show.
"""

from __future__ import annotations

import base64
import quopri

import pytest
from pydantic import ValidationError

from replydesk.providers.email import EmailOptions
from replydesk.providers.email_imap import imap_utf7, parse_fetch
from replydesk.providers.email_parse import SYNTHETIC_DOMAIN, decode_bytes, parse_message, split_quoted
from replydesk.providers.email_thread import ThreadIndex, normalise_subject, reply_subject


def mail(body: bytes, *, ctype: str = "text/plain; charset=utf-8", cte: str = "8bit",
         subject: bytes = b"Hello", extra: bytes = b"") -> bytes:
    return (
        b"From: Customer <customer@example.com>\r\n"
        b"To: hello@shop.example\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Date: Tue, 02 Jan 2024 09:30:00 +0100\r\n"
        b"Message-ID: <m1@example.com>\r\n" + extra +
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: " + ctype.encode() + b"\r\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body
    )


# -- charsets ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("iso-8859-7", "Καλησπέρα, πότε θα φτάσει η παραγγελία μου;"),
        ("iso-8859-2", "Dzień dobry, gdzie jest moja przesyłka?"),
        ("windows-1251", "Здравствуйте! Где мой заказ?"),
        ("koi8-r", "Здравствуйте! Где мой заказ?"),
        ("shift_jis", "注文はいつ届きますか？"),
        ("windows-1252", "Prix 20 € — « merci »"),
        ("utf-8", "नमस्ते, मेरा ऑर्डर कब आएगा?"),
    ],
)
def test_body_in_any_charset_reads_as_the_customer_wrote_it(charset: str, text: str) -> None:
    raw = mail(base64.encodebytes(text.encode(charset)), ctype=f"text/plain; charset={charset}", cte="base64")
    parsed = parse_message(raw)
    assert parsed.text == text
    assert parsed.warnings == []


def test_iso_8859_1_label_is_read_as_windows_1252_like_browsers_do() -> None:
    raw = mail("Price: 20 € – “thanks”".encode("cp1252"), ctype="text/plain; charset=iso-8859-1")
    assert parse_message(raw).text == "Price: 20 € – “thanks”"


def test_quoted_printable_greek_with_rfc2047_subject() -> None:
    body = quopri.encodestring("Γεια σας, έχω ερώτηση.".encode("iso-8859-7"))
    subject = b"=?ISO-8859-7?Q?=D0=F1=FC=E2=EB=E7=EC=E1_=EC=E5_=F4=E7=ED_?= =?iso-8859-7?B?8OHx4ePj5evf4Q==?="
    parsed = parse_message(mail(body, ctype="text/plain; charset=ISO-8859-7", cte="quoted-printable",
                                subject=subject))
    assert parsed.subject == "Πρόβλημα με την παραγγελία"
    assert parsed.text == "Γεια σας, έχω ερώτηση."


def test_rfc2047_headers_in_several_charsets() -> None:
    raw = mail(
        b"hi",
        subject=b"=?shift_jis?B?" + base64.b64encode("ご注文".encode("shift_jis")) + b"?=",
        extra=b"Cc: =?koi8-r?B?" + base64.b64encode("Иван".encode("koi8-r")) + b"?= <ivan@example.ru>\r\n",
    )
    parsed = parse_message(raw)
    assert parsed.subject == "ご注文"
    assert parsed.cc == [("Иван", "ivan@example.ru")]


def test_unencoded_8bit_utf8_subject_and_sender_name() -> None:
    raw = (
        "From: Zoë Müller <zoe@example.de>\r\nSubject: Rückgabe möglich?\r\nMessage-ID: <z@x>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo".encode()
    )
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.from_name, parsed.from_addr) == ("Rückgabe möglich?", "Zoë Müller", "zoe@example.de")


def test_decode_bytes_mislabelled_and_unknown() -> None:
    assert decode_bytes("ναι".encode(), "iso-8859-7") == ("ναι", "text labelled 'iso-8859-7' was UTF-8")
    assert decode_bytes("ok é".encode(), "x-nonsense") == ("ok é", "unknown charset 'x-nonsense'; read as UTF-8")
    assert decode_bytes(b"caf\xe9", None) == ("café", None)


# -- structure ---------------------------------------------------------------------------------

ALTERNATIVE = (
    b"From: a@example.com\r\nMessage-ID: <alt@x>\r\nSubject: alt\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain version\r\n"
    b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p><b>HTML</b> version</p>\r\n"
    b"--b1--\r\n"
)


def test_multipart_alternative_prefers_plain_text() -> None:
    parsed = parse_message(ALTERNATIVE)
    assert (parsed.text, parsed.html_only, parsed.attachments) == ("Plain version", False, [])


def test_html_only_becomes_readable_text() -> None:
    html = (b"<html><head><style>p{color:red}</style></head><body><p>Hello <b>team</b>,</p>"
            b"<p>Where is order&nbsp;#42?</p><ul><li>Blue mug</li><li>Red mug</li></ul></body></html>")
    parsed = parse_message(mail(html, ctype="text/html; charset=utf-8"))
    assert parsed.html_only is True
    assert parsed.text == "Hello team,\n\nWhere is order #42?\n\n• Blue mug\n• Red mug"


def test_attachments_listed_with_name_type_and_size() -> None:
    pdf = b"%PDF-1.4 fake" * 100
    raw = (
        b"From: a@example.com\r\nMessage-ID: <att@x>\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b"--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
        b"--m\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="invoice.pdf"\r\n\r\n'
        + base64.encodebytes(pdf) +
        b"--m\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''%CF%86%CF%89%CF%84%CE%BF.jpg\r\n\r\n"
        + base64.encodebytes(b"\xff\xd8jpeg") +
        b"--m--\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.text == "See attached."
    assert parsed.attachments == [
        {"name": "invoice.pdf", "type": "application/pdf", "size": 1300},
        {"name": "φωτο.jpg", "type": "image/jpeg", "size": 6},
    ]


# -- quoted history (the corpus cases are in test_mail_corpus.py) -------------------------------

@pytest.mark.parametrize(
    "quote",
    [
        "On Tue, 2 Jan 2024 at 10:00, Shop <hello@shop.example> wrote:\n> Thanks for your order.\n> Shop",
        "On Tue, 2 Jan 2024 at 10:00, Shop Team <hello@shop.example>\nwrote:\n\n> Thanks for your order.",
        "Am 02.01.2024 um 10:00 schrieb Shop <hello@shop.example>:\n> Danke",
        "Le mar. 2 janv. 2024 à 10:00, Shop <hello@shop.example> a écrit :\n> Merci",
        "-----Original Message-----\nFrom: Shop <hello@shop.example>\nSent: Tuesday\nThanks for your order.",
        "________________________________\nFrom: Shop <hello@shop.example>\nSent: Tuesday\nThanks",
        "> Thanks for your order.\n> Shop",
    ],
)
def test_quoted_history_is_marked_not_cut(quote: str) -> None:
    text = f"Yes, please send it.\n\nBest, Ana\n\n{quote}"
    parsed = parse_message(mail(text.encode()))
    assert parsed.text == text  # stored whole: search and export see every word
    [(start, end, kind)] = parsed.spans
    assert (text[start:end], kind) == (quote, "quote")


def test_inline_answers_stay_in_order_with_their_context() -> None:
    text = "> Which colour?\nBlue.\n> Which size?\nLarge."
    parsed = parse_message(mail(text.encode()))
    assert parsed.text == text
    assert [(text[s:e], k) for s, e, k in parsed.spans] == [("> Which colour?", "context"),
                                                           ("> Which size?", "context")]


def test_a_message_that_is_only_a_quote_keeps_its_text() -> None:
    text = "> forwarded words\n> more"
    assert parse_message(mail(text.encode())).spans == []


def test_synthetic_ids_stay_what_earlier_versions_stored() -> None:
    """Mail without a Message-ID is keyed by a hash of its text as earlier versions split it; a
    flag change re-reads the body, and a different hash would store the message twice."""
    parsed = parse_message(b"From: a@example.com\r\nSubject: s\r\n\r\nYes.\r\n\r\nOn Mon, Bob wrote:\r\n> hi\r\n")
    assert split_quoted(parsed.text) == ("Yes.", "On Mon, Bob wrote:\n> hi")
    assert parsed.synthetic_id() == "<bbb9fe82e02feda74757dcbfbf164a20@synthesized.replydesk.invalid>"  # as 0.1 did


# -- malformed input ---------------------------------------------------------------------------

def test_missing_message_id_gets_a_stable_synthetic_id() -> None:
    raw = b"From: a@example.com\r\nSubject: no id\r\nDate: Tue, 02 Jan 2024 09:30:00 +0000\r\n\r\nbody"
    first, second = parse_message(raw), parse_message(raw)
    assert first.message_id is None
    assert first.synthetic_id() == second.synthetic_id()
    assert first.synthetic_id().endswith(f"@{SYNTHETIC_DOMAIN}>")
    assert "no Message-ID" in first.warnings


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage without headers",
        b"From: <<<@@@>>>\r\nSubject: =?utf-8?B?!!!notbase64?=\r\nDate: yesterday-ish\r\n\r\nstill here",
        b"Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\nno parts at all",
        b"Content-Type: text/plain; charset=\"utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not base64",
        b"From: a@b.c\r\nContent-Type: text/plain; charset=klingon\r\n\r\nnuqneH \xff",
        b"Subject: " + b"x" * 20000 + b"\r\n\r\nlong header",
    ],
)
def test_malformed_mail_never_raises_and_explains(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed.text, str)
    assert parsed.warnings  # the user sees why the message looks odd


def test_malformed_keeps_what_could_be_read() -> None:
    raw = b"From: Bob <bob@example.com>\r\nSubject: Broken date\r\nDate: 32 Foo 20x4\r\n\r\nThe words survive."
    parsed = parse_message(raw)
    assert (parsed.from_addr, parsed.subject, parsed.text, parsed.date) == (
        "bob@example.com", "Broken date", "The words survive.", None)
    assert "unreadable Date '32 Foo 20x4'" in parsed.warnings


def test_threading_headers_are_read_even_when_sloppy() -> None:
    raw = mail(b"x", extra=b"In-Reply-To: Your message of Monday <p2@example.com>\r\n"
                          b"References: <p1@example.com>\r\n <p2@example.com> <p1@example.com>\r\n")
    parsed = parse_message(raw)
    assert (parsed.in_reply_to, parsed.references) == ("<p2@example.com>", ["<p1@example.com>", "<p2@example.com>"])


# -- subjects and threads ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Order 42", "Re: Order 42"), ("Re: Order 42", "Re: Order 42"), ("RE: re: Order 42", "Re: Order 42"),
     ("AW: Bestellung", "Re: Bestellung"), ("SV: Re[2]: Ordre", "Re: Ordre"), ("Fwd: Order", "Re: Fwd: Order"),
     ("", "")],  # no subject stays none, never a bare "Re:"
)
def test_reply_subject_has_exactly_one_re(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_normalised_subject_ignores_prefixes_tags_and_case() -> None:
    assert normalise_subject("Re: AW: Fwd: [Shop] Order  42") == normalise_subject("order 42") == "order 42"


def test_thread_index_prefers_references_root_then_subject() -> None:
    idx = ThreadIndex()
    none = lambda ids: None  # noqa: E731
    assert idx.assign("<a>", None, [], "Order 1", ["x@e.com"], none) == "<a>"
    assert idx.assign("<c>", "<b>", ["<a>", "<b>"], "Re: Order 1", ["x@e.com"], none) == "<a>"
    assert idx.assign("<d>", None, [], "RE: order 1", ["x@e.com"], none) == "<a>"  # client dropped headers
    assert idx.assign("<e>", None, [], "Order 1", ["someone-else@e.com"], none) == "<e>"
    assert ThreadIndex().assign("<f>", "<zzz>", [], "x", ["y@e.com"], lambda ids: "conv-9") == "conv-9"


# -- IMAP helpers and options ------------------------------------------------------------------

def test_parse_fetch_reads_items_before_and_after_the_literal() -> None:
    data = [
        (b"1 (UID 7 RFC822.SIZE 5 BODY[] {5}", b"hello"),
        b" FLAGS (\\Seen $Label1) MODSEQ (12) INTERNALDATE \"02-Jan-2024 09:30:00 +0000\")",
        b"2 (UID 9 FLAGS ())",
    ]
    items = parse_fetch(data)
    assert sorted(items) == [7, 9]
    assert (items[7].body, items[7].flags, items[7].modseq, items[7].internaldate) == (
        b"hello", ["\\Seen", "$Label1"], 12, 1704187800.0)
    assert (items[9].body, items[9].flags) == (None, [])


def test_folder_names_use_modified_utf7() -> None:
    assert imap_utf7("Entwürfe") == "Entw&APw-rfe"
    assert imap_utf7("R&D") == "R&-D"


def _opts(**imap: object) -> dict[str, object]:
    base = {"host": "imap.shop.example", "port": 993, "tls": "implicit", "user": "hello@shop.example"}
    return {"name": "shop-mail", "address": "Hello@shop.example", "imap": {**base, **imap}}


def test_plain_text_connections_only_to_localhost() -> None:
    with pytest.raises(ValidationError, match="tls: none is only allowed for localhost"):
        EmailOptions.model_validate(_opts(tls="none"))
    assert EmailOptions.model_validate(_opts(tls="none", host="127.0.0.1", port=1143)).imap.port == 1143
    with pytest.raises(ValidationError, match="implicit', 'starttls' or 'none'"):
        EmailOptions.model_validate(_opts(tls="ssl"))


def test_mail_server_defaults_follow_tls_and_the_address() -> None:
    cfg = EmailOptions.model_validate({**_opts(folders=["INBOX", "Support", "INBOX"], sent_folder="Sent"),
                                       "smtp": {"host": "smtp.shop.example", "tls": "starttls"}})
    assert (cfg.imap.folders, cfg.imap.sent_folder) == (["INBOX", "Support"], "Sent")
    assert cfg.smtp is not None and (cfg.smtp.port, cfg.smtp.user, cfg.address) == (587, "hello@shop.example",
                                                                                     "hello@shop.example")
