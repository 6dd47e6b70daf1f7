"""The sandbox's in-memory CRM: companies, property definitions and groups, recorded calls, faults.

Everything HubSpot would validate is validated here (pure Python, no HTTP); `app.py` only frames it.

    ApiError            raised by any state operation that HubSpot would refuse; carries the HTTP
                        status, category, message and extras, and never leaves the sandbox: the app
                        turns it into HubSpot's error JSON.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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
    # Owner ids come from the owners API, not from the definition: HubSpot marks these external.
    ("hubspot_owner_id", "Company owner", "enumeration", "select", [], False, True),
)


def _seed_property(
    spec: tuple[str, str, str, str, list[JSONObject], bool, bool], at: str
) -> JSONObject:
    name, label, type_, field_type, options, read_only, external = spec
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "description": "",
        "groupName": "companyinformation",
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


def format_timestamp(moment: datetime) -> str:
    """HubSpot's timestamp form: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the state -------------------------------------------------------------------------------


class SandboxState:
    """The sandbox CRM's data. Single event loop, so no locking."""

    def __init__(
        self, *, clock: Callable[[], datetime] = _utc_now, portal_id: int = 1000001
    ) -> None:
        self.clock = clock
        self.portal_id = portal_id
        self.companies: dict[str, PropertyValues] = {}
        self.properties: dict[str, JSONObject] = {}
        self.groups: dict[str, JSONObject] = {}
        self.requests: list[RecordedRequest] = []
        self.faults = FaultPlan()
        self._next_id = 1
        self._last_moment: datetime | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a fresh portal: seeded definitions, no companies, no calls, no faults.

        Containers are cleared in place so references handed out earlier stay valid.
        """
        at = self.timestamp()
        self.companies.clear()
        self.requests.clear()
        self.faults.clear()
        self.groups.clear()
        self.groups.update(
            {
                name: {"name": name, "label": label, "displayOrder": order, "archived": False}
                for name, label, order in _SEED_GROUPS
            }
        )
        self.properties.clear()
        self.properties.update({spec[0]: _seed_property(spec, at) for spec in _SEED_PROPERTIES})
        self._next_id = 1

    def timestamp(self) -> str:
        """Now, strictly later than the previous timestamp, so every change moves `updatedAt`."""
        moment = self.clock().astimezone(UTC)
        if self._last_moment is not None and moment <= self._last_moment:
            moment = self._last_moment + timedelta(milliseconds=1)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        self._last_moment = moment
        return format_timestamp(moment)

    # --- companies ---------------------------------------------------------------------------

    def add_company(self, properties: Mapping[str, Any]) -> str:
        """Create a company directly (test and demo seeding); returns its new id.

        Values are validated like an API create; ValueError names what HubSpot would refuse.
        """
        try:
            return self.create_company(properties)
        except ApiError as error:
            raise ValueError(error.message) from error

    def create_company(self, properties: Mapping[str, Any]) -> str:
        values = self.validate_values(properties)
        company_id = str(self._next_id)
        self._next_id += 1
        at = self.timestamp()
        record: PropertyValues = {name: value for name, value in values.items() if value}
        record.update({"hs_object_id": company_id, "hs_lastmodifieddate": at})
        record.setdefault("createdate", at)
        self.companies[company_id] = record
        return company_id

    def company(self, company_id: str) -> PropertyValues:
        try:
            return self.companies[company_id]
        except KeyError:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found") from None

    def update_company(self, company_id: str, values: Mapping[str, str | None]) -> bool:
        """Apply already-validated values; True when something changed (and the clock moved)."""
        record = self.company(company_id)
        changed = False
        for name, value in values.items():
            if record.get(name) != value:
                changed = True
                if value is None:
                    record.pop(name, None)
                else:
                    record[name] = value
        if changed:
            record["hs_lastmodifieddate"] = self.timestamp()
        return changed

    def render_company(
        self, company_id: str, properties: Iterable[str] | None = None
    ) -> JSONObject:
        """A company as HubSpot's SimplePublicObject, with the asked-for (or default) properties.

        Unknown names are skipped, as HubSpot does for reads; known but unset ones are null.
        """
        record = self.company(company_id)
        wanted = DEFAULT_PROPERTIES if properties is None else properties
        names = sorted(
            {name for name in wanted if name in self.properties} | set(SYSTEM_PROPERTIES)
        )
        return {
            "id": company_id,
            "properties": {name: record.get(name) for name in names},
            "createdAt": record.get("createdate"),
            "updatedAt": record.get("hs_lastmodifieddate"),
            "archived": False,
        }

    def ordered_company_ids(self) -> list[str]:
        return sorted(self.companies, key=company_sort_key)

    # --- property values ---------------------------------------------------------------------

    def validate_values(self, values: Mapping[str, Any]) -> PropertyValues:
        """Check values against the definitions as HubSpot does; empty string or null clears.

        All problems are reported at once in HubSpot's "Property values were not valid" error.
        """
        problems: list[JSONObject] = []
        clean: PropertyValues = {}
        for name, raw in values.items():
            problem, value = self._check_value(name, raw)
            if problem is not None:
                problems.append(problem)
            else:
                clean[name] = value
        if problems:
            raise self._property_values_error(problems)
        return clean

    def _check_value(self, name: str, raw: Any) -> tuple[JSONObject | None, str | None]:
        definition = self.properties.get(name)
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
        return updated

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
        return group


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
                "hidden": _optional(item, "hidden", bool, False),
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
