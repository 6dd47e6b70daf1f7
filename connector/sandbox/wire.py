"""What every sandbox route shares: HubSpot's JSON answers and error handlers, and reading a
request body or flag the way HubSpot does."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connector.sandbox.errors import ApiError, JSONObject, error_body, validation_error

# Category HubSpot puts on an error answer of each status, for forced faults and router errors.
CATEGORY_BY_STATUS: dict[int, str] = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
    429: "RATE_LIMITS",
}


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers=headers)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python would accept them and then fail to render them.
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=_reject_constant)


def error_response(error: ApiError) -> JSONResponse:
    return json_response(error.body(), error.status, error.headers or None)


async def api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def http_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    category = CATEGORY_BY_STATUS.get(exc.status_code, "INTERNAL_ERROR")
    message = "resource not found" if exc.status_code == 404 else str(exc.detail)
    return json_response(error_body(message, category), exc.status_code, dict(exc.headers or {}))


async def json_object(request: Request) -> JSONObject:
    """The body as a JSON object, or HubSpot's 400 for anything else."""
    raw = await request.body()
    try:
        body = loads(raw)
    except json.JSONDecodeError as exc:
        raise validation_error(
            f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # not UTF-8, or a NaN/Infinity constant
        raise validation_error(f"Invalid input JSON: {exc}") from None
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON on line 1, column 1: expected an object.")
    return body


def archived(request: Request) -> bool:
    value = request.query_params.get("archived", "false").lower()
    if value not in {"true", "false"}:
        raise validation_error(f"Invalid value '{value}' for 'archived': expected true or false.")
    return value == "true"
