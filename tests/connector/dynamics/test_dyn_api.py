"""Dataverse write-back, task, read, backfill and WhoAmI calls, mocked at the transport with respx.

Answers are shaped as the Power Apps docs print them: `$batch` responses ("Execute batch
operations using the Web API": change set responses with Content-ID, a failed change set as one
`application/http` part, error bodies `{"error": {"code": "0x...", "message": ...}}`), "Create
with data returned" (201 with the row), `WhoAmI` (`{"BusinessUnitId", "UserId",
"OrganizationId"}`) and paged queries (`{"value": [...], "@odata.nextLink": ...}`).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from connector.base import CRMConnector, CRMOwner, FieldValue, RecordUpdate, TaskRequest
from connector.dynamics.api import DEFAULT_BATCH_SIZE, READ_IDS_PER_REQUEST, DynamicsConnector
from connector.dynamics.backfill import BACKFILL_OBJECTS
from connector.dynamics.batch import parse_batch_response
from connector.dynamics.events import Lookup
from connector.dynamics.fields import DRIVERS_LENGTH
from connector.errors import PayloadError
from connector.http import RetryPolicy
from connector.model import AccountAttributes, ContactUpsert

ORG = "https://contoso.crm.dynamics.com"
DATA = f"{ORG}/api/data/v9.2"
BATCH = f"{DATA}/$batch"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake"


class FakeAuth(httpx.Auth):
    """What connector.dynamics.auth.DynamicsAuth does to every request: the bearer token."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {TOKEN}"
        yield request


def make_connector(**overrides: Any) -> DynamicsConnector:
    options: dict[str, Any] = {
        "connection": "t",
        "auth": FakeAuth(),
        "org_url": ORG,
        "prefix": "cr123",
        "option_value_prefix": 72700,
        "solution": "CustomerHealth",
        "policy": RetryPolicy(max_attempts=1),
        "rate_limit": None,
        "limits": None,
        "max_concurrency": None,
        **overrides,
    }
    return DynamicsConnector.create(**options)


@pytest.fixture
async def connector():
    dynamics = make_connector()
    yield dynamics
    await dynamics.aclose()


def account_id(number: int) -> str:
    return f"00000000-0000-0000-0000-{number:012d}"


# --- $batch answers as Dataverse gives them ----------------------------------------------------


def changeset_ok(number: int, record_id: str) -> str:
    return (
        f"--batchresponse_1\r\n"
        f"Content-Type: multipart/mixed; boundary=changesetresponse_{number}\r\n"
        f"\r\n"
        f"--changesetresponse_{number}\r\n"
        f"Content-Type: application/http\r\n"
        f"Content-Transfer-Encoding: binary\r\n"
        f"Content-ID: {number}\r\n"
        f"\r\n"
        f"HTTP/1.1 204 No Content\r\n"
        f"OData-Version: 4.0\r\n"
        f"OData-EntityId: {DATA}/accounts({record_id})\r\n"
        f"\r\n"
        f"\r\n"
        f"--changesetresponse_{number}--\r\n"
    )


def changeset_failed(status: str, code: str, message: str) -> str:
    # A failed change set answers with the failing request's response alone.
    error = json.dumps({"error": {"code": code, "message": message}})
    return (
        f"--batchresponse_1\r\n"
        f"Content-Type: application/http\r\n"
        f"Content-Transfer-Encoding: binary\r\n"
        f"\r\n"
        f"HTTP/1.1 {status}\r\n"
        f"REQ_ID: 5ecd1cb3-1730-4ffc-909c-d44c22270026\r\n"
        f"Content-Type: application/json; odata.metadata=minimal\r\n"
        f"OData-Version: 4.0\r\n"
        f"\r\n"
        f"{error}\r\n"
    )


def batch_answer(*parts: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=("".join(parts) + "--batchresponse_1--\r\n").encode(),
        headers={"Content-Type": "multipart/mixed; boundary=batchresponse_1"},
    )


def sent_parts(request: httpx.Request) -> list[dict[str, Any]]:
    """Each operation of a sent $batch: its Content-ID, request line, headers and JSON body."""
    content_type = request.headers["content-type"]
    boundary = content_type.split("boundary=")[1]
    text = request.content.decode()
    operations = []
    for chunk in text.split(f"--{boundary}\r\n")[1:]:
        changeset = chunk.split("boundary=")[1].split("\r\n")[0]
        inner = chunk.split(f"--{changeset}\r\n")[1].split(f"--{changeset}--")[0]
        mime, _, http = inner.partition("\r\n\r\n")
        head, _, body = http.partition("\r\n\r\n")
        request_line, *header_lines = head.split("\r\n")
        operations.append(
            {
                "content_id": mime.split("Content-ID: ")[1],
                "request_line": request_line,
                "headers": dict(line.split(": ", 1) for line in header_lines),
                "body": json.loads(body),
            }
        )
    assert text.endswith(f"--{boundary}--\r\n")
    return operations


# --- write-back --------------------------------------------------------------------------------


FIELDS: dict[str, FieldValue] = {
    "health_score": 80,
    "health_band": "at_risk",
    "health_trend_30d": -2.25,
    "health_drivers": "Seats are well used",
    "health_updated_at": "2026-11-23T10:00:00.000+00:00",
    "health_momentum": None,
}


@respx.mock
async def test_a_batch_of_n_is_one_batch_request_with_n_patch_parts(connector) -> None:
    updates = [RecordUpdate(record_id=account_id(i), fields=FIELDS) for i in range(1, 4)]
    route = respx.post(BATCH).mock(
        return_value=batch_answer(*(changeset_ok(i, account_id(i)) for i in range(1, 4)))
    )
    result = await connector.write_health(updates)
    assert result.written == {account_id(i) for i in range(1, 4)}
    assert not result.failed
    assert not result.rejected
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["prefer"] == "odata.continue-on-error"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["odata-version"] == "4.0"
    assert request.headers["content-type"].startswith("multipart/mixed; boundary=batch_")
    operations = sent_parts(request)
    assert [operation["content_id"] for operation in operations] == ["1", "2", "3"]
    assert operations[0]["request_line"] == f"PATCH {DATA}/accounts({account_id(1)}) HTTP/1.1"
    assert operations[0]["headers"] == {"Content-Type": "application/json", "If-Match": "*"}
    assert operations[0]["body"] == {
        "cr123_healthscore": 80,
        "cr123_healthband": 727000003,
        "cr123_healthtrend30d": -2.2,
        "cr123_healthdrivers": "Seats are well used",
        "cr123_healthupdatedat": "2026-11-23T10:00:00Z",
        "cr123_healthmomentum": None,
    }


@respx.mock
async def test_a_full_batch_is_one_request(connector) -> None:
    updates = [
        RecordUpdate(record_id=account_id(i), fields={"health_score": 50})
        for i in range(1, DEFAULT_BATCH_SIZE + 1)
    ]
    route = respx.post(BATCH).mock(
        return_value=batch_answer(
            *(changeset_ok(i, account_id(i)) for i in range(1, DEFAULT_BATCH_SIZE + 1))
        )
    )
    result = await connector.write_health(updates)
    assert route.call_count == 1
    assert len(sent_parts(route.calls.last.request)) == DEFAULT_BATCH_SIZE
    assert len(result.written) == DEFAULT_BATCH_SIZE


@respx.mock
async def test_a_mixed_answer_maps_each_record_to_written_failed_or_rejected(connector) -> None:
    ids = [account_id(i) for i in range(1, 9)]
    respx.post(BATCH).mock(
        return_value=batch_answer(
            changeset_ok(1, ids[0]),
            changeset_failed(
                "404 Not Found", "0x80040217", f"account With Id = {ids[1]} Does Not Exist"
            ),
            changeset_failed(
                "400 Bad Request",
                "0x80044331",
                "A validation error occurred. The value 250 of 'cr123_healthscore' on record of "
                "type 'account' is outside the valid range.",
            ),
            changeset_failed(
                "403 Forbidden",
                "0x80040220",
                "Principal user is missing prvWriteAccount privilege",
            ),
            changeset_failed(
                "429 Too Many Requests",
                "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            ),
            changeset_failed("500 Internal Server Error", "0x80040216", "An unexpected error."),
            changeset_ok(7, ids[6]),
            # The eighth update is not answered at all.
        )
    )
    result = await connector.write_health([RecordUpdate(record_id=i, fields={}) for i in ids])
    assert result.written == {ids[0], ids[6]}
    # No such row: the account is marked not found in the CRM, not retried.
    assert result.missing == {ids[1]: f"404 0x80040217: account With Id = {ids[1]} Does Not Exist"}
    assert result.rejected == {
        ids[2]: "400 0x80044331: A validation error occurred. The value 250 of "
        "'cr123_healthscore' on record of type 'account' is outside the valid range.",
        ids[3]: "403 0x80040220: Principal user is missing prvWriteAccount privilege",
    }
    assert result.failed == {
        ids[4]: "429 0x80072322: Number of requests exceeded the limit of 6000 over time window "
        "of 300 seconds.",
        ids[5]: "500 0x80040216: An unexpected error.",
        ids[7]: "not answered in Dataverse's $batch response",
    }


@respx.mock
async def test_answers_are_matched_by_content_id_not_position(connector) -> None:
    ids = [account_id(1), account_id(2)]
    # Both answers come in one change set response, second first.
    body = (
        "--batchresponse_1\r\n"
        "Content-Type: multipart/mixed; boundary=cs\r\n\r\n"
        "--cs\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\n"
        "HTTP/1.1 204 No Content\r\n\r\n\r\n"
        "--cs\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n"
        'HTTP/1.1 404 Not Found\r\n\r\n{"error":{"code":"0x80040217","message":"gone"}}\r\n'
        "--cs--\r\n"
    )
    respx.post(BATCH).mock(return_value=batch_answer(body))
    result = await connector.write_health([RecordUpdate(record_id=i, fields={}) for i in ids])
    assert result.written == {ids[1]}
    assert result.missing == {ids[0]: "404 0x80040217: gone"}


async def test_more_than_max_batch_size_is_refused_before_calling(connector) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(BATCH)
        with pytest.raises(ValueError, match=f"at most {DEFAULT_BATCH_SIZE}"):
            await connector.write_health(
                [
                    RecordUpdate(record_id=account_id(i), fields={})
                    for i in range(connector.max_batch_size + 1)
                ]
            )
        assert not route.called


async def test_an_empty_batch_sends_nothing(connector) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(BATCH)
        result = await connector.write_health([])
        assert not route.called
    assert result.written == set()


@respx.mock
async def test_an_id_that_is_no_guid_is_rejected_without_being_sent(connector) -> None:
    route = respx.post(BATCH).mock(return_value=batch_answer(changeset_ok(1, account_id(1))))
    result = await connector.write_health(
        [
            RecordUpdate(record_id="001RM000003oCprYAE", fields={}),
            RecordUpdate(record_id=account_id(1), fields={}),
        ]
    )
    assert result.rejected == {"001RM000003oCprYAE": "not a Dataverse row id (a GUID)"}
    assert result.written == {account_id(1)}
    assert len(sent_parts(route.calls.last.request)) == 1


@respx.mock
async def test_a_batch_answer_that_is_not_multipart_is_a_payload_error(connector) -> None:
    respx.post(BATCH).respond(200, json={"value": []})
    with pytest.raises(PayloadError):
        await connector.write_health([RecordUpdate(record_id=account_id(1), fields={})])


def test_batch_size_is_capped_at_the_documented_1000() -> None:
    assert make_connector(batch_size=1000).max_batch_size == 1000
    with pytest.raises(ValueError, match="batch_size"):
        make_connector(batch_size=1001)


def test_the_connector_fulfils_the_protocol() -> None:
    connector: CRMConnector = make_connector()
    assert connector.name == "dynamics"
    assert connector.max_batch_size == DEFAULT_BATCH_SIZE <= 1000
    assert connector.backfill_objects == BACKFILL_OBJECTS


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("prefix", "Cr123"),
        ("prefix", "c"),
        ("prefix", "mscrmx"),
        ("option_value_prefix", 9999),
        ("solution", "Customer Health"),
        ("api_version", "9.2"),
        ("org_url", "https://contoso.crm.dynamics.com/api"),
        ("org_url", "contoso.crm.dynamics.com"),
    ],
)
def test_bad_options_are_refused(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        make_connector(**{option: value})


# --- tasks -------------------------------------------------------------------------------------


TASK = TaskRequest(
    record_id=account_id(1),
    subject="Customer health: Contoso turned at risk",
    body="Health score 38 (was 61).\nUsage fell by half.",
    due_at=datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
    owner_id="6b6c5d8e-2c5e-ed11-9562-000d3a3a1f5c",
    priority="high",
)


@respx.mock
async def test_a_task_regards_the_account_and_is_owned_by_the_owner(connector) -> None:
    route = respx.post(f"{DATA}/tasks").respond(
        201,
        json={
            "@odata.context": f"{DATA}/$metadata#tasks(activityid)/$entity",
            "@odata.etag": 'W/"77180907"',
            "activityid": "D31BA648-C592-ED11-AAD1-000D3A993550",
        },
    )
    task_id = await connector.create_task(TASK)
    assert task_id == "d31ba648-c592-ed11-aad1-000d3a993550"
    request = route.calls.last.request
    assert request.headers["prefer"] == "return=representation"
    assert parse_qs(urlsplit(str(request.url)).query) == {"$select": ["activityid"]}
    assert json.loads(request.content) == {
        "subject": "Customer health: Contoso turned at risk",
        "description": "Health score 38 (was 61).\nUsage fell by half.",
        "scheduledend": "2026-11-25T09:30:00Z",
        "prioritycode": 2,
        "regardingobjectid_account_task@odata.bind": f"/accounts({account_id(1)})",
        "ownerid@odata.bind": "/systemusers(6b6c5d8e-2c5e-ed11-9562-000d3a3a1f5c)",
    }


@respx.mock
async def test_a_task_without_owner_binds_none_and_its_id_comes_from_the_entity_id_header(
    connector,
) -> None:
    route = respx.post(f"{DATA}/tasks").respond(
        204, headers={"OData-EntityId": f"{DATA}/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)"}
    )
    task = TaskRequest(
        record_id=account_id(1),
        subject="x" * 300,
        body="y" * 3000,
        due_at=datetime(2026, 11, 25, tzinfo=UTC),
        priority="low",
    )
    assert await connector.create_task(task) == "aed2ae8b-3c94-ed11-aad1-000d3a9933c9"
    body = json.loads(route.calls.last.request.content)
    assert "ownerid@odata.bind" not in body
    assert body["prioritycode"] == 0
    assert len(body["subject"]) == 200
    assert len(body["description"]) == 2000


@respx.mock
async def test_a_task_answer_naming_no_row_is_a_payload_error(connector) -> None:
    respx.post(f"{DATA}/tasks").respond(204)
    with pytest.raises(PayloadError, match="names no created row"):
        await connector.create_task(TASK)


# --- reading rows ------------------------------------------------------------------------------


@respx.mock
async def test_hydrate_reads_the_mapped_columns_with_lookup_annotations(connector) -> None:
    contact = "7f1c2d3e-4b5a-4c6d-8e9f-a0b1c2d3e4f5"
    route = respx.get(f"{DATA}/contacts({contact})").respond(
        200,
        json={
            "@odata.context": f"{DATA}/$metadata#contacts(jobtitle)/$entity",
            "@odata.etag": 'W/"1234"',
            "contactid": contact,
            "jobtitle": "Chief Financial Officer",
            "_parentcustomerid_value": account_id(1),
            "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account",
            "modifiedon": "2026-11-20T08:00:00Z",
            "createdon": "2026-01-02T08:00:00Z",
        },
    )
    record = await connector.hydrate("contact", contact.upper())
    assert record is not None
    assert record.id == contact
    assert record.attributes["parentcustomerid"] == Lookup(entity="account", id=account_id(1))
    assert record.attributes["jobtitle"] == "Chief Financial Officer"
    request = route.calls.last.request
    select = parse_qs(urlsplit(str(request.url)).query)["$select"][0].split(",")
    assert {"_parentcustomerid_value", "jobtitle", "modifiedon"} <= set(select)
    assert "Microsoft.Dynamics.CRM.lookuplogicalname" in request.headers["prefer"]


@respx.mock
async def test_hydrate_of_a_missing_row_is_none(connector) -> None:
    respx.get(f"{DATA}/accounts({account_id(9)})").respond(
        404,
        json={
            "error": {
                "code": "0x80040217",
                "message": f"account With Id = {account_id(9)} Does Not Exist",
            }
        },
    )
    assert await connector.hydrate("account", account_id(9)) is None


async def test_hydrate_refuses_an_unknown_table_or_an_id_that_is_no_guid(connector) -> None:
    with pytest.raises(ValueError, match="table"):
        await connector.hydrate("lead", account_id(1))
    with pytest.raises(ValueError, match="GUID"):
        await connector.hydrate("account", "1) or (1")


def account_row(number: int, name: str, modified: str) -> dict[str, Any]:
    return {
        "@odata.etag": f'W/"{number}"',
        "accountid": account_id(number),
        "name": name,
        "websiteurl": f"https://www.{name.lower()}.com",
        "_ownerid_value": "6b6c5d8e-2c5e-ed11-9562-000d3a3a1f5c",
        "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
        "modifiedon": modified,
        "createdon": "2025-01-01T00:00:00Z",
    }


@respx.mock
async def test_backfill_pages_through_odata_next_link(connector) -> None:
    next_link = (
        f"{DATA}/accounts?$select=name,websiteurl,_ownerid_value,modifiedon,createdon"
        "&$skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%22%20/%3E"
    )
    first = respx.get(f"{DATA}/accounts").respond(
        200,
        json={
            "@odata.context": f"{DATA}/$metadata#accounts(name)",
            "value": [
                account_row(1, "Contoso", "2026-11-20T08:00:00Z"),
                account_row(2, "Fabrikam", "2026-11-21T08:00:00Z"),
            ],
            "@odata.nextLink": next_link,
        },
    )
    page = await connector.list_backfill_page(object_type="accounts", after=None)
    assert page.object_type == "accounts"
    assert page.next_after == next_link
    assert [key for key, _ in page.events] == [
        f"dynamics:account:{account_id(1)}:2026-11-20T08:00:00Z",
        f"dynamics:account:{account_id(2)}:2026-11-21T08:00:00Z",
    ]
    event = page.events[0][1]
    assert isinstance(event, AccountAttributes)
    assert event.account == account_id(1)
    assert event.attributes["name"] == "Contoso"
    request = first.calls.last.request
    assert request.headers["prefer"] == (
        'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname",odata.maxpagesize=500'
    )
    select = parse_qs(urlsplit(str(request.url)).query)["$select"][0].split(",")
    assert {"name", "websiteurl", "_ownerid_value", "modifiedon"} <= set(select)

    respx.routes.clear()
    second = respx.get(next_link).respond(
        200,
        json={
            "@odata.context": f"{DATA}/$metadata#accounts(name)",
            "value": [account_row(3, "Northwind", "2026-11-22T08:00:00Z")],
        },
    )
    last = await connector.list_backfill_page(object_type="accounts", after=next_link)
    assert second.called
    assert str(second.calls.last.request.url) == next_link
    assert last.next_after is None
    assert [key for key, _ in last.events] == [
        f"dynamics:account:{account_id(3)}:2026-11-22T08:00:00Z"
    ]


@respx.mock
async def test_backfill_keys_are_stable_per_row_version(connector) -> None:
    row = {
        "contactid": "7f1c2d3e-4b5a-4c6d-8e9f-a0b1c2d3e4f5",
        "jobtitle": "VP Engineering",
        "_parentcustomerid_value": account_id(1),
        "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account",
        "modifiedon": "2026-11-20T08:00:00Z",
        "createdon": "2026-01-02T08:00:00Z",
    }
    respx.get(f"{DATA}/contacts").respond(200, json={"value": [row]})
    first = await connector.list_backfill_page(object_type="contacts", after=None)
    again = await connector.list_backfill_page(object_type="contacts", after=None)
    assert [key for key, _ in first.events] == [key for key, _ in again.events]
    assert isinstance(first.events[0][1], ContactUpsert)


@respx.mock
async def test_a_next_link_outside_the_environment_is_refused(connector) -> None:
    respx.get(f"{DATA}/accounts").respond(
        200, json={"value": [], "@odata.nextLink": "https://evil.example/api/data/v9.2/accounts"}
    )
    with pytest.raises(PayloadError, match="nextLink"):
        await connector.list_backfill_page(object_type="accounts", after=None)


async def test_backfill_refuses_other_objects_and_foreign_cursors(connector) -> None:
    with pytest.raises(ValueError, match="cannot backfill"):
        await connector.list_backfill_page(object_type="tasks", after=None)
    with pytest.raises(ValueError, match="nextLink"):
        await connector.list_backfill_page(
            object_type="accounts", after="https://evil.example/api/data/v9.2/accounts"
        )


# --- who we are --------------------------------------------------------------------------------


@respx.mock
async def test_who_am_i_is_asked_once(connector) -> None:
    route = respx.get(f"{DATA}/WhoAmI").respond(
        200,
        json={
            "@odata.context": f"{DATA}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": "22cc22cc-dd33-ee44-ff55-66aa66aa66aa",
            "UserId": "11BB11BB-CC22-DD33-EE44-55FF55FF55FF",
            "OrganizationId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
        },
    )
    assert await connector.own_user_id() == "11bb11bb-cc22-dd33-ee44-55ff55ff55ff"
    assert await connector.own_user_id() == "11bb11bb-cc22-dd33-ee44-55ff55ff55ff"
    assert route.call_count == 1


@respx.mock
async def test_who_am_i_without_a_user_id_is_a_payload_error(connector) -> None:
    respx.get(f"{DATA}/WhoAmI").respond(200, json={"BusinessUnitId": "x"})
    with pytest.raises(PayloadError, match="UserId"):
        await connector.own_user_id()


async def test_closing_closes_what_auth_holds() -> None:
    closed: list[bool] = []

    async def closing() -> None:
        closed.append(True)

    dynamics = make_connector(closing=closing)
    await dynamics.aclose()
    assert closed == [True]


def test_sent_batches_parse_as_the_helper_expects() -> None:
    # Guard for sent_parts: a parsed documented answer names one operation per part.
    parts = parse_batch_response(
        batch_answer(changeset_ok(1, account_id(1))).content,
        "multipart/mixed; boundary=batchresponse_1",
    )
    assert [(part.content_id, part.status) for part in parts] == [("1", 204)]


# --- health read-back: `GET accounts` with `$select` and an `In` filter (a query's answer as the
# docs print it, `{"value": [{"@odata.etag", "accountid", <columns>}]}`, choices as option values)

ACCOUNTS = f"{DATA}/accounts"
HEALTHY, AT_RISK = 727000001, 727000003


def row(guid: str, **columns: Any) -> dict[str, Any]:
    return {"@odata.etag": 'W/"501097"', "accountid": guid, **columns}


def filtered_ids(request: httpx.Request) -> list[str]:
    text = request.url.params["$filter"]
    assert text.startswith("Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=[")
    inside = text[text.index("[") + 1 : text.index("]")]
    return [item.strip("'") for item in inside.split(",")]


@respx.mock
async def test_health_is_read_with_select_and_an_in_filter_on_accountid(connector) -> None:
    ids = [account_id(i) for i in range(3)]
    route = respx.get(ACCOUNTS).mock(
        return_value=httpx.Response(
            200, json={"value": [row(i, cr123_healthscore=70) for i in ids]}
        )
    )
    read = await connector.read_health(ids)
    request = route.calls.last.request
    assert request.url.params["$select"].split(",") == [
        "accountid", "cr123_healthscore", "cr123_healthband", "cr123_healthtrend30d",
        "cr123_healthactiveuse", "cr123_healthcollaboration", "cr123_healthmutualvalue",
        "cr123_healthmomentum", "cr123_healthdrivers", "cr123_healthupdatedat",
    ]  # fmt: skip
    assert filtered_ids(request) == ids
    scores = {record_id: values["health_score"] for record_id, values in read.items()}
    assert scores == dict.fromkeys(ids, 70)


@respx.mock
async def test_a_full_batch_is_read_in_requests_of_100_ids(connector) -> None:
    ids = [account_id(i) for i in range(connector.max_batch_size)]
    route = respx.get(ACCOUNTS).mock(
        side_effect=lambda request: httpx.Response(
            200, json={"value": [row(i) for i in filtered_ids(request)]}
        )
    )
    read = await connector.read_health(ids)
    assert route.call_count == connector.max_batch_size // READ_IDS_PER_REQUEST
    assert all(len(str(call.request.url)) < 8_000 for call in route.calls)
    assert set(read) == set(ids)


@respx.mock
async def test_band_choices_come_back_as_neutral_bands(connector) -> None:
    healthy, at_risk, unknown = account_id(1), account_id(2), account_id(3)
    respx.get(ACCOUNTS).mock(
        return_value=httpx.Response(
            200,
            json={
                "value": [
                    row(healthy, cr123_healthband=HEALTHY, cr123_healthdrivers="Busy\r\nGood"),
                    row(at_risk, cr123_healthband=AT_RISK, cr123_healthtrend30d=-2.5),
                    row(unknown, cr123_healthband=1, cr123_healthdrivers=""),
                ]
            },
        )
    )
    read = await connector.read_health([healthy, at_risk, unknown])
    assert read[healthy]["health_band"] == "healthy"
    assert read[healthy]["health_drivers"] == "Busy\r\nGood"
    assert read[at_risk]["health_band"] == "at_risk"
    assert read[at_risk]["health_trend_30d"] == -2.5
    # A choice that is no band of ours differs from every band instead of passing for one.
    assert read[unknown]["health_band"] == "1"
    assert read[unknown]["health_drivers"] is None


@respx.mock
async def test_rows_dataverse_does_not_return_are_absent_and_ids_match_any_case(connector) -> None:
    kept, gone = account_id(1).upper(), account_id(2)
    respx.get(ACCOUNTS).mock(return_value=httpx.Response(200, json={"value": [row(kept.lower())]}))
    assert set(await connector.read_health([kept, gone, "not-a-guid"])) == {kept}


def test_stored_health_gives_the_band_and_the_drivers_as_the_columns_hold_them(connector) -> None:
    drivers = "\n".join(f"reason {i:04d} " + "x" * 40 for i in range(200))
    stored = connector.stored_health({"health_band": "at_risk", "health_drivers": drivers})
    assert stored["health_band"] == "at_risk"
    text = stored["health_drivers"]
    assert isinstance(text, str)
    assert len(text) <= DRIVERS_LENGTH < len(drivers)
    assert drivers.startswith(text)


# --- owners --------------------------------------------------------------------------------


@respx.mock
async def test_read_owner_reads_the_systemusers_email_and_full_name(connector) -> None:
    user = "6B6C5D8E-2C5E-ED11-9562-000D3A3A1F5C"
    route = respx.get(f"{DATA}/systemusers({user.lower()})").respond(
        200,
        json={
            "@odata.context": f"{DATA}/$metadata#systemusers/$entity",
            "internalemailaddress": "nancy@contoso.example",
            "fullname": "Nancy Anderson",
            "systemuserid": user.lower(),
        },
    )
    owner = await connector.read_owner(user)
    assert owner == CRMOwner(owner_id=user, email="nancy@contoso.example", name="Nancy Anderson")
    query = parse_qs(urlsplit(str(route.calls.last.request.url)).query)
    assert query == {"$select": ["internalemailaddress,fullname"]}


@respx.mock
async def test_an_owner_without_a_systemuser_row_is_none(connector) -> None:
    # A team-owned account names the team: no systemuser has its id.
    user = "aed2ae8b-3c94-ed11-aad1-000d3a9933c9"
    respx.get(f"{DATA}/systemusers({user})").respond(
        404, json={"error": {"code": "0x80040217", "message": "systemuser Does Not Exist"}}
    )
    assert await connector.read_owner(user) is None


@respx.mock
async def test_an_owner_id_that_is_no_guid_is_not_asked_for(connector) -> None:
    assert await connector.read_owner("Nancy") is None
    assert not respx.calls
