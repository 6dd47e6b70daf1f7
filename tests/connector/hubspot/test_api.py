"""HubSpot API calls, mocked at the transport with respx."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import respx

from connector.base import HEALTH_FIELDS, CRMOwner, RecordUpdate, TaskRequest
from connector.errors import CRMRequestRejected
from connector.http import RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.fields import PROPERTIES

API = "https://hubspot.api.test"


@pytest.fixture
async def connector():
    hubspot = HubSpotConnector.create(
        connection="t", access_token="tok", api_base=API, policy=RetryPolicy(max_attempts=1)
    )
    yield hubspot
    await hubspot.aclose()


@respx.mock
async def test_write_health_sends_one_batch_update_with_string_values(connector) -> None:
    route = respx.post(f"{API}/crm/v3/objects/companies/batch/update").respond(
        200, json={"status": "COMPLETE", "results": [{"id": "1"}, {"id": "2"}]}
    )
    result = await connector.write_health(
        [
            RecordUpdate(record_id="1", fields={"health_score": 80, "health_band": "healthy"}),
            RecordUpdate(record_id="2", fields={"health_score": None, "health_trend_30d": 5.0}),
        ]
    )
    assert result.written == {"1", "2"}
    assert not result.failed
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content) == {
        "inputs": [
            {"id": "1", "properties": {"health_score": "80", "health_band": "healthy"}},
            {"id": "2", "properties": {"health_score": "", "health_trend_30d": "5"}},
        ]
    }


@respx.mock
async def test_multi_status_answer_marks_only_the_named_records_not_found(connector) -> None:
    respx.post(f"{API}/crm/v3/objects/companies/batch/update").respond(
        207,
        json={
            "status": "COMPLETE",
            "results": [{"id": "1"}],
            "numErrors": 1,
            "errors": [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some COMPANY objects, they may be deleted.",
                    "context": {"ids": ["2"]},
                }
            ],
        },
    )
    result = await connector.write_health(
        [RecordUpdate(record_id="1", fields={}), RecordUpdate(record_id="2", fields={})]
    )
    assert result.written == {"1"}
    assert "may be deleted" in result.missing["2"]
    assert result.failed == {}


@respx.mock
async def test_a_404_for_the_whole_batch_marks_every_record_not_found(connector) -> None:
    respx.post(f"{API}/crm/v3/objects/companies/batch/update").respond(
        404, json={"status": "error", "category": "OBJECT_NOT_FOUND", "message": "not found"}
    )
    result = await connector.write_health([RecordUpdate(record_id="999999", fields={})])
    assert set(result.missing) == {"999999"}


@respx.mock
async def test_record_missing_from_the_answer_is_not_assumed_written(connector) -> None:
    respx.post(f"{API}/crm/v3/objects/companies/batch/update").respond(200, json={"results": []})
    result = await connector.write_health([RecordUpdate(record_id="9", fields={})])
    assert result.failed == {"9": "not confirmed in HubSpot's batch response"}


async def test_more_than_100_records_is_refused_before_calling(connector) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        await connector.write_health(
            [RecordUpdate(record_id=str(i), fields={}) for i in range(101)]
        )


@respx.mock
async def test_validation_error_raises_rejected_with_hubspot_message(connector) -> None:
    respx.post(f"{API}/crm/v3/objects/companies/batch/update").respond(
        400, json={"status": "error", "category": "VALIDATION_ERROR", "message": "bad"}
    )
    with pytest.raises(CRMRequestRejected) as caught:
        await connector.write_health([RecordUpdate(record_id="1", fields={})])
    assert caught.value.status == 400
    assert "VALIDATION_ERROR" in caught.value.body


@respx.mock
async def test_ensure_fields_creates_group_and_missing_properties_only(connector) -> None:
    respx.get(f"{API}/crm/v3/properties/companies/groups").respond(
        200, json={"results": [{"name": "companyinformation"}]}
    )
    create_group = respx.post(f"{API}/crm/v3/properties/companies/groups").respond(201, json={})
    existing = PROPERTIES[0].definition()
    respx.get(f"{API}/crm/v3/properties/companies").respond(200, json={"results": [existing]})
    create = respx.post(f"{API}/crm/v3/properties/companies").respond(201, json={})
    report = await connector.ensure_fields()
    assert create_group.call_count == 1
    assert create.call_count == len(PROPERTIES) - 1
    assert report.unchanged == [PROPERTIES[0].name]
    created = {json.loads(call.request.content)["name"] for call in create.calls}
    assert PROPERTIES[0].name not in created


@respx.mock
async def test_ensure_fields_updates_a_property_whose_options_drifted(connector) -> None:
    band = next(spec for spec in PROPERTIES if spec.name == "health_band")
    drifted = {**band.definition(), "options": [{"value": "healthy", "label": "Healthy"}]}
    others = [spec.definition() for spec in PROPERTIES if spec.name != "health_band"]
    respx.get(f"{API}/crm/v3/properties/companies/groups").respond(
        200, json={"results": [{"name": "customer_health"}]}
    )
    respx.get(f"{API}/crm/v3/properties/companies").respond(
        200, json={"results": [drifted, *others]}
    )
    patch = respx.patch(f"{API}/crm/v3/properties/companies/health_band").respond(200, json={})
    report = await connector.ensure_fields()
    assert report.updated == ["health_band"]
    assert not report.created
    assert [o["value"] for o in json.loads(patch.calls.last.request.content)["options"]] == [
        "healthy", "neutral", "at_risk", "unknown", "onboarding",
    ]  # fmt: skip


def test_every_health_field_has_a_hubspot_property() -> None:
    assert {spec.name for spec in PROPERTIES} == set(HEALTH_FIELDS)


@respx.mock
async def test_a_task_is_created_on_the_company_for_its_owner(connector) -> None:
    route = respx.post(f"{API}/crm/v3/objects/tasks").respond(
        201, json={"id": "9001", "properties": {}, "createdAt": "2026-11-23T12:00:00.000Z"}
    )
    task_id = await connector.create_task(
        TaskRequest(
            record_id="101",
            subject="Acme turned at risk",
            body="Score 38 (was 61)",
            due_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            owner_id="64492917",
        )
    )

    assert task_id == "9001"
    assert json.loads(route.calls.last.request.content) == {
        "properties": {
            "hs_timestamp": "2026-11-24T09:00:00.000Z",
            "hs_task_subject": "Acme turned at risk",
            "hs_task_body": "Score 38 (was 61)",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "TODO",
            "hubspot_owner_id": "64492917",
        },
        "associations": [
            {
                "to": {"id": "101"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}],
            }
        ],
    }


@respx.mock
async def test_a_tasks_notes_are_escaped_for_hubspots_html(connector) -> None:
    """HubSpot renders task notes as HTML: a company named like a link must stay text."""
    route = respx.post(f"{API}/crm/v3/objects/tasks").respond(201, json={"id": 6})
    await connector.create_task(
        TaskRequest(
            record_id="7",
            subject="s",
            body='<a href="https://evil.example/phish">Re-verify</a> & Co\nScore 38',
            due_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )

    sent = json.loads(route.calls.last.request.content)["properties"]["hs_task_body"]
    assert sent == (
        "&lt;a href=&quot;https://evil.example/phish&quot;&gt;Re-verify&lt;/a&gt; &amp; Co"
        "<br>Score 38"
    )


@respx.mock
async def test_a_task_without_an_owner_is_left_unassigned(connector) -> None:
    route = respx.post(f"{API}/crm/v3/objects/tasks").respond(201, json={"id": 5})
    task_id = await connector.create_task(
        TaskRequest(
            record_id="7",
            subject="s",
            body="b",
            due_at=datetime(2026, 1, 1, tzinfo=UTC),
            priority="medium",
        )
    )

    sent = json.loads(route.calls.last.request.content)["properties"]
    assert task_id == "5"
    assert "hubspot_owner_id" not in sent
    assert sent["hs_task_priority"] == "MEDIUM"


@respx.mock
async def test_a_property_created_meanwhile_by_another_process_is_not_an_error(connector) -> None:
    respx.get(f"{API}/crm/v3/properties/companies/groups").respond(
        200, json={"results": [{"name": "customer_health"}]}
    )
    respx.get(f"{API}/crm/v3/properties/companies").respond(200, json={"results": []})
    respx.post(f"{API}/crm/v3/properties/companies").respond(
        409, json={"status": "error", "category": "OBJECT_ALREADY_EXISTS", "message": "exists"}
    )

    report = await connector.ensure_fields()

    assert not report.created
    assert len(report.unchanged) == len(PROPERTIES)


# --- owners --------------------------------------------------------------------------------


@respx.mock
async def test_read_owner_gives_the_owners_email_and_full_name(connector) -> None:
    route = respx.get(f"{API}/crm/v3/owners/41629779").respond(
        200,
        json={
            "id": "41629779",
            "email": "email@hubspot.test",
            "type": "PERSON",
            "firstName": "HubSpot",
            "lastName": "Test Owner",
            "userId": 9586504,
            "archived": False,
        },
    )
    owner = await connector.read_owner("41629779")
    assert owner == CRMOwner(
        owner_id="41629779", email="email@hubspot.test", name="HubSpot Test Owner"
    )
    assert route.calls.last.request.url.params["idProperty"] == "id"


@respx.mock
async def test_an_owner_hubspot_does_not_know_is_none(connector) -> None:
    respx.get(f"{API}/crm/v3/owners/1").respond(
        404, json={"status": "error", "category": "OBJECT_NOT_FOUND", "message": "not found"}
    )
    assert await connector.read_owner("1") is None


@respx.mock
async def test_an_owner_id_that_is_no_number_is_not_asked_for(connector) -> None:
    assert await connector.read_owner("../objects/companies") is None
    assert not respx.calls


@respx.mock
async def test_reading_owners_without_the_scope_raises_the_rejection(connector) -> None:
    respx.get(f"{API}/crm/v3/owners/5").respond(403, json={"category": "MISSING_SCOPES"})
    with pytest.raises(CRMRequestRejected):
        await connector.read_owner("5")
