"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from webhooks.deps import RuntimeDep
from webhooks.store.migrate import current_revision, head_revision

router = APIRouter(tags=["operations"])


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
