"""Sandbox routes for HubSpot's v1 OAuth endpoints (authorize, token, token metadata)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from connector.sandbox.errors import ApiError, error_body
from connector.sandbox.oauth import OAuthError, expired_message, expiry_time
from connector.sandbox.state import SandboxState, format_timestamp
from connector.sandbox.wire import error_response, json_response


class OAuthRoutes:
    """Route handlers for OAuth over one state's OAuth server."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/oauth/v1/token", self.token, methods=["POST"]),
            Route("/oauth/v1/access-tokens/{token}", self.token_metadata, methods=["GET"]),
        ]

    # OAuth (HubSpot's v1 endpoints; /oauth/authorize is app.hubspot.com's page in HubSpot)

    async def authorize(self, request: Request) -> Response:
        try:
            location = self.state.oauth.authorize(dict(request.query_params))
        except OAuthError as exc:
            return json_response(exc.body(), exc.status)
        # Auto-approved: the sandbox has no login page and no real data to protect.
        return RedirectResponse(location, status_code=302)

    async def token(self, request: Request) -> Response:
        # Parsed by hand: form-encoded like HubSpot's, without needing python-multipart.
        raw = await request.body()
        form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        try:
            return json_response(self.state.oauth.token(form))
        except OAuthError as exc:
            return json_response(exc.body(), exc.status)

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
            return error_response(error)
        try:
            return json_response(oauth.metadata(token))
        except OAuthError as exc:
            return json_response(error_body(exc.message, "OBJECT_NOT_FOUND"), exc.status)
