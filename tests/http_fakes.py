"""Test doubles for the HTTP providers: a routing MockTransport and the recorded Mastodon cassettes.

The cassettes (VCR.py, recorded by the Mastodon.py project) are read from ``../shared/testdata`` at
test time and never copied into this repository.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
RECORDED = TESTDATA / "recorded" / "mastodon"

needs_recordings = pytest.mark.skipif(
    not RECORDED.is_dir(),
    reason=f"recorded Mastodon traffic not found at {RECORDED} (the shared test data is not mounted)",
)

Handler = Callable[[httpx.Request], httpx.Response]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/json", **(headers or {})},
                          content=json.dumps(data).encode())


class FakeApi:
    """Routes requests by (method, path) — optionally host — to handlers; remembers every request.

    A route's value is a Response, a handler ``request -> Response``, or a list consumed in order (the
    last one repeats). Unknown routes answer 404 so a missing route fails loudly in assertions."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self.calls: list[httpx.Request] = []

    def route(self, method: str, path: str, answer: Any) -> None:
        self.routes[(method.upper(), path)] = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = self.routes.get((request.method, f"{request.url.host}:{request.url.port}{request.url.path}")) \
            or self.routes.get((request.method, request.url.path))
        if answer is None:
            return json_response({"error": f"no route for {request.method} {request.url.path}"}, 404)
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def requests(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.calls if r.method == method and r.url.path == path]


# ---- cassettes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interaction:
    method: str
    url: str
    request_body: str | None
    request_headers: dict[str, str]
    status: int
    headers: list[tuple[str, str]]
    body: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.request_body or "", keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)

    def response(self, **extra_headers: str) -> httpx.Response:
        """The recorded response, headers as recorded (multi-valued joined), body unchanged."""
        replaced = {k.lower() for k in extra_headers}
        headers = [(k, v) for k, v in self.headers
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", *replaced)]
        headers += list(extra_headers.items())
        return httpx.Response(self.status, headers=headers, content=self.body.encode("utf-8"))


@functools.cache
def _cassette(name: str, folder: Path = RECORDED) -> tuple[Interaction, ...]:
    data = yaml.safe_load((folder / name).read_text(encoding="utf-8"))
    out = []
    for item in data["interactions"]:
        req, resp = item["request"], item["response"]
        headers = []
        for key, values in (resp.get("headers") or {}).items():
            values = values if isinstance(values, list) else [values]
            headers.append((key, ", ".join(str(v) for v in values)))
        req_headers = {k: ", ".join(v) if isinstance(v, list) else str(v) for k, v in (req.get("headers") or {}).items()}
        body = (resp.get("body") or {}).get("string") or ""
        if isinstance(body, bytes):  # tweepy's cassettes keep the gzip body as YAML !!binary
            body = (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode("utf-8")
        out.append(Interaction(req["method"], req["uri"], req.get("body"), req_headers, resp["status"]["code"],
                               headers, body))
    return tuple(out)


def cassette(name: str, folder: Path = RECORDED) -> list[Interaction]:
    """The interactions of one recorded cassette (parsed once per test session)."""
    return list(_cassette(name, folder))


def find(interactions: list[Interaction], method: str, path_part: str, index: int = 0) -> Interaction:
    matches = [i for i in interactions if i.method == method and path_part in i.url]
    return matches[index]
