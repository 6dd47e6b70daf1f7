"""create_app(settings): the FastAPI application; its lifespan owns database, clients, worker."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from webhooks.errors import ServiceError
from webhooks.routes import accounts, admin_page, alerts, inbound, ingest, oauth, ops
from webhooks.routes import session as session_routes
from webhooks.routes.config import router as config_router
from webhooks.routes.preview import router as preview_router
from webhooks.runtime import Runtime
from webhooks.settings import Settings

log = structlog.get_logger(__name__)


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
    )

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.message}, headers=exc.headers
        )

    app.include_router(ops.router)
    app.include_router(inbound.router)
    app.include_router(ingest.router)
    app.include_router(oauth.router)
    app.include_router(alerts.router)
    app.include_router(config_router)
    app.include_router(accounts.router)
    app.include_router(preview_router)
    app.include_router(session_routes.router)
    admin_page.install(app)
    return app
