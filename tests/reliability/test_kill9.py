"""SIGKILL of `crm-health serve` in the middle of a load run (webhooks in flight, batches
claimed): after a restart every event acknowledged with a 2xx is processed exactly once in
effect, nothing stays claimed, and every company written to has its health in the CRM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from testkit import (
    PUBLIC_URL,
    USAGE_ROWS,
    hubspot_event,
    make_settings,
    signed_v3_headers,
    usage_days,
)
from webhooks.runtime import Runtime
from webhooks.store import inbox, writeback
from webhooks.store.models import (
    Account,
    CollaborationFact,
    InboxEvent,
    WritebackItem,
)

SECRET = "kill9-client-secret"
TOKEN = "kill9-access-token"
ADMIN_TOKEN = "kill9-admin-token-0123456789abcdef"
PORTAL = 62515

COMPANIES = 24
SENDERS = 6
BATCHES_PER_SENDER = 24
HUBSPOT_BATCH = 40
NATIVE_BATCH = 120
USERS = 12
DAYS = 20
# Every collaboration event adds a fact row of its own (no dedup in the facts): the count of
# those rows is what shows an event processed twice.
COLLABORATION_SHARE = 0.15
# Claimed work of the killed process waits for its lease to run out; a short lease keeps the
# run short (the length only sets the delay, not the outcome).
LEASE_SECONDS = 3
# The kill lands once this share of the batches is acknowledged, with requests in flight and a
# batch claimed at that moment.
KILL_AFTER_SHARE = 0.3
RUN_SECONDS = 60
HEALTH_PROPERTIES = "health_score,health_band,health_updated_at,name"


# --- processes -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _crm_health(*args: str) -> list[str]:
    return [sys.executable, "-m", "webhooks", *args]


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # Logs go to a file: a pipe nobody reads fills up and stalls the process.
    with log.open("ab") as sink:
        return subprocess.Popen(  # noqa: S603 - our own entry point
            command, env=env, stdout=sink, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _kill9(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=10)


def _tail(log: Path) -> str:
    return log.read_text()[-5000:]


def _log_events(log: Path) -> list[str]:
    """The `event` of every JSON log line (the server's own lines are all JSON)."""
    events = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "event" in record:
                events.append(str(record["event"]))
    return events


# --- databases -----------------------------------------------------------------------------------


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """An empty database (serve migrates it): a SQLite file, or a throwaway PostgreSQL one."""
    return empty_database_url


@contextlib.asynccontextmanager
async def _reader(url: str) -> AsyncIterator[AsyncEngine]:
    """Read-only queries from the test; no pooled connection outlives one query."""
    # SQLite: wait for the server's writer (and the recovery after the kill), do not fail.
    connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _scalar(engine: AsyncEngine, statement: Any) -> int:
    async with engine.connect() as connection:
        return int((await connection.scalar(statement)) or 0)


async def _rows(engine: AsyncEngine, statement: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(statement)).all())


def _count_status(*statuses: str) -> Any:
    return select(func.count()).select_from(InboxEvent).where(InboxEvent.status.in_(statuses))


# --- load ----------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Batch:
    """One request's events, sent again unchanged (same ids) until a 2xx or the deadline."""

    kind: str  # "hubspot" or "native"
    events: list[dict[str, Any]]


@dataclass(kw_only=True)
class Load:
    sent: list[Batch] = field(default_factory=list)
    acknowledged: list[Batch] = field(default_factory=list)
    in_flight: int = 0
    attempts: int = 0
    refused: int = 0
    # Acknowledged retries that found their events already stored: committed before the kill,
    # answer lost with the process.
    duplicates: int = 0

    @property
    def acknowledged_batches(self) -> int:
        return len(self.acknowledged)


def _batches(companies: list[str], sender: int, rng: random.Random) -> list[Batch]:
    # Noon UTC yesterday and before: the usage day of an event is never in doubt.
    noon = (datetime.now(UTC) - timedelta(days=1)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    batches = []
    for number in range(BATCHES_PER_SENDER):
        if number % 2 == 0:
            events = []
            for n in range(HUBSPOT_BATCH):
                company = rng.choice(companies)
                events.append(
                    hubspot_event(
                        # Unique per run: sender, batch and position.
                        sender * 1_000_000 + number * 1_000 + n,
                        object_id=int(company),
                        propertyValue=f"Company {company} s{sender} b{number} n{n}",
                    )
                )
            batches.append(Batch(kind="hubspot", events=events))
            continue
        native_events: list[dict[str, Any]] = []
        for n in range(NATIVE_BATCH):
            company = rng.choice(companies)
            at = (noon - timedelta(days=rng.randrange(DAYS))).isoformat()
            event_id = f"s{sender}-b{number}-n{n}"
            if rng.random() < COLLABORATION_SHARE:
                native_events.append(
                    {"id": event_id, "type": "collaboration", "account": company, "at": at,
                     "kind": rng.choice(["feedback", "feature_request", "beta", "referral"])}
                )  # fmt: skip
            else:
                native_events.append(
                    {"id": event_id, "type": "usage", "account": company, "at": at,
                     "user": f"user-{rng.randrange(USERS)}"}
                )  # fmt: skip
        batches.append(Batch(kind="native", events=native_events))
    return batches


async def _post(client: httpx.AsyncClient, batch: Batch) -> httpx.Response:
    if batch.kind == "hubspot":
        body = json.dumps(batch.events).encode()
        headers = signed_v3_headers(body, uri=f"{PUBLIC_URL}/webhooks/hubspot", secret=SECRET)
        return await client.post("/webhooks/hubspot", content=body, headers=headers)
    return await client.post(
        "/ingest/events",
        json={"events": batch.events},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )


async def _sender(base_url: str, batches: list[Batch], load: Load, deadline: float) -> None:
    """Send each batch until it is acknowledged, as HubSpot and a well-behaved client do."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for batch in batches:
            load.sent.append(batch)
            while True:
                assert time.monotonic() < deadline, "a batch was never acknowledged"
                load.in_flight += 1
                load.attempts += 1
                try:
                    response = await _post(client, batch)
                except httpx.TransportError:
                    response = None
                finally:
                    load.in_flight -= 1
                if response is not None and response.is_success:
                    if response.json()["duplicates"]:
                        load.duplicates += 1
                    load.acknowledged.append(batch)
                    break
                if response is not None:
                    # Only "not now" answers are retried; anything else is a bug in the test
                    # or the service.
                    assert response.status_code in {429, 502, 503, 504}, response.text
                load.refused += 1
                await asyncio.sleep(0.05)


async def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while True:
            assert process.poll() is None, _tail(log)
            assert time.monotonic() < deadline, "serve was not ready within 30 s"
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


async def _create_companies(sandbox: str) -> list[str]:
    async with httpx.AsyncClient(
        base_url=sandbox, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as crm:
        deadline = time.monotonic() + 30
        while True:
            try:
                await crm.get("/crm/v3/objects/companies?limit=1")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the sandbox did not start within 30 s"
                await asyncio.sleep(0.05)
        companies = []
        for n in range(COMPANIES):
            created = await crm.post(
                "/crm/v3/objects/companies", json={"properties": {"name": f"Load {n}"}}
            )
            assert created.status_code == 201, created.text
            companies.append(str(created.json()["id"]))
        return companies


async def _provision(database_url: str, sandbox: str) -> None:
    """The health fields exist before the first write-back (`crm-health provision`, without
    the cost of starting another process)."""
    runtime = Runtime.build(
        make_settings(
            database_url,
            hubspot_client_secret=SECRET,
            hubspot_access_token=TOKEN,
            hubspot_api_base=sandbox,
            hubspot_requests_per_second=1000,
        )
    )
    try:
        [connector] = runtime.connections.writers().values()
        await connector.ensure_fields()
    finally:
        await runtime.aclose()


async def _sandbox_companies(sandbox: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=sandbox, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as crm:
        response = await crm.get(
            "/crm/v3/objects/companies", params={"properties": HEALTH_PROPERTIES, "limit": 100}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "paging" not in body
    return {record["id"]: record["properties"] for record in body["results"]}


# --- expectations --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Expected:
    inbox_keys: set[tuple[str, str]]
    companies: set[str]
    usage: set[tuple[str, date, str]]
    collaboration: Counter[str]


def _expected(batches: list[Batch]) -> Expected:
    keys: set[tuple[str, str]] = set()
    companies: set[str] = set()
    usage: set[tuple[str, date, str]] = set()
    collaboration: Counter[str] = Counter()
    for batch in batches:
        for event in batch.events:
            if batch.kind == "hubspot":
                keys.add(("hubspot", f"{PORTAL}:{event['eventId']}"))
                companies.add(str(event["objectId"]))
                continue
            keys.add(("native", str(event["id"])))
            companies.add(str(event["account"]))
            if event["type"] == "usage":
                day = datetime.fromisoformat(event["at"]).astimezone(UTC).date()
                usage.add((str(event["account"]), day, str(event["user"])))
            else:
                collaboration[str(event["account"])] += 1
    return Expected(inbox_keys=keys, companies=companies, usage=usage, collaboration=collaboration)


# --- the test ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Servers:
    env: dict[str, str]
    port: int
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, log: str) -> subprocess.Popen[bytes]:
        command = _crm_health("serve", "--host", "127.0.0.1", "--port", str(self.port))
        process = _spawn(command, self.env, self.logs / log)
        self.processes.append(process)
        return process


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[Servers]:
    """The sandbox CRM running, provisioned, and the environment of `serve` pointed at it."""
    sandbox_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_HEALTH_")}
    env |= {
        "CRM_HEALTH_DATABASE_URL": database_url,
        "CRM_HEALTH_PUBLIC_URL": PUBLIC_URL,
        "CRM_HEALTH_ADMIN_TOKEN": ADMIN_TOKEN,
        "CRM_HEALTH_HUBSPOT_CLIENT_SECRET": SECRET,
        "CRM_HEALTH_HUBSPOT_ACCESS_TOKEN": TOKEN,
        "CRM_HEALTH_HUBSPOT_API_BASE": f"http://127.0.0.1:{sandbox_port}",
        "CRM_HEALTH_LOG_FORMAT": "json",
        "CRM_HEALTH_WORKER_BATCH_SIZE": "300",
        "CRM_HEALTH_WORKER_POLL_SECONDS": "0.05",
        "CRM_HEALTH_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        "CRM_HEALTH_WORKER_MAX_ATTEMPTS": "8",
        # Provisioned by the test before any load: see _provision.
        "CRM_HEALTH_PROVISION_ON_START": "false",
    }
    sandbox_command = _crm_health(
        "sandbox", "--host", "127.0.0.1", "--port", str(sandbox_port), "--access-token", TOKEN
    )
    servers = Servers(env=env, port=_free_port(), logs=tmp_path)
    sandbox = _spawn(sandbox_command, env, tmp_path / "sandbox.log")
    servers.processes.append(sandbox)
    try:
        yield servers
    finally:
        for process in reversed(servers.processes):
            _stop(process)


async def test_kill9_mid_load_loses_no_acknowledged_event_and_processes_each_once(
    servers: Servers, database_url: str
) -> None:
    started = time.monotonic()
    sandbox = servers.env["CRM_HEALTH_HUBSPOT_API_BASE"]
    # serve starts (and migrates) while the sandbox gets its companies and health fields.
    first = servers.serve("serve-1.log")
    companies = await _create_companies(sandbox)
    await _provision(database_url, sandbox)
    await _wait_ready(servers.base_url, first, servers.logs / "serve-1.log")
    ready_at = time.monotonic()

    rng = random.Random(f"kill9-{database_url.partition(':')[0]}")
    plans = [_batches(companies, sender, rng) for sender in range(SENDERS)]
    total_batches = SENDERS * BATCHES_PER_SENDER
    load = Load()
    deadline = time.monotonic() + RUN_SECONDS
    senders = [
        asyncio.create_task(_sender(servers.base_url, plan, load, deadline)) for plan in plans
    ]
    async with _reader(database_url) as db:
        try:
            # The kill: enough acknowledged, requests in flight, the worker holding a batch.
            while True:
                assert time.monotonic() < deadline, "no moment with a batch claimed"
                for task in senders:
                    if task.done():
                        task.result()  # a sender's own failure, if that is why it ended
                        pytest.fail("the load ended before the kill")
                if load.acknowledged_batches >= total_batches * KILL_AFTER_SHARE:
                    claimed = await _scalar(db, _count_status(inbox.PROCESSING))
                    if claimed and load.in_flight:
                        in_flight_at_kill = load.in_flight
                        status = _kill9(first)
                        break
                await asyncio.sleep(0.005)
            killed_at = time.monotonic()
            assert status == -signal.SIGKILL
            acknowledged_at_kill = load.acknowledged_batches
            stranded = {
                row[0]
                for row in await _rows(
                    db, select(InboxEvent.id).where(InboxEvent.status == inbox.PROCESSING)
                )
            }
            assert stranded, "the killed process held no claimed batch"

            second = servers.serve("serve-2.log")
            await _wait_ready(servers.base_url, second, servers.logs / "serve-2.log")
            await asyncio.wait_for(asyncio.gather(*senders), timeout=deadline - time.monotonic())
            assert load.acknowledged_batches == total_batches
            sent_at = time.monotonic()

            # Drained: nothing waiting or claimed in the inbox, nothing owed to the CRM.
            while True:
                assert second.poll() is None, _tail(servers.logs / "serve-2.log")
                assert time.monotonic() < deadline, "the inbox and outbox were not drained"
                unsettled = await _scalar(db, _count_status(inbox.PENDING, inbox.PROCESSING))
                owed = await _scalar(
                    db,
                    select(func.count())
                    .select_from(WritebackItem)
                    .where(WritebackItem.status.in_([writeback.PENDING, writeback.SENDING])),
                )
                if not unsettled and not owed:
                    break
                await asyncio.sleep(0.1)
            drained_at = time.monotonic()
            await _assert_processed_once(db, load, stranded)
            await _assert_health_written(db, sandbox, _expected(load.acknowledged).companies)
        finally:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)

    assert "worker_started" in _log_events(servers.logs / "serve-2.log")
    print(
        f"\nkill9 {database_url.partition(':')[0]}: {total_batches} batches "
        f"({sum(len(b.events) for b in load.acknowledged)} events) acknowledged, "
        f"{acknowledged_at_kill} before the kill with {in_flight_at_kill} requests in flight "
        f"and {len(stranded)} events claimed; {load.refused} refused tries, "
        f"{load.duplicates} retried batches found already stored; seconds: ready "
        f"{ready_at - started:.1f}, killed {killed_at - started:.1f}, all acknowledged "
        f"{sent_at - started:.1f}, drained {drained_at - started:.1f}"
    )


async def _assert_processed_once(db: AsyncEngine, load: Load, stranded: set[int]) -> None:
    expected = _expected(load.acknowledged)
    possible = _expected(load.sent)
    rows = await _rows(
        db, select(InboxEvent.id, InboxEvent.source, InboxEvent.dedup_key, InboxEvent.status)
    )
    by_key: Counter[tuple[str, str]] = Counter((row[1], row[2]) for row in rows)
    # Every acknowledged event is stored, once (a second copy would be counted here).
    missing = expected.inbox_keys - set(by_key)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert max(by_key.values()) == 1
    assert set(by_key) <= possible.inbox_keys
    statuses = Counter(row[3] for row in rows)
    assert statuses == {inbox.DONE: len(rows)}, statuses
    done_ids = {row[0] for row in rows}
    assert stranded <= done_ids, "events claimed by the killed process were not finished"

    usage = set(usage_days(await _rows(db, USAGE_ROWS)))
    assert usage == expected.usage, (
        f"usage days: {len(usage - expected.usage)} unexpected, "
        f"{len(expected.usage - usage)} missing"
    )
    collaboration = Counter(
        {
            row[0]: row[1]
            for row in await _rows(
                db,
                select(Account.crm_id, func.count())
                .select_from(CollaborationFact)
                .join(Account, Account.id == CollaborationFact.account_id)
                .group_by(Account.crm_id),
            )
        }
    )
    # One fact row per acknowledged collaboration event: none lost, none folded twice.
    assert collaboration == expected.collaboration
    accounts = {row[0] for row in await _rows(db, select(Account.crm_id))}
    assert accounts == expected.companies


async def _assert_health_written(db: AsyncEngine, sandbox: str, companies: set[str]) -> None:
    owed = {
        row[0]: row
        for row in await _rows(
            db,
            select(
                Account.crm_id,
                Account.score,
                Account.band,
                WritebackItem.status,
                WritebackItem.fields,
            ).join(WritebackItem, WritebackItem.account_id == Account.id),
        )
    }
    crm = await _sandbox_companies(sandbox)
    for company in sorted(companies):
        _, score, band, status, fields = owed[company]
        assert status == writeback.DONE, (company, status)
        properties = crm[company]
        assert properties["health_updated_at"] == fields["health_updated_at"], company
        assert properties["health_band"] == band, company
        assert (properties["health_score"] or None) == (None if score is None else str(score)), (
            company
        )
