"""The maintained inbox counters agree with a plain COUNT after any sequence of writes.

inbox_count, position_of and deep inbox pages read counters that triggers keep (schema migration 9). Every write
path goes through the real storage functions here: ingest, triage actions, status changes, the SLA
sweep after the clock moves, imports, sent replies and a policy change re-evaluating everything.
After each sequence, every view's count, every page and every conversation's position must equal
what a plain query over the conversations says, and the counter tables must equal a fresh GROUP BY.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replydesk.config import Config, parse_config
from replydesk.model import Contact, FetchResult, IncomingMessage, iso
from replydesk.sla import SlaEngine
from replydesk.storage import actions, exchange, ingest, outbox, queries, schema, slastate
from replydesk.storage.db import open_database
from replydesk.storage.queries import ORDER, InboxFilter
from support import FIXED_NOW, Clock

ACCOUNTS = (("tg", "telegram", "dm"), ("ma", "mastodon", "mention"), ("mail", "email", "email"))
STRICT_SLA = parse_config(
    "sla:\n  policies:\n    - name: all\n      first_reply: {target: 5m, warn_before: 2m}\n"
    "      resolution: {target: 1h}\n",
    Path("strict.yaml"),
).sla

FILTERS = [
    InboxFilter(),
    InboxFilter(statuses=None),
    InboxFilter(statuses=("resolved",)),
    InboxFilter(statuses=("snoozed", "pending")),
    InboxFilter(statuses=None, sla_states=("breached",)),
    InboxFilter(sla_states=("warning", "ok")),
    InboxFilter(statuses=None, assignee="me"),
    InboxFilter(assignee=""),
    InboxFilter(statuses=None, kinds=("mention",)),
    InboxFilter(escalated=True),
    InboxFilter(needs_reply=True),
    InboxFilter(statuses=None, platforms=("email",)),  # not kept per bucket: the walk
    InboxFilter(accounts=("tg",), needs_reply=False),
    InboxFilter(statuses=None, tags=("refund",)),       # through the tag index
    InboxFilter(listening=True),                         # the Listening view
    InboxFilter(statuses=None, listening=None),          # both
    InboxFilter(listening=True, listening_queries=("brand",)),  # one query: not kept per cell
]

conv_no = st.integers(0, 9)
ops = st.one_of(
    st.tuples(st.just("ingest"), st.integers(0, 14), st.sampled_from(["in", "in", "out"]), st.integers(0, 40 * 86400),
              st.sampled_from(["Amani", "Grace Okafor", ""])),
    st.tuples(st.just("tag"), st.integers(0, 14), st.sampled_from(["refund", "vip"])),
    st.tuples(st.just("untag"), conv_no, st.sampled_from(["refund", "vip"])),
    st.tuples(st.just("assign"), conv_no, st.sampled_from([None, "me", "sam"])),
    st.tuples(st.just("escalate"), conv_no),
    st.tuples(st.just("status"), conv_no, st.sampled_from(["open", "pending", "snoozed", "resolved"])),
    st.tuples(st.just("sweep"), st.sampled_from([30, 600, 3600, 86400, 3 * 86400])),
    st.tuples(st.just("import"), conv_no, st.sampled_from(["open", "resolved", "pending"]),
              st.sampled_from([None, "", "me"]), st.booleans()),
    st.tuples(st.just("reply"), st.integers(0, 14)),  # answering a listening match joins it to the inbox
    st.tuples(st.just("policy"), st.booleans()),
    st.tuples(st.just("listen"), st.integers(5, 14), st.integers(0, 40 * 86400), st.sampled_from(["brand", "rival"])),
)


class Shop:
    def __init__(self, path: Path) -> None:
        self.clock = Clock()
        self.db = open_database(path, sla=SlaEngine(Config().sla), clock=self.clock)
        self.n = 0

    def conv(self, i: int) -> tuple[str, str, str, str]:
        account, platform, kind = ACCOUNTS[i % len(ACCOUNTS)]
        return account, platform, kind, f"{account}:c{i}"

    def apply(self, op: tuple) -> None:
        db, name = self.db, op[0]
        exists = lambda conv_id: db.conn.execute(  # noqa: E731
            "SELECT 1 FROM conversations WHERE id=?", (conv_id,)).fetchone() is not None
        if name == "ingest":
            _, i, direction, age, who = op
            account, platform, kind, _ = self.conv(i)
            self.n += 1
            msg = IncomingMessage(native_id=f"m{self.n}", conversation_native_id=f"c{i}", platform=platform,
                                  kind=kind, contact=Contact(f"u{i % 4}", who, f"@u{i % 4}"), text=f"hello {self.n}",
                                  created_at=self.clock.now - age, direction=direction)
            ingest.ingest(db, account, [FetchResult(messages=[msg], cursor={})])
            return
        if name == "listen":  # a post found by listening: a new conversation waits, an inbox one takes it
            _, i, age, query = op
            account, platform, kind, _ = self.conv(i)
            self.n += 1
            msg = IncomingMessage(native_id=f"m{self.n}", conversation_native_id=f"c{i}", platform=platform,
                                  kind=kind, contact=Contact(f"u{i % 4}", "Fan", f"@u{i % 4}"), text=f"heard {self.n}",
                                  created_at=self.clock.now - age)
            ingest.ingest(db, account, [FetchResult(messages=[msg], cursor={}, listening=query)])
            return
        if name in ("sweep", "policy"):
            if name == "sweep":
                self.clock.advance(op[1])
                actions.wake_snoozed(db)
                with db.transaction():
                    slastate.refresh(db, slastate.due_conversations(db, db.now()))
            else:
                db.sla = SlaEngine(STRICT_SLA if op[1] else Config().sla)
                slastate.apply_policy_changes(db)
            return
        conv_id = self.conv(op[1])[3]
        if name == "import":
            _, i, status, assignee, refund = op
            account, platform, kind, conv_id = self.conv(i)
            self.n += 1
            record = {"id": conv_id, "account": account, "platform": platform, "kind": kind,
                      "customer": {"id": f"{account}:u{i % 4}", "name": "Imported Name", "handle": f"@u{i % 4}"},
                      "status": status, "assignee": assignee, "tags": ["refund"] if refund else [],
                      "messages": [{"id": f"{account}:imp{self.n}", "direction": "in", "text": "from a file",
                                    "created_at": iso(self.clock.now - 7200)}]}
            exchange.import_records(db, [json.dumps(record)])
            return
        if not exists(conv_id):
            return
        if name == "tag":
            actions.tag(db, [conv_id], [op[2]])
        elif name == "untag":
            actions.untag(db, [conv_id], [op[2]])
        elif name == "assign":
            actions.assign(db, [conv_id], op[2])
        elif name == "escalate":
            actions.escalate(db, [conv_id])
        elif name == "status":
            until = self.clock.now + 3600 if op[2] == "snoozed" else None
            actions.set_status(db, [conv_id], op[2], until=until)
        elif name == "reply":
            key = outbox.queue_reply(db, conv_id, "thanks!")
            item = outbox.mark_sending(db, key)
            if item is not None:
                outbox.mark_sent(db, key, f"remote-{key}", self.clock.now)


def _plain_ids(db, f: InboxFilter) -> list[str]:
    where, params = queries._where(f)
    return [r[0] for r in db.conn.execute(f"SELECT c.id FROM conversations c{where} ORDER BY {ORDER}", params)]


def check(db) -> None:
    from replydesk.storage import doctor

    assert doctor.counters_consistent(db)  # both tables equal a fresh GROUP BY of the conversations
    all_ids = [r[0] for r in db.conn.execute("SELECT id FROM conversations")]
    for f in FILTERS:
        ids = _plain_ids(db, f)
        assert queries.inbox_count(db, f) == len(ids), f
        for offset in range(0, len(ids) + 2, 3):  # pages anywhere, including past the end
            assert [r.id for r in queries.inbox_page(db, f, offset, 4)] == ids[offset:offset + 4], (f, offset)
        where = {conv_id: n for n, conv_id in enumerate(ids)}
        for conv_id in all_ids:
            assert queries.position_of(db, f, conv_id) == where.get(conv_id), (f, conv_id)
    counts = queries.counts(db)
    assert counts.open == len(_plain_ids(db, InboxFilter()))
    assert counts.listening == len(_plain_ids(db, InboxFilter(listening=True)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ops, min_size=1, max_size=30))
def test_counters_agree_with_a_plain_count_after_any_writes(tmp_path_factory, sequence) -> None:
    shop = Shop(tmp_path_factory.mktemp("counts"))
    # Tiny views are walked in production (WALK_BELOW); here every view goes through the buckets.
    with mock.patch.object(queries, "WALK_BELOW", -1):
        _run_and_check(shop, sequence)


def _run_and_check(shop: Shop, sequence: list) -> None:
    try:
        for i in range(10):  # a starting inbox over every account
            shop.apply(("ingest", i, "in", i * 7 * 3600, "Amani"))
        for op in sequence:
            shop.apply(op)
        check(shop.db)
    finally:
        shop.db.close()


def test_the_bucket_order_follows_the_inbox_order(tmp_path) -> None:
    """The property every position relies on: walking the inbox in order, buckets never go down,
    including rows without a deadline (sort_due = NO_DUE), escalated first, and absurd dates."""
    db = open_database(tmp_path, clock=lambda: FIXED_NOW)
    rows = [(FIXED_NOW - 86400 * 400, 0, FIXED_NOW), (FIXED_NOW - 1, 0, FIXED_NOW), (FIXED_NOW, 1, FIXED_NOW),
            (-86400 * 3.5, 0, 0.0), (schema.NO_DUE, 1, FIXED_NOW - 5), (schema.NO_DUE, 1, -1e12),
            (schema.NO_DUE, 0, 1e300), (schema.NO_DUE, 0, FIXED_NOW), (schema.NO_DUE, 0, -1e300),
            (2e15, 0, FIXED_NOW), (1e300, 1, FIXED_NOW), (86400 * 2 - 1e-9, 0, 0.0), (86400 * 2, 0, 0.0),
            (30.0, 0, 0.0), (-5.0, 0, 0.0), (59.9, 1, 0.0), (schema.NO_DUE, 0, 30.0), (schema.NO_DUE, 0, -30.0)]
    with db.transaction():
        for n, (due, esc, last) in enumerate(rows):
            db.conn.execute(
                "INSERT INTO conversations(id, account, platform, kind, native_id, created_at, last_message_at, "
                "sort_due, escalated) VALUES (?,?,?,?,?,?,?,?,?)",
                (f"a:c{n}", "a", "x", "dm", f"c{n}", 0.0, last, due, esc))
    for width in schema.RANK_LEVELS:
        buckets = [r[0] for r in db.conn.execute(
            f"SELECT {schema.rank_bucket('c', width)} FROM conversations c ORDER BY {ORDER}")]
        assert buckets == sorted(buckets), width
    ids = _plain_ids(db, InboxFilter(statuses=None))
    with mock.patch.object(queries, "WALK_BELOW", -1):
        assert [queries.position_of(db, InboxFilter(statuses=None), i) for i in ids] == list(range(len(ids)))
    assert not math.isnan(sum(buckets))
