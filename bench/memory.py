"""Memory: resident set size of `crm-health serve` (API + its worker, SQLite) under a steady
500 events/s against the sandbox CRM, sampled every few seconds from /proc; the peak, and
whether it grows once warm (RSS after the warm-up against the end, and the slope of a line
fitted through the samples after the warm-up).

The load is what a customer's instance sees: each second, 10 signed HubSpot webhooks of 10
company changes (seats) and 10 native requests of 40 product-usage events, over 5,000
companies; scores move, so the worker also keeps writing health back.
`BENCH_MEMORY_SECONDS` sets the length (default 600: `make bench` runs the full ten minutes)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
from pathlib import Path

from bench.load import Events, SandboxCRM, paced, serve, service_env, wait_provisioned

EVENTS_PER_SECOND = 500
TICKS_PER_SECOND = 10
COMPANIES = 5_000
CRM_LATENCY_SECONDS = 0.05
SAMPLE_SECONDS = 5.0
TARGET_MB = 300
# Growth over the run after the warm-up that still counts as flat: allocator noise.
FLAT_MB_PER_10_MIN = 10
MB = 1024 * 1024


def seconds() -> float:
    return float(os.environ.get("BENCH_MEMORY_SECONDS", "600"))


def _backlog(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        [count] = connection.execute(
            "SELECT count(*) FROM inbox_events WHERE status IN ('pending', 'processing')"
        ).fetchone()
    connection.close()
    return int(count)


def _slope_mb_per_minute(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 3:
        return 0.0
    times = [at / 60 for at, _ in samples]
    sizes = [rss / MB for _, rss in samples]
    return statistics.linear_regression(times, sizes).slope


async def run() -> list[tuple[str, str]]:
    duration = seconds()
    warmup = min(120.0, duration / 5)
    samples: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        async with SandboxCRM(companies=COMPANIES, latency_seconds=CRM_LATENCY_SECONDS) as sandbox:
            events = Events(sandbox.companies, seed=500)
            server = serve(
                service_env(f"sqlite+aiosqlite:///{folder / 'memory.db'}", sandbox),
                folder / "serve.log",
            )
            try:
                await server.wait_ready()
                await wait_provisioned(sandbox, server)
                started_rss = server.rss_bytes() or 0
                next_sample = 0.0

                per_tick = EVENTS_PER_SECOND // TICKS_PER_SECOND

                def make(_tick: int) -> tuple[list[bytes], int, None]:
                    return events.mixed(per_tick), per_tick, None

                def on_tick(_tick: int, elapsed: float) -> None:
                    nonlocal next_sample
                    if elapsed >= next_sample:
                        rss = server.rss_bytes()
                        if rss is not None:
                            samples.append((elapsed, rss))
                        sandbox.forget_requests()
                        next_sample += SAMPLE_SECONDS

                sent = await paced(
                    server.port,
                    ticks_per_second=TICKS_PER_SECOND,
                    seconds=duration,
                    make=make,
                    on_tick=on_tick,
                )
                server.check_alive()
                final = server.rss_bytes()
                if final is not None:
                    samples.append((sent.seconds, final))
                # Whether the worker kept up: what it still had to do when the load stopped.
                backlog = await asyncio.to_thread(_backlog, folder / "memory.db")
            finally:
                server.stop()
    if sent.errors:
        raise RuntimeError(f"{len(sent.errors)} requests refused, first: {sent.errors[0]}")
    peak = max(rss for _, rss in samples)
    warm = [(at, rss) for at, rss in samples if at >= warmup]
    at_warm = warm[0][1] if warm else samples[0][1]
    slope = _slope_mb_per_minute(warm)
    growth_10_min = slope * 10
    flat = growth_10_min < FLAT_MB_PER_10_MIN
    verdict = (
        "meets target"
        if peak < TARGET_MB * MB and flat
        else "MISSES target: " + ", ".join(
            [*([f"peak >= {TARGET_MB} MB"] if peak >= TARGET_MB * MB else []),
             *([] if flat else ["grows"])]
        )
    )  # fmt: skip
    return [
        (
            f"memory: crm-health serve at {EVENTS_PER_SECOND} events/s for {duration / 60:.0f} min",
            f"API + worker in one process, SQLite, sandbox CRM {CRM_LATENCY_SECONDS * 1000:.0f} ms"
            f" per call; 20% HubSpot webhooks, 80% native usage over {COMPANIES:,} companies; "
            f"target peak < {TARGET_MB} MB, no growth",
        ),
        (
            "  RSS peak / at start / after warm-up / at end",
            f"{peak / MB:.0f} / {started_rss / MB:.0f} / {at_warm / MB:.0f} / "
            f"{samples[-1][1] / MB:.0f} MB; {verdict}",
        ),
        (
            f"  RSS slope after {warmup / 60:.0f} min warm-up",
            f"{slope:+.2f} MB/min ({growth_10_min:+.1f} MB per 10 min; flat < "
            f"{FLAT_MB_PER_10_MIN} MB), {len(samples)} samples every {SAMPLE_SECONDS:.0f} s",
        ),
        (
            "  load kept",
            f"{sent.events_per_second:,.0f} events/s sent ({sent.latency_text()}); "
            f"{sandbox.writes:,} health writes to the CRM; inbox backlog at the end "
            f"{backlog:,} events",
        ),
    ]


if __name__ == "__main__":
    for name, value in asyncio.run(run()):
        print(f"{name:60} | {value}")
