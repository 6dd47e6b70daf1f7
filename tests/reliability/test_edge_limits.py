"""What the edge accepts, the store accepts: on SQLite and PostgreSQL, a value that no column
could hold (too long, a NUL, a lone surrogate, a time years ahead) is refused by every intake
with a status naming the field, and nothing of the request is stored."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from dynamics_samples import DOCS_EXAMPLE
from every_intake import (
    ADMIN_TOKEN,
    DYN_CONNECTION,
    DYN_KEY,
    EVERY_INTAKE,
    SEGMENT_KEY,
    SF_CONNECTION,
    SF_ORG,
    SF_SECRET,
)
from sqlalchemy import func, select

from testkit import Service, hubspot_event, native, post_hubspot
from webhooks.store.models import InboxEvent

LONE_SURROGATE = "\ud800"


@pytest.fixture
async def intake(service_factory) -> Service:
    service: Service = await service_factory(**EVERY_INTAKE)
    return service


async def stored(service: Service) -> int:
    async with service.runtime.sessions() as session:
        return int((await session.execute(select(func.count(InboxEvent.id)))).scalar_one())


# --- native -------------------------------------------------------------------------------------


async def post_native(service: Service, events: list[dict[str, Any]]):
    # json.dumps escapes the lone surrogate as \ud800, as a client's JSON library would.
    return await service.client.post(
        "/ingest/events",
        content=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )


async def test_a_full_native_batch_with_a_long_id_and_a_lone_surrogate_is_422_naming_both(
    intake: Service,
) -> None:
    # The most one request may carry (1,000 events).
    events = [native("usage", str(1000 + i % 50), user=f"u{i}") for i in range(1000)]
    events[17] = native("usage", "a" * 100, user="u17")
    events[900] = native("account", "1042", attributes={"name": f"Acme {LONE_SURROGATE}"})
    response = await post_native(intake, events)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "events[17].account: String should have at most 64 characters" in detail
    assert "events[900].attributes.name: contains a lone surrogate" in detail
    assert await stored(intake) == 0


@pytest.mark.parametrize(
    ("field", "event", "named"),
    [
        ("NUL in a user", native("usage", "1", user="u\x001"), "events[0].user: contains a NUL"),
        (
            "title over the column",
            native("contact", "1", contact="c1", title="t" * 501),
            "events[0].title: String should have at most 500 characters",
        ),
        (
            "seats beyond any customer",
            native("account", "1", attributes={"seats": 10**12}),
            "events[0].attributes.seats: Input should be less than or equal to 100000000",
        ),
        (
            "a time in 2099",
            {**native("usage", "1", user="u"), "at": "2099-01-01T00:00:00Z"},
            "events[0].at: more than 1 day in the future",
        ),
        (
            "a name over the column",
            native("account", "1", attributes={"name": "n" * 513}),
            "events[0].attributes.name: String should have at most 512 characters",
        ),
    ],
)
async def test_a_native_value_no_column_holds_is_422_naming_it(
    intake: Service, field: str, event: dict[str, Any], named: str
) -> None:
    response = await post_native(intake, [event])
    assert response.status_code == 422, field
    assert named in response.json()["detail"]
    assert await stored(intake) == 0


# --- HubSpot ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"subscriptionType": "company." + "x" * 130},
            "[1].subscriptionType: String should have at most 128 characters",
        ),
        ({"subscriptionType": "company.\x00creation"}, "[1].subscriptionType: contains a NUL"),
        ({"propertyValue": f"Acme {LONE_SURROGATE}"}, "[1].propertyValue: contains a lone"),
        ({"portalId": 10**40}, "[1].portalId: Input should be less than or equal to"),
        # Keys the model does not know are stored with the event too.
        ({"sourceId": "user\x00x"}, "[1].sourceId: contains a NUL"),
    ],
)
async def test_a_hubspot_value_no_column_holds_is_400_naming_it(
    intake: Service, fields: dict[str, Any], named: str
) -> None:
    response = await post_hubspot(intake.client, [hubspot_event(1), hubspot_event(2, **fields)])
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]
    assert await stored(intake) == 0


# --- Segment ------------------------------------------------------------------------------------


def segment_headers() -> dict[str, str]:
    token = base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("call", "named"),
    [
        ({"type": "track", "event": "Used", "userId": f"u{LONE_SURROGATE}"}, "[1].userId"),
        (
            {"type": "track", "event": "Used", "userId": "u1", "properties": {"p": "a\x00"}},
            "[1].properties.p: contains a NUL",
        ),
        (
            {"type": "group", "groupId": "g1", "userId": "u1", "traits": {"name": "n" * 513}},
            "[1].traits.name: at most 512 characters",
        ),
        (
            {"type": "track", "event": "Used", "userId": "u" * 201},
            "[1].userId: at most 200 characters",
        ),
    ],
)
async def test_a_segment_value_no_column_holds_is_400_naming_it(
    intake: Service, call: dict[str, Any], named: str
) -> None:
    good = {"type": "track", "event": "Used", "userId": "u1"}
    body = json.dumps({"batch": [good, call]}).encode()
    response = await intake.client.post(
        "/ingest/segment/v1/batch", content=body, headers=segment_headers()
    )
    assert response.status_code == 400, response.text
    assert f"batch{named}" in response.json()["detail"]
    assert await stored(intake) == 0


# --- Salesforce ---------------------------------------------------------------------------------


def outbound_message(account_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{SF_ORG}</OrganizationId><ActionId>04k5e000000TnTyAAK</ActionId>"
        "<Notification><Id>04l5e000001</Id>"
        '<sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>0035e00000AbCdEAAV</sf:Id><sf:AccountId>{account_id}</sf:AccountId>"
        "</sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


async def test_a_salesforce_account_id_over_the_column_is_a_400_fault_naming_it(
    intake: Service,
) -> None:
    response = await intake.client.post(
        f"/webhooks/salesforce/{SF_CONNECTION}/{SF_SECRET}",
        content=outbound_message("001" + "x" * 97),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    )
    assert response.status_code == 400
    assert b"Notification[0].sObject.AccountId: at most 64 characters" in response.content
    assert await stored(intake) == 0


# --- Dynamics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MessageName": f"Update{LONE_SURROGATE}"}, "MessageName: contains a lone surrogate"),
        ({"MessageName": "Update" * 20}, "MessageName: at most 63 characters"),
        ({"PrimaryEntityName": "contact" * 10}, "PrimaryEntityName: at most 64 characters"),
        ({"Stage": 10**30}, "Stage is out of range"),
        ({"OrganizationName": "Contoso\x00"}, "OrganizationName: contains a NUL"),
    ],
)
async def test_a_dynamics_value_no_column_holds_is_400_naming_it(
    intake: Service, change: dict[str, Any], named: str
) -> None:
    document = {**json.loads(DOCS_EXAMPLE), **change}
    response = await intake.client.post(
        f"/webhooks/dynamics/{DYN_CONNECTION}?code={DYN_KEY}",
        content=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]
    assert await stored(intake) == 0
