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

from bench import generate, import_bench, storage_bench, tui_bench
from bench.report import Figure, Reporter, percentile
from replydesk.config import Config
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
        self.config_file.write_text("# an empty config: no accounts, offline review of the cache\naccounts: []\n")

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

    # ---- once per run -------------------------------------------------------------------------------

    def outbox(self, n: int) -> None:
        replies = 100 if self.opts.quick else 500
        runs = 1 if self.opts.quick else self.opts.runs
        self.r.add(self.timed("outbox", lambda: storage_bench.bench_outbox(n, replies, runs, self.tmp)))


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
            if i == 0:
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
