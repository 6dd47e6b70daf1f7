"""Write-back efficiency (SQLite, in process): HubSpot webhooks stored through the service's own
route, the worker draining the inbox into the sandbox CRM; how many CRM calls 1,000 changed
accounts cost (target: full batches of 100, so 10) against a naive integration that calls the
CRM once per event, and how many 1,000 accounts rescored without a change cost (target 0).

Ingest speed is measured with real server processes in bench/ingest.py."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from connector.hubspot.events import signature_v3
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


async def _load(post: Callable[[bytes], Awaitable[int]]) -> None:
    """Every batch through the service's route, CONCURRENCY at a time; each must be taken."""
    now_ms = int(time.time() * 1000)
    bodies = iter([_batch(n * 100, now_ms) for n in range(BATCHES)])

    async def sender() -> None:
        for body in bodies:
            status = await post(body)
            if status != 202:
                raise RuntimeError(f"webhook answered {status}")

    await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))


async def run() -> list[tuple[str, str]]:
    configure_logging(level="error")
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

                await _load(post_service)

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

    per_changed = len(writes) / written * 1000
    naive = BATCHES * 100 / written * 1000
    unchanged = unchanged_calls / recomputed * 1000
    full = "meets target" if per_changed <= 10.5 else "MISSES target (full batches: 10)"
    return [
        (
            f"write-back efficiency: {BATCHES * 100:,} HubSpot events on {COMPANIES:,} companies",
            "SQLite, in process, sandbox CRM; HubSpot batch update takes 100 records",
        ),
        ("  worker: inbox -> scored -> written", f"{processing:,.0f} events/s"),
        ("  companies written / batch update calls", f"{written:,} / {len(writes):,}"),
        (
            "  CRM calls per 1,000 changed accounts",
            f"{per_changed:.0f}; naive one call per event: {naive:,.0f} "
            f"({naive / per_changed:,.0f}x more); {full}",
        ),
        (
            "  CRM calls per 1,000 unchanged recomputes",
            f"{unchanged:.0f} ({recomputed:,} accounts rescored); "
            f"{'meets target' if unchanged_calls == 0 else 'MISSES target (0)'}",
        ),
    ]
