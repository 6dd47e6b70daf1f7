"""End to end: a signed HubSpot webhook in, the health fields written into the CRM record."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.outbound import Subscription
from connector.sandbox.state import SandboxState
from testkit import (
    HUBSPOT_API,
    HUBSPOT_SECRET,
    HUBSPOT_TOKEN,
    PUBLIC_URL,
    daily_user,
    hubspot_event,
    post_hubspot,
    store_native,
)

# Delivery, not evidence: these accounts are scored on the few events they get.
pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence")

HEALTH_PROPERTIES = {
    "health_score", "health_band", "health_trend_30d", "health_active_use",
    "health_collaboration", "health_mutual_value", "health_momentum", "health_drivers",
    "health_updated_at",
}  # fmt: skip


async def test_signed_webhook_becomes_a_batch_update_carrying_the_health_fields(service) -> None:
    with respx.mock:
        route = respx.post(f"{HUBSPOT_API}/crm/v3/objects/companies/batch/update").respond(
            200, json={"status": "COMPLETE", "results": [{"id": "4242"}]}
        )
        await store_native(service.runtime, daily_user("4242"))
        response = await post_hubspot(service.client, [hubspot_event(1, object_id=4242)])
        assert response.status_code == 202
        assert not route.called, "nothing is processed inside the request"
        await service.runtime.pipeline.run_once()
    [call] = route.calls
    assert call.request.headers["authorization"] == f"Bearer {HUBSPOT_TOKEN}"
    [record] = json.loads(call.request.content)["inputs"]
    assert record["id"] == "4242"
    assert set(record["properties"]) == HEALTH_PROPERTIES
    assert record["properties"]["health_band"] == "healthy"


async def test_sandbox_company_gets_health_after_provisioning_and_a_webhook(
    service_factory,
) -> None:
    state = SandboxState()
    company_id = state.add_company({"name": "Acme Labs"})
    sandbox = create_sandbox_app(state, access_token=HUBSPOT_TOKEN)
    service = await service_factory(crm_transport=httpx.ASGITransport(app=sandbox))
    [connector] = service.runtime.connections.writers().values()
    report = await connector.ensure_fields()
    assert set(report.created) == {"group:customer_health", *HEALTH_PROPERTIES}
    assert (await connector.ensure_fields()).created == [], "provisioning is idempotent"

    await store_native(service.runtime, daily_user(company_id, first_day_ago=10))
    await post_hubspot(service.client, [hubspot_event(1, object_id=int(company_id))])
    await service.runtime.pipeline.run_once()

    company = state.companies[company_id]
    # Stickiness healthy (100), recency 10 days at 36; no usage trend, as the 30 days before
    # the last 30 are older than the company's first event (no data, not "nobody"): 68.
    assert company["health_score"] == "68"
    assert company["health_band"] == "neutral"
    assert company["health_active_use"] == "68"
    assert company["health_drivers"] == "Days since last use 10 (healthy <= 3)"
    assert company["name"] == "Acme Labs"
    writes = [r for r in state.requests if r.path.endswith("/batch/update")]
    assert [r.status for r in writes] == [200]

    # Another event that leaves health unchanged costs the CRM nothing.
    await post_hubspot(service.client, [hubspot_event(2, object_id=int(company_id))])
    await service.runtime.pipeline.run_once()
    assert len([r for r in state.requests if r.path.endswith("/batch/update")]) == 1


# HubSpot-defined association type ids of the v3 create body.
CONTACT_TO_COMPANY, EMAIL_TO_COMPANY, EMAIL_TO_CONTACT = 279, 186, 198


def _link(to_id: str, type_id: int) -> dict[str, object]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


async def test_changes_made_in_the_crm_flow_back_as_health_through_signed_webhooks(
    service_factory,
) -> None:
    """The whole loop with nothing mocked: the sandbox sends signed webhooks for a contact and
    an incoming email, the worker hydrates them from the sandbox (batch read + associations
    v4), scores, and writes the fields; HubSpot's echo of that write changes nothing."""
    state = SandboxState(portal_id=62515)
    sandbox = create_sandbox_app(state, access_token=HUBSPOT_TOKEN)
    service = await service_factory(crm_transport=httpx.ASGITransport(app=sandbox))
    [connector] = service.runtime.connections.writers().values()
    await connector.ensure_fields()
    state.webhooks.transport = httpx.ASGITransport(app=service.app)
    state.webhooks.subscribe(
        Subscription(
            target_url=f"{PUBLIC_URL}/webhooks/hubspot", client_secret=HUBSPOT_SECRET, batch_ms=0
        )
    )
    crm = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox),
        base_url=HUBSPOT_API,
        headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
    )
    company = (
        await crm.post("/crm/v3/objects/companies", json={"properties": {"name": "Acme"}})
    ).json()["id"]
    contact = await crm.post(
        "/crm/v3/objects/contacts",
        json={
            "properties": {"email": "ceo@acme.test", "jobtitle": "Chief Executive Officer"},
            "associations": [_link(company, CONTACT_TO_COMPANY)],
        },
    )
    email = await crm.post(
        "/crm/v3/objects/emails",
        json={
            "properties": {
                "hs_timestamp": "2026-11-20T10:00:00.000Z",
                "hs_email_direction": "INCOMING_EMAIL",
            },
            "associations": [
                _link(company, EMAIL_TO_COMPANY),
                _link(contact.json()["id"], EMAIL_TO_CONTACT),
            ],
        },
    )
    await crm.aclose()
    assert (contact.status_code, email.status_code) == (201, 201)
    await state.webhooks.drain()
    assert all(attempt.delivered for attempt in state.webhooks.log)

    await service.runtime.pipeline.run_once()

    record = state.companies[company]
    # A customer-initiated email from the CEO: the executive is engaged (the job title came
    # from the hydrated contact), one contact is not yet "many people".
    assert (record["health_score"], record["health_band"]) == ("67", "neutral")
    assert record["health_collaboration"] == "67"
    assert record["health_drivers"] == "Contacts engaged (90d) 1 (at-risk <= 1)"
    reads = [r.path for r in state.requests if r.path.endswith("/batch/read")]
    assert "/crm/v3/objects/contacts/batch/read" in reads
    assert "/crm/v3/objects/emails/batch/read" in reads
    writes = [r for r in state.requests if r.path.endswith("/batch/update")]
    assert len(writes) == 1

    # HubSpot reports our own write as property changes: they must not start a loop.
    await state.webhooks.drain()
    await service.runtime.pipeline.run_once()
    assert len([r for r in state.requests if r.path.endswith("/batch/update")]) == 1
