"""Salesforce write-back and task calls, mocked at the transport with respx.

Answers are shaped as the REST API Developer Guide prints them ("Update Records Using sObject
Collections": a list of SaveResults in request order, failed ones without an id; "Create a
Record": `{"id": ..., "success": true, "errors": []}`; error bodies
`[{"message": ..., "errorCode": ...}]`).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from connector.base import (
    HEALTH_FIELDS,
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    ConfiguredField,
    CRMOwner,
    FieldPlan,
    RecordUpdate,
    TaskRequest,
)
from connector.errors import CRMAuthError, CRMRequestRejected, PayloadError
from connector.http import RetryPolicy
from connector.salesforce.api import (
    BATCH_LIMIT,
    RECORD_ERROR_OUTCOMES,
    RecordErrorOutcome,
    SalesforceConnector,
    record_error_outcome,
)

LOGIN = "https://login.salesforce.com"
INSTANCE = "https://example.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v62.0"
COLLECTIONS = f"{DATA}/composite/sobjects"


class FakeAuth(httpx.Auth):
    """What connector.salesforce.auth does to every request: the token, the org's instance."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer 00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog"
        request.url = request.url.copy_with(
            scheme="https", host="example.my.salesforce.com", port=None
        )
        yield request


def make_connector(**overrides) -> SalesforceConnector:
    options = {
        "connection": "t",
        "auth": FakeAuth(),
        "login_url": LOGIN,
        "api_version": "v62.0",
        "policy": RetryPolicy(max_attempts=1),
        "rate_limit": None,
        **overrides,
    }
    return SalesforceConnector.create(**options)


@pytest.fixture
async def connector():
    salesforce = make_connector()
    yield salesforce
    await salesforce.aclose()


def account_id(number: int) -> str:
    return f"001RM{number:010d}AAA"


def ok(record_id: str) -> dict[str, Any]:
    return {"id": record_id, "success": True, "errors": []}


@respx.mock
async def test_a_batch_of_200_is_one_collections_update_with_account_fields(connector) -> None:
    updates = [
        RecordUpdate(
            record_id=account_id(i),
            fields={
                "health_score": 80,
                "health_band": "healthy",
                "health_trend_30d": -2.25,
                "health_drivers": "Seats are well used",
                "health_updated_at": "2026-11-23T10:00:00.000+00:00",
                "health_momentum": None,
            },
        )
        for i in range(BATCH_LIMIT)
    ]
    route = respx.patch(COLLECTIONS).respond(200, json=[ok(update.record_id) for update in updates])
    result = await connector.write_health(updates)
    assert result.written == {update.record_id for update in updates}
    assert not result.failed
    assert not result.rejected
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["authorization"].startswith("Bearer 00D")
    body = json.loads(request.content)
    assert body["allOrNone"] is False
    assert len(body["records"]) == BATCH_LIMIT
    assert body["records"][0] == {
        "attributes": {"type": "Account"},
        "id": account_id(0),
        "Health_Score__c": 80,
        "Health_Band__c": "healthy",
        "Health_Trend_30d__c": -2.2,
        "Health_Drivers__c": "Seats are well used",
        "Health_Updated_At__c": "2026-11-23T10:00:00.000Z",
        "Health_Momentum__c": None,
    }


async def test_more_than_200_records_is_refused_before_calling(connector) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.patch(COLLECTIONS)
        with pytest.raises(ValueError, match="at most 200"):
            await connector.write_health(
                [RecordUpdate(record_id=account_id(i), fields={}) for i in range(201)]
            )
        assert not route.called


async def test_an_empty_batch_sends_nothing(connector) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.patch(COLLECTIONS)
        result = await connector.write_health([])
        assert not route.called
    assert result.written == set()


@respx.mock
async def test_documented_partial_failure_maps_by_position_into_failed_and_rejected(
    connector,
) -> None:
    # The guide's "Some Items Failed and allOrNone is false" answer, with more failures of the
    # same shape: failed SaveResults carry no id, so only their position names the record.
    respx.patch(COLLECTIONS).respond(
        200,
        json=[
            {"id": "001RM000003oCprYAE", "success": True, "errors": []},
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "MALFORMED_ID",
                        "message": "Contact ID: id value of incorrect type: 001xx000003DGb2999",
                        "fields": ["Id"],
                    }
                ],
            },
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "UNABLE_TO_LOCK_ROW",
                        "message": "unable to obtain exclusive access to this record",
                        "fields": [],
                    }
                ],
            },
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "ENTITY_IS_DELETED",
                        "message": "entity is deleted",
                        "fields": [],
                    }
                ],
            },
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "SOMETHING_NEW_IN_WINTER_28",
                        "message": "a code nobody has seen yet",
                        "fields": [],
                    }
                ],
            },
        ],
    )
    sent = ["001RM000003oCprYAE", "001xx000003DGb2999", "001RM0000001", "001RM0000002", "001RM3"]
    result = await connector.write_health([RecordUpdate(record_id=i, fields={}) for i in sent])
    assert result.written == {"001RM000003oCprYAE"}
    # No such Account (an id of nothing, a deleted record): marked not found, not retried.
    assert result.missing == {
        "001xx000003DGb2999": (
            "MALFORMED_ID: Contact ID: id value of incorrect type: 001xx000003DGb2999 (fields: Id)"
        ),
        "001RM0000002": "ENTITY_IS_DELETED: entity is deleted",
    }
    assert result.rejected == {}
    assert result.failed == {
        "001RM0000001": "UNABLE_TO_LOCK_ROW: unable to obtain exclusive access to this record",
        "001RM3": "SOMETHING_NEW_IN_WINTER_28: a code nobody has seen yet",
    }


@respx.mock
async def test_all_or_none_rollback_is_retried(connector) -> None:
    # The guide's "Some Items Failed and allOrNone is true" answer: the rolled-back record was
    # fine and is worth another try; the malformed one is not.
    respx.patch(COLLECTIONS).respond(
        200,
        json=[
            {
                "id": "001RM000003oCprYAE",
                "success": False,
                "errors": [
                    {
                        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "message": "Record rolled back because not all records were valid and "
                        "the request was using AllOrNone header",
                        "fields": [],
                    }
                ],
            },
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "MALFORMED_ID",
                        "message": "Contact ID: id value of incorrect type: 001xx000003DGb2999",
                        "fields": ["Id"],
                    }
                ],
            },
        ],
    )
    result = await connector.write_health(
        [
            RecordUpdate(record_id="001RM000003oCprYAE", fields={}),
            RecordUpdate(record_id="001xx000003DGb2999", fields={}),
        ]
    )
    assert set(result.failed) == {"001RM000003oCprYAE"}
    assert set(result.missing) == {"001xx000003DGb2999"}


@respx.mock
async def test_record_missing_from_the_answer_is_not_assumed_written(connector) -> None:
    respx.patch(COLLECTIONS).respond(200, json=[ok("001RM000003oCprYAE")])
    result = await connector.write_health(
        [
            RecordUpdate(record_id="001RM000003oCprYAE", fields={"health_score": 1}),
            RecordUpdate(record_id="001RM000003oCprZAE", fields={"health_score": 2}),
        ]
    )
    assert result.written == {"001RM000003oCprYAE"}
    assert result.failed == {"001RM000003oCprZAE": "not confirmed in Salesforce's answer"}


@respx.mock
async def test_a_save_result_for_another_record_is_not_believed(connector) -> None:
    respx.patch(COLLECTIONS).respond(200, json=[ok("001RM000009zzzzAAA")])
    result = await connector.write_health([RecordUpdate(record_id="001RM000003oCpr", fields={})])
    assert result.failed == {"001RM000003oCpr": "not confirmed in Salesforce's answer"}


@respx.mock
async def test_an_18_character_answer_confirms_a_15_character_id(connector) -> None:
    respx.patch(COLLECTIONS).respond(200, json=[ok("001RM000003oCprYAE")])
    result = await connector.write_health([RecordUpdate(record_id="001RM000003oCpr", fields={})])
    assert result.written == {"001RM000003oCpr"}


@respx.mock
async def test_an_answer_that_is_not_a_list_is_a_payload_error(connector) -> None:
    respx.patch(COLLECTIONS).respond(200, json={"hasErrors": False, "results": []})
    with pytest.raises(PayloadError, match="not a list"):
        await connector.write_health([RecordUpdate(record_id="001RM000003oCpr", fields={})])


@respx.mock
async def test_a_refused_request_raises_with_salesforce_error_code(connector) -> None:
    respx.patch(COLLECTIONS).respond(
        400,
        json=[
            {
                "message": "No such column 'Health_Score__c' on sobject of type Account",
                "errorCode": "INVALID_FIELD",
            }
        ],
    )
    with pytest.raises(CRMRequestRejected) as caught:
        await connector.write_health(
            [RecordUpdate(record_id="001RM000003oCpr", fields={"health_score": 5})]
        )
    assert caught.value.status == 400
    assert "INVALID_FIELD" in caught.value.body


async def test_an_unknown_health_field_is_a_programming_error(connector) -> None:
    with pytest.raises(ValueError, match="not a health field"):
        await connector.write_health(
            [RecordUpdate(record_id="001RM000003oCpr", fields={"health_mood": 3})]
        )


@pytest.mark.parametrize(
    ("codes", "outcome"),
    [
        (["UNABLE_TO_LOCK_ROW"], RecordErrorOutcome.FAILED),
        (["REQUEST_RUNNING_TOO_LONG"], RecordErrorOutcome.FAILED),
        (["ALL_OR_NONE_OPERATION_ROLLED_BACK"], RecordErrorOutcome.FAILED),
        (["UNKNOWN_EXCEPTION"], RecordErrorOutcome.FAILED),
        (["ENTITY_IS_DELETED"], RecordErrorOutcome.REJECTED),
        (["INVALID_CROSS_REFERENCE_KEY"], RecordErrorOutcome.REJECTED),
        (["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"], RecordErrorOutcome.REJECTED),
        (["FIELD_CUSTOM_VALIDATION_EXCEPTION"], RecordErrorOutcome.REJECTED),
        (["INSUFFICIENT_ACCESS_OR_READONLY"], RecordErrorOutcome.REJECTED),
        (["STRING_TOO_LONG"], RecordErrorOutcome.REJECTED),
        (["NEVER_SEEN_BEFORE"], RecordErrorOutcome.FAILED),
        (["STRING_TOO_LONG", "UNABLE_TO_LOCK_ROW"], RecordErrorOutcome.FAILED),
        ([], RecordErrorOutcome.FAILED),
    ],
)
def test_error_codes_are_sorted_by_whether_retrying_can_help(codes, outcome) -> None:
    assert record_error_outcome(codes) is outcome


def test_the_error_table_names_salesforce_status_codes_only() -> None:
    assert all(code.isupper() and " " not in code for code in RECORD_ERROR_OUTCOMES)


@respx.mock
async def test_create_task_posts_a_task_on_the_account_and_returns_its_id(connector) -> None:
    route = respx.post(f"{DATA}/sobjects/Task").respond(
        201, json={"id": "00TD000000IqhSLIAZ", "errors": [], "success": True}
    )
    due = datetime(2026, 12, 1, 20, 30, tzinfo=timezone(timedelta(hours=-5)))
    task_id = await connector.create_task(
        TaskRequest(
            record_id="001D000000IqhSLIAZ",
            subject="Acme turned at risk",
            body="Seat use fell to 20%.",
            due_at=due,
            owner_id="005D0000001AbcdIAC",
            priority="high",
        )
    )
    assert task_id == "00TD000000IqhSLIAZ"
    assert json.loads(route.calls.last.request.content) == {
        "Subject": "Acme turned at risk",
        "Description": "Seat use fell to 20%.",
        # 20:30 at UTC-5 is the next day in UTC.
        "ActivityDate": "2026-12-02",
        "WhatId": "001D000000IqhSLIAZ",
        "OwnerId": "005D0000001AbcdIAC",
        "Priority": "High",
        "Status": "Not Started",
    }


@respx.mock
async def test_a_task_without_owner_leaves_ownership_to_salesforce(connector) -> None:
    route = respx.post(f"{DATA}/sobjects/Task").respond(
        201, json={"id": "00TD000000IqhSMIAZ", "errors": [], "success": True}
    )
    await connector.create_task(
        TaskRequest(
            record_id="001D000000IqhSLIAZ",
            subject="s" * 300,
            body="b",
            due_at=datetime(2026, 12, 1, tzinfo=UTC),
            priority="medium",
        )
    )
    body = json.loads(route.calls.last.request.content)
    assert "OwnerId" not in body
    assert body["Priority"] == "Normal"
    assert len(body["Subject"]) == 255


@respx.mock
async def test_a_task_answer_without_id_is_a_payload_error(connector) -> None:
    respx.post(f"{DATA}/sobjects/Task").respond(201, json={"success": True, "errors": []})
    with pytest.raises(PayloadError, match="no id"):
        await connector.create_task(
            TaskRequest(
                record_id="001D000000IqhSLIAZ",
                subject="s",
                body="b",
                due_at=datetime(2026, 12, 1, tzinfo=UTC),
                priority="low",
            )
        )


async def test_aclose_closes_the_client_and_what_auth_holds() -> None:
    closed: list[str] = []

    async def closing() -> None:
        closed.append("auth")

    salesforce = make_connector(closing=closing)
    await salesforce.aclose()
    assert closed == ["auth"]


async def test_own_user_id_asks_the_auth_and_is_none_without_it(connector) -> None:
    async def user_id() -> str:
        return "005D0000001AbcdIAC"

    salesforce = make_connector(user_id=user_id)
    try:
        assert await salesforce.own_user_id() == "005D0000001AbcdIAC"
        assert await connector.own_user_id() is None
    finally:
        await salesforce.aclose()


@pytest.mark.parametrize(
    ("option", "value"),
    [("api_version", "62.0"), ("permission_set_name", "Customer__Health")],
)
def test_bad_options_are_refused(option, value) -> None:
    with pytest.raises(ValueError, match=option):
        make_connector(**{option: value})


# --- health read-back: sObject Collections GET ("Get Records Using sObject Collections": one item
# per requested id, in order, with `attributes` and the asked fields, null for an id without a
# readable record) -----------------------------------------------------------------------------

ACCOUNTS = f"{COLLECTIONS}/Account"


def account_record(record_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "attributes": {
            "type": "Account",
            "url": f"/services/data/v62.0/sobjects/Account/{record_id}",
        },
        "Id": record_id,
        **fields,
    }


@respx.mock
async def test_health_is_read_with_one_collections_get_naming_ids_and_fields(connector) -> None:
    ids = [account_id(i) for i in range(200)]
    route = respx.get(ACCOUNTS).mock(
        return_value=httpx.Response(
            200, json=[account_record(i, Health_Score__c=70.0) for i in ids]
        )
    )
    read = await connector.read_health(ids)
    assert route.call_count == 1
    params = route.calls.last.request.url.params
    assert params["ids"].split(",") == ids
    assert params["fields"].split(",") == [
        "Id", "Health_Score__c", "Health_Band__c", "Health_Trend_30d__c", "Health_Active_Use__c",
        "Health_Collaboration__c", "Health_Mutual_Value__c", "Health_Momentum__c",
        "Health_Drivers__c", "Health_Updated_At__c",
    ]  # fmt: skip
    assert set(read) == set(ids)
    assert read[ids[0]]["health_score"] == 70.0


@respx.mock
async def test_values_come_back_by_neutral_name_with_empty_text_as_none(connector) -> None:
    one = account_id(1)
    respx.get(ACCOUNTS).mock(
        return_value=httpx.Response(
            200,
            json=[
                account_record(
                    one,
                    Health_Score__c=42.0,
                    Health_Band__c="at_risk",
                    Health_Trend_30d__c=-3.5,
                    Health_Active_Use__c=None,
                    Health_Drivers__c="",
                    Health_Updated_At__c="2026-12-01T10:00:00.000+0000",
                )
            ],
        )
    )
    values = (await connector.read_health([one]))[one]
    assert values["health_score"] == 42.0
    assert values["health_band"] == "at_risk"
    assert values["health_trend_30d"] == -3.5
    assert values["health_active_use"] is None
    assert values["health_drivers"] is None
    assert values["health_collaboration"] is None  # not in the answer at all


@respx.mock
async def test_deleted_accounts_answered_null_are_absent(connector) -> None:
    kept, gone = account_id(1), account_id(2)
    respx.get(ACCOUNTS).mock(
        return_value=httpx.Response(200, json=[account_record(kept, Health_Score__c=5), None])
    )
    assert set(await connector.read_health([kept, gone])) == {kept}


@respx.mock
async def test_a_15_character_id_matches_its_18_character_answer(connector) -> None:
    short = "001RM0000000001"
    respx.get(ACCOUNTS).mock(
        return_value=httpx.Response(200, json=[account_record(short + "AAA", Health_Score__c=5)])
    )
    assert set(await connector.read_health([short])) == {short}


@respx.mock
async def test_ids_that_cannot_be_record_ids_are_absent_without_a_call(connector) -> None:
    route = respx.get(ACCOUNTS)
    assert await connector.read_health(["not-an-id", "001'; DROP"]) == {}
    assert route.call_count == 0


async def test_more_than_200_ids_are_refused_before_calling(connector) -> None:
    with pytest.raises(ValueError, match="200"):
        await connector.read_health([account_id(i) for i in range(201)])


@respx.mock
async def test_a_refused_token_raises_the_auth_error(connector) -> None:
    respx.get(ACCOUNTS).mock(
        return_value=httpx.Response(
            401, json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        )
    )
    with pytest.raises(CRMAuthError):
        await connector.read_health([account_id(1)])


def test_stored_health_rounds_to_the_field_scale_and_keeps_neutral_names(connector) -> None:
    stored = connector.stored_health(
        {"health_score": 72.4, "health_trend_30d": 3.25, "health_band": "healthy"}
    )
    assert stored["health_score"] == 72
    assert stored["health_trend_30d"] == 3.2
    assert stored["health_band"] == "healthy"


# --- the field plan's scores -------------------------------------------------------------

PLAN = FieldPlan(
    scores=(
        ConfiguredField(
            neutral="health_adoption",
            label="Health: Adoption",
            description="Adoption: a custom signal, 0 (at risk) to 100.",
        ),
    ),
    inputs=(
        ConfiguredField(
            neutral=SENTIMENT_FIELD,
            label="CSM sentiment",
            description="The CSM's judgement.",
            options=SENTIMENT_RATINGS,
        ),
    ),
    reads=("NPS__c",),
)


@respx.mock
async def test_a_custom_signals_score_is_written_and_read_back(connector) -> None:
    connector.plan_fields(PLAN)
    one = account_id(1)
    write = respx.patch(COLLECTIONS).respond(200, json=[ok(one)])
    result = await connector.write_health(
        [RecordUpdate(record_id=one, fields={"health_score": 61, "health_adoption": 47.6})]
    )
    assert result.written == {one}
    (record,) = json.loads(write.calls.last.request.content)["records"]
    assert record == {
        "attributes": {"type": "Account"},
        "id": one,
        "Health_Score__c": 61,
        "Health_Adoption__c": 48,
    }

    read = respx.get(ACCOUNTS).respond(
        200, json=[account_record(one, Health_Score__c=61.0, Health_Adoption__c=48.0)]
    )
    values = (await connector.read_health([one]))[one]
    fields = read.calls.last.request.url.params["fields"].split(",")
    # The score is read like the built-in signals; what people set is no health field.
    assert fields[-1] == "Health_Adoption__c"
    assert "Health_Csm_Sentiment__c" not in fields
    assert (values["health_score"], values["health_adoption"]) == (61.0, 48.0)
    assert set(values) == {*HEALTH_FIELDS, "health_adoption"}
    assert connector.stored_health({"health_adoption": 47.6})["health_adoption"] == 48


@pytest.mark.parametrize("name", ["health_csm_sentiment", "health_engagement"])
async def test_inputs_and_unplanned_fields_are_never_written(connector, name) -> None:
    connector.plan_fields(PLAN)
    with respx.mock(assert_all_called=False) as router:
        route = router.patch(COLLECTIONS)
        with pytest.raises(ValueError, match=name):
            await connector.write_health([RecordUpdate(record_id=account_id(1), fields={name: 1})])
        assert not route.called
    with pytest.raises(ValueError, match=name):
        connector.stored_health({name: 1})


async def test_without_a_plan_a_custom_score_is_unknown(connector) -> None:
    with pytest.raises(ValueError, match="health_adoption"):
        connector.stored_health({"health_adoption": 50})


# --- owners --------------------------------------------------------------------------------


@respx.mock
async def test_read_owner_reads_the_users_email_and_name(connector) -> None:
    route = respx.get(f"{DATA}/sobjects/User/005D0000001AbcdIAC").respond(
        200,
        json={
            "attributes": {
                "type": "User",
                "url": "/services/data/v62.0/sobjects/User/005D0000001AbcdIAC",
            },
            "Email": "ana.lopez@example.com",
            "Name": "Ana Lopez",
            "Id": "005D0000001AbcdIAC",
        },
    )
    owner = await connector.read_owner("005D0000001AbcdIAC")
    assert owner == CRMOwner(
        owner_id="005D0000001AbcdIAC", email="ana.lopez@example.com", name="Ana Lopez"
    )
    assert route.calls.last.request.url.params["fields"] == "Email,Name"


@respx.mock
async def test_a_user_salesforce_does_not_have_is_none(connector) -> None:
    respx.get(f"{DATA}/sobjects/User/005D0000001AbcdIAC").respond(
        404, json=[{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
    )
    assert await connector.read_owner("005D0000001AbcdIAC") is None


@respx.mock
async def test_an_owner_id_that_is_no_record_id_is_not_asked_for(connector) -> None:
    assert await connector.read_owner("someone@example.com") is None
    assert not respx.calls
