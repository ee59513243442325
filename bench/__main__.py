"""``python -m bench run [--quick] [--sizes 10k,100k,1m] [--runs N] [--markdown]`` and
``python -m bench generate --conversations N --messages M --data-dir DIR [--accounts K]``.

Exit codes: 0 when the harness ran (figures that miss their target are WARN lines, not failures),
2 on bad usage, 1 when the harness itself broke.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import generate


def _sizes(text: str) -> list[str]:
    sizes = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in generate.SIZES]
    if unknown or not sizes:
        raise argparse.ArgumentTypeError(f"sizes must be among {', '.join(generate.SIZES)} (got {text!r})")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="replydesk benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure every figure and print JSON lines plus a table")
    run.add_argument("--quick", action="store_true", help="10k messages, one run each: the CI smoke check")
    run.add_argument("--sizes", type=_sizes, default=None, help="comma list of 10k,100k,1m,10m (default 10k,100k,1m; 10m only when asked for)")
    run.add_argument("--runs", type=int, default=3, help="runs per figure; medians are reported (default 3)")
    run.add_argument("--markdown", action="store_true", help="print the final table as Markdown")
    run.add_argument("--no-tui", action="store_true", help="skip the TUI figures")
    run.add_argument("--no-tmux", action="store_true", help="skip the real-terminal (tmux) start-up figure")
    run.add_argument("--no-team", action="store_true", help="skip the team (PostgreSQL) figures")
    run.add_argument("--no-peers", action="store_true",
                     help="skip the command-line and tmux figures (against notmuch and neomutt)")
    run.add_argument("--only-peers", action="store_true",
                     help="only the command-line and tmux figures, and the in-process TUI ones")
    run.add_argument("--cache-dir", type=Path, default=generate.CACHE_DIR, help="where workspaces are cached")

    gen = sub.add_parser("generate", help="build a workspace that `replydesk --data-dir DIR` opens")
    gen.add_argument("--conversations", type=int, required=True)
    gen.add_argument("--messages", type=int, required=True)
    gen.add_argument("--data-dir", type=Path, required=True)
    gen.add_argument("--accounts", type=int, default=24)
    gen.add_argument("--seed", type=int, default=7)

    whole = sub.add_parser("import-whole-file", help=argparse.SUPPRESS)  # the import figure's baseline
    whole.add_argument("--data-dir", type=Path, required=True)
    whole.add_argument("file", type=Path)

    probe = sub.add_parser("tui-probe", help=argparse.SUPPRESS)
    probe.add_argument("--data-dir", type=Path, required=True)
    probe.add_argument("--spawned-at", type=float, required=True)
    probe.add_argument("--sync-pages", type=int, default=0)
    probe.add_argument("--sync-per-page", type=int, default=300)
    probe.add_argument("--spec", default=None)
    probe.add_argument("--keys", choices=["full", "quick", "none"], default="full")
    probe.add_argument("--engine", action="store_true", help="the console starts its own engine (a team's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        if args.conversations < 1 or args.messages < args.conversations:
            print("need --conversations >= 1 and --messages >= --conversations", file=sys.stderr)
            return 2
        if (args.data_dir / "replydesk.db").exists():
            print(f"{args.data_dir} already holds a workspace; pick an empty directory", file=sys.stderr)
            return 2
        spec = generate.Spec(args.conversations, args.messages, max(args.accounts, 1), args.seed)
        t0 = time.perf_counter()
        result = generate.build(spec, args.data_dir, progress=generate.stderr)
        print(f"{result.messages:,} messages in {result.conversations:,} conversations across "
              f"{spec.accounts} accounts in {time.perf_counter() - t0:.1f} s -> {args.data_dir}\n"
              f"open it with: replydesk --data-dir {args.data_dir}")
        return 0
    if args.command == "import-whole-file":
        from bench.import_bench import whole_file_main

        return whole_file_main(args.data_dir, args.file)
    if args.command == "tui-probe":
        from bench.tui_bench import probe_main

        return probe_main(args.data_dir, args.spawned_at, args.sync_pages, args.sync_per_page, args.spec,
                          keys=args.keys, engine=args.engine)

    from bench.runner import Options, run

    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    sizes = args.sizes or (["10k"] if args.quick else ["10k", "100k", "1m"])
    opts = Options(sizes=sizes, runs=args.runs, quick=args.quick, tui=not args.no_tui, tmux=not args.no_tmux,
                   markdown=args.markdown, cache_dir=args.cache_dir, team=not args.no_team and not args.only_peers,
                   peers=not args.no_peers, only_peers=args.only_peers)
    try:
        return run(opts)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
