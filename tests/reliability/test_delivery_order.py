"""Duplicate and out-of-order deliveries: the same batch delivered three times (one after the
other, and at once in concurrent requests) is stored once, counted once and written back once;
changes delivered out of order leave the newest value, for HubSpot webhooks, native events with
ids and Segment calls with a messageId."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import SandboxState
from testkit import HUBSPOT_TOKEN, crm_accounts, hubspot_event, native, post_hubspot
from webhooks.store import keys
from webhooks.store.models import (
    Account,
    AttributeChange,
    CollaborationFact,
    ContactFact,
    HealthSnapshot,
    InboxEvent,
    InteractionFact,
    ProductGroup,
    ProductUser,
    TicketFact,
    UsageMonth,
    WritebackItem,
)

WRITE_KEY = "sk-test-write-key-order"
BATCH_UPDATE = "/crm/v3/objects/companies/batch/update"
# The last noon that has passed: the events placed a few hours before it fall on one UTC day
# whatever the hour the suite runs (usage is counted per user per day).
_CLOCK = datetime.now(UTC)
NOW = _CLOCK.replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(
    days=0 if _CLOCK.hour >= 12 else 1
)


@dataclass
class Setup:
    service: Any
    crm: SandboxState
    native_headers: dict[str, str]

    def writes(self) -> list[Any]:
        return [r for r in self.crm.requests if r.path == BATCH_UPDATE]

    def reads(self) -> list[str]:
        return [r.path for r in self.crm.requests if "batch/read" in r.path]


@pytest.fixture
async def setup(service_factory) -> Setup:
    """The service with HubSpot (the sandbox, fields provisioned, seats mapped to
    numberofemployees), a Segment source and an ingest key."""
    crm = SandboxState(portal_id=62515)
    # A roomy rate-limit window: its headers would otherwise pace provisioning (not under test).
    crm.limits.configure(window_max=10_000)
    service = await service_factory(
        crm_transport=httpx.ASGITransport(app=create_sandbox_app(crm, access_token=HUBSPOT_TOKEN)),
        hubspot_seats_property="numberofemployees",
        segment_write_key=WRITE_KEY,
    )
    [connector] = service.runtime.connections.writers().values()
    await connector.ensure_fields()
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name="ingest", role="ingest", connection="default", now=NOW
        )
    crm.requests.clear()
    return Setup(service, crm, {"Authorization": f"Bearer {key}"})


async def known_company(setup: Setup, properties: dict[str, str]) -> str:
    """A company in the CRM whose record the service already has (as its creation webhook or
    a backfill would bring it): native and Segment events for it count at once."""
    company = setup.crm.add_company(properties)
    await crm_accounts(setup.service.runtime, [company])
    return company


async def drain(service: Any) -> None:
    """Run the worker until it runs out of work (a Segment request is split in one pass and
    its calls are processed in the next)."""
    for _ in range(10):
        if not await service.runtime.pipeline.run_once():
            return
    raise AssertionError("the worker never ran out of work")


async def count(service: Any, model: Any) -> int:
    async with service.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def rows(service: Any, model: Any, **where: Any) -> list[Any]:
    async with service.runtime.sessions() as session:
        query = select(model).filter_by(**where)
        return list((await session.execute(query)).scalars().all())


async def account(service: Any, crm_id: str) -> Account:
    [found] = await rows(service, Account, crm_id=crm_id)
    return found


def millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def basic() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


async def post_segment(service: Any, calls: Sequence[dict[str, Any]]) -> httpx.Response:
    return await service.client.post(
        "/ingest/segment/v1/batch", content=json.dumps({"batch": list(calls)}), headers=basic()
    )


async def post_native(setup: Setup, events: Sequence[dict[str, Any]]) -> httpx.Response:
    return await setup.service.client.post(
        "/ingest/events", json={"events": list(events)}, headers=setup.native_headers
    )


def segment_call(kind: str, message_id: str, hours_ago: float, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": message_id,
        "userId": "u-17",
        "timestamp": at(hours_ago),
        **fields,
    }


def hubspot_batch(company: str, contact: str, email: str) -> list[dict[str, object]]:
    """A company renamed and resized, a contact and an email created: one event of each kind
    the worker folds (an attribute with history, a contact and an interaction read from the
    CRM)."""
    return [
        hubspot_event(1, object_id=int(company), propertyValue="Acme Labs"),
        hubspot_event(
            2, object_id=int(company), propertyName="numberofemployees", propertyValue="120"
        ),
        hubspot_event(
            3,
            object_id=int(contact),
            subscriptionType="contact.creation",
            propertyName=None,
            propertyValue=None,
        ),
        hubspot_event(
            4,
            object_id=int(email),
            subscriptionType="object.creation",
            objectTypeId="0-49",
            propertyName=None,
            propertyValue=None,
        ),
    ]


def seed_crm(crm: SandboxState) -> tuple[str, str, str]:
    company = crm.add_company({"name": "Acme"})
    contact = crm.add_object(
        "contacts",
        {"email": "ceo@acme.test", "jobtitle": "Chief Executive Officer"},
        {"companies": [company]},
    )
    email = crm.add_object(
        "emails",
        {
            "hs_timestamp": (NOW - timedelta(days=1)).isoformat(),
            "hs_email_direction": "INCOMING_EMAIL",
        },
        {"companies": [company], "contacts": [contact]},
    )
    return company, contact, email


async def assert_hubspot_batch_counted_once(setup: Setup, company: str) -> None:
    service = setup.service
    assert await count(service, InboxEvent) == 4
    assert {e.status for e in await rows(service, InboxEvent)} == {"done"}
    assert await count(service, AttributeChange) == 1, "seats history: one change"
    assert await count(service, ContactFact) == 1
    assert await count(service, InteractionFact) == 1
    assert await count(service, HealthSnapshot) == 1, "scored once"
    assert len(setup.writes()) == 1, "written back once"
    [item] = await rows(service, WritebackItem)
    assert (item.status, item.version, item.written_version) == ("done", 1, 1)
    assert setup.crm.companies[company]["health_band"] != ""
    found = await account(service, company)
    assert (found.name, found.attributes["seats"]["value"]) == ("Acme Labs", "120")


# --- the same delivery three times ------------------------------------------------------------


async def test_hubspot_batch_delivered_three_times_is_stored_counted_and_written_once(
    setup,
) -> None:
    company, contact, email = seed_crm(setup.crm)
    batch = hubspot_batch(company, contact, email)
    answers = []
    for attempt in range(3):
        # HubSpot's retries carry the same eventIds, with attemptNumber counting up.
        again = [{**event, "attemptNumber": attempt} for event in batch]
        response = await post_hubspot(setup.service.client, again)
        assert response.status_code == 202
        answers.append(response.json())
        await drain(setup.service)
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(4, 0), (0, 4), (0, 4)]
    await assert_hubspot_batch_counted_once(setup, company)
    reads = setup.reads()
    assert sorted(reads) == sorted(set(reads)), "every record read once, associations too"
    assert {"/crm/v3/objects/contacts/batch/read", "/crm/v3/objects/emails/batch/read"} <= set(
        reads
    )


async def test_native_events_delivered_three_times_count_once(setup) -> None:
    company = await known_company(setup, {"name": "Acme"})
    events = [
        native("usage", company, user="u1", id="use-1"),
        native("collaboration", company, kind="feedback", id="fb-1"),
        native("interaction", company, channel="call", direction="customer", id="call-1"),
        native("ticket", company, ticket="t-1", priority="high", id="ticket-1"),
        native("account", company, attributes={"seats": 40}, id="seats-1"),
    ]
    answers = []
    for _ in range(3):
        response = await post_native(setup, events)
        assert response.status_code == 202
        answers.append(response.json())
        await drain(setup.service)
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(5, 0), (0, 5), (0, 5)]
    service = setup.service
    counts = [
        await count(service, model)
        for model in (UsageMonth, CollaborationFact, InteractionFact, TicketFact, AttributeChange)
    ]
    assert counts == [1, 1, 1, 1, 1]
    assert await count(service, HealthSnapshot) == 1
    assert len(setup.writes()) == 1


async def test_segment_batch_delivered_three_times_and_calls_resent_count_once(setup) -> None:
    company = await known_company(setup, {"name": "Acme"})
    calls = [
        segment_call("group", "m-1", 3, groupId="acme-prod", traits={"crm_id": company}),
        segment_call(
            "track", "m-2", 2, event="Feedback Submitted", context={"groupId": "acme-prod"}
        ),
        segment_call("track", "m-3", 1, event="Report Viewed", context={"groupId": "acme-prod"}),
    ]
    answers = []
    for _ in range(3):
        response = await post_segment(setup.service, calls)
        assert response.status_code == 200
        answers.append(response.json())
        await drain(setup.service)
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(3, 0), (0, 3), (0, 3)]
    # A client retry that sends the same calls again with one more (another body): only the
    # new call counts.
    more = segment_call(
        "track", "m-4", 0.5, event="Feature Requested", context={"groupId": "acme-prod"}
    )
    assert (await post_segment(setup.service, [*calls[1:], more])).status_code == 200
    await drain(setup.service)

    service = setup.service
    kinds = sorted(c.kind for c in await rows(service, CollaborationFact))
    assert kinds == ["feature_request", "feedback"]
    assert [u.user for u in await rows(service, UsageMonth)] == ["u-17"]
    calls_stored = [e for e in await rows(service, InboxEvent) if e.dedup_key.startswith("m-")]
    assert sorted(e.dedup_key for e in calls_stored) == ["m-1", "m-2", "m-3", "m-4"]
    assert {e.status for e in await rows(service, InboxEvent)} == {"done"}


# --- the same delivery three times at once ------------------------------------------------------


async def test_identical_deliveries_in_concurrent_requests_are_stored_exactly_once(setup) -> None:
    company, contact, email = seed_crm(setup.crm)
    other = await known_company(setup, {"name": "Globex"})
    third = await known_company(setup, {"name": "Initech"})
    batch = hubspot_batch(company, contact, email)
    events = [
        native("usage", other, user="u1", id="use-1"),
        native("collaboration", other, kind="beta", id="beta-1"),
    ]
    calls = [
        segment_call("group", "m-1", 3, groupId="initech-prod", traits={"crm_id": third}),
        segment_call("track", "m-2", 2, event="Referral Sent", context={"groupId": "initech-prod"}),
    ]
    client = setup.service.client
    answers = await asyncio.gather(
        *(post_hubspot(client, batch) for _ in range(3)),
        *(post_native(setup, events) for _ in range(3)),
        *(post_segment(setup.service, calls) for _ in range(3)),
    )
    assert [a.status_code for a in answers] == [202] * 6 + [200] * 3
    stored = [a.json()["stored"] for a in answers]
    assert (sum(stored[0:3]), sum(stored[3:6]), sum(stored[6:9])) == (4, 2, 2)
    assert sorted(stored[0:3]) == [0, 0, 4], "one request stored the batch, whole"
    await drain(setup.service)

    service = setup.service
    kinds = sorted(c.kind for c in await rows(service, CollaborationFact))
    assert kinds == ["beta", "referral"]
    assert sorted(u.user for u in await rows(service, UsageMonth)) == ["u-17", "u1"]
    assert await count(service, AttributeChange) == 1
    assert await count(service, ContactFact) == 1
    assert await count(service, InteractionFact) == 1
    assert await count(service, HealthSnapshot) == 3, "each account scored once"
    written = [item["id"] for write in setup.writes() for item in write.json["inputs"]]
    assert sorted(written) == sorted([company, other, third]), "each account written once"


# --- out of order ---------------------------------------------------------------------------


async def test_hubspot_property_changes_out_of_order_keep_the_newest_value(setup) -> None:
    company = setup.crm.add_company({"name": "Acme"})
    other = setup.crm.add_company({"name": "Globex"})
    newer = [
        hubspot_event(1, object_id=int(company), propertyValue="Newest", occurredAt=millis(NOW)),
        hubspot_event(
            2,
            object_id=int(company),
            propertyName="numberofemployees",
            propertyValue="300",
            occurredAt=millis(NOW),
        ),
    ]
    older = [
        hubspot_event(
            3,
            object_id=int(company),
            propertyValue="Older",
            occurredAt=millis(NOW - timedelta(hours=1)),
        ),
        hubspot_event(
            4,
            object_id=int(company),
            propertyName="numberofemployees",
            propertyValue="100",
            occurredAt=millis(NOW - timedelta(hours=1)),
        ),
    ]
    # Across deliveries: the newer first, processed, then the older.
    await post_hubspot(setup.service.client, newer)
    await drain(setup.service)
    await post_hubspot(setup.service.client, older)
    await drain(setup.service)
    # Within one delivery: newest first.
    in_one = [
        hubspot_event(
            5, object_id=int(other), propertyName="domain", propertyValue="new.example",
            occurredAt=millis(NOW),
        ),
        hubspot_event(
            6, object_id=int(other), propertyName="domain", propertyValue="old.example",
            occurredAt=millis(NOW - timedelta(minutes=5)),
        ),
    ]  # fmt: skip
    await post_hubspot(setup.service.client, in_one)
    await drain(setup.service)

    found = await account(setup.service, company)
    assert (found.name, found.attributes["seats"]["value"]) == ("Newest", "300")
    assert found.attributes["name"]["at"] == NOW.isoformat()
    history = sorted(c.value for c in await rows(setup.service, AttributeChange))
    assert history == ["100", "300"], "the older value is history, not the current one"
    assert (await account(setup.service, other)).domain == "new.example"


async def test_native_changes_out_of_order_keep_the_newest_value(setup) -> None:
    company = await known_company(setup, {"name": "Acme"})
    newer = [
        native("account", company, attributes={"name": "Newest", "seats": 50}, id="acc-2"),
        native("contact", company, contact="c-1", title="CEO", executive=True, id="ct-2"),
        native("ticket", company, ticket="t-1", priority="urgent", id="tk-2"),
    ]
    older = [
        native("account", company, attributes={"name": "Older", "seats": 10}, id="acc-1"),
        native("contact", company, contact="c-1", title="Intern", executive=False, id="ct-1"),
        native("ticket", company, ticket="t-1", priority="low", id="tk-1"),
    ]
    for event in newer:
        event["at"] = at(1)
    for event in older:
        event["at"] = at(2)
    assert (await post_native(setup, newer)).status_code == 202
    await drain(setup.service)
    assert (await post_native(setup, older)).status_code == 202
    await drain(setup.service)

    found = await account(setup.service, company)
    assert (found.name, found.attributes["seats"]["value"]) == ("Newest", "50")
    [contact] = await rows(setup.service, ContactFact)
    assert (contact.title, contact.executive) == ("CEO", True)
    [ticket] = await rows(setup.service, TicketFact)
    assert ticket.priority == "urgent"


async def test_segment_calls_out_of_order_keep_the_newest_mapping(setup) -> None:
    first = await known_company(setup, {"name": "Acme"})
    second = await known_company(setup, {"name": "Globex"})
    newer = [
        segment_call("group", "m-2", 1, groupId="g-new", traits={"crm_id": first}),
        segment_call("group", "m-4", 1, groupId="g-shared", traits={"crm_id": first}),
    ]
    older = [
        segment_call("group", "m-1", 2, groupId="g-old", traits={"crm_id": second}),
        segment_call("group", "m-3", 2, groupId="g-shared", traits={"crm_id": second}),
    ]
    assert (await post_segment(setup.service, newer)).status_code == 200
    await drain(setup.service)
    assert (await post_segment(setup.service, older)).status_code == 200
    await drain(setup.service)

    [user] = await rows(setup.service, ProductUser, user_id="u-17")
    assert user.group_id == "g-shared", "the user's newest group call"
    [shared] = await rows(setup.service, ProductGroup, group_id="g-shared")
    assert (shared.match_value, shared.crm_id) == (first, first)
    # A call naming no group lands where the user acted last.
    loose = segment_call("track", "m-5", 0.5, event="Report Viewed")
    assert (await post_segment(setup.service, [loose])).status_code == 200
    await drain(setup.service)
    [usage] = await rows(setup.service, UsageMonth)
    assert usage.account_id == (await account(setup.service, first)).id


async def test_a_deletion_delivered_after_a_newer_change_does_not_delete_the_account(
    setup,
) -> None:
    company = await known_company(setup, {"name": "Acme"})
    restored = native("account", company, attributes={"name": "Acme again"}, id="acc-2")
    restored["at"] = at(1)
    deleted = native("account_deleted", company, id="del-1")
    deleted["at"] = at(2)
    assert (await post_native(setup, [restored])).status_code == 202
    await drain(setup.service)
    assert (await post_native(setup, [deleted])).status_code == 202
    await drain(setup.service)
    assert (await account(setup.service, company)).deleted_at is None
