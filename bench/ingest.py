"""Segment ingest throughput (issue 6): batches of 100 `track` calls from 10 keep-alive clients
against the real service (durable inbox on SQLite, then PostgreSQL) and, in the same run,
against a FastAPI endpoint that only parses the body (the ceiling).

Every server is its own uvicorn process with the same options; the load generator is this
process, a minimal asyncio HTTP/1.1 client, so the two cores are spent on the servers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from webhooks.store.migrate import upgrade_to_head

EVENTS_PER_BATCH = 100
CLIENTS = 10
WARMUP_REQUESTS = 50
MEASURED_REQUESTS = 2_000
TARGET_SHARE = 0.5
TARGET_P99_MS = 100.0
READY_SECONDS = 60
PATH = "/ingest/segment/v1/batch"
PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent

EVENT_NAMES = (
    "Report Viewed",
    "Dashboard Opened",
    "Export Created",
    "Search Performed",
    "Invite Sent",
    "Feedback Submitted",
)
PLANS = ("starter", "pro", "enterprise")


# --- the two servers (each started as `uvicorn --factory bench.ingest:<name>`) ------------------


def parse_only_app() -> FastAPI:
    """The ceiling: the same route, reading the body and parsing it, nothing else."""
    app = FastAPI()

    @app.post(PATH)
    async def batch(request: Request) -> dict[str, bool]:
        json.loads(await request.body())
        return {"success": True}

    return app


def service_app() -> FastAPI:
    """What `crm-health serve` runs, minus the migration (the bench applies it first) and
    with uvicorn's options given on its command line, identical for both servers."""
    from webhooks.app import create_app  # noqa: PLC0415 - only the server process needs it
    from webhooks.connections import check_configuration  # noqa: PLC0415
    from webhooks.logging import configure_logging  # noqa: PLC0415
    from webhooks.settings import Settings  # noqa: PLC0415

    settings = Settings()
    check_configuration(settings)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Server:
    """One uvicorn process, stopped by its own pid; its log is kept for error messages."""

    def __init__(self, factory: str, *, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.log = log
        base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_HEALTH_")}
        with log.open("wb") as sink:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [
                    sys.executable, "-m", "uvicorn", "--factory", factory,
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                    "--no-access-log", "--log-level", "warning",
                ],
                cwd=ROOT,
                env={**base, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server process (all its threads), where /proc has it."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")  # fmt: skip
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            writer.close()
            await writer.wait_closed()
            if status.startswith(b"HTTP/1.1 "):
                return
        raise RuntimeError(f"server not answering after {READY_SECONDS} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- load -----------------------------------------------------------------------------------------


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


def build_requests(count: int, *, write_key: str, seed: int = 6) -> list[bytes]:
    """Whole HTTP requests (head + body), built before any clock starts; every messageId is
    unique, so every event acknowledged must be a new inbox row."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    requests = []
    for _ in range(count):
        body = json.dumps(
            {
                "batch": [_track(rng, now) for _ in range(EVENTS_PER_BATCH)],
                "sentAt": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            },
            separators=(",", ":"),
        ).encode()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests


@dataclass
class Measurement:
    requests: int
    seconds: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float | None
    stored: int = 0

    @property
    def events_per_second(self) -> float:
        return self.requests * EVENTS_PER_BATCH / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, pct: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[pct - 1] * 1000

    def text(self) -> str:
        server = "?" if self.server_cpu is None else f"{self.server_cpu / self.requests * 1000:.2f}"
        return (
            f"{self.events_per_second:,.0f} events/s ({self.requests_per_second:,.0f} req/s), "
            f"p50 {self.percentile_ms(50):.1f} ms, p99 {self.percentile_ms(99):.1f} ms, "
            f"CPU/req server {server} ms, client {self.client_cpu / self.requests * 1000:.2f} ms"
        )


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    stored: int = 0


async def _client(port: int, work: Iterator[bytes], tally: _Tally, server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in work:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"response without Content-Length: {head!r}")
            length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
            body = await reader.readexactly(length)
            tally.latencies.append(time.perf_counter() - started)
            if head[9:12] != b"200":
                raise RuntimeError(
                    f"{head[:12].decode()} on port {port}: {body[:500]!r}\n{server.log_tail()}"
                )
            stored = json.loads(body).get("stored")
            if isinstance(stored, int):
                tally.stored += stored
    finally:
        writer.close()


async def _drive(server: Server, requests: list[bytes]) -> _Tally:
    tally = _Tally()
    work = iter(requests)  # shared: each client takes the next request when it is free
    await asyncio.gather(*(_client(server.port, work, tally, server) for _ in range(CLIENTS)))
    return tally


async def measure(server: Server, warmup: list[bytes], measured: list[bytes]) -> Measurement:
    """Warm up, then time the measured requests; every answer must be a 200."""
    await server.wait_ready()
    warm = await _drive(server, warmup)
    server_cpu = server.cpu_seconds()
    client_cpu = time.process_time()
    started = time.perf_counter()
    tally = await _drive(server, measured)
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_after = server.cpu_seconds()
    return Measurement(
        requests=len(measured),
        seconds=seconds,
        latencies=tally.latencies,
        client_cpu=client_cpu,
        server_cpu=None
        if server_cpu is None or server_after is None
        else server_after - server_cpu,
        stored=warm.stored + tally.stored,
    )


# --- databases ------------------------------------------------------------------------------------


async def _create_pg_database() -> tuple[str, str] | None:
    name = f"crm_health_bench_ingest_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, DBAPIError):
        return None
    finally:
        await admin.dispose()
    return name, PG_SERVER.rsplit("/", 1)[0] + f"/{name}"


async def _drop_pg_database(name: str) -> None:
    admin = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


# The service stores each request whole (the worker splits it into its calls later): the
# events durably held are the stored requests times the calls in each.
STORED_REQUESTS_SQL = (
    "SELECT count(*) FROM inbox_events WHERE source = 'segment' AND kind LIKE 'request:%'"
)


async def _pg_inbox_rows(url: str) -> int:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        count = (await connection.execute(text(STORED_REQUESTS_SQL))).scalar_one()
    await engine.dispose()
    return int(count) * EVENTS_PER_BATCH


def _sqlite_inbox_rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        [count] = connection.execute(STORED_REQUESTS_SQL).fetchone()
    connection.close()
    return int(count) * EVENTS_PER_BATCH


# --- the benchmark --------------------------------------------------------------------------------


def _service_env(database_url: str, write_key: str) -> dict[str, str]:
    return {
        "CRM_HEALTH_DATABASE_URL": database_url,
        "CRM_HEALTH_SEGMENT_WRITE_KEY": write_key,
        # Production runs the worker as its own process (`crm-health worker`).
        "CRM_HEALTH_RUN_WORKER": "false",
        "CRM_HEALTH_LOG_LEVEL": "warning",
        "CRM_HEALTH_PROVISION_ON_START": "false",
    }


async def _run_service(
    *,
    folder: Path,
    label: str,
    database_url: str,
    write_key: str,
    warmup: list[bytes],
    measured: list[bytes],
) -> Measurement:
    await asyncio.to_thread(upgrade_to_head, database_url)
    server = Server(
        "bench.ingest:service_app",
        env=_service_env(database_url, write_key),
        log=folder / f"{label}.log",
    )
    try:
        result = await measure(server, warmup, measured)
    finally:
        server.stop()
    acknowledged = (len(warmup) + len(measured)) * EVENTS_PER_BATCH
    if result.stored != acknowledged:
        raise RuntimeError(f"{label}: {acknowledged} events acknowledged, {result.stored} stored")
    return result


def _verdict(result: Measurement, ceiling: Measurement) -> str:
    share = result.events_per_second / ceiling.events_per_second
    p99 = result.percentile_ms(99)
    misses = [
        *([f"share < {TARGET_SHARE:.0%}"] if share < TARGET_SHARE else []),
        *([f"p99 >= {TARGET_P99_MS:.0f} ms"] if p99 >= TARGET_P99_MS else []),
    ]
    verdict = "meets target" if not misses else "MISSES target: " + ", ".join(misses)
    return f"{result.text()} = {share:.0%} of ceiling; {verdict}"


async def run() -> list[tuple[str, str]]:
    write_key = secrets.token_urlsafe(16)
    requests = build_requests(WARMUP_REQUESTS + MEASURED_REQUESTS, write_key=write_key)
    warmup, measured = requests[:WARMUP_REQUESTS], requests[WARMUP_REQUESTS:]
    rows: list[tuple[str, str]] = [
        (
            f"Segment ingest, batches of {EVENTS_PER_BATCH}, {CLIENTS} concurrent clients",
            f"{MEASURED_REQUESTS:,} requests after {WARMUP_REQUESTS} warm-up, uvicorn x1 each; "
            f"target >= {TARGET_SHARE:.0%} of ceiling, p99 < {TARGET_P99_MS:.0f} ms",
        )
    ]
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        ceiling_server = Server(
            "bench.ingest:parse_only_app", env={}, log=folder / "parse-only.log"
        )
        try:
            ceiling = await measure(ceiling_server, warmup, measured)
        finally:
            ceiling_server.stop()
        rows.append(("  parse-only FastAPI endpoint (ceiling)", ceiling.text()))

        database = folder / "ingest.db"
        sqlite_result = await _run_service(
            folder=folder,
            label="sqlite",
            database_url=f"sqlite+aiosqlite:///{database}",
            write_key=write_key,
            warmup=warmup,
            measured=measured,
        )
        rows.append(
            (
                "  crm-health, SQLite inbox (durable; worker in its own process)",
                _verdict(sqlite_result, ceiling),
            )
        )
        stored = await asyncio.to_thread(_sqlite_inbox_rows, database)
        if stored != sqlite_result.stored:
            raise RuntimeError(f"SQLite: {sqlite_result.stored} acknowledged, {stored} in inbox")

        pg = await _create_pg_database()
        if pg is None:
            rows.append(("  crm-health, PostgreSQL inbox", "skipped: no server at 127.0.0.1:5432"))
        else:
            name, url = pg
            try:
                pg_result = await _run_service(
                    folder=folder,
                    label="postgresql",
                    database_url=url,
                    write_key=write_key,
                    warmup=warmup,
                    measured=measured,
                )
                stored = await _pg_inbox_rows(url)
            finally:
                await _drop_pg_database(name)
            if stored != pg_result.stored:
                raise RuntimeError(f"PostgreSQL: {pg_result.stored} acknowledged, {stored} stored")
            rows.append(
                (
                    "  crm-health, PostgreSQL inbox (durable; worker in its own process)",
                    _verdict(pg_result, ceiling),
                )
            )
    return rows


if __name__ == "__main__":
    for name, value in asyncio.run(run()):
        print(f"{name:66} | {value}")
