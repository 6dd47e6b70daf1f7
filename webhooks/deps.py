"""Dependency aliases for routes: the one place that reaches into app state."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request

from webhooks.auth import Principal, allow, authenticate, principal_for_hash
from webhooks.errors import Forbidden, Unauthenticated
from webhooks.runtime import Runtime
from webhooks.sessions import COOKIE_NAME, CSRF_HEADER, SAFE_METHODS, session_key_hash
from webhooks.store.db import SessionFactory
from webhooks.store.keys import ADMIN_ROLES


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_reads(request: Request) -> SessionFactory:
    """Sessions for admin reads: read-only, on connections intake and the worker never wait
    for."""
    runtime: Runtime = request.app.state.runtime
    return runtime.reads


ReadSessions = Annotated[SessionFactory, Depends(get_reads)]


async def get_principal(
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """A bearer API key, or else the admin page's session cookie; requests from the page that
    change something must also echo the session's CSRF token."""
    now = datetime.now(UTC)
    if authorization is not None:
        return await authenticate(
            sessions=runtime.sessions,
            settings=runtime.settings,
            authorization=authorization,
            now=now,
        )
    data = runtime.signer.read(request.cookies.get(COOKIE_NAME), now=now)
    if data is None:
        raise Unauthenticated(
            "missing API key: send Authorization: Bearer <key>, or sign in at /admin",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = await session_key_hash(sessions=runtime.sessions, data=data, now=now)
    if digest is None:
        raise Unauthenticated(
            "session ended (signed out or expired): sign in again at /admin",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, "").encode(), data.csrf.encode()
    ):
        raise Forbidden(f"{CSRF_HEADER}: missing or not this session's token")
    return await principal_for_hash(
        sessions=runtime.sessions, settings=runtime.settings, digest=digest, now=now
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _ingest(principal: PrincipalDep) -> Principal:
    return allow(principal, *ADMIN_ROLES, "ingest")


def _viewer(principal: PrincipalDep) -> Principal:
    return allow(principal, *ADMIN_ROLES, "viewer")


def _admin(principal: PrincipalDep) -> Principal:
    return allow(principal, *ADMIN_ROLES)


IngestPrincipal = Annotated[Principal, Depends(_ingest)]
ViewerPrincipal = Annotated[Principal, Depends(_viewer)]
AdminPrincipal = Annotated[Principal, Depends(_admin)]


# The databases store ids and offsets as signed 64-bit integers: a larger number in a path or
# query is refused with 422 here, not left to fail as an overflow in the database.
DB_INT_MAX = 2**63 - 1
Offset = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="Items to skip.")]


def row_id(description: str) -> Any:
    """A path parameter naming a stored row by its numeric id."""
    return Path(ge=1, le=DB_INT_MAX, description=description)
