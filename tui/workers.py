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

from replydesk.tui.messages import WorkerFailed, WorkerRecovered

F = TypeVar("F", bound=Callable[..., Any])


def describe(error: BaseException) -> str:
    """One line for the status bar: the error's type and message."""
    text = str(error).strip().splitlines()
    return type(error).__name__ + (f": {text[0]}" if text else "")


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
                app.post_message(WorkerFailed(what, group, describe(exc)))
                raise  # Textual marks the worker failed and logs the traceback; exit_on_error=False
            if group in app.failing:  # read across threads: a dict lookup, replaced only by the app
                app.post_message(WorkerRecovered(group))
            return result

        return work(thread=True, group=group, exclusive=exclusive, exit_on_error=False,  # type: ignore[return-value]
                    description=what)(guarded)

    return decorate
