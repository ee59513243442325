"""The benchmark harness works: a tiny generated workspace, and the JSON line contract of the quick figures.

Fast (a few seconds): no TUI, no tmux, tiny sizes. The numbers themselves are not checked — speed is
reported by ``make bench``, never asserted in tests.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from bench import generate, storage_bench
from bench.__main__ import main as bench_main
from bench.report import CONTRACT_FIELDS, Figure, Reporter, percentile
from replydesk.config import Config
from replydesk.storage import queries, search
from replydesk.workspace import Workspace


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("bench") / "ws"
    assert bench_main(["generate", "--conversations", "60", "--messages", "400", "--data-dir", str(data_dir),
                       "--accounts", "5"]) == 0
    return data_dir


def test_generated_workspace_opens_with_the_asked_for_counts(tiny: Path) -> None:
    db = Workspace(tiny, Config()).open_db(create=False)
    try:
        count = lambda sql: db.conn.execute(sql).fetchone()[0]  # noqa: E731
        assert count("SELECT count(*) FROM conversations") == 60
        assert count("SELECT count(*) FROM messages WHERE direction IN ('in', 'out')") == 400
        assert count("SELECT count(*) FROM accounts") == 5
        assert count("SELECT count(DISTINCT platform) FROM conversations") == 5
        # several scripts made it through ingest, and the inbox and search read them
        texts = " ".join(r[0] for r in db.conn.execute("SELECT text FROM messages"))
        assert any("\u0900" <= ch <= "\u097f" for ch in texts)  # Devanagari
        assert any("\u0370" <= ch <= "\u03ff" for ch in texts)  # Greek
        assert any("\u0400" <= ch <= "\u04ff" for ch in texts)  # Cyrillic (Kazakh)
        states = {r[0] for r in db.conn.execute("SELECT DISTINCT sla_state FROM conversations")}
        assert len(states) >= 2
        assert queries.inbox_page(db, queries.InboxFilter(statuses=None), 0, 10)
        hits, _ = search.search(db, "order")
        assert hits
        assert count("SELECT count(*) FROM sync_cursors") >= 5  # cursors stored with their pages
    finally:
        db.close()


def test_generate_refuses_an_existing_workspace(tiny: Path) -> None:
    assert bench_main(["generate", "--conversations", "2", "--messages", "2", "--data-dir", str(tiny)]) == 2


def test_cached_reuses_a_complete_workspace(tmp_path: Path) -> None:
    spec = generate.Spec(conversations=5, messages=20, accounts=2)
    first = generate.cached(spec, cache_dir=tmp_path)
    again = generate.cached(spec, cache_dir=tmp_path)
    assert not first.cached and again.cached
    assert again.data_dir == first.data_dir and again.messages == 20


def _check_line(line: dict) -> None:
    for name in CONTRACT_FIELDS:
        assert name in line, (name, line)
    assert isinstance(line["name"], str) and isinstance(line["unit"], str)
    assert isinstance(line["size_messages"], int)
    for name in ("value", "baseline", "ratio"):
        value = line[name]
        assert value is None or (isinstance(value, int | float) and math.isfinite(value)), (name, line)


def test_quick_storage_figures_follow_the_json_line_contract(tiny: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out=out, err=err)
    reporter.add(storage_bench.bench_ingest(400, 400, 1, tmp_path))
    db = Workspace(tiny, Config()).open_db(create=False)
    try:
        for fig in storage_bench.bench_search(db, 400, 1, n_queries=30):
            reporter.add(fig)
        for fig in storage_bench.bench_pages(db, 400, 3):
            reporter.add(fig)
    finally:
        db.close()
    reporter.add(storage_bench.bench_outbox(400, 10, 1, tmp_path))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    names = {line["name"] for line in lines}
    assert {"ingest_rows_per_s", "search_p50_ms", "search_p95_ms", "page_query_p95_ms",
            "outbox_replies_per_s"} <= names
    for line in lines:
        _check_line(line)
        if line["name"] in ("ingest_rows_per_s", "search_p95_ms", "page_query_p95_ms", "outbox_replies_per_s"):
            assert line["value"] > 0 and line["baseline"] > 0 and line["ratio"] > 0
    # a missed target is a WARN line on stderr, never an exception
    assert all(w.startswith("WARN ") for w in err.getvalue().splitlines())
    table = reporter.table(markdown=True)
    assert table.startswith("| figure |") and "ingest_rows_per_s" in table


def test_unavailable_figures_are_null_with_a_note() -> None:
    out = io.StringIO()
    Reporter(out=out).add(Figure("tui_key_p95_ms", 10_000, None, "ms", note="tui not available"))
    line = json.loads(out.getvalue())
    _check_line(line)
    assert line["value"] is None and line["ratio"] is None and line["note"] == "tui not available"


def test_raw_match_is_what_search_issues() -> None:
    assert storage_bench.raw_match('refund "blue mug"') == '"refund" AND "blue mug"'
    assert storage_bench.raw_match("from:Amy") == 'author : ("Amy")'
    assert storage_bench.raw_match("tag:vip") is None
    assert len(storage_bench.search_queries(200)) == 200


def test_percentile() -> None:
    assert percentile([1.0], 95) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile(list(range(101)), 95) == 95


def test_a_row_that_measured_less_than_its_size_says_so(tmp_path: Path) -> None:
    """The ingest row of a large run ingests a capped number of messages: the row says how many."""
    out = io.StringIO()
    reporter = Reporter(out=out, err=io.StringIO())
    fig = reporter.add(storage_bench.bench_ingest(10_000, 300, 1, tmp_path))
    line = json.loads(out.getvalue())
    assert line["size_messages"] == 10_000 and line["measured"] == fig.measured
    assert fig.measured is not None and fig.measured.endswith(" ingested") and not fig.measured.startswith("10,000")
    row = next(r for r in reporter.table(markdown=True).splitlines() if r.startswith("| ingest_rows_per_s"))
    assert f"| 10,000 | {fig.measured} |" in row
    other = json.loads(json.dumps(Figure("search_p50_ms", 10_000, 1.0, "ms").as_json()))
    assert other["measured"] == "the workspace"
