"""A simulated helpdesk: where an escalation becomes a ticket, for the demo and the tests (Zendesk is real).

An escalation target in the config names a helpdesk account (``escalation.targets``). Escalating to
it queues a ``create_ticket`` action in the outbox, and this provider performs it. Like the demo
platform, its remote side lives in the workspace: ``demo-tickets.jsonl`` is the helpdesk's record of
every ticket, fsync'd before it answers, so tests can use it as the referee ("exactly one ticket per
escalation, even when the engine is killed between the helpdesk's answer and our record").

Like Zendesk, it honours an idempotency key on create (``Idempotency-Key``: a repeat returns the
first ticket). With ``idempotency_keys: false`` it ignores the key, as a helpdesk without them
would. The engine then looks the ticket up (by the key it carries, as Zendesk's ``external_id``
lookup does) before it tries again. With ``notes_as_comments`` the notes written after an escalation
go to its ticket as private comments (``demo-ticket-comments.jsonl``), once each, as on Zendesk.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from replydesk.model import ActionResult, FetchResult, OutgoingAction, OutgoingReply, SendResult
from replydesk.options import AccountOptions
from replydesk.platforms import PlatformFacts
from replydesk.providers.base import Capabilities, PermanentError, Provider, SecretGetter
from replydesk.providers.demo import DemoFaults, DemoRemote, FaultyWire

TICKETS = "demo-tickets.jsonl"
TICKET_REPEATS = "demo-ticket-repeats.jsonl"
COMMENTS = "demo-ticket-comments.jsonl"
COMMENT_REPEATS = "demo-ticket-comment-repeats.jsonl"
TICKET_URL = "https://helpdesk.demo.invalid/tickets/{id}"


class DemoHelpdeskOptions(AccountOptions):
    """The built-in demo helpdesk: escalations to it become tickets (no account needed)."""

    secret_hint: ClassVar[str] = "any text (the demo helpdesk ignores it)"

    provider: Literal["demo-helpdesk"] = "demo-helpdesk"
    idempotency_keys: bool = True
    """Honour the idempotency key of a ticket create, as Zendesk does. With false, every create
    makes a ticket, and the engine looks the ticket up before it tries again."""
    faults: DemoFaults = DemoFaults()
    """Fault injection on the helpdesk's side, as for the demo platform."""
    notes_as_comments: bool = False
    """Internal notes written on the conversation after the escalation go to its ticket as private
    comments (``demo-ticket-comments.jsonl``), as Zendesk's option does."""
    remote: str | None = None
    """Where the simulated helpdesk keeps its side (its tickets and comments); default: the
    workspace. Team engines on one machine share one, as they would share a real helpdesk."""


FACTS = {"demo-helpdesk": PlatformFacts("Demo helpdesk", "HD", None, None)}


class DemoHelpdesk(Provider):
    platform = "demo-helpdesk"
    Options = DemoHelpdeskOptions
    FACTS = FACTS
    capabilities = Capabilities(can_dm=False, can_reply_publicly=False, supports_idempotency=True,
                                can_lookup_sent=True, actions=frozenset({"create_ticket"}))
    poll_interval = 300.0  # nothing to fetch: its tickets keep the status they were made with

    def __init__(self, account: str, options: DemoHelpdeskOptions | dict[str, Any], secret: SecretGetter, *,
                 data_dir: Path, clock=time.time) -> None:  # noqa: ANN001 - a zero-arg clock
        super().__init__(account, options, secret)
        opts: DemoHelpdeskOptions = self.options
        self.clock = clock
        self.wire = FaultyWire(opts.faults, clock)
        remote = Path(opts.remote).expanduser() if opts.remote else data_dir
        self.tickets = DemoRemote(remote, TICKETS, TICKET_REPEATS)
        self.comments = DemoRemote(remote, COMMENTS, COMMENT_REPEATS)
        if not opts.idempotency_keys:
            self.capabilities = replace(self.capabilities, supports_idempotency=False)
        if opts.notes_as_comments:
            self.capabilities = replace(self.capabilities, actions=self.capabilities.actions | {"ticket_comment"})

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        return []

    async def send(self, reply: OutgoingReply) -> SendResult:
        raise PermanentError("a helpdesk account takes tickets, not replies")

    async def perform(self, action: OutgoingAction) -> ActionResult:
        await self.wire.request()
        if action.kind == "ticket_comment" and action.kind in self.capabilities.actions:
            return self._comment(action)
        if action.kind != "create_ticket":
            raise PermanentError(f"demo helpdesk: cannot {action.kind.replace('_', ' ')}")
        p = action.payload
        subject, external = p.get("subject"), p.get("external_id")
        if not (isinstance(subject, str) and subject.strip() and isinstance(external, str) and external):
            raise PermanentError("demo helpdesk: HTTP 422 a ticket needs a subject and an external_id")
        now = self.clock()

        def ticket(n: int) -> dict[str, Any]:
            requester = p.get("requester") if isinstance(p.get("requester"), dict) else {}
            return {"key": action.key, "id": str(n), "external_id": external, "subject": subject,
                    "requester": requester, "priority": p.get("priority"), "tags": p.get("tags"),
                    "comments": len(p.get("transcript") or []), "at": now}

        created = self.tickets.record(action.key, ticket, now, dedupe=self.capabilities.supports_idempotency)
        self.wire.landed()
        return _result(created)

    def _comment(self, action: OutgoingAction) -> ActionResult:
        """A private comment on one of our tickets, once per key (a repeat returns the first)."""
        p = action.payload
        ticket_id, body = p.get("ticket_id"), p.get("body")
        if not isinstance(body, str) or not body.strip() or self._ticket(ticket_id) is None:
            raise PermanentError(f"demo helpdesk: HTTP 422 no ticket {str(ticket_id)[:20]!r} of ours, or an empty comment")
        now = self.clock()

        def comment(n: int) -> dict[str, Any]:
            return {"key": action.key, "id": f"c{n}", "ticket": ticket_id, "body": body, "public": False, "at": now}

        made = self.comments.record(action.key, comment, now, dedupe=self.capabilities.supports_idempotency)
        self.wire.landed()
        return ActionResult(made["id"], made["at"], {"ticket_id": ticket_id})

    def _ticket(self, ticket_id: Any) -> dict[str, Any] | None:
        return next((t for t in self.tickets.ledger() if t.get("id") == ticket_id), None)

    async def lookup_performed(self, action: OutgoingAction) -> ActionResult | None:
        """The ticket this create made (or the comment), found by the key it carries (Zendesk: by
        external_id, a comment among the ticket's)."""
        await self.wire.request()
        if action.kind == "ticket_comment":
            made = self.comments.find(action.key)
            return ActionResult(made["id"], made["at"], {"ticket_id": made["ticket"]}) if made else None
        found = self.tickets.find(action.key)
        return _result(found) if found else None


def _result(ticket: dict[str, Any]) -> ActionResult:
    return ActionResult(ticket["id"], ticket["at"], {"url": TICKET_URL.format(id=ticket["id"]), "label": "Demo helpdesk",
                                                     "status": "new"})
