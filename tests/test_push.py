"""Pushed payloads (webhook bodies): verified, committed durably before anything parses them, then
ingested through the same path as a fetch. The demo platform's push mode plays the platform (its
WhatsApp customers arrive only as signed bodies); the receiver's part is ``replydesk.push``. Real
SQLite files throughout, and a real process killed right after it acknowledged a body.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from replydesk import push
from replydesk.config import Config
from replydesk.providers.base import PushRejected
from replydesk.providers.demo import SIGNATURE_HEADER, DemoOptions, DemoProvider
from replydesk.storage import pushes, queries
from replydesk.storage.doctor import check
from replydesk.workspace import Workspace
from support import FIXED_NOW, REPO, Clock


def pushed_config(push_mode: bool = True) -> Config:
    return Config(accounts=[DemoOptions(name="demo", backlog=120, push=push_mode)])


class Site:
    """A demo workspace in push mode, and the platform side that POSTs to it."""

    def __init__(self, path: Path, push_mode: bool = True) -> None:
        self.clock = Clock()
        self.ws = Workspace(path, pushed_config(push_mode), clock=self.clock)
        self.db = self.ws.open_db()
        self.engine = self.ws.engine(self.db)
        self.demo: DemoProvider = self.engine.accounts["demo"].provider

    def run(self) -> None:
        asyncio.run(self.engine.run_once())

    def platform_ids(self, platform: str) -> set[str]:
        return {r[0] for r in self.db.conn.execute(
            "SELECT m.native_id FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.platform=? AND m.direction='in'", (platform,))}


@pytest.fixture
def site(tmp_path: Path):
    s = Site(tmp_path / "ws")
    yield s
    s.db.close()


def test_pushed_customers_arrive_through_the_same_ingest_as_polled_ones(tmp_path: Path) -> None:
    pushed = Site(tmp_path / "push")
    polled = Site(tmp_path / "poll", push_mode=False)
    try:
        pushed.run()
        polled.run()
        assert pushed.platform_ids("whatsapp") == set()  # no polling API: nothing by fetch
        bodies = pushed.demo.webhook_bodies(None, pushed.clock.now)
        assert bodies and all(h[SIGNATURE_HEADER].startswith("sha256=") for h, _ in bodies)
        for headers, body in bodies:
            assert push.receive(pushed.db, pushed.demo, headers, body).fresh
        assert pushed.platform_ids("whatsapp") == set()  # stored, not yet parsed
        pushed.run()
        assert pushed.platform_ids("whatsapp") == polled.platform_ids("whatsapp") != set()
        assert pushed.platform_ids("email") == polled.platform_ids("email")
        wa = queries.inbox_page(pushed.db, queries.InboxFilter(platforms=("whatsapp",)), 0, 1)[0]
        assert wa.reply_windows  # a pushed message opens the reply window as a polled one does
        assert pushes.summary(pushed.db)["counts"] == {"received": 0, "ingested": len(bodies), "unmappable": 0}
        # later messages, pushed as they happen
        pushed.clock.advance(3600)
        later = pushed.demo.webhook_bodies(pushed.clock.now - 3600, pushed.clock.now)
        assert later  # the seeded shop gets WhatsApp messages within the hour
        for headers, body in later:
            push.receive(pushed.db, pushed.demo, headers, body)
        before = len(pushed.platform_ids("whatsapp"))
        pushed.run()
        assert len(pushed.platform_ids("whatsapp")) > before
    finally:
        pushed.db.close()
        polled.db.close()


def test_a_body_with_a_wrong_missing_or_changed_signature_stores_nothing(site: Site) -> None:
    headers, body = site.demo.webhook_bodies(None, site.clock.now)[0]
    wrong = {**headers, SIGNATURE_HEADER: "sha256=" + "0" * 64}
    missing = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
    changed = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]  # one byte of the body, flipped
    for bad_headers, bad_body, why in ((wrong, body, "does not match"), (missing, body, "no X-Hub-Signature-256"),
                                       (headers, changed, "does not match")):
        with pytest.raises(PushRejected, match=why):
            push.receive(site.db, site.demo, bad_headers, bad_body)
    assert pushes.summary(site.db)["counts"] == {"received": 0, "ingested": 0, "unmappable": 0}
    # header names are case-insensitive, as HTTP's are
    upper = {k.title(): v for k, v in headers.items()}
    assert push.receive(site.db, site.demo, upper, body).fresh


def test_a_redelivered_body_is_stored_once(site: Site) -> None:
    headers, body = site.demo.webhook_bodies(None, site.clock.now)[0]
    receipts = [push.receive(site.db, site.demo, headers, body) for _ in range(3)]
    assert [r.fresh for r in receipts] == [True, False, False]
    assert len({r.body_id for r in receipts}) == 1
    summary = pushes.summary(site.db)
    assert summary["counts"]["received"] == 1 and summary["redeliveries"] == 2
    site.run()
    n = len(site.platform_ids("whatsapp"))
    push.receive(site.db, site.demo, headers, body)  # a replay after it was ingested
    site.run()
    assert len(site.platform_ids("whatsapp")) == n and pushes.summary(site.db)["counts"]["ingested"] == 1


def test_a_body_too_large_is_refused_whole(site: Site) -> None:
    body = b"{" + b" " * pushes.MAX_BODY + b"}"
    with pytest.raises(push.BodyTooLarge):
        push.receive(site.db, site.demo, {SIGNATURE_HEADER: site.demo.sign(body)}, body)
    assert pushes.summary(site.db)["counts"]["received"] == 0


def test_a_body_we_cannot_map_is_kept_with_its_reason_and_shown_by_doctor(site: Site) -> None:
    def signed(body: bytes) -> dict[str, str]:
        return {"content-type": "application/json", SIGNATURE_HEADER: site.demo.sign(body)}

    junk = b"\xff\xfe not json at all"
    other = json.dumps({"object": "page", "entry": []}).encode()
    events = json.loads(site.demo.webhook_bodies(None, site.clock.now)[0][1])
    good_event = events["entry"][0]["messaging"][0]
    hostile = {**good_event, "message": {**good_event["message"], "mid": "x1", "timestamp": "yesterday"}}
    mixed = json.dumps({"object": "demo_shop", "entry": [{"id": "demo", "messaging": [hostile, good_event]}]}).encode()
    only_bad = json.dumps({"object": "demo_shop", "entry": [{"id": "demo", "messaging": [hostile]}]}).encode()
    for body in (junk, other, mixed, only_bad):
        push.receive(site.db, site.demo, signed(body), body)
    site.run()
    summary = pushes.summary(site.db)
    assert summary["counts"] == {"received": 0, "ingested": 1, "unmappable": 3}
    reasons = [u["reason"] for u in reversed(summary["unmappable"])]
    assert reasons[0].startswith("UnicodeDecodeError") or reasons[0].startswith("JSONDecodeError")
    assert "not a demo webhook body" in reasons[1]
    assert reasons[2].startswith("every item was rejected: unmappable event: ValueError")
    assert good_event["message"]["mid"] in site.platform_ids("whatsapp")  # one bad event never stops the others
    stored = pushes.get(site.db, summary["unmappable"][-1]["id"])
    assert stored.body == junk  # kept exactly as received
    site.db.close()
    report = check(site.ws.data_dir)
    site.db = site.ws.open_db()
    assert any("3 unmappable" in line and "doctor" not in line for line in report["findings"])


def test_a_crash_right_after_the_acknowledgement_loses_nothing(site: Site, tmp_path: Path) -> None:
    """A receiver process stores a body, says "200", and is killed at once (SIGKILL, no clean-up):
    the body is in the store, and the next engine pass ingests it."""
    headers, body = site.demo.webhook_bodies(None, site.clock.now)[0]
    (tmp_path / "body.bin").write_bytes(body)
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    script = f"""
import json, os, signal, sys
from pathlib import Path
from replydesk import push
from replydesk.config import Config
from replydesk.providers.demo import DemoOptions
from replydesk.workspace import Workspace
ws = Workspace(Path({str(site.ws.data_dir)!r}), Config(accounts=[DemoOptions(name="demo", backlog=120, push=True)]))
db = ws.open_db()
provider = ws.engine(db).accounts["demo"].provider
receipt = push.receive(db, provider, json.loads(Path({str(tmp_path / 'headers.json')!r}).read_text()),
                       Path({str(tmp_path / 'body.bin')!r}).read_bytes())
print("200", receipt.body_id, flush=True)  # the acknowledgement
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.startswith("200 "), proc.stderr
    body_id = int(proc.stdout.split()[1])
    stored = pushes.get(site.db, body_id)
    assert stored is not None and stored.state == "received" and stored.body == body
    site.run()
    assert pushes.get(site.db, body_id).state == "ingested"
    expected = {e["message"]["mid"] for e in json.loads(body)["entry"][0]["messaging"]
                if not e["message"].get("is_echo")}
    assert expected <= site.platform_ids("whatsapp")


def test_providers_without_push_refuse_every_body(tmp_path: Path) -> None:
    from replydesk.providers.telegram import TelegramProvider

    telegram = TelegramProvider("tg", {"api_base": "https://api.telegram.test"}, lambda: "t")
    with pytest.raises(PushRejected, match="takes no pushed payloads"):
        telegram.verify_push({}, b"{}")
    assert not telegram.capabilities.accepts_push


def test_store_is_synced_before_it_returns(site: Site) -> None:
    """The body's commit runs with synchronous=FULL (the workspace's NORMAL may lose the last commits
    on a power cut, and the platform sends nothing again once we said 200), then NORMAL again."""
    headers, body = site.demo.webhook_bodies(None, FIXED_NOW)[0]
    real = site.db.conn
    calls: list[str] = []

    class Recording:
        def execute(self, sql: str, *args: object):  # noqa: ANN202 - the connection's own
            calls.append(" ".join(sql.split())[:40])
            return real.execute(sql, *args)

        def commit(self) -> None:
            calls.append("COMMIT")
            real.commit()

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    site.db.conn = Recording()  # type: ignore[assignment]
    try:
        push.receive(site.db, site.demo, headers, body)
    finally:
        site.db.conn = real
    assert calls[0] == "PRAGMA synchronous = FULL" and calls[-1] == "PRAGMA synchronous = NORMAL"
    assert calls.index("COMMIT") == len(calls) - 2
    assert real.execute("PRAGMA synchronous").fetchone()[0] == 1
