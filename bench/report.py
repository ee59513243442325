"""Figures: one JSON line each (a contract scripts rely on) and a readable table at the end.

JSON line fields: ``{"name", "size_messages", "value", "unit", "baseline", "ratio"}``, plus optional
``target``, ``ok`` (whether the target was met) and ``note``. ``value`` is null when a figure could
not be measured (the note says why).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

CONTRACT_FIELDS = ("name", "size_messages", "value", "unit", "baseline", "ratio")

#: Names every full or quick run prints at least once (the JSON line contract).
REQUIRED_NAMES = (
    "ingest_rows_per_s", "search_p50_ms", "search_p95_ms", "page_query_p95_ms", "tui_first_rows_s",
    "tui_key_p50_ms", "tui_key_p95_ms", "tui_key_p95_ms_while_syncing", "tui_rss_mb", "outbox_replies_per_s",
)


@dataclass
class Figure:
    name: str
    size_messages: int
    value: float | None
    unit: str
    baseline: float | None = None
    target: str | None = None  # e.g. ">= 0.7 ratio", "< 20 ms"
    ok: bool | None = None
    note: str | None = None
    ratio_override: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: What the figure measured when it is not the workspace of ``size_messages`` itself, e.g.
    #: "100,000 ingested" for the ingest row of the 1M run (the table shows it beside the size).
    measured: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.ratio_override is not None:
            return self.ratio_override
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "size_messages": self.size_messages, "value": _round(self.value),
            "unit": self.unit, "baseline": _round(self.baseline), "ratio": _round(self.ratio, 3),
            "measured": self.measured or "the workspace",
        }
        if self.target is not None:
            out["target"] = self.target
            out["ok"] = self.ok
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None:
        return None
    if abs(value) >= 100:
        return round(value, 1)
    return round(value, digits)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank-with-interpolation percentile (``p`` in 0..100)."""
    if not values:
        raise ValueError("no values")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


class Reporter:
    """Collects figures, prints each as a JSON line as soon as it is known, warns on missed targets."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        self.out.write(json.dumps(figure.as_json(), ensure_ascii=False) + "\n")
        self.out.flush()
        if figure.ok is False:
            self.err.write(f"WARN {figure.name} at {figure.size_messages:,} messages: {_fmt(figure.value)} "
                           f"{figure.unit} misses target {figure.target}\n")
            self.err.flush()
        return figure

    def table(self, markdown: bool = False) -> str:
        headers = ["figure", "messages", "measured", "value", "unit", "baseline", "ratio", "target", ""]
        rows = [[
            f.name, f"{f.size_messages:,}", f.measured or "the workspace", _fmt(f.value), f.unit, _fmt(f.baseline),
            _fmt(f.ratio, 2),
            f.target or "", "" if f.ok is None else ("ok" if f.ok else "MISS"),
        ] for f in self.figures]
        if markdown:
            lines = ["| " + " | ".join(headers[:-1] + ["met"]) + " |",
                     "|" + "|".join(["---", "---:", "---", "---:", "---", "---:", "---:", "---", "---"]) + "|"]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            return "\n".join(lines)
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
        right = {1, 3, 5, 6}

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()

        return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _fmt(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return "—"
    if digits is not None:
        return f"{value:.{digits}f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
