"""Zendesk: escalations handed over as tickets, their status followed back.

An escalation target in the config names a Zendesk account (``escalation.targets``); ``e`` (or
``replydesk escalate --target``) queues a ``create_ticket`` action in the outbox, which this provider
performs: ``POST /api/v2/tickets`` with the subject, the requester (the customer's name, and email
where we know it), the transcript as the first comment (private unless ``public_transcript``), tags,
the priority mapped, ``external_id`` = our conversation id and the ``Idempotency-Key`` header = the
outbox key (Zendesk answers a repeat with the first ticket). Zendesk keeps a key for two hours,
and a retry may come later (offline for a day): so before an uncertain create is tried again, the
ticket is looked up by its ``external_id`` (``repeatable`` says no, ``lookup_performed`` looks).

Later internal notes on the conversation go to the ticket as private comments (``ticket_comment``,
queued by the engine when ``notes_as_comments``; looked up among the ticket's comments before a
retry). The status is followed on every poll, by per-ticket reads (``show_many``, 100 a request)
or by the incremental ticket export (``follow: export``, admins only); a ticket solved in Zendesk
resolves the conversation where ``resolve_when_solved`` says so.

Auth: an API token (``{email}/token:{token}``, HTTP Basic) or an OAuth access token (Bearer), from
the keyring. Rate limits: ``X-Rate-Limit-Remaining``, the ``ratelimit-*`` headers and ``Retry-After``
on a 429 go through the gate; an exhausted window with no reset waits a minute (Zendesk's limits
are per minute).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from replydesk.model import ActionResult, FetchResult, OutgoingAction, OutgoingReply, SendResult, TicketStatus
from replydesk.options import AccountOptions, HttpsUrl
from replydesk.platforms import PlatformFacts
from replydesk.providers import http, payload
from replydesk.providers.base import (
    AuthError,
    Capabilities,
    PermanentError,
    SecretGetter,
    TransientError,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SERVICE = "zendesk"
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed", "deleted")
SUBJECT_MAX = 150  # Zendesk's subject field
COMMENT_MAX = 60_000  # characters of a transcript comment (the newest messages are kept)
SHOW_MANY = 100  # ids per show_many request
LOOKUP_SKEW = 300.0  # a ticket created up to this long before the attempt was queued is not ours
EXPORT_BACK = 3600.0  # the first incremental export starts this far back
WINDOW_WAIT = 60.0  # an exhausted rate-limit window without a reset header

ZPriority = Literal["low", "normal", "high", "urgent"]


class ZendeskOptions(AccountOptions):
    """A Zendesk Support account that takes escalations as tickets."""

    secret_hint: ClassVar[str] = ("an API token (Admin Center → Apps and integrations → Zendesk API), "
                                  "or with auth: oauth an OAuth access token")

    provider: Literal["zendesk"] = "zendesk"
    subdomain: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """Your Zendesk's subdomain: ``shop`` for https://shop.zendesk.com."""
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    """The agent's email the API token is used with (``auth: token``)."""
    auth: Literal["token", "oauth"] = "token"
    """``token``: an API token with ``email``; ``oauth``: an OAuth access token (scopes ``tickets:read tickets:write``)."""
    public_transcript: bool = False
    """The transcript (the ticket's first comment) is public: the customer may be emailed it. Default: a private note."""
    notes_as_comments: bool = True
    """Internal notes written on the conversation after the escalation go to the ticket as private comments."""
    resolve_when_solved: bool = False
    """A ticket solved (or closed) in Zendesk resolves its conversation here."""
    tags: list[str] = ["replydesk"]
    """Tags every ticket gets, besides the conversation's own."""
    priorities: dict[ZPriority, ZPriority] = {"low": "low", "normal": "normal", "high": "high", "urgent": "urgent"}
    """Our priority → the ticket's priority."""
    follow: Literal["reads", "export"] = "reads"
    """How ticket statuses are followed: ``reads`` (the tickets we made, 100 a request) or ``export`` (the incremental ticket export; needs an admin)."""
    api_base: HttpsUrl | None = None
    """The API host; default ``https://{subdomain}.zendesk.com`` (change only for a proxy or a test server)."""

    @model_validator(mode="after")
    def _token_needs_email(self) -> ZendeskOptions:
        if self.auth == "token" and not self.email:
            raise ValueError("auth: token needs the agent's email (the API token is used as {email}/token)")
        return self


FACTS = {"zendesk": PlatformFacts("Zendesk", "ZD", None, None)}


def _zendesk_tag(tag: str) -> str:
    """Zendesk tags are single words: spaces (which would split one tag into several) become ``_``."""
    return re.sub(r"[^\w:/.-]+", "_", tag.strip().lower()).strip("_")[:80]


def problem(response: httpx.Response) -> str:
    """Zendesk's reason: ``{"error": "...", "description": "...", "details": {field: [{description}]}}``
    or ``{"error": {"title", "message"}}``, redacted."""
    body = http.json_object(response)
    if body is None:
        return ""
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):
        parts += [error[k] for k in ("title", "message") if isinstance(error.get(k), str) and error[k]]
    elif isinstance(error, str) and error:
        parts.append(error)
    if isinstance(body.get("description"), str) and body["description"]:
        parts.append(body["description"])
    details = body.get("details")
    if isinstance(details, dict):
        for problems in details.values():
            for item in problems if isinstance(problems, list) else []:
                if isinstance(item, dict) and isinstance(item.get("description"), str):
                    parts.append(item["description"])
    return http.redact("; ".join(dict.fromkeys(parts)), 300)


def transcript(p: dict[str, Any], label: str) -> str:
    """The ticket's first comment, plain text: where it comes from, why, and the conversation
    (newest messages kept when it would not fit)."""
    requester = p.get("requester") if isinstance(p.get("requester"), dict) else {}
    who = " ".join(str(requester.get(k) or "") for k in ("name", "handle")).strip() or "the customer"
    head = [f"Escalated from replydesk ({label}) · conversation {p.get('external_id')}", f"Customer: {who}"]
    for key, title in (("target", "Target"), ("reason", "Reason"), ("note", "Note")):
        if isinstance(p.get(key), str) and p[key].strip():
            head.append(f"{title}: {p[key].strip()}")
    blocks = []
    for entry in p.get("transcript") if isinstance(p.get("transcript"), list) else []:
        if not isinstance(entry, dict):
            continue
        side = "customer" if entry.get("from") == "customer" else "us"
        author = str(entry.get("author") or "").strip()
        when = str(entry.get("at") or "").replace("T", " ").replace("Z", " UTC")
        blocks.append(f"— {when} · {side}{f' ({author})' if author else ''}:\n{entry.get('text') or ''}")
    body = "\n".join(head)
    kept: list[str] = []
    size = len(body)
    for block in reversed(blocks):
        if size + len(block) + 2 > COMMENT_MAX:
            break
        kept.insert(0, block)
        size += len(block) + 2
    if len(kept) < len(blocks):
        body += f"\n[{len(blocks) - len(kept)} earlier messages not included]"
    return body + ("\n\n" + "\n\n".join(kept) if kept else "")


class ZendeskProvider(http.HttpProvider):
    platform = "zendesk"
    service = SERVICE
    Options = ZendeskOptions
    FACTS = FACTS
    capabilities = Capabilities(can_dm=False, can_reply_publicly=False, supports_idempotency=True,
                                can_lookup_sent=True, actions=frozenset({"create_ticket", "ticket_comment"}))
    poll_interval = 120.0

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        opts: ZendeskOptions = self.options
        self.base = http.check_base_url(opts.api_base or f"https://{opts.subdomain}.zendesk.com")

    # ---- plumbing ---------------------------------------------------------------------------------

    def _auth(self) -> str:
        secret = self._secret()
        if not secret:
            raise AuthError(f"zendesk: no {'OAuth token' if self.options.auth == 'oauth' else 'API token'}; "
                            f"run 'replydesk login {self.account}'")
        if self.options.auth == "oauth":
            return f"Bearer {secret}"
        raw = f"{self.options.email}/token:{secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.base}/agent/tickets/{ticket_id}"

    async def _call(self, method: str, path: str, *, params: Any = None, json_body: Any = None,
                    headers: dict[str, str] | None = None, what: str = "request") -> dict[str, Any]:
        self.gate.check()
        client = self.client()
        request = client.build_request(method, self.base + path, params=params, json=json_body,
                                       headers={"Authorization": self._auth(), **(headers or {})})
        response = await http.send_request(client, request, SERVICE)
        self.gate.observe(response)
        if http.rate_remaining(response.headers) == 0 and http.rate_reset(response.headers, self.clock()) is None:
            self.gate.blocked_until = max(self.gate.blocked_until, self.clock() + WINDOW_WAIT)
        code = response.status_code
        if code >= 300:
            detail = problem(response)
            suffix = f": {detail}" if detail else ""
            if code == 429:
                raise self.gate.limited(response, detail)
            if code == 401:
                raise AuthError(f"zendesk: the {'OAuth token' if self.options.auth == 'oauth' else 'API token'} "
                                f"was refused (HTTP 401){suffix}; re-login needed")
            if code == 403:
                raise PermanentError(f"zendesk: {what} not allowed for this agent (HTTP 403){suffix}")
            if code == 408 or code >= 500:
                raise TransientError(f"zendesk: server error HTTP {code}{suffix}")
            raise PermanentError(f"zendesk: {what} refused (HTTP {code}){suffix}")
        if code == 204 or not response.content:
            return {}
        data = http.json_body(response, SERVICE)
        if not isinstance(data, dict):
            raise PermanentError(f"zendesk: {what} answered with an unexpected shape")
        return data

    # ---- following tickets ------------------------------------------------------------------------

    def _status(self, ticket: Any) -> TicketStatus | None:
        if not isinstance(ticket, dict):
            return None
        tid = ticket.get("id")
        status = ticket.get("status")
        if not (isinstance(tid, int) and not isinstance(tid, bool)) or status not in STATUSES:
            return None
        at = payload.timestamp_or(ticket.get("updated_at"), self.clock())
        return TicketStatus(str(tid), status, at, self.options.resolve_when_solved)

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        if self.options.follow == "export":
            return await payload.keep_finished(self._export(cursors.get("tickets") or {}))
        return await payload.keep_finished(self._reads())

    async def _reads(self) -> AsyncIterator[FetchResult]:
        """The tickets we made, 100 a request (``show_many``)."""
        ids = [t for t in self.tickets_to_follow() if t.isdigit()]
        for start in range(0, len(ids), SHOW_MANY):
            chunk = ids[start:start + SHOW_MANY]
            data = await self._call("GET", "/api/v2/tickets/show_many.json", params={"ids": ",".join(chunk)},
                                    what="reading tickets")
            found = [s for s in map(self._status, payload.items(data, "tickets")) if s is not None]
            # show_many leaves out a deleted ticket: it is followed no more
            seen = {s.ticket_id for s in found}
            found += [TicketStatus(t, "deleted", self.clock()) for t in chunk if t not in seen]
            yield FetchResult([], {"at": self.clock()}, "tickets", tickets=found)

    async def _export(self, cursor: dict[str, Any]) -> AsyncIterator[FetchResult]:
        """The incremental ticket export (cursor-based), from where the last page ended."""
        after = cursor.get("cursor") if payload.is_identifier(cursor.get("cursor")) else None
        for _ in range(10):
            params = {"cursor": after} if after else {"start_time": int(self.clock() - EXPORT_BACK)}
            data = await self._call("GET", "/api/v2/incremental/tickets/cursor.json", params=params,
                                    what="the incremental ticket export")
            found = [s for s in map(self._status, payload.items(data, "tickets")) if s is not None]
            after = payload.ident(data, "after_cursor", required=False) or after
            yield FetchResult([], {"cursor": after} if after else {}, "tickets", tickets=found)
            if data.get("end_of_stream") is not False:
                return

    # ---- tickets and comments ---------------------------------------------------------------------

    def _ticket_body(self, p: dict[str, Any]) -> dict[str, Any]:
        subject = " ".join(str(p.get("subject") or "").split())
        if not subject:
            raise PermanentError("zendesk: a ticket needs a subject")
        requester = p.get("requester") if isinstance(p.get("requester"), dict) else {}
        name = " ".join(str(requester.get("name") or requester.get("handle") or "").split())[:255] or "Customer"
        person: dict[str, str] = {"name": name}
        handle = str(requester.get("handle") or "")
        if p.get("platform") == "email" and re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", handle):
            person["email"] = handle
        platform = str(p.get("platform") or "")
        from replydesk import providers

        facts = providers.platform_facts(platform) if platform else None
        label = facts.label if facts is not None else (platform or "replydesk")
        own = [t for t in p.get("tags") if isinstance(t, str)] if isinstance(p.get("tags"), list) else []
        tags = [_zendesk_tag(t) for t in [*self.options.tags, *own, *([f"replydesk_{platform}"] if platform else [])]]
        priority = p.get("priority") if p.get("priority") in PRIORITIES else "normal"
        return {"ticket": {
            "subject": subject[:SUBJECT_MAX], "requester": person,
            "comment": {"body": transcript(p, label), "public": self.options.public_transcript},
            "priority": self.options.priorities.get(priority, "normal"),
            "tags": list(dict.fromkeys(t for t in tags if t)), "external_id": str(p.get("external_id") or ""),
        }}

    def _created(self, ticket: Any) -> ActionResult:
        status = self._status(ticket)
        if status is None:
            raise PermanentError("zendesk: the ticket was created without an id")
        at = payload.timestamp_or(ticket.get("created_at"), self.clock())
        return ActionResult(status.ticket_id, at, {"url": self.ticket_url(status.ticket_id), "label": "Zendesk",
                                                   "status": status.status})

    async def perform(self, action: OutgoingAction) -> ActionResult:
        if action.kind == "create_ticket":
            if not action.payload.get("external_id"):
                raise PermanentError("zendesk: a ticket needs our conversation id as its external_id")
            data = await self._call("POST", "/api/v2/tickets.json", json_body=self._ticket_body(action.payload),
                                    headers={"Idempotency-Key": action.key}, what="creating the ticket")
            return self._created(data.get("ticket"))
        if action.kind == "ticket_comment":
            ticket, body = self._comment(action)
            data = await self._call("PUT", f"/api/v2/tickets/{ticket}.json",
                                    json_body={"ticket": {"comment": {"body": body, "public": False}}},
                                    what="adding the note")
            audit = payload.mapping(data, "audit", required=False)
            comment = next((e.get("id") for e in payload.items(audit, "events")
                            if isinstance(e, dict) and e.get("type") == "Comment"), None)
            return ActionResult(f"{ticket}:comment:{comment or action.key}", self.clock(),
                                {"url": self.ticket_url(ticket)})
        return await super().perform(action)

    @staticmethod
    def _comment(action: OutgoingAction) -> tuple[str, str]:
        ticket = str(action.payload.get("ticket_id") or "")
        body = action.payload.get("body")
        if not ticket.isdigit() or not isinstance(body, str) or not body.strip():
            raise PermanentError("zendesk: a note needs its ticket and its text")
        return ticket, body

    def repeatable(self, kind: str) -> bool:
        """Never blindly: a create's key lives two hours at Zendesk, and a comment has no key."""
        return False

    async def lookup_performed(self, action: OutgoingAction) -> ActionResult | None:
        """The ticket an uncertain create made (by its ``external_id``, created after the action
        was queued), or the note among the ticket's newest comments."""
        since = (action.created_at or 0.0) - LOOKUP_SKEW
        if action.kind == "create_ticket":
            data = await self._call("GET", "/api/v2/tickets.json",
                                    params={"external_id": str(action.payload.get("external_id") or "")},
                                    what="looking the ticket up")
            ours = [t for t in payload.items(data, "tickets") if isinstance(t, dict)
                    and t.get("external_id") == action.payload.get("external_id")
                    and payload.timestamp_or(t.get("created_at"), 0.0) >= since]
            ours.sort(key=lambda t: payload.timestamp_or(t.get("created_at"), 0.0))
            return self._created(ours[0]) if ours else None
        if action.kind == "ticket_comment":
            ticket, body = self._comment(action)
            data = await self._call("GET", f"/api/v2/tickets/{ticket}/comments.json",
                                    params={"sort_order": "desc"}, what="looking the note up")
            wanted = " ".join(body.split())
            for comment in payload.items(data, "comments"):
                if isinstance(comment, dict) and comment.get("public") is False and \
                        " ".join(payload.text(comment, "body").split()) == wanted and \
                        payload.timestamp_or(comment.get("created_at"), 0.0) >= since:
                    return ActionResult(f"{ticket}:comment:{comment.get('id')}",
                                        payload.timestamp_or(comment.get("created_at"), self.clock()),
                                        {"url": self.ticket_url(ticket)})
            return None
        return await super().lookup_performed(action)

    async def send(self, reply: OutgoingReply) -> SendResult:
        raise PermanentError("a Zendesk account takes escalations as tickets, not replies")
