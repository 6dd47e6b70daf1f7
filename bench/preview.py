"""Admin reads beside intake (issue 18): HubSpot webhook acknowledgement latency of a service
holding 20,000 scored accounts, alone and while 10 previews of a configuration that moves most
of them between bands are in flight, on SQLite and on PostgreSQL. Target: ack p99 < 100 ms.

The service is one uvicorn process without its worker (as production runs it, and as the
ingest benchmark does); webhooks arrive at a steady rate over keep-alive connections (an open
loop: a slow answer does not slow the sender down), 10 company changes each. During the second
window 10 clients each send a preview, and the next one as soon as it is answered, so 10 are
always in flight. `BENCH_PREVIEW_SECONDS` sets each window's length (default 30)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import (
    Connection,
    Server,
    create_pg_database,
    drop_pg_database,
    http_request,
    percentile_ms,
)
from bench.ingest import (
    HUBSPOT_PATH,
    HUBSPOT_SECRET,
    PUBLIC_URL,
    hubspot_body,
    hubspot_event,
    hubspot_headers,
    service_env,
)
from bench.load import ADMIN_TOKEN, Sent, paced
from bench.worker import recompute, seed_facts
from signals.config import HealthConfig
from webhooks.store.migrate import upgrade_to_head

ACCOUNTS = 20_000
PREVIEWS = 10
WEBHOOKS_PER_SECOND = 20
EVENTS_PER_WEBHOOK = 10
TARGET_P99_MS = 100.0
PREVIEW_PATH = "/api/v1/config/preview"
# Drain the previews still in flight when the window ends, then give up.
DRAIN_SECONDS = 180.0


def seconds() -> float:
    return float(os.environ.get("BENCH_PREVIEW_SECONDS", "30"))


def candidate() -> dict[str, object]:
    """The defaults with stricter bands: on the seeded accounts about 60% change band, so the
    preview also works out the alerts each would raise (its most expensive path)."""
    document = HealthConfig().model_dump(mode="json")
    document["bands"] = {**document["bands"], "healthy_min": 80.0, "at_risk_below": 55.0}
    return document


def preview_request() -> bytes:
    return http_request(
        PREVIEW_PATH,
        json.dumps({"config": candidate(), "limit": 100}).encode(),
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )


class Webhooks:
    """Signed HubSpot webhooks built just in time (signatures age), every eventId unique."""

    def __init__(self) -> None:
        self.rng = random.Random(18)
        self.next_id = 0

    def make(self, _tick: int) -> tuple[list[bytes], int, None]:
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        events = []
        for _ in range(EVENTS_PER_WEBHOOK):
            self.next_id += 1
            company = self.rng.randrange(1, ACCOUNTS + 1)
            events.append(hubspot_event(self.next_id, company, now_ms, self.rng))
        body = hubspot_body(events)
        headers = hubspot_headers(body, uri=PUBLIC_URL + HUBSPOT_PATH, secret=HUBSPOT_SECRET)
        return [http_request(HUBSPOT_PATH, body, headers)], EVENTS_PER_WEBHOOK, None


@dataclass
class Previews:
    """Previews answered during a window: seconds each took (waiting for a turn included)."""

    seconds: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def text(self, alone: float) -> str:
        ok = self.statuses.get(200, 0)
        busy = self.statuses.get(503, 0)
        others = ", ".join(
            f"{n} answered {s}" for s, n in sorted(self.statuses.items()) if s not in (200, 503)
        )
        took = (
            f", in median {statistics.median(self.seconds):.1f} s, max "
            f"{max(self.seconds):.1f} s (waiting for a turn included)"
            if self.seconds
            else ""
        )
        failed = f"; {others}, first: {self.errors[0]}" if others else ""
        return (
            f"the first, alone: {alone:.1f} s; in flight: {ok} answered 200{took}, "
            f"{busy} answered 503 (no turn within 30 s){failed}"
        )


async def _keep_in_flight(port: int, stop: asyncio.Event, previews: Previews) -> None:
    """One client: a preview, then the next as soon as it is answered, until `stop` (at least
    one)."""
    connection = await Connection.open(port)
    request = preview_request()
    try:
        while True:
            started = time.perf_counter()
            try:
                status, body = await connection.send(request)
            except (OSError, asyncio.IncompleteReadError) as exc:
                previews.errors.append(repr(exc))
                return
            previews.statuses[status] = previews.statuses.get(status, 0) + 1
            if status == 200:
                previews.seconds.append(time.perf_counter() - started)
            elif status != 503 and len(previews.errors) < 3:
                previews.errors.append(f"{status}: {body[:300]!r}")
            if stop.is_set():
                break
    finally:
        await connection.close()


def ack_text(sent: Sent) -> str:
    lat = sent.latencies
    failed = f"; {len(sent.errors)} FAILED, first: {sent.errors[0]}" if sent.errors else ""
    return (
        f"p50 {percentile_ms(lat, 50):.0f} ms, p95 {percentile_ms(lat, 95):.0f} ms, "
        f"p99 {percentile_ms(lat, 99):.0f} ms, max {max(lat) * 1000:.0f} ms "
        f"({len(lat):,} acks){failed}"
    )


def verdict(sent: Sent) -> str:
    p99 = percentile_ms(sent.latencies, 99)
    met = p99 < TARGET_P99_MS and not sent.errors
    return "meets target" if met else f"MISSES target (p99 < {TARGET_P99_MS:.0f} ms)"


async def _measure(url: str, label: str, folder: Path) -> list[tuple[str, str]]:
    await asyncio.to_thread(upgrade_to_head, url)
    await seed_facts(url, accounts=ACCOUNTS)
    await recompute(url, accounts=ACCOUNTS)
    if url.startswith("postgresql"):
        # Planner statistics, as autovacuum keeps them on a live server (a freshly loaded table
        # has none, and its plans are not what production sees).
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
        await engine.dispose()
    server = Server.uvicorn(
        "bench.ingest:service_app",
        env=service_env(
            url,
            {
                "CRM_HEALTH_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
                "CRM_HEALTH_PUBLIC_URL": PUBLIC_URL,
                "CRM_HEALTH_ADMIN_TOKEN": ADMIN_TOKEN,
            },
        ),
        log=folder / f"{label}.log",
    )
    window = seconds()
    webhooks = Webhooks()
    try:
        await server.wait_ready()
        # Warm-up: the first webhooks and preview pay for imports and caches.
        await paced(
            server.port, ticks_per_second=WEBHOOKS_PER_SECOND, seconds=2, make=webhooks.make
        )
        warm = Previews()
        await _keep_in_flight(server.port, _already_set(), warm)
        if warm.statuses != {200: 1}:
            raise RuntimeError(f"preview failed: {warm.errors}\n{server.log_tail()}")
        alone_preview = warm.seconds[0]
        alone = await paced(
            server.port, ticks_per_second=WEBHOOKS_PER_SECOND, seconds=window, make=webhooks.make
        )
        stop = asyncio.Event()
        previews = Previews()
        clients = [
            asyncio.create_task(_keep_in_flight(server.port, stop, previews))
            for _ in range(PREVIEWS)
        ]
        await asyncio.sleep(1)  # every preview has started
        during = await paced(
            server.port, ticks_per_second=WEBHOOKS_PER_SECOND, seconds=window, make=webhooks.make
        )
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), DRAIN_SECONDS)
        server.check_alive()
    finally:
        server.stop()
    return [
        (f"  {label}, ack alone", ack_text(alone)),
        (
            f"  {label}, ack with {PREVIEWS} previews in flight",
            f"{ack_text(during)}; {verdict(during)}",
        ),
        (f"  {label}, previews of {ACCOUNTS:,} accounts", previews.text(alone_preview)),
    ]


def _already_set() -> asyncio.Event:
    """A stop that is already given: the client sends exactly one preview."""
    event = asyncio.Event()
    event.set()
    return event


async def run() -> list[tuple[str, str]]:
    rows = [
        (
            f"HubSpot acks beside config previews, {ACCOUNTS:,} scored accounts",
            f"{WEBHOOKS_PER_SECOND} webhooks/s of {EVENTS_PER_WEBHOOK} events, {seconds():.0f} s "
            f"alone then {seconds():.0f} s with {PREVIEWS} previews in flight; uvicorn x1 "
            f"without its worker; target ack p99 < {TARGET_P99_MS:.0f} ms",
        )
    ]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        rows += await _measure(f"sqlite+aiosqlite:///{folder / 'preview.db'}", "SQLite", folder)
        database = await create_pg_database("crm_health_bench_preview")
        if database is None:
            rows.append(("  PostgreSQL", "skipped: no server at 127.0.0.1:5432"))
        else:
            try:
                rows += await _measure(database[1], "PostgreSQL", folder)
            finally:
                await drop_pg_database(database[0])
    return rows


if __name__ == "__main__":
    from webhooks.logging import configure_logging

    configure_logging(level="warning")
    for name, value in asyncio.run(run()):
        print(f"{name:60} | {value}")
