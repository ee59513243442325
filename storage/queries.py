"""Read queries: inbox pages in urgency order, a thread, a customer's history, header counts.

Everything here is a read on its own connection-friendly SQL, so the TUI runs it in a thread worker
and the CLI runs it directly. Pages are bounded (LIMIT/OFFSET over an index in inbox order), so the
cost of a page does not grow with the size of the cache.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from replydesk.storage.db import Database
from replydesk.storage.schema import (
    CELL_COLUMNS,
    NO_DUE,
    NO_DUE_BUCKETS,
    RANK_COLUMNS,
    RANK_LEVELS,
    TAG_SEP,
    rank_bucket,
)

if TYPE_CHECKING:
    from replydesk.windows import Window

#: The inbox order: breached and soonest-to-breach first, then escalated, then newest.
ORDER = "c.sort_due ASC, c.escalated DESC, c.last_message_at DESC, c.id ASC"

OPEN_STATUSES = ("open", "pending")


class InboxFilter(NamedTuple):
    """Which conversations a list shows. Saved views and search both build one of these."""

    statuses: tuple[str, ...] | None = OPEN_STATUSES
    platforms: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    assignee: str | None = None  # "" means unassigned
    escalated: bool | None = None
    sla_states: tuple[str, ...] = ()
    needs_reply: bool | None = None
    conversation_ids: tuple[str, ...] | None = None  # search results
    #: False: the inbox (conversations addressed to us); True: the Listening view (posts a listening
    #: query found, not yet answered); None: both. ``listening_queries`` narrows the view to queries.
    listening: bool | None = False
    listening_queries: tuple[str, ...] = ()

    def with_(self, **changes: Any) -> InboxFilter:
        return self._replace(**changes)


class InboxRow(NamedTuple):
    id: str
    account: str
    platform: str
    kind: str
    customer: str
    handle: str
    subject: str
    snippet: str
    status: str
    assignee: str | None
    priority: str
    escalated: bool
    tags: tuple[str, ...]
    needs_reply: bool
    unread: bool
    vip: bool
    sla_state: str
    sla_metric: str | None
    sla_due_at: float | None
    sla_warn_at: float | None
    last_message_at: float
    #: When the platform lets us answer (``replydesk.windows``: WhatsApp's 24 hours, then templates);
    #: empty where no window applies. The composer and the SLA pane count it down.
    reply_windows: tuple[Window, ...] = ()
    #: A review's stars (1-5) as the customer's latest version gives them; None elsewhere.
    rating: int | None = None
    listening: str | None = None  # the query that found it, while it waits in the Listening view


_ROW_SQL = (
    "SELECT c.id, c.account, c.platform, c.kind, coalesce(p.name, ''), coalesce(p.handle, ''), c.subject, "
    "c.snippet, c.status, c.assignee, c.priority, c.escalated, c.tags, c.needs_reply, c.unread, "
    "coalesce(p.vip, 0), c.sla_state, c.sla_metric, c.sla_due_at, c.sla_warn_at, c.last_message_at, "
    "c.reply_window, CASE WHEN c.kind = 'review' AND json_valid(c.meta) THEN json_extract(c.meta, '$.rating') END, "
    "c.listening FROM conversations c LEFT JOIN contacts p ON p.id = c.contact_id"
)


def _windows(raw: str | None) -> tuple[Window, ...]:
    if not raw:
        return ()
    from replydesk.windows import parse as parse_windows  # only for a row that has windows: most have none

    try:
        return tuple(parse_windows(json.loads(raw)))
    except ValueError:
        return ()


def _row(r: tuple) -> InboxRow:
    return InboxRow(
        id=r[0], account=r[1], platform=r[2], kind=r[3], customer=r[4], handle=r[5], subject=r[6],
        snippet=r[7], status=r[8], assignee=r[9], priority=r[10], escalated=bool(r[11]),
        tags=tuple(t for t in r[12].split(TAG_SEP) if t), needs_reply=bool(r[13]), unread=bool(r[14]),
        vip=bool(r[15]), sla_state=r[16], sla_metric=r[17], sla_due_at=r[18], sla_warn_at=r[19],
        last_message_at=r[20], reply_windows=_windows(r[21]), rating=_rating(r[22]), listening=r[23],
    )


def _rating(value: Any) -> int | None:
    """A stored review rating, as stars 1-5 (anything else the platform may have sent: none)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5 else None


def _where(f: InboxFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []

    def among(column: str, values: tuple[str, ...]) -> None:
        clauses.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)

    if f.statuses and tuple(sorted(f.statuses)) == OPEN_STATUSES:
        # Written literally (constants, not user input) so the planner can prove the partial
        # index conv_open_inbox covers it; a bound parameter would hide that.
        clauses.append("c.status IN ('open','pending')")
    elif f.statuses:
        among("c.status", f.statuses)
    if f.platforms:
        among("c.platform", f.platforms)
    if f.kinds:
        among("c.kind", f.kinds)
    if f.accounts:
        among("c.account", f.accounts)
    if f.sla_states:
        among("c.sla_state", f.sla_states)
    for tag in f.tags:
        clauses.append("c.id IN (SELECT t.conversation_id FROM conversation_tags t WHERE t.tag = ?)")
        params.append(tag)
    if f.assignee is not None:
        if f.assignee == "":
            clauses.append("c.assignee IS NULL")
        else:
            clauses.append("c.assignee = ?")
            params.append(f.assignee)
    if f.escalated is not None:
        clauses.append("c.escalated = ?")
        params.append(int(f.escalated))
    if f.needs_reply is not None:
        clauses.append("c.needs_reply = ?")
        params.append(int(f.needs_reply))
    # Literal too, for the partial indexes: the inbox's leave listening rows out, conv_listening has only them.
    if f.listening is False:
        clauses.append("c.listening IS NULL")
    elif f.listening is True:
        clauses.append("c.listening IS NOT NULL")
    if f.listening_queries:
        among("c.listening", f.listening_queries)
    if f.conversation_ids is not None:
        if not f.conversation_ids:
            clauses.append("0")
        else:
            clauses.append(f"c.id IN ({','.join('?' * len(f.conversation_ids))})")
            params.extend(f.conversation_ids)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _index_hint(f: InboxFilter) -> str:
    if f.listening is True:
        return " INDEXED BY conv_listening"
    if f.listening is False and tuple(sorted(f.statuses or ())) == OPEN_STATUSES:
        return " INDEXED BY conv_open_inbox"
    return ""


def inbox_page(db: Database, f: InboxFilter, offset: int, limit: int) -> list[InboxRow]:
    """One page in inbox order. The page's ids are picked on the conversations index alone and
    only those rows are joined to their contacts, so the cost is the walk to ``offset``, not a
    join and sort of every row in the view."""
    where, params = _where(f)
    # The open views walk the partial index in inbox order. Named explicitly: without fresh
    # ANALYZE statistics the planner prefers conv_status_inbox and sorts every open row per page.
    hint = _index_hint(f)
    # Deep pages (the end of the list after G, a scroll far down) start the walk at the bucket of
    # the inbox order that holds ``offset`` (inbox_ranks), not at the top of the list.
    found = _bucket_holding(db, f, offset) if offset > WALK_BELOW else None
    if found is not None:
        bucket, before, low, width = found
        where += f"{' AND ' if where else ' WHERE '}c.sort_due >= ? AND {rank_bucket('c', width)} >= ?"
        params = [*params, low, bucket]
        offset -= before
    rows = db.conn.execute(
        f"{_ROW_SQL} WHERE c.id IN (SELECT c.id FROM conversations c{hint}{where} ORDER BY {ORDER} LIMIT ? OFFSET ?) "
        f"ORDER BY {ORDER}",
        (*params, limit, offset),
    )
    return [_row(tuple(r)) for r in rows]


def _bucket_holding(db: Database, f: InboxFilter, offset: int) -> tuple[int, int, float, int] | None:
    """(bucket, rows of the view before it, lowest sort_due in it, its width) for the row at
    ``offset``: the finest bucket found by descending the levels, or None when the view's filter is
    not kept per bucket or the offset lies past its end."""
    ranked = _counter_where(f, RANK_COLUMNS)
    if ranked is None:
        return None
    clauses, params = ranked
    before, parent = 0, 0
    for level, width in enumerate(RANK_LEVELS):
        found = None
        for bucket, n in db.conn.execute(
            f"SELECT bucket, sum(n) FROM inbox_ranks{_sql_where(['level = ?', 'parent = ?', *clauses])} "
            "GROUP BY bucket ORDER BY bucket", (level, parent, *params)
        ):
            if before + n > offset:
                found = bucket
                break
            before += n
        if found is None:
            return None
        if found >= NO_DUE_BUCKETS:
            # Rows without a deadline all start at sort_due = NO_DUE in the index: a finer bucket
            # would not start the walk any later.
            return found, before, NO_DUE, width
        parent = found
    # A little low, so that float rounding at the edge loses no row (the bucket test is exact);
    # bucket 0 also holds every time before 1970.
    low = parent * RANK_LEVELS[-1] - 1.0 if parent > 0 else -math.inf
    return parent, before, low, RANK_LEVELS[-1]


def _counter_where(f: InboxFilter, columns: tuple[str, ...]) -> tuple[list[str], list[Any]] | None:
    """The filter as conditions on a counter table with ``columns``, or None when it filters on
    something the table does not keep (tags, search results, or columns left out of it)."""
    if f.tags or f.conversation_ids is not None:
        return None
    wanted = {"status": f.statuses, "platform": f.platforms, "kind": f.kinds, "account": f.accounts,
              "sla_state": f.sla_states}
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in wanted.items():
        if values:
            if column not in columns:
                return None
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    if f.listening_queries:
        return None  # the counters keep whether a conversation waits in the Listening view, not for which query
    for column, value in (("assignee", f.assignee), ("escalated", f.escalated), ("needs_reply", f.needs_reply),
                          ("listening", f.listening)):
        if value is not None:
            if column not in columns:
                return None
            clauses.append(f"{column} = ?")
            params.append(value if column == "assignee" else int(value))
    return clauses, params


def _sql_where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def inbox_count(db: Database, f: InboxFilter) -> int:
    """How many conversations ``f`` shows. A sum over the maintained counters (migration 9): the
    cost follows the number of column combinations, not the number of conversations. Tag views
    count through the tag index, search results through their ids."""
    counted = _counter_where(f, CELL_COLUMNS)
    if counted is not None:
        clauses, params = counted
        return db.conn.execute(f"SELECT coalesce(sum(n), 0) FROM inbox_cells{_sql_where(clauses)}",
                               params).fetchone()[0]
    where, params = _where(f)
    return db.conn.execute(f"SELECT count(*) FROM conversations c{where}", params).fetchone()[0]


#: In a cache this small, a position is counted by walking the rows before the conversation (under
#: half a millisecond whatever the view filters); the bucket sums pay off above it.
WALK_BELOW = 5_000

_BEFORE = (
    "(c.sort_due < ? OR (c.sort_due = ? AND (c.escalated > ? OR (c.escalated = ? AND "
    "(c.last_message_at > ? OR (c.last_message_at = ? AND c.id < ?))))))"
)


def position_of(db: Database, f: InboxFilter, conv_id: str) -> int | None:
    """Index of ``conv_id`` in the filtered inbox order, so the cursor can follow a conversation.

    With the views' usual filters: the conversations in the days before its own and in the minutes
    of its day before its minute (inbox_ranks), plus a walk of its own minute, so the cost follows
    neither its depth in the list nor how many deadlines share its day. Other filters (platform, account, tag), and small views, walk the rows before it.
    """
    levels = ", ".join(rank_bucket("c", width) for width in RANK_LEVELS)
    row = db.conn.execute(
        f"SELECT c.sort_due, c.escalated, c.last_message_at, {levels} FROM conversations c WHERE c.id = ?",
        (conv_id,),
    ).fetchone()
    if row is None:
        return None
    where, params = _where(f)
    due, esc, last, *buckets = row
    glue = " AND " if where else " WHERE "
    # Confirm the conversation is in this view at all.
    if not db.conn.execute(f"SELECT 1 FROM conversations c{where}{glue}c.id = ?", (*params, conv_id)).fetchone():
        return None
    key = (due, due, esc, esc, last, last, conv_id)
    ranked = _counter_where(f, RANK_COLUMNS)
    if ranked is None or inbox_count(db, InboxFilter(statuses=None)) <= WALK_BELOW:
        return db.conn.execute(f"SELECT count(*) FROM conversations c{where}{glue}{_BEFORE}",
                               (*params, *key)).fetchone()[0]
    clauses, rank_params = ranked
    earlier, parent = 0, 0
    sql = f"SELECT coalesce(sum(n), 0) FROM inbox_ranks{_sql_where(['level = ?', 'parent = ?', 'bucket < ?', *clauses])}"
    for level, bucket in enumerate(buckets):
        earlier += db.conn.execute(sql, (level, parent, bucket, *rank_params)).fetchone()[0]
        parent = bucket
    # Its own minute: an index range from the minute's first key to the conversation's (the bounds
    # are a little wide, so float rounding at an edge cannot lose a row; the bucket is checked
    # exactly), walked in inbox order.
    width = RANK_LEVELS[-1]
    if due < NO_DUE:
        first = math.floor(due / width)
        low = first * width - 1.0 if first > 0 else -math.inf  # bucket 0 holds every time before 1970
        start, start_params = "c.sort_due BETWEEN ? AND ?", [low, due]
    elif due == NO_DUE:
        high = (math.floor(last / width) + 1) * width + 1.0 if 0 <= last < 2 ** 43 else math.inf
        start = "c.sort_due = ? AND c.escalated = ? AND c.last_message_at BETWEEN ? AND ?"
        start_params = [NO_DUE, esc, last, high]
    else:
        start, start_params = "c.sort_due BETWEEN ? AND ?", [NO_DUE, due]
    hint = _index_hint(f)
    within = db.conn.execute(
        f"SELECT count(*) FROM conversations c{hint}{where}{glue}{_BEFORE} AND {start} "
        f"AND {rank_bucket('c', width)} = ?",
        (*params, *key, *start_params, buckets[-1]),
    ).fetchone()[0]
    return earlier + within


def get_row(db: Database, conv_id: str) -> InboxRow | None:
    r = db.conn.execute(f"{_ROW_SQL} WHERE c.id = ?", (conv_id,)).fetchone()
    return _row(tuple(r)) if r else None


class MessageView(NamedTuple):
    id: str
    direction: str
    author: str
    text: str
    created_at: float
    state: str
    error: str | None
    private: bool
    outbox_key: str | None
    attempts: int
    not_before: float | None
    meta: dict = {}  # shared by those built without one: read, never written to
    automatic: str | None = None  # why no person wrote it (bounce, auto-reply, ...), or None

    @property
    def spans(self) -> list[tuple[int, int, str]]:
        """Quoted history / signature / inline-context ranges of ``text`` (see model.SPAN_KINDS).
        Messages stored before the ranges existed kept their quote apart, in ``meta["quoted"]``."""
        spans = self.meta.get("spans") if isinstance(self.meta, dict) else None
        if isinstance(spans, list):
            return [(int(s[0]), int(s[1]), str(s[2])) for s in spans
                    if isinstance(s, list | tuple) and len(s) == 3]
        return []


class ActionView(NamedTuple):
    """An outbox action on the conversation other than a reply (a ticket, an edit, a delete, a read
    mark), as the thread shows it."""

    key: str
    action: str
    account: str
    state: str
    error: str | None
    created_at: float
    updated_at: float
    summary: str
    result: dict = {}  # as MessageView.meta


def action_summary(action: str, account: str, text: str, payload: dict, result: dict, remote_id: str | None) -> str:
    """One line for what an outbox row does (``replydesk outbox``, the thread)."""
    if action == "reply":
        return text
    if action == "edit_reply":
        return f"edit our reply to: {text}"
    if action == "delete_reply":
        quote = payload.get("quote")
        return "delete our reply" + (f": {quote}" if isinstance(quote, str) and quote else "")
    if action == "mark_read":
        return "mark read on the platform"
    if action == "create_ticket":
        ticket = result.get("id") or remote_id
        subject = payload.get("subject") if isinstance(payload.get("subject"), str) else ""
        return f"ticket in {account}" + (f" #{ticket}" if ticket else "") + (f": {subject}" if subject else "")
    if action == "ticket_comment":
        body = payload.get("body") if isinstance(payload.get("body"), str) else ""
        return f"private comment on {account} #{payload.get('ticket_id')}: " + " ".join(body.split())[:80]
    return action


def _json_dict(raw: str | None) -> dict:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Thread(NamedTuple):
    conversation: InboxRow
    messages: list[MessageView]
    history: list[InboxRow]
    escalation_target: str | None
    snoozed_until: float | None
    meta: dict
    actions: list[ActionView]
    #: helpdesk tickets its escalations made (``storage.tickets.Ticket``: id, link, status)
    tickets: list[Any]


def thread(db: Database, conv_id: str, history_limit: int = 20) -> Thread | None:
    from replydesk.storage.tickets import of_conversation  # a thread's, not a list's: not for search

    conv = get_row(db, conv_id)
    if conv is None:
        return None
    extra = db.conn.execute(
        "SELECT escalation_target, snoozed_until, meta, contact_id FROM conversations WHERE id=?", (conv_id,)
    ).fetchone()
    msgs = [
        MessageView(
            id=r[0], direction=r[1], author=r[2], text=r[3], created_at=r[4], state=r[5], error=r[6],
            private=bool(r[7]), outbox_key=r[8], attempts=r[9] or 0, not_before=r[10],
            meta=json.loads(r[11] or "{}"), automatic=r[12],
        )
        for r in db.conn.execute(
            "SELECT m.id, m.direction, m.author, m.text, m.created_at, m.state, "
            "coalesce(o.last_error, m.error), m.private, o.key, o.attempts, o.not_before, m.meta, m.automatic "
            "FROM messages m LEFT JOIN outbox o ON o.message_id = m.id "
            "WHERE m.conversation_id = ? AND m.state != 'cancelled' ORDER BY m.created_at, m.rowid",
            (conv_id,),
        )
    ]
    acts = []
    for r in db.conn.execute(
            "SELECT key, action, account, state, last_error, created_at, updated_at, text, payload, result, "
            "remote_id FROM outbox WHERE conversation_id=? AND action != 'reply' AND state != 'cancelled' "
            "ORDER BY seq", (conv_id,)):
        payload, result = _json_dict(r[8]), _json_dict(r[9])
        acts.append(ActionView(r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                               action_summary(r[1], r[2], r[7], payload, result, r[10]), result))
    return Thread(
        conversation=conv, messages=msgs, history=history(db, conv_id, extra[3], history_limit),
        escalation_target=extra[0], snoozed_until=extra[1], meta=json.loads(extra[2] or "{}"), actions=acts,
        tickets=of_conversation(db, conv_id),
    )


class ReplyTarget(NamedTuple):
    """The inbound message a reply answers: the newest one a person wrote, else the newest."""

    native_id: str
    meta: dict
    automatic: str | None  # set when only automatic messages came in: replying goes to a robot


def reply_target(db: Database, conv_id: str) -> ReplyTarget | None:
    """What a reply to ``conv_id`` answers. An out-of-office or a bounce that came after the
    customer's mail must not become the reply's recipient (the mailer daemon, the robot)."""
    row = db.conn.execute(
        "SELECT native_id, meta, automatic FROM messages WHERE conversation_id=? AND direction='in' "
        "ORDER BY automatic IS NOT NULL, created_at DESC, rowid DESC LIMIT 1",
        (conv_id,),
    ).fetchone()
    if row is None:
        return None
    return ReplyTarget(native_id=row[0], meta=json.loads(row[1] or "{}"), automatic=row[2])


def robots_only(db: Database, conv_ids: list[str]) -> set[str]:
    """Those of ``conv_ids`` whose inbound mail is all automatic (a newsletter, a stray bounce):
    no customer is in them, so reports leave them out."""
    found: set[str] = set()
    for start in range(0, len(conv_ids), 500):
        chunk = conv_ids[start:start + 500]
        qs = ",".join("?" * len(chunk))
        found.update(r[0] for r in db.conn.execute(
            f"SELECT conversation_id FROM messages WHERE conversation_id IN ({qs}) AND direction='in' "
            "GROUP BY conversation_id HAVING count(automatic) = count(*)", chunk))
    return found


def history(db: Database, conv_id: str, contact_id: str | None, limit: int = 20) -> list[InboxRow]:
    """The same customer's other conversations on any channel (``contacts.same_customer``: the
    contacts an agent merged, else the same display name or handle elsewhere)."""
    from replydesk.storage.contacts import same_customer

    if not contact_id:
        return []
    ids = same_customer(db, contact_id)
    if not ids:
        return []
    rows = db.conn.execute(
        f"{_ROW_SQL} WHERE c.id != ? AND c.contact_id IN ({','.join('?' * len(ids))})"
        " ORDER BY c.last_message_at DESC LIMIT ?",
        (conv_id, *ids, limit),
    )
    return [_row(tuple(r)) for r in rows]


class Counts(NamedTuple):
    open: int
    breached: int
    warning: int
    by_platform: dict[str, dict[str, int]]  # platform -> {"open", "breached", "warning"}
    listening: int = 0  # matches waiting in the Listening view (not in the other figures)


def counts(db: Database) -> Counts:
    by: dict[str, dict[str, int]] = {}
    total = {"open": 0, "breached": 0, "warning": 0}
    for platform, state, n in db.conn.execute(
        "SELECT platform, sla_state, sum(n) FROM inbox_cells WHERE status IN ('open','pending') AND listening = 0 "
        "GROUP BY platform, sla_state"
    ):
        slot = by.setdefault(platform, {"open": 0, "breached": 0, "warning": 0})
        slot["open"] += n
        total["open"] += n
        if state in ("breached", "warning"):
            slot[state] += n
            total[state] += n
    waiting = db.conn.execute(
        "SELECT coalesce(sum(n), 0) FROM inbox_cells WHERE status IN ('open','pending') AND listening = 1").fetchone()[0]
    return Counts(open=total["open"], breached=total["breached"], warning=total["warning"], by_platform=by,
                  listening=waiting)


def all_tags(db: Database) -> list[str]:
    return [r[0] for r in db.conn.execute("SELECT DISTINCT tag FROM conversation_tags ORDER BY tag")]


def assignees(db: Database, limit: int = 200) -> list[str]:
    """Everyone a conversation is assigned to, for completion in the assign dialog."""
    return sorted(r[0] for r in db.conn.execute(
        "SELECT DISTINCT assignee FROM conversations WHERE assignee IS NOT NULL LIMIT ?", (limit,)))


def account_states(db: Database) -> list[dict[str, Any]]:
    return [
        dict(r) for r in db.conn.execute(
            "SELECT a.name AS account, a.platform, coalesce(s.state, 'idle') AS state, "
            "coalesce(s.detail, '') AS detail, s.last_sync, s.until, coalesce(s.note, '') AS note FROM accounts a "
            "LEFT JOIN account_status s ON s.account = a.name ORDER BY a.name"
        )
    ]


def draft(db: Database, conv_id: str) -> tuple[str, bool] | None:
    r = db.conn.execute("SELECT text, private FROM drafts WHERE conversation_id=?", (conv_id,)).fetchone()
    return (r[0], bool(r[1])) if r else None


def resolve_conversation(db: Database, ref: str) -> str | None:
    """A full id, or a unique suffix of one (what a person copies from a list), to the full id."""
    if db.conn.execute("SELECT 1 FROM conversations WHERE id=?", (ref,)).fetchone():
        return ref
    rows = db.conn.execute(
        "SELECT id FROM conversations WHERE id LIKE '%' || ? ESCAPE '\\' LIMIT 2",
        (ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),),
    ).fetchall()
    return rows[0][0] if len(rows) == 1 else None


def conversation_of_message(db: Database, account: str, native_ids: Iterable[str]) -> str | None:
    """The native id of the conversation holding the first of ``native_ids`` we have stored.

    A provider threads a new item under the conversation of the message it answers (an email's
    ``In-Reply-To``/``References``, tried newest first); this answers from the cache.
    """
    for native in native_ids:
        row = db.conn.execute(
            "SELECT c.native_id FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "WHERE m.account = ? AND m.native_id = ?",
            (account, native),
        ).fetchone()
        if row:
            return row[0]
    return None


class ReportRow(NamedTuple):
    """A conversation as the report groups it."""

    id: str
    account: str
    platform: str
    assignee: str | None
    tags: list[str]


def conversations_started(db: Database, since: float | None, until: float) -> list[ReportRow]:
    """Conversations created inside the window (``since`` None: from the beginning), for reports.
    Listening matches nobody answered are not the business's conversations yet: they are left out."""
    sql = "SELECT id, account, platform, assignee, tags FROM conversations WHERE created_at <= ? AND listening IS NULL"
    params: list[Any] = [until]
    if since is not None:
        sql += " AND created_at >= ?"
        params.append(since)
    return [ReportRow(r[0], r[1], r[2], r[3], [t for t in (r[4] or "").split(TAG_SEP) if t])
            for r in db.conn.execute(sql, params)]
