"""Customer text is data: every hostile sample as a name, subject, message and tag renders safely.

Checks on what actually reaches the screen (the compositor's strips): no ESC, C0/C1 control or
bidi override character; markup shown literally; inbox rows exactly as wide as the list.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from replydesk.config import demo_config
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage import actions, ingest
from replydesk.storage.actions import ActionError
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.format import cell, term_len
from replydesk.workspace import Workspace
from tui_support import FIXED, SHARED, fixed_clock, hostile_cases, settle

CASES = hostile_cases()
pytestmark = pytest.mark.skipif(not CASES, reason=f"hostile samples not found in {SHARED} (../shared absent)")

FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
PLATFORMS = ("email", "x", "facebook", "instagram", "whatsapp", "telegram", "mastodon", "bluesky", "google")
KIND = {"email": "email", "x": "mention", "facebook": "comment", "instagram": "dm", "whatsapp": "dm",
        "telegram": "dm", "mastodon": "mention", "bluesky": "mention", "google": "review"}


@pytest.fixture
def hostile_workspace(tmp_path) -> Workspace:  # noqa: ANN001
    ws = Workspace(tmp_path / "hostile", demo_config(), clock=fixed_clock)
    db = ws.open_db()
    with db.transaction():
        ingest.ensure_account(db, "demo", "demo", "multi")
    msgs = []
    for n, case in enumerate(CASES):
        platform = PLATFORMS[n % len(PLATFORMS)]
        msgs.append(IncomingMessage(
            native_id=f"m{n}", conversation_native_id=f"c{n}", platform=platform, kind=KIND[platform],
            contact=Contact(native_id=f"p{n}", name=case["text"], handle=case["text"][:40]),
            text=case["text"], created_at=FIXED - 600 - n, author=case["text"], subject=case["text"][:200],
        ))
    ingest.ingest(db, "demo", [FetchResult(messages=msgs, cursor={"t": FIXED})])
    for n, case in enumerate(CASES):
        # A tag that normalises to nothing is refused by the core, as it should be.
        with contextlib.suppress(ActionError):
            actions.tag(db, [f"demo:c{n}"], [case["text"][:60]])
    db.close()
    return ws


def screen_text(app: ReplydeskApp) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_hostile_text_renders_safely(hostile_workspace: Workspace, size: tuple[int, int]) -> None:
    app = ReplydeskApp(hostile_workspace, start_engine=False, clock=fixed_clock)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        assert app.inbox.total == len(CASES)
        seen = set()
        for index in range(len(CASES)):
            app.inbox.move_to(index)
            await settle(pilot)
            await pilot.pause(0.06)  # the thread read is debounced
            await settle(pilot)
            row = app.inbox.current
            assert row is not None and app.thread_view.thread.conversation.id == row.id
            seen.add(row.id)
            lines = screen_text(app)
            for line in lines:
                bad = FORBIDDEN.findall(line)
                assert not bad, f"{row.id}: control/bidi char {bad!r} reached the screen: {line!r}"
            # Markup stays literal in the thread, brackets and all.
            thread = app.thread_view.render_thread(app.thread_view.thread)
            case = CASES[int(row.id.rsplit("c", 1)[1])]
            if case["id"] in ("rich-markup", "textual-action", "link-markup", "unbalanced-markup"):
                assert case["text"] in thread.plain
                assert not any(span.style and "link" in str(span.style) for span in thread.spans)
            # Every inbox row is exactly the list's width in terminal cells.
            width = app.inbox.scrollable_content_region.width
            for y in range(min(app.inbox.size.height, app.inbox.total)):
                strip = app.inbox.render_line(y)
                assert term_len(strip.text) == width, strip.text
        assert len(seen) == len(CASES)
        assert app.is_running


def test_cells_align_wide_scripts() -> None:
    for case in CASES:
        for width in (1, 5, 12, 16, 40):
            assert term_len(cell(case["text"], width).plain) == width, case["id"]


def test_markup_is_never_interpreted() -> None:
    t = cell("[bold red]URGENT[/] [@click=app.quit]x[/]", 60)
    assert t.plain.startswith("[bold red]URGENT[/] [@click=app.quit]x[/]") and not t.spans
