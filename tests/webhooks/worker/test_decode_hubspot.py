"""HubSpot webhooks through the worker, on SQLite and PostgreSQL: hydrated events end in facts,
and a CRM that fails or pauses during hydration delays events instead of losing them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select

from connector.errors import CRMRateLimitPaused
from testkit import HUBSPOT_API, hubspot_event, post_hubspot
from webhooks.store import inbox
from webhooks.store.models import Account, ContactFact, InboxEvent, InteractionFact
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

UPDATED = "2026-11-23T11:00:00.000Z"


def _records(request: httpx.Request, object_type: str) -> httpx.Response:
    body = json.loads(request.content)
    properties = {
        "contacts": {"jobtitle": "Chief Executive Officer"},
        "companies": {"name": "Restored"},
        "emails": {
            "hs_timestamp": datetime.now(UTC).isoformat(),
            "hs_email_direction": "INCOMING_EMAIL",
        },
    }[object_type]
    results = [
        {"id": item["id"], "properties": properties, "updatedAt": UPDATED, "createdAt": UPDATED}
        for item in body["inputs"]
    ]
    return httpx.Response(200, json={"status": "COMPLETE", "results": results})


def _links(request: httpx.Request, source: str, target: str) -> httpx.Response:
    body = json.loads(request.content)
    linked = {"companies": 7, "contacts": 41}[target]
    results = [
        {"from": {"id": item["id"]}, "to": [{"toObjectId": linked, "associationTypes": []}]}
        for item in body["inputs"]
    ]
    return httpx.Response(200, json={"status": "COMPLETE", "results": results})


@pytest.fixture
def crm():
    with respx.mock(base_url=HUBSPOT_API, assert_all_called=False) as router:
        reads = router.post(path__regex=r"^/crm/v3/objects/(?P<object_type>\w+)/batch/read$")
        reads.mock(side_effect=_records)
        router.post(
            path__regex=r"^/crm/v4/associations/(?P<source>\w+)/(?P<target>\w+)/batch/read$"
        ).mock(side_effect=_links)
        yield reads


def _contact_created(event_id: int, contact: int) -> dict[str, object]:
    return hubspot_event(
        event_id,
        object_id=contact,
        subscriptionType="contact.creation",
        propertyName=None,
        propertyValue=None,
    )


def _email_created(event_id: int, email: int) -> dict[str, object]:
    return hubspot_event(
        event_id,
        object_id=email,
        subscriptionType="object.creation",
        objectTypeId="0-49",
        propertyName=None,
        propertyValue=None,
    )


async def _rows(service, model, **where) -> list[Any]:
    async with service.runtime.sessions() as session:
        return list((await session.execute(select(model).filter_by(**where))).scalars().all())


def _later(service, seconds: float) -> Pipeline:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return Pipeline(
        sessions=service.runtime.sessions,
        connections=service.runtime.connections,
        options=WorkerOptions(),
        clock=lambda: moment,
    )


async def test_contact_and_email_webhooks_end_up_in_facts(service, crm) -> None:
    await post_hubspot(service.client, [_contact_created(1, 41), _email_created(2, 501)])
    report = await service.runtime.pipeline.process_inbox()
    assert (report.processed, report.failed) == (2, 0)
    [contact] = await _rows(service, ContactFact, contact="41")
    assert (contact.title, contact.executive, contact.left_at) == (
        "Chief Executive Officer",
        True,
        None,
    )
    [email] = await _rows(service, InteractionFact)
    assert (email.channel, email.direction, email.contact, email.source_id) == (
        "email",
        "customer",
        "41",
        "emails:501",
    )


async def test_crm_outage_during_hydration_waits_without_an_attempt_or_isolation(
    service, crm
) -> None:
    crm.mock(side_effect=None, return_value=httpx.Response(503))
    await post_hubspot(service.client, [_contact_created(1, 41), _contact_created(2, 42)])
    report = await service.runtime.pipeline.process_inbox()
    assert (report.processed, report.failed, report.paused) == (0, 0, 2)
    assert crm.call_count == 1, "one batch read for both events, not one per event"
    rows = await _rows(service, InboxEvent)
    assert {(row.status, row.attempts) for row in rows} == {("pending", 0)}, "no attempt charged"
    assert all("hydration waits for the CRM" in (row.last_error or "") for row in rows)

    crm.mock(side_effect=_records)
    report = await _later(service, 3600).process_inbox()
    assert report.processed == 2
    assert {row.contact for row in await _rows(service, ContactFact)} == {"41", "42"}


async def test_paused_crm_puts_events_back_without_counting_an_attempt(
    service, crm, monkeypatch
) -> None:
    connector = service.runtime.connections.get("default").connector

    async def paused(plans):
        raise CRMRateLimitPaused("daily limit used up", status=429, retry_after=600.0)

    monkeypatch.setattr(connector, "hydrate", paused)
    await post_hubspot(service.client, [_contact_created(1, 41)])
    report = await service.runtime.pipeline.process_inbox()
    assert report.paused == 1
    [row] = await _rows(service, InboxEvent)
    assert (row.status, row.attempts) == ("pending", 0)
    assert row.available_at.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(seconds=590)
    assert (await _later(service, 60).process_inbox()).claimed == 0, "not before the pause ends"


async def test_event_needing_a_read_without_credentials_fails_naming_the_setting(
    service_factory,
) -> None:
    service = await service_factory(hubspot_access_token=None)
    await post_hubspot(service.client, [_contact_created(1, 41)])
    report = await service.runtime.pipeline.process_inbox()
    assert report.failed == 1
    [row] = await _rows(service, InboxEvent)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "'default'" in row.last_error
    assert "CRM_HEALTH_HUBSPOT_ACCESS_TOKEN" in row.last_error


async def test_deleted_contact_leaves_every_account_it_was_at(service, crm) -> None:
    await post_hubspot(service.client, [_contact_created(1, 41)])
    await service.runtime.pipeline.process_inbox()
    deleted = hubspot_event(
        2, object_id=41, subscriptionType="contact.deletion", propertyName=None, propertyValue=None
    )
    await post_hubspot(service.client, [deleted])
    report = await service.runtime.pipeline.process_inbox()
    assert report.processed == 1
    [contact] = await _rows(service, ContactFact, contact="41")
    assert contact.left_at is not None


async def test_contact_removed_from_a_company_leaves_it_without_a_read(service, crm) -> None:
    await post_hubspot(service.client, [_contact_created(1, 41)])
    await service.runtime.pipeline.process_inbox()
    reads = crm.call_count
    removed = hubspot_event(
        2,
        object_id=None,
        subscriptionType="contact.associationChange",
        associationType="CONTACT_TO_COMPANY",
        fromObjectId=41,
        toObjectId=7,
        associationRemoved=True,
        propertyName=None,
        propertyValue=None,
    )
    await post_hubspot(service.client, [removed])
    await service.runtime.pipeline.process_inbox()
    assert crm.call_count == reads
    [contact] = await _rows(service, ContactFact, contact="41")
    assert contact.left_at is not None


async def test_undecodable_hubspot_event_is_dead_at_once(service, crm) -> None:
    async with service.runtime.sessions() as session, session.begin():
        await inbox.insert_events(
            session,
            source="hubspot",
            connection="default",
            events=[
                inbox.NewEvent(
                    dedup_key="bad",
                    kind="contact.associationChange",
                    payload=hubspot_event(
                        1, subscriptionType="contact.associationChange", associationType="X"
                    ),
                )
            ],
            received_at=datetime.now(UTC),
        )
    report = await service.runtime.pipeline.process_inbox()
    assert report.dead == 1
    [row] = await _rows(service, InboxEvent)
    assert "fromObjectId" in (row.last_error or "")


async def test_restored_company_is_scored_again(service, crm) -> None:
    # Deleted before the record's updatedAt (UPDATED), which a restore moves on.
    past = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000)
    deleted = hubspot_event(
        1, object_id=7, subscriptionType="company.deletion", occurredAt=past, propertyName=None
    )
    await post_hubspot(service.client, [deleted])
    await service.runtime.pipeline.process_inbox()
    restored = hubspot_event(2, object_id=7, subscriptionType="company.restore", propertyName=None)
    await post_hubspot(service.client, [restored])
    await service.runtime.pipeline.process_inbox()
    [account] = await _rows(service, Account, crm_id="7")
    assert (account.deleted_at, account.name) == (None, "Restored")
