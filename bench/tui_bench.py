"""TUI figures: first painted inbox rows, keypress-to-repaint latency, RSS; headless and under tmux.

Each headless measurement runs in a fresh process (``python -m bench tui-probe``) so start-up time
includes imports and RSS is that process's own peak (VmHWM). Inside the probe the app runs with
Textual's headless test driver (``app.run_test``); two hooks give the timestamps:

- ``InboxList.render_line`` — the first time a loaded row (or the empty-view line) is rendered is
  "first painted inbox rows";
- ``Screen._compositor_refresh`` — the end of each frame the compositor produced; keypress latency is
  the time from handing a key event to the driver to the end of the next frame.

The "while syncing" variant ingests fetch pages into the same workspace (a copy) from a writer thread
holding the engine's lock, as ``EngineThread`` does; it also yields the ingest-while-the-TUI-reads
throughput against the same ingest with no TUI running.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.generate import LANGUAGES, Spec, account_names, conversation_messages
from replydesk.model import FetchResult, IncomingMessage

KEYS = ["j"] * 12 + ["k"] * 4 + ["pagedown", "pagedown", "pageup", "enter", "escape", "j", "enter", "escape",
                                  "G", "g", "j", "j", "enter", "escape"]
QUICK_KEYS = ["j", "j", "j", "k", "pagedown", "enter", "escape", "G", "g", "escape"]
SIZE = (120, 40)
KEY_GAP = 0.25  # seconds between key presses


def tui_available() -> str | None:
    """None when the TUI can be benchmarked, else why not."""
    try:
        from replydesk.tui.app import ReplydeskApp  # noqa: F401
        from replydesk.tui.inbox import InboxList  # noqa: F401
    except Exception as exc:  # the TUI is optional for the storage figures
        return f"tui not available: {type(exc).__name__}: {exc}"
    return None


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """Peak resident set size of a process in MB, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ---- the writer thread ------------------------------------------------------------------------------


def sync_pages(spec: Spec, n_pages: int, per_page: int, now: float) -> list[tuple[str, FetchResult]]:
    """New conversations plus follow-ups in existing ones, one account per page (a provider fetch)."""
    accounts = account_names(spec)
    out = []
    for p in range(n_pages):
        a = p % len(accounts)
        account, platform = accounts[a]
        msgs: list[IncomingMessage] = []
        k = 0
        while len(msgs) < per_page:
            index = 10_000_000 + p * per_page + k
            msgs.extend(conversation_messages(spec, index, 1, account, platform, now - 5))
            old = (a + len(accounts) * ((p * 7919 + k) % max(spec.conversations // len(accounts), 1)))
            if old < spec.conversations:
                template = conversation_messages(spec, old, 1, account, platform, now - 5)[0]
                msgs.append(IncomingMessage(
                    native_id=f"sync-{p}-{k}", conversation_native_id=f"c{old}", platform=platform,
                    kind=template.kind, contact=template.contact, text=LANGUAGES[k % len(LANGUAGES)][3][0],
                    created_at=now - 1, author=template.contact.name,
                ))
            k += 1
        out.append((account, FetchResult(messages=msgs, cursor={"sync": p}, stream="bench-sync")))
    return out


class Writer:
    """Ingests pages from its own thread and connection under the engine lock, like the sync engine."""

    def __init__(self, data_dir: Path, pages: list[tuple[str, FetchResult]], pause: float) -> None:
        self.data_dir = data_dir
        self.pages = pages
        self.pause = pause
        self.spent = 0.0
        self.messages = 0
        self.done = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from replydesk.config import Config
        from replydesk.storage.ingest import ingest
        from replydesk.storage.lock import EngineLock
        from replydesk.workspace import Workspace

        lock = EngineLock(self.data_dir)
        if not lock.acquire():
            self.error = RuntimeError("engine lock held by another process")
            self.done.set()
            return
        db = Workspace(self.data_dir, Config()).open_db()
        try:
            for account, page in self.pages:
                if self.stop.is_set():
                    break
                t0 = time.perf_counter()
                ingest(db, account, [page])
                self.spent += time.perf_counter() - t0
                self.messages += len(page.messages)
                time.sleep(self.pause)
        except BaseException as exc:  # reported by the probe
            self.error = exc
        finally:
            db.close()
            lock.release()
            self.done.set()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="bench-writer", daemon=True)
        thread.start()
        return thread

    @property
    def rate(self) -> float | None:
        return self.messages / self.spent if self.spent else None


# ---- the probe (runs in its own process) ------------------------------------------------------------


def _install_hooks(marks: dict[str, Any]) -> None:
    from textual.screen import Screen

    from replydesk.storage import queries
    from replydesk.tui.inbox import InboxList
    from replydesk.tui.sla_pane import SlaPane
    from replydesk.tui.thread import ThreadView

    original_render = InboxList.render_line
    original_refresh = Screen._compositor_refresh
    original_thread_show, original_sla_show = ThreadView.show, SlaPane.show
    original_read = queries.thread

    def thread_show(self: ThreadView, thread: Any, **kwargs: Any) -> None:
        original_thread_show(self, thread, **kwargs)
        marks["thread_shown"] = (thread.conversation.id if thread is not None else None, time.perf_counter())
        marks["shown"].append(marks["thread_shown"])

    def sla_show(self: SlaPane, row: Any, *args: Any) -> None:
        original_sla_show(self, row, *args)
        marks["sla_shown"] = (row.id if row is not None else None, time.perf_counter())

    def read_thread(db: Any, conv_id: str, *args: Any, **kwargs: Any) -> Any:
        marks["thread_reads"].append((conv_id, time.perf_counter()))
        return original_read(db, conv_id, *args, **kwargs)

    def render_line(self: InboxList, y: int):  # noqa: ANN202 - Textual's Strip
        strip = original_render(self, y)
        if "first_rows" not in marks and self.loaded and (
            self.total == 0 or self._pages.get((int(self.scroll_offset.y) + y) // 100) is not None
        ):
            marks["first_rows"] = time.time()
        return strip

    def compositor_refresh(self: Screen) -> None:
        original_refresh(self)
        marks["frames"].append(time.perf_counter())

    InboxList.render_line = render_line  # type: ignore[method-assign]
    Screen._compositor_refresh = compositor_refresh  # type: ignore[method-assign]
    ThreadView.show = thread_show  # type: ignore[method-assign]
    SlaPane.show = sla_show  # type: ignore[method-assign]
    queries.thread = read_thread


async def _settled(marks: dict[str, Any], inbox: Any, after: float, timeout: float = 3.0) -> float | None:
    """The end of the first frame after ``after`` in which the thread and the SLA pane show the
    conversation under the cursor (the screen has settled), or None."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        want = inbox.cursor_id
        thread, sla = marks.get("thread_shown", (None, 0.0)), marks.get("sla_shown", (None, 0.0))
        if want is not None and thread[0] == want and sla[0] == want:
            return await _next_frame(marks, max(after, thread[1], sla[1]), timeout)
        await asyncio.sleep(0.0005)
    return None


async def _next_frame(marks: dict[str, Any], after: float, timeout: float = 2.0) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        frames = marks["frames"]
        if frames and frames[-1] > after:
            return next(f for f in frames if f > after)
        await asyncio.sleep(0.0005)
    return None


async def _probe(data_dir: Path, spawned_at: float, keys: list[str], writer: Writer | None,
                 engine: bool = False) -> dict[str, Any]:
    from replydesk import tui  # noqa: F401 - first, as the CLI does: it sets the console's frame rate before Textual loads

    # isort: split
    from textual import events

    from replydesk.config import Config
    from replydesk.tui.app import ReplydeskApp
    from replydesk.workspace import Workspace

    marks: dict[str, Any] = {"frames": [], "thread_reads": [], "shown": []}
    _install_hooks(marks)
    app = ReplydeskApp(Workspace(data_dir, Config()), start_engine=engine)
    result: dict[str, Any] = {}
    async with app.run_test(size=SIZE) as pilot:
        deadline = time.time() + 60
        while "first_rows" not in marks and time.time() < deadline:
            await asyncio.sleep(0.001)
        result["first_rows_s"] = marks["first_rows"] - spawned_at if "first_rows" in marks else None
        await pilot.pause(0.3)  # the first thread load and header settle
        inbox = app.inbox
        result["total"] = inbox.total
        if writer is not None:
            writer.start()
            await asyncio.sleep(0.3)
        latencies: list[float] = []
        per_key: dict[str, list[float]] = {}
        settled_ms: list[float] = []
        per_key_settled: dict[str, list[float]] = {}
        jump_rows_ms = None
        driver = app._driver
        assert driver is not None
        for key in keys:
            char = key if len(key) == 1 else None
            event = events.Key(key, char)
            event.set_sender(app)
            t0 = time.perf_counter()
            driver.send_message(event)
            frame = await _next_frame(marks, t0)
            rows_in_first_frame = key == "G" and inbox._pages.get(inbox.cursor_index // 100) is not None
            if frame is not None:
                ms = (frame - t0) * 1000
                latencies.append(ms)
                per_key.setdefault(key, []).append(ms)
            settled = await _settled(marks, inbox, t0)
            if settled is not None:
                ms = (settled - t0) * 1000
                settled_ms.append(ms)
                per_key_settled.setdefault(key, []).append(ms)
            if key == "G" and inbox.total and rows_in_first_frame and frame is not None:
                jump_rows_ms = (frame - t0) * 1000  # the bottom page was read ahead: G's own frame has its rows
            elif key == "G" and inbox.total:
                # How long until the rows at the bottom of the list (a page not yet read) are painted.
                wait_until = time.perf_counter() + 5
                while inbox._pages.get(inbox.cursor_index // 100) is None and time.perf_counter() < wait_until:
                    await asyncio.sleep(0.001)
                painted = await _next_frame(marks, time.perf_counter())
                if painted is not None:
                    jump_rows_ms = (painted - t0) * 1000
            await asyncio.sleep(KEY_GAP)  # a brisk typist: the debounced thread load of the last key has landed
        result["key_ms"] = latencies
        result["per_key_ms"] = per_key
        result["settled_ms"] = settled_ms
        result["per_key_settled_ms"] = per_key_settled
        if keys and inbox.total > 40:
            result["burst"] = await _burst(marks, app, inbox)
        result["jump_last_rows_ms"] = jump_rows_ms
        result["keys_without_frame"] = len(keys) - len(latencies)
        if writer is not None:
            writer.stop.set()
            await asyncio.to_thread(writer.done.wait, 30)
        # Let in-flight workers (thread loads, reloads) land before the app shuts down: a message that
        # arrives during shutdown can hit a widget that is already gone.
        await pilot.pause(0.5)
    result["rss_mb"] = vm_hwm_mb()
    return result


BURST = 12  # keys
BURST_GAP = 0.033  # seconds: a held key at 30 repeats per second


async def _burst(marks: dict[str, Any], app: Any, inbox: Any) -> dict[str, Any]:
    """Hold j for a dozen rows (key repeat): how many thread reads it costs, how many of those were
    for rows the cursor only passed, and how long the screen takes to settle after the last key."""
    from textual import events

    driver = app._driver
    await asyncio.sleep(KEY_GAP)
    start_reads, start_shown = len(marks["thread_reads"]), len(marks["shown"])
    t_first = time.perf_counter()
    passed: list[str] = []
    for _ in range(BURST):
        event = events.Key("j", "j")
        event.set_sender(app)
        driver.send_message(event)
        await asyncio.sleep(BURST_GAP)
        if inbox.cursor_id:
            passed.append(inbox.cursor_id)
    t_last = time.perf_counter() - BURST_GAP
    settled = await _settled(marks, inbox, t_last)
    await asyncio.sleep(0.5)  # what is read ahead once the key is let go
    reads = marks["thread_reads"][start_reads:]
    end = settled or t_last
    during = [c for c, at in reads if at <= end]
    shown = {c for c, at in marks["shown"][start_shown:] if at <= end}
    return {
        "keys": BURST, "gap_ms": BURST_GAP * 1000, "rows_passed": len(set(passed)), "reads_during": len(during),
        "reads_never_shown": sum(1 for c in during if c not in shown),
        "reads_after": len(reads) - len(during),
        "settled_after_last_key_ms": round((settled - t_last) * 1000, 2) if settled else None,
        "burst_s": round(time.perf_counter() - t_first, 3),
    }


def probe_main(data_dir: Path, spawned_at: float, sync_pages_n: int, sync_per_page: int,
               spec_json: str | None, keys: str = "full", engine: bool = False) -> int:
    """Entry point of ``python -m bench tui-probe``: prints one JSON object."""
    writer = None
    bare_rate = None
    if sync_pages_n:
        spec = Spec(**json.loads(spec_json)) if spec_json else Spec(1000, 10000)
        all_pages = sync_pages(spec, sync_pages_n * 2, sync_per_page, time.time())
        bare = Writer(data_dir, all_pages[:sync_pages_n], pause=0.0)
        bare.run()  # the same ingest with no TUI reading: the baseline
        if bare.error:
            raise bare.error
        bare_rate = bare.rate
        writer = Writer(data_dir, all_pages[sync_pages_n:], pause=0.15)
    key_list = {"full": KEYS, "quick": QUICK_KEYS}.get(keys, [])
    result = asyncio.run(_probe(data_dir, spawned_at, key_list, writer, engine))
    if writer is not None:
        result["ingest_rate_while_tui"] = writer.rate
        result["ingest_rate_bare"] = bare_rate
        result["ingest_messages_while_tui"] = writer.messages
        result["writer_error"] = repr(writer.error) if writer.error else None
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# ---- the parent side ---------------------------------------------------------------------------------


def run_probe(data_dir: Path, *, sync_pages_n: int = 0, sync_per_page: int = 300, spec: Spec | None = None,
              keys: str = "full", timeout: float = 300, engine: bool = False) -> dict[str, Any]:
    """Spawn one probe process and return what it measured."""
    cmd = [sys.executable, "-m", "bench", "tui-probe", "--data-dir", str(data_dir),
           "--spawned-at", repr(time.time()), "--sync-pages", str(sync_pages_n), "--sync-per-page",
           str(sync_per_page)]
    if spec is not None:
        cmd += ["--spec", json.dumps(spec.__dict__)]
    cmd += ["--keys", keys] + (["--engine"] if engine else [])
    env = dict(os.environ)
    cmd[cmd.index("--spawned-at") + 1] = repr(time.time())  # as late as possible before the spawn
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        raise RuntimeError(f"tui probe failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def copy_workspace(src: Path, dst: Path) -> Path:
    """A throwaway copy of a cached workspace (the syncing probe writes into it)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in os.listdir(src):
        if name.startswith("replydesk.db"):
            shutil.copy2(src / name, dst / name)
    return dst


# ---- a real terminal: tmux -------------------------------------------------------------------------


TMUX_SOCKET = f"replydesk-bench-{os.getpid()}"
ROW_MARKERS = [name.split()[0] for _, names, _, _ in LANGUAGES for name in names] + ["nothing here"]


def _tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", TMUX_SOCKET, *args], capture_output=True, text=True, check=check)


def tmux_available() -> bool:
    return shutil.which("tmux") is not None


def tmux_start_server() -> None:
    """A keep-alive session, so the first measurement does not pay for starting the tmux server."""
    _tmux("new-session", "-d", "-s", "keepalive", "-x", "80", "-y", "24", "sleep 3600")


def tmux_kill_server() -> None:
    _tmux("kill-server", check=False)


def _pane_pid(session: str) -> int | None:
    out = _tmux("list-panes", "-t", session, "-F", "#{pane_pid}", check=False).stdout.split()
    if not out:
        return None
    pid = int(out[0])
    for _ in range(3):  # the pane may run a shell that runs replydesk
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if b"replydesk" in cmdline:
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not children:
            return pid
        pid = int(children[0])
    return pid


def tmux_first_rows(data_dir: Path, config: Path, timeout: float = 60) -> dict[str, Any]:
    """Start ``replydesk --data-dir DIR`` in a tmux pane; poll capture-pane until a row shows."""
    exe = Path(sys.executable).with_name("replydesk")
    session = f"b{time.monotonic_ns()}"
    cmd = f"exec {exe} --data-dir {data_dir} --config {config}"
    t0 = time.time()
    _tmux("new-session", "-d", "-s", session, "-x", str(SIZE[0]), "-y", str(SIZE[1]), cmd)
    seen = None
    screen = ""
    try:
        while time.time() - t0 < timeout:
            screen = _tmux("capture-pane", "-p", "-t", session, check=False).stdout
            if any(marker in screen for marker in ROW_MARKERS):
                seen = time.time() - t0
                break
            time.sleep(0.01)
        pid = _pane_pid(session)
        for keys in (["G"], ["g"], ["j"], ["j"], ["Enter"], ["Escape"]):
            _tmux("send-keys", "-t", session, *keys, check=False)
            time.sleep(0.25)
        rss = vm_hwm_mb(pid) if pid else None
        _tmux("send-keys", "-t", session, "q", check=False)
        time.sleep(0.3)
    finally:
        _tmux("kill-session", "-t", session, check=False)
    return {"first_rows_s": seen, "rss_mb": rss, "screen_tail": None if seen else screen[-400:]}


# ---- keys in a real terminal: first change and settled screen, from tmux's own output stream -------

NEOMUTT_MARKERS = ["Msgs:"]  # its status line, once the index is read
TMUX_KEYS = ["j"] * 10 + ["k"] * 4 + ["NPage", "PPage", "G", "g", "j", "j"]
QUIET = 0.3  # seconds without output that end a key's screen changes


class _ControlClient:
    """A tmux control-mode client on a session: keys go in as commands, and every byte the program
    writes to its terminal comes back as an ``%output`` line, stamped on arrival."""

    def __init__(self, session: str) -> None:
        self.proc = subprocess.Popen(["tmux", "-L", TMUX_SOCKET, "-C", "attach-session", "-t", session],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.outputs: list[float] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(b"%output "):
                self.outputs.append(time.perf_counter())

    def send(self, session: str, key: str) -> float:
        assert self.proc.stdin is not None
        t0 = time.perf_counter()
        self.proc.stdin.write(f"send-keys -t {session} {key}\n".encode())
        self.proc.stdin.flush()
        return t0

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def changes_after(self, t0: float, timeout: float = 5.0) -> tuple[float | None, float | None]:
        """(first output, last output before a quiet spell) after ``t0``, in ms from ``t0``."""
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            after = [t for t in self.outputs if t > t0]
            if after and time.perf_counter() - after[-1] >= QUIET:
                return (after[0] - t0) * 1000, (after[-1] - t0) * 1000
            time.sleep(0.005)
        after = [t for t in self.outputs if t > t0]
        return ((after[0] - t0) * 1000, (after[-1] - t0) * 1000) if after else (None, None)


def tmux_session(cmd: str, markers: list[str], timeout: float = 120) -> tuple[str, float | None, str]:
    """Start ``cmd`` in a 120x40 tmux pane: (session, seconds until a marker showed, last screen)."""
    session = f"b{time.monotonic_ns()}"
    t0 = time.time()
    _tmux("new-session", "-d", "-s", session, "-x", str(SIZE[0]), "-y", str(SIZE[1]), cmd)
    screen = ""
    while time.time() - t0 < timeout:
        screen = _tmux("capture-pane", "-p", "-t", session, check=False).stdout
        if any(marker in screen for marker in markers):
            return session, time.time() - t0, screen
        time.sleep(0.01)
    return session, None, screen


def tmux_keys(cmd: str, markers: list[str], keys: list[str] = TMUX_KEYS, quit_key: str = "q",
              timeout: float = 120) -> dict[str, Any]:
    """Start ``cmd`` in tmux, wait for its first rows, then press ``keys`` one at a time: per key
    the time to the terminal's first change and to its last before the screen went quiet."""
    session, seen, screen = tmux_session(cmd, markers, timeout)
    result: dict[str, Any] = {"first_rows_s": seen, "first_ms": [], "settled_ms": [], "per_key": {}}
    try:
        if seen is None:
            result["screen_tail"] = screen[-400:]
            return result
        time.sleep(1.5)  # start-up settles (the first thread, reads ahead, counts)
        client = _ControlClient(session)
        try:
            time.sleep(0.3)
            for key in keys:
                first, last = client.changes_after(client.send(session, key))
                if first is not None:
                    result["first_ms"].append(first)
                    result["settled_ms"].append(last)
                    result["per_key"].setdefault(key, []).append((round(first, 2), round(last, 2)))
                time.sleep(0.1)
        finally:
            client.close()
        pid = _pane_pid(session)
        result["rss_mb"] = vm_hwm_mb(pid) if pid else None
        _tmux("send-keys", "-t", session, quit_key, check=False)
        time.sleep(0.3)
    finally:
        _tmux("kill-session", "-t", session, check=False)
    return result


def replydesk_command(data_dir: Path, config: Path) -> str:
    exe = Path(sys.executable).with_name("replydesk")
    return f"exec {exe} --data-dir {data_dir} --config {config}"


def neomutt_command(maildir: Path, work: Path, header_cache: Path | None) -> str:
    """neomutt on the maildir, with a config of its own (nothing of the user's); ``header_cache``
    None: every message file is read at start, as on a first open."""
    rc = work / "neomuttrc"
    rc.write_text(
        "set mbox_type=Maildir\n"
        f'set folder="{maildir}"\nset spoolfile="{maildir}/inbox"\n'
        f'set header_cache="{header_cache or ""}"\n'
        "set sort=date-received\nset mail_check=0\nset timeout=0\nset sleep_time=0\nset mark_old=no\n"
        "set quit=yes\nset help=no\nset wait_key=no\nset read_inc=0\n",
        encoding="utf-8",
    )
    return f"exec neomutt -n -F {rc} -f {maildir}/inbox"
