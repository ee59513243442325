"""Import figures: ``replydesk import`` of an export, its rate and peak memory, against the whole-file path.

The subject is the real command in a subprocess (``replydesk --data-dir NEW import FILE --quiet``),
streaming in committed batches. The baseline is the whole-file path import had before: read the
whole file, parse every record, then write them all in one transaction (with the same record
checks and writer, so the difference is the reading and committing). Both run as subprocesses,
alternately, on the same export file; peak RSS is each process's own (VmHWM at its exit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.report import Figure, median
from replydesk.config import Config
from replydesk.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


def export_file(data_dir: Path, cache_dir: Path, key: str) -> Path:
    """The workspace's JSONL export, made once and cached beside it."""
    path = cache_dir / f"{key}-export.jsonl"
    if path.exists():
        return path
    from replydesk.storage.exchange import export_records

    db = Workspace(data_dir, Config()).open_db(create=False)
    part = path.with_suffix(".part")
    try:
        with open(part, "w", encoding="utf-8") as out:
            for record in export_records(db):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        db.close()
    part.rename(path)
    return path


#: Runs a module as ``python -m`` would and writes the process's own peak RSS (VmHWM) at exit.
#: Not getrusage: Linux hands a child the parent's high-water mark at exec, so a child of a big
#: bench process would report the bench's memory, not its own.
_PEAK = """
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as status, open(os.environ['BENCH_PEAK_FILE'], 'w') as out:
        out.write(next(line.split()[1] for line in status if line.startswith('VmHWM:')))
atexit.register(_peak)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def _run(module: str, args: list[str], tmp: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of ``python -m module args`` in a subprocess."""
    peak = tmp / "peak.txt"
    peak.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PEAK, module, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env={**os.environ, "BENCH_PEAK_FILE": str(peak)})
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {args[:2]} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return seconds, int(peak.read_text()) / 1024


def whole_file_main(data_dir: Path, source: Path) -> int:
    """The baseline: the whole file in memory, every record parsed, one transaction."""
    from replydesk.storage import importer

    db = Workspace(data_dir, Config()).open_db()
    text = source.read_text(encoding="utf-8")
    raw = [json.loads(line) for line in text.splitlines() if line.strip()]
    accounts: set[str] = set()
    records = []
    for n, r in enumerate(raw, 1):
        rec = importer.prepare(r, f"{source}:{n}", accounts)
        accounts.add(rec.account)
        records.append(rec)
    result = importer.ImportResult()
    with db.transaction():
        importer._write(db, records, result)
    db.close()
    return 0


def bench_import(size_messages: int, data_dir: Path, cache_dir: Path, key: str, runs: int, tmp: Path) -> list[Figure]:
    source = export_file(data_dir, cache_dir, key)
    with open(source, "rb") as fh:
        records = sum(1 for _ in fh)
    ours_s, ours_mb, base_s, base_mb = [], [], [], []
    imported = 0
    for r in range(max(runs, 1)):
        for who in ((0, 1) if r % 2 == 0 else (1, 0)):  # alternate who goes first
            target = tmp / f"import-{who}"
            shutil.rmtree(target, ignore_errors=True)
            if who == 0:
                s, mb = _run("replydesk.cli", ["--data-dir", str(target), "import", str(source), "--quiet"], tmp)
                ours_s.append(s)
                ours_mb.append(mb)
                imported = _count(target)
            else:
                s, mb = _run("bench", ["import-whole-file", "--data-dir", str(target), str(source)], tmp)
                base_s.append(s)
                base_mb.append(mb)
            shutil.rmtree(target, ignore_errors=True)
    size_mb = source.stat().st_size / 1e6
    note = (f"replydesk import of a {size_mb:,.0f} MB export ({records:,} conversations, {imported:,} messages) "
            f"into an empty workspace, whole process; baseline = the whole-file path (read all, parse all, one "
            f"transaction, same writer); alternately, median of {len(ours_s)}")
    return [
        Figure("import_rows_per_s", size_messages, imported / median(ours_s), "messages/s",
               imported / median(base_s), target=">= 0.9 ratio", ok=median(base_s) / median(ours_s) >= 0.9, note=note),
        Figure("import_peak_rss_mb", size_messages, median(ours_mb), "MB", median(base_mb), target="< 150 MB",
               ok=median(ours_mb) < 150, note="peak RSS (VmHWM) of the import process; " + note),
    ]


def _count(data_dir: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(data_dir / "replydesk.db")
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()
