"""``python -m bench run``: every figure at every size, with baselines measured in the same run."""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cli_bench, generate, import_bench, peers, storage_bench, tui_bench
from bench.report import Figure, Reporter, median, percentile
from replydesk.config import Config
from replydesk.storage import queries
from replydesk.storage.queries import InboxFilter
from replydesk.workspace import Workspace


@dataclass
class Options:
    sizes: list[str]
    runs: int
    quick: bool
    tui: bool = True
    tmux: bool = True
    markdown: bool = False
    cache_dir: Path = generate.CACHE_DIR
    team: bool = True
    peers: bool = True  # the command line and tmux figures against notmuch and neomutt
    only_peers: bool = False  # skip the storage and import figures (a partial run: say so when quoting)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": _nproc(), "sqlite": _sqlite()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        import textual

        info["textual"] = textual.__version__
    except Exception:  # the storage figures do not need it
        pass
    return info


def _nproc() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _sqlite() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def _med(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _null(reporter: Reporter, names: list[tuple[str, str]], size: int, note: str) -> None:
    for name, unit in names:
        reporter.add(Figure(name, size, None, unit, note=note))


TUI_NAMES = [("tui_first_rows_s", "s"), ("tui_first_rows_s_tmux", "s"), ("tui_key_p50_ms", "ms"),
             ("tui_key_p95_ms", "ms"), ("tui_key_p95_ms_while_syncing", "ms"), ("tui_rss_mb", "MB"),
             ("ingest_rows_per_s_while_tui_reads", "messages/s")]


class Runner:
    def __init__(self, opts: Options, reporter: Reporter) -> None:
        self.opts = opts
        self.r = reporter
        self.tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=_ensure(opts.cache_dir)))
        self.tui_base: dict[str, Any] | None = None
        self.tmux_base: dict[str, Any] | None = None
        self.tui_reason = tui_bench.tui_available() if opts.tui else "tui figures skipped (--no-tui)"
        self.keys = "quick" if opts.quick else "full"
        self.config_file = opts.cache_dir / "bench-config.yaml"
        self.config_file.write_text(BENCH_CONFIG)
        self.cli_setup: tuple[Path, dict[str, str]] | None = None
        self.startup_done = False

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def timed(self, label: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            log(f"  {label}: {time.perf_counter() - t0:.1f} s")

    # ---- per size -----------------------------------------------------------------------------------

    def size(self, name: str) -> None:
        spec = generate.spec_for(name)
        log(f"== {name}: {spec.messages:,} messages, {spec.conversations:,} conversations")
        gen = self.timed("workspace", lambda: generate.cached(spec, cache_dir=self.opts.cache_dir, log=log))
        n = spec.messages
        self.r.add(Figure("generate_s", n, gen.seconds, "s",
                          note=("reused from cache; " if gen.cached else "") +
                               f"generated through storage.ingest.ingest in {gen.seconds:.1f} s "
                               f"({gen.messages / max(gen.seconds, 1e-9):,.0f} messages/s incl. bookkeeping)"))
        if self.opts.only_peers:
            self.tui(n, spec, gen.data_dir)
            self.cli(n, spec, gen.data_dir)
            self.terminal(n, spec, gen.data_dir)
            return
        runs = 1 if self.opts.quick else self.opts.runs
        ingest_n = 5_000 if self.opts.quick else min(n, 100_000)
        if n <= 1_000_000:  # above, the ingest figure would repeat the 100k measurement
            self.r.add(self.timed("ingest", lambda: storage_bench.bench_ingest(n, ingest_n, runs, self.tmp)))
        db = Workspace(gen.data_dir, Config()).open_db(create=False)
        try:
            for fig in self.timed("search", lambda: storage_bench.bench_search(db, n, runs)):
                self.r.add(fig)
            repeat = 20 if self.opts.quick else (50 if n <= 1_000_000 else 5)  # the plain page query takes seconds at 10M
            for fig in self.timed("pages", lambda: storage_bench.bench_pages(db, n, repeat)):
                self.r.add(fig)
        finally:
            db.close()
        if n <= 1_000_000:  # the import goal is set at 1M; 10M would take an hour to export and import
            for fig in self.timed("import", lambda: import_bench.bench_import(
                    n, gen.data_dir, self.opts.cache_dir, spec.key, 1 if self.opts.quick or n >= 1_000_000 else runs,
                    self.tmp)):
                self.r.add(fig)
        self.tui(n, spec, gen.data_dir)
        if self.opts.peers:
            self.cli(n, spec, gen.data_dir)
            self.terminal(n, spec, gen.data_dir)

    # ---- TUI ----------------------------------------------------------------------------------------

    def _baselines(self) -> None:
        if self.tui_base is not None:
            return
        empty = self.tmp / "empty"
        Workspace(empty, Config()).open_db().close()
        tiny = generate.cached(generate.Spec(100, 1000), cache_dir=self.opts.cache_dir, log=log)
        runs = 1 if self.opts.quick else self.opts.runs
        empty_runs = [tui_bench.run_probe(empty, keys="none") for _ in range(runs)]
        tiny_runs = [tui_bench.run_probe(tiny.data_dir, keys=self.keys) for _ in range(runs)]
        self.tui_base = {"empty": empty_runs, "tiny": tiny_runs}
        if self.opts.tmux and tui_bench.tmux_available():
            self.tmux_base = tui_bench.tmux_first_rows(empty, self.config_file)

    def tui(self, n: int, spec: generate.Spec, data_dir: Path) -> None:
        if self.tui_reason:
            _null(self.r, TUI_NAMES, n, self.tui_reason)
            return
        try:
            self.timed("tui baselines", self._baselines)
            runs = 1 if self.opts.quick else self.opts.runs
            probes = self.timed("tui probes", lambda: [tui_bench.run_probe(data_dir, keys=self.keys)
                                                       for _ in range(runs)])
            copy = tui_bench.copy_workspace(data_dir, self.tmp / "sync-copy")
            pages_n = 8 if self.opts.quick else 30  # enough pages to keep writing while the keys are pressed
            syncing = self.timed("tui probe while syncing", lambda: tui_bench.run_probe(
                copy, sync_pages_n=pages_n, sync_per_page=300, spec=spec, keys=self.keys))
            shutil.rmtree(copy, ignore_errors=True)
        except Exception as exc:  # a broken TUI must not hide the storage figures
            log(f"WARN tui probe failed: {exc}")
            _null(self.r, TUI_NAMES, n, f"tui probe failed: {str(exc)[-300:]}")
            return
        assert self.tui_base is not None
        empty, tiny = self.tui_base["empty"], self.tui_base["tiny"]

        first = _med([p["first_rows_s"] for p in probes])
        self.r.add(Figure("tui_first_rows_s", n, first, "s", _med([p["first_rows_s"] for p in empty]),
                          target="< 1 s", ok=first is not None and first < 1,
                          note=f"process start -> first painted inbox rows, headless (Textual test driver); "
                               f"baseline = empty cache; median of {len(probes)}"))
        if self.opts.tmux and tui_bench.tmux_available():
            tm = self.timed("tmux", lambda: [tui_bench.tmux_first_rows(data_dir, self.config_file)
                                             for _ in range(1 if self.opts.quick else max(self.opts.runs, 1))])
            v = _med([t["first_rows_s"] for t in tm])
            self.r.add(Figure("tui_first_rows_s_tmux", n, v, "s",
                              self.tmux_base["first_rows_s"] if self.tmux_base else None,
                              target="< 1 s", ok=v is not None and v < 1,
                              note="`replydesk --data-dir DIR` in a 120x40 tmux pane, capture-pane polled every 10 ms "
                                   "until a row shows; baseline = empty cache"))
            tm_rss = _med([t["rss_mb"] for t in tm])
            self.r.add(Figure("tui_rss_mb_tmux", n, tm_rss, "MB",
                              self.tmux_base["rss_mb"] if self.tmux_base else None,
                              target="< 150 MB", ok=tm_rss is not None and tm_rss < 150,
                              note="VmHWM of the real replydesk process after G, g, j, j, enter, escape"))
        else:
            self.r.add(Figure("tui_first_rows_s_tmux", n, None, "s", note="tmux not installed or --no-tmux"))

        def keys(p: dict[str, Any], q: float) -> float | None:
            return percentile(p["key_ms"], q) if p["key_ms"] else None

        k50 = _med([keys(p, 50) for p in probes])
        k95 = _med([keys(p, 95) for p in probes])
        b50 = _med([keys(p, 50) for p in tiny])
        b95 = _med([keys(p, 95) for p in tiny])
        note = ("key event -> end of the next compositor frame, headless; keys j k pagedown pageup G g enter escape; "
                "baseline = a 100-conversation cache (on an empty cache the keys repaint nothing); "
                f"{tui_bench.KEY_GAP} s between keys")
        self.r.add(Figure("tui_key_p50_ms", n, k50, "ms", b50, target="< 16 ms", ok=k50 is not None and k50 < 16,
                          note=note))
        self.r.add(Figure("tui_key_p95_ms", n, k95, "ms", b95, target="< 16 ms", ok=k95 is not None and k95 < 16,
                          note=note, extra={"per_key_p95_ms": _per_key(probes)}))
        s95 = keys(syncing, 95)
        self.r.add(Figure("tui_key_p95_ms_while_syncing", n, s95, "ms", k95, target="< 16 ms",
                          ok=s95 is not None and s95 < 16,
                          note=f"same keys while a writer thread ingests {pages_n} pages of 300 messages "
                               f"(one every 0.15 s) into the same workspace; baseline = same size, no sync"))
        def settled(ps: list[dict[str, Any]], q: float) -> float | None:
            values = [v for p in ps for k in ("j", "k") for v in p.get("per_key_settled_ms", {}).get(k, [])]
            return percentile(values, q) if values else None

        s95, sb95 = settled(probes, 95), settled(tiny, 95)
        self.r.add(Figure("tui_settled_jk_p95_ms", n, s95, "ms", sb95, target="< 30 ms",
                          ok=s95 is not None and s95 < 30, measured="j and k only",
                          note="key event -> end of the first frame in which the thread and the SLA pane show the "
                               "conversation under the cursor, headless; baseline = a 100-conversation cache",
                          extra={"p50_ms": round(settled(probes, 50), 2) if settled(probes, 50) is not None else None,
                                 "all_keys_p95_ms": round(percentile([v for p in probes for v in p["settled_ms"]],
                                                                     95), 2) if probes[0]["settled_ms"] else None}))
        bursts = [p["burst"] for p in probes if p.get("burst")]
        if bursts:
            b = bursts[0]
            self.r.add(Figure("tui_burst_reads_never_shown", n, _med([x["reads_never_shown"] for x in bursts]), "reads",
                              measured=f"{b['keys']} j at {b['gap_ms']:.0f} ms",
                              note="a held j: thread reads made before the screen settled that the screen never "
                                   "showed (wasted reads); reads_during and settled_after_last_key_ms in extra",
                              extra={"reads_during": _med([x["reads_during"] for x in bursts]),
                                     "rows_passed": _med([x["rows_passed"] for x in bursts]),
                                     "settled_after_last_key_ms": _med([x["settled_after_last_key_ms"] for x in bursts])}))
        jump = _med([p["jump_last_rows_ms"] for p in probes])
        self.r.add(Figure("tui_jump_last_rows_ms", n, jump, "ms", _med([p["jump_last_rows_ms"] for p in tiny]),
                          note="G (last row) -> the unread bottom page painted (page query in a worker)"))
        rss = _med([p["rss_mb"] for p in probes])
        self.r.add(Figure("tui_rss_mb", n, rss, "MB", _med([p["rss_mb"] for p in empty]),
                          target="< 150 MB", ok=rss is not None and rss < 150,
                          note="peak RSS (VmHWM) of the headless probe process after the key sequence; "
                               "baseline = empty cache"))
        under, bare = syncing.get("ingest_rate_while_tui"), syncing.get("ingest_rate_bare")
        self.r.add(Figure("ingest_rows_per_s_while_tui_reads", n, under, "messages/s", bare,
                          note="storage.ingest.ingest under the engine lock from a writer thread while the TUI "
                               "reads (same process, like EngineThread) vs the same ingest with no TUI"
                               + (f"; writer error {syncing['writer_error']}" if syncing.get("writer_error") else "")))

    # ---- the command line, a real terminal, and the peers (notmuch, neomutt) on the same messages ------

    def _installed(self) -> tuple[Path, dict[str, str]]:
        if self.cli_setup is None:
            self.cli_setup = (self.timed("wheel install", lambda: cli_bench.installed(self.opts.cache_dir, log)),
                              cli_bench.config_home(self.tmp, self.config_file))
        return self.cli_setup

    def _maildir(self, spec: generate.Spec, data_dir: Path) -> tuple[Path, int]:
        export = import_bench.export_file(data_dir, self.opts.cache_dir, spec.key)
        return self.timed("maildir", lambda: peers.maildir(export, self.opts.cache_dir, spec.key, log))

    def notmuch(self, spec: generate.Spec, data_dir: Path) -> Path | None:
        """The notmuch database of this workspace's messages (indexed once, cached), or None."""
        if not peers.available("notmuch"):
            return None
        mail_root, count = self._maildir(spec, data_dir)
        db_dir = self.opts.cache_dir / f"{spec.key}-notmuch"
        done = db_dir / peers.DONE
        if done.exists():
            return db_dir / "notmuch-config"
        seconds, peak, config = self.timed("notmuch new", lambda: peers.notmuch_new(mail_root, db_dir))
        done.write_text(json.dumps({"seconds": seconds, "peak_mb": peak, "messages": count}))
        return config

    def cli(self, n: int, spec: generate.Spec, data_dir: Path) -> None:
        bin_dir, env = self._installed()
        runs = 5 if self.opts.quick else 15 * self.opts.runs
        if not self.startup_done:
            self.startup_done = True
            for fig in self.timed("cli start-up", lambda: cli_bench.bench_startup(bin_dir, env, runs)):
                self.r.add(fig)
        config = self.notmuch(spec, data_dir) if n <= PEERS_UP_TO else None
        words = list(dict.fromkeys(q for q in storage_bench.search_queries(200)
                                   if q.isalpha() and len(q) > 3))[:12]
        db = Workspace(data_dir, Config()).open_db(create=False)
        try:
            conv_ids = [r.id for r in queries.inbox_page(db, InboxFilter(), 0, 12)]
        finally:
            db.close()
        for fig in self.timed("cli reads", lambda: cli_bench.bench_reads(bin_dir, env, data_dir, config, n, words,
                                                                          conv_ids, runs)):
            self.r.add(fig)

    def terminal(self, n: int, spec: generate.Spec, data_dir: Path) -> None:
        """Keys in tmux, as a user feels them: replydesk and neomutt alternately, same keys."""
        if not (self.opts.tmux and tui_bench.tmux_available()) or self.tui_reason:
            _null(self.r, [("tmux_key_first_change_p95_ms", "ms"), ("tmux_key_settled_p95_ms", "ms")], n,
                  "tmux not installed, --no-tmux or no TUI")
            return
        ours_cmd = tui_bench.replydesk_command(data_dir, self.config_file)
        peer_cmd = None
        if peers.available("neomutt") and n <= PEERS_UP_TO:
            mail_root, _ = self._maildir(spec, data_dir)
            work = self.tmp / "neomutt"
            work.mkdir(exist_ok=True)
            peer_cmd = tui_bench.neomutt_command(mail_root, work, None)
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for r in range(1 if self.opts.quick else self.opts.runs):
            order = [(ours, ours_cmd, tui_bench.ROW_MARKERS)]
            if peer_cmd is not None:
                order.append((theirs, peer_cmd, tui_bench.NEOMUTT_MARKERS))
            for into, cmd, markers in (order if r % 2 == 0 else order[::-1]):
                into.append(self.timed("tmux keys", lambda c=cmd, m=markers: tui_bench.tmux_keys(c, m, timeout=180)))

        def pooled(results: list[dict[str, Any]], what: str, keys: tuple[str, ...] | None = None) -> list[float]:
            if keys is None:
                return [v for res in results for v in res[what]]
            index = 0 if what == "first_ms" else 1
            return [pair[index] for res in results for k in keys for pair in res["per_key"].get(k, [])]

        def p95(values: list[float]) -> float | None:
            return percentile(values, 95) if values else None

        keys = " ".join(tui_bench.TMUX_KEYS)
        note = (f"keys sent to a 120x40 tmux pane through a control-mode client; per key the first and the last "
                f"output tmux relays before {tui_bench.QUIET * 1000:.0f} ms of quiet (so the settled figure is the "
                f"screen's last change); keys {keys}; baseline = neomutt on a maildir of the same messages "
                f"(no header cache: it reads every file at start), alternately, {len(ours)} run(s) each; the console's "
                f"alert toasts are off (bench config)")
        for name, what, sel in (("tmux_key_first_change_p95_ms", "first_ms", None),
                                ("tmux_key_settled_p95_ms", "settled_ms", None),
                                ("tmux_key_settled_jk_p95_ms", "settled_ms", ("j", "k"))):
            value, base = p95(pooled(ours, what, sel)), p95(pooled(theirs, what, sel)) if theirs else None
            target = "< 30 ms" if sel else None
            self.r.add(Figure(name, n, value, "ms", base, target=target,
                              ok=(value is not None and value < 30) if sel else None,
                              measured="j and k only" if sel else f"{len(tui_bench.TMUX_KEYS)} keys", note=note,
                              extra={"p50_ms": round(median(pooled(ours, what, sel)), 2) if pooled(ours, what, sel)
                                     else None}))
        first = _med([o["first_rows_s"] for o in ours])
        peer_first = _med([t["first_rows_s"] for t in theirs]) if theirs else None
        self.r.add(Figure("tmux_start_vs_neomutt_s", n, first, "s", peer_first,
                          note="process start -> first rows in a tmux pane; baseline = neomutt's first index rows "
                               "on the same messages as a maildir (no header cache)",
                          extra={"rss_mb": _med([o.get("rss_mb") for o in ours]),
                                 "neomutt_rss_mb": _med([t.get("rss_mb") for t in theirs]) if theirs else None}))

    # ---- once per run -------------------------------------------------------------------------------

    def outbox(self, n: int) -> None:
        replies = 100 if self.opts.quick else 500
        runs = 1 if self.opts.quick else self.opts.runs
        self.r.add(self.timed("outbox", lambda: storage_bench.bench_outbox(n, replies, runs, self.tmp)))


# Above 1M the peers are not run: the 10M maildir would be ten million files, notmuch took over an
# hour to index 1M messages here (it slows as its database grows), and neomutt, with no header
# cache, reads every file at start (126 s at 1M). Our own figures are still measured at 10M.
PEERS_UP_TO = 1_000_000
# The console under test: no accounts (offline review of the cache), and no SLA alert toasts: a big
# cache crosses a deadline every second (at 10M messages), and a toast coming or going is output no
# key caused, which the tmux key figures would count as the key's (the toasts are paced to one per
# ``ui.alerts.every``, 10 s, so they cost the console little).
BENCH_CONFIG = ("# the bench's console: no accounts, offline review of the cache; no alert toasts (they are not keys)\n"
                "accounts: []\nui:\n  alerts:\n    notify: false\n")


def _per_key(probes: list[dict[str, Any]]) -> dict[str, float]:
    pooled: dict[str, list[float]] = {}
    for p in probes:
        for key, values in p["per_key_ms"].items():
            pooled.setdefault(key, []).extend(values)
    return {k: round(percentile(v, 95), 2) for k, v in pooled.items()}


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(opts: Options, reporter: Reporter | None = None) -> int:
    reporter = reporter or Reporter()
    started = time.perf_counter()
    info = machine()
    log("machine: " + json.dumps(info))
    runner = Runner(opts, reporter)
    tmux = opts.tui and opts.tmux and tui_bench.tmux_available() and not runner.tui_reason
    if tmux:
        tui_bench.tmux_start_server()
    try:
        for i, size in enumerate(opts.sizes):
            runner.size(size)
            if i == 0 and not opts.only_peers:
                runner.outbox(generate.SIZES[size][1])
        if opts.team:
            from bench import team_bench

            runner.timed("team", lambda: team_bench.run(reporter, quick=opts.quick, runs=opts.runs, tmp=runner.tmp,
                                                          tui=opts.tui and not runner.tui_reason, log=log))
    finally:
        if tmux:
            tui_bench.tmux_kill_server()
        runner.close()
    print()
    print(reporter.table(markdown=opts.markdown))
    print(f"\n{len(reporter.figures)} figures in {time.perf_counter() - started:.0f} s on "
          f"{info.get('cpu', '?')}, {info.get('cpus')} CPUs, {info.get('mem_gb', '?')} GB, Python {info['python']}, "
          f"SQLite {info['sqlite']}, Textual {info.get('textual', '-')}")
    misses = [f for f in reporter.figures if f.ok is False]
    if misses:
        log(f"WARN {len(misses)} figure(s) miss their target (reported, not a failure): "
            + ", ".join(sorted({f.name for f in misses})))
    return 0
