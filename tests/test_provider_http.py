"""The shared HTTP helpers: status and exception mapping, rate-limit headers, redaction, SSE, links."""

from __future__ import annotations

import email.utils
import logging

import httpx
import pytest

from replydesk.providers import http
from replydesk.providers.base import AuthError, Offline, PermanentError, RateLimited, TransientError

NOW = 1_795_428_000.0  # 2026-11-23 10:00:00 UTC


def _response(status: int, headers: dict[str, str] | None = None, json: object = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, json=json)


# ---- Retry-After and rate-limit headers ------------------------------------------------------------


def test_retry_after_seconds() -> None:
    assert http.parse_retry_after("120", NOW) == NOW + 120
    assert http.parse_retry_after(" 0 ", NOW) == NOW


def test_retry_after_http_date() -> None:
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    assert http.parse_retry_after(date, NOW) == NOW + 90


def test_retry_after_in_the_past_means_now_and_garbage_means_unknown() -> None:
    assert http.parse_retry_after(email.utils.formatdate(NOW - 500, usegmt=True), NOW) == NOW
    for bad in ("soon", "", "-5", "nan", "inf", "Mon, 99 Foo 2026"):
        assert http.parse_retry_after(bad, NOW) is None
    assert http.parse_retry_after(None, NOW) is None


def test_absurd_retry_after_is_capped() -> None:
    assert http.parse_retry_after(str(10**12), NOW) == NOW + http.MAX_RATE_WAIT


def test_reset_header_shapes() -> None:
    assert http.parse_reset("2026-11-23T10:05:00.123Z", NOW) == pytest.approx(NOW + 300.123)  # Mastodon
    assert http.parse_reset(str(int(NOW + 60)), NOW) == NOW + 60  # Bluesky: epoch seconds
    assert http.parse_reset("30", NOW) == NOW + 30  # IETF draft: delta seconds
    assert http.parse_reset("not a time", NOW) is None


def test_429_uses_retry_after_first_then_reset_then_a_default() -> None:
    with pytest.raises(RateLimited) as exc:
        http.raise_for_status(_response(429, {"Retry-After": "42", "X-RateLimit-Reset": "2030-01-01T00:00:00Z"}),
                              "svc", http.RateGate("svc", lambda: NOW))
    assert exc.value.reset_at == NOW + 42
    with pytest.raises(RateLimited) as exc:
        http.raise_for_status(_response(429, {"RateLimit-Reset": str(int(NOW + 7))}), "svc",
                              http.RateGate("svc", lambda: NOW))
    assert exc.value.reset_at == NOW + 7
    with pytest.raises(RateLimited) as exc:
        http.raise_for_status(_response(429), "svc", http.RateGate("svc", lambda: NOW))
    assert exc.value.reset_at == NOW + http.DEFAULT_RATE_WAIT


def test_gate_waits_for_an_exhausted_window_without_a_request() -> None:
    now = [NOW]
    gate = http.RateGate("svc", lambda: now[0])
    http.raise_for_status(_response(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2026-11-23T10:01:00Z"}),
                          "svc", gate)
    with pytest.raises(RateLimited) as exc:
        gate.check()
    assert exc.value.reset_at == NOW + 60
    now[0] = NOW + 61
    gate.check()  # the window reset: requests may go again


def test_remaining_above_zero_does_not_block() -> None:
    gate = http.RateGate("svc", lambda: NOW)
    gate.observe(_response(200, {"RateLimit-Remaining": "3", "RateLimit-Reset": str(int(NOW + 60))}))
    gate.check()


# ---- status and exception mapping ------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error"), [
    (401, AuthError), (403, AuthError), (500, TransientError), (502, TransientError), (503, TransientError),
    (408, TransientError), (400, PermanentError), (404, PermanentError), (422, PermanentError),
    (301, PermanentError),
])
def test_status_mapping(status: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        http.raise_for_status(_response(status, json={"error": "nope"}), "svc")


def test_2xx_passes() -> None:
    http.raise_for_status(_response(204), "svc")


def test_error_detail_is_redacted() -> None:
    response = _response(422, json={"error": "see https://secret.example/path?token=abc for bot123456:ABCDEFGHIJKLMNOP"})
    with pytest.raises(PermanentError) as exc:
        http.raise_for_status(response, "svc")
    text = str(exc.value)
    assert "token=abc" not in text and "ABCDEFGHIJKLMNOP" not in text and "secret.example" in text


@pytest.mark.parametrize(("raised", "expected"), [
    (httpx.ConnectError("[Errno -2] Name or service not known"), Offline),
    (httpx.ConnectTimeout("timed out"), Offline),
    (httpx.PoolTimeout("pool"), Offline),
    (httpx.ReadTimeout("read"), TransientError),
    (httpx.RemoteProtocolError("reset"), TransientError),
    (httpx.ReadError("connection reset by peer"), TransientError),
])
async def test_transport_errors_are_mapped_without_the_url(raised: Exception, expected: type[Exception]) -> None:
    secret_url = "https://api.example/bot123456:SECRETSECRETSECRET/getUpdates"

    def boom(request: httpx.Request) -> httpx.Response:
        raise raised

    async with httpx.AsyncClient(transport=httpx.MockTransport(boom)) as client:
        with pytest.raises(expected) as exc:
            await http.send_request(client, client.build_request("GET", secret_url), "svc")
    assert "SECRET" not in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    if expected is TransientError:
        assert not isinstance(exc.value, Offline)  # it may have reached the platform


async def test_non_json_success_is_transient() -> None:
    with pytest.raises(TransientError):
        http.json_body(httpx.Response(200, content=b"<html>captive portal</html>"), "svc")


def test_base_urls() -> None:
    assert http.check_base_url("https://mastodon.social/") == "https://mastodon.social"
    assert http.check_base_url("http://localhost:3000") == "http://localhost:3000"
    with pytest.raises(PermanentError):
        http.check_base_url("http://mastodon.social")


def test_redact() -> None:
    text = http.redact("failed GET https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe\x1b[2J")
    assert "AAHdq" not in text and "\x1b" not in text and "api.telegram.org" in text


def test_httpx_log_lines_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    http.install_log_redaction()
    http.install_log_redaction()  # idempotent
    logger = logging.getLogger("httpx")
    with caplog.at_level(logging.INFO, logger="httpx"):
        logger.info('HTTP Request: %s %s "%s"', "POST",
                    httpx.URL("https://api.telegram.org/bot123:ABCDEFGHIJKLMNOPQRSTUVWXYZ/getUpdates"), "HTTP/1.1 200 OK")
    assert "ABCDEFGHIJ" not in caplog.text and "bot<redacted>" in caplog.text


# ---- Link headers and SSE --------------------------------------------------------------------------


def test_link_header() -> None:
    links = http.parse_link_header('<https://m.example/api/v1/notifications?max_id=21&types%5B%5D=mention>; rel="next", '
                                   '<https://m.example/api/v1/notifications?min_id=25>; rel="prev"')
    assert http.query_param(links["prev"], "min_id") == "25"
    assert http.query_param(links["next"], "max_id") == "21"
    assert http.parse_link_header("garbage, <x>") == {}
    assert http.parse_link_header(None) == {}


async def _lines(*items: str):
    for item in items:
        yield item


async def test_sse_parser() -> None:
    events = [e async for e in http.iter_sse(_lines(
        ":)", "event: update", "data: {\"a\":", "data: 1}", "", ":thump", "", "event: delete", "id: 7",
        "data: 123", "", "data: tail"))]
    assert [(e.event, e.data) for e in events] == [("update", '{"a":\n1}'), ("delete", "123"), ("message", "tail")]
    assert events[1].id == "7"
