"""Webhook ingest throughput against the real service, each server its own uvicorn process with
the same options, beside a FastAPI endpoint that only parses the same body (the ceiling), in the
same run: Segment batches of 100 `track` calls (issue 6) and HubSpot batches of 100 signed
events (issue 12), 10 keep-alive clients (HubSpot's default concurrency), durable inbox on
SQLite, then PostgreSQL.

The load generator is this process, a minimal asyncio HTTP/1.1 client, so the two cores are
spent on the servers."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import (
    Measurement,
    Server,
    create_pg_database,
    drop_pg_database,
    http_request,
    measure,
    verdict,
)
from connector.hubspot.events import signature_v3
from webhooks.store.migrate import upgrade_to_head

EVENTS_PER_BATCH = 100
CLIENTS = 10
WARMUP_REQUESTS = 50
MEASURED_REQUESTS = 2_000
TARGET_SHARE = 0.5
TARGET_P99_MS = 100.0
SEGMENT_PATH = "/ingest/segment/v1/batch"
HUBSPOT_PATH = "/webhooks/hubspot"
PUBLIC_URL = "http://bench.example"
HUBSPOT_SECRET = "bench-hubspot-secret"  # noqa: S105 - a throwaway for local servers
PORTAL_ID = 62515

EVENT_NAMES = (
    "Report Viewed",
    "Dashboard Opened",
    "Export Created",
    "Search Performed",
    "Invite Sent",
    "Feedback Submitted",
)
PLANS = ("starter", "pro", "enterprise")
COMPANY_PROPERTIES = ("name", "numberofemployees", "annualrevenue", "domain", "hubspot_owner_id")


# --- the servers (each started as `uvicorn --factory bench.ingest:<name>`) ----------------------


def parse_only_app() -> FastAPI:
    """The ceiling: the same routes, reading the body and parsing it as JSON, nothing else."""
    app = FastAPI()

    @app.post(SEGMENT_PATH)
    async def batch(request: Request) -> dict[str, bool]:
        json.loads(await request.body())
        return {"success": True}

    @app.post(HUBSPOT_PATH, status_code=202)
    async def hubspot(request: Request) -> dict[str, int]:
        return {"received": len(json.loads(await request.body()))}

    return app


def service_app() -> FastAPI:
    """What `crm-health serve` runs, minus the migration (the bench applies it first) and
    with uvicorn's options given on its command line, identical for both servers."""
    from webhooks.app import create_app  # noqa: PLC0415 - only the server process needs it
    from webhooks.configuration import check_configuration  # noqa: PLC0415
    from webhooks.logging import configure_logging  # noqa: PLC0415
    from webhooks.settings import Settings  # noqa: PLC0415

    settings = Settings()
    check_configuration(settings)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)


# --- load -------------------------------------------------------------------------------------


def _track(rng: random.Random, sent_at: datetime) -> dict[str, object]:
    account = rng.randrange(200)
    return {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "userId": f"user-{account}-{rng.randrange(25)}",
        "event": rng.choice(EVENT_NAMES),
        "properties": {
            "plan": rng.choice(PLANS),
            "feature": f"feature-{rng.randrange(12)}",
            "duration_ms": rng.randrange(50, 5000),
            "page": f"/app/{rng.randrange(40)}",
        },
        "context": {
            "groupId": f"acct-{account}",
            "library": {"name": "analytics-node", "version": "6.2.0"},
            "ip": f"10.0.{account % 250}.{rng.randrange(1, 250)}",
        },
        "timestamp": (sent_at - timedelta(milliseconds=rng.randrange(60_000)))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
    }


def segment_requests(count: int, *, write_key: str, seed: int = 6) -> list[bytes]:
    """Whole HTTP requests, built before any clock starts; every messageId is unique, so every
    event acknowledged must be new in the inbox."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    return [
        http_request(
            SEGMENT_PATH,
            json.dumps(
                {
                    "batch": [_track(rng, now) for _ in range(EVENTS_PER_BATCH)],
                    "sentAt": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                },
                separators=(",", ":"),
            ).encode(),
            headers,
        )
        for _ in range(count)
    ]


def hubspot_event(
    event_id: int, company: int, occurred_ms: int, rng: random.Random
) -> dict[str, Any]:
    """A company property change as HubSpot sends it (every key HubSpot puts in one)."""
    name = rng.choice(COMPANY_PROPERTIES)
    value = (
        f"Company {company}"
        if name == "name"
        else f"c{company}.example"
        if name == "domain"
        else str(rng.randrange(1, 5000))
    )
    return {
        "eventId": event_id,
        "subscriptionId": 2_345_678,
        "portalId": PORTAL_ID,
        "appId": 4_242_424,
        "occurredAt": occurred_ms,
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": company,
        "propertyName": name,
        "propertyValue": value,
        "changeSource": "CRM_UI",
        "sourceId": "userId:7654321",
    }


def hubspot_body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()


def hubspot_headers(body: bytes, *, uri: str, secret: str = HUBSPOT_SECRET) -> dict[str, str]:
    """Signed like HubSpot does (v3: method, URI, body and timestamp under HMAC-SHA256)."""
    timestamp = str(int(datetime.now(UTC).timestamp() * 1000))
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", uri, body, timestamp),
    }


def hubspot_requests(count: int, *, seed: int = 12, companies: int = 2_000) -> list[bytes]:
    """Signed requests of 100 events each, every eventId unique. Signed now: the service takes
    a v3 timestamp for 5 minutes, so each server's requests are built just before its run."""
    rng = random.Random(seed)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    requests = []
    uri = PUBLIC_URL + HUBSPOT_PATH
    for n in range(count):
        body = hubspot_body(
            [
                hubspot_event(
                    n * EVENTS_PER_BATCH + i + 1,
                    rng.randrange(1, companies + 1),
                    now_ms - rng.randrange(60_000),
                    rng,
                )
                for i in range(EVENTS_PER_BATCH)
            ]
        )
        requests.append(http_request(HUBSPOT_PATH, body, hubspot_headers(body, uri=uri)))
    return requests


# --- what the inbox holds afterwards ------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One webhook source under test: its requests, the answer it must give, the settings the
    service needs and how to count the events its inbox holds."""

    name: str
    ok_status: int
    env: dict[str, str]
    build: Callable[[int], list[bytes]]
    # Events durably held, from the inbox (a row may hold a whole request of 100 events).
    stored_sql: str
    events_per_row: int


def segment_source() -> Source:
    write_key = secrets.token_urlsafe(16)
    return Source(
        name="Segment",
        ok_status=200,
        env={"CRM_HEALTH_SEGMENT_WRITE_KEY": write_key},
        build=lambda count: segment_requests(count, write_key=write_key),
        stored_sql="SELECT count(*) FROM inbox_events "
        "WHERE source = 'segment' AND kind LIKE 'request:%'",
        events_per_row=EVENTS_PER_BATCH,
    )


def hubspot_source() -> Source:
    return Source(
        name="HubSpot",
        ok_status=202,
        env={
            "CRM_HEALTH_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
            "CRM_HEALTH_PUBLIC_URL": PUBLIC_URL,
        },
        build=hubspot_requests,
        stored_sql="SELECT count(*) FROM inbox_events WHERE source = 'hubspot'",
        events_per_row=1,
    )


async def _pg_count(url: str, sql: str) -> int:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        count = (await connection.execute(text(sql))).scalar_one()
    await engine.dispose()
    return int(count)


def _sqlite_count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as connection:
        [count] = connection.execute(sql).fetchone()
    connection.close()
    return int(count)


# --- the benchmark ------------------------------------------------------------------------------


def service_env(database_url: str, extra: dict[str, str]) -> dict[str, str]:
    return {
        "CRM_HEALTH_DATABASE_URL": database_url,
        # Production runs the worker as its own process (`crm-health worker`).
        "CRM_HEALTH_RUN_WORKER": "false",
        "CRM_HEALTH_LOG_LEVEL": "warning",
        "CRM_HEALTH_PROVISION_ON_START": "false",
        **extra,
    }


async def _measure(server: Server, source: Source) -> Measurement:
    requests = source.build(WARMUP_REQUESTS + MEASURED_REQUESTS)
    return await measure(
        server,
        requests[:WARMUP_REQUESTS],
        requests[WARMUP_REQUESTS:],
        events_per_request=EVENTS_PER_BATCH,
        clients=CLIENTS,
        ok={source.ok_status},
    )


async def _run_service(
    source: Source, *, folder: Path, label: str, database_url: str
) -> Measurement:
    await asyncio.to_thread(upgrade_to_head, database_url)
    server = Server.uvicorn(
        "bench.ingest:service_app",
        env=service_env(database_url, source.env),
        log=folder / f"{source.name}-{label}.log",
    )
    try:
        result = await _measure(server, source)
    finally:
        server.stop()
    acknowledged = (WARMUP_REQUESTS + MEASURED_REQUESTS) * EVENTS_PER_BATCH
    if result.stored != acknowledged:
        raise RuntimeError(f"{label}: {acknowledged} events acknowledged, {result.stored} stored")
    return result


async def run_source(
    source: Source,
) -> tuple[list[tuple[str, str]], Measurement, list[Measurement]]:
    rows: list[tuple[str, str]] = [
        (
            f"{source.name} ingest, batches of {EVENTS_PER_BATCH}, {CLIENTS} concurrent clients",
            f"{MEASURED_REQUESTS:,} requests after {WARMUP_REQUESTS} warm-up, uvicorn x1 each; "
            f"target >= {TARGET_SHARE:.0%} of ceiling, p99 < {TARGET_P99_MS:.0f} ms",
        )
    ]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        ceiling_server = Server.uvicorn(
            "bench.ingest:parse_only_app", env={}, log=folder / "parse-only.log"
        )
        services: list[Measurement] = []
        try:
            ceiling = await _measure(ceiling_server, source)
        finally:
            ceiling_server.stop()
        rows.append(("  parse-only FastAPI endpoint (ceiling)", ceiling.text()))

        database = folder / "ingest.db"
        result = await _run_service(
            source, folder=folder, label="sqlite", database_url=f"sqlite+aiosqlite:///{database}"
        )
        services.append(result)
        rows.append(
            (
                "  crm-health, SQLite inbox (worker in its own process)",
                verdict(result, ceiling, share=TARGET_SHARE, p99_ms=TARGET_P99_MS),
            )
        )
        stored = await asyncio.to_thread(_sqlite_count, database, source.stored_sql)
        if stored * source.events_per_row != result.stored:
            raise RuntimeError(f"SQLite: {result.stored} acknowledged, {stored} rows in inbox")

        pg = await create_pg_database("crm_health_bench_ingest")
        if pg is None:
            rows.append(("  crm-health, PostgreSQL inbox", "skipped: no server at 127.0.0.1:5432"))
            return rows, ceiling, services
        name, url = pg
        try:
            result = await _run_service(source, folder=folder, label="postgresql", database_url=url)
            stored = await _pg_count(url, source.stored_sql)
        finally:
            await drop_pg_database(name)
        if stored * source.events_per_row != result.stored:
            raise RuntimeError(f"PostgreSQL: {result.stored} acknowledged, {stored} rows stored")
        services.append(result)
        rows.append(
            (
                "  crm-health, PostgreSQL inbox (worker in its own process)",
                verdict(result, ceiling, share=TARGET_SHARE, p99_ms=TARGET_P99_MS),
            )
        )
    return rows, ceiling, services


async def run_segment() -> list[tuple[str, str]]:
    rows, _, _ = await run_source(segment_source())
    return rows


def _cpu_ms(work: Callable[[], object], rounds: int = 200) -> float:
    """CPU milliseconds one call of `work` takes here, best of three (noise only adds)."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(rounds):
            work()
        best = min(best, (time.process_time() - started) / rounds * 1000)
    return best


def hubspot_costs(ceiling: Measurement, services: list[Measurement]) -> tuple[str, str]:
    """Where a HubSpot request's CPU goes, measured step by step in this process on the same
    kind of body: what the ceiling does (parse), then what intake must add before storing."""
    from starlette.datastructures import Headers  # noqa: PLC0415

    from connector.hubspot import events as hubspot_events  # noqa: PLC0415

    rng = random.Random(3)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    body = hubspot_body(
        [hubspot_event(i + 1, rng.randrange(1, 2000), now_ms, rng) for i in range(EVENTS_PER_BATCH)]
    )
    uri = PUBLIC_URL + HUBSPOT_PATH
    headers = Headers(hubspot_headers(body, uri=uri))
    parsed = hubspot_events.parse_batch(body)
    parse = _cpu_ms(lambda: json.loads(body))
    verify = _cpu_ms(
        lambda: hubspot_events.verify_request(
            client_secret=HUBSPOT_SECRET,
            method="POST",
            uri=uri,
            body=body,
            headers=headers,
            now=datetime.now(UTC),
        )
    )
    validate = _cpu_ms(lambda: hubspot_events.parse_batch(body))
    rows = _cpu_ms(
        lambda: [
            event.model_dump(mode="json", by_alias=True, exclude_unset=True) for event in parsed
        ]
    )
    floor = _bare_sqlite_insert_ms(
        [event.model_dump(mode="json", by_alias=True, exclude_unset=True) for event in parsed]
    )
    server = [m.server_cpu / m.requests * 1000 for m in services if m.server_cpu is not None]
    ceiling_cpu = (ceiling.server_cpu or 0.0) / ceiling.requests * 1000
    return (
        "  where a request's CPU goes (ms per 100 events)",
        f"ceiling {ceiling_cpu:.2f} in all (JSON parse alone {parse:.2f}); crm-health "
        f"{' / '.join(f'{cpu:.2f}' for cpu in server)} in all (SQLite / PostgreSQL): signature "
        f"{verify:.2f}, parse + validate 100 events {validate:.2f}, inbox rows {rows:.2f}, the "
        f"rest is storing 100 rows and the app around the route; the same 100 rows stored "
        f"with the bare sqlite3 driver (no SQLAlchemy, no RETURNING) take {floor:.2f} alone",
    )


def _bare_sqlite_insert_ms(payloads: list[dict[str, Any]], rounds: int = 50) -> float:
    """The floor of storing one inbox row (and its dedup key) per event on SQLite: the migrated
    schema in WAL mode, as the service opens it, 100 rows per transaction through sqlite3's
    executemany; CPU ms per 100 rows, best of three."""
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / "floor.db"
        upgrade_to_head(f"sqlite+aiosqlite:///{path}")
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        stamp = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        texts = [json.dumps(payload) for payload in payloads]
        best = float("inf")
        serial = 0
        for _ in range(3):
            started = time.process_time()
            for _ in range(rounds):
                rows = []
                for text_ in texts:
                    serial += 1
                    rows.append(("hubspot", "default", f"62515:{serial}", "company", text_, stamp))
                connection.execute("BEGIN")
                # The key claimed first, as the service does (webhooks/store/inbox.py).
                connection.executemany(
                    "INSERT INTO inbox_dedup (source, connection, dedup_key, received_at) "
                    "VALUES (?1, ?2, ?3, ?6) ON CONFLICT DO NOTHING",
                    rows,
                )
                connection.executemany(
                    "INSERT INTO inbox_events (source, connection, dedup_key, kind, payload, "
                    "received_at, status, attempts, available_at) VALUES (?, ?, ?, ?, ?, ?, "
                    "'pending', 0, ?6)",
                    rows,
                )
                connection.execute("COMMIT")
            best = min(best, (time.process_time() - started) / rounds * 1000)
        connection.close()
    return best


async def run_hubspot() -> list[tuple[str, str]]:
    rows, ceiling, services = await run_source(hubspot_source())
    # In a thread: the floor measurement migrates a database, which runs its own event loop.
    return [*rows, await asyncio.to_thread(hubspot_costs, ceiling, services)]


if __name__ == "__main__":
    for name, value in asyncio.run(run_hubspot()):
        print(f"{name:60} | {value}")
