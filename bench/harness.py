"""What the process-level benchmarks share: servers started as their own processes (stopped by
their own pid), a minimal keep-alive HTTP/1.1 load client, latency percentiles, CPU and RSS read
from /proc, and throwaway PostgreSQL databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
READY_SECONDS = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without any CRM_HEALTH_ setting, plus `env`: a server sees
    only what the benchmark gives it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_HEALTH_")}
    return {**base, **env}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads), where /proc has it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process now (/proc/<pid>/statm), None once it is gone."""
    try:
        resident = Path(f"/proc/{pid}/statm").read_text().split()[1]
    except (OSError, IndexError):
        return None
    return int(resident) * PAGE_SIZE


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class Server:
    """One server process on a free port, stopped by its own pid; its output is kept in `log`
    for error messages. `argv` gets `{port}` filled in."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [part.format(port=self.port) for part in argv],
                cwd=ROOT,
                env=clean_env(env),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    @classmethod
    def uvicorn(cls, factory: str, *, env: dict[str, str], log: Path) -> Server:
        """`uvicorn --factory` with the same options for every server a benchmark compares."""
        return cls(
            [
                sys.executable, "-m", "uvicorn", "--factory", factory,
                "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
                "--no-access-log", "--log-level", "warning",
            ],
            env=env,
            log=log,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.process.pid)

    def rss_bytes(self) -> int | None:
        return rss_bytes(self.process.pid)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.log.stem} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    async def wait_ready(self, path: str = "/healthz") -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
            )
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
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Worker(Server):
    """A `crm-health worker` process (no port of its own is listened on)."""

    def __init__(self, *, env: dict[str, str], log: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "webhooks", "worker"],
            env={**env, "CRM_HEALTH_RUN_WORKER": "true"},
            log=log,
        )


# --- the load client -------------------------------------------------------------------------


def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A whole POST request (head + body), built before any clock starts."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    stored: int = 0


class Connection:
    """One keep-alive HTTP/1.1 connection; `send` answers (status, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"response without Content-Length: {head!r}")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
        body = await self.reader.readexactly(length)
        return int(head[9:12]), body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def _client(server: Server, work: Iterator[bytes], tally: Tally, ok: Collection[int]) -> None:
    connection = await Connection.open(server.port)
    try:
        for request in work:
            started = time.perf_counter()
            status, body = await connection.send(request)
            tally.latencies.append(time.perf_counter() - started)
            if status not in ok:
                raise RuntimeError(
                    f"{status} on port {server.port}: {body[:500]!r}\n{server.log_tail()}"
                )
            stored = json.loads(body).get("stored")
            if isinstance(stored, int):
                tally.stored += stored
    finally:
        await connection.close()


async def drive(
    server: Server, requests: Sequence[bytes], *, clients: int, ok: Collection[int]
) -> Tally:
    """Send every request over `clients` keep-alive connections, each taking the next request
    when it is free (a closed loop, like a webhook sender with that many connections)."""
    tally = Tally()
    work = iter(requests)
    await asyncio.gather(*(_client(server, work, tally, ok) for _ in range(clients)))
    return tally


def percentile_ms(values: Sequence[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1000


@dataclass
class Measurement:
    requests: int
    events_per_request: int
    seconds: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float | None
    stored: int = 0

    @property
    def events_per_second(self) -> float:
        return self.requests * self.events_per_request / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, pct: int) -> float:
        return percentile_ms(self.latencies, pct)

    def text(self) -> str:
        server = "?" if self.server_cpu is None else f"{self.server_cpu / self.requests * 1000:.2f}"
        return (
            f"{self.events_per_second:,.0f} events/s ({self.requests_per_second:,.0f} req/s), "
            f"p50 {self.percentile_ms(50):.1f} ms, p99 {self.percentile_ms(99):.1f} ms, "
            f"CPU/req server {server} ms"
        )


async def measure(
    server: Server,
    warmup: Sequence[bytes],
    measured: Sequence[bytes],
    *,
    events_per_request: int,
    clients: int,
    ok: Collection[int],
) -> Measurement:
    """Warm up, then time the measured requests; every answer must have an `ok` status."""
    await server.wait_ready()
    warm = await drive(server, warmup, clients=clients, ok=ok)
    server_cpu = server.cpu_seconds()
    client_cpu = time.process_time()
    started = time.perf_counter()
    tally = await drive(server, measured, clients=clients, ok=ok)
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_after = server.cpu_seconds()
    return Measurement(
        requests=len(measured),
        events_per_request=events_per_request,
        seconds=seconds,
        latencies=tally.latencies,
        client_cpu=client_cpu,
        server_cpu=None
        if server_cpu is None or server_after is None
        else server_after - server_cpu,
        stored=warm.stored + tally.stored,
    )


def verdict(result: Measurement, ceiling: Measurement, *, share: float, p99_ms: float) -> str:
    got = result.events_per_second / ceiling.events_per_second
    misses = [
        *([f"share < {share:.0%}"] if got < share else []),
        *([f"p99 >= {p99_ms:.0f} ms"] if result.percentile_ms(99) >= p99_ms else []),
    ]
    said = "meets target" if not misses else "MISSES target: " + ", ".join(misses)
    return f"{result.text()} = {got:.0%} of ceiling; {said}"


# --- PostgreSQL ------------------------------------------------------------------------------


async def create_pg_database(prefix: str) -> tuple[str, str] | None:
    """A fresh database on the local server: (name, SQLAlchemy URL); None without a server."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, DBAPIError):
        return None
    finally:
        await admin.dispose()
    return name, PG_SERVER.rsplit("/", 1)[0] + f"/{name}"


async def drop_pg_database(name: str) -> None:
    admin = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


Measured = TypeVar("Measured")


async def on_each_backend(
    backends: Sequence[str], name: str, measure: Callable[[str, str], Awaitable[Measured]]
) -> tuple[list[Measured], list[str]]:
    """`measure(url, backend)` on a fresh database of each backend (SQLite: a file in a
    temporary folder; PostgreSQL: a throwaway database `crm_health_bench_<name>_…`, dropped
    after); the results, and the backends skipped for want of a PostgreSQL server."""
    results: list[Measured] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as temp:
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(temp) / f'{name}.db'}"
                results.append(await measure(url, backend))
                continue
            database = await create_pg_database(f"crm_health_bench_{name}")
            if database is None:
                skipped.append(backend)
                continue
            try:
                results.append(await measure(database[1], backend))
            finally:
                await drop_pg_database(database[0])
    return results, skipped
