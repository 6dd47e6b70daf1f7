"""The health configuration over HTTP: read it with its ETag (viewer), change or roll it back
under If-Match (admin), list its versions (viewer) and the audit log (admin). A key bound to
a connection sees and changes only that connection's settings; a global admin, all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.openapi.constants import REF_PREFIX
from pydantic import BaseModel, ConfigDict, Field

from signals.config import HealthConfig
from webhooks import config_service
from webhooks.auth import Principal
from webhooks.config_service import AuditPage, ConfigDocument, VersionPage
from webhooks.deps import AdminPrincipal, Offset, RuntimeDep, ViewerPrincipal, row_id
from webhooks.routes.responses import UNAUTHENTICATED, error_responses
from webhooks.runtime import Runtime

router = APIRouter(tags=["config"])


_VIEWER_ONLY = "The key's role may not read the configuration (needs admin or viewer)."
_ADMIN_ONLY = (
    "The key's role may not change the configuration (needs admin), or an admin key bound to "
    "a connection changed more than that connection's settings (the message names the fields)."
)
_NO_VERSION = "No such configuration version."
_MISSING_IF_MATCH = "No If-Match header (or If-Match: *): send the ETag you read."
_STALE = "If-Match names a version that is no longer in force (the answer's ETag is the current)."
_ETAG = {
    "ETag": {
        "description": "Strong ETag of the version (id and content hash); send it as If-Match.",
        "schema": {"type": "string"},
    }
}

IfMatch = Annotated[
    str | None,
    Header(description="The ETag of the configuration the change was made to (required)."),
]
VersionId = Annotated[int, row_id("The version's id.")]
Limit = Annotated[int, Query(ge=1, le=200)]


class ConfigChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: HealthConfig
    comment: str = Field(default="", max_length=2000)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000, description="Added to the version's.")


def _with_etag(response: Response, document: ConfigDocument) -> ConfigDocument:
    response.headers["ETag"] = config_service.etag(document)
    return document


@router.get(
    "/api/v1/config",
    response_model=ConfigDocument,
    responses={
        200: {"headers": _ETAG},
        **error_responses({401: UNAUTHENTICATED, 403: _VIEWER_ONLY}),
    },
    summary="The health configuration in force (the defaults until one is saved)",
)
async def get_config(
    runtime: RuntimeDep, principal: ViewerPrincipal, response: Response
) -> ConfigDocument:
    scope = principal.settings_scope
    document = await config_service.read_current(runtime.sessions, scope=scope)
    return _with_etag(response, document)


@router.put(
    "/api/v1/config",
    response_model=ConfigDocument,
    responses={
        200: {"headers": _ETAG},
        **error_responses(
            {401: UNAUTHENTICATED, 403: _ADMIN_ONLY, 412: _STALE, 428: _MISSING_IF_MATCH}
        ),
        # FastAPI's own validation error list: one entry per invalid field.
        422: {
            "description": "The configuration does not validate: one error per invalid field, "
            "each with its loc (e.g. body, config, bands, hysteresis).",
            "content": {
                "application/json": {"schema": {"$ref": f"{REF_PREFIX}HTTPValidationError"}}
            },
        },
    },
    summary="Store a new configuration version; accounts are rescored (nothing stored when "
    "it is the one in force: stored is false)",
)
async def put_config(
    runtime: RuntimeDep,
    principal: AdminPrincipal,
    body: ConfigChange,
    response: Response,
    if_match: IfMatch = None,
) -> ConfigDocument:
    document = await config_service.put_config(
        runtime.sessions,
        config=body.config,
        comment=body.comment,
        author=principal.name,
        if_match=if_match,
        now=datetime.now(UTC),
        scope=principal.settings_scope,
        grants=runtime.channel_grants,
    )
    return _with_etag(response, document)


@router.get(
    "/api/v1/config/versions",
    response_model=VersionPage,
    responses=error_responses({401: UNAUTHENTICATED, 403: _VIEWER_ONLY}),
    summary="Configuration versions, newest (the one in force) first",
)
async def list_versions(
    runtime: RuntimeDep, principal: ViewerPrincipal, limit: Limit = 50, offset: Offset = 0
) -> VersionPage:
    return await config_service.list_versions(
        runtime.sessions, limit=limit, offset=offset, scope=principal.settings_scope
    )


@router.get(
    "/api/v1/config/versions/{version_id}",
    response_model=ConfigDocument,
    responses={
        200: {"headers": _ETAG},
        **error_responses({401: UNAUTHENTICATED, 403: _VIEWER_ONLY, 404: _NO_VERSION}),
    },
    summary="One configuration version's document",
)
async def get_version(
    runtime: RuntimeDep, principal: ViewerPrincipal, version_id: VersionId, response: Response
) -> ConfigDocument:
    scope = principal.settings_scope
    document = await config_service.read_version(
        runtime.sessions, version_id=version_id, scope=scope
    )
    return _with_etag(response, document)


_ROLLBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": _ETAG},
    **error_responses(
        {
            401: UNAUTHENTICATED,
            403: _ADMIN_ONLY,
            404: _NO_VERSION,
            412: _STALE,
            422: "The old version no longer validates (the message names each field).",
            428: _MISSING_IF_MATCH,
        }
    ),
}


# Declared before the numbered versions' route, which would otherwise take "defaults" for an
# id and refuse it.
@router.post(
    "/api/v1/config/versions/defaults/rollback",
    response_model=ConfigDocument,
    responses=_ROLLBACK_RESPONSES,
    summary="Store a new version equal to the built-in defaults (nothing when in force)",
)
async def rollback_to_defaults(
    *,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
    response: Response,
    if_match: IfMatch = None,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> ConfigDocument:
    return await _rollback(
        runtime,
        principal=principal,
        version_id=None,
        response=response,
        if_match=if_match,
        body=body,
    )


@router.post(
    "/api/v1/config/versions/{version_id}/rollback",
    response_model=ConfigDocument,
    responses=_ROLLBACK_RESPONSES,
    summary="Store a new version equal to an older one (nothing when it is in force)",
)
async def rollback(
    *,
    runtime: RuntimeDep,
    principal: AdminPrincipal,
    version_id: VersionId,
    response: Response,
    if_match: IfMatch = None,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> ConfigDocument:
    return await _rollback(
        runtime,
        principal=principal,
        version_id=version_id,
        response=response,
        if_match=if_match,
        body=body,
    )


async def _rollback(
    runtime: Runtime,
    *,
    principal: Principal,
    version_id: int | None,
    response: Response,
    if_match: str | None,
    body: RollbackRequest | None,
) -> ConfigDocument:
    """Both rollbacks: to a stored version, or (None) to the built-in defaults."""
    document = await config_service.rollback(
        runtime.sessions,
        version_id=version_id,
        comment="" if body is None else body.comment,
        author=principal.name,
        if_match=if_match,
        now=datetime.now(UTC),
        scope=principal.settings_scope,
    )
    return _with_etag(response, document)


@router.get(
    "/api/v1/config/audit",
    response_model=AuditPage,
    responses=error_responses({401: UNAUTHENTICATED, 403: "The key's role is not admin."}),
    summary="Every configuration change (put, rollback, apply), newest first",
)
async def audit(
    runtime: RuntimeDep, principal: AdminPrincipal, limit: Limit = 50, offset: Offset = 0
) -> AuditPage:
    return await config_service.audit_log(
        runtime.sessions, limit=limit, offset=offset, scope=principal.settings_scope
    )
