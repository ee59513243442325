"""Instagram for real, both ways in: the Instagram API with Instagram Login (graph.instagram.com, no
Page) and the Facebook-Login variant through a Page. DMs, comments with their replies, mentions,
webhooks, and replies publicly, privately (within 7 days) or by DM.

The Graph API is an ``httpx.MockTransport`` answering as Meta documents it (Instagram Platform
reference v26.0: IG User media, IG Media comments, IG Comment replies, IG User tags, conversations
with platform=instagram; the comments/mentions/messaging webhook fields).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from http_fakes import FakeApi, json_response
from meta_support import APP_SECRET, V, raw, signed
from replydesk.config import ConfigError, parse_config
from replydesk.model import AnsweredMessage, OutgoingReply
from replydesk.providers import meta
from replydesk.providers.base import PermanentError, UnknownDelivery
from replydesk.providers.instagram import InstagramOptions, InstagramProvider

ME = "17841400000000001"
PAGE = "100000000000001"
BEA = "7000000000000001"  # an Instagram-scoped id
NOW = 1795428000.0


def instagram_api() -> FakeApi:
    api = FakeApi()
    api.route("GET", f"{V}/{ME}/conversations", json_response({"data": [
        {"id": "aWdfZAG06MTpJR", "updated_time": "2026-11-23T09:40:00+0000",
         "participants": {"data": [{"username": "bea.bakes", "id": BEA}, {"username": "cornercoffee", "id": ME}]}}],
        "paging": {"cursors": {"after": "x"}}}))
    api.route("GET", f"{V}/aWdfZAG06MTpJR/messages", json_response({"data": [
        {"id": "aWdfZAG06M1", "message": "Do you deliver?", "from": {"username": "bea.bakes", "id": BEA},
         "created_time": "2026-11-23T09:40:00+0000"}]}))
    api.route("GET", f"{V}/{ME}/media", json_response({"data": [
        {"id": "18000000000000001", "caption": "New pastries today 🥐 #fresh", "timestamp": "2026-11-23T08:00:00+0000",
         "comments_count": 2},
        {"id": "18000000000000002", "caption": "quiet day", "timestamp": "2026-11-22T08:00:00+0000",
         "comments_count": 0}]}))
    api.route("GET", f"{V}/18000000000000001/comments", json_response({"data": [
        {"id": "17900000000000001", "text": "Are these vegan?", "timestamp": "2026-11-23T09:10:00+0000",
         "username": "bea.bakes", "from": {"id": BEA, "username": "bea.bakes"},
         "replies": {"data": [{"id": "17900000000000002", "text": "Two of them are!", "timestamp":
                               "2026-11-23T09:15:00+0000", "username": "cornercoffee",
                               "from": {"id": ME, "username": "cornercoffee"}}]}}]}))
    api.route("GET", f"{V}/{ME}/tags", json_response({"data": [
        {"id": "18100000000000001", "caption": "Best croissant with @cornercoffee", "timestamp":
         "2026-11-23T07:00:00+0000", "username": "dan.eats", "permalink": "https://www.instagram.com/p/abc/"}]}))
    return api


def provider(api: FakeApi, **options: Any) -> InstagramProvider:
    opts = InstagramOptions(name="ig", ig_user_id=ME, **options)
    return InstagramProvider("ig", opts, lambda: "IGAA-token", app_secret=lambda: APP_SECRET,
                             transport=api.transport, clock=lambda: NOW)


async def test_instagram_login_reads_dms_comments_and_mentions_from_graph_instagram_com() -> None:
    api = instagram_api()
    results = await provider(api).fetch({})
    got = {m.native_id: m for r in results for m in r.messages}
    assert got["aWdfZAG06M1"].kind == "dm" and got["aWdfZAG06M1"].contact.handle == "@bea.bakes"
    vegan, answer = got["17900000000000001"], got["17900000000000002"]
    assert vegan.kind == "comment" and vegan.subject == "New pastries today 🥐 #fresh"
    assert answer.direction == "out" and answer.conversation_native_id == vegan.conversation_native_id
    mention = got["18100000000000001"]
    assert mention.kind == "mention" and mention.text == "Best croissant with @cornercoffee"
    assert {r.url.host for r in api.calls} == {"graph.instagram.com"}
    assert all(r.url.path.startswith(f"/{meta.GRAPH_VERSION}/") for r in api.calls)
    assert api.requests("GET", f"{V}/{ME}/conversations")[0].url.params["platform"] == "instagram"
    assert not api.requests("GET", f"{V}/18000000000000002/comments")  # no comments: not asked


async def test_the_facebook_login_variant_goes_through_the_page() -> None:
    api = instagram_api()
    api.routes[("GET", f"{V}/{PAGE}/conversations")] = api.routes.pop(("GET", f"{V}/{ME}/conversations"))
    api.route("POST", f"{V}/{PAGE}/messages", json_response({"recipient_id": BEA, "message_id": "m_ig1"}))
    ig = provider(api, login="facebook", page_id=PAGE)
    results = await ig.fetch({})
    assert any(m.native_id == "aWdfZAG06M1" for r in results for m in r.messages)
    assert {r.url.host for r in api.calls} == {"graph.facebook.com"}
    sent = await ig.send(reply("dm", "Yes, within 5 km", recipient=BEA))
    assert sent.remote_id == "m_ig1"
    assert json.loads(api.requests("POST", f"{V}/{PAGE}/messages")[0].content)["recipient"] == {"id": BEA}


def test_the_facebook_login_variant_needs_its_page() -> None:
    with pytest.raises(ConfigError, match="login: facebook needs the linked Page's page_id"):
        parse_config("accounts:\n  - {name: ig, provider: instagram, ig_user_id: '1', login: facebook}\n",
                     __import__("pathlib").Path("config.yaml"))


def reply(kind: str, text: str, *, private: bool = False, **meta_: Any) -> OutgoingReply:
    answering = {"dm": "aWdfZAG06M1", "comment": "17900000000000001", "mention": "18100000000000001"}[kind]
    return OutgoingReply(key="k", conversation_id="ig:c", conversation_native_id=f"{kind}:x", account="ig", kind=kind,
                         private=private, text=text, customer_handle="", answering=AnsweredMessage(answering),
                         meta=meta_, created_at=NOW - 20)


async def test_replies_publicly_privately_and_by_dm() -> None:
    api = instagram_api()
    api.route("POST", f"{V}/17900000000000001/replies", json_response({"id": "17900000000000009"}))
    api.route("POST", f"{V}/{ME}/messages", json_response({"recipient_id": BEA, "message_id": "aWdf_sent"}))
    ig = provider(api)
    public = await ig.send(reply("comment", "Two of them are!", comment_id="17900000000000001"))
    assert public.remote_id == "17900000000000009"
    await ig.send(reply("comment", "Sent you the list", private=True, comment_id="17900000000000001"))
    await ig.send(reply("dm", "Yes!", recipient=BEA))
    bodies = [json.loads(r.content) for r in api.requests("POST", f"{V}/{ME}/messages")]
    assert bodies == [{"recipient": {"comment_id": "17900000000000001"}, "message": {"text": "Sent you the list"},
                       "messaging_type": "RESPONSE"},
                      {"recipient": {"id": BEA}, "message": {"text": "Yes!"}, "messaging_type": "RESPONSE"}]
    with pytest.raises(PermanentError, match="Facebook-login variant"):
        await ig.send(reply("mention", "Thank you!", media_id="18100000000000001"))
    api.route("POST", f"{V}/{ME}/mentions", json_response({"id": "17900000000000010"}))
    fb_login = provider(api, login="facebook", page_id=PAGE)
    await fb_login.send(reply("mention", "Thank you!", media_id="18100000000000001"))
    assert json.loads(api.requests("POST", f"{V}/{ME}/mentions")[0].content) == {
        "media_id": "18100000000000001", "message": "Thank you!"}


async def test_an_uncertain_comment_answer_is_looked_up_among_the_replies() -> None:
    api = instagram_api()
    api.route("GET", f"{V}/17900000000000001/replies", json_response({"data": [
        {"id": "17900000000000011", "text": "Two of them are!", "from": {"id": ME, "username": "cornercoffee"},
         "timestamp": "2026-11-23T09:59:55+0000"}]}))
    ig = provider(api)
    found = await ig.lookup_sent(reply("comment", "Two of them are!", comment_id="17900000000000001"))
    assert found.remote_id == "17900000000000011"
    with pytest.raises(UnknownDelivery):
        await ig.lookup_sent(reply("comment", "Not what we wrote", comment_id="17900000000000001"))


def test_instagram_webhooks_bring_dms_comments_and_mentions() -> None:
    ig = provider(instagram_api())
    body = raw({"object": "instagram", "entry": [{"id": ME, "time": 1795427000, "messaging": [
        {"sender": {"id": BEA}, "recipient": {"id": ME}, "timestamp": 1795427000123,
         "message": {"mid": "aWdf_w1", "text": "Hello 👋"}},
        {"sender": {"id": ME}, "recipient": {"id": BEA}, "timestamp": 1795427001000,
         "message": {"mid": "aWdf_w2", "text": "Hi!", "is_echo": True}}],
        "changes": [
            {"field": "comments", "value": {"from": {"id": BEA, "username": "bea.bakes"},
                                            "media": {"id": "18000000000000001", "media_product_type": "FEED"},
                                            "id": "17900000000000020", "text": "Open tomorrow?"}},
            {"field": "comments", "value": {"from": {"id": BEA, "username": "bea.bakes"},
                                            "media": {"id": "18000000000000001"}, "id": "17900000000000021",
                                            "parent_id": "17900000000000020", "text": "at 8?"}},
            {"field": "mentions", "value": {"media_id": "18200000000000001", "comment_id": "17900000000000030"}},
            {"field": "comments", "value": {"id": None, "text": 5}}]}]})
    ig.verify_push(signed(body), body)
    [result] = ig.parse_push(body, {})
    got = {m.native_id: m for m in result.messages}
    assert got["aWdf_w1"].text == "Hello 👋" and got["aWdf_w2"].direction == "out"
    assert got["17900000000000021"].conversation_native_id == "comment:17900000000000020"
    mention = got["17900000000000030"]
    assert mention.kind == "mention" and "media 18200000000000001" in mention.text
    assert mention.meta["conversation"] == {"media_id": "18200000000000001", "comment_id": "17900000000000030"}
    assert [r[1] for r in result.rejected] == ["id missing or not a valid string"]
