"""Operations endpoints: liveness, readiness, Prometheus metrics, and `/` sending a browser to
the admin page."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from webhooks.deps import RuntimeDep
from webhooks.store.migrate import current_revision, head_revision

router = APIRouter(tags=["operations"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    # Someone who opens the service's address in a browser wants the admin page, not a 404.
    return RedirectResponse("/admin", status_code=307)


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and its schema is current")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = await current_revision(runtime.engine), head_revision()
        checks["migrations"] = (
            "ok" if current == head else f"database at {current}, code expects {head}"
        )
    except Exception as exc:
        checks.setdefault("database", f"unreachable: {type(exc).__name__}")
    ready = all(value == "ok" for value in checks.values()) and "migrations" in checks
    return JSONResponse(
        status_code=200 if ready else 503,
        content={"status": "ready" if ready else "not_ready", "checks": checks},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (no authentication: scrape it on the internal network only)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Counters of this process and, read now, queue depth and lag from the database. The
    service answers on one port, so keep /metrics from the outside at the proxy."""
    text = await runtime.metrics.scrape(
        runtime.sessions, connections=runtime.connections.writers().keys()
    )
    return Response(text, media_type=CONTENT_TYPE_LATEST)
