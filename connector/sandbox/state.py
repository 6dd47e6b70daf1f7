"""The sandbox's in-memory CRM: companies, contacts, engagements and tickets with their
associations, property definitions and groups, recorded calls, faults.

Everything HubSpot would validate is validated here (pure Python, no HTTP); `app.py` only frames it.

    ApiError            raised by any state operation that HubSpot would refuse; carries the HTTP
                        status, category, message and extras, and never leaves the sandbox: the app
                        turns it into HubSpot's error JSON.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.sandbox.catalog import (
    ASSOCIATION_TYPE_IDS,
    PRIMARY_TYPE_IDS,
    TARGET_BY_TYPE_ID,
    Change,
    can_associate,
)
from connector.sandbox.limits import RateLimiter
from connector.sandbox.oauth import DEFAULT_ACCESS_TTL_SECONDS, DEFAULT_APP_ID, OAuthServer
from connector.sandbox.outbound import WebhookDispatcher
from connector.sandbox.store import SandboxStore, Snapshot

JSONObject = dict[str, Any]
PropertyValues = dict[str, str | None]

BATCH_LIMIT = 100
LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100

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

# The type/fieldType pairs HubSpot accepts for a property definition.
FIELD_TYPES: dict[str, frozenset[str]] = {
    "string": frozenset({"text", "textarea", "phonenumber"}),
    "number": frozenset({"number"}),
    "enumeration": frozenset({"select", "radio", "checkbox", "booleancheckbox"}),
    "bool": frozenset({"booleancheckbox"}),
    "datetime": frozenset({"date"}),
    "date": frozenset({"date"}),
}
_OPTION_FIELD_TYPES = frozenset({"select", "radio", "checkbox", "booleancheckbox"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# No surrounding whitespace: HubSpot has rejected padded non-string values since April 2025.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


class ApiError(Exception):
    """An answer HubSpot would give instead of doing the operation (see the module docstring)."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: list[JSONObject] | None = None,
        context: JSONObject | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context
        self.headers = dict(headers or {})

    def body(self) -> JSONObject:
        """HubSpot's error envelope, with a fresh correlation id as HubSpot gives every answer."""
        return error_body(self.message, self.category, errors=self.errors, context=self.context)


def error_body(
    message: str,
    category: str,
    *,
    errors: list[JSONObject] | None = None,
    context: JSONObject | None = None,
) -> JSONObject:
    """The `{"status": "error", "message", "correlationId", "category", ...}` envelope."""
    body: JSONObject = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    if context is not None:
        body["context"] = context
    if errors is not None:
        body["errors"] = errors
    return body


def missing_attributes(type_name: str, names: Iterable[str]) -> ApiError:
    """HubSpot's wording when a required top-level attribute of a request body is absent."""
    listed = ", ".join(names)
    return ApiError(
        400,
        "VALIDATION_ERROR",
        f"Invalid input JSON on line 1, column 1: Cannot build {type_name}, "
        f"some of required attributes are not set [{listed}]",
    )


def validation_error(message: str) -> ApiError:
    """A plain 400 VALIDATION_ERROR."""
    return ApiError(400, "VALIDATION_ERROR", message)


# --- recorded calls and injected faults ------------------------------------------------------


@dataclass
class RecordedRequest:
    """One call to a /crm route as the sandbox saw and answered it."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int = 0
    at: str = ""
    latency_seconds: float = 0.0
    forced: bool = False  # answered by an injected fault rather than by the CRM logic

    def to_json(self) -> JSONObject:
        return asdict(self)


@dataclass
class ForcedAnswer:
    """An injected answer: `remaining` matching calls (None: every one until cleared) get it."""

    status: int
    retry_after: str | None = None
    remaining: int | None = 1
    path_contains: str | None = None
    method: str | None = None
    body: JSONObject | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path

    def to_json(self) -> JSONObject:
        return asdict(self)


def retry_after_value(value: float | str | None) -> str | None:
    """A Retry-After header value: numbers become delta-seconds, strings (HTTP-dates) pass."""
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}"


@dataclass
class FaultPlan:
    """Injected behaviour for /crm routes: latency on every call, then queued forced answers."""

    latency_seconds: float = 0.0
    forced: list[ForcedAnswer] = field(default_factory=list)

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | str | None = None,
        path_contains: str | None = None,
        method: str | None = None,
        body: JSONObject | None = None,
    ) -> None:
        """Answer the next `count` matching calls with `status` (and Retry-After when given)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.forced.append(
            ForcedAnswer(
                status,
                retry_after_value(retry_after),
                count,
                path_contains,
                method,
                body,
            )
        )

    def fail_always(
        self,
        status: int = 503,
        *,
        retry_after: float | str | None = None,
        path_contains: str | None = None,
        method: str | None = None,
        body: JSONObject | None = None,
    ) -> None:
        """Answer every matching call with `status` until `clear()`: an outage."""
        self.forced.append(
            ForcedAnswer(status, retry_after_value(retry_after), None, path_contains, method, body)
        )

    def take(self, method: str, path: str) -> ForcedAnswer | None:
        """The forced answer for this call, if any, consuming one use of it."""
        for index, answer in enumerate(self.forced):
            if not answer.matches(method, path):
                continue
            if answer.remaining is not None:
                answer.remaining -= 1
                if answer.remaining <= 0:
                    del self.forced[index]
            return answer
        return None

    def clear(self) -> None:
        self.latency_seconds = 0.0
        self.forced.clear()

    def to_json(self) -> JSONObject:
        return {
            "latency_seconds": self.latency_seconds,
            "forced": [answer.to_json() for answer in self.forced],
        }


# --- seed data -------------------------------------------------------------------------------


def _option(label: str, value: str, order: int) -> JSONObject:
    return {"label": label, "value": value, "displayOrder": order, "hidden": False}


_SEED_GROUPS: tuple[tuple[str, str, int], ...] = (("companyinformation", "Company information", 0),)

# (name, label, type, fieldType, options, read-only value, externalOptions)
_SEED_PROPERTIES: tuple[tuple[str, str, str, str, list[JSONObject], bool, bool], ...] = (
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


def _seed_property(
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
_LIFECYCLE = next(spec for spec in _SEED_PROPERTIES if spec[0] == "lifecyclestage")


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


def format_timestamp(moment: datetime) -> str:
    """HubSpot's timestamp form: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the state -------------------------------------------------------------------------------


class SandboxState:
    """The sandbox CRM's data. Single event loop, so no locking.

    `companies` and `properties` are the company records and definitions (kept as their own
    attributes for existing callers); `objects` and `definitions` hold them too, next to the
    other object types, so generic code can take any type by name.

    With `database` (a SQLite file path, or ":memory:") every change is written through to
    SQLite and a state opened on the same file later starts from it; without, it lives in
    memory only. `limits`, `oauth` and `webhooks` are the rate limiter, the OAuth server and the
    outgoing webhook dispatcher; `observers` get every `Change` (the dispatcher is the first).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utc_now,
        portal_id: int = 1000001,
        database: str | None = None,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None,
        app_id: int = DEFAULT_APP_ID,
        access_token_ttl_seconds: int = DEFAULT_ACCESS_TTL_SECONDS,
    ) -> None:
        self.clock = clock
        self.portal_id = portal_id
        self.companies: dict[str, PropertyValues] = {}
        self.properties: dict[str, JSONObject] = {}
        self.objects: dict[str, dict[str, PropertyValues]] = {"companies": self.companies}
        self.objects.update({name: {} for name in OBJECT_TYPE_SPECS})
        self.definitions: dict[str, dict[str, JSONObject]] = {"companies": self.properties}
        self.definitions.update({name: {} for name in OBJECT_TYPE_SPECS})
        # links[from type][from id][to type] -> ids in the order they were associated; kept in
        # both directions so either side answers `associations=` without a scan.
        self.links: dict[str, dict[str, dict[str, list[str]]]] = {
            name: {} for name in ALL_OBJECT_TYPES
        }
        self.groups: dict[str, JSONObject] = {}
        self.requests: list[RecordedRequest] = []
        self.faults = FaultPlan()
        self.store = SandboxStore(database) if database is not None else None
        self.limits = RateLimiter(clock=clock)
        self.oauth = OAuthServer(
            clock=clock,
            portal_id=portal_id,
            client_id=oauth_client_id,
            client_secret=oauth_client_secret,
            app_id=app_id,
            access_ttl_seconds=access_token_ttl_seconds,
            store=self.store,
        )
        self.webhooks = WebhookDispatcher(clock=clock, portal_id=portal_id)
        self.observers: list[Callable[[Change], None]] = [self.webhooks.on_change]
        self._next_id = 1
        self._last_moment: datetime | None = None
        if self.store is not None and self.store.initialised:
            self._load(self.store.load())
        else:
            self.reset()

    def close(self) -> None:
        """Close the SQLite connection (a file-backed state is then read-only in memory)."""
        if self.store is not None:
            self.store.close()
            self.store = None
            self.oauth.store = None

    def reset(self) -> None:
        """Back to a fresh portal: seeded definitions, no records, no calls, no faults.

        Containers are cleared in place so references handed out earlier stay valid. Rate-limit
        counters start over; OAuth tokens and the webhook subscription are kept (they belong to
        the app, not to the portal's data).
        """
        at = self.timestamp()
        for records in self.objects.values():
            records.clear()
        for links in self.links.values():
            links.clear()
        self.requests.clear()
        self.faults.clear()
        self.limits.reset_counters()
        self.groups.clear()
        self.groups.update(
            {
                name: {"name": name, "label": label, "displayOrder": order, "archived": False}
                for name, label, order in _SEED_GROUPS
            }
        )
        self.properties.clear()
        self.properties.update({spec[0]: _seed_property(spec, at) for spec in _SEED_PROPERTIES})
        for name, type_spec in OBJECT_TYPE_SPECS.items():
            definitions = self.definitions[name]
            definitions.clear()
            definitions.update(
                {
                    spec[0]: _seed_property(spec, at, type_spec.group_name)
                    for spec in type_spec.properties
                }
            )
        self._next_id = 1
        if self.store is not None:
            self.store.replace_portal(definitions=self.definitions, groups=self.groups)

    def _load(self, snapshot: Snapshot) -> None:
        for object_type, records in snapshot.records.items():
            if object_type in self.objects:
                self.objects[object_type].update(records)
        for object_type, definitions in snapshot.definitions.items():
            if object_type in self.definitions:
                self.definitions[object_type].update(definitions)
        # Types added to the sandbox after the file was written start with their seed.
        at = self.timestamp()
        for name, type_spec in OBJECT_TYPE_SPECS.items():
            for spec in type_spec.properties:
                self.definitions[name].setdefault(
                    spec[0], _seed_property(spec, at, type_spec.group_name)
                )
        self.groups.update(snapshot.groups)
        for from_type, from_id, to_type, to_id in snapshot.links:
            if from_type in self.links and to_type in self.links:
                self._remember_link(from_type, from_id, to_type, to_id)
        for kind, token, data in snapshot.tokens:
            self.oauth.load(kind, token, data)
        self._next_id = snapshot.next_id

    def timestamp(self) -> str:
        """Now, strictly later than the previous timestamp, so every change moves `updatedAt`."""
        return format_timestamp(self._moment())

    def _moment(self) -> datetime:
        # Truncate to HubSpot's millisecond precision before comparing: two calls within the
        # same millisecond must still come out strictly ordered.
        moment = self.clock().astimezone(UTC)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if self._last_moment is not None and moment <= self._last_moment:
            moment = self._last_moment + timedelta(milliseconds=1)
        self._last_moment = moment
        return moment

    def _emit(self, change: Change) -> None:
        for observer in self.observers:
            observer(change)

    def _save(self, object_type: str, object_id: str) -> None:
        if self.store is not None:
            self.store.put_record(object_type, object_id, self.objects[object_type][object_id])

    # --- companies ---------------------------------------------------------------------------

    def add_company(self, properties: Mapping[str, Any]) -> str:
        """Create a company directly (test and demo seeding); returns its new id.

        Values are validated like an API create; ValueError names what HubSpot would refuse.
        Subscribers see it as a change made in the HubSpot UI.
        """
        try:
            return self.create_company(properties, source="CRM_UI")
        except ApiError as error:
            raise ValueError(error.message) from error

    def create_company(self, properties: Mapping[str, Any], *, source: str = "API") -> str:
        values = self.validate_values(properties)
        return self._insert("companies", values, [], source)

    def company(self, company_id: str) -> PropertyValues:
        return self.record("companies", company_id)

    def update_company(
        self, company_id: str, values: Mapping[str, str | None], *, source: str = "API"
    ) -> bool:
        """Apply already-validated values; True when something changed (and the clock moved)."""
        return self._apply("companies", company_id, values, source)

    def render_company(
        self, company_id: str, properties: Iterable[str] | None = None
    ) -> JSONObject:
        """A company as HubSpot's SimplePublicObject, with the asked-for (or default) properties.

        Unknown names are skipped, as HubSpot does for reads; known but unset ones are null.
        """
        return self.render("companies", company_id, properties)

    def ordered_company_ids(self) -> list[str]:
        return self.ordered_ids("companies")

    # --- contacts, deals, engagements, tasks, tickets ---------------------------------------

    def add_object(
        self,
        object_type: str,
        properties: Mapping[str, str | None],
        associations: Mapping[str, Iterable[str]] | None = None,
    ) -> str:
        """Create a contact, deal, email, call, meeting, note, task or ticket directly.

        `associations` maps an object type to the ids to associate with, in order (a contact's
        first company is its primary one), e.g. {"companies": ["1"], "contacts": ["7"]}.
        Values are validated against the type's definitions and the associated records must
        exist; ValueError names what HubSpot would refuse. Required properties are not
        enforced here (seeding is an import, not an API create). Returns the new id.
        """
        spec = OBJECT_TYPE_SPECS.get(object_type)
        if spec is None:
            known = ", ".join(OBJECT_TYPE_SPECS)
            raise ValueError(f"Unknown object type {object_type!r}; expected one of {known}")
        try:
            values = self.validate_values(properties, object_type=object_type)
        except ApiError as error:
            raise ValueError(error.message) from error
        targets = self._association_targets(object_type, associations or {})
        links = [(to_type, to_id) for to_type, to_ids in targets.items() for to_id in to_ids]
        return self._insert(object_type, values, links, "CRM_UI")

    def update_object(
        self, object_type: str, object_id: str, properties: Mapping[str, str | None]
    ) -> bool:
        """Change a record's values as a user in HubSpot would; True when something changed.

        Raises ValueError for an unknown type, a missing record or a value HubSpot would refuse.
        """
        self._require_type(object_type)
        try:
            self.record(object_type, object_id)
            values = self.validate_values(properties, object_type=object_type)
        except ApiError as error:
            raise ValueError(error.message) from error
        return self._apply(object_type, object_id, values, "CRM_UI")

    def create_object(
        self,
        object_type: str,
        properties: Mapping[str, Any],
        associations: list[JSONObject] | None = None,
        *,
        source: str = "API",
    ) -> str:
        """`POST /crm/v3/objects/{objectType}`: validate values, required properties and the
        `associations` array ([{"to": {"id"}, "types": [{"associationCategory",
        "associationTypeId"}]}]) before writing anything; ApiError as HubSpot answers."""
        self._require_type(object_type)
        values = self.validate_values(properties, object_type=object_type)
        spec = OBJECT_TYPE_SPECS.get(object_type)
        missing = [name for name in (spec.required if spec else ()) if not values.get(name)]
        if missing:
            raise self._property_values_error(
                [
                    self._problem(name, "", "REQUIRED_PROPERTY", f"{name} is required")
                    for name in missing
                ]
            )
        links = self._parse_create_associations(object_type, associations or [])
        return self._insert(object_type, values, links, source)

    def _parse_create_associations(
        self, object_type: str, associations: list[JSONObject]
    ) -> list[tuple[str, str]]:
        links: list[tuple[str, str, bool]] = []
        for index, item in enumerate(associations):
            where = f"associations[{index}]"
            to = item.get("to") if isinstance(item, dict) else None
            raw_id = to.get("id") if isinstance(to, dict) else None
            if isinstance(raw_id, int) and not isinstance(raw_id, bool):
                raw_id = str(raw_id)
            if not isinstance(raw_id, str) or not raw_id:
                raise missing_attributes("PublicObjectId", [f"{where}.to.id"])
            types = item.get("types")
            if not isinstance(types, list) or not types:
                raise missing_attributes("PublicAssociationsForObject", [f"{where}.types"])
            for type_index, spec in enumerate(types):
                type_where = f"{where}.types[{type_index}]"
                category = spec.get("associationCategory") if isinstance(spec, dict) else None
                type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
                if category not in {"HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED"}:
                    raise validation_error(
                        f"Invalid value for {type_where}.associationCategory: {category!r}; "
                        "expected HUBSPOT_DEFINED, USER_DEFINED or INTEGRATOR_DEFINED."
                    )
                to_type = (
                    TARGET_BY_TYPE_ID.get((object_type, type_id))
                    if isinstance(type_id, int) and category == "HUBSPOT_DEFINED"
                    else None
                )
                if to_type is None:
                    raise validation_error(
                        f"{type_where}.associationTypeId {type_id!r} is not a valid "
                        f"{category} association type from {_association_name(object_type)}."
                    )
                if raw_id not in self.objects[to_type]:
                    raise ApiError(
                        400,
                        "VALIDATION_ERROR",
                        f"{where}.to.id {raw_id} is not a valid "
                        f"{_association_name(to_type)} id: no such record.",
                    )
                primary = PRIMARY_TYPE_IDS.get((object_type, to_type)) == type_id
                links.append((to_type, raw_id, primary))
        # Primary ones first: the first company linked is the primary one.
        ordered = sorted(links, key=lambda link: not link[2])
        return list(dict.fromkeys((to_type, to_id) for to_type, to_id, _ in ordered))

    def _association_targets(
        self, object_type: str, associations: Mapping[str, Iterable[str]]
    ) -> dict[str, list[str]]:
        targets: dict[str, list[str]] = {}
        for to_type, ids in associations.items():
            if to_type not in self.objects or not can_associate(object_type, to_type):
                raise ValueError(f"Cannot associate {object_type} with {to_type!r}")
            # Repeats collapse, as associating the same pair twice does in HubSpot.
            unique = list(dict.fromkeys(str(i) for i in ids))
            missing = [i for i in unique if i not in self.objects[to_type]]
            if missing:
                raise ValueError(f"No {to_type} with id(s) {', '.join(missing)} to associate")
            targets[to_type] = unique
        return targets

    def _insert(
        self,
        object_type: str,
        values: PropertyValues,
        links: Iterable[tuple[str, str]],
        source: str,
    ) -> str:
        spec = OBJECT_TYPE_SPECS.get(object_type)
        created, modified = (
            ("createdate", "hs_lastmodifieddate") if spec is None else (spec.created, spec.modified)
        )
        object_id = str(self._next_id)
        self._next_id += 1
        moment = self._moment()
        at = format_timestamp(moment)
        record: PropertyValues = {name: value for name, value in values.items() if value}
        record.update({"hs_object_id": object_id, modified: at})
        record.setdefault(created, at)
        self.objects[object_type][object_id] = record
        if self.store is not None:
            self.store.set_next_id(self._next_id)
            self._save(object_type, object_id)
        self._emit(
            Change(
                kind="creation",
                object_type=object_type,
                object_id=object_id,
                occurred_at=moment,
                source=source,
            )
        )
        # HubSpot also reports each value a create set, as a property change.
        for name, value in record.items():
            if name in values:
                self._emit(
                    Change(
                        kind="propertyChange",
                        object_type=object_type,
                        object_id=object_id,
                        occurred_at=moment,
                        source=source,
                        property_name=name,
                        property_value=value,
                    )
                )
        for to_type, to_id in links:
            self.link(object_type, object_id, to_type, to_id, source=source)
        return object_id

    def link(
        self, from_type: str, from_id: str, to_type: str, to_id: str, *, source: str = "API"
    ) -> bool:
        """Associate two existing records (both directions); False when they already were."""
        if to_id in self.links[from_type].get(from_id, {}).get(to_type, []):
            return False
        self._remember_link(from_type, from_id, to_type, to_id)
        if self.store is not None:
            self.store.add_links([(from_type, from_id, to_type, to_id)])
        moment = self._moment()
        for a_type, a_id, b_type, b_id in (
            (from_type, from_id, to_type, to_id),
            (to_type, to_id, from_type, from_id),
        ):
            self._emit(
                Change(
                    kind="associationChange",
                    object_type=a_type,
                    object_id=a_id,
                    occurred_at=moment,
                    source=source,
                    to_type=b_type,
                    to_id=b_id,
                    association_type_id=ASSOCIATION_TYPE_IDS.get((a_type, b_type)),
                    primary=self._is_primary(a_type, a_id, b_type, b_id),
                )
            )
        return True

    def _remember_link(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self.links[from_type].setdefault(from_id, {}).setdefault(to_type, []).append(to_id)
        self.links[to_type].setdefault(to_id, {}).setdefault(from_type, []).append(from_id)

    def _is_primary(self, a_type: str, a_id: str, b_type: str, b_id: str) -> bool:
        """Whether the pair is linked as primary: the record's first company."""
        if (a_type, b_type) not in PRIMARY_TYPE_IDS:
            return False
        record_type, record_id, company_id = (
            (a_type, a_id, b_id) if b_type == "companies" else (b_type, b_id, a_id)
        )
        companies = self.links[record_type].get(record_id, {}).get("companies", [])
        return bool(companies) and companies[0] == company_id

    # --- any object type ---------------------------------------------------------------------

    def _require_type(self, object_type: str) -> None:
        if object_type not in self.objects:
            raise unknown_object_type(object_type)

    def record(self, object_type: str, object_id: str) -> PropertyValues:
        """The stored values of one record; HubSpot's 404 when there is none."""
        self._require_type(object_type)
        try:
            return self.objects[object_type][object_id]
        except KeyError:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found") from None

    def ordered_ids(self, object_type: str) -> list[str]:
        self._require_type(object_type)
        return sorted(self.objects[object_type], key=company_sort_key)

    def find_by_property(self, object_type: str, name: str, value: str) -> str | None:
        """The id of the record whose `name` is `value` (batch read with `idProperty`)."""
        self._require_type(object_type)
        if name in {"hs_object_id", "id"}:
            return value if value in self.objects[object_type] else None
        for object_id, record in self.objects[object_type].items():
            if record.get(name) == value:
                return object_id
        return None

    def apply(
        self,
        object_type: str,
        object_id: str,
        values: Mapping[str, str | None],
        *,
        source: str = "API",
    ) -> bool:
        """Write already-validated values (an API update); True when something changed."""
        return self._apply(object_type, object_id, values, source)

    def _apply(
        self,
        object_type: str,
        object_id: str,
        values: Mapping[str, str | None],
        source: str = "API",
    ) -> bool:
        record = self.record(object_type, object_id)
        changed: list[tuple[str, str | None]] = []
        for name, value in values.items():
            if record.get(name) != value:
                changed.append((name, value))
                if value is None:
                    record.pop(name, None)
                else:
                    record[name] = value
        if not changed:
            return False
        moment = self._moment()
        record[_modified_property(object_type)] = format_timestamp(moment)
        self._save(object_type, object_id)
        for name, value in changed:
            self._emit(
                Change(
                    kind="propertyChange",
                    object_type=object_type,
                    object_id=object_id,
                    occurred_at=moment,
                    source=source,
                    property_name=name,
                    property_value=value,
                )
            )
        return True

    def render(
        self,
        object_type: str,
        object_id: str,
        properties: Iterable[str] | None = None,
        associations: Iterable[str] = (),
        *,
        cleared: Collection[str] = (),
    ) -> JSONObject:
        """A record as HubSpot's SimplePublicObject(WithAssociations).

        Unknown property names are skipped, as HubSpot does for reads; known but unset ones are
        null, except the `cleared` ones: a write answer echoes a value it just cleared as "", as
        HubSpot does. `associations` are object types; each one the record is associated with
        comes back as {"results": [{"id", "type"}]}, and the key is left out when there are none.
        """
        record = self.record(object_type, object_id)
        spec = OBJECT_TYPE_SPECS.get(object_type)
        defaults = DEFAULT_PROPERTIES if spec is None else spec.defaults
        system = SYSTEM_PROPERTIES if spec is None else spec.system_properties
        definitions = self.definitions[object_type]
        wanted = defaults if properties is None else properties
        names = sorted({name for name in wanted if name in definitions} | set(system))
        rendered: JSONObject = {
            "id": object_id,
            "properties": {
                name: "" if name in cleared and record.get(name) is None else record.get(name)
                for name in names
            },
            "createdAt": record.get(system[0]),
            "updatedAt": record.get(system[1]),
            "archived": False,
        }
        associated: JSONObject = {}
        for to_type in dict.fromkeys(associations):
            self._require_type(to_type)
            results = self._association_results(object_type, object_id, to_type)
            if results:
                associated[to_type] = {"results": results}
        if associated:
            rendered["associations"] = associated
        return rendered

    def _association_results(self, from_type: str, from_id: str, to_type: str) -> list[JSONObject]:
        stem = f"{_association_name(from_type)}_to_{_association_name(to_type)}"
        results: list[JSONObject] = []
        for to_id in self.links[from_type].get(from_id, {}).get(to_type, []):
            if {from_type, to_type} == {"contacts", "companies"}:
                # v3 lists a contact's primary company under the plain type and again as
                # unlabeled; other companies only as unlabeled. Readers must de-duplicate.
                contact_id = from_id if from_type == "contacts" else to_id
                company_id = to_id if from_type == "contacts" else from_id
                if self._primary_company(contact_id) == company_id:
                    results.append({"id": to_id, "type": stem})
                results.append({"id": to_id, "type": f"{stem}_unlabeled"})
            else:
                results.append({"id": to_id, "type": stem})
        return results

    def _primary_company(self, contact_id: str) -> str | None:
        companies = self.links["contacts"].get(contact_id, {}).get("companies", [])
        return companies[0] if companies else None

    def associations_v4(self, from_type: str, from_id: str, to_type: str) -> list[JSONObject]:
        """The v4 `to` list of one record: ids as numbers, each with its association types.

        A primary pair carries the "Primary" labelled type next to the unlabeled default.
        """
        results: list[JSONObject] = []
        for to_id in self.links[from_type].get(from_id, {}).get(to_type, []):
            types: list[JSONObject] = []
            if self._is_primary(from_type, from_id, to_type, to_id):
                types.append(
                    {
                        "category": "HUBSPOT_DEFINED",
                        "typeId": PRIMARY_TYPE_IDS[(from_type, to_type)],
                        "label": "Primary",
                    }
                )
            type_id = ASSOCIATION_TYPE_IDS.get((from_type, to_type))
            if type_id is not None:
                types.append({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None})
            results.append(
                {"toObjectId": int(to_id) if to_id.isdigit() else to_id, "associationTypes": types}
            )
        return results

    # --- property values ---------------------------------------------------------------------

    def validate_values(
        self, values: Mapping[str, Any], *, object_type: str = "companies"
    ) -> PropertyValues:
        """Check values against the type's definitions as HubSpot does; "" or null clears.

        All problems are reported at once in HubSpot's "Property values were not valid" error.
        """
        self._require_type(object_type)
        definitions = self.definitions[object_type]
        problems: list[JSONObject] = []
        clean: PropertyValues = {}
        for name, raw in values.items():
            problem, value = self._check_value(name, raw, definitions)
            if problem is not None:
                problems.append(problem)
            else:
                clean[name] = value
        if problems:
            raise self._property_values_error(problems)
        return clean

    def _check_value(
        self, name: str, raw: Any, definitions: Mapping[str, JSONObject]
    ) -> tuple[JSONObject | None, str | None]:
        definition = definitions.get(name)
        if definition is None:
            return self._problem(
                name, raw, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
            ), None
        if definition["modificationMetadata"].get("readOnlyValue"):
            message = f"{name} is a read only property; its value cannot be set."
            return self._problem(name, raw, "READ_ONLY_VALUE", message), None
        if raw is None or raw == "":
            return None, None
        if isinstance(raw, bool):
            value = "true" if raw else "false"
        elif isinstance(raw, int | float):
            value = str(raw)
        elif isinstance(raw, str):
            value = raw
        else:
            message = f"{json.dumps(raw)} is not a valid value for a property."
            return self._problem(name, raw, "INVALID_VALUE", message), None
        problem = _type_problem(definition, value)
        if problem is not None:
            code, message = problem
            return self._problem(name, value, code, message), None
        return None, value

    def _problem(self, name: str, value: Any, code: str, message: str) -> JSONObject:
        return {
            "isValid": False,
            "message": message,
            "error": code,
            "name": name,
            "localizedErrorMessage": message,
            "propertyValue": value if isinstance(value, str) else json.dumps(value),
            "portalId": self.portal_id,
        }

    @staticmethod
    def _property_values_error(problems: list[JSONObject]) -> ApiError:
        # HubSpot embeds the validation results as JSON text in the message and also lists
        # them in `errors`; clients parse either, so the sandbox gives both.
        message = "Property values were not valid: " + json.dumps(problems, separators=(",", ":"))
        errors = [
            {
                "message": problem["message"],
                "code": problem["error"],
                "context": {"propertyName": [problem["name"]]},
            }
            for problem in problems
        ]
        return ApiError(400, "VALIDATION_ERROR", message, errors=errors)

    # --- property definitions ----------------------------------------------------------------

    def property_definition(self, name: str) -> JSONObject:
        try:
            return self.properties[name]
        except KeyError:
            raise ApiError(
                404, "OBJECT_NOT_FOUND", f"Property {name} does not exist on object type companies"
            ) from None

    def create_property(self, body: Mapping[str, Any]) -> JSONObject:
        required = ("name", "label", "type", "fieldType", "groupName")
        missing = [key for key in required if not isinstance(body.get(key), str) or not body[key]]
        if missing:
            raise missing_attributes("PropertyCreate", missing)
        name: str = body["name"]
        if name in self.properties:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
        if not _NAME.match(name):
            raise validation_error(
                f"Property name '{name}' is not valid: use lowercase letters, digits and "
                "underscores, starting with a letter."
            )
        self._require_group(body["groupName"])
        options = _check_definition(body["type"], body["fieldType"], body.get("options"))
        at = self.timestamp()
        definition: JSONObject = {
            "name": name,
            "label": body["label"],
            "type": body["type"],
            "fieldType": body["fieldType"],
            "description": _optional(body, "description", str, ""),
            "groupName": body["groupName"],
            "options": options,
            "displayOrder": _optional(body, "displayOrder", int, -1),
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": _optional(body, "hasUniqueValue", bool, False),
            "hidden": _optional(body, "hidden", bool, False),
            "hubspotDefined": False,
            "modificationMetadata": {
                "archivable": True,
                "readOnlyDefinition": False,
                "readOnlyValue": False,
            },
            "formField": _optional(body, "formField", bool, False),
            "createdAt": at,
            "updatedAt": at,
            "archived": False,
        }
        self.properties[name] = definition
        self._save_definition(name)
        return definition

    def update_property(self, name: str, body: Mapping[str, Any]) -> JSONObject:
        definition = self.property_definition(name)
        if definition["modificationMetadata"].get("readOnlyDefinition"):
            raise validation_error(
                f"Property {name} is HubSpot defined; its definition is read-only."
            )
        updated = dict(definition)
        for key, kind in (("label", str), ("description", str), ("displayOrder", int)):
            if key in body:
                updated[key] = _optional(body, key, kind, definition[key])
        for key in ("hidden", "formField"):
            if key in body:
                updated[key] = _optional(body, key, bool, definition[key])
        for key in ("type", "fieldType", "groupName"):
            if key in body:
                updated[key] = _optional(body, key, str, definition[key])
        self._require_group(updated["groupName"])
        options = body.get("options", definition["options"])
        updated["options"] = _check_definition(updated["type"], updated["fieldType"], options)
        updated["updatedAt"] = self.timestamp()
        self.properties[name] = updated
        self._save_definition(name)
        return updated

    def _save_definition(self, name: str) -> None:
        if self.store is not None:
            self.store.put_definition("companies", name, self.properties[name])

    def _require_group(self, group_name: str) -> None:
        if group_name not in self.groups:
            raise validation_error(f"Property group {group_name} does not exist.")

    def create_group(self, body: Mapping[str, Any]) -> JSONObject:
        missing = [
            key for key in ("name", "label") if not isinstance(body.get(key), str) or not body[key]
        ]
        if missing:
            raise missing_attributes("PropertyGroupCreate", missing)
        name: str = body["name"]
        if name in self.groups:
            raise ApiError(
                409, "OBJECT_ALREADY_EXISTS", f"Property group named '{name}' already exists."
            )
        if not _NAME.match(name):
            raise validation_error(
                f"Property group name '{name}' is not valid: use lowercase letters, digits and "
                "underscores, starting with a letter."
            )
        group: JSONObject = {
            "name": name,
            "label": body["label"],
            "displayOrder": _optional(body, "displayOrder", int, -1),
            "archived": False,
        }
        self.groups[name] = group
        if self.store is not None:
            self.store.put_group(name, group)
        return group


def unknown_object_type(object_type: str) -> ApiError:
    """HubSpot's answer to an object type (in a path or `associations=`) it does not know."""
    return ApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")


def _association_name(object_type: str) -> str:
    spec = OBJECT_TYPE_SPECS.get(object_type)
    return "company" if spec is None else spec.association_name


def _modified_property(object_type: str) -> str:
    spec = OBJECT_TYPE_SPECS.get(object_type)
    return "hs_lastmodifieddate" if spec is None else spec.modified


def company_sort_key(company_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order; anything else (only seeded by hand) after them."""
    return (0, int(company_id), "") if company_id.isdigit() else (1, 0, company_id)


def _optional(body: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    # bool is an int subclass; a JSON true is not a displayOrder.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise validation_error(f"Invalid input JSON: '{key}' must be of type {kind.__name__}.")
    return value


def _check_definition(type_: str, field_type: str, raw_options: Any) -> list[JSONObject]:
    """Validate a type/fieldType pair and its options; returns the normalised options."""
    allowed = FIELD_TYPES.get(type_)
    if allowed is None:
        raise validation_error(
            f"Invalid property type '{type_}'; expected one of {', '.join(sorted(FIELD_TYPES))}."
        )
    if field_type not in allowed:
        raise validation_error(
            f"Field type '{field_type}' is not compatible with property type '{type_}'; "
            f"expected one of {', '.join(sorted(allowed))}."
        )
    options = _check_options(raw_options)
    if field_type not in _OPTION_FIELD_TYPES:
        if options:
            raise validation_error(f"Options are not allowed for '{type_}' properties.")
        return []
    if field_type == "booleancheckbox":
        if sorted(option["value"] for option in options) != ["false", "true"]:
            raise validation_error(
                "Boolean properties must have exactly two options; one with a value of 'true', "
                "the other with a value of 'false'."
            )
    elif not options:
        raise validation_error(
            f"Enumeration properties with field type '{field_type}' need options."
        )
    return options


def _check_options(raw: Any) -> list[JSONObject]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise validation_error("Invalid input JSON: 'options' must be a list.")
    options: list[JSONObject] = []
    seen: set[str] = set()
    for order, item in enumerate(raw):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("label", "value")
        ):
            raise validation_error("Every option needs a string 'label' and 'value'.")
        # OptionInput (CRM Properties v3) requires `hidden`: refuse what HubSpot may refuse.
        if not isinstance(item.get("hidden"), bool):
            raise missing_attributes("OptionInput", [f"options[{order}].hidden"])
        value = item["value"]
        if value in seen:
            raise validation_error(f"Option value '{value}' is used more than once.")
        seen.add(value)
        options.append(
            {
                "label": item["label"],
                "value": value,
                "description": _optional(item, "description", str, ""),
                "displayOrder": _optional(item, "displayOrder", int, order),
                "hidden": item["hidden"],
            }
        )
    return options


def _type_problem(definition: Mapping[str, Any], value: str) -> tuple[str, str] | None:
    """(error code, message) when `value` does not fit the property's type, else None."""
    type_, field_type = definition["type"], definition["fieldType"]
    if type_ == "number":
        if not _NUMBER.match(value):
            return "INVALID_FLOAT", f"{value} was not a valid number."
        return None
    if type_ in {"datetime", "date"}:
        return None if _is_date(value) else ("INVALID_DATE", f"{value} was not a valid date.")
    if type_ in {"enumeration", "bool"} and not definition.get("externalOptions"):
        allowed = [option["value"] for option in definition["options"]]
        if field_type == "booleancheckbox" and not allowed:
            allowed = ["true", "false"]
        # Multi-select checkboxes hold several options joined by semicolons.
        chosen = value.split(";") if field_type == "checkbox" else [value]
        if any(item not in allowed for item in chosen):
            listed = ", ".join(allowed)
            return "INVALID_OPTION", f"{value} was not one of the allowed options: [{listed}]"
    return None


def _is_date(value: str) -> bool:
    # HubSpot takes epoch milliseconds or ISO 8601.
    if value.isdigit():
        return True
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True
