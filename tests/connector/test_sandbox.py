"""The HubSpot-compatible sandbox answers like HubSpot, injects faults and records calls."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from connector.hubspot.api import HubSpotConnector
from connector.sandbox import SandboxState, create_sandbox_app
from connector.sandbox.seed import SEEDED_OWNERS

BATCH_UPDATE = "/crm/v3/objects/companies/batch/update"
TOKEN = "pat-sandbox-token"


@pytest.fixture
def state() -> SandboxState:
    return SandboxState()


@pytest.fixture
async def client(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


def _assert_hubspot_error(body: dict[str, object], category: str) -> None:
    assert body["status"] == "error"
    assert body["category"] == category
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["correlationId"], str)


def _validation_results(body: dict[str, object]) -> list[dict[str, object]]:
    message = body["message"]
    assert isinstance(message, str)
    prefix = "Property values were not valid: "
    assert message.startswith(prefix)
    results: list[dict[str, object]] = json.loads(message.removeprefix(prefix))
    return results


# --- companies -------------------------------------------------------------------------------


async def test_list_pages_through_companies_with_the_after_cursor(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    ids = [state.add_company({"name": f"Company {n}"}) for n in range(5)]

    first = (await client.get("/crm/v3/objects/companies", params={"limit": 2})).json()
    cursor = first["paging"]["next"]["after"]
    second = (
        await client.get("/crm/v3/objects/companies", params={"limit": 2, "after": cursor})
    ).json()
    third = (
        await client.get(
            "/crm/v3/objects/companies",
            params={"limit": 2, "after": second["paging"]["next"]["after"]},
        )
    ).json()

    seen = [r["id"] for page in (first, second, third) for r in page["results"]]
    assert seen == ids
    assert "after=" in first["paging"]["next"]["link"]
    assert "paging" not in third
    assert first["results"][0]["properties"]["name"] == "Company 0"
    assert set(first["results"][0]) == {"id", "properties", "createdAt", "updatedAt", "archived"}


async def test_list_returns_only_asked_properties_plus_system_ones(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.add_company({"name": "Acme", "domain": "acme.test", "city": "Oslo"})

    response = await client.get(
        "/crm/v3/objects/companies", params={"properties": "city,industry,nosuch"}
    )

    properties = response.json()["results"][0]["properties"]
    assert set(properties) == {
        "city",
        "industry",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }
    assert properties["city"] == "Oslo"
    assert properties["industry"] is None


async def test_get_unknown_company_answers_404_in_hubspot_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/crm/v3/objects/companies/999")

    assert response.status_code == 404
    _assert_hubspot_error(response.json(), "OBJECT_NOT_FOUND")


async def test_create_company_answers_201_with_the_new_object(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/crm/v3/objects/companies", json={"properties": {"name": "Acme", "numberofemployees": 40}}
    )

    assert response.status_code == 201
    created = response.json()
    assert created["properties"]["numberofemployees"] == "40"
    fetched = (await client.get(f"/crm/v3/objects/companies/{created['id']}")).json()
    assert fetched["properties"]["name"] == "Acme"


async def test_batch_update_of_existing_companies_answers_200_and_moves_updated_at(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    first = state.add_company({"name": "Acme"})
    second = state.add_company({"name": "Globex"})
    before = (await client.get(f"/crm/v3/objects/companies/{first}")).json()["updatedAt"]

    response = await client.post(
        BATCH_UPDATE,
        json={
            "inputs": [
                {"id": first, "properties": {"city": "Oslo"}},
                {"id": second, "properties": {"numberofemployees": "12"}},
            ]
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETE"
    assert {"startedAt", "completedAt"} <= set(body)
    assert "errors" not in body
    assert [r["id"] for r in body["results"]] == [first, second]
    assert state.companies[first]["city"] == "Oslo"
    after = body["results"][0]["updatedAt"]
    assert after > before
    assert state.companies[first]["hs_lastmodifieddate"] == after


async def test_batch_update_with_unchanged_values_keeps_updated_at(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme", "city": "Oslo"})
    before = state.companies[company]["hs_lastmodifieddate"]

    await client.post(
        BATCH_UPDATE, json={"inputs": [{"id": company, "properties": {"city": "Oslo"}}]}
    )

    assert state.companies[company]["hs_lastmodifieddate"] == before


async def test_batch_update_with_empty_string_clears_the_property(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme", "city": "Oslo"})

    await client.post(BATCH_UPDATE, json={"inputs": [{"id": company, "properties": {"city": ""}}]})

    fetched = await client.get(
        f"/crm/v3/objects/companies/{company}", params={"properties": "city"}
    )
    assert fetched.json()["properties"]["city"] is None


async def test_batch_update_answer_echoes_values_as_strings_and_a_cleared_one_as_empty(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme", "city": "Oslo"})

    response = await client.post(
        BATCH_UPDATE,
        json={
            "inputs": [
                {
                    "id": company,
                    "properties": {"city": "", "numberofemployees": 42, "annualrevenue": None},
                }
            ]
        },
    )

    properties = response.json()["results"][0]["properties"]
    assert properties["city"] == ""
    assert properties["annualrevenue"] == ""
    assert properties["numberofemployees"] == "42"


async def test_batch_update_with_a_missing_id_answers_207_with_object_not_found(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    response = await client.post(
        BATCH_UPDATE,
        json={
            "inputs": [
                {"id": company, "properties": {"city": "Oslo"}},
                {"id": "424242", "properties": {"city": "Bergen"}},
            ]
        },
    )

    assert response.status_code == 207
    body = response.json()
    assert body["status"] == "COMPLETE"
    assert body["numErrors"] == 1
    assert [r["id"] for r in body["results"]] == [company]
    error = body["errors"][0]
    assert error["category"] == "OBJECT_NOT_FOUND"
    assert error["context"] == {"ids": ["424242"]}
    assert state.companies[company]["city"] == "Oslo"


async def test_batch_update_with_an_undefined_property_answers_400_naming_it(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    response = await client.post(
        BATCH_UPDATE, json={"inputs": [{"id": company, "properties": {"health_score": "71"}}]}
    )

    assert response.status_code == 400
    body = response.json()
    _assert_hubspot_error(body, "VALIDATION_ERROR")
    [result] = _validation_results(body)
    assert result["error"] == "PROPERTY_DOESNT_EXIST"
    assert result["name"] == "health_score"
    assert body["errors"][0]["context"] == {"propertyName": ["health_score"]}


async def test_batch_update_with_a_non_number_for_a_number_property_answers_400(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    response = await client.post(
        BATCH_UPDATE,
        json={"inputs": [{"id": company, "properties": {"numberofemployees": "many"}}]},
    )

    assert response.status_code == 400
    [result] = _validation_results(response.json())
    assert result["name"] == "numberofemployees"
    assert "not a valid number" in str(result["message"])


async def test_batch_update_with_a_value_outside_the_options_answers_400_invalid_option(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    response = await client.post(
        BATCH_UPDATE, json={"inputs": [{"id": company, "properties": {"industry": "BAKERY"}}]}
    )

    assert response.status_code == 400
    [result] = _validation_results(response.json())
    assert result["error"] == "INVALID_OPTION"
    assert "was not one of the allowed options" in str(result["message"])


async def test_batch_update_with_one_bad_value_changes_nothing(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    await client.post(
        BATCH_UPDATE,
        json={
            "inputs": [
                {"id": company, "properties": {"city": "Oslo"}},
                {"id": company + "0", "properties": {"nosuch": "x"}},
            ]
        },
    )

    assert "city" not in state.companies[company]


async def test_batch_update_with_more_than_100_inputs_answers_400(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    inputs = [{"id": str(n), "properties": {"city": "Oslo"}} for n in range(101)]

    response = await client.post(BATCH_UPDATE, json={"inputs": inputs})

    assert response.status_code == 400
    _assert_hubspot_error(response.json(), "VALIDATION_ERROR")
    assert "city" not in state.companies[company]


async def test_batch_update_with_duplicate_ids_answers_400(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    response = await client.post(
        BATCH_UPDATE,
        json={"inputs": [{"id": company, "properties": {}}, {"id": company, "properties": {}}]},
    )

    assert response.status_code == 400
    assert "Duplicate IDs" in response.json()["message"]


async def test_batch_update_without_inputs_answers_400(client: httpx.AsyncClient) -> None:
    response = await client.post(BATCH_UPDATE, json={"properties": {}})

    assert response.status_code == 400
    _assert_hubspot_error(response.json(), "VALIDATION_ERROR")


async def test_non_json_body_answers_400_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        BATCH_UPDATE, content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    _assert_hubspot_error(response.json(), "VALIDATION_ERROR")


async def test_batch_read_answers_207_for_missing_ids(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme", "city": "Oslo"})

    response = await client.post(
        "/crm/v3/objects/companies/batch/read",
        json={"inputs": [{"id": company}, {"id": "777"}], "properties": ["city"]},
    )

    assert response.status_code == 207
    body = response.json()
    assert body["results"][0]["properties"]["city"] == "Oslo"
    assert body["errors"][0]["context"] == {"ids": ["777"]}


# --- property definitions and groups ---------------------------------------------------------

HEALTH_SCORE = {
    "name": "health_score",
    "label": "Health score",
    "type": "number",
    "fieldType": "number",
    "groupName": "companyinformation",
}


async def test_property_create_answers_201_then_409_for_the_same_name(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/crm/v3/properties/companies", json=HEALTH_SCORE)
    again = await client.post("/crm/v3/properties/companies", json=HEALTH_SCORE)

    assert created.status_code == 201
    assert created.json()["name"] == "health_score"
    assert created.json()["hubspotDefined"] is False
    assert again.status_code == 409
    _assert_hubspot_error(again.json(), "OBJECT_ALREADY_EXISTS")
    fetched = await client.get("/crm/v3/properties/companies/health_score")
    assert fetched.json()["type"] == "number"


async def test_created_property_accepts_values_in_batch_update(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    await client.post("/crm/v3/properties/companies", json=HEALTH_SCORE)

    response = await client.post(
        BATCH_UPDATE, json={"inputs": [{"id": company, "properties": {"health_score": 71.5}}]}
    )

    assert response.status_code == 200
    assert state.companies[company]["health_score"] == "71.5"


async def test_property_create_with_an_incompatible_field_type_answers_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/crm/v3/properties/companies", json={**HEALTH_SCORE, "fieldType": "text"}
    )

    assert response.status_code == 400
    _assert_hubspot_error(response.json(), "VALIDATION_ERROR")


async def test_property_create_in_an_unknown_group_answers_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/crm/v3/properties/companies", json={**HEALTH_SCORE, "groupName": "customer_health"}
    )

    assert response.status_code == 400
    assert "customer_health" in response.json()["message"]


async def test_enumeration_property_without_options_answers_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/crm/v3/properties/companies",
        json={**HEALTH_SCORE, "name": "health_band", "type": "enumeration", "fieldType": "select"},
    )

    assert response.status_code == 400


async def test_unknown_property_definition_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/crm/v3/properties/companies/nosuch")

    assert response.status_code == 404
    _assert_hubspot_error(response.json(), "OBJECT_NOT_FOUND")


async def test_property_patch_replaces_label_and_options(client: httpx.AsyncClient) -> None:
    band = {
        **HEALTH_SCORE,
        "name": "health_band",
        "type": "enumeration",
        "fieldType": "select",
        "options": [{"label": "Healthy", "value": "healthy", "hidden": False}],
    }
    await client.post("/crm/v3/properties/companies", json=band)

    response = await client.patch(
        "/crm/v3/properties/companies/health_band",
        json={
            "label": "Health band",
            "options": [
                {"label": "Healthy", "value": "healthy", "hidden": False},
                {"label": "At risk", "value": "at_risk", "hidden": False},
            ],
        },
    )

    assert response.status_code == 200
    assert response.json()["label"] == "Health band"
    assert [o["value"] for o in response.json()["options"]] == ["healthy", "at_risk"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_option_without_hidden_answers_400_naming_it(
    client: httpx.AsyncClient, method: str
) -> None:
    band = {
        **HEALTH_SCORE,
        "name": "health_band",
        "type": "enumeration",
        "fieldType": "select",
        "options": [{"label": "Healthy", "value": "healthy", "hidden": False}],
    }
    await client.post("/crm/v3/properties/companies", json=band)
    unhidden = [{"label": "Healthy", "value": "healthy", "displayOrder": 0}]

    if method == "POST":
        response = await client.post(
            "/crm/v3/properties/companies",
            json={**band, "name": "health_band_2", "options": unhidden},
        )
    else:
        response = await client.patch(
            "/crm/v3/properties/companies/health_band", json={"options": unhidden}
        )

    assert response.status_code == 400
    _assert_hubspot_error(response.json(), "VALIDATION_ERROR")
    assert "options[0].hidden" in response.json()["message"]


async def test_property_group_create_answers_201_and_is_listed_then_409(
    client: httpx.AsyncClient,
) -> None:
    group = {"name": "customer_health", "label": "Customer health", "displayOrder": 5}

    created = await client.post("/crm/v3/properties/companies/groups", json=group)
    listed = await client.get("/crm/v3/properties/companies/groups")
    again = await client.post("/crm/v3/properties/companies/groups", json=group)

    assert created.status_code == 201
    assert created.json() == {**group, "archived": False}
    assert "customer_health" in [g["name"] for g in listed.json()["results"]]
    assert again.status_code == 409


# --- auth ------------------------------------------------------------------------------------


async def _token_client(state: SandboxState, headers: dict[str, str]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_sandbox_app(state, access_token=TOKEN))
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox", headers=headers)


async def test_missing_bearer_token_answers_401_when_a_token_is_set(state: SandboxState) -> None:
    async with await _token_client(state, {}) as client:
        response = await client.get("/crm/v3/objects/companies")

    assert response.status_code == 401
    _assert_hubspot_error(response.json(), "INVALID_AUTHENTICATION")
    assert state.requests[-1].status == 401


async def test_wrong_bearer_token_answers_401(state: SandboxState) -> None:
    async with await _token_client(state, {"Authorization": "Bearer nope"}) as client:
        response = await client.get("/crm/v3/objects/companies")

    assert response.status_code == 401


async def test_right_bearer_token_is_let_through(state: SandboxState) -> None:
    async with await _token_client(state, {"Authorization": f"Bearer {TOKEN}"}) as client:
        response = await client.get("/crm/v3/objects/companies")

    assert response.status_code == 200


# --- faults and recording --------------------------------------------------------------------


async def test_forced_503_fault_answers_once_then_normal(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.faults.fail_next(1, 503, retry_after=2)

    failed = await client.get("/crm/v3/objects/companies")
    normal = await client.get("/crm/v3/objects/companies")

    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "2"
    assert failed.json()["status"] == "error"
    assert normal.status_code == 200
    assert [(r.status, r.forced) for r in state.requests] == [(503, True), (200, False)]


async def test_forced_429_fault_carries_hubspot_rate_limit_body(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.faults.fail_next(2, 429, retry_after="1", path_contains="/batch/")

    listed = await client.get("/crm/v3/objects/companies")
    limited = await client.post(BATCH_UPDATE, json={"inputs": []})

    assert listed.status_code == 200
    assert limited.status_code == 429
    assert limited.json()["category"] == "RATE_LIMITS"
    assert limited.json()["errorType"] == "RATE_LIMIT"
    assert state.faults.forced[0].remaining == 1


async def test_latency_fault_delays_every_call_and_is_recorded(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.faults.latency_seconds = 0.05

    started = time.monotonic()
    response = await client.get("/crm/v3/objects/companies")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.05
    assert state.requests[-1].latency_seconds == 0.05


async def test_every_crm_call_is_recorded_with_method_path_query_body_and_status(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})

    await client.get("/crm/v3/objects/companies", params={"limit": 1})
    await client.post(BATCH_UPDATE, json={"inputs": [{"id": company, "properties": {}}]})
    await client.get("/crm/v3/nosuch")

    recorded = [(r.method, r.path, r.query, r.json, r.status) for r in state.requests]
    assert recorded == [
        ("GET", "/crm/v3/objects/companies", {"limit": "1"}, None, 200),
        ("POST", BATCH_UPDATE, {}, {"inputs": [{"id": company, "properties": {}}]}, 200),
        ("GET", "/crm/v3/nosuch", {}, None, 404),
    ]


async def test_control_surface_injects_faults_and_reads_requests_since_an_index(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/crm/v3/objects/companies")
    set_faults = await client.post(
        "/_sandbox/faults", json={"status": 503, "count": 1, "retry_after": 3}
    )
    failed = await client.get("/crm/v3/objects/companies")

    recorded = (await client.get("/_sandbox/requests", params={"since": 1})).json()

    assert set_faults.json()["forced"][0]["retry_after"] == "3"
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "3"
    assert recorded["total"] == 2
    assert [(r["index"], r["status"], r["forced"]) for r in recorded["requests"]] == [
        (1, 503, True)
    ]


async def test_control_surface_clears_faults_and_resets_state(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.add_company({"name": "Acme"})
    await client.post(
        "/_sandbox/faults", json={"latency_seconds": 1, "status": 500, "always": True}
    )

    cleared = await client.delete("/_sandbox/faults")
    reset = await client.post("/_sandbox/reset")

    assert cleared.json() == {"latency_seconds": 0.0, "forced": []}
    assert reset.status_code == 204
    assert state.companies == {}
    assert state.requests == []
    assert "companyinformation" in state.groups


async def test_add_company_refuses_undefined_properties(state: SandboxState) -> None:
    with pytest.raises(ValueError, match="PROPERTY_DOESNT_EXIST"):
        state.add_company({"health_score": "80"})


# --- contacts, engagements, tickets and associations ----------------------------------------


async def test_contact_list_carries_company_associations_in_hubspot_shape_when_asked(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    primary = state.add_company({"name": "Acme"})
    other = state.add_company({"name": "Globex"})
    contact = state.add_object("contacts", {"firstname": "Ada"}, {"companies": [primary, other]})

    response = await client.get("/crm/v3/objects/contacts", params={"associations": "companies"})

    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["id"] == contact
    # The primary company comes twice (primary label and unlabeled), as HubSpot lists it.
    assert result["associations"] == {
        "companies": {
            "results": [
                {"id": primary, "type": "contact_to_company"},
                {"id": primary, "type": "contact_to_company_unlabeled"},
                {"id": other, "type": "contact_to_company_unlabeled"},
            ]
        }
    }


async def test_associations_are_left_out_unless_asked_for(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    state.add_object("notes", {"hs_timestamp": "2026-01-05T10:00:00Z"}, {"companies": [company]})

    listed = (await client.get("/crm/v3/objects/notes")).json()
    no_contacts = (
        await client.get("/crm/v3/objects/notes", params={"associations": "contacts"})
    ).json()

    assert "associations" not in listed["results"][0]
    assert "associations" not in no_contacts["results"][0]


async def test_engagement_associations_use_hubspot_type_names(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    contact = state.add_object("contacts", {"email": "ada@acme.test"}, {"companies": [company]})
    meeting = state.add_object(
        "meetings",
        {"hs_timestamp": "2026-01-05T10:00:00Z", "hs_meeting_source": "MEETINGS_PUBLIC"},
        {"companies": [company], "contacts": [contact]},
    )

    response = await client.get(
        f"/crm/v3/objects/meetings/{meeting}",
        params={"associations": "companies,contacts", "properties": "hs_meeting_source"},
    )

    body = response.json()
    assert body["properties"]["hs_meeting_source"] == "MEETINGS_PUBLIC"
    assert body["associations"] == {
        "companies": {"results": [{"id": company, "type": "meeting_event_to_company"}]},
        "contacts": {"results": [{"id": contact, "type": "meeting_event_to_contact"}]},
    }


async def test_company_lists_its_contacts_and_tickets_from_the_other_side(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme"})
    contact = state.add_object("contacts", {"email": "ada@acme.test"}, {"companies": [company]})
    ticket = state.add_object("tickets", {"subject": "Login fails"}, {"companies": [company]})

    response = await client.get(
        "/crm/v3/objects/companies", params={"associations": ["contacts", "tickets"]}
    )

    associations = response.json()["results"][0]["associations"]
    assert associations["contacts"]["results"] == [
        {"id": contact, "type": "company_to_contact"},
        {"id": contact, "type": "company_to_contact_unlabeled"},
    ]
    assert associations["tickets"]["results"] == [{"id": ticket, "type": "company_to_ticket"}]


async def test_list_pages_through_calls_with_the_after_cursor(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    ids = [
        state.add_object("calls", {"hs_timestamp": f"2026-01-0{n + 1}T09:00:00Z"}) for n in range(3)
    ]

    first = (await client.get("/crm/v3/objects/calls", params={"limit": 2})).json()
    cursor = first["paging"]["next"]["after"]
    second = (
        await client.get("/crm/v3/objects/calls", params={"limit": 2, "after": cursor})
    ).json()

    assert [r["id"] for r in first["results"] + second["results"]] == ids
    assert "paging" not in second


async def test_each_type_answers_with_its_own_default_and_system_properties(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    contact = state.add_object(
        "contacts", {"firstname": "Ada", "jobtitle": "CTO", "email": "ada@acme.test"}
    )
    email = state.add_object("emails", {"hs_timestamp": "2026-01-05T10:00:00Z"})

    contact_body = (await client.get(f"/crm/v3/objects/contacts/{contact}")).json()
    email_body = (
        await client.get(f"/crm/v3/objects/emails/{email}", params={"properties": "hs_timestamp"})
    ).json()

    assert set(contact_body["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    assert contact_body["updatedAt"] == contact_body["properties"]["lastmodifieddate"]
    assert set(email_body["properties"]) == {
        "hs_timestamp",
        "hs_createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }
    assert email_body["createdAt"] == email_body["properties"]["hs_createdate"]


async def test_ticket_defaults_include_priority_and_a_settable_createdate(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    ticket = state.add_object(
        "tickets",
        {
            "subject": "Export broken",
            "hs_ticket_priority": "HIGH",
            "createdate": "2026-01-01T00:00:00.000Z",
        },
    )

    body = (await client.get(f"/crm/v3/objects/tickets/{ticket}")).json()

    assert body["properties"]["hs_ticket_priority"] == "HIGH"
    assert body["properties"]["subject"] == "Export broken"
    assert body["createdAt"] == "2026-01-01T00:00:00.000Z"


async def test_unknown_object_type_answers_400_unable_to_infer(client: httpx.AsyncClient) -> None:
    listed = await client.get("/crm/v3/objects/widgets")
    fetched = await client.get("/crm/v3/objects/widgets/1")

    for response in (listed, fetched):
        assert response.status_code == 400
        _assert_hubspot_error(response.json(), "VALIDATION_ERROR")
        assert response.json()["message"] == "Unable to infer object type from: widgets"


async def test_unknown_association_type_answers_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/crm/v3/objects/contacts", params={"associations": "false"})

    assert response.status_code == 400
    assert response.json()["message"] == "Unable to infer object type from: false"


async def test_get_unknown_contact_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/crm/v3/objects/contacts/999")

    assert response.status_code == 404
    _assert_hubspot_error(response.json(), "OBJECT_NOT_FOUND")


async def test_add_object_refuses_a_value_outside_the_options(state: SandboxState) -> None:
    with pytest.raises(ValueError, match="INVALID_OPTION"):
        state.add_object("calls", {"hs_call_direction": "SIDEWAYS"})


async def test_add_object_refuses_an_association_to_a_missing_record(
    state: SandboxState,
) -> None:
    with pytest.raises(ValueError, match="No companies with id"):
        state.add_object("contacts", {"firstname": "Ada"}, {"companies": ["404"]})
    assert state.objects["contacts"] == {}


async def test_add_object_refuses_an_unknown_type(state: SandboxState) -> None:
    with pytest.raises(ValueError, match="Unknown object type"):
        state.add_object("products", {})


async def test_update_object_moves_updated_at_only_when_a_value_changes(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    contact = state.add_object("contacts", {"jobtitle": "Engineer"})
    before = (await client.get(f"/crm/v3/objects/contacts/{contact}")).json()["updatedAt"]

    unchanged = state.update_object("contacts", contact, {"jobtitle": "Engineer"})
    changed = state.update_object("contacts", contact, {"jobtitle": "CTO"})

    after = (await client.get(f"/crm/v3/objects/contacts/{contact}")).json()["updatedAt"]
    assert (unchanged, changed) == (False, True)
    assert after > before


async def test_object_routes_get_faults_and_are_recorded(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.faults.fail_next(1, 503, path_contains="/objects/emails")

    failed = await client.get("/crm/v3/objects/emails", params={"associations": "companies"})
    companies = await client.get("/crm/v3/objects/companies")
    normal = await client.get("/crm/v3/objects/emails", params={"associations": "companies"})

    assert (failed.status_code, companies.status_code, normal.status_code) == (503, 200, 200)
    assert [(r.path, r.query, r.status, r.forced) for r in state.requests] == [
        ("/crm/v3/objects/emails", {"associations": "companies"}, 503, True),
        ("/crm/v3/objects/companies", {}, 200, False),
        ("/crm/v3/objects/emails", {"associations": "companies"}, 200, False),
    ]


async def test_reset_clears_objects_and_associations(state: SandboxState) -> None:
    company = state.add_company({"name": "Acme"})
    state.add_object("tickets", {"subject": "Broken"}, {"companies": [company]})

    state.reset()

    assert all(records == {} for records in state.objects.values())
    assert all(links == {} for links in state.links.values())
    assert "hs_ticket_priority" in state.definitions["tickets"]


def test_timestamps_are_strictly_increasing_within_one_millisecond() -> None:
    now = [datetime(2026, 1, 1, 12, 0, 0, 100, tzinfo=UTC)]
    sandbox = SandboxState(clock=lambda: now[0])

    stamps = [sandbox.timestamp()]
    now[0] = now[0].replace(microsecond=900)  # same millisecond, later
    stamps.append(sandbox.timestamp())
    now[0] = now[0].replace(microsecond=500)  # the clock stepped back
    stamps.append(sandbox.timestamp())

    # Three distinct, increasing values (the constructor may already have taken one).
    assert stamps == sorted(set(stamps))
    assert len(stamps) == 3


# --- owners ----------------------------------------------------------------------------------


async def test_the_sandbox_has_owners_with_emails_the_connector_reads(
    state: SandboxState,
) -> None:
    listed = httpx.ASGITransport(app=create_sandbox_app(state))
    async with httpx.AsyncClient(transport=listed, base_url="http://sandbox") as client:
        owners = (await client.get("/crm/v3/owners")).json()["results"]
        missing = await client.get("/crm/v3/owners/1")
    assert len(owners) == len(SEEDED_OWNERS)
    assert all(owner["email"].endswith("@example.com") for owner in owners)
    assert missing.status_code == 404
    _assert_hubspot_error(missing.json(), "OBJECT_NOT_FOUND")

    connector = HubSpotConnector.create(
        connection="sandbox",
        access_token=TOKEN,
        api_base="http://sandbox",
        transport=httpx.ASGITransport(app=create_sandbox_app(state)),
    )
    try:
        owner = await connector.read_owner(SEEDED_OWNERS[0][0])
        unknown = await connector.read_owner("1")
    finally:
        await connector.aclose()
    assert owner is not None
    assert (owner.email, owner.name) == ("alex.kim@example.com", "Alex Kim")
    assert unknown is None


async def test_a_company_can_be_assigned_to_a_seeded_owner(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    company = state.add_company({"name": "Acme", "hubspot_owner_id": SEEDED_OWNERS[1][0]})
    answer = await client.get(
        f"/crm/v3/objects/companies/{company}", params={"properties": "hubspot_owner_id"}
    )
    assert answer.json()["properties"]["hubspot_owner_id"] == SEEDED_OWNERS[1][0]


async def test_the_root_lists_what_the_sandbox_emulates_and_holds(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.create_company({"name": "Acme"})
    response = await client.get("/")
    assert response.status_code == 200
    body = response.json()
    hubspot = {item["path"]: item["methods"] for item in body["hubspot_endpoints"]}
    assert hubspot["/crm/v3/objects/{object_type}"] == ["GET", "POST"]
    assert "/crm/v3/properties/companies" in hubspot
    assert all(not path.startswith("/_sandbox") for path in hubspot)
    assert "/_sandbox/faults" in {item["path"] for item in body["control_endpoints"]}
    assert body["data"]["records"]["companies"] == 1
    assert [owner["id"] for owner in body["data"]["owners"]] == [o[0] for o in SEEDED_OWNERS]
    assert body["authentication"] == "none"
