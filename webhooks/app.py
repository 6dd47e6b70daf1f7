"""create_app(settings): the FastAPI application; its lifespan owns database, clients, worker."""

from __future__ import annotations

import gc
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.bounds import validation_message
from webhooks.errors import ServiceError
from webhooks.routes import (
    account_story,
    accounts,
    admin_page,
    alerts,
    api_docs,
    channels,
    inbound,
    ingest,
    oauth,
    ops,
    portfolio,
    preferences,
    sync,
)
from webhooks.routes import session as session_routes
from webhooks.routes.config import router as config_router
from webhooks.routes.preview import router as preview_router
from webhooks.runtime import Runtime
from webhooks.settings import Settings

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
# What a caller may choose: short and inert in logs and headers (no spaces, quotes, newlines).
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-ID when it is a safe token, else a fresh one."""
    if header is not None and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI middleware: every log line of a request carries its `request_id`, and the
    response echoes it in X-Request-ID, so a caller's report can be found in the logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (value for name, value in scope.get("headers", []) if name == _REQUEST_ID_KEY), None
        )
        request_id = request_id_from(None if given is None else given.decode("latin-1"))
        header = (_REQUEST_ID_KEY, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                others = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                message["headers"] = [*others, header]
            await send(message)

        # Restores the previous values on the way out: nothing leaks into the next request
        # or into tasks the server runs afterwards.
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                # The server logs the traceback on its own; this line ties it to the request. No
                # path: a Salesforce shared secret may be its last segment.
                log.error("request_failed", method=scope.get("method"), error=type(exc).__name__)
                raise


def _printable(part: object) -> str | int:
    """A location part or message as JSON can carry it: a key of the client's own making may
    hold a lone surrogate, which is written escaped."""
    if isinstance(part, int):
        return part
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def create_app(
    settings: Settings, *, crm_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the service. `crm_transport` replaces the network for CRM calls (tests, demo)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings, crm_transport=crm_transport)
        app.state.runtime = runtime
        await runtime.open()
        # Everything built at start (routes, models, SQLAlchemy metadata) lives as long as the
        # process: out of the collector's sight, each request's collections scan far less.
        gc.freeze()
        if settings.run_worker:
            runtime.start_worker()
        log.info("service_started", worker=settings.run_worker)
        try:
            yield
        finally:
            await runtime.aclose()
            log.info("service_stopped")

    app = FastAPI(
        title="crm-health",
        summary="Customer health for your CRM: signals in, health fields out.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by webhooks.routes.api_docs from the package's own files (offline, strict CSP).
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.message}, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each invalid input, which may not even encode as UTF-8
        # (a lone surrogate from an escaped JSON string): the field and the reason are enough,
        # the reason without pydantic's "Value error, " before a validator's own words.
        errors = [
            {
                "type": error["type"],
                "loc": [_printable(part) for part in error["loc"]],
                "msg": _printable(validation_message(error["msg"])),
            }
            for error in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    app.include_router(ops.router)
    app.include_router(inbound.router)
    app.include_router(ingest.router)
    app.include_router(oauth.router)
    app.include_router(alerts.router)
    app.include_router(channels.router)
    app.include_router(config_router)
    app.include_router(accounts.router)
    app.include_router(account_story.router)
    app.include_router(portfolio.router)
    app.include_router(preferences.router)
    app.include_router(preview_router)
    app.include_router(session_routes.router)
    app.include_router(sync.router)
    admin_page.install(app)
    api_docs.install(app)
    # Added last, so it wraps every other middleware and their log lines carry the id too.
    app.add_middleware(RequestIdMiddleware)
    return app
