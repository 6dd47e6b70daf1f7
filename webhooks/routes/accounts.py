"""Accounts over HTTP: list them with filters and sorting, export the same list as CSV, read
one in detail (viewer). Every key sees only its own connection's accounts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from webhooks import accounts_view, sentiment
from webhooks.accounts_view import (
    MAX_RENEWAL_DAYS,
    AccountDetail,
    AccountPage,
    AccountQuery,
    RecordLink,
    no_link,
)
from webhooks.auth import Principal
from webhooks.deps import AdminPrincipal, Offset, ReadSessions, RuntimeDep, ViewerPrincipal
from webhooks.routes.responses import UNAUTHENTICATED, error_responses
from webhooks.runtime import Runtime
from webhooks.sentiment import SentimentIn, SentimentOut
from webhooks.store.account_views import SortKey, Trend

router = APIRouter(tags=["accounts"])

_VIEWER_ONLY = "The key's role may not read accounts (needs admin or viewer)."
_BAD_FILTER = (
    "A filter that is not valid: the message names it (an unknown band, score_min above "
    "score_max, renewal_within_days outside 0..3650, an unknown sort)."
)


ScoreMin = Annotated[
    int | None,
    Query(ge=0, le=100, description="Lowest score, 0..100 (accounts without one never match)."),
]
ScoreMax = Annotated[
    int | None,
    Query(ge=0, le=100, description="Highest score, 0..100 (accounts without one never match)."),
]

# The filters the list, its export and the portfolio share (same names, same meaning).
Bands = Annotated[
    list[str],
    Query(
        description="healthy, neutral, at_risk, unknown or onboarding; repeat it or comma-separate."
    ),
]
Segments = Annotated[
    list[str], Query(description="The segment attribute; repeat it or comma-separate.")
]
Owners = Annotated[
    list[str],
    Query(description="The owner attribute (the CRM's owner id); repeat it or comma-separate."),
]
RenewalWithin = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_RENEWAL_DAYS,
        description="Accounts whose renewal date falls from today (UTC) to today + this many "
        "days, both inclusive (0: today).",
    ),
]


def portfolio_query(
    *,
    band: Bands = [],  # noqa: B006 (FastAPI copies defaults per request)
    segment: Segments = [],  # noqa: B006
    owner: Owners = [],  # noqa: B006
    renewal_within_days: RenewalWithin = None,
) -> AccountQuery:
    """The filters the portfolio takes (a subset of the list's)."""
    return AccountQuery(
        bands=band, segments=segment, owners=owner, renewal_within_days=renewal_within_days
    )


def account_query(
    *,
    base: Annotated[AccountQuery, Depends(portfolio_query)],
    customer: Annotated[
        bool | None,
        Query(description="true: customers only; false: the accounts that are not a customer."),
    ] = None,
    score_min: ScoreMin = None,
    score_max: ScoreMax = None,
    trend: Annotated[
        Trend | None,
        Query(description="30-day trend: up (> +2 points), down (< -2), flat (in between)."),
    ] = None,
    q: Annotated[str | None, Query(max_length=200, description="Name contains (any case).")] = None,
    sort: Annotated[
        SortKey,
        Query(
            description="score, name, updated_at, trend, arr or renewal (the renewal date); a "
            "leading - sorts descending; nulls always come last."
        ),
    ] = "score",
) -> AccountQuery:
    """The list's filters and sort, as the list and its CSV export take them."""
    return AccountQuery(
        bands=base.bands,
        customer=customer,
        segments=base.segments,
        owners=base.owners,
        score_min=score_min,
        score_max=score_max,
        trend=trend,
        name_contains=q,
        renewal_within_days=base.renewal_within_days,
        sort=sort,
    )


PortfolioQuery = Annotated[AccountQuery, Depends(portfolio_query)]
ListQuery = Annotated[AccountQuery, Depends(account_query)]


def record_links(runtime: Runtime, principal: Principal) -> RecordLink:
    """Links to records in the CRM of the key's connection."""
    connection = runtime.connections.get(principal.connection)
    return no_link if connection is None else connection.record_url


@router.get(
    "/api/v1/accounts",
    response_model=AccountPage,
    responses=error_responses({401: UNAUTHENTICATED, 403: _VIEWER_ONLY, 422: _BAD_FILTER}),
    summary="Accounts of the key's connection, most at-risk first",
)
async def list_accounts(
    *,
    reads: ReadSessions,
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    query: ListQuery,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Offset = 0,
) -> AccountPage:
    return await accounts_view.list_accounts(
        reads,
        connection=principal.connection,
        query=query,
        limit=limit,
        offset=offset,
        now=datetime.now(UTC),
        record_url=record_links(runtime, principal),
    )


@router.get(
    "/api/v1/accounts.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every matching account, in the list's order, as CSV (UTF-8, a "
            "header row first): "
            + ",".join(accounts_view.CSV_COLUMNS)
            + ". Text cells starting with = + - @, a tab or a carriage return get a leading "
            "apostrophe, so a spreadsheet never runs them as formulas.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **error_responses({401: UNAUTHENTICATED, 403: _VIEWER_ONLY, 422: _BAD_FILTER}),
    },
    summary="The accounts list as a CSV file: every matching account, same filters and sort",
)
async def export_accounts(
    *,
    reads: ReadSessions,
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    query: ListQuery,
) -> StreamingResponse:
    now = datetime.now(UTC)
    chunks = accounts_view.export_csv(
        reads,
        connection=principal.connection,
        query=query,
        now=now,
        currency=runtime.settings.currency,
        record_url=record_links(runtime, principal),
    )
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="accounts-{now.date().isoformat()}.csv"'
        },
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
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    account_id: Annotated[str, Path(description="The account's CRM record id.")],
) -> AccountDetail:
    return await accounts_view.get_account(
        reads,
        connection=principal.connection,
        record_id=account_id,
        now=datetime.now(UTC),
        record_url=record_links(runtime, principal),
        currency=runtime.settings.currency,
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
