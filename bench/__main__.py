"""``python -m bench [NAME ...]``: run benchmarks, print their tables, record them."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import tempfile
from pathlib import Path

from bench import machine, procs, report
from bench.context import MEMORY_SCALES, SCALES, Context
from bench.registry import BENCHMARKS


def _parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {b.name:<18} {b.summary}" for b in BENCHMARKS.values())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run django-ensign's benchmarks; with no NAME, the default set.",
        epilog=f"benchmarks:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run")
    parser.add_argument(
        "--scale", choices=sorted(SCALES), default="quick", help="sizes (default: quick)"
    )
    parser.add_argument("--events", type=int, help="events per measurement (overrides --scale)")
    parser.add_argument(
        "--memory-events", type=int, help="events of the memory runs (1000000 for the full run)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=procs.ROOT / "BENCHMARKS.md",
        help="file the entries are appended to (default: BENCHMARKS.md)",
    )
    parser.add_argument("--no-record", action="store_true", help="print only; append nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; returns the exit code."""
    args = _parser().parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        _parser().error(f"unknown benchmark(s): {', '.join(unknown)}")
    chosen = args.names or [b.name for b in BENCHMARKS.values() if b.default]
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    host = machine.current()
    (procs.ROOT / "var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ensign-bench-", dir=procs.ROOT / "var") as tmp:
        ctx = Context(
            scale=args.scale,
            events=args.events or SCALES[args.scale],
            memory_events=args.memory_events or MEMORY_SCALES[args.scale],
            workdir=Path(tmp),
        )
        for name in chosen:
            started = dt.datetime.now(dt.UTC)
            before = machine.load_average()
            print(f"== {name} ({ctx.scale}, {ctx.events:,} events) …", flush=True)
            result = BENCHMARKS[name].runner()(ctx)
            entry = report.Entry(
                result=result,
                machine=host,
                command=command.strip(),
                scale=f"{ctx.scale}, {ctx.events:,} events",
                started=started,
                load_before=before,
                load_after=machine.load_average(),
            )
            print(entry.markdown(), flush=True)
            if not args.no_record:
                report.append(args.output, entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
