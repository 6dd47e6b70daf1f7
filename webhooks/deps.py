"""Dependency aliases for routes: the one place that reaches into app state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Request

from webhooks.auth import Principal, allow, authenticate
from webhooks.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    return await authenticate(
        sessions=runtime.sessions,
        settings=runtime.settings,
        authorization=authorization,
        now=datetime.now(UTC),
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _ingest(principal: PrincipalDep) -> Principal:
    return allow(principal, "admin", "ingest")


def _viewer(principal: PrincipalDep) -> Principal:
    return allow(principal, "admin", "viewer")


def _admin(principal: PrincipalDep) -> Principal:
    return allow(principal, "admin")


IngestPrincipal = Annotated[Principal, Depends(_ingest)]
ViewerPrincipal = Annotated[Principal, Depends(_viewer)]
AdminPrincipal = Annotated[Principal, Depends(_admin)]
