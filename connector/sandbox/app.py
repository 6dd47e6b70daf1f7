"""The sandbox's ASGI app: HubSpot's CRM v3/v4 and OAuth v1 routes over `SandboxState`.

Every /crm call goes through one gateway that adds the injected latency, answers forced faults,
checks the bearer token (the fixed one or an OAuth token it issued, refusing expired ones),
counts the call against the rate limits (adding the X-HubSpot-RateLimit-* headers, answering 429
when enforced) and records it. The /_sandbox control routes are NOT protected by the token: the
sandbox is a local test tool and never holds real data. The portal's owners
(`GET /crm/v3/owners`, `/crm/v3/owners/{ownerId}`) are fixed: `state.SEEDED_OWNERS`.

Control routes: /_sandbox/requests, /faults, /reset (as before), /limits (window_max,
interval_ms, daily, enforce, latency_ms), /oauth (client_id, client_secret,
access_token_ttl_seconds, expire_all), /webhooks (+ /webhooks/drain) and /objects/{type}.
`GET /` describes the sandbox: the paths it answers and the records it holds now.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.sandbox.catalog import SINGULAR_NAMES, object_type_name
from connector.sandbox.limits import RateLimitDecision, rate_limit_body
from connector.sandbox.oauth import OAuthError, expired_message, expiry_time
from connector.sandbox.outbound import (
    DEFAULT_BATCH_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_BASE_SECONDS,
    Subscription,
)
from connector.sandbox.state import (
    ALL_OBJECT_TYPES,
    BATCH_LIMIT,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    OBJECT_TYPE_SPECS,
    SEEDED_OWNERS,
    ApiError,
    ForcedAnswer,
    JSONObject,
    PropertyValues,
    RecordedRequest,
    SandboxState,
    company_sort_key,
    error_body,
    format_timestamp,
    missing_attributes,
    owner_json,
    retry_after_value,
    unknown_object_type,
    validation_error,
)

ANY_OBJECTS = "/crm/v3/objects"
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
        token = _bearer_token(scope)
        limit_key = _limit_key(token)
        # Every /crm answer carries the rate-limit headers, whoever produced it.
        limit_headers: list[tuple[bytes, bytes]] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *limit_headers]}
            await send(message)

        def use_headers(decision: RateLimitDecision) -> None:
            limit_headers[:] = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in decision.headers.items()
            ]

        forced = faults.take(record.method, record.path)
        try:
            if forced is not None:
                record.forced = True
                use_headers(self.state.limits.check(limit_key, count=False))
                headers = {"Retry-After": forced.retry_after} if forced.retry_after else None
                response: Response = _json(_forced_body(forced), forced.status, headers)
                await response(scope, receive, capture)
            elif (refusal := self._refusal(token)) is not None:
                use_headers(self.state.limits.check(limit_key, count=False))
                await _error_response(refusal)(scope, receive, capture)
            else:
                decision = self.state.limits.check(limit_key)
                use_headers(decision)
                if decision.policy is not None:
                    limited = _json(rate_limit_body(decision.policy), 429)
                    await limited(scope, receive, capture)
                else:
                    await self.app(scope, _replay(body, receive), capture)
        finally:
            # Appended when answered, so a reader never sees a call without its status; a
            # handler that crashed is answered 500 by the server-error layer outside.
            record.status = record.status or 500
            self.state.requests.append(record)

    def _refusal(self, token: str | None) -> ApiError | None:
        issued = self.state.oauth.lookup(token) if token else None
        if issued is not None:
            # An OAuth token the sandbox issued is checked whatever `access_token` says.
            overdue = self.state.oauth.expired_for(issued)
            if overdue is None:
                return None
            return ApiError(
                401,
                "EXPIRED_AUTHENTICATION",
                expired_message(overdue),
                context={"expire time": [format_timestamp(expiry_time(issued))]},
            )
        if self.access_token is None:
            return None
        if not token:
            return ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 and "
                "private app access tokens.",
            )
        if not hmac.compare_digest(token.encode(), self.access_token.encode()):
            return ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "The access token provided is invalid, expired or revoked.",
            )
        return None


def _bearer_token(scope: Scope) -> str | None:
    headers = dict(scope.get("headers", []))
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _limit_key(token: str | None) -> str:
    # Counters are per token, but the control API shows keys: a digest, never the token.
    if token is None:
        return "anonymous"
    return hashlib.sha256(token.encode()).hexdigest()[:12]


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


def _cleared(values: PropertyValues) -> set[str]:
    """The names a write cleared (validated "" or null), which its answer echoes as ""."""
    return {name for name, value in values.items() if value is None}


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


def _type_label(object_type: str) -> str:
    """HubSpot's upper-case object name in messages: COMPANY, CONTACT, MEETING_EVENT."""
    spec = OBJECT_TYPE_SPECS.get(object_type)
    return ("company" if spec is None else spec.association_name).upper()


def _not_found_error(ids: list[str], object_type: str) -> JSONObject:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": f"Could not get some {_type_label(object_type)} objects, they may be "
        "deleted or not exist. Check that ids are valid.",
        "context": {"ids": ids},
    }


def _batch_answer(
    results: list[JSONObject],
    missing: list[str],
    started_at: str,
    completed_at: str,
    object_type: str = "companies",
) -> Response:
    body: JSONObject = {"status": "COMPLETE", "results": results}
    if missing:
        body["numErrors"] = 1
        body["errors"] = [_not_found_error(missing, object_type)]
    body["startedAt"] = started_at
    body["completedAt"] = completed_at
    return _json(body, 207 if missing else 200)


def _v4_object_type(raw: str) -> str:
    # v4 paths take plural or singular names or object type ids ("0-2").
    name = object_type_name(raw)
    if name is None:
        raise unknown_object_type(raw)
    return name


def _no_associations_error(from_type: str, from_id: str, to_type: str) -> JSONObject:
    from_name, to_name = SINGULAR_NAMES[from_type], SINGULAR_NAMES[to_type]
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {to_name} is associated with {from_name} {from_id}.",
        "context": {
            "fromObjectId": [from_id],
            "fromObjectType": [from_name],
            "toObjectType": [to_name],
        },
    }


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

    # writes and batch reads, any object type

    async def create_object(self, request: Request) -> Response:
        object_type = _object_type(request)
        body = await _json_object(request)
        properties = _properties_field(body, "SimplePublicObjectInputForCreate")
        associations = body.get("associations")
        if associations is not None and (
            not isinstance(associations, list)
            or not all(isinstance(item, dict) for item in associations)
        ):
            raise validation_error("Invalid input JSON: 'associations' must be a list of objects.")
        object_id = self.state.create_object(object_type, properties, associations)
        cleared = {name for name, value in properties.items() if value is None or value == ""}
        rendered = self.state.render(object_type, object_id, list(properties), cleared=cleared)
        return _json(rendered, 201)

    async def update_object(self, request: Request) -> Response:
        object_type = _object_type(request)
        object_id = request.path_params["object_id"]
        self.state.record(object_type, object_id)
        body = await _json_object(request)
        properties = _properties_field(body, "SimplePublicObjectInput")
        values = self.state.validate_values(properties, object_type=object_type)
        self.state.apply(object_type, object_id, values)
        return _json(
            self.state.render(object_type, object_id, list(properties), cleared=_cleared(values))
        )

    async def batch_read(self, request: Request) -> Response:
        object_type = _object_type(request)
        started_at = self.state.timestamp()
        body = await _json_object(request)
        inputs = _inputs(body, "BatchReadInputSimplePublicObjectId")
        properties = _body_properties(body) or []
        id_property = body.get("idProperty")
        if id_property is not None and (
            not isinstance(id_property, str)
            or id_property not in self.state.definitions[object_type]
        ):
            raise validation_error(
                f"Invalid value for 'idProperty': {id_property!r} is not a property of "
                f"{object_type}."
            )
        found: list[str] = []
        missing: list[str] = []
        for given in dict.fromkeys(_input_id(item) for item in inputs):
            object_id = (
                self.state.find_by_property(object_type, id_property, given)
                if id_property
                else (given if given in self.state.objects[object_type] else None)
            )
            if object_id is None:
                missing.append(given)
            elif object_id not in found:
                found.append(object_id)
        wanted = [*properties, id_property] if id_property and properties else properties
        results = [self.state.render(object_type, i, wanted or None) for i in found]
        return _batch_answer(results, missing, started_at, self.state.timestamp(), object_type)

    async def batch_update(self, request: Request) -> Response:
        object_type = _object_type(request)
        started_at = self.state.timestamp()
        body = await _json_object(request)
        inputs = _inputs(body, "BatchInputSimplePublicObjectBatchInput")
        updates: list[tuple[str, dict[str, Any]]] = []
        for item in inputs:
            properties = item.get("properties")
            if not isinstance(properties, dict):
                raise missing_attributes("SimplePublicObjectBatchInput", ["properties"])
            updates.append((_input_id(item), properties))
        _unique_ids([object_id for object_id, _ in updates])
        # Validate every input before writing any: a batch with a bad value changes nothing.
        validated: list[tuple[str, PropertyValues]] = [
            (object_id, self.state.validate_values(properties, object_type=object_type))
            for object_id, properties in updates
        ]
        records = self.state.objects[object_type]
        results: list[JSONObject] = []
        missing: list[str] = []
        for object_id, values in validated:
            if object_id not in records:
                missing.append(object_id)
                continue
            self.state.apply(object_type, object_id, values)
            results.append(
                self.state.render(object_type, object_id, list(values), cleared=_cleared(values))
            )
        return _batch_answer(results, missing, started_at, self.state.timestamp(), object_type)

    # associations v4

    async def batch_read_associations(self, request: Request) -> Response:
        from_type = _v4_object_type(request.path_params["from_type"])
        to_type = _v4_object_type(request.path_params["to_type"])
        started_at = self.state.timestamp()
        body = await _json_object(request)
        inputs = _inputs(body, "BatchInputPublicFetchAssociationsBatchRequest")
        results: list[JSONObject] = []
        errors: list[JSONObject] = []
        for from_id in dict.fromkeys(_input_id(item) for item in inputs):
            to = self.state.associations_v4(from_type, from_id, to_type)
            if to:
                results.append({"from": {"id": from_id}, "to": to})
            else:
                # HubSpot reports a record without associations (or without a record) as an
                # error of the multi-status answer, one per id, not as an empty `to`.
                errors.append(_no_associations_error(from_type, from_id, to_type))
        answer: JSONObject = {"status": "COMPLETE", "results": results}
        if errors:
            answer["numErrors"] = len(errors)
            answer["errors"] = errors
        answer["startedAt"] = started_at
        answer["completedAt"] = self.state.timestamp()
        return _json(answer, 207 if errors else 200)

    # property definitions and groups

    # owners (read-only in HubSpot too: they are the portal's users)

    async def list_owners(self, request: Request) -> Response:
        if _archived(request):
            return _json({"results": []})
        email = request.query_params.get("email")
        owners = [owner_json(owner_id) for owner_id, *_ in SEEDED_OWNERS]
        return _json(
            {
                "results": [
                    owner
                    for owner in owners
                    if owner is not None and (email is None or owner["email"] == email)
                ]
            }
        )

    async def get_owner(self, request: Request) -> Response:
        owner_id = request.path_params["owner_id"]
        owner = None if _archived(request) else owner_json(owner_id)
        if owner is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Owner {owner_id} does not exist")
        return _json(owner)

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

    # OAuth (HubSpot's v1 endpoints; /oauth/authorize is app.hubspot.com's page in HubSpot)

    async def authorize(self, request: Request) -> Response:
        try:
            location = self.state.oauth.authorize(dict(request.query_params))
        except OAuthError as exc:
            return _json(exc.body(), exc.status)
        # Auto-approved: the sandbox has no login page and no real data to protect.
        return RedirectResponse(location, status_code=302)

    async def token(self, request: Request) -> Response:
        # Parsed by hand: form-encoded like HubSpot's, without needing python-multipart.
        raw = await request.body()
        form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        try:
            return _json(self.state.oauth.token(form))
        except OAuthError as exc:
            return _json(exc.body(), exc.status)

    async def token_metadata(self, request: Request) -> Response:
        oauth = self.state.oauth
        token = request.path_params["token"]
        issued = oauth.lookup(token)
        overdue = oauth.expired_for(issued) if issued is not None else None
        if issued is not None and overdue is not None:
            error = ApiError(
                401,
                "EXPIRED_AUTHENTICATION",
                expired_message(overdue),
                context={"expire time": [format_timestamp(expiry_time(issued))]},
            )
            return _error_response(error)
        try:
            return _json(oauth.metadata(token))
        except OAuthError as exc:
            return _json(error_body(exc.message, "OBJECT_NOT_FOUND"), exc.status)

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

    async def read_limits(self, _request: Request) -> Response:
        return _json(self._limits_json())

    def _limits_json(self) -> JSONObject:
        return {
            **self.state.limits.to_json(),
            "latency_ms": round(self.state.faults.latency_seconds * 1000),
        }

    async def set_limits(self, request: Request) -> Response:
        body = await _json_object(request)
        knobs: dict[str, int] = {}
        for key in ("window_max", "interval_ms", "daily", "latency_ms"):
            value = body.get(key)
            if value is None:
                continue
            minimum = 0 if key in {"daily", "latency_ms"} else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise validation_error(f"'{key}' must be an integer >= {minimum}.")
            knobs[key] = value
        enforce = body.get("enforce")
        if enforce is not None and not isinstance(enforce, bool):
            raise validation_error("'enforce' must be true or false.")
        if "latency_ms" in knobs:
            self.state.faults.latency_seconds = knobs.pop("latency_ms") / 1000
        self.state.limits.configure(
            window_max=knobs.get("window_max"),
            interval_ms=knobs.get("interval_ms"),
            daily=knobs.get("daily"),
            enforce=enforce,
        )
        if body.get("reset_counters") is True:
            self.state.limits.reset_counters()
        return _json(self._limits_json())

    async def clear_limits(self, _request: Request) -> Response:
        self.state.limits.restore_defaults()
        self.state.faults.latency_seconds = 0.0
        return _json(self._limits_json())

    async def read_oauth(self, _request: Request) -> Response:
        return _json(self.state.oauth.to_json())

    async def set_oauth(self, request: Request) -> Response:
        body = await _json_object(request)
        oauth = self.state.oauth
        for key in ("client_id", "client_secret"):
            value = body.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise validation_error(f"'{key}' must be a non-empty string.")
        ttl = body.get("access_token_ttl_seconds")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1):
            raise validation_error("'access_token_ttl_seconds' must be an integer >= 1.")
        oauth.client_id = body.get("client_id") or oauth.client_id
        oauth.client_secret = body.get("client_secret") or oauth.client_secret
        oauth.access_ttl_seconds = ttl or oauth.access_ttl_seconds
        if body.get("expire_all") is True:
            oauth.expire_all()
        return _json(oauth.to_json())

    async def read_webhooks(self, _request: Request) -> Response:
        return _json(self.state.webhooks.to_json())

    async def subscribe_webhooks(self, request: Request) -> Response:
        body = await _json_object(request)
        missing = [
            key
            for key in ("target_url", "client_secret")
            if not isinstance(body.get(key), str) or not body[key]
        ]
        if missing:
            raise missing_attributes("WebhookSubscription", missing)
        if not body["target_url"].startswith(("http://", "https://")):
            raise validation_error("'target_url' must be an http(s) URL.")
        numbers: dict[str, int] = {}
        for key, minimum in (("app_id", 1), ("batch_ms", 0), ("max_attempts", 1)):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise validation_error(f"'{key}' must be an integer >= {minimum}.")
            numbers[key] = value
        retry = body.get("retry_base_seconds")
        if retry is not None and (
            not isinstance(retry, int | float) or isinstance(retry, bool) or retry < 0
        ):
            raise validation_error("'retry_base_seconds' must be a number of seconds >= 0.")
        subscription = Subscription(
            target_url=body["target_url"],
            client_secret=body["client_secret"],
            app_id=numbers.get("app_id", self.state.oauth.app_id),
            batch_ms=numbers.get("batch_ms", DEFAULT_BATCH_MS),
            max_attempts=numbers.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
            retry_base_seconds=float(retry) if retry is not None else DEFAULT_RETRY_BASE_SECONDS,
        )
        self.state.webhooks.subscribe(subscription)
        return _json(self.state.webhooks.to_json(), 201)

    async def unsubscribe_webhooks(self, _request: Request) -> Response:
        self.state.webhooks.unsubscribe()
        return _json(self.state.webhooks.to_json())

    async def drain_webhooks(self, _request: Request) -> Response:
        await self.state.webhooks.drain()
        return _json(self.state.webhooks.to_json())

    async def seed_object(self, request: Request) -> Response:
        """Create a record as a person in the HubSpot UI would (webhooks say CRM_UI)."""
        object_type = request.path_params["object_type"]
        if object_type not in ALL_OBJECT_TYPES:
            raise unknown_object_type(object_type)
        body = await _json_object(request)
        properties = body.get("properties", {})
        associations = body.get("associations", {})
        if not isinstance(properties, dict):
            raise validation_error("'properties' must be an object.")
        if not isinstance(associations, dict) or not all(
            isinstance(ids, list) for ids in associations.values()
        ):
            raise validation_error("'associations' must map object types to lists of ids.")
        try:
            if object_type == "companies":
                if associations:
                    raise ValueError(
                        "Seed companies without associations; link from the other side"
                    )
                object_id = self.state.add_company(properties)
            else:
                object_id = self.state.add_object(object_type, properties, associations)
        except ValueError as exc:
            raise validation_error(str(exc)) from None
        return _json(self.state.render(object_type, object_id, list(properties)), 201)

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
    emulated = [
        Route(f"{ANY_OBJECTS}/{{object_type}}", routes.list_objects, methods=["GET"]),
        Route(f"{ANY_OBJECTS}/{{object_type}}", routes.create_object, methods=["POST"]),
        Route(f"{ANY_OBJECTS}/{{object_type}}/batch/read", routes.batch_read, methods=["POST"]),
        Route(f"{ANY_OBJECTS}/{{object_type}}/batch/update", routes.batch_update, methods=["POST"]),
        Route(f"{ANY_OBJECTS}/{{object_type}}/{{object_id}}", routes.get_object, methods=["GET"]),
        Route(
            f"{ANY_OBJECTS}/{{object_type}}/{{object_id}}",
            routes.update_object,
            methods=["PATCH"],
        ),
        Route(
            "/crm/v4/associations/{from_type}/{to_type}/batch/read",
            routes.batch_read_associations,
            methods=["POST"],
        ),
        Route("/crm/v3/owners", routes.list_owners, methods=["GET"]),
        Route("/crm/v3/owners/{owner_id}", routes.get_owner, methods=["GET"]),
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
        Route("/_sandbox/limits", routes.read_limits, methods=["GET"]),
        Route("/_sandbox/limits", routes.set_limits, methods=["POST"]),
        Route("/_sandbox/limits", routes.clear_limits, methods=["DELETE"]),
        Route("/_sandbox/oauth", routes.read_oauth, methods=["GET"]),
        Route("/_sandbox/oauth", routes.set_oauth, methods=["POST"]),
        Route("/_sandbox/webhooks", routes.read_webhooks, methods=["GET"]),
        Route("/_sandbox/webhooks", routes.subscribe_webhooks, methods=["POST"]),
        Route("/_sandbox/webhooks", routes.unsubscribe_webhooks, methods=["DELETE"]),
        Route("/_sandbox/webhooks/drain", routes.drain_webhooks, methods=["POST"]),
        Route("/_sandbox/objects/{object_type}", routes.seed_object, methods=["POST"]),
        Route("/oauth/authorize", routes.authorize, methods=["GET"]),
        Route("/oauth/v1/token", routes.token, methods=["POST"]),
        Route("/oauth/v1/access-tokens/{token}", routes.token_metadata, methods=["GET"]),
    ]

    async def describe(request: Request) -> Response:
        # Someone who opens the sandbox's address wants to know what it is and what it holds,
        # not a 404: the paths it answers and the data it has now.
        def listed(control: bool) -> list[dict[str, object]]:
            # One entry per path: each method of a path is a route of its own.
            methods: dict[str, set[str]] = {}
            for route in emulated:
                if route.path.startswith("/_sandbox") == control:
                    methods.setdefault(route.path, set()).update(route.methods or ())
            return [
                {"methods": sorted(verbs - {"HEAD"}), "path": path}
                for path, verbs in methods.items()
            ]

        return _json(
            {
                "sandbox": "a local HubSpot-compatible CRM for crm-health's demo, benchmarks "
                "and tests; it never holds real data",
                "portal_id": state.portal_id,
                "authentication": "Authorization: Bearer <token> on /crm routes"
                if access_token is not None
                else "none",
                "hubspot_endpoints": listed(control=False),
                "control_endpoints": listed(control=True),
                "data": {
                    "records": {name: len(records) for name, records in state.objects.items()},
                    "company_properties": len(state.properties),
                    "owners": [
                        {"id": owner_id, "email": email} for owner_id, email, *_ in SEEDED_OWNERS
                    ],
                },
            }
        )

    app = Starlette(
        routes=[Route("/", describe, methods=["GET"]), *emulated],
        middleware=[Middleware(_CrmGateway, state=state, access_token=access_token)],
        exception_handlers={ApiError: _api_error_handler, HTTPException: _http_error_handler},
    )
    app.state.sandbox = state
    return app
