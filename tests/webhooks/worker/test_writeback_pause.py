"""The write-back sender when HubSpot's daily allowance is used up: rows wait, never fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import respx
from sqlalchemy import select
from structlog.testing import capture_logs

from connector.http import RetryingClient, RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.ratelimit import HubSpotLimits, seconds_to_next_midnight
from testkit import HUBSPOT_API, daily_user, store_native
from webhooks.connections import Connection, ConnectionRegistry
from webhooks.store.models import WritebackItem
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

BATCH_UPDATE = f"{HUBSPOT_API}/crm/v3/objects/companies/batch/update"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
DAILY_LIMIT_BODY = {
    "status": "error",
    "message": "You have reached your daily limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
    "policyName": "DAILY",
}


def _ok(request):
    ids = [item["id"] for item in json.loads(request.content)["inputs"]]
    return respx.MockResponse(200, json={"status": "COMPLETE", "results": [{"id": i} for i in ids]})


@pytest.fixture
def crm():
    with respx.mock(assert_all_called=False) as router:
        yield router.post(BATCH_UPDATE).mock(
            return_value=respx.MockResponse(429, json=DAILY_LIMIT_BODY)
        )


async def _items(service) -> dict[str, WritebackItem]:
    async with service.runtime.sessions() as session:
        rows = (await session.execute(select(WritebackItem))).scalars().all()
    return {row.record_id: row for row in rows}


async def test_daily_limit_defers_write_backs_without_an_attempt_and_delivers_after_it(
    service, crm
) -> None:
    # One timeline for the worker, the client's monotonic clock and the daily-reset estimate.
    clock = [datetime.now(UTC) + timedelta(seconds=1)]

    def monotonic() -> float:
        return (clock[0] - EPOCH).total_seconds()

    client = RetryingClient(
        base_url=HUBSPOT_API,
        name="hubspot:default",
        headers={"Authorization": "Bearer test-access-token"},
        policy=RetryPolicy(max_attempts=5),
        limits=HubSpotLimits(now=lambda: clock[0]),
        clock=monotonic,
    )
    connector = HubSpotConnector(client=client)
    connector.max_batch_size = 1  # one chunk per record: the pause must stop the later chunks
    sender = Pipeline(
        sessions=service.runtime.sessions,
        connections=ConnectionRegistry(
            [Connection(name="default", crm="hubspot", webhook_secret=None, connector=connector)]
        ),
        options=WorkerOptions(max_attempts=1),
        clock=lambda: clock[0],
    )
    await store_native(service.runtime, daily_user("7") + daily_user("8") + daily_user("9"))
    await service.runtime.pipeline.process_inbox()

    with capture_logs() as logs:
        await sender.deliver_writebacks()

    pause = timedelta(seconds=seconds_to_next_midnight(clock[0], UTC))
    until = clock[0] + pause
    assert crm.call_count == 1, "neither retried nor the other chunks sent"
    items = await _items(service)
    assert {record: (i.status, i.attempts) for record, i in items.items()} == {
        "7": ("pending", 0),
        "8": ("pending", 0),
        "9": ("pending", 0),
    }, "a pause is not an attempt, so even max_attempts=1 cannot dead-letter the rows"
    assert {i.available_at for i in items.values()} == {until}
    assert "DAILY" in (items["7"].last_error or "")
    paused = [entry for entry in logs if entry["event"] == "crm_paused"]
    assert [(p["connection"], p["until"]) for p in paused] == [("default", until.isoformat())]

    # During the pause a newly staged account is not sent either.
    await store_native(service.runtime, daily_user("10"))
    await service.runtime.pipeline.process_inbox()
    clock[0] = until - timedelta(seconds=1)
    assert await sender.deliver_writebacks() == 0
    assert crm.call_count == 1

    crm.mock(side_effect=_ok)
    clock[0] = until
    await sender.deliver_writebacks()
    items = await _items(service)
    assert {record: i.status for record, i in items.items()} == dict.fromkeys(
        ("7", "8", "9", "10"), "done"
    )
    assert crm.call_count == 1 + 4
    await connector.aclose()
