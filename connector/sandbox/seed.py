"""What a fresh sandbox portal holds: HubSpot's standard property definitions and groups per
object type, the object types themselves, and the portal's fixed owners."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from connector.sandbox.errors import JSONObject

# HubSpot answers a plain list or read with these when no `properties` are asked for.
DEFAULT_PROPERTIES: tuple[str, ...] = (
    "createdate",
    "domain",
    "hs_lastmodifieddate",
    "hs_object_id",
    "name",
)
# ...and always adds these, whatever was asked for.
SYSTEM_PROPERTIES: tuple[str, ...] = ("createdate", "hs_lastmodifieddate", "hs_object_id")
READ_ONLY_PROPERTIES: frozenset[str] = frozenset({"hs_object_id", "hs_lastmodifieddate"})


def _option(label: str, value: str, order: int) -> JSONObject:
    return {"label": label, "value": value, "displayOrder": order, "hidden": False}


SEED_GROUPS: tuple[tuple[str, str, int], ...] = (("companyinformation", "Company information", 0),)

# (name, label, type, fieldType, options, read-only value, externalOptions)
SEED_PROPERTIES: tuple[tuple[str, str, str, str, list[JSONObject], bool, bool], ...] = (
    ("name", "Company name", "string", "text", [], False, False),
    ("domain", "Company Domain Name", "string", "text", [], False, False),
    ("hs_object_id", "Record ID", "number", "number", [], True, False),
    ("createdate", "Create Date", "datetime", "date", [], False, False),
    ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", [], True, False),
    ("description", "Description", "string", "textarea", [], False, False),
    ("city", "City", "string", "text", [], False, False),
    ("country", "Country/Region", "string", "text", [], False, False),
    ("phone", "Phone Number", "string", "phonenumber", [], False, False),
    ("numberofemployees", "Number of Employees", "number", "number", [], False, False),
    ("annualrevenue", "Annual Revenue", "number", "number", [], False, False),
    (
        "industry",
        "Industry",
        "enumeration",
        "select",
        [
            _option("Computer Software", "COMPUTER_SOFTWARE", 0),
            _option("Financial Services", "FINANCIAL_SERVICES", 1),
            _option("Hospital & Health Care", "HOSPITAL_HEALTH_CARE", 2),
            _option("Retail", "RETAIL", 3),
            _option("Telecommunications", "TELECOMMUNICATIONS", 4),
        ],
        False,
        False,
    ),
    (
        "lifecyclestage",
        "Lifecycle Stage",
        "enumeration",
        "radio",
        [
            _option(label, value, order)
            for order, (label, value) in enumerate(
                [
                    ("Subscriber", "subscriber"),
                    ("Lead", "lead"),
                    ("Marketing Qualified Lead", "marketingqualifiedlead"),
                    ("Sales Qualified Lead", "salesqualifiedlead"),
                    ("Opportunity", "opportunity"),
                    ("Customer", "customer"),
                    ("Evangelist", "evangelist"),
                    ("Other", "other"),
                ]
            )
        ],
        False,
        False,
    ),
    # When the company became a customer (HubSpot sets it as the lifecycle stage moves).
    (
        "hs_lifecyclestage_customer_date",
        "Date entered 'Customer (Lifecycle Stage Pipeline)'",
        "datetime",
        "date",
        [],
        False,
        False,
    ),
    # Owner ids come from the owners API, not from the definition: HubSpot marks these external.
    ("hubspot_owner_id", "Company owner", "enumeration", "select", [], False, True),
)


# The portal's owners (the users records are assigned to), as `GET /crm/v3/owners` lists them:
# (id, e-mail, first name, last name). Fixed, so the demo and tests can assign companies to
# them by id; the e-mails use the reserved example.com domain.
SEEDED_OWNERS: tuple[tuple[str, str, str, str], ...] = (
    ("70000001", "alex.kim@example.com", "Alex", "Kim"),
    ("70000002", "sam.rivera@example.com", "Sam", "Rivera"),
    ("70000003", "jo.becker@example.com", "Jo", "Becker"),
    ("70000004", "priya.nair@example.com", "Priya", "Nair"),
)
_OWNERS_CREATED_AT = "2026-01-05T09:00:00.000Z"


def owner_json(owner_id: str) -> JSONObject | None:
    """One seeded owner as HubSpot's owners API answers it; None for an unknown id."""
    for index, (seeded_id, email, first_name, last_name) in enumerate(SEEDED_OWNERS):
        if seeded_id == owner_id:
            return {
                "id": seeded_id,
                "email": email,
                "type": "PERSON",
                "firstName": first_name,
                "lastName": last_name,
                "userId": 9000001 + index,
                "userIdIncludingInactive": 9000001 + index,
                "createdAt": _OWNERS_CREATED_AT,
                "updatedAt": _OWNERS_CREATED_AT,
                "archived": False,
            }
    return None


# Enumeration values of HubSpot's standard engagement and ticket properties.
_EMAIL_DIRECTIONS = ("EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL")
_EMAIL_STATUSES = ("BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT")
_MEETING_OUTCOMES = ("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED")
# Where a meeting came from; MEETINGS_PUBLIC and MEETINGS_EMBEDDED are bookings made by the
# invitee through a HubSpot meetings link (the public page or the embedded widget).
MEETING_SOURCES = (
    "CRM_UI",
    "BIDIRECTIONAL_API",
    "BIDIRECTIONAL_SYNC",
    "INTEGRATION",
    "MEETINGS_PUBLIC",
    "MEETINGS_EMBEDDED",
)
_TASK_STATUSES = ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")
_TICKET_CATEGORIES = ("PRODUCT_ISSUE", "BILLING_ISSUE", "FEATURE_REQUEST", "GENERAL_INQUIRY")


def seed_property(
    spec: tuple[str, str, str, str, list[JSONObject], bool, bool],
    at: str,
    group_name: str = "companyinformation",
) -> JSONObject:
    name, label, type_, field_type, options, read_only, external = spec
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "description": "",
        "groupName": group_name,
        "options": [dict(option) for option in options],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": external,
        "hasUniqueValue": False,
        "hidden": False,
        "hubspotDefined": True,
        "modificationMetadata": {
            "archivable": False,
            "readOnlyDefinition": True,
            "readOnlyValue": read_only,
        },
        "formField": not read_only,
        "createdAt": at,
        "updatedAt": at,
        "archived": False,
    }


SeedSpec = tuple[str, str, str, str, list[JSONObject], bool, bool]


def _text(name: str, label: str) -> SeedSpec:
    return (name, label, "string", "text", [], False, False)


def _datetime(name: str, label: str, *, read_only: bool = False) -> SeedSpec:
    return (name, label, "datetime", "date", [], read_only, False)


def _select(name: str, label: str, values: Iterable[str]) -> SeedSpec:
    options = [
        _option(value.replace("_", " ").title(), value, order) for order, value in enumerate(values)
    ]
    return (name, label, "enumeration", "select", options, False, False)


_RECORD_ID: SeedSpec = ("hs_object_id", "Record ID", "number", "number", [], True, False)
_OWNER: SeedSpec = ("hubspot_owner_id", "Owner", "enumeration", "select", [], False, True)
_LIFECYCLE = next(spec for spec in SEED_PROPERTIES if spec[0] == "lifecyclestage")


@dataclass(frozen=True)
class ObjectTypeSpec:
    """How one HubSpot object type other than companies looks on the wire.

    `created` and `modified` name the properties behind `createdAt`/`updatedAt` (they differ
    by type: contacts have `lastmodifieddate`, engagements `hs_createdate`); `defaults` are the
    properties a read answers with when none are asked for; `association_name` is the stem of
    HubSpot's association type strings (`contact_to_company`, `meeting_event_to_contact`).
    """

    name: str
    association_name: str
    group_name: str
    created: str
    modified: str
    defaults: tuple[str, ...]
    properties: tuple[SeedSpec, ...]
    # What an API create must set (HubSpot refuses an engagement without its timestamp).
    required: tuple[str, ...] = ()

    @property
    def system_properties(self) -> tuple[str, ...]:
        return (self.created, self.modified, "hs_object_id")


def _engagement(name: str, association_name: str, *extra: SeedSpec) -> ObjectTypeSpec:
    return ObjectTypeSpec(
        name=name,
        association_name=association_name,
        group_name="engagement",
        created="hs_createdate",
        modified="hs_lastmodifieddate",
        defaults=("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
        properties=(
            _datetime("hs_timestamp", "Activity date"),
            *extra,
            _OWNER,
            _datetime("hs_createdate", "Create date"),
            _datetime("hs_lastmodifieddate", "Last modified date", read_only=True),
            _RECORD_ID,
        ),
        required=("hs_timestamp",),
    )


# The object types the sandbox stores besides companies, with HubSpot's standard properties.
OBJECT_TYPE_SPECS: dict[str, ObjectTypeSpec] = {
    spec.name: spec
    for spec in (
        ObjectTypeSpec(
            name="contacts",
            association_name="contact",
            group_name="contactinformation",
            created="createdate",
            modified="lastmodifieddate",
            defaults=(
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ),
            properties=(
                _text("firstname", "First Name"),
                _text("lastname", "Last Name"),
                _text("email", "Email"),
                _text("jobtitle", "Job Title"),
                ("phone", "Phone Number", "string", "phonenumber", [], False, False),
                _text("company", "Company Name"),
                _LIFECYCLE,
                _OWNER,
                _datetime("createdate", "Create Date"),
                _datetime("lastmodifieddate", "Last Modified Date", read_only=True),
                _RECORD_ID,
            ),
        ),
        _engagement(
            "emails",
            "email",
            _select("hs_email_direction", "Email direction", _EMAIL_DIRECTIONS),
            _select("hs_email_status", "Email send status", _EMAIL_STATUSES),
            _text("hs_email_subject", "Email subject"),
            ("hs_email_text", "Email body", "string", "textarea", [], False, False),
        ),
        _engagement(
            "calls",
            "call",
            _select("hs_call_direction", "Call direction", ("INBOUND", "OUTBOUND")),
            _text("hs_call_title", "Call title"),
            ("hs_call_body", "Call notes", "string", "textarea", [], False, False),
            ("hs_call_duration", "Call duration", "number", "number", [], False, False),
        ),
        _engagement(
            "meetings",
            # HubSpot's meeting associations are named after the calendar event.
            "meeting_event",
            _text("hs_meeting_title", "Meeting name"),
            ("hs_meeting_body", "Meeting description", "string", "textarea", [], False, False),
            _datetime("hs_meeting_start_time", "Meeting start time"),
            _datetime("hs_meeting_end_time", "Meeting end time"),
            _select("hs_meeting_outcome", "Meeting outcome", _MEETING_OUTCOMES),
            _select("hs_meeting_source", "Meeting source", MEETING_SOURCES),
        ),
        _engagement(
            "notes",
            "note",
            ("hs_note_body", "Note body", "string", "textarea", [], False, False),
        ),
        _engagement(
            "tasks",
            "task",
            _text("hs_task_subject", "Task title"),
            ("hs_task_body", "Task notes", "string", "textarea", [], False, False),
            _select("hs_task_status", "Task status", _TASK_STATUSES),
            _select("hs_task_priority", "Priority", ("NONE", "LOW", "MEDIUM", "HIGH")),
            _select("hs_task_type", "Task type", ("TODO", "CALL", "EMAIL")),
        ),
        ObjectTypeSpec(
            name="deals",
            association_name="deal",
            group_name="dealinformation",
            created="createdate",
            modified="hs_lastmodifieddate",
            defaults=(
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ),
            properties=(
                _text("dealname", "Deal Name"),
                ("amount", "Amount", "number", "number", [], False, False),
                # Free text rather than options: stages are per pipeline, which the sandbox
                # does not model.
                _text("dealstage", "Deal Stage"),
                _text("pipeline", "Pipeline"),
                _datetime("closedate", "Close Date"),
                _OWNER,
                _datetime("createdate", "Create Date"),
                _datetime("hs_lastmodifieddate", "Last Modified Date", read_only=True),
                _RECORD_ID,
            ),
        ),
        ObjectTypeSpec(
            name="tickets",
            association_name="ticket",
            group_name="ticketinformation",
            created="createdate",
            modified="hs_lastmodifieddate",
            defaults=(
                "content",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
                "hs_pipeline",
                "hs_pipeline_stage",
                "hs_ticket_category",
                "hs_ticket_priority",
                "subject",
            ),
            properties=(
                _text("subject", "Ticket name"),
                ("content", "Ticket description", "string", "textarea", [], False, False),
                _text("hs_pipeline", "Pipeline"),
                _text("hs_pipeline_stage", "Ticket status"),
                _select("hs_ticket_priority", "Priority", ("LOW", "MEDIUM", "HIGH", "URGENT")),
                _select("hs_ticket_category", "Category", _TICKET_CATEGORIES),
                _OWNER,
                _datetime("createdate", "Create date"),
                _datetime("hs_lastmodifieddate", "Last modified date", read_only=True),
                _RECORD_ID,
            ),
        ),
    )
}

# Every type the object routes answer for, companies first.
ALL_OBJECT_TYPES: tuple[str, ...] = ("companies", *OBJECT_TYPE_SPECS)


def association_name(object_type: str) -> str:
    """The stem of HubSpot's association type strings for a type (`company`, `meeting_event`)."""
    spec = OBJECT_TYPE_SPECS.get(object_type)
    return "company" if spec is None else spec.association_name


def modified_property(object_type: str) -> str:
    """The property behind a record's `updatedAt`."""
    spec = OBJECT_TYPE_SPECS.get(object_type)
    return "hs_lastmodifieddate" if spec is None else spec.modified
