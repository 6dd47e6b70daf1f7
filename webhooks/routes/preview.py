"""Try a configuration before applying it: preview on today's facts, backtest against known
outcomes. Both read only, so viewer keys may run them; each sees only its own connection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from webhooks import calibration, preview
from webhooks.deps import ReadSessions, RuntimeDep, ViewerPrincipal, row_id
from webhooks.routes.responses import error_responses

router = APIRouter(tags=["config"])

_RESPONSES = error_responses(
    {
        401: "API key missing or unknown.",
        403: "The key's role needs to be admin or viewer.",
        503: "Busy: CRM_HEALTH_PREVIEW_CONCURRENCY previews and backtests were already running "
        "and no turn came free within 30 s; Retry-After says when to retry.",
        422: "The candidate configuration or a parameter is invalid: every invalid field path "
        "is named (e.g. config.bands.healthy_min).",
    }
)

Horizon = Annotated[int, Field(ge=1, le=365)]


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(
        description="The candidate HealthConfig, in the shape GET /api/v1/config returns."
    )
    limit: int = Field(
        default=100, ge=1, le=1000, description="At most this many changed accounts and alerts."
    )
    rule_accounts: int = Field(
        default=10,
        ge=0,
        le=100,
        description="Per alert rule (alerts.rules), name at most this many accounts.",
    )


@router.post(
    "/api/v1/config/preview",
    response_model=preview.Preview,
    responses=_RESPONSES,
    summary="What a candidate configuration would change, computed without writing anything",
)
async def preview_config(
    runtime: RuntimeDep, reads: ReadSessions, principal: ViewerPrincipal, body: PreviewRequest
) -> preview.Preview:
    return await preview.preview(
        reads,
        turns=runtime.preview_turns,
        connection=principal.connection,
        document=body.config,
        limit=body.limit,
        now=datetime.now(UTC),
        scope=principal.settings_scope,
        rule_accounts=body.rule_accounts,
    )


_JOB_RESPONSES = error_responses(
    {
        401: "API key missing or unknown.",
        403: "The key's role needs to be admin or viewer.",
        422: "The candidate configuration or a parameter is invalid: every invalid field path "
        "is named (e.g. config.bands.healthy_min).",
    }
)


@router.post(
    "/api/v1/config/backtest",
    response_model=calibration.JobOut,
    status_code=202,
    responses=_JOB_RESPONSES,
    summary="Start a backtest: how well a configuration's score and bands foresaw known churn "
    "and renewals (AUC, bands, signals, indicators per horizon); fetch it from links.self",
)
async def backtest_config(
    runtime: RuntimeDep, principal: ViewerPrincipal, body: calibration.BacktestRequest
) -> calibration.JobOut:
    return await runtime.jobs.submit(
        kind="backtest", connection=principal.connection, author=principal.name, request=body
    )


@router.post(
    "/api/v1/config/suggest",
    response_model=calibration.JobOut,
    status_code=202,
    responses=_JOB_RESPONSES,
    summary="Start a suggestion: thresholds and weights the known outcomes support, as a "
    "candidate configuration to preview and apply; fetch it from links.self",
)
async def suggest_config(
    runtime: RuntimeDep, principal: ViewerPrincipal, body: calibration.SuggestRequest
) -> calibration.JobOut:
    return await runtime.jobs.submit(
        kind="suggest", connection=principal.connection, author=principal.name, request=body
    )


@router.get(
    "/api/v1/config/jobs/{job_id}",
    response_model=calibration.JobOut,
    responses=error_responses(
        {
            401: "API key missing or unknown.",
            403: "The key's role needs to be admin or viewer.",
            404: "No such job for the key's connection.",
        }
    ),
    summary="A backtest or suggestion job: its progress, then its result",
)
async def get_job(
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    job_id: Annotated[int, row_id("The job's id, as starting it answered.")],
) -> calibration.JobOut:
    return await runtime.jobs.get(job_id=job_id, connection=principal.connection)
