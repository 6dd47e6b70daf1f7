"""The whole service under a steady load, for the freshness, memory and scale benchmarks: the
sandbox HubSpot CRM served from this process (so the moment each health field lands is seen
directly), `crm-health serve` / `crm-health worker` as their own processes, and an open-loop
sender that keeps a rate whatever the answers take."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn

from bench.harness import Connection, Server, free_port, http_request, percentile_ms
from bench.ingest import HUBSPOT_PATH, HUBSPOT_SECRET, PORTAL_ID, PUBLIC_URL, hubspot_headers
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.catalog import Change
from connector.sandbox.state import SandboxState

ACCESS_TOKEN = "bench-access-token"  # noqa: S105 - a throwaway for local servers
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105
NATIVE_PATH = "/ingest/events"
# The field every write-back sets anew: its change is the moment the health landed.
LANDING_FIELD = "health_updated_at"
CONNECTIONS = 10


class SandboxCRM:
    """The sandbox CRM in this process's event loop, with `latency_seconds` before every /crm
    answer; `landed[company]` is when health fields were first written to it (perf_counter)."""

    def __init__(self, *, companies: int, latency_seconds: float) -> None:
        self.state = SandboxState()
        self.state.faults.latency_seconds = latency_seconds
        self.companies = [
            self.state.add_company({"name": f"Company {n}", "domain": f"company{n}.example"})
            for n in range(companies)
        ]
        self.landed: dict[str, float] = {}
        self.writes = 0
        self.state.observers.append(self._observe)
        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_sandbox_app(self.state, access_token=ACCESS_TOKEN),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._task: asyncio.Task[None] | None = None

    def _observe(self, change: Change) -> None:
        if change.object_type == "companies" and change.property_name == LANDING_FIELD:
            self.writes += 1
            self.landed.setdefault(change.object_id, time.perf_counter())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def provisioned(self) -> bool:
        return LANDING_FIELD in self.state.properties

    def batch_update_calls(self) -> int:
        return sum(
            1 for request in self.state.requests if request.path.endswith("/companies/batch/update")
        )

    def forget_requests(self) -> None:
        """The recorded calls grow without bound over a long run: keep this process small."""
        self.state.requests.clear()

    async def __aenter__(self) -> SandboxCRM:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


def service_env(database_url: str, sandbox: SandboxCRM, **extra: str) -> dict[str, str]:
    """A service connected to the sandbox as a HubSpot private app, taking signed webhooks
    and native events (the admin token is a key of the default connection)."""
    return {
        "CRM_HEALTH_DATABASE_URL": database_url,
        "CRM_HEALTH_PUBLIC_URL": PUBLIC_URL,
        "CRM_HEALTH_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
        "CRM_HEALTH_HUBSPOT_ACCESS_TOKEN": ACCESS_TOKEN,
        "CRM_HEALTH_HUBSPOT_API_BASE": sandbox.base_url,
        "CRM_HEALTH_ADMIN_TOKEN": ADMIN_TOKEN,
        "CRM_HEALTH_LOG_LEVEL": os.environ.get("BENCH_SERVICE_LOG_LEVEL", "warning"),
        **extra,
    }


def serve(env: dict[str, str], log: Path) -> Server:
    """`crm-health serve`: migrations, then the API (and its worker unless RUN_WORKER=false)."""
    return Server(
        [sys.executable, "-m", "webhooks", "serve", "--host", "127.0.0.1", "--port", "{port}"],
        env=env,
        log=log,
    )


async def wait_provisioned(sandbox: SandboxCRM, server: Server, seconds: float = 60) -> None:
    """The health fields exist in the CRM (the service creates them at start)."""
    deadline = time.monotonic() + seconds
    while not sandbox.provisioned():
        server.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"health fields not provisioned:\n{server.log_tail()}")
        await asyncio.sleep(0.1)


# --- what is sent ------------------------------------------------------------------------------


class Events:
    """Request bodies of the two kinds of load, every event id unique within a run."""

    def __init__(self, companies: Sequence[str], *, seed: int) -> None:
        self.companies = companies
        self.rng = random.Random(seed)
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def hubspot(self, companies: Sequence[str]) -> bytes:
        """A signed HubSpot webhook: one company.propertyChange (seats) per company given."""
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        body = json.dumps(
            [
                {
                    "eventId": self._id(),
                    "subscriptionId": 2_345_678,
                    "portalId": PORTAL_ID,
                    "appId": 4_242_424,
                    "occurredAt": now_ms,
                    "subscriptionType": "company.propertyChange",
                    "attemptNumber": 0,
                    "objectId": int(company),
                    "propertyName": "numberofemployees",
                    "propertyValue": str(self.rng.randrange(5, 400)),
                    "changeSource": "CRM_UI",
                }
                for company in companies
            ],
            separators=(",", ":"),
        ).encode()
        return http_request(
            HUBSPOT_PATH, body, hubspot_headers(body, uri=PUBLIC_URL + HUBSPOT_PATH)
        )

    def usage(self, count: int) -> bytes:
        """Native product-usage events (`POST /ingest/events`) on random companies."""
        now = datetime.now(UTC)
        events = [
            {
                "id": f"u{self._id()}",
                "type": "usage",
                "account": self.rng.choice(self.companies),
                "user": f"user-{self.rng.randrange(40)}",
                "feature": f"feature-{self.rng.randrange(12)}",
                "at": (now - timedelta(days=self.rng.uniform(0, 30))).isoformat(),
            }
            for _ in range(count)
        ]
        return http_request(
            NATIVE_PATH,
            json.dumps({"events": events}, separators=(",", ":")).encode(),
            {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        )

    def mixed(self, count: int, *, hubspot_share: float = 0.2) -> list[bytes]:
        """`count` events in two requests: HubSpot company changes and native usage."""
        changes = max(1, round(count * hubspot_share))
        return [
            self.hubspot([self.rng.choice(self.companies) for _ in range(changes)]),
            self.usage(count - changes),
        ]


# --- the open-loop sender ----------------------------------------------------------------------


@dataclass
class Sent:
    """What a paced run sent and how it was answered."""

    requests: int = 0
    events: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    # Ticks that found every connection busy and were sent late.
    late: int = 0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def latency_text(self) -> str:
        return (
            f"ack p50 {percentile_ms(self.latencies, 50):.0f} ms, "
            f"p99 {percentile_ms(self.latencies, 99):.0f} ms"
        )


async def paced(
    port: int,
    *,
    ticks_per_second: float,
    seconds: float,
    make: Callable[[int], tuple[list[bytes], int, Any]],
    on_sent: Callable[[Any, float], None] | None = None,
    on_tick: Callable[[int, float], None] | None = None,
) -> Sent:
    """Every 1/ticks_per_second, `make(tick)` gives (requests, events in them, meta); each
    request goes out on a free keep-alive connection at once. `on_sent(meta, at)` is called
    with the moment the tick's first request was written; `on_tick(tick, elapsed)` after."""
    sent = Sent()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await Connection.open(port))
    running: set[asyncio.Task[None]] = set()

    async def send(request: bytes) -> None:
        connection = await pool.get()
        started = time.perf_counter()
        try:
            status, body = await connection.send(request)
        except (OSError, asyncio.IncompleteReadError) as exc:
            sent.errors.append(repr(exc))
            connection = await Connection.open(port)
        else:
            sent.latencies.append(time.perf_counter() - started)
            if status >= 300:
                sent.errors.append(f"{status}: {body[:300]!r}")
        pool.put_nowait(connection)

    start = time.perf_counter()
    ticks = int(seconds * ticks_per_second)
    for tick in range(ticks):
        delay = start + tick / ticks_per_second - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif pool.empty():
            sent.late += 1
        requests, events, meta = make(tick)
        if on_sent is not None:
            on_sent(meta, time.perf_counter())
        for request in requests:
            task = asyncio.create_task(send(request))
            running.add(task)
            task.add_done_callback(running.discard)
        sent.requests += len(requests)
        sent.events += events
        if on_tick is not None:
            on_tick(tick, time.perf_counter() - start)
    if running:
        await asyncio.gather(*running)
    sent.seconds = time.perf_counter() - start
    while not pool.empty():
        await pool.get_nowait().close()
    return sent


async def closed(
    port: int, *, ticks: int, make: Callable[[int], tuple[list[bytes], int, Any]]
) -> Sent:
    """As fast as the service answers: `CONNECTIONS` keep-alive clients, each sending the next
    tick's requests once its previous answer came (built just in time: signatures age)."""
    sent = Sent()
    counter = iter(range(ticks))

    async def client() -> None:
        connection = await Connection.open(port)
        try:
            for tick in counter:
                requests, events, _ = make(tick)
                for request in requests:
                    started = time.perf_counter()
                    status, body = await connection.send(request)
                    sent.latencies.append(time.perf_counter() - started)
                    if status >= 300:
                        sent.errors.append(f"{status}: {body[:300]!r}")
                sent.requests += len(requests)
                sent.events += events
        finally:
            await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    sent.seconds = time.perf_counter() - start
    return sent
