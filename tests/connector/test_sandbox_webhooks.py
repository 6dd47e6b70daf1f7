"""Signed HubSpot webhooks out of the sandbox: event shapes, batching, retries, control API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connector.hubspot.events import parse_batch, verify_request
from connector.sandbox import SandboxState, create_sandbox_app

TARGET = "http://plugin.test/webhooks/hubspot"
SECRET = "webhook-secret"
NOON = "2026-01-05T12:00:00Z"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Receiver:
    """The subscribed app: records each delivery and answers from a script of statuses."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 204
        return httpx.Response(status)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.requests for event in json.loads(request.content)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def state(clock: Clock, receiver: Receiver, slept: list[float]) -> SandboxState:
    state = SandboxState(clock=clock, portal_id=777)
    state.webhooks.transport = httpx.MockTransport(receiver.handle)

    async def no_sleep(seconds: float) -> None:
        # Record the waits instead of sleeping them: batching and backoff without real time.
        slept.append(seconds)

    state.webhooks.sleep = no_sleep
    return state


@pytest.fixture
async def client(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


async def _subscribe(client: httpx.AsyncClient, **extra: object) -> httpx.Response:
    body = {"target_url": TARGET, "client_secret": SECRET, "app_id": 42, "batch_ms": 50}
    response = await client.post("/_sandbox/webhooks", json={**body, **extra})
    assert response.status_code == 201, response.text
    return response


async def test_api_create_sends_signed_creation_and_property_change_events(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver, clock: Clock
) -> None:
    await _subscribe(client)

    created = await client.post("/crm/v3/objects/companies", json={"properties": {"name": "Acme"}})
    await state.webhooks.drain()

    [request] = receiver.requests
    assert request.method == "POST"
    assert str(request.url) == TARGET
    headers = {key.lower(): value for key, value in request.headers.items()}
    assert headers["x-hubspot-signature-version"] == "v3"
    verify_request(
        client_secret=SECRET,
        method="POST",
        uri=TARGET,
        body=request.content,
        headers=request.headers,
        now=clock.now + timedelta(seconds=1),
        accept_legacy=False,
    )
    company = int(created.json()["id"])
    creation, name_change = receiver.events
    assert creation == {
        "eventId": 1,
        "subscriptionId": 1,
        "portalId": 777,
        "appId": 42,
        "occurredAt": creation["occurredAt"],
        "subscriptionType": "company.creation",
        "attemptNumber": 0,
        "objectId": company,
        "changeFlag": "CREATED",
        "changeSource": "API",
    }
    assert name_change["subscriptionType"] == "company.propertyChange"
    assert (name_change["propertyName"], name_change["propertyValue"]) == ("name", "Acme")
    assert name_change["objectId"] == company
    # The connector's own parser takes the batch as HubSpot's.
    assert [event.event_id for event in parse_batch(request.content)] == [1, 2]


async def test_batch_update_sends_one_property_change_per_changed_value(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    company = state.add_company({"name": "Acme", "city": "Paris"})
    await _subscribe(client)

    await client.post(
        "/crm/v3/objects/companies/batch/update",
        json={"inputs": [{"id": company, "properties": {"name": "Acme Ltd", "city": "Paris"}}]},
    )
    await state.webhooks.drain()

    [event] = receiver.events
    assert event["subscriptionType"] == "company.propertyChange"
    assert (event["propertyName"], event["propertyValue"]) == ("name", "Acme Ltd")


async def test_an_association_is_sent_once_for_each_side(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    company = state.add_company({"name": "Acme"})
    await _subscribe(client)

    state.add_object("contacts", {"email": "ada@acme.test"}, {"companies": [company]})
    await state.webhooks.drain()

    changes = [e for e in receiver.events if e["subscriptionType"].endswith("associationChange")]
    contact_side, company_side = changes
    assert contact_side["subscriptionType"] == "contact.associationChange"
    assert contact_side["associationType"] == "CONTACT_TO_COMPANY"
    assert contact_side["toObjectId"] == int(company)
    assert contact_side["associationRemoved"] is False
    assert contact_side["isPrimaryAssociation"] is True
    assert contact_side["changeSource"] == "CRM_UI"
    assert company_side["subscriptionType"] == "company.associationChange"
    assert company_side["associationType"] == "COMPANY_TO_CONTACT"
    assert company_side["fromObjectId"] == int(company)


async def test_engagement_events_are_generic_object_events_with_the_object_type_id(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    company = state.add_company({"name": "Acme"})
    await _subscribe(client)

    await client.post(
        "/crm/v3/objects/notes",
        json={
            "properties": {"hs_timestamp": NOON},
            "associations": [
                {
                    "to": {"id": company},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 190}],
                }
            ],
        },
    )
    await state.webhooks.drain()

    by_type = {event["subscriptionType"]: event for event in receiver.events}
    assert by_type["object.creation"]["objectTypeId"] == "0-46"
    assert by_type["object.propertyChange"]["propertyName"] == "hs_timestamp"
    note_side = by_type["object.associationChange"]
    assert note_side["associationType"] == "NOTE_TO_COMPANY"
    assert note_side["associationTypeId"] == 190
    assert (note_side["fromObjectTypeId"], note_side["toObjectTypeId"]) == ("0-46", "0-2")
    company_side = by_type["company.associationChange"]
    assert company_side["associationTypeId"] == 189


@pytest.mark.parametrize(
    ("object_type", "type_id"),
    [("meetings", "0-47"), ("calls", "0-48"), ("emails", "0-49"), ("tasks", "0-27")],
)
async def test_each_engagement_type_has_its_own_object_type_id(
    state: SandboxState,
    client: httpx.AsyncClient,
    receiver: Receiver,
    object_type: str,
    type_id: str,
) -> None:
    await _subscribe(client)

    state.add_object(object_type, {"hs_timestamp": NOON})
    await state.webhooks.drain()

    assert {event["objectTypeId"] for event in receiver.events} == {type_id}


async def test_more_than_100_changes_go_out_in_batches_of_at_most_100(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver, slept: list[float]
) -> None:
    await _subscribe(client, batch_ms=250)

    for n in range(120):
        state.add_company({"name": f"Company {n}"})  # two events each
    await state.webhooks.drain()

    assert [len(json.loads(r.content)) for r in receiver.requests] == [100, 100, 40]
    assert [e["eventId"] for e in receiver.events] == list(range(1, 241))
    assert 0.25 in slept


async def test_a_failed_delivery_is_retried_with_backoff_and_a_growing_attempt_number(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver, slept: list[float]
) -> None:
    receiver.statuses = [503, 500]
    await _subscribe(client, batch_ms=0, retry_base_seconds=1)

    state.add_company({"name": "Acme"})
    await state.webhooks.drain()

    attempts = [json.loads(r.content)[0] for r in receiver.requests]
    assert [a["attemptNumber"] for a in attempts] == [0, 1, 2]
    assert {a["eventId"] for a in attempts} == {1}
    assert slept == [1.0, 2.0]
    log = (await client.get("/_sandbox/webhooks")).json()["deliveries"]
    assert [(d["status"], d["delivered"]) for d in log[:3]] == [
        (503, False),
        (500, False),
        (204, True),
    ]


async def test_delivery_gives_up_after_max_attempts_and_logs_transport_errors(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    state.webhooks.transport = httpx.MockTransport(refuse)
    await _subscribe(client, batch_ms=0, max_attempts=2)

    state.add_company({"name": "Acme"})
    await state.webhooks.drain()

    log = state.webhooks.log
    assert [attempt.attempt_number for attempt in log] == [0, 1]
    assert all(attempt.error and "ConnectError" in attempt.error for attempt in log)
    assert state.webhooks.pending == 0


async def test_a_receiver_refusing_with_400_is_not_retried(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [400]
    await _subscribe(client, batch_ms=0)

    state.add_company({"name": "Acme"})
    await state.webhooks.drain()

    assert len(receiver.requests) == 1


async def test_nothing_is_sent_without_a_subscription(
    state: SandboxState, receiver: Receiver
) -> None:
    state.add_company({"name": "Acme"})
    await state.webhooks.drain()

    assert receiver.requests == []


async def test_control_api_drains_and_shows_the_log_without_the_secret(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    subscribed = (await _subscribe(client)).json()

    await client.post("/_sandbox/objects/companies", json={"properties": {"name": "Acme"}})
    drained = await client.post("/_sandbox/webhooks/drain")

    assert subscribed["subscription"]["target_url"] == TARGET
    assert subscribed["subscription"]["client_secret"] == "***"
    assert drained.status_code == 200
    assert drained.json()["pending"] == 0
    assert [d["event_ids"] for d in drained.json()["deliveries"]] == [[1, 2]]
    assert receiver.events[0]["changeSource"] == "CRM_UI"


async def test_unsubscribing_stops_the_events(
    state: SandboxState, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await _subscribe(client)
    await client.delete("/_sandbox/webhooks")

    state.add_company({"name": "Acme"})
    await state.webhooks.drain()

    assert receiver.requests == []
    assert (await client.get("/_sandbox/webhooks")).json()["subscription"] is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"client_secret": SECRET}, "target_url"),
        ({"target_url": TARGET}, "client_secret"),
        ({"target_url": "ftp://x", "client_secret": SECRET}, "target_url"),
        ({"target_url": TARGET, "client_secret": SECRET, "batch_ms": -1}, "batch_ms"),
        ({"target_url": TARGET, "client_secret": SECRET, "max_attempts": 0}, "max_attempts"),
    ],
)
async def test_a_bad_subscription_answers_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], named: str
) -> None:
    response = await client.post("/_sandbox/webhooks", json=body)

    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert named in response.json()["message"]
