"""Platform facts: every platform's reply limit counted the way that platform counts, at the limit
and one past it, with emoji (ZWJ sequences too), combining marks and CJK; and the facts' way from
the provider modules through storage to the console."""

from __future__ import annotations

import pytest

from replydesk import providers
from replydesk.platforms import BOOK, Limit, PlatformFacts, fallback
from replydesk.storage import platform_facts

FAMILY = "👨‍👩‍👧‍👦"  # 4 emoji joined by 3 ZWJ: 1 grapheme, 7 code points, 11 UTF-16 units, 25 bytes
ACCENT = "e\u0301"  # e + combining acute: 1 grapheme, 2 code points, 2 UTF-16 units, 3 bytes
CJK = "字"  # 1 grapheme, 1 UTF-16 unit, 3 bytes; X weighs it 2
URL = "https://shop.example/orders/12345?ref=mail"  # 42 characters; Mastodon and X count 23


def limit_of(platform: str, *, private: bool) -> Limit:
    facts = providers.platform_facts(platform)
    assert facts is not None
    return facts.limit("dm" if private else "mention", private)


# (platform, private, text exactly at the limit, the same one unit past it)
CASES = [
    # Mastodon: graphemes, a URL is 23, a remote mention counts its local part
    ("mastodon", False, FAMILY * 500, FAMILY * 501),
    ("mastodon", False, ACCENT * 500, ACCENT * 501),
    ("mastodon", False, CJK * 500, CJK * 501),
    ("mastodon", False, URL + " " + "a" * 476, URL + " " + "a" * 477),
    ("mastodon", False, "@ann@mastodon.example " + "a" * 495, "@ann@mastodon.example " + "a" * 496),
    # Bluesky: 300 graphemes and 3000 bytes for a post, 1000 and 10000 for a DM
    ("bluesky", False, ACCENT * 300, ACCENT * 301),
    ("bluesky", False, CJK * 300, CJK * 301),
    ("bluesky", False, FAMILY * 120, FAMILY * 121),  # 3000 bytes in 120 graphemes
    ("bluesky", True, CJK * 1000, CJK * 1001),
    ("bluesky", True, FAMILY * 400, FAMILY * 401),  # 10000 bytes
    # Telegram: 4096 UTF-16 code units
    ("telegram", True, "😀" * 2048, "😀" * 2048 + "a"),
    ("telegram", True, FAMILY * 372 + "a" * 4, FAMILY * 372 + "a" * 5),
    ("telegram", True, ACCENT * 2048, ACCENT * 2048 + "a"),
    ("telegram", True, CJK * 4096, CJK * 4097),
    # X (only simulated by the demo so far): twitter-text's weights, 280
    ("x", False, FAMILY * 140, FAMILY * 140 + "a"),
    ("x", False, CJK * 140, CJK * 140 + "a"),
    ("x", False, ACCENT * 280, ACCENT * 281),  # NFC first: e + acute is é, weight 1
    ("x", False, "x\u0301" * 140, "x\u0301" * 140 + "a"),  # no composed form: x 1 + the mark 1
    ("x", False, URL + " " + "a" * 256, URL + " " + "a" * 257),
    # Google review replies: 4096 bytes
    ("google", False, CJK * 1365 + "a", CJK * 1365 + "aa"),
    ("google", False, FAMILY * 163 + "a" * 21, FAMILY * 163 + "a" * 22),
    # Instagram messages: 1000 bytes; comments: 2200 characters (UTF-16 units)
    ("instagram", True, ACCENT * 333 + "a", ACCENT * 333 + "aa"),
    ("instagram", False, FAMILY * 200, FAMILY * 200 + "a"),
    # WhatsApp and Facebook: characters, counted in UTF-16 units
    ("whatsapp", True, "😀" * 2048, "😀" * 2049),
    ("facebook", True, CJK * 2000, CJK * 2001),
]


@pytest.mark.parametrize(("platform", "private", "at", "past"), CASES,
                         ids=[f"{c[0]}-{'dm' if c[1] else 'public'}-{i}" for i, c in enumerate(CASES)])
def test_reply_length_counts_as_the_platform_does(platform: str, private: bool, at: str, past: str) -> None:
    limit = limit_of(platform, private=private)
    at_measure, past_measure = limit.measure(at), limit.measure(past)
    assert not at_measure.over and at_measure.used == at_measure.limit
    assert past_measure.over and past_measure.unit == at_measure.unit


def test_bluesky_reports_the_byte_cap_when_it_binds() -> None:
    measure = limit_of("bluesky", private=False).measure(FAMILY * 121)
    assert (measure.used, measure.limit, measure.unit) == (3025, 3000, "bytes")


def test_email_has_no_limit_and_no_public_side() -> None:
    facts = providers.platform_facts("email")
    assert facts is not None and facts.public is None
    assert facts.limit("email", False).fits("x" * 200_000)
    assert not facts.can_reply_privately("email")


def test_private_replies_exist_where_the_platform_has_a_private_channel() -> None:
    assert providers.platform_facts("mastodon").can_reply_privately("mention")  # type: ignore[union-attr]
    assert not providers.platform_facts("google").can_reply_privately("review")  # type: ignore[union-attr]


def test_every_platform_the_demo_simulates_has_facts() -> None:
    from replydesk.providers.demo import CHANNELS, DemoProvider

    demo = DemoProvider.__new__(DemoProvider)
    facts = DemoProvider.facts(demo)
    assert set(facts) == {platform for platform, _ in CHANNELS}
    assert facts["telegram"] is providers.platform_facts("telegram")  # from its own module


def test_facts_survive_storage_and_malformed_rows_read_safely(tmp_path) -> None:  # noqa: ANN001
    from replydesk.config import Config
    from replydesk.storage.ingest import ensure_account
    from replydesk.workspace import Workspace

    db = Workspace(tmp_path, Config()).open_db()
    try:
        with db.transaction():
            ensure_account(db, "shop-mastodon", "mastodon", "mastodon")
            ensure_account(db, "broken", "bench", "x")
        mastodon = providers.platform_facts("mastodon").with_limit(1000, 1000)  # type: ignore[union-attr]
        assert platform_facts.save(db, "shop-mastodon", {"mastodon": mastodon})
        assert not platform_facts.save(db, "shop-mastodon", {"mastodon": mastodon})  # unchanged: no write
        db.conn.execute("""UPDATE accounts SET facts='{"x": {"label": 7, "public": {"max": "lots",
                           "counting": "weird"}}}' WHERE name='broken'""")
        rows = platform_facts.load(db)
    finally:
        db.close()
    by_account = {(a, p): f for a, p, f in rows}
    assert by_account[("shop-mastodon", "mastodon")] == mastodon
    broken = by_account[("broken", "x")]
    assert broken.label == fallback("x").label and broken.public == Limit(0, "utf16") and broken.private is None


def test_the_book_answers_per_account_then_per_platform() -> None:
    big = PlatformFacts("Mastodon", "MA", Limit(5000, "mastodon"), Limit(5000, "mastodon"))
    try:
        BOOK.replace([("big", "mastodon", big)])
        assert BOOK.for_account("big", "mastodon").public == Limit(5000, "mastodon")
        assert BOOK.for_account("other", "mastodon") is big  # same platform: its names, a known limit
        assert BOOK.info("unknown-platform").short == "UNK"
    finally:
        BOOK.replace([])
