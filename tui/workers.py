"""Thread workers whose unexpected errors are reported in the status bar instead of ending the console.

Textual's default for a worker that raises is to exit the app with a traceback: a read that meets
a locked or damaged database, or a bug in one query, would close the console in the middle of a
reply. Every worker of the console is made with :func:`background`. An error the worker did not
handle itself is posted to the app as ``WorkerFailed`` (the app's one handler shows it in the
status bar; Textual's log keeps the traceback) and the console stays up; the next success of the
same kind of work posts ``WorkerRecovered``, and the note goes away.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from textual import work

from replydesk.storage.db import DATABASE_ERRORS, StorageError
from replydesk.storage.faults import SHORT, classify
from replydesk.tui.messages import WorkerFailed, WorkerRecovered

F = TypeVar("F", bound=Callable[..., Any])


def describe(error: BaseException, path: Any = None) -> str:
    """One line for the status bar: a database fault in the words ``storage.faults`` gives every
    surface ("database is locked by another process", "disk full (12 KB free)"); anything else as
    its type and message."""
    if isinstance(error, StorageError):
        return SHORT.get(error.kind) or str(error)
    if isinstance(error, DATABASE_ERRORS):
        return classify(error, path).short
    text = str(error).strip().splitlines()
    return type(error).__name__ + (f": {text[0]}" if text else "")


def _db_path(app: Any) -> Any:
    data_dir = getattr(getattr(app, "workspace", None), "data_dir", None)
    return data_dir / "replydesk.db" if data_dir is not None else None


def background(what: str, *, group: str, exclusive: bool = False) -> Callable[[F], F]:
    """``@work(thread=True)`` whose failure is reported as "``what`` failed: ..." and never exits.

    ``what`` says what the user would miss, in their words ("reading the thread"); ``group`` and
    ``exclusive`` are Textual's (an exclusive worker cancels the previous one of its group).
    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            app = self.app
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                app.post_message(WorkerFailed(what, group, describe(exc, _db_path(app))))
                raise  # Textual marks the worker failed and logs the traceback; exit_on_error=False
            if group in app.failing:  # read across threads: a dict lookup, replaced only by the app
                app.post_message(WorkerRecovered(group))
            return result

        return work(thread=True, group=group, exclusive=exclusive, exit_on_error=False,  # type: ignore[return-value]
                    description=what)(guarded)

    return decorate
