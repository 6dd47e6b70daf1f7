"""`python -m bench` (`make bench`): run every benchmark, print one results table and write it
to bench/results.md with the machine's facts; `python -m bench freshness scale` runs only the
ones named (and leaves bench/results.md alone). A benchmark that takes options of its own gets
what follows its name: `python -m bench calibration --accounts 10000 --backend sqlite`
(`python -m bench calibration --help`).

Shorter runs while iterating: BENCH_MEMORY_SECONDS (default 600), BENCH_FRESHNESS_SECONDS
(default 60), BENCH_SCALE_EVENTS (default 20,000), BENCH_PREVIEW_SECONDS (default 30),
BENCH_WAL_EVENTS (default 100,000), BENCH_GROWTH_SCALE (default 0.1), BENCH_GROWTH_DAYS
(default 365), BENCH_GROWTH_DATABASE (default both), BENCH_CALIBRATION_ACCOUNTS (default
100,000), BENCH_CALIBRATION_OUTCOMES (default 5,000), BENCH_CALIBRATION_BACKEND (default both),
BENCH_PORTFOLIO_ACCOUNTS (default 100,000), BENCH_PORTFOLIO_BACKEND (default both)."""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    calibration,
    freshness,
    growth,
    ingest,
    memory,
    pipeline,
    poison,
    portfolio,
    preview,
    retention,
    scale,
    scoring,
    wal,
    worker,
)
from bench.notes import NOTES
from webhooks.logging import configure_logging

BENCHMARKS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "scoring": lambda: [("scoring (signals.score, one process)", ""), *scoring.run()],
    "pipeline": lambda: asyncio.run(pipeline.run()),
    "worker": lambda: asyncio.run(worker.run()),
    "poison": lambda: asyncio.run(poison.run()),
    "ingest": lambda: asyncio.run(ingest.run_segment()),
    "hubspot": lambda: asyncio.run(ingest.run_hubspot()),
    "freshness": lambda: asyncio.run(freshness.run()),
    "scale": lambda: asyncio.run(scale.run()),
    "memory": lambda: asyncio.run(memory.run()),
    "preview": lambda: asyncio.run(preview.run()),
    "wal": lambda: asyncio.run(wal.run()),
    "retention": lambda: asyncio.run(retention.run()),
    "growth": lambda: asyncio.run(growth.run()),
    "calibration": lambda: asyncio.run(calibration.run()),
    "portfolio": lambda: asyncio.run(portfolio.run()),
}
# Benchmarks that take options of their own (the rest of the command line after the name).
WITH_OPTIONS: dict[str, Callable[[list[str]], list[tuple[str, str]]]] = {
    "calibration": lambda argv: asyncio.run(calibration.run(calibration.Options.parse(argv))),
    "portfolio": lambda argv: asyncio.run(portfolio.run(portfolio.Options.parse(argv))),
}
SHORTENED = (
    "BENCH_MEMORY_SECONDS",
    "BENCH_FRESHNESS_SECONDS",
    "BENCH_SCALE_EVENTS",
    "BENCH_PREVIEW_SECONDS",
    "BENCH_WAL_EVENTS",
    "BENCH_GROWTH_SCALE",
    "BENCH_GROWTH_DAYS",
    "BENCH_GROWTH_DATABASE",
    "BENCH_CALIBRATION_ACCOUNTS",
    "BENCH_CALIBRATION_OUTCOMES",
    "BENCH_CALIBRATION_BACKEND",
    "BENCH_PORTFOLIO_ACCOUNTS",
    "BENCH_PORTFOLIO_BACKEND",
)
RESULTS = Path(__file__).with_name("results.md")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GB"
    except OSError:
        pass
    return "?"


def _load() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "?"


def machine(started: datetime, load_before: str) -> list[str]:
    return [
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- CPU: {os.cpu_count()} x {_cpu_model()}; memory {_memory_gb()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()} {platform.machine()}",
        f"- Load average (1/5/15 min) before: {load_before}; after: {_load()} "
        "(other work on the machine shows here: throughput figures move with it)",
    ]


def table(rows: list[tuple[str, str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    return [
        "| measure | result |",
        "|---|---|",
        *(f"| {cell(name)} | {cell(value)} |" for name, value in rows),
    ]


def write_results(rows: list[tuple[str, str]], *, started: datetime, load_before: str) -> None:
    shortened = [f"{name}={os.environ[name]}" for name in SHORTENED if name in os.environ]
    lines = [
        "# crm-health benchmark results",
        "",
        "Written by `make bench` (`python -m bench`); every figure in the table comes from that"
        " run. The notes explain the figures; where they quote earlier measurements they say so.",
        "",
        *machine(started, load_before),
        *([f"- Shortened run: {', '.join(shortened)}"] if shortened else []),
        "",
        *table(rows),
        "",
        "## Notes",
        "",
    ]
    for name in BENCHMARKS:
        if name in NOTES:
            lines += [f"### {name}", "", NOTES[name].strip(), ""]
    RESULTS.write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    names = list(itertools.takewhile(lambda arg: not arg.startswith("-"), argv))
    options = argv[len(names) :]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    if options and (len(names) != 1 or names[0] not in WITH_OPTIONS):
        sys.exit(
            f"options follow the one benchmark that takes them ({', '.join(WITH_OPTIONS)}), "
            "e.g. python -m bench calibration --help"
        )
    configure_logging(level="error")
    started = datetime.now(UTC)
    load_before = _load()
    rows: list[tuple[str, str]] = []
    for name, benchmark in BENCHMARKS.items():
        if not names or name in names:
            rows += WITH_OPTIONS[name](options) if options else benchmark()
    width = max(len(name) for name, _ in rows)
    print(f"crm-health benchmarks - Python {platform.python_version()}, {platform.machine()}")
    print(f"{'measure'.ljust(width)} | result")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")
    if not names:
        write_results(rows, started=started, load_before=load_before)
        print(f"\nwritten to {RESULTS}")


main(sys.argv[1:])
