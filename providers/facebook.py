"""A Facebook Page: Messenger chats, comments on the Page's posts, and recommendations (reviews).

Streams (each with its own cursor, advanced only with the items it covers):

- ``messages``: Messenger conversations (``providers.meta_messaging``), one per customer (kind ``dm``).
- ``comments``: the Page's newest posts (``/{page-id}/feed``; those updated since the last poll),
  then each one's ``/{post-id}/comments?filter=stream&order=reverse_chronological`` down to the
  watermark. One conversation per top-level comment with its replies (kind ``comment``); the post's
  first line is the subject, so the thread shows what the customer answered.
- ``recommendations``: ``/{page-id}/ratings`` (whether they recommend the Page, and their words),
  one conversation each (kind ``review``, beside Google's reviews in the Reviews view), answered
  as a comment on the recommendation's story.

Webhooks (object ``page``): Messenger events (``messaging``) and ``feed`` changes (a new comment)
come within seconds; polling stays on and fills in what a webhook missed (ingest dedupes).

Replies: a comment publicly (``POST /{comment-id}/comments``) or privately (a private reply through
Messenger, within 7 days of the comment); a DM inside the 24-hour window, or with the human-agent
tag up to 7 days where the app has that feature (``human_agent_tag``). Before an uncertain send is
tried again, our own comment or message with the same text is looked for; absent means ``unknown``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from replydesk.model import Contact, DeliveryUpdate, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.platforms import Limit, PlatformFacts
from replydesk.providers import meta
from replydesk.providers.base import Capabilities, PermanentError, SecretGetter, UnknownDelivery
from replydesk.providers.meta_messaging import LOOKUP_MESSAGES, Messaging, event_ids, match_ours
from replydesk.providers.payload import (
    BadItem,
    Rejected,
    ident,
    items,
    map_each,
    mapping,
    text,
)

SERVICE = "facebook"
SCOPES = ("pages_messaging", "pages_manage_metadata", "pages_read_engagement", "pages_read_user_content",
          "pages_manage_engagement")
COMMENT_FIELDS = "id,message,from{id,name},created_time,parent{id}"
POST_FIELDS = "id,message,updated_time,created_time"
RATING_FIELDS = "created_time,recommendation_type,review_text,reviewer{id,name},open_graph_story{id},rating"
COMMENT_PAGES = 3
RATING_PAGES = 4


def facts(human_agent: bool) -> dict[str, PlatformFacts]:
    # comments 8,000 characters; Messenger's Send API: 2,000 characters
    return {"facebook": PlatformFacts("Facebook", "FB", Limit(8_000, "utf16"), Limit(2_000, "utf16"),
                                      meta.messenger_rules(human_agent))}


FACTS = facts(True)


class FacebookOptions(meta.MetaOptions):
    """A Facebook Page: its Page access token in the keyring (``replydesk login``)."""

    secret_hint: ClassVar[str] = ("the Page access token (permissions: " + ", ".join(SCOPES) +
                                  "), then the app secret")

    provider: Literal["facebook"] = "facebook"
    page_id: str = Field(pattern=r"^[0-9]{1,32}$")
    """The Page's numeric id (the Page → About → Page transparency, or Meta Business Suite settings)."""
    human_agent_tag: bool = False
    """The app has Meta's Human Agent feature: a DM may then be answered up to 7 days after the
    customer's last message (with the HUMAN_AGENT tag) instead of 24 hours."""
    comments: bool = True
    """Fetch comments on the Page's posts."""
    recommendations: bool = True
    """Fetch recommendations (Facebook's reviews of the Page)."""
    posts_checked: int = Field(25, ge=1, le=100)
    """How many of the newest posts are checked for new comments on each poll."""


class FacebookProvider(meta.MetaProvider):
    platform = "facebook"
    service = SERVICE
    Options = FacebookOptions
    FACTS: ClassVar[dict[str, PlatformFacts]] = FACTS
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, can_lookup_sent=True, accepts_push=True)

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        page = self.options.page_id
        self.messaging = Messaging(self, "messenger", page, {page}, self.options.human_agent_tag)

    def facts(self) -> dict[str, PlatformFacts]:
        return facts(self.options.human_agent_tag)

    # ---- polling ------------------------------------------------------------------------------------

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        walks = [("messages", lambda: self.messaging.walk(cursors.get("messages")))]
        if self.options.comments:
            walks.append(("comments", lambda: self._comments(cursors.get("comments"))))
        if self.options.recommendations:
            walks.append(("recommendations", lambda: self._ratings(cursors.get("recommendations"))))
        return await self.run_streams(walks)

    def _comment(self, c: Any, post: dict[str, Any]) -> IncomingMessage:
        native = ident(c, "id")
        parent = ident(mapping(c, "parent", required=False), "id", required=False)
        top = parent or native
        author = mapping(c, "from", required=False)
        author_id, name = ident(author, "id", required=False), text(author, "name")
        ours = author_id == self.options.page_id
        contact = Contact(author_id, name or author_id, name_is_fallback=not name) if author_id else \
            Contact(f"commenter:{top}", "Facebook user", name_is_fallback=True)
        return IncomingMessage(
            native_id=native, conversation_native_id=f"comment:{top}", platform="facebook", kind="comment",
            contact=contact, text=text(c, "message") or "[a comment without text]",
            created_at=meta.graph_time(c.get("created_time") if isinstance(c, dict) else None),
            direction="out" if ours else "in", parent_native_id=parent or None,
            subject=meta.first_line(text(post, "message")),
            meta={"comment_id": native, "conversation": {"post_id": text(post, "id"), "comment_id": top}},
        )

    async def _comments(self, cursor: dict[str, Any] | None) -> AsyncIterator[FetchResult]:
        since = _since(cursor)
        newest = since
        messages: list[IncomingMessage] = []
        rejected: Rejected = []
        posts = await self.graph("GET", f"/{self.options.page_id}/feed",
                                 params={"fields": POST_FIELDS, "limit": self.options.posts_checked})
        for post in items(posts, "data"):
            post_id = ident(post, "id", required=False)
            try:
                updated = meta.graph_time((post.get("updated_time") or post.get("created_time"))
                                          if isinstance(post, dict) else None, "updated_time")
            except BadItem as exc:
                rejected.append((post_id or "?", str(exc)))
                continue
            if not post_id or (since is not None and updated <= since):
                continue
            params = {"filter": "stream", "order": "reverse_chronological", "fields": COMMENT_FIELDS, "limit": 50}
            try:
                async for page in self.pages(f"/{post_id}/comments", params, 1 if since is None else COMMENT_PAGES):
                    mapped, bad = map_each(page, lambda c, p=post: self._comment(c, p), lambda c: text(c, "id"))
                    fresh = [m for m in mapped if since is None or m.created_at > since]
                    messages.extend(fresh)
                    rejected.extend(bad)
                    newest = max([newest or 0.0, *(m.created_at for m in fresh)]) or newest
                    if len(fresh) < len(mapped):
                        break
            except PermanentError as exc:  # one post Meta will not show (deleted, hidden) never stops the others
                rejected.append((f"post {post_id}"[:200], str(exc)[:300]))
        yield FetchResult(messages, {"since": newest} if newest else None, "comments", rejected)

    def _rating(self, r: Any) -> IncomingMessage:
        story = ident(mapping(r, "open_graph_story", required=False), "id", required=False)
        reviewer = mapping(r, "reviewer", required=False)
        rid, name = ident(reviewer, "id", required=False), text(reviewer, "name")
        at = meta.graph_time(r.get("created_time") if isinstance(r, dict) else None)
        native = story or f"rating:{rid or 'anonymous'}:{int(at)}"
        kind = text(r, "recommendation_type")
        subject = {"positive": "Recommends your Page", "negative": "Does not recommend your Page"}.get(kind, "")
        if not subject and isinstance(r.get("rating"), int):
            subject = f"Rated your Page {r['rating']} of 5"
        return IncomingMessage(
            native_id=native, conversation_native_id=f"review:{native}", platform="facebook", kind="review",
            contact=Contact(rid, name or rid, name_is_fallback=not name) if rid else
            Contact(f"reviewer:{native}", "Facebook user", name_is_fallback=True),
            text=text(r, "review_text") or "[a recommendation without text]", created_at=at, subject=subject,
            meta={"recommends": kind == "positive" if kind else None,
                  "conversation": {"story_id": story} if story else {}},
        )

    async def _ratings(self, cursor: dict[str, Any] | None) -> AsyncIterator[FetchResult]:
        since = _since(cursor)
        newest = since
        params = {"fields": RATING_FIELDS, "limit": 25}
        async for page in self.pages(f"/{self.options.page_id}/ratings", params, 1 if since is None else RATING_PAGES):
            mapped, bad = map_each(page, self._rating, lambda r: text(mapping(r, "open_graph_story",
                                                                               required=False), "id"))
            fresh = [m for m in mapped if since is None or m.created_at > since]
            newest = max([newest or 0.0, *(m.created_at for m in fresh)]) or newest
            yield FetchResult(fresh, {"since": newest} if newest else None, "recommendations", bad)
            if len(fresh) < len(mapped):
                return

    # ---- webhooks -----------------------------------------------------------------------------------

    def _entries(self, raw_body: bytes) -> list[dict[str, Any]]:
        return self.body_of(raw_body, "page")

    def claims_push(self, raw_body: bytes) -> bool:
        try:
            return any(text(e, "id") == self.options.page_id for e in self._entries(raw_body))
        except ValueError:
            return False

    def push_key(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        try:
            parts = event_ids(self._entries(raw_body), lambda change, value: (
                f"c:{text(value, 'comment_id') or text(value, 'post_id')}:{text(value, 'verb')}:"
                f"{value.get('created_time')}"))
        except ValueError:
            parts = []
        return self.ids_key(parts) if parts else super().push_key(headers, raw_body)

    def parse_push(self, raw_body: bytes, headers: Mapping[str, str]) -> list[FetchResult]:
        messages: list[IncomingMessage] = []
        updates: list[DeliveryUpdate] = []
        rejected: Rejected = []
        for entry in self._entries(raw_body):
            page = text(entry, "id")
            if page != self.options.page_id:
                rejected.append((f"entry {page[:40]}", f"for Page {page[:40]!r}, not this account's"))
                continue
            self.messaging.events(entry, messages, updates, rejected)
            for change in items(entry, "changes"):
                if text(change, "field") != "feed":
                    continue
                value = mapping(change, "value", required=False)
                if text(value, "item") != "comment" or text(value, "verb") != "add":
                    continue  # reactions, edits, removals, new posts: nothing to answer
                try:
                    messages.append(self._pushed_comment(value))
                except Exception as exc:
                    rejected.append((text(value, "comment_id")[:200] or "?", str(exc) if isinstance(exc, BadItem)
                                     else f"unexpected payload shape ({type(exc).__name__})"))
        return [FetchResult(messages, None, "push", rejected, updates=updates)]

    def _pushed_comment(self, value: dict[str, Any]) -> IncomingMessage:
        native, post = ident(value, "comment_id"), ident(value, "post_id", required=False)
        parent = ident(value, "parent_id", required=False)
        reply_to = parent if parent and parent != post else ""
        return self._comment({"id": native, "message": value.get("message"), "from": value.get("from"),
                              "created_time": value.get("created_time"),
                              "parent": {"id": reply_to} if reply_to else None}, {"id": post, "message": ""})

    # ---- sending ------------------------------------------------------------------------------------

    def _target(self, reply: OutgoingReply) -> str:
        if reply.kind == "review":
            story = reply.meta.get("story_id")
            if not isinstance(story, str) or not story:
                raise PermanentError("facebook: this recommendation cannot be answered (Facebook gave no story id)")
            return story
        target = reply.in_reply_to_native_id or reply.meta.get("comment_id")
        if not isinstance(target, str) or not target:
            raise PermanentError("facebook: no comment to answer in this conversation")
        return target

    async def send(self, reply: OutgoingReply) -> SendResult:
        if reply.kind == "dm":
            return await self.messaging.send_dm(reply)
        target = self._target(reply)
        if reply.private and reply.kind == "comment":
            return await self.messaging.send_private_reply(reply, target)
        answer = await self.graph("POST", f"/{target}/comments", body={"message": reply.text})
        remote = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(remote, str) or not remote:
            raise UnknownDelivery("facebook: the comment was answered without an id; check the Page")
        return SendResult(remote, self.clock())

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        if reply.kind == "dm":
            return await self.messaging.find_ours(reply)
        if reply.private:
            raise UnknownDelivery("facebook cannot look up a private reply until the customer answers it; "
                                  "check the Page inbox, then retry or confirm")
        page = await self.graph("GET", f"/{self._target(reply)}/comments",
                                params={"fields": "id,message,from{id},created_time", "order": "reverse_chronological",
                                        "limit": LOOKUP_MESSAGES})
        return match_ours(items(page, "data"), reply, {self.options.page_id}, "message", SERVICE)


def _since(cursor: dict[str, Any] | None) -> float | None:
    value = cursor.get("since") if isinstance(cursor, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
