"""The admin page's sign-in: an API key exchanged for a session cookie, who is signed in (with
the CSRF token the page sends back), and signing out."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from webhooks.auth import Principal, principal_for_hash
from webhooks.deps import PrincipalDep, RuntimeDep
from webhooks.errors import Forbidden, Unauthenticated
from webhooks.routes.responses import ErrorBody
from webhooks.sessions import COOKIE_NAME, end_session, open_session
from webhooks.store import keys

router = APIRouter(tags=["session"])


class SignIn(BaseModel):
    key: str = Field(min_length=1, max_length=500, description="An API key (admin or viewer).")


class SessionInfo(BaseModel):
    role: str
    connection: str
    name: str
    settings_scope: str | None = Field(
        description="The connection whose settings this key may change (connections.<name> "
        "of the configuration); null for a global admin, who may change everything."
    )
    # The page sends it back in X-CSRF-Token with every request that changes something.
    csrf_token: str
    expires_at: datetime


def _same_origin(request: Request, public_url: str | None) -> bool:
    """A browser sends Origin with a cross-site POST: refuse sign-ins started by another site
    (login CSRF). A request without Origin is not from a browser form or script."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {f"{request.url.scheme}://{request.url.netloc}"}
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return origin in allowed


@router.post(
    "/api/v1/session",
    response_model=SessionInfo,
    responses={
        401: {"model": ErrorBody, "description": "Unknown or revoked key."},
        403: {"model": ErrorBody, "description": "An ingest key, or a sign-in from another site."},
    },
    summary="Sign in to the admin page with an API key (sets an HttpOnly session cookie)",
)
async def sign_in(
    body: SignIn, request: Request, response: Response, runtime: RuntimeDep
) -> SessionInfo:
    settings = runtime.settings
    if not _same_origin(request, settings.public_url):
        raise Forbidden("Origin: sign-in from another site refused")
    now = datetime.now(UTC)
    digest = keys.secret_token_hash(body.key.strip())
    try:
        principal = await principal_for_hash(
            sessions=runtime.sessions, settings=settings, digest=digest, now=now
        )
    except Unauthenticated:
        raise Unauthenticated("key: unknown or revoked API key") from None
    if principal.role not in (*keys.ADMIN_ROLES, "viewer"):
        raise Forbidden("key: the admin page needs an admin or viewer key")
    cookie, data = await open_session(
        sessions=runtime.sessions,
        signer=runtime.signer,
        key_hash=digest,
        key_id=principal.key_id,
        now=now,
    )
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=int((data.expires_at - now).total_seconds()),
        httponly=True,
        samesite="strict",
        secure=(settings.public_url or str(request.url)).startswith("https://"),
        path="/",
    )
    return _info(principal, data.csrf, data.expires_at)


@router.get(
    "/api/v1/session",
    response_model=SessionInfo,
    responses={401: {"model": ErrorBody, "description": "Not signed in."}},
    summary="Who is signed in, and the CSRF token of the session",
)
async def current(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> SessionInfo:
    data = runtime.signer.read(request.cookies.get(COOKIE_NAME), now=datetime.now(UTC))
    if data is None:
        raise Unauthenticated("not signed in: POST /api/v1/session with an API key")
    return _info(principal, data.csrf, data.expires_at)


@router.delete(
    "/api/v1/session",
    status_code=204,
    responses={403: {"model": ErrorBody, "description": "Missing X-CSRF-Token."}},
    summary="Sign out of the admin page (the session ends at once, server-side)",
)
async def sign_out(
    request: Request, response: Response, runtime: RuntimeDep, principal: PrincipalDep
) -> Response:
    # The dependency checked the CSRF token: another site cannot sign people out.
    del principal
    now = datetime.now(UTC)
    data = runtime.signer.read(request.cookies.get(COOKIE_NAME), now=now)
    if data is not None:
        # Ended where it is stored: a copy of the cookie (or its CSRF token) is worthless now.
        await end_session(sessions=runtime.sessions, data=data, now=now)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    response.status_code = 204
    return response


def _info(principal: Principal, csrf: str, expires_at: datetime) -> SessionInfo:
    return SessionInfo(
        role=principal.role,
        connection=principal.connection,
        name=principal.name,
        settings_scope=principal.settings_scope,
        csrf_token=csrf,
        expires_at=expires_at,
    )
