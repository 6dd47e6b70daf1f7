"""Sandbox writes and batch reads for every object type, v3 create associations, v4 reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from connector.sandbox import SandboxState, create_sandbox_app

NOON = "2026-01-05T12:00:00Z"
TASK_TO_COMPANY = 192
CONTACT_TO_COMPANY_PRIMARY = 1


@pytest.fixture
def state() -> SandboxState:
    return SandboxState()


@pytest.fixture
async def client(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


def _assert_validation_error(response: httpx.Response, *names: str) -> None:
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == "VALIDATION_ERROR"
    assert isinstance(body["correlationId"], str)
    for name in names:
        assert name in body["message"]


def _association(to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


# --- batch read --------------------------------------------------------------------------------


async def test_batch_read_of_contacts_answers_207_naming_the_missing_ids(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    contact = state.add_object("contacts", {"firstname": "Ada", "email": "ada@acme.test"})

    response = await client.post(
        "/crm/v3/objects/contacts/batch/read",
        json={"properties": ["email"], "inputs": [{"id": contact}, {"id": "404"}]},
    )

    assert response.status_code == 207
    body = response.json()
    assert body["status"] == "COMPLETE"
    [result] = body["results"]
    assert result["id"] == contact
    assert result["properties"]["email"] == "ada@acme.test"
    assert "firstname" not in result["properties"]
    assert body["numErrors"] == 1
    [error] = body["errors"]
    assert error["category"] == "OBJECT_NOT_FOUND"
    assert "CONTACT objects" in error["message"]
    assert error["context"] == {"ids": ["404"]}
    assert body["startedAt"] <= body["completedAt"]


@pytest.mark.parametrize(
    ("object_type", "properties"),
    [
        ("deals", {"dealname": "Renewal"}),
        ("tickets", {"subject": "Broken"}),
        ("emails", {"hs_timestamp": NOON}),
        ("calls", {"hs_timestamp": NOON}),
        ("meetings", {"hs_timestamp": NOON}),
        ("notes", {"hs_timestamp": NOON}),
        ("tasks", {"hs_timestamp": NOON, "hs_task_subject": "Call back"}),
    ],
)
async def test_batch_read_serves_every_object_type(
    state: SandboxState, client: httpx.AsyncClient, object_type: str, properties: dict[str, str]
) -> None:
    object_id = state.add_object(object_type, properties)

    response = await client.post(
        f"/crm/v3/objects/{object_type}/batch/read",
        json={"properties": list(properties), "inputs": [{"id": object_id}]},
    )

    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["id"] == object_id
    for name, value in properties.items():
        assert result["properties"][name] == value


async def test_batch_read_with_id_property_finds_contacts_by_email(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    contact = state.add_object("contacts", {"email": "ada@acme.test"})

    response = await client.post(
        "/crm/v3/objects/contacts/batch/read",
        json={
            "idProperty": "email",
            "properties": ["firstname"],
            "inputs": [{"id": "ada@acme.test"}, {"id": "bob@acme.test"}],
        },
    )

    assert response.status_code == 207
    body = response.json()
    assert [r["id"] for r in body["results"]] == [contact]
    assert body["results"][0]["properties"]["email"] == "ada@acme.test"
    assert body["errors"][0]["context"] == {"ids": ["bob@acme.test"]}


async def test_batch_read_with_an_unknown_id_property_answers_400_naming_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/crm/v3/objects/contacts/batch/read",
        json={"idProperty": "shoe_size", "inputs": [{"id": "1"}]},
    )

    _assert_validation_error(response, "idProperty", "shoe_size")


async def test_batch_read_with_more_than_100_inputs_answers_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/crm/v3/objects/tasks/batch/read",
        json={"inputs": [{"id": str(n)} for n in range(101)]},
    )

    _assert_validation_error(response, "101")


# --- create ------------------------------------------------------------------------------------


async def test_task_create_with_a_company_association_answers_201_and_links_both_ways(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    properties = {
        "hs_timestamp": NOON,
        "hs_task_subject": "Health dropped: call Acme",
        "hs_task_body": "Score fell to 31",
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH",
        "hubspot_owner_id": "77",
    }

    response = await client.post(
        "/crm/v3/objects/tasks",
        json={"properties": properties, "associations": [_association(company, TASK_TO_COMPANY)]},
    )

    assert response.status_code == 201
    body = response.json()
    task = body["id"]
    assert body["properties"]["hs_task_subject"] == "Health dropped: call Acme"
    assert body["createdAt"] == body["properties"]["hs_createdate"]
    assert body["archived"] is False
    stored = state.objects["tasks"][task]
    assert {name: stored[name] for name in properties} == properties
    from_company = (
        await client.get(f"/crm/v3/objects/companies/{company}", params={"associations": "tasks"})
    ).json()
    assert from_company["associations"]["tasks"]["results"] == [
        {"id": task, "type": "company_to_task"}
    ]


async def test_task_create_without_hs_timestamp_answers_400_naming_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/crm/v3/objects/tasks", json={"properties": {"hs_task_subject": "No date"}}
    )

    _assert_validation_error(response, "hs_timestamp", "REQUIRED_PROPERTY")
    assert response.json()["errors"][0]["context"] == {"propertyName": ["hs_timestamp"]}


async def test_create_with_a_value_outside_the_options_answers_400_naming_the_property(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/crm/v3/objects/tasks",
        json={"properties": {"hs_timestamp": NOON, "hs_task_priority": "URGENT"}},
    )

    _assert_validation_error(response, "hs_task_priority", "INVALID_OPTION")


async def test_create_with_an_association_type_of_another_pair_answers_400_naming_the_field(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    # 190 is note -> company: not a type a task can use.
    response = await client.post(
        "/crm/v3/objects/tasks",
        json={"properties": {"hs_timestamp": NOON}, "associations": [_association(company, 190)]},
    )

    _assert_validation_error(response, "associations[0].types[0].associationTypeId", "190")
    assert state.objects["tasks"] == {}


async def test_create_with_an_association_to_a_missing_record_answers_400_and_creates_nothing(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/crm/v3/objects/tasks",
        json={
            "properties": {"hs_timestamp": NOON},
            "associations": [_association("404", TASK_TO_COMPANY)],
        },
    )

    _assert_validation_error(response, "associations[0].to.id", "404")
    assert state.objects["tasks"] == {}


async def test_create_with_an_association_without_types_answers_400_naming_the_field(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    response = await client.post(
        "/crm/v3/objects/notes",
        json={"properties": {"hs_timestamp": NOON}, "associations": [{"to": {"id": company}}]},
    )

    _assert_validation_error(response, "associations[0].types")


async def test_contact_created_with_the_primary_type_gets_that_company_as_primary(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    other = state.add_company({"name": "Globex"})
    primary = state.add_company({"name": "Acme"})

    response = await client.post(
        "/crm/v3/objects/contacts",
        json={
            "properties": {"email": "ada@acme.test"},
            "associations": [
                _association(other, 279),
                _association(primary, CONTACT_TO_COMPANY_PRIMARY),
            ],
        },
    )

    contact = response.json()["id"]
    assert state.links["contacts"][contact]["companies"] == [primary, other]


@pytest.mark.parametrize(
    ("object_type", "properties"),
    [
        ("companies", {"name": "Acme"}),
        ("contacts", {"email": "ada@acme.test"}),
        ("deals", {"dealname": "Renewal", "amount": "12000"}),
        ("tickets", {"subject": "Broken", "hs_ticket_priority": "HIGH"}),
        ("emails", {"hs_timestamp": NOON, "hs_email_subject": "Hi"}),
        ("calls", {"hs_timestamp": NOON, "hs_call_title": "Check-in"}),
        ("meetings", {"hs_timestamp": NOON, "hs_meeting_title": "QBR"}),
        ("notes", {"hs_timestamp": NOON, "hs_note_body": "Happy"}),
        ("tasks", {"hs_timestamp": NOON, "hs_task_subject": "Follow up"}),
    ],
)
async def test_every_type_is_created_with_post_and_changed_with_patch(
    state: SandboxState, client: httpx.AsyncClient, object_type: str, properties: dict[str, str]
) -> None:
    created = await client.post(f"/crm/v3/objects/{object_type}", json={"properties": properties})
    assert created.status_code == 201
    object_id = created.json()["id"]
    name = next(iter(properties))

    patched = await client.patch(
        f"/crm/v3/objects/{object_type}/{object_id}", json={"properties": {name: "2"}}
    )

    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["properties"][name] == "2"
    assert body["updatedAt"] > created.json()["updatedAt"]
    assert state.objects[object_type][object_id][name] == "2"


async def test_patch_of_a_missing_deal_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(
        "/crm/v3/objects/deals/404", json={"properties": {"dealname": "x"}}
    )

    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"


async def test_patch_of_a_read_only_property_answers_400_naming_it(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    deal = state.add_object("deals", {"dealname": "Renewal"})

    response = await client.patch(
        f"/crm/v3/objects/deals/{deal}", json={"properties": {"hs_lastmodifieddate": NOON}}
    )

    _assert_validation_error(response, "hs_lastmodifieddate", "READ_ONLY_VALUE")


async def test_batch_update_of_contacts_answers_207_for_a_missing_id(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    contact = state.add_object("contacts", {"jobtitle": "Engineer"})

    response = await client.post(
        "/crm/v3/objects/contacts/batch/update",
        json={
            "inputs": [
                {"id": contact, "properties": {"jobtitle": "CTO"}},
                {"id": "404", "properties": {"jobtitle": "CEO"}},
            ]
        },
    )

    assert response.status_code == 207
    assert state.objects["contacts"][contact]["jobtitle"] == "CTO"
    assert response.json()["errors"][0]["context"] == {"ids": ["404"]}


# --- associations v4 ---------------------------------------------------------------------------


async def test_v4_batch_read_lists_associated_ids_with_their_type_ids_and_labels(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    primary = state.add_company({"name": "Acme"})
    other = state.add_company({"name": "Globex"})
    contact = state.add_object("contacts", {"firstname": "Ada"}, {"companies": [primary, other]})

    response = await client.post(
        "/crm/v4/associations/contacts/companies/batch/read", json={"inputs": [{"id": contact}]}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETE"
    assert body["results"] == [
        {
            "from": {"id": contact},
            "to": [
                {
                    "toObjectId": int(primary),
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"},
                        {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None},
                    ],
                },
                {
                    "toObjectId": int(other),
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}
                    ],
                },
            ],
        }
    ]
    assert "errors" not in body
    assert {"startedAt", "completedAt"} <= set(body)


async def test_v4_batch_read_reports_ids_without_associations_as_207_errors(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    lonely = state.add_company({"name": "Initech"})
    task = state.add_object("tasks", {"hs_timestamp": NOON}, {"companies": [company]})

    response = await client.post(
        "/crm/v4/associations/companies/tasks/batch/read",
        json={"inputs": [{"id": company}, {"id": lonely}]},
    )

    assert response.status_code == 207
    body = response.json()
    assert body["results"] == [
        {
            "from": {"id": company},
            "to": [
                {
                    "toObjectId": int(task),
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 191, "label": None}
                    ],
                }
            ],
        }
    ]
    assert body["numErrors"] == 1
    assert body["errors"] == [
        {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "message": f"No task is associated with company {lonely}.",
            "context": {
                "fromObjectId": [lonely],
                "fromObjectType": ["company"],
                "toObjectType": ["task"],
            },
        }
    ]


async def test_v4_batch_read_takes_singular_names_and_object_type_ids(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    note = state.add_object("notes", {"hs_timestamp": NOON}, {"companies": [company]})

    singular = await client.post(
        "/crm/v4/associations/note/company/batch/read", json={"inputs": [{"id": note}]}
    )
    by_id = await client.post(
        "/crm/v4/associations/0-46/0-2/batch/read", json={"inputs": [{"id": int(note)}]}
    )

    assert singular.json()["results"] == by_id.json()["results"]
    [result] = by_id.json()["results"]
    assert result["to"][0]["associationTypes"][0]["typeId"] == 190


async def test_v4_batch_read_of_an_unknown_type_answers_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/crm/v4/associations/contacts/widgets/batch/read", json={"inputs": [{"id": "1"}]}
    )

    _assert_validation_error(response, "widgets")


async def test_v4_batch_read_without_inputs_answers_400_naming_them(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/crm/v4/associations/contacts/companies/batch/read", json={})

    _assert_validation_error(response, "inputs")


# --- control API seeding -----------------------------------------------------------------------


async def test_control_api_seeds_records_with_associations(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = (
        await client.post("/_sandbox/objects/companies", json={"properties": {"name": "Acme"}})
    ).json()["id"]

    response = await client.post(
        "/_sandbox/objects/deals",
        json={"properties": {"dealname": "Renewal"}, "associations": {"companies": [company]}},
    )

    assert response.status_code == 201
    deal = response.json()["id"]
    assert state.links["deals"][deal]["companies"] == [company]
    assert state.requests == []  # control calls are not CRM calls


async def test_control_api_seeding_refuses_a_bad_value_with_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/_sandbox/objects/tickets", json={"properties": {"hs_ticket_priority": "SOMEDAY"}}
    )

    _assert_validation_error(response, "hs_ticket_priority")
