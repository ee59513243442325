"""The mail corpus (tests/data/mail, see its README): real clients' shapes through the parser.

What is checked is what the thread shows: the customer's new words visible wherever they stand,
quoted history and signatures marked for folding (never cut: the stored text is the whole body),
robots recognised with a reason, bounces tied to the message they return, headers in legacy
charsets readable, HTML without Markdown residue.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from replydesk.model import automatic_kind
from replydesk.providers.email_parse import parse_message
from replydesk.providers.email_thread import reply_subject
from replydesk.storage.ingest import visible_text

CORPUS = Path(__file__).parent / "data" / "mail"
SHOP = "hello@shop.example"
OUR_REPLY = "<replydesk.3c9e1f0a7b2d4e6f8a1b2c3d4e5f6a7b@shop.example>"


def parse(name: str):
    return parse_message((CORPUS / name).read_bytes(), SHOP)


def shown(parsed) -> str:
    """What the thread shows before anything is unfolded."""
    return visible_text(parsed.text, parsed.spans)


def folded(parsed, kind: str) -> list[str]:
    return [parsed.text[s:e] for s, e, k in parsed.spans if k == kind]


def test_every_fixture_is_described_in_the_readme() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in CORPUS.glob("*.eml") if f"`{p.name}`" not in readme]
    assert not missing


# -- the customer's words, quoted history, signatures -----------------------------------------

REPLIES = [
    # (fixture, words that must show, words that must be folded as quoted history, signature)
    ("gmail-top-posted.eml", "Yes, please send the blue one", "Which one would you like?", None),
    ("gmail-attribution-split.eml", "I sent the parcel back this morning", "was approved", None),
    ("gmail-german-multiline.eml", "passt mir gut", "Ihre Bestellung wird am Donnerstag", None),
    ("french-attribution.eml", "le colis est arrivé abîmé", "votre commande est expédiée", None),
    ("spanish-attribution.eml", "todavía no llegó el pedido", "su pedido salió ayer", "Enviado desde mi iPhone"),
    ("outlook-desktop-original-message.eml", "our VAT number", "Please find your invoice attached", None),
    ("outlook-web-from-sent.eml", "Can I pick it up somewhere", "out for delivery today",
     "Get Outlook for Android<https://aka.ms/ghei36>"),
    ("apple-mail-quote-attribution.eml", "Large would be perfect", "Which size do you need?", None),
    ("iphone-sent-from.eml", "nimelipokea leo asubuhi", "agizo lako limetumwa leo", "Sent from my iPhone"),
    ("thunderbird-bottom-posted.eml", "Green, please", "Which one should we send?", "Ana Silva"),
    ("signature-and-legal-footer.eml", "memesan 40 cawan", None, "Pengurus Pejabat"),
]


@pytest.mark.parametrize(("name", "new", "quoted", "signature"), REPLIES, ids=[r[0] for r in REPLIES])
def test_new_words_show_and_history_and_signature_fold(name: str, new: str, quoted: str | None,
                                                       signature: str | None) -> None:
    parsed = parse(name)
    assert new in shown(parsed)
    if quoted:
        assert quoted not in shown(parsed)
        assert any(quoted in q for q in folded(parsed, "quote"))
        assert quoted in parsed.text  # kept: search and export see it
    if signature:
        assert signature not in shown(parsed)
        assert any(signature in s for s in folded(parsed, "signature"))


def test_bottom_posted_answer_is_kept_below_the_quote() -> None:
    parsed = parse("thunderbird-bottom-posted.eml")
    assert shown(parsed) == "Green, please. And could you gift-wrap it? It is a birthday present."
    [quote] = folded(parsed, "quote")
    assert quote.startswith("On 07/01/2024 18:00, Shop wrote:\n> Hello Ana,")


def test_inline_answers_stay_in_order_with_the_lines_they_answer() -> None:
    parsed = parse("thunderbird-inline-answers.eml")
    assert folded(parsed, "quote") == []  # nothing of it is hidden
    context = folded(parsed, "context")
    assert context == [
        "On 08-01-2024 09:30, Shop wrote:\n> 1. Should we ship to your home or to your office?",
        "> 2. Do you want the invoice on paper?",
        "> 3. Is Friday delivery fine?\n> We can also do Saturday.",
    ]
    order = [parsed.text.index(piece) for piece in (
        "1. Should we ship", "To the office, please", "2. Do you want", "No, the PDF", "3. Is Friday",
        "Friday is fine", "Groeten")]
    assert order == sorted(order)


def test_lines_that_only_look_like_attributions_or_footers_stay() -> None:
    parsed = parse("not-an-attribution.eml")
    assert parsed.spans == []
    assert "sent from my iPhone app" in shown(parsed) and "P.S. Will you restock" in shown(parsed)


# -- HTML-only mail ------------------------------------------------------------------------------

MARKDOWN_RESIDUE = re.compile(r"(^#+ |\|\s*\||\]\(|^\s*[*-] |\*\*|\\[*_#])", re.MULTILINE)


def test_html_only_mail_reads_as_text_without_markdown() -> None:
    parsed = parse("html-only-order-table.eml")
    assert parsed.html_only
    assert not MARKDOWN_RESIDUE.search(parsed.text)
    lines = parsed.text.split("\n")
    assert lines[0] == "Order #2291 – two items missing"  # a heading is its own line, no '#'
    assert "Item · Qty · Price" in lines and "Blue mug · 2 · €12.00" in lines  # a table row per line
    assert "1. the outer box" in lines and "2. the packing slip" in lines
    assert "• Photo: [image: opened box]" in lines  # the tracking pixel (no alt) leaves nothing
    assert "• Tracking: my parcel (https://track.example/p/998877)" in lines  # nothing hides behind text
    assert "• https://shop.example/orders/2291" in lines  # a link showing its target shows it once
    assert "pixel.gif" not in parsed.text and "td{padding" not in parsed.text


def test_html_outlook_reply_folds_its_from_sent_block() -> None:
    parsed = parse("html-outlook-reply.eml")
    assert shown(parsed) == "Ευχαριστώ, λάβαμα την ετικέτα."
    [quote] = folded(parsed, "quote")
    assert quote.startswith("From: Shop <hello@shop.example>\nSent: Monday")


def test_gmail_html_blockquote_becomes_a_quote() -> None:
    from email import message_from_bytes, policy

    from replydesk.providers.email_quotes import quote_spans
    from replydesk.providers.html_text import html_to_text

    msg = message_from_bytes((CORPUS / "gmail-top-posted.eml").read_bytes(), policy=policy.default)
    text = html_to_text(msg.get_body(("html",)).get_content())
    assert visible_text(text, quote_spans(text)) == (
        "Yes, please send the blue one. The tracking link did not open on my phone.\n\nThanks,\nAna")


# -- robots --------------------------------------------------------------------------------------

BOUNCES = [
    ("bounce-postfix.eml", "550 5.1.1"),
    ("bounce-exim.eml", "550 5.1.1 <bob@gone.example>: mailbox unavailable"),
    ("bounce-sendmail.eml", "552 5.2.2 Mailbox full"),
    ("bounce-office365.eml", "550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
    ("bounce-gmail.eml", "550-5.1.1 The email account that you tried to reach does not exist"),
    ("bounce-amazon-ses.eml", "Message expired"),
]


@pytest.mark.parametrize(("name", "reason"), BOUNCES, ids=[b[0] for b in BOUNCES])
def test_bounces_name_the_returned_message_and_why(name: str, reason: str) -> None:
    parsed = parse(name)
    assert automatic_kind(parsed.automatic) == "bounce"
    assert parsed.report is not None and parsed.report.failed
    assert OUR_REPLY in parsed.report.message_ids
    assert reason in parsed.report.reason and reason in parsed.automatic


def test_a_delay_notice_is_automatic_but_not_a_failure() -> None:
    parsed = parse("dsn-delayed.eml")
    assert automatic_kind(parsed.automatic) == "delay"
    assert parsed.report is not None and not parsed.report.failed


ROBOTS = [
    ("ooo-exchange.eml", "auto-reply", "Auto-Submitted: auto-generated"),
    ("ooo-gmail-vacation.eml", "auto-reply", "Auto-Submitted: auto-replied"),
    ("autoreply-x-autoreply.eml", "auto-reply", "X-Autoreply"),
    ("autorespond-x-autorespond.eml", "auto-reply", "X-Autorespond"),
    ("precedence-junk-vacation.eml", "bulk", "Precedence: junk"),
    ("newsletter-list.eml", "bulk", "Precedence: bulk"),
    ("null-return-path-receipt.eml", "receipt", "disposition-notification"),
]


@pytest.mark.parametrize(("name", "kind", "evidence"), ROBOTS, ids=[r[0] for r in ROBOTS])
def test_auto_replies_and_bulk_mail_are_automatic_with_their_evidence(name: str, kind: str, evidence: str) -> None:
    parsed = parse(name)
    assert automatic_kind(parsed.automatic) == kind
    assert evidence in parsed.automatic
    assert parsed.report is None  # no bounce: nothing of ours is marked failed


@pytest.mark.parametrize("header", [b"List-Id: <offers.shop-supplies.example>", b"Return-Path: <>",
                                    b"List-Unsubscribe: <mailto:u@lists.example>"])
def test_each_single_signal_is_enough(header: bytes) -> None:
    raw = header + b"\r\nFrom: x@lists.example\r\nSubject: s\r\nMessage-ID: <s@x>\r\n\r\nbody"
    assert parse_message(raw, SHOP).automatic


def test_customer_mail_relayed_by_the_shops_own_group_is_a_person() -> None:
    parsed = parse("customer-via-own-google-group.eml")
    assert parsed.automatic is None
    assert parse_message((CORPUS / "customer-via-own-google-group.eml").read_bytes()).automatic  # without knowing


@pytest.mark.parametrize("name", [r[0] for r in REPLIES] + ["thunderbird-inline-answers.eml", "empty-subject.eml",
                                                           "html-only-order-table.eml", "not-an-attribution.eml"])
def test_people_are_never_taken_for_robots(name: str) -> None:
    assert parse(name).automatic is None


# -- headers -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "subject", "sender"),
    [
        ("raw-8bit-big5-subject.eml", "訂單查詢：我的包裹還沒到", "陳小姐"),
        ("raw-8bit-shift-jis-subject.eml", "お問い合わせ：注文番号12345の配送状況", "山田太郎"),
        ("raw-8bit-koi8r-subject.eml", "Заказ 4521 не пришёл", "Иван Петров"),
        ("raw-8bit-koi8r-subject-utf8-body.eml", "Где мой заказ?", ""),  # body says utf-8: detection
    ],
)
def test_raw_8bit_headers_in_legacy_charsets_read_as_written(name: str, subject: str, sender: str) -> None:
    parsed = parse(name)
    assert (parsed.subject, parsed.from_name) == (subject, sender)


def test_an_empty_subject_is_answered_without_a_bare_re() -> None:
    parsed = parse("empty-subject.eml")
    assert parsed.subject == ""
    assert reply_subject(parsed.subject) == ""
