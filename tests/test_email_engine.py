"""Email through the whole engine: Dovecot → sync → SQLite cache → outbox → SMTP → customer's mailbox."""

from __future__ import annotations

import email
import json
from email import policy

import pytest

from replydesk.config import Config
from replydesk.storage import outbox, queries
from replydesk.workspace import Workspace
from servers import ALICE, SHOP, mail_test_marks, make_mail, running_dovecot, running_smtp
from support import sync_once

pytestmark = mail_test_marks(90)



def _workspace(tmp_path, dovecot, smtp, with_demo: bool = False) -> Workspace:
    accounts = [{
        "name": "shop-mail", "provider": "email", "address": SHOP,
        "imap": {"host": "127.0.0.1", "port": dovecot.port, "tls": "none", "user": SHOP, "timeout": 5,
                 "folders": ["INBOX"], "sent_folder": "Sent"},
        "smtp": {"host": smtp.host, "port": smtp.port, "tls": "none", "user": SHOP, "timeout": 5},
    }]
    if with_demo:
        accounts.append({"name": "demo", "provider": "demo"})
    return Workspace(data_dir=tmp_path / "ws", config=Config.model_validate({"accounts": accounts}))


@pytest.fixture
def servers():
    with running_dovecot({"hello": "shop-pw", "alice": "alice-pw"}) as dovecot, running_smtp(dovecot) as smtp:
        yield dovecot, smtp


def test_mail_thread_reply_and_threading_headers(tmp_path, servers, monkeypatch):
    dovecot, smtp = servers
    monkeypatch.setenv("REPLYDESK_SECRET_SHOP_MAIL", "shop-pw")
    dovecot.deliver("hello", make_mail(subject="Παραγγελία #1234", sender=f"Alice <{ALICE}>",
                                        body="Πού είναι η παραγγελία μου;", message_id="<q1@customer.example>"),
                    sender=ALICE)
    dovecot.deliver("hello", make_mail(subject="Re: Παραγγελία #1234", sender=f"Alice <{ALICE}>",
                                        body="Any news?", message_id="<q2@customer.example>",
                                        in_reply_to="<q1@customer.example>",
                                        references=["<q1@customer.example>"]), sender=ALICE)
    ws = _workspace(tmp_path, dovecot, smtp)
    report = sync_once(ws)
    assert report.fetched["shop-mail"] == 2 and not report.errors
    db = ws.open_db()
    [row] = queries.inbox_page(db, queries.InboxFilter(), 0, 10)
    assert (row.platform, row.kind, row.subject, row.customer) == ("email", "email", "Παραγγελία #1234", "Alice")
    assert sync_once(ws).fetched["shop-mail"] == 0  # nothing twice

    key = outbox.queue_reply(db, row.id, "Στάλθηκε χθες — ευχαριστούμε!")
    assert sync_once(ws).sent == 1
    item = outbox.get(db, key)
    assert item.state == "sent" and key in item.remote_id
    [raw] = dovecot.fetch_raw("alice")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["In-Reply-To"] == "<q2@customer.example>"
    assert msg["References"].split() == ["<q1@customer.example>", "<q2@customer.example>"]
    assert msg["Subject"] == "Re: Παραγγελία #1234"
    assert msg.get_content().strip() == "Στάλθηκε χθες — ευχαριστούμε!"
    # our copy in Sent is fetched back on the next pass and joins the thread, not a second message
    sync_once(ws)
    thread = queries.thread(db, row.id)
    assert [m.direction for m in thread.messages] == ["in", "in", "out"]
    assert "shop-pw" not in json.dumps([m._asdict() for m in thread.messages], default=str)


def test_wrong_password_stops_only_that_account(tmp_path, servers, monkeypatch, clock):
    dovecot, smtp = servers
    monkeypatch.setenv("REPLYDESK_SECRET_SHOP_MAIL", "not-the-password")
    ws = _workspace(tmp_path, dovecot, smtp, with_demo=True)
    report = sync_once(ws)
    assert report.errors["shop-mail"].startswith("auth_error: re-login needed")
    assert "not-the-password" not in report.errors["shop-mail"]
    assert report.fetched["demo"] > 300  # the other account keeps working
    states = {s["account"]: s["state"] for s in queries.account_states(ws.open_db())}
    assert states == {"demo": "ok", "shop-mail": "auth_error"}


def test_server_going_away_backs_off_and_recovers_without_doubles(tmp_path, servers, monkeypatch):
    dovecot, smtp = servers
    monkeypatch.setenv("REPLYDESK_SECRET_SHOP_MAIL", "shop-pw")
    dovecot.deliver("hello", make_mail(subject="one", message_id="<m1@c.example>"), sender=ALICE)
    ws = _workspace(tmp_path, dovecot, smtp)
    assert sync_once(ws).fetched["shop-mail"] == 1
    dovecot.stop()
    report = sync_once(ws)
    assert report.errors["shop-mail"].split(":")[0] in ("backoff", "offline")
    dovecot.start()
    dovecot.deliver("hello", make_mail(subject="two", message_id="<m2@c.example>"), sender=ALICE)
    assert sync_once(ws).fetched["shop-mail"] == 1
    db = ws.open_db()
    assert db.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 2


def test_idle_push_shows_new_mail_without_polling(tmp_path, servers, monkeypatch):
    """The running engine (not a single pass) picks up a delivered mail through IMAP IDLE."""
    import asyncio
    import time

    from replydesk.sync import SyncEngine

    dovecot, smtp = servers
    monkeypatch.setenv("REPLYDESK_SECRET_SHOP_MAIL", "shop-pw")
    ws = _workspace(tmp_path, dovecot, smtp)
    ws.config.accounts[0].poll_interval = 600.0  # polling alone would take ten minutes
    db = ws.open_db()
    engine = SyncEngine(ws.config, db, ws.data_dir)
    reader = ws.open_db()

    def count() -> int:
        return reader.conn.execute("SELECT count(*) FROM messages").fetchone()[0]

    async def scenario() -> float:
        task = asyncio.create_task(engine.run())
        try:
            deadline = time.monotonic() + 60
            while not engine.accounts["shop-mail"].streaming and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert engine.accounts["shop-mail"].streaming, "IDLE stream did not start"
            await asyncio.to_thread(dovecot.deliver, "hello",
                                    make_mail(subject="pushed", message_id="<push@c.example>"), "INBOX", ALICE)
            sent = time.monotonic()
            while count() == 0 and time.monotonic() - sent < 60:  # polling would take 10 minutes
                await asyncio.sleep(0.05)
            return time.monotonic() - sent
        finally:
            engine.stop()
            await asyncio.wait_for(task, 10)

    latency = asyncio.run(scenario())
    assert count() == 1
    print(f"IDLE push latency through the engine: {latency:.2f} s")  # a figure; speed is the bench's
