"""`python -m bench` (`make bench`): run every benchmark and print one results table;
`python -m bench ingest worker` runs only the ones named."""

from __future__ import annotations

import asyncio
import platform
import sys
from collections.abc import Callable

from bench import ingest, pipeline, scoring, worker
from webhooks.logging import configure_logging

BENCHMARKS: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "scoring": lambda: [("scoring (signals.score, one process)", ""), *scoring.run()],
    "pipeline": lambda: asyncio.run(pipeline.run()),
    "worker": lambda: asyncio.run(worker.run()),
    "ingest": lambda: asyncio.run(ingest.run()),
}


def main(names: list[str]) -> None:
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    configure_logging(level="error")
    rows: list[tuple[str, str]] = []
    for name, benchmark in BENCHMARKS.items():
        if not names or name in names:
            rows += benchmark()
    width = max(len(name) for name, _ in rows)
    print(f"crm-health benchmarks - Python {platform.python_version()}, {platform.machine()}")
    print(f"{'measure'.ljust(width)} | result")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")


main(sys.argv[1:])
