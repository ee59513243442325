"""Email that reads like a conversation, through the whole engine against a real Dovecot.

The corpus messages (tests/data/mail) are delivered as an MTA would, synced, answered and sent over
SMTP to the customer's mailbox; what is checked is what the agent and the customer see: bounces
marking our reply failed, robots starting no SLA clock and asked about before a reply, the
customer's answer under a quote found by search and exported whole, References that survive long
ids, legacy header charsets, and bounded memory on a hostile header.
"""

from __future__ import annotations

import email
import email.utils
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from email import policy
from pathlib import Path

import pytest
import yaml

from replydesk.config import Config
from replydesk.reporting import make_report
from replydesk.storage import exchange, outbox, queries, search, slastate
from replydesk.workspace import Workspace
from servers import ALICE, SHOP, mail_test_marks, make_mail, running_dovecot, running_smtp
from support import sync_once

pytestmark = mail_test_marks(180)

CORPUS = Path(__file__).parent / "data" / "mail"
FIXTURE_REPLY = b"<replydesk.3c9e1f0a7b2d4e6f8a1b2c3d4e5f6a7b@shop.example>"
SLA = {"policies": [{"name": "email", "match": {"kind": ["email"]},
                     "first_reply": {"target": "4h", "calendar": "24x7"},
                     "next_reply": {"target": "4h", "calendar": "24x7"},
                     "resolution": {"target": "2d", "calendar": "24x7"}}]}


def account(dovecot, smtp) -> dict:
    return {"name": "shop-mail", "provider": "email", "address": SHOP,
            "imap": {"host": "127.0.0.1", "port": dovecot.port, "tls": "none", "user": SHOP, "timeout": 10,
                     "folders": ["INBOX"], "sent_folder": "Sent"},
            "smtp": {"host": smtp.host, "port": smtp.port, "tls": "none", "user": SHOP, "timeout": 10}}


@pytest.fixture
def servers(monkeypatch):
    monkeypatch.setenv("REPLYDESK_SECRET_SHOP_MAIL", "shop-pw")
    with running_dovecot({"hello": "shop-pw", "alice": "alice-pw"}) as dovecot, running_smtp(dovecot) as smtp:
        yield dovecot, smtp


@pytest.fixture
def ws(tmp_path, servers) -> Workspace:
    dovecot, smtp = servers
    return Workspace(data_dir=tmp_path / "ws",
                     config=Config.model_validate({"accounts": [account(dovecot, smtp)], "sla": SLA}))


def corpus(name: str, our_message_id: str | None = None) -> bytes:
    """A corpus message as if it arrived now (its Date), naming our real reply where it names one."""
    raw = (CORPUS / name).read_bytes()
    if our_message_id:
        raw = raw.replace(FIXTURE_REPLY, our_message_id.encode())
    head, sep, body = raw.partition(b"\n\n")
    now = email.utils.formatdate(time.time() + 2).encode()  # after our reply left (whole seconds)
    return re.sub(rb"(?mi)^Date: [^\r\n]*", b"Date: " + now, head, count=1) + sep + body


def customer_mail(dovecot, body: str = "Where is my order #1234?", *, later: bool = False, **kw) -> str:
    message_id = kw.pop("message_id", "<q1@customer.example>")
    dovecot.deliver("hello", make_mail(subject=kw.pop("subject", "Where is my order?"), sender=f"Alice <{ALICE}>",
                                        body=body, message_id=message_id,
                                        date=time.time() + (5 if later else -600), **kw),
                    sender=ALICE)
    return message_id


def answered_conversation(ws: Workspace, dovecot) -> tuple[str, str, str]:
    """A customer mail, synced and answered: (conversation id, outbox key, our Message-ID)."""
    customer_mail(dovecot)
    sync_once(ws)
    db = ws.open_db()
    [row] = queries.inbox_page(db, queries.InboxFilter(statuses=None), 0, 10)
    key = outbox.queue_reply(db, row.id, "It left our warehouse yesterday.")
    assert sync_once(ws).sent == 1
    return row.id, key, outbox.get(db, key).remote_id


def next_reply_cycles(db, conv_id: str) -> list:
    result = slastate.evaluate_at(db, conv_id, db.now() + 60)  # the test mails are dated up to 5 s ahead
    return [m for m in result.history if m.metric == "next_reply"]


# -- bounces and auto-replies ---------------------------------------------------------------------

@pytest.mark.parametrize("bounce", ["bounce-postfix.eml", "bounce-exim.eml", "bounce-office365.eml",
                                    "bounce-amazon-ses.eml"])
def test_a_bounce_marks_our_reply_failed_and_starts_no_clock(ws, servers, bounce):
    dovecot, _ = servers
    conv_id, key, our_id = answered_conversation(ws, dovecot)
    dovecot.deliver("hello", corpus(bounce, our_id), sender="")
    sync_once(ws)
    db = ws.open_db()
    thread = queries.thread(db, conv_id)
    assert [(m.direction, bool(m.automatic)) for m in thread.messages] == [("in", False), ("out", False),
                                                                          ("in", True)]
    ours, report = thread.messages[1], thread.messages[2]
    assert ours.state == "failed" and ours.error.startswith("not delivered: ")
    assert "5." in ours.error  # the status code from the report
    assert report.automatic.startswith("bounce: ")
    assert next_reply_cycles(db, conv_id) == []  # the bounce is no customer waiting for an answer
    assert queries.get_row(db, conv_id).needs_reply is False
    assert outbox.get(db, key).state == "sent"  # it did leave; the next reply is not held back


def test_after_a_bounce_the_next_reply_still_goes_to_the_customer(ws, servers):
    """Office 365 threads its NDR under our reply (In-Reply-To): the next reply must still answer
    the customer, not postmaster@."""
    dovecot, _ = servers
    conv_id, _, our_id = answered_conversation(ws, dovecot)
    dovecot.deliver("hello", corpus("bounce-office365.eml", our_id), sender="")
    sync_once(ws)
    db = ws.open_db()
    outbox.queue_reply(db, conv_id, "Sorry, here is the tracking link again.")  # no question asked
    assert sync_once(ws).sent == 1
    last = email.message_from_bytes(dovecot.fetch_raw("alice")[-1], policy=policy.default)
    assert (str(last["To"]), str(last["In-Reply-To"])) == (ALICE, "<q1@customer.example>")


@pytest.mark.parametrize("robot", ["ooo-gmail-vacation.eml", "ooo-exchange.eml"])
def test_an_out_of_office_reply_starts_no_clock_and_wakes_nothing(ws, servers, robot):
    dovecot, _ = servers
    conv_id, _, our_id = answered_conversation(ws, dovecot)
    db = ws.open_db()
    from replydesk.storage import actions

    actions.resolve(db, [conv_id])
    dovecot.deliver("hello", corpus(robot, our_id), sender="x@robot.example")
    sync_once(ws)
    row = queries.get_row(db, conv_id)
    assert (row.status, row.needs_reply) == ("resolved", False)
    thread = queries.thread(db, conv_id)
    assert thread.messages[-1].automatic.startswith("auto-reply: ")
    assert next_reply_cycles(db, conv_id) == []
    [event] = [json.loads(r[0]) for r in db.conn.execute(
        "SELECT data FROM events WHERE conversation_id=? AND kind='automatic'", (conv_id,))]
    assert event["reason"].startswith("auto-reply: Auto-Submitted")


def test_a_human_answer_after_a_robot_still_restarts_the_clock(ws, servers):
    dovecot, _ = servers
    conv_id, _, our_id = answered_conversation(ws, dovecot)
    dovecot.deliver("hello", corpus("ooo-gmail-vacation.eml", our_id), sender="x@robot.example")
    customer_mail(dovecot, "Any news?", message_id="<q2@customer.example>", in_reply_to=our_id,
                  references=["<q1@customer.example>", our_id], later=True)
    sync_once(ws)
    db = ws.open_db()
    assert len(next_reply_cycles(db, conv_id)) == 1
    assert queries.get_row(db, conv_id).needs_reply is True


def test_a_newsletter_has_no_clock_no_report_and_a_reply_to_it_is_refused(ws, servers, tmp_path):
    dovecot, _ = servers
    dovecot.deliver("hello", corpus("newsletter-list.eml"), sender="bounces@packaging-supplies.example")
    customer_mail(dovecot)
    sync_once(ws)
    db = ws.open_db()
    rows = {r.customer: r for r in queries.inbox_page(db, queries.InboxFilter(), 0, 10)}
    news = rows["Packaging Supplies Weekly"]
    assert (news.sla_state, news.sla_due_at, news.needs_reply) == ("none", None, False)
    assert rows["Alice"].sla_due_at is not None
    report = make_report(db, ws.config.sla, None, db.now() + 1, None)
    assert report["groups"][0]["conversations"] == 1  # only Alice's
    with pytest.raises(outbox.AutomaticRecipient, match="bulk: Precedence: bulk"):
        outbox.queue_reply(db, news.id, "Thanks!")
    assert outbox.queue_reply(db, news.id, "Please unsubscribe us.", to_automatic=True)

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"accounts": [ws.config.accounts[0].model_dump(mode="json")]}))
    cli = [sys.executable, "-m", "replydesk.cli", "--data-dir", str(ws.data_dir), "--config", str(config),
           "reply", news.id, "--text", "Stop sending these"]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "automatic (bulk: Precedence: bulk)" in refused.stderr and "--force" in refused.stderr
    forced = subprocess.run([*cli, "--force"], capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0, forced.stderr


# -- the customer's words, wherever they stand --------------------------------------------------

def test_an_answer_under_the_quote_is_shown_searched_and_exported_whole(ws, servers):
    dovecot, _ = servers
    raw = corpus("thunderbird-bottom-posted.eml")
    dovecot.deliver("hello", raw, sender="ana.silva@posteo.example")
    sync_once(ws)
    db = ws.open_db()
    [row] = queries.inbox_page(db, queries.InboxFilter(), 0, 10)
    assert row.snippet == "Green, please. And could you gift-wrap it? It is a birthday present."
    assert [h.conversation_id for h in search.search(db, "gift-wrap")[0]] == [row.id]
    assert [h.conversation_id for h in search.search(db, "birthday present")[0]] == [row.id]
    [message] = queries.thread(db, row.id).messages
    kinds = [k for _, _, k in message.spans]
    assert kinds == ["quote", "signature"]
    body = email.message_from_bytes(raw, policy=policy.default).get_content().strip("\n")
    [record] = list(exchange.export_records(db))
    assert record["messages"][0]["text"] == body  # exactly as received, quote and signature included


# -- our References ----------------------------------------------------------------------------

def test_long_message_ids_survive_in_our_references(ws, servers):
    dovecot, _ = servers
    ses = ("<0100018d0f1e2d3c-4b5a6978-8796-4a5b-9c8d-7e6f5a4b3c2d-000000-0123456789abcdef"
           "@us-west-2.amazonses.example>")
    root = "<CAF4x9Jd1Qm2v8Zk3p7YtR0s+EwHn5u-a-very-long-root-id-from-a-ticketing-system-0123456789@mail.example>"
    assert len(ses) > 100 and len(root) > 100
    mine = f"<{'z' * 110}@customer.example>"
    # As a client that threads properly writes it: folded between ids (our test helper's stdlib
    # policy would encode them, the very bug under test).
    dovecot.deliver("hello", (
        f"From: Alice <{ALICE}>\r\nTo: {SHOP}\r\nSubject: Re: Wholesale prices\r\n"
        f"Date: {email.utils.formatdate(time.time() - 600)}\r\nMessage-ID: {mine}\r\n"
        f"In-Reply-To: {ses}\r\nReferences: {root}\r\n {ses}\r\n\r\nStill waiting\r\n").encode(), sender=ALICE)
    sync_once(ws)
    db = ws.open_db()
    [row] = queries.inbox_page(db, queries.InboxFilter(), 0, 10)
    outbox.queue_reply(db, row.id, "On its way.")
    assert sync_once(ws).sent == 1
    [raw] = dovecot.fetch_raw("alice")
    headers = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "=?" not in headers.split("References:")[1].split("\r\nSubject")[0]
    delivered = email.message_from_bytes(raw, policy=policy.default)
    assert delivered["References"].split() == [root, ses, mine]
    assert str(delivered["In-Reply-To"]) == mine
    assert all(len(line) <= 998 for line in headers.split("\r\n"))


# -- headers ---------------------------------------------------------------------------------------

def test_legacy_charset_headers_and_an_empty_subject(ws, servers):
    dovecot, _ = servers
    for name in ("raw-8bit-big5-subject.eml", "raw-8bit-koi8r-subject.eml"):
        dovecot.deliver("hello", corpus(name), sender="someone@mail.example")
    # The customer must be reachable through our SMTP sink: Grace writes from Alice's mailbox here.
    dovecot.deliver("hello", corpus("empty-subject.eml").replace(b"grace.okafor@mail.example", ALICE.encode()),
                    sender=ALICE)
    sync_once(ws)
    db = ws.open_db()
    rows = {r.customer: r for r in queries.inbox_page(db, queries.InboxFilter(), 0, 10)}
    assert rows["陳小姐"].subject == "訂單查詢：我的包裹還沒到"
    assert rows["Иван Петров"].subject == "Заказ 4521 не пришёл"
    outbox.queue_reply(db, rows["Grace Okafor"].id, "Yes, we ship to Lagos.")
    assert sync_once(ws).sent == 1
    sent = email.message_from_bytes(dovecot.fetch_raw("hello", "Sent")[-1], policy=policy.default)
    assert str(sent["Subject"]) == ""  # no subject, not a bare "Re:"


@pytest.mark.slow
def test_a_5_mb_hostile_header_costs_bounded_memory_in_a_real_sync(servers, tmp_path):
    """issue 18 item 4: header decoding is linear and capped. Measured as the peak RSS of a real
    ``replydesk sync --once`` process (its own child, waited for, so RUSAGE_CHILDREN is just it)."""
    dovecot, smtp = servers
    words = " ".join("=?utf-8?q?=C3=A9t=C3=A9?=" for _ in range(220_000))
    hostile = (f"From: Mallory <m@evil.example>\r\nTo: {SHOP}\r\nSubject: {words}\r\n"
               "Message-ID: <hostile@evil.example>\r\nDate: Tue, 02 Jan 2024 09:30:00 +0000\r\n\r\nhello\r\n").encode()
    assert len(hostile) > 5 * 1024 * 1024
    dovecot.deliver("hello", hostile, sender="m@evil.example")
    customer_mail(dovecot)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"accounts": [account(dovecot, smtp)]}))
    probe = textwrap.dedent("""
        import resource, subprocess, sys
        done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, repr(done.stderr[-500:]))
    """)
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "replydesk.cli", "--data-dir", str(tmp_path / "ws"),
           "--config", str(config), "sync", "--once"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env={**os.environ})
    code, peak_kb, stderr = out.stdout.split(" ", 2)
    assert code == "0", stderr
    print(f"sync --once with a 5 MB hostile header: peak RSS {int(peak_kb) // 1024} MB")
    assert int(peak_kb) < 200 * 1024, f"sync --once peaked at {int(peak_kb) // 1024} MB"
    db = Workspace(data_dir=tmp_path / "ws", config=Config.model_validate({"accounts": []})).open_db()
    subjects = {r[0]: json.loads(r[1]) for r in db.conn.execute("SELECT c.subject, m.meta FROM messages m "
                                                                 "JOIN conversations c ON c.id = m.conversation_id")}
    hostile_subject = next(s for s in subjects if s.startswith("été"))
    assert len(hostile_subject) < 2000
    assert any("only the first 32 KB were read" in w for w in subjects[hostile_subject]["warnings"])
    assert "Where is my order?" in subjects  # the rest of the mailbox synced as usual
