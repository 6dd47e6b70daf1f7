"""The sandbox's gateway in front of /crm routes: injected latency and faults, the bearer token,
rate limits with HubSpot's headers, and the record of every call."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.sandbox.errors import ApiError, JSONObject, error_body
from connector.sandbox.faults import ForcedAnswer, RecordedRequest
from connector.sandbox.limits import RateLimitDecision, rate_limit_body
from connector.sandbox.oauth import expired_message, expiry_time
from connector.sandbox.state import SandboxState, format_timestamp
from connector.sandbox.wire import CATEGORY_BY_STATUS, error_response, json_response, loads


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
    category = CATEGORY_BY_STATUS.get(answer.status, "INTERNAL_ERROR")
    return error_body(f"{reason} (injected by the sandbox)", category)


class CrmGateway:
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
                response: Response = json_response(_forced_body(forced), forced.status, headers)
                await response(scope, receive, capture)
            elif (refusal := self._refusal(token)) is not None:
                use_headers(self.state.limits.check(limit_key, count=False))
                await error_response(refusal)(scope, receive, capture)
            else:
                decision = self.state.limits.check(limit_key)
                use_headers(decision)
                if decision.policy is not None:
                    limited = json_response(rate_limit_body(decision.policy), 429)
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


def _maybe_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")
