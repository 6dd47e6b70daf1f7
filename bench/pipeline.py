"""Webhook ingest and processing on SQLite: the acknowledgement path against a parse-only
baseline, then the worker draining the inbox into the in-process sandbox CRM."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI, Request

from connector.hubspot.events import parse_batch, signature_v3
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from webhooks.app import create_app
from webhooks.logging import configure_logging
from webhooks.settings import Settings
from webhooks.store import configs
from webhooks.store.migrate import upgrade_to_head

SECRET = "bench-secret"  # noqa: S105
TOKEN = "bench-token"  # noqa: S105
BASE = "http://bench.local"
COMPANIES = 1000
BATCHES = 200
CONCURRENCY = 10


def _batch(first_id: int, now_ms: int) -> bytes:
    return json.dumps(
        [
            {
                "eventId": first_id + i,
                "portalId": 62515,
                "occurredAt": now_ms,
                "subscriptionType": "company.propertyChange",
                "objectId": (first_id + i) % COMPANIES + 1,
                "propertyName": "name",
                "propertyValue": f"Company {(first_id + i) % COMPANIES + 1}",
            }
            for i in range(100)
        ]
    ).encode()


def _signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(datetime.now(UTC).timestamp() * 1000))
    uri = f"{BASE}/webhooks/hubspot"
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-v3": signature_v3(SECRET, "POST", uri, body, timestamp),
    }


async def _load(post: Callable[[bytes], Awaitable[int]]) -> tuple[float, list[float]]:
    now_ms = int(time.time() * 1000)
    bodies = [_batch(n * 100, now_ms) for n in range(BATCHES)]
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def sender() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            status = await post(body)
            latencies.append(time.perf_counter() - started)
            assert status in {200, 202}, status

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
    return BATCHES * 100 / (time.perf_counter() - started), latencies


def _pct(values: list[float], pct: float) -> float:
    return statistics.quantiles(values, n=100)[int(pct) - 1] * 1000


async def run() -> list[tuple[str, str]]:
    configure_logging(level="error")
    baseline = FastAPI()

    @baseline.post("/webhooks/hubspot")
    async def parse_only(request: Request) -> dict[str, int]:
        return {"received": len(parse_batch(await request.body()))}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=baseline), base_url=BASE) as c:

        async def post_baseline(body: bytes) -> int:
            return (await c.post("/webhooks/hubspot", content=body)).status_code

        ceiling, ceiling_lat = await _load(post_baseline)

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await asyncio.to_thread(upgrade_to_head, url)
        state = SandboxState()
        for n in range(COMPANIES):
            state.add_company({"name": f"Company {n + 1}"})
        sandbox = httpx.ASGITransport(app=create_sandbox_app(state, access_token=TOKEN))
        settings = Settings(
            database_url=url,
            public_url=BASE,
            hubspot_client_secret=SECRET,
            hubspot_access_token=TOKEN,
            hubspot_api_base="http://sandbox.local",
            run_worker=False,
            provision_on_start=False,
            log_level="error",
        )
        app = create_app(settings, crm_transport=sandbox)
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime
            [connector] = runtime.connections.writers().values()
            await connector.ensure_fields()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=BASE
            ) as client:

                async def post_service(body: bytes) -> int:
                    return (
                        await client.post("/webhooks/hubspot", content=body, headers=_signed(body))
                    ).status_code

                ingest, ingest_lat = await _load(post_service)

            calls_before = len(state.requests)
            started = time.perf_counter()
            while await runtime.pipeline.run_once():
                pass
            processing = BATCHES * 100 / (time.perf_counter() - started)
            writes = [r for r in state.requests[calls_before:] if r.path.endswith("/batch/update")]
            written = sum(1 for c in state.companies.values() if c.get("health_band"))

            # Every account rescored with nothing changed (same facts, same config): the
            # write-back outbox must not send a single call.
            async with runtime.sessions() as session, session.begin():
                await configs.request_recompute(
                    session, config_id=None, reason="benchmark", now=datetime.now(UTC)
                )
            calls_before = len(state.requests)
            recomputed = 0
            while count := await runtime.pipeline.recompute_step():
                recomputed += count
            while await runtime.pipeline.run_once():
                pass
            unchanged_calls = len(state.requests) - calls_before

    return [
        (f"SQLite, in-process ASGI, {BATCHES} batches x 100 events, {CONCURRENCY} concurrent", ""),
        ("parse-only FastAPI endpoint (ceiling)", f"{ceiling:,.0f} events/s"),
        (
            "  ack latency p50 / p99",
            f"{_pct(ceiling_lat, 50):.1f} / {_pct(ceiling_lat, 99):.1f} ms",
        ),
        ("POST /webhooks/hubspot (verify + store)", f"{ingest:,.0f} events/s"),
        ("  ack latency p50 / p99", f"{_pct(ingest_lat, 50):.1f} / {_pct(ingest_lat, 99):.1f} ms"),
        ("  share of ceiling", f"{ingest / ceiling:.0%}"),
        ("worker: inbox -> scored -> written", f"{processing:,.0f} events/s"),
        ("companies written / batch update calls", f"{written} / {len(writes)}"),
        (
            "HubSpot calls per 1,000 changed accounts (target <= 10)",
            f"{len(writes) / written * 1000:.0f} (naive one call per event: "
            f"{BATCHES * 100 / written * 1000:,.0f})",
        ),
        (
            "HubSpot calls per 1,000 unchanged recomputes (target 0)",
            f"{unchanged_calls / recomputed * 1000:.0f} ({recomputed:,} accounts rescored)",
        ),
    ]
