"""The HubSpot connector under a field plan: the properties a configuration adds provisioned,
its custom signal scores written and read back, its reads and input picklists carried by
webhooks and reads; HubSpot mocked at the transport with respx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import respx

from connector.base import (
    HEALTH_FIELDS,
    NO_FIELD_PLAN,
    SENTIMENT_AUTHOR_ATTRIBUTE,
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    CRMConnector,
    FieldPlan,
    FieldsInspector,
    RecordUpdate,
)
from connector.crm import CRMInbound
from connector.http import RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.decode import decode
from connector.hubspot.fields import PROPERTIES, planned_properties
from connector.model import AccountAttributes, ContactUpsert

API = "https://hubspot.plan.test"
PROPERTIES_PATH = f"{API}/crm/v3/properties/companies"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
UPDATED = "2026-11-23T11:00:00.000Z"

RENEWAL_RISK = ConfiguredField(
    neutral="health_renewal_risk",
    label="Health: Renewal risk",
    description="Renewal risk: a custom signal, 0 (at risk) to 100.",
)
SENTIMENT = ConfiguredField(
    neutral=SENTIMENT_FIELD,
    label="CSM sentiment",
    description="The CSM's judgement of the account.",
    options=SENTIMENT_RATINGS,
)
REASONS = ("champion left", "poor ROI", "budget cut")
REASON = ConfiguredField(
    neutral=SENTIMENT_REASON_FIELD,
    label="CSM sentiment reason",
    description="Why the CSM set the sentiment.",
    options=REASONS,
)
PLAN = FieldPlan(scores=(RENEWAL_RISK,), inputs=(SENTIMENT, REASON), reads=("nps_score",))


@pytest.fixture
async def connector() -> AsyncIterator[HubSpotConnector]:
    hubspot = HubSpotConnector.create(
        connection="t", access_token="tok", api_base=API, policy=RetryPolicy(max_attempts=1)
    )
    yield hubspot
    await hubspot.aclose()


def _portal(*definitions: dict[str, Any]) -> respx.Route:
    """A portal with the health group and `definitions`; returns the create-property route."""
    respx.get(f"{PROPERTIES_PATH}/groups").respond(
        200, json={"results": [{"name": "customer_health"}]}
    )
    respx.get(PROPERTIES_PATH).respond(200, json={"results": list(definitions)})
    return respx.post(PROPERTIES_PATH).respond(201, json={})


def _fixed_definitions() -> list[dict[str, Any]]:
    return [spec.definition() for spec in PROPERTIES]


# --- the plan itself ---------------------------------------------------------------------------


@respx.mock(assert_all_mocked=True)
async def test_a_connector_starts_without_a_plan_and_taking_one_calls_nothing(
    connector: HubSpotConnector,
) -> None:
    assert connector.field_plan is NO_FIELD_PLAN
    connector.plan_fields(PLAN)
    assert connector.field_plan == PLAN
    assert connector.hydration.field_plan == PLAN
    assert not respx.calls
    protocol: CRMConnector = connector
    assert isinstance(protocol, FieldsInspector)


def test_an_empty_plan_has_exactly_the_fixed_properties() -> None:
    assert planned_properties(NO_FIELD_PLAN) == PROPERTIES


# --- provisioning ------------------------------------------------------------------------------


@respx.mock
async def test_provisioning_creates_the_plans_score_and_picklist_properties(
    connector: HubSpotConnector,
) -> None:
    connector.plan_fields(PLAN)
    create = _portal(*_fixed_definitions())

    report = await connector.ensure_fields()

    assert report.created == ["health_renewal_risk", SENTIMENT_FIELD, SENTIMENT_REASON_FIELD]
    assert report.unchanged == list(HEALTH_FIELDS)
    score, sentiment, reason = (json.loads(call.request.content) for call in create.calls)
    assert score == {
        "name": "health_renewal_risk",
        "label": "Health: Renewal risk",
        "type": "number",
        "fieldType": "number",
        "groupName": "customer_health",
        "description": "Renewal risk: a custom signal, 0 (at risk) to 100.",
    }
    assert (sentiment["type"], sentiment["fieldType"]) == ("enumeration", "select")
    assert sentiment["groupName"] == "customer_health"
    assert sentiment["options"] == [
        {"label": label, "value": value, "displayOrder": order, "hidden": False}
        for order, (label, value) in enumerate(
            [("Red", "red"), ("Amber", "amber"), ("Green", "green")]
        )
    ]
    assert [(o["label"], o["value"]) for o in reason["options"]] == [
        ("Champion left", "champion left"),
        ("Poor ROI", "poor ROI"),
        ("Budget cut", "budget cut"),
    ]


@respx.mock
async def test_provisioning_updates_a_picklist_whose_reasons_were_edited(
    connector: HubSpotConnector,
) -> None:
    before = FieldPlan(scores=PLAN.scores, inputs=(SENTIMENT, REASON))
    existing = [spec.definition() for spec in planned_properties(before)]
    edited = ConfiguredField(
        neutral=SENTIMENT_REASON_FIELD,
        label=REASON.label,
        description=REASON.description,
        options=("champion left", "budget cut", "merger"),
    )
    connector.plan_fields(FieldPlan(scores=PLAN.scores, inputs=(SENTIMENT, edited)))
    create = _portal(*existing)
    patch = respx.patch(f"{PROPERTIES_PATH}/{SENTIMENT_REASON_FIELD}").respond(200, json={})

    report = await connector.ensure_fields()

    assert report.updated == [SENTIMENT_REASON_FIELD]
    assert not report.created
    assert not create.called
    sent = json.loads(patch.calls.last.request.content)
    assert list(sent) == ["options"]
    assert [option["value"] for option in sent["options"]] == [
        "champion left",
        "budget cut",
        "merger",
    ]


@respx.mock
async def test_the_doctor_reports_the_plans_properties_the_portal_lacks(
    connector: HubSpotConnector,
) -> None:
    connector.plan_fields(PLAN)
    _portal(*_fixed_definitions())
    assert await connector.missing_health_fields() == [
        "health_renewal_risk",
        SENTIMENT_FIELD,
        SENTIMENT_REASON_FIELD,
    ]


@respx.mock
async def test_an_empty_plan_provisions_only_the_fixed_properties(
    connector: HubSpotConnector,
) -> None:
    connector.plan_fields(NO_FIELD_PLAN)
    create = _portal()
    report = await connector.ensure_fields()
    assert report.created == list(HEALTH_FIELDS)
    assert create.call_count == len(HEALTH_FIELDS)


# --- writing and reading health ----------------------------------------------------------------


@respx.mock
async def test_a_custom_signals_score_is_written_and_read_back(
    connector: HubSpotConnector,
) -> None:
    connector.plan_fields(PLAN)
    update = respx.post(f"{API}/crm/v3/objects/companies/batch/update").respond(
        200, json={"status": "COMPLETE", "results": [{"id": "1"}]}
    )
    read = respx.post(f"{API}/crm/v3/objects/companies/batch/read").respond(
        200,
        json={
            "status": "COMPLETE",
            "results": [
                {
                    "id": "1",
                    "properties": {
                        "health_score": "80",
                        "health_renewal_risk": "64",
                        SENTIMENT_FIELD: "red",
                    },
                    "createdAt": UPDATED,
                    "updatedAt": UPDATED,
                    "archived": False,
                }
            ],
        },
    )

    result = await connector.write_health(
        [RecordUpdate(record_id="1", fields={"health_score": 80, "health_renewal_risk": 64.0})]
    )
    held = await connector.read_health(["1"])

    assert result.written == {"1"}
    assert json.loads(update.calls.last.request.content)["inputs"] == [
        {"id": "1", "properties": {"health_score": "80", "health_renewal_risk": "64"}}
    ]
    assert json.loads(read.calls.last.request.content)["properties"] == [
        *HEALTH_FIELDS,
        "health_renewal_risk",
    ]
    assert held["1"]["health_renewal_risk"] == "64"
    assert list(held["1"]) == [*HEALTH_FIELDS, "health_renewal_risk"], "inputs are never health"
    assert connector.stored_health({"health_renewal_risk": 64.0}) == {
        **dict.fromkeys(HEALTH_FIELDS),
        "health_renewal_risk": "64",
    }


@pytest.mark.parametrize(
    ("plan", "name"),
    [
        (NO_FIELD_PLAN, "health_renewal_risk"),
        (PLAN, SENTIMENT_FIELD),
        (PLAN, "health_unheard_of"),
    ],
    ids=["score-outside-the-plan", "an-input", "unknown"],
)
@respx.mock(assert_all_mocked=True)
async def test_a_field_outside_the_plans_written_ones_is_refused_before_any_call(
    connector: HubSpotConnector, plan: FieldPlan, name: str
) -> None:
    connector.plan_fields(plan)
    with pytest.raises(ValueError, match=name):
        await connector.write_health([RecordUpdate(record_id="1", fields={name: 1})])
    with pytest.raises(ValueError, match=name):
        connector.stored_health({name: 1})
    assert not respx.calls


# --- webhooks decoded under the plan -----------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: int
    payload: dict[str, Any]
    kind: str = "hubspot"
    body: str | None = None
    received_at: datetime = NOW


@dataclass(frozen=True)
class Target:
    connector: CRMConnector | None
    name: str = "t"
    crm_settings: CRMInbound | None = None


def _payload(
    subscription_type: str, object_id: int, event_id: int, **fields: Any
) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "portalId": 62515,
        "occurredAt": int(NOW.timestamp() * 1000),
        "subscriptionType": subscription_type,
        "objectId": object_id,
        **fields,
    }


def _record(record_id: str, **properties: str | None) -> dict[str, Any]:
    return {
        "id": record_id,
        "properties": properties,
        "createdAt": UPDATED,
        "updatedAt": UPDATED,
        "archived": False,
    }


@respx.mock
async def test_webhooks_decode_with_the_plans_inputs_author_and_reads(
    connector: HubSpotConnector,
) -> None:
    connector.plan_fields(PLAN)

    def batch_read(request: Any, object_type: str) -> Any:
        body = json.loads(request.content)
        if object_type == "contacts":
            return respx.MockResponse(200, json={"results": [_record("77", jobtitle="CEO")]})
        # The portal has no `nps_score` property (mistyped in the configuration): HubSpot
        # leaves it out of the answer, as it does any name it does not know.
        assert "nps_score" in body["properties"]
        company = _record("1234", name="Acme", health_csm_sentiment="green")
        return respx.MockResponse(200, json={"results": [company]})

    respx.post(url__regex=rf"^{API}/crm/v3/objects/(?P<object_type>\w+)/batch/read$").mock(
        side_effect=batch_read
    )
    respx.post(f"{API}/crm/v4/associations/contacts/companies/batch/read").respond(
        200, json={"results": [{"from": {"id": "77"}, "to": [{"toObjectId": 1234}]}]}
    )
    rows = [
        Row(1, _payload("company.creation", 1234, 1)),
        Row(2, _payload("contact.creation", 77, 2)),
        Row(
            3,
            _payload(
                "company.propertyChange",
                1234,
                3,
                propertyName=SENTIMENT_REASON_FIELD,
                propertyValue="poor ROI",
                changeSource="CRM_UI",
                sourceId="userId:123",
            ),
        ),
        Row(4, _payload("company.propertyChange", 1234, 4, propertyName="nps_score")),
    ]

    decoded = await decode(rows, Target(connector=connector))

    assert (decoded.dead, decoded.failed, decoded.unavailable) == ({}, {}, {})
    [created] = decoded.events[1]
    assert isinstance(created, AccountAttributes)
    assert created.attributes["name"] == "Acme"
    assert created.attributes[SENTIMENT_FIELD] == "green"
    assert "property:nps_score" not in created.attributes
    assert decoded.events[2] == [
        ContactUpsert(
            account="1234",
            at=datetime(2026, 11, 23, 11, tzinfo=UTC),
            contact="77",
            title="CEO",
            executive=True,
        )
    ]
    assert decoded.events[3] == [
        AccountAttributes(
            account="1234",
            at=NOW,
            attributes={
                SENTIMENT_REASON_FIELD: "poor ROI",
                SENTIMENT_AUTHOR_ATTRIBUTE: "HubSpot user 123",
            },
        )
    ]
    assert decoded.events[4] == [
        AccountAttributes(account="1234", at=NOW, attributes={"property:nps_score": None})
    ]
