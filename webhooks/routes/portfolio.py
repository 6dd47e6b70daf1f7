"""The portfolio over HTTP (viewer): the key's connection's live customer accounts by band now
and over 91 days, the week's biggest movers, the renewals ahead, and the filters' values."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from webhooks import portfolio
from webhooks.deps import ReadSessions, RuntimeDep, ViewerPrincipal
from webhooks.portfolio import Portfolio
from webhooks.routes.accounts import PortfolioQuery, record_links
from webhooks.routes.responses import UNAUTHENTICATED, error_responses

router = APIRouter(tags=["accounts"])


@router.get(
    "/api/v1/portfolio",
    response_model=Portfolio,
    responses=error_responses(
        {
            401: UNAUTHENTICATED,
            403: "The key's role may not read accounts (needs admin or viewer).",
            422: "A filter that is not valid: the message names it (an unknown band, "
            "renewal_within_days outside 0..3650).",
        }
    ),
    summary="The portfolio: accounts and ARR by band, now and over 91 days; movers; renewals",
)
async def get_portfolio(
    *,
    reads: ReadSessions,
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    query: PortfolioQuery,
) -> Portfolio:
    return await portfolio.portfolio(
        reads,
        connection=principal.connection,
        query=query,
        now=datetime.now(UTC),
        currency=runtime.settings.currency,
        record_url=record_links(runtime, principal),
    )
