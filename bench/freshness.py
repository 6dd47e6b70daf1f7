"""Freshness: from a HubSpot webhook's receipt to the health fields written in the CRM, with
`crm-health serve` (API + worker, SQLite) against the sandbox CRM answering every call after
50 ms, at a steady 100 events/s (10 signed webhooks a second, 10 company changes each).

Every event is about a company not seen before, so each must end in a write-back; the moment
its `health_updated_at` lands in the sandbox is taken from the sandbox's own change feed.
`BENCH_FRESHNESS_SECONDS` sets the length of the run (default 60)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.harness import percentile_ms
from bench.load import Events, SandboxCRM, paced, serve, service_env, wait_provisioned

EVENTS_PER_SECOND = 100
WEBHOOKS_PER_SECOND = 10
CRM_LATENCY_SECONDS = 0.05
TARGET_P95_SECONDS = 2.0
DRAIN_SECONDS = 60.0


def seconds() -> float:
    return float(os.environ.get("BENCH_FRESHNESS_SECONDS", "60"))


async def run() -> list[tuple[str, str]]:
    duration = seconds()
    per_webhook = EVENTS_PER_SECOND // WEBHOOKS_PER_SECOND
    total = int(duration * EVENTS_PER_SECOND)
    sent_at: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        async with SandboxCRM(companies=total, latency_seconds=CRM_LATENCY_SECONDS) as sandbox:
            events = Events(sandbox.companies, seed=12)
            server = serve(
                service_env(f"sqlite+aiosqlite:///{folder / 'fresh.db'}", sandbox),
                folder / "serve.log",
            )
            try:
                await server.wait_ready()
                await wait_provisioned(sandbox, server)
                batches = [
                    sandbox.companies[start : start + per_webhook]
                    for start in range(0, total, per_webhook)
                ]

                def make(tick: int) -> tuple[list[bytes], int, list[str]]:
                    companies = batches[tick]
                    return [events.hubspot(companies)], len(companies), companies

                def on_sent(companies: list[str], at: float) -> None:
                    for company in companies:
                        sent_at[company] = at

                sent = await paced(
                    server.port,
                    ticks_per_second=WEBHOOKS_PER_SECOND,
                    seconds=duration,
                    make=make,
                    on_sent=on_sent,
                )
                deadline = time.monotonic() + DRAIN_SECONDS
                while len(sandbox.landed) < len(sent_at) and time.monotonic() < deadline:
                    server.check_alive()
                    await asyncio.sleep(0.2)
                calls = sandbox.batch_update_calls()
            finally:
                server.stop()
    if sent.errors:
        raise RuntimeError(f"{len(sent.errors)} webhooks refused, first: {sent.errors[0]}")
    delays = [sandbox.landed[c] - at for c, at in sent_at.items() if c in sandbox.landed]
    missing = len(sent_at) - len(delays)
    p95 = percentile_ms(delays, 95) / 1000
    verdict = "meets target" if p95 < TARGET_P95_SECONDS and not missing else "MISSES target"
    return [
        (
            f"freshness: webhook -> CRM field, {EVENTS_PER_SECOND} events/s for {duration:.0f} s",
            f"crm-health serve (API + worker, SQLite), sandbox CRM {CRM_LATENCY_SECONDS * 1000:.0f}"
            f" ms per call; {WEBHOOKS_PER_SECOND} webhooks/s of {per_webhook} new companies; "
            f"target p95 < {TARGET_P95_SECONDS:.0f} s",
        ),
        (
            "  webhook receipt -> health field in the CRM",
            f"p50 {percentile_ms(delays, 50) / 1000:.2f} s, p95 {p95:.2f} s, "
            f"max {max(delays, default=float('nan')):.2f} s over {len(delays):,} companies"
            f"{f', {missing} never written' if missing else ''}; {verdict}",
        ),
        (
            "  load kept / CRM batch updates",
            f"{sent.events_per_second:,.0f} events/s sent ({sent.latency_text()}); "
            f"{calls:,} batch update calls for {len(delays):,} companies "
            f"({len(delays) / max(calls, 1):.0f} per call)",
        ),
    ]


if __name__ == "__main__":
    for name, value in asyncio.run(run()):
        print(f"{name:60} | {value}")
