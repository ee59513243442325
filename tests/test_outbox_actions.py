"""Actions beyond replies through the outbox: mark read, edit or delete our reply, create a ticket.

They leave like replies (durable before the network call, one idempotency key, in order per
conversation, the same retries, ``unknown`` when it cannot be known) against the demo platform
and the demo helpdesk, whose ledgers in the workspace are the referees. Real SQLite throughout;
the crash test kills real ``replydesk sync`` processes between "the helpdesk made the ticket" and
"we recorded it".
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replydesk.cli import main
from replydesk.config import Config, EscalationSettings, EscalationTarget, SyncSettings, demo_config
from replydesk.providers.demo import DemoFaults, DemoOptions, DemoRemote
from replydesk.providers.demo_helpdesk import TICKETS, DemoHelpdeskOptions
from replydesk.storage import actions, outbox, queries
from replydesk.storage.actions import ActionError
from replydesk.storage.db import DB_FILENAME, open_database
from replydesk.storage.schema import MIGRATIONS
from replydesk.workspace import Workspace
from support import REPO, Clock


def config(*, keys: bool = True, desk_faults: DemoFaults | None = None, **demo: object) -> Config:
    return Config(
        accounts=[DemoOptions(name="demo", **demo),
                  DemoHelpdeskOptions(name="desk", idempotency_keys=keys, faults=desk_faults or DemoFaults())],
        escalation=EscalationSettings(targets={"helpdesk": EscalationTarget(account="desk"),
                                               "billing": EscalationTarget()}),
        sync=SyncSettings(retry_base=1.0, retry_max=5.0, send_retries=50),
    )


class Shop:
    """A demo workspace with a helpdesk account, on a fixed clock."""

    def __init__(self, path: Path, **kw: object) -> None:
        self.clock = Clock()
        self.path = path
        self.ws = Workspace(path, config(**kw), clock=self.clock)
        self.db = self.ws.open_db()

    def run(self, passes: int = 1) -> None:
        for _ in range(passes):
            asyncio.run(self.ws.engine(self.db).run_once())
            self.clock.advance(10)

    def conversations(self, n: int = 3) -> list[str]:
        rows = queries.inbox_page(self.db, queries.InboxFilter(), 0, 60)
        return [r.id for r in rows if not r.reply_windows][:n]

    def tickets(self) -> list[dict]:
        path = self.path / TICKETS
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def done(self) -> list[dict]:
        return DemoRemote(self.path, "demo-actions.jsonl").ledger()


@pytest.fixture
def shop(tmp_path: Path):
    s = Shop(tmp_path / "ws")
    s.run()
    yield s
    s.db.close()


# ---- the outbox keeps what it held ---------------------------------------------------------------


def test_the_migration_keeps_every_queued_reply_as_a_reply(tmp_path: Path) -> None:
    """A workspace from before actions existed: its outbox rows stay replies, in their place in line."""
    path = tmp_path / "old"
    path.mkdir()
    conn = sqlite3.connect(path / DB_FILENAME, isolation_level=None)
    before = next(i for i, m in enumerate(MIGRATIONS) if any("ADD COLUMN action" in q for q in m))
    for statements in MIGRATIONS[:before]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {before}")
    conn.execute("INSERT INTO conversations(id, account, platform, kind, native_id, created_at, last_message_at) "
                 "VALUES ('demo:c1', 'demo', 'x', 'dm', 'c1', 1, 1)")
    conn.execute("INSERT INTO messages(id, conversation_id, account, native_id, direction, text, created_at, state) "
                 "VALUES ('demo:out:k1', 'demo:c1', 'demo', 'out:k1', 'out', 'hello', 1, 'queued')")
    conn.execute("INSERT INTO outbox(key, conversation_id, message_id, account, text, created_at, not_before, "
                 "state, updated_at, seq) VALUES ('k1', 'demo:c1', 'demo:out:k1', 'demo', 'hello', 1, 1, 'queued', 1, 1)")
    conn.close()
    db = open_database(path)
    try:
        (item,) = outbox.pending(db)
        assert (item.key, item.action, item.payload, item.is_reply, item.summary()) == ("k1", "reply", {}, True, "hello")
        assert [i.key for i in outbox.ready(db)] == ["k1"]
        assert outbox.as_json(item)["action"] == "reply"
    finally:
        db.close()


# ---- queueing ------------------------------------------------------------------------------------


def test_an_action_is_frozen_and_validated_when_queued(shop: Shop) -> None:
    conv = shop.conversations(1)[0]
    with pytest.raises(ActionError, match="no reply of ours"):
        outbox.queue_action(shop.db, conv, "edit_reply", {"text": "better"})
    with pytest.raises(ActionError, match="unknown action"):
        outbox.queue_action(shop.db, conv, "archive")
    key = outbox.queue_reply(shop.db, conv, "first words")
    with pytest.raises(ActionError, match="is queued, not on the platform"):
        outbox.queue_action(shop.db, conv, "delete_reply", {"message_id": outbox.get(shop.db, key).message_id})
    shop.run()
    sent = outbox.get(shop.db, key)
    with pytest.raises(ActionError, match="cannot be empty"):
        outbox.queue_action(shop.db, conv, "edit_reply", {"text": "  "})
    edit = outbox.get(shop.db, outbox.queue_action(shop.db, conv, "edit_reply", {"text": "better words"}))
    assert edit.payload == {"text": "better words", "message_id": sent.message_id, "remote_id": sent.remote_id,
                            "quote": "first words"}
    assert (edit.action, edit.message_id, edit.account, edit.summary()) == (
        "edit_reply", "", "demo", "edit our reply to: better words")
    read = outbox.get(shop.db, outbox.queue_action(shop.db, conv, "mark_read"))
    newest_in = [m for m in queries.thread(shop.db, conv).messages if m.direction == "in"][-1]
    assert read.payload == {"up_to": newest_in.id.split(":", 1)[1]}


# ---- performing, against the demo platform -----------------------------------------------------------


def test_edit_delete_and_mark_read_reach_the_platform_once_and_show_in_the_thread(shop: Shop) -> None:
    conv, other = shop.conversations(2)
    first = outbox.queue_reply(shop.db, conv, "Your order ships Monday")
    second = outbox.queue_reply(shop.db, other, "Refund sent")
    shop.run()
    remote = {outbox.get(shop.db, k).remote_id for k in (first, second)}
    edit = outbox.queue_action(shop.db, conv, "edit_reply", {"text": "Your order ships today"})
    delete = outbox.queue_action(shop.db, other, "delete_reply")
    read = outbox.queue_action(shop.db, conv, "mark_read")
    shop.run()
    assert {outbox.get(shop.db, k).state for k in (edit, delete, read)} == {"sent"}
    done = {e["key"]: e for e in shop.done()}
    assert set(done) == {edit, delete, read}
    assert (done[edit]["kind"], done[edit]["text"]) == ("edit_reply", "Your order ships today")
    assert done[delete]["target"] in remote and done[edit]["target"] in remote
    ours = [m for m in queries.thread(shop.db, conv).messages if m.direction == "out"]
    assert [(m.text, m.state, bool(m.meta.get("edited_at"))) for m in ours] == [
        ("Your order ships today", "sent", True)]
    assert [m.state for m in queries.thread(shop.db, other).messages if m.direction == "out"] == ["deleted"]
    assert [(a.action, a.state) for a in queries.thread(shop.db, conv).actions] == [
        ("edit_reply", "sent"), ("mark_read", "sent")]
    shop.run(2)
    assert len(shop.done()) == 3  # nothing leaves twice


def test_a_lost_answer_is_repeated_with_the_same_key_and_done_once(tmp_path: Path) -> None:
    shop = Shop(tmp_path / "ws", faults=DemoFaults(lost_ack=1.0))
    try:
        shop.run()
        conv = shop.conversations(1)[0]
        outbox.queue_action(shop.db, conv, "mark_read")
        shop.run(3)  # every answer lost: done on the platform, queued here, repeated with its key
        assert len(shop.done()) == 1 and len(DemoRemote(shop.path, "demo-actions.jsonl",
                                                        "demo-action-repeats.jsonl").repeats()) >= 2
        shop.ws.config.accounts[0].faults.lost_ack = 0.0
        shop.run()
        (item,) = [i for i in outbox.pending(shop.db, ("sent",)) if not i.is_reply]
        assert item.remote_id == shop.done()[0]["remote_id"] and len(shop.done()) == 1
    finally:
        shop.db.close()


def test_actions_and_replies_keep_their_order_in_a_conversation_and_block_only_it(shop: Shop) -> None:
    conv, other = shop.conversations(2)
    reply = outbox.queue_reply(shop.db, conv, "hello", delay=600)  # waits for its undo window
    read = outbox.queue_action(shop.db, conv, "mark_read")
    ticket = outbox.queue_ticket(shop.db, conv, account="desk", target="helpdesk")
    assert read in {i.key for i in outbox.ready(shop.db)}  # an undo window holds nothing back
    outbox.retry(shop.db, reply)  # "send now": from here on, it leads its conversation
    assert [i.key for i in outbox.ready(shop.db) if i.conversation_id == conv] == [reply]
    bad = outbox.queue_action(shop.db, other, "create_ticket", {"external_id": other, "subject": "x"})  # on demo
    after = outbox.queue_reply(shop.db, other, "still here")
    shop.run(3)
    assert [outbox.get(shop.db, k).state for k in (reply, read, ticket)] == ["sent", "sent", "sent"]
    failed = outbox.get(shop.db, bad)
    assert failed.state == "failed" and "account demo cannot create ticket" in failed.last_error
    assert outbox.get(shop.db, after).state == "queued"  # held back behind the failed action, as a reply would be
    outbox.cancel(shop.db, bad)
    shop.run()
    assert outbox.get(shop.db, after).state == "sent"


# ---- escalation to a helpdesk ----------------------------------------------------------------------


def test_escalating_to_a_helpdesk_target_creates_one_ticket_through_the_outbox(tmp_path: Path, capsys) -> None:
    data = tmp_path / "ws"
    cfg = tmp_path / "config.yaml"
    cfg.write_text("accounts:\n  - {name: demo, provider: demo}\n  - {name: desk, provider: demo-helpdesk}\n"
                   "escalation:\n  targets:\n    helpdesk: {account: desk}\n    billing: {}\n", encoding="utf-8")
    base = ["--data-dir", str(data), "--config", str(cfg)]
    assert main([*base, "sync", "--once", "--json"]) == 0
    capsys.readouterr()
    db = open_database(data)
    conv = next(r.id for r in queries.inbox_page(db, queries.InboxFilter(), 0, 50) if r.subject)
    assert main([*base, "escalate", conv, "--target", "billing", "--reason", "refund"]) == 0
    assert "ticket" not in capsys.readouterr().out and outbox.pending(db) == []  # a label only
    assert main([*base, "escalate", conv, "--target", "helpdesk", "--reason", "refund", "--note", "charged twice"]) == 0
    assert "ticket" in capsys.readouterr().out
    (queued,) = outbox.pending(db)
    assert (queued.action, queued.account, queued.state) == ("create_ticket", "desk", "queued")
    p = queued.payload
    assert (p["external_id"], p["target"], p["reason"], p["note"], p["priority"]) == (
        conv, "helpdesk", "refund", "charged twice", "high")
    assert p["subject"] == queries.get_row(db, conv).subject and p["transcript"][0]["from"] == "customer"
    assert main([*base, "outbox"]) == 0
    assert "[create_ticket] ticket in desk" in capsys.readouterr().out
    assert main([*base, "sync", "--once"]) == 0
    capsys.readouterr()
    tickets = [json.loads(line) for line in (data / TICKETS).read_text().splitlines()]
    assert [(t["key"], t["external_id"]) for t in tickets] == [(queued.key, conv)]
    done = outbox.get(db, queued.key)
    assert done.state == "sent" and done.result == {"id": "1", "url": "https://helpdesk.demo.invalid/tickets/1",
                                                    "label": "Demo helpdesk", "status": "new"}
    thread = queries.thread(db, conv)
    (shown,) = thread.actions
    assert shown.summary.startswith("ticket in desk #1: ") and shown.result["url"].endswith("/tickets/1")
    # the ticket is kept on the conversation: the thread and the SLA pane show it with its status
    assert [(t.summary(), t.url) for t in thread.tickets] == [
        ("Demo helpdesk #1 · new", "https://helpdesk.demo.invalid/tickets/1")]
    kinds = [r[0] for r in db.conn.execute("SELECT kind FROM events WHERE conversation_id=? ORDER BY seq", (conv,))]
    assert kinds[-3:] == ["note", "action_queued", "ticket"]
    db.close()


@pytest.mark.parametrize("keys", [True, False], ids=["idempotency-key", "lookup"])
def test_a_ticket_whose_answer_is_lost_is_created_once(tmp_path: Path, keys: bool) -> None:
    """With keys the helpdesk dedupes the repeat; without them the engine looks the ticket up first."""
    shop = Shop(tmp_path / "ws", keys=keys, desk_faults=DemoFaults(lost_ack=1.0))
    try:
        shop.run()
        convs = shop.conversations(3)
        for conv in convs:
            actions.escalate(shop.db, [conv], target="helpdesk")
            outbox.queue_ticket(shop.db, conv, account="desk", target="helpdesk")
        shop.run(3)
        shop.ws.config.accounts[1].faults.lost_ack = 0.0
        shop.run(3)
        tickets = shop.tickets()
        assert sorted(t["external_id"] for t in tickets) == sorted(convs)  # one each, none twice
        assert all(i.state == "sent" for i in outbox.pending(shop.db, ("sent",)) if not i.is_reply)
        assert outbox.pending(shop.db) == []
    finally:
        shop.db.close()


# ---- the crash test: killed between "the helpdesk made it" and "we recorded it" ----------------------

CRASH_CONFIG = """\
accounts:
  - provider: demo
    name: demo
    pace: 3600s
  - provider: demo-helpdesk
    name: desk
    idempotency_keys: {keys}
    faults: {{fail: 0.1, lost_ack: 0.2, crash_after_accept: 0.3}}
escalation:
  targets:
    helpdesk: {{account: desk}}
sync:
  retry_base: 0.05s
  retry_max: 0.5s
  send_retries: 1000
"""


@pytest.mark.slow
@pytest.mark.parametrize("keys", ["true", "false"], ids=["idempotency-key", "lookup"])
def test_sigkill_between_ticket_and_record_never_makes_a_second_ticket(tmp_path: Path, keys: str) -> None:
    rng = random.Random(int(os.environ.get("REPLYDESK_CRASH_SEED", "5")))
    data = tmp_path / "ws"
    seeded = Workspace(data, demo_config())
    db = seeded.open_db()
    asyncio.run(seeded.engine(db).run_once())
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CRASH_CONFIG.format(keys=keys), encoding="utf-8")
    convs = [r[0] for r in db.conn.execute("SELECT id FROM conversations ORDER BY id LIMIT 200")]
    keys_queued = [outbox.queue_ticket(db, conv, account="desk", target="helpdesk") for conv in convs[:20]]
    log = (tmp_path / "sync.log").open("ab")

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "replydesk.cli", "sync", "--data-dir", str(data),
                                 "--config", str(cfg)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def all_done() -> bool:
        return all(outbox.get(db, k).state == "sent" for k in keys_queued)

    kills = self_kills = 0
    deadline = time.monotonic() + 240  # a cap, not a duration: the loop ends when every ticket is recorded
    proc = start()
    while time.monotonic() < deadline:
        if all_done():
            if self_kills + kills >= 3 or len(keys_queued) >= len(convs):
                break
            # Crashes are chance (the helpdesk's and ours): a fast run may record every ticket
            # before three came. More escalations, until the run has crashed enough to mean it.
            keys_queued += [outbox.queue_ticket(db, conv, account="desk", target="helpdesk")
                            for conv in convs[len(keys_queued):len(keys_queued) + 20]]
        time.sleep(rng.uniform(0.1, 0.8))
        if proc.poll() is None and rng.random() < 0.3:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        if proc.poll() is not None:
            self_kills += proc.wait() == -signal.SIGKILL
            proc = start()
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    tickets = [json.loads(line) for line in (data / TICKETS).read_text().splitlines() if line.strip()]
    made = [t["key"] for t in tickets]
    print(f"\nticket crash test ({keys=}): tickets={len(keys_queued)} kills={kills} "
          f"self_kills_after_create={self_kills} created={len(made)}")
    assert self_kills + kills >= 3
    assert all_done(), (tmp_path / "sync.log").read_text()[-2000:]
    assert sorted(made) == sorted(keys_queued)  # exactly one ticket per escalation
    for key in keys_queued:
        item = outbox.get(db, key)
        assert item.remote_id == next(t["id"] for t in tickets if t["key"] == key)
    db.close()



def test_the_console_learns_what_each_account_can_do_and_read_receipts_wait_for_the_option(tmp_path: Path) -> None:
    from replydesk.storage import platform_facts

    for on in (False, True):
        shop = Shop(tmp_path / f"ws-{on}", mark_read=on)
        try:
            shop.run()
            stored = {(a, p): f.actions for a, p, f in platform_facts.load(shop.db)}
            assert stored[("demo", "whatsapp")] == (("delete_reply", "edit_reply", "mark_read") if on
                                                    else ("delete_reply", "edit_reply"))
            assert stored[("desk", "demo-helpdesk")] == ("create_ticket",)
        finally:
            shop.db.close()
