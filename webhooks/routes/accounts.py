"""Accounts over HTTP: list them with filters and sorting, read one in detail (viewer). Every
key sees only its own connection's accounts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from webhooks import accounts_view, sentiment
from webhooks.accounts_view import AccountDetail, AccountPage
from webhooks.deps import AdminPrincipal, Offset, ReadSessions, RuntimeDep, ViewerPrincipal
from webhooks.routes.responses import UNAUTHENTICATED, error_responses
from webhooks.sentiment import SentimentIn, SentimentOut
from webhooks.store.account_views import SortKey, Trend

router = APIRouter(tags=["accounts"])

_VIEWER_ONLY = "The key's role may not read accounts (needs admin or viewer)."


Score = Annotated[int | None, Query(ge=0, le=100)]


@router.get(
    "/api/v1/accounts",
    response_model=AccountPage,
    responses=error_responses(
        {
            401: UNAUTHENTICATED,
            403: _VIEWER_ONLY,
            422: "A filter that is not valid: the message names it (an unknown band, "
            "score_min above score_max, an unknown sort).",
        }
    ),
    summary="Accounts of the key's connection, most at-risk first",
)
async def list_accounts(
    *,
    reads: ReadSessions,
    principal: ViewerPrincipal,
    band: Annotated[
        list[str],
        Query(
            description="healthy, neutral, at_risk, unknown or onboarding; repeat it or "
            "comma-separate."
        ),
    ] = [],  # noqa: B006 (FastAPI copies defaults per request)
    customer: Annotated[
        bool | None,
        Query(description="true: customers only; false: the accounts that are not a customer."),
    ] = None,
    segment: Annotated[
        list[str], Query(description="The segment attribute; repeat it or comma-separate.")
    ] = [],  # noqa: B006
    owner: Annotated[
        list[str], Query(description="The owner attribute; repeat it or comma-separate.")
    ] = [],  # noqa: B006
    score_min: Score = None,
    score_max: Score = None,
    trend: Annotated[
        Trend | None,
        Query(description="30-day trend: up (> +2 points), down (< -2), flat (in between)."),
    ] = None,
    q: Annotated[str | None, Query(max_length=200, description="Name contains (any case).")] = None,
    sort: Annotated[
        SortKey, Query(description="A leading - sorts descending; nulls always come last.")
    ] = "score",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> AccountPage:
    return await accounts_view.list_accounts(
        reads,
        connection=principal.connection,
        bands=band,
        customer=customer,
        segments=segment,
        owners=owner,
        score_min=score_min,
        score_max=score_max,
        trend=trend,
        name_contains=q,
        sort=sort,
        limit=limit,
        offset=offset,
        now=datetime.now(UTC),
    )


@router.get(
    "/api/v1/accounts/{account_id}",
    response_model=AccountDetail,
    responses=error_responses(
        {401: UNAUTHENTICATED, 403: _VIEWER_ONLY, 404: "No such account for the key's connection."}
    ),
    summary="One account: health, indicators, drivers, coverage, 90-day history",
)
async def get_account(
    reads: ReadSessions,
    principal: ViewerPrincipal,
    account_id: Annotated[str, Path(description="The account's CRM record id.")],
) -> AccountDetail:
    return await accounts_view.get_account(
        reads,
        connection=principal.connection,
        record_id=account_id,
        now=datetime.now(UTC),
    )


_ADMIN_ONLY = "The key's role may not change accounts (needs admin)."
_NO_ACCOUNT = "No such account for the key's connection."


@router.put(
    "/api/v1/accounts/{account_id}/sentiment",
    response_model=SentimentOut,
    status_code=202,
    responses=error_responses(
        {
            401: UNAUTHENTICATED,
            403: _ADMIN_ONLY,
            404: _NO_ACCOUNT,
            422: "A rating other than red, amber or green, a reason the configuration does not "
            "list (sentiment.reasons), a note over 1,000 characters or days outside 1 to 365.",
        }
    ),
    summary="The CSM's judgement of the account, in force for days; the account is rescored",
)
async def set_sentiment(
    runtime: RuntimeDep,
    principal: AdminPrincipal,
    account_id: Annotated[str, Path(description="The account's CRM record id.")],
    body: SentimentIn,
) -> SentimentOut:
    return await sentiment.set_sentiment(
        runtime.sessions,
        connection=principal.connection,
        record_id=account_id,
        change=body,
        author=principal.name,
        now=datetime.now(UTC),
    )


@router.delete(
    "/api/v1/accounts/{account_id}/sentiment",
    response_model=SentimentOut,
    status_code=202,
    responses=error_responses({401: UNAUTHENTICATED, 403: _ADMIN_ONLY, 404: _NO_ACCOUNT}),
    summary="Clear the CSM's judgement: the computed health applies again",
)
async def clear_sentiment(
    runtime: RuntimeDep,
    principal: AdminPrincipal,
    account_id: Annotated[str, Path(description="The account's CRM record id.")],
) -> SentimentOut:
    return await sentiment.set_sentiment(
        runtime.sessions,
        connection=principal.connection,
        record_id=account_id,
        change=None,
        author=principal.name,
        now=datetime.now(UTC),
    )
