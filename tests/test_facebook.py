"""A Facebook Page for real: Messenger, comments on its posts and recommendations, fetched from the
Graph API and pushed by webhooks, answered publicly, privately or with the human-agent tag, looked
up before an uncertain send is tried again, and paced by Meta's usage headers.

The Graph API is an ``httpx.MockTransport`` answering with payloads shaped as Meta documents them
(Graph API v26.0 reference: Page conversations, messages, feed, comments, ratings; the Messenger
Platform's webhook events). Real SQLite workspaces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_fakes import FakeApi, json_response
from meta_support import APP_SECRET, V, graph, graph_error, meta_secrets, raw, signed
from replydesk import push
from replydesk.config import Config
from replydesk.model import AnsweredMessage, OutgoingReply
from replydesk.providers import meta
from replydesk.providers.base import AuthError, PermanentError, RateLimited, TransientError, UnknownDelivery
from replydesk.providers.facebook import FacebookOptions, FacebookProvider
from replydesk.storage import accounts, outbox, queries, reply_windows
from replydesk.windows import HUMAN_AGENT
from replydesk.workspace import Workspace
from support import Clock

PAGE = "100000000000001"
ANN = "6000000000000001"
NOW = 1795428000.0  # 2026-11-23T10:00:00Z
T = {m: f"2026-11-23T09:{m:02d}:00+0000" for m in range(60)}  # Graph's time format


def person(pid: str, name: str) -> dict[str, str]:
    return {"name": name, "email": f"{pid}@facebook.com", "id": pid}


def conversations(*convs: dict[str, Any], after: str | None = None) -> httpx.Response:
    paging: dict[str, Any] = {"cursors": {"before": "QVFIUb4", "after": after or "QVFIUaf"}}
    if after:
        paging["next"] = f"https://graph.facebook.com/{meta.GRAPH_VERSION}/{PAGE}/conversations?after={after}"
    return json_response({"data": list(convs), "paging": paging})


def conversation(cid: str, updated: str, customer: str = ANN, name: str = "Ann Customer") -> dict[str, Any]:
    return {"id": cid, "updated_time": updated,
            "participants": {"data": [person(customer, name), person(PAGE, "Corner Coffee")]}}


def message(mid: str, text: str, sender: dict[str, str], at: str, **extra: Any) -> dict[str, Any]:
    return {"id": mid, "message": text, "from": sender, "created_time": at,
            "to": {"data": [person(PAGE, "Corner Coffee")]}, **extra}


def page_api() -> FakeApi:
    api = FakeApi()
    api.route("GET", f"{V}/{PAGE}/conversations", conversations(conversation("t_1", T[50])))
    api.route("GET", f"{V}/t_1/messages", json_response({"data": [
        message("m_3", "Thanks!", person(PAGE, "Corner Coffee"), T[49]),
        message("m_2", "", person(ANN, "Ann Customer"), T[48],
                attachments={"data": [{"mime_type": "image/jpeg", "name": "receipt.jpg",
                                       "image_data": {"url": "https://scontent.example/1.jpg"}}]}),
        message("m_1", "Are you open on Sunday?", person(ANN, "Ann Customer"), T[47])], "paging": {}}))
    api.route("GET", f"{V}/{PAGE}/feed", json_response({"data": [
        {"id": f"{PAGE}_200", "message": "Our autumn menu is here!\nPumpkin everything.", "created_time": T[0],
         "updated_time": T[45]},
        {"id": f"{PAGE}_100", "message": "Old post", "created_time": "2026-10-01T08:00:00+0000",
         "updated_time": "2026-10-01T08:00:00+0000"}]}))
    api.route("GET", f"{V}/{PAGE}_200/comments", json_response({"data": [
        {"id": "200_302", "message": "Yes, oat and almond.", "from": {"id": PAGE, "name": "Corner Coffee"},
         "created_time": T[44], "parent": {"id": "200_301"}},
        {"id": "200_301", "message": "Do you have oat milk?", "from": {"id": "6000000000000002", "name": "Ben"},
         "created_time": T[43]},
        {"id": "200_300", "message": "Looks great", "created_time": T[42]}], "paging": {}}))
    api.route("GET", f"{V}/{PAGE}_100/comments", json_response({"data": []}))
    api.route("GET", f"{V}/{PAGE}/ratings", json_response({"data": [
        {"created_time": T[41], "recommendation_type": "negative", "review_text": "Waited 20 minutes.",
         "reviewer": {"id": "6000000000000003", "name": "Cleo"}, "open_graph_story": {"id": "9001"}},
        {"created_time": T[40], "recommendation_type": "positive", "review_text": "Best flat white in town",
         "open_graph_story": {"id": "9000"}}], "paging": {}}))
    return api


def provider(api: FakeApi, clock: Any = lambda: NOW, **options: Any) -> FacebookProvider:
    return FacebookProvider("fb", FacebookOptions(name="fb", page_id=PAGE, **options), lambda: "EAAG-page-token",
                            app_secret=lambda: APP_SECRET, transport=api.transport, clock=clock)


def by_stream(results: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in results:
        out.setdefault(r.stream, []).extend(r.messages)
    return out


async def test_messenger_comments_and_recommendations_are_fetched_as_meta_documents_them() -> None:
    api = page_api()
    results = await provider(api).fetch({})
    streams = by_stream(results)
    dms = {m.native_id: m for m in streams["messages"]}
    assert dms["m_1"].text == "Are you open on Sunday?" and dms["m_1"].direction == "in"
    assert dms["m_2"].text == "[image: receipt.jpg]"
    assert dms["m_3"].direction == "out"  # the Page answered from its inbox
    assert {m.conversation_native_id for m in dms.values()} == {f"dm:{ANN}"}  # one per customer
    assert dms["m_1"].contact.name == "Ann Customer" and dms["m_1"].contact.native_id == ANN
    comments = {m.native_id: m for m in streams["comments"]}
    assert comments["200_301"].conversation_native_id == comments["200_302"].conversation_native_id == "comment:200_301"
    assert comments["200_302"].direction == "out" and comments["200_302"].parent_native_id == "200_301"
    assert comments["200_301"].subject == "Our autumn menu is here!"  # the post, as context
    assert comments["200_300"].contact.name == "Facebook user"  # Facebook hid who wrote it
    assert not any(m.native_id.startswith("100_") for m in streams["comments"])
    reviews = {m.native_id: m for m in streams["recommendations"]}
    assert reviews["9001"].kind == "review" and reviews["9001"].subject == "Does not recommend your Page"
    assert reviews["9000"].subject == "Recommends your Page" and reviews["9000"].text == "Best flat white in town"
    last = {r.stream: r.cursor for r in results}  # each stream ends with the cursor that covers it all
    assert set(last) == {"messages", "comments", "recommendations"} and all(last.values())
    # every request carried the token in a header and an appsecret_proof, never the token in the URL
    for request in api.calls:
        assert request.headers["authorization"] == "Bearer EAAG-page-token"
        assert "EAAG" not in str(request.url) and request.url.params["appsecret_proof"]
        assert request.url.path.startswith(f"/{meta.GRAPH_VERSION}/")
    [listing] = api.requests("GET", f"{V}/{PAGE}/conversations")
    assert listing.url.params["platform"] == "messenger"
    [stream] = api.requests("GET", f"{V}/{PAGE}_200/comments")
    assert (stream.url.params["filter"], stream.url.params["order"]) == ("stream", "reverse_chronological")


async def test_the_messenger_walk_stops_at_the_watermark_and_resumes_without_a_hole() -> None:
    api = page_api()
    fb = provider(api)
    first = await fb.fetch({})
    cursor = [r.cursor for r in first if r.stream == "messages"][-1]
    assert cursor == {"updated": meta.graph_time(T[50])}
    newer = conversation("t_2", T[55], "6000000000000009", "Dee")
    older = conversation("t_1", T[50])
    pages = [conversations(newer, after="P2"), conversations(older)]
    api.route("GET", f"{V}/{PAGE}/conversations", lambda r: pages[1] if r.url.params.get("after") == "P2" else pages[0])
    api.route("GET", f"{V}/t_2/messages", json_response({"data": [
        message("m_9", "Hi!", person("6000000000000009", "Dee"), T[55])]}))
    again = await fb.fetch({"messages": cursor})
    messages = by_stream(again)["messages"]
    assert [m.native_id for m in messages] == ["m_9"]  # t_1 is at the watermark: not read again
    assert [r.cursor for r in again if r.stream == "messages"][-1] == {"updated": meta.graph_time(T[55])}
    # the second page fails: the first page is kept with the old watermark (resumes from the start)
    pages[1] = graph_error(2, "Service temporarily unavailable", status=500, is_transient=True)
    cut = [r for r in await fb.fetch({"messages": cursor}) if r.stream == "messages"]
    assert [m.native_id for r in cut for m in r.messages] == ["m_9"] and cut[-1].cursor == cursor


async def test_a_page_webhook_brings_messages_echoes_deliveries_and_comments() -> None:
    fb = provider(page_api())
    body = raw({"object": "page", "entry": [
        {"id": PAGE, "time": 1795427000000, "messaging": [
            {"sender": {"id": ANN}, "recipient": {"id": PAGE}, "timestamp": 1795427000000,
             "message": {"mid": "m_w1", "text": "Is the terrace open?", "reply_to": {"mid": "m_3"}}},
            {"sender": {"id": PAGE}, "recipient": {"id": ANN}, "timestamp": 1795427060000,
             "message": {"mid": "m_w2", "is_echo": True, "app_id": 1517776481860352, "text": "Yes, until 8"}},
            {"sender": {"id": ANN}, "recipient": {"id": PAGE}, "timestamp": 1795427070000,
             "delivery": {"mids": ["m_w2"], "watermark": 1795427065000}},
            {"sender": {"id": ANN}, "recipient": {"id": PAGE}, "timestamp": 1795427080000,
             "message": {"mid": "m_w3", "attachments": [{"type": "image", "payload": {"url": "https://x.example/a"}}]}},
            {"sender": {"id": ANN}, "recipient": {"id": PAGE}, "timestamp": "garbage", "message": {"mid": "m_bad"}}],
         "changes": [
             {"field": "feed", "value": {"from": {"id": "6000000000000002", "name": "Ben"}, "item": "comment",
                                         "verb": "add", "comment_id": "200_500", "post_id": f"{PAGE}_200",
                                         "parent_id": f"{PAGE}_200", "message": "Gluten free options?",
                                         "created_time": 1795427100}},
             {"field": "feed", "value": {"item": "reaction", "verb": "add", "post_id": f"{PAGE}_200",
                                         "reaction_type": "like", "created_time": 1795427100}}]},
        {"id": "999", "time": 1795427000000, "messaging": []}]})
    fb.verify_push(signed(body), body)
    [result] = fb.parse_push(body, {})
    got = {m.native_id: m for m in result.messages}
    assert got["m_w1"].text == "Is the terrace open?" and got["m_w1"].parent_native_id == "m_3"
    assert got["m_w1"].conversation_native_id == f"dm:{ANN}"  # the same conversation polling finds
    assert got["m_w2"].direction == "out" and got["m_w2"].conversation_native_id == f"dm:{ANN}"
    assert got["m_w3"].text == "[image]"
    assert got["200_500"].kind == "comment" and got["200_500"].conversation_native_id == "comment:200_500"
    assert [(u.remote_id, u.state) for u in result.updates] == [("m_w2", "delivered")]
    assert dict(result.rejected) == {"m_bad": "timestamp is not a time",
                                     "entry 999": "for Page '999', not this account's"}
    assert fb.claims_push(body) and fb.push_key({}, body) == fb.push_key({}, json.dumps(json.loads(body)).encode())


def reply(kind: str, text: str, *, private: bool = False, send_as: str | None = None, **meta_: Any) -> OutgoingReply:
    answering = {"dm": "m_1", "comment": "200_301", "review": "9001"}[kind]
    native = {"dm": f"dm:{ANN}", "comment": "comment:200_301", "review": "review:9001"}[kind]
    return OutgoingReply(key="k1", conversation_id=f"fb:{native}", conversation_native_id=native, account="fb",
                         kind=kind, private=private, text=text, customer_handle="",
                         answering=AnsweredMessage(answering), meta=meta_, created_at=NOW - 30, send_as=send_as)


async def test_replies_go_where_facebook_takes_them() -> None:
    api = page_api()
    api.route("POST", f"{V}/{PAGE}/messages", json_response({"recipient_id": ANN, "message_id": "m_sent"}))
    api.route("POST", f"{V}/200_301/comments", json_response({"id": "200_999"}))
    api.route("POST", f"{V}/9001/comments", json_response({"id": "9001_1"}))
    fb = provider(api, human_agent_tag=True)
    assert (await fb.send(reply("dm", "See you Sunday", recipient=ANN))).remote_id == "m_sent"
    await fb.send(reply("dm", "Still there?", send_as=HUMAN_AGENT, recipient=ANN))
    assert (await fb.send(reply("comment", "Oat and almond!"))).remote_id == "200_999"
    await fb.send(reply("comment", "We sent you a message", private=True))
    assert (await fb.send(reply("review", "Sorry about the wait!", story_id="9001"))).remote_id == "9001_1"
    sends = [json.loads(r.content) for r in api.requests("POST", f"{V}/{PAGE}/messages")]
    assert sends == [
        {"recipient": {"id": ANN}, "message": {"text": "See you Sunday"}, "messaging_type": "RESPONSE"},
        {"recipient": {"id": ANN}, "message": {"text": "Still there?"}, "messaging_type": "MESSAGE_TAG",
         "tag": "HUMAN_AGENT"},
        {"recipient": {"comment_id": "200_301"}, "message": {"text": "We sent you a message"},
         "messaging_type": "RESPONSE"}]
    assert json.loads(api.requests("POST", f"{V}/200_301/comments")[0].content) == {"message": "Oat and almond!"}
    without_tag = provider(api)
    with pytest.raises(PermanentError, match="no human-agent tag"):
        await without_tag.send(reply("dm", "late", send_as=HUMAN_AGENT, recipient=ANN))


async def test_an_uncertain_send_is_looked_up_before_it_is_tried_again(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer to a DM is lost: before sending again the engine looks through the conversation's
    latest messages; found, it is settled with Meta's id and never posted twice."""
    meta_secrets(monkeypatch, "fb")
    api = graph(monkeypatch)
    for (method, path), answer in page_api().routes.items():
        api.route(method, path, answer)
    clock = Clock(NOW)
    ws = Workspace(tmp_path, Config(accounts=[FacebookOptions(name="fb", page_id=PAGE, comments=False,
                                                              recommendations=False)]), clock=clock)
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        run = engine.accounts["fb"]
        run.provider.clock = run.provider.gate.clock = clock
        clock.now = meta.graph_time(T[50]) + 60
        await engine.run_once()
        conv = f"fb:dm:{ANN}"
        assert [m.text for m in queries.thread(db, conv).messages][:1] == ["Are you open on Sunday?"]
        api.route("POST", f"{V}/{PAGE}/messages", httpx.ReadTimeout("the answer was lost"))
        key = outbox.queue_reply(db, conv, "Yes, 9 to 5.")
        await engine.drain(run)
        assert outbox.get(db, key).attempts == 1 and outbox.get(db, key).state == "queued"
        api.route("GET", f"{V}/{PAGE}/conversations", lambda r: conversations(conversation("t_1", T[59]))
                  if r.url.params.get("user_id") == ANN else conversations())
        api.route("GET", f"{V}/t_1/messages", json_response({"data": [
            message("m_found", "Yes, 9 to 5.", person(PAGE, "Corner Coffee"), "2026-11-23T09:51:30+0000")]}))
        clock.advance(30)
        await engine.drain(run)
        item = outbox.get(db, key)
        assert (item.state, item.remote_id) == ("sent", "m_found")
        assert len(api.requests("POST", f"{V}/{PAGE}/messages")) == 1  # never posted a second time
        # not found: unknown, for the user to decide (Meta may show it a moment later)
        api.route("POST", f"{V}/{PAGE}/messages", httpx.ReadTimeout("lost again"))
        key2 = outbox.queue_reply(db, conv, "Anything else?")
        await engine.drain(run)
        clock.advance(30)
        await engine.drain(run)
        assert outbox.get(db, key2).state == "unknown"
        assert "idempotency key" in outbox.get(db, key2).last_error
    finally:
        db.close()


async def test_meta_usage_headers_slow_polling_before_meta_throttles() -> None:
    api = page_api()
    fb = provider(api, comments=False, recommendations=False)
    assert fb.poll_interval == 60.0
    busy = json.dumps({"call_count": 81, "total_cputime": 12, "total_time": 30})
    original = api.routes[("GET", f"{V}/{PAGE}/conversations")]
    api.route("GET", f"{V}/{PAGE}/conversations", lambda r: httpx.Response(
        200, headers={"content-type": "application/json", "x-app-usage": busy}, content=original.content))
    await fb.fetch({})
    assert fb.pressure == 81 and fb.poll_interval == 240.0  # four times slower from 75 %
    assert "Graph API usage 81%" in fb.status_note()
    buc = json.dumps({PAGE: [{"type": "pages", "call_count": 97, "total_cputime": 20, "total_time": 25,
                              "estimated_time_to_regain_access": 12}]})
    api.route("GET", f"{V}/{PAGE}/conversations", lambda r: httpx.Response(
        200, headers={"content-type": "application/json", "x-business-use-case-usage": buc}, content=original.content))
    with pytest.raises(RateLimited) as waiting:  # at 95 % it stops calling at once, until Meta's estimate
        await fb.fetch({})
    assert waiting.value.reset_at == NOW + 12 * 60
    calls = len(api.calls)
    with pytest.raises(RateLimited):
        await fb.fetch({})
    assert len(api.calls) == calls  # not one request spent while it waits


@pytest.mark.parametrize(("answer", "error", "words"), [
    (graph_error(4, "Application request limit reached"), RateLimited, "until"),
    (graph_error(32, "Page request limit reached"), RateLimited, "until"),
    (graph_error(613, "Calls to this api have exceeded the rate limit."), RateLimited, "until"),
    (graph_error(80001, "There have been too many calls to this Page account."), RateLimited, "until"),
    (graph_error(190, "Error validating access token: The session has been invalidated.", subcode=460, status=401),
     AuthError, "re-login needed"),
    (graph_error(190, "Error validating access token: Session has expired.", subcode=463), AuthError, "re-login"),
    (graph_error(2, "An unexpected error has occurred. Please retry your request later.", status=500,
                 is_transient=True), TransientError, "trying again"),
    (graph_error(100, "(#100) Param recipient must be a valid recipient"), PermanentError, "refused"),
    (graph_error(10, "This message is sent outside of allowed window.", subcode=2018278), PermanentError,
     "outside the platform's reply window"),
    (httpx.Response(502, content=b"<html>Bad gateway</html>"), TransientError, "HTTP 502"),
])
async def test_graph_errors_become_the_engines_errors(answer: Any, error: type, words: str) -> None:
    api = page_api()
    api.route("POST", f"{V}/{PAGE}/messages", answer)
    with pytest.raises(error, match=words) as raised:
        await provider(api).send(reply("dm", "hello", recipient=ANN))
    assert "EAAG" not in str(raised.value) and APP_SECRET not in str(raised.value)


async def test_a_permission_missing_for_one_stream_does_not_stop_the_others() -> None:
    api = page_api()
    api.route("GET", f"{V}/{PAGE}/ratings", graph_error(10, "(#10) This endpoint requires the "
                                                            "'pages_read_user_content' permission", status=403))
    fb = provider(api)
    streams = by_stream(await fb.fetch({}))
    assert "recommendations" not in streams and streams["messages"] and streams["comments"]
    assert "recommendations: facebook: (#10) This endpoint requires" in fb.status_note()
    api.route("GET", f"{V}/{PAGE}/conversations", graph_error(190, "Error validating access token", status=400))
    with pytest.raises(AuthError):  # a dead token stops the account, whatever came before
        await fb.fetch({})


async def test_a_dm_after_24_hours_needs_the_human_agent_feature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the option, 24 hours then nothing; with it, the human-agent tag up to 7 days (the
    account's facts, stored by the engine, are what storage and the composer check)."""
    meta_secrets(monkeypatch, "fb", "fb-tag")
    api = graph(monkeypatch)
    for (method, path), answer in page_api().routes.items():
        api.route(method, path, answer)
    clock = Clock(meta.graph_time(T[50]) + 30 * 3600)
    config = Config(accounts=[FacebookOptions(name="fb", page_id=PAGE, comments=False, recommendations=False),
                              FacebookOptions(name="fb-tag", page_id=PAGE, comments=False, recommendations=False,
                                              human_agent_tag=True)])
    ws = Workspace(tmp_path, config, clock=clock)
    db = ws.open_db()
    try:
        await ws.engine(db).run_once()
        plain = reply_windows.verdict(db, f"fb:dm:{ANN}", clock.now, private=True)
        tagged = reply_windows.verdict(db, f"fb-tag:dm:{ANN}", clock.now, private=True)
        assert not plain.allowed and plain.choices == () and "until the customer writes again" in plain.reason
        assert not tagged.allowed and [c for c, _ in tagged.choices] == [HUMAN_AGENT]
        assert outbox.queue_reply(db, f"fb-tag:dm:{ANN}", "Sorry for the wait", send_as=HUMAN_AGENT)
        with pytest.raises(outbox.OutsideReplyWindow):
            outbox.queue_reply(db, f"fb:dm:{ANN}", "Sorry for the wait", send_as=HUMAN_AGENT)
        assert accounts.status_of(db, "fb").state == "ok"
    finally:
        db.close()


def test_a_page_body_is_verified_with_the_app_secret() -> None:
    fb = provider(page_api())
    body = raw({"object": "page", "entry": []})
    with pytest.raises(Exception, match="does not match"):
        fb.verify_push(signed(body, "someone-else"), body)
    assert push.verified(fb, signed(body), body)[0].startswith("sha256:")  # no ids: the body's own hash


async def test_lookups_of_a_public_comment_answer_and_of_a_private_reply() -> None:
    api = page_api()
    api.route("GET", f"{V}/200_301/comments", json_response({"data": [
        {"id": "200_777", "message": "Oat and almond!", "from": {"id": PAGE}, "created_time": "2026-11-23T09:59:50+0000"}]}))
    fb = provider(api)
    found = await fb.lookup_sent(reply("comment", "Oat and almond!"))
    assert found.remote_id == "200_777"
    with pytest.raises(UnknownDelivery, match="private reply"):
        await fb.lookup_sent(reply("comment", "psst", private=True))
    with pytest.raises(UnknownDelivery, match="not among the latest"):
        await fb.lookup_sent(reply("comment", "something else"))


async def test_recommendations_sit_in_the_reviews_view_and_are_answered_as_comments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user opens the Reviews view (kind:review, as Google's reviews): the Page's recommendations
    are there with what they say, and an answer goes out through the outbox as a comment on the
    recommendation's story."""
    from replydesk.storage.search import search

    meta_secrets(monkeypatch, "fb")
    api = graph(monkeypatch)
    for (method, path), answer in page_api().routes.items():
        api.route(method, path, answer)
    api.route("POST", f"{V}/9001/comments", json_response({"id": "9001_77"}))
    clock = Clock(meta.graph_time(T[50]) + 60)
    ws = Workspace(tmp_path, Config(accounts=[FacebookOptions(name="fb", page_id=PAGE)]), clock=clock)
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        run = engine.accounts["fb"]
        run.provider.clock = run.provider.gate.clock = clock
        await engine.run_once()
        view = next(v for v in ws.config.ui.views if v.name == "Reviews")
        _, reviews_filter = search(db, view.query)
        rows = queries.inbox_page(db, reviews_filter, 0, 50)
        assert {(r.platform, r.subject) for r in rows} == {("facebook", "Does not recommend your Page"),
                                                           ("facebook", "Recommends your Page")}
        assert all(r.kind == "review" for r in rows)
        cleo = next(r for r in rows if r.subject.startswith("Does not"))
        assert cleo.customer == "Cleo"
        assert [m.text for m in queries.thread(db, cleo.id).messages] == ["Waited 20 minutes."]
        key = outbox.queue_reply(db, cleo.id, "Sorry about the wait, Cleo!")
        await engine.drain(run)
        assert (outbox.get(db, key).state, outbox.get(db, key).remote_id) == ("sent", "9001_77")
        assert json.loads(api.requests("POST", f"{V}/9001/comments")[0].content) == {
            "message": "Sorry about the wait, Cleo!"}
    finally:
        db.close()
