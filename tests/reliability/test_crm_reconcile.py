"""Reconcile against the sandbox CRM on a virtual clock: health written for 300 accounts, then
10 values changed by hand in the CRM and one company deleted there. A reconcile finds exactly
those, re-queues the 10 and reports the deleted one; the worker then puts the database's values
back. The unchanged accounts cost only the batch reads (one per 100 companies), never a write.
The worker's scheduled reconcile does the same once it is due, one step at a time, and of two
workers only one reads the CRM."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from sqlalchemy import select

from testkit import native, store_native
from virtual_crm import BATCH_UPDATE, World, make_world, rows
from webhooks.reconcile import CHECK_SECONDS, RETRY_SECONDS, reconcile, same_value
from webhooks.store import reconciles
from webhooks.store.models import Account, WritebackItem

# Delivery, not evidence: these accounts are scored on the few events they get.
pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence")

COMPANIES = 300
BATCH_READ = "/crm/v3/objects/companies/batch/read"
HOUR = 3600.0
DAY = 24 * HOUR


@pytest.fixture
async def world(service):
    built = await make_world(service, companies=COMPANIES, reconcile_interval_hours=24)
    yield built
    await built.connector.aclose()


async def write_health(service: Any, world: World) -> None:
    """Every company used 1 to 60 days ago: varied scores, bands and drivers, all written."""
    await store_native(
        service.runtime,
        [
            native("usage", company, user="u1", days_ago=1 + index % 60)
            for index, company in enumerate(world.companies)
        ],
    )
    await world.run(3, every=1)
    items = await rows(service, WritebackItem)
    assert len(items) == COMPANIES
    assert {item.status for item in items} == {"done"}


def edit_by_hand(world: World) -> tuple[list[str], str]:
    """Ten companies' health changed in the CRM, two more rewritten in another form of the
    same value, one company deleted: (the changed ones, the deleted one)."""
    companies = world.crm.companies
    changed = world.companies[10:20]
    other_band = "healthy" if companies[changed[1]]["health_band"] != "healthy" else "at_risk"
    edits: list[dict[str, str | None]] = [
        {"health_score": "3"},
        {"health_band": other_band},
        {"health_drivers": "Edited by a sales rep"},
        {"health_active_use": None},
        {"health_momentum": "1"},
        {"health_score": None, "health_band": None},
        {"health_trend_30d": "-99"},
        {"health_collaboration": "0.5"},
        {"health_mutual_value": "77"},
        {"health_drivers": ""},
    ]  # fmt: skip
    for company, values in zip(changed, edits, strict=True):
        world.crm.update_company(company, values, source="CRM_UI")
    # Equal values in another form are no difference: a number with a fraction of zero, the
    # drivers with CRLF line ends.
    same = world.companies[30]
    score = companies[same]["health_score"]
    world.crm.update_company(same, {"health_score": f"{score}.0"}, source="CRM_UI")
    other = world.companies[31]
    drivers = companies[other]["health_drivers"]
    assert isinstance(drivers, str)
    assert "\n" in drivers
    world.crm.update_company(other, {"health_drivers": drivers.replace("\n", "\r\n")})
    deleted = world.companies[200]
    del companies[deleted]
    return changed, deleted


async def owed(service: Any) -> dict[str, dict[str, Any]]:
    async with service.runtime.sessions() as session:
        found = await session.execute(
            select(Account.crm_id, WritebackItem.fields).join(
                WritebackItem, WritebackItem.account_id == Account.id
            )
        )
        return {str(crm_id): dict(fields) for crm_id, fields in found}


async def assert_crm_holds_the_database_values(service: Any, world: World, deleted: str) -> None:
    expected = await owed(service)
    for company in world.companies:
        if company == deleted:
            continue
        record = world.crm.companies[company]
        want = world.connector.stored_health(expected[company])
        differing = [
            name
            for name in want
            if name != "health_updated_at" and not same_value(want[name], record.get(name))
        ]
        assert differing == [], f"company {company}"


def calls(world: World, path: str) -> list[Any]:
    return [call for call in world.wire.calls if call.path == path]


async def test_reconcile_resends_ten_edited_values_reports_the_deleted_and_reads_only(
    service, world
) -> None:
    await write_health(service, world)
    changed, deleted = edit_by_hand(world)
    world.wire.calls.clear()

    [summary] = await reconcile(
        sessions=service.runtime.sessions,
        connections=world.pipeline._connections,
        clock=world.time.wall,
    )

    assert (summary.checked, summary.resent, summary.missing, summary.matching) == (
        COMPANIES,
        10,
        1,
        COMPANIES - 11,
    )
    assert summary.error is None
    # The unchanged accounts cost only the batch reads: one per 100, and no write at all.
    assert [call.path for call in world.wire.calls] == [BATCH_READ] * math.ceil(COMPANIES / 100)
    pending = {
        item.record_id for item in await rows(service, WritebackItem) if item.status == "pending"
    }
    assert pending == set(changed)

    await world.run(3, every=1)

    [write] = calls(world, BATCH_UPDATE)
    assert write.records == set(changed), "only the edited ones are written again"
    assert {item.status for item in await rows(service, WritebackItem)} == {"done"}
    await assert_crm_holds_the_database_values(service, world, deleted)


async def test_a_second_reconcile_finds_nothing_to_resend(service, world) -> None:
    await write_health(service, world)
    _, deleted = edit_by_hand(world)
    await reconcile(
        sessions=service.runtime.sessions,
        connections=world.pipeline._connections,
        clock=world.time.wall,
    )
    await world.run(3, every=1)
    world.wire.calls.clear()

    [summary] = await reconcile(
        sessions=service.runtime.sessions,
        connections=world.pipeline._connections,
        clock=world.time.wall,
    )

    assert (summary.resent, summary.missing, summary.matching) == (0, 1, COMPANIES - 1)
    assert {call.path for call in world.wire.calls} == {BATCH_READ}
    await assert_crm_holds_the_database_values(service, world, deleted)


async def test_the_worker_reconciles_once_due_and_restores_the_crm(service, world) -> None:
    await write_health(service, world)
    changed, deleted = edit_by_hand(world)
    world.wire.calls.clear()

    # Not due within the interval: not a single read.
    await world.run_until(DAY - HOUR, every=HOUR / 4)
    assert world.wire.calls == []

    world.time.advance(HOUR + CHECK_SECONDS)
    await world.run(10, every=1)

    reads = calls(world, BATCH_READ)
    assert len(reads) == math.ceil(COMPANIES / 100)
    assert len({call.pass_number for call in reads}) == len(reads), "one batch per pass"
    # Each batch's differences go out in the pass that found them.
    written = [record for call in calls(world, BATCH_UPDATE) for record in call.records]
    assert sorted(written) == sorted(changed)
    await assert_crm_holds_the_database_values(service, world, deleted)
    async with service.runtime.sessions() as session:
        schedule = await reconciles.get_schedule(session, name=reconciles.SCHEDULED)
    assert schedule is not None
    assert schedule.started_at is None, "the run is finished"
    assert schedule.last_counts == {
        "default": {
            "checked": COMPANIES,
            "matching": COMPANIES - 11,
            "resent": 10,
            "sending": 0,
            "missing": 1,
        }
    }

    # The next one is a day later again.
    world.wire.calls.clear()
    await world.run_until(2 * DAY - HOUR, every=HOUR / 4)
    assert world.wire.calls == []


async def test_of_two_workers_only_one_reconciles(service, world) -> None:
    await write_health(service, world)
    edit_by_hand(world)
    world.wire.calls.clear()
    other = world.worker()
    world.time.advance(DAY + 1)

    for _ in range(10):
        world.wire.pass_number += 1
        await asyncio.gather(world.pipeline.run_once(), other.run_once())
        world.time.advance(1)

    reads = calls(world, BATCH_READ)
    read_ids = [item["id"] for call in reads for item in call.body["inputs"]]
    assert len(read_ids) == len(set(read_ids)) == COMPANIES, "every company read exactly once"
    written = [record for call in calls(world, BATCH_UPDATE) for record in call.records]
    assert len(written) == len(set(written)) == 10


async def test_no_reconcile_when_the_interval_is_zero(service) -> None:
    world = await make_world(service, companies=3, reconcile_interval_hours=0)
    try:
        await store_native(
            service.runtime, [native("usage", company, user="u1") for company in world.companies]
        )
        await world.run(3, every=1)
        world.wire.calls.clear()
        await world.run_until(3 * DAY, every=HOUR)
        assert world.wire.calls == []
    finally:
        await world.connector.aclose()


async def test_a_scheduled_run_waits_out_a_crm_outage_and_resumes_where_it_stopped(
    service, world
) -> None:
    await write_health(service, world)
    changed, deleted = edit_by_hand(world)
    world.wire.calls.clear()
    world.time.advance(DAY + 1)
    await world.run(1, every=1)  # the first batch is read and its differences queued
    [first] = calls(world, BATCH_READ)
    world.crm.faults.fail_always(503)
    world.wire.calls.clear()

    await world.run_until(DAY + RETRY_SECONDS - 10, every=5)

    failing = calls(world, BATCH_READ)
    assert failing, "the second batch was tried"
    assert {call.pass_number for call in failing} == {failing[0].pass_number}, "then it waited"
    async with service.runtime.sessions() as session:
        schedule = await reconciles.get_schedule(session, name=reconciles.SCHEDULED)
    assert schedule is not None
    assert schedule.started_at is not None
    assert schedule.last_error is not None
    assert "503" in schedule.last_error

    world.crm.faults.clear()
    world.wire.calls.clear()
    await world.run_until(DAY + RETRY_SECONDS + 60, every=5)

    read_ids = [item["id"] for call in calls(world, BATCH_READ) for item in call.body["inputs"]]
    assert len(read_ids) == 200, "resumed at the second batch"
    assert set(read_ids) | first.records == set(world.companies)
    await assert_crm_holds_the_database_values(service, world, deleted)
    async with service.runtime.sessions() as session:
        schedule = await reconciles.get_schedule(session, name=reconciles.SCHEDULED)
    assert schedule is not None
    assert schedule.started_at is None
    assert schedule.last_counts is not None
    assert schedule.last_counts["default"]["resent"] == len(changed)
