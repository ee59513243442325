"""The console's keys come before the engine's ingest in the same process: while a key is in
flight, ingest waits between messages (not holding the interpreter), and goes on once the key's
frame is painted; the console never leaves it waiting."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from replydesk import foreground
from replydesk.model import Contact, FetchResult, IncomingMessage
from replydesk.storage.db import open_database
from replydesk.storage.ingest import ensure_account, ingest
from support import FIXED_NOW as FIXED


def page(n: int) -> FetchResult:
    msgs = [IncomingMessage(
        native_id=f"fg-{i}", conversation_native_id=f"fg-c{i % 7}", platform="email", kind="email",
        contact=Contact(native_id=f"fg-p{i % 7}", name=f"Person {i % 7}", handle=f"p{i % 7}@example.com"),
        text=f"message {i}", created_at=FIXED - 3600 + i, author=f"Person {i % 7}") for i in range(n)]
    return FetchResult(messages=msgs, cursor={}, stream="test")


def test_ingest_waits_while_a_key_is_in_flight_and_goes_on_once_it_is_painted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(foreground, "MAX_WAIT", 120.0)  # the test decides when the frame is painted
    waiting = threading.Event()
    real_wait = foreground._painted.wait

    def wait(timeout: float | None = None) -> bool:
        waiting.set()
        return real_wait(timeout)

    monkeypatch.setattr(foreground._painted, "wait", wait)
    db = open_database(tmp_path, create=True)
    ensure_account(db, "mail", "imap", "email")
    db.close()
    done = threading.Event()

    def engine() -> None:
        writer = open_database(tmp_path)
        try:
            ingest(writer, "mail", [page(100)])
        finally:
            writer.close()
            done.set()

    foreground.key_arrived()
    try:
        thread = threading.Thread(target=engine, name="engine", daemon=True)
        thread.start()
        assert waiting.wait(60), "ingest never stepped aside for the key"
        assert not done.is_set()  # it waits, holding nothing of the interpreter, for the frame
    finally:
        foreground.key_painted()
    thread.join(60)
    assert done.is_set() and not thread.is_alive()
    reader = open_database(tmp_path)
    try:
        assert reader.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 100
    finally:
        reader.close()


async def test_each_key_holds_the_engine_until_its_frame_and_never_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from replydesk.tui.app import ReplydeskApp
    from support import make_workspace

    said: list[str] = []
    real_arrived, real_painted = foreground.key_arrived, foreground.key_painted
    monkeypatch.setattr(foreground, "key_arrived", lambda: (said.append("key"), real_arrived())[1])
    monkeypatch.setattr(foreground, "key_painted", lambda: (said.append("painted"), real_painted())[1])
    keys = ("j", "j", "k", "enter", "escape", "G", "g")
    ws = make_workspace(tmp_path / "ws")
    app = ReplydeskApp(ws, start_engine=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        for _ in range(50):  # bounded: each round lets the app paint
            if said and said[-1] == "painted" and foreground._painted.is_set():
                break
            await pilot.pause()
        assert said.count("key") >= len(keys)  # every key holds the engine back ...
        assert said[-1] == "painted" and foreground._painted.is_set()  # ... and its frame lets it go
