"""The worker: events -> facts -> one rescore per account -> write-back only on change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import respx
from sqlalchemy import func, select

from testkit import HUBSPOT_API, daily_user, hubspot_event, native, post_hubspot, store_native
from webhooks.store import inbox
from webhooks.store.models import Account, HealthSnapshot, InboxEvent, WritebackItem
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

# Delivery, not evidence: these accounts are scored on the few events they get.
pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence")

BATCH_UPDATE = f"{HUBSPOT_API}/crm/v3/objects/companies/batch/update"


def _ok(request):
    ids = [item["id"] for item in json.loads(request.content)["inputs"]]
    return respx.MockResponse(200, json={"status": "COMPLETE", "results": [{"id": i} for i in ids]})


@pytest.fixture
def crm():
    """HubSpot's batch update endpoint, answering 200 for every record unless re-mocked."""
    with respx.mock(assert_all_called=False) as router:
        yield router.post(BATCH_UPDATE).mock(side_effect=_ok)


def _inputs(route) -> list[dict[str, Any]]:
    return [item for call in route.calls for item in json.loads(call.request.content)["inputs"]]


async def _one(service, model, **where):
    async with service.runtime.sessions() as session:
        query = select(model).filter_by(**where)
        return (await session.execute(query)).scalar_one()


async def test_worker_scores_touched_accounts_and_writes_health_fields(service, crm) -> None:
    await post_hubspot(
        service.client, [hubspot_event(1, object_id=7), hubspot_event(2, object_id=8)]
    )
    await store_native(service.runtime, daily_user("7"))
    await service.runtime.pipeline.run_once()
    inputs = {item["id"]: item["properties"] for item in _inputs(crm)}
    assert set(inputs) == {"7", "8"}
    assert inputs["7"]["health_score"] == "100"
    assert inputs["7"]["health_band"] == "healthy"
    assert inputs["7"]["health_active_use"] == "100"
    assert inputs["7"]["health_collaboration"] == ""
    assert inputs["7"]["health_drivers"] == "", "nothing costs points: no drivers"
    assert inputs["7"]["health_updated_at"].endswith("+00:00")
    assert inputs["8"]["health_band"] == "unknown", "a company without usage has no data"
    assert inputs["8"]["health_score"] == ""
    account = await _one(service, Account, crm_id="7")
    assert (account.name, account.score, account.band) == ("Company 7", 100, "healthy")


async def test_several_events_for_one_account_rescore_it_once(service, crm) -> None:
    await store_native(service.runtime, daily_user("7") + daily_user("7", user="u2"))
    await service.runtime.pipeline.run_once()
    async with service.runtime.sessions() as session:
        snapshots = await session.scalar(select(func.count()).select_from(HealthSnapshot))
    assert snapshots == 1
    assert len(_inputs(crm)) == 1


async def test_unchanged_health_is_not_written_again(service, crm) -> None:
    await store_native(service.runtime, daily_user("7"))
    await service.runtime.pipeline.run_once()
    await store_native(service.runtime, [native("usage", "7", user="u1")])
    await service.runtime.pipeline.run_once()
    assert crm.call_count == 1


async def test_changed_health_is_written_again(service, crm) -> None:
    # A week of use ending 20 days ago: stickiness healthy, recency at risk, and no trend (the
    # prior 30 days are before the account's first event).
    await store_native(service.runtime, daily_user("7", first_day_ago=20))
    await service.runtime.pipeline.run_once()
    await store_native(service.runtime, [native("usage", "7", user="u1")])
    await service.runtime.pipeline.run_once()
    scores = [item["properties"]["health_score"] for item in _inputs(crm)]
    assert scores == ["50", "100"]


async def test_crm_outage_keeps_the_write_and_delivers_it_after_recovery(service, crm) -> None:
    crm.mock(side_effect=None, return_value=respx.MockResponse(503))
    clock = [datetime.now(UTC) + timedelta(seconds=1)]
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(retry_base_seconds=30),
        clock=lambda: clock[0],
    )
    await post_hubspot(service.client, [hubspot_event(1, object_id=7)])
    await pipeline.run_once()
    item = await _one(service, WritebackItem, record_id="7")
    assert (item.status, item.attempts) == ("pending", 1)
    assert "503" in item.last_error

    crm.mock(side_effect=_ok)
    clock[0] += timedelta(seconds=29)
    await pipeline.deliver_writebacks()
    assert crm.call_count == 1, "no retry before the backoff allows"
    clock[0] += timedelta(seconds=2)
    await pipeline.deliver_writebacks()
    item = await _one(service, WritebackItem, record_id="7")
    assert (item.status, item.written_version) == ("done", 1)


async def test_record_rejected_in_a_multi_status_answer_is_retried_alone(service, crm) -> None:
    def partial(request):
        return respx.MockResponse(
            207,
            json={
                "results": [{"id": "7"}],
                "errors": [{"message": "not found", "context": {"ids": ["8"]}}],
            },
        )

    crm.mock(side_effect=partial)
    await post_hubspot(
        service.client, [hubspot_event(1, object_id=7), hubspot_event(2, object_id=8)]
    )
    await service.runtime.pipeline.run_once()
    done = await _one(service, WritebackItem, record_id="7")
    retried = await _one(service, WritebackItem, record_id="8")
    assert done.status == "done"
    assert (retried.status, retried.last_error) == ("pending", "not found")


async def test_undecodable_event_is_dead_lettered_without_blocking_its_neighbours(
    service, crm
) -> None:
    await post_hubspot(service.client, [hubspot_event(1, object_id=7)])
    async with service.runtime.sessions() as session, session.begin():
        await inbox.insert_events(
            session,
            source="hubspot",
            connection="default",
            events=[inbox.NewEvent(dedup_key="bad", kind="company.creation", payload={"x": 1})],
            received_at=datetime.now(UTC),
        )
    report = await service.runtime.pipeline.process_inbox()
    assert (report.processed, report.dead) == (1, 1)
    async with service.runtime.sessions() as session:
        assert await inbox.count_by_status(session) == {"done": 1, "dead": 1}
    bad = await _one(service, InboxEvent, dedup_key="bad")
    assert "eventId" in bad.last_error


async def test_older_attribute_value_arriving_late_does_not_overwrite(service, crm) -> None:
    now = datetime.now(UTC)
    newer = hubspot_event(1, object_id=7, propertyValue="New name")
    older = hubspot_event(
        2,
        object_id=7,
        propertyValue="Old name",
        occurredAt=int((now - timedelta(hours=1)).timestamp() * 1000),
    )
    await post_hubspot(service.client, [newer])
    await service.runtime.pipeline.run_once()
    await post_hubspot(service.client, [older])
    await service.runtime.pipeline.run_once()
    assert (await _one(service, Account, crm_id="7")).name == "New name"


async def test_deleted_company_is_not_scored_or_written(service, crm) -> None:
    await store_native(service.runtime, daily_user("7"))
    await post_hubspot(
        service.client, [hubspot_event(2, object_id=7, subscriptionType="company.deletion")]
    )
    await service.runtime.pipeline.run_once()
    assert crm.call_count == 0
    assert (await _one(service, Account, crm_id="7")).deleted_at is not None


async def test_our_own_health_write_echoed_back_does_not_rescore(service, crm) -> None:
    echo = hubspot_event(1, object_id=7, propertyName="health_score", propertyValue="100")
    await post_hubspot(service.client, [echo])
    report = await service.runtime.pipeline.process_inbox()
    assert (report.processed, report.rescored) == (1, 0)
