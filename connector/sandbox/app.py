"""The sandbox's ASGI app: HubSpot's CRM v3/v4 and OAuth v1 routes over `SandboxState`.

Every /crm call goes through one gateway that adds the injected latency, answers forced faults,
checks the bearer token (the fixed one or an OAuth token it issued, refusing expired ones),
counts the call against the rate limits (adding the X-HubSpot-RateLimit-* headers, answering 429
when enforced) and records it. The /_sandbox control routes are NOT protected by the token: the
sandbox is a local test tool and never holds real data. The portal's owners
(`GET /crm/v3/owners`, `/crm/v3/owners/{ownerId}`) are fixed: `seed.SEEDED_OWNERS`.
The gateway is `gateway.py`; the routes are in `routes/` by area (objects, properties, OAuth,
/_sandbox control) and this module joins them into one app.

Control routes: /_sandbox/requests, /faults, /reset (as before), /limits (window_max,
interval_ms, daily, enforce, latency_ms), /oauth (client_id, client_secret,
access_token_ttl_seconds, expire_all), /webhooks (+ /webhooks/drain) and /objects/{type}.
`GET /` describes the sandbox: the paths it answers and the records it holds now.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.sandbox.errors import ApiError
from connector.sandbox.gateway import CrmGateway
from connector.sandbox.routes.control import ControlRoutes
from connector.sandbox.routes.oauth import OAuthRoutes
from connector.sandbox.routes.objects import ObjectRoutes
from connector.sandbox.routes.properties import PropertyRoutes
from connector.sandbox.seed import SEEDED_OWNERS
from connector.sandbox.state import SandboxState
from connector.sandbox.wire import api_error_handler, http_error_handler, json_response


def create_sandbox_app(
    state: SandboxState | None = None, *, access_token: str | None = None
) -> Starlette:
    """A HubSpot-compatible CRM over `state` (a fresh one when None).

    With `access_token`, /crm routes need `Authorization: Bearer <access_token>`.
    The state is reachable as `app.state.sandbox` for in-process tests and tools.
    """
    state = state if state is not None else SandboxState()
    emulated = [
        *ObjectRoutes(state).routes(),
        *PropertyRoutes(state).routes(),
        *ControlRoutes(state).routes(),
        *OAuthRoutes(state).routes(),
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

        return json_response(
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
        middleware=[Middleware(CrmGateway, state=state, access_token=access_token)],
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
    )
    app.state.sandbox = state
    return app
