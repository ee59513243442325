"""Command-line figures: whole-process time of ``replydesk --version``/``--help`` and of the read
commands scripts call in loops (``search``, ``show``, ``outbox --json``), against notmuch.

Measured on replydesk as users install it (``pipx install .``: a wheel in its own venv), not on
the checkout's editable install: setuptools' editable finder costs every Python start in that venv
~15 ms of imports (pathlib, urllib) before any code of ours runs. The venv is built once per state
of the sources (``bench/.cache/installed-<digest>``); its dependencies are the checkout venv's
(a path file), so nothing is downloaded.

Every figure is a median of whole-process wall times, subject and baseline run alternately in one
loop (who goes first rotates), so a busy machine slows both alike. The config is found where a
user's is (``$XDG_CONFIG_HOME/replydesk/config.yaml``), so its lookup is part of the figure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import peers
from bench.report import Figure, median, percentile

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("replydesk", "storage", "providers", "tui")


def _sources_digest() -> str:
    h = hashlib.sha256((REPO / "pyproject.toml").read_bytes())
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def installed(cache_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """The ``bin`` directory of a venv with this checkout installed from a wheel (built on demand)."""
    digest = _sources_digest()
    root = cache_dir / f"installed-{digest}"
    done = root / peers.DONE
    if done.exists():
        return root / "venv" / "bin"
    for old in cache_dir.glob("installed-*"):
        shutil.rmtree(old, ignore_errors=True)
    if log:
        log(f"installing replydesk from a wheel into {root} (start-up figures)")
    wheels = root / "wheel"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(REPO)],
                   cwd=REPO, **quiet)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root / "venv")], **quiet)
    python = root / "venv" / "bin" / "python"
    wheel = next(wheels.glob("replydesk-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], **quiet)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    import sysconfig

    Path(purelib, "replydesk-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done.write_text(digest)
    return root / "venv" / "bin"


def config_home(work: Path, config: Path) -> dict[str, str]:
    """An environment whose user config dir holds ``config`` (a user's setup, nothing of ours)."""
    home = work / "xdg-config"
    (home / "replydesk").mkdir(parents=True, exist_ok=True)
    shutil.copy(config, home / "replydesk" / "config.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYDESK_")}
    env["XDG_CONFIG_HOME"] = str(home)
    return env


def _wall(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """(milliseconds, bytes written to stdout) of one whole process."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    ms = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-400:]}")
    return ms, len(proc.stdout)


def alternate(runs: int, cases: dict[str, Callable[[int], tuple[float, int]]]) -> dict[str, dict[str, Any]]:
    """Run every case ``runs`` times, in one loop, the order rotating each round: per case the
    times (ms) and the output sizes (bytes)."""
    names = list(cases)
    out: dict[str, dict[str, Any]] = {n: {"ms": [], "bytes": []} for n in names}
    for i in range(runs):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            ms, size = cases[name](i)
            out[name]["ms"].append(ms)
            out[name]["bytes"].append(size)
    return out


def bench_startup(bin_dir: Path, env: dict[str, str], runs: int) -> list[Figure]:
    """``--version`` and ``--help`` against the venv's bare interpreter start (and notmuch's)."""
    python, exe = str(bin_dir / "python"), str(bin_dir / "replydesk")
    cases: dict[str, Callable[[int], tuple[float, int]]] = {
        "version": lambda _: _wall([exe, "--version"], env, cwd=Path("/")),
        "help": lambda _: _wall([exe, "--help"], env, cwd=Path("/")),
        "python": lambda _: _wall([python, "-c", "pass"], env, cwd=Path("/")),
    }
    if peers.available("notmuch"):
        cases["notmuch"] = lambda _: _wall(["notmuch", "--version"], env, cwd=Path("/"))
    got = alternate(runs, cases)
    bare = median(got["python"]["ms"])
    peer = median(got["notmuch"]["ms"]) if "notmuch" in got else None
    figures = []
    for name in ("version", "help"):
        value = median(got[name]["ms"])
        figures.append(Figure(
            f"cli_{name}_ms", 0, value, "ms", bare, target="< 40 ms", ok=value < 40,
            note=f"`replydesk --{name}` whole process, installed from a wheel in its own venv; baseline = that "
                 f"venv's `python -c pass` (the interpreter's own start); median of {runs}, alternately"
                 + (f"; notmuch --version {peer:.1f} ms" if peer is not None else ""),
            extra={"p95_ms": round(percentile(got[name]["ms"], 95), 2),
                   **({"notmuch_version_ms": round(peer, 2)} if peer is not None else {})}))
    return figures


def bench_reads(bin_dir: Path, env: dict[str, str], data_dir: Path, notmuch_config: Path | None, size: int,
                words: list[str], conv_ids: list[str], runs: int) -> list[Figure]:
    """``search WORD --json``, ``show CONV --json``, ``outbox --json`` against ``notmuch search
    --limit=50 WORD`` on the same messages, all in one alternating loop."""
    exe = str(bin_dir / "replydesk")
    base = [exe, "--data-dir", str(data_dir)]
    cases: dict[str, Callable[[int], tuple[float, int]]] = {
        "search": lambda i: _wall([*base, "search", words[i % len(words)], "--json"], env, cwd=Path("/")),
        "show": lambda i: _wall([*base, "show", conv_ids[i % len(conv_ids)], "--json"], env, cwd=Path("/")),
        "outbox": lambda i: _wall([*base, "outbox", "--json"], env, cwd=Path("/")),
    }
    if notmuch_config is not None:
        nm_env = {**peers.notmuch_env(notmuch_config)}
        cases["notmuch"] = lambda i: _wall(["notmuch", "search", "--limit=50", words[i % len(words)]], nm_env,
                                           cwd=Path("/"))
    cases["search"](0)  # the first read with this config validates it; the workspace then remembers it
    for name in cases:  # and the page cache is warm for everyone, as on a machine in use
        cases[name](1)
    got = alternate(runs, cases)
    peer = median(got["notmuch"]["ms"]) if "notmuch" in got else None
    peer_bytes = median(got["notmuch"]["bytes"]) if "notmuch" in got else None
    figures = []
    what = {"search": "`replydesk search WORD --json` (50 conversations at most)",
            "show": "`replydesk show CONV --json` (a conversation with its messages and SLA metrics)",
            "outbox": "`replydesk outbox --json` (the bench workspaces queue no replies: an empty list)"}
    for name in ("search", "show", "outbox"):
        value = median(got[name]["ms"])
        ratio_ok = value / peer < 2 if peer else None
        figures.append(Figure(
            f"cli_{name}_json_p50_ms", size, value, "ms", peer, target="ratio < 2" if peer else None, ok=ratio_ok,
            note=f"{what[name]}, whole process, installed from a wheel, config in the user config dir; baseline = "
                 f"`notmuch search --limit=50 WORD` on the same messages (Xapian; stems English words, indexes every "
                 f"header; prints one summary line per thread); {len(words)} words, median of {runs} rounds, "
                 "alternately" if peer else f"{what[name]}; notmuch not installed",
            extra={"p95_ms": round(percentile(got[name]["ms"], 95), 2),
                   "output_bytes_p50": median(got[name]["bytes"]),
                   **({"notmuch_output_bytes_p50": peer_bytes,
                       "notmuch_p95_ms": round(percentile(got["notmuch"]["ms"], 95), 2)} if peer else {})}))
    return figures
