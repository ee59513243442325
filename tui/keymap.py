"""Textual bindings built from the one key table (``replydesk.keys``), so the keys the console
answers, the help screen, README and ``config check`` cannot drift apart."""

from __future__ import annotations

from textual.binding import Binding

from replydesk.keys import in_context


def bindings(context: str) -> list[Binding]:
    """The ``BINDINGS`` of the widget or screen that owns ``context``."""
    return [Binding(spec.keys, spec.action, spec.label, id=spec.id, show=spec.show, tooltip=spec.description)
            for spec in in_context(context)]
