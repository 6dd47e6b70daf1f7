"""Sync status over HTTP (viewer): the key's connection's write-backs and dead letters, as
`crm-health status` shows them; the admin page's sync panel reads it."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from webhooks import sync_status
from webhooks.deps import RuntimeDep, ViewerPrincipal
from webhooks.routes.responses import ErrorBody
from webhooks.sync_status import SyncReport

router = APIRouter(tags=["operations"])


@router.get(
    "/api/v1/sync",
    response_model=SyncReport,
    responses={
        401: {"model": ErrorBody, "description": "API key missing or unknown."},
        403: {
            "model": ErrorBody,
            "description": "The key's role may not read (needs admin or viewer).",
        },
    },
    summary="Write-backs owed, failing and failed, and dead letters of the key's connection",
)
async def get_sync(runtime: RuntimeDep, principal: ViewerPrincipal) -> SyncReport:
    return await sync_status.report(
        runtime.sessions, now=datetime.now(UTC), only=principal.connection
    )
