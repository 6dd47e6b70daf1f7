"""A HubSpot CRM on a virtual clock for the reliability tests: the sandbox behind a transport
that records when each request left and was answered, the shared client and the worker on the
same clock (a minute of outage or a pause until midnight costs no real time), and the checks
that no request went out before a Retry-After allowed."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from connector.http import RateLimit, RetryingClient, RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.ratelimit import HubSpotLimits
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from testkit import HUBSPOT_API, HUBSPOT_SECRET, HUBSPOT_TOKEN, hubspot_event
from webhooks.connections import Connection, ConnectionRegistry
from webhooks.store.models import Account
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

BATCH_UPDATE = "/crm/v3/objects/companies/batch/update"
BATCH_READ = "/batch/read"
# The worker's clock is a datetime (microseconds): virtual times compare within a microsecond.
EPSILON = 1e-6

# --- one virtual clock for the worker, the shared client and the sandbox ---------------------


class Timeline:
    """Virtual time: moves only when the code under test sleeps or the test moves it."""

    def __init__(self) -> None:
        # Not before the real clock: events the intake stamps with real time must be due.
        self.start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        self.seconds = 0.0

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float) -> None:
        self.seconds += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@dataclass
class Call:
    """One request as it left the client and as it was answered (seconds on the test's clock)."""

    method: str
    path: str
    sent: float
    answered: float
    status: int
    retry_after: str | None
    body: Any
    pass_number: int = 0

    @property
    def records(self) -> set[str]:
        """The company ids a batch update carried."""
        if not isinstance(self.body, dict):
            return set()
        return {str(item["id"]) for item in self.body.get("inputs", [])}

    def repeats(self, other: Call) -> bool:
        """The same request again within one worker pass: a retry of the shared client."""
        return (self.pass_number, self.method, self.path, self.body) == (
            other.pass_number,
            other.method,
            other.path,
            other.body,
        )

    def allowed_from(self) -> float | None:
        """When the answer's Retry-After (delta-seconds) allows the next request."""
        if self.retry_after is None:
            return None
        return self.answered + float(self.retry_after)


class Recorder(httpx.AsyncBaseTransport):
    """The sandbox behind a transport that notes when each request left and its answer came;
    `before_send` runs first (a test's way to act while a request is in flight)."""

    def __init__(self, app: Any, clock: Callable[[], float]) -> None:
        self.app = app
        self._inner = httpx.ASGITransport(app=app)
        self._clock = clock
        self.calls: list[Call] = []
        self.pass_number = 0
        self.before_send: Callable[[httpx.Request], Awaitable[None]] | None = None
        # The CRM stopped: every request fails to connect, as when its host is gone.
        self.down = False
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.before_send is not None:
            await self.before_send(request)
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused (the CRM is down)", request=request)
        sent = self._clock()
        response = await self._inner.handle_async_request(request)
        self.calls.append(
            Call(
                method=request.method,
                path=request.url.path,
                sent=sent,
                answered=self._clock(),
                status=response.status_code,
                retry_after=response.headers.get("Retry-After"),
                body=json.loads(request.content) if request.content else None,
                pass_number=self.pass_number,
            )
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def sent_too_early(calls: Sequence[Call], *, retries_only: bool = False) -> list[str]:
    """Requests sent before the Retry-After of the answer just before them had passed (with
    `retries_only`, only the client's own retries: the same request again in the same pass)."""
    early = []
    for before, after in itertools.pairwise(calls):
        if retries_only and not after.repeats(before):
            continue
        allowed = before.allowed_from()
        if allowed is not None and after.sent < allowed - EPSILON:
            early.append(
                f"{after.method} {after.path} sent at {after.sent:.3f}s; the {before.status} "
                f"answered at {before.answered:.3f}s said Retry-After {before.retry_after}"
            )
    return early


def resent_too_early(calls: Sequence[Call], key: Callable[[Call], set[str]]) -> list[str]:
    """Requests for a record (write) or an object (read) sent again before the Retry-After of
    that record's previous request had passed."""
    early = []
    last: dict[str, Call] = {}
    for call in calls:
        for item in key(call):
            before = last.get(item)
            allowed = before.allowed_from() if before is not None else None
            if allowed is not None and call.sent < allowed - EPSILON:
                early.append(f"{item}: sent again at {call.sent:.3f}s, allowed from {allowed:.3f}s")
            last[item] = call
    return early


def versions(call: Call) -> set[str]:
    """Each record of a batch update with the health it carried (its health_updated_at)."""
    if not isinstance(call.body, dict):
        return set()
    return {
        f"{item['id']}@{item['properties']['health_updated_at']}"
        for item in call.body.get("inputs", [])
    }


def read_ids(call: Call) -> set[str]:
    if not call.path.endswith(BATCH_READ) or not isinstance(call.body, dict):
        return set()
    return {f"{call.path}:{item['id']}" for item in call.body.get("inputs", [])}


@dataclass
class World:
    service: Any
    time: Timeline
    crm: SandboxState
    wire: Recorder
    connector: HubSpotConnector
    options: WorkerOptions
    pipeline: Pipeline
    companies: list[str] = field(default_factory=list)

    def worker(self) -> Pipeline:
        """Another worker on the same database, CRM connection and clock."""
        return Pipeline(
            sessions=self.service.runtime.sessions,
            connections=self.pipeline._connections,
            options=self.options,
            clock=self.time.wall,
        )

    async def run_pass(self) -> None:
        self.wire.pass_number += 1
        await self.pipeline.run_once()

    async def run(self, passes: int, *, every: float) -> None:
        for _ in range(passes):
            await self.run_pass()
            self.time.advance(every)

    async def run_until(self, seconds: float, *, every: float) -> None:
        while self.time.seconds < seconds:
            await self.run_pass()
            self.time.advance(every)

    def writes(self) -> list[Call]:
        return [call for call in self.wire.calls if call.path == BATCH_UPDATE]


async def make_world(service: Any, *, companies: int, **options: Any) -> World:
    """The sandbox behind a HubSpot connector built as `HubSpotConnector.create` builds it (same
    retry policy shape, rate limit and limits inspector), but on the virtual clock."""
    clock = Timeline()
    crm = SandboxState(clock=clock.wall, portal_id=62515)
    wire = Recorder(create_sandbox_app(crm, access_token=HUBSPOT_TOKEN), clock.monotonic)
    client = RetryingClient(
        base_url=HUBSPOT_API,
        name="hubspot:default",
        headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
        policy=RetryPolicy(max_attempts=3, max_elapsed_seconds=30),
        rate_limit=RateLimit(requests_per_second=10, burst=10),
        limits=HubSpotLimits(now=clock.wall),
        transport=wire,
        clock=clock.monotonic,
        sleep=clock.sleep,
    )
    connector = HubSpotConnector(client=client)
    await connector.ensure_fields()
    worker_options = WorkerOptions(
        **{"max_attempts": 8, "retry_base_seconds": 2.0, "retry_max_seconds": 60.0, **options}
    )
    registry = ConnectionRegistry(
        [
            Connection(
                name="default", crm="hubspot", webhook_secret=HUBSPOT_SECRET, connector=connector
            )
        ]
    )
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=registry,
        options=worker_options,
        clock=clock.wall,
    )
    world = World(service, clock, crm, wire, connector, worker_options, pipeline)
    world.companies = [crm.add_company({"name": f"Company {i}"}) for i in range(companies)]
    # Provisioning is not under test: only what follows is recorded and counted.
    wire.calls.clear()
    crm.requests.clear()
    crm.limits.reset_counters()
    return world


async def rows(service: Any, model: Any) -> list[Any]:
    async with service.runtime.sessions() as session:
        return list((await session.execute(select(model))).scalars().all())


def contact_creation(event_id: int, contact: str) -> dict[str, object]:
    return hubspot_event(
        event_id,
        object_id=int(contact),
        subscriptionType="contact.creation",
        propertyName=None,
        propertyValue=None,
    )


async def assert_health_landed(world: World) -> None:
    """Every account's current health is what its CRM record carries."""
    accounts = {a.crm_id: a for a in await rows(world.service, Account)}
    assert set(accounts) == set(world.companies)
    for company in world.companies:
        record = world.crm.companies[company]
        account = accounts[company]
        expected_score = "" if account.score is None else str(account.score)
        assert (record.get("health_score"), record.get("health_band")) == (
            expected_score,
            account.band,
        ), f"company {company}"


# --- the outage -----------------------------------------------------------------------------
