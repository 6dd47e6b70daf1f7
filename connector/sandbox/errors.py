"""The sandbox's one exception and HubSpot's error envelope.

ApiError            raised by any state operation that HubSpot would refuse; carries the HTTP
                    status, category, message and extras, and never leaves the sandbox: the app
                    turns it into HubSpot's error JSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

JSONObject = dict[str, Any]


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


def unknown_object_type(object_type: str) -> ApiError:
    """HubSpot's answer to an object type (in a path or `associations=`) it does not know."""
    return ApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")
