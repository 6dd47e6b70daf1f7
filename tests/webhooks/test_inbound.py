"""POST /webhooks/hubspot: verify, validate, store durably, answer fast; never process inline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from testkit import PUBLIC_URL, hubspot_event, post_hubspot, signed_v3_headers
from webhooks.store import inbox


async def _inbox_counts(service) -> dict[str, int]:
    async with service.runtime.sessions() as session:
        return await inbox.count_by_status(session)


async def test_signed_batch_is_stored_and_acknowledged(service) -> None:
    response = await post_hubspot(service.client, [hubspot_event(1), hubspot_event(2)])
    assert response.status_code == 202
    assert response.json() == {"received": 2, "stored": 2, "duplicates": 0}
    assert await _inbox_counts(service) == {"pending": 2}


async def test_redelivered_event_is_acknowledged_but_stored_once(service) -> None:
    await post_hubspot(service.client, [hubspot_event(1)])
    redelivery = hubspot_event(1, attemptNumber=1)
    response = await post_hubspot(service.client, [redelivery, hubspot_event(2)])
    assert response.status_code == 202
    assert response.json() == {"received": 2, "stored": 1, "duplicates": 1}
    assert await _inbox_counts(service) == {"pending": 2}


async def test_missing_signature_is_401_and_nothing_is_stored(service) -> None:
    response = await service.client.post("/webhooks/hubspot", json=[hubspot_event(1)])
    assert response.status_code == 401
    assert "signature" in response.json()["detail"]
    assert await _inbox_counts(service) == {}


async def test_wrong_secret_is_401_and_nothing_is_stored(service) -> None:
    response = await post_hubspot(service.client, [hubspot_event(1)], secret="not-the-secret")
    assert response.status_code == 401
    assert await _inbox_counts(service) == {}


async def test_stale_timestamp_is_401(service) -> None:
    stale = datetime.now(UTC) - timedelta(minutes=6)
    response = await post_hubspot(service.client, [hubspot_event(1)], at=stale)
    assert response.status_code == 401
    assert "300 s" in response.json()["detail"]


async def test_body_that_is_not_an_array_is_400_with_a_message(service) -> None:
    body = json.dumps({"eventId": 1}).encode()
    uri = f"{PUBLIC_URL}/webhooks/hubspot"
    response = await service.client.post(
        "/webhooks/hubspot", content=body, headers=signed_v3_headers(body, uri=uri)
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "body must be a JSON array of HubSpot events"}


async def test_event_missing_a_field_is_400_naming_it(service) -> None:
    event = hubspot_event(1)
    del event["portalId"]
    response = await post_hubspot(service.client, [hubspot_event(2), event])
    assert response.status_code == 400
    assert response.json()["detail"].startswith("[1].portalId: Field required")
    assert await _inbox_counts(service) == {}


async def test_body_over_the_limit_is_413_before_reading_it(service_factory) -> None:
    service = await service_factory(webhook_max_body_bytes=1000)
    big = json.dumps([hubspot_event(i) for i in range(20)]).encode()
    uri = f"{PUBLIC_URL}/webhooks/hubspot"
    response = await service.client.post(
        "/webhooks/hubspot", content=big, headers=signed_v3_headers(big, uri=uri)
    )
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]


async def test_streamed_body_over_the_limit_is_413(service_factory) -> None:
    service = await service_factory(webhook_max_body_bytes=1000)

    async def chunks():
        for _ in range(10):
            yield b"x" * 200

    response = await service.client.post("/webhooks/hubspot", content=chunks())
    assert response.status_code == 413


async def test_unconfigured_secret_is_503_so_hubspot_retries_later(service_factory) -> None:
    service = await service_factory(hubspot_client_secret=None)
    response = await post_hubspot(service.client, [hubspot_event(1)])
    assert response.status_code == 503
    assert "CRM_HEALTH_HUBSPOT_CLIENT_SECRET" in response.json()["detail"]


async def test_v3_signature_uses_the_public_url_not_the_internal_one(service) -> None:
    body = json.dumps([hubspot_event(1)]).encode()
    internal = signed_v3_headers(body, uri="http://10.0.0.5:8000/webhooks/hubspot")
    response = await service.client.post("/webhooks/hubspot", content=body, headers=internal)
    assert response.status_code == 401


async def test_unknown_subscription_type_is_accepted_and_ignored_by_the_worker(service) -> None:
    odd = hubspot_event(1, subscriptionType="conversation.newMessage", objectId=5)
    response = await post_hubspot(service.client, [odd])
    assert response.status_code == 202
    report = await service.runtime.pipeline.process_inbox()
    assert report.ignored == {"conversation.newMessage": 1}
    assert await _inbox_counts(service) == {"ignored": 1}
