"""An Instagram professional account: DMs, comments on its media, and mentions of it.

Two ways in, because small businesses use both (``login``):

- ``instagram`` (the Instagram API with Instagram Login): ``graph.instagram.com``, a token with the
  ``instagram_business_*`` permissions, no Facebook Page needed. Messages are sent from the
  account itself (``/{ig-user-id}/messages``).
- ``facebook`` (the Facebook-Login variant): ``graph.facebook.com`` through the Page the account is
  linked to (``page_id``), with a Page token; messages are sent from the Page.

Streams: ``messages`` (the conversations API with ``platform=instagram``, see
``providers.meta_messaging``), ``comments`` (the newest media and their comments with replies: one
conversation per top-level comment, the caption as its subject) and ``mentions`` (media the account
is tagged in, kind ``mention``). Webhooks (object ``instagram``): ``messaging`` events, ``comments``
changes, and ``mentions`` changes (Meta sends only the ids of a comment mention: it is stored as a
placeholder naming the media, and is answered like the others).

Replies: a comment publicly (``POST /{ig-comment-id}/replies``) or privately (within 7 days of the
comment); a DM inside the 24-hour window (the human-agent tag up to 7 days where the app has it);
a mention with ``POST /{ig-user-id}/mentions`` (the Facebook-login variant).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from replydesk.model import Contact, DeliveryUpdate, FetchResult, IncomingMessage, OutgoingReply, SendResult
from replydesk.platforms import Limit, PlatformFacts
from replydesk.providers import meta
from replydesk.providers.base import Capabilities, PermanentError, SecretGetter, UnknownDelivery
from replydesk.providers.meta_messaging import LOOKUP_MESSAGES, Messaging, event_ids, match_ours
from replydesk.providers.payload import BadItem, Rejected, ident, items, map_each, mapping, text

SERVICE = "instagram"
SCOPES_INSTAGRAM = ("instagram_business_basic", "instagram_business_manage_messages",
                    "instagram_business_manage_comments")
SCOPES_FACEBOOK = ("instagram_basic", "instagram_manage_messages", "instagram_manage_comments",
                   "pages_manage_metadata", "pages_show_list")
COMMENT_FIELDS = "id,text,timestamp,username,from{id,username},replies{id,text,timestamp,username,from{id,username}}"
MEDIA_FIELDS = "id,caption,timestamp,comments_count"
TAG_FIELDS = "id,caption,timestamp,username,permalink"


def facts(human_agent: bool) -> dict[str, PlatformFacts]:
    # comments 2,200 characters; the Messaging API: text under 1,000 bytes of UTF-8
    return {"instagram": PlatformFacts("Instagram", "IG", Limit(2_200, "utf16"), Limit(1_000, "utf8"),
                                       meta.messenger_rules(human_agent))}


FACTS = facts(True)


class InstagramOptions(meta.MetaOptions):
    """An Instagram professional (business or creator) account."""

    secret_hint: ClassVar[str] = ("the access token (Instagram Login: " + ", ".join(SCOPES_INSTAGRAM) +
                                  "; Facebook Login: the Page token with " + ", ".join(SCOPES_FACEBOOK) +
                                  "), then the app secret")

    provider: Literal["instagram"] = "instagram"
    ig_user_id: str = Field(pattern=r"^[0-9]{1,32}$")
    """The Instagram professional account's id (the ``id`` of ``GET /me`` with its token)."""
    login: Literal["instagram", "facebook"] = "instagram"
    """``instagram``: the Instagram API with Instagram Login (graph.instagram.com, no Page);
    ``facebook``: through the linked Facebook Page (graph.facebook.com, needs ``page_id``)."""
    page_id: str | None = Field(None, pattern=r"^[0-9]{1,32}$")
    """The linked Facebook Page's id (the Facebook-login variant only)."""
    human_agent_tag: bool = False
    """The app has Meta's Human Agent feature: DMs may be answered up to 7 days (HUMAN_AGENT tag)."""
    comments: bool = True
    """Fetch comments on the account's media."""
    mentions: bool = True
    """Fetch media the account is tagged in (mentions)."""
    posts_checked: int = Field(25, ge=1, le=100)
    """How many of the newest media are checked for new comments on each poll."""
    api_base: str | None = None  # type: ignore[assignment]
    """The Graph API host; default graph.instagram.com (Instagram Login) or graph.facebook.com."""

    @model_validator(mode="after")
    def _page_for_facebook_login(self) -> InstagramOptions:
        if self.login == "facebook" and not self.page_id:
            raise ValueError("login: facebook needs the linked Page's page_id")
        if self.api_base is not None:
            from replydesk.options import https_or_local

            self.api_base = https_or_local(self.api_base)
        return self


class InstagramProvider(meta.MetaProvider):
    platform = "instagram"
    service = SERVICE
    Options = InstagramOptions
    FACTS: ClassVar[dict[str, PlatformFacts]] = FACTS
    capabilities = Capabilities(can_dm=True, can_reply_publicly=True, can_lookup_sent=True, accepts_push=True)

    def __init__(self, account: str, options: Any, secret: SecretGetter, **wire: Any) -> None:
        super().__init__(account, options, secret, **wire)
        me = self.options.ig_user_id
        owner = self.options.page_id if self.options.login == "facebook" else me
        self.messaging = Messaging(self, "instagram", owner, {me, *( [owner] if owner else [])},
                                   self.options.human_agent_tag)

    def api_host(self) -> str:
        if self.options.api_base:
            return self.options.api_base
        return meta.GRAPH_HOST if self.options.login == "facebook" else meta.INSTAGRAM_HOST

    def facts(self) -> dict[str, PlatformFacts]:
        return facts(self.options.human_agent_tag)

    # ---- polling ------------------------------------------------------------------------------------

    async def fetch(self, cursors: dict[str, dict[str, Any]]) -> list[FetchResult]:
        walks = [("messages", lambda: self.messaging.walk(cursors.get("messages")))]
        if self.options.comments:
            walks.append(("comments", lambda: self._comments(cursors.get("comments"))))
        if self.options.mentions:
            walks.append(("mentions", lambda: self._tags(cursors.get("mentions"))))
        return await self.run_streams(walks)

    def _ours(self, author: dict[str, Any]) -> bool:
        return ident(author, "id", required=False) in self.messaging.ours

    def _comment(self, c: Any, media: dict[str, Any], top: str | None = None) -> IncomingMessage:
        native = ident(c, "id")
        author = mapping(c, "from", required=False)
        username = text(author, "username") or text(c, "username")
        author_id = ident(author, "id", required=False)
        top = top or native
        contact = Contact(author_id or f"@{username}" if (author_id or username) else f"commenter:{top}",
                          username or "Instagram user", f"@{username}" if username else "",
                          name_is_fallback=True)
        return IncomingMessage(
            native_id=native, conversation_native_id=f"comment:{top}", platform="instagram", kind="comment",
            contact=contact, text=text(c, "text") or "[a comment without text]",
            created_at=meta.graph_time(c.get("timestamp") if isinstance(c, dict) else None, "timestamp"),
            direction="out" if self._ours(author) else "in", parent_native_id=top if top != native else None,
            subject=meta.first_line(text(media, "caption")),
            meta={"comment_id": native, "conversation": {"media_id": text(media, "id"), "comment_id": top}},
        )

    def _thread(self, c: Any, media: dict[str, Any]) -> list[IncomingMessage]:
        top = self._comment(c, media)
        replies = items(mapping(c, "replies", required=False), "data")
        mapped, _ = map_each(replies, lambda r: self._comment(r, media, top.native_id), lambda r: text(r, "id"))
        return [top, *mapped]

    async def _comments(self, cursor: dict[str, Any] | None) -> AsyncIterator[FetchResult]:
        since = _since(cursor)
        newest = since
        messages: list[IncomingMessage] = []
        rejected: Rejected = []
        media = await self.graph("GET", f"/{self.options.ig_user_id}/media",
                                 params={"fields": MEDIA_FIELDS, "limit": self.options.posts_checked})
        for item in items(media, "data"):
            media_id = ident(item, "id", required=False)
            if not media_id or item.get("comments_count") == 0:
                continue
            page = await self.graph("GET", f"/{media_id}/comments", params={"fields": COMMENT_FIELDS, "limit": 50})
            mapped, bad = map_each(items(page, "data"), lambda c, m=item: self._thread(c, m), lambda c: text(c, "id"))
            fresh = [m for m in mapped if since is None or m.created_at > since]
            messages.extend(fresh)
            rejected.extend(bad)
            newest = max([newest or 0.0, *(m.created_at for m in fresh)]) or newest
        yield FetchResult(messages, {"since": newest} if newest else None, "comments", rejected)

    def _tag(self, media: Any) -> IncomingMessage:
        native = ident(media, "id")
        username = text(media, "username")
        return IncomingMessage(
            native_id=native, conversation_native_id=f"mention:{native}", platform="instagram", kind="mention",
            contact=Contact(f"@{username}" if username else f"tagger:{native}", username or "Instagram user",
                            f"@{username}" if username else "", name_is_fallback=True),
            text=text(media, "caption") or "[tagged you in a post without a caption]",
            created_at=meta.graph_time(media.get("timestamp") if isinstance(media, dict) else None, "timestamp"),
            meta={"permalink": text(media, "permalink"), "conversation": {"media_id": native}},
        )

    async def _tags(self, cursor: dict[str, Any] | None) -> AsyncIterator[FetchResult]:
        since = _since(cursor)
        page = await self.graph("GET", f"/{self.options.ig_user_id}/tags", params={"fields": TAG_FIELDS, "limit": 25})
        mapped, bad = map_each(items(page, "data"), self._tag, lambda m: text(m, "id"))
        fresh = [m for m in mapped if since is None or m.created_at > since]
        newest = max([since or 0.0, *(m.created_at for m in fresh)]) or since
        yield FetchResult(fresh, {"since": newest} if newest else None, "mentions", bad)

    # ---- webhooks -----------------------------------------------------------------------------------

    def _entries(self, raw_body: bytes) -> list[dict[str, Any]]:
        return self.body_of(raw_body, "instagram")

    def claims_push(self, raw_body: bytes) -> bool:
        try:
            return any(text(e, "id") in self.messaging.ours for e in self._entries(raw_body))
        except ValueError:
            return False

    def push_key(self, headers: Mapping[str, str], raw_body: bytes) -> str:
        try:
            parts = event_ids(self._entries(raw_body), lambda change, value: (
                f"{text(change, 'field')}:{text(value, 'id') or text(value, 'comment_id')}:{text(value, 'media_id')}"))
        except ValueError:
            parts = []
        return self.ids_key(parts) if parts else super().push_key(headers, raw_body)

    def parse_push(self, raw_body: bytes, headers: Mapping[str, str]) -> list[FetchResult]:
        messages: list[IncomingMessage] = []
        updates: list[DeliveryUpdate] = []
        rejected: Rejected = []
        for entry in self._entries(raw_body):
            owner = text(entry, "id")
            if owner not in self.messaging.ours:
                rejected.append((f"entry {owner[:40]}", f"for Instagram account {owner[:40]!r}, not this account's"))
                continue
            self.messaging.events(entry, messages, updates, rejected)
            for change in items(entry, "changes"):
                field, value = text(change, "field"), mapping(change, "value", required=False)
                try:
                    if field == "comments":
                        messages.append(self._pushed_comment(value, entry))
                    elif field == "mentions":
                        messages.append(self._pushed_mention(value, entry))
                except Exception as exc:
                    rejected.append((text(value, "id")[:200] or text(value, "comment_id")[:200] or "?",
                                     str(exc) if isinstance(exc, BadItem)
                                     else f"unexpected payload shape ({type(exc).__name__})"))
        return [FetchResult(messages, None, "push", rejected, updates=updates)]

    def _pushed_comment(self, value: dict[str, Any], entry: dict[str, Any]) -> IncomingMessage:
        media = mapping(value, "media", required=False)
        parent = ident(value, "parent_id", required=False)
        c = {"id": value.get("id"), "text": value.get("text"), "from": value.get("from"),
             "timestamp": value.get("timestamp") or entry.get("time")}
        return self._comment(c, {"id": text(media, "id"), "caption": ""}, parent or None)

    def _pushed_mention(self, value: dict[str, Any], entry: dict[str, Any]) -> IncomingMessage:
        comment, media = ident(value, "comment_id", required=False), ident(value, "media_id")
        native = comment or media
        return IncomingMessage(
            native_id=native, conversation_native_id=f"mention:{native}", platform="instagram", kind="mention",
            contact=Contact(f"mentioner:{native}", "Instagram user", name_is_fallback=True),
            text=f"[mentioned you in {'a comment on ' if comment else ''}media {media}; Meta sends only the ids: "
                 "open it on Instagram to read it]",
            created_at=meta.graph_time(entry.get("time"), "time"),
            meta={"conversation": {"media_id": media, "comment_id": comment}},
        )

    # ---- sending ------------------------------------------------------------------------------------

    async def send(self, reply: OutgoingReply) -> SendResult:
        if reply.kind == "dm":
            return await self.messaging.send_dm(reply)
        if reply.kind == "mention":
            return await self._answer_mention(reply)
        target = reply.in_reply_to_native_id or reply.meta.get("comment_id")
        if not isinstance(target, str) or not target:
            raise PermanentError("instagram: no comment to answer in this conversation")
        if reply.private:
            return await self.messaging.send_private_reply(reply, target)
        top = reply.meta.get("comment_id") if isinstance(reply.meta.get("comment_id"), str) else target
        answer = await self.graph("POST", f"/{top}/replies", body={"message": reply.text})
        return self._posted(answer)

    async def _answer_mention(self, reply: OutgoingReply) -> SendResult:
        if self.options.login != "facebook":
            raise PermanentError("instagram: answering a mention needs the Facebook-login variant (login: facebook)")
        body = {"media_id": reply.meta.get("media_id"), "message": reply.text}
        if reply.meta.get("comment_id"):
            body["comment_id"] = reply.meta["comment_id"]
        return self._posted(await self.graph("POST", f"/{self.options.ig_user_id}/mentions", body=body))

    def _posted(self, answer: Any) -> SendResult:
        remote = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(remote, str) or not remote:
            raise UnknownDelivery("instagram: the reply was answered without an id; check the account")
        return SendResult(remote, self.clock())

    async def lookup_sent(self, reply: OutgoingReply) -> SendResult | None:
        if reply.kind == "dm":
            return await self.messaging.find_ours(reply)
        if reply.private or reply.kind == "mention":
            raise UnknownDelivery("instagram cannot look this reply up; check the account, then retry or confirm")
        top = reply.meta.get("comment_id") or reply.in_reply_to_native_id
        page = await self.graph("GET", f"/{top}/replies",
                                params={"fields": "id,text,from{id,username},timestamp", "limit": LOOKUP_MESSAGES})
        return match_ours(items(page, "data"), reply, self.messaging.ours, "text", SERVICE)


def _since(cursor: dict[str, Any] | None) -> float | None:
    value = cursor.get("since") if isinstance(cursor, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
