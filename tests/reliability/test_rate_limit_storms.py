"""Rate-limit storms on HubSpot: the sandbox enforcing its 10-second window, forced 429s with
Retry-After, and a used-up DAILY allowance. The write-back slows down, respects Retry-After,
loses nothing and finishes; a daily pause stops every call until the reset, defers write-backs
and hydration reads without counting an attempt, and resumes after it.

The worker, the shared client and the sandbox (its rate limiter included) share one virtual
clock, so a pause until midnight costs no real time.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest

from connector.hubspot.ratelimit import seconds_to_next_midnight
from connector.sandbox.limits import rate_limit_body
from testkit import (
    HUBSPOT_API,
    HUBSPOT_TOKEN,
    daily_user,
    post_hubspot,
    store_native,
)
from virtual_crm import (
    BATCH_READ,
    BATCH_UPDATE,
    EPSILON,
    World,
    assert_health_landed,
    contact_creation,
    make_world,
    read_ids,
    resent_too_early,
    rows,
    sent_too_early,
    versions,
)
from webhooks.store.models import ContactFact, InboxEvent, WritebackItem

# Delivery, not evidence: these accounts are scored on the few events they get.
pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence")


@pytest.fixture
async def world(service):
    built = await make_world(service, companies=6)
    yield built
    await built.connector.aclose()


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
    assert {e.attempts for e in events} == {0}, "a storm costs the events no attempt"
    assert all("429" in (e.last_error or "") for e in events)

    await world.run(30, every=1)
    events = await rows(service, InboxEvent)
    assert {e.status for e in events} == {"done"}
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
