"""A field plan on Dataverse: a custom signal's score written and read like the fixed health
columns, and configured reads and inputs (the CSM sentiment) carried as account attributes by
delivered, read-back and backfilled accounts, whether or not the environment has every column.

HTTP is mocked at the transport with respx; the metadata answer is shaped as "Query table
definitions using the Web API" prints it (`{"value": [{"LogicalName", "AttributeType", ...}]}`),
a `$select` naming an unknown column as Dataverse refuses it (400, `0x80060888`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from dynamics_samples import ACCOUNT, APP_USER, HUMAN, body, context, option
from structlog.testing import capture_logs

from connector.base import (
    HEALTH_FIELDS,
    NO_FIELD_PLAN,
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    FieldPlan,
    RecordUpdate,
    property_attribute,
)
from connector.decoding import CRMDecoded
from connector.dynamics.api import DynamicsConnector
from connector.dynamics.connection import DynamicsInbound
from connector.dynamics.decode import decode
from connector.dynamics.records import DynamicsMapping, to_normalised, web_api_select
from connector.http import RetryPolicy
from connector.model import AccountAttributes

ORG = "https://contoso.crm.dynamics.com"
DATA = f"{ORG}/api/data/v9.2"
ACCOUNTS = f"{DATA}/accounts"
ATTRIBUTES = f"{DATA}/EntityDefinitions(LogicalName='account')/Attributes"
AUTHOR = "health_csm_sentiment_author"

NPS_SCORE = ConfiguredField(
    neutral="health_nps_trend", label="Health: NPS trend", description="NPS trend, 0 to 100."
)
SENTIMENT = ConfiguredField(
    neutral=SENTIMENT_FIELD, label="CSM sentiment", description="-", options=SENTIMENT_RATINGS
)
REASONS = ConfiguredField(
    neutral=SENTIMENT_REASON_FIELD,
    label="CSM sentiment reason",
    description="-",
    options=("budget cut", "champion left", "other"),
)
PLAN = FieldPlan(
    scores=(NPS_SCORE,), inputs=(SENTIMENT, REASONS), reads=("new_NPSScore", "new_renewedon")
)
SENTIMENT_COLUMN = "cr123_healthcsmsentiment"
REASON_COLUMN = "cr123_healthcsmsentimentreason"
# Every column of the plan, as the environment's table definition lists them.
PLANNED_TYPES = {
    "new_npsscore": "Integer",
    "new_renewedon": "DateTime",
    SENTIMENT_COLUMN: "Picklist",
    REASON_COLUMN: "Picklist",
}


class FakeAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer token"
        yield request


@pytest.fixture
async def connector():
    dynamics = DynamicsConnector.create(
        connection="t",
        auth=FakeAuth(),
        org_url=ORG,
        prefix="cr123",
        option_value_prefix=72700,
        solution="CustomerHealth",
        policy=RetryPolicy(max_attempts=1),
        rate_limit=None,
        limits=None,
        max_concurrency=None,
    )
    yield dynamics
    await dynamics.aclose()


@pytest.fixture
def planned(connector) -> DynamicsConnector:
    connector.plan_fields(PLAN)
    return connector


def value_of(connector: DynamicsConnector, column: str, text: str) -> int:
    """The option value the connector reads `text` of an input by."""
    options = connector.fields.by_logical_name[column].options
    return next(value for value, _, label in options if label == text)


def definition_answer(types: dict[str, str]) -> httpx.Response:
    standard = {"accountid": "Uniqueidentifier", "name": "String", "ownerid": "Owner"}
    return httpx.Response(
        200,
        json={
            "@odata.context": f"{DATA}/$metadata#EntityDefinitions('account')/Attributes"
            "(LogicalName,AttributeType,IsValidODataAttribute)",
            "value": [
                {
                    "@odata.type": "#Microsoft.Dynamics.CRM.AttributeMetadata",
                    "LogicalName": name,
                    "AttributeType": kind,
                    "IsValidODataAttribute": True,
                    "MetadataId": f"00000000-0000-0000-0000-{number:012d}",
                }
                for number, (name, kind) in enumerate({**standard, **types}.items())
            ]
            # A lookup's name column exists, but the Web API cannot select it.
            + [
                {
                    "LogicalName": "owneridname",
                    "AttributeType": "String",
                    "IsValidODataAttribute": False,
                }
            ],
        },
    )


def selected(request: httpx.Request) -> list[str]:
    return parse_qs(urlsplit(str(request.url)).query)["$select"][0].split(",")


def account_json(**columns: Any) -> dict[str, Any]:
    return {
        "@odata.etag": 'W/"7001"',
        "accountid": ACCOUNT,
        "name": "Contoso",
        "modifiedon": "2026-11-20T08:00:00Z",
        "createdon": "2025-01-01T00:00:00Z",
        **columns,
    }


def attributes_of(events: list[Any]) -> dict[str, str | None]:
    [event] = events
    assert isinstance(event, AccountAttributes)
    return dict(event.attributes)


# --- a custom signal's score -------------------------------------------------------------------


@respx.mock
async def test_a_custom_signals_score_is_written_and_read_back(planned) -> None:
    batch = respx.post(f"{DATA}/$batch").respond(
        200,
        content=(
            b"--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n\r\n--batchresponse_1--\r\n"
        ),
        headers={"Content-Type": "multipart/mixed; boundary=batchresponse_1"},
    )
    update = RecordUpdate(record_id=ACCOUNT, fields={"health_score": 70, "health_nps_trend": 61.6})
    result = await planned.write_health([update])
    assert result.written == {ACCOUNT}
    sent = batch.calls.last.request.content.decode()
    assert '"cr123_healthnpstrend":62' in sent

    read = respx.get(ACCOUNTS).respond(
        200, json={"value": [{"accountid": ACCOUNT, "cr123_healthnpstrend": 62}]}
    )
    values = await planned.read_health([ACCOUNT])
    assert selected(read.calls.last.request)[-1] == "cr123_healthnpstrend"
    assert values[ACCOUNT]["health_nps_trend"] == 62
    assert set(values[ACCOUNT]) == set(PLAN.written)
    assert planned.stored_health({"health_nps_trend": 61.6})["health_nps_trend"] == 62


def test_a_field_outside_the_plans_written_fields_is_refused(planned) -> None:
    for name in ("health_other_signal", SENTIMENT_FIELD, SENTIMENT_REASON_FIELD):
        with pytest.raises(ValueError, match="not a health field"):
            planned.stored_health({name: 1})


@respx.mock
async def test_planning_calls_nothing_and_an_empty_plan_is_the_fixed_columns(connector) -> None:
    assert connector.field_plan is NO_FIELD_PLAN
    connector.plan_fields(PLAN)
    assert connector.field_plan == PLAN
    assert respx.calls.call_count == 0
    connector.plan_fields(NO_FIELD_PLAN)
    assert [column.neutral for column in connector.fields.columns] == list(HEALTH_FIELDS)
    assert connector.reads.columns == ()
    # Without a plan an account is read as before: no table definition, the mapped columns.
    route = respx.get(f"{ACCOUNTS}({ACCOUNT})").respond(200, json=account_json())
    await connector.hydrate("account", ACCOUNT)
    assert selected(route.calls.last.request) == list(web_api_select("account"))


def test_a_plan_refused_leaves_the_plan_in_force(planned) -> None:
    with pytest.raises(ValueError, match="no Dataverse column name"):
        planned.plan_fields(FieldPlan(reads=("new nps",)))
    assert planned.field_plan == PLAN


# --- reads and inputs on a delivered account ---------------------------------------------------


@dataclass
class StoredRow:
    id: int
    body: str | None
    kind: str = "account:Update"
    payload: dict[str, Any] = field(default_factory=lambda: {"size_exceeded": False})
    received_at: datetime = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class Target:
    connector: DynamicsConnector | None
    name: str = "t"
    crm_settings: DynamicsInbound = field(
        default_factory=lambda: DynamicsInbound(
            auth_mode="webhook_key", auth_name="", auth_value="key", mapping=DynamicsMapping()
        )
    )


async def decoded(connector: DynamicsConnector | None, *bodies: bytes) -> CRMDecoded:
    respx.get(f"{DATA}/WhoAmI").respond(200, json={"UserId": APP_USER})
    rows = [StoredRow(id=number, body=raw.decode()) for number, raw in enumerate(bodies, 1)]
    return await decode(rows, Target(connector=connector))


@respx.mock
async def test_a_delivered_account_carries_reads_inputs_and_the_sentiments_author(planned) -> None:
    red = value_of(planned, SENTIMENT_COLUMN, "red")
    budget = value_of(planned, REASON_COLUMN, "budget cut")
    delivery = body(
        context(
            target={SENTIMENT_COLUMN: option(red), REASON_COLUMN: option(budget)},
            post={
                "name": "Contoso",
                SENTIMENT_COLUMN: option(red),
                REASON_COLUMN: option(budget),
                "new_npsscore": 42,
                "new_renewedon": "/Date(1767225600000)/",
                "modifiedon": "/Date(1763633700000)/",
            },
            user=HUMAN,
        )
    )
    result = await decoded(planned, delivery)
    attributes = attributes_of(result.events[1])
    assert attributes[property_attribute("new_NPSScore")] == "42"
    assert attributes[property_attribute("new_renewedon")] == "2026-01-01T00:00:00+00:00"
    assert attributes[SENTIMENT_FIELD] == "red"
    assert attributes[SENTIMENT_REASON_FIELD] == "budget cut"
    assert attributes[AUTHOR] == f"Dynamics 365 user {HUMAN}"
    assert attributes["name"] == "Contoso"


@respx.mock
async def test_the_author_is_left_out_when_the_change_did_not_set_the_sentiment(planned) -> None:
    green = value_of(planned, SENTIMENT_COLUMN, "green")
    # The image carries the sentiment on every change; only the Target says this one set it.
    delivery = body(
        context(
            target={"name": "Contoso Ltd"},
            post={"name": "Contoso Ltd", SENTIMENT_COLUMN: option(green), REASON_COLUMN: None},
        )
    )
    attributes = attributes_of((await decoded(planned, delivery)).events[1])
    assert attributes[SENTIMENT_FIELD] == "green"
    assert attributes[SENTIMENT_REASON_FIELD] is None
    assert AUTHOR not in attributes
    # Columns a delivery does not carry say nothing.
    assert property_attribute("new_NPSScore") not in attributes


@respx.mock
async def test_a_choice_the_plan_does_not_list_says_nothing(planned) -> None:
    delivery = body(context(target={SENTIMENT_COLUMN: option(1), "name": "Contoso"}))
    with capture_logs() as logs:
        attributes = attributes_of((await decoded(planned, delivery)).events[1])
    assert SENTIMENT_FIELD not in attributes
    assert AUTHOR not in attributes
    assert [entry["column"] for entry in logs if entry["event"] == "dynamics_choice_unknown"] == [
        SENTIMENT_COLUMN
    ]


@respx.mock
async def test_without_a_plan_a_delivery_maps_as_before(connector) -> None:
    delivery = body(context(target={"name": "Contoso", SENTIMENT_COLUMN: option(727000001)}))
    assert attributes_of((await decoded(connector, delivery)).events[1]) == {"name": "Contoso"}


# --- reads and inputs on a read account --------------------------------------------------------


@respx.mock
async def test_a_read_account_carries_reads_and_inputs(planned) -> None:
    definition = respx.get(ATTRIBUTES).mock(return_value=definition_answer(PLANNED_TYPES))
    amber = value_of(planned, SENTIMENT_COLUMN, "amber")
    account = respx.get(f"{ACCOUNTS}({ACCOUNT})").respond(
        200,
        json=account_json(
            new_npsscore=None,
            new_renewedon="2027-03-31",
            **{SENTIMENT_COLUMN: amber, REASON_COLUMN: None},
        ),
    )
    record = await planned.hydrate("account", ACCOUNT)
    assert record is not None
    assert selected(definition.calls.last.request) == [
        "LogicalName",
        "AttributeType",
        "IsValidODataAttribute",
    ]
    assert {"new_npsscore", "new_renewedon", SENTIMENT_COLUMN, REASON_COLUMN} <= set(
        selected(account.calls.last.request)
    )
    attributes = attributes_of(to_normalised(record, planned.mapping, reads=planned.reads))
    assert attributes[property_attribute("new_NPSScore")] is None
    assert attributes[property_attribute("new_renewedon")] == "2027-03-31T00:00:00+00:00"
    assert attributes[SENTIMENT_FIELD] == "amber"
    assert attributes[SENTIMENT_REASON_FIELD] is None
    assert AUTHOR not in attributes  # a read names no author
    # The table definition is read once, not per account.
    await planned.hydrate("account", ACCOUNT)
    assert definition.call_count == 1


@respx.mock
async def test_a_backfilled_account_carries_reads_and_inputs(planned) -> None:
    respx.get(ATTRIBUTES).mock(return_value=definition_answer(PLANNED_TYPES))
    other = value_of(planned, REASON_COLUMN, "other")
    page_route = respx.get(ACCOUNTS).respond(
        200,
        json={
            "value": [
                account_json(new_npsscore=9.0, **{SENTIMENT_COLUMN: None, REASON_COLUMN: other})
            ]
        },
    )
    page = await planned.list_backfill_page(object_type="accounts", after=None)
    assert {"new_npsscore", "new_renewedon", SENTIMENT_COLUMN, REASON_COLUMN} <= set(
        selected(page_route.calls.last.request)
    )
    attributes = attributes_of([event for _, event in page.events])
    assert attributes[property_attribute("new_NPSScore")] == "9"
    assert attributes[SENTIMENT_FIELD] is None
    assert attributes[SENTIMENT_REASON_FIELD] == "other"


# --- a configured column the environment lacks -------------------------------------------------


@respx.mock
async def test_a_configured_column_the_org_lacks_breaks_no_read(planned) -> None:
    lacking = {name: kind for name, kind in PLANNED_TYPES.items() if name != "new_renewedon"}
    definition = respx.get(ATTRIBUTES).mock(return_value=definition_answer(lacking))

    def strict(request: httpx.Request) -> httpx.Response:
        # As Dataverse answers a $select naming a column the table does not have.
        unknown = [name for name in selected(request) if name == "new_renewedon"]
        if unknown:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "code": "0x80060888",
                        "message": "Could not find a property named 'new_renewedon' on type "
                        "'Microsoft.Dynamics.CRM.account'.",
                    }
                },
            )
        if request.url.path.endswith(f"({ACCOUNT})"):
            return httpx.Response(200, json=account_json(new_npsscore=7))
        return httpx.Response(200, json={"value": [account_json(new_npsscore=7)]})

    respx.get(url__startswith=ACCOUNTS).mock(side_effect=strict)
    with capture_logs() as logs:
        record = await planned.hydrate("account", ACCOUNT)
        page = await planned.list_backfill_page(object_type="accounts", after=None)
    assert record is not None
    assert record.attributes["new_npsscore"] == 7
    attributes = attributes_of([event for _, event in page.events])
    assert attributes[property_attribute("new_NPSScore")] == "7"
    assert property_attribute("new_renewedon") not in attributes
    missing = [entry for entry in logs if entry["event"] == "dynamics_configured_columns_missing"]
    assert [entry["columns"] for entry in missing] == [["new_renewedon"]]  # said once
    assert definition.call_count == 1


@respx.mock
async def test_a_column_deleted_since_the_lookup_is_dropped_and_the_read_tried_again(
    planned,
) -> None:
    answers = iter([definition_answer(PLANNED_TYPES), definition_answer({})])
    definition = respx.get(ATTRIBUTES).mock(side_effect=lambda request: next(answers))
    refused = httpx.Response(
        400,
        json={
            "error": {
                "code": "0x80060888",
                "message": "Could not find a property named 'new_npsscore'.",
            }
        },
    )
    account = respx.get(f"{ACCOUNTS}({ACCOUNT})").mock(
        side_effect=[refused, httpx.Response(200, json=account_json())]
    )
    record = await planned.hydrate("account", ACCOUNT)
    assert record is not None
    assert definition.call_count == 2
    assert "new_npsscore" not in selected(account.calls.last.request)


@respx.mock
async def test_a_refused_table_definition_reads_the_account_without_the_plans_columns(
    planned,
) -> None:
    respx.get(ATTRIBUTES).respond(400, json={"error": {"code": "0x0", "message": "no"}})
    account = respx.get(f"{ACCOUNTS}({ACCOUNT})").respond(200, json=account_json())
    assert await planned.hydrate("account", ACCOUNT) is not None
    assert selected(account.calls.last.request) == list(web_api_select("account"))


@respx.mock
async def test_provisioning_looks_the_table_up_again(planned) -> None:
    definition = respx.get(ATTRIBUTES).mock(
        side_effect=lambda request: (
            httpx.Response(200, json={"value": []})
            if "$filter" in request.url.params
            else definition_answer(PLANNED_TYPES)
        )
    )
    respx.get(f"{ACCOUNTS}({ACCOUNT})").respond(200, json=account_json())
    await planned.hydrate("account", ACCOUNT)
    respx.post(ATTRIBUTES).respond(204)
    respx.post(f"{DATA}/PublishXml").respond(204)
    await planned.ensure_fields()
    await planned.hydrate("account", ACCOUNT)
    lookups = [call for call in definition.calls if "$filter" not in call.request.url.params]
    assert len(lookups) == 2


def test_a_lookup_or_virtual_column_is_selected_as_the_web_api_names_it() -> None:
    assert web_api_select("account", planned=("_parentaccountid_value", "new_nps")) == (
        "name", "websiteurl", "_ownerid_value", "customertypecode", "createdon",
        "_parentaccountid_value", "new_nps", "modifiedon",
    )  # fmt: skip
    # Only accounts carry a plan's columns.
    assert "new_nps" not in web_api_select("contact", planned=("new_nps",))


@respx.mock
async def test_a_read_of_a_lookup_column_gives_its_id(connector) -> None:
    connector.plan_fields(FieldPlan(reads=("parentaccountid", "owneridname")))
    respx.get(ATTRIBUTES).mock(return_value=definition_answer({"parentaccountid": "Lookup"}))
    parent = "0a0a0a0a-0000-4000-8000-00000000a0a0"
    account = respx.get(f"{ACCOUNTS}({ACCOUNT})").respond(
        200,
        json=account_json(
            _parentaccountid_value=parent,
            **{"_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account"},
        ),
    )
    record = await connector.hydrate("account", ACCOUNT)
    select = selected(account.calls.last.request)
    assert "_parentaccountid_value" in select
    assert "owneridname" not in select  # exists, but the Web API cannot select it
    assert record is not None
    attributes = attributes_of(to_normalised(record, reads=connector.reads))
    assert attributes[property_attribute("parentaccountid")] == parent
