"""Verify and parse Dataverse webhook deliveries into execution contexts and records
(connector.dynamics.records reads Web API records into the same shape and maps both to
normalised events).

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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from connector import bounds
from connector.errors import PayloadError, SignatureError
from connector.jsonparse import check_limits

__all__ = [
    "DELETE_MESSAGE",
    "LOGICAL_NAME",
    "SIZE_EXCEEDED_HEADER",
    "WEBHOOK_KEY_PARAMETER",
    "AttributeValue",
    "DynamicsRecord",
    "ExecutionContext",
    "Lookup",
    "VerificationMode",
    "guid",
    "parse_execution_context",
    "parse_wcf_date",
    "shown",
    "verify_request",
]

# Sent (with any value) only when the whole HTTP payload is over 256 KB.
SIZE_EXCEEDED_HEADER: Final = "x-ms-dynamics-msg-size-exceeded"
# The WebhookKey option always sends its value as `?code=...` (the Azure Functions convention).
WEBHOOK_KEY_PARAMETER: Final = "code"

VerificationMode = Literal["header", "webhook_key", "query_string"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
LOGICAL_NAME = re.compile(r"[a-z][a-z0-9_]*")
# WCF (DataContractJsonSerializer) dates: milliseconds since the Unix epoch in UTC, optionally
# followed by the sender's UTC offset, which says nothing about the instant itself.
_WCF_DATE = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")
DELETE_MESSAGE: Final = "Delete"
# Messages whose documented InputParameters carry a Target.
_TARGET_MESSAGES: Final = frozenset({"Create", "Update", DELETE_MESSAGE})


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

    `target_columns` are the columns the Target entity carries (none for a Delete): what the
    operation set, where an image carries columns whether they changed or not.
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
    target_columns: frozenset[str] = frozenset()

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


def guid(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _GUID.fullmatch(value.strip()):
        raise PayloadError(f"{where} is not a GUID: {shown(value)}")
    return value.strip().lower()


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _required(document: Mapping[str, Any], name: str) -> Any:
    if name not in document:
        raise PayloadError(f"{name} is missing")
    return document[name]


def _text(document: Mapping[str, Any], name: str) -> str:
    value = _required(document, name)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{name} is not a non-empty string: {shown(value)}")
    return value.strip()


def _integer(document: Mapping[str, Any], name: str) -> int:
    value = _required(document, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{name} is not an integer: {shown(value)}")
    # Dataverse's Stage and Depth are 32-bit; the stage is part of the dedup key.
    if not 0 <= value <= bounds.INT32_MAX:
        raise PayloadError(f"{name} is out of range: {shown(value)}")
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
        raise PayloadError(f"{where} is not a /Date(milliseconds)/ value: {shown(value)}")
    try:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"{where} is out of range: {shown(value)}") from None


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
            raise PayloadError(f"{where}.Value is not a number: {shown(number)}")
        return True, int(number) if kind == "OptionSetValue" else float(number)
    return False, None


def _entity_reference(value: Mapping[str, Any], where: str) -> Lookup:
    entity = value.get("LogicalName")
    if not isinstance(entity, str) or not LOGICAL_NAME.fullmatch(entity):
        raise PayloadError(f"{where}.LogicalName is not a table logical name: {shown(entity)}")
    return Lookup(entity=entity, id=guid(value.get("Id"), f"{where}.Id"))


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
            f"{where}.LogicalName is {shown(logical_name)}, not the primary table {entity!r}"
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
    if not LOGICAL_NAME.fullmatch(entity):
        raise PayloadError(f"PrimaryEntityName is not a table logical name: {entity!r}")
    record_id = guid(_required(document, "PrimaryEntityId"), "PrimaryEntityId")
    request_id = document.get("RequestId")
    correlation_id = guid(_required(document, "CorrelationId"), "CorrelationId")
    operation_id = guid(_required(document, "OperationId"), "OperationId")
    stage = _integer(document, "Stage")
    depth = _integer(document, "Depth")
    user_id = guid(_required(document, "UserId"), "UserId")
    initiating_user_id = guid(_required(document, "InitiatingUserId"), "InitiatingUserId")
    organization_id = guid(_required(document, "OrganizationId"), "OrganizationId")
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
    if message == DELETE_MESSAGE:
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
        request_id=None if request_id is None else guid(request_id, "RequestId"),
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
        target_columns=frozenset(target or ()),
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
