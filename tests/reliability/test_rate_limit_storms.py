"""Rate-limit storms on HubSpot: the sandbox enforcing its 10-second window, forced 429s with
Retry-After, and a used-up DAILY allowance. The write-back slows down, respects Retry-After,
loses nothing and finishes; a daily pause stops every call until the reset, defers write-backs
and hydration reads without counting an attempt, and resumes after it.

The worker, the shared client and the sandbox (its rate limiter included) share one virtual
clock, so a pause until midnight costs no real time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connector.http import RateLimit, RetryingClient, RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.ratelimit import HubSpotLimits, seconds_to_next_midnight
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.limits import rate_limit_body
from connector.sandbox.state import SandboxState
from testkit import (
    HUBSPOT_API,
    HUBSPOT_SECRET,
    HUBSPOT_TOKEN,
    daily_user,
    hubspot_event,
    post_hubspot,
    store_native,
)
from webhooks.connections import Connection, ConnectionRegistry
from webhooks.pipeline import Pipeline, WorkerOptions
from webhooks.store.models import Account, ContactFact, InboxEvent, WritebackItem

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
    """The sandbox behind a transport that notes when each request left and its answer came."""

    def __init__(self, app: Any, clock: Callable[[], float]) -> None:
        self.app = app
        self._inner = httpx.ASGITransport(app=app)
        self._clock = clock
        self.calls: list[Call] = []
        self.pass_number = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
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


@pytest.fixture
async def world(service):
    built = await make_world(service, companies=6)
    yield built
    await built.connector.aclose()


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


def add_contacts(world: World, count: int) -> list[str]:
    """`count` contacts, spread over the companies (each contact at one company)."""
    return [
        world.crm.add_object(
            "contacts",
            {"email": f"c{i}@acme.test", "jobtitle": "VP Operations"},
            {"companies": [world.companies[i % len(world.companies)]]},
        )
        for i in range(count)
    ]


def away_from_midnight(world: World) -> None:
    """Daily counters reset at midnight: start a daily test well clear of one."""
    if seconds_to_next_midnight(world.time.wall(), UTC) < 600:
        world.time.advance(seconds_to_next_midnight(world.time.wall(), UTC) + 1)


def daily_limit_body() -> dict[str, Any]:
    return rate_limit_body("DAILY")


# --- the 10-second window --------------------------------------------------------------------


async def test_ten_second_window_storm_slows_the_write_back_and_loses_nothing(
    service, world
) -> None:
    world.connector.max_batch_size = 2
    world.crm.limits.configure(window_max=5, interval_ms=10_000, enforce=True)
    contacts = add_contacts(world, 4)
    await store_native(service.runtime, [e for c in world.companies for e in daily_user(c)])
    batch = [contact_creation(i, contact) for i, contact in enumerate(contacts)]
    assert (await post_hubspot(service.client, batch)).status_code == 202
    # Another process on the same token (a backfill, say) has just used the whole window.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.wire.app),
        base_url=HUBSPOT_API,
        headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
    ) as neighbour:
        for _ in range(5):
            assert (await neighbour.get("/crm/v3/objects/companies")).status_code == 200

    await world.run(40, every=1)

    calls = world.wire.calls
    refused = [call for call in calls if call.status == 429]
    assert refused, "the window was full"
    assert len(refused) <= 2
    for call in refused:
        following = calls[calls.index(call) + 1]
        assert following.sent - call.answered >= 10 - EPSILON, "held for the whole window"
    accepted = [call.sent for call in calls if call.status < 400]
    for at in accepted:
        assert len([other for other in accepted if at - 10 < other <= at]) <= 5
    assert {(e.status, e.attempts) for e in await rows(service, InboxEvent)} == {("done", 0)}
    assert {(i.status, i.attempts) for i in await rows(service, WritebackItem)} == {("done", 0)}
    assert {c.contact for c in await rows(service, ContactFact)} == set(contacts)
    await assert_health_landed(world)


async def test_long_write_back_under_a_full_window_takes_longer_but_finishes(
    service_factory,
) -> None:
    service = await service_factory()
    world = await make_world(service, companies=30)
    world.connector.max_batch_size = 2
    world.crm.limits.configure(window_max=5, interval_ms=10_000, enforce=True)
    await store_native(service.runtime, [e for c in world.companies for e in daily_user(c)])
    try:
        await world.run(60, every=1)
    finally:
        await world.connector.aclose()

    writes = [call for call in world.writes() if call.status == 200]
    assert len(writes) == 15
    # Five calls a window: fifteen need the third window at least.
    assert writes[-1].sent - writes[0].sent >= 20
    assert len([call for call in world.wire.calls if call.status == 429]) <= 2
    assert {(i.status, i.attempts) for i in await rows(service, WritebackItem)} == {("done", 0)}
    await assert_health_landed(world)


# --- forced 429s with Retry-After ------------------------------------------------------------


async def test_429_storm_with_retry_after_is_waited_out_and_every_write_lands(
    service, world
) -> None:
    world.connector.max_batch_size = 2
    world.crm.faults.fail_next(8, 429, retry_after=3, path_contains=BATCH_UPDATE)
    await store_native(service.runtime, [e for c in world.companies for e in daily_user(c)])

    await world.run(20, every=1)

    storm = [call for call in world.writes() if call.status == 429]
    assert len(storm) == 8
    assert sent_too_early(world.wire.calls, retries_only=True) == [], "the client's retries"
    assert resent_too_early(world.writes(), versions) == [], "the outbox's next passes"
    items = await rows(service, WritebackItem)
    assert {(i.status, i.written_version) for i in items} == {("done", 1)}
    assert max(i.attempts for i in items) < service.runtime.settings.worker_max_attempts, (
        "the storm dead-letters nothing"
    )
    await assert_health_landed(world)


async def test_a_429_retry_after_holds_the_next_request_of_the_connection(service, world) -> None:
    world.connector.max_batch_size = 2
    world.crm.faults.fail_next(3, 429, retry_after=3, path_contains=BATCH_UPDATE)
    await store_native(service.runtime, [e for c in world.companies for e in daily_user(c)])
    await world.run_pass()
    # The first chunk's three tries; the next chunks wait out the Retry-After, unsent.
    assert [call.status for call in world.writes()] == [429, 429, 429]
    world.time.advance(3)
    await world.run_pass()
    assert [call.status for call in world.writes()] == [429, 429, 429, 200, 200, 200]
    assert sent_too_early(world.wire.calls) == []


# --- hydration reads in a 429 storm ----------------------------------------------------------


async def test_hydration_reads_during_a_429_storm_are_deferred_not_dead_lettered(
    service, world
) -> None:
    contacts = add_contacts(world, 3)
    world.crm.faults.fail_next(7, 429, retry_after=3, path_contains=BATCH_READ)
    batch = [contact_creation(i, contact) for i, contact in enumerate(contacts)]
    assert (await post_hubspot(service.client, batch)).status_code == 202

    await world.run(2, every=1)
    events = await rows(service, InboxEvent)
    assert {e.status for e in events} == {"pending"}, "waiting, not dead"
    assert {e.attempts for e in events} == {1}
    assert all("429" in (e.last_error or "") for e in events)

    await world.run(30, every=1)
    events = await rows(service, InboxEvent)
    assert {e.status for e in events} == {"done"}
    assert max(e.attempts for e in events) < world.options.max_attempts
    assert sent_too_early(world.wire.calls, retries_only=True) == [], "the client's retries"
    assert {c.contact for c in await rows(service, ContactFact)} == set(contacts)
    assert {i.status for i in await rows(service, WritebackItem)} == {"done"}


async def test_hydration_reads_are_not_sent_again_before_a_429_retry_after(service, world) -> None:
    contacts = add_contacts(world, 2)
    world.crm.faults.fail_next(6, 429, retry_after=3, path_contains=BATCH_READ)
    batch = [contact_creation(i, contact) for i, contact in enumerate(contacts)]
    assert (await post_hubspot(service.client, batch)).status_code == 202
    await world.run(20, every=1)
    assert {e.status for e in await rows(service, InboxEvent)} == {"done"}
    assert resent_too_early(world.wire.calls, read_ids) == []


# --- the DAILY allowance -----------------------------------------------------------------------


async def test_used_up_daily_allowance_pauses_everything_until_the_reset_then_resumes(
    service, world
) -> None:
    away_from_midnight(world)
    world.connector.max_batch_size = 2
    world.crm.limits.configure(daily=2, enforce=True)
    await store_native(service.runtime, [e for c in world.companies[:5] for e in daily_user(c)])
    await world.run_pass()

    # The second call used the day up (Daily-Remaining: 0): the rest waits for midnight, unsent.
    assert [call.status for call in world.wire.calls] == [200, 200]
    reset = world.time.wall().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    items = {i.record_id: i for i in await rows(service, WritebackItem)}
    waiting = {r: i for r, i in items.items() if i.status != "done"}
    assert len(waiting) == 1
    assert {(i.status, i.attempts) for i in waiting.values()} == {("pending", 0)}
    for item in waiting.values():
        assert abs((item.available_at - reset).total_seconds()) < 0.001
        assert "DAILY" in (item.last_error or "")

    # During the pause: a new account, a change to a written one, and a webhook that needs a
    # CRM read. All wait, no call goes out, no attempt is counted.
    [contact] = add_contacts(world, 1)
    await store_native(
        service.runtime, daily_user(world.companies[5]) + daily_user(world.companies[0], user="u2")
    )
    assert (await post_hubspot(service.client, [contact_creation(1, contact)])).status_code == 202
    # A pass an hour through the night, the last one a second before midnight.
    while (left := (reset - world.time.wall()).total_seconds()) > 1:
        await world.run_pass()
        world.time.advance(min(3600, left - 1))
    await world.run_pass()
    assert len(world.wire.calls) == 2, "nothing sent while paused"
    [event] = [e for e in await rows(service, InboxEvent) if e.kind == "contact.creation"]
    assert (event.status, event.attempts) == ("pending", 0)
    assert abs((event.available_at - reset).total_seconds()) < 0.001
    items_now = await rows(service, WritebackItem)
    assert {i.status for i in items_now} <= {"pending", "done"}
    assert all(i.attempts == 0 for i in items_now)

    # A new day; a bigger allowance too, so the day's own use cannot pause it again.
    world.crm.limits.configure(daily=50)
    world.time.advance(1)
    assert abs((world.time.wall() - reset).total_seconds()) < 0.001
    await world.run(3, every=1)

    assert world.wire.calls[2].sent >= (reset - world.time.start).total_seconds()
    assert all(call.status == 200 for call in world.wire.calls)
    assert {(e.status, e.attempts) for e in await rows(service, InboxEvent)} == {("done", 0)}
    items_after = await rows(service, WritebackItem)
    assert {(i.status, i.attempts) for i in items_after} == {("done", 0)}
    assert {i.record_id for i in items_after} == set(world.companies)
    assert contact in {c.contact for c in await rows(service, ContactFact)}
    await assert_health_landed(world)


async def test_daily_429_on_a_hydration_read_pauses_the_connection_for_its_retry_after(
    service, world
) -> None:
    [contact] = add_contacts(world, 1)
    world.crm.faults.fail_next(
        1, 429, retry_after=120, path_contains=BATCH_READ, body=daily_limit_body()
    )
    await store_native(service.runtime, daily_user(world.companies[1]))
    assert (await post_hubspot(service.client, [contact_creation(1, contact)])).status_code == 202

    await world.run_pass()
    [refused] = world.wire.calls
    assert refused.status == 429
    [event] = [e for e in await rows(service, InboxEvent) if e.kind == "contact.creation"]
    assert (event.status, event.attempts) == ("pending", 0), "a pause is not an attempt"
    assert "DAILY" in (event.last_error or "")
    [item] = await rows(service, WritebackItem)
    assert (item.status, item.attempts) == ("pending", 0), "the write-back waits as well"

    for offset in (7, 30, 60, 90, 119.9):
        world.time.seconds = refused.answered + offset
        await world.run_pass()
    assert len(world.wire.calls) == 1, "no call at all until the Retry-After"

    world.time.seconds = refused.answered + 120
    await world.run(3, every=1)
    assert world.wire.calls[1].sent >= refused.answered + 120 - EPSILON
    assert all(call.status == 200 for call in world.wire.calls[1:])
    assert {(e.status, e.attempts) for e in await rows(service, InboxEvent)} == {("done", 0)}
    items = await rows(service, WritebackItem)
    assert {(i.status, i.attempts) for i in items} == {("done", 0)}
    assert {c.contact for c in await rows(service, ContactFact)} == {contact}


async def test_daily_429_defers_every_write_back_to_the_reset_without_an_attempt(
    service, world
) -> None:
    away_from_midnight(world)
    world.crm.limits.configure(daily=2, enforce=True)
    # Another process on the same token used the day's allowance: our first call gets HubSpot's
    # DAILY 429 (no Retry-After; the pause runs to the next midnight).
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.wire.app),
        base_url=HUBSPOT_API,
        headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
    ) as neighbour:
        for _ in range(2):
            assert (await neighbour.get("/crm/v3/objects/companies")).status_code == 200
    await store_native(service.runtime, [e for c in world.companies for e in daily_user(c)])
    await world.run_pass()

    [refused] = world.wire.calls
    assert refused.status == 429
    reset = world.time.wall().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    items = await rows(service, WritebackItem)
    assert {(i.status, i.attempts) for i in items} == {("pending", 0)}
    assert all(abs((i.available_at - reset).total_seconds()) < 0.001 for i in items)
    world.time.advance((reset - world.time.wall()).total_seconds() - 1)
    await world.run_pass()
    assert len(world.wire.calls) == 1, "nothing sent while paused"

    world.time.advance(1)
    await world.run(2, every=1)
    assert [call.status for call in world.wire.calls[1:]] == [200]
    items = await rows(service, WritebackItem)
    assert {(i.status, i.attempts) for i in items} == {("done", 0)}
    await assert_health_landed(world)
