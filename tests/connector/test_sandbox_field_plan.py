"""The sandbox under a field plan: the HubSpot connector provisions a configuration's
properties in it, writes and reads a custom signal's score, and its webhooks and reads carry
the sentiment picklists and configured reads like any company property."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from connector.base import (
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    FieldPlan,
    RecordUpdate,
)
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.events import parse_batch
from connector.hubspot.hydrate import plan_event
from connector.model import AccountAttributes
from connector.sandbox import SandboxState, create_sandbox_app
from connector.sandbox.outbound import Subscription

API = "http://sandbox.test"
TARGET = "http://plugin.test/webhooks/hubspot"


def _plan(reasons: tuple[str, ...] = ("champion left", "budget cut")) -> FieldPlan:
    return FieldPlan(
        scores=(
            ConfiguredField(
                neutral="health_renewal_risk", label="Health: Renewal risk", description="Risk."
            ),
        ),
        inputs=(
            ConfiguredField(
                neutral=SENTIMENT_FIELD,
                label="CSM sentiment",
                description="Red, amber or green.",
                options=SENTIMENT_RATINGS,
            ),
            ConfiguredField(
                neutral=SENTIMENT_REASON_FIELD,
                label="CSM sentiment reason",
                description="Why.",
                options=reasons,
            ),
        ),
        reads=("numberofemployees", "no_such_property"),
    )


@pytest.fixture
def state() -> SandboxState:
    sandbox = SandboxState()
    sandbox.limits.configure(window_max=100_000)
    return sandbox


@pytest.fixture
async def connector(state: SandboxState) -> AsyncIterator[HubSpotConnector]:
    hubspot = HubSpotConnector.create(
        connection="sandbox",
        access_token="pat-sandbox",
        api_base=API,
        rate_limit=None,
        transport=httpx.ASGITransport(app=create_sandbox_app(state)),
    )
    hubspot.plan_fields(_plan())
    yield hubspot
    await hubspot.aclose()


async def test_the_sandbox_takes_the_plans_properties_and_an_edited_picklist(
    state: SandboxState, connector: HubSpotConnector
) -> None:
    await connector.ensure_fields()
    assert state.properties["health_renewal_risk"]["type"] == "number"
    sentiment = state.properties[SENTIMENT_FIELD]
    assert (sentiment["fieldType"], sentiment["groupName"]) == ("select", "customer_health")
    assert [option["value"] for option in sentiment["options"]] == list(SENTIMENT_RATINGS)

    connector.plan_fields(_plan(("champion left", "merger")))
    report = await connector.ensure_fields()

    assert report.updated == [SENTIMENT_REASON_FIELD]
    reason = state.properties[SENTIMENT_REASON_FIELD]
    assert [(o["label"], o["value"]) for o in reason["options"]] == [
        ("Champion left", "champion left"),
        ("Merger", "merger"),
    ]
    assert await connector.missing_health_fields() == []


async def test_a_custom_signals_score_is_written_to_and_read_from_the_sandbox(
    state: SandboxState, connector: HubSpotConnector
) -> None:
    await connector.ensure_fields()
    company = state.add_company({"name": "Acme"})

    result = await connector.write_health(
        [RecordUpdate(record_id=company, fields={"health_renewal_risk": 64.0})]
    )

    assert result.written == {company}
    assert state.companies[company]["health_renewal_risk"] == "64"
    held = await connector.read_health([company])
    assert held[company]["health_renewal_risk"] == "64"


async def test_a_sentiment_set_in_the_sandbox_is_delivered_and_read_like_any_property(
    state: SandboxState, connector: HubSpotConnector
) -> None:
    await connector.ensure_fields()
    company = state.add_company({"name": "Acme", "numberofemployees": 40})
    delivered: list[dict[str, Any]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        delivered.extend(json.loads(request.content))
        return httpx.Response(204)

    state.webhooks.transport = httpx.MockTransport(receive)
    state.webhooks.subscribe(Subscription(target_url=TARGET, client_secret="s", batch_ms=0))

    # A person in HubSpot's UI: the sandbox checks the value against the picklist's options.
    with pytest.raises(ValueError, match="allowed options"):
        state.update_object("companies", company, {SENTIMENT_FIELD: "purple"})
    state.update_object("companies", company, {SENTIMENT_FIELD: "amber"})
    await state.webhooks.drain()

    [event] = parse_batch(json.dumps(delivered).encode())
    assert (event.subscription_type, event.property_name) == (
        "company.propertyChange",
        SENTIMENT_FIELD,
    )
    plan = plan_event(event, connector.hydration)
    assert plan is not None
    [change] = plan.events
    assert isinstance(change, AccountAttributes)
    assert change.attributes == {SENTIMENT_FIELD: "amber"}

    page = await connector.list_backfill_page(object_type="companies", after=None)
    [(_, listed)] = page.events
    assert isinstance(listed, AccountAttributes)
    assert listed.attributes[SENTIMENT_FIELD] == "amber"
    assert listed.attributes[SENTIMENT_REASON_FIELD] is None
    assert listed.attributes["property:numberofemployees"] == "40"
    assert "property:no_such_property" not in listed.attributes
