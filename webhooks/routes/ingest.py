"""Product events in: the Segment-compatible source, native events, and the product accounts
still waiting for their CRM account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, Field

from connector.segment import BATCH_MAX_BYTES, CALL_TYPES, MESSAGE_MAX_BYTES
from webhooks import intake
from webhooks.auth import require_connection
from webhooks.deps import IngestPrincipal, Offset, RuntimeDep, ViewerPrincipal
from webhooks.errors import NotFound
from webhooks.routes.inbound import Accepted, read_body
from webhooks.routes.responses import error_responses
from webhooks.store import product

router = APIRouter(tags=["ingest"])


class SegmentAccepted(Accepted):
    # Segment's libraries read `success`; the counts are ours.
    success: bool = True


@router.post(
    "/ingest/segment/v1/{call}",
    response_model=SegmentAccepted,
    responses=error_responses(
        {
            400: "Not a valid Segment call: the message names the field (e.g. batch[3].event).",
            401: "Write key missing or unknown (HTTP Basic user, or writeKey in the body).",
            404: "Not a Segment call: use batch, track, page, screen, identify, group or alias.",
            413: "Over Segment's limits: 500 KB per batch request, 32 KB per call.",
            503: "No Segment write key is configured.",
        }
    ),
    summary="Segment-compatible tracking API (batch, track, page, screen, identify, group, alias)",
)
async def segment_call(
    call: str,
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> SegmentAccepted:
    if call not in (*CALL_TYPES, "batch"):
        raise NotFound(f"no Segment call {call!r}: use batch or one of {', '.join(CALL_TYPES)}")
    limit = BATCH_MAX_BYTES if call == "batch" else MESSAGE_MAX_BYTES
    body = await read_body(request, limit=limit)
    result = await intake.accept_segment(
        writer=runtime.writer,
        connections=runtime.connections,
        call=call,
        body=body,
        authorization=authorization,
        now=datetime.now(UTC),
        metrics=runtime.metrics,
    )
    return SegmentAccepted(
        received=result.received, stored=result.stored, duplicates=result.duplicates
    )


@router.post(
    "/ingest/events",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(
        {
            400: 'Not JSON, not {"events": [...]}, or not 1 to 1,000 events.',
            401: "API key missing or unknown (Authorization: Bearer <key>).",
            403: "The key's role may not push events (needs admin or ingest).",
            413: "Body larger than CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES.",
            422: "Events that break the schema; every invalid field is named.",
        }
    ),
    summary="Native usage, collaboration and account events (up to 1,000 per call)",
)
async def native_events(
    request: Request, runtime: RuntimeDep, principal: IngestPrincipal
) -> Accepted:
    body = await read_body(request, limit=runtime.settings.webhook_max_body_bytes)
    result = await intake.accept_native(
        sessions=runtime.sessions,
        connection=principal.connection,
        body=body,
        now=datetime.now(UTC),
        metrics=runtime.metrics,
    )
    return Accepted(received=result.received, stored=result.stored, duplicates=result.duplicates)


class UnmatchedKey(BaseModel):
    connection: str
    kind: str = Field(
        description="What the events wait on: `group` (a product account's CRM account), "
        "`user` (a user's product account) or `account` (an account id whose record is not "
        "known: mistyped, or not in the CRM yet)."
    )
    id: str
    events: int
    first_received_at: datetime
    last_received_at: datetime
    reason: str | None
    group_name: str | None
    trait_value: str | None


class UnmatchedPage(BaseModel):
    items: list[UnmatchedKey]
    total: int
    limit: int
    offset: int


@router.get(
    "/api/v1/ingest/unmatched",
    response_model=UnmatchedPage,
    responses=error_responses(
        {
            401: "API key missing or unknown.",
            403: "The key's role may not read (needs admin or viewer), or another connection.",
        }
    ),
    summary="Product accounts, users and account ids whose events wait for their CRM account",
)
async def unmatched(
    runtime: RuntimeDep,
    principal: ViewerPrincipal,
    connection: Annotated[
        str | None, Query(description="Defaults to the key's own connection.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> UnmatchedPage:
    wanted = connection or principal.connection
    require_connection(principal, wanted)
    async with runtime.sessions() as session:
        items, total = await product.list_unmatched(
            session, connection=wanted, limit=limit, offset=offset
        )
    return UnmatchedPage(
        items=[
            UnmatchedKey(
                connection=item.connection,
                kind=item.key.partition(":")[0],
                id=item.key.partition(":")[2],
                events=item.events,
                first_received_at=item.first_received_at,
                last_received_at=item.last_received_at,
                reason=item.reason,
                group_name=item.group_name,
                trait_value=item.match_value,
            )
            for item in items
        ],
        total=total,
        limit=limit,
        offset=offset,
    )
