"""CRM webhooks in: POST /webhooks/hubspot, /webhooks/salesforce/{connection},
/webhooks/dynamics/{connection}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from connector.salesforce.events import ACK_CONTENT_TYPE, ack_response, fault_response
from webhooks import intake
from webhooks.deps import RuntimeDep
from webhooks.errors import BodyNotReceived, PayloadTooLarge, ServiceError

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
        401: "Signature missing, wrong, older than the tolerance, legacy (v1/v2) for a "
        "connection that did not opt in, or made by a secret that does not own an event's "
        "portal.",
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
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    except ClientDisconnect:
        # Gone, or cut off by the server's body deadline: nobody reads the answer, and a
        # traceback per slow client would flood the log.
        raise BodyNotReceived("the connection closed before the body was complete") from None
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
    summary="Receive a HubSpot webhook batch (signed v3; v1/v2 for connections that opt in)",
)
async def hubspot_webhook(request: Request, runtime: RuntimeDep) -> Accepted:
    settings = runtime.settings
    body = await read_body(request, limit=settings.webhook_max_body_bytes)
    result = await intake.accept_hubspot(
        writer=runtime.writer,
        sessions=runtime.sessions,
        connections=runtime.connections,
        method=request.method,
        uri=signed_uri(request, settings.public_url),
        body=body,
        headers=request.headers,
        now=datetime.now(UTC),
        tolerance_seconds=settings.webhook_timestamp_tolerance_seconds,
        metrics=runtime.metrics,
    )
    return Accepted(received=result.received, stored=result.stored, duplicates=result.duplicates)


_SOAP_ANSWERS: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The notifications are stored: the `notificationsResponse` Ack envelope.",
        "content": {"text/xml": {}},
    },
    **{
        status: {"description": f"{text} Answered with a SOAP Fault naming the problem."}
        for status, text in {
            400: "The body is not an Outbound Message (or has more than 100 notifications).",
            401: "The request did not carry the connection's shared secret (or the connection "
            "has none and does not allow unsigned messages).",
            403: "The message's OrganizationId is not this connection's org.",
            404: "No Salesforce connection has this name.",
            413: "Body larger than CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES.",
            429: "Too many wrong shared secrets from this address for this connection; "
            "Retry-After says when to try again.",
            503: "The connection has no organization id yet, or storage failed; Salesforce "
            "retries.",
        }.items()
    },
}


async def _salesforce(
    request: Request, runtime: RuntimeDep, connection: str, secret: str | None
) -> Response:
    try:
        body = await read_body(request, limit=runtime.settings.webhook_max_body_bytes)
        await intake.accept_salesforce(
            writer=runtime.writer,
            connections=runtime.connections,
            connection=connection,
            body=body,
            secret=secret,
            # The peer as uvicorn reports it: X-Forwarded-For only from its trusted proxies
            # (FORWARDED_ALLOW_IPS, default 127.0.0.1), so a client cannot pick its address.
            client=None if request.client is None else request.client.host,
            now=datetime.now(UTC),
            metrics=runtime.metrics,
        )
    except ServiceError as exc:
        # Salesforce reads SOAP, and shows a Fault's text in its delivery-failure monitor.
        return Response(
            fault_response(exc.message, sender_at_fault=exc.status_code < 500),
            status_code=exc.status_code,
            media_type=ACK_CONTENT_TYPE,
            headers=exc.headers,
        )
    return Response(ack_response(), media_type=ACK_CONTENT_TYPE)


@router.post(
    "/webhooks/salesforce/{connection}",
    response_class=Response,
    responses=_SOAP_ANSWERS,
    summary="Receive a Salesforce Outbound Message (Ack after the notifications are stored)",
)
async def salesforce_outbound_message(
    request: Request,
    runtime: RuntimeDep,
    connection: str,
    secret_header: Annotated[str | None, Header(alias="X-CRM-Health-Secret")] = None,
) -> Response:
    return await _salesforce(request, runtime, connection, secret_header)


@router.post(
    "/webhooks/salesforce/{connection}/{secret}",
    response_class=Response,
    responses=_SOAP_ANSWERS,
    summary="Receive a Salesforce Outbound Message whose endpoint URL carries the shared secret",
)
async def salesforce_outbound_message_with_secret(
    request: Request, runtime: RuntimeDep, connection: str, secret: str
) -> Response:
    return await _salesforce(request, runtime, connection, secret)


_DYNAMICS_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "The body is not a RemoteExecutionContext (the field is named).",
        401: "The registration's WebhookKey, header or query-string value is missing or wrong.",
        404: "No Dynamics 365 connection has this name.",
        413: "Body larger than CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES.",
        503: "The connection has no webhook credential configured, or storage failed.",
    }.items()
}


@router.post(
    "/webhooks/dynamics/{connection}",
    status_code=202,
    response_model=Accepted,
    responses=_DYNAMICS_ERRORS,
    summary="Receive a Dataverse webhook (RemoteExecutionContext of a registered step)",
)
async def dynamics_webhook(request: Request, runtime: RuntimeDep, connection: str) -> Accepted:
    body = await read_body(request, limit=runtime.settings.webhook_max_body_bytes)
    result = await intake.accept_dynamics(
        writer=runtime.writer,
        connections=runtime.connections,
        connection=connection,
        body=body,
        headers=request.headers,
        query=request.query_params,
        now=datetime.now(UTC),
        metrics=runtime.metrics,
    )
    return Accepted(received=result.received, stored=result.stored, duplicates=result.duplicates)
