"""`python -m bench` (`make bench`): run every benchmark and print one results table."""

from __future__ import annotations

import asyncio
import platform

from bench import pipeline, scoring, worker
from webhooks.logging import configure_logging


def main() -> None:
    configure_logging(level="error")
    rows = [("scoring (signals.score, one process)", ""), *scoring.run()]
    rows += asyncio.run(pipeline.run())
    rows += asyncio.run(worker.run())
    width = max(len(name) for name, _ in rows)
    print(f"crm-health benchmarks - Python {platform.python_version()}, {platform.machine()}")
    print(f"{'measure'.ljust(width)} | result")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")


main()
