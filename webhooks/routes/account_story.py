"""The account page's story over HTTP (viewer): the indicator catalog, why an account's score
moved, and its timeline. Every key sees only its own connection's accounts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from webhooks import account_story
from webhooks.account_story import IndicatorCatalog, MovementOut, Timeline
from webhooks.deps import ReadSessions, ViewerPrincipal
from webhooks.routes.responses import UNAUTHENTICATED, error_responses

router = APIRouter(tags=["accounts"])

_VIEWER_ONLY = "The key's role may not read accounts (needs admin or viewer)."
_NO_ACCOUNT = "No such account for the key's connection."
AccountId = Annotated[str, Path(description="The account's CRM record id.")]
MomentText = Annotated[
    str | None,
    Query(
        max_length=64,
        description="An ISO 8601 date (its midnight, UTC) or date and time (UTC unless it names "
        "an offset).",
    ),
]


@router.get(
    "/api/v1/indicators",
    response_model=IndicatorCatalog,
    responses=error_responses({401: UNAUTHENTICATED, 403: _VIEWER_ONLY}),
    summary="Every signal and indicator: labels, units, explanations, thresholds in force",
)
async def indicators(reads: ReadSessions, principal: ViewerPrincipal) -> IndicatorCatalog:
    return await account_story.indicator_catalog(reads, connection=principal.connection)


@router.get(
    "/api/v1/accounts/{account_id}/movement",
    response_model=MovementOut,
    responses=error_responses(
        {
            401: UNAUTHENTICATED,
            403: _VIEWER_ONLY,
            404: _NO_ACCOUNT,
            422: "start or end not a date or date and time, start not before end, end in the "
            "future, or start more than 400 days back: the message names the parameter.",
        }
    ),
    summary="Why the account's score moved between two moments, in parts that add up",
)
async def movement(
    reads: ReadSessions,
    principal: ViewerPrincipal,
    account_id: AccountId,
    start: MomentText = None,
    end: MomentText = None,
) -> MovementOut:
    return await account_story.account_movement(
        reads,
        connection=principal.connection,
        record_id=account_id,
        start=start,
        end=end,
        now=datetime.now(UTC),
    )


@router.get(
    "/api/v1/accounts/{account_id}/timeline",
    response_model=Timeline,
    responses=error_responses(
        {401: UNAUTHENTICATED, 403: _VIEWER_ONLY, 404: _NO_ACCOUNT, 422: "days outside 7..365."}
    ),
    summary="The account week by week, and what happened: interactions, tickets, contacts...",
)
async def timeline(
    reads: ReadSessions,
    principal: ViewerPrincipal,
    account_id: AccountId,
    days: Annotated[int, Query(ge=7, le=365, description="The window, in days.")] = 90,
) -> Timeline:
    return await account_story.account_timeline(
        reads,
        connection=principal.connection,
        record_id=account_id,
        days=days,
        now=datetime.now(UTC),
    )
