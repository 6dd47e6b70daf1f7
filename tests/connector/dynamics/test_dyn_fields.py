"""The Dataverse health columns: definitions, value conversion, and provisioning them on account
against a fake environment.

The fake environment answers as the Power Apps docs print it ("Create and update column
definitions using the Web API", "Query table definitions using the Web API", "Create and update
choices"): attribute lists as `{"value": [...]}` with Label objects
(`{"LocalizedLabels": [...], "UserLocalizedLabel": ...}`), creates and updates as 204 with
`OData-EntityId`, a picklist's options under `OptionSet.Options`, actions as 200/204.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Generator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
import respx

from connector.base import (
    HEALTH_FIELDS,
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    FieldPlan,
)
from connector.dynamics.api import DynamicsConnector
from connector.dynamics.fields import (
    COLUMNS,
    DRIVERS_LENGTH,
    MEMO_MAX_LENGTH,
    DynamicsFields,
)
from connector.errors import ConnectorError
from connector.http import RetryPolicy

ORG = "https://contoso.crm.dynamics.com"
DATA = "/api/data/v9.2"
ATTRIBUTES = f"{DATA}/EntityDefinitions(LogicalName='account')/Attributes"

LOGICAL_NAMES = {
    "health_score": "cr123_healthscore",
    "health_band": "cr123_healthband",
    "health_trend_30d": "cr123_healthtrend30d",
    "health_active_use": "cr123_healthactiveuse",
    "health_collaboration": "cr123_healthcollaboration",
    "health_mutual_value": "cr123_healthmutualvalue",
    "health_momentum": "cr123_healthmomentum",
    "health_drivers": "cr123_healthdrivers",
    "health_updated_at": "cr123_healthupdatedat",
}


@pytest.fixture
def fields() -> DynamicsFields:
    return DynamicsFields(prefix="cr123", option_value_prefix=72700)


# --- definitions and values --------------------------------------------------------------------


def test_every_health_field_has_a_prefixed_account_column(fields) -> None:
    assert tuple(spec.neutral for spec in COLUMNS) == HEALTH_FIELDS
    assert dict(fields.logical_names) == LOGICAL_NAMES
    for column in fields.columns:
        assert column.schema_name.lower() == column.logical_name
        assert column.schema_name.startswith("cr123_Health")


def test_labels_say_health_and_customer_health(fields) -> None:
    for column in fields.columns:
        definition = column.definition()
        display = definition["DisplayName"]["LocalizedLabels"][0]
        description = definition["Description"]["LocalizedLabels"][0]
        assert display["Label"].startswith("Health")
        assert display["LanguageCode"] == 1033
        assert "Customer health" in description["Label"]


def test_column_definitions_are_typed_as_the_web_api_wants(fields) -> None:
    definitions = {column.neutral: column.definition() for column in fields.columns}
    score = definitions["health_score"]
    assert score["@odata.type"] == "Microsoft.Dynamics.CRM.IntegerAttributeMetadata"
    assert (score["AttributeType"], score["AttributeTypeName"]) == (
        "Integer",
        {"Value": "IntegerType"},
    )
    assert (score["MinValue"], score["MaxValue"], score["Format"]) == (0, 100, "None")
    assert score["SchemaName"] == "cr123_HealthScore"
    assert score["RequiredLevel"]["Value"] == "None"
    for name in ("health_active_use", "health_collaboration", "health_mutual_value"):
        assert (definitions[name]["MinValue"], definitions[name]["MaxValue"]) == (0, 100)
    trend = definitions["health_trend_30d"]
    assert trend["@odata.type"] == "Microsoft.Dynamics.CRM.DecimalAttributeMetadata"
    assert (trend["MinValue"], trend["MaxValue"], trend["Precision"]) == (-100.0, 100.0, 1)
    drivers = definitions["health_drivers"]
    assert drivers["@odata.type"] == "Microsoft.Dynamics.CRM.MemoAttributeMetadata"
    assert drivers["MaxLength"] == DRIVERS_LENGTH <= MEMO_MAX_LENGTH
    updated = definitions["health_updated_at"]
    assert updated["@odata.type"] == "Microsoft.Dynamics.CRM.DateTimeAttributeMetadata"
    assert updated["DateTimeBehavior"] == {"Value": "UserLocal"}
    assert updated["Format"] == "DateAndTime"
    band = definitions["health_band"]
    assert band["@odata.type"] == "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
    assert band["OptionSet"]["IsGlobal"] is False
    assert [
        (option["Value"], option["Label"]["LocalizedLabels"][0]["Label"])
        for option in band["OptionSet"]["Options"]
    ] == [
        (727000001, "Healthy"),
        (727000002, "Neutral"),
        (727000003, "At risk"),
        (727000004, "Unknown"),
        (727000005, "Onboarding"),
    ]


def test_band_values_come_from_the_option_value_prefix() -> None:
    fields = DynamicsFields(prefix="contoso", option_value_prefix=10000)
    assert dict(fields.band_values) == {
        "healthy": 100000001,
        "neutral": 100000002,
        "at_risk": 100000003,
        "unknown": 100000004,
        "onboarding": 100000005,
    }
    assert max(DynamicsFields(prefix="ab", option_value_prefix=99999).band_values.values()) < (
        2**31
    )


@pytest.mark.parametrize("prefix", ["c", "cr1234567", "1cr", "Cr123", "cr_1", "mscrm", "crm-1"])
def test_a_prefix_that_is_no_publisher_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        DynamicsFields(prefix=prefix, option_value_prefix=72700)


@pytest.mark.parametrize("option_value_prefix", [9999, 100000, -1, True])
def test_an_option_value_prefix_out_of_range_is_refused(option_value_prefix: Any) -> None:
    with pytest.raises(ValueError, match="option_value_prefix"):
        DynamicsFields(prefix="cr123", option_value_prefix=option_value_prefix)


def test_values_are_converted_to_web_api_json(fields) -> None:
    assert fields.to_web_api(
        {
            "health_score": 79.6,
            "health_band": "healthy",
            "health_trend_30d": -2.25,
            "health_active_use": 55,
            "health_collaboration": None,
            "health_drivers": "Seats are well used\nTwo-way contact",
            "health_updated_at": "2026-11-23T11:00:00.123+01:00",
        }
    ) == {
        "cr123_healthscore": 80,
        "cr123_healthband": 727000001,
        "cr123_healthtrend30d": -2.2,
        "cr123_healthactiveuse": 55,
        "cr123_healthcollaboration": None,
        "cr123_healthdrivers": "Seats are well used\nTwo-way contact",
        "cr123_healthupdatedat": "2026-11-23T10:00:00Z",
    }


def test_long_drivers_are_cut_at_a_whole_line(fields) -> None:
    line = "x" * 99
    drivers = "\n".join([line] * 60)  # 5,999 characters
    value = fields.to_web_api({"health_drivers": drivers})["cr123_healthdrivers"]
    assert isinstance(value, str)
    assert len(value) <= DRIVERS_LENGTH
    assert value.split("\n")[-1] == line
    assert value.count("\n") == 39


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("health_band", "great"),
        ("health_score", "eighty"),
        ("health_score", True),
        ("health_trend_30d", float("nan")),
        ("health_updated_at", "yesterday"),
        ("health_updated_at", 1700000000),
        ("health_colour", 1),
    ],
)
def test_a_value_its_column_cannot_take_is_a_value_error(fields, name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=r"takes|not a health field"):
        fields.to_web_api({name: value})


# --- provisioning against a fake environment ---------------------------------------------------


def text_label(text: str) -> dict[str, Any]:
    localized = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": False,
        "MetadataId": str(uuid.uuid4()),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


class FakeEnvironment:
    """A Dataverse environment's account attributes, answering the metadata Web API."""

    def __init__(self) -> None:
        self.attributes: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, Any] | None, httpx.Headers]] = []
        self.published = 0
        # Schema names another provision run creates just before ours does.
        self.created_meanwhile: set[str] = set()

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.calls if method != "GET"]

    def add(self, definition: dict[str, Any]) -> None:
        """Store a definition as Dataverse answers it (labels with metadata, no @odata)."""
        stored = {key: value for key, value in definition.items() if not key.startswith("@")}
        stored["LogicalName"] = definition["SchemaName"].lower()
        stored["MetadataId"] = str(uuid.uuid4())
        stored["IsCustomAttribute"] = True
        stored["DisplayName"] = text_label(definition["DisplayName"]["LocalizedLabels"][0]["Label"])
        stored["Description"] = text_label(definition["Description"]["LocalizedLabels"][0]["Label"])
        if "OptionSet" in definition:
            stored["OptionSet"] = {
                "Options": [
                    {
                        "Value": option["Value"],
                        "Label": text_label(option["Label"]["LocalizedLabels"][0]["Label"]),
                    }
                    for option in definition["OptionSet"]["Options"]
                ]
            }
        self.attributes[stored["LogicalName"]] = stored

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        query = parse_qs(urlsplit(str(request.url)).query)
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, path, body, request.headers))
        single = re.fullmatch(
            re.escape(ATTRIBUTES) + r"\(LogicalName='([a-z0-9_]+)'\)(?:/Microsoft\.Dynamics\.CRM\."
            r"(\w+))?",
            path,
        )
        if path == ATTRIBUTES:
            return self._list(query) if request.method == "GET" else self._create(body)
        if single is not None:
            return self._single(request.method, single, query, body)
        if path in {f"{DATA}/InsertOptionValue", f"{DATA}/UpdateOptionValue"}:
            return self._option(path, body)
        if path == f"{DATA}/PublishXml":
            self.published += 1
            return httpx.Response(204)
        return httpx.Response(404, json={"error": {"code": "0x80060888", "message": path}})

    def _list(self, query: dict[str, list[str]]) -> httpx.Response:
        assert query["$filter"] == ["IsCustomAttribute eq true"]
        selected = query["$select"][0].split(",")
        return httpx.Response(
            200,
            json={
                "@odata.context": f"{ORG}{DATA}/$metadata#EntityDefinitions('account')"
                "/Attributes(LogicalName,AttributeType,DisplayName,Description)",
                "value": [
                    {key: item[key] for key in [*selected, "MetadataId"] if key in item}
                    for item in self.attributes.values()
                ],
            },
        )

    def _create(self, body: dict[str, Any] | None) -> httpx.Response:
        assert body is not None
        if body["SchemaName"] in self.created_meanwhile:
            self.created_meanwhile.discard(body["SchemaName"])
            self.add(body)
        if body["SchemaName"].lower() in self.attributes:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "code": "0x80047013",
                        "message": f"An attribute with the specified name {body['SchemaName']}"
                        " already exists.",
                    }
                },
            )
        self.add(body)
        metadata_id = self.attributes[body["SchemaName"].lower()]["MetadataId"]
        return httpx.Response(204, headers={"OData-EntityId": f"{ORG}{ATTRIBUTES}({metadata_id})"})

    def _single(
        self,
        method: str,
        single: re.Match[str],
        query: dict[str, list[str]],
        body: dict[str, Any] | None,
    ) -> httpx.Response:
        stored = self.attributes[single.group(1)]
        if method == "PUT":
            assert body is not None
            stored["DisplayName"] = text_label(body["DisplayName"]["LocalizedLabels"][0]["Label"])
            stored["Description"] = text_label(body["Description"]["LocalizedLabels"][0]["Label"])
            return httpx.Response(204)
        if "$expand" in query:
            return httpx.Response(
                200,
                json={
                    "LogicalName": stored["LogicalName"],
                    "MetadataId": stored["MetadataId"],
                    "OptionSet": copy.deepcopy(stored["OptionSet"]),
                },
            )
        return httpx.Response(
            200,
            json={
                "@odata.context": f"{ORG}{DATA}/$metadata#EntityDefinitions('account')"
                f"/Attributes/Microsoft.Dynamics.CRM.{single.group(2)}/$entity",
                **{k: v for k, v in stored.items() if k != "OptionSet"},
            },
        )

    def _option(self, path: str, body: dict[str, Any] | None) -> httpx.Response:
        assert body is not None
        options = self.attributes[body["AttributeLogicalName"]]["OptionSet"]["Options"]
        text = body["Label"]["LocalizedLabels"][0]["Label"]
        options[:] = [option for option in options if option["Value"] != body["Value"]]
        options.append({"Value": body["Value"], "Label": text_label(text)})
        if path.endswith("InsertOptionValue"):
            return httpx.Response(200, json={"NewOptionValue": body["Value"]})
        return httpx.Response(204)


class FakeAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer token"
        yield request


@pytest.fixture
def environment() -> FakeEnvironment:
    return FakeEnvironment()


@pytest.fixture
async def connector(environment):
    with respx.mock(base_url=ORG, assert_all_called=False) as router:
        router.route().mock(side_effect=environment.handler)
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


async def test_provisioning_an_empty_environment_creates_every_column_and_publishes(
    connector, environment
) -> None:
    report = await connector.ensure_fields()
    assert report.created == list(LOGICAL_NAMES.values())
    assert report.updated == ["publish:account"]
    assert report.unchanged == []
    posts = [call for call in environment.calls if call[0] == "POST" and call[1] == ATTRIBUTES]
    assert len(posts) == len(HEALTH_FIELDS)
    for _, _, body, headers in posts:
        assert headers["MSCRM.SolutionUniqueName"] == "CustomerHealth"
        assert body is not None
        assert body["SchemaName"].startswith("cr123_")
    assert environment.published == 1
    publish = [call for call in environment.calls if call[1].endswith("/PublishXml")]
    assert publish[0][2] == {
        "ParameterXml": "<importexportxml><entities><entity>account</entity></entities>"
        "</importexportxml>"
    }
    # Publishing comes after the columns exist.
    assert environment.writes()[-1] == ("POST", f"{DATA}/PublishXml")


async def test_a_second_run_sends_no_post_or_put(connector, environment) -> None:
    await connector.ensure_fields()
    environment.calls.clear()
    report = await connector.ensure_fields()
    assert environment.writes() == []
    assert report.created == []
    assert report.updated == []
    assert report.unchanged == [*LOGICAL_NAMES.values(), "publish:account"]
    assert environment.published == 1


async def test_a_drifted_label_is_put_back_with_merge_labels(connector, environment) -> None:
    await connector.ensure_fields()
    environment.attributes["cr123_healthscore"]["DisplayName"] = text_label("Score (old)")
    environment.calls.clear()
    report = await connector.ensure_fields()
    assert report.updated == ["cr123_healthscore", "publish:account"]
    assert environment.writes() == [
        ("PUT", f"{ATTRIBUTES}(LogicalName='cr123_healthscore')"),
        ("POST", f"{DATA}/PublishXml"),
    ]
    gets = [path for method, path, _, _ in environment.calls if method == "GET"]
    assert (
        f"{ATTRIBUTES}(LogicalName='cr123_healthscore')"
        "/Microsoft.Dynamics.CRM.IntegerAttributeMetadata" in gets
    )
    put = next(call for call in environment.calls if call[0] == "PUT")
    assert put[3]["MSCRM.MergeLabels"] == "true"
    assert put[3]["MSCRM.SolutionUniqueName"] == "CustomerHealth"
    assert put[2] is not None
    assert put[2]["@odata.type"] == "Microsoft.Dynamics.CRM.IntegerAttributeMetadata"
    assert put[2]["DisplayName"]["LocalizedLabels"][0]["Label"] == "Health score"
    assert put[2]["MaxValue"] == 100  # the rest of the definition is sent back as it was
    assert "@odata.context" not in put[2]
    environment.calls.clear()
    await connector.ensure_fields()
    assert environment.writes() == []


async def test_a_missing_band_choice_is_inserted(connector, environment) -> None:
    await connector.ensure_fields()
    options = environment.attributes["cr123_healthband"]["OptionSet"]["Options"]
    options[:] = [option for option in options if option["Value"] != 727000004]
    options[0]["Label"] = text_label("Great")
    environment.calls.clear()
    report = await connector.ensure_fields()
    assert report.updated == ["cr123_healthband", "publish:account"]
    actions = {path: body for method, path, body, _ in environment.calls if method == "POST"}
    assert actions[f"{DATA}/InsertOptionValue"] is not None
    inserted = actions[f"{DATA}/InsertOptionValue"]
    assert inserted is not None
    assert inserted["Value"] == 727000004
    assert inserted["EntityLogicalName"] == "account"
    assert inserted["AttributeLogicalName"] == "cr123_healthband"
    assert inserted["SolutionUniqueName"] == "CustomerHealth"
    assert inserted["Label"]["LocalizedLabels"][0]["Label"] == "Unknown"
    relabelled = actions[f"{DATA}/UpdateOptionValue"]
    assert relabelled is not None
    assert (relabelled["Value"], relabelled["MergeLabels"]) == (727000001, True)


async def test_a_column_of_another_type_stops_provisioning(connector, environment) -> None:
    environment.add(
        {
            "SchemaName": "cr123_HealthScore",
            "AttributeType": "String",
            "DisplayName": {"LocalizedLabels": [{"Label": "Health score"}]},
            "Description": {"LocalizedLabels": [{"Label": "Customer health"}]},
        }
    )
    with pytest.raises(ConnectorError, match="cr123_healthscore exists as String"):
        await connector.ensure_fields()


async def test_a_column_created_meanwhile_by_another_run_counts_as_unchanged(
    connector, environment
) -> None:
    # Another replica creates the drivers column between our read and our create.
    environment.created_meanwhile.add("cr123_HealthDrivers")
    report = await connector.ensure_fields()
    assert "cr123_healthdrivers" in report.unchanged
    assert "cr123_healthdrivers" not in report.created
    assert len(report.created) == len(HEALTH_FIELDS) - 1


async def test_missing_health_fields_reads_without_writing(connector, environment) -> None:
    assert await connector.missing_health_fields() == list(LOGICAL_NAMES.values())
    await connector.ensure_fields()
    environment.calls.clear()
    assert await connector.missing_health_fields() == []
    assert environment.writes() == []


# --- a field plan's columns --------------------------------------------------------------------

NPS_SCORE = ConfiguredField(
    neutral="health_nps_trend",
    label="Health: NPS trend",
    description="Customer health: NPS trend signal, 0 to 100. Written by crm-health.",
)
SENTIMENT = ConfiguredField(
    neutral=SENTIMENT_FIELD,
    label="CSM sentiment",
    description="The CSM's view of the account: red, amber or green.",
    options=SENTIMENT_RATINGS,
)


def reasons_field(*reasons: str) -> ConfiguredField:
    return ConfiguredField(
        neutral=SENTIMENT_REASON_FIELD,
        label="CSM sentiment reason",
        description="Why the CSM sees the account so.",
        options=reasons,
    )


PLAN = FieldPlan(
    scores=(NPS_SCORE,),
    inputs=(SENTIMENT, reasons_field("budget cut", "champion left", "other")),
)
PLANNED_COLUMNS = [
    "cr123_healthnpstrend",
    "cr123_healthcsmsentiment",
    "cr123_healthcsmsentimentreason",
]


def choices(environment: FakeEnvironment, column: str) -> dict[int, str]:
    options = environment.attributes[column]["OptionSet"]["Options"]
    return {option["Value"]: option["Label"]["LocalizedLabels"][0]["Label"] for option in options}


def test_a_custom_signal_is_a_whole_number_column_named_like_the_signals(fields) -> None:
    planned = fields.planned(FieldPlan(scores=(NPS_SCORE,)))
    column = planned.by_neutral["health_nps_trend"]
    assert (column.logical_name, column.schema_name) == (
        "cr123_healthnpstrend",
        "cr123_HealthNpsTrend",
    )
    definition = column.definition()
    assert definition["@odata.type"] == "Microsoft.Dynamics.CRM.IntegerAttributeMetadata"
    assert (definition["MinValue"], definition["MaxValue"]) == (0, 100)
    assert definition["DisplayName"]["LocalizedLabels"][0]["Label"] == "Health: NPS trend"
    assert definition["Description"]["LocalizedLabels"][0]["Label"] == NPS_SCORE.description
    assert planned.logical_names["health_nps_trend"] == "cr123_healthnpstrend"
    assert planned.to_web_api({"health_nps_trend": 61.6}) == {"cr123_healthnpstrend": 62}


def test_an_input_is_a_choice_with_values_of_the_option_value_prefix(fields) -> None:
    planned = fields.planned(PLAN)
    column = planned.by_neutral[SENTIMENT_FIELD]
    definition = column.definition()
    assert definition["@odata.type"] == "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
    assert definition["SchemaName"] == "cr123_HealthCsmSentiment"
    options = [
        (option["Value"], option["Label"]["LocalizedLabels"][0]["Label"])
        for option in definition["OptionSet"]["Options"]
    ]
    assert [text for _, text in options] == ["red", "amber", "green"]
    assert all(727000001 <= value <= 727009999 for value, _ in options)
    assert len({value for value, _ in options}) == 3
    # Inputs are read, never written; the written fields stay the fixed ones and the scores.
    assert SENTIMENT_FIELD not in planned.logical_names
    with pytest.raises(ValueError, match="not a health field"):
        planned.to_web_api({SENTIMENT_FIELD: "red"})


def test_a_choice_keeps_its_value_by_its_label_when_the_list_changes(fields) -> None:
    before = fields.planned(
        FieldPlan(inputs=(reasons_field("budget cut", "champion left", "other"),))
    )
    # Another process (a restart) with a reason added in the middle and one removed.
    after = DynamicsFields(prefix="cr123", option_value_prefix=72700).planned(
        FieldPlan(inputs=(reasons_field("other", "reorganisation", "budget cut"),))
    )
    old = {text: value for value, _, text in before.by_neutral[SENTIMENT_REASON_FIELD].options}
    new = {text: value for value, _, text in after.by_neutral[SENTIMENT_REASON_FIELD].options}
    assert new["budget cut"] == old["budget cut"]
    assert new["other"] == old["other"]
    assert new["reorganisation"] not in old.values()


@pytest.mark.parametrize(
    "plan",
    [
        # health_mutual_value is a fixed column already; health_ab and health_a_b share a name.
        FieldPlan(
            scores=(ConfiguredField(neutral="health_mutual_value", label="x", description="x"),)
        ),
        FieldPlan(
            scores=(
                ConfiguredField(neutral="health_ab", label="x", description="x"),
                ConfiguredField(neutral="health_a_b", label="x", description="x"),
            )
        ),
        FieldPlan(inputs=(reasons_field("Other", "other"),)),
    ],
)
def test_a_plan_whose_columns_or_choices_would_collide_is_refused(fields, plan) -> None:
    with pytest.raises(ValueError, match=r"share an account column|repeat a label"):
        fields.planned(plan)


async def test_provisioning_creates_the_plans_columns(connector, environment) -> None:
    connector.plan_fields(PLAN)
    assert environment.calls == []  # planning asks Dataverse nothing
    report = await connector.ensure_fields()
    assert report.created == [*LOGICAL_NAMES.values(), *PLANNED_COLUMNS]
    score = environment.attributes["cr123_healthnpstrend"]
    assert (score["AttributeType"], score["MinValue"], score["MaxValue"]) == ("Integer", 0, 100)
    assert score["DisplayName"]["LocalizedLabels"][0]["Label"] == "Health: NPS trend"
    assert environment.attributes["cr123_healthcsmsentiment"]["AttributeType"] == "Picklist"
    assert sorted(choices(environment, "cr123_healthcsmsentimentreason").values()) == [
        "budget cut",
        "champion left",
        "other",
    ]
    environment.calls.clear()
    again = await connector.ensure_fields()
    assert environment.writes() == []
    assert again.unchanged == [*LOGICAL_NAMES.values(), *PLANNED_COLUMNS, "publish:account"]


async def test_edited_reasons_are_inserted_and_relabelled_keeping_their_values(
    connector, environment
) -> None:
    connector.plan_fields(PLAN)
    await connector.ensure_fields()
    column = "cr123_healthcsmsentimentreason"
    before = {text: value for value, text in choices(environment, column).items()}
    edited = reasons_field("Budget cut", "champion left", "reorganisation", "other")
    connector.plan_fields(FieldPlan(scores=(NPS_SCORE,), inputs=(SENTIMENT, edited)))
    environment.calls.clear()
    report = await connector.ensure_fields()
    assert report.updated == [column, "publish:account"]
    actions = [
        (path.rsplit("/", 1)[1], body)
        for method, path, body, _ in environment.calls
        if method == "POST" and "OptionValue" in path
    ]
    assert [
        (action, body["Value"], body["Label"]["LocalizedLabels"][0]["Label"])
        for action, body in actions
    ] == [
        ("UpdateOptionValue", before["budget cut"], "Budget cut"),
        ("InsertOptionValue", actions[1][1]["Value"], "reorganisation"),
    ]
    assert actions[0][1]["MergeLabels"] is True
    assert actions[1][1]["Value"] not in before.values()
    assert actions[1][1]["SolutionUniqueName"] == "CustomerHealth"
    after = choices(environment, column)
    assert after[before["champion left"]] == "champion left"
    assert after[before["other"]] == "other"


async def test_a_choice_the_environment_holds_under_another_value_keeps_that_value(
    connector, environment
) -> None:
    # The rating column was made by hand: "Red" already has a value of its own, and the value
    # crm-health would give "amber" is taken by a choice of someone else's.
    connector.plan_fields(FieldPlan(inputs=(SENTIMENT,)))
    ours = {text: value for value, _, text in connector.fields.by_neutral[SENTIMENT_FIELD].options}
    definition = connector.fields.by_neutral[SENTIMENT_FIELD].definition()
    definition["OptionSet"]["Options"] = [
        {"Value": 727000000, "Label": {"LocalizedLabels": [{"Label": "Red"}]}},
        {"Value": ours["amber"], "Label": {"LocalizedLabels": [{"Label": "Blue"}]}},
    ]
    environment.add(definition)
    await connector.ensure_fields()
    held = choices(environment, "cr123_healthcsmsentiment")
    assert held[727000000] == "red"  # relabelled in place, not added again
    assert held[ours["amber"]] == "Blue"  # someone else's choice is left alone
    amber = next(value for value, text in held.items() if text == "amber")
    assert amber != ours["amber"]
    # Read by the values as they are held.
    options = connector.fields.by_neutral[SENTIMENT_FIELD].options
    assert {text: value for value, _, text in options} == {
        "red": 727000000,
        "amber": amber,
        "green": ours["green"],
    }


async def test_missing_health_fields_names_the_plans_columns(connector, environment) -> None:
    await connector.ensure_fields()
    connector.plan_fields(PLAN)
    assert await connector.missing_health_fields() == PLANNED_COLUMNS
