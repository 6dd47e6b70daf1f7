"""Dataverse webhooks: strict RemoteExecutionContext parsing, the three key options, Web API rows
in the same shape, and rows as normalised events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from dynamics_samples import (
    ACCOUNT,
    ACTIVITY,
    APP_USER,
    CONTACT,
    CONTRACTS,
    CORRELATION,
    CREATED,
    DOC_CONTACT,
    DOC_USER,
    DOCS_EXAMPLE,
    HUMAN,
    INCIDENT,
    MODIFIED,
    OPERATION,
    ORG,
    OTHER_ACCOUNT,
    RECEIVED,
    body,
    context,
    entity,
    money,
    option,
    ref,
    wcf,
)

from connector.dynamics.events import (
    DynamicsRecord,
    Lookup,
    parse_execution_context,
    parse_wcf_date,
    verify_request,
)
from connector.dynamics.records import (
    ENTITY_SETS,
    MAPPED_ENTITIES,
    DynamicsMapping,
    made_by,
    record_from_web_api,
    to_normalised,
    web_api_select,
)
from connector.errors import PayloadError, SignatureError
from connector.model import (
    AccountAttributes,
    AccountDeleted,
    ContactUpsert,
    Interaction,
    InteractionChannel,
    InteractionDirection,
    Ticket,
    TicketPriority,
)


def parse(**options: Any):
    return parse_execution_context(body(context(**options)))


def record(table: str, record_id: str, **attributes: Any) -> DynamicsRecord:
    return DynamicsRecord(entity=table, id=record_id, attributes=attributes)


# --- the documented example --------------------------------------------------------------------


def test_documented_example_is_parsed() -> None:
    parsed = parse_execution_context(DOCS_EXAMPLE)

    assert parsed.message == "Update"
    assert parsed.entity == "contact"
    assert parsed.record_id == DOC_CONTACT
    assert parsed.correlation_id == "b374239d-4233-41a9-8b17-a86cb4f737b5"
    assert parsed.request_id is None
    assert parsed.operation_id == "4af10637-4ea2-e711-8122-000d3aa2331c"
    assert (parsed.stage, parsed.depth) == (40, 1)
    assert parsed.user_id == parsed.initiating_user_id == DOC_USER
    assert parsed.organization_id == ORG
    assert parsed.organization_name == "OrgName"
    # The -0700 is the sender's zone; the milliseconds are UTC.
    assert parsed.operation_created_on == datetime(2017, 9, 26, 7, 4, 8, tzinfo=UTC)
    assert parsed.size_exceeded is False


def test_documented_example_record_merges_target_and_post_image() -> None:
    parsed = parse_execution_context(DOCS_EXAMPLE)

    assert parsed.record == DynamicsRecord(
        entity="contact",
        id=DOC_CONTACT,
        attributes={
            "firstname": "James",
            "contactid": DOC_CONTACT,
            "fullname": "James Glynn (sample)",
            "yomifullname": "James Glynn (sample)",
            "modifiedon": datetime(2017, 9, 26, 0, 4, 7, tzinfo=UTC),
            "modifiedby": Lookup(entity="systemuser", id=DOC_USER),
            "modifiedonbehalfby": None,
        },
    )


def test_documented_example_dedup_key_is_correlation_operation_record_stage_message() -> None:
    parsed = parse_execution_context(DOCS_EXAMPLE)

    assert parsed.dedup_key == (
        "b374239d-4233-41a9-8b17-a86cb4f737b5:4af10637-4ea2-e711-8122-000d3aa2331c:"
        f"contact:{DOC_CONTACT}:40:Update"
    )


def test_documented_contact_without_parent_account_says_nothing() -> None:
    parsed = parse_execution_context(DOCS_EXAMPLE)

    assert parsed.record is not None
    assert to_normalised(parsed.record, received_at=RECEIVED) == []


def test_the_operation_id_keys_a_run_even_with_a_request_id() -> None:
    request = "0d0d0d0d-0000-4000-8000-000000000d01"

    parsed = parse(target={"name": "Contoso"}, RequestId=request.upper())

    assert parsed.request_id == request
    assert parsed.dedup_key == f"{CORRELATION}:{OPERATION}:account:{ACCOUNT}:40:Update"


def test_two_runs_of_one_request_are_two_deliveries() -> None:
    request = "0d0d0d0d-0000-4000-8000-000000000d01"
    first = parse(target={"name": "Contoso"}, RequestId=request)
    second = parse(
        target={"statecode": 1},
        RequestId=request,
        OperationId="77777777-0000-4000-8000-0000000077a1",
    )

    assert first.dedup_key != second.dedup_key


def test_a_synchronous_step_without_operation_id_is_keyed_by_its_request() -> None:
    request = "0d0d0d0d-0000-4000-8000-000000000d01"

    parsed = parse(
        target={"name": "Contoso"},
        RequestId=request,
        OperationId="00000000-0000-0000-0000-000000000000",
    )

    assert parsed.dedup_key == f"{CORRELATION}:{request}:account:{ACCOUNT}:40:Update"


def test_redelivery_has_the_same_dedup_key_and_another_stage_does_not() -> None:
    first = parse(target={"name": "Contoso"})
    again = parse(target={"name": "Contoso"})
    other_stage = parse(target={"name": "Contoso"}, Stage=20)

    assert first.dedup_key == again.dedup_key
    assert first.dedup_key != other_stage.dedup_key


def test_guids_are_lowercased() -> None:
    parsed = parse(
        record_id=ACCOUNT.upper(),
        target={"ownerid": ref("systemuser", HUMAN.upper())},
        CorrelationId=CORRELATION.upper(),
    )

    assert parsed.record_id == ACCOUNT
    assert parsed.correlation_id == CORRELATION
    assert parsed.record is not None
    assert parsed.record.id == ACCOUNT
    assert parsed.record.attributes["ownerid"] == Lookup(entity="systemuser", id=HUMAN)


# --- value types -------------------------------------------------------------------------------


def test_typed_values_become_python_values() -> None:
    parsed = parse(
        target={
            "name": "Contoso",
            "new_seats": 250,
            "new_arr": money(120000.5),
            "new_tier": option(100000001),
            "donotemail": False,
            "modifiedon": wcf(MODIFIED),
            "ownerid": ref("team", APP_USER),
        }
    )

    assert parsed.record is not None
    assert parsed.record.attributes == {
        "name": "Contoso",
        "new_seats": 250,
        "new_arr": 120000.5,
        "new_tier": 100000001,
        "donotemail": False,
        "modifiedon": MODIFIED,
        "ownerid": Lookup(entity="team", id=APP_USER),
    }


@pytest.mark.parametrize(
    "value",
    ["/Date(1541548383000)/", "/Date(1541548383000+0000)/", "/Date(1541548383000-0700)/"],
)
def test_wcf_dates_with_and_without_offset_are_the_same_instant(value: str) -> None:
    assert parse_wcf_date(value, "x") == datetime(2018, 11, 6, 23, 53, 3, tzinfo=UTC)


def test_wcf_date_before_the_epoch_is_read() -> None:
    assert parse_wcf_date("/Date(-86400000)/", "x") == datetime(1969, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["2018-11-06T23:53:03Z", "/Date(abc)/", "/Date(1)", 1541548383000]
)
def test_malformed_wcf_date_names_the_field(value: Any) -> None:
    with pytest.raises(PayloadError, match=r"^OperationCreatedOn is not a /Date"):
        parse(target={"name": "Contoso"}, OperationCreatedOn=value)


def test_values_of_unmapped_types_are_left_out() -> None:
    party_list = {
        "__type": f"EntityCollection:{CONTRACTS}",
        "Entities": [entity("activityparty", ACTIVITY, {"partyid": ref("contact", CONTACT)})],
        "EntityName": "activityparty",
    }
    multi_select = [option(1), option(2)]

    parsed = parse(
        table="email",
        record_id=ACTIVITY,
        target={"subject": "Renewal", "to": party_list, "new_topics": multi_select},
    )

    assert parsed.record is not None
    assert parsed.record.attributes == {"subject": "Renewal"}


# --- messages and images -----------------------------------------------------------------------


def test_create_carries_the_target_columns() -> None:
    parsed = parse(message="Create", target={"name": "Contoso", "createdon": wcf(CREATED)})

    assert parsed.message == "Create"
    assert parsed.record == record("account", ACCOUNT, name="Contoso", createdon=CREATED)


def test_post_image_values_win_over_the_target() -> None:
    parsed = parse(
        target={"name": "Contoso Ltd", "websiteurl": "https://contoso.example"},
        post={"name": "Contoso Limited", "ownerid": ref("systemuser", HUMAN)},
    )

    assert parsed.record == record(
        "account",
        ACCOUNT,
        name="Contoso Limited",
        websiteurl="https://contoso.example",
        ownerid=Lookup(entity="systemuser", id=HUMAN),
    )


def test_images_without_type_marker_are_entities() -> None:
    document = context(target={"name": "Contoso"})
    document["PostEntityImages"] = [
        {"key": "PostImage", "value": entity("account", ACCOUNT, {"name": "X"}, typed=False)}
    ]

    parsed = parse_execution_context(body(document))

    assert parsed.record is not None
    assert parsed.record.attributes == {"name": "X"}


def test_delete_carries_the_pre_image() -> None:
    parsed = parse(
        message="Delete",
        table="contact",
        record_id=CONTACT,
        pre={"parentcustomerid": ref("account", ACCOUNT), "jobtitle": "CFO"},
    )

    assert parsed.record == record(
        "contact",
        CONTACT,
        parentcustomerid=Lookup(entity="account", id=ACCOUNT),
        jobtitle="CFO",
    )


def test_delete_without_pre_image_is_the_bare_id() -> None:
    parsed = parse(message="Delete")

    assert parsed.record == record("account", ACCOUNT)


def test_delete_target_must_be_the_primary_record() -> None:
    document = context(message="Delete")
    document["InputParameters"][0]["value"] = ref("account", OTHER_ACCOUNT)

    with pytest.raises(PayloadError, match=r"InputParameters\[0\]\.value refers to account"):
        parse_execution_context(body(document))


def test_other_messages_without_target_entity_have_no_record() -> None:
    document = context(message="Assign")
    document["InputParameters"] = [
        {"key": "Target", "value": ref("account", ACCOUNT)},
        {"key": "Assignee", "value": ref("systemuser", HUMAN)},
    ]

    parsed = parse_execution_context(body(document))

    assert parsed.message == "Assign"
    assert parsed.record is None


# --- size exceeded -----------------------------------------------------------------------------


def test_size_exceeded_delivery_without_parameters_or_images_has_no_record() -> None:
    document = context(
        target={"name": "Contoso"},
        drop=("InputParameters", "PreEntityImages", "PostEntityImages", "ParentContext"),
    )

    parsed = parse_execution_context(body(document), size_exceeded=True)

    assert parsed.size_exceeded is True
    assert parsed.record is None
    assert parsed.record_id == ACCOUNT
    assert parsed.dedup_key == f"{CORRELATION}:{OPERATION}:account:{ACCOUNT}:40:Update"


def test_size_exceeded_delivery_keeps_what_it_carries() -> None:
    document = context(post={"name": "Contoso"}, drop=("InputParameters",))

    parsed = parse_execution_context(body(document), size_exceeded=True)

    assert parsed.record == record("account", ACCOUNT, name="Contoso")


def test_missing_input_parameters_without_the_size_header_is_refused() -> None:
    document = context(target={"name": "Contoso"}, drop=("InputParameters",))

    with pytest.raises(PayloadError, match=r"^InputParameters is missing"):
        parse_execution_context(body(document))


def test_missing_target_without_the_size_header_is_refused() -> None:
    document = context(target={"name": "Contoso"})
    document["InputParameters"] = []

    with pytest.raises(PayloadError, match=r"^InputParameters has no Target"):
        parse_execution_context(body(document))


# --- malformed bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<xml/>", "^body is not JSON"),
        (b'{"MessageName": ', "^body is not JSON"),
        (b"\xff\xfe\x00", "^body is not"),
        (b"[]", "^body is not a JSON object"),
        (b'{"Depth": NaN}', "NaN is not a JSON value"),
    ],
)
def test_body_that_is_no_execution_context_is_refused(raw: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_execution_context(raw)


@pytest.mark.parametrize(
    "field",
    [
        "MessageName",
        "PrimaryEntityName",
        "PrimaryEntityId",
        "CorrelationId",
        "OperationId",
        "Stage",
        "Depth",
        "UserId",
        "InitiatingUserId",
        "OrganizationId",
        "OrganizationName",
        "OperationCreatedOn",
    ],
)
def test_missing_field_is_named(field: str) -> None:
    with pytest.raises(PayloadError, match=f"^{field} is missing"):
        parse(target={"name": "Contoso"}, drop=(field,))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("Stage", "40", "^Stage is not an integer"),
        ("Depth", True, "^Depth is not an integer"),
        ("PrimaryEntityId", "not-a-guid", "^PrimaryEntityId is not a GUID"),
        ("CorrelationId", 7, "^CorrelationId is not a GUID"),
        ("RequestId", "", "^RequestId is not a GUID"),
        ("MessageName", "", "^MessageName is not a non-empty string"),
        ("PrimaryEntityName", "Account", "^PrimaryEntityName is not a table logical name"),
        ("OrganizationName", None, "^OrganizationName is not a non-empty string"),
        ("InputParameters", {"Target": {}}, "^InputParameters is not a list"),
        ("PostEntityImages", "none", "^PostEntityImages is not a list"),
    ],
)
def test_field_of_the_wrong_type_is_named(field: str, value: Any, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse(target={"name": "Contoso"}, **{field: value})


def test_attributes_that_are_not_a_list_are_named() -> None:
    document = context(target={"name": "Contoso"})
    document["InputParameters"][0]["value"]["Attributes"] = {"name": "Contoso"}

    with pytest.raises(
        PayloadError, match=r"^InputParameters\[0\]\.value\.Attributes is not a list"
    ):
        parse_execution_context(body(document))


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ({"prioritycode": {"__type": f"OptionSetValue:{CONTRACTS}", "Value": "1"}},
         r"Attributes\[0\]\.value\.Value is not a number"),
        ({"new_arr": {"__type": f"Money:{CONTRACTS}"}},
         r"Attributes\[0\]\.value\.Value is not a number"),
        ({"ownerid": {**ref("systemuser", HUMAN), "Id": "nobody"}},
         r"Attributes\[0\]\.value\.Id is not a GUID"),
        ({"ownerid": {**ref("systemuser", HUMAN), "LogicalName": None}},
         r"Attributes\[0\]\.value\.LogicalName is not a table logical name"),
        ({"modifiedon": "/Date(99999999999999999999)/"},
         r"Attributes\[0\]\.value is out of range"),
    ],
)  # fmt: skip
def test_malformed_attribute_value_names_its_path(attributes: dict[str, Any], problem: str) -> None:
    with pytest.raises(PayloadError, match=rf"^InputParameters\[0\]\.value\.{problem}"):
        parse(target=attributes)


def test_malformed_pair_is_named() -> None:
    document = context(target={"name": "Contoso"})
    document["InputParameters"][0]["value"]["Attributes"] = [{"value": "Contoso"}]

    with pytest.raises(
        PayloadError, match=r"^InputParameters\[0\]\.value\.Attributes\[0\]\.key is missing"
    ):
        parse_execution_context(body(document))


def test_target_of_another_table_is_refused() -> None:
    document = context(target={"name": "Contoso"})
    document["InputParameters"][0]["value"]["LogicalName"] = "contact"

    with pytest.raises(PayloadError, match=r"LogicalName is 'contact', not the primary table"):
        parse_execution_context(body(document))


# --- verification ------------------------------------------------------------------------------

KEY = "s3cr3t-Key-value"


def test_webhook_key_is_the_code_query_parameter() -> None:
    verify_request(mode="webhook_key", name="ignored", value=KEY, headers={}, query={"code": KEY})


@pytest.mark.parametrize(
    ("query", "problem"),
    [({}, "'code' is missing"), ({"code": "wrong"}, "'code' does not match"),
     ({"ignored": KEY}, "'code' is missing")],
)  # fmt: skip
def test_webhook_key_missing_or_wrong_is_refused(query: dict[str, str], problem: str) -> None:
    with pytest.raises(SignatureError, match=problem) as refused:
        verify_request(mode="webhook_key", name="ignored", value=KEY, headers={}, query=query)

    assert KEY not in str(refused.value)


@pytest.mark.parametrize("sent_name", ["X-Crm-Health-Key", "x-crm-health-key", "X-CRM-HEALTH-KEY"])
def test_header_name_is_matched_in_any_case(sent_name: str) -> None:
    verify_request(
        mode="header",
        name="x-crm-health-key",
        value=KEY,
        headers={"Content-Type": "application/json", sent_name: KEY},
        query={},
    )


@pytest.mark.parametrize(
    ("headers", "query", "problem"),
    [({}, {}, "header 'X-Crm-Health-Key' is missing"),
     ({"X-Crm-Health-Key": KEY.upper()}, {}, "does not match"),
     ({}, {"X-Crm-Health-Key": KEY}, "is missing")],
)  # fmt: skip
def test_header_missing_or_wrong_is_refused(
    headers: dict[str, str], query: dict[str, str], problem: str
) -> None:
    with pytest.raises(SignatureError, match=problem) as refused:
        verify_request(
            mode="header", name="X-Crm-Health-Key", value=KEY, headers=headers, query=query
        )

    assert KEY not in str(refused.value)
    assert KEY.upper() not in str(refused.value)


def test_query_string_key_is_the_named_parameter() -> None:
    verify_request(mode="query_string", name="token", value=KEY, headers={}, query={"token": KEY})


@pytest.mark.parametrize(
    ("headers", "query", "problem"),
    [({}, {}, "'token' is missing"), ({}, {"token": KEY[:-1]}, "'token' does not match"),
     ({"token": KEY}, {"code": KEY}, "'token' is missing")],
)  # fmt: skip
def test_query_string_missing_or_wrong_is_refused(
    headers: dict[str, str], query: dict[str, str], problem: str
) -> None:
    with pytest.raises(SignatureError, match=problem) as refused:
        verify_request(mode="query_string", name="token", value=KEY, headers=headers, query=query)

    assert KEY not in str(refused.value)


def test_empty_configured_key_is_a_configuration_error_not_a_pass() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        verify_request(mode="webhook_key", name="", value="", headers={}, query={"code": ""})


# --- Web API rows ------------------------------------------------------------------------------

LOOKUP_NAME = "@Microsoft.Dynamics.CRM.lookuplogicalname"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def web_contact(**extra: Any) -> dict[str, Any]:
    return {
        "@odata.context": "https://contoso.crm.dynamics.com/api/data/v9.2/$metadata#contacts/$entity",
        "@odata.etag": 'W/"4468201"',
        "contactid": CONTACT,
        "jobtitle": "VP Engineering",
        "_parentcustomerid_value": ACCOUNT,
        f"_parentcustomerid_value{LOOKUP_NAME}": "account",
        f"_parentcustomerid_value{FORMATTED}": "Contoso",
        "_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty": (
            "parentcustomerid_account"
        ),
        "modifiedon": "2026-11-20T10:15:00Z",
        f"modifiedon{FORMATTED}": "11/20/2026 10:15 AM",
        "createdon": "2026-11-01T08:00:00Z",
        **extra,
    }


def test_web_api_row_has_the_webhook_shape() -> None:
    row = record_from_web_api("contact", web_contact())

    assert row == record(
        "contact",
        CONTACT,
        contactid=CONTACT,
        jobtitle="VP Engineering",
        parentcustomerid=Lookup(entity="account", id=ACCOUNT),
        modifiedon=MODIFIED,
        createdon=CREATED,
    )


def test_web_api_null_lookup_is_none_without_annotation() -> None:
    row = record_from_web_api(
        "contact",
        web_contact(
            **{"_parentcustomerid_value": None, f"_parentcustomerid_value{LOOKUP_NAME}": None}
        ),
    )

    assert row.attributes["parentcustomerid"] is None


def test_web_api_lookup_without_annotation_is_refused_with_the_fix() -> None:
    document = web_contact()
    del document[f"_parentcustomerid_value{LOOKUP_NAME}"]

    with pytest.raises(PayloadError, match=r"_parentcustomerid_value has no .*Prefer"):
        record_from_web_api("contact", document)


def test_web_api_activity_key_is_activityid_and_expanded_rows_are_left_out() -> None:
    row = record_from_web_api(
        "email",
        {
            "activityid": ACTIVITY.upper(),
            "directioncode": False,
            "actualend": "2026-11-19T16:30:00.123Z",
            "_regardingobjectid_value": ACCOUNT,
            f"_regardingobjectid_value{LOOKUP_NAME}": "account",
            "regardingobjectid_account_email": {"accountid": ACCOUNT, "name": "Contoso"},
            "email_activity_parties": [],
        },
    )

    assert row.id == ACTIVITY
    assert row.attributes == {
        "activityid": ACTIVITY.upper(),
        "directioncode": False,
        "actualend": datetime(2026, 11, 19, 16, 30, 0, 123000, tzinfo=UTC),
        "regardingobjectid": Lookup(entity="account", id=ACCOUNT),
    }


def test_web_api_date_only_column_is_midnight_utc() -> None:
    row = record_from_web_api(
        "account", {"accountid": ACCOUNT, "new_renewaldate": "2027-03-31", "name": "Contoso"}
    )

    assert row.attributes["new_renewaldate"] == datetime(2027, 3, 31, tzinfo=UTC)


@pytest.mark.parametrize("document", [{}, {"accountid": "nope"}, {"contactid": CONTACT}])
def test_web_api_row_without_its_primary_key_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(PayloadError, match=r"^Web API account\.accountid is not a GUID"):
        record_from_web_api("account", document)


def test_account_via_webhook_and_via_web_api_gives_the_same_events() -> None:
    mapping = DynamicsMapping(seats="new_seats", arr="new_arr", renewal_date="new_renewaldate")
    webhook = parse(
        target={
            "accountid": ACCOUNT,
            "name": "Contoso",
            "websiteurl": "https://www.contoso.example/about",
            "new_seats": 250,
            "new_arr": money(120000.0),
            "new_renewaldate": wcf(datetime(2027, 3, 31, tzinfo=UTC)),
            "ownerid": ref("systemuser", HUMAN),
            "modifiedon": wcf(MODIFIED),
            "createdon": wcf(CREATED),
        }
    )
    web_api = record_from_web_api(
        "account",
        {
            "@odata.etag": 'W/"12345"',
            "accountid": ACCOUNT,
            "name": "Contoso",
            "websiteurl": "https://www.contoso.example/about",
            "new_seats": 250,
            "new_arr": 120000,
            "_transactioncurrencyid_value": None,
            "new_renewaldate": "2027-03-31",
            "_ownerid_value": HUMAN,
            f"_ownerid_value{LOOKUP_NAME}": "systemuser",
            f"_ownerid_value{FORMATTED}": "Jane Doe",
            "modifiedon": "2026-11-20T10:15:00Z",
            "createdon": "2026-11-01T08:00:00Z",
        },
    )
    assert webhook.record is not None

    from_webhook = to_normalised(webhook.record, mapping, received_at=RECEIVED)
    from_web_api = to_normalised(web_api, mapping, received_at=RECEIVED)

    assert (
        from_webhook
        == from_web_api
        == [
            AccountAttributes(
                account=ACCOUNT,
                at=MODIFIED,
                attributes={
                    "name": "Contoso",
                    "domain": "contoso.example",
                    "seats": "250",
                    "arr": "120000",
                    "renewal_date": "2027-03-31T00:00:00+00:00",
                    "owner": HUMAN,
                    "created": "2026-11-01T08:00:00+00:00",
                },
            )
        ]
    )


def test_web_api_select_names_what_each_mapping_needs() -> None:
    mapping = DynamicsMapping(seats="new_seats", segment="new_segment")

    assert web_api_select("account", mapping) == (
        "name", "websiteurl", "new_seats", "new_segment", "_ownerid_value", "customertypecode",
        "createdon", "modifiedon",
    )  # fmt: skip
    assert web_api_select("contact", mapping) == (
        "_parentcustomerid_value", "jobtitle", "modifiedon", "createdon",
    )  # fmt: skip
    for activity in ("email", "phonecall"):
        assert web_api_select(activity, mapping) == (
            "_regardingobjectid_value", "directioncode", "actualend", "modifiedon", "createdon",
        )  # fmt: skip
    assert web_api_select("appointment", mapping) == (
        "_regardingobjectid_value", "scheduledstart", "modifiedon", "createdon",
    )  # fmt: skip
    assert web_api_select("incident", mapping) == (
        "_customerid_value", "prioritycode", "modifiedon", "createdon",
    )  # fmt: skip
    with pytest.raises(ValueError, match="no mapping"):
        web_api_select("task", mapping)


def test_entity_sets_and_mapped_entities() -> None:
    assert ENTITY_SETS == {
        "account": "accounts",
        "contact": "contacts",
        "email": "emails",
        "phonecall": "phonecalls",
        "appointment": "appointments",
        "incident": "incidents",
        "task": "tasks",
    }
    assert frozenset({"account", "contact", "email", "phonecall", "appointment", "incident"}) == (
        MAPPED_ENTITIES
    )
    assert set(ENTITY_SETS) >= MAPPED_ENTITIES


# --- mapping: accounts -------------------------------------------------------------------------


def test_account_maps_only_the_columns_the_row_carries() -> None:
    events = to_normalised(record("account", ACCOUNT, name="Contoso", modifiedon=MODIFIED))

    assert events == [
        AccountAttributes(account=ACCOUNT, at=MODIFIED, attributes={"name": "Contoso"})
    ]


def test_account_cleared_column_clears_the_attribute() -> None:
    events = to_normalised(record("account", ACCOUNT, websiteurl=None, modifiedon=MODIFIED))

    assert events == [AccountAttributes(account=ACCOUNT, at=MODIFIED, attributes={"domain": None})]


def test_account_owner_is_the_owner_guid() -> None:
    events = to_normalised(
        record(
            "account", ACCOUNT, ownerid=Lookup(entity="systemuser", id=HUMAN), modifiedon=MODIFIED
        )
    )

    assert events == [AccountAttributes(account=ACCOUNT, at=MODIFIED, attributes={"owner": HUMAN})]


def test_a_team_owner_is_no_person_to_assign_tasks_to() -> None:
    events = to_normalised(
        record("account", ACCOUNT, ownerid=Lookup(entity="team", id=APP_USER), modifiedon=MODIFIED)
    )

    assert events == [AccountAttributes(account=ACCOUNT, at=MODIFIED, attributes={"owner": None})]


def test_account_revenue_and_employees_are_not_arr_or_seats_by_default() -> None:
    events = to_normalised(
        record("account", ACCOUNT, revenue=5_000_000.0, numberofemployees=900, modifiedon=MODIFIED)
    )

    assert events == []


def test_account_delete_is_account_deleted_at_the_operation_time() -> None:
    events = to_normalised(
        record("account", ACCOUNT, modifiedon=MODIFIED), received_at=RECEIVED, message="Delete"
    )

    assert events == [AccountDeleted(account=ACCOUNT, at=RECEIVED)]


def test_account_without_any_time_uses_the_receipt_time() -> None:
    events = to_normalised(record("account", ACCOUNT, name="Contoso"), received_at=RECEIVED)

    assert events == [
        AccountAttributes(account=ACCOUNT, at=RECEIVED, attributes={"name": "Contoso"})
    ]


def test_account_without_any_time_or_receipt_time_is_refused() -> None:
    with pytest.raises(PayloadError, match=f"account {ACCOUNT} carries none of modifiedon"):
        to_normalised(record("account", ACCOUNT, name="Contoso"))


def test_created_account_without_modifiedon_uses_createdon() -> None:
    events = to_normalised(record("account", ACCOUNT, name="Contoso", createdon=CREATED))

    assert events[0].at == CREATED


def test_column_of_the_wrong_type_is_named() -> None:
    with pytest.raises(PayloadError, match=rf"account {ACCOUNT}\.modifiedon is not a date"):
        to_normalised(record("account", ACCOUNT, name="Contoso", modifiedon="yesterday"))


# --- mapping: contacts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "executive"),
    [("Chief Financial Officer", True), ("VP Sales", True), ("Product Owner", False),
     ("Engineer", False), (None, None), ("  ", None)],
)  # fmt: skip
def test_contact_title_decides_executive(title: str | None, executive: bool | None) -> None:
    row = record(
        "contact",
        CONTACT,
        parentcustomerid=Lookup(entity="account", id=ACCOUNT),
        jobtitle=title,
        modifiedon=MODIFIED,
    )

    assert to_normalised(row) == [
        ContactUpsert(
            account=ACCOUNT,
            at=MODIFIED,
            contact=CONTACT,
            title=title.strip() or None if title else None,
            executive=executive,
        )
    ]


def test_contact_title_pattern_is_configurable() -> None:
    row = record(
        "contact",
        CONTACT,
        parentcustomerid=Lookup(entity="account", id=ACCOUNT),
        jobtitle="Geschäftsführer",
        modifiedon=MODIFIED,
    )

    events = to_normalised(row, DynamicsMapping(executive_title=r"gesch[aä]ftsf[uü]hrer"))

    assert isinstance(events[0], ContactUpsert)
    assert events[0].executive is True


def test_contact_whose_company_is_a_contact_says_nothing() -> None:
    row = record(
        "contact", CONTACT, parentcustomerid=Lookup(entity="contact", id=CONTACT), jobtitle="CEO"
    )

    assert to_normalised(row, received_at=RECEIVED) == []


def test_deleted_contact_has_left_its_account() -> None:
    parsed = parse(
        message="Delete",
        table="contact",
        record_id=CONTACT,
        pre={
            "parentcustomerid": ref("account", ACCOUNT),
            "jobtitle": "CFO",
            "modifiedon": wcf(MODIFIED),
        },
    )
    assert parsed.record is not None

    events = to_normalised(
        parsed.record, received_at=parsed.operation_created_on, message=parsed.message
    )

    assert events == [
        ContactUpsert(
            account=ACCOUNT, at=RECEIVED, contact=CONTACT, title="CFO", executive=True, left=True
        )
    ]


def test_deleted_contact_without_pre_image_says_nothing() -> None:
    parsed = parse(message="Delete", table="contact", record_id=CONTACT)
    assert parsed.record is not None

    assert to_normalised(parsed.record, received_at=RECEIVED, message="Delete") == []


# --- mapping: activities and incidents ---------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "direction", "channel", "expected"),
    [("email", True, "email", "ours"), ("email", False, "email", "customer"),
     ("phonecall", True, "call", "ours"), ("phonecall", False, "call", "customer"),
     ("email", None, "email", "ours")],
)  # fmt: skip
def test_email_and_phone_call_are_interactions_in_their_direction(
    table: str,
    direction: bool | None,
    channel: InteractionChannel,
    expected: InteractionDirection,
) -> None:
    ended = datetime(2026, 11, 19, 16, 30, tzinfo=UTC)
    parsed = parse(
        message="Create",
        table=table,
        record_id=ACTIVITY,
        target={
            "activityid": ACTIVITY,
            "regardingobjectid": ref("account", ACCOUNT),
            "directioncode": direction,
            "actualend": wcf(ended),
            "createdon": wcf(CREATED),
        },
    )
    assert parsed.record is not None

    assert to_normalised(parsed.record) == [
        Interaction(
            account=ACCOUNT, at=ended, channel=channel, direction=expected, source_id=ACTIVITY
        )
    ]


def test_open_activity_without_actualend_counts_at_createdon() -> None:
    row = record(
        "phonecall",
        ACTIVITY,
        regardingobjectid=Lookup(entity="account", id=ACCOUNT),
        directioncode=False,
        createdon=CREATED,
        modifiedon=MODIFIED,
    )

    events = to_normalised(row)

    assert [event.at for event in events] == [CREATED]


def test_activity_about_something_else_than_an_account_says_nothing() -> None:
    row = record(
        "email",
        ACTIVITY,
        regardingobjectid=Lookup(entity="opportunity", id=OTHER_ACCOUNT),
        directioncode=True,
        createdon=CREATED,
    )

    assert to_normalised(row) == []
    assert to_normalised(record("email", ACTIVITY, directioncode=True, createdon=CREATED)) == []


def test_deleted_activity_says_nothing() -> None:
    row = record(
        "email", ACTIVITY, regardingobjectid=Lookup(entity="account", id=ACCOUNT), createdon=CREATED
    )

    assert to_normalised(row, received_at=RECEIVED, message="Delete") == []


def test_direction_of_the_wrong_type_is_named() -> None:
    row = record(
        "email",
        ACTIVITY,
        regardingobjectid=Lookup(entity="account", id=ACCOUNT),
        directioncode=1,
        createdon=CREATED,
    )

    with pytest.raises(PayloadError, match=r"directioncode is not a yes/no value"):
        to_normalised(row)


def test_appointment_is_our_meeting_at_its_scheduled_start() -> None:
    start = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    parsed = parse(
        message="Create",
        table="appointment",
        record_id=ACTIVITY,
        target={
            "regardingobjectid": ref("account", ACCOUNT),
            "scheduledstart": wcf(start),
            "createdon": wcf(CREATED),
        },
    )
    assert parsed.record is not None

    assert to_normalised(parsed.record) == [
        Interaction(
            account=ACCOUNT, at=start, channel="meeting", direction="ours", source_id=ACTIVITY
        )
    ]


@pytest.mark.parametrize(
    ("code", "priority"),
    [(1, "high"), (2, "medium"), (3, "low"), (100000000, "medium"), (None, "medium")],
)
def test_incident_is_a_ticket_with_its_priority(code: int | None, priority: TicketPriority) -> None:
    parsed = parse(
        message="Create",
        table="incident",
        record_id=INCIDENT,
        target={
            "customerid": ref("account", ACCOUNT),
            "prioritycode": None if code is None else option(code),
            "createdon": wcf(CREATED),
            "modifiedon": wcf(MODIFIED),
        },
    )
    assert parsed.record is not None

    assert to_normalised(parsed.record) == [
        Ticket(account=ACCOUNT, at=CREATED, ticket=INCIDENT, priority=priority)
    ]


def test_incident_priorities_are_configurable() -> None:
    row = record(
        "incident",
        INCIDENT,
        customerid=Lookup(entity="account", id=ACCOUNT),
        prioritycode=100000000,
        createdon=CREATED,
    )
    mapping = DynamicsMapping(incident_priorities={1: "high", 100000000: "urgent"})

    events = to_normalised(row, mapping)

    assert isinstance(events[0], Ticket)
    assert events[0].priority == "urgent"


def test_incident_of_a_contact_customer_says_nothing() -> None:
    row = record(
        "incident", INCIDENT, customerid=Lookup(entity="contact", id=CONTACT), createdon=CREATED
    )

    assert to_normalised(row) == []


@pytest.mark.parametrize("table", ["task", "opportunity", "new_custom"])
def test_other_tables_say_nothing(table: str) -> None:
    row = record(table, ACTIVITY, regardingobjectid=Lookup(entity="account", id=ACCOUNT))

    assert to_normalised(row, received_at=RECEIVED) == []


# --- mapping options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"seats": "New_Seats"}, {"arr": "new arr"}, {"owner": "_ownerid_value"}, {"name": ""},
     {"segment": "new-segment"}],
)  # fmt: skip
def test_invalid_column_name_is_refused(options: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="must be a column logical name"):
        DynamicsMapping(**options)  # type: ignore[arg-type]


def test_invalid_priority_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="incident_priorities"):
        DynamicsMapping(incident_priorities={1: "critical"})  # type: ignore[dict-item]


def test_invalid_title_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="executive_title"):
        DynamicsMapping(executive_title="(")


def test_unmapped_attributes_are_not_read() -> None:
    mapping = DynamicsMapping(name=None, domain=None, owner=None, lifecycle=None, created=None)

    assert mapping.mapped_attributes() == {}
    assert (
        to_normalised(record("account", ACCOUNT, name="Contoso", modifiedon=MODIFIED), mapping)
        == []
    )


# --- echoes ------------------------------------------------------------------------------------


def test_own_change_to_an_account_is_an_echo() -> None:
    document = context(target={"new_healthscore": 42}, user=HUMAN)
    document["InitiatingUserId"] = APP_USER
    parsed = parse_execution_context(body(document))

    assert made_by(parsed, APP_USER.upper()) is True


def test_a_step_running_as_our_user_is_no_echo_of_a_person_s_change() -> None:
    document = context(target={"name": "Contoso"}, user=HUMAN)
    document["UserId"] = APP_USER  # the step impersonates the application user
    parsed = parse_execution_context(body(document))

    assert made_by(parsed, APP_USER) is False


def test_own_task_is_an_echo() -> None:
    parsed = parse(message="Create", table="task", record_id=ACTIVITY, target={}, user=APP_USER)

    assert made_by(parsed, APP_USER) is True


def test_someone_elses_change_is_no_echo() -> None:
    parsed = parse(target={"name": "Contoso"}, user=HUMAN)

    assert made_by(parsed, APP_USER) is False


def test_own_change_to_a_contact_is_no_echo() -> None:
    parsed = parse(table="contact", record_id=CONTACT, target={"jobtitle": "CEO"}, user=APP_USER)

    assert made_by(parsed, APP_USER) is False
