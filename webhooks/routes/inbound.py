"""CRM webhooks in: POST /webhooks/hubspot."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from webhooks import intake
from webhooks.deps import RuntimeDep
from webhooks.errors import PayloadTooLarge

router = APIRouter(tags=["webhooks"])


class Accepted(BaseModel):
    received: int
    stored: int
    duplicates: int


class ErrorBody(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "The body is not a JSON array of 1 to 100 HubSpot events.",
        401: "Signature missing, wrong or older than the tolerance.",
        413: "Body larger than CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES.",
        503: "HubSpot is not configured (no client secret).",
    }.items()
}


async def read_body(request: Request, *, limit: int) -> bytes:
    """Read at most `limit` bytes; a larger body is refused without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    return bytes(body)


def signed_uri(request: Request, public_url: str | None) -> str:
    """The URL HubSpot signed: as the outside world sees it, so proxies do not break it."""
    if public_url is None:
        return str(request.url)
    query = request.url.query
    return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


@router.post(
    "/webhooks/hubspot",
    status_code=202,
    response_model=Accepted,
    responses=_ERRORS,
    summary="Receive a HubSpot webhook batch (signed v3, or v1/v2 for older apps)",
)
async def hubspot_webhook(request: Request, runtime: RuntimeDep) -> Accepted:
    settings = runtime.settings
    body = await read_body(request, limit=settings.webhook_max_body_bytes)
    result = await intake.accept_hubspot(
        sessions=runtime.sessions,
        connections=runtime.connections,
        method=request.method,
        uri=signed_uri(request, settings.public_url),
        body=body,
        headers=request.headers,
        now=datetime.now(UTC),
        tolerance_seconds=settings.webhook_timestamp_tolerance_seconds,
        accept_legacy=settings.hubspot_accept_legacy_signatures,
    )
    return Accepted(received=result.received, stored=result.stored, duplicates=result.duplicates)
