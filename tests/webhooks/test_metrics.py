"""GET /metrics: intake, worker, write-back and alert counters, and queue depth and lag read
from the database at scrape time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
import sync_rows
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from signals.config import HealthConfig
from testkit import (
    HUBSPOT_API,
    RECENCY_ONLY,
    hubspot_event,
    make_settings,
    native,
    post_hubspot,
    store_native,
)
from webhooks.alerts.notice import AlertNotice, ChannelError
from webhooks.app import create_app
from webhooks.metrics import Metrics
from webhooks.store import configs, inbox, keys
from webhooks.store.models import WritebackItem
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

BATCH_UPDATE = f"{HUBSPOT_API}/crm/v3/objects/companies/batch/update"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _ok(request):
    ids = [item["id"] for item in json.loads(request.content)["inputs"]]
    return respx.MockResponse(200, json={"status": "COMPLETE", "results": [{"id": i} for i in ids]})


@pytest.fixture
def crm():
    """HubSpot's batch update endpoint, answering 200 for every record unless re-mocked."""
    with respx.mock(assert_all_called=False) as router:
        yield router.post(BATCH_UPDATE).mock(side_effect=_ok)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_a_webhook_is_counted_from_intake_to_write_back(service, crm) -> None:
    await post_hubspot(
        service.client, [hubspot_event(1, object_id=7), hubspot_event(2, object_id=8)]
    )
    await post_hubspot(service.client, [hubspot_event(1, object_id=7)])

    before = await scrape(service.client)
    assert value(before, "crm_health_events_received_total", source="hubspot") == 2
    assert value(before, "crm_health_events_duplicates_total", source="hubspot") == 1
    assert value(before, "crm_health_inbox_events", status="pending") == 2
    assert value(before, "crm_health_inbox_events", status="dead") == 0
    lag = value(before, "crm_health_inbox_oldest_pending_age_seconds")
    assert lag is not None
    assert 0 <= lag < 60
    assert value(before, "crm_health_database_up") == 1

    await service.runtime.pipeline.run_once()

    after = await scrape(service.client)
    processed = "crm_health_events_processed_total"
    assert value(after, processed, source="hubspot", outcome="done") == 2
    assert value(after, "crm_health_inbox_events", status="pending") == 0
    assert value(after, "crm_health_inbox_oldest_pending_age_seconds") == 0
    assert value(after, "crm_health_scoring_seconds_count") == 1
    assert value(after, "crm_health_accounts_rescored_total") == 2
    requests, records = "crm_health_writeback_requests_total", "crm_health_writeback_records_total"
    assert value(after, requests, crm="hubspot", status="written") == 1
    assert value(after, records, crm="hubspot", outcome="written") == 2
    assert value(after, "crm_health_writeback_outbox", status="done") == 2
    assert value(after, "crm_health_writeback_outbox", status="failed") == 0
    assert value(after, "crm_health_build_info", version="0.1.0") == 1


async def test_a_failing_write_back_is_counted_as_failed(service, crm) -> None:
    crm.mock(side_effect=None, return_value=respx.MockResponse(503))
    await post_hubspot(service.client, [hubspot_event(1, object_id=7)])
    await service.runtime.pipeline.run_once()
    samples = await scrape(service.client)
    requests, records = "crm_health_writeback_requests_total", "crm_health_writeback_records_total"
    assert value(samples, requests, crm="hubspot", status="failed") == 1
    assert value(samples, requests, crm="hubspot", status="written") is None
    assert value(samples, records, crm="hubspot", outcome="failed") == 1
    assert value(samples, "crm_health_writeback_outbox", status="pending") == 1


async def test_a_partly_written_batch_counts_each_record(service, crm) -> None:
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
    samples = await scrape(service.client)
    requests, records = "crm_health_writeback_requests_total", "crm_health_writeback_records_total"
    assert value(samples, records, crm="hubspot", outcome="written") == 1
    assert value(samples, records, crm="hubspot", outcome="failed") == 1, "retried alone"
    assert value(samples, requests, crm="hubspot", status="failed") == 1


async def test_an_undecodable_event_is_counted_dead(service, crm) -> None:
    async with service.runtime.sessions() as session, session.begin():
        await inbox.insert_events(
            session,
            source="hubspot",
            connection="default",
            events=[inbox.NewEvent(dedup_key="bad", kind="company.creation", payload={"x": 1})],
            received_at=datetime.now(UTC),
        )
    await service.runtime.pipeline.run_once()
    samples = await scrape(service.client)
    assert (
        value(samples, "crm_health_events_processed_total", source="hubspot", outcome="dead") == 1
    )
    assert value(samples, "crm_health_inbox_events", status="dead") == 1


async def test_native_events_are_counted_by_source(service) -> None:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name="ingest", role="ingest", connection="default", now=datetime.now(UTC)
        )
    headers = {"Authorization": f"Bearer {key}"}
    first = native("usage", "7", user="u1", id="e1")
    for events in ([first, native("usage", "7", user="u2")], [first]):
        response = await service.client.post(
            "/ingest/events", json={"events": events}, headers=headers
        )
        assert response.status_code == 202
    samples = await scrape(service.client)
    assert value(samples, "crm_health_events_received_total", source="native") == 2
    assert value(samples, "crm_health_events_duplicates_total", source="native") == 1


async def test_two_services_in_one_process_count_apart(service_factory) -> None:
    first = await service_factory()
    second = await service_factory()
    await post_hubspot(first.client, [hubspot_event(1)])
    assert value(await scrape(first.client), "crm_health_events_received_total", source="hubspot")
    assert (
        value(await scrape(second.client), "crm_health_events_received_total", source="hubspot")
        is None
    )


async def test_the_scrape_answers_when_the_database_is_down() -> None:
    app = create_app(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            samples = await scrape(client)
    assert value(samples, "crm_health_database_up") == 0
    assert not [name for name, _ in samples if name == "crm_health_inbox_events"]
    assert not [name for name, _ in samples if name == "crm_health_writeback_outbox"]
    assert value(samples, "crm_health_build_info", version="0.1.0") == 1


@dataclass
class FakeChannel:
    name: str
    kind: str
    failure: Exception | None = None
    digest: str = "none"
    daily_limit: int | None = None
    sent: list[AlertNotice] = field(default_factory=list)

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.extend(notices)

    async def aclose(self) -> None:
        return None


async def test_alert_deliveries_are_counted_by_channel_type_and_outcome(service) -> None:
    rule = {
        "name": "entered-at-risk",
        "when": "band_entered",
        "channels": ["ops", "flaky", "broken"],
    }
    config = HealthConfig.model_validate({**RECENCY_ONLY, "alerts": [rule]})
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session, config=config, author="test", comment="alerts", now=datetime.now(UTC)
        )
    metrics = Metrics()
    channels = {
        "ops": FakeChannel("ops", kind="slack"),
        "flaky": FakeChannel("flaky", kind="teams", failure=ChannelError("503", retryable=True)),
        "broken": FakeChannel(
            "broken", kind="webhook", failure=ChannelError("404", retryable=False)
        ),
    }
    pipeline = Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(),
        channels=channels,  # type: ignore[arg-type]
        metrics=metrics,
    )
    # Known first (a first scoring tells nobody), then last used 70 days ago: score 30, at
    # risk, as its record arrives now (a live change).
    await store_native(service.runtime, [native("account", "7", attributes={"name": "Acme"})])
    await pipeline.process_inbox()
    await store_native(
        service.runtime,
        [
            native("usage", "7", user="u1", days_ago=70),
            native("account", "7", attributes={"name": "Acme"}),
        ],
    )
    await pipeline.process_inbox()
    assert await pipeline.deliver_alerts() == 3
    deliveries = "crm_health_alert_deliveries_total"
    for kind, outcome in [("slack", "sent"), ("teams", "retried"), ("webhook", "failed")]:
        labels = {"channel_type": kind, "outcome": outcome}
        assert metrics.registry.get_sample_value(deliveries, labels) == 1, labels


async def test_sync_state_is_exposed_per_connection(service) -> None:
    await sync_rows.seed(service.runtime.sessions)
    samples = await scrape(service.client)
    for name, default, emea in [
        ("crm_health_writeback_pending", 3, 1),
        ("crm_health_writeback_failing", 2, 0),
        ("crm_health_writeback_failed", 1, 1),
        ("crm_health_inbox_dead_letters", 2, 0),
    ]:
        assert value(samples, name, connection="default") == default, name
        assert value(samples, name, connection="emea") == emea, name
    assert value(samples, "crm_health_inbox_dead_letters", connection="segment") == 1
    last = "crm_health_writeback_last_success_timestamp_seconds"
    written = sync_rows.NOW - timedelta(minutes=10)
    assert value(samples, last, connection="default") == written.timestamp()
    assert value(samples, last, connection="emea") == 0
    age = value(samples, "crm_health_writeback_oldest_pending_age_seconds", connection="default")
    since = sync_rows.NOW - timedelta(minutes=40)
    assert age is not None
    assert age == pytest.approx((datetime.now(UTC) - since).total_seconds(), abs=60)


async def test_a_connection_gone_from_the_database_leaves_the_gauges(service) -> None:
    await sync_rows.seed(service.runtime.sessions)
    assert value(await scrape(service.client), "crm_health_writeback_failed", connection="emea")
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(delete(WritebackItem).where(WritebackItem.connection == "emea"))
    samples = await scrape(service.client)
    assert value(samples, "crm_health_writeback_failed", connection="emea") is None
    assert value(samples, "crm_health_writeback_failed", connection="default") == 1
