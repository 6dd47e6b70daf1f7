"""Scale: the same ingest and processing on PostgreSQL with 1, 2 and 4 `crm-health worker`
processes next to the API process (`crm-health serve` without its worker): a fixed load sent
as fast as the API takes it (10 keep-alive clients; 20% HubSpot webhooks, 80% native usage
over 5,000 companies), timed until every event is processed and every health change written to
the sandbox CRM (50 ms per call). Whether more workers help is read from the CPU: the share of
the machine's cores busy during the run, and the CPU each of our processes used.

`BENCH_SCALE_EVENTS` sets the events per run (default 20,000)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import (
    Server,
    Worker,
    create_pg_database,
    drop_pg_database,
    machine_cpu_seconds,
)
from bench.load import Events, SandboxCRM, closed, serve, service_env, wait_provisioned
from webhooks.store.migrate import upgrade_to_head

WORKERS = (1, 2, 4)
COMPANIES = 5_000
EVENTS_PER_TICK = 100
CRM_LATENCY_SECONDS = 0.05
DRAIN_SECONDS = 300.0

UNSETTLED_SQL = text(
    "SELECT (SELECT count(*) FROM inbox_events WHERE status IN ('pending', 'processing')),"
    " (SELECT count(*) FROM crm_writeback WHERE status IN ('pending', 'sending'))"
)


def events_per_run() -> int:
    return int(os.environ.get("BENCH_SCALE_EVENTS", "20000"))


@dataclass
class Drain:
    """When (perf_counter) the inbox, then also the write-back outbox, were empty; None when
    not within DRAIN_SECONDS (with what was left)."""

    inbox_empty: float | None = None
    all_empty: float | None = None
    left: tuple[int, int] = (0, 0)


async def _drain(url: str, processes: list[Server]) -> Drain:
    engine = create_async_engine(url)
    drain = Drain()
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while time.monotonic() < deadline:
            for process in processes:
                process.check_alive()
            async with engine.connect() as connection:
                inbox, outbox = (await connection.execute(UNSETTLED_SQL)).one()
            drain.left = (int(inbox), int(outbox))
            if inbox == 0 and drain.inbox_empty is None:
                drain.inbox_empty = time.perf_counter()
            if inbox == 0 and outbox == 0:
                drain.all_empty = time.perf_counter()
                break
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    return drain


def _logged(folder: Path, pattern: str, event: str) -> int:
    """How many times the worker logs say `event` (warnings are logged at the bench's level)."""
    return sum(log.read_text(errors="replace").count(event) for log in folder.glob(pattern))


async def _one(workers: int, folder: Path, total: int) -> tuple[str, str]:
    database = await create_pg_database("crm_health_bench_scale")
    if database is None:
        return (f"  {workers} worker(s)", "skipped: no PostgreSQL at 127.0.0.1:5432")
    name, url = database
    processes: list[Server] = []
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        async with SandboxCRM(companies=COMPANIES, latency_seconds=CRM_LATENCY_SECONDS) as sandbox:
            env = service_env(url, sandbox, CRM_HEALTH_PROVISION_ON_START="true")
            api = serve({**env, "CRM_HEALTH_RUN_WORKER": "false"}, folder / f"api-{workers}.log")
            processes.append(api)
            await api.wait_ready()
            await wait_provisioned(sandbox, api)
            processes += [
                Worker(env=env, log=folder / f"worker-{workers}-{n}.log") for n in range(workers)
            ]
            await asyncio.sleep(3)  # the workers' imports and first (empty) pass
            for process in processes:
                process.check_alive()
            events = Events(sandbox.companies, seed=7)
            cpu_before = [process.cpu_seconds() or 0.0 for process in processes]
            busy_before, total_before = machine_cpu_seconds()
            started = time.perf_counter()
            sent = await closed(
                api.port,
                ticks=total // EVENTS_PER_TICK,
                make=lambda _tick: (events.mixed(EVENTS_PER_TICK), EVENTS_PER_TICK, None),
            )
            drain = await _drain(url, processes)
            busy_after, total_after = machine_cpu_seconds()
            cpu = [
                (process.cpu_seconds() or 0.0) - before
                for process, before in zip(processes, cpu_before, strict=True)
            ]
            writes = sandbox.writes
    finally:
        for process in reversed(processes):
            process.stop()
        await drop_pg_database(name)
    if sent.errors:
        raise RuntimeError(f"{len(sent.errors)} requests refused, first: {sent.errors[0]}")
    busy = (busy_after - busy_before) / (total_after - total_before)
    isolated = _logged(folder, f"worker-{workers}-*.log", "batch_failed_isolating")
    label = f"  {workers} worker{'s' if workers > 1 else ''}"
    common = (
        f"ingest alone {sent.events_per_second:,.0f} events/s ({sent.latency_text()}); CPU busy "
        f"{busy:.0%} of {os.cpu_count()} cores, CPU s API {cpu[0]:.0f} / workers "
        f"{sum(cpu[1:]):.0f}; {writes:,} health writes; {isolated} batches failed and "
        "were retried event by event"
    )
    if drain.all_empty is None:
        return (
            label,
            f"NOT DRAINED after {DRAIN_SECONDS:.0f} s: {drain.left[0]:,} events and "
            f"{drain.left[1]:,} write-backs left; {common}",
        )
    seconds = drain.all_empty - started
    inbox_seconds = (drain.inbox_empty or drain.all_empty) - started
    return (
        label,
        f"{sent.events / seconds:,.0f} events/s end to end ({seconds:.1f} s; inbox empty after "
        f"{inbox_seconds:.1f} s, write-backs {seconds - inbox_seconds:.1f} s later); {common}",
    )


async def run() -> list[tuple[str, str]]:
    total = events_per_run()
    rows = [
        (
            f"scale: {total:,} events ingested and processed, PostgreSQL",
            f"API process + N `crm-health worker`; 20% HubSpot webhooks, 80% native usage over "
            f"{COMPANIES:,} companies; until inbox and write-back outbox are empty",
        )
    ]
    with tempfile.TemporaryDirectory() as temp:
        for workers in WORKERS:
            rows.append(await _one(workers, Path(temp), total))
    return rows


if __name__ == "__main__":
    for name, value in asyncio.run(run()):
        print(f"{name:60} | {value}")
