"""HubSpot app installs: an admin's single-use install link, GET /oauth/hubspot/install (to
HubSpot's consent page) and the callback HubSpot sends the admin back to."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from webhooks import installs
from webhooks.auth import require_global
from webhooks.deps import AdminPrincipal, RuntimeDep
from webhooks.routes.responses import ErrorBody

router = APIRouter(tags=["oauth"])


class InstallLinkOut(BaseModel):
    url: str = Field(description="Open it to install the HubSpot app; it works once.")
    expires_at: datetime


@router.post(
    "/api/v1/install-links",
    status_code=201,
    response_model=InstallLinkOut,
    summary="Create a single-use link that installs the HubSpot app into one portal",
    responses={
        401: {"model": ErrorBody, "description": "No or unknown API key."},
        403: {"model": ErrorBody, "description": "The key is not a global_admin key."},
        503: {"model": ErrorBody, "description": "OAuth is not configured."},
    },
)
async def create_install_link(runtime: RuntimeDep, principal: AdminPrincipal) -> InstallLinkOut:
    # An install adds a tenant whose alerts reach the channels every connection shares.
    require_global(principal, "installing the HubSpot app into a new portal")
    link = await installs.create_link(
        sessions=runtime.sessions,
        connections=runtime.connections,
        created_by=principal.name,
        now=datetime.now(UTC),
    )
    return InstallLinkOut(url=link.url, expires_at=link.expires_at)


@router.get(
    "/oauth/hubspot/install",
    status_code=302,
    summary="Start installing the HubSpot app into a portal (redirects to HubSpot)",
    responses={
        403: {"description": "No valid, unused install link (an admin creates one)."},
        503: {"description": "OAuth is not configured."},
    },
)
async def hubspot_install(runtime: RuntimeDep, link: str | None = None) -> RedirectResponse:
    url = await installs.install_url(
        sessions=runtime.sessions,
        connections=runtime.connections,
        link=link,
        now=datetime.now(UTC),
    )
    return RedirectResponse(url, status_code=302)


@router.get(
    "/oauth/hubspot/callback",
    response_class=HTMLResponse,
    summary="Finish a HubSpot install: store the portal's tokens and provision its fields",
    responses={
        400: {"description": "Missing, forged or stale code/state, or HubSpot refused the code."},
        409: {"description": "The portal is already connected through settings or a file."},
        502: {"description": "HubSpot's token endpoint failed."},
        503: {"description": "OAuth is not configured."},
    },
)
async def hubspot_callback(
    runtime: RuntimeDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    result = await installs.complete_install(
        sessions=runtime.sessions,
        connections=runtime.connections,
        code=code,
        state=state,
        error=error,
        now=datetime.now(UTC),
    )
    if result.provisioned is not None:
        fields = (
            f"Health fields: {len(result.provisioned.created)} created, "
            f"{len(result.provisioned.updated)} updated, "
            f"{len(result.provisioned.unchanged)} already there."
        )
    else:
        fields = (
            "The health fields could not be created yet ("
            + html.escape(result.provision_error or "unknown error")
            + "); they are retried at the next start or with <code>crm-health provision</code>."
        )
    return HTMLResponse(
        "<!doctype html><title>crm-health installed</title>"
        f"<h1>crm-health is connected to HubSpot portal {result.portal_id}</h1>"
        f"<p>Connection <code>{html.escape(result.connection)}</code>. {fields}</p>"
        '<p>Health appears in the "Customer health" group of every company record as events '
        "arrive; run <code>crm-health backfill --connection "
        f"{html.escape(result.connection)}</code> to score existing records now.</p>"
    )
