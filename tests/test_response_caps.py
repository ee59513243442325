"""One platform response costs bounded memory, disk and log: bodies are read streamed up to a limit,
a page's items and an account's rejected rows are capped, log lines are deduplicated and rate-limited,
a push stream's lines and events are capped; over a limit is an error the account's status shows.

The platform is Mastodon behind ``httpx.MockTransport`` (documented and recorded shapes); the bodies
are produced lazily by generators, so the test itself never holds what it sends.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from test_mastodon import (
    ACCOUNT,
    CONVERSATIONS,
    INSTANCE,
    NOTIFICATIONS,
    TOKEN,
    instance_route,
    make,
    me_route,
    notification,
)

from http_fakes import FakeApi, json_response, needs_recordings
from replydesk import logcap, secrets
from replydesk.providers import http
from replydesk.providers.http import MAX_BODY, ResponseTooLarge
from replydesk.providers.payload import MAX_PAGE_ITEMS
from replydesk.storage import accounts, ingest

pytestmark = needs_recordings


@pytest.fixture
def api() -> FakeApi:
    """The Mastodon instance of ``test_mastodon``: the token's account, the instance, no DMs."""
    fake = FakeApi()
    me_route(fake, "117020565966271181", "mastodonpy_test")
    instance_route(fake)
    fake.route("GET", CONVERSATIONS, json_response([]))
    return fake


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def endless(piece: bytes) -> AsyncIterator[bytes]:
    while True:
        yield piece


async def test_an_endless_body_is_cut_at_the_limit(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.route("GET", NOTIFICATIONS, lambda r: httpx.Response(
        200, headers={"content-type": "application/json"}, content=endless(b"[" + b" " * 65535)))
    before = rss_mb()
    with pytest.raises(ResponseTooLarge, match=r"over 8 MB, the limit for one response"):
        await make(api, monkeypatch).fetch({})
    assert rss_mb() - before < 100  # the limit (8 MB) plus a margin, never the endless body


async def test_a_declared_huge_body_is_not_read_at_all(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(2000):
            sent.append(1)
            yield b" " * 65536

    api.route("GET", NOTIFICATIONS, lambda r: httpx.Response(
        200, headers={"content-type": "application/json", "content-length": str(2000 * 65536)}, content=body()))
    with pytest.raises(ResponseTooLarge):
        await make(api, monkeypatch).fetch({})
    assert len(sent) <= 1


async def test_a_gzip_bomb_counts_decoded(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]")  # 64 MB of JSON in ~64 KB
    api.route("GET", NOTIFICATIONS, lambda r: httpx.Response(
        200, headers={"content-type": "application/json", "content-encoding": "gzip"}, content=bomb))
    with pytest.raises(ResponseTooLarge):
        await make(api, monkeypatch).fetch({})


async def test_a_body_under_the_limit_is_read_as_usual(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [notification(n) for n in range(3, 0, -1)]
    api.route("GET", NOTIFICATIONS, json_response(items))
    results = await make(api, monkeypatch).fetch({})
    assert sum(len(r.messages) for r in results if r.stream == "mentions") == 3
    assert len(json_response(items).content) < MAX_BODY


async def test_a_page_of_malformed_items_costs_a_counter_not_rows(api: FakeApi, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Any, caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    from replydesk.config import Config
    from replydesk.providers.mastodon import MastodonOptions
    from replydesk.workspace import Workspace
    from support import Clock

    bad = [{"id": str(n), "type": "mention", "status": {"id": str(n), "content": 7}} for n in range(1500, 0, -1)]
    api.route("GET", NOTIFICATIONS, lambda r: json_response(bad) if "min_id" not in r.url.params
              else json_response([]))
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(api.transport, **kw))
    ws = Workspace(tmp_path, Config(accounts=[MastodonOptions(name=ACCOUNT, instance=INSTANCE)]), Clock())
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        with caplog.at_level(logging.WARNING, logger="replydesk.storage.ingest"):
            await engine.run_once()
        rows = db.conn.execute("SELECT count(*) FROM rejected_items").fetchone()[0]
        summary = ingest.rejected_summary(db)[ACCOUNT]
        assert rows == ingest.REJECTED_KEEP
        assert summary["count"] == MAX_PAGE_ITEMS + 1  # the first thousand, and one note for the rest
        assert len(summary["first"]) == 3 and all(reason for _, reason in summary["first"])
        assert len([r for r in caplog.records if r.name == "replydesk.storage.ingest"]) <= 2
        notes = [reason for native, reason in db.conn.execute("SELECT native_id, reason FROM rejected_items")
                 if native == "(page)"]
        assert notes == [] or "over the limit of 1000" in notes[0]
        from replydesk.storage import doctor

        found = doctor.check(tmp_path)["findings"]
        assert any(f.startswith(f"account {ACCOUNT}: 1001 item(s) from the platform rejected") for f in found)
    finally:
        db.close()


async def test_a_response_over_its_limit_is_what_the_account_status_says(api: FakeApi, monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Any) -> None:
    from replydesk.config import Config
    from replydesk.providers.mastodon import MastodonOptions
    from replydesk.workspace import Workspace
    from support import Clock

    api.route("GET", NOTIFICATIONS, lambda r: httpx.Response(200, content=endless(b"x" * 65536)))
    monkeypatch.setenv(secrets.env_name(ACCOUNT), TOKEN)
    real_client = http.make_client
    monkeypatch.setattr(http, "make_client", lambda transport=None, **kw: real_client(api.transport, **kw))
    ws = Workspace(tmp_path, Config(accounts=[MastodonOptions(name=ACCOUNT, instance=INSTANCE)]), Clock())
    db = ws.open_db()
    try:
        report = await ws.engine(db).run_once()
        status = accounts.status_of(db, ACCOUNT)
        assert status.state == "backoff" and "over 8 MB, the limit for one response" in status.detail
        assert "over 8 MB" in report.errors[ACCOUNT]
    finally:
        db.close()


async def endless_after(head: bytes, piece: bytes) -> AsyncIterator[bytes]:
    yield head
    async for chunk in endless(piece):
        yield chunk


@pytest.mark.parametrize(("piece", "what"), [
    (b"x" * 65536, "a pushed line is over 1 MB"),  # one line that never ends
    (b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" * 512,
     "a pushed event is over 1 MB"),  # data lines with no blank line to end the event
], ids=["endless-line", "endless-event"])
async def test_an_endless_push_stream_is_dropped_at_its_limit(api: FakeApi, monkeypatch: pytest.MonkeyPatch,
                                                              piece: bytes, what: str) -> None:
    from test_mastodon import stream_fixture

    stream_fixture(api)
    api.route("GET", "localhost:4000/api/v1/streaming/user/notification",
              lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                       content=endless_after(b": hello\nevent: notification\ndata: ", piece)))
    before = rss_mb()
    with pytest.raises(ResponseTooLarge, match=what):
        async for _ in make(api, monkeypatch).stream():
            pass
    assert rss_mb() - before < 100


async def test_crlf_and_cr_line_ends_split_across_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"data: a\r", b"\ndata: b\rdata: c\n", b"\r\n", b"data: d"):
            yield piece

    response = httpx.Response(200, content=chunks())
    assert [line async for line in http.iter_lines(response, "t")] == ["data: a", "data: b", "data: c", "", "data: d"]


def test_log_lines_are_deduplicated_and_rate_limited() -> None:
    now = [0.0]
    guard = logcap.FloodGuard(window=60, burst=5, clock=lambda: now[0])
    logger = logging.getLogger("replydesk.test.flood")

    def passes(msg: str, *args: Any) -> bool:
        return guard.filter(logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, args, None))

    assert passes("item %s rejected", 1)
    assert not passes("item %s rejected", 1)  # the same line again: once per window
    assert [passes("item %s rejected", n) for n in range(2, 10)] == [True] * 4 + [False] * 4  # burst of 5
    now[0] += 61
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "item %s rejected", (99,), None)
    assert guard.filter(record) and "4 similar line(s) suppressed" in record.getMessage()  # since the last shown


def test_log_records_never_carry_a_known_secret() -> None:
    import io

    secrets.remember("hunter2-imap-password")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logcap.install(handler)
    logger = logging.getLogger("replydesk.test.mask")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("LOGIN failed: user shop pass hunter2-imap-password")
        except RuntimeError:
            logger.exception("server said %s", "NO [AUTHENTICATIONFAILED] hunter2-imap-password")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "hunter2" not in text
    assert text.count("***") >= 2  # the message and the traceback
