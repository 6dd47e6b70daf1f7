"""Salesforce backfill: SOQL pages followed through `nextRecordsUrl`, records mapped by the same
mapping as Outbound Messages.

Pages are shaped as the REST API Developer Guide's "Execute a SOQL Query" prints them:
`{"totalSize", "done", "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-2000",
"records": [{"attributes": {"type": "Account", "url": ...}, "Name": ...}]}`, datetimes as
`2026-11-02T09:15:00.000+0000`.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from connector.base import (
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    FieldPlan,
)
from connector.errors import PayloadError
from connector.http import RetryPolicy
from connector.model import AccountAttributes, ContactUpsert, Interaction, Ticket
from connector.salesforce.api import SalesforceConnector
from connector.salesforce.backfill import (
    BACKFILL_OBJECTS,
    notification_from_record,
    soql_for,
)
from connector.salesforce.events import (
    AccountReads,
    Notification,
    SalesforceMapping,
    to_normalised,
)

LOGIN = "https://login.salesforce.com"
INSTANCE = "https://example.my.salesforce.com"
VERSION = "v62.0"
QUERY = f"{INSTANCE}/services/data/{VERSION}/query"
LOCATOR = f"/services/data/{VERSION}/query/01gD0000002HU6KIAW-2000"


class FakeAuth(httpx.Auth):
    """What connector.salesforce.auth does to every request: the token, the org's instance."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer 00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog"
        request.url = request.url.copy_with(
            scheme="https", host="example.my.salesforce.com", port=None
        )
        yield request


MAPPING = SalesforceMapping(seats="Seats__c")


@pytest.fixture
async def connector():
    salesforce = SalesforceConnector.create(
        connection="t",
        auth=FakeAuth(),
        login_url=LOGIN,
        api_version=VERSION,
        policy=RetryPolicy(max_attempts=1),
        rate_limit=None,
        mapping=MAPPING,
    )
    yield salesforce
    await salesforce.aclose()


def attributes(sobject: str, record_id: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/{VERSION}/sobjects/{sobject}/{record_id}"}


ACCOUNT_1 = {
    "attributes": attributes("Account", "001D000000IRFmaIAH"),
    "Id": "001D000000IRFmaIAH",
    "IsDeleted": False,
    "SystemModstamp": "2026-11-02T09:15:00.000+0000",
    "LastModifiedById": "005D0000001AbcdIAC",
    "Name": "Test 1",
    "Website": "https://www.test1.example",
    "OwnerId": "005D0000001OwnrIAC",
    "Seats__c": 120,
}
ACCOUNT_2 = {
    "attributes": attributes("Account", "001D000000IomazIAB"),
    "Id": "001D000000IomazIAB",
    "IsDeleted": False,
    "SystemModstamp": "2026-11-03T10:00:00.000+0000",
    "LastModifiedById": "005D0000001AbcdIAC",
    "Name": "Test 2",
    "Website": None,
    "OwnerId": "005D0000001OwnrIAC",
    "Seats__c": None,
}


def test_soql_selects_what_the_mapping_reads_plus_the_record_version() -> None:
    soql = soql_for("accounts", MAPPING)
    assert soql.startswith("SELECT Id, IsDeleted, SystemModstamp, ")
    assert soql.endswith(" FROM Account")
    for name in ("Name", "Website", "OwnerId", "Seats__c"):
        assert f" {name}," in soql or f" {name} FROM" in soql
    # Tasks select no SystemModstamp for outbound messages; the backfill needs it as version.
    task = soql_for("tasks", MAPPING)
    assert task.endswith(", SystemModstamp FROM Task")
    assert soql_for("cases", MAPPING).count("SystemModstamp") == 1


def test_only_the_listed_objects_can_be_backfilled() -> None:
    assert BACKFILL_OBJECTS == ("accounts", "contacts", "tasks", "events", "cases")
    with pytest.raises(ValueError, match="cannot backfill 'opportunities'"):
        soql_for("opportunities", MAPPING)


@respx.mock
async def test_two_pages_are_read_through_next_records_url(connector) -> None:
    first = respx.get(QUERY).respond(
        200,
        json={
            "totalSize": 2,
            "done": False,
            "nextRecordsUrl": LOCATOR,
            "records": [ACCOUNT_1],
        },
    )
    second = respx.get(f"{INSTANCE}{LOCATOR}").respond(
        200, json={"totalSize": 2, "done": True, "records": [ACCOUNT_2]}
    )

    page = await connector.list_backfill_page(object_type="accounts", after=None)
    assert page.next_after == LOCATOR
    request = first.calls.last.request
    assert request.url.params["q"] == soql_for("accounts", MAPPING)
    assert request.headers["Sforce-Query-Options"] == "batchSize=2000"
    assert request.headers["authorization"].startswith("Bearer ")
    assert page.events == [
        (
            "salesforce:Account:001D000000IRFmaIAH:2026-11-02T09:15:00.000Z",
            AccountAttributes(
                account="001D000000IRFmaIAH",
                at=datetime(2026, 11, 2, 9, 15, tzinfo=UTC),
                attributes={
                    "name": "Test 1",
                    "domain": "test1.example",
                    "seats": "120",
                    "owner": "005D0000001OwnrIAC",
                },
            ),
        )
    ]

    page = await connector.list_backfill_page(object_type="accounts", after=page.next_after)
    assert second.call_count == 1
    assert page.next_after is None
    ((key, event),) = page.events
    assert key == "salesforce:Account:001D000000IomazIAB:2026-11-03T10:00:00.000Z"
    assert isinstance(event, AccountAttributes)
    assert event.attributes == {
        "name": "Test 2",
        "domain": None,
        "seats": None,
        "owner": "005D0000001OwnrIAC",
    }


@respx.mock
async def test_activities_contacts_and_cases_map_to_their_events(connector) -> None:
    answers = {
        "Contact": {
            "attributes": attributes("Contact", "003D000000Q8dJ1IAJ"),
            "Id": "003D000000Q8dJ1IAJ",
            "AccountId": "001D000000IRFmaIAH",
            "Title": "VP Engineering",
            "IsDeleted": False,
            "SystemModstamp": "2026-10-01T08:00:00.000+0000",
        },
        "Task": {
            "attributes": attributes("Task", "00TD000000IqhSLIAZ"),
            "Id": "00TD000000IqhSLIAZ",
            "AccountId": "001D000000IRFmaIAH",
            "WhatId": "001D000000IRFmaIAH",
            "WhoId": "003D000000Q8dJ1IAJ",
            "TaskSubtype": "Call",
            "CallType": "Inbound",
            "ActivityDate": "2026-10-05",
            "CreatedDate": "2026-10-05T14:00:00.000+0000",
            "IsDeleted": False,
            "LastModifiedById": "005D0000001AbcdIAC",
            "SystemModstamp": "2026-10-05T14:00:00.000+0000",
        },
        "Event": {
            "attributes": attributes("Event", "00UD0000005RzxKMAS"),
            "Id": "00UD0000005RzxKMAS",
            "AccountId": None,
            "WhatId": "001D000000IRFmaIAH",
            "WhoId": "00QD000000Lead1MAC",
            "ActivityDateTime": "2026-10-07T15:30:00.000+0000",
            "CreatedDate": "2026-10-01T09:00:00.000+0000",
            "IsDeleted": False,
            "SystemModstamp": "2026-10-01T09:00:00.000+0000",
        },
        "Case": {
            "attributes": attributes("Case", "500D000000L0MzZIAV"),
            "Id": "500D000000L0MzZIAV",
            "AccountId": "001D000000IRFmaIAH",
            "Priority": "High",
            "CreatedDate": "2026-10-09T11:00:00.000+0000",
            "SystemModstamp": "2026-10-09T12:00:00.000+0000",
        },
    }

    def answer(request: httpx.Request) -> httpx.Response:
        sobject = request.url.params["q"].rsplit(" FROM ", 1)[1]
        return httpx.Response(
            200, json={"totalSize": 1, "done": True, "records": [answers[sobject]]}
        )

    respx.get(QUERY).mock(side_effect=answer)
    events = {}
    for object_type in ("contacts", "tasks", "events", "cases"):
        page = await connector.list_backfill_page(object_type=object_type, after=None)
        assert page.next_after is None
        ((_, events[object_type]),) = page.events
    assert events["contacts"] == ContactUpsert(
        account="001D000000IRFmaIAH",
        at=datetime(2026, 10, 1, 8, tzinfo=UTC),
        contact="003D000000Q8dJ1IAJ",
        title="VP Engineering",
        executive=True,
        left=False,
    )
    assert events["tasks"] == Interaction(
        account="001D000000IRFmaIAH",
        at=datetime(2026, 10, 5, tzinfo=UTC),
        channel="call",
        direction="customer",
        contact="003D000000Q8dJ1IAJ",
        source_id="Task:00TD000000IqhSLIAZ",
    )
    assert events["events"] == Interaction(
        account="001D000000IRFmaIAH",
        at=datetime(2026, 10, 7, 15, 30, tzinfo=UTC),
        channel="meeting",
        direction="ours",
        contact=None,
        source_id="Event:00UD0000005RzxKMAS",
    )
    assert events["cases"] == Ticket(
        account="001D000000IRFmaIAH",
        at=datetime(2026, 10, 9, 11, tzinfo=UTC),
        ticket="500D000000L0MzZIAV",
        priority="high",
    )


def test_a_record_becomes_the_notification_an_outbound_message_would_carry() -> None:
    notification = notification_from_record(ACCOUNT_1, where="records[0]")
    # The same Account as an Outbound Message delivers it: text values, xsd:boolean, UTC Z.
    outbound = Notification(
        id="04l5g000000Ab1cAAC",
        sobject_type="Account",
        fields={
            "Id": "001D000000IRFmaIAH",
            "IsDeleted": "false",
            "SystemModstamp": "2026-11-02T09:15:00.000Z",
            "LastModifiedById": "005D0000001AbcdIAC",
            "Name": "Test 1",
            "Website": "https://www.test1.example",
            "OwnerId": "005D0000001OwnrIAC",
            "Seats__c": "120",
        },
    )
    assert notification.sobject_type == "Account"
    assert notification.fields == outbound.fields
    assert to_normalised(notification, MAPPING) == to_normalised(outbound, MAPPING)


def test_the_dedup_key_changes_only_with_the_record_version() -> None:
    same = notification_from_record(dict(ACCOUNT_1), where="r").dedup_key
    assert same == notification_from_record(ACCOUNT_1, where="r").dedup_key
    changed = {**ACCOUNT_1, "SystemModstamp": "2026-11-04T00:00:00.000+0000"}
    assert notification_from_record(changed, where="r").dedup_key != same


@respx.mock
async def test_an_expired_query_locator_starts_the_query_again(connector) -> None:
    respx.get(f"{INSTANCE}{LOCATOR}").respond(
        400,
        json=[
            {
                "message": "invalid query locator",
                "errorCode": "INVALID_QUERY_LOCATOR",
            }
        ],
    )
    restart = respx.get(QUERY).respond(
        200, json={"totalSize": 1, "done": True, "records": [ACCOUNT_1]}
    )
    page = await connector.list_backfill_page(object_type="accounts", after=LOCATOR)
    assert restart.call_count == 1
    assert page.next_after is None
    assert len(page.events) == 1


@respx.mock
async def test_a_page_not_done_without_next_records_url_is_a_payload_error(connector) -> None:
    respx.get(QUERY).respond(200, json={"totalSize": 5, "done": False, "records": []})
    with pytest.raises(PayloadError, match="nextRecordsUrl"):
        await connector.list_backfill_page(object_type="accounts", after=None)


@respx.mock
async def test_a_record_without_its_version_is_a_payload_error(connector) -> None:
    record = {key: value for key, value in ACCOUNT_1.items() if key != "SystemModstamp"}
    respx.get(QUERY).respond(200, json={"totalSize": 1, "done": True, "records": [record]})
    with pytest.raises(PayloadError, match="SystemModstamp"):
        await connector.list_backfill_page(object_type="accounts", after=None)


@pytest.mark.parametrize(
    ("object_type", "after"),
    [
        ("opportunities", None),
        ("accounts", "https://elsewhere.example/services/data/v62.0/query/01g-2000"),
        ("accounts", "/services/data/v62.0/sobjects/Account"),
    ],
)
async def test_bad_arguments_are_refused_before_calling(connector, object_type, after) -> None:
    with pytest.raises(ValueError, match=r"backfill|nextRecordsUrl"):
        await connector.list_backfill_page(object_type=object_type, after=after)


# --- the field plan ----------------------------------------------------------------------------

DESCRIBE = f"{INSTANCE}/services/data/{VERSION}/sobjects/Account/describe"
PLAN = FieldPlan(
    inputs=(
        ConfiguredField(
            neutral=SENTIMENT_FIELD,
            label="CSM sentiment",
            description="The CSM's judgement.",
            options=SENTIMENT_RATINGS,
        ),
        ConfiguredField(
            neutral=SENTIMENT_REASON_FIELD,
            label="CSM sentiment reason",
            description="Why.",
            options=("champion left", "budget cut"),
        ),
    ),
    reads=("nps__c", "Renewal_Risk__c"),
)
# What the org has: no Renewal_Risk__c at all, and the reason's field not readable by the
# integration user (not provisioned yet, or its field-level security), so the describe (as
# "Get Field and Other Metadata for an Object" prints it, one entry per readable field)
# leaves both out.
DESCRIBED = {
    "name": "Account",
    "fields": [
        {"name": name, "type": kind, "label": name}
        for name, kind in (
            ("Id", "id"),
            ("IsDeleted", "boolean"),
            ("Name", "string"),
            ("Website", "url"),
            ("OwnerId", "reference"),
            ("Type", "picklist"),
            ("CreatedDate", "datetime"),
            ("LastModifiedById", "reference"),
            ("SystemModstamp", "datetime"),
            ("Seats__c", "double"),
            ("NPS__c", "double"),
            ("Health_Csm_Sentiment__c", "picklist"),
        )
    ],
    "custom": False,
    "keyPrefix": "001",
}
UNKNOWN = ("Renewal_Risk__c", "Health_Csm_Sentiment_Reason__c")


def org_query(request: httpx.Request) -> httpx.Response:
    """A query as Salesforce answers it: a field the org lacks fails the whole query."""
    soql = request.url.params["q"]
    for name in UNKNOWN:
        if name.casefold() in soql.casefold():
            return httpx.Response(
                400,
                json=[
                    {
                        "message": f"No such column '{name}' on entity 'Account'. If you are "
                        "attempting to use a custom field, be sure to append the '__c' after "
                        "the custom field name.",
                        "errorCode": "INVALID_FIELD",
                    }
                ],
            )
    record = {
        **ACCOUNT_1,
        "NPS__c": 42.0,
        "Health_Csm_Sentiment__c": "red",
    }
    return httpx.Response(
        200,
        json={"totalSize": 2, "done": False, "nextRecordsUrl": LOCATOR, "records": [record]},
    )


@respx.mock
async def test_listed_accounts_carry_the_plans_reads_and_inputs_the_org_has(connector) -> None:
    connector.plan_fields(PLAN)
    describe = respx.get(DESCRIBE).respond(200, json=DESCRIBED)
    query = respx.get(QUERY).mock(side_effect=org_query)
    respx.get(f"{INSTANCE}{LOCATOR}").respond(
        200, json={"totalSize": 2, "done": True, "records": []}
    )

    with capture_logs() as logs:
        page = await connector.list_backfill_page(object_type="accounts", after=None)
        await connector.list_backfill_page(object_type="accounts", after=LOCATOR)
        await connector.list_backfill_page(object_type="accounts", after=None)

    soql = query.calls[0].request.url.params["q"]
    assert soql.endswith(", CreatedDate, nps__c, Health_Csm_Sentiment__c FROM Account")
    ((_, event),) = page.events
    assert isinstance(event, AccountAttributes)
    # A listed record names no author: its last modifier may have changed anything else.
    assert event.attributes == {
        "name": "Test 1",
        "domain": "test1.example",
        "seats": "120",
        "owner": "005D0000001OwnrIAC",
        "property:nps__c": "42.0",
        "health_csm_sentiment": "red",
    }
    # Looked up when a listing starts, not per page; named in the log once.
    assert describe.call_count == 2
    unavailable = [log for log in logs if log["event"] == "salesforce_account_fields_unavailable"]
    assert [log["fields"] for log in unavailable] == [list(UNKNOWN)]


@respx.mock
async def test_other_objects_and_an_empty_plan_need_no_describe(connector) -> None:
    describe = respx.get(DESCRIBE).respond(200, json=DESCRIBED)
    respx.get(QUERY).respond(200, json={"totalSize": 0, "done": True, "records": []})
    await connector.list_backfill_page(object_type="accounts", after=None)
    connector.plan_fields(PLAN)
    await connector.list_backfill_page(object_type="contacts", after=None)
    assert describe.call_count == 0


def test_a_field_is_selected_once_whatever_its_case() -> None:
    soql = soql_for("accounts", MAPPING, AccountReads(properties=("seats__c", "name", "NPS__c")))
    assert soql.casefold().count("seats__c") == 1
    assert soql.casefold().count(" name,") == 1
    assert soql.endswith(", CreatedDate, NPS__c FROM Account")
    # Only accounts carry the plan's fields.
    assert "NPS__c" not in soql_for("contacts", MAPPING, AccountReads(properties=("NPS__c",)))
