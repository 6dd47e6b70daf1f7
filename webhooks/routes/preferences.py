"""The signed-in user's own preferences (any role that signs in: admin or viewer); the key's
connection and name say whose they are."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from webhooks import preferences
from webhooks.deps import ReadSessions, RuntimeDep, ViewerPrincipal
from webhooks.preferences import Preferences
from webhooks.routes.responses import UNAUTHENTICATED, error_responses

router = APIRouter(tags=["preferences"])

_SIGNED_IN = "The key's role has no preferences (needs admin or viewer)."


@router.get(
    "/api/v1/me/preferences",
    response_model=Preferences,
    responses=error_responses({401: UNAUTHENTICATED, 403: _SIGNED_IN}),
    summary="Your preferences (all null until you store some)",
)
async def get_preferences(reads: ReadSessions, principal: ViewerPrincipal) -> Preferences:
    return await preferences.read_preferences(
        reads, connection=principal.connection, user_name=principal.name
    )


@router.put(
    "/api/v1/me/preferences",
    response_model=Preferences,
    responses=error_responses(
        {
            401: UNAUTHENTICATED,
            403: f"{_SIGNED_IN} From the admin page: the session's CSRF header is missing or "
            "wrong.",
            422: "A value that is not valid, or a key that is not a preference: the message "
            "names it.",
        }
    ),
    summary="Replace your preferences",
)
async def put_preferences(
    runtime: RuntimeDep, principal: ViewerPrincipal, body: Preferences
) -> Preferences:
    return await preferences.save_preferences(
        runtime.sessions,
        connection=principal.connection,
        user_name=principal.name,
        preferences=body,
        now=datetime.now(UTC),
    )
