"""The satisfaction survey after a resolve, sent by the engine (its sweep), once per resolve.

A resolve (by anyone: the console, the CLI, a rule) of a conversation whose account surveys
(``csat.accounts``) queues the account's survey, a saved reply, as an automatic reply through the
outbox; the answer is read when it arrives (``storage.csat``). Never on a review, never to a
robot, never where the platform's reply window has closed, and at most once in ``repeat_after``
per conversation. What was not sent is logged (``csat_skipped``) with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from replydesk.config import Config
from replydesk.rules import fill
from replydesk.storage import csat, outbox, queries, rulelog
from replydesk.storage.actions import ActionError
from replydesk.storage.db import Database


class Surveys:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.csat
        self._seen = 0  # events up to this seq hold no resolve after the cursor
        self._only: frozenset[str] | None = None

    def run(self, db: Database, limit: int = 200, accounts: Iterable[str] | None = None) -> int:
        """Survey the conversations resolved since the last look; returns how many were queued.
        ``accounts``: survey only theirs (a team engine: the accounts it leads, so a survey goes once
        a team; the others' resolves are the leading engine's to survey)."""
        self._only = None if accounts is None else frozenset(accounts)
        queued = 0
        after = csat.cursor(db)
        if after is not None:
            # The common case, every second: nothing resolved. Looked at once (the log seen so far is
            # remembered here, not written: after a restart the look starts again at the cursor).
            upto = csat.last_seq(db)
            if not csat.resolved_after(db, max(after, self._seen), 1):
                self._seen = upto
                return 0
        with db.transaction():
            after = csat.cursor(db)
            upto = csat.last_seq(db)
            if after is None:  # the first look: resolves from before the survey was turned on are past
                csat.set_cursor(db, upto)
                return 0
            rows = csat.resolved_after(db, max(after, self._seen), limit)
            for _, conv_id, _ in rows:
                queued += self._survey(db, conv_id)
            csat.set_cursor(db, rows[-1][0] if len(rows) == limit else upto)
        return queued

    def _survey(self, db: Database, conv_id: str) -> int:
        target = csat.survey_target(db, conv_id)
        if target is None:
            return 0
        account, platform, kind, status = target
        if self._only is not None and account not in self._only:
            return 0
        settings = self.settings.accounts.get(account)
        if settings is None or not settings.enabled or status != "resolved":
            return 0
        if kind == "review":
            csat.record_skipped(db, conv_id, "reviews are not surveyed")
            return 0
        now = db.now()
        if csat.surveyed_since(db, conv_id, now - self.settings.repeat_after):
            return 0
        if queries.robots_only(db, [conv_id]):
            csat.record_skipped(db, conv_id, "only automatic messages: no customer to ask")
            return 0
        name = settings.platforms.get(platform, settings.survey)
        conv = rulelog.conversation(db, conv_id)
        text = fill(self.config.ui.saved_replies[name], conv.customer if conv else "")
        try:
            key = outbox.queue_reply(db, conv_id, text, actor="csat", automatic="csat")
        except outbox.OutsideReplyWindow as exc:
            csat.record_skipped(db, conv_id, exc.verdict.reason)
            return 0
        except ActionError as exc:
            csat.record_skipped(db, conv_id, str(exc))
            return 0
        csat.record_survey(db, conv_id, key, now + self.settings.answer_within)
        return 1
