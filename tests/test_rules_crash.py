"""A rule's automatic reply leaves exactly once under restarts: ``replydesk sync`` with an
acknowledging rule, SIGKILLed again and again (and killing itself right after the platform accepted
a reply), while the demo's customers write every second and answer our acknowledgements.

The demo platform's ledger is the referee: every acknowledgement the rules queued is on it once,
no conversation got two within the day, and nothing the rules decided was lost or queued twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from test_reliability_crash import read_ledger, seed_workspace, start_sync

from replydesk.storage.db import open_database

CONFIG = """\
accounts:
  - provider: demo
    name: demo
    pace: {pace}           # a busy shop: a new customer message every second
    faults:
      fail: 0.1
      latency: 0.01
      lost_ack: 0.2
      crash_after_accept: {crash}
sync:
  retry_base: 0.05s
  retry_max: 0.5s
  send_retries: 1000
rules:
  - name: ack
    when: {{}}
    then:
      reply: {{saved: looking, max_age: 1d}}
"""
ACK = "Hi "  # the saved reply "looking" starts so


@pytest.mark.slow
def test_automatic_replies_leave_exactly_once_under_sigkills(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("REPLYDESK_CRASH_SEED", "7")))
    data = tmp_path / "ws"
    seed_workspace(data)  # the backlog, without rules: history, not triggers
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(crash=0.05, pace="1s"), encoding="utf-8")
    log = tmp_path / "sync.log"
    db = open_database(data)

    def unsettled() -> int:
        return db.conn.execute("SELECT count(*) FROM outbox WHERE state != 'sent'").fetchone()[0]

    def last_sync() -> float | None:
        return db.conn.execute("SELECT max(last_sync) FROM account_status").fetchone()[0]

    def at_work(proc: subprocess.Popen, before: float | None) -> None:
        """Until the run finished a poll of its own (or died): on a loaded machine a start takes
        seconds, and a kill timed from the start would often hit an engine that had not begun."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and last_sync() == before:
            time.sleep(0.05)

    kills = 0
    for _ in range(16):
        before = last_sync()
        proc = start_sync(data, config, log)
        at_work(proc, before)
        time.sleep(rng.uniform(0.6, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    # the last run: no faults and no new customers (their follow-ups still come), until all is sent:
    # two polls of its own done (what the earlier runs left is ingested and decided) and nothing unsent
    config.write_text(CONFIG.format(crash=0.0, pace="3600s"), encoding="utf-8")
    proc = start_sync(data, config, log)
    polls, seen = 0, last_sync()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (polls < 2 or unsettled()):
        if last_sync() != seen:
            polls, seen = polls + 1, last_sync()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)

    queued = {r[0]: r[1] for r in db.conn.execute(
        "SELECT key, conversation_id FROM outbox WHERE json_extract(payload, '$.automatic') = 'rule:ack'")}
    ledger = [e for e in read_ledger(data) if e["text"].startswith(ACK)]
    posted = Counter(e["key"] for e in ledger)
    per_conversation = Counter(e["conversation"] for e in ledger)
    decided = sum(1 for (raw,) in db.conn.execute("SELECT data FROM events WHERE kind='rule'")
                  if json.loads(raw)["replied"])
    print(f"\nrules crash test: kills={kills} acknowledgements={len(queued)} posted={len(ledger)} "
          f"conversations={len(per_conversation)} unsettled={unsettled()}")
    assert kills >= 8 and len(queued) >= 5
    assert unsettled() == 0
    assert set(posted) == set(queued)  # every acknowledgement the rules queued left, and no other
    assert max(posted.values()) == 1  # none twice
    assert max(per_conversation.values()) == 1  # one per conversation (and rule) a day
    assert decided == len(queued)  # each decision queued exactly one reply
    db.close()
