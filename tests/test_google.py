"""Google Business Profile reviews through httpx.MockTransport, shaped as the v4 reference documents
them (``google_fake``: no public recordings of these APIs exist), on real SQLite workspaces with the
suite's fixed clock: paging to the watermark, batchGetReviews, an edited review, a rating-only review,
an anonymous reviewer, the reply upsert retried three times leaving one reply, policy rejections
(at once and later), edit and delete of our reply through the outbox, token refresh, locations."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from google_fake import HARBOUR, MAIN_ST, TITLES, FakeGoogle, error
from replydesk import secrets
from replydesk.cli import main
from replydesk.config import Config, SyncSettings
from replydesk.providers import google, oauth
from replydesk.providers.google import GoogleOptions, GoogleProvider
from replydesk.slaconfig import SlaSettings
from replydesk.storage import actions, ingest, outbox, queries
from replydesk.workspace import Workspace
from support import Clock

DAY = 86400.0


@pytest.fixture
def fake(clock: Clock) -> FakeGoogle:
    return FakeGoogle(clock)


@pytest.fixture
def logged_in(file_keyring, clock: Clock) -> oauth.TokenSet:
    """``replydesk login shop-google`` done: the client secret and a token set in the keyring."""
    secrets.store("shop-google" + oauth.CLIENT_SECRET_SUFFIX, "GOCSPX-client-secret")
    tokens = oauth.TokenSet("access-1", "refresh-1", clock.now + 3600, clock.now)
    oauth.TokenStore("shop-google").save(tokens)
    return tokens


def options(**kw: Any) -> GoogleOptions:
    return GoogleOptions(name="shop-google", client_id="1234-abc.apps.googleusercontent.com", **kw)


def workspace(tmp_path: Path, clock: Clock, sla: SlaSettings | None = None, **kw: Any) -> Workspace:
    config = Config(accounts=[options(**kw)], sync=SyncSettings(retry_base=1.0, retry_max=5.0, send_retries=5),
                    **({"sla": sla} if sla is not None else {}))
    return Workspace(tmp_path / "ws", config, clock=clock)


def provider(fake: FakeGoogle, clock: Clock, **kw: Any) -> GoogleProvider:
    return GoogleProvider("shop-google", options(**kw), lambda: None, transport=fake.transport, clock=clock)


def wire(engine: Any, fake: FakeGoogle, clock: Clock) -> GoogleProvider:
    run = engine.accounts["shop-google"]
    run.provider = GoogleProvider("shop-google", run.provider.options, lambda: None, transport=fake.transport,
                                  clock=clock)
    return run.provider


def sync(db: Any, p: GoogleProvider) -> ingest.IngestStats:
    return ingest.ingest(db, "shop-google", asyncio.run(p.fetch(ingest.all_cursors(db, "shop-google"))))


def conv_id(name: str) -> str:
    return f"shop-google:{name}"


# ---- reading reviews -----------------------------------------------------------------------------


def test_the_first_sync_reads_back_to_the_backfill_and_later_ones_stop_at_the_watermark(
        tmp_path, clock, fake, logged_in) -> None:
    """Newest first, 50 a page, down to 30 days ago; then each poll reads only down to the watermark."""
    for i in range(120):  # one review every 12 hours: 60 days
        fake.review(MAIN_ST, f"r{i:03d}", 1 + i % 5, f"review {i}", written=clock.now - i * DAY / 2 - 60)
    db = workspace(tmp_path, clock, locations=[MAIN_ST]).open_db()
    p = provider(fake, clock, locations=[MAIN_ST])
    sync(db, p)
    stored = {r[0] for r in db.conn.execute("SELECT native_id FROM conversations")}
    assert stored == {f"{MAIN_ST}/reviews/r{i:03d}" for i in range(60)}  # the last 30 days
    assert [r.url.params.get("pageToken") for r in fake.requests("GET", "/reviews$")] == [None, "page-50"]
    assert all(r.url.params["orderBy"] == "updateTime desc" for r in fake.requests("GET", "/reviews$"))
    clock.advance(3600)
    for i in range(3):
        fake.review(MAIN_ST, f"new{i}", 5, f"lovely {i}", written=clock.now - 60 * i)
    before = len(fake.requests("GET", "/reviews$"))
    stats = sync(db, p)
    assert (stats.new_conversations, stats.new_messages) == (3, 3)
    assert len(fake.requests("GET", "/reviews$")) == before + 1  # page 1 reaches the watermark
    assert sync(db, p).new_messages == 0  # and nothing twice


def test_an_interrupted_walk_resumes_where_it_stopped(tmp_path, clock, fake, logged_in) -> None:
    for i in range(20):
        fake.review(MAIN_ST, f"old{i:02d}", 4, f"old {i}", written=clock.now - DAY - i * 60)
    db = workspace(tmp_path, clock).open_db()
    p = provider(fake, clock, locations=[MAIN_ST])
    sync(db, p)
    clock.advance(3600)
    for i in range(120):  # a busy day: three pages of new reviews
        fake.review(MAIN_ST, f"n{i:03d}", 5, f"new {i}", written=clock.now - i * 10)
    fake.fail_pages["page-100"] = error(503, "UNAVAILABLE", "The service is currently unavailable.")
    stats = sync(db, p)  # pages 1 and 2 kept with where the walk is; page 3 failed
    assert stats.new_messages == 100
    cursor = ingest.get_cursor(db, "shop-google", f"reviews:{MAIN_ST}")
    assert cursor["walk"]["token"] == "page-100" and cursor["watermark"] < clock.now - DAY + 60
    del fake.fail_pages["page-100"]
    stats = sync(db, p)
    assert fake.requests("GET", "/reviews$")[-1].url.params["pageToken"] == "page-100"  # resumed there
    assert stats.new_messages == 20  # the rest of the day, nothing read twice
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 140
    assert "walk" not in ingest.get_cursor(db, "shop-google", f"reviews:{MAIN_ST}")


def test_several_locations_are_read_together_and_labelled_with_their_location(tmp_path, clock, fake,
                                                                               logged_in) -> None:
    fake.review(MAIN_ST, "a1", 2, "The espresso was cold.", written=clock.now - 3600)
    fake.review(HARBOUR, "b1", 5, "Best view in town", written=clock.now - 1800)
    db = workspace(tmp_path, clock).open_db()
    sync(db, provider(fake, clock))  # no locations in the config: every one the login manages
    (batch,) = fake.requests("POST", "batchGetReviews$")
    assert json.loads(batch.content)["locationNames"] == sorted([MAIN_ST, HARBOUR])
    assert not fake.requests("GET", "/reviews$")
    rows = {r.id: r for r in queries.inbox_page(db, queries.InboxFilter(), 0, 10)}
    main_st, harbour = rows[conv_id(f"{MAIN_ST}/reviews/a1")], rows[conv_id(f"{HARBOUR}/reviews/b1")]
    assert (main_st.subject, main_st.rating, main_st.kind) == (TITLES[MAIN_ST], 2, "review")
    assert (harbour.subject, harbour.rating) == (TITLES[HARBOUR], 5)
    assert queries.thread(db, main_st.id).meta["location"] == MAIN_ST


def test_an_edited_review_is_a_new_entry_that_reopens_the_conversation(tmp_path, clock, fake, logged_in) -> None:
    fake.review(MAIN_ST, "e1", 1, "Waited 40 minutes for a latte.", written=clock.now - 7200)
    db = workspace(tmp_path, clock).open_db()
    p = provider(fake, clock, locations=[MAIN_ST])
    sync(db, p)
    conv = conv_id(f"{MAIN_ST}/reviews/e1")
    actions.resolve(db, [conv])
    clock.advance(3600)
    sync(db, p)  # nothing changed on Google: nothing new, still resolved
    assert queries.get_row(db, conv).status == "resolved"
    fake.edit(MAIN_ST, "e1", 4, "Update: the manager called me and made it right.", clock.now - 60)
    assert sync(db, p).new_messages == 1
    thread = queries.thread(db, conv)
    versions = [(m.text, m.meta["rating"]) for m in thread.messages if m.direction == "in"]
    assert versions == [("Waited 40 minutes for a latte.", 1), ("Update: the manager called me and made it right.", 4)]
    row = queries.get_row(db, conv)
    assert (row.status, row.rating, row.needs_reply) == ("open", 4, True)
    kinds = [r[0] for r in db.conn.execute("SELECT data FROM events WHERE conversation_id=? AND kind='status'",
                                           (conv,))]
    assert json.loads(kinds[-1]) == {"status": "open", "from": "resolved"}


def test_rating_only_reviews_and_anonymous_reviewers_are_conversations_of_their_own(tmp_path, clock, fake,
                                                                                    logged_in) -> None:
    fake.review(MAIN_ST, "q1", 5, None, written=clock.now - 600, anonymous=True)
    fake.review(MAIN_ST, "q2", 3, None, written=clock.now - 500, anonymous=True)
    fake.review(MAIN_ST, "q3", 4, "", written=clock.now - 400, name="   ")  # no words, no name
    db = workspace(tmp_path, clock).open_db()
    sync(db, provider(fake, clock, locations=[MAIN_ST]))
    rows = {r.id.rsplit("/", 1)[1]: r for r in queries.inbox_page(db, queries.InboxFilter(), 0, 10)}
    assert {k: (r.rating, r.snippet) for k, r in rows.items()} == {"q1": (5, ""), "q2": (3, ""), "q3": (4, "")}
    names = {k: r.customer for k, r in rows.items()}
    assert names["q1"].startswith("Anonymous reviewer") and len(set(names.values())) == 3
    # two anonymous people are not one customer: neither lists the other's review as theirs
    assert queries.thread(db, rows["q1"].id).history == []


def test_low_ratings_raise_the_priority_as_the_sla_section_says(tmp_path, clock, fake, logged_in) -> None:
    for rid, stars in (("p1", 1), ("p2", 2), ("p3", 3), ("p5", 5)):
        fake.review(MAIN_ST, rid, stars, f"{stars} stars", written=clock.now - 600)
    db = workspace(tmp_path, clock).open_db()
    sync(db, provider(fake, clock, locations=[MAIN_ST]))
    priority = {r.id[-2:]: r.priority for r in queries.inbox_page(db, queries.InboxFilter(), 0, 10)}
    assert priority == {"p1": "high", "p2": "high", "p3": "normal", "p5": "normal"}
    # configurable: 3 stars urgent, and a policy for them; the defaults off
    sla = SlaSettings.model_validate({"review_priority": {3: "urgent"}, "policies": [
        {"name": "urgent-reviews", "match": {"kind": "review", "priority": "urgent"}, "first_reply": {"target": "2h"}},
        {"name": "reviews", "match": {"kind": "review"}, "first_reply": {"target": "24h"}}]})
    db2 = workspace(tmp_path / "b", clock, sla=sla).open_db()
    sync(db2, provider(fake, clock, locations=[MAIN_ST]))
    rows = {r.id[-2:]: r for r in queries.inbox_page(db2, queries.InboxFilter(), 0, 10)}
    assert {k: r.priority for k, r in rows.items()} == {"p1": "normal", "p2": "normal", "p3": "urgent", "p5": "normal"}
    assert rows["p3"].sla_due_at == clock.now - 600 + 2 * 3600 and rows["p1"].sla_due_at == clock.now - 600 + DAY


def test_a_location_whose_reviews_are_refused_does_not_stop_the_others(tmp_path, clock, fake, logged_in) -> None:
    fake.review(HARBOUR, "h1", 5, "great", written=clock.now - 60)
    fake.refuse[f"/v4/{MAIN_ST}/reviews"] = error(
        400, "FAILED_PRECONDITION", "Precondition check failed.",
        [{"@type": "type.googleapis.com/google.mybusiness.v4.ValidationError",
          "errorDetails": [{"code": 9, "message": "The location is not verified."}]}])
    db = workspace(tmp_path, clock).open_db()
    p = provider(fake, clock, locations=[MAIN_ST, HARBOUR], batch=False)
    sync(db, p)
    assert db.conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
    assert p.status_note() == f"reviews unavailable: {TITLES[MAIN_ST]}"
    reason = db.conn.execute("SELECT reason FROM rejected_items").fetchone()[0]
    assert "The location is not verified." in reason


# ---- replying ------------------------------------------------------------------------------------


def engine_with_review(tmp_path: Path, clock: Clock, fake: FakeGoogle, **kw: Any) -> tuple[Any, Any, str]:
    fake.review(MAIN_ST, "x1", 2, "My cappuccino was lukewarm.", written=clock.now - 3600)
    ws = workspace(tmp_path, clock, locations=[MAIN_ST], **kw)
    db = ws.open_db()
    engine = ws.engine(db)
    wire(engine, fake, clock)
    asyncio.run(engine.run_once())
    return engine, db, conv_id(f"{MAIN_ST}/reviews/x1")


def test_a_reply_retried_three_times_leaves_one_reply(tmp_path, clock, fake, logged_in) -> None:
    """Two answers lost on the way back (the reply had landed each time), the third arrives: PUT is an
    upsert, so Google holds one reply and the thread one message of ours."""
    engine, db, conv = engine_with_review(tmp_path, clock, fake)
    fake.after_put += [httpx.ReadTimeout("timed out"), httpx.ReadTimeout("timed out")]
    key = outbox.queue_reply(db, conv, "Sorry about that, Maria — your next one is on us.")
    for _ in range(3):
        asyncio.run(engine.run_once())
        clock.advance(30)
    assert len(fake.requests("PUT", "/reply$")) == 3
    review = fake.find(f"{MAIN_ST}/reviews/x1")
    assert review["reviewReply"]["comment"] == "Sorry about that, Maria — your next one is on us."
    item = outbox.get(db, key)
    assert (item.state, item.remote_id, item.attempts) == ("sent", f"{MAIN_ST}/reviews/x1/reply", 3)
    asyncio.run(engine.run_once())  # the next poll brings the reply back from Google: the same message
    ours = [m for m in queries.thread(db, conv).messages if m.direction == "out"]
    assert [(m.text, m.state) for m in ours] == [("Sorry about that, Maria — your next one is on us.", "sent")]
    assert not queries.get_row(db, conv).needs_reply


def test_a_reply_google_rejects_shows_the_policy_reason(tmp_path, clock, fake, logged_in) -> None:
    engine, db, conv = engine_with_review(tmp_path, clock, fake)
    fake.put_state.append({"reviewReplyState": "REJECTED", "policyViolation": "OFF_TOPIC"})
    key = outbox.queue_reply(db, conv, "Visit our other shop at http://spam.example!")
    asyncio.run(engine.run_once())
    item = outbox.get(db, key)
    assert item.state == "failed" and "Google rejected the reply (off topic)" in item.last_error
    (ours,) = [m for m in queries.thread(db, conv).messages if m.direction == "out"]
    assert ours.state == "failed" and "off topic" in ours.error
    # a refusal of the request itself: Google's own words
    fake.refuse[f"/v4/{MAIN_ST}/reviews/x1/reply"] = error(
        400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
        [{"@type": "type.googleapis.com/google.mybusiness.v4.ValidationError",
          "errorDetails": [{"code": 3, "field": "comment", "message": "Reply contains a link which is not allowed."}]}])
    outbox.retry(db, key)
    asyncio.run(engine.run_once())
    assert "Reply contains a link which is not allowed." in outbox.get(db, key).last_error


def test_a_reply_rejected_later_is_marked_not_delivered_and_a_new_one_takes_its_place(
        tmp_path, clock, fake, logged_in) -> None:
    engine, db, conv = engine_with_review(tmp_path, clock, fake)
    fake.put_state.append({"reviewReplyState": "PENDING"})  # under moderation: accepted for now
    key = outbox.queue_reply(db, conv, "Come back, first coffee on us!")
    asyncio.run(engine.run_once())
    assert outbox.get(db, key).state == "sent"
    reply = fake.find(f"{MAIN_ST}/reviews/x1")["reviewReply"]
    reply.update({"reviewReplyState": "REJECTED", "policyViolation": "CONFLICT_OF_INTEREST"})
    clock.advance(300)
    asyncio.run(engine.run_once())  # the poll sees Google's moderation refuse it
    thread = queries.thread(db, conv)
    (ours,) = [m for m in thread.messages if m.direction == "out"]
    assert ours.state == "failed" and ours.error == "not delivered: Google rejected the reply (conflict of interest)"
    (notice,) = [m for m in thread.messages if m.automatic]
    assert notice.author == "Google" and "conflict of interest" in notice.text
    asyncio.run(engine.run_once())
    assert len(queries.thread(db, conv).messages) == len(thread.messages)  # said once
    # a new reply takes its place on Google and in the thread; the refused one stays, marked
    new = outbox.queue_reply(db, conv, "Thank you for the feedback, we have talked to the team.")
    assert outbox.get(db, new).action == "reply"  # nothing of ours is up: a reply, not an edit
    asyncio.run(engine.run_once())
    assert outbox.get(db, new).state == "sent"
    ours = [(m.text, m.state) for m in queries.thread(db, conv).messages if m.direction == "out"]
    assert ours == [("Come back, first coffee on us!", "failed"),
                    ("Thank you for the feedback, we have talked to the team.", "sent")]


def test_our_reply_is_edited_and_deleted_through_the_outbox(tmp_path, clock, fake, logged_in) -> None:
    engine, db, conv = engine_with_review(tmp_path, clock, fake)
    key = outbox.queue_reply(db, conv, "Thanks for letting us know.")
    asyncio.run(engine.run_once())
    sent = outbox.get(db, key)
    # a second reply where ours is up edits it (Google keeps one reply per review)
    edit = outbox.queue_reply(db, conv, "Thanks for letting us know — we have fixed the machine.")
    assert outbox.get(db, edit).action == "edit_reply"
    assert outbox.get(db, edit).payload["remote_id"] == sent.remote_id
    asyncio.run(engine.run_once())
    assert fake.find(f"{MAIN_ST}/reviews/x1")["reviewReply"]["comment"] == \
        "Thanks for letting us know — we have fixed the machine."
    ours = [m for m in queries.thread(db, conv).messages if m.direction == "out"]
    assert [(m.text, bool(m.meta.get("edited_at"))) for m in ours] == [
        ("Thanks for letting us know — we have fixed the machine.", True)]
    delete = outbox.queue_action(db, conv, "delete_reply")
    asyncio.run(engine.run_once())
    assert outbox.get(db, delete).state == "sent"
    assert "reviewReply" not in fake.find(f"{MAIN_ST}/reviews/x1")
    assert [m.state for m in queries.thread(db, conv).messages if m.direction == "out"] == ["deleted"]
    # deleting again (Google says 404: already gone) is done, not failed
    fake.refuse[f"/v4/{MAIN_ST}/reviews/x1/reply"] = error(404, "NOT_FOUND", "Requested entity was not found.")
    p = engine.accounts["shop-google"].provider
    action = engine._action(outbox.get(db, delete))
    assert asyncio.run(p.perform(action)).remote_id == f"{MAIN_ST}/reviews/x1/reply"


def test_a_reply_longer_than_google_allows_fails_before_any_request(tmp_path, clock, fake, logged_in) -> None:
    engine, db, conv = engine_with_review(tmp_path, clock, fake)
    key = outbox.queue_reply(db, conv, "é" * 2049)  # 4098 bytes
    asyncio.run(engine.run_once())
    assert outbox.get(db, key).state == "failed" and "4096 bytes" in outbox.get(db, key).last_error
    assert not fake.requests("PUT", "/reply$")


# ---- login and tokens ----------------------------------------------------------------------------


def test_an_expiring_token_is_refreshed_and_a_refused_one_refreshed_once(tmp_path, clock, fake, logged_in) -> None:
    fake.review(MAIN_ST, "t1", 4, "nice", written=clock.now - 60)
    db = workspace(tmp_path, clock).open_db()
    p = provider(fake, clock, locations=[MAIN_ST])
    clock.advance(3600 - 120)  # inside the refresh margin
    sync(db, p)
    (refresh,) = fake.requests("POST", "^/token$")
    form = dict(x.split("=", 1) for x in refresh.content.decode().split("&"))
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "refresh-1"
    assert refresh.headers["authorization"].startswith("Basic ")  # the Desktop client's id and secret
    assert fake.requests("GET", "/reviews$")[-1].headers["authorization"] == "Bearer access-2"
    stored = oauth.TokenStore("shop-google").load()
    assert (stored.access_token, stored.refresh_token) == ("access-2", "refresh-1")  # Google keeps the refresh token
    fake.tokens.discard("access-2")  # revoked early: a 401, one refresh, the request again
    clock.advance(60)
    sync(db, p)
    assert fake.refreshes == ["access-2", "access-3"]
    assert fake.requests("GET", "/reviews$")[-1].headers["authorization"] == "Bearer access-3"


def test_the_oauth_app_asks_for_offline_access_with_pkce() -> None:
    app = options().oauth_app()
    url = oauth.authorization_url(app, "http://127.0.0.1:5555/", "state-1", "challenge-1")
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    for part in ("scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fbusiness.manage", "access_type=offline",
                 "prompt=consent", "code_challenge_method=S256", "redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2F"):
        assert part in url
    assert app.redirect_path == "/" and app.token_url == "https://oauth2.googleapis.com/token"


# ---- locations -----------------------------------------------------------------------------------


def test_locations_are_listed_and_picked_in_the_config(tmp_path, clock, fake, logged_in, monkeypatch,
                                                       capsys) -> None:
    found = asyncio.run(provider(fake, clock).list_locations())
    assert [(loc.name, loc.title, loc.address, loc.account) for loc in found] == [
        (MAIN_ST, TITLES[MAIN_ST], "Odos Main 12, Athens", "Corner Coffee Group"),
        (HARBOUR, TITLES[HARBOUR], "Akti 3, Piraeus", "Corner Coffee Group")]
    fake.review(MAIN_ST, "m1", 5, "yes", written=clock.now - 60)
    fake.review(HARBOUR, "h1", 5, "also yes", written=clock.now - 60)
    db = workspace(tmp_path, clock, locations=[HARBOUR]).open_db()
    sync(db, provider(fake, clock, locations=[HARBOUR]))
    assert [r[0] for r in db.conn.execute("SELECT native_id FROM conversations")] == [f"{HARBOUR}/reviews/h1"]
    assert [r.url.path for r in fake.requests("GET", "/reviews$")] == [f"/v4/{HARBOUR}/reviews"]
    # the CLI lists them (marking the one the config answers) to paste into the config
    config = tmp_path / "config.yaml"
    config.write_text(f"accounts:\n  - {{name: shop-google, provider: google, client_id: c-1, "
                      f"locations: [{HARBOUR}]}}\n", encoding="utf-8")

    class Wired(GoogleProvider):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, transport=fake.transport, clock=clock, **kw)

    monkeypatch.setattr(google, "GoogleProvider", Wired)
    assert main(["--config", str(config), "--data-dir", str(tmp_path / "d"), "locations", "shop-google"]) == 0
    out = capsys.readouterr().out
    assert f"  {MAIN_ST}  {TITLES[MAIN_ST]} · Odos Main 12, Athens" in out
    assert f"* {HARBOUR}  {TITLES[HARBOUR]}" in out
    assert main(["--config", str(config), "--data-dir", str(tmp_path / "d"), "locations", "shop-google",
                 "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(x["name"], x["chosen"]) for x in listed] == [(MAIN_ST, False), (HARBOUR, True)]


def test_a_review_escalated_to_a_helpdesk_is_a_ticket_that_says_what_it_is_about(tmp_path, clock, fake,
                                                                                logged_in) -> None:
    engine, db, conv = engine_with_review(tmp_path, clock, fake)
    key = outbox.queue_ticket(db, conv, account="shop-google", target="zendesk")
    payload = outbox.get(db, key).payload
    assert payload["subject"] == f"2★ review of {TITLES[MAIN_ST]}: My cappuccino was lukewarm."
    assert payload["priority"] == "high" and payload["transcript"][0]["text"] == "My cappuccino was lukewarm."


def test_a_private_answer_to_a_review_is_refused_never_posted_publicly(tmp_path, clock, fake, logged_in) -> None:
    engine, db, conv = engine_with_review(tmp_path, clock, fake)
    key = outbox.queue_reply(db, conv, "psst, here is a voucher", private=True)
    asyncio.run(engine.run_once())
    assert outbox.get(db, key).state == "failed" and "only be answered publicly" in outbox.get(db, key).last_error
    assert not fake.requests("PUT", "/reply$")
