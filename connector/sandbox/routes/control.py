"""The sandbox's own control routes under /_sandbox (not HubSpot): recorded calls, faults, rate
limits, OAuth settings, outgoing webhooks, seeding records and reset. Not protected by the token:
the sandbox is a local test tool and never holds real data."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.sandbox.errors import (
    JSONObject,
    missing_attributes,
    unknown_object_type,
    validation_error,
)
from connector.sandbox.faults import retry_after_value
from connector.sandbox.outbound import (
    DEFAULT_BATCH_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_BASE_SECONDS,
    Subscription,
)
from connector.sandbox.seed import ALL_OBJECT_TYPES
from connector.sandbox.state import SandboxState
from connector.sandbox.wire import json_object, json_response


class ControlRoutes:
    """Route handlers for the /_sandbox control surface over one state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/requests", self.read_requests, methods=["GET"]),
            Route("/_sandbox/requests", self.clear_requests, methods=["DELETE"]),
            Route("/_sandbox/faults", self.read_faults, methods=["GET"]),
            Route("/_sandbox/faults", self.set_faults, methods=["POST"]),
            Route("/_sandbox/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/limits", self.read_limits, methods=["GET"]),
            Route("/_sandbox/limits", self.set_limits, methods=["POST"]),
            Route("/_sandbox/limits", self.clear_limits, methods=["DELETE"]),
            Route("/_sandbox/oauth", self.read_oauth, methods=["GET"]),
            Route("/_sandbox/oauth", self.set_oauth, methods=["POST"]),
            Route("/_sandbox/webhooks", self.read_webhooks, methods=["GET"]),
            Route("/_sandbox/webhooks", self.subscribe_webhooks, methods=["POST"]),
            Route("/_sandbox/webhooks", self.unsubscribe_webhooks, methods=["DELETE"]),
            Route("/_sandbox/webhooks/drain", self.drain_webhooks, methods=["POST"]),
            Route("/_sandbox/objects/{object_type}", self.seed_object, methods=["POST"]),
        ]

    async def read_requests(self, request: Request) -> Response:
        raw = request.query_params.get("since", "0")
        if not raw.isdigit():
            raise validation_error(f"Invalid value '{raw}' for 'since': expected an index.")
        since = int(raw)
        calls = self.state.requests
        return json_response(
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
        return json_response(self.state.faults.to_json())

    async def set_faults(self, request: Request) -> Response:
        body = await json_object(request)
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
        return json_response(faults.to_json())

    async def clear_faults(self, _request: Request) -> Response:
        self.state.faults.clear()
        return json_response(self.state.faults.to_json())

    async def read_limits(self, _request: Request) -> Response:
        return json_response(self._limits_json())

    def _limits_json(self) -> JSONObject:
        return {
            **self.state.limits.to_json(),
            "latency_ms": round(self.state.faults.latency_seconds * 1000),
        }

    async def set_limits(self, request: Request) -> Response:
        body = await json_object(request)
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
        return json_response(self._limits_json())

    async def clear_limits(self, _request: Request) -> Response:
        self.state.limits.restore_defaults()
        self.state.faults.latency_seconds = 0.0
        return json_response(self._limits_json())

    async def read_oauth(self, _request: Request) -> Response:
        return json_response(self.state.oauth.to_json())

    async def set_oauth(self, request: Request) -> Response:
        body = await json_object(request)
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
        return json_response(oauth.to_json())

    async def read_webhooks(self, _request: Request) -> Response:
        return json_response(self.state.webhooks.to_json())

    async def subscribe_webhooks(self, request: Request) -> Response:
        body = await json_object(request)
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
        return json_response(self.state.webhooks.to_json(), 201)

    async def unsubscribe_webhooks(self, _request: Request) -> Response:
        self.state.webhooks.unsubscribe()
        return json_response(self.state.webhooks.to_json())

    async def drain_webhooks(self, _request: Request) -> Response:
        await self.state.webhooks.drain()
        return json_response(self.state.webhooks.to_json())

    async def seed_object(self, request: Request) -> Response:
        """Create a record as a person in the HubSpot UI would (webhooks say CRM_UI)."""
        object_type = request.path_params["object_type"]
        if object_type not in ALL_OBJECT_TYPES:
            raise unknown_object_type(object_type)
        body = await json_object(request)
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
        return json_response(self.state.render(object_type, object_id, list(properties)), 201)

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
