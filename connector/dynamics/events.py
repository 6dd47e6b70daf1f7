"""Verify and parse Dataverse webhook deliveries, read Web API records into the same shape, and
turn both into normalised events.

A webhook step POSTs the JSON serialisation of `Microsoft.Xrm.Sdk.RemoteExecutionContext`:
`MessageName`, `PrimaryEntityName`, `PrimaryEntityId`, `CorrelationId`, `RequestId`,
`OperationId`, `Stage`, `Depth`, `UserId`, `InitiatingUserId`, `OrganizationId`,
`OrganizationName`, `OperationCreatedOn`, and key/value lists: `InputParameters` (the `Target`
entity, or an entity reference for Delete), `PreEntityImages` and `PostEntityImages`. Values are
WCF data-contract JSON: dates as `"/Date(1506384247000)/"`, typed values with a `__type` marker
(`EntityReference:`, `OptionSetValue:`, `Money:`). Over 256 KB Dataverse drops `ParentContext`,
`InputParameters` and both image lists and sends the `x-ms-dynamics-msg-size-exceeded` header;
the record must then be read through the Web API.

Dataverse signs nothing: a webhook is authenticated by a static key the registration sends as a
header (HttpHeader), as the `code` query parameter (WebhookKey) or as another query parameter
(HttpQueryString). A failed step is retried with the same correlation and operation ids, which
with the record and stage make the dedup key.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final, Literal

from connector import bounds
from connector.errors import PayloadError, SignatureError
from connector.jsonparse import check_limits
from connector.mapping import DEFAULT_EXECUTIVE_TITLE, compile_title_pattern, website_domain
from connector.model import (
    AccountAttributes,
    AccountDeleted,
    ContactUpsert,
    Interaction,
    InteractionChannel,
    NormalisedEvent,
    Ticket,
    TicketPriority,
)

__all__ = [
    "DEFAULT_INCIDENT_PRIORITIES",
    "DEFAULT_MAPPING",
    "ECHO_ENTITIES",
    "ENTITY_SETS",
    "MAPPED_ENTITIES",
    "PRIMARY_KEYS",
    "SIZE_EXCEEDED_HEADER",
    "WEBHOOK_KEY_PARAMETER",
    "AttributeValue",
    "DynamicsMapping",
    "DynamicsRecord",
    "ExecutionContext",
    "Lookup",
    "VerificationMode",
    "made_by",
    "parse_execution_context",
    "parse_wcf_date",
    "record_from_web_api",
    "to_normalised",
    "verify_request",
    "web_api_select",
]

# Sent (with any value) only when the whole HTTP payload is over 256 KB.
SIZE_EXCEEDED_HEADER: Final = "x-ms-dynamics-msg-size-exceeded"
# The WebhookKey option always sends its value as `?code=...` (the Azure Functions convention).
WEBHOOK_KEY_PARAMETER: Final = "code"

VerificationMode = Literal["header", "webhook_key", "query_string"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_LOGICAL_NAME = re.compile(r"[a-z][a-z0-9_]*")
# WCF (DataContractJsonSerializer) dates: milliseconds since the Unix epoch in UTC, optionally
# followed by the sender's UTC offset, which says nothing about the instant itself.
_WCF_DATE = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")
# Web API (OData) dates: Edm.DateTimeOffset in UTC, or Edm.Date for date-only columns.
_ODATA_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))?"
)
_LOOKUP_PROPERTY = re.compile(r"_([a-z][a-z0-9_]*)_value")
_LOOKUP_LOGICAL_NAME_ANNOTATION: Final = "@Microsoft.Dynamics.CRM.lookuplogicalname"
_DELETE: Final = "Delete"
# Messages whose documented InputParameters carry a Target.
_TARGET_MESSAGES: Final = frozenset({"Create", "Update", _DELETE})


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """A reference to another row: its table's logical name and its id (a lowercase GUID)."""

    entity: str
    id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.id.lower())


AttributeValue = str | int | float | bool | datetime | Lookup | None


@dataclass(frozen=True, kw_only=True)
class DynamicsRecord:
    """One row as the webhook or the Web API gave it: the table's logical name, the row id
    (lowercase GUID) and the columns present, by logical name. A column that is absent says
    nothing; one that is None was cleared."""

    entity: str
    id: str
    attributes: dict[str, AttributeValue]


@dataclass(frozen=True, kw_only=True)
class ExecutionContext:
    """A parsed webhook delivery.

    `record` is the Target's columns overlaid with the post-image's (image values win), or for
    Delete the pre-image's columns (just the id without one). It is None when the delivery
    carries neither a Target entity nor an image, as when `size_exceeded`: read the row through
    the Web API then. After a size-exceeded delivery it may also be partial.
    """

    message: str
    entity: str
    record_id: str
    correlation_id: str
    request_id: str | None
    operation_id: str
    stage: int
    depth: int
    user_id: str
    initiating_user_id: str
    organization_id: str
    organization_name: str
    operation_created_on: datetime
    record: DynamicsRecord | None
    size_exceeded: bool = False

    @property
    def dedup_key(self) -> str:
        # A retried step keeps its correlation and operation ids; the record, stage and message
        # tell apart the several steps one operation may trigger. The operation id comes first:
        # one request can run a step twice (a status change beside other columns runs Update
        # twice), each run its own operation; synchronous steps have none (an empty GUID).
        operation = None if self.operation_id.strip("0-") == "" else self.operation_id
        return ":".join(
            (
                self.correlation_id,
                operation or self.request_id or self.operation_id,
                self.entity,
                self.record_id,
                str(self.stage),
                self.message,
            )
        )


# --- webhook parsing ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"body is not JSON: {name} is not a JSON value")


def _guid(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _GUID.fullmatch(value.strip()):
        raise PayloadError(f"{where} is not a GUID: {_shown(value)}")
    return value.strip().lower()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _required(document: Mapping[str, Any], name: str) -> Any:
    if name not in document:
        raise PayloadError(f"{name} is missing")
    return document[name]


def _text(document: Mapping[str, Any], name: str) -> str:
    value = _required(document, name)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{name} is not a non-empty string: {_shown(value)}")
    return value.strip()


def _integer(document: Mapping[str, Any], name: str) -> int:
    value = _required(document, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{name} is not an integer: {_shown(value)}")
    # Dataverse's Stage and Depth are 32-bit; the stage is part of the dedup key.
    if not 0 <= value <= bounds.INT32_MAX:
        raise PayloadError(f"{name} is out of range: {_shown(value)}")
    return value


def _bounded(value: str, name: str, limit: int) -> str:
    try:
        return bounds.checked_text(value, limit=limit, where=name)
    except ValueError as exc:
        raise PayloadError(str(exc)) from None


def parse_wcf_date(value: Any, where: str) -> datetime:
    """A WCF JSON date (`/Date(1506409448000)/`, `/Date(1506409448000-0700)/`) in UTC."""
    match = _WCF_DATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise PayloadError(f"{where} is not a /Date(milliseconds)/ value: {_shown(value)}")
    try:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"{where} is out of range: {_shown(value)}") from None


def _pairs(value: Any, where: str) -> list[tuple[str, Any, str]]:
    """A serialised collection (`[{"key": ..., "value": ...}]`) as (key, value, where) triples."""
    if not isinstance(value, list):
        raise PayloadError(f"{where} is not a list of key/value pairs")
    pairs: list[tuple[str, Any, str]] = []
    for index, item in enumerate(value):
        item_where = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise PayloadError(f"{item_where} is not a key/value object")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise PayloadError(f"{item_where}.key is missing or not a string")
        if "value" not in item:
            raise PayloadError(f"{item_where}.value is missing")
        pairs.append((key, item["value"], f"{item_where}.value"))
    return pairs


def _type_name(value: Mapping[str, Any], where: str) -> str | None:
    """The contract type of a `__type` marker ("EntityReference:http://..." -> EntityReference)."""
    marker = value.get("__type")
    if marker is None:
        return None
    if not isinstance(marker, str) or not marker:
        raise PayloadError(f"{where}.__type is not a string")
    return marker.partition(":")[0]


def _attribute(value: Any, where: str) -> tuple[bool, AttributeValue]:
    """(kept, value) for one attribute value. Types nothing maps (party lists, multi-select
    choices, nested entities) are left out, so a new column never fails a delivery."""
    if value is None or isinstance(value, bool | int | float):
        return True, value
    if isinstance(value, str):
        return True, parse_wcf_date(value, where) if _WCF_DATE.fullmatch(value) else value
    if not isinstance(value, dict):
        return False, None
    kind = _type_name(value, where)
    if kind == "EntityReference":
        return True, _entity_reference(value, where)
    if kind in {"OptionSetValue", "Money"}:
        number = value.get("Value")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise PayloadError(f"{where}.Value is not a number: {_shown(number)}")
        return True, int(number) if kind == "OptionSetValue" else float(number)
    return False, None


def _entity_reference(value: Mapping[str, Any], where: str) -> Lookup:
    entity = value.get("LogicalName")
    if not isinstance(entity, str) or not _LOGICAL_NAME.fullmatch(entity):
        raise PayloadError(f"{where}.LogicalName is not a table logical name: {_shown(entity)}")
    return Lookup(entity=entity, id=_guid(value.get("Id"), f"{where}.Id"))


def _entity_attributes(value: Any, where: str, *, entity: str) -> dict[str, AttributeValue]:
    """The attributes of a serialised Entity (a Target or an image) of table `entity`."""
    if not isinstance(value, dict):
        raise PayloadError(f"{where} is not an Entity object")
    kind = _type_name(value, where)
    if kind not in {None, "Entity"}:
        raise PayloadError(f"{where} is a {kind}, not an Entity")
    logical_name = value.get("LogicalName")
    if logical_name != entity:
        raise PayloadError(
            f"{where}.LogicalName is {_shown(logical_name)}, not the primary table {entity!r}"
        )
    attributes: dict[str, AttributeValue] = {}
    for key, item, item_where in _pairs(value.get("Attributes"), f"{where}.Attributes"):
        kept, converted = _attribute(item, item_where)
        if kept:
            attributes[key] = converted
    return attributes


def _target(
    parameters: list[tuple[str, Any, str]], *, entity: str, record_id: str
) -> tuple[bool, dict[str, AttributeValue] | None]:
    """(found, attributes) of the Target input parameter; attributes None for a reference."""
    for key, value, where in parameters:
        if key != "Target":
            continue
        if isinstance(value, dict) and _type_name(value, where) == "EntityReference":
            reference = _entity_reference(value, where)
            if reference.entity != entity or reference.id != record_id:
                raise PayloadError(
                    f"{where} refers to {reference.entity} {reference.id}, not the primary"
                    f" record {entity} {record_id}"
                )
            return True, None
        return True, _entity_attributes(value, where, entity=entity)
    return False, None


def _images(document: Mapping[str, Any], name: str, *, entity: str) -> dict[str, AttributeValue]:
    """All images of `PreEntityImages` or `PostEntityImages` merged (later aliases win)."""
    value = document.get(name)
    if value is None:
        return {}
    merged: dict[str, AttributeValue] = {}
    for _, image, where in _pairs(value, name):
        merged.update(_entity_attributes(image, where, entity=entity))
    return merged


def parse_execution_context(body: bytes, *, size_exceeded: bool = False) -> ExecutionContext:
    """Parse a webhook body; PayloadError naming the field when it is not a RemoteExecutionContext.

    `size_exceeded` is whether the request carried `x-ms-dynamics-msg-size-exceeded`: then the
    InputParameters and images may be missing, and `record` may be None or partial.
    """
    try:
        check_limits(body)
        document = json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(document, dict):
        raise PayloadError("body is not a JSON object (a RemoteExecutionContext)")
    # The body is stored and read again by the worker: every string in it must be storable.
    problem = bounds.unstorable_text(body, document)
    if problem is not None:
        raise PayloadError(problem)
    # Both make the inbox kind ("entity:message") and the dedup key, which have a length.
    message = _bounded(_text(document, "MessageName"), "MessageName", bounds.DYNAMICS_MESSAGE)
    entity = _bounded(
        _text(document, "PrimaryEntityName"), "PrimaryEntityName", bounds.DYNAMICS_ENTITY
    )
    if not _LOGICAL_NAME.fullmatch(entity):
        raise PayloadError(f"PrimaryEntityName is not a table logical name: {entity!r}")
    record_id = _guid(_required(document, "PrimaryEntityId"), "PrimaryEntityId")
    request_id = document.get("RequestId")
    correlation_id = _guid(_required(document, "CorrelationId"), "CorrelationId")
    operation_id = _guid(_required(document, "OperationId"), "OperationId")
    stage = _integer(document, "Stage")
    depth = _integer(document, "Depth")
    user_id = _guid(_required(document, "UserId"), "UserId")
    initiating_user_id = _guid(_required(document, "InitiatingUserId"), "InitiatingUserId")
    organization_id = _guid(_required(document, "OrganizationId"), "OrganizationId")
    organization_name = _text(document, "OrganizationName")
    operation_created_on = parse_wcf_date(
        _required(document, "OperationCreatedOn"), "OperationCreatedOn"
    )
    parameters_value = document.get("InputParameters")
    if parameters_value is None and not size_exceeded and message in _TARGET_MESSAGES:
        raise PayloadError(f"InputParameters is missing (a {message} always carries a Target)")
    parameters = [] if parameters_value is None else _pairs(parameters_value, "InputParameters")
    found, target = _target(parameters, entity=entity, record_id=record_id)
    if not found and not size_exceeded and message in _TARGET_MESSAGES:
        raise PayloadError(f"InputParameters has no Target (a {message} always carries one)")
    record: DynamicsRecord | None
    if message == _DELETE:
        image = _images(document, "PreEntityImages", entity=entity)
        # The row is gone: nothing can be read later, and its id is all an account delete needs.
        record = DynamicsRecord(entity=entity, id=record_id, attributes=image)
    else:
        image = _images(document, "PostEntityImages", entity=entity)
        if target is None and not image:
            record = None
        else:
            record = DynamicsRecord(
                entity=entity, id=record_id, attributes={**(target or {}), **image}
            )
    return ExecutionContext(
        message=message,
        entity=entity,
        record_id=record_id,
        correlation_id=correlation_id,
        request_id=None if request_id is None else _guid(request_id, "RequestId"),
        operation_id=operation_id,
        stage=stage,
        depth=depth,
        user_id=user_id,
        initiating_user_id=initiating_user_id,
        organization_id=organization_id,
        organization_name=organization_name,
        operation_created_on=operation_created_on,
        record=record,
        size_exceeded=size_exceeded,
    )


# --- verification ------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.casefold()
    return next((item for key, item in headers.items() if key.casefold() == wanted), None)


def verify_request(
    *,
    mode: VerificationMode,
    name: str,
    value: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
) -> None:
    """Check the key a webhook registration sends; SignatureError when it is missing or wrong.

    `webhook_key`: the `code` query parameter (`name` is ignored); `header`: the header `name`
    (any case); `query_string`: the query parameter `name`. Compared in constant time. No
    message carries the expected or the received value.
    """
    if not value:
        raise ValueError("verify_request: the configured value must not be empty")
    if mode == "webhook_key":
        where, received = f"query parameter {WEBHOOK_KEY_PARAMETER!r}", query.get("code")
    elif mode == "header":
        if not name:
            raise ValueError("verify_request: header mode needs a header name")
        where, received = f"header {name!r}", _header(headers, name)
    elif mode == "query_string":
        if not name:
            raise ValueError("verify_request: query_string mode needs a parameter name")
        where, received = f"query parameter {name!r}", query.get(name)
    else:
        raise ValueError(f"verify_request: unknown mode {mode!r}")
    if received is None:
        raise SignatureError(f"Dynamics webhook: {where} is missing")
    if not hmac.compare_digest(received.encode(), value.encode()):
        raise SignatureError(f"Dynamics webhook: {where} does not match the configured key")


# --- tables and the Web API --------------------------------------------------------------------

ENTITY_SETS: Final[Mapping[str, str]] = {
    "account": "accounts",
    "contact": "contacts",
    "email": "emails",
    "phonecall": "phonecalls",
    "appointment": "appointments",
    "incident": "incidents",
    "task": "tasks",
}
# Activity tables share the activitypointer key `activityid`.
PRIMARY_KEYS: Final[Mapping[str, str]] = {
    "account": "accountid",
    "contact": "contactid",
    "incident": "incidentid",
    "email": "activityid",
    "phonecall": "activityid",
    "appointment": "activityid",
    "task": "activityid",
}
# Lookup columns the mapping reads; the Web API names them `_<name>_value`.
_LOOKUP_COLUMNS: Final = frozenset(
    {"ownerid", "parentcustomerid", "regardingobjectid", "customerid", "parentaccountid"}
)


def _primary_key(entity: str) -> str:
    return PRIMARY_KEYS.get(entity, f"{entity}id")


def _odata_date(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{where} is not a date: {_shown(value)}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def record_from_web_api(entity: str, document: Mapping[str, Any]) -> DynamicsRecord:
    """A Web API row (`GET /api/data/v9.2/<set>(<id>)`) in the webhook's shape.

    Lookups (`_parentcustomerid_value`) become `Lookup`s under their logical name; their table
    comes from the `@Microsoft.Dynamics.CRM.lookuplogicalname` annotation, so ask with
    `Prefer: odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"`. ISO dates
    become aware datetimes; other annotations and expanded rows are left out.
    """
    if not _LOGICAL_NAME.fullmatch(entity):
        raise ValueError(f"{entity!r} is not a table logical name")
    where = f"Web API {entity}"
    if not isinstance(document, Mapping):
        raise PayloadError(f"{where} is not a JSON object")
    key = _primary_key(entity)
    record_id = _guid(document.get(key), f"{where}.{key}")
    where = f"{where} {record_id}"
    attributes: dict[str, AttributeValue] = {}
    for name, value in document.items():
        if not isinstance(name, str) or "@" in name or isinstance(value, dict | list):
            continue
        lookup = _LOOKUP_PROPERTY.fullmatch(name)
        if lookup is not None:
            column = lookup.group(1)
            if value is None:
                attributes[column] = None
                continue
            table = document.get(f"{name}{_LOOKUP_LOGICAL_NAME_ANNOTATION}")
            if not isinstance(table, str) or not _LOGICAL_NAME.fullmatch(table):
                raise PayloadError(
                    f"{where}.{name} has no {_LOOKUP_LOGICAL_NAME_ANNOTATION} annotation: ask"
                    ' with Prefer: odata.include-annotations="Microsoft.Dynamics.CRM.*"'
                )
            attributes[column] = Lookup(entity=table, id=_guid(value, f"{where}.{name}"))
        elif isinstance(value, str) and _ODATA_DATE.fullmatch(value):
            attributes[name] = _odata_date(value, f"{where}.{name}")
        else:
            attributes[name] = value
    return DynamicsRecord(entity=entity, id=record_id, attributes=attributes)


# --- mapping -----------------------------------------------------------------------------------

# The incident `prioritycode` choices of a new environment (global choice incident_prioritycode):
# 1 High, 2 Normal (the default), 3 Low.
DEFAULT_INCIDENT_PRIORITIES: Final[Mapping[int, TicketPriority]] = {
    1: "high",
    2: "medium",
    3: "low",
}
# A choice the organisation added itself, or none at all, cannot be ranked: count it as ordinary.
_FALLBACK_PRIORITY: Final[TicketPriority] = "medium"
_TICKET_PRIORITIES: Final = frozenset({"low", "medium", "high", "urgent"})
_ACCOUNT_ATTRIBUTE_FIELDS = (
    "name", "domain", "seats", "arr", "renewal_date", "segment", "owner", "lifecycle", "created",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DynamicsMapping:
    """How an environment's rows become normalised events; every default is a standard column.

    Account attributes: the account column (logical name) carrying each one, None leaves it
    unmapped. Seats, ARR, renewal date and segment live in custom columns of each
    organisation's own naming (`new_seats`), so they are unmapped by default; `revenue` is the
    customer's own revenue, not what they pay us, so it is never ARR unless an admin says so.

    Contacts are executives when `executive_title` (a case-insensitive regex, as for HubSpot)
    matches their `jobtitle`. Incident priorities map by `prioritycode` value
    (`incident_priorities`; anything else counts as medium).
    """

    name: str | None = "name"
    domain: str | None = "websiteurl"
    seats: str | None = None
    arr: str | None = None
    renewal_date: str | None = None
    segment: str | None = None
    owner: str | None = "ownerid"
    # The relationship type (`customertypecode`, a choice: 3 Customer, 8 Prospect...):
    # HealthConfig.customers decides which choice values are customers.
    lifecycle: str | None = "customertypecode"
    # When the row was created: where no customer-since date is known, the start of a
    # customer's onboarding period.
    created: str | None = "createdon"
    executive_title: str = DEFAULT_EXECUTIVE_TITLE
    incident_priorities: Mapping[int, TicketPriority] = field(
        default_factory=lambda: dict(DEFAULT_INCIDENT_PRIORITIES)
    )
    title_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for item in fields(self):
            if item.name in _ACCOUNT_ATTRIBUTE_FIELDS:
                value = getattr(self, item.name)
                if value is not None and (
                    not isinstance(value, str) or not _LOGICAL_NAME.fullmatch(value)
                ):
                    raise ValueError(
                        f"DynamicsMapping.{item.name} must be a column logical name (lowercase"
                        " letters, digits and underscores, e.g. new_seats) or None"
                    )
        for code, priority in self.incident_priorities.items():
            if isinstance(code, bool) or not isinstance(code, int):
                raise ValueError("DynamicsMapping.incident_priorities keys must be choice values")
            if priority not in _TICKET_PRIORITIES:
                raise ValueError(
                    f"DynamicsMapping.incident_priorities[{code}] must be one of low, medium,"
                    " high, urgent"
                )
        object.__setattr__(self, "title_pattern", compile_title_pattern(self.executive_title))

    def account_columns(self) -> dict[str, str]:
        """Account attribute -> account column, for the mapped attributes only."""
        return {
            attribute: name
            for attribute in _ACCOUNT_ATTRIBUTE_FIELDS
            if (name := getattr(self, attribute)) is not None
        }

    def incident_priority(self, value: AttributeValue) -> TicketPriority:
        if isinstance(value, bool) or not isinstance(value, int):
            return _FALLBACK_PRIORITY
        return self.incident_priorities.get(value, _FALLBACK_PRIORITY)


DEFAULT_MAPPING: Final = DynamicsMapping()

_TIMES: Final = ("modifiedon", "createdon")
_BASE_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "contact": ("parentcustomerid", "jobtitle"),
    "email": ("regardingobjectid", "directioncode", "actualend"),
    "phonecall": ("regardingobjectid", "directioncode", "actualend"),
    "appointment": ("regardingobjectid", "scheduledstart"),
    "incident": ("customerid", "prioritycode"),
}


def web_api_select(entity: str, mapping: DynamicsMapping = DEFAULT_MAPPING) -> tuple[str, ...]:
    """The `$select` properties a Web API read of `entity` needs for `mapping` (lookups in their
    `_<name>_value` form). ValueError for a table nothing maps."""
    if entity == "account":
        columns: tuple[str, ...] = tuple(mapping.account_columns().values())
    elif entity in _BASE_COLUMNS:
        columns = _BASE_COLUMNS[entity]
    else:
        raise ValueError(f"no mapping for Dynamics table {entity!r}")
    properties = (f"_{name}_value" if name in _LOOKUP_COLUMNS else name for name in columns)
    return tuple(dict.fromkeys((*properties, *_TIMES)))


class _Row:
    """Typed, checked reads of one record's columns; errors name the record and column."""

    def __init__(self, record: DynamicsRecord, received_at: datetime | None) -> None:
        self.record = record
        self.received_at = received_at
        self.where = f"{record.entity} {record.id}"

    def has(self, name: str) -> bool:
        return name in self.record.attributes

    def text(self, name: str) -> str | None:
        value = self.record.attributes.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise PayloadError(f"{self.where}.{name} is not text: {_shown(value)}")
        return value.strip() or None

    def flag(self, name: str) -> bool | None:
        value = self.record.attributes.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise PayloadError(f"{self.where}.{name} is not a yes/no value: {_shown(value)}")

    def account(self, name: str) -> str | None:
        """The id of the account a lookup column points at; None for a contact or nothing."""
        value = self.record.attributes.get(name)
        if value is None:
            return None
        if not isinstance(value, Lookup):
            raise PayloadError(f"{self.where}.{name} is not a lookup: {_shown(value)}")
        return value.id if value.entity == "account" else None

    def time(self, name: str) -> datetime | None:
        value = self.record.attributes.get(name)
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise PayloadError(f"{self.where}.{name} is not a date and time: {_shown(value)}")
        return value

    def at(self, *names: str) -> datetime:
        """The first of `names` present, else when the row last changed or was created, else
        when the delivery was received."""
        candidates = tuple(dict.fromkeys((*names, *_TIMES)))
        for name in candidates:
            moment = self.time(name)
            if moment is not None:
                return moment
        if self.received_at is not None:
            return self.received_at
        raise PayloadError(
            f"{self.where} carries none of {', '.join(candidates)} and no receive time was given"
        )

    def deleted_at(self) -> datetime:
        # The image's modifiedon is the last change before the delete, not the delete itself.
        return self.received_at if self.received_at is not None else self.at()


def _attribute_text(value: AttributeValue) -> str | None:
    """An account attribute value as the facts store keeps it (text)."""
    if value is None or isinstance(value, str):
        return None if value is None else value.strip() or None
    if isinstance(value, Lookup):
        return value.id
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _account_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    account = row.record.id
    if deleted:
        return [AccountDeleted(account=account, at=row.deleted_at())]
    attributes: dict[str, str | None] = {}
    for attribute, column in mapping.account_columns().items():
        # A column the delivery does not carry says nothing; a None one clears the attribute.
        if not row.has(column):
            continue
        raw = row.record.attributes[column]
        if attribute == "owner" and isinstance(raw, Lookup) and raw.entity != "systemuser":
            # A team owns the account: no person to assign an alert task to.
            attributes[attribute] = None
            continue
        value = _attribute_text(raw)
        attributes[attribute] = website_domain(value) if attribute == "domain" else value
    if not attributes:
        return []
    return [AccountAttributes(account=account, at=row.at(), attributes=attributes)]


def _contact_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    # parentcustomerid may be a contact (a person's "company" set to another person): no account.
    account = row.account("parentcustomerid")
    if account is None:
        return []
    title = row.text("jobtitle")
    executive = None if title is None else mapping.title_pattern.search(title) is not None
    return [
        ContactUpsert(
            account=account,
            at=row.deleted_at() if deleted else row.at(),
            contact=row.record.id,
            title=title,
            executive=executive,
            left=deleted,
        )
    ]


_CHANNELS: Final[Mapping[str, InteractionChannel]] = {"email": "email", "phonecall": "call"}


def _activity_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    account = row.account("regardingobjectid")
    if account is None or deleted:
        return []
    # directioncode: true is Outgoing (the column's default), false is Incoming.
    outgoing = row.flag("directioncode")
    return [
        Interaction(
            account=account,
            at=row.at("actualend", "createdon"),
            channel=_CHANNELS[row.record.entity],
            direction="customer" if outgoing is False else "ours",
            source_id=row.record.id,
        )
    ]


def _appointment_events(
    row: _Row, mapping: DynamicsMapping, deleted: bool
) -> list[NormalisedEvent]:
    account = row.account("regardingobjectid")
    if account is None or deleted:
        return []
    return [
        Interaction(
            account=account,
            at=row.at("scheduledstart", "createdon"),
            channel="meeting",
            # Nothing on an appointment says who asked for the meeting.
            direction="ours",
            source_id=row.record.id,
        )
    ]


def _incident_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    account = row.account("customerid")
    if account is None or deleted:
        return []
    return [
        Ticket(
            account=account,
            at=row.at("createdon"),
            ticket=row.record.id,
            priority=mapping.incident_priority(row.record.attributes.get("prioritycode")),
        )
    ]


_MAPPERS: Final[Mapping[str, Callable[[_Row, DynamicsMapping, bool], list[NormalisedEvent]]]] = {
    "account": _account_events,
    "contact": _contact_events,
    "email": _activity_events,
    "phonecall": _activity_events,
    "appointment": _appointment_events,
    "incident": _incident_events,
}

# The tables rows are understood for; deliveries for others are acknowledged and ignored.
MAPPED_ENTITIES: Final = frozenset(_MAPPERS)
# Tables the service itself writes (health columns on account, alert tasks): their deliveries
# may be echoes of our own changes.
ECHO_ENTITIES: Final = frozenset({"account", "task"})


def to_normalised(
    record: DynamicsRecord,
    mapping: DynamicsMapping = DEFAULT_MAPPING,
    *,
    received_at: datetime | None = None,
    message: str = "Update",
) -> list[NormalisedEvent]:
    """The normalised events one row means; none for other tables.

    Times come from the row (its own date columns, then modifiedon, then createdon);
    `received_at` is the fallback. For `message="Delete"` it comes first instead (pass the
    context's `operation_created_on`): an image's dates are from before the delete.
    PayloadError names the row and column when a value is not of the column's type.
    """
    mapper = _MAPPERS.get(record.entity)
    if mapper is None:
        return []
    return mapper(_Row(record, received_at), mapping, message == _DELETE)


def made_by(context: ExecutionContext, user_id: str) -> bool:
    """True for an account or task delivery whose change `user_id` (the service's application
    user) made or initiated, so the service can ignore the echo of its own writes."""
    if context.entity not in ECHO_ENTITIES:
        return False
    # The initiating user, not UserId: a step set to run as another user (impersonation) would
    # otherwise make every delivery look like our own.
    wanted = user_id.strip().lower()
    return wanted != "" and wanted == context.initiating_user_id
