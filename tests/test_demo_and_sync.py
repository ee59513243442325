"""The demo platform and the sync engine over it: determinism, the ledger, faults, idempotent passes."""

from __future__ import annotations

import asyncio
import json

import pytest

from replydesk.config import demo_config
from replydesk.model import OutgoingReply
from replydesk.providers.base import Offline, RateLimited, TransientError
from replydesk.providers.demo import LANGUAGES, DemoFaults, DemoProvider
from replydesk.storage import outbox, queries
from replydesk.storage.lock import EngineLock
from replydesk.sync import SyncEngine
from support import FIXED_NOW, make_workspace, sync_once


def _provider(tmp_path, clock, **options):
    return DemoProvider("demo", {"seed": 7, **options}, lambda: None, data_dir=tmp_path, clock=clock)


def _reply(key: str, conv: str = "c1", text: str = "hello") -> OutgoingReply:
    return OutgoingReply(key=key, conversation_id=f"demo:{conv}", conversation_native_id=conv, account="demo",
                         kind="dm", private=False, text=text, customer_handle="@x")


def test_same_seed_same_customers(tmp_path, clock):
    a = asyncio.run(_provider(tmp_path / "a", clock).fetch({}))[0].messages
    b = asyncio.run(_provider(tmp_path / "b", clock).fetch({}))[0].messages
    assert [(m.native_id, m.text, m.created_at) for m in a] == [(m.native_id, m.text, m.created_at) for m in b]
    c = asyncio.run(DemoProvider("demo", {"seed": 8}, lambda: None, data_dir=tmp_path / "c",
                                 clock=clock).fetch({}))[0].messages
    assert [m.text for m in a] != [m.text for m in c]


def test_backlog_spans_channels_languages_and_ages(tmp_path, clock):
    msgs = asyncio.run(_provider(tmp_path, clock).fetch({}))[0].messages
    convs = {m.conversation_native_id for m in msgs}
    assert 200 <= len(convs) <= 300
    assert len({m.platform for m in msgs}) >= 6
    openings = {lang: set(texts) | set(follow) for lang, _, texts, follow in LANGUAGES}
    seen = {lang for lang, texts in openings.items()
            if any(m.text.split("#")[0] in {t.split("#")[0] for t in texts} for m in msgs)}
    assert {"en", "sw", "hi", "ms", "el", "kk"} <= seen
    ages = [FIXED_NOW - m.created_at for m in msgs]
    assert min(ages) < 600 and max(ages) > 86400


def test_stream_cursor_returns_exactly_what_is_new(tmp_path, clock):
    p = _provider(tmp_path, clock, pace=10)
    first = asyncio.run(p.fetch({}))[0]
    clock.advance(100)
    second = asyncio.run(p.fetch({"default": first.cursor}))[0]
    assert 8 <= len(second.messages) <= 12  # one every 10 s
    again = asyncio.run(p.fetch({"default": second.cursor}))[0]
    assert again.messages == []
    ids = [m.native_id for m in first.messages + second.messages]
    assert len(ids) == len(set(ids))


def test_ledger_accepts_each_key_once(tmp_path, clock):
    p = _provider(tmp_path, clock)
    r1 = asyncio.run(p.send(_reply("k1")))
    r2 = asyncio.run(p.send(_reply("k1", text="a retry of the same reply")))
    r3 = asyncio.run(p.send(_reply("k2")))
    assert r1.remote_id == r2.remote_id != r3.remote_id
    lines = [json.loads(line) for line in (tmp_path / "demo-ledger.jsonl").read_text().splitlines()]
    assert [(e["key"], e["conversation"], e["text"]) for e in lines] == [("k1", "c1", "hello"), ("k2", "c1", "hello")]
    assert asyncio.run(p.lookup_sent(_reply("k2"))).remote_id == r3.remote_id
    assert asyncio.run(p.lookup_sent(_reply("nope"))) is None


def test_customers_answer_back_after_some_replies(tmp_path, clock):
    p = _provider(tmp_path, clock, pace=1e9)
    cursor = asyncio.run(p.fetch({}))[0].cursor
    for i in range(20):
        asyncio.run(p.send(_reply(f"key-{i}", conv=f"c{i}")))
    clock.advance(200)
    follow = asyncio.run(p.fetch({"default": cursor}))[0].messages
    assert 2 <= len(follow) <= 16
    assert all(m.native_id.startswith("f-") and m.direction == "in" for m in follow)


@pytest.mark.parametrize(("faults", "error"), [
    ({"offline": True}, Offline), ({"fail": 1.0}, TransientError), ({"ratelimit": 1.0}, RateLimited),
])
def test_fault_injection(tmp_path, clock, faults, error):
    p = _provider(tmp_path, clock, faults=faults)
    with pytest.raises(error):
        asyncio.run(p.fetch({}))
    with pytest.raises(error):
        asyncio.run(p.send(_reply("k")))
    assert not (tmp_path / "demo-ledger.jsonl").exists()


def test_one_pass_stores_the_backlog_and_a_second_adds_nothing(tmp_path, clock):
    ws = make_workspace(tmp_path, clock)
    first = sync_once(ws, clock)
    second = sync_once(ws, clock)
    assert first.fetched["demo"] > 300 and second.fetched["demo"] == 0
    db = ws.open_db()
    c = queries.counts(db)
    assert c.open >= 200 and c.breached > 0 and c.warning > 0
    states = {r[0] for r in db.conn.execute("SELECT DISTINCT sla_state FROM conversations")}
    assert {"ok", "warning", "breached"} <= states


def test_queued_reply_is_sent_once_and_recorded(tmp_path, clock):
    ws = make_workspace(tmp_path, clock)
    sync_once(ws, clock)
    db = ws.open_db()
    conv = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0].id
    key = outbox.queue_reply(db, conv, "We're on it — σας ευχαριστούμε 🙏")
    report = sync_once(ws, clock)
    assert report.sent == 1
    sync_once(ws, clock)
    ledger = [json.loads(line) for line in (tmp_path / "demo-ledger.jsonl").read_text().splitlines()]
    assert [(e["key"], e["text"]) for e in ledger] == [(key, "We're on it — σας ευχαριστούμε 🙏")]
    item = outbox.get(db, key)
    assert item.state == "sent" and item.remote_id == ledger[0]["remote_id"]
    first_reply = db.conn.execute(
        "SELECT count(*) FROM events WHERE conversation_id=? AND kind='reply'", (conv,)).fetchone()[0]
    assert first_reply == 1


def test_offline_keeps_replies_queued_then_drains(tmp_path, clock):
    ws = make_workspace(tmp_path, clock)
    sync_once(ws, clock)
    db = ws.open_db()
    conv = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0].id
    key = outbox.queue_reply(db, conv, "hello")
    offline = make_workspace(tmp_path, clock, faults=DemoFaults(offline=True))
    report = sync_once(offline, clock)
    assert report.sent == 0 and report.errors["demo"].startswith("offline")
    assert outbox.get(db, key).state == "queued"
    status = {s["account"]: s for s in queries.account_states(db)}["demo"]
    assert status["state"] == "offline" and status["until"] > clock.now
    clock.advance(600)
    assert sync_once(ws, clock).sent == 1


def test_lost_acknowledgements_never_duplicate(tmp_path, clock):
    ws = make_workspace(tmp_path, clock)
    sync_once(ws, clock)
    db = ws.open_db()
    # No reply window in play: the clock moves by hours here, and a closing window is tested apart.
    convs = [r.id for r in queries.inbox_page(db, queries.InboxFilter(), 0, 40) if not r.reply_windows][:10]
    keys = [outbox.queue_reply(db, c, f"reply {i}") for i, c in enumerate(convs)]
    flaky = make_workspace(tmp_path, clock, config=demo_config(faults=DemoFaults(lost_ack=0.6)))
    flaky.config.sync.send_retries = 50
    # Each lost answer puts the account into backoff, so a pass may settle one reply or none: the
    # number of passes needed is chance (geometric, mean ~25 for ten replies). Loop until settled,
    # with a cap no run reaches (it would take 300 lost answers in a row of passes).
    for _ in range(300):
        sync_once(flaky, clock)
        clock.advance(400)
        if all(outbox.get(db, k).state == "sent" for k in keys):
            break
    assert all(outbox.get(db, k).state == "sent" for k in keys)
    ledger = [json.loads(line)["key"] for line in (tmp_path / "demo-ledger.jsonl").read_text().splitlines()]
    assert sorted(ledger) == sorted(keys)  # each exactly once


def test_engine_lock_is_exclusive_and_released(tmp_path):
    a, b = EngineLock(tmp_path), EngineLock(tmp_path)
    assert a.acquire()
    assert not b.acquire()
    assert b.held_by_other()
    a.release()
    assert b.acquire()
    b.release()


def test_run_loop_stops_cleanly(tmp_path, clock):
    ws = make_workspace(tmp_path, clock)
    db = ws.open_db()
    engine = SyncEngine(ws.config, db, ws.data_dir, clock=clock)

    async def go():
        task = asyncio.create_task(engine.run())
        for _ in range(1200):  # until the first pass stored the backlog (a cap of a minute, not a duration)
            await asyncio.sleep(0.05)
            if queries.counts(db).open > 200:
                break
        engine.stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(go())
    assert queries.counts(db).open > 200


def test_policy_edit_applies_to_open_conversations_at_once(tmp_path, clock):
    from replydesk.slaconfig import SlaSettings

    ws = make_workspace(tmp_path, clock)
    sync_once(ws, clock)
    db = ws.open_db()
    before = queries.counts(db)
    assert before.breached > 0
    lax = SlaSettings.model_validate({"policies": [{"name": "lax", "first_reply": {"target": "7d"},
                                                    "next_reply": {"target": "7d"}}]})
    relaxed = make_workspace(tmp_path, clock, config=ws.config.model_copy(update={"sla": lax}))
    db2 = relaxed.open_db()  # no new message, no sync: opening with the new policies re-evaluates
    after = queries.counts(db2)
    assert after.breached == 0 and after.open == before.open
    assert {r.sla_metric for r in queries.inbox_page(db2, queries.InboxFilter(), 0, 50)} <= {"first_reply", "next_reply"}
    policy = db2.conn.execute("SELECT DISTINCT sla_policy FROM conversations").fetchall()
    assert [p[0] for p in policy] == ["lax"]


# ---- sync.poll_interval ------------------------------------------------------------------------------


async def _count_fetches_while(engine: SyncEngine, clock, steps) -> list[int]:
    """Run the engine; after each fetch count reached, advance the fake clock as ``steps`` says.

    Returns the fetch count seen at each step. Waits on the condition (a fetch happened, or the
    engine computed its next fetch time), never on a duration."""
    run = engine.accounts["demo"]
    fetches = 0
    real_fetch = run.provider.fetch

    async def counting(cursors):
        nonlocal fetches
        fetches += 1
        return await real_fetch(cursors)

    run.provider.fetch = counting
    task = asyncio.create_task(engine.run())
    seen = []
    try:
        for advance, expect in steps:
            while fetches < expect or run.next_fetch <= clock.now:
                await asyncio.sleep(0.01)
            seen.append((fetches, run.next_fetch - clock.now))
            clock.advance(advance)
    finally:
        engine.stop()
        await task
    return seen


@pytest.mark.parametrize(("sync_interval", "own", "expected"), [
    (120.0, None, 120.0),   # the sync default applies to an account without its own
    (120.0, 7.0, 7.0),      # the account's own wins
    (None, None, 5.0),      # neither: the provider's own default (the demo: 5 s)
])
def test_sync_poll_interval_is_the_default_for_accounts_without_their_own(tmp_path, clock, sync_interval, own,
                                                                          expected):
    from replydesk.config import Config, SyncSettings
    from replydesk.providers.demo import DemoOptions

    account = DemoOptions(name="demo", backlog=3, pace=1e6, poll_interval=own)
    config = Config(accounts=[account], sync=SyncSettings(poll_interval=sync_interval))
    ws = make_workspace(tmp_path / "ws", clock, config=config)
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        # First fetch at once; then the next is due exactly one interval later by the fake clock.
        # Moving the clock to just before it fetches nothing more; moving it past it fetches again.
        steps = [(expected - 0.5, 1), (1.0, 1), (0.0, 2)]
        seen = asyncio.run(_count_fetches_while(engine, clock, steps))
    finally:
        db.close()
    assert seen[0] == (1, expected)
    assert seen[1] == (1, 0.5)  # still waiting: half a second of the interval left
    assert seen[2][0] == 2
