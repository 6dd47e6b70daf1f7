"""The sandbox's ASGI app: HubSpot's CRM v3 object and company property routes over `SandboxState`.

Every /crm call goes through one gateway that adds the injected latency, answers forced faults,
checks the bearer token and records the call. The /_sandbox control routes are NOT protected
by the token: the sandbox is a local test tool and never holds real data.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.sandbox.state import (
    ALL_OBJECT_TYPES,
    BATCH_LIMIT,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    ApiError,
    ForcedAnswer,
    JSONObject,
    PropertyValues,
    RecordedRequest,
    SandboxState,
    company_sort_key,
    error_body,
    missing_attributes,
    retry_after_value,
    unknown_object_type,
    validation_error,
)

ANY_OBJECTS = "/crm/v3/objects"
OBJECTS = f"{ANY_OBJECTS}/companies"
PROPERTIES = "/crm/v3/properties/companies"

# Category HubSpot puts on an error answer of each status, for forced faults and router errors.
_CATEGORY_BY_STATUS: dict[int, str] = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
    429: "RATE_LIMITS",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers=headers)


def _forced_body(answer: ForcedAnswer) -> JSONObject:
    if answer.body is not None:
        return answer.body
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Error"
    if answer.status == 429:
        # HubSpot's rate-limit answer carries its own fields next to the usual envelope.
        body = error_body("You have reached your secondly limit.", "RATE_LIMITS")
        body.update({"errorType": "RATE_LIMIT", "policyName": "SECONDLY"})
        return body
    category = _CATEGORY_BY_STATUS.get(answer.status, "INTERNAL_ERROR")
    return error_body(f"{reason} (injected by the sandbox)", category)


class _CrmGateway:
    """Pure ASGI middleware in front of /crm routes: latency, forced faults, auth, recording.

    Plain ASGI rather than BaseHTTPMiddleware because the body is read once here (for the
    record) and replayed to the route, and the answered status is captured from `send`.
    """

    def __init__(self, app: ASGIApp, *, state: SandboxState, access_token: str | None) -> None:
        self.app = app
        self.state = state
        self.access_token = access_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/crm/"):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=_query_dict(scope.get("query_string", b"")),
            json=_maybe_json(body),
            at=self.state.timestamp(),
        )
        faults = self.state.faults
        record.latency_seconds = faults.latency_seconds
        if record.latency_seconds > 0:
            await asyncio.sleep(record.latency_seconds)

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        forced = faults.take(record.method, record.path)
        try:
            if forced is not None:
                record.forced = True
                headers = {"Retry-After": forced.retry_after} if forced.retry_after else None
                response: Response = _json(_forced_body(forced), forced.status, headers)
                await response(scope, receive, capture)
            elif (refusal := self._refusal(scope)) is not None:
                await _error_response(refusal)(scope, receive, capture)
            else:
                await self.app(scope, _replay(body, receive), capture)
        finally:
            # Appended when answered, so a reader never sees a call without its status; a
            # handler that crashed is answered 500 by the server-error layer outside.
            record.status = record.status or 500
            self.state.requests.append(record)

    def _refusal(self, scope: Scope) -> ApiError | None:
        if self.access_token is None:
            return None
        headers = dict(scope.get("headers", []))
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 and "
                "private app access tokens.",
            )
        if not hmac.compare_digest(token.strip().encode(), self.access_token.encode()):
            return ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "The access token provided is invalid, expired or revoked.",
            )
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body, only a disconnect can come: let the real channel say so.
        return await receive()

    return replay


def _query_dict(raw: bytes) -> dict[str, str]:
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    return query


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python would accept them and then fail to render them.
    raise ValueError(f"{name} is not valid JSON")


def _loads(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=_reject_constant)


def _maybe_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return _loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def _error_response(error: ApiError) -> JSONResponse:
    return _json(error.body(), error.status, error.headers or None)


async def _api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc)


async def _http_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    category = _CATEGORY_BY_STATUS.get(exc.status_code, "INTERNAL_ERROR")
    message = "resource not found" if exc.status_code == 404 else str(exc.detail)
    return _json(error_body(message, category), exc.status_code, dict(exc.headers or {}))


# --- request parsing -------------------------------------------------------------------------


async def _json_object(request: Request) -> JSONObject:
    """The body as a JSON object, or HubSpot's 400 for anything else."""
    raw = await request.body()
    try:
        body = _loads(raw)
    except json.JSONDecodeError as exc:
        raise validation_error(
            f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # not UTF-8, or a NaN/Infinity constant
        raise validation_error(f"Invalid input JSON: {exc}") from None
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON on line 1, column 1: expected an object.")
    return body


def _properties_field(body: JSONObject, type_name: str) -> dict[str, Any]:
    if "properties" not in body:
        raise missing_attributes(type_name, ["properties"])
    properties = body["properties"]
    if not isinstance(properties, dict):
        raise validation_error("Invalid input JSON: 'properties' must be an object.")
    return properties


def _inputs(body: JSONObject, type_name: str) -> list[JSONObject]:
    if "inputs" not in body:
        raise missing_attributes(type_name, ["inputs"])
    inputs = body["inputs"]
    if not isinstance(inputs, list) or not all(isinstance(item, dict) for item in inputs):
        raise validation_error("Invalid input JSON: 'inputs' must be a list of objects.")
    if len(inputs) > BATCH_LIMIT:
        raise validation_error(
            f"Too many inputs: {len(inputs)}. A batch takes at most {BATCH_LIMIT} inputs."
        )
    return inputs


def _input_id(item: JSONObject) -> str:
    value = item.get("id")
    # HubSpot ids are strings on the wire but it accepts JSON numbers too.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise missing_attributes("SimplePublicObjectId", ["id"])
    return value


def _unique_ids(ids: list[str]) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=company_sort_key)
    if duplicates:
        raise validation_error(
            f"Duplicate IDs found in batch input: [{', '.join(duplicates)}]. IDs must be unique"
        )


def _query_list(request: Request, key: str) -> list[str] | None:
    """A list parameter: repeated, comma-separated, or both, as HubSpot accepts it."""
    values = request.query_params.getlist(key)
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _query_properties(request: Request) -> list[str] | None:
    return _query_list(request, "properties")


def _query_associations(request: Request) -> list[str]:
    return _query_list(request, "associations") or []


def _object_type(request: Request) -> str:
    object_type: str = request.path_params["object_type"]
    if object_type not in ALL_OBJECT_TYPES:
        raise unknown_object_type(object_type)
    return object_type


def _body_properties(body: JSONObject) -> list[str] | None:
    names = body.get("properties")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise validation_error("Invalid input JSON: 'properties' must be a list of names.")
    return names


def _archived(request: Request) -> bool:
    value = request.query_params.get("archived", "false").lower()
    if value not in {"true", "false"}:
        raise validation_error(f"Invalid value '{value}' for 'archived': expected true or false.")
    return value == "true"


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return LIST_LIMIT_DEFAULT
    if not raw.isdigit() or int(raw) < 1:
        raise validation_error(f"Invalid value '{raw}' for 'limit': expected a positive integer.")
    # HubSpot caps the page size rather than refusing a larger one.
    return min(int(raw), LIST_LIMIT_MAX)


def _not_found_error(ids: list[str]) -> JSONObject:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some COMPANY objects, they may be deleted or not exist. "
        "Check that ids are valid.",
        "context": {"ids": ids},
    }


def _batch_answer(
    results: list[JSONObject], missing: list[str], started_at: str, completed_at: str
) -> Response:
    body: JSONObject = {"status": "COMPLETE", "results": results}
    if missing:
        body["numErrors"] = 1
        body["errors"] = [_not_found_error(missing)]
    body["startedAt"] = started_at
    body["completedAt"] = completed_at
    return _json(body, 207 if missing else 200)


# --- the routes ------------------------------------------------------------------------------


class _Routes:
    """Route handlers over one state; each is one HubSpot operation."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # any object type (companies, contacts, emails, calls, meetings, notes, tickets)

    async def list_objects(self, request: Request) -> Response:
        object_type = _object_type(request)
        limit = _limit(request)
        properties = _query_properties(request)
        associations = _query_associations(request)
        for to_type in associations:
            # Checked up front: HubSpot refuses the call even when the page would be empty.
            if to_type not in ALL_OBJECT_TYPES:
                raise unknown_object_type(to_type)
        if _archived(request):
            # The sandbox never archives anything.
            return _json({"results": []})
        ids = self.state.ordered_ids(object_type)
        after = request.query_params.get("after")
        if after is not None:
            if not after.isdigit():
                raise validation_error(f"Invalid paging cursor '{after}' for 'after'.")
            ids = [i for i in ids if company_sort_key(i) >= company_sort_key(after)]
        page, rest = ids[:limit], ids[limit:]
        body: JSONObject = {
            "results": [self.state.render(object_type, i, properties, associations) for i in page],
        }
        if rest:
            query = dict(request.query_params)
            query["after"] = rest[0]
            link = f"{request.url.replace(query=urlencode(query))}"
            body["paging"] = {"next": {"after": rest[0], "link": link}}
        return _json(body)

    async def get_object(self, request: Request) -> Response:
        object_type = _object_type(request)
        _archived(request)
        object_id = request.path_params["object_id"]
        rendered = self.state.render(
            object_type, object_id, _query_properties(request), _query_associations(request)
        )
        return _json(rendered)

    # companies

    async def create_company(self, request: Request) -> Response:
        body = await _json_object(request)
        properties = _properties_field(body, "SimplePublicObjectInputForCreate")
        company_id = self.state.create_company(properties)
        return _json(self.state.render_company(company_id, list(properties)), 201)

    async def update_company(self, request: Request) -> Response:
        company_id = request.path_params["company_id"]
        self.state.company(company_id)
        body = await _json_object(request)
        properties = _properties_field(body, "SimplePublicObjectInput")
        self.state.update_company(company_id, self.state.validate_values(properties))
        return _json(self.state.render_company(company_id, list(properties)))

    async def batch_read(self, request: Request) -> Response:
        started_at = self.state.timestamp()
        body = await _json_object(request)
        inputs = _inputs(body, "BatchReadInputSimplePublicObjectId")
        properties = _body_properties(body) or []
        ids = [_input_id(item) for item in inputs]
        found = [i for i in dict.fromkeys(ids) if i in self.state.companies]
        missing = [i for i in dict.fromkeys(ids) if i not in self.state.companies]
        results = [self.state.render_company(i, properties or None) for i in found]
        return _batch_answer(results, missing, started_at, self.state.timestamp())

    async def batch_update(self, request: Request) -> Response:
        started_at = self.state.timestamp()
        body = await _json_object(request)
        inputs = _inputs(body, "BatchInputSimplePublicObjectBatchInput")
        updates: list[tuple[str, dict[str, Any]]] = []
        for item in inputs:
            properties = item.get("properties")
            if not isinstance(properties, dict):
                raise missing_attributes("SimplePublicObjectBatchInput", ["properties"])
            updates.append((_input_id(item), properties))
        _unique_ids([company_id for company_id, _ in updates])
        # Validate every input before writing any: a batch with a bad value changes nothing.
        validated: list[tuple[str, PropertyValues]] = [
            (company_id, self.state.validate_values(properties))
            for company_id, properties in updates
        ]
        results: list[JSONObject] = []
        missing: list[str] = []
        for company_id, values in validated:
            if company_id not in self.state.companies:
                missing.append(company_id)
                continue
            self.state.update_company(company_id, values)
            results.append(self.state.render_company(company_id, list(values)))
        return _batch_answer(results, missing, started_at, self.state.timestamp())

    # property definitions and groups

    async def list_properties(self, _request: Request) -> Response:
        return _json({"results": list(self.state.properties.values())})

    async def get_property(self, request: Request) -> Response:
        return _json(self.state.property_definition(request.path_params["name"]))

    async def create_property(self, request: Request) -> Response:
        return _json(self.state.create_property(await _json_object(request)), 201)

    async def update_property(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.state.property_definition(name)
        return _json(self.state.update_property(name, await _json_object(request)))

    async def list_groups(self, _request: Request) -> Response:
        return _json({"results": list(self.state.groups.values())})

    async def get_group(self, request: Request) -> Response:
        name = request.path_params["name"]
        group = self.state.groups.get(name)
        if group is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Property group {name} does not exist.")
        return _json(group)

    async def create_group(self, request: Request) -> Response:
        return _json(self.state.create_group(await _json_object(request)), 201)

    # control surface (not HubSpot)

    async def read_requests(self, request: Request) -> Response:
        raw = request.query_params.get("since", "0")
        if not raw.isdigit():
            raise validation_error(f"Invalid value '{raw}' for 'since': expected an index.")
        since = int(raw)
        calls = self.state.requests
        return _json(
            {
                "total": len(calls),
                "next": len(calls),
                "requests": [
                    {"index": index, **call.to_json()}
                    for index, call in enumerate(calls[since:], start=since)
                ],
            }
        )

    async def clear_requests(self, _request: Request) -> Response:
        self.state.requests.clear()
        return Response(status_code=204)

    async def read_faults(self, _request: Request) -> Response:
        return _json(self.state.faults.to_json())

    async def set_faults(self, request: Request) -> Response:
        body = await _json_object(request)
        faults = self.state.faults
        latency = body.get("latency_seconds")
        if latency is not None:
            if not isinstance(latency, int | float) or isinstance(latency, bool) or latency < 0:
                raise validation_error("'latency_seconds' must be a number of seconds >= 0.")
            faults.latency_seconds = float(latency)
        if "status" in body:
            status, count, options = _forced_spec(body)
            if body.get("always") is True:
                faults.fail_always(status, **options)
            else:
                faults.fail_next(count, status, **options)
        return _json(faults.to_json())

    async def clear_faults(self, _request: Request) -> Response:
        self.state.faults.clear()
        return _json(self.state.faults.to_json())

    async def reset(self, _request: Request) -> Response:
        self.state.reset()
        return Response(status_code=204)


def _forced_spec(body: JSONObject) -> tuple[int, int, dict[str, Any]]:
    status = body["status"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise validation_error("'status' must be an HTTP status code.")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise validation_error("'count' must be a positive integer.")
    retry_after = body.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float | str)
    ):
        raise validation_error("'retry_after' must be seconds or an HTTP-date.")
    options: dict[str, Any] = {"retry_after": retry_after_value(retry_after)}
    for key in ("path_contains", "method"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise validation_error(f"'{key}' must be a string.")
        options[key] = value
    forced_body = body.get("body")
    if forced_body is not None and not isinstance(forced_body, dict):
        raise validation_error("'body' must be a JSON object.")
    options["body"] = forced_body
    return status, count, options


def create_sandbox_app(
    state: SandboxState | None = None, *, access_token: str | None = None
) -> Starlette:
    """A HubSpot-compatible CRM over `state` (a fresh one when None).

    With `access_token`, /crm routes need `Authorization: Bearer <access_token>`.
    The state is reachable as `app.state.sandbox` for in-process tests and tools.
    """
    state = state if state is not None else SandboxState()
    routes = _Routes(state)
    app = Starlette(
        routes=[
            Route(OBJECTS, routes.create_company, methods=["POST"]),
            Route(f"{OBJECTS}/batch/read", routes.batch_read, methods=["POST"]),
            Route(f"{OBJECTS}/batch/update", routes.batch_update, methods=["POST"]),
            Route(f"{OBJECTS}/{{company_id}}", routes.update_company, methods=["PATCH"]),
            # Reads serve every stored type; writes exist for companies only.
            Route(f"{ANY_OBJECTS}/{{object_type}}", routes.list_objects, methods=["GET"]),
            Route(
                f"{ANY_OBJECTS}/{{object_type}}/{{object_id}}", routes.get_object, methods=["GET"]
            ),
            Route(PROPERTIES, routes.list_properties, methods=["GET"]),
            Route(PROPERTIES, routes.create_property, methods=["POST"]),
            # Groups before {name}: "groups" is not a property name.
            Route(f"{PROPERTIES}/groups", routes.list_groups, methods=["GET"]),
            Route(f"{PROPERTIES}/groups", routes.create_group, methods=["POST"]),
            Route(f"{PROPERTIES}/groups/{{name}}", routes.get_group, methods=["GET"]),
            Route(f"{PROPERTIES}/{{name}}", routes.get_property, methods=["GET"]),
            Route(f"{PROPERTIES}/{{name}}", routes.update_property, methods=["PATCH"]),
            Route("/_sandbox/requests", routes.read_requests, methods=["GET"]),
            Route("/_sandbox/requests", routes.clear_requests, methods=["DELETE"]),
            Route("/_sandbox/faults", routes.read_faults, methods=["GET"]),
            Route("/_sandbox/faults", routes.set_faults, methods=["POST"]),
            Route("/_sandbox/faults", routes.clear_faults, methods=["DELETE"]),
            Route("/_sandbox/reset", routes.reset, methods=["POST"]),
        ],
        middleware=[Middleware(_CrmGateway, state=state, access_token=access_token)],
        exception_handlers={ApiError: _api_error_handler, HTTPException: _http_error_handler},
    )
    app.state.sandbox = state
    return app
