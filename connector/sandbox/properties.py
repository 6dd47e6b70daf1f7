"""HubSpot's property rules in the sandbox: checking values against definitions, and checking
and building property definitions and groups. Pure functions over the state's data."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from connector.sandbox.errors import (
    ApiError,
    JSONObject,
    missing_attributes,
    validation_error,
)

PropertyValues = dict[str, str | None]

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


def validate_values(
    values: Mapping[str, Any], definitions: Mapping[str, JSONObject], *, portal_id: int
) -> PropertyValues:
    """Check values against one type's definitions as HubSpot does; "" or null clears.

    All problems are reported at once in HubSpot's "Property values were not valid" error.
    """
    problems: list[JSONObject] = []
    clean: PropertyValues = {}
    for name, raw in values.items():
        problem_, value = _check_value(name, raw, definitions, portal_id)
        if problem_ is not None:
            problems.append(problem_)
        else:
            clean[name] = value
    if problems:
        raise property_values_error(problems)
    return clean


def _check_value(
    name: str, raw: Any, definitions: Mapping[str, JSONObject], portal_id: int
) -> tuple[JSONObject | None, str | None]:
    definition = definitions.get(name)
    if definition is None:
        return problem(
            name, raw, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist', portal_id
        ), None
    if definition["modificationMetadata"].get("readOnlyValue"):
        message = f"{name} is a read only property; its value cannot be set."
        return problem(name, raw, "READ_ONLY_VALUE", message, portal_id), None
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
        return problem(name, raw, "INVALID_VALUE", message, portal_id), None
    type_problem = _type_problem(definition, value)
    if type_problem is not None:
        code, message = type_problem
        return problem(name, value, code, message, portal_id), None
    return None, value


def problem(name: str, value: Any, code: str, message: str, portal_id: int) -> JSONObject:
    """One entry of HubSpot's property validation results."""
    return {
        "isValid": False,
        "message": message,
        "error": code,
        "name": name,
        "localizedErrorMessage": message,
        "propertyValue": value if isinstance(value, str) else json.dumps(value),
        "portalId": portal_id,
    }


def property_values_error(problems: list[JSONObject]) -> ApiError:
    """HubSpot's "Property values were not valid" answer for `problems`."""
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


def new_property(
    body: Mapping[str, Any],
    *,
    taken: Collection[str],
    groups: Collection[str],
    timestamp: Callable[[], str],
) -> JSONObject:
    """A company property definition created from `body`, checked as HubSpot checks it."""
    required = ("name", "label", "type", "fieldType", "groupName")
    missing = [key for key in required if not isinstance(body.get(key), str) or not body[key]]
    if missing:
        raise missing_attributes("PropertyCreate", missing)
    name: str = body["name"]
    if name in taken:
        raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
    if not _NAME.match(name):
        raise validation_error(
            f"Property name '{name}' is not valid: use lowercase letters, digits and "
            "underscores, starting with a letter."
        )
    require_group(body["groupName"], groups)
    options = _check_definition(body["type"], body["fieldType"], body.get("options"))
    at = timestamp()
    return {
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


def updated_property(
    definition: JSONObject,
    body: Mapping[str, Any],
    *,
    groups: Collection[str],
    timestamp: Callable[[], str],
) -> JSONObject:
    """`definition` with the changes of `body`, checked as HubSpot checks them."""
    name = definition["name"]
    if definition["modificationMetadata"].get("readOnlyDefinition"):
        raise validation_error(f"Property {name} is HubSpot defined; its definition is read-only.")
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
    require_group(updated["groupName"], groups)
    options = body.get("options", definition["options"])
    updated["options"] = _check_definition(updated["type"], updated["fieldType"], options)
    updated["updatedAt"] = timestamp()
    return updated


def require_group(group_name: str, groups: Collection[str]) -> None:
    """HubSpot's 400 when a definition names a property group that does not exist."""
    if group_name not in groups:
        raise validation_error(f"Property group {group_name} does not exist.")


def new_group(body: Mapping[str, Any], *, taken: Collection[str]) -> JSONObject:
    """A property group created from `body`, checked as HubSpot checks it."""
    missing = [
        key for key in ("name", "label") if not isinstance(body.get(key), str) or not body[key]
    ]
    if missing:
        raise missing_attributes("PropertyGroupCreate", missing)
    name: str = body["name"]
    if name in taken:
        raise ApiError(
            409, "OBJECT_ALREADY_EXISTS", f"Property group named '{name}' already exists."
        )
    if not _NAME.match(name):
        raise validation_error(
            f"Property group name '{name}' is not valid: use lowercase letters, digits and "
            "underscores, starting with a letter."
        )
    return {
        "name": name,
        "label": body["label"],
        "displayOrder": _optional(body, "displayOrder", int, -1),
        "archived": False,
    }


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
