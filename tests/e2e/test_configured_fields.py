"""End to end against the HubSpot sandbox, nothing mocked: fields that come from the admin's
configuration. The worker provisions a custom signal's property and the CSM sentiment
picklists before the first write that needs them; a number a CSM keeps on the company
(`nps_score`) flows in through a signed webhook and becomes a custom indicator, written back
as the custom signal's property; a CSM picks "red" on the record and the band is capped until
the sentiment ends; a CRM that refuses the new property holds the write-backs, loses none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.outbound import Subscription
from connector.sandbox.state import SandboxState
from signals.config import HealthConfig
from testkit import (
    HUBSPOT_API,
    HUBSPOT_SECRET,
    HUBSPOT_TOKEN,
    PUBLIC_URL,
    RECENCY_ONLY,
    native,
    store_native,
)
from webhooks.store import configs, writeback
from webhooks.store.models import SentimentFact
from webhooks.worker import fields

CONFIG: dict[str, Any] = {
    **RECENCY_ONLY,
    "custom_signals": [{"name": "voice", "label": "Customer voice", "weight": 1}],
    "custom_indicators": [
        {
            "name": "nps_in_crm",
            "label": "NPS on the company",
            "signal": "voice",
            "source": {"kind": "crm_property", "hubspot": "nps_score", "value": "number"},
            "at_risk": 0,
            "healthy": 50,
            "optional": True,
        }
    ],
    "sentiment": {"mode": "cap", "crm_field": True, "reasons": ["champion left", "budget cut"]},
}


async def _world(service_factory: Any) -> tuple[Any, SandboxState, httpx.AsyncClient, str]:
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
    # The portal's own property, which a survey tool fills in.
    created = await crm.post(
        "/crm/v3/properties/companies",
        json={
            "name": "nps_score", "label": "NPS", "type": "number", "fieldType": "number",
            "groupName": "companyinformation",
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text
    company = (
        await crm.post("/crm/v3/objects/companies", json={"properties": {"name": "Acme"}})
    ).json()["id"]
    await store_native(service.runtime, [native("usage", company, days_ago=1, user="u1")])
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(
            session,
            config=HealthConfig.model_validate(CONFIG),
            author="test",
            comment="the customer's and the CSM's voice",
            now=datetime.now(UTC) - timedelta(minutes=1),
        )
    return service, state, crm, company


async def _settle(service: Any, state: SandboxState) -> None:
    """Deliver the sandbox's webhooks, then let the worker do everything due."""
    for _ in range(5):
        await state.webhooks.drain()
        while await service.runtime.pipeline.run_once():
            pass


async def test_configured_fields_are_provisioned_written_and_read_back(service_factory) -> None:
    service, state, crm, company = await _world(service_factory)
    await _settle(service, state)

    definitions = state.properties
    assert definitions["health_voice"]["label"] == "Health: Customer voice"
    assert [o["value"] for o in definitions["health_csm_sentiment"]["options"]] == [
        "red", "amber", "green",
    ]  # fmt: skip
    assert [o["label"] for o in definitions["health_csm_sentiment_reason"]["options"]] == [
        "Champion left", "Budget cut",
    ]  # fmt: skip
    record = state.companies[company]
    # No NPS on the company yet: the custom signal has no data, its field stays empty.
    assert record.get("health_voice") in (None, "")
    assert record["health_band"] == "healthy"

    # A survey tool writes the NPS onto the company: the webhook brings it in.
    await crm.patch(
        f"/crm/v3/objects/companies/{company}", json={"properties": {"nps_score": "21"}}
    )
    await _settle(service, state)
    assert state.companies[company]["health_voice"] == "42"  # 21 of a healthy 50

    # The CSM picks red, then the reason, on the record.
    await crm.patch(
        f"/crm/v3/objects/companies/{company}",
        json={"properties": {"health_csm_sentiment": "red"}},
    )
    await crm.patch(
        f"/crm/v3/objects/companies/{company}",
        json={"properties": {"health_csm_sentiment_reason": "champion left"}},
    )
    await _settle(service, state)
    record = state.companies[company]
    assert record["health_band"] == "at_risk", "the sentiment caps the band"
    assert str(record["health_drivers"]).startswith(
        "CSM: red, champion left (the CRM record, until "
    )
    # Our own write of the health fields comes back as webhooks: no sentiment is renewed.
    async with service.runtime.sessions() as session:
        rows = (await session.execute(SentimentFact.__table__.select())).all()
    assert [(row.rating, row.reason) for row in rows] == [
        ("red", None),
        ("red", "champion left"),
    ]
    assert state.companies[company].get("health_csm_sentiment") == "red", "never written"
    await crm.aclose()


async def test_a_crm_refusing_the_new_fields_holds_the_write_backs_and_loses_none(
    service_factory, monkeypatch
) -> None:
    # Retried on every pass instead of a minute later: the test needs no clock.
    monkeypatch.setattr(fields, "PROVISION_RETRY_SECONDS", 0.0)
    service, state, crm, company = await _world(service_factory)
    # The token lost its schema scope: HubSpot refuses to create the properties.
    state.faults.fail_next(
        100,
        status=403,
        path_contains="/crm/v3/properties/companies",
        method="POST",
        body={"status": "error", "category": "MISSING_SCOPES", "message": "missing scopes"},
    )
    await _settle(service, state)
    assert "health_voice" not in state.properties
    assert "health_band" not in state.companies[company], "nothing written without the fields"
    async with service.runtime.sessions() as session:
        waiting = await writeback.count_by_status(session)
    assert waiting, "the health is staged"
    assert "written" not in waiting, waiting

    state.faults.clear()  # the admin granted the scope again
    await _settle(service, state)
    assert "health_voice" in state.properties
    assert state.companies[company]["health_band"] == "healthy", "the held health went out"
    await crm.aclose()
