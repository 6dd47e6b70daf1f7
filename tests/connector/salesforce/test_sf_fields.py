"""The Salesforce health fields: definitions, value formatting, and provisioning them (Tooling API
custom fields, a permission set with field permissions, its assignment) against a fake org.

The fake org answers as the guides print it: Tooling API "CustomField" (query lists Id and
DeveloperName; a GET by id carries FullName and Metadata, picklist values as `valueName`),
REST "Query" (`{"totalSize", "done", "records": [{"attributes": {...}, ...}]}`), "Create a
Record" (`{"id", "success", "errors"}`), PATCH answers 204, errors
`[{"message", "errorCode", "fields"}]`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Generator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from connector.base import (
    HEALTH_FIELDS,
    NO_FIELD_PLAN,
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    FieldPlan,
)
from connector.errors import CRMRequestRejected
from connector.http import RetryPolicy
from connector.salesforce.api import SalesforceConnector
from connector.salesforce.fields import (
    API_NAME_BY_NEUTRAL,
    BASE_TABLE,
    DRIVERS_LENGTH,
    FIELD_BY_NEUTRAL,
    FIELDS,
    field_table,
    to_api_fields,
)

LOGIN = "https://login.salesforce.com"
INSTANCE = "https://example.my.salesforce.com"
VERSION = "v62.0"
DATA = f"/services/data/{VERSION}"
USER_ID = "005D0000001AbcdIAC"


class FakeAuth(httpx.Auth):
    """What connector.salesforce.auth does to every request: the token, the org's instance."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer 00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog"
        request.url = request.url.copy_with(
            scheme="https", host="example.my.salesforce.com", port=None
        )
        yield request


# --- definitions and values --------------------------------------------------------------------


def test_every_health_field_has_an_account_custom_field() -> None:
    assert tuple(FIELD_BY_NEUTRAL) == HEALTH_FIELDS
    assert API_NAME_BY_NEUTRAL == {
        "health_score": "Health_Score__c",
        "health_band": "Health_Band__c",
        "health_trend_30d": "Health_Trend_30d__c",
        "health_active_use": "Health_Active_Use__c",
        "health_collaboration": "Health_Collaboration__c",
        "health_mutual_value": "Health_Mutual_Value__c",
        "health_momentum": "Health_Momentum__c",
        "health_drivers": "Health_Drivers__c",
        "health_updated_at": "Health_Updated_At__c",
    }
    for spec in FIELDS:
        assert spec.full_name == f"Account.{spec.api_name}"
        metadata = spec.metadata()
        assert "Customer health" in metadata["description"]
        assert "Customer health" in metadata["inlineHelpText"]
        # Salesforce limits: label 40, description 1,000, help text 510 characters.
        assert len(metadata["label"]) <= 40
        assert len(metadata["description"]) <= 1000
        assert len(metadata["inlineHelpText"]) <= 510


def test_band_is_a_restricted_picklist_of_the_bands() -> None:
    metadata = FIELD_BY_NEUTRAL["health_band"].metadata()
    assert metadata["type"] == "Picklist"
    assert metadata["valueSet"] == {
        "restricted": True,
        "valueSetDefinition": {
            "sorted": False,
            "value": [
                {"valueName": "healthy", "label": "Healthy", "default": False},
                {"valueName": "neutral", "label": "Neutral", "default": False},
                {"valueName": "at_risk", "label": "At risk", "default": False},
                {"valueName": "unknown", "label": "Unknown", "default": False},
                {"valueName": "onboarding", "label": "Onboarding", "default": False},
            ],
        },
    }


def test_number_text_and_datetime_definitions() -> None:
    score = FIELD_BY_NEUTRAL["health_score"].metadata()
    assert (score["type"], score["precision"], score["scale"]) == ("Number", 3, 0)
    trend = FIELD_BY_NEUTRAL["health_trend_30d"].metadata()
    assert (trend["type"], trend["precision"], trend["scale"]) == ("Number", 4, 1)
    drivers = FIELD_BY_NEUTRAL["health_drivers"].metadata()
    assert (drivers["type"], drivers["length"], drivers["visibleLines"]) == (
        "LongTextArea",
        32_768,
        5,
    )
    assert FIELD_BY_NEUTRAL["health_updated_at"].metadata()["type"] == "DateTime"


def test_values_become_the_json_salesforce_accepts() -> None:
    assert to_api_fields(
        {
            "health_score": 72,
            "health_band": "at_risk",
            "health_trend_30d": -12.345,
            "health_active_use": 55.6,
            "health_collaboration": None,
            "health_updated_at": "2026-11-23T21:42:31.123+00:00",
        }
    ) == {
        "Health_Score__c": 72,
        "Health_Band__c": "at_risk",
        "Health_Trend_30d__c": -12.3,
        "Health_Active_Use__c": 56,
        "Health_Collaboration__c": None,
        "Health_Updated_At__c": "2026-11-23T21:42:31.123Z",
    }


def test_a_datetime_with_another_offset_is_sent_in_utc() -> None:
    assert to_api_fields({"health_updated_at": "2026-11-23T23:00:00+02:00"}) == {
        "Health_Updated_At__c": "2026-11-23T21:00:00.000Z"
    }


def test_drivers_are_cut_to_the_field_length_at_a_line_end() -> None:
    line = "x" * 99 + "\n"
    text = line * 400  # 40,000 characters
    sent = to_api_fields({"health_drivers": text})["Health_Drivers__c"]
    assert isinstance(sent, str)
    assert len(sent) <= DRIVERS_LENGTH
    assert sent.endswith("x")
    assert all(part == "x" * 99 for part in sent.split("\n"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("health_mood", 1),
        ("health_score", "lots"),
        ("health_score", float("nan")),
        ("health_updated_at", "yesterday"),
    ],
)
def test_values_no_field_can_take_are_refused(name, value) -> None:
    with pytest.raises(ValueError, match=name if name == "health_mood" else "Health_"):
        to_api_fields({name: value})


# --- a fake org --------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json=[{"message": message, "errorCode": code, "fields": []}])


def _stored_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as a Tooling API GET answers it: every key, unset ones null, picklist values
    with their extra attributes."""
    stored = {
        "businessOwnerGroup": None,
        "caseSensitive": None,
        "complianceGroup": None,
        "defaultValue": None,
        "externalId": False,
        "length": None,
        "precision": None,
        "required": False,
        "scale": None,
        "securityClassification": None,
        "trackHistory": False,
        "unique": None,
        "visibleLines": None,
        "valueSet": None,
        **copy.deepcopy(metadata),
    }
    value_set = stored["valueSet"]
    if value_set is not None:
        value_set.update({"controllingField": None, "valueSetName": None, "valueSettings": []})
        for value in value_set["valueSetDefinition"]["value"]:
            value.update({"color": None, "description": None, "isActive": None, "urls": None})
    return stored


class FakeOrg:
    """Just enough of an org's Tooling and REST APIs for provisioning, with its state."""

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}  # CustomField Id -> {"FullName", "Metadata"}
        self.permission_sets: dict[str, str] = {}  # Id -> Name
        self.field_permissions: dict[str, dict[str, Any]] = {}  # Id -> row
        self.assignments: dict[str, tuple[str, str]] = {}  # Id -> (AssigneeId, PermissionSetId)
        # Queries of these objects that still answer nothing (another run created the rows
        # a moment after we looked).
        self.stale_queries: dict[str, int] = {}
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self._next = 0

    def _id(self, prefix: str) -> str:
        self._next += 1
        return f"{prefix}D{self._next:011d}AAA"

    def mount(self, router: respx.Router) -> None:
        router.route(host="example.my.salesforce.com").mock(side_effect=self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Bearer ")
        path = request.url.path
        body: Any = json.loads(request.content) if request.content else None
        if request.method in {"POST", "PATCH"}:
            self.writes.append((request.method, path, body))
        if request.method == "GET" and path in {f"{DATA}/query", f"{DATA}/tooling/query"}:
            return self.query(parse_qs(urlsplit(str(request.url)).query)["q"][0])
        match = re.fullmatch(rf"{DATA}(/tooling)?/sobjects/(\w+)(?:/(\w+))?", path)
        assert match is not None, path
        _, sobject, record_id = match.groups()
        handler = getattr(self, f"{request.method.lower()}_{sobject.lower()}")
        return handler(body) if record_id is None else handler(record_id, body)

    def query(self, soql: str) -> httpx.Response:
        found = re.search(r"\bFROM (\w+)", soql)
        assert found is not None, soql
        sobject = found.group(1)
        records = [] if self.stale_queries.get(sobject, 0) > 0 else self.rows(sobject, soql)
        if self.stale_queries.get(sobject):
            self.stale_queries[sobject] -= 1
        for record in records:
            record["attributes"] = {
                "type": sobject,
                "url": f"{DATA}/sobjects/{sobject}/{record['Id']}",
            }
        return httpx.Response(
            200, json={"totalSize": len(records), "done": True, "records": records}
        )

    def rows(self, sobject: str, soql: str) -> list[dict[str, Any]]:
        literals = re.findall(r"'([^']*)'", soql)
        if sobject == "CustomField":
            assert "TableEnumOrId = 'Account'" in soql
            return [
                {
                    "Id": field_id,
                    "DeveloperName": field["FullName"].split(".")[1].removesuffix("__c"),
                    "NamespacePrefix": None,
                }
                for field_id, field in self.fields.items()
                if field["FullName"].split(".")[1].removesuffix("__c") in literals
            ]
        if sobject == "PermissionSet":
            return [
                {"Id": ps_id} for ps_id, name in self.permission_sets.items() if name in literals
            ]
        if sobject == "FieldPermissions":
            return [
                {
                    "Id": row_id,
                    **{k: row[k] for k in ("Field", "PermissionsRead", "PermissionsEdit")},
                }
                for row_id, row in self.field_permissions.items()
                if row["ParentId"] in literals
            ]
        if sobject == "PermissionSetAssignment":
            return [
                {"Id": row_id}
                for row_id, (assignee, ps_id) in self.assignments.items()
                if assignee in literals and ps_id in literals
            ]
        raise AssertionError(soql)

    def _created(self, record_id: str) -> httpx.Response:
        return httpx.Response(201, json={"id": record_id, "success": True, "errors": []})

    def post_customfield(self, body: dict[str, Any]) -> httpx.Response:
        if any(field["FullName"] == body["FullName"] for field in self.fields.values()):
            object_name, field_name = body["FullName"].split(".")
            return _error(
                400,
                "DUPLICATE_DEVELOPER_NAME",
                f"There is already a field named {field_name.removesuffix('__c')} on "
                f"{object_name}.",
            )
        field_id = self._id("00N")
        self.fields[field_id] = {
            "FullName": body["FullName"],
            "Metadata": _stored_metadata(body["Metadata"]),
        }
        return self._created(field_id)

    def get_customfield(self, field_id: str, _body: None) -> httpx.Response:
        field = self.fields[field_id]
        return httpx.Response(
            200,
            json={
                "attributes": {
                    "type": "CustomField",
                    "url": f"{DATA}/tooling/sobjects/CustomField/{field_id}",
                },
                "Id": field_id,
                "TableEnumOrId": "Account",
                "DeveloperName": field["FullName"].split(".")[1].removesuffix("__c"),
                "NamespacePrefix": None,
                "ManageableState": "unmanaged",
                "FullName": field["FullName"],
                "Metadata": copy.deepcopy(field["Metadata"]),
            },
        )

    def patch_customfield(self, field_id: str, body: dict[str, Any]) -> httpx.Response:
        before = self.fields[field_id]["Metadata"]["valueSet"]
        stored = _stored_metadata(body["Metadata"])
        if before is not None and stored["valueSet"] is not None:
            # "If picklist values are missing from a component definition, they get
            # deactivated when deployed" (Metadata API, CustomValue): still listed, inactive.
            values = stored["valueSet"]["valueSetDefinition"]["value"]
            kept = {value["valueName"] for value in values}
            values.extend(
                {**value, "isActive": False}
                for value in before["valueSetDefinition"]["value"]
                if value["valueName"] not in kept
            )
        self.fields[field_id]["Metadata"] = stored
        return httpx.Response(204)

    def post_permissionset(self, body: dict[str, Any]) -> httpx.Response:
        if body["Name"] in self.permission_sets.values():
            return _error(
                400, "DUPLICATE_DEVELOPER_NAME", "The API name Customer_Health is already in use."
            )
        ps_id = self._id("0PS")
        self.permission_sets[ps_id] = body["Name"]
        return self._created(ps_id)

    def post_fieldpermissions(self, body: dict[str, Any]) -> httpx.Response:
        for row in self.field_permissions.values():
            if (row["ParentId"], row["Field"]) == (body["ParentId"], body["Field"]):
                return _error(
                    400,
                    "DUPLICATE_VALUE",
                    "duplicate value found: <unknown> duplicates value on record with id: "
                    "<unknown>",
                )
        row_id = self._id("01k")
        self.field_permissions[row_id] = dict(body)
        return self._created(row_id)

    def patch_fieldpermissions(self, row_id: str, body: dict[str, Any]) -> httpx.Response:
        self.field_permissions[row_id].update(body)
        return httpx.Response(204)

    def post_permissionsetassignment(self, body: dict[str, Any]) -> httpx.Response:
        pair = (body["AssigneeId"], body["PermissionSetId"])
        if pair in self.assignments.values():
            return _error(
                400,
                "DUPLICATE_VALUE",
                "duplicate value found: <unknown> duplicates value on record with id: <unknown>",
            )
        self.assignments[self._id("0Pa")] = pair
        return self._created(f"0PaD{len(self.assignments):011d}AAA")


@pytest.fixture
def org():
    fake = FakeOrg()
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        yield fake


@pytest.fixture
async def connector():
    async def user_id() -> str:
        return USER_ID

    salesforce = SalesforceConnector.create(
        connection="t",
        auth=FakeAuth(),
        login_url=LOGIN,
        api_version=VERSION,
        policy=RetryPolicy(max_attempts=1),
        rate_limit=None,
        user_id=user_id,
    )
    yield salesforce
    await salesforce.aclose()


FIELD_NAMES = [spec.api_name for spec in FIELDS]
PERMISSION_ENTRIES = [f"field_permission:{name}" for name in FIELD_NAMES]


# --- provisioning ------------------------------------------------------------------------------


async def test_an_empty_org_gets_fields_permission_set_permissions_and_assignment(
    org, connector
) -> None:
    report = await connector.ensure_fields()
    assert report.created == [
        *FIELD_NAMES,
        "permission_set:Customer_Health",
        *PERMISSION_ENTRIES,
        "assignment:Customer_Health",
    ]
    assert report.updated == []
    assert report.unchanged == []
    field_posts = [body for method, path, body in org.writes if path.endswith("/CustomField")]
    assert field_posts[0] == {
        "FullName": "Account.Health_Score__c",
        "Metadata": FIELDS[0].metadata(),
    }
    ((ps_id, name),) = org.permission_sets.items()
    assert name == "Customer_Health"
    ps_post = next(body for _, path, body in org.writes if path.endswith("/PermissionSet"))
    assert ps_post["Label"] == "Customer health"
    assert sorted(row["Field"] for row in org.field_permissions.values()) == sorted(
        f"Account.{name}" for name in FIELD_NAMES
    )
    assert all(
        row
        == {
            "ParentId": ps_id,
            "SobjectType": "Account",
            "Field": row["Field"],
            "PermissionsRead": True,
            "PermissionsEdit": True,
        }
        for row in org.field_permissions.values()
    )
    assert list(org.assignments.values()) == [(USER_ID, ps_id)]


async def test_a_second_run_changes_nothing(org, connector) -> None:
    await connector.ensure_fields()
    writes = len(org.writes)
    report = await connector.ensure_fields()
    assert org.writes[writes:] == []
    assert report.created == []
    assert report.updated == []
    assert report.unchanged == [
        *FIELD_NAMES,
        "permission_set:Customer_Health",
        *PERMISSION_ENTRIES,
        "assignment:Customer_Health",
    ]


async def test_a_changed_picklist_is_updated_keeping_what_an_admin_set(org, connector) -> None:
    await connector.ensure_fields()
    band_id, band = next(
        (field_id, field)
        for field_id, field in org.fields.items()
        if field["FullName"] == "Account.Health_Band__c"
    )
    # Someone dropped "onboarding" from the picklist, and turned on field history tracking.
    band["Metadata"]["valueSet"]["valueSetDefinition"]["value"].pop()
    band["Metadata"]["trackHistory"] = True
    writes = len(org.writes)
    report = await connector.ensure_fields()
    assert report.updated == ["Health_Band__c"]
    assert report.created == []
    ((method, path, body),) = org.writes[writes:]
    assert (method, path) == ("PATCH", f"{DATA}/tooling/sobjects/CustomField/{band_id}")
    assert body["Metadata"]["trackHistory"] is True
    assert [
        value["valueName"] for value in body["Metadata"]["valueSet"]["valueSetDefinition"]["value"]
    ] == ["healthy", "neutral", "at_risk", "unknown", "onboarding"]
    assert body["Metadata"]["valueSet"]["restricted"] is True


async def test_a_relabelled_field_is_updated(org, connector) -> None:
    await connector.ensure_fields()
    score = next(f for f in org.fields.values() if f["FullName"] == "Account.Health_Score__c")
    score["Metadata"]["label"] = "Score"
    report = await connector.ensure_fields()
    assert report.updated == ["Health_Score__c"]
    assert score["Metadata"]["label"] == "Health score"


async def test_a_number_answered_with_a_fraction_is_the_same_number(org, connector) -> None:
    await connector.ensure_fields()
    for field in org.fields.values():
        if field["Metadata"]["precision"] is not None:
            field["Metadata"]["precision"] = float(field["Metadata"]["precision"])
    report = await connector.ensure_fields()
    assert report.updated == []


async def test_a_read_only_field_permission_is_made_editable(org, connector) -> None:
    await connector.ensure_fields()
    row_id, row = next(
        (row_id, row)
        for row_id, row in org.field_permissions.items()
        if row["Field"] == "Account.Health_Drivers__c"
    )
    row["PermissionsEdit"] = False
    writes = len(org.writes)
    report = await connector.ensure_fields()
    assert report.updated == ["field_permission:Health_Drivers__c"]
    assert org.writes[writes:] == [
        (
            "PATCH",
            f"{DATA}/sobjects/FieldPermissions/{row_id}",
            {"PermissionsRead": True, "PermissionsEdit": True},
        )
    ]


async def test_what_a_concurrent_run_created_meanwhile_counts_as_unchanged(org, connector) -> None:
    # Another replica provisioned everything; our queries ran just before its creates landed,
    # so our creates are answered DUPLICATE_DEVELOPER_NAME / DUPLICATE_VALUE.
    await connector.ensure_fields()
    org.stale_queries = {
        "CustomField": 1,
        "PermissionSet": 1,
        "FieldPermissions": 1,
        "PermissionSetAssignment": 1,
    }
    report = await connector.ensure_fields()
    assert report.created == []
    assert report.updated == []
    assert report.unchanged == [
        *FIELD_NAMES,
        "permission_set:Customer_Health",
        *PERMISSION_ENTRIES,
        "assignment:Customer_Health",
    ]
    assert len(org.permission_sets) == 1
    assert len(org.field_permissions) == len(FIELDS)
    assert len(org.assignments) == 1


async def test_without_a_user_nothing_is_assigned(org) -> None:
    salesforce = SalesforceConnector.create(
        connection="t",
        auth=FakeAuth(),
        login_url=LOGIN,
        api_version=VERSION,
        policy=RetryPolicy(max_attempts=1),
        rate_limit=None,
    )
    try:
        report = await salesforce.ensure_fields()
    finally:
        await salesforce.aclose()
    assert "assignment:Customer_Health" not in report.created
    assert org.assignments == {}


async def test_another_refusal_of_a_create_is_raised(org, connector) -> None:
    def refuse(body: dict[str, Any]) -> httpx.Response:
        return _error(
            400, "FIELD_INTEGRITY_EXCEPTION", "Field Account.Health_Score__c is not valid"
        )

    org.post_fieldpermissions = refuse
    with pytest.raises(CRMRequestRejected) as caught:
        await connector.ensure_fields()
    assert "FIELD_INTEGRITY_EXCEPTION" in caught.value.body


async def test_missing_health_fields_reads_without_writing(org, connector) -> None:
    assert await connector.missing_health_fields() == FIELD_NAMES
    await connector.ensure_fields()
    writes = len(org.writes)
    assert await connector.missing_health_fields() == []
    assert org.writes[writes:] == []


# --- the field plan ----------------------------------------------------------------------------

ADOPTION = ConfiguredField(
    neutral="health_adoption",
    label="Health: Adoption",
    description="Adoption: a custom signal, 0 (at risk) to 100.",
)
SENTIMENT = ConfiguredField(
    neutral=SENTIMENT_FIELD,
    label="CSM sentiment",
    description="The CSM's judgement of the account: red, amber or green.",
    options=SENTIMENT_RATINGS,
)


def reasons_field(*reasons: str) -> ConfiguredField:
    return ConfiguredField(
        neutral=SENTIMENT_REASON_FIELD,
        label="CSM sentiment reason",
        description="Why the CSM set the sentiment; set it before the sentiment.",
        options=reasons,
    )


PLAN = FieldPlan(
    scores=(ADOPTION,),
    inputs=(SENTIMENT, reasons_field("champion left", "budget cut", "CSM change")),
    reads=("NPS__c",),
)
PLANNED = ["Health_Adoption__c", "Health_Csm_Sentiment__c", "Health_Csm_Sentiment_Reason__c"]


def test_a_custom_signal_is_a_number_field_like_the_built_in_ones() -> None:
    table = field_table(PLAN)
    (adoption,) = table.written[len(FIELDS) :]
    assert adoption.api_name == "Health_Adoption__c"
    assert adoption.metadata() == {
        "label": "Health: Adoption",
        "description": "Adoption: a custom signal, 0 (at risk) to 100.",
        "inlineHelpText": "Adoption: a custom signal, 0 (at risk) to 100.",
        "type": "Number",
        "precision": 3,
        "scale": 0,
    }
    assert table.by_neutral["health_adoption"] is adoption
    # Inputs are provisioned but never written.
    assert "health_csm_sentiment" not in table.by_neutral
    assert [spec.api_name for spec in table.provisioned[len(FIELDS) :]] == PLANNED


def test_sentiment_inputs_are_restricted_picklists_of_exactly_the_options() -> None:
    sentiment, reason = field_table(PLAN).inputs
    assert sentiment.metadata()["valueSet"] == {
        "restricted": True,
        "valueSetDefinition": {
            "sorted": False,
            "value": [
                {"valueName": "red", "label": "Red", "default": False},
                {"valueName": "amber", "label": "Amber", "default": False},
                {"valueName": "green", "label": "Green", "default": False},
            ],
        },
    }
    assert [
        (value["valueName"], value["label"])
        for value in reason.metadata()["valueSet"]["valueSetDefinition"]["value"]
    ] == [
        ("champion left", "Champion left"),
        ("budget cut", "Budget cut"),
        ("CSM change", "CSM change"),
    ]


def test_a_label_longer_than_salesforce_takes_is_cut_at_a_word_and_kept_in_the_help() -> None:
    label = "Health: " + "Executive sponsor engagement across regional subsidiaries"
    spec = field_table(
        FieldPlan(scores=(ConfiguredField(neutral="health_exec", label=label, description="Why."),))
    ).by_neutral["health_exec"]
    assert len(spec.label) <= 40
    assert spec.label == "Health: Executive sponsor engagement…"
    assert spec.help_text == f"{label}: Why."


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        (FieldPlan(reads=("NPS__c FROM User --",)), "field name"),
        (FieldPlan(scores=(ADOPTION, ADOPTION)), "twice"),
        (
            FieldPlan(scores=(ConfiguredField(neutral="health__x", label="X", description="X"),)),
            "cannot be",
        ),
        (FieldPlan(inputs=(reasons_field(),)), "options"),
    ],
)
def test_a_plan_salesforce_cannot_hold_is_refused(connector, plan, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        connector.plan_fields(plan)
    assert connector.field_plan is NO_FIELD_PLAN


def test_the_empty_plan_is_the_fixed_fields(connector) -> None:
    assert field_table(NO_FIELD_PLAN) == BASE_TABLE
    connector.plan_fields(PLAN)
    connector.plan_fields(NO_FIELD_PLAN)
    assert connector.field_plan == NO_FIELD_PLAN


async def test_a_plan_provisions_its_fields_and_who_may_edit_them(org, connector) -> None:
    connector.plan_fields(PLAN)
    report = await connector.ensure_fields()
    inputs = "Customer_Health_Inputs"
    assert report.created == [
        *FIELD_NAMES,
        *PLANNED,
        "permission_set:Customer_Health",
        *PERMISSION_ENTRIES,
        *(f"field_permission:{name}" for name in PLANNED),
        "assignment:Customer_Health",
        f"permission_set:{inputs}",
        *(f"field_permission:{inputs}:{name}" for name in PLANNED[1:]),
    ]
    posted = {
        body["FullName"]: body["Metadata"]
        for _, path, body in org.writes
        if path.endswith("/CustomField")
    }
    assert posted["Account.Health_Adoption__c"]["type"] == "Number"
    assert posted["Account.Health_Csm_Sentiment__c"]["valueSet"]["restricted"] is True
    ids = {name: ps_id for ps_id, name in org.permission_sets.items()}
    grants = {
        (row["ParentId"], row["Field"]): (row["PermissionsRead"], row["PermissionsEdit"])
        for row in org.field_permissions.values()
    }
    integration, people = ids["Customer_Health"], ids[inputs]
    # The integration user writes the score and only reads what people set.
    assert grants[integration, "Account.Health_Adoption__c"] == (True, True)
    assert grants[integration, "Account.Health_Csm_Sentiment__c"] == (True, False)
    assert grants[integration, "Account.Health_Csm_Sentiment_Reason__c"] == (True, False)
    # People get edit on the inputs through their own permission set, and nothing else.
    assert {field for parent, field in grants if parent == people} == {
        "Account.Health_Csm_Sentiment__c",
        "Account.Health_Csm_Sentiment_Reason__c",
    }
    assert all(
        grants[people, field] == (True, True) for parent, field in grants if parent == people
    )
    # Who sets the sentiment is the admin's call: the service assigns only its own set.
    assert list(org.assignments.values()) == [(USER_ID, integration)]
    writes = len(org.writes)
    assert (await connector.ensure_fields()).created == []
    assert org.writes[writes:] == []


async def test_edited_sentiment_reasons_update_the_picklist_once(org, connector) -> None:
    connector.plan_fields(PLAN)
    await connector.ensure_fields()
    reason_id = next(
        field_id
        for field_id, field in org.fields.items()
        if field["FullName"] == "Account.Health_Csm_Sentiment_Reason__c"
    )
    connector.plan_fields(
        FieldPlan(
            scores=PLAN.scores,
            inputs=(SENTIMENT, reasons_field("champion left", "CSM change", "merger")),
            reads=PLAN.reads,
        )
    )
    writes = len(org.writes)
    report = await connector.ensure_fields()
    assert report.updated == ["Health_Csm_Sentiment_Reason__c"]
    ((method, path, body),) = org.writes[writes:]
    assert (method, path) == ("PATCH", f"{DATA}/tooling/sobjects/CustomField/{reason_id}")
    assert [
        value["valueName"] for value in body["Metadata"]["valueSet"]["valueSetDefinition"]["value"]
    ] == ["champion left", "CSM change", "merger"]
    # Salesforce keeps "budget cut" as an inactive value (records may hold it): that is no
    # difference the next run would try to fix again.
    writes = len(org.writes)
    assert (await connector.ensure_fields()).updated == []
    assert org.writes[writes:] == []


async def test_a_read_only_input_permission_is_not_made_editable_for_the_service(
    org, connector
) -> None:
    connector.plan_fields(PLAN)
    await connector.ensure_fields()
    ((row_id, row),) = [
        (row_id, row)
        for row_id, row in org.field_permissions.items()
        if row["Field"] == "Account.Health_Csm_Sentiment__c" and row["PermissionsEdit"] is False
    ]
    row["PermissionsRead"] = False
    writes = len(org.writes)
    report = await connector.ensure_fields()
    assert report.updated == ["field_permission:Health_Csm_Sentiment__c"]
    assert org.writes[writes:] == [
        ("PATCH", f"{DATA}/sobjects/FieldPermissions/{row_id}", {"PermissionsRead": True})
    ]


async def test_missing_health_fields_include_the_plans(org, connector) -> None:
    await connector.ensure_fields()
    connector.plan_fields(PLAN)
    assert await connector.missing_health_fields() == PLANNED
    await connector.ensure_fields()
    assert await connector.missing_health_fields() == []
