"""Every key path of the console, driven with the pilot, checked in the database afterwards."""

from __future__ import annotations

import json

from replydesk.storage import actions, outbox, queries
from replydesk.storage.queries import InboxFilter
from replydesk.tui.app import ReplydeskApp
from replydesk.tui.composer import Composer
from replydesk.tui.dialogs import PromptDialog
from replydesk.tui.help import HelpScreen
from tui_support import FIXED, fixed_clock, settle

SIZE = (120, 36)


def app_for(workspace) -> ReplydeskApp:  # noqa: ANN001
    return ReplydeskApp(workspace, start_engine=False, clock=fixed_clock)


def open_rows(db, n: int = 5) -> list[queries.InboxRow]:  # noqa: ANN001
    return queries.inbox_page(db, InboxFilter(), 0, n)


def events(db, conv_id: str, kind: str) -> list[dict]:  # noqa: ANN001
    return [json.loads(r[0]) for r in db.conn.execute(
        "SELECT data FROM events WHERE conversation_id=? AND kind=? ORDER BY seq", (conv_id, kind))]


async def type_text(pilot, text: str) -> None:  # noqa: ANN001
    for ch in text:
        await pilot.press(ch if ch != " " else "space")


async def assign(pilot, who: str) -> None:  # noqa: ANN001
    """``a``, replace the suggested assignee with ``who``, enter."""
    await pilot.press("a")
    await settle(pilot)
    await pilot.press("ctrl+u")
    await type_text(pilot, who)
    await pilot.press("enter")
    await settle(pilot)


async def select(pilot, conv_id: str) -> None:  # noqa: ANN001
    pilot.app.inbox.select_id(conv_id)
    await settle(pilot)
    assert pilot.app.inbox.cursor_id == conv_id


async def test_inbox_shows_rows_and_moves(workspace, db) -> None:  # noqa: ANN001
    rows = open_rows(db, 3)
    total = queries.inbox_count(db, InboxFilter())
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        inbox = app.inbox
        assert inbox.total == total and inbox.cursor_id == rows[0].id
        await pilot.press("j")
        await pilot.press("down")
        await settle(pilot)
        assert inbox.cursor_id == rows[2].id
        await pilot.press("k")
        await settle(pilot)
        assert inbox.cursor_id == rows[1].id
        await pilot.press("G")
        await settle(pilot)
        last = queries.inbox_page(db, InboxFilter(), total - 1, 1)[0]
        assert inbox.cursor_index == total - 1 and inbox.cursor_id == last.id
        await pilot.press("g")
        await settle(pilot)
        assert inbox.cursor_id == rows[0].id
        await pilot.press("up")
        await settle(pilot)
        assert inbox.cursor_index == 0
        # The thread view follows the cursor.
        assert app.thread_view.thread is not None and app.thread_view.thread.conversation.id == rows[0].id


async def test_reply_is_queued_in_outbox(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        assert app.composer.is_open
        await type_text(pilot, "Hello, on its way!")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not app.composer.is_open
    items = outbox.pending(db)
    assert [(i.conversation_id, i.text, i.private, i.state) for i in items] == [
        (target.id, "Hello, on its way!", False, "queued")]
    assert items[0].not_before <= FIXED  # undo window 0: ready to leave now
    assert outbox.ready(db)[0].key == items[0].key


async def test_alt_enter_sends_too(workspace, db) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await type_text(pilot, "ok")
        await pilot.press("alt+enter")
        await settle(pilot)
    assert [i.text for i in outbox.pending(db)] == ["ok"]


async def test_undo_takes_the_reply_back(make_workspace) -> None:  # noqa: ANN001
    ws = make_workspace(undo_seconds=30)
    db = ws.open_db()
    target = open_rows(db, 1)[0]
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await type_text(pilot, "oops wrong")
        await pilot.press("ctrl+s")
        await settle(pilot)
        item = outbox.pending(db)[0]
        assert item.not_before == FIXED + 30 and not outbox.ready(db)  # waits for the window
        await pilot.press("u")
        await settle(pilot)
        assert app.composer.is_open and app.composer.text == "oops wrong"
        assert app.composer.row is not None and app.composer.row.id == target.id
    assert outbox.get(db, item.key).state == "cancelled"
    assert outbox.pending(db) == []
    db.close()


async def test_private_reply_where_platform_allows(workspace, db) -> None:  # noqa: ANN001
    conv = db.conn.execute(
        "SELECT id FROM conversations WHERE kind='comment' AND platform='instagram' LIMIT 1").fetchone()[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        await pilot.press("R")
        assert app.composer.mode == "private"
        await type_text(pilot, "DM me")
        await pilot.press("ctrl+t")  # toggle back to public and again to private
        assert app.composer.mode == "public"
        await pilot.press("ctrl+t")
        await pilot.press("ctrl+s")
        await settle(pilot)
    (item,) = outbox.pending(db)
    assert item.conversation_id == conv and item.private and item.text == "DM me"


async def test_internal_note(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await type_text(pilot, "call back at 5")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "call back at 5" in str(app.thread_view.render_thread(app.thread_view.thread))
    notes = db.conn.execute(
        "SELECT text FROM messages WHERE conversation_id=? AND direction='note'", (target.id,)).fetchall()
    assert [n[0] for n in notes] == ["call back at 5"]
    assert outbox.pending(db) == []


async def test_tag_with_completion_and_untag(workspace, db) -> None:  # noqa: ANN001
    first, second = open_rows(db, 2)
    actions.tag(db, [second.id], ["shipping-delay"])
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, PromptDialog)
        await type_text(pilot, "shipp")
        await pilot.press("right")  # accept the suggestion from existing tags
        await pilot.press("enter")
        await settle(pilot)
        assert queries.get_row(db, first.id).tags == ("shipping-delay",)
        await pilot.press("T")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
    assert queries.get_row(db, first.id).tags == ()
    assert events(db, first.id, "tag") == [{"tag": "shipping-delay"}]
    assert events(db, first.id, "untag") == [{"tag": "shipping-delay"}]


async def test_assign_and_mine_view(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("enter")  # defaults to the agent ("me")
        await settle(pilot)
        assert queries.get_row(db, target.id).assignee == "me"
        await pilot.press("3")  # view "Mine" = assignee:me
        await settle(pilot)
        assert app.inbox.total == 1 and app.inbox.cursor_id == target.id
        await assign(pilot, "alice")
    assert queries.get_row(db, target.id).assignee == "alice"
    assert [e["assignee"] for e in events(db, target.id, "assign")] == ["me", "alice"]


async def test_escalate_records_reason_and_target(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("ctrl+u")
        await type_text(pilot, "billing")
        await pilot.press("tab")
        await pilot.press("down")  # second reason: refund request
        await pilot.press("tab")
        await type_text(pilot, "charged twice")
        await pilot.press("enter")
        await settle(pilot)
    row = queries.get_row(db, target.id)
    assert row.escalated and row.priority == "high"
    assert events(db, target.id, "escalate") == [
        {"target": "billing", "reason": "refund request", "note": "charged twice"}]


async def test_resolve_then_reopen_from_resolved_view(workspace, db) -> None:  # noqa: ANN001
    first, second = open_rows(db, 2)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert queries.get_row(db, first.id).status == "resolved"
        assert app.inbox.cursor_id == second.id  # resolved rows leave the open view
        await pilot.press("6")  # "Resolved"
        await settle(pilot)
        assert app.inbox.cursor_id == first.id
        await pilot.press("o")
        await settle(pilot)
    assert queries.get_row(db, first.id).status == "open"
    assert [e["status"] for e in events(db, first.id, "status")] == ["resolved", "open"]


async def test_snooze_presets_and_custom(workspace, db) -> None:  # noqa: ANN001
    first, second = open_rows(db, 2)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("enter")  # 1 hour
        await settle(pilot)
        assert app.inbox.cursor_id == second.id
        await pilot.press("s")
        await settle(pilot)
        for _ in range(3):
            await pilot.press("down")
        await pilot.press("enter")  # custom…
        await type_text(pilot, "2h")
        await pilot.press("enter")
        await settle(pilot)
    assert db.conn.execute("SELECT status, snoozed_until FROM conversations WHERE id=?",
                           (first.id,)).fetchone()[:] == ("snoozed", FIXED + 3600)
    assert db.conn.execute("SELECT snoozed_until FROM conversations WHERE id=?",
                           (second.id,)).fetchone()[0] == FIXED + 7200


async def test_snooze_tomorrow_nine(workspace, db) -> None:  # noqa: ANN001
    first = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("down", "down", "enter")
        await settle(pilot)
    until = db.conn.execute("SELECT snoozed_until FROM conversations WHERE id=?", (first.id,)).fetchone()[0]
    assert until == 1749718800.0  # Thu 2025-06-12 09:00 UTC (business calendar zone)


async def test_bulk_marks_apply_to_all(workspace, db) -> None:  # noqa: ANN001
    rows = open_rows(db, 3)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("space", "space")  # marks rows 0 and 1, cursor on row 2
        assert app.inbox.marked == {rows[0].id, rows[1].id}
        await pilot.press("t")
        await settle(pilot)
        await type_text(pilot, "bulk")
        await pilot.press("enter")
        await settle(pilot)
        assert app.inbox.marked == set()
        await pilot.press("g", "space", "space")
        await pilot.press("x")
        await settle(pilot)
    assert [queries.get_row(db, r.id).tags for r in rows] == [("bulk",), ("bulk",), ()]
    assert [queries.get_row(db, r.id).status for r in rows] == ["resolved", "resolved", "open"]


async def test_escape_clears_marks(workspace) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("space")
        assert app.inbox.marked
        await pilot.press("escape")
        assert not app.inbox.marked


async def test_repeat_last_action(workspace, db) -> None:  # noqa: ANN001
    rows = open_rows(db, 2)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        await type_text(pilot, "vip")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("j", "full_stop")
        await settle(pilot)
    assert [queries.get_row(db, r.id).tags for r in rows] == [("vip",), ("vip",)]


async def test_move_during_a_reload_is_kept(workspace, db) -> None:  # noqa: ANN001
    """A reload started before a keypress must not put the cursor back where it was (after a tag,
    pressing j at once used to land on the old row again when the reload finished late)."""
    rows = open_rows(db, 4)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.inbox.reload()
        app.inbox.action_cursor_down()
        await settle(pilot)
        assert app.inbox.cursor_id == rows[1].id
        app.inbox.reload()
        app.inbox.select_id(rows[3].id)
        await settle(pilot)
        assert app.inbox.cursor_id == rows[3].id and app.inbox.cursor_index == 3


async def test_a_jump_to_a_page_not_read_yet_survives_a_reload(workspace, db) -> None:  # noqa: ANN001
    """A reload asked before the cursor jumped to a row whose page was not read (its id not yet
    known) put the cursor back on the old row when it landed (a conversation opened from the
    customer card was lost this way)."""
    far = 150  # page 1: neither the first screens nor the last, which are read ahead
    target = queries.inbox_page(db, InboxFilter(), far, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.inbox.reload()
        app.inbox.move_to(far)
        await settle(pilot)
        assert app.inbox.cursor_index == far and app.inbox.cursor_id == target.id


async def test_search_and_back(workspace, db) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        everything = app.inbox.total
        await pilot.press("slash")
        await settle(pilot)
        await type_text(pilot, "platform:x")
        await pilot.press("enter")
        await settle(pilot)
        assert app.main.searching and 0 < app.inbox.total < everything
        assert app.inbox.current.platform == "x"
        assert app.inbox.total == queries.inbox_count(db, InboxFilter(statuses=None, platforms=("x",)))
        await pilot.press("escape")
        await settle(pilot)
        assert not app.main.searching and app.inbox.total == everything


async def test_search_words_and_hostile_queries(workspace) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for query in ('"', "NEAR(", "') OR 1=1 --", "tag:", "((", "Θεσσαλονίκη"):
            await pilot.press("slash")
            await settle(pilot)
            app.screen.query_one("Input").value = query
            await pilot.press("enter")
            await settle(pilot)
            assert app.is_running
        assert app.inbox.total >= 1  # the Greek word is in the demo data


async def test_views_by_number(workspace, db) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")  # Breached
        await settle(pilot)
        assert app.main.view_title == "Breached"
        breached = db.conn.execute("SELECT count(*) FROM conversations WHERE sla_state='breached'").fetchone()[0]
        assert app.inbox.total == breached and app.inbox.current.sla_state == "breached"
        await pilot.press("4")  # Reviews
        await settle(pilot)
        assert app.inbox.current.kind == "review"
        await pilot.press("9")  # not configured: a message, no change
        await settle(pilot)
        assert app.main.view_title == "Reviews"


async def test_most_urgent_jump(workspace, db) -> None:  # noqa: ANN001
    urgent = queries.inbox_page(db, InboxFilter(needs_reply=True), 0, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("G")
        await settle(pilot)
        await pilot.press("exclamation_mark")
        await settle(pilot)
        assert app.inbox.cursor_id == urgent.id
        await pilot.press("4")  # a view without it: ! goes back to the inbox
        await settle(pilot)
        await pilot.press("exclamation_mark")
        await settle(pilot)
        assert app.inbox.cursor_id == urgent.id and app.main.view_title == "Inbox"


async def test_enter_opens_thread_and_marks_read(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    db.conn.execute("UPDATE conversations SET unread=1 WHERE id=?", (target.id,))
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        # Reading: the thread is highlighted and the movement keys scroll it, not the list.
        assert app.main.reading and app.thread_view.reading
        app.thread_view.scroll_end(animate=False)
        await settle(pilot)
        bottom = app.thread_view.scroll_y
        await pilot.press("g", "j")
        await settle(pilot)
        assert app.inbox.cursor_id == target.id
        assert app.thread_view.scroll_y == min(1, bottom)
        await pilot.press("escape")
        assert not app.main.reading and app.focused is app.inbox
        await pilot.press("j")
        await settle(pilot)
        assert app.inbox.cursor_id != target.id  # back on the list, j moves the cursor
    assert not queries.get_row(db, target.id).unread


async def test_help_lists_bindings_of_context(workspace) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        ids = {row[3] for row in app.screen.rows}
        assert {"reply", "tag", "escalate", "snooze", "inbox.down", "inbox.mark", "view_1", "repeat"} <= ids
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("r")  # in the composer "?" is text, so ask for help as the palette does
        app.main.action_help()
        await settle(pilot)
        ids = {row[3] for row in app.screen.rows}
        assert "composer.send" in ids and app.screen.context == "composer"


async def test_command_palette_runs_actions(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await type_text(pilot, "Resolve")
        await settle(pilot)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
    assert queries.get_row(db, target.id).status == "resolved"


async def test_keymap_from_config_remaps(make_workspace) -> None:  # noqa: ANN001
    ws = make_workspace()
    ws.config = ws.config.model_copy(update={"keymap": {"resolve": "z", "inbox.down": "ctrl+n"}})
    db = ws.open_db()
    first, second = open_rows(db, 2)
    app = app_for(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert queries.get_row(db, first.id).status == "open"
        await pilot.press("ctrl+n")
        assert app.inbox.cursor_id == second.id
        await pilot.press("z")
        await settle(pilot)
    assert queries.get_row(db, second.id).status == "resolved"
    db.close()


async def test_draft_survives_close_and_restart(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await type_text(pilot, "half written")
        await pilot.press("escape")
        await settle(pilot)
        assert queries.draft(db, target.id) == ("half written", False)
        await pilot.press("r")
        await settle(pilot)
        assert app.composer.text == "half written"
        await type_text(pilot, " more")
        await pilot.pause(0.8)  # the debounced save, without closing
        await settle(pilot)
        assert queries.draft(db, target.id) == ("half written more", False)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert app.composer.text == "half written more"
        await pilot.press("ctrl+s")
        await settle(pilot)
    assert queries.draft(db, target.id) is None
    assert [i.text for i in outbox.pending(db)] == ["half written more"]


async def test_saved_reply_fills_customer(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r", "ctrl+o")
        await settle(pilot)
        await pilot.press("enter")  # first saved reply: "thanks"
        await settle(pilot)
        assert app.composer.text == f"Thank you {target.customer}, we're glad we could help!"


async def test_x_weighted_limit_blocks_overlong_reply(workspace, db) -> None:  # noqa: ANN001
    """X weighs an emoji (a ZWJ family included) 2 of its 280: 140 families fill a post."""
    conv = db.conn.execute(
        "SELECT id FROM conversations WHERE platform='x' AND kind='mention' AND status='open' LIMIT 1"
    ).fetchone()[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, conv)
        await pilot.press("r")
        family = "👨\u200d👩\u200d👧\u200d👦"
        app.composer.text_area.load_text(family * 140)
        await settle(pilot)
        info = str(app.composer.query_one("#composer-info").render())
        assert "· X · 280/280" in info
        app.composer.text_area.insert("!")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.composer.is_open
    assert outbox.pending(db) == []


async def test_composer_counts_with_the_accounts_stored_limit_and_the_platforms_unit(workspace, db) -> None:  # noqa: ANN001
    """The composer reads the facts the engine stored: an instance's own limit (here 40, as a
    Mastodon instance may report) and Telegram's UTF-16 units (an emoji outside the BMP is 2)."""
    from replydesk import providers
    from replydesk.storage import platform_facts

    stored = {p: f for a, p, f in platform_facts.load(db) if a == "demo"}
    # the engine pass stored them, with what the demo account can do besides replying
    assert stored["telegram"] == providers.platform_facts("telegram").with_actions(["delete_reply", "edit_reply"])
    stored["mastodon"] = stored["mastodon"].with_limit(40, 40)
    platform_facts.save(db, "demo", stored)

    def first(platform: str) -> str:
        return db.conn.execute("SELECT id FROM conversations WHERE platform=? AND status='open' LIMIT 1",
                               (platform,)).fetchone()[0]

    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, first("mastodon"))
        await pilot.press("r")
        app.composer.text_area.load_text("a" * 40)
        await settle(pilot)
        assert "· Mastodon · 40/40" in str(app.composer.query_one("#composer-info").render())
        app.composer.text_area.insert("!")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.composer.is_open  # refused here, not by the platform later
        await pilot.press("escape")
        await settle(pilot)
        await select(pilot, first("telegram"))
        await pilot.press("r")
        app.composer.text_area.load_text("😀" * 2048)
        await settle(pilot)
        assert "· Telegram · 4096/4096" in str(app.composer.query_one("#composer-info").render())
    assert outbox.pending(db) == []


async def test_selection_follows_conversation_on_new_writes(workspace, db) -> None:  # noqa: ANN001
    rows = open_rows(db, 4)
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("j", "j", "j")
        await settle(pilot)
        assert app.inbox.cursor_id == rows[3].id
        # Another process (the engine, the CLI) resolves two conversations above the cursor.
        actions.resolve(db, [rows[0].id, rows[1].id])
        for _ in range(100):  # the data_version poll runs every second: wait for it, not for a time
            if app.inbox.total == queries.inbox_count(db, InboxFilter()):
                break
            await pilot.pause(0.1)
            await settle(pilot)
        assert app.inbox.cursor_id == rows[3].id and app.inbox.cursor_index == 1


async def test_composer_is_escapable_and_quit(workspace) -> None:  # noqa: ANN001
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await type_text(pilot, "q")  # typed, does not quit
        assert app.is_running and app.composer.text == "q"
        await pilot.press("escape")
        assert not app.composer.is_open
        assert isinstance(app.composer, Composer)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_keys_typed_right_after_r_land_in_the_composer(workspace, db) -> None:  # noqa: ANN001
    """Touch typists (and SSH latency) deliver 'r' and the first words in one burst."""
    from textual import events

    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for ch in "rThanks, on it":
            app.post_message(events.Key(ch if ch != " " else "space", ch))
        await settle(pilot)
        assert app.composer.is_open
        assert app.composer.text == "Thanks, on it"
    assert queries.get_row(db, open_rows(db, 1)[0].id).tags == ()  # 'T'/'t' did not open tag dialogs


async def test_report_screen_shows_the_figures_of_the_cli(workspace, db) -> None:  # noqa: ANN001
    from textual.widgets import DataTable

    from replydesk.reporting import make_report
    from replydesk.tui.report_screen import ReportScreen

    expected = make_report(db, workspace.config.sla, None, FIXED, None)["groups"][0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, ReportScreen)
        table = app.screen.query_one(DataTable)
        row = [str(c) for c in table.get_row_at(0)]
        assert row[0] == "all" and row[1] == str(expected["conversations"])
        assert row[9] == str(expected["breaches"])
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[-3:] == ["CSAT answers", "satisfied", "avg"]
        assert row[-3] == str(expected["csat"]["responses"])
        await pilot.press("b")  # group by platform
        await settle(pilot)
        keys = {str(table.get_row_at(i)[0]) for i in range(table.row_count)}
        assert {"x", "facebook", "email"} <= keys
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ReportScreen)


async def test_send_later_from_the_composer_schedules_the_reply(workspace, db) -> None:  # noqa: ANN001
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await type_text(pilot, "Your parcel leaves tomorrow")
        await pilot.press("ctrl+l")
        await settle(pilot)
        await pilot.press("down", "enter")  # the "4 hours" preset
        await settle(pilot)
        assert not app.composer.is_open
    [item] = outbox.pending(db)
    assert (item.conversation_id, item.text, item.state) == (target.id, "Your parcel leaves tomorrow", "queued")
    assert item.not_before == FIXED + 4 * 3600
    assert outbox.ready(db) == []  # it waits until then


async def test_no_color_is_honoured(workspace, monkeypatch) -> None:  # noqa: ANN001
    """NO_COLOR users still see state: breached rows carry '!' and warning rows '~'."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.no_color
        lines = [app.inbox.render_line(y).text for y in range(5)]
        assert any("!" in line for line in lines)


async def test_notifications_show_names_literally(workspace, db) -> None:  # noqa: ANN001
    """An assignee or tag typed (or imported) as markup is shown as text, and cannot act."""
    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await assign(pilot, "[@click=app.quit]boss[/]")
        messages = [n.message for n in app._notifications]
        assert any("[@click=app.quit]boss[/]" in m for m in messages)
        assert all(not n.markup for n in app._notifications)
        assert app.is_running
    assert queries.get_row(db, target.id).assignee == "[@click=app.quit]boss[/]"


async def test_send_pressed_right_after_typing_sends_every_character(workspace, db) -> None:  # noqa: ANN001
    """Typing (or pasting over SSH) and ctrl+s in one burst: the reply is exactly what was typed."""
    from textual import events

    target = open_rows(db, 1)[0]
    app = app_for(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        for ch in "Thanks, checking":
            app.post_message(events.Key(ch if ch != " " else "space", ch))
        app.post_message(events.Key("ctrl+s", None))
        await settle(pilot)
    [item] = outbox.pending(db)
    assert (item.conversation_id, item.text) == (target.id, "Thanks, checking")
