"""A fake Zendesk Support behind an httpx.MockTransport, shaped as the Zendesk API documents it.

Tickets (``POST /api/v2/tickets`` answering 201 ``{"ticket": {...}, "audit": {...}}``, with the
``Idempotency-Key`` header honoured as Zendesk does: a repeat of the same request answers the first
ticket with ``x-idempotency-lookup: hit``, the same key with other parameters is refused with
``IdempotentRequestError``), ``GET /api/v2/tickets?external_id=``, ``show_many``, ticket updates
with a comment, a ticket's comments, the cursor-based incremental ticket export, HTTP Basic with
``{email}/token:{api_token}``, and the rate-limit headers (``X-Rate-Limit``,
``X-Rate-Limit-Remaining``, ``ratelimit-*``, ``Retry-After`` on a 429).

Faults: ``before`` answers (a 429, a 401) are given instead of handling the next requests;
``after_create`` and ``after_update`` raise *after* the ticket was made or changed (an answer lost
on the way back).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

HOST = "shop.zendesk.com"


def stamp(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeZendesk:
    clock: Any
    token: str = "zd-api-token"
    email: str = "agent@shop.example"
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)
    calls: list[httpx.Request] = field(default_factory=list)
    before: list[httpx.Response | BaseException] = field(default_factory=list)
    after_create: list[BaseException] = field(default_factory=list)
    after_update: list[BaseException] = field(default_factory=list)
    remaining: int = 699
    next_id: int = 1234

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def requests(self, method: str, pattern: str) -> list[httpx.Request]:
        return [r for r in self.calls if r.method == method and re.search(pattern, r.url.path)]

    def set_status(self, ticket_id: int, status: str, after: float = 60.0) -> None:
        ticket = self.tickets[ticket_id]
        ticket.update({"status": status, "updated_at": stamp(self.clock() + after)})

    # ---- the platform ---------------------------------------------------------------------------------

    def _json(self, data: Any, status: int = 200, **headers: str) -> httpx.Response:
        self.remaining -= 1
        return httpx.Response(status, json=data, headers={
            "X-Rate-Limit": "700", "X-Rate-Limit-Remaining": str(self.remaining), "ratelimit-limit": "700",
            "ratelimit-remaining": str(self.remaining), "ratelimit-reset": "42", **headers})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.before:
            answer = self.before.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        expected = "Basic " + base64.b64encode(f"{self.email}/token:{self.token}".encode()).decode()
        if request.url.host != HOST or request.headers.get("authorization") != expected:
            return httpx.Response(401, json={"error": "Couldn't authenticate you"})
        path, method = request.url.path, request.method
        if path == "/api/v2/tickets.json" and method == "POST":
            return self._create(request)
        if path == "/api/v2/tickets.json" and method == "GET":
            wanted = request.url.params.get("external_id")
            found = [t for t in self.tickets.values() if t["external_id"] == wanted]
            return self._json({"tickets": found, "next_page": None, "previous_page": None, "count": len(found)})
        if path == "/api/v2/tickets/show_many.json":
            ids = [int(i) for i in request.url.params["ids"].split(",")]
            return self._json({"tickets": [self.tickets[i] for i in ids if i in self.tickets]})
        match = re.fullmatch(r"/api/v2/tickets/(\d+)\.json", path)
        if match and method == "PUT":
            return self._update(int(match.group(1)), json.loads(request.content)["ticket"])
        match = re.fullmatch(r"/api/v2/tickets/(\d+)/comments\.json", path)
        if match:
            found = list(reversed(self.comments.get(int(match.group(1)), [])))
            return self._json({"comments": found, "next_page": None, "count": len(found)})
        if path == "/api/v2/incremental/tickets/cursor.json":
            ordered = sorted(self.tickets.values(), key=lambda t: t["updated_at"])
            after = request.url.params.get("cursor")
            since = stamp(float(request.url.params["start_time"])) if after is None else after
            page = [t for t in ordered if t["updated_at"] > since]
            cursor = page[-1]["updated_at"] if page else since
            return self._json({"tickets": page, "after_cursor": cursor, "before_cursor": None,
                               "after_url": f"https://{HOST}{path}?cursor={cursor}", "end_of_stream": True})
        return self._json({"error": "InvalidEndpoint", "description": "Not found"}, 404)

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(request.content).hexdigest()
        if key in self.keys:
            seen, ticket_id = self.keys[key]
            if seen != digest:
                return self._json({"error": "IdempotentRequestError",
                                   "description": "The request parameters do not match the original request"}, 400)
            return self._json({"ticket": self.tickets[ticket_id], "audit": {}}, 201, **{"x-idempotency-lookup": "hit"})
        t = body["ticket"]
        ticket_id, self.next_id = self.next_id, self.next_id + 1
        now = stamp(self.clock())
        self.tickets[ticket_id] = {
            "id": ticket_id, "url": f"https://{HOST}/api/v2/tickets/{ticket_id}.json", "external_id": t.get("external_id"),
            "subject": t["subject"], "raw_subject": t["subject"], "description": t["comment"]["body"],
            "priority": t.get("priority"), "status": "new", "requester_id": 9000 + ticket_id, "assignee_id": None,
            "tags": sorted(set(t.get("tags") or [])), "created_at": now, "updated_at": now,
            "requester": t.get("requester"),
        }
        self.comments[ticket_id] = [{"id": 1, "type": "Comment", "body": t["comment"]["body"],
                                     "public": t["comment"].get("public", True), "created_at": now}]
        if key:
            self.keys[key] = (digest, ticket_id)
        if self.after_create:
            raise self.after_create.pop(0)
        return self._json({"ticket": self.tickets[ticket_id], "audit": {"id": 1, "events": []}}, 201,
                          **({"x-idempotency-lookup": "miss"} if key else {}))

    def _update(self, ticket_id: int, change: dict[str, Any]) -> httpx.Response:
        if ticket_id not in self.tickets:
            return self._json({"error": "RecordNotFound", "description": "Not found"}, 404)
        comment = change.get("comment")
        events = []
        if comment:
            entry = {"id": len(self.comments[ticket_id]) + 1, "type": "Comment", "body": comment["body"],
                     "public": comment.get("public", True), "created_at": stamp(self.clock())}
            self.comments[ticket_id].append(entry)
            events.append({"id": 5000 + entry["id"], "type": "Comment", "public": entry["public"]})
        if self.after_update:
            raise self.after_update.pop(0)
        return self._json({"ticket": self.tickets[ticket_id], "audit": {"id": 77, "events": events}})
