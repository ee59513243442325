"""The webhook receiver, for real: uvicorn on loopback, real HTTP, real SQLite files, and a receiver
process killed with SIGKILL right after it acknowledged a body.

What it must hold: Meta's verification handshake; every POST checked against X-Hub-Signature-256
before anything is parsed (valid, wrong, missing, one byte changed); bodies over the limit refused;
a verified body committed before the 200 and stored once however often it comes; a body nobody can
map kept with its reason and shown by doctor; one URL for every account of one app, routed by the
ids in the body; an answer while the engine holds the workspace's write lock; and everything the
receiver kept reaching the cache through the engine.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from meta_support import (
    APP_SECRET,
    PHONE_ID,
    VERIFY_TOKEN,
    graph,
    meta_secrets,
    needs_whatsapp_recordings,
    raw,
    recorded,
    signed,
    whatsapp_account,
    workspace_config,
)
from replydesk import secrets, webhooks
from replydesk.config import load_config
from replydesk.storage import pushes, spool
from replydesk.storage.doctor import check
from replydesk.workspace import Workspace
from support import REPO, Clock

pytestmark = needs_whatsapp_recordings

PAGE_ID = "100000000000001"
ACCOUNTS = [whatsapp_account("wa"), whatsapp_account("wa-other"),
            {"name": "fb", "provider": "facebook", "page_id": PAGE_ID}]


class Running:
    """A workspace, its config file and a receiver serving it on a free loopback port."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accounts: list[dict[str, Any]],
                 **settings: Any) -> None:
        self.env = meta_secrets(monkeypatch, *(a["name"] for a in accounts))
        self.data_dir = tmp_path / "ws"
        self.config_path = workspace_config(tmp_path / "config.yaml", accounts, **settings)
        self.config, _ = load_config(self.config_path)
        self.receiver = webhooks.Receiver(webhooks.build_app(self.config, self.data_dir), "127.0.0.1", 0)
        self.receiver.start()
        self.base = f"http://127.0.0.1:{self.receiver.port}/webhooks"
        self.http = httpx.Client(timeout=30)

    def post(self, name: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(f"{self.base}/{name}", content=body, headers=signed(body) if headers is None else headers)

    def spooled(self) -> list[spool.SpooledBody]:
        store = spool.Spool(self.data_dir)
        try:
            return [b for name in ("wa", "wa-other", "fb") for b in store.waiting(name)]
        finally:
            store.close()

    def flush(self) -> None:
        """Write the refusal counters now (the receiver writes them at most once a second)."""
        with self.receiver.app.lock:
            self.receiver.app.spool.flush_refusals(force=True)

    def close(self) -> None:
        self.http.close()
        self.receiver.stop()


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = Running(tmp_path, monkeypatch, ACCOUNTS)
    yield site
    site.close()


def engine_pass(site: Running, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Workspace:
    """One pass of the sync engine on the receiver's workspace (the Graph API faked)."""
    import asyncio

    graph(monkeypatch)
    ws = Workspace(site.data_dir, site.config, clock=clock)
    db = ws.open_db()
    try:
        asyncio.run(ws.engine(db).run_once())
    finally:
        db.close()
    return ws


def serve_webhooks(data_dir: Path, config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``replydesk webhooks serve`` on a free port as its own process (its first line says where)."""
    return subprocess.Popen([sys.executable, "-m", "replydesk.cli", "--data-dir", str(data_dir), "--config",
                             str(config), "webhooks", "serve", "--port", "0"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_verification_handshake_echoes_the_challenge_only_for_our_token(running: Running) -> None:
    ok = running.http.get(f"{running.base}/meta", params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                          "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    for params in ({"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
                   {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
                   {"hub.challenge": "1"}):
        refused = running.http.get(f"{running.base}/meta", params=params)
        assert refused.status_code == 403 and "1" not in refused.text
    assert running.http.get(f"{running.base}/nobody", params={"hub.mode": "subscribe"}).status_code == 404


def test_every_post_is_checked_against_its_signature_before_anything_is_stored(running: Running) -> None:
    body = raw(recorded("message.json")["text"])
    changed = body.replace(b"Body Text", b"Body Texu")  # one byte
    assert len(changed) == len(body) and changed != body
    answers = [running.post("wa", body, {"content-type": "application/json"}),           # missing
               running.post("wa", body, signed(body, "not-the-app-secret")),             # wrong
               running.post("wa", changed, signed(body)),                                # body changed
               running.post("meta", body, {"x-hub-signature-256": "sha256=zz"}),         # garbage
               running.post("wa", body, {"x-hub-signature-256": signed(body)["x-hub-signature-256"].upper()})]
    assert [a.status_code for a in answers] == [401, 403, 403, 403, 403]
    assert running.spooled() == []  # nothing of any of them was kept
    good = running.post("wa", body)
    assert (good.status_code, good.text) == (200, "EVENT_RECEIVED")
    [kept] = running.spooled()
    assert kept.body == body and kept.account == "wa"  # byte for byte, as received
    running.flush()
    store = spool.Spool(running.data_dir)
    try:
        refusals = store.summary()["refusals"]
    finally:
        store.close()
    assert refusals["no signature"]["count"] == 1 and refusals["bad signature"]["count"] == 4


def test_a_body_over_the_limit_is_refused_and_nothing_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = Running(tmp_path, monkeypatch, ACCOUNTS, max_body_bytes=4096)
    try:
        body = raw({"object": "whatsapp_business_account", "entry": [], "pad": "x" * 5000})
        assert site.post("wa", body).status_code == 413
        chunked = site.http.post(f"{site.base}/wa", content=iter([body[:3000], body[3000:]]), headers=signed(body))
        assert chunked.status_code == 413  # no Content-Length: cut off while reading, never buffered whole
        assert site.spooled() == []
    finally:
        site.close()


def test_the_same_body_three_times_is_stored_once(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    body = raw(recorded("message.json")["text"])
    assert [running.post("wa", body).status_code for _ in range(3)] == [200, 200, 200]
    assert [o.stored[0][2] for o in running.receiver.app.outcomes] == [True, False, False]
    [kept] = running.spooled()
    assert kept.deliveries == 3
    ws = engine_pass(running, monkeypatch, Clock(1697043223.0 + 60))
    db = ws.open_db()
    try:
        assert db.conn.execute("SELECT count(*) FROM messages WHERE account='wa'").fetchone()[0] == 1
        summary = pushes.summary(db)
        assert summary["counts"]["ingested"] == 1 and summary["redeliveries"] == 2
        # a replay after it was ingested: counted, stored nowhere twice
        assert running.post("wa", body).status_code == 200
    finally:
        db.close()
    engine_pass(running, monkeypatch, Clock(1697043223.0 + 120))
    db = ws.open_db()
    try:
        assert db.conn.execute("SELECT count(*) FROM messages WHERE account='wa'").fetchone()[0] == 1
        assert db.conn.execute("SELECT count(*), sum(deliveries) FROM pushed_bodies").fetchone()[:] == (1, 4)
        assert running.spooled() == []
    finally:
        db.close()


def test_one_url_for_every_account_of_the_app_routes_by_the_ids_in_the_body(running: Running) -> None:
    wa = raw(recorded("message.json")["text"])
    page = raw({"object": "page", "entry": [{"id": PAGE_ID, "time": 1697043223000, "messaging": [
        {"sender": {"id": "6000000000000001"}, "recipient": {"id": PAGE_ID}, "timestamp": 1697043223000,
         "message": {"mid": "m_abc", "text": "Are you open on Sunday?"}}]}]})
    assert running.post("meta", wa).status_code == 200
    assert running.post("meta", page).status_code == 200
    stored = {(b.account, b.body) for b in running.spooled()}
    # the WhatsApp body went to both accounts of that number, the Page's only to the Page
    assert stored == {("wa", wa), ("wa-other", wa), ("fb", page)}


def test_every_recorded_body_posted_over_loopback_reaches_the_thread(running: Running,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded inbound cases and statuses, as Meta would POST them, through the receiver and the
    engine into the cache; the group status (for another number) is kept with its reason."""
    cases = recorded("message.json")
    for body in cases.values():
        assert running.post("wa", raw(body)).status_code == 200
    for body in recorded("message_status.json").values():
        assert running.post("wa", raw(body)).status_code == 200
    ws = engine_pass(running, monkeypatch, Clock(1697045000.0 + 60))
    db = ws.open_db()
    try:
        ids = {r[0] for r in db.conn.execute("SELECT native_id FROM messages WHERE account='wa'")}
        expected = {m["id"] for body in cases.values()
                    for m in body["entry"][0]["changes"][0]["value"]["messages"]}
        assert ids == expected  # the recorded ids repeat across cases: each message once
        summary = pushes.summary(db)
        assert summary["counts"]["received"] == 0
        [unmapped] = summary["unmappable"]
        assert "for phone number '<BUSINESS_PHONE_NUMBER_ID>', not this account's" in unmapped["reason"]
    finally:
        db.close()
    report = check(ws.data_dir)
    assert any("1 unmappable" in line for line in report["findings"])
    assert any(line.startswith("webhook receiver: last body received 20") for line in report["findings"])


def test_a_body_that_verifies_but_cannot_be_mapped_is_kept_and_shown_by_doctor(
        running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    junk = b'{"object": "whatsapp_business_account", "entry": "surprise"}'
    assert running.post("wa", junk).status_code == 200
    bad = running.post("wa", b"\x00\x01 nope", {"x-hub-signature-256": "sha256=" + "0" * 64})
    assert bad.status_code == 403
    running.flush()
    ws = engine_pass(running, monkeypatch, Clock())
    report = check(ws.data_dir)
    lines = report["findings"]
    assert any("unmappable webhook body" in line and "has no 'entry' list" in line for line in lines)
    assert any("refused 1 request(s): bad signature" in line and "app secret" in line for line in lines)
    db = ws.open_db()
    try:
        assert pushes.get(db, 1).body == junk  # kept exactly as received
    finally:
        db.close()


def test_the_receiver_answers_while_the_engine_holds_the_workspace_write_lock(
        running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine may be in a long ingest: the receiver never waits for the workspace database."""
    ws = Workspace(running.data_dir, running.config, clock=Clock())
    db = ws.open_db()
    body = raw(recorded("message.json")["text"])
    try:
        db.conn.execute("BEGIN IMMEDIATE")  # the engine's write lock, held for as long as this test likes
        answer = running.post("wa", body)
        assert answer.status_code == 200  # answered while the lock is still held
        assert db.conn.in_transaction
        db.conn.rollback()
    finally:
        db.close()
    assert [b.body for b in running.spooled()] == [body]


def test_a_receiver_killed_right_after_its_200_has_the_body_in_its_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``replydesk webhooks serve`` as its own process: a body is acknowledged, the process gets
    SIGKILL at once (no clean-up of any kind), and the engine still ingests the body afterwards."""
    env = {**os.environ, **meta_secrets(monkeypatch, "wa"), "PYTHONUNBUFFERED": "1"}
    data_dir = tmp_path / "ws"
    config = workspace_config(tmp_path / "config.yaml", [whatsapp_account("wa")])
    proc = serve_webhooks(data_dir, config, env)
    try:
        line = proc.stdout.readline()
        assert "receiving webhooks for wa on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() else line
        base = line.split(" on ", 1)[1].split("/webhooks", 1)[0]
        body = raw(recorded("message.json")["voice"])
        answer = httpx.post(f"{base}/webhooks/meta", content=body, headers=signed(body), timeout=30)
        assert answer.status_code == 200
        proc.send_signal(signal.SIGKILL)  # the moment the 200 is in
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    store = spool.Spool(data_dir)
    try:
        [kept] = store.waiting("wa")
        assert kept.body == body
    finally:
        store.close()
    site = type("Site", (), {"data_dir": data_dir, "config": load_config(config)[0]})()
    ws = engine_pass(site, monkeypatch, Clock(1697043473.0 + 60))
    db = ws.open_db()
    try:
        assert db.conn.execute("SELECT text FROM messages WHERE account='wa'").fetchone()[0] == "[voice message]"
    finally:
        db.close()


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, **meta_secrets(monkeypatch, "wa"), "PYTHONUNBUFFERED": "1"}
    config = workspace_config(tmp_path / "config.yaml", [whatsapp_account("wa")])
    proc = serve_webhooks(tmp_path / "ws", config, env)
    try:
        assert "receiving webhooks" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip().endswith("stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


async def test_the_receiver_runs_inside_sync_when_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``webhooks.enabled``: ``replydesk sync`` serves the receiver on its own thread, and a body
    posted to it shows up in the cache without any other process."""
    env = {**os.environ, **meta_secrets(monkeypatch, "wa"), "PYTHONUNBUFFERED": "1"}
    config = workspace_config(tmp_path / "config.yaml", [whatsapp_account("wa")], enabled=True)
    # the engine's hourly template refresh goes to a port nobody listens on: it fails quietly
    text = config.read_text().replace("provider: whatsapp", "provider: whatsapp\n  api_base: http://127.0.0.1:9")
    config.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "replydesk.cli", "--data-dir", str(tmp_path / "ws"), "--config",
                             str(config), "sync"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "receiving webhooks on http://127.0.0.1:" in line, line + (proc.stderr.read() if proc.poll() else "")
        base = line.split(" on ", 1)[1].split("/webhooks", 1)[0]
        body = copy.deepcopy(recorded("message.json")["text"])
        body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "1795428000"
        data = raw(body)
        assert httpx.post(f"{base}/webhooks/wa", content=data, headers=signed(data), timeout=30).status_code == 200
        ws = Workspace(tmp_path / "ws", load_config(config)[0])
        for _ in range(600):  # a bound on rounds, not a duration: stop as soon as it is there
            db = ws.open_db()
            try:
                found = db.conn.execute("SELECT text FROM messages WHERE account='wa'").fetchall()
            finally:
                db.close()
            if found:
                break
            time.sleep(0.05)
        assert [r[0] for r in found] == ["Body Text"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)


def test_secrets_for_the_receiver_come_from_the_keyring_never_the_config(file_keyring: Any) -> None:
    secrets.store(webhooks.VERIFY_TOKEN_ENTRY, "from-the-keyring")
    app = webhooks.WebhookApp({}, spool=None)  # type: ignore[arg-type]
    assert app.handshake(b"hub.mode=subscribe&hub.verify_token=from-the-keyring&hub.challenge=42") == (200, b"42")
    assert app.handshake(b"hub.mode=subscribe&hub.verify_token=from-the-keyring&hub.challenge=%1b[2J")[0] == 400
    assert APP_SECRET not in (REPO / "config.example.yaml").read_text() and PHONE_ID


def test_serve_says_at_start_what_will_make_metas_requests_fail(tmp_path: Path) -> None:
    """No verify token yet and an account without its app secret: said on start, not left for the
    user to discover as a failed subscription in Meta's dashboard; no secret is printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYDESK_SECRET_")}
    env.update({secrets.env_name("wa"): "EAAG-token", secrets.env_name("fb"): "EAAG-token",
                secrets.env_name("fb:app-secret"): APP_SECRET, "PYTHONUNBUFFERED": "1",
                "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    config = workspace_config(tmp_path / "config.yaml", [whatsapp_account("wa"), ACCOUNTS[2]])
    proc = serve_webhooks(tmp_path / "ws", config, env)
    try:
        assert "receiving webhooks" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert "no verify token" in err and "replydesk webhooks token" in err
        assert "wa: no app secret" in err and "replydesk login wa" in err
        assert "fb: no app secret" not in err and APP_SECRET not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
