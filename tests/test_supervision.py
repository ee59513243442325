"""The engine never stops silently: a locked database, a full disk or a clock stepped back stall it
at most for as long as the cause lasts, and what stalled it is shown until it resumes by itself.

Real parts throughout: the write lock is held by another process, the disk is a small tmpfs of the
test's own filled to the last byte, the engine runs in its thread as the console runs it. Every wait
ends on its condition (with a generous cap for a loaded machine), never on a duration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from replydesk.config import Config, SyncSettings, demo_config
from replydesk.storage import accounts, doctor, outbox, queries, slastate
from replydesk.storage.lock import EngineLock
from replydesk.workspace import EngineThread, Workspace
from support import Clock, OutsideWriteLock, fill_disk, make_workspace, own_tmpfs, sync_once

CAP = 90.0  # seconds: only a broken engine (or a very loaded machine) gets near it



def wait_until(condition: Callable[[], object], what: str, cap: float = CAP) -> object:
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"gave up waiting {cap:g} s for: {what}")


def quick_config(**demo: object) -> Config:
    """The demo account with a short lock timeout and quick retries: the same paths as the defaults
    (30 s, 2 s), only sooner. ``demo``: the demo account's options (a smaller backlog)."""
    from replydesk.providers.demo import DemoOptions

    base = demo_config()
    return base.model_copy(update={"sync": SyncSettings(lock_timeout=0.3, retry_base=0.05, retry_max=0.5),
                                   "accounts": [DemoOptions(name="demo", **demo)]})


def queue(ws: Workspace) -> str:
    db = ws.open_db()
    try:
        conv = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0].id
        return outbox.queue_reply(db, conv, "Thanks, it is on its way")
    finally:
        db.close()


def state_of(ws: Workspace, key: str) -> str:
    db = ws.open_db()
    try:
        item = outbox.get(db, key)
        return item.state if item else "missing"
    finally:
        db.close()


@pytest.fixture
def engine_thread() -> Iterator[list[EngineThread]]:
    started: list[EngineThread] = []
    yield started
    for engine in started:
        engine.stop(timeout=30)


def test_a_write_lock_held_from_outside_stalls_the_engine_and_it_resumes_by_itself(
        tmp_path: Path, clock: Clock, engine_thread: list[EngineThread]) -> None:
    ws = make_workspace(tmp_path / "ws", clock, config=quick_config())
    sync_once(ws, clock)
    key = queue(ws)
    with OutsideWriteLock(ws.data_dir / "replydesk.db"):
        engine = EngineThread(ws)
        assert engine.start()
        engine_thread.append(engine)
        health = wait_until(lambda: engine.health().get("state") == "stalled" and engine.health(),
                            "the engine to say it is stalled")
        assert health["reason"] == "database is locked by another process"
        # what doctor and a console in another process read: the lease's note
        note = EngineLock(ws.data_dir).holder_note()
        assert note["state"] == "stalled" and note["reason"] == health["reason"]
        found = doctor.check(ws.data_dir, timeout=0.2)
        assert not found["ok"]
        assert any("stalled: database is locked by another process since" in f for f in found["findings"])
        assert state_of(ws, key) == "queued"  # nothing left while the database could not record it
    wait_until(lambda: state_of(ws, key) == "sent", "the queued reply to leave once the lock was released")
    wait_until(lambda: engine.health() == {"state": "running"}, "the stall to clear")
    assert EngineLock(ws.data_dir).holder_note() == {"state": "running"}
    db = ws.open_db()
    try:
        assert accounts.status_of(db, "demo").state != "stalled"
    finally:
        db.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with own_tmpfs(tmp_path / "disk", "size=3m,mode=0700") as disk:
        yield disk


def test_a_full_disk_stalls_the_engine_and_freed_space_lets_the_reply_leave(
        small_disk: Path, clock: Clock, engine_thread: list[EngineThread]) -> None:
    ws = make_workspace(small_disk / "ws", clock, config=quick_config(backlog=20))
    sync_once(ws, clock)
    db = ws.open_db()
    conv = queries.inbox_page(db, queries.InboxFilter(), 0, 1)[0].id
    key = outbox.queue_reply(db, conv, "Your parcel left today", at=clock.now + 3600)  # due once the disk is full
    db.close()
    engine = EngineThread(ws)
    assert engine.start()
    engine_thread.append(engine)
    wait_until(lambda: engine.health() == {"state": "running"} and engine._engine is not None, "the engine to run")
    filler = fill_disk(small_disk)
    clock.advance(6 * 3600)  # the reply is due, and the shop has hours of new messages to store
    health = wait_until(lambda: engine.health().get("state") == "stalled" and engine.health(),
                        "the engine to stall on the full disk")
    assert health["reason"].startswith("disk full")
    assert state_of(ws, key) == "queued"
    filler.unlink()
    wait_until(lambda: state_of(ws, key) == "sent", "the reply to leave once space was freed")
    wait_until(lambda: engine.health() == {"state": "running"}, "the stall to clear")


def test_a_clock_stepped_back_holds_no_due_reply(tmp_path: Path) -> None:
    """A retry due in a few seconds stays due in a few seconds when the wall clock jumps back an hour
    (waits run on the monotonic clock; the stored retry time moves back with the step)."""
    from replydesk.sync import SyncEngine

    wall, mono = Clock(), Clock(1000.0)
    ws = make_workspace(tmp_path / "ws", wall, config=quick_config())
    sync_once(ws, wall)
    key = queue(ws)
    db = ws.open_db()
    engine = SyncEngine(ws.config, db, ws.data_dir, clock=wall, monotonic=mono)
    shop = engine.accounts["demo"].provider
    # the network is down: the reply waits for its retry, the account backs off
    shop.wire.faults = shop.wire.faults.model_copy(update={"offline": True})
    asyncio.run(engine.drain(engine.accounts["demo"]))
    item = outbox.get(db, key)
    assert item.state == "queued" and item.last_error and item.not_before > wall.now
    wait = item.not_before - wall.now
    shop.wire.faults = shop.wire.faults.model_copy(update={"offline": False})
    wall.now -= 3600  # the step back
    wall.advance(wait + 1)
    mono.advance(wait + 1)
    asyncio.run(engine.run_once())
    assert outbox.get(db, key).state == "sent"
    db.close()


def test_a_recorded_breach_stays_when_the_clock_steps_back(tmp_path: Path) -> None:
    wall = Clock()
    ws = make_workspace(tmp_path / "ws", wall, config=quick_config(backlog=30))
    sync_once(ws, wall)
    db = ws.open_db()
    breached = [r.id for r in queries.inbox_page(db, queries.InboxFilter(), 0, 200) if r.sla_state == "breached"]
    assert breached
    logged = db.conn.execute("SELECT count(*) FROM events WHERE kind='sla'").fetchone()[0]
    wall.now -= 30 * 86400  # a month back: before most of these breaches happened
    with db.transaction():
        slastate.refresh(db, breached)
    after = {r.id: r.sla_state for r in queries.inbox_page(db, queries.InboxFilter(), 0, 200)}
    assert {after[c] for c in breached} == {"breached"}
    wall.now += 30 * 86400 + 60  # and forward again: nothing is logged twice
    with db.transaction():
        slastate.refresh(db, breached)
    assert db.conn.execute("SELECT count(*) FROM events WHERE kind='sla'").fetchone()[0] == logged
    db.close()


def test_a_clock_stepped_back_holds_no_due_listening_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listening's waits are the engine's too: a query due after its 5 minutes runs after 5 minutes
    of the monotonic clock, whatever the wall clock did meanwhile (it stepped back an hour)."""
    from test_listening_platforms import SEARCH, mastodon_api, mastodon_workspace, searched, status, wire

    from replydesk.sync import SyncEngine

    wall, mono = Clock(), Clock(1000.0)
    api = mastodon_api()
    api.route("GET", SEARCH, searched(status(117030000000000001, "Duka la Amani still hasn't shipped my order")))
    ws = mastodon_workspace(tmp_path, wall)
    db = ws.open_db()
    try:
        engine = SyncEngine(ws.config, db, ws.data_dir, clock=wall, monotonic=mono)
        wire(engine, api, wall, monkeypatch)
        asyncio.run(engine.run_once())
        assert len(api.requests("GET", SEARCH)) == 1
        mono.advance(120)
        wall.advance(120)
        asyncio.run(engine.run_once())
        assert len(api.requests("GET", SEARCH)) == 1  # not due yet: its interval is 5 minutes
        wall.now -= 3600  # the step back, then the rest of the interval passes
        mono.advance(181)
        wall.advance(181)
        asyncio.run(engine.run_once())
        assert len(api.requests("GET", SEARCH)) == 2
    finally:
        db.close()


def test_pushed_bodies_waiting_through_a_stall_are_taken_in_when_it_ends(
        tmp_path: Path, clock: Clock, engine_thread: list[EngineThread]) -> None:
    """Taking in pushed (webhook) bodies is a step of the supervised account task: bodies stored
    before the engine could start are ingested once the lock is released, with the queued reply."""
    from replydesk import push
    from replydesk.providers.demo import DemoOptions
    from replydesk.storage import pushes

    config = quick_config().model_copy(update={"accounts": [DemoOptions(name="demo", backlog=120, push=True)]})
    ws = make_workspace(tmp_path / "ws", clock, config=config)
    sync_once(ws, clock)
    clock.advance(3600)
    db = ws.open_db()
    try:
        provider = ws.engine(db).accounts["demo"].provider
        bodies = provider.webhook_bodies(clock.now - 3600, clock.now)
        assert bodies  # the seeded shop gets WhatsApp messages within the hour
        for headers, body in bodies:
            assert push.receive(db, provider, headers, body).fresh
        assert pushes.summary(db)["counts"]["received"] == len(bodies)
    finally:
        db.close()
    key = queue(ws)
    with OutsideWriteLock(ws.data_dir / "replydesk.db"):
        engine = EngineThread(ws)
        assert engine.start()
        engine_thread.append(engine)
        wait_until(lambda: engine.health().get("state") == "stalled", "the engine to say it is stalled")

    def taken_in() -> bool:
        db = ws.open_db()
        try:
            return pushes.summary(db)["counts"]["received"] == 0
        finally:
            db.close()

    wait_until(taken_in, "the pushed bodies to be ingested once the lock was released")
    wait_until(lambda: state_of(ws, key) == "sent", "the queued reply to leave")
    wait_until(lambda: engine.health() == {"state": "running"}, "the stall to clear")


def test_a_database_fault_while_claiming_a_reply_stalls_the_step_and_costs_the_reply_no_backoff(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk met while marking a reply 'sending' (nothing has left yet) was taken for a provider
    bug: the reply was given a backoff as if the platform had failed, so on a clock that had not moved
    it stayed queued after the space came back (seen under load in the full-disk test above). It is
    the workspace's fault: the step stalls, and the reply leaves on the retry once the write works."""
    import sqlite3

    ws = make_workspace(tmp_path / "ws", clock, config=quick_config(backlog=5))
    sync_once(ws, clock)
    key = queue(ws)
    clock.advance(60)  # past the undo window
    real = outbox.mark_sending
    full = [True]

    def mark_sending(db, k):  # noqa: ANN001, ANN202 - the disk fills exactly at the claim
        if full[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return real(db, k)

    monkeypatch.setattr(outbox, "mark_sending", mark_sending)
    db = ws.open_db()
    try:
        engine = ws.engine(db)
        with pytest.raises(sqlite3.OperationalError):
            asyncio.run(engine.run_once())
        item = outbox.get(db, key)
        assert item is not None and (item.state, item.attempts) == ("queued", 0)
        assert item.not_before <= clock.now  # no backoff: the platform was never asked
        full[0] = False
        asyncio.run(engine.run_once())  # the same instant: nothing waits for a clock to move
        assert outbox.get(db, key).state == "sent"
    finally:
        db.close()
